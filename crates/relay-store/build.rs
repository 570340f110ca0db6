//! Rebuilds this crate when a migration file changes: `sqlx::migrate!` embeds the files at
//! compile time but, on stable Rust, cannot tell Cargo to watch them.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
