//! `relay import`: bring existing tokens into the vault, so teams can move off a hand-rolled
//! store without asking every user to reconnect.
//!
//! * `token-json`: a Google authorized-user file (`Credentials.to_json()` of google-auth, or the
//!   `authorized_user` file of gcloud). A file with only a refresh token is refreshed once at
//!   import to obtain an access token.
//! * `fernet-jsonl`: rows exported from an existing `oauth_tokens` table whose token columns were
//!   encrypted with Fernet (`cryptography.fernet`), one JSON object per line. The Fernet key is
//!   read from `LEGACY_FERNET_KEY`, else `OAUTH_ENCRYPTION_KEY` (teams often used the same key).
//!
//! Imports are idempotent: importing an actor again replaces its tokens. Token values never
//! appear in output or errors; bad rows are reported by line number and reason.

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use relay_core::oauth::{ProviderGateway, TokenSet};
use relay_core::refresh::{NewConnection, RefreshPolicy, TokenService};
use relay_core::{
    ActorId, ActorType, Clock, ProviderName, Scopes, SystemClock, Timestamp, WorkspaceId,
};
use relay_providers::Catalog;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

use crate::config::Config;
use crate::keys;

/// Where imported connections go.
pub struct Target {
    pub workspace: String,
    pub provider: String,
    pub actor_type: Option<String>,
}

struct Importer {
    tokens: TokenService,
    catalog: Arc<Catalog>,
    workspace: WorkspaceId,
    provider: ProviderName,
    actor_type: ActorType,
    db: relay_store::Database,
}

impl Importer {
    async fn open(config: &Config, target: &Target) -> anyhow::Result<Self> {
        relay_providers::install_crypto_provider();
        let provider = ProviderName::parse(&target.provider)
            .map_err(|e| anyhow::anyhow!("--provider: {e}"))?;
        if !config.providers.contains_key(&provider) {
            bail!(
                "provider {provider} is not configured (add [providers.{provider}] to relay.toml)"
            );
        }
        let actor_type = match &target.actor_type {
            Some(t) => ActorType::parse(t).map_err(|e| anyhow::anyhow!("--actor-type: {e}"))?,
            None => ActorType::user(),
        };
        // Imported connections are audited (`connection.created`, "cli import").
        let (db, loaded) = keys::open_audited(config).await?;
        let store = db.store();
        let keyring = Arc::new(loaded.keyring);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let http = relay_providers::http_client(Duration::from_secs(10))
            .context("building the HTTP client")?;
        let catalog = Arc::new(
            Catalog::new(http, config.providers.clone())
                .context("invalid provider configuration")?,
        );
        let workspace = store
            .ensure_workspace(target.workspace.trim(), clock.now())
            .await
            .context("creating the workspace")?
            .id;
        let tokens = TokenService::new(
            store,
            Arc::new(relay_store::MemoryCache::new(1_000, Duration::from_secs(1))),
            catalog.clone(),
            keyring,
            clock,
            RefreshPolicy::default(),
        );
        Ok(Self {
            tokens,
            catalog,
            workspace,
            provider,
            actor_type,
            db,
        })
    }

    async fn store(
        &self,
        actor_id: ActorId,
        tokens: TokenSet,
        scopes: Scopes,
        expires_at: Option<Timestamp>,
    ) -> anyhow::Result<String> {
        let conn = self
            .tokens
            .store_new(
                NewConnection {
                    workspace_id: self.workspace.clone(),
                    provider: self.provider.clone(),
                    actor_type: self.actor_type.clone(),
                    actor_id,
                    tokens,
                    requested_scopes: scopes,
                    expires_at,
                    account: None,
                },
                "cli import",
            )
            .await?;
        Ok(conn.id.to_string())
    }
}

/// google-auth's `Credentials.to_json()`, or gcloud's `authorized_user` file.
#[derive(Deserialize)]
struct GoogleTokenJson {
    token: Option<String>,
    refresh_token: Option<String>,
    client_id: Option<String>,
    #[serde(default)]
    scopes: Option<Value>,
    expiry: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

pub async fn token_json(
    config: &Config,
    target: &Target,
    actor_id: &str,
    path: &Path,
) -> anyhow::Result<()> {
    let actor_id = ActorId::parse(actor_id).map_err(|e| anyhow::anyhow!("--actor-id: {e}"))?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: GoogleTokenJson = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a Google token.json: {}",
            path.display(),
            describe_json_error(&e)
        )
    })?;
    if file.kind.as_deref().is_some_and(|k| k != "authorized_user") {
        bail!(
            "{} is a {:?} credential; only authorized-user files hold a user's tokens",
            path.display(),
            file.kind
        );
    }
    let importer = Importer::open(config, target).await?;
    let configured_client = &config.providers[&importer.provider].client_id;
    if let Some(client) = &file.client_id
        && client != configured_client
    {
        bail!(
            "the file's tokens were issued to client {client}, but provider {} uses client {configured_client}; \
             a refresh token only works with the client it was issued to",
            importer.provider
        );
    }
    let scopes = match &file.scopes {
        Some(v) => parse_scopes(v)?,
        None => Scopes::default(),
    };
    let refresh_token = file.refresh_token.filter(|t| !t.is_empty());
    let (tokens, expires_at) = match file.token.filter(|t| !t.is_empty()) {
        Some(access) => (
            TokenSet {
                access_token: SecretString::from(access),
                refresh_token: refresh_token.map(SecretString::from),
                token_type: "Bearer".into(),
                expires_in: None,
                scope: None,
                id_token: None,
            },
            file.expiry.as_deref().map(parse_time_str).transpose()?,
        ),
        None => {
            // An authorized_user file has no access token: get one now, proving the grant works.
            let Some(rt) = refresh_token else {
                bail!(
                    "{} holds neither an access token nor a refresh token",
                    path.display()
                );
            };
            let mut fresh = importer
                .catalog
                .refresh(&importer.provider, &rt)
                .await
                .map_err(|e| anyhow::anyhow!("refreshing the imported grant failed: {e}"))?;
            if fresh.refresh_token.is_none() {
                fresh.refresh_token = Some(SecretString::from(rt));
            }
            (fresh, None)
        }
    };
    let id = importer.store(actor_id, tokens, scopes, expires_at).await?;
    importer.db.close().await;
    println!("imported connection {id}");
    Ok(())
}

/// One exported row of a legacy `oauth_tokens` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyRow {
    actor_id: Value,
    access_token: String,
    refresh_token: Option<String>,
    expires_at: Option<Value>,
    scopes: Option<Value>,
    token_type: Option<String>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub imported: u64,
    pub failed: u64,
}

pub async fn fernet_jsonl(
    config: &Config,
    target: &Target,
    input: &Path,
) -> anyhow::Result<Report> {
    let key = std::env::var("LEGACY_FERNET_KEY")
        .or_else(|_| std::env::var("OAUTH_ENCRYPTION_KEY"))
        .map_err(|_| anyhow::anyhow!("set LEGACY_FERNET_KEY (or OAUTH_ENCRYPTION_KEY) to the Fernet key that encrypted the rows"))?;
    let fernet = fernet::Fernet::new(key.trim())
        .ok_or_else(|| anyhow::anyhow!("the Fernet key must be 32 bytes of URL-safe base64"))?;
    let reader: Box<dyn BufRead> = if input == Path::new("-") {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?,
        ))
    };
    let importer = Importer::open(config, target).await?;
    let mut report = Report::default();
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("reading line {number}"))?;
        if line.trim().is_empty() {
            continue;
        }
        match import_row(&importer, &fernet, &line).await {
            Ok(id) => {
                report.imported += 1;
                tracing::debug!(line = number, connection_id = %id, "imported");
            }
            Err(e) => {
                report.failed += 1;
                eprintln!("line {number}: {e:#}");
            }
        }
    }
    importer.db.close().await;
    println!("imported {}, failed {}", report.imported, report.failed);
    Ok(report)
}

async fn import_row(
    importer: &Importer,
    fernet: &fernet::Fernet,
    line: &str,
) -> anyhow::Result<String> {
    let row: LegacyRow =
        serde_json::from_str(line).map_err(|e| anyhow::anyhow!("{}", describe_json_error(&e)))?;
    let actor = match &row.actor_id {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => bail!("actor_id must be a string or a number"),
    };
    let actor_id = ActorId::parse(&actor).map_err(|e| anyhow::anyhow!("{e}"))?;
    let open = |column: &str, token: &str| -> anyhow::Result<String> {
        let plain = fernet
            .decrypt(token.trim())
            .map_err(|_| anyhow::anyhow!("{column} does not decrypt with the Fernet key"))?;
        String::from_utf8(plain).map_err(|_| anyhow::anyhow!("{column} is not UTF-8 text"))
    };
    let access = open("access_token", &row.access_token)?;
    let refresh = row
        .refresh_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(|t| open("refresh_token", t))
        .transpose()?;
    let expires_at = row
        .expires_at
        .as_ref()
        .filter(|v| !v.is_null())
        .map(parse_time)
        .transpose()?;
    let scopes = row
        .scopes
        .as_ref()
        .map(parse_scopes)
        .transpose()?
        .unwrap_or_default();
    importer
        .store(
            actor_id,
            TokenSet {
                access_token: SecretString::from(access),
                refresh_token: refresh.map(SecretString::from),
                token_type: row.token_type.unwrap_or_else(|| "Bearer".into()),
                expires_in: None,
                scope: None,
                id_token: None,
            },
            scopes,
            expires_at,
        )
        .await
}

/// serde_json errors can quote the offending value; report only the position and the kind.
fn describe_json_error(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "invalid JSON",
        serde_json::error::Category::Data => "unexpected or missing fields",
        serde_json::error::Category::Io => "unreadable",
    };
    format!("{kind} at line {} column {}", e.line(), e.column())
}

fn parse_scopes(v: &Value) -> anyhow::Result<Scopes> {
    let parsed = match v {
        Value::String(s) => Scopes::parse(s),
        Value::Array(items) => {
            let strs: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
            Scopes::from_iter_checked(
                strs.ok_or_else(|| anyhow::anyhow!("scopes must be strings"))?,
            )
        }
        _ => bail!("scopes must be a string or a list"),
    };
    parsed.map_err(|e| anyhow::anyhow!("{e}"))
}

fn parse_time(v: &Value) -> anyhow::Result<Timestamp> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(|s| Timestamp((s * 1000.0) as i64))
            .ok_or_else(|| anyhow::anyhow!("expires_at is not a valid Unix time")),
        Value::String(s) => parse_time_str(s),
        _ => bail!("expires_at must be a time string or Unix seconds"),
    }
}

/// RFC 3339, or a naive UTC time as Python's `isoformat()` and SQL dumps write it.
fn parse_time_str(s: &str) -> anyhow::Result<Timestamp> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(Timestamp(t.timestamp_millis()));
    }
    let naive = s.trim_end_matches('Z');
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(naive, format) {
            return Ok(Timestamp(t.and_utc().timestamp_millis()));
        }
    }
    bail!("expires_at {s:?} is not a recognised time (RFC 3339, ISO 8601 UTC, or Unix seconds)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_the_forms_exports_use() {
        let cases = [
            ("2026-01-02T03:04:05Z", 1_767_323_045_000),
            ("2026-01-02T03:04:05.500000Z", 1_767_323_045_500),
            ("2026-01-02T03:04:05", 1_767_323_045_000),
            ("2026-01-02 03:04:05.25", 1_767_323_045_250),
            ("2026-01-02T04:04:05+01:00", 1_767_323_045_000),
        ];
        for (s, want) in cases {
            assert_eq!(parse_time_str(s).expect(s), Timestamp(want), "{s}");
        }
        assert_eq!(
            parse_time(&serde_json::json!(1_767_323_045)).expect("n"),
            Timestamp(1_767_323_045_000)
        );
        assert!(parse_time_str("tomorrow").is_err());
    }

    #[test]
    fn json_errors_never_quote_values() {
        let e = serde_json::from_str::<LegacyRow>(
            r#"{"actor_id": 1, "access_token": 5, "secret": "ya29.leak"}"#,
        )
        .err()
        .expect("invalid");
        let msg = describe_json_error(&e);
        assert!(
            msg.starts_with("unexpected or missing fields at line 1"),
            "{msg}"
        );
        assert!(!msg.contains("ya29"), "{msg}");
    }
}
