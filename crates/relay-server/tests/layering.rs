//! The dependency rule of docs/ARCHITECTURE.md, checked on the resolved graph: the HTTP layer
//! talks to the core's ports only, never to an adapter, and the core depends on no other crate
//! of the workspace. `cargo tree` reads Cargo.lock, so this needs no network.

use std::process::Command;

/// The workspace crates `package` depends on, directly or not (normal dependencies only).
fn workspace_dependencies_of(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["tree", "--offline", "--edges", "normal", "--prefix", "none"])
        .args(["--format", "{p}", "--package", package])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.starts_with("relay") && *name != package)
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn the_http_layer_depends_on_the_core_only() {
    assert_eq!(workspace_dependencies_of("relay-server"), ["relay-core"]);
}

#[test]
fn the_core_depends_on_no_other_workspace_crate() {
    assert!(workspace_dependencies_of("relay-core").is_empty());
}
