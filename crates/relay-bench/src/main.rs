//! The load benchmark behind docs/BENCHMARKS.md, in one go, on loopback only.
//!
//! It measures, with `wrk` as the load generator (64 connections by default):
//! (a) a minimal axum endpoint, the ceiling of this machine;
//! (b) `GET /connections/{id}/token` on a warm cache, `relay serve` on SQLite;
//! (c) the same on PostgreSQL + Redis;
//! (d) a stampede of 1,000 concurrent reads of a due token, against a fake provider that
//!     answers after a fixed latency, counting the refreshes that reach it;
//! and the resident memory of a replica holding 100,000 connections.
//! Relay runs as users run it: API-key check, rate limiting, metrics and logs on.
//!
//! Usage (see scripts/bench.sh): `relay-bench --relay-bin target/release/relay [--duration-secs 10]
//! [--connections 64] [--rss-connections 100000] [--only b,c,d,rss] [--rounds 1]`. The ceiling
//! (a) is always measured: the other runs are compared with it. With `--rounds N`, (a), (b) and
//! (c) are measured in turn N times and the report gives the medians (each ratio is the median
//! of the ratios within a round), which keeps the drift of a shared machine out of the ratios.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay_test_support::{FakeProvider, FakeProviderConfig};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A throwaway key for the benchmark's own Relay processes (Fernet format); never a real one.
const BENCH_KEY: &str = "3q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
/// Per-key limit of the benchmark's API key: far above what one machine can send, so the
/// limiter runs on every request without refusing any.
const BENCH_RATE_LIMIT: &str = "100000000";
const STAMPEDE: usize = 1000;
const PROVIDER_LATENCY: Duration = Duration::from_millis(200);

struct Options {
    relay_bin: PathBuf,
    duration_secs: u64,
    connections: u32,
    rss_connections: usize,
    postgres_admin_url: String,
    redis_url: String,
    /// The runs to do (`--only b,d`); all of them by default.
    only: HashSet<String>,
    /// How many times (a), (b) and (c) are measured in turn (`--rounds 3`); the report gives
    /// the medians.
    rounds: usize,
}

impl Options {
    fn runs(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.contains(name)
    }
}

type BenchResult<T> = Result<T, String>;

#[derive(Debug, Clone, Copy)]
struct Measured {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    relay_test_support::install_crypto_provider();
    let args: Vec<String> = std::env::args().collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    let opts = Options {
        relay_bin: PathBuf::from(
            arg(&args, "--relay-bin").unwrap_or_else(|| "target/release/relay".into()),
        ),
        duration_secs: arg(&args, "--duration-secs")
            .and_then(|v| v.parse().ok())
            .unwrap_or(10),
        connections: arg(&args, "--connections")
            .and_then(|v| v.parse().ok())
            .unwrap_or(64),
        rss_connections: arg(&args, "--rss-connections")
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000),
        postgres_admin_url: std::env::var("RELAY_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
        redis_url: std::env::var("RELAY_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        only: arg(&args, "--only")
            .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_default(),
        rounds: arg(&args, "--rounds")
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(1),
    };
    if let Err(e) = runtime.block_on(run(opts)) {
        eprintln!("benchmark failed: {e}");
        std::process::exit(1);
    }
}

async fn run(opts: Options) -> BenchResult<()> {
    let fake = FakeProvider::start(FakeProviderConfig::microsoft()).await;
    let ceiling = ceiling_server().await?;
    // (b) and the RSS run on SQLite; (c) and (d) on PostgreSQL + Redis. Both replicas are up
    // for the whole benchmark, so that the rounds can alternate between them.
    let sqlite_dir = temp_dir("sqlite")?;
    let sqlite = RelayProcess::start(&opts, &sqlite_dir, &fake, None, &[]).await?;
    let postgres = if opts.runs("c") || opts.runs("d") {
        match PostgresRelay::start(&opts, &fake).await {
            Ok(pg) => Some(pg),
            Err(e) => {
                sqlite.stop().await;
                let _ = std::fs::remove_dir_all(&sqlite_dir);
                return Err(e);
            }
        }
    } else {
        None
    };
    let measured = measure(&opts, &fake, ceiling, &sqlite, postgres.as_ref()).await;
    if let Some(pg) = postgres {
        pg.stop(&opts).await;
    }
    sqlite.stop().await;
    let _ = std::fs::remove_dir_all(&sqlite_dir);
    report(&opts, &measured?);
    Ok(())
}

/// One round of the throughput runs, measured one after the other.
struct Round {
    a: Measured,
    b: Option<Measured>,
    c: Option<Measured>,
}

struct Report {
    rounds: Vec<Round>,
    /// The SQLite replica's resident memory (kB) before the first round and after the last.
    sqlite_rss_over_rounds: (u64, u64),
    /// The stampede and the refreshes that reached the provider.
    d: Option<(Measured, u64)>,
    rss_kb: Option<u64>,
}

async fn measure(
    opts: &Options,
    fake: &FakeProvider,
    ceiling: std::net::SocketAddr,
    sqlite: &RelayProcess,
    postgres: Option<&PostgresRelay>,
) -> BenchResult<Report> {
    let mut token_url_b = None;
    if opts.runs("b") {
        let id = sqlite.import(fake, "bench-b", 3600).await?;
        sqlite.warm(&id).await?;
        token_url_b = Some(sqlite.url(&format!("/connections/{id}/token")));
    }
    let mut token_url_c = None;
    if let Some(pg) = postgres.filter(|_| opts.runs("c")) {
        let id = pg.relay.import(fake, "bench-c", 3600).await?;
        pg.relay.warm(&id).await?;
        token_url_c = Some(pg.relay.url(&format!("/connections/{id}/token")));
    }

    // (a), (b), (c) in turn, `rounds` times: on a machine whose speed drifts (a shared VM),
    // each round's ratios compare runs made within seconds of each other.
    let mut rounds = Vec::with_capacity(opts.rounds);
    let rss_before_rounds = sqlite.rss_kb()?;
    for round in 1..=opts.rounds {
        let a = wrk(opts, &format!("http://{ceiling}/"), None).await?;
        eprintln!("round {round} (a) ceiling: {a:?}");
        let mut b = None;
        if let Some(url) = &token_url_b {
            let m = wrk(opts, url, Some(&sqlite.key)).await?;
            eprintln!("round {round} (b) sqlite: {m:?}");
            b = Some(m);
        }
        let mut c = None;
        if let (Some(url), Some(pg)) = (&token_url_c, postgres) {
            let m = wrk(opts, url, Some(&pg.relay.key)).await?;
            eprintln!("round {round} (c) postgres + redis: {m:?}");
            c = Some(m);
        }
        rounds.push(Round { a, b, c });
    }
    // What the SQLite replica kept of the load: it must level off, not grow with the
    // requests served (histogram samples once did, until upkeep folded them).
    let sqlite_rss_over_rounds = (rss_before_rounds, sqlite.rss_kb()?);

    let mut d = None;
    if let Some(pg) = postgres.filter(|_| opts.runs("d")) {
        let id = pg.relay.import(fake, "bench-d", 5).await?;
        fake.set_token_delay(PROVIDER_LATENCY);
        let before = fake.refresh_requests();
        let measured = stampede(&pg.relay, &id).await;
        let refreshes = fake.refresh_requests() - before;
        fake.set_token_delay(Duration::ZERO);
        let measured = measured?;
        eprintln!("(d) stampede: {measured:?}, {refreshes} refreshes");
        d = Some((measured, refreshes));
    }

    // Memory: the SQLite replica holding `rss_connections` connections, all cached.
    let mut rss_kb = None;
    if opts.runs("rss") {
        rss_kb = Some(sqlite.rss_with(fake, opts.rss_connections).await?);
    }
    Ok(Report {
        rounds,
        sqlite_rss_over_rounds,
        d,
        rss_kb,
    })
}

/// The median (the mean of the two middle values for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// A run over the rounds: medians of its figures and of its ratios to the same round's
/// ceiling.
struct Summary {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    rps_ratio: f64,
    p99_ratio: f64,
}

fn summarize(rounds: &[Round], run: impl Fn(&Round) -> Option<Measured>) -> Option<Summary> {
    let pairs: Vec<(Measured, Measured)> =
        rounds.iter().filter_map(|r| Some((r.a, run(r)?))).collect();
    if pairs.is_empty() {
        return None;
    }
    let of = |f: &dyn Fn(&(Measured, Measured)) -> f64| median(pairs.iter().map(f).collect());
    Some(Summary {
        rps: of(&|(_, m)| m.rps),
        p50_ms: of(&|(_, m)| m.p50_ms),
        p99_ms: of(&|(_, m)| m.p99_ms),
        rps_ratio: of(&|(a, m)| m.rps / a.rps),
        p99_ratio: of(&|(a, m)| m.p99_ms / a.p99_ms),
    })
}

fn report(opts: &Options, r: &Report) {
    println!();
    println!(
        "Relay load benchmark: {} cores, wrk -t2 -c{} -d{}s, loopback only, {} round(s)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        opts.connections,
        opts.duration_secs,
        r.rounds.len()
    );
    if r.rounds.len() > 1 {
        println!(
            "| round | (a) rps | (a) p99 ms | (b) rps | (b) vs (a) | (b) p99 ms | (c) rps | (c) vs (a) | (c) p99 ms |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (i, round) in r.rounds.iter().enumerate() {
            let cell = |m: Option<Measured>| match m {
                Some(m) => format!(
                    "{:.0} | {:.0} % | {:.2}",
                    m.rps,
                    100.0 * m.rps / round.a.rps,
                    m.p99_ms
                ),
                None => "- | - | -".to_owned(),
            };
            println!(
                "| {} | {:.0} | {:.2} | {} | {} |",
                i + 1,
                round.a.rps,
                round.a.p99_ms,
                cell(round.b),
                cell(round.c)
            );
        }
        println!("Medians over the rounds (ratios: the median of each round's ratio):");
    }
    println!("| run | requests/s | p50 ms | p99 ms | rps vs (a) | p99 vs (a) | target |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    let row = |name: &str, s: &Summary, target: &str| {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {:.0} % | {:.2}× | {target} |",
            s.rps,
            s.p50_ms,
            s.p99_ms,
            100.0 * s.rps_ratio,
            s.p99_ratio
        );
    };
    if let Some(a) = summarize(&r.rounds, |round| Some(round.a)) {
        row("(a) axum ceiling", &a, "-");
    }
    let mut verdicts = Vec::new();
    if let Some(b) = summarize(&r.rounds, |round| round.b) {
        row("(b) token, SQLite, warm", &b, "≥ 70 %, p99 ≤ 1.5×");
        let ok = b.rps_ratio >= 0.7 && b.p99_ratio <= 1.5;
        verdicts.push(format!("(b) {}", verdict(ok)));
    }
    if let Some(c) = summarize(&r.rounds, |round| round.c) {
        row("(c) token, Postgres + Redis, warm", &c, "≥ 50 %, p99 ≤ 2×");
        let ok = c.rps_ratio >= 0.5 && c.p99_ratio <= 2.0;
        verdicts.push(format!("(c) {}", verdict(ok)));
    }
    if r.rounds.iter().any(|round| round.b.is_some()) {
        let (before, after) = r.sqlite_rss_over_rounds;
        println!(
            "SQLite replica RSS: {:.1} MB before the rounds, {:.1} MB after",
            before as f64 / 1024.0,
            after as f64 / 1024.0
        );
    }
    if let Some((d, refreshes)) = r.d {
        println!(
            "| (d) stampede: {STAMPEDE} reads at expiry | - | {:.2} | {:.2} | - | - | 1 refresh, p99 < {} ms |",
            d.p50_ms,
            d.p99_ms,
            PROVIDER_LATENCY.as_millis() + 20
        );
        println!("provider refreshes in (d): {refreshes}");
        let ok = refreshes == 1 && d.p99_ms < PROVIDER_LATENCY.as_millis() as f64 + 20.0;
        verdicts.push(format!("(d) {}", verdict(ok)));
    }
    if let Some(rss) = r.rss_kb {
        println!(
            "RSS with {} connections cached: {:.1} MB (target < 150 MB)",
            opts.rss_connections,
            rss as f64 / 1024.0
        );
        verdicts.push(format!("memory {}", verdict(rss < 150 * 1024)));
    }
    println!("targets: {}", verdicts.join(" "));
}

/// The PostgreSQL + Redis replica of (c) and (d), on a database of its own (dropped at the
/// end) and a key prefix of its own in Redis.
struct PostgresRelay {
    relay: RelayProcess,
    db_name: String,
    dir: PathBuf,
}

impl PostgresRelay {
    async fn start(opts: &Options, fake: &FakeProvider) -> BenchResult<Self> {
        let db_name = format!("relay_bench_{}", std::process::id());
        psql(
            &opts.postgres_admin_url,
            &format!("CREATE DATABASE {db_name}"),
        )
        .await?;
        // The database is on this host: TLS over loopback protects nothing, and with sqlx
        // 0.9.0 it costs a ~40 ms Nagle stall per round trip (see docs/BENCHMARKS.md), so Relay
        // connects without it, as docs/OPERATIONS.md recommends for a database on the same host.
        let pg_url = format!(
            "{}/{db_name}?sslmode=disable",
            opts.postgres_admin_url
                .rsplit_once('/')
                .map(|(b, _)| b)
                .unwrap_or(&opts.postgres_admin_url)
        );
        let dir = match temp_dir("pg") {
            Ok(d) => d,
            Err(e) => {
                drop_database(opts, &db_name).await;
                return Err(e);
            }
        };
        let prefix = format!("relay-bench:{}:", std::process::id());
        let started = RelayProcess::start(
            opts,
            &dir,
            fake,
            Some(&pg_url),
            &[
                ("REDIS_URL", &opts.redis_url),
                ("REDIS_KEY_PREFIX", &prefix),
            ],
        )
        .await;
        match started {
            Ok(relay) => Ok(Self {
                relay,
                db_name,
                dir,
            }),
            Err(e) => {
                drop_database(opts, &db_name).await;
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    async fn stop(self, opts: &Options) {
        self.relay.stop().await;
        drop_database(opts, &self.db_name).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn drop_database(opts: &Options, db_name: &str) {
    let _ = psql(
        &opts.postgres_admin_url,
        &format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"),
    )
    .await;
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn temp_dir(tag: &str) -> BenchResult<PathBuf> {
    let dir = std::env::temp_dir().join(format!("relay-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

/// The ceiling: the smallest axum app, on this process's runtime.
async fn ceiling_server() -> BenchResult<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

/// Runs wrk against a loopback URL and reads its requests/s and latency percentiles.
async fn wrk(opts: &Options, url: &str, key: Option<&str>) -> BenchResult<Measured> {
    if !url.starts_with("http://127.0.0.1:") {
        return Err(format!("refusing to load a non-loopback URL: {url}"));
    }
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t2",
        &format!("-c{}", opts.connections),
        &format!("-d{}s", opts.duration_secs),
        "--latency",
    ]);
    if let Some(k) = key {
        cmd.args(["-H", &format!("Authorization: Bearer {k}")]);
    }
    let out = cmd
        .arg(url)
        .output()
        .await
        .map_err(|e| format!("running wrk (apt-get install wrk): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("wrk failed: {text}"));
    }
    if text.contains("Non-2xx or 3xx responses") {
        return Err(format!("the benchmarked endpoint answered errors:\n{text}"));
    }
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk output:\n{text}"))?;
    let pct = |p: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(p))
            .and_then(|v| parse_wrk_duration(v.trim()))
            .ok_or_else(|| format!("no {p} latency in wrk output:\n{text}"))
    };
    Ok(Measured {
        rps,
        p50_ms: pct("50%")?,
        p99_ms: pct("99%")?,
    })
}

/// `201.00us`, `2.10ms`, `1.02s` → milliseconds.
fn parse_wrk_duration(v: &str) -> Option<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    match unit {
        "us" => Some(n / 1000.0),
        "ms" => Some(n),
        "s" => Some(n * 1000.0),
        "m" => Some(n * 60_000.0),
        _ => None,
    }
}

async fn psql(admin_url: &str, sql: &str) -> BenchResult<()> {
    let out = Command::new("psql")
        .args([admin_url, "-q", "-c", sql])
        .output()
        .await
        .map_err(|e| format!("running psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "psql: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// One `relay serve` child process, with an API key of its workspace.
struct RelayProcess {
    child: Child,
    base: String,
    key: String,
    http: reqwest::Client,
}

impl RelayProcess {
    async fn start(
        opts: &Options,
        dir: &Path,
        fake: &FakeProvider,
        database_url: Option<&str>,
        env: &[(&str, &str)],
    ) -> BenchResult<Self> {
        let config = format!(
            "[providers.test]\nkind = \"oidc\"\nissuer = \"{}\"\nclient_id = \"relay-test\"\nclient_secret = \"relay-secret\"\nscopes = [\"openid\", \"offline_access\"]\n",
            fake.issuer()
        );
        let config_path = dir.join("relay.toml");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let command = |args: &[&str]| {
            let mut c = Command::new(&opts.relay_bin);
            c.arg("--config")
                .arg(&config_path)
                .args(args)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("RELAY_DATA_DIR", dir)
                .env("OAUTH_ENCRYPTION_KEY", BENCH_KEY)
                .env("RELAY_LISTEN", "127.0.0.1:0")
                .env("RELAY_LOG_FORMAT", "json")
                .kill_on_drop(true);
            if let Some(url) = database_url {
                c.env("DATABASE_URL", url);
            }
            for (k, v) in env {
                c.env(k, v);
            }
            c
        };
        let out = command(&[
            "api-key",
            "create",
            "--workspace",
            "bench",
            "--rate-limit",
            BENCH_RATE_LIMIT,
        ])
        .output()
        .await
        .map_err(|e| format!("running {}: {e}", opts.relay_bin.display()))?;
        if !out.status.success() {
            return Err(format!(
                "relay api-key create: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let key = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let mut child = command(&["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting relay serve: {e}"))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(i) = line.find("listening on http://") {
                    let url: String = line[i + "listening on ".len()..]
                        .chars()
                        .take_while(|c| !c.is_whitespace() && *c != '"')
                        .collect();
                    let _ = tx.send(url);
                }
            }
        });
        let base = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .ok()
            .flatten()
            .ok_or("relay serve did not start listening")?;
        Ok(Self {
            child,
            base,
            key,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(2048)
                .build()
                .map_err(|e| e.to_string())?,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn import(
        &self,
        fake: &FakeProvider,
        actor: &str,
        expires_in: u64,
    ) -> BenchResult<String> {
        let (access, refresh) = fake.issue_tokens_directly();
        let r = self
            .http
            .post(self.url("/connections"))
            .bearer_auth(&self.key)
            .json(
                &json!({"provider": "test", "actor_id": actor, "access_token": access,
                          "refresh_token": refresh, "expires_in": expires_in}),
            )
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status().as_u16() != 201 {
            return Err(format!("import answered {}", r.status()));
        }
        let body: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
        body["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "import returned no id".to_owned())
    }

    async fn warm(&self, id: &str) -> BenchResult<()> {
        for _ in 0..3 {
            let r = self
                .http
                .get(self.url(&format!("/connections/{id}/token")))
                .bearer_auth(&self.key)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !r.status().is_success() {
                return Err(format!("warm-up read answered {}", r.status()));
            }
        }
        Ok(())
    }

    /// Imports `n` connections (32 at a time), reads each token once so all are cached, and
    /// returns VmRSS in KiB.
    async fn rss_with(&self, fake: &FakeProvider, n: usize) -> BenchResult<u64> {
        let this = Arc::new((self.http.clone(), self.base.clone(), self.key.clone()));
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (access, refresh) = fake.issue_tokens_directly();
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..32 {
            let (this, next, access, refresh) =
                (this.clone(), next.clone(), access.clone(), refresh.clone());
            workers.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return Ok::<(), String>(());
                    }
                    let (http, base, key) = &*this;
                    let r = http
                        .post(format!("{base}/connections"))
                        .bearer_auth(key)
                        .json(&json!({"provider": "test", "actor_id": format!("rss-{i}"),
                                      "access_token": access, "refresh_token": refresh,
                                      "expires_in": 86_400}))
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    if r.status().as_u16() != 201 {
                        return Err(format!("import {i} answered {}", r.status()));
                    }
                    let body: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
                    let id = body["id"].as_str().unwrap_or_default().to_owned();
                    let r = http
                        .get(format!("{base}/connections/{id}/token"))
                        .bearer_auth(key)
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    if !r.status().is_success() {
                        return Err(format!("read {i} answered {}", r.status()));
                    }
                }
            }));
        }
        for w in workers {
            w.await.map_err(|e| e.to_string())??;
        }
        eprintln!(
            "imported and read {n} connections in {:?}",
            started.elapsed()
        );
        self.rss_kb()
    }

    /// The process's resident memory (`VmRSS`), in kB.
    fn rss_kb(&self) -> BenchResult<u64> {
        let pid = self.child.id().ok_or("relay exited")?;
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| "no VmRSS".to_owned())
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
    }
}

/// 1,000 reads of a due token released at once; latency of each, from release to answer.
async fn stampede(relay: &RelayProcess, id: &str) -> BenchResult<Measured> {
    let url = relay.url(&format!("/connections/{id}/token"));
    // Open the connections first, so the stampede measures Relay, not TCP handshakes.
    let warmups: Vec<_> = (0..STAMPEDE)
        .map(|_| {
            let (http, url, key) = (relay.http.clone(), relay.url("/health"), relay.key.clone());
            tokio::spawn(async move { http.get(url).bearer_auth(key).send().await.is_ok() })
        })
        .collect();
    for w in warmups {
        let _ = w.await;
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(STAMPEDE + 1));
    let tasks: Vec<_> = (0..STAMPEDE)
        .map(|_| {
            let (http, url, key, barrier) = (
                relay.http.clone(),
                url.clone(),
                relay.key.clone(),
                barrier.clone(),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                let started = Instant::now();
                let r = http.get(url).bearer_auth(key).send().await;
                let ok = match r {
                    Ok(r) if r.status().is_success() => r
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .and_then(|b| b["access_token"].as_str().map(str::to_owned)),
                    _ => None,
                };
                (started.elapsed(), ok)
            })
        })
        .collect();
    let all_started = Instant::now();
    barrier.wait().await;
    let mut latencies = Vec::with_capacity(STAMPEDE);
    let mut tokens = HashSet::new();
    for t in tasks {
        let (elapsed, token) = t.await.map_err(|e| e.to_string())?;
        let token = token.ok_or("a stampede read failed")?;
        tokens.insert(token);
        latencies.push(elapsed.as_secs_f64() * 1000.0);
    }
    let wall = all_started.elapsed();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    eprintln!("stampede: {} distinct tokens handed out", tokens.len());
    Ok(Measured {
        rps: STAMPEDE as f64 / wall.as_secs_f64(),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
    })
}
