//! The SDK must not carry server-side dependencies: `cargo tree -p stocky-client -e normal`
//! has no axum, database driver or Redis client.

use std::process::Command;

#[test]
fn the_sdk_depends_on_core_and_http_and_websocket_clients_only() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "stocky-client",
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
    assert!(crates.contains(&"stocky-core"), "{tree}");
    for forbidden in [
        "axum",
        "rusqlite",
        "libsqlite3-sys",
        "postgres",
        "tokio-postgres",
        "redis",
        "stocky-store",
        "stocky-server",
    ] {
        assert!(
            !crates.contains(&forbidden),
            "stocky-client depends on {forbidden}:\n{tree}"
        );
    }
}
