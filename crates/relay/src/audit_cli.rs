//! `relay audit verify|export`, and the audit records of operations the CLI performs itself
//! (API keys, re-sealing the vault), written directly in one transaction each.

use std::io::Write;

use anyhow::Context;
use relay_core::WorkspaceId;
use relay_core::audit::{self, AuditEvent, AuditSink, DirectAudit};
use relay_server::routes::audit::AuditRecordView;
use relay_store::Database;

/// Stores one record of a CLI operation. Its failure fails the command.
pub async fn record(db: &Database, event: AuditEvent) -> anyhow::Result<()> {
    DirectAudit(db.audit_store())
        .record(event.detail("cli"))
        .await
        .context("writing the audit record")
}

/// Checks every workspace's chain (or one); fails naming the first broken record.
pub async fn verify(db: &Database, workspace: Option<&str>) -> anyhow::Result<()> {
    let only = workspace.map(|w| WorkspaceId::from_stored(w.to_owned()));
    let report = audit::verify(db.audit_store().as_ref(), only.as_ref())
        .await
        .context("reading the audit log")?;
    match report.broken {
        None => {
            println!(
                "audit log intact: {} records in {} workspaces",
                report.records, report.workspaces
            );
            Ok(())
        }
        Some(b) => {
            println!("audit log BROKEN at {b}");
            anyhow::bail!("the audit chain is broken at {b}")
        }
    }
}

/// Writes records as JSON lines, oldest first per workspace.
pub async fn export(
    db: &Database,
    workspace: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
) -> anyhow::Result<()> {
    let parse = |name: &str, v: Option<&str>| -> anyhow::Result<Option<i64>> {
        v.map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|d| d.timestamp_millis())
                .with_context(|| format!("--{name} must be an RFC 3339 time"))
        })
        .transpose()
    };
    let (from, to) = (parse("from", from)?, parse("to", to)?);
    let store = db.audit_store();
    let mut heads = store.audit_heads().await.context("reading the audit log")?;
    heads.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (ws, _) in heads {
        if workspace.is_some_and(|w| w != ws.as_str()) {
            continue;
        }
        let mut after = 0;
        loop {
            let page = store
                .audit_range(&ws, after, 1000)
                .await
                .context("reading the audit log")?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for r in &page {
                let at = r.event.at.0;
                if from.is_some_and(|f| at < f) || to.is_some_and(|t| at >= t) {
                    continue;
                }
                serde_json::to_writer(&mut out, &AuditRecordView::from(r))?;
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
