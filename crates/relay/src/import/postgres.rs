//! `relay import postgres`: tokens read straight from the `oauth_tokens` table of the service
//! Relay replaces, with no export step in between.
//!
//! The table comes in one of three shapes (docs/OPERATIONS.md, "Importing tokens"), told apart
//! by its columns in `information_schema`:
//! * actor rows: `workspace_id`, `actor_type`, `actor_id`, `provider`, Fernet-encrypted tokens;
//! * user rows: `user_id`, `provider` or `service`, Fernet-encrypted tokens, `revoked`;
//! * token-data rows: `provider`, `account`, a plaintext Google authorized-user `token_data`.
//!
//! Rows are read in pages ordered by a key (`id`, else the shape's unique columns) and each is
//! written on its own, and a row whose connection already holds its tokens is left alone: a
//! run killed half-way is finished by running it again, and a second run changes nothing.
//! Token values never reach the output; a failed row is named by its key columns.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use relay_core::{ActorId, ActorType, Scopes, Timestamp};
use secrecy::SecretString;
use sqlx::{Connection, PgConnection, Row};

use super::{
    ActorKey, GoogleTokenJson, Importer, Outcome, SourceTokens, configured_clients,
    configured_provider, legacy_fernet, open_fernet, parse_scopes, parse_time_str, workspace_name,
};
use crate::config::Config;

/// Which of the three legacy layouts the table has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShapeChoice {
    /// Tell from the table's columns.
    Auto,
    /// `workspace_id`, `actor_type`, `actor_id`, `provider`, encrypted tokens.
    Actor,
    /// `user_id`, `provider` or `service`, encrypted tokens, `revoked`.
    User,
    /// `provider`, `account`, plaintext `token_data` JSON.
    TokenData,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Actor,
    User,
    TokenData,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Actor => "actor",
            Shape::User => "user",
            Shape::TokenData => "token-data",
        }
    }
}

/// What `relay import postgres` was asked to do.
pub struct Options {
    pub source_url: SecretString,
    pub table: String,
    pub shape: ShapeChoice,
    /// The Relay workspace of every row (the actor shape defaults to each row's `workspace_id`).
    pub workspace: Option<String>,
    /// The actor type of user and token-data rows (default `user`).
    pub actor_type: Option<String>,
    /// `service=provider` pairs naming Relay's provider for a legacy provider or service value.
    pub provider_map: Vec<String>,
    pub legacy_keys: Vec<String>,
    pub dry_run: bool,
    pub batch_size: u32,
    /// Spares a busy source database; `None` reads as fast as Relay writes.
    pub max_rows_per_second: Option<u32>,
}

/// What a run did, row by row counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub imported: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Revoked rows, and rows superseded by a newer row for the same connection.
    pub skipped: u64,
    pub failed: u64,
}

/// A validated, optionally schema-qualified table name, quoted for SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TableName {
    schema: Option<String>,
    name: String,
}

impl TableName {
    /// Accepts `table` or `schema.table`, each an unquoted SQL identifier (letters, digits and
    /// underscores, not starting with a digit, at most 63 bytes), taken literally.
    fn parse(s: &str) -> anyhow::Result<Self> {
        let valid = |part: &str| {
            !part.is_empty()
                && part.len() <= 63
                && part
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        let parts: Vec<&str> = s.trim().split('.').collect();
        match parts.as_slice() {
            [name] if valid(name) => Ok(Self {
                schema: None,
                name: (*name).to_owned(),
            }),
            [schema, name] if valid(schema) && valid(name) => Ok(Self {
                schema: Some((*schema).to_owned()),
                name: (*name).to_owned(),
            }),
            _ => bail!(
                "--table must be a table name or schema.table of letters, digits and underscores"
            ),
        }
    }

    fn quoted(&self) -> String {
        match &self.schema {
            Some(schema) => format!("\"{schema}\".\"{}\"", self.name),
            None => format!("\"{}\"", self.name),
        }
    }
}

/// The SQL expression (already safe: only known column names, quoted) that reads each field.
struct Plan {
    shape: Shape,
    /// The columns pages are ordered by, as text; they name a row in the report.
    key_columns: Vec<String>,
    select_light: String,
    select_full: String,
    table: String,
}

/// Column name → `information_schema.columns.data_type`.
type Columns = HashMap<String, String>;

fn detect_shape(columns: &Columns, choice: ShapeChoice) -> anyhow::Result<Shape> {
    let has = |c: &str| columns.contains_key(c);
    let shape = match choice {
        ShapeChoice::Actor => Shape::Actor,
        ShapeChoice::User => Shape::User,
        ShapeChoice::TokenData => Shape::TokenData,
        ShapeChoice::Auto if has("token_data") => Shape::TokenData,
        ShapeChoice::Auto if has("workspace_id") && has("actor_id") => Shape::Actor,
        ShapeChoice::Auto if has("user_id") => Shape::User,
        ShapeChoice::Auto => bail!(
            "the table's columns match no known shape (expected token_data, workspace_id + actor_id, or user_id); use --shape"
        ),
    };
    let required: &[&str] = match shape {
        Shape::Actor => &[
            "workspace_id",
            "actor_type",
            "actor_id",
            "provider",
            "access_token_encrypted",
        ],
        Shape::User => &["user_id", "access_token_encrypted"],
        Shape::TokenData => &["provider", "account", "token_data"],
    };
    let mut missing: Vec<&str> = required.iter().copied().filter(|c| !has(c)).collect();
    if shape == Shape::User && !has("provider") && !has("service") {
        missing.push("provider (or service)");
    }
    if !missing.is_empty() {
        bail!(
            "the {} shape needs the column(s) {}",
            shape.name(),
            missing.join(", ")
        );
    }
    Ok(shape)
}

fn quote(column: &str) -> String {
    format!("\"{column}\"")
}

fn plan(table: &TableName, columns: &Columns, shape: Shape) -> Plan {
    let has = |c: &str| columns.contains_key(c);
    let kind = |c: &str| columns.get(c).map(String::as_str).unwrap_or("");
    let text = |c: &str| format!("{}::text", quote(c));
    let key_columns: Vec<String> = if has("id") {
        vec!["id".to_owned()]
    } else {
        let natural: &[&str] = match shape {
            Shape::Actor => &["workspace_id", "actor_type", "actor_id", "provider"],
            Shape::User if has("provider") => &["user_id", "provider"],
            Shape::User => &["user_id", "service"],
            Shape::TokenData => &["provider", "account"],
        };
        natural.iter().map(|c| (*c).to_owned()).collect()
    };
    let millis = |c: &str| -> Option<String> {
        let k = kind(c);
        if k.starts_with("timestamp") || k == "date" {
            Some(format!("(extract(epoch from {})*1000)::bigint", quote(c)))
        } else if matches!(
            k,
            "integer" | "bigint" | "smallint" | "numeric" | "double precision" | "real"
        ) {
            // Unix seconds.
            Some(format!("({}::double precision*1000)::bigint", quote(c)))
        } else {
            None
        }
    };
    let mut light: Vec<String> = key_columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("coalesce({}::text, '') AS k{i}", quote(c)))
        .collect();
    let field = |expr: Option<String>, alias: &str, sql_type: &str| match expr {
        Some(e) => format!("{e} AS {alias}"),
        None => format!("NULL::{sql_type} AS {alias}"),
    };
    light.push(field(
        (shape == Shape::Actor).then(|| text("workspace_id")),
        "f_workspace",
        "text",
    ));
    light.push(field(
        (shape == Shape::Actor).then(|| text("actor_type")),
        "f_actor_type",
        "text",
    ));
    let actor = match shape {
        Shape::Actor => "actor_id",
        Shape::User => "user_id",
        Shape::TokenData => "account",
    };
    light.push(field(Some(text(actor)), "f_actor", "text"));
    let provider = if has("provider") {
        "provider"
    } else {
        "service"
    };
    light.push(field(Some(text(provider)), "f_provider", "text"));
    let mut revoked = Vec::new();
    if kind("revoked") == "boolean" {
        revoked.push("coalesce(\"revoked\", false)".to_owned());
    }
    if has("revoked_at") {
        revoked.push("(\"revoked_at\" IS NOT NULL)".to_owned());
    }
    let revoked = if revoked.is_empty() {
        "false".to_owned()
    } else {
        revoked.join(" OR ")
    };
    light.push(format!("({revoked}) AS f_revoked"));
    light.push(field(millis("updated_at"), "f_updated_ms", "bigint"));

    let mut full = light.clone();
    // Fernet tokens are ASCII; `escape` turns a bytea column into that text without failing on
    // damaged bytes (they become escapes, which then fail as "not a Fernet token").
    let token_text = |c: &str| -> Option<String> {
        has(c).then(|| {
            if kind(c) == "bytea" {
                format!("encode({}, 'escape')", quote(c))
            } else {
                text(c)
            }
        })
    };
    full.push(field(
        token_text("access_token_encrypted"),
        "f_access",
        "text",
    ));
    full.push(field(
        token_text("refresh_token_encrypted"),
        "f_refresh",
        "text",
    ));
    full.push(field(
        (shape == Shape::TokenData).then(|| text("token_data")),
        "f_token_data",
        "text",
    ));
    full.push(field(
        has("token_type").then(|| text("token_type")),
        "f_token_type",
        "text",
    ));
    full.push(field(millis("expires_at"), "f_expires_ms", "bigint"));
    full.push(field(
        (has("expires_at") && millis("expires_at").is_none()).then(|| text("expires_at")),
        "f_expires_text",
        "text",
    ));
    let scopes_column = ["scopes", "scope"].into_iter().find(|c| has(c));
    let scopes = scopes_column.map(|c| {
        if kind(c) == "ARRAY" {
            format!("array_to_json({})::text", quote(c))
        } else {
            text(c)
        }
    });
    full.push(field(scopes, "f_scopes", "text"));
    Plan {
        shape,
        key_columns,
        select_light: light.join(", "),
        select_full: full.join(", "),
        table: table.quoted(),
    }
}

/// One page of rows after `after` (the last page's key), in key order.
async fn page(
    conn: &mut PgConnection,
    plan: &Plan,
    select: &str,
    after: Option<&[String]>,
    limit: u32,
) -> anyhow::Result<Vec<sqlx::postgres::PgRow>> {
    let keys: Vec<String> = plan
        .key_columns
        .iter()
        .map(|c| format!("(coalesce({}::text, '') COLLATE \"C\")", quote(c)))
        .collect();
    let keys = keys.join(", ");
    let filter = match after {
        Some(last) => {
            let params: Vec<String> = (1..=last.len()).map(|i| format!("${i}")).collect();
            format!("WHERE ({keys}) > ({})", params.join(", "))
        }
        None => String::new(),
    };
    let sql = format!(
        "SELECT {select} FROM {} {filter} ORDER BY {keys} LIMIT {limit}",
        plan.table
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for value in after.unwrap_or_default() {
        query = query.bind(value.clone());
    }
    query
        .fetch_all(conn)
        .await
        .context("reading the source table")
}

fn row_key(plan: &Plan, row: &sqlx::postgres::PgRow) -> anyhow::Result<Vec<String>> {
    (0..plan.key_columns.len())
        .map(|i| {
            row.try_get::<String, _>(format!("k{i}").as_str())
                .context("reading the row key")
        })
        .collect()
}

/// How a row is named in the report: its key columns, never a token.
fn describe(plan: &Plan, key: &[String]) -> String {
    plan.key_columns
        .iter()
        .zip(key)
        .map(|(c, v)| format!("{c}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn text_field(row: &sqlx::postgres::PgRow, alias: &str) -> Option<String> {
    row.try_get::<Option<String>, _>(alias).ok().flatten()
}

fn int_field(row: &sqlx::postgres::PgRow, alias: &str) -> Option<i64> {
    row.try_get::<Option<i64>, _>(alias).ok().flatten()
}

/// The connection a row maps to, by names (resolved to ids only when writing).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Destination {
    workspace: String,
    provider: String,
    actor_type: String,
    actor_id: String,
}

struct Mapping<'a> {
    shape: Shape,
    workspace: Option<&'a str>,
    actor_type: ActorType,
    provider_map: HashMap<String, String>,
    configured: Vec<(relay_core::ProviderName, String)>,
}

impl Mapping<'_> {
    fn destination(&self, row: &sqlx::postgres::PgRow) -> anyhow::Result<Destination> {
        let workspace = match (self.workspace, text_field(row, "f_workspace")) {
            (Some(w), _) => w.to_owned(),
            (None, Some(w)) => workspace_name(&w).context("workspace_id")?.to_owned(),
            (None, None) => bail!("workspace_id is empty"),
        };
        let actor_type = match (self.shape, text_field(row, "f_actor_type")) {
            (Shape::Actor, Some(t)) => {
                ActorType::parse(t.trim()).map_err(|e| anyhow::anyhow!("actor_type: {e}"))?
            }
            (Shape::Actor, None) => bail!("actor_type is empty"),
            _ => self.actor_type.clone(),
        };
        let actor = text_field(row, "f_actor").unwrap_or_default();
        let actor_id = ActorId::parse(actor.trim()).map_err(|e| anyhow::anyhow!("actor: {e}"))?;
        let raw = text_field(row, "f_provider").unwrap_or_default();
        let raw = raw.trim();
        let mapped = self
            .provider_map
            .get(raw)
            .map(String::as_str)
            .unwrap_or(raw);
        let provider = configured_provider(&self.configured, mapped)?;
        Ok(Destination {
            workspace,
            provider: provider.to_string(),
            actor_type: actor_type.to_string(),
            actor_id: actor_id.to_string(),
        })
    }
}

/// The plaintext tokens of a full row.
fn tokens_of(
    plan: &Plan,
    row: &sqlx::postgres::PgRow,
    fernet: Option<&fernet::MultiFernet>,
    configured_client: &str,
    provider: &relay_core::ProviderName,
) -> anyhow::Result<SourceTokens> {
    let expires_at = match (
        int_field(row, "f_expires_ms"),
        text_field(row, "f_expires_text"),
    ) {
        (Some(ms), _) => Some(Timestamp(ms)),
        (None, Some(t)) if !t.trim().is_empty() => Some(parse_time_str(&t)?),
        _ => None,
    };
    let scopes = match text_field(row, "f_scopes") {
        Some(s) => scopes_from_text(&s)?,
        None => Scopes::default(),
    };
    if plan.shape == Shape::TokenData {
        let data = text_field(row, "f_token_data").unwrap_or_default();
        let file: GoogleTokenJson = serde_json::from_str(&data)
            .map_err(|e| anyhow::anyhow!("token_data: {}", super::describe_json_error(&e)))?;
        let mut tokens = super::google_tokens(&file, expires_at, configured_client, provider)
            .map_err(|e| anyhow::anyhow!("token_data: {e:#}"))?;
        if tokens.scopes.is_empty() {
            tokens.scopes = scopes;
        }
        return Ok(tokens);
    }
    let fernet = fernet.context("no legacy key")?;
    let access = text_field(row, "f_access")
        .filter(|t| !t.trim().is_empty())
        .context("access_token_encrypted is empty")?;
    let access = open_fernet(fernet, "access_token_encrypted", &access)?;
    let refresh = text_field(row, "f_refresh")
        .filter(|t| !t.trim().is_empty())
        .map(|t| open_fernet(fernet, "refresh_token_encrypted", &t))
        .transpose()?;
    let token_type = text_field(row, "f_token_type")
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| "Bearer".into());
    Ok(SourceTokens {
        access: Some(access),
        refresh,
        token_type,
        scopes,
        expires_at,
    })
}

/// A `scope` TEXT (space- or comma-separated) or a `scopes` JSON array.
fn scopes_from_text(s: &str) -> anyhow::Result<Scopes> {
    let s = s.trim();
    if s.starts_with('[') || s.starts_with('"') {
        let v: serde_json::Value =
            serde_json::from_str(s).map_err(|_| anyhow::anyhow!("scopes is not valid JSON"))?;
        return parse_scopes(&v).map_err(|e| anyhow::anyhow!("scopes: {e}"));
    }
    Scopes::parse(s).map_err(|e| anyhow::anyhow!("scope: {e}"))
}

fn parse_provider_map(pairs: &[String]) -> anyhow::Result<HashMap<String, String>> {
    pairs
        .iter()
        .map(|pair| {
            let (from, to) = pair
                .split_once('=')
                .filter(|(f, t)| !f.trim().is_empty() && !t.trim().is_empty())
                .with_context(|| format!("--provider-map {pair:?} is not service=provider"))?;
            Ok((from.trim().to_owned(), to.trim().to_owned()))
        })
        .collect()
}

pub async fn run(config: &Config, options: &Options) -> anyhow::Result<Report> {
    use secrecy::ExposeSecret;
    let table = TableName::parse(&options.table)?;
    let provider_map = parse_provider_map(&options.provider_map)?;
    let workspace = options
        .workspace
        .as_deref()
        .map(workspace_name)
        .transpose()?;
    let actor_type = match &options.actor_type {
        Some(t) => ActorType::parse(t).map_err(|e| anyhow::anyhow!("--actor-type: {e}"))?,
        None => ActorType::user(),
    };
    let batch = options.batch_size.clamp(1, 10_000);
    let mut source = PgConnection::connect(options.source_url.expose_secret())
        .await
        .context("connecting to the source database (--source-url)")?;
    let columns: Columns = sqlx::query(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = coalesce($1, current_schema()) AND table_name = $2",
    )
    .bind(table.schema.clone())
    .bind(table.name.clone())
    .fetch_all(&mut source)
    .await
    .context("reading the source table's columns")?
    .into_iter()
    .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
    .collect();
    if columns.is_empty() {
        bail!(
            "the source database has no table {} (or it has no columns)",
            options.table
        );
    }
    let shape = detect_shape(&columns, options.shape)?;
    if shape != Shape::Actor && workspace.is_none() {
        bail!(
            "--workspace is required for the {} shape (its rows name no workspace)",
            shape.name()
        );
    }
    let fernet = match shape {
        Shape::TokenData => None,
        _ => Some(legacy_fernet(&options.legacy_keys)?),
    };
    let plan = plan(&table, &columns, shape);
    let mapping = Mapping {
        shape,
        workspace,
        actor_type,
        provider_map,
        configured: configured_clients(config),
    };
    eprintln!("reading {} as {} rows", options.table, shape.name());

    // First pass, without token columns: which row wins when several map to one connection
    // (the newest by updated_at, then the last by key). Decided from the whole table, so a
    // rerun after a kill decides the same way.
    let mut winners: HashMap<Destination, (Option<i64>, Vec<String>)> = HashMap::new();
    let mut after: Option<Vec<String>> = None;
    loop {
        let rows = page(
            &mut source,
            &plan,
            &plan.select_light,
            after.as_deref(),
            batch,
        )
        .await?;
        let Some(last) = rows.last() else { break };
        after = Some(row_key(&plan, last)?);
        for row in &rows {
            if row.try_get::<bool, _>("f_revoked").unwrap_or(false) {
                continue;
            }
            let Ok(dest) = mapping.destination(row) else {
                continue;
            };
            let candidate = (int_field(row, "f_updated_ms"), row_key(&plan, row)?);
            let entry = winners.entry(dest).or_insert_with(|| candidate.clone());
            if candidate > *entry {
                *entry = candidate;
            }
        }
    }

    let mut importer = if options.dry_run {
        None
    } else {
        Some(Importer::open(config).await?)
    };
    let mut report = Report::default();
    let mut read = 0u64;
    let mut after: Option<Vec<String>> = None;
    loop {
        let rows = page(
            &mut source,
            &plan,
            &plan.select_full,
            after.as_deref(),
            batch,
        )
        .await?;
        let Some(last) = rows.last() else { break };
        after = Some(row_key(&plan, last)?);
        for row in &rows {
            let key = row_key(&plan, row)?;
            let name = describe(&plan, &key);
            match import_row(
                &plan,
                &mapping,
                &winners,
                row,
                &key,
                fernet.as_ref(),
                importer.as_mut(),
            )
            .await
            {
                Ok(RowResult::Stored(Outcome::Imported)) => report.imported += 1,
                Ok(RowResult::Stored(Outcome::Updated)) => report.updated += 1,
                Ok(RowResult::Stored(Outcome::Unchanged)) => report.unchanged += 1,
                Ok(RowResult::Valid) => report.imported += 1,
                Ok(RowResult::Skipped(why)) => {
                    report.skipped += 1;
                    eprintln!("row {name}: skipped: {why}");
                }
                Err(e) => {
                    report.failed += 1;
                    eprintln!("row {name}: failed: {e:#}");
                }
            }
            if let Some(rate) = options.max_rows_per_second.filter(|r| *r > 0) {
                tokio::time::sleep(Duration::from_secs_f64(1.0 / f64::from(rate))).await;
            }
        }
        read += rows.len() as u64;
        eprintln!("progress: {read} rows read");
    }
    if let Some(importer) = importer {
        importer.close().await;
    }
    let _ = source.close().await;
    let verb = if options.dry_run {
        "dry run, nothing written: would import"
    } else {
        "imported"
    };
    println!(
        "{verb} {}, updated {}, unchanged {}, skipped {}, failed {}",
        report.imported, report.updated, report.unchanged, report.skipped, report.failed
    );
    Ok(report)
}

enum RowResult {
    Stored(Outcome),
    /// A dry run: the row would be imported (or would update or leave its connection).
    Valid,
    Skipped(String),
}

async fn import_row(
    plan: &Plan,
    mapping: &Mapping<'_>,
    winners: &HashMap<Destination, (Option<i64>, Vec<String>)>,
    row: &sqlx::postgres::PgRow,
    key: &[String],
    fernet: Option<&fernet::MultiFernet>,
    importer: Option<&mut Importer>,
) -> anyhow::Result<RowResult> {
    if row.try_get::<bool, _>("f_revoked").unwrap_or(false) {
        return Ok(RowResult::Skipped("revoked".into()));
    }
    let dest = mapping.destination(row)?;
    if let Some((_, winner)) = winners.get(&dest)
        && winner.as_slice() != key
    {
        return Ok(RowResult::Skipped(format!(
            "another row ({}) is newer for the same connection (provider {}, actor {})",
            describe(plan, winner),
            dest.provider,
            dest.actor_id
        )));
    }
    let provider = relay_core::ProviderName::parse(&dest.provider)
        .map_err(|e| anyhow::anyhow!("provider: {e}"))?;
    let client = mapping
        .configured
        .iter()
        .find(|(p, _)| p == &provider)
        .map(|(_, c)| c.as_str())
        .unwrap_or_default();
    let tokens = tokens_of(plan, row, fernet, client, &provider)?;
    let Some(importer) = importer else {
        return Ok(RowResult::Valid);
    };
    let actor_key = ActorKey {
        workspace: importer.workspace(&dest.workspace).await?,
        provider,
        actor_type: ActorType::parse(&dest.actor_type)
            .map_err(|e| anyhow::anyhow!("actor_type: {e}"))?,
        actor_id: ActorId::parse(&dest.actor_id).map_err(|e| anyhow::anyhow!("actor: {e}"))?,
    };
    let (outcome, id) = importer.put(&actor_key, tokens).await?;
    tracing::debug!(connection_id = %id, outcome = ?outcome, "imported row");
    Ok(RowResult::Stored(outcome))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_identifiers() {
        assert_eq!(
            TableName::parse("oauth_tokens").unwrap().quoted(),
            "\"oauth_tokens\""
        );
        assert_eq!(
            TableName::parse("legacy.oauth_tokens").unwrap().quoted(),
            "\"legacy\".\"oauth_tokens\""
        );
        for bad in [
            "",
            "a.b.c",
            "1tokens",
            "oauth_tokens; DROP TABLE x",
            "\"quoted\"",
            "a..b",
            "tokens--",
            &"x".repeat(64),
        ] {
            assert!(TableName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes_as_text_or_json() {
        assert_eq!(
            scopes_from_text("openid email")
                .unwrap()
                .to_space_separated(),
            "openid email"
        );
        assert_eq!(
            scopes_from_text(r#"["a", "b"]"#)
                .unwrap()
                .to_space_separated(),
            "a b"
        );
        assert!(scopes_from_text("[not json").is_err());
    }

    #[test]
    fn provider_maps() {
        let m = parse_provider_map(&["gmail=google".into(), " drive = google ".into()]).unwrap();
        assert_eq!(m["gmail"], "google");
        assert_eq!(m["drive"], "google");
        assert!(parse_provider_map(&["gmail".into()]).is_err());
        assert!(parse_provider_map(&["=google".into()]).is_err());
    }

    #[test]
    fn shapes_from_columns() {
        let cols = |names: &[&str]| -> Columns {
            names
                .iter()
                .map(|n| ((*n).to_owned(), "text".to_owned()))
                .collect()
        };
        let actor = cols(&[
            "workspace_id",
            "actor_type",
            "actor_id",
            "provider",
            "access_token_encrypted",
        ]);
        assert_eq!(
            detect_shape(&actor, ShapeChoice::Auto).unwrap(),
            Shape::Actor
        );
        let user = cols(&["id", "user_id", "service", "access_token_encrypted"]);
        assert_eq!(detect_shape(&user, ShapeChoice::Auto).unwrap(), Shape::User);
        let data = cols(&["provider", "account", "token_data"]);
        assert_eq!(
            detect_shape(&data, ShapeChoice::Auto).unwrap(),
            Shape::TokenData
        );
        assert!(detect_shape(&cols(&["x"]), ShapeChoice::Auto).is_err());
        let err = detect_shape(&data, ShapeChoice::Actor)
            .unwrap_err()
            .to_string();
        assert!(err.contains("workspace_id"), "{err}");
    }
}
