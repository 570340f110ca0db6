//! End-to-end tests of the core: the real `relay` binary against SQLite and against the real
//! PostgreSQL, with a local fake provider playing Google, Microsoft or a generic OIDC server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one scenario on both backends.
macro_rules! on_both_backends {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$scenario(super::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$scenario(super::Backend::Postgres).await;
            }
        }
    };
}

/// A running Relay pointed at a fake provider named `test`, with an API key.
struct World {
    fake: FakeProvider,
    relay: Relay,
    key: String,
    _dir: TempDir,
    _pg: Option<PgDb>,
}

async fn world_with(
    backend: Backend,
    fake_cfg: FakeProviderConfig,
    extra_toml: &str,
) -> Option<World> {
    let fake = FakeProvider::start(fake_cfg).await;
    let dir = TempDir::new();
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(pg_database().await?),
    };
    let toml = format!(
        "{FAST_REFRESH}{extra_toml}\n{}",
        provider_toml("test", "oidc", &fake.issuer(), "")
    );
    let mut opts = RelayOptions::new(dir.path(), &toml);
    opts.database_url = pg.as_ref().map(|p| p.url.clone());
    let key = opts.create_api_key("acme").await;
    let relay = Relay::start(opts).await;
    Some(World {
        fake,
        relay,
        key,
        _dir: dir,
        _pg: pg,
    })
}

async fn world(backend: Backend, fake_cfg: FakeProviderConfig) -> Option<World> {
    world_with(backend, fake_cfg, "").await
}

impl World {
    /// Runs the browser part of the connect flow and returns the callback response.
    async fn connect(&self, actor: &str) -> (u16, String, reqwest::header::HeaderMap) {
        let (status, body) = self
            .relay
            .get_json(
                &format!("/oauth/test/authorize?actor_id={actor}"),
                &self.key,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let redirect = follow_authorize(body["authorize_url"].as_str().unwrap()).await;
        let resp = self
            .relay
            .http
            .get(&redirect.location)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, resp.text().await.unwrap(), headers)
    }

    /// Imports tokens minted directly at the fake, expiring in `expires_in` seconds.
    async fn import(&self, actor: &str, expires_in: u64) -> (String, String, String) {
        let (access, refresh) = self.fake.issue_tokens_directly();
        let (status, body) = self
            .relay
            .post_json(
                "/connections",
                &self.key,
                &json!({"provider": "test", "actor_id": actor, "access_token": access,
                        "refresh_token": refresh, "expires_in": expires_in, "scopes": ["openid", "email"]}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        (body["id"].as_str().unwrap().to_owned(), access, refresh)
    }

    async fn token(&self, id: &str, query: &str) -> (u16, Value) {
        self.relay
            .get_json(&format!("/connections/{id}/token{query}"), &self.key)
            .await
    }
}

async fn full_connect_flow(backend: Backend) {
    let Some(w) = world(backend, FakeProviderConfig::default()).await else {
        return;
    };
    let (status, body, headers) = w.connect("user-42").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Account connected"));
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(w.fake.code_exchanges(), 1);

    // The authorization request carried PKCE S256 and the configured scopes.
    let q = w.fake.last_authorize_query().unwrap();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["scope"], "openid email offline_access");
    assert!(q["state"].len() >= 43, "state has at least 256 bits");
    assert_eq!(q["redirect_uri"], w.relay.url("/oauth/test/callback"));

    let (status, st) = w
        .relay
        .get_json("/oauth/test/status?actor_id=user-42", &w.key)
        .await;
    assert_eq!(status, 200);
    assert_eq!(st["linked"], true);
    assert_eq!(st["status"], "active");
    assert_eq!(st["scopes"], json!(["openid", "email", "offline_access"]));
    let id = st["connection_id"].as_str().unwrap().to_owned();

    let (status, tok) = w.token(&id, "").await;
    assert_eq!(status, 200, "{tok}");
    assert!(
        w.fake
            .is_access_token_valid(tok["access_token"].as_str().unwrap())
    );
    assert_eq!(tok["token_type"], "Bearer");
    assert!(
        tok.get("refresh_token").is_none(),
        "the refresh token is never returned"
    );
    assert_eq!(
        w.fake.refresh_requests(),
        0,
        "a fresh token is not refreshed"
    );

    let (status, list) = w.relay.get_json("/connections", &w.key).await;
    assert_eq!(status, 200);
    assert_eq!(list["connections"].as_array().unwrap().len(), 1);
    let text = list.to_string();
    assert!(
        !text.contains(tok["access_token"].as_str().unwrap()),
        "metadata never holds a token"
    );

    // Connecting the same actor again updates the same connection.
    let (status, _, _) = w.connect("user-42").await;
    assert_eq!(status, 200);
    let (_, st2) = w
        .relay
        .get_json("/oauth/test/status?actor_id=user-42", &w.key)
        .await;
    assert_eq!(st2["connection_id"], id);

    let metrics = w
        .relay
        .http
        .get(w.relay.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for event in ["authorize_started", "tokens_stored"] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("oauth_events_total")
                    && l.contains(&format!("event=\"{event}\""))
                    && l.contains("provider=\"test\"")
            })
            .unwrap_or_else(|| panic!("no {event} in metrics:\n{metrics}"));
        assert!(line.ends_with(" 2"), "{line}");
    }
}
on_both_backends!(full_connect_flow);

async fn callback_refuses_bad_state_without_calling_the_provider(backend: Backend) {
    let Some(w) = world(backend, FakeProviderConfig::default()).await else {
        return;
    };
    let (_, body) = w
        .relay
        .get_json("/oauth/test/authorize?actor_id=a", &w.key)
        .await;
    let redirect = follow_authorize(body["authorize_url"].as_str().unwrap()).await;
    let code = redirect.code.clone().unwrap();
    let state = redirect.state.clone().unwrap();
    let iss = redirect.iss.clone().unwrap();
    let cb = |q: String| {
        w.relay
            .http
            .get(w.relay.url(&format!("/oauth/test/callback?{q}")))
            .send()
    };

    for q in [
        format!("code={code}&iss={iss}"),
        format!("code={code}&state=forged&iss={iss}"),
        format!("code={code}&state=&iss={iss}"),
    ] {
        let r = cb(q.clone()).await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{q}");
        assert_eq!(r.headers()["x-relay-result"], "invalid_state");
    }
    assert_eq!(
        w.fake.code_exchanges(),
        0,
        "no token request for a bad state"
    );

    // A mismatched issuer is refused (mix-up defence), and the state is consumed.
    let r = cb(format!(
        "code={code}&state={state}&iss=https%3A%2F%2Fattacker.invalid"
    ))
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.headers()["x-relay-result"], "issuer_mismatch");
    let r = cb(format!("code={code}&state={state}&iss={iss}"))
        .await
        .unwrap();
    assert_eq!(
        r.headers()["x-relay-result"],
        "invalid_state",
        "a state is single use"
    );
    assert_eq!(w.fake.code_exchanges(), 0);

    // The provider's own error is shown, not exchanged.
    let (_, body) = w
        .relay
        .get_json("/oauth/test/authorize?actor_id=a", &w.key)
        .await;
    w.fake.deny_next_authorization();
    let denied = follow_authorize(body["authorize_url"].as_str().unwrap()).await;
    let r = w.relay.http.get(&denied.location).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.headers()["x-relay-result"], "provider_denied");

    // The provider requires iss (its metadata says so): a callback without it is refused.
    let (_, body) = w
        .relay
        .get_json("/oauth/test/authorize?actor_id=a", &w.key)
        .await;
    let ok = follow_authorize(body["authorize_url"].as_str().unwrap()).await;
    let r = cb(format!(
        "code={}&state={}",
        ok.code.unwrap(),
        ok.state.unwrap()
    ))
    .await
    .unwrap();
    assert_eq!(r.headers()["x-relay-result"], "issuer_mismatch");

    // A failing token endpoint is a 502 page, and counted.
    let (_, body) = w
        .relay
        .get_json("/oauth/test/authorize?actor_id=a", &w.key)
        .await;
    let ok = follow_authorize(body["authorize_url"].as_str().unwrap()).await;
    w.fake.push_code_failure(Failure::InvalidGrant);
    let r = w.relay.http.get(&ok.location).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 502);
    assert_eq!(r.headers()["x-relay-result"], "token_exchange_failed");
    let body = r.text().await.unwrap();
    assert!(!body.contains(&ok.code.unwrap()), "the code is not echoed");
    let metrics = w
        .relay
        .http
        .get(w.relay.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("event=\"invalid_state\"") && !l.ends_with(" 0")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("event=\"token_exchange_failed\"") && l.ends_with(" 1")),
        "{metrics}"
    );
}
on_both_backends!(callback_refuses_bad_state_without_calling_the_provider);

async fn refreshes_when_due_and_keeps_the_refresh_token(backend: Backend) {
    let Some(w) = world(backend, FakeProviderConfig::google()).await else {
        return;
    };
    let (id, old_access, refresh) = w.import("u1", 30).await;
    // 30 s left is inside the 60 s refresh window: the read refreshes first.
    let (status, tok) = w.token(&id, "").await;
    assert_eq!(status, 200, "{tok}");
    let new_access = tok["access_token"].as_str().unwrap().to_owned();
    assert_ne!(new_access, old_access);
    assert!(w.fake.is_access_token_valid(&new_access));
    assert_eq!(w.fake.refresh_requests(), 1);
    // Google returns no refresh token on refresh: the stored one is kept and used again.
    let (status, _) = w.token(&id, "?force_refresh=true").await;
    assert_eq!(status, 200);
    assert_eq!(
        w.fake.presented_refresh_tokens(),
        vec![refresh.clone(), refresh]
    );
    // Not due: served from the cache without a provider call.
    let (_, again) = w.token(&id, "").await;
    assert_eq!(w.fake.refresh_requests(), 2);
    assert!(
        w.fake
            .is_access_token_valid(again["access_token"].as_str().unwrap())
    );
    // min_ttl beyond the token's remaining life forces a refresh; when the provider's tokens
    // live shorter than asked, the caller gets the freshest one there is.
    let (status, fresh) = w.token(&id, "?min_ttl=7200").await;
    assert_eq!(status, 200, "{fresh}");
    assert!(
        w.fake
            .is_access_token_valid(fresh["access_token"].as_str().unwrap())
    );
    assert_eq!(w.fake.refresh_requests(), 3);
    let (_, meta) = w
        .relay
        .get_json(&format!("/connections/{id}"), &w.key)
        .await;
    assert!(meta["last_refreshed_at"].is_string());
    assert_eq!(meta["has_refresh_token"], true);
}
on_both_backends!(refreshes_when_due_and_keeps_the_refresh_token);

async fn concurrent_reads_cause_one_refresh(backend: Backend) {
    let Some(w) = world(backend, FakeProviderConfig::microsoft()).await else {
        return;
    };
    let (id, _, _) = w.import("u1", 10).await;
    w.fake.set_token_delay(Duration::from_millis(300));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let http = w.relay.http.clone();
        let url = w.relay.url(&format!("/connections/{id}/token"));
        let key = w.key.clone();
        tasks.push(tokio::spawn(async move {
            let r = http.get(url).bearer_auth(key).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        tokens.insert(body["access_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        w.fake.refresh_requests(),
        1,
        "exactly one refresh reached the provider"
    );
    assert_eq!(tokens.len(), 1, "every caller got the new token");
    assert!(w.fake.is_access_token_valid(tokens.iter().next().unwrap()));
}
on_both_backends!(concurrent_reads_cause_one_refresh);

async fn force_refresh_joins_the_refresh_in_flight(backend: Backend) {
    let Some(w) = world(backend, FakeProviderConfig::microsoft()).await else {
        return;
    };
    let (id, _, _) = w.import("u1", 3600).await;
    w.fake.set_token_delay(Duration::from_millis(400));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let http = w.relay.http.clone();
        let url = w
            .relay
            .url(&format!("/connections/{id}/token?force_refresh=true"));
        let key = w.key.clone();
        tasks.push(tokio::spawn(async move {
            let r = http.get(url).bearer_auth(key).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }));
    }
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(w.fake.refresh_requests(), 1);
}
on_both_backends!(force_refresh_joins_the_refresh_in_flight);

async fn rotation_survives_a_restart(backend: Backend) {
    let Some(mut w) = world(backend, FakeProviderConfig::microsoft()).await else {
        return;
    };
    let (id, _, first_refresh) = w.import("u1", 3600).await;
    for _ in 0..3 {
        let (status, body) = w.token(&id, "?force_refresh=true").await;
        assert_eq!(status, 200, "{body}");
    }
    let opts = w.relay.opts.clone();
    let status = w.relay.stop().await;
    assert!(status.success(), "clean exit on SIGTERM");
    w.relay = Relay::start(opts).await;
    let (status, tok) = w.token(&id, "?force_refresh=true").await;
    assert_eq!(status, 200, "{tok}");
    assert!(
        w.fake
            .is_access_token_valid(tok["access_token"].as_str().unwrap())
    );
    let presented = w.fake.presented_refresh_tokens();
    assert_eq!(presented.len(), 4);
    assert_eq!(presented[0], first_refresh);
    let unique: std::collections::HashSet<_> = presented.iter().collect();
    assert_eq!(
        unique.len(),
        4,
        "a rotated-out refresh token is never sent again"
    );
}
on_both_backends!(rotation_survives_a_restart);

async fn invalid_grant_means_reconnect_and_transient_errors_change_nothing(backend: Backend) {
    let Some(w) = world(backend, FakeProviderConfig::default()).await else {
        return;
    };
    let (id, access, _) = w.import("u1", 30).await;

    // 500, 429 and a slow provider: retried, then the still-valid token is served.
    w.fake.push_refresh_failure(Failure::Status(500));
    w.fake.push_refresh_failure(Failure::RateLimited {
        retry_after_secs: 0,
    });
    w.fake
        .push_refresh_failure(Failure::Delay(Duration::from_secs(3)));
    let (status, tok) = w.token(&id, "").await;
    assert_eq!(status, 200, "{tok}");
    assert_eq!(
        tok["access_token"],
        access.as_str(),
        "degrades to the still-valid token"
    );
    assert_eq!(w.fake.refresh_requests(), 3, "three attempts");
    let (_, meta) = w
        .relay
        .get_json(&format!("/connections/{id}"), &w.key)
        .await;
    assert_eq!(
        meta["status"], "active",
        "transient failures never change the status"
    );

    // When the token cannot serve the caller, a transient failure is a 503 with Retry-After.
    for _ in 0..3 {
        w.fake.push_refresh_failure(Failure::Status(503));
    }
    let r = w
        .relay
        .get(&format!("/connections/{id}/token?min_ttl=600"), &w.key)
        .await;
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "provider_unavailable");
    let (_, meta) = w
        .relay
        .get_json(&format!("/connections/{id}"), &w.key)
        .await;
    assert_eq!(meta["status"], "active");

    // invalid_grant: the user must reconnect.
    // (A plain read right after a failure would be inside the failure backoff and be served
    // the still-valid token; min_ttl makes this read need a refresh.)
    w.fake.push_refresh_failure(Failure::InvalidGrant);
    let (status, body) = w.token(&id, "?min_ttl=600").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "needs_reauth");
    let (_, st) = w
        .relay
        .get_json("/oauth/test/status?actor_id=u1", &w.key)
        .await;
    assert_eq!(st["status"], "needs_reauth");
    assert!(
        st["status_reason"]
            .as_str()
            .unwrap()
            .starts_with("invalid_grant")
    );
    // And it stays so without further provider calls, until the user reconnects.
    let before = w.fake.refresh_requests();
    let (status, _) = w.token(&id, "").await;
    assert_eq!(status, 409);
    assert_eq!(w.fake.refresh_requests(), before);
}
on_both_backends!(invalid_grant_means_reconnect_and_transient_errors_change_nothing);

async fn delete_revokes_at_the_provider(backend: Backend) {
    let Some(w) = world(backend, FakeProviderConfig::default()).await else {
        return;
    };
    let (id, access, refresh) = w.import("u1", 3600).await;
    let (status, body) = w
        .relay
        .delete_json(&format!("/connections/{id}"), &w.key)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked"], true);
    assert_eq!(
        w.fake.revocations(),
        vec![(refresh, Some("refresh_token".to_owned()))]
    );
    assert!(
        !w.fake.is_access_token_valid(&access),
        "revoking the grant kills its tokens"
    );
    let (status, _) = w
        .relay
        .get_json(&format!("/connections/{id}"), &w.key)
        .await;
    assert_eq!(status, 404);
    let (status, _) = w.token(&id, "").await;
    assert_eq!(status, 404, "the cache forgets a deleted connection");
}
on_both_backends!(delete_revokes_at_the_provider);

impl World {
    /// Runs SQL on Relay's database, from outside Relay.
    async fn sql(&self, sql: &str) {
        use sqlx::Connection;
        match &self._pg {
            Some(pg) => {
                let mut c = sqlx::PgConnection::connect(&pg.url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
            None => {
                let path = self.relay.opts.data_dir.join("relay.db");
                let url = format!("sqlite://{}", path.display());
                let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        }
    }

    /// Makes every insert into the audit table fail (a trigger), or stops doing so.
    async fn refuse_audit_records(&self, refuse: bool) {
        let sql = match (self._pg.is_some(), refuse) {
            (false, true) => {
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log \
                 BEGIN SELECT RAISE(ABORT, 'audit refused'); END;"
            }
            (false, false) => "DROP TRIGGER refuse_audit",
            (true, true) => {
                "CREATE OR REPLACE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql \
                 AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$; \
                 CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log \
                 FOR EACH ROW EXECUTE FUNCTION refuse_audit();"
            }
            (true, false) => "DROP TRIGGER refuse_audit ON audit_log",
        };
        self.sql(sql).await;
    }
}

/// A change and its audit record commit together: while the audit table refuses records,
/// `DELETE /connections/{id}` answers 503 `audit_unavailable` and the connection stays, and
/// a completed connect flow stores no connection; once records are accepted again both work
/// and the chain verifies.
async fn no_change_is_left_unaudited(backend: Backend) {
    let Some(w) = world(backend, FakeProviderConfig::default()).await else {
        return;
    };
    let (id, _, _) = w.import("u1", 3600).await;
    w.refuse_audit_records(true).await;

    let (status, body) = w
        .relay
        .delete_json(&format!("/connections/{id}"), &w.key)
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "audit_unavailable", "{body}");
    let (status, _) = w
        .relay
        .get_json(&format!("/connections/{id}"), &w.key)
        .await;
    assert_eq!(status, 200, "the connection was not deleted unrecorded");

    let (status, page, _) = w.connect("u2").await;
    assert_eq!(status, 503, "{page}");
    assert!(page.contains("audit_unavailable"), "{page}");
    let (_, list) = w.relay.get_json("/connections?actor_id=u2", &w.key).await;
    assert_eq!(
        list["connections"].as_array().map(Vec::len),
        Some(0),
        "no connection stored unrecorded: {list}"
    );

    w.refuse_audit_records(false).await;
    let (status, body) = w
        .relay
        .delete_json(&format!("/connections/{id}"), &w.key)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, page, _) = w.connect("u2").await;
    assert_eq!(status, 200, "{page}");
    let (_, audit) = w.relay.get_json("/audit?limit=10", &w.key).await;
    let actions: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        &actions[..2],
        ["connection.created", "connection.deleted"],
        "{audit}"
    );
    let (ok, out, err) = w.relay.opts.run(&["audit", "verify"]).await;
    assert!(ok, "{out}{err}");
}
on_both_backends!(no_change_is_left_unaudited);

async fn bad_input_gets_stable_errors(backend: Backend) {
    let Some(w) = world(backend, FakeProviderConfig::default()).await else {
        return;
    };
    let (id, _, _) = w.import("u1", 3600).await;
    let r = &w.relay;
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_owned();

    // Authentication.
    let resp = r.http.get(r.url("/connections")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let (s, b) = r.get_json("/connections", "rly_not-a-real-key").await;
    assert_eq!((s, code(&b).as_str()), (401, "unauthorized"));
    let (s, _) = r.get_json("/connections", "garbage").await;
    assert_eq!(s, 401);

    // Another workspace sees none of this one's connections.
    let other = r.opts.create_api_key("globex").await;
    for path in [
        format!("/connections/{id}"),
        format!("/connections/{id}/token"),
    ] {
        let (s, b) = r.get_json(&path, &other).await;
        assert_eq!((s, code(&b).as_str()), (404, "not_found"), "{path}");
    }
    let (s, _) = r.delete_json(&format!("/connections/{id}"), &other).await;
    assert_eq!(s, 404);
    let (_, list) = r.get_json("/connections", &other).await;
    assert_eq!(list["connections"], json!([]));

    // Unknown things.
    for path in [
        "/connections/00000000-0000-0000-0000-000000000000".to_owned(),
        "/connections/not-a-uuid/token".to_owned(),
        "/oauth/nope/authorize?actor_id=a".to_owned(),
        "/oauth/NOPE/status?actor_id=a".to_owned(),
    ] {
        let (s, b) = r.get_json(&path, &w.key).await;
        assert_eq!(s, 404, "{path}: {b}");
    }
    let (s, b) = r.get_json("/no/such/route", &w.key).await;
    assert_eq!((s, code(&b).as_str()), (404, "route_not_found"));

    // Malformed and ill-typed bodies.
    let resp = r
        .http
        .post(r.url("/connections"))
        .bearer_auth(&w.key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(code(&resp.json().await.unwrap()), "invalid_json");
    for body in [
        json!({"provider": "test"}),
        json!({"provider": "test", "actor_id": "a", "access_token": 5}),
        json!({"provider": "test", "actor_id": "a", "access_token": ""}),
        json!({"provider": "test", "actor_id": "a", "access_token": "x", "expires_at": "yesterday"}),
        json!({"provider": "test", "actor_id": "a", "access_token": "x", "scopes": [1]}),
        json!({"provider": "test", "actor_id": "a", "access_token": "x", "unknown_field": 1}),
        json!({"provider": "test", "actor_id": "a", "access_token": "x", "expires_in": -5}),
    ] {
        let (s, b) = r.post_json("/connections", &w.key, &body).await;
        assert!(s == 400 || s == 422, "{body} -> {s} {b}");
        assert!(!code(&b).is_empty(), "{b}");
    }
    let (s, _) = r
        .post_json(
            "/connections",
            &w.key,
            &json!({"provider": "nope", "actor_id": "a", "access_token": "x"}),
        )
        .await;
    assert_eq!(s, 404);
    let resp = r
        .http
        .post(r.url("/connections"))
        .bearer_auth(&w.key)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);

    // Queries: missing or ill-typed parameters are 400 `invalid_query`, invalid values 422
    // `validation_error` (the one status that code has everywhere).
    for (path, status) in [
        ("/oauth/test/authorize".to_owned(), 400),
        ("/oauth/test/authorize?actor_id=".to_owned(), 422),
        (
            "/oauth/test/authorize?actor_id=a&scopes=bad%22scope".to_owned(),
            422,
        ),
        (format!("/connections/{id}/token?min_ttl=abc"), 400),
        (format!("/connections/{id}/token?force_refresh=maybe"), 400),
        ("/connections?limit=0".to_owned(), 422),
    ] {
        let (s, b) = r.get_json(&path, &w.key).await;
        let expected = if status == 400 {
            "invalid_query"
        } else {
            "validation_error"
        };
        assert_eq!((s, code(&b).as_str()), (status, expected), "{path}: {b}");
    }
    // return_to outside the allow-list.
    for rt in [
        "https%3A%2F%2Fevil.example%2F",
        "not-a-url",
        "javascript%3Aalert(1)",
    ] {
        let (s, b) = r
            .get_json(
                &format!("/oauth/test/authorize?actor_id=a&return_to={rt}"),
                &w.key,
            )
            .await;
        assert_eq!(
            (s, code(&b).as_str()),
            (400, "return_to_not_allowed"),
            "{rt}"
        );
    }
    // Nothing above was a 500, and the server is still fine.
    let (s, _) = r.get_json("/ready", &w.key).await;
    assert_eq!(s, 200);
    assert!(!r.logs().contains("panicked"));
}
on_both_backends!(bad_input_gets_stable_errors);

async fn return_to_gets_the_connection_id(backend: Backend) {
    let Some(w) = world_with(
        backend,
        FakeProviderConfig::default(),
        "[oauth]\nreturn_to_allow = [\"https://app.example.test/done\"]\n",
    )
    .await
    else {
        return;
    };
    let (s, body) = w.relay.get_json("/oauth/test/authorize?actor_id=a&return_to=https%3A%2F%2Fapp.example.test%2Fdone%3Ftab%3D2", &w.key).await;
    assert_eq!(s, 200, "{body}");
    let redirect = follow_authorize(body["authorize_url"].as_str().unwrap()).await;
    let resp = w.relay.http.get(&redirect.location).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let loc = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        loc.starts_with("https://app.example.test/done?tab=2&connection_id="),
        "{loc}"
    );
    assert_eq!(resp.headers()["referrer-policy"], "no-referrer");
}
on_both_backends!(return_to_gets_the_connection_id);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_postgres_refresh_once() {
    let Some(pg) = pg_database().await else {
        return;
    };
    let fake = FakeProvider::start(FakeProviderConfig::microsoft()).await;
    let toml = format!(
        "{FAST_REFRESH}\n{}",
        provider_toml("test", "oidc", &fake.issuer(), "")
    );
    let (dir_a, dir_b) = (TempDir::new(), TempDir::new());
    let mut opts_a = RelayOptions::new(dir_a.path(), &toml);
    opts_a.database_url = Some(pg.url.clone());
    let mut opts_b = RelayOptions::new(dir_b.path(), &toml);
    opts_b.database_url = Some(pg.url.clone());
    let key = opts_a.create_api_key("acme").await;
    let (a, b) = tokio::join!(Relay::start(opts_a), Relay::start(opts_b));
    let (access, refresh) = fake.issue_tokens_directly();
    let (s, body) = a
        .post_json(
            "/connections",
            &key,
            &json!({"provider": "test", "actor_id": "u", "access_token": access,
            "refresh_token": refresh, "expires_in": 5}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    fake.set_token_delay(Duration::from_millis(500));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let relay = if i % 2 == 0 { &a } else { &b };
        let (http, url, key) = (
            relay.http.clone(),
            relay.url(&format!("/connections/{id}/token?min_ttl=60")),
            key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let r = http.get(url).bearer_auth(key).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        tokens.insert(body["access_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        fake.refresh_requests(),
        1,
        "one refresh across two processes"
    );
    assert_eq!(tokens.len(), 1);
    assert!(fake.is_access_token_valid(tokens.iter().next().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pending_flows_and_tokens_survive_a_restart() {
    let fake = FakeProvider::start(FakeProviderConfig::default()).await;
    let dir = TempDir::new();
    let toml = provider_toml("test", "oidc", &fake.issuer(), "");
    let mut opts = RelayOptions::new(dir.path(), &toml);
    opts.port = Some(free_port());
    let key = opts.create_api_key("acme").await;
    let relay = Relay::start(opts.clone()).await;
    let (_, body) = relay
        .get_json("/oauth/test/authorize?actor_id=a", &key)
        .await;
    let redirect = follow_authorize(body["authorize_url"].as_str().unwrap()).await;
    relay.stop().await;
    // The same port, so the callback URL the provider knows still points at Relay.
    let relay = Relay::start(opts).await;
    let resp = relay.http.get(&redirect.location).send().await.unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.text().await.unwrap()
    );
    let (_, st) = relay.get_json("/oauth/test/status?actor_id=a", &key).await;
    assert_eq!(st["linked"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_does_not_match_the_data_is_refused() {
    let fake = FakeProvider::start(FakeProviderConfig::default()).await;
    let dir = TempDir::new();
    let toml = provider_toml("test", "oidc", &fake.issuer(), "");
    let opts = RelayOptions::new(dir.path(), &toml);
    let key = opts.create_api_key("acme").await;
    let relay = Relay::start(opts.clone()).await;
    let (access, refresh) = fake.issue_tokens_directly();
    let (s, _) = relay
        .post_json("/connections", &key, &json!({"provider": "test", "actor_id": "u", "access_token": access, "refresh_token": refresh}))
        .await;
    assert_eq!(s, 201);
    relay.stop().await;
    let db = dir.path().join("relay.db");
    let before = std::fs::read(&db).unwrap();

    let wrong = opts.clone().with_env(
        "OAUTH_ENCRYPTION_KEY",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    );
    let logs = Relay::try_start(wrong).await.err().expect("refused");
    assert!(logs.contains("does not match"), "{logs}");
    let malformed = opts.clone().with_env("OAUTH_ENCRYPTION_KEY", "too-short");
    let logs = Relay::try_start(malformed).await.err().expect("refused");
    assert!(logs.contains("32 bytes"), "{logs}");
    assert!(!logs.contains("too-short"), "the key is not echoed");
    // Without a key and without the key file, the embedded mode does not invent a new key.
    let missing = opts.clone().without_env("OAUTH_ENCRYPTION_KEY");
    let logs = Relay::try_start(missing).await.err().expect("refused");
    assert!(logs.contains("refusing to generate"), "{logs}");
    assert!(!dir.path().join("encryption.key").exists());
    assert_eq!(std::fs::read(&db).unwrap(), before, "nothing was written");

    // The right key still works, and rotation keeps old data readable.
    let rotated = opts
        .clone()
        .with_env(
            "OAUTH_ENCRYPTION_KEY",
            "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA=",
        )
        .with_env("OAUTH_ENCRYPTION_KEY_PREVIOUS", TEST_KEY);
    let relay = Relay::start(rotated.clone()).await;
    let (_, list) = relay.get_json("/connections", &key).await;
    let id = list["connections"][0]["id"].as_str().unwrap().to_owned();
    let (s, tok) = relay
        .get_json(&format!("/connections/{id}/token"), &key)
        .await;
    assert_eq!(s, 200, "{tok}");
    assert_eq!(tok["access_token"], access.as_str());
    relay.stop().await;

    // Re-seal under the new key (the server also starts this in the background); then the
    // old key can be retired.
    let (ok, out, err) = rotated.run(&["vault", "reseal"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("connection_token\tscanned 1,"), "{out}");
    let (ok, out, _) = rotated.run(&["vault", "status"]).await;
    assert!(ok);
    let keys: std::collections::HashSet<&str> = out
        .lines()
        .filter(|l| l.ends_with(" sealed"))
        .filter_map(|l| l.split('\t').nth(1))
        .collect();
    assert_eq!(keys.len(), 1, "one key holds everything: {out}");
    let retired = rotated.clone().without_env("OAUTH_ENCRYPTION_KEY_PREVIOUS");
    let relay = Relay::start(retired.clone()).await;
    let (s, tok) = relay
        .get_json(&format!("/connections/{id}/token"), &key)
        .await;
    assert_eq!(s, 200, "{tok}");
    assert_eq!(tok["access_token"], access.as_str());
    relay.stop().await;
    // The audit records written under the old key, during the rotation and after it verify
    // together with the new key alone: the audit key was re-sealed, not re-derived.
    let (ok, out, err) = retired.run(&["audit", "verify"]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("audit log intact"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_mode_generates_a_private_key_file_once() {
    let fake = FakeProvider::start(FakeProviderConfig::default()).await;
    let dir = TempDir::new();
    let opts = RelayOptions::new(
        dir.path(),
        &provider_toml("test", "oidc", &fake.issuer(), ""),
    )
    .without_env("OAUTH_ENCRYPTION_KEY");
    let relay = Relay::start(opts.clone()).await;
    assert!(relay.logs().contains("generated a new encryption key"));
    let path = dir.path().join("encryption.key");
    let first = std::fs::read_to_string(&path).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(
        !relay.logs().contains(first.trim()),
        "the key is never logged"
    );
    relay.stop().await;
    let relay = Relay::start(opts).await;
    assert!(!relay.logs().contains("generated a new encryption key"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
}
