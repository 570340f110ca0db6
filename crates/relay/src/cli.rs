//! The command line: `serve`, `migrate`, `api-key create|revoke`, `vault status|reseal`,
//! `import token-json|fernet-jsonl|postgres`, `connection add-service-account`,
//! `audit verify|export`, `mcp` (stdio MCP for local agents), `health`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use relay_core::audit::{self, AuditAction, AuditEvent};
use relay_core::{Clock, SystemClock};

use crate::config::Config;
use crate::{logging, runtime};

#[derive(Parser)]
#[command(
    name = "relay",
    version,
    about = "Connect your users' accounts, keep their tokens fresh, act on their behalf."
)]
pub struct Cli {
    /// Configuration file (default: $RELAY_CONFIG, or ./relay.toml when it exists).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve,
    /// Apply database migrations (they also run at `serve`), or undo them.
    Migrate {
        /// Undo migrations down to this version (0 removes every table).
        #[arg(long, value_name = "VERSION")]
        undo_to: Option<i64>,
    },
    /// Manage API keys.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
    /// Print the OpenAPI document (the same one `GET /openapi.json` serves).
    Openapi,
    /// Inspect and rotate the token vault's encryption keys.
    #[command(subcommand)]
    Vault(VaultCommand),
    /// Import existing tokens (see docs/OPERATIONS.md, "Importing tokens").
    #[command(subcommand)]
    Import(ImportCommand),
    /// Verify or export the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Serve Relay's MCP tools over stdio for a local agent, forwarding to a Relay server's
    /// `/mcp` with the API key in RELAY_API_KEY (see docs/MCP.md).
    Mcp {
        /// The Relay server's base URL.
        #[arg(long, env = "RELAY_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Whose account the tools act in (sent as `Relay-Actor-Id`); without it every tool
        /// call names `actor_id`.
        #[arg(long, env = "RELAY_ACTOR_ID")]
        actor_id: Option<String>,
        /// The actor's type (default `user`).
        #[arg(long, env = "RELAY_ACTOR_TYPE")]
        actor_type: Option<String>,
    },
    /// Probe a running instance's `/ready`: exit 0 when ready, 1 otherwise (for container
    /// health checks; the image has no curl).
    Health {
        /// URL to probe (default: `/ready` on the configured listen port, over loopback).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Seconds to wait for the answer.
        #[arg(long, value_name = "SECS", default_value_t = 3)]
        timeout: u64,
    },
    /// Add connections without a user's consent flow.
    #[command(subcommand)]
    Connection(ConnectionCommand),
}

#[derive(Subcommand)]
enum ConnectionCommand {
    /// Act as a Google Workspace user through a service account with domain-wide delegation
    /// (what GOOGLE_CREDENTIALS_JSON + GMAIL_DELEGATED_USER did). Mints a first token to prove
    /// the delegation works, then stores the key sealed; tokens are minted anew as they expire.
    AddServiceAccount {
        /// Workspace of the connection (created if needed).
        #[arg(long)]
        workspace: String,
        /// Configured provider whose token endpoint mints the tokens (Google).
        #[arg(long)]
        provider: String,
        #[arg(long)]
        actor_id: String,
        #[arg(long)]
        actor_type: Option<String>,
        /// The service account key JSON downloaded from Google's console.
        #[arg(long, value_name = "PATH")]
        key_file: PathBuf,
        /// Email of the Workspace user to act as.
        #[arg(long)]
        subject: String,
        /// A scope the delegation grants (repeatable, or space-separated).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
}

#[derive(clap::Args)]
struct ImportTargetArgs {
    /// Workspace to import into (created if needed).
    #[arg(long)]
    workspace: String,
    /// Configured provider the tokens belong to (`fernet-jsonl`: of rows naming none).
    #[arg(long)]
    provider: Option<String>,
    #[arg(long)]
    actor_type: Option<String>,
}

#[derive(Subcommand)]
enum ImportCommand {
    /// A Google authorized-user token.json for one actor.
    TokenJson {
        #[command(flatten)]
        target: ImportTargetArgs,
        #[arg(long)]
        actor_id: String,
        file: PathBuf,
    },
    /// Fernet-encrypted rows exported from an `oauth_tokens` table as JSON lines (`-` for stdin),
    /// each `{"actor_id", "access_token", "refresh_token"?, "expires_at"?, "scopes"?,
    /// "provider"? (or "service")}`.
    FernetJsonl {
        #[command(flatten)]
        target: ImportTargetArgs,
        #[command(flatten)]
        keys: LegacyKeyArgs,
        file: PathBuf,
    },
    /// Tokens read straight from the old service's PostgreSQL table (actor, user or
    /// token-data rows; see docs/OPERATIONS.md). Safe to rerun: it finishes an interrupted run
    /// and changes nothing the second time.
    Postgres {
        /// The old database (postgres://...).
        #[arg(long, env = "LEGACY_DATABASE_URL", hide_env_values = true)]
        source_url: String,
        /// The table, optionally schema-qualified.
        #[arg(long, default_value = "oauth_tokens")]
        table: String,
        #[arg(long, value_enum, default_value = "auto")]
        shape: crate::import::postgres::ShapeChoice,
        /// Relay workspace of every row (required unless the rows carry workspace_id).
        #[arg(long)]
        workspace: Option<String>,
        /// Actor type of user and token-data rows (default: user).
        #[arg(long)]
        actor_type: Option<String>,
        /// SERVICE=PROVIDER: the configured provider for a legacy provider/service value
        /// (repeatable), e.g. gmail=google.
        #[arg(long = "provider-map", value_name = "SERVICE=PROVIDER")]
        provider_map: Vec<String>,
        #[command(flatten)]
        keys: LegacyKeyArgs,
        /// Decrypt and check every row, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Rows read per query.
        #[arg(long, default_value_t = 500)]
        batch_size: u32,
        /// Spare a busy source database.
        #[arg(long)]
        max_rows_per_second: Option<u32>,
    },
}

#[derive(clap::Args)]
struct LegacyKeyArgs {
    /// A Fernet key the old service encrypted with (repeatable; tried in order, like
    /// MultiFernet). Default: LEGACY_FERNET_KEYS (comma-separated), else LEGACY_FERNET_KEY,
    /// else OAUTH_ENCRYPTION_KEY.
    #[arg(
        long = "legacy-key",
        env = "LEGACY_FERNET_KEYS",
        value_delimiter = ',',
        hide_env_values = true,
        // A URL-safe base64 key may well start with `-`.
        allow_hyphen_values = true
    )]
    legacy_keys: Vec<String>,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every workspace's chain (keyed with the audit key, so it needs the encryption
    /// key), that every workspace holding data has one, and that they reach the anchors;
    /// exits non-zero naming the first broken record.
    Verify {
        #[arg(long)]
        workspace: Option<String>,
        /// JSON lines of anchors kept outside the database: `relay audit heads` output, or
        /// Relay's JSON log lines (`audit anchor`); other lines are skipped.
        #[arg(long)]
        anchors: Option<PathBuf>,
    },
    /// Print each workspace's chain head as a JSON line (`workspace_id`, `seq`, `hash`): an
    /// anchor to keep outside the database.
    Heads,
    /// Write the records as JSON lines (oldest first per workspace) to standard output.
    Export {
        #[arg(long)]
        workspace: Option<String>,
        /// RFC 3339; records at or after this time.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339; records before this time.
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(Subcommand)]
enum VaultCommand {
    /// How many sealed tokens each key holds.
    Status,
    /// Re-seal every token under the primary key (OAUTH_ENCRYPTION_KEY), so that the keys in
    /// OAUTH_ENCRYPTION_KEY_PREVIOUS can be retired. Safe while the server runs.
    Reseal,
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create an API key for a workspace (created if needed). The key is printed once, as
    /// the last line of standard output; only its hash is stored.
    Create {
        #[arg(long)]
        workspace: String,
        /// Requests per minute for this key (default: the configured limit).
        #[arg(long)]
        rate_limit: Option<i64>,
        /// `service` (connect, connections, tokens, actions) or `admin` (also API keys, the
        /// webhook secret and the audit log).
        #[arg(long, value_enum, default_value_t = RoleArg::Service)]
        role: RoleArg,
    },
    /// Revoke an API key by its id (`key_...`). Every replica refuses it at once when Redis
    /// is configured, within `[cache] api_key_ttl_secs` otherwise.
    Revoke { id: String },
}

/// `--role` of `api-key create`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    Service,
    Admin,
}

impl From<RoleArg> for relay_core::ports::ApiKeyRole {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Service => Self::Service,
            RoleArg::Admin => Self::Admin,
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Openapi = cli.command {
        // Needs no configuration: the document describes the code, not a deployment.
        println!("{}", relay_server::openapi().to_pretty_json()?);
        return Ok(());
    }
    if let Command::Mcp {
        url,
        actor_id,
        actor_type,
    } = cli.command
    {
        // A client of a Relay server: no configuration, no database. The key comes from the
        // environment only, never the command line (which other users can read).
        let api_key = std::env::var("RELAY_API_KEY")
            .ok()
            .filter(|k| !k.trim().is_empty())
            .context("set RELAY_API_KEY to a Relay API key")?;
        let endpoint = reqwest::Url::parse(&url)
            .and_then(|u| u.join("mcp"))
            .with_context(|| format!("--url {url:?} is not a URL"))?;
        let telemetry = logging::init_logging("text");
        let result = crate::mcp_stdio::StdioProxy {
            endpoint,
            api_key: secrecy::SecretString::from(api_key.trim().to_owned()),
            actor_id,
            actor_type,
        }
        .run()
        .await;
        telemetry.shutdown();
        return result;
    }
    if let Command::Health { url, timeout } = cli.command {
        // No logging set-up: a health check prints one line, every few seconds.
        let timeout = std::time::Duration::from_secs(timeout.max(1));
        return crate::health::probe(cli.config.as_deref(), url, timeout).await;
    }
    let config = Config::load(cli.config.as_deref())?;
    let telemetry = logging::init_logging(&config.log_format);
    let result = run_command(cli.command, config).await;
    telemetry.shutdown();
    result
}

async fn run_command(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => runtime::serve(config).await,
        Command::Openapi | Command::Mcp { .. } | Command::Health { .. } => Ok(()),
        Command::Migrate { undo_to } => {
            let db = relay_store::connect(&config.database_url)
                .await
                .context("opening the database")?;
            match undo_to {
                Some(v) => {
                    db.undo_to(v).await.context("undoing migrations")?;
                    println!("migrations undone to version {v}");
                }
                None => {
                    db.migrate().await.context("running migrations")?;
                    println!("migrations applied");
                }
            }
            db.close().await;
            Ok(())
        }
        Command::ApiKey(ApiKeyCommand::Create {
            workspace,
            rate_limit,
            role,
        }) => {
            use secrecy::ExposeSecret;
            let name = workspace.trim();
            if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
                anyhow::bail!("--workspace must be 1 to 128 printable characters");
            }
            if rate_limit.is_some_and(|r| r <= 0) {
                anyhow::bail!("--rate-limit must be positive");
            }
            let (db, _keys) = crate::keys::open_audited(&config).await?;
            let store = db.store();
            let now = SystemClock.now();
            let ws = store
                .ensure_workspace(name, now)
                .await
                .context("creating the workspace")?;
            let role = relay_core::ports::ApiKeyRole::from(role);
            let minted = relay_server::auth::mint_api_key(ws.id.clone(), now, rate_limit, role);
            store
                .insert_api_key(&minted.record)
                .await
                .context("storing the API key")?;
            let limit = rate_limit.map_or_else(|| "default".to_owned(), |l| l.to_string());
            crate::audit_cli::record(
                &db,
                AuditEvent::new(ws.id.clone(), AuditAction::ApiKeyCreated, now)
                    .api_key_id(minted.record.id.clone())
                    .detail(format!(
                        "{} role={} rate_limit_per_minute={limit} by relay api-key create",
                        minted.record.id,
                        role.as_str()
                    )),
            )
            .await?;
            db.close().await;
            eprintln!(
                "created {} API key {} for workspace {:?} ({}); it is shown once:",
                role.as_str(),
                minted.record.id,
                ws.name,
                ws.id
            );
            println!("{}", minted.secret.expose_secret());
            Ok(())
        }
        Command::Import(cmd) => {
            let to_target = |t: ImportTargetArgs| crate::import::Target {
                workspace: t.workspace,
                provider: t.provider,
                actor_type: t.actor_type,
            };
            match cmd {
                ImportCommand::TokenJson {
                    target,
                    actor_id,
                    file,
                } => crate::import::token_json(&config, &to_target(target), &actor_id, &file).await,
                ImportCommand::FernetJsonl { target, keys, file } => {
                    let report = crate::import::fernet_jsonl(
                        &config,
                        &to_target(target),
                        &keys.legacy_keys,
                        &file,
                    )
                    .await?;
                    if report.failed > 0 {
                        anyhow::bail!("{} rows could not be imported (see above)", report.failed);
                    }
                    Ok(())
                }
                ImportCommand::Postgres {
                    source_url,
                    table,
                    shape,
                    workspace,
                    actor_type,
                    provider_map,
                    keys,
                    dry_run,
                    batch_size,
                    max_rows_per_second,
                } => {
                    let options = crate::import::postgres::Options {
                        source_url: source_url.into(),
                        table,
                        shape,
                        workspace,
                        actor_type,
                        provider_map,
                        legacy_keys: keys.legacy_keys,
                        dry_run,
                        batch_size,
                        max_rows_per_second,
                    };
                    let report = crate::import::postgres::run(&config, &options).await?;
                    if report.failed > 0 {
                        anyhow::bail!("{} rows could not be imported (see above)", report.failed);
                    }
                    Ok(())
                }
            }
        }
        Command::Connection(ConnectionCommand::AddServiceAccount {
            workspace,
            provider,
            actor_id,
            actor_type,
            key_file,
            subject,
            scopes,
        }) => {
            crate::import::add_service_account(
                &config,
                crate::import::ServiceAccountArgs {
                    workspace: &workspace,
                    provider: &provider,
                    actor_id: &actor_id,
                    actor_type: actor_type.as_deref(),
                    key_file: &key_file,
                    subject: &subject,
                    scopes: &scopes,
                },
            )
            .await
        }
        Command::Audit(cmd) => {
            let db = runtime::open_database(&config).await?;
            let result = match cmd {
                AuditCommand::Verify { workspace, anchors } => {
                    match crate::keys::load(&config, db.store().as_ref()).await {
                        Ok(keys) => match crate::keys::install_audit_key(&db, &keys).await {
                            Ok(key) => {
                                crate::audit_cli::verify(
                                    &db,
                                    &key,
                                    workspace.as_deref(),
                                    anchors.as_deref(),
                                )
                                .await
                            }
                            Err(e) => Err(e),
                        },
                        Err(e) => Err(e),
                    }
                }
                AuditCommand::Heads => crate::audit_cli::heads(&db).await,
                AuditCommand::Export {
                    workspace,
                    from,
                    to,
                } => {
                    crate::audit_cli::export(
                        &db,
                        workspace.as_deref(),
                        from.as_deref(),
                        to.as_deref(),
                    )
                    .await
                }
            };
            db.close().await;
            result
        }
        Command::Vault(cmd) => {
            let (db, keys) = crate::keys::open_audited(&config).await?;
            let store = db.store();
            match cmd {
                VaultCommand::Status => {
                    let mut usage = relay_core::rotation::key_usage(store.as_ref()).await?;
                    // The audit chain's MAC key is sealed too (one row; re-sealed whenever a
                    // command loads it with the previous keys configured).
                    if let Some(sealed) = db.audit_store().sealed_audit_key().await? {
                        let key = relay_core::vault::Keyring::key_id_of(&sealed)
                            .map(|k| k.to_hex())
                            .unwrap_or_else(|_| "unreadable".into());
                        *usage
                            .entry("audit_key")
                            .or_default()
                            .entry(key)
                            .or_insert(0) += 1;
                    }
                    println!("primary key: {}", keys.keyring.primary_id());
                    // One line per kind and key: after a complete re-seal, every line names
                    // the primary key, and the previous keys can be retired.
                    for (kind, keys) in usage {
                        for (key, count) in keys {
                            println!("{kind}\t{key}\t{count} sealed");
                        }
                    }
                }
                VaultCommand::Reseal => {
                    let r = relay_core::rotation::reseal_all(store.as_ref(), &keys.keyring).await?;
                    let event = AuditEvent::new(
                        relay_core::WorkspaceId::from_stored(audit::SYSTEM_WORKSPACE.to_owned()),
                        AuditAction::VaultResealed,
                        SystemClock.now(),
                    );
                    let summary = format!(
                        "primary key {}: resealed {}, changed meanwhile {}, unreadable {}",
                        keys.keyring.primary_id(),
                        r.resealed,
                        r.changed_meanwhile,
                        r.unreadable
                    );
                    let event = if r.unreadable > 0 {
                        event.failed(&summary)
                    } else {
                        event.detail(&summary)
                    };
                    crate::audit_cli::record(&db, event).await?;
                    println!(
                        "scanned {}, re-sealed {}, changed meanwhile {}, unreadable {}",
                        r.scanned, r.resealed, r.changed_meanwhile, r.unreadable
                    );
                    for (kind, k) in &r.by_kind {
                        println!(
                            "{kind}\tscanned {}, re-sealed {}, changed meanwhile {}, unreadable {}",
                            k.scanned, k.resealed, k.changed_meanwhile, k.unreadable
                        );
                    }
                    if r.unreadable > 0 {
                        db.close().await;
                        anyhow::bail!(
                            "{} sealed values (tokens, secrets, previews, outcomes or flows) are under no configured key",
                            r.unreadable
                        );
                    }
                }
            }
            db.close().await;
            Ok(())
        }
        Command::ApiKey(ApiKeyCommand::Revoke { id }) => {
            let (db, _keys) = crate::keys::open_audited(&config).await?;
            let now = SystemClock.now();
            let revoked = db
                .store()
                .revoke_api_key(&id, now)
                .await
                .context("revoking the API key")?;
            if revoked
                && let Some(ws) = db
                    .api_key_workspace(&id)
                    .await
                    .context("finding the key's workspace")?
            {
                crate::audit_cli::record(
                    &db,
                    AuditEvent::new(ws, AuditAction::ApiKeyRevoked, now)
                        .api_key_id(id.clone())
                        .detail(format!("{id} by relay api-key revoke")),
                )
                .await?;
                // Running replicas drop the key from their caches at once rather than
                // within `[cache] api_key_ttl_secs`.
                runtime::announce_api_key_change(&config, &id).await;
            }
            db.close().await;
            if revoked {
                println!("revoked {id}");
                Ok(())
            } else {
                anyhow::bail!("no active API key {id}")
            }
        }
    }
}
