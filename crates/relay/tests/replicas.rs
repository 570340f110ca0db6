//! Several `relay serve` processes on one PostgreSQL database and one Redis, as a team runs
//! them behind a load balancer: one refresh however the reads are spread, with Redis up, down,
//! or slower than the provider; rotation that never reuses a refresh token; a replica killed
//! while it holds the lease; rate limits shared by every replica; the background refresher.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

/// Replicas of one deployment around a fake provider named `test`.
struct Cluster {
    fake: FakeProvider,
    relays: Vec<Relay>,
    key: String,
    opts: RelayOptions,
    _dirs: Vec<TempDir>,
    _pg: PgDb,
}

/// `toml` is appended to the defaults of these tests (fast refresh settings, background
/// refresher off unless the test turns it on).
async fn cluster(
    replicas: usize,
    fake_cfg: FakeProviderConfig,
    redis_url: Option<String>,
    toml: &str,
) -> Option<Cluster> {
    let pg = pg_database().await?;
    let fake = FakeProvider::start(fake_cfg).await;
    let config = format!(
        "{toml}\n{}",
        provider_toml("test", "oidc", &fake.issuer(), "")
    );
    let prefix = format!("relay-it:{}:", random_token(9));
    let mut dirs = Vec::new();
    let mut all_opts = Vec::new();
    for _ in 0..replicas {
        let dir = TempDir::new();
        let mut opts = RelayOptions::new(dir.path(), &config).with_env("REDIS_KEY_PREFIX", &prefix);
        if let Some(url) = &redis_url {
            opts = opts.with_env("REDIS_URL", url);
        }
        opts.database_url = Some(pg.url.clone());
        dirs.push(dir);
        all_opts.push(opts);
    }
    let key = all_opts[0].create_api_key("acme").await;
    let mut relays = Vec::new();
    for opts in &all_opts {
        relays.push(Relay::start(opts.clone()).await);
    }
    Some(Cluster {
        fake,
        relays,
        key,
        opts: all_opts[0].clone(),
        _dirs: dirs,
        _pg: pg,
    })
}

const FAST: &str = "[refresher]\nenabled = false\n[refresh]\nlease_secs = 5\nprovider_timeout_ms = 2000\nattempts = 3\nbackoff_base_ms = 20\nbackoff_max_ms = 100\n";

impl Cluster {
    /// Imports tokens minted at the fake, expiring in `expires_in` seconds (due at once when
    /// under the 60 s refresh margin).
    async fn import(&self, actor: &str, expires_in: u64) -> String {
        let (access, refresh) = self.fake.issue_tokens_directly();
        let (status, body) = self.relays[0]
            .post_json(
                "/connections",
                &self.key,
                &json!({"provider": "test", "actor_id": actor, "access_token": access,
                        "refresh_token": refresh, "expires_in": expires_in}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// `n` concurrent token reads spread round-robin over the replicas; every answer.
    async fn stampede(&self, id: &str, n: usize, query: &str) -> Vec<(u16, Value)> {
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let relay = &self.relays[i % self.relays.len()];
            let http = relay.http.clone();
            let url = relay.url(&format!("/connections/{id}/token{query}"));
            let key = self.key.clone();
            tasks.push(tokio::spawn(async move {
                let r = http.get(url).bearer_auth(key).send().await.unwrap();
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap_or(Value::Null))
            }));
        }
        let mut out = Vec::with_capacity(n);
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    fn assert_one_refresh_and_working_tokens(&self, answers: &[(u16, Value)]) {
        let mut tokens = HashSet::new();
        for (status, body) in answers {
            assert_eq!(*status, 200, "{body}");
            tokens.insert(body["access_token"].as_str().unwrap().to_owned());
        }
        assert_eq!(
            self.fake.refresh_requests(),
            1,
            "exactly one refresh reached the provider"
        );
        // Callers on the refreshing replica wait for the new token; callers on the others,
        // finding the lease taken, get the current token while it is still valid. Either way
        // every token handed out works at the provider.
        assert!(
            tokens.len() <= 2,
            "the old token or the new one: {}",
            tokens.len()
        );
        for t in &tokens {
            assert!(
                self.fake.is_access_token_valid(t),
                "a token handed out does not work"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_reads_over_three_replicas_refresh_once() {
    let Some(redis) = redis_url().await else {
        return;
    };
    let Some(c) = cluster(3, FakeProviderConfig::microsoft(), Some(redis), FAST).await else {
        return;
    };
    let id = c.import("u1", 10).await;
    c.fake.set_token_delay(Duration::from_millis(300));
    let answers = c.stampede(&id, 1000, "").await;
    c.assert_one_refresh_and_working_tokens(&answers);

    // Every replica reports Redis ready.
    for r in &c.relays {
        let (status, body) = r.get_json("/ready", &c.key).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["checks"]["redis"]["ok"], true, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_redis_stopped_reads_still_work_and_refresh_once() {
    let Some(mut redis) = PrivateRedis::start().await else {
        return;
    };
    let Some(c) = cluster(3, FakeProviderConfig::microsoft(), Some(redis.url()), FAST).await else {
        return;
    };
    let id = c.import("u1", 10).await;
    // Warm the shared cache, then take Redis away.
    let (status, body) = c.relays[1]
        .get_json(&format!("/connections/{id}"), &c.key)
        .await;
    assert_eq!(status, 200, "{body}");
    redis.stop();
    c.fake.set_token_delay(Duration::from_millis(300));
    let answers = c.stampede(&id, 1000, "").await;
    c.assert_one_refresh_and_working_tokens(&answers);

    // Reads of a fresh token still work, and /ready says what is wrong while staying 200
    // (degraded: every path falls back to the database).
    let answers = c.stampede(&id, 30, "").await;
    assert!(answers.iter().all(|(s, _)| *s == 200));
    assert_eq!(c.fake.refresh_requests(), 1);
    let (status, body) = c.relays[0].get_json("/ready", &c.key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["checks"]["redis"]["ok"], false, "{body}");
    assert_eq!(body["checks"]["database"]["ok"], true, "{body}");
    let metrics = c.relays[0]
        .http
        .get(c.relays[0].url("/metrics"))
        .send()
        .await
        .unwrap();
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("redis_fallbacks_total"),
        "fallbacks are counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_slower_than_the_lock_ttl_still_sees_one_refresh() {
    // `min_ttl=30` makes the 10-second token unusable, so every caller waits for the one
    // refresh, across the lock's expiry-and-extension cycles.
    let Some(redis) = redis_url().await else {
        return;
    };
    let toml = format!("{FAST}[redis]\nlock_ttl_ms = 200\n");
    let Some(c) = cluster(3, FakeProviderConfig::microsoft(), Some(redis), &toml).await else {
        return;
    };
    let id = c.import("u1", 10).await;
    c.fake.set_token_delay(Duration::from_millis(1200));
    let answers = c.stampede(&id, 300, "?min_ttl=30").await;
    c.assert_one_refresh_and_working_tokens(&answers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_rotations_never_present_a_used_refresh_token() {
    let Some(redis) = redis_url().await else {
        return;
    };
    let Some(c) = cluster(3, FakeProviderConfig::microsoft(), Some(redis), FAST).await else {
        return;
    };
    let id = c.import("u1", 3600).await;
    for cycle in 0..100 {
        // One replica forces a refresh while the others read at the same moment.
        let forced = &c.relays[cycle % 3];
        let readers: Vec<_> = (1..3)
            .map(|k| {
                let r = &c.relays[(cycle + k) % 3];
                let (http, url, key) = (
                    r.http.clone(),
                    r.url(&format!("/connections/{id}/token")),
                    c.key.clone(),
                );
                tokio::spawn(async move {
                    http.get(url)
                        .bearer_auth(key)
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
            .collect();
        let (status, body) = forced
            .get_json(
                &format!("/connections/{id}/token?force_refresh=true"),
                &c.key,
            )
            .await;
        assert_eq!(status, 200, "cycle {cycle}: {body}");
        for r in readers {
            assert_eq!(r.await.unwrap(), 200, "cycle {cycle}");
        }
    }
    let presented = c.fake.presented_refresh_tokens();
    let unique: HashSet<_> = presented.iter().collect();
    assert_eq!(presented.len(), 100);
    assert_eq!(
        unique.len(),
        presented.len(),
        "no refresh token was presented twice"
    );
    let (status, body) = c.relays[2]
        .get_json(&format!("/connections/{id}/token"), &c.key)
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        c.fake
            .is_access_token_valid(body["access_token"].as_str().unwrap())
    );
    let (_, meta) = c.relays[1]
        .get_json(&format!("/connections/{id}"), &c.key)
        .await;
    assert_eq!(meta["status"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_holding_the_lease_is_taken_over_after_it_expires() {
    let Some(redis) = redis_url().await else {
        return;
    };
    let toml = "[refresher]\nenabled = false\n[refresh]\nlease_secs = 3\nprovider_timeout_ms = 2500\nattempts = 1\nbackoff_base_ms = 20\nbackoff_max_ms = 100\n";
    let Some(mut c) = cluster(2, FakeProviderConfig::default(), Some(redis), toml).await else {
        return;
    };
    let id = c.import("u1", 20).await;
    c.fake.set_token_delay(Duration::from_millis(2000));
    let victim = c.relays.remove(0);
    let (http, url, key) = (
        victim.http.clone(),
        victim.url(&format!("/connections/{id}/token?force_refresh=true")),
        c.key.clone(),
    );
    let in_flight = tokio::spawn(async move { http.get(url).bearer_auth(key).send().await });
    // The victim is inside the provider call, holding lock and lease: kill -9 it.
    let started = Instant::now();
    while c.fake.refresh_requests() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the refresh never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    victim.kill().await;
    assert!(
        in_flight.await.unwrap().is_err(),
        "the victim's caller saw the crash"
    );
    c.fake.set_token_delay(Duration::ZERO);

    // The survivor serves the still-valid token meanwhile, and refreshes once the lease is
    // free (bounded wait: lease 3 s).
    let survivor = &c.relays[0];
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = survivor
            .get_json(&format!("/connections/{id}/token?min_ttl=15"), &c.key)
            .await;
        if status == 200 && c.fake.refresh_requests() >= 2 {
            assert!(
                c.fake
                    .is_access_token_valid(body["access_token"].as_str().unwrap())
            );
            break;
        }
        assert!(Instant::now() < deadline, "no takeover: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, meta) = survivor
        .get_json(&format!("/connections/{id}"), &c.key)
        .await;
    assert_eq!(meta["status"], "active", "nothing lost: {meta}");
    assert_eq!(meta["has_refresh_token"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_limited_to_n_per_minute_gets_n_across_replicas() {
    let Some(redis) = redis_url().await else {
        return;
    };
    let Some(c) = cluster(3, FakeProviderConfig::default(), Some(redis), FAST).await else {
        return;
    };
    let limited = c.opts.create_limited_api_key("acme", 25).await;
    let mut tasks = Vec::new();
    for i in 0..90 {
        let r = &c.relays[i % 3];
        let (http, url, key) = (r.http.clone(), r.url("/connections"), limited.clone());
        tasks.push(tokio::spawn(async move {
            let resp = http.get(url).bearer_auth(key).send().await.unwrap();
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            (
                status,
                headers,
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        let (status, headers, body) = t.await.unwrap();
        assert_eq!(headers["ratelimit-limit"], "25");
        assert!(headers.contains_key("ratelimit-remaining"));
        assert!(headers.contains_key("ratelimit-reset"));
        match status {
            200 => ok += 1,
            429 => {
                refused += 1;
                assert_eq!(body["error"]["code"], "rate_limited", "{body}");
                let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=60).contains(&retry), "{retry}");
                assert_eq!(headers["ratelimit-remaining"], "0");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(
        ok <= 26,
        "at most N (and one more refilled over the run): {ok}"
    );
    assert!(ok >= 25, "the first N are served: {ok}");
    assert_eq!(ok + refused, 90);
    // Another key of the same workspace is not affected.
    let (status, _) = c.relays[1].get_json("/connections", &c.key).await;
    assert_eq!(status, 200);
    let metrics = c.relays[0]
        .http
        .get(c.relays[0].url("/metrics"))
        .send()
        .await
        .unwrap();
    assert!(
        metrics
            .text()
            .await
            .unwrap()
            .contains("rate_limit_rejections_total")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_are_managed_through_the_api_and_a_revocation_reaches_every_replica() {
    let Some(redis) = redis_url().await else {
        return;
    };
    let Some(c) = cluster(3, FakeProviderConfig::default(), Some(redis), FAST).await else {
        return;
    };
    let admin = &c.relays[0];
    let (status, created) = admin
        .post_json("/api-keys", &c.key, &json!({"rate_limit_per_minute": 100}))
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["rate_limit_per_minute"], 100);
    for r in &c.relays {
        assert_eq!(r.get_json("/connections", &secret).await.0, 200);
    }
    let (status, listed) = admin.get_json("/api-keys", &c.key).await;
    assert_eq!(status, 200);
    let keys = listed["api_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(
        !listed.to_string().contains(&secret),
        "the secret is shown once only"
    );

    // Bad input: a clear error, nothing changed.
    let (status, body) = admin
        .post_json("/api-keys", &c.key, &json!({"rate_limit_per_minute": 0}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "validation_error");
    let r = admin
        .http
        .patch(admin.url(&format!("/api-keys/{id}")))
        .bearer_auth(&c.key)
        .json(&json!({"rate_limit_per_minute": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let r = admin
        .http
        .patch(admin.url("/api-keys/key_doesnotexist"))
        .bearer_auth(&c.key)
        .json(&json!({"rate_limit_per_minute": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);

    // Revoke through one replica; every replica refuses the key within 5 s (its key cache).
    let r = admin
        .http
        .delete(admin.url(&format!("/api-keys/{id}")))
        .bearer_auth(&c.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let revoked_at = Instant::now();
    for r in &c.relays {
        loop {
            let status = r.get_json("/connections", &secret).await.0;
            if status == 401 {
                break;
            }
            assert_eq!(status, 200);
            assert!(
                revoked_at.elapsed() < Duration::from_secs(7),
                "a revoked key still works after the cache TTL"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (status, _) = admin.delete_json(&format!("/api-keys/{id}"), &c.key).await;
    assert_eq!(status, 404, "revoking twice is not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_background_refresher_refreshes_due_tokens_once_across_replicas() {
    let Some(redis) = redis_url().await else {
        return;
    };
    let toml = "[refresher]\ninterval_ms = 200\nbatch = 10\n[refresh]\nlease_secs = 5\nprovider_timeout_ms = 2000\nattempts = 1\nbackoff_base_ms = 20\nbackoff_max_ms = 300\n";
    let Some(c) = cluster(3, FakeProviderConfig::microsoft(), Some(redis), toml).await else {
        return;
    };
    // Twelve connections due now, none read by anyone.
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(c.import(&format!("u{i}"), 30).await);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.fake.refresh_requests() < 12 {
        assert!(
            Instant::now() < deadline,
            "refreshed only {}",
            c.fake.refresh_requests()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Rotating tokens: a doubled refresh would present a used token and kill the grant.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        c.fake.refresh_requests(),
        12,
        "each due connection refreshed once"
    );
    let presented = c.fake.presented_refresh_tokens();
    assert_eq!(
        presented.iter().collect::<HashSet<_>>().len(),
        presented.len()
    );
    for id in &ids {
        let (status, meta) = c.relays[2]
            .get_json(&format!("/connections/{id}"), &c.key)
            .await;
        assert_eq!(status, 200);
        assert_eq!(meta["status"], "active");
        assert!(meta["last_refreshed_at"].is_string(), "{meta}");
    }
    // The work was counted where it was done: twelve refreshes over the replicas' metrics.
    let mut refreshed = 0.0;
    for r in &c.relays {
        let text = r
            .http
            .get(r.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        refreshed += text
            .lines()
            .filter(|l| l.starts_with("background_refresh_total{outcome=\"refreshed\"}"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    assert_eq!(
        refreshed, 12.0,
        "background_refresh_total counts each refresh once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_a_background_refresh_in_flight_finish_and_save() {
    let Some(pg) = pg_database().await else {
        return;
    };
    let fake = FakeProvider::start(FakeProviderConfig::microsoft()).await;
    let dir = TempDir::new();
    let toml = format!(
        "[refresher]\ninterval_ms = 100\nshutdown_grace_secs = 10\n[refresh]\nlease_secs = 6\nprovider_timeout_ms = 5000\nattempts = 1\n{}",
        provider_toml("test", "oidc", &fake.issuer(), "")
    );
    let mut opts = RelayOptions::new(dir.path(), &toml);
    opts.database_url = Some(pg.url.clone());
    let key = opts.create_api_key("acme").await;
    // Import through a replica whose refresher is off, so nothing is claimed before the delay.
    let mut quiet = opts.clone();
    quiet.config_toml = toml.replace("[refresher]\n", "[refresher]\nenabled = false\n");
    let importer = Relay::start(quiet).await;
    let (access, refresh) = fake.issue_tokens_directly();
    let (status, body) = importer
        .post_json(
            "/connections",
            &key,
            &json!({"provider": "test", "actor_id": "u1", "access_token": access,
                    "refresh_token": refresh, "expires_in": 30}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    fake.set_token_delay(Duration::from_millis(1500));

    let relay = Relay::start(opts).await;
    let started = Instant::now();
    while fake.refresh_requests() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the refresher never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = relay.stop().await;
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    // The rotated refresh token was saved: the connection is active and its token is the new
    // one, which the provider accepts.
    fake.set_token_delay(Duration::ZERO);
    let (status, meta) = importer.get_json(&format!("/connections/{id}"), &key).await;
    assert_eq!(status, 200);
    assert!(
        meta["last_refreshed_at"].is_string(),
        "the refresh was saved: {meta}"
    );
    let (status, tok) = importer
        .get_json(&format!("/connections/{id}/token"), &key)
        .await;
    assert_eq!(status, 200, "{tok}");
    assert!(fake.is_access_token_valid(tok["access_token"].as_str().unwrap()));
    assert_eq!(fake.refresh_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flow_started_on_one_replica_finishes_on_another_after_the_first_stops() {
    let Some(redis) = redis_url().await else {
        return;
    };
    let Some(pg) = pg_database().await else {
        return;
    };
    let fake = FakeProvider::start(FakeProviderConfig::default()).await;
    // Both replicas sit behind one public address (here: replica B's).
    let port_b = free_port();
    let public = format!("http://127.0.0.1:{port_b}");
    let toml = format!(
        "{FAST}\n{}",
        provider_toml("test", "oidc", &fake.issuer(), "")
    );
    let prefix = format!("relay-it:{}:", random_token(9));
    let (dir_a, dir_b) = (TempDir::new(), TempDir::new());
    let mut opts_a = RelayOptions::new(dir_a.path(), &toml)
        .with_env("REDIS_URL", &redis)
        .with_env("REDIS_KEY_PREFIX", &prefix)
        .with_env("RELAY_PUBLIC_BASE_URL", &public);
    opts_a.database_url = Some(pg.url.clone());
    let mut opts_b = opts_a.clone();
    opts_b.data_dir = dir_b.path().to_path_buf();
    opts_b.port = Some(port_b);
    let key = opts_a.create_api_key("acme").await;
    let a = Relay::start(opts_a).await;
    let b = Relay::start(opts_b).await;

    let (status, body) = a.get_json("/oauth/test/authorize?actor_id=u-7", &key).await;
    assert_eq!(status, 200, "{body}");
    let redirect = follow_authorize(body["authorize_url"].as_str().unwrap()).await;
    assert!(
        redirect.location.starts_with(&public),
        "{}",
        redirect.location
    );
    // The replica that started the flow is gone; the flow lives in Redis.
    assert!(a.stop().await.success());
    let resp = b.http.get(&redirect.location).send().await.unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.text().await.unwrap()
    );
    assert_eq!(fake.code_exchanges(), 1);
    // Consumed: the same state a second time is refused.
    let again = b.http.get(&redirect.location).send().await.unwrap();
    assert_eq!(again.status().as_u16(), 400);
    let (status, st) = b.get_json("/oauth/test/status?actor_id=u-7", &key).await;
    assert_eq!(status, 200);
    assert_eq!(st["linked"], true, "{st}");
}
