//! Test support for the `relay` binary: start the real server as a child process on a free
//! loopback port, against SQLite (a fresh data directory) or a fresh PostgreSQL database, and
//! talk to it over HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub use relay_test_support::*;

/// A fixed test key (Fernet format). Never a production key.
pub const TEST_KEY: &str = "3q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

pub fn relay_bin() -> &'static str {
    env!("CARGO_BIN_EXE_relay")
}

/// A port that was free a moment ago (needed when a provider must know Relay's callback URL
/// before Relay starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        random_token(9).to_lowercase().replace(['-', '_'], "x")
    )
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let p = std::env::temp_dir().join(unique("relay-test-"));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh PostgreSQL database, dropped at the end. `None` (skip) only outside CI when
/// PostgreSQL is unreachable; under `CI=true` an unreachable server fails the test.
pub struct PgDb {
    admin_url: String,
    pub name: String,
    pub url: String,
}

pub async fn pg_database() -> Option<PgDb> {
    use sqlx::Connection;
    let admin_url = std::env::var("RELAY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut conn = match sqlx::PgConnection::connect(&admin_url).await {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("PostgreSQL is required under CI=true but {admin_url} is unreachable: {e}");
            }
            eprintln!("skipping: PostgreSQL unreachable at {admin_url}: {e}");
            return None;
        }
    };
    let name = unique("relay_it_");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(&admin_url);
    Some(PgDb {
        url: format!("{base}/{name}"),
        name,
        admin_url,
    })
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let admin = self.admin_url.clone();
        let name = self.name.clone();
        // Best effort, on a thread of its own: Drop cannot be async.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut c)
                    .await;
                }
            });
        })
        .join();
    }
}

/// How to start a Relay process.
#[derive(Clone)]
pub struct RelayOptions {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub config_toml: String,
    pub env: Vec<(String, String)>,
    pub port: Option<u16>,
}

impl RelayOptions {
    pub fn new(data_dir: &Path, config_toml: &str) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            database_url: None,
            config_toml: config_toml.to_owned(),
            env: vec![("OAUTH_ENCRYPTION_KEY".into(), TEST_KEY.into())],
            port: None,
        }
    }

    pub fn with_env(mut self, k: &str, v: &str) -> Self {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }

    pub fn without_env(mut self, k: &str) -> Self {
        self.env.retain(|(key, _)| key != k);
        self
    }

    fn config_path(&self) -> PathBuf {
        self.data_dir.join("relay.toml")
    }

    fn command(&self, args: &[&str]) -> Command {
        std::fs::create_dir_all(&self.data_dir).unwrap();
        std::fs::write(self.config_path(), &self.config_toml).unwrap();
        let mut cmd = Command::new(relay_bin());
        cmd.args(["--config", self.config_path().to_str().unwrap()])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RELAY_DATA_DIR", &self.data_dir)
            .env("RUST_LOG", "info,relay=debug,relay_core=debug")
            .env("RELAY_LOG_FORMAT", "json")
            .env(
                "RELAY_LISTEN",
                format!("127.0.0.1:{}", self.port.unwrap_or(0)),
            )
            .kill_on_drop(true);
        if let Some(url) = &self.database_url {
            cmd.env("DATABASE_URL", url);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs a one-shot subcommand; returns (success, stdout, stderr).
    pub async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.command(args).output().await.expect("run relay");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts a one-shot subcommand with stdout and stderr piped, for a test that watches its
    /// progress or kills it half-way.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn relay")
    }

    /// `relay api-key create --role ROLE [--rate-limit N]`, returning the key (the last line of
    /// stdout).
    pub async fn create_key(&self, workspace: &str, role: &str, per_minute: Option<u32>) -> String {
        let n = per_minute.map(|n| n.to_string());
        let mut args = vec![
            "api-key",
            "create",
            "--workspace",
            workspace,
            "--role",
            role,
        ];
        if let Some(n) = &n {
            args.extend(["--rate-limit", n.as_str()]);
        }
        let (ok, stdout, stderr) = self.run(&args).await;
        assert!(ok, "api-key create failed: {stderr}");
        stdout.lines().last().expect("a key line").trim().to_owned()
    }

    /// A `service` key limited to `per_minute` requests per minute.
    pub async fn create_limited_api_key(&self, workspace: &str, per_minute: u32) -> String {
        self.create_key(workspace, "service", Some(per_minute))
            .await
    }

    /// An `admin` key (it may do everything, as most tests need: connections, the audit log,
    /// the webhook secret, other keys). Tests of what a `service` key may not do use
    /// [`RelayOptions::create_key`].
    pub async fn create_api_key(&self, workspace: &str) -> String {
        self.create_key(workspace, "admin", None).await
    }
}

pub struct Relay {
    pub opts: RelayOptions,
    child: Option<Child>,
    pub base_url: String,
    logs: Arc<Mutex<String>>,
    pub http: reqwest::Client,
}

impl Relay {
    pub async fn start(opts: RelayOptions) -> Relay {
        Self::try_start(opts)
            .await
            .unwrap_or_else(|logs| panic!("relay did not start:\n{logs}"))
    }

    /// Starts relay; `Err(logs)` when it exits or does not listen within 60 s.
    pub async fn try_start(opts: RelayOptions) -> Result<Relay, String> {
        let mut child = opts
            .command(&["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn relay");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let sink = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
                if let Some(i) = line.find("listening on http://") {
                    let rest = &line[i + "listening on ".len()..];
                    let url: String = rest
                        .chars()
                        .take_while(|c| !c.is_whitespace() && *c != '"')
                        .collect();
                    let _ = tx.send(url);
                }
            }
        });
        let base_url = tokio::select! {
            url = rx.recv() => url,
            status = child.wait() => {
                let _ = status;
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Err(logs.lock().unwrap().clone());
            }
            () = tokio::time::sleep(Duration::from_secs(60)) => None,
        };
        let Some(base_url) = base_url else {
            return Err(logs.lock().unwrap().clone());
        };
        Ok(Relay {
            opts,
            child: Some(child),
            base_url,
            logs,
            http: http_client(),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// The captured stderr, still readable after the process stopped.
    pub fn log_handle(&self) -> Arc<Mutex<String>> {
        self.logs.clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(Child::id).expect("running")
    }

    /// SIGTERM, then wait for a clean exit.
    pub async fn stop(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let pid = child.id().unwrap();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("relay exits after SIGTERM")
            .unwrap()
    }

    /// SIGKILL: a crash.
    pub async fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().await.unwrap();
    }

    pub async fn get(&self, path: &str, key: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str, key: &str) -> (u16, serde_json::Value) {
        let r = self.get(path, key).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn post_json(
        &self,
        path: &str,
        key: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn delete_json(&self, path: &str, key: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .delete(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }
}

/// A provider table pointing at a local fake (or any issuer), for relay.toml.
pub fn provider_toml(name: &str, kind: &str, issuer: &str, extra: &str) -> String {
    format!(
        "[providers.{name}]\nkind = \"{kind}\"\nissuer = \"{issuer}\"\nclient_id = \"relay-test\"\nclient_secret = \"relay-secret\"\nscopes = [\"openid\", \"email\", \"offline_access\"]\n{extra}\n"
    )
}

/// Refresh settings that keep tests fast: short lease and timeouts, millisecond backoff. The
/// background refresher is off, so that these read-path tests count only the refreshes their
/// reads cause; tests/replicas.rs covers the refresher.
pub const FAST_REFRESH: &str = "[refresher]\nenabled = false\n[refresh]\nlease_secs = 5\nprovider_timeout_ms = 2000\nattempts = 3\nbackoff_base_ms = 20\nbackoff_max_ms = 100\n";

/// The shared test Redis (`RELAY_TEST_REDIS_URL`), or `None` (skip) outside CI when it does
/// not answer; under `CI=true` an unreachable Redis fails the test.
pub async fn redis_url() -> Option<String> {
    let url =
        std::env::var("RELAY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let addr = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:6379")
        .to_owned();
    if redis_ping(&addr).await {
        return Some(url);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("Redis is required under CI=true but {addr} does not answer PING");
    }
    eprintln!("skipping: Redis unreachable at {addr}");
    None
}

/// Sends `PING` over a raw connection; true on `+PONG`.
pub async fn redis_ping(addr: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).await.ok()?;
        Some(buf[..n].starts_with(b"+PONG"))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// A private `redis-server` on a free loopback port, for tests that stop Redis (the shared
/// one serves other tests). Killed on drop.
pub struct PrivateRedis {
    child: Option<std::process::Child>,
    pub port: u16,
}

impl PrivateRedis {
    pub async fn start() -> Option<PrivateRedis> {
        let port = free_port();
        let child = match std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("redis-server is required under CI=true: {e}");
                }
                eprintln!("skipping: cannot start redis-server: {e}");
                return None;
            }
        };
        let r = PrivateRedis {
            child: Some(child),
            port,
        };
        for _ in 0..100 {
            if redis_ping(&format!("127.0.0.1:{port}")).await {
                return Some(r);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("a private redis-server did not start on port {port}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL): Redis is down from here on.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether python3 with `cryptography` is installed (required under `CI=true`).
pub fn python_fernet_available() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import cryptography.fernet"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 with `cryptography` is required under CI=true"
        );
        eprintln!("skipping: python3 with cryptography is not installed");
    }
    ok
}

/// Encrypts each plaintext with Python's Fernet under `key`: values exactly as the services
/// Relay replaces stored them.
pub fn python_fernet(key: &str, plaintexts: &[&str]) -> Vec<String> {
    let script = "import sys,json\nfrom cryptography.fernet import Fernet\nf=Fernet(sys.argv[1].encode())\nprint(json.dumps([f.encrypt(p.encode()).decode() for p in json.loads(sys.stdin.read())]))";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, key])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(plaintexts).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A new random Fernet key from Python's `Fernet.generate_key()`.
pub fn new_fernet_key() -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())",
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
