//! Benchmark: audit records stored with group commit ([`AuditLog`]: one writer task, one
//! transaction per batch) versus one transaction per record ([`DirectAudit`]), with many
//! concurrent callers that each wait for their record, as token reads do.
//!
//! `cargo bench -p relay-store --bench audit_group_commit` (SQLite in a temporary file, and
//! PostgreSQL at RELAY_TEST_POSTGRES_URL when it answers). Figures go to docs/BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use relay_core::WorkspaceId;
use relay_core::audit::{AuditAction, AuditEvent, AuditLog, AuditSink, DirectAudit, GroupCommit};
use relay_core::clock::Timestamp;
use relay_store::Database;

const CALLERS: usize = 64;
const RECORDS_PER_CALLER: usize = 100;

fn event(n: usize) -> AuditEvent {
    AuditEvent::new(
        WorkspaceId::from_stored("bench".to_owned()),
        AuditAction::TokenRead,
        Timestamp(1_750_000_000_000 + n as i64),
    )
    .connection_id("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
    .actor_id("user-42")
    .provider("google")
    .api_key_id("key_0193a1b2c3d47e5f8a9b0c1d2e3f4a5b")
}

/// Runs CALLERS tasks, each storing RECORDS_PER_CALLER records one after another; returns
/// records per second and the median and 99th percentile of one call.
async fn run(sink: Arc<dyn AuditSink>) -> (f64, Duration, Duration) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CALLERS {
        let sink = sink.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(RECORDS_PER_CALLER);
            for i in 0..RECORDS_PER_CALLER {
                let t = Instant::now();
                sink.record(event(c * RECORDS_PER_CALLER + i))
                    .await
                    .expect("stored");
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("caller"));
    }
    let elapsed = started.elapsed();
    all.sort();
    let rate = all.len() as f64 / elapsed.as_secs_f64();
    (rate, all[all.len() / 2], all[all.len() * 99 / 100])
}

async fn bench(label: &str, db: Database) {
    let key = Arc::new(relay_core::audit::AuditKey::from_bytes(&[1u8; 32]));
    db.install_audit_key(key.clone());
    let direct = run(Arc::new(DirectAudit(db.audit_store()))).await;
    let grouped = run(Arc::new(AuditLog::spawn(
        db.audit_store(),
        GroupCommit::default(),
    )))
    .await;
    for (mode, (rate, p50, p99)) in [
        ("one transaction per record", direct),
        ("group commit", grouped),
    ] {
        println!(
            "{label:10} {mode:28} {rate:>9.0} records/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
    let report = relay_core::audit::verify(db.audit_store().as_ref(), &key, None, &[])
        .await
        .expect("verify");
    assert_eq!(report.broken, None);
    assert_eq!(report.records, (2 * CALLERS * RECORDS_PER_CALLER) as u64);
    db.close().await;
}

#[tokio::main]
async fn main() {
    println!(
        "{CALLERS} concurrent callers x {RECORDS_PER_CALLER} records each, every caller waits for its record"
    );
    let file = std::env::temp_dir().join(format!("relay_bench_{}.db", std::process::id()));
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let db = relay_store::connect(&url).await.expect("sqlite");
    db.migrate().await.expect("migrate");
    bench("sqlite", db).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }

    let admin = std::env::var("RELAY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let Ok(Ok(admin_db)) =
        tokio::time::timeout(Duration::from_secs(5), relay_store::connect(&admin)).await
    else {
        println!("postgres   skipped: {admin} does not answer");
        return;
    };
    let name = format!("relay_bench_{}", std::process::id());
    let pg_url = {
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        format!("{base}/{name}")
    };
    admin_db.close().await;
    let create = std::process::Command::new("psql")
        .args([&admin, "-qc", &format!("CREATE DATABASE {name}")])
        .status();
    if !create.is_ok_and(|s| s.success()) {
        println!("postgres   skipped: could not create a database with psql");
        return;
    }
    let db = relay_store::connect(&pg_url).await.expect("postgres");
    db.migrate().await.expect("migrate");
    bench("postgres", db).await;
    let _ = std::process::Command::new("psql")
        .args([&admin, "-qc", &format!("DROP DATABASE {name} WITH (FORCE)")])
        .status();
}
