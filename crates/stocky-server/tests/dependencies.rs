//! The gateway is shared with the edge, which runs on SQLite alone: built by itself it
//! carries no PostgreSQL driver and no Redis client (the hub adds those).

use std::process::Command;

#[test]
fn the_gateway_needs_neither_postgres_nor_redis() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "stocky-server",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(crates.contains(&"rusqlite"), "{tree}");
    for forbidden in ["postgres", "tokio-postgres", "redis", "stocky-hub"] {
        assert!(
            !crates.contains(&forbidden),
            "stocky-server depends on {forbidden}:\n{tree}"
        );
    }
}
