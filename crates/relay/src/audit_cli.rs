//! `relay audit verify|heads|export`, and the audit records of operations the CLI performs itself
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

/// Checks every workspace's chain (or one), against the anchors in `anchors` if given; fails
/// naming the first broken record.
pub async fn verify(
    db: &Database,
    key: &audit::AuditKey,
    workspace: Option<&str>,
    anchors: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let only = workspace.map(|w| WorkspaceId::from_stored(w.to_owned()));
    let anchors = match anchors {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading anchors from {}", path.display()))?;
            let anchors = audit::parse_anchors(&text);
            if anchors.is_empty() {
                anyhow::bail!(
                    "{} holds no anchors (JSON lines with workspace_id, seq and hash)",
                    path.display()
                );
            }
            anchors
        }
        None => Vec::new(),
    };
    let report = audit::verify(db.audit_store().as_ref(), key, only.as_ref(), &anchors)
        .await
        .context("reading the audit log")?;
    match report.broken {
        None => {
            println!(
                "audit log intact: {} records in {} workspaces",
                report.records, report.workspaces
            );
            if !anchors.is_empty() {
                println!("{} anchors reached", report.anchors);
            }
            Ok(())
        }
        Some(b) => {
            println!("audit log BROKEN at {b}");
            anyhow::bail!("the audit chain is broken at {b}")
        }
    }
}

/// Writes each workspace's head as a JSON line: an anchor for an outside log.
pub async fn heads(db: &Database) -> anyhow::Result<()> {
    let heads = db
        .audit_store()
        .audit_heads()
        .await
        .context("reading the audit heads")?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (workspace_id, head) in heads {
        let anchor = audit::Anchor {
            workspace_id,
            seq: head.seq,
            hash: head.hash,
        };
        serde_json::to_writer(&mut out, &anchor)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
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
