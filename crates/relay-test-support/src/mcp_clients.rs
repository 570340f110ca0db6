//! The MCP clients Relay's MCP tests drive, written by others: the official Python SDK (`mcp`
//! from PyPI, in a virtual environment under `target/`) and the official TypeScript SDK and
//! MCP Inspector (npm, in `tests/mcp-clients/`), each at a pinned version.
//!
//! Installation happens once and is skipped while the pinned version is installed, so runs
//! after the first need no network. Concurrent tests (and test processes) install once: a
//! mutex within the process and an advisory file lock across processes. Without Python or
//! Node the tests skip, except under `CI=true`, where a missing client fails them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::oidc_provider::find_executable;

/// `tests/mcp-clients` at the root of the workspace: the client scripts and the npm packages.
pub fn clients_dir() -> PathBuf {
    workspace_root().join("tests").join("mcp-clients")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

fn missing(what: &str) -> Option<PathBuf> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} is required to run the MCP client tests under CI");
    }
    eprintln!("notice: {what} not found: skipping an MCP client test");
    None
}

/// Runs `f` once across tests and test processes, under `name`'s advisory file lock.
async fn serialized<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    static INSTALL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _in_process = INSTALL.lock().await;
    let lock_path = std::env::temp_dir().join(format!("relay-{name}.lock"));
    tokio::task::spawn_blocking(move || {
        let lock = std::fs::File::create(&lock_path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", lock_path.display()));
        lock.lock()
            .unwrap_or_else(|e| panic!("locking {}: {e}", lock_path.display()));
        f()
    })
    .await
    .unwrap_or_else(|e| match e.try_into_panic() {
        Ok(panic) => std::panic::resume_unwind(panic),
        Err(e) => panic!("install task failed: {e}"),
    })
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The Python interpreter of a virtual environment with the pinned `mcp` SDK
/// (`tests/mcp-clients/requirements.txt`), created on first use.
pub async fn python_with_mcp() -> Option<PathBuf> {
    let Some(python3) = find_executable("python3") else {
        return missing("python3");
    };
    let requirements = clients_dir().join("requirements.txt");
    let venv = workspace_root().join("target").join("mcp-venv");
    let python = venv.join("bin").join("python");
    let up_to_date = {
        let (python, requirements) = (python.clone(), requirements.clone());
        move || {
            // Each pinned `name==version` line is what `importlib.metadata` reports.
            let check = "import sys, importlib.metadata as m\n\
                for line in open(sys.argv[1]):\n\
                \x20   line = line.strip()\n\
                \x20   if line and not line.startswith('#'):\n\
                \x20       name, version = line.split('==')\n\
                \x20       assert m.version(name) == version, (name, m.version(name))\n";
            python.exists()
                && Command::new(&python)
                    .args(["-c", check])
                    .arg(&requirements)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
        }
    };
    if up_to_date() {
        return Some(python);
    }
    serialized("mcp-venv", move || {
        if up_to_date() {
            return;
        }
        run(
            Command::new(&python3).args(["-m", "venv"]).arg(&venv),
            "python3 -m venv",
        );
        run(
            Command::new(venv.join("bin").join("pip"))
                .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
                .arg(&requirements),
            "pip install -r tests/mcp-clients/requirements.txt",
        );
        assert!(up_to_date(), "the pinned MCP Python SDK is not importable");
    })
    .await;
    Some(python)
}

/// `node`, with the pinned npm packages of `tests/mcp-clients` installed (`npm ci` on first
/// use).
pub async fn node_with_mcp() -> Option<PathBuf> {
    let Some(node) = find_executable("node") else {
        return missing("node");
    };
    let dir = clients_dir();
    let up_to_date = {
        let dir = dir.clone();
        move || {
            let version = |path: PathBuf, pointer: &str| {
                let text = std::fs::read_to_string(path).ok()?;
                let json: serde_json::Value = serde_json::from_str(&text).ok()?;
                json.pointer(pointer)?.as_str().map(str::to_owned)
            };
            [
                "@modelcontextprotocol/sdk",
                "@modelcontextprotocol/inspector",
            ]
            .iter()
            .all(|name| {
                let pinned = version(
                    dir.join("package.json"),
                    &format!("/dependencies/{}", name.replace('/', "~1")),
                );
                let installed = version(
                    dir.join("node_modules").join(name).join("package.json"),
                    "/version",
                );
                pinned.is_some() && pinned == installed
            })
        }
    };
    if up_to_date() {
        return Some(node);
    }
    serialized("mcp-clients-npm", move || {
        if up_to_date() {
            return;
        }
        let npm = find_executable("npm").expect("npm is needed once to install tests/mcp-clients");
        run(
            Command::new(npm)
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir),
            "npm ci in tests/mcp-clients",
        );
        assert!(
            up_to_date(),
            "the pinned MCP npm packages are not installed"
        );
    })
    .await;
    Some(node)
}
