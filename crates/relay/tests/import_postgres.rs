//! `relay import postgres`: real `oauth_tokens` tables of each legacy shape in a fresh source
//! database of the shared PostgreSQL, their token columns encrypted by Python's `cryptography`
//! Fernet (what the services Relay replaces used), imported into Relay's store on SQLite and
//! on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::*;
use tokio::io::AsyncBufReadExt;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one scenario with Relay's store on SQLite and on PostgreSQL.
macro_rules! on_both_backends {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(super::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario(super::Backend::Postgres).await;
            }
        }
    };
}

/// A fake provider, Relay's configuration and store, and a fresh source database.
struct Setup {
    fake: FakeProvider,
    opts: RelayOptions,
    source: PgDb,
    store: Option<PgDb>,
    dir: TempDir,
}

async fn setup(backend: Backend, provider: &str) -> Option<Setup> {
    if !python_fernet_available() {
        return None;
    }
    let fake = FakeProvider::start(FakeProviderConfig::default()).await;
    let dir = TempDir::new();
    let source = pg_database().await?;
    let store = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(pg_database().await?),
    };
    let mut opts = RelayOptions::new(
        dir.path(),
        &format!(
            "{FAST_REFRESH}{}",
            provider_toml(provider, "oidc", &fake.issuer(), "")
        ),
    );
    opts.database_url = store.as_ref().map(|p| p.url.clone());
    Some(Setup {
        fake,
        opts,
        source,
        store,
        dir,
    })
}

impl Setup {
    /// Runs statements in the source database.
    async fn source_sql(&self, sql: &str) {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.source.url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap();
    }

    /// One parameterised statement in the source database (`None` binds NULL).
    async fn source_exec(&self, sql: &str, binds: &[Option<&str>]) {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.source.url).await.unwrap();
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
        for b in binds {
            q = q.bind(b.map(str::to_owned));
        }
        q.execute(&mut conn).await.unwrap();
    }

    /// `relay import postgres --source-url ... ARGS`.
    async fn import(&self, args: &[&str]) -> (bool, String, String) {
        let mut all = vec!["import", "postgres", "--source-url", &self.source.url];
        all.extend_from_slice(args);
        self.opts.run(&all).await
    }

    /// The connections in Relay's store (read directly, so that nothing else writes).
    async fn connections(&self) -> i64 {
        use sqlx::Connection;
        match &self.store {
            Some(pg) => {
                let mut c = sqlx::PgConnection::connect(&pg.url).await.unwrap();
                let migrated: bool =
                    sqlx::query_scalar("SELECT to_regclass('connections') IS NOT NULL")
                        .fetch_one(&mut c)
                        .await
                        .unwrap();
                if !migrated {
                    return 0;
                }
                sqlx::query_scalar("SELECT count(*) FROM connections")
                    .fetch_one(&mut c)
                    .await
                    .unwrap()
            }
            None => {
                let path = self.dir.path().join("relay.db");
                if !path.exists() {
                    return 0;
                }
                let mut c =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .unwrap();
                sqlx::query_scalar("SELECT count(*) FROM connections")
                    .fetch_one(&mut c)
                    .await
                    .unwrap()
            }
        }
    }
}

/// The last line of a run: the report.
fn summary(out: &str) -> &str {
    out.lines().last().unwrap_or_default()
}

fn assert_no_secrets(out: &str, err: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !out.contains(s) && !err.contains(s),
            "a secret leaked into the output:\n{out}\n{err}"
        );
    }
}

const ACTOR_TABLE: &str = "CREATE TABLE oauth_tokens (
    workspace_id TEXT NOT NULL, actor_type TEXT NOT NULL, actor_id TEXT NOT NULL,
    provider TEXT NOT NULL, access_token_encrypted TEXT NOT NULL, refresh_token_encrypted TEXT,
    scope TEXT, expires_at TIMESTAMPTZ, created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, actor_type, actor_id, provider))";

const INSERT_ACTOR: &str = "INSERT INTO oauth_tokens (workspace_id, actor_type, actor_id, provider,
    access_token_encrypted, refresh_token_encrypted, scope, expires_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8::timestamptz)";

/// Actor rows: two legacy keys, a wrong key, a damaged value, an unconfigured provider; a dry
/// run writes nothing, a second run changes nothing, a changed row updates its connection.
async fn actor_rows(backend: Backend) {
    let Some(s) = setup(backend, "google").await else {
        return;
    };
    // A URL-safe base64 key may start with `-`: it must still read as a key, not an option.
    let key_old = "-q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned();
    let (key_new, key_unknown) = (new_fernet_key(), new_fernet_key());
    let (a1, r1) = s.fake.issue_tokens_directly();
    let new = python_fernet(&key_new, &[&a1, &r1, "ya29.bot", "ya29.carol"]);
    let old = python_fernet(&key_old, &["ya29.bob", "1//bob-refresh"]);
    let unknown = python_fernet(&key_unknown, &["ya29.wrong"]);
    s.source_sql(ACTOR_TABLE).await;
    let rows: [[Option<&str>; 8]; 7] = [
        [
            Some("acme"),
            Some("user"),
            Some("alice"),
            Some("google"),
            Some(new[0].as_str()),
            Some(new[1].as_str()),
            Some("openid email"),
            Some("2030-01-01 00:00:00+00"),
        ],
        [
            Some("acme"),
            Some("user"),
            Some("bob"),
            Some("google"),
            Some(old[0].as_str()),
            Some(old[1].as_str()),
            Some("openid"),
            None,
        ],
        [
            Some("acme"),
            Some("service"),
            Some("bot"),
            Some("google"),
            Some(new[2].as_str()),
            None,
            None,
            None,
        ],
        [
            Some("globex"),
            Some("user"),
            Some("carol"),
            Some("google"),
            Some(new[3].as_str()),
            None,
            None,
            None,
        ],
        [
            Some("acme"),
            Some("user"),
            Some("wrong"),
            Some("google"),
            Some(unknown[0].as_str()),
            None,
            None,
            None,
        ],
        [
            Some("acme"),
            Some("user"),
            Some("damaged"),
            Some("google"),
            Some("gAAAAAB-this-is-not-a-token"),
            None,
            None,
            None,
        ],
        [
            Some("acme"),
            Some("user"),
            Some("dana"),
            Some("dropbox"),
            Some(new[3].as_str()),
            None,
            None,
            None,
        ],
    ];
    for row in &rows {
        s.source_exec(INSERT_ACTOR, row).await;
    }
    let keys = [
        "--legacy-key",
        key_new.as_str(),
        "--legacy-key",
        key_old.trim_end_matches('='),
    ];
    let secrets = [
        a1.as_str(),
        r1.as_str(),
        "ya29.bob",
        "1//bob-refresh",
        "ya29.bot",
        "ya29.carol",
        "ya29.wrong",
    ];

    let mut dry = keys.to_vec();
    dry.push("--dry-run");
    let (ok, out, err) = s.import(&dry).await;
    assert!(!ok, "failed rows fail the command");
    assert_eq!(
        summary(&out),
        "dry run, nothing written: would import 4, updated 0, unchanged 0, skipped 0, failed 3",
        "{err}"
    );
    assert_eq!(s.connections().await, 0, "a dry run writes nothing");

    let (ok, out, err) = s.import(&keys).await;
    assert!(!ok);
    assert_eq!(
        summary(&out),
        "imported 4, updated 0, unchanged 0, skipped 0, failed 3",
        "{err}"
    );
    assert!(err.contains("reading oauth_tokens as actor rows"), "{err}");
    assert!(
        err.contains("actor_id=wrong provider=google: failed: access_token_encrypted does not decrypt with any legacy key"),
        "{err}"
    );
    assert!(
        err.contains(
            "actor_id=damaged provider=google: failed: access_token_encrypted is not a Fernet token"
        ),
        "{err}"
    );
    assert!(
        err.contains("actor_id=dana provider=dropbox: failed: provider dropbox is not configured"),
        "{err}"
    );
    assert_no_secrets(&out, &err, &secrets);
    assert_no_secrets(&out, &err, &[&key_new, &key_old]);

    // A second run changes nothing.
    let (_, out, err) = s.import(&keys).await;
    assert_eq!(
        summary(&out),
        "imported 0, updated 0, unchanged 4, skipped 0, failed 3",
        "{err}"
    );

    // The old service refreshed bob meanwhile: his connection takes the new token.
    let bob_new = python_fernet(&key_new, &["ya29.bob-2"]);
    s.source_exec(
        "UPDATE oauth_tokens SET access_token_encrypted = $1, updated_at = now() WHERE actor_id = 'bob'",
        &[Some(bob_new[0].as_str())],
    )
    .await;
    let (_, out, err) = s.import(&keys).await;
    assert_eq!(
        summary(&out),
        "imported 0, updated 1, unchanged 3, skipped 0, failed 3",
        "{err}"
    );
    assert_eq!(s.connections().await, 4);

    let acme = s.opts.create_api_key("acme").await;
    let globex = s.opts.create_api_key("globex").await;
    let relay = Relay::start(s.opts.clone()).await;
    let token_of = |actor: &'static str, actor_type: &'static str, key: &str| {
        let relay = &relay;
        let key = key.to_owned();
        async move {
            let (_, st) = relay
                .get_json(
                    &format!("/oauth/google/status?actor_id={actor}&actor_type={actor_type}"),
                    &key,
                )
                .await;
            let id = st["connection_id"].as_str().expect("linked").to_owned();
            let (status, tok) = relay
                .get_json(&format!("/connections/{id}/token"), &key)
                .await;
            assert_eq!(status, 200, "{tok}");
            (st, id, tok["access_token"].as_str().unwrap().to_owned())
        }
    };
    let (st, alice, token) = token_of("alice", "user", &acme).await;
    assert_eq!(token, a1);
    assert_eq!(st["scopes"], json!(["openid", "email"]));
    assert_eq!(st["expires_at"], "2030-01-01T00:00:00Z");
    assert_eq!(token_of("bob", "user", &acme).await.2, "ya29.bob-2");
    assert_eq!(token_of("bot", "service", &acme).await.2, "ya29.bot");
    assert_eq!(token_of("carol", "user", &globex).await.2, "ya29.carol");
    // The imported refresh token is the real one: a refresh works.
    let (status, tok) = relay
        .get_json(
            &format!("/connections/{alice}/token?force_refresh=true"),
            &acme,
        )
        .await;
    assert_eq!(status, 200, "{tok}");
    assert_eq!(s.fake.presented_refresh_tokens(), vec![r1]);
}
on_both_backends!(actor_rows);

/// User rows: a `service` column mapped to Relay's provider, bytea token columns, JSONB scopes,
/// a revoked row, a missing refresh token, and two services of one user landing on one
/// connection (the newer row wins, the other is reported as skipped).
async fn user_rows(backend: Backend) {
    let Some(s) = setup(backend, "google").await else {
        return;
    };
    let (key_new, key_old) = (new_fernet_key(), new_fernet_key());
    let new = python_fernet(
        &key_new,
        &[
            "ya29.u1-gmail",
            "1//u1-gmail",
            "ya29.u1-cal",
            "1//u1-cal",
            "ya29.u2",
            "ya29.u3",
        ],
    );
    let old = python_fernet(&key_old, &["ya29.u4", "1//u4"]);
    s.source_sql(
        "CREATE TABLE oauth_tokens (id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
            user_id UUID NOT NULL, service TEXT NOT NULL, access_token_encrypted BYTEA NOT NULL,
            refresh_token_encrypted BYTEA, token_type TEXT NOT NULL DEFAULT 'Bearer',
            expires_at TIMESTAMP, scopes JSONB, revoked BOOLEAN NOT NULL DEFAULT false,
            created_at TIMESTAMP NOT NULL DEFAULT now(), updated_at TIMESTAMP NOT NULL DEFAULT now(),
            UNIQUE (user_id, service))",
    )
    .await;
    let insert = "INSERT INTO oauth_tokens (user_id, service, access_token_encrypted,
        refresh_token_encrypted, expires_at, scopes, revoked, updated_at)
        VALUES ($1::uuid, $2, convert_to($3, 'UTF8'), convert_to($4, 'UTF8'), $5::timestamp,
        $6::jsonb, $7::boolean, $8::timestamp)";
    let u1 = "00000000-0000-4000-8000-000000000001";
    let u2 = "00000000-0000-4000-8000-000000000002";
    let u3 = "00000000-0000-4000-8000-000000000003";
    let u4 = "00000000-0000-4000-8000-000000000004";
    let gmail_scope = r#"["https://www.googleapis.com/auth/gmail.send"]"#;
    for row in [
        [
            Some(u1),
            Some("gmail"),
            Some(new[0].as_str()),
            Some(new[1].as_str()),
            Some("2031-02-03 04:05:06"),
            Some(gmail_scope),
            Some("false"),
            Some("2024-01-01 00:00:00"),
        ],
        [
            Some(u1),
            Some("calendar"),
            Some(new[2].as_str()),
            Some(new[3].as_str()),
            None,
            Some(r#"["https://www.googleapis.com/auth/calendar"]"#),
            Some("false"),
            Some("2024-06-01 00:00:00"),
        ],
        [
            Some(u2),
            Some("gmail"),
            Some(new[4].as_str()),
            None,
            None,
            None,
            Some("true"),
            Some("2024-01-01 00:00:00"),
        ],
        [
            Some(u3),
            Some("gmail"),
            Some(new[5].as_str()),
            None,
            None,
            Some(gmail_scope),
            Some("false"),
            Some("2024-01-01 00:00:00"),
        ],
        [
            Some(u4),
            Some("gmail"),
            Some(old[0].as_str()),
            Some(old[1].as_str()),
            None,
            None,
            Some("false"),
            Some("2024-01-01 00:00:00"),
        ],
    ] {
        s.source_exec(insert, &row).await;
    }
    let args = [
        "--workspace",
        "acme",
        "--provider-map",
        "gmail=google",
        "--provider-map",
        "calendar=google",
        "--legacy-key",
        key_new.as_str(),
        "--legacy-key",
        key_old.as_str(),
    ];
    let (ok, out, err) = s.import(&args).await;
    assert!(ok, "{err}");
    assert_eq!(
        summary(&out),
        "imported 3, updated 0, unchanged 0, skipped 2, failed 0",
        "{err}"
    );
    assert!(err.contains("reading oauth_tokens as user rows"), "{err}");
    assert!(err.contains(": skipped: revoked"), "{err}");
    assert!(
        err.contains("skipped: another row (id=") && err.contains(&format!("actor {u1}")),
        "{err}"
    );
    assert_no_secrets(
        &out,
        &err,
        &[
            "ya29.u1-gmail",
            "1//u1-gmail",
            "ya29.u1-cal",
            "ya29.u2",
            "ya29.u4",
        ],
    );
    let (_, out, _) = s.import(&args).await;
    assert_eq!(
        summary(&out),
        "imported 0, updated 0, unchanged 3, skipped 2, failed 0"
    );
    assert_eq!(s.connections().await, 3);

    let key = s.opts.create_api_key("acme").await;
    let relay = Relay::start(s.opts.clone()).await;
    let (_, st) = relay
        .get_json(&format!("/oauth/google/status?actor_id={u1}"), &key)
        .await;
    assert_eq!(
        st["scopes"],
        json!(["https://www.googleapis.com/auth/calendar"]),
        "the newer row (calendar) won"
    );
    let id = st["connection_id"].as_str().unwrap();
    let (_, tok) = relay
        .get_json(&format!("/connections/{id}/token"), &key)
        .await;
    assert_eq!(tok["access_token"], "ya29.u1-cal");
    let (_, st) = relay
        .get_json(&format!("/oauth/google/status?actor_id={u2}"), &key)
        .await;
    assert_eq!(st["linked"], false, "a revoked row is not imported");
    let (_, st) = relay
        .get_json(&format!("/oauth/google/status?actor_id={u4}"), &key)
        .await;
    let id = st["connection_id"].as_str().unwrap();
    let (_, tok) = relay
        .get_json(&format!("/connections/{id}/token"), &key)
        .await;
    assert_eq!(tok["access_token"], "ya29.u4", "opened with the second key");
}
on_both_backends!(user_rows);

/// Plaintext `token_data` rows (Google authorized-user JSON), schema-qualified table name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_data_rows() {
    let Some(s) = setup(Backend::Sqlite, "google").await else {
        return;
    };
    s.source_sql(
        "CREATE SCHEMA legacy;
         CREATE TABLE legacy.google_tokens (provider TEXT NOT NULL, account TEXT NOT NULL,
            token_data JSONB NOT NULL, expires_at TIMESTAMPTZ,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(), updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            UNIQUE (provider, account))",
    )
    .await;
    let insert = "INSERT INTO legacy.google_tokens (provider, account, token_data, expires_at)
        VALUES ($1, $2, $3::jsonb, $4::timestamptz)";
    let alice = json!({"token": "ya29.alice", "refresh_token": "1//alice",
        "token_uri": "https://oauth2.googleapis.com/token", "client_id": "relay-test",
        "client_secret": "relay-secret", "scopes": ["https://www.googleapis.com/auth/gmail.send"],
        "expiry": "2031-05-06T07:08:09.123456Z"})
    .to_string();
    let foreign = json!({"token": "ya29.foreign", "refresh_token": "1//foreign",
        "client_id": "someone-else"})
    .to_string();
    let empty = json!({"client_id": "relay-test"}).to_string();
    s.source_exec(
        insert,
        &[
            Some("google"),
            Some("alice@example.com"),
            Some(alice.as_str()),
            None,
        ],
    )
    .await;
    s.source_exec(
        insert,
        &[
            Some("google"),
            Some("bob@example.com"),
            Some(foreign.as_str()),
            None,
        ],
    )
    .await;
    s.source_exec(
        insert,
        &[
            Some("google"),
            Some("carol@example.com"),
            Some(empty.as_str()),
            None,
        ],
    )
    .await;
    let args = ["--table", "legacy.google_tokens", "--workspace", "acme"];
    let (ok, out, err) = s.import(&args).await;
    assert!(!ok);
    assert_eq!(
        summary(&out),
        "imported 1, updated 0, unchanged 0, skipped 0, failed 2",
        "{err}"
    );
    assert!(
        err.contains("account=bob@example.com: failed: token_data: the tokens were issued to client someone-else"),
        "{err}"
    );
    assert!(
        err.contains("account=carol@example.com: failed: token_data: holds neither"),
        "{err}"
    );
    assert_no_secrets(
        &out,
        &err,
        &["ya29.alice", "1//alice", "ya29.foreign", "relay-secret"],
    );
    let (_, out, _) = s.import(&args).await;
    assert_eq!(
        summary(&out),
        "imported 0, updated 0, unchanged 1, skipped 0, failed 2"
    );

    // Names that are not plain identifiers are refused before anything is read.
    let (ok, _, err) = s
        .import(&[
            "--table",
            "google_tokens; DROP TABLE x",
            "--workspace",
            "acme",
        ])
        .await;
    assert!(!ok && err.contains("--table must be"), "{err}");
    let (ok, _, err) = s
        .import(&["--table", "missing", "--workspace", "acme"])
        .await;
    assert!(!ok && err.contains("has no table missing"), "{err}");
    let (ok, _, err) = s.import(&["--table", "legacy.google_tokens"]).await;
    assert!(!ok && err.contains("--workspace is required"), "{err}");

    let key = s.opts.create_api_key("acme").await;
    let relay = Relay::start(s.opts.clone()).await;
    let (_, st) = relay
        .get_json("/oauth/google/status?actor_id=alice@example.com", &key)
        .await;
    assert_eq!(st["expires_at"], "2031-05-06T07:08:09Z");
    assert_eq!(
        st["scopes"],
        json!(["https://www.googleapis.com/auth/gmail.send"])
    );
}

/// An import killed half-way (SIGKILL) is finished by running it again: every row ends up
/// imported exactly once.
async fn killed_and_rerun(backend: Backend) {
    let Some(s) = setup(backend, "google").await else {
        return;
    };
    const ROWS: usize = 40;
    let key = new_fernet_key();
    let plaintexts: Vec<String> = (0..ROWS).map(|i| format!("ya29.row-{i}")).collect();
    let refs: Vec<&str> = plaintexts.iter().map(String::as_str).collect();
    let sealed = python_fernet(&key, &refs);
    s.source_sql(ACTOR_TABLE).await;
    for (i, value) in sealed.iter().enumerate() {
        let actor = format!("actor-{i:02}");
        s.source_exec(
            INSERT_ACTOR,
            &[
                Some("acme"),
                Some("user"),
                Some(actor.as_str()),
                Some("google"),
                Some(value),
                None,
                None,
                None,
            ],
        )
        .await;
    }
    // Slowed down to 10 rows a second, so that the kill lands half-way.
    let mut child = s.opts.spawn(&[
        "import",
        "postgres",
        "--source-url",
        &s.source.url,
        "--legacy-key",
        &key,
        "--batch-size",
        "5",
        "--max-rows-per-second",
        "10",
    ]);
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let seen = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("progress: 5 rows read") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(seen, "the import reported no progress");
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "killed");
    let before = s.connections().await;
    assert!(
        (5..ROWS as i64).contains(&before),
        "killed half-way: {before} of {ROWS} imported"
    );

    let (ok, out, err) = s.import(&["--legacy-key", &key]).await;
    assert!(ok, "{err}");
    assert_eq!(
        summary(&out),
        format!(
            "imported {}, updated 0, unchanged {before}, skipped 0, failed 0",
            ROWS as i64 - before
        )
    );
    assert_eq!(s.connections().await, ROWS as i64);
}
on_both_backends!(killed_and_rerun);
