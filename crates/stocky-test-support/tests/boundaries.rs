//! Dependency boundaries between the crates, read from `cargo tree -e normal`:
//! - the SDK carries no server-side dependency (axum, database drivers, Redis);
//! - the gateway, which the edge shares, carries no PostgreSQL driver and no Redis client
//!   (the hub adds those), and neither does the edge.

use std::process::Command;

/// The crates `package` depends on when built by itself (normal edges only).
fn normal_dependencies(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["tree", "-p", package, "-e", "normal", "--prefix", "none"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn assert_none_of(package: &str, crates: &[String], forbidden: &[&str]) {
    for name in forbidden {
        assert!(
            !crates.iter().any(|c| c == name),
            "{package} depends on {name}:\n{}",
            crates.join("\n")
        );
    }
}

#[test]
fn the_sdk_depends_on_core_and_http_and_websocket_clients_only() {
    let crates = normal_dependencies("stocky-client");
    assert!(crates.iter().any(|c| c == "stocky-core"));
    assert!(crates.iter().any(|c| c == "reqwest"));
    assert_none_of(
        "stocky-client",
        &crates,
        &[
            "axum",
            "rusqlite",
            "libsqlite3-sys",
            "postgres",
            "tokio-postgres",
            "redis",
            "stocky-store",
            "stocky-server",
        ],
    );
}

#[test]
fn the_gateway_needs_neither_postgres_nor_redis() {
    let crates = normal_dependencies("stocky-server");
    assert!(crates.iter().any(|c| c == "rusqlite"));
    assert_none_of(
        "stocky-server",
        &crates,
        &["postgres", "tokio-postgres", "redis", "stocky-hub"],
    );
}

#[test]
fn the_edge_runs_on_sqlite_alone() {
    let crates = normal_dependencies("stocky-edge");
    assert!(crates.iter().any(|c| c == "rusqlite"));
    assert_none_of(
        "stocky-edge",
        &crates,
        &["postgres", "tokio-postgres", "redis", "stocky-hub"],
    );
}
