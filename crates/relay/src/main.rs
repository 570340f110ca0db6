//! `relay`: one binary. `serve` runs the gateway; the other subcommands are operations on the
//! same configuration (migrations, API keys).

mod audit_cli;
mod cli;
mod config;
mod file_modes;
mod health;
mod import;
mod keys;
mod logging;
mod mcp_stdio;
#[cfg(feature = "otel")]
mod otel;
mod runtime;

use clap::Parser;

/// mimalloc instead of the system allocator: a request allocates dozens of small buffers
/// (headers, JSON, metric labels), and glibc's malloc took a fifth of the CPU of a token read
/// under load (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the context chain on one line; no secret is ever in it.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
