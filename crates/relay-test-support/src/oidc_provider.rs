//! Runs panva's certified `oidc-provider` (Node.js, `tests/oidc-provider/server.mjs`) on
//! loopback, so Relay can be tested against a real, standards-strict authorization server
//! rather than only against our own fake.
//!
//! # Public API
//!
//! * [`OidcProviderHarness::start`]`(redirect_uris) -> Option<OidcProviderHarness>` (async), or
//!   [`OidcProviderHarness::start_with`]`(OidcProviderOptions)` for TTLs, rotation and account.
//!   Returns `None` (the test should skip) only when `node` is not installed and `CI` is not
//!   `true`; under CI a missing `node` panics. Installs the pinned npm packages with `npm ci`
//!   on first use. The Node process is killed when the harness is dropped.
//! * [`OidcProviderHarness::issuer`], [`OidcProviderHarness::client_id`],
//!   [`OidcProviderHarness::client_secret`], [`OidcProviderHarness::output`].
//! * [`complete_browser_flow`]`(authorize_url) -> CallbackRedirect` (async): the headless user
//!   logs in and consents; returns where the provider sent the browser back.
//!
//! # What the server does (see `server.mjs`)
//!
//! Endpoints come from discovery (`/auth`, `/token`, `/token/revocation`, `/me`, `/jwks`,
//! `/token/introspection`). One client, `relay-test` / `relay-secret`, registered for
//! `client_secret_basic` (oidc-provider also accepts `client_secret_post` for it: it treats
//! the two as interchangeable). PKCE S256 is required. Every authorization response, errors
//! included, carries `iss` (RFC 9207). The account `user-1` (or the request's
//! `login_hint`) is logged in automatically and every requested scope is granted;
//! `login_hint=deny` makes the user refuse (`error=access_denied`). Refresh tokens are issued
//! only when `offline_access` is granted, which oidc-provider does only if the request also has
//! `prompt=consent`; every refresh rotates the refresh token, and replaying a rotated one
//! revokes the whole grant.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::browser::CallbackRedirect;

/// Settings for [`OidcProviderHarness::start_with`].
#[derive(Debug, Clone)]
pub struct OidcProviderOptions {
    /// Redirect URIs registered for the client (exact match, as the spec requires).
    pub redirect_uris: Vec<String>,
    /// Access token lifetime in seconds. Default 3600.
    pub access_token_ttl: u64,
    /// Refresh token (and grant) lifetime in seconds. Default 14 days.
    pub refresh_token_ttl: u64,
    /// Rotate the refresh token on every refresh. Default true.
    pub rotate_refresh_tokens: bool,
    /// Issue refresh tokens even when `offline_access` was not granted. Default false.
    pub always_issue_refresh_token: bool,
    /// Account logged in when the request has no `login_hint`. Default `user-1`.
    pub account_id: String,
}

impl OidcProviderOptions {
    /// Defaults for the given redirect URIs.
    pub fn new(redirect_uris: &[String]) -> Self {
        Self {
            redirect_uris: redirect_uris.to_vec(),
            access_token_ttl: 3600,
            refresh_token_ttl: 14 * 24 * 3600,
            rotate_refresh_tokens: true,
            always_issue_refresh_token: false,
            account_id: "user-1".to_owned(),
        }
    }
}

/// A running `oidc-provider`. Dropping it kills the Node process.
#[derive(Debug)]
pub struct OidcProviderHarness {
    issuer: String,
    output: Arc<Mutex<String>>,
    _child: Child,
}

/// The client registered in `server.mjs`.
const CLIENT_ID: &str = "relay-test";
const CLIENT_SECRET: &str = "relay-secret";
/// Upper bound for the server to print READY once spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Keep at most this much of the server's output for diagnostics.
const OUTPUT_CAP: usize = 64 * 1024;

impl OidcProviderHarness {
    /// Starts the provider with default options; see [`OidcProviderHarness::start_with`].
    pub async fn start(redirect_uris: &[String]) -> Option<OidcProviderHarness> {
        Self::start_with(OidcProviderOptions::new(redirect_uris)).await
    }

    /// Finds `node`, installs the npm packages if needed, spawns `server.mjs` on a free loopback
    /// port and waits until it prints `READY <issuer>`.
    ///
    /// Returns `None` only when `node` is absent and the `CI` environment variable is not
    /// `true`. Panics, with the server's output, on any other problem.
    pub async fn start_with(options: OidcProviderOptions) -> Option<OidcProviderHarness> {
        let Some(node) = find_executable("node") else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "node (Node.js >= 20) is required to run the oidc-provider tests under CI, \
                     but it was not found on PATH (or in $RELAY_NODE)"
                );
            }
            eprintln!("node not found on PATH: skipping the oidc-provider test");
            return None;
        };
        let dir = harness_dir();
        ensure_installed(&dir).await;

        let mut command = Command::new(&node);
        command
            .arg("server.mjs")
            .arg("0")
            .current_dir(&dir)
            .env("RELAY_REDIRECT_URIS", options.redirect_uris.join(" "))
            .env("OIDC_CLIENT_ID", CLIENT_ID)
            .env("OIDC_CLIENT_SECRET", CLIENT_SECRET)
            .env("OIDC_AUTH_METHOD", "client_secret_basic")
            .env("ACCESS_TOKEN_TTL", options.access_token_ttl.to_string())
            .env("REFRESH_TOKEN_TTL", options.refresh_token_ttl.to_string())
            .env(
                "ROTATE_REFRESH_TOKENS",
                options.rotate_refresh_tokens.to_string(),
            )
            .env(
                "ALWAYS_ISSUE_REFRESH_TOKEN",
                options.always_issue_refresh_token.to_string(),
            )
            .env("OIDC_ACCOUNT_ID", &options.account_id)
            .env_remove("PORT")
            .env_remove("DEBUG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {} server.mjs failed: {e}", node.display()));

        let output = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr was piped");
        tokio::spawn(drain(stderr, output.clone()));
        let stdout = child.stdout.take().expect("stdout was piped");
        let mut lines = BufReader::new(stdout).lines();

        let wait_ready = async {
            while let Some(line) = lines.next_line().await.ok().flatten() {
                if let Some(issuer) = line.strip_prefix("READY ") {
                    return Some(issuer.trim().to_owned());
                }
                append(&output, &line);
            }
            None
        };
        let issuer = match tokio::time::timeout(READY_TIMEOUT, wait_ready).await {
            Ok(Some(issuer)) => issuer,
            outcome => {
                let status = child.try_wait().ok().flatten();
                // Give the stderr reader a moment to collect the reason.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let log = output.lock().map(|o| o.clone()).unwrap_or_default();
                panic!(
                    "oidc-provider did not become ready ({}; exit status {status:?}). Output:\n{log}",
                    if outcome.is_err() {
                        "timed out"
                    } else {
                        "stdout closed"
                    }
                );
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(drain(lines.into_inner(), output.clone()));

        Some(OidcProviderHarness {
            issuer,
            output,
            _child: child,
        })
    }

    /// The issuer, `http://127.0.0.1:PORT` (no trailing slash); discovery is at
    /// `{issuer}/.well-known/openid-configuration`.
    pub fn issuer(&self) -> String {
        self.issuer.clone()
    }

    /// The registered client's id, `relay-test`.
    pub fn client_id(&self) -> String {
        CLIENT_ID.to_owned()
    }

    /// The registered client's secret, `relay-secret`.
    pub fn client_secret(&self) -> String {
        CLIENT_SECRET.to_owned()
    }

    /// What the Node process wrote so far (stderr and non-READY stdout), for diagnostics.
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }
}

/// Performs the user's part of an authorization request at the oidc-provider harness: follows
/// the provider's own redirects (authorization endpoint → interaction → resume) with a private
/// cookie jar, letting the harness log in and consent automatically, and returns the redirect
/// to the client's `redirect_uri` (code, state, iss, or error).
///
/// Each call uses a fresh cookie jar, i.e. a new browser session.
pub async fn complete_browser_flow(authorize_url: &str) -> CallbackRedirect {
    crate::browser::browser_authorize(authorize_url).await
}

/// `tests/oidc-provider` at the root of the workspace.
pub fn harness_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("..")
        .join("tests")
        .join("oidc-provider")
}

fn append(output: &Mutex<String>, line: &str) {
    if let Ok(mut output) = output.lock()
        && output.len() < OUTPUT_CAP
    {
        output.push_str(line);
        output.push('\n');
    }
}

async fn drain(stream: impl AsyncRead + Unpin, output: Arc<Mutex<String>>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        append(&output, &line);
    }
}

/// `$RELAY_NODE` (for `node`) or the first executable `name` on `PATH`.
pub(crate) fn find_executable(name: &str) -> Option<PathBuf> {
    if name == "node"
        && let Some(explicit) = std::env::var_os("RELAY_NODE").filter(|v| !v.is_empty())
    {
        return Some(PathBuf::from(explicit));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The `oidc-provider` version pinned in `package.json`, and the one installed, if any.
fn pinned_and_installed(dir: &Path) -> (Option<String>, Option<String>) {
    let version_in = |path: PathBuf, pointer: &str| {
        let text = std::fs::read_to_string(path).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json.pointer(pointer)?.as_str().map(str::to_owned)
    };
    (
        version_in(dir.join("package.json"), "/dependencies/oidc-provider"),
        version_in(
            dir.join("node_modules/oidc-provider/package.json"),
            "/version",
        ),
    )
}

/// Runs `npm ci` in `dir` unless the pinned version is already installed. Serialized within
/// the process by a mutex and across processes by an advisory file lock.
async fn ensure_installed(dir: &Path) {
    static INSTALL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _in_process = INSTALL.lock().await;

    let up_to_date = |dir: &Path| {
        let (pinned, installed) = pinned_and_installed(dir);
        pinned.is_some() && pinned == installed
    };
    if up_to_date(dir) {
        return;
    }

    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let lock_path = std::env::temp_dir().join("relay-oidc-provider-npm.lock");
        let lock = std::fs::File::create(&lock_path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", lock_path.display()));
        lock.lock()
            .unwrap_or_else(|e| panic!("locking {}: {e}", lock_path.display()));
        if up_to_date(&dir) {
            return;
        }
        let npm = find_executable("npm").unwrap_or_else(|| {
            panic!(
                "node is installed but npm is not on PATH; npm is needed once to install \
                 {}/node_modules (npm ci)",
                dir.display()
            )
        });
        let output = std::process::Command::new(&npm)
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {} ci failed: {e}", npm.display()));
        if !output.status.success() || !up_to_date(&dir) {
            panic!(
                "`npm ci` in {} failed ({}):\n{}\n{}",
                dir.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    })
    .await
    .unwrap_or_else(|e| match e.try_into_panic() {
        Ok(panic) => std::panic::resume_unwind(panic),
        Err(e) => panic!("npm install task failed: {e}"),
    });
}
