//! `relay import`: bring existing tokens into the vault, so teams can move off a hand-rolled
//! store without asking every user to reconnect.
//!
//! * `token-json`: a Google authorized-user file (`Credentials.to_json()` of google-auth, or the
//!   `authorized_user` file of gcloud). A file with only a refresh token is refreshed once at
//!   import to obtain an access token.
//! * `fernet-jsonl`: rows exported from an existing `oauth_tokens` table whose token columns were
//!   encrypted with Fernet (`cryptography.fernet`), one JSON object per line.
//! * `connection add-service-account`: a Google service account key file, for acting as a
//!   Workspace user through domain-wide delegation.
//! * `postgres` ([`postgres`]): the same tables read straight from the old database, in any of
//!   the three shapes teams moving in bring (actor rows, user rows, plaintext `token_data`).
//!
//! Imports are idempotent: an actor whose connection already holds the tokens is left alone, one
//! holding other tokens gets the imported ones. Token values never appear in output or errors;
//! bad rows are reported by line number (or row key) and reason.

pub mod postgres;

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
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use crate::config::Config;
use crate::keys;

/// Where imported connections go (`token-json`, `fernet-jsonl`).
pub struct Target {
    pub workspace: String,
    /// Required by `token-json`; for `fernet-jsonl`, the provider of rows that name none.
    pub provider: Option<String>,
    pub actor_type: Option<String>,
}

/// The connection one imported token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ActorKey {
    pub workspace: WorkspaceId,
    pub provider: ProviderName,
    pub actor_type: ActorType,
    pub actor_id: ActorId,
}

/// Plaintext tokens read from a source, before sealing.
pub(crate) struct SourceTokens {
    /// `None`: only a refresh token is known; Relay refreshes once to get an access token.
    pub access: Option<SecretString>,
    pub refresh: Option<SecretString>,
    pub token_type: String,
    pub scopes: Scopes,
    pub expires_at: Option<Timestamp>,
}

/// What importing one token did to Relay's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A new connection.
    Imported,
    /// The actor's connection held other tokens; it holds these now.
    Updated,
    /// The actor's connection already holds exactly these tokens (a rerun).
    Unchanged,
}

/// Writes imported tokens into Relay's store through the same service the server uses, so they
/// are sealed and scheduled for refresh exactly like tokens from a code exchange.
pub(crate) struct Importer {
    tokens: TokenService,
    catalog: Arc<Catalog>,
    config_providers: Vec<(ProviderName, String)>,
    db: relay_store::Database,
    clock: Arc<dyn Clock>,
    workspaces: std::collections::HashMap<String, WorkspaceId>,
}

impl Importer {
    pub(crate) async fn open(config: &Config) -> anyhow::Result<Self> {
        relay_providers::install_crypto_provider();
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
        let tokens = TokenService::new(
            store,
            Arc::new(relay_store::MemoryCache::new(1_000, Duration::from_secs(1))),
            catalog.clone(),
            keyring,
            clock.clone(),
            RefreshPolicy::default(),
        );
        Ok(Self {
            tokens,
            catalog,
            config_providers: configured_clients(config),
            db,
            clock,
            workspaces: Default::default(),
        })
    }

    /// The workspace named `name`, created if needed (looked up once per run).
    pub(crate) async fn workspace(&mut self, name: &str) -> anyhow::Result<WorkspaceId> {
        if let Some(id) = self.workspaces.get(name) {
            return Ok(id.clone());
        }
        let id = self
            .db
            .store()
            .ensure_workspace(name, self.clock.now())
            .await
            .context("creating the workspace")?
            .id;
        self.workspaces.insert(name.to_owned(), id.clone());
        Ok(id)
    }

    /// Stores `tokens` for `key` unless its connection already holds exactly them, so that
    /// running an import twice changes nothing.
    pub(crate) async fn put(
        &self,
        key: &ActorKey,
        tokens: SourceTokens,
    ) -> anyhow::Result<(Outcome, String)> {
        let existing = self
            .tokens
            .find(
                &key.workspace,
                &key.provider,
                &key.actor_type,
                &key.actor_id,
            )
            .await?;
        if let Some(conn) = &existing
            && self.holds(conn, &tokens)
        {
            return Ok((Outcome::Unchanged, conn.id.to_string()));
        }
        let token_set = match tokens.access {
            Some(access) => TokenSet {
                access_token: access,
                refresh_token: tokens.refresh,
                token_type: tokens.token_type,
                expires_in: None,
                scope: None,
                id_token: None,
            },
            None => {
                // Only a refresh token: get an access token now, proving the grant works.
                let Some(rt) = tokens.refresh else {
                    bail!("holds neither an access token nor a refresh token");
                };
                let mut fresh = self
                    .catalog
                    .refresh(&key.provider, rt.expose_secret())
                    .await
                    .map_err(|e| anyhow::anyhow!("refreshing the imported grant failed: {e}"))?;
                if fresh.refresh_token.is_none() {
                    fresh.refresh_token = Some(rt);
                }
                fresh
            }
        };
        let expires_at = tokens.expires_at.filter(|_| token_set.expires_in.is_none());
        let conn = self
            .tokens
            .store_new(
                NewConnection {
                    workspace_id: key.workspace.clone(),
                    provider: key.provider.clone(),
                    actor_type: key.actor_type.clone(),
                    actor_id: key.actor_id.clone(),
                    tokens: token_set,
                    requested_scopes: tokens.scopes,
                    expires_at,
                    account: None,
                },
                "cli import",
            )
            .await?;
        let outcome = if existing.is_some() {
            Outcome::Updated
        } else {
            Outcome::Imported
        };
        Ok((outcome, conn.id.to_string()))
    }

    /// Whether `conn` already holds these tokens (compared after opening its sealed ones).
    fn holds(&self, conn: &relay_core::connection::Connection, tokens: &SourceTokens) -> bool {
        use relay_core::connection::{ACCESS_TOKEN, REFRESH_TOKEN};
        let keyring = self.tokens.keyring();
        let open = |sealed: &[u8], column: &str| {
            keyring
                .open_string(sealed, conn.binding(column))
                .ok()
                .map(|t| t.as_str().to_owned())
        };
        let stored_refresh = conn
            .refresh_token
            .as_deref()
            .and_then(|rt| open(rt, REFRESH_TOKEN));
        let same_refresh =
            stored_refresh.as_deref() == tokens.refresh.as_ref().map(|t| t.expose_secret());
        match &tokens.access {
            // A refresh-token-only source: its access token was minted at the first import.
            None => same_refresh,
            Some(access) => {
                same_refresh
                    && open(&conn.access_token, ACCESS_TOKEN).as_deref()
                        == Some(access.expose_secret())
                    && conn.expires_at == tokens.expires_at
                    && conn.scopes == tokens.scopes
            }
        }
    }

    /// `name` as a provider Relay is configured for.
    pub(crate) fn provider(&self, name: &str) -> anyhow::Result<ProviderName> {
        configured_provider(&self.config_providers, name)
    }

    /// Connects `key` through a service account: mints a first token, stores it and the
    /// sealed credential, with the new connection's audit record.
    pub(crate) async fn add_service_account(
        &self,
        key: &ActorKey,
        credential: SecretString,
        scopes: Scopes,
    ) -> anyhow::Result<relay_core::connection::Connection> {
        let conn = self
            .tokens
            .store_service_account(
                NewConnection {
                    workspace_id: key.workspace.clone(),
                    provider: key.provider.clone(),
                    actor_type: key.actor_type.clone(),
                    actor_id: key.actor_id.clone(),
                    tokens: TokenSet {
                        access_token: SecretString::from(String::new()),
                        refresh_token: None,
                        token_type: "Bearer".into(),
                        expires_in: None,
                        scope: None,
                        id_token: None,
                    },
                    requested_scopes: scopes,
                    expires_at: None,
                    account: None,
                },
                credential,
                "cli service account",
            )
            .await?;
        Ok(conn)
    }

    pub(crate) async fn close(self) {
        self.db.close().await;
    }
}

/// Each configured provider with its client id.
pub(crate) fn configured_clients(config: &Config) -> Vec<(ProviderName, String)> {
    config
        .providers
        .iter()
        .map(|(p, s)| (p.clone(), s.client_id.clone()))
        .collect()
}

pub(crate) fn configured_provider(
    configured: &[(ProviderName, String)],
    name: &str,
) -> anyhow::Result<ProviderName> {
    let provider =
        ProviderName::parse(name.trim()).map_err(|e| anyhow::anyhow!("provider: {e}"))?;
    if !configured.iter().any(|(p, _)| p == &provider) {
        bail!("provider {provider} is not configured (add [providers.{provider}] to relay.toml)");
    }
    Ok(provider)
}

/// A workspace name as `relay api-key create` accepts it.
pub(crate) fn workspace_name(name: &str) -> anyhow::Result<&str> {
    let name = name.trim();
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        bail!("the workspace name must be 1 to 128 printable characters");
    }
    Ok(name)
}

/// The legacy Fernet keys, tried in order like Python's `MultiFernet`: `--legacy-key` (or
/// `LEGACY_FERNET_KEYS`), else `LEGACY_FERNET_KEY`, else `OAUTH_ENCRYPTION_KEY` (teams often
/// used the same key). Keys may lack their base64 padding or use the standard alphabet.
pub(crate) fn legacy_fernet(keys: &[String]) -> anyhow::Result<fernet::MultiFernet> {
    let keys: Vec<String> = if keys.iter().any(|k| !k.trim().is_empty()) {
        keys.iter()
            .filter(|k| !k.trim().is_empty())
            .cloned()
            .collect()
    } else {
        vec![std::env::var("LEGACY_FERNET_KEY")
            .or_else(|_| std::env::var("OAUTH_ENCRYPTION_KEY"))
            .map_err(|_| anyhow::anyhow!("give the Fernet key that encrypted the rows with --legacy-key (or LEGACY_FERNET_KEY, or OAUTH_ENCRYPTION_KEY)"))?]
    };
    let mut fernets = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        let normalized = key.trim().replace('+', "-").replace('/', "_");
        let f = fernet::Fernet::new(&normalized).ok_or_else(|| {
            anyhow::anyhow!(
                "legacy key #{} is not a Fernet key (32 bytes of URL-safe base64)",
                i + 1
            )
        })?;
        fernets.push(f);
    }
    Ok(fernet::MultiFernet::new(fernets))
}

/// Opens one Fernet-encrypted column; the error names the column and says whether the value
/// is damaged or no key opens it, never the value.
pub(crate) fn open_fernet(
    fernet: &fernet::MultiFernet,
    column: &str,
    token: &str,
) -> anyhow::Result<SecretString> {
    use base64::Engine;
    let token = token.trim();
    // A Fernet token is version 0x80, a timestamp, an IV, at least one AES block and an HMAC.
    let well_formed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .is_ok_and(|raw| raw.len() >= 73 && raw[0] == 0x80 && (raw.len() - 57) % 16 == 0);
    if !well_formed {
        bail!("{column} is not a Fernet token (the stored value is damaged)");
    }
    let plain = fernet
        .decrypt(token)
        .map_err(|_| anyhow::anyhow!("{column} does not decrypt with any legacy key"))?;
    String::from_utf8(plain)
        .map(SecretString::from)
        .map_err(|_| anyhow::anyhow!("{column} is not UTF-8 text"))
}

/// `relay connection add-service-account`.
pub struct ServiceAccountArgs<'a> {
    pub workspace: &'a str,
    pub provider: &'a str,
    pub actor_id: &'a str,
    pub actor_type: Option<&'a str>,
    pub key_file: &'a Path,
    pub subject: &'a str,
    pub scopes: &'a [String],
}

/// Connects an actor through a Google service account key file (see
/// [`relay_providers::service_account`]). The key is read, validated and sealed; it is never
/// printed, and errors name the problem, not the key's content.
pub async fn add_service_account(
    config: &Config,
    args: ServiceAccountArgs<'_>,
) -> anyhow::Result<()> {
    let actor_id = ActorId::parse(args.actor_id).map_err(|e| anyhow::anyhow!("--actor-id: {e}"))?;
    let actor_type = actor_type_or_user(args.actor_type)?;
    let provider = configured_provider(&configured_clients(config), args.provider)
        .map_err(|e| anyhow::anyhow!("--provider: {e}"))?;
    let workspace = workspace_name(args.workspace)?;
    let scopes =
        Scopes::parse(&args.scopes.join(" ")).map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
    let text = std::fs::read_to_string(args.key_file)
        .with_context(|| format!("reading {}", args.key_file.display()))?;
    let key: Value = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not JSON: {}",
            args.key_file.display(),
            describe_json_error(&e)
        )
    })?;
    let credential = relay_providers::service_account::credential(&key, args.subject, &scopes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.key_file.display()))?;
    let mut importer = Importer::open(config).await?;
    let key = ActorKey {
        workspace: importer.workspace(workspace).await?,
        provider,
        actor_type,
        actor_id,
    };
    let result = importer.add_service_account(&key, credential, scopes).await;
    importer.close().await;
    let conn = result?;
    println!(
        "connected {} through the service account: connection {}",
        key.actor_id, conn.id
    );
    Ok(())
}

/// google-auth's `Credentials.to_json()`, or gcloud's `authorized_user` file.
#[derive(Deserialize)]
pub(crate) struct GoogleTokenJson {
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
    let Some(provider) = &target.provider else {
        bail!("--provider is required");
    };
    let actor_type = actor_type_or_user(target.actor_type.as_deref())?;
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
    let provider = configured_provider(&configured_clients(config), provider)
        .map_err(|e| anyhow::anyhow!("--provider: {e}"))?;
    let workspace = workspace_name(&target.workspace)?;
    let tokens = google_tokens(
        &file,
        None,
        &config.providers[&provider].client_id,
        &provider,
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut importer = Importer::open(config).await?;
    let key = ActorKey {
        workspace: importer.workspace(workspace).await?,
        provider,
        actor_type,
        actor_id,
    };
    let result = importer.put(&key, tokens).await;
    importer.close().await;
    let (_, id) = result?;
    println!("imported connection {id}");
    Ok(())
}

/// The tokens of a Google authorized-user JSON (a `token.json` file, or a `token_data` column).
/// `expires_at` (a column beside the JSON) wins over the JSON's `expiry`.
pub(crate) fn google_tokens(
    file: &GoogleTokenJson,
    expires_at: Option<Timestamp>,
    configured_client: &str,
    provider: &ProviderName,
) -> anyhow::Result<SourceTokens> {
    if let Some(client) = &file.client_id
        && client != configured_client
    {
        bail!(
            "the tokens were issued to client {client}, but provider {provider} uses client {configured_client}; \
             a refresh token only works with the client it was issued to"
        );
    }
    let scopes = match &file.scopes {
        Some(v) if !v.is_null() => parse_scopes(v)?,
        _ => Scopes::default(),
    };
    let refresh = file
        .refresh_token
        .clone()
        .filter(|t| !t.is_empty())
        .map(SecretString::from);
    let access = file
        .token
        .clone()
        .filter(|t| !t.is_empty())
        .map(SecretString::from);
    if access.is_none() && refresh.is_none() {
        bail!("holds neither an access token nor a refresh token");
    }
    let expires_at = match expires_at {
        Some(t) => Some(t),
        None => file.expiry.as_deref().map(parse_time_str).transpose()?,
    };
    Ok(SourceTokens {
        access,
        refresh,
        token_type: "Bearer".into(),
        scopes,
        expires_at,
    })
}

fn actor_type_or_user(actor_type: Option<&str>) -> anyhow::Result<ActorType> {
    match actor_type {
        Some(t) => ActorType::parse(t).map_err(|e| anyhow::anyhow!("--actor-type: {e}")),
        None => Ok(ActorType::user()),
    }
}

/// One exported row of a legacy `oauth_tokens` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyRow {
    actor_id: Value,
    /// The services Relay replaces call the provider column `service` in some tables.
    #[serde(alias = "service")]
    provider: Option<String>,
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
    legacy_keys: &[String],
    input: &Path,
) -> anyhow::Result<Report> {
    let fernet = legacy_fernet(legacy_keys)?;
    let default_provider = target
        .provider
        .as_deref()
        .map(|p| configured_provider(&configured_clients(config), p))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--provider: {e}"))?;
    let actor_type = actor_type_or_user(target.actor_type.as_deref())?;
    let workspace = workspace_name(&target.workspace)?;
    let reader: Box<dyn BufRead> = if input == Path::new("-") {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?,
        ))
    };
    let mut importer = Importer::open(config).await?;
    let workspace = importer.workspace(workspace).await?;
    let mut report = Report::default();
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("reading line {number}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let row = async {
            let (key, tokens) = parse_jsonl_row(
                &importer,
                &fernet,
                &line,
                &workspace,
                &actor_type,
                default_provider.as_ref(),
            )?;
            importer.put(&key, tokens).await
        };
        match row.await {
            Ok((_, id)) => {
                report.imported += 1;
                tracing::debug!(line = number, connection_id = %id, "imported");
            }
            Err(e) => {
                report.failed += 1;
                eprintln!("line {number}: {e:#}");
            }
        }
    }
    importer.close().await;
    println!("imported {}, failed {}", report.imported, report.failed);
    Ok(report)
}

fn parse_jsonl_row(
    importer: &Importer,
    fernet: &fernet::MultiFernet,
    line: &str,
    workspace: &WorkspaceId,
    actor_type: &ActorType,
    default_provider: Option<&ProviderName>,
) -> anyhow::Result<(ActorKey, SourceTokens)> {
    let row: LegacyRow =
        serde_json::from_str(line).map_err(|e| anyhow::anyhow!("{}", describe_json_error(&e)))?;
    let actor = match &row.actor_id {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => bail!("actor_id must be a string or a number"),
    };
    let actor_id = ActorId::parse(&actor).map_err(|e| anyhow::anyhow!("{e}"))?;
    let provider = match (&row.provider, default_provider) {
        (Some(p), _) => importer.provider(p)?,
        (None, Some(p)) => p.clone(),
        (None, None) => {
            bail!("the row names no provider (or service), and --provider is not given")
        }
    };
    let access = open_fernet(fernet, "access_token", &row.access_token)?;
    let refresh = row
        .refresh_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(|t| open_fernet(fernet, "refresh_token", t))
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
    Ok((
        ActorKey {
            workspace: workspace.clone(),
            provider,
            actor_type: actor_type.clone(),
            actor_id,
        },
        SourceTokens {
            access: Some(access),
            refresh,
            token_type: row.token_type.unwrap_or_else(|| "Bearer".into()),
            scopes,
            expires_at,
        },
    ))
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

pub(crate) fn parse_scopes(v: &Value) -> anyhow::Result<Scopes> {
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
pub(crate) fn parse_time_str(s: &str) -> anyhow::Result<Timestamp> {
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
