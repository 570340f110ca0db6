//! The refresh protocol end to end on each real database: relay-core's `TokenService` with a
//! real store, the in-process cache, a real keyring and a scripted provider that counts its
//! calls. This is where "however many callers, tasks and processes ask at once, one refresh
//! reaches the provider" is proven against SQLite's and PostgreSQL's actual locking, and
//! where the at-rest encryption is checked by reading what the database really stores.

mod support;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use relay_core::clock::{Clock, ManualClock, Timestamp};
use relay_core::connection::{ACCESS_TOKEN, REFRESH_TOKEN};
use relay_core::oauth::{
    AuthorizationParams, AuthorizationUrl, OAuthError, ProviderGateway, TokenKind, TokenSet,
};
use relay_core::ports::{ConnectionCache, Store};
use relay_core::refresh::{NewConnection, ReadPath, RefreshPolicy, TokenRequest, TokenService};
use relay_core::vault::{Keyring, MasterKey, VaultError};
use relay_core::{
    ActorId, ActorType, Connection, ConnectionId, ConnectionStatus, ProviderName, Scopes,
    ServiceError, WorkspaceId,
};
use relay_store::{DatabaseKind, MemoryCache};
use secrecy::{ExposeSecret, SecretString};
use support::TestDb;

const START: Timestamp = Timestamp(1_750_000_000_000);
const LIFETIME: Duration = Duration::from_secs(3600);
/// Past `next_refresh_at` (lifetime minus 10%) but before expiry: due, still valid.
const UNTIL_DUE: Duration = Duration::from_secs(3300);
/// Past expiry: callers cannot be served the old token.
const UNTIL_EXPIRED: Duration = Duration::from_secs(3700);

/// One scripted answer of the token endpoint.
#[derive(Debug, Clone, Copy)]
enum Step {
    Ok,
    InvalidGrant,
    Transient,
    /// Answers only after the service's deadline has passed.
    Hang,
}

/// A token endpoint played by the test: counts refresh calls, answers from a script (then
/// successfully), and like a real provider accepts only the refresh token it last issued
/// when it rotates them.
struct ScriptedProvider {
    calls: AtomicUsize,
    delay: Mutex<Duration>,
    script: Mutex<VecDeque<Step>>,
    rotate: AtomicBool,
    live_refresh_token: Mutex<String>,
    /// Prefixed to every token issued, so a test can plant recognisable plaintext.
    prefix: String,
    entered: tokio::sync::Notify,
}

impl ScriptedProvider {
    fn new(prefix: &str) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            delay: Mutex::new(Duration::ZERO),
            script: Mutex::new(VecDeque::new()),
            rotate: AtomicBool::new(false),
            live_refresh_token: Mutex::new(format!("{prefix}refresh-0")),
            prefix: prefix.to_owned(),
            entered: tokio::sync::Notify::new(),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn set_delay(&self, d: Duration) {
        *self.delay.lock().expect("lock") = d;
    }

    fn push(&self, steps: &[Step]) {
        self.script.lock().expect("lock").extend(steps);
    }

    fn initial_tokens(&self) -> TokenSet {
        TokenSet {
            access_token: SecretString::from(format!("{}access-0", self.prefix)),
            refresh_token: Some(SecretString::from(format!("{}refresh-0", self.prefix))),
            token_type: "bearer".into(),
            expires_in: Some(LIFETIME.as_secs()),
            scope: None,
            id_token: None,
        }
    }

    fn access(&self, n: usize) -> String {
        format!("{}access-{n}", self.prefix)
    }
}

#[async_trait]
impl ProviderGateway for ScriptedProvider {
    fn knows(&self, _provider: &ProviderName) -> bool {
        true
    }

    fn default_scopes(&self, _provider: &ProviderName) -> Scopes {
        Scopes::default()
    }

    async fn authorization_url(
        &self,
        _provider: &ProviderName,
        _params: AuthorizationParams<'_>,
    ) -> Result<AuthorizationUrl, OAuthError> {
        Err(OAuthError::Rejected {
            detail: "not used by these tests".into(),
        })
    }

    async fn exchange_code(
        &self,
        _provider: &ProviderName,
        _code: &str,
        _code_verifier: &str,
        _redirect_uri: &str,
    ) -> Result<TokenSet, OAuthError> {
        Err(OAuthError::Rejected {
            detail: "not used by these tests".into(),
        })
    }

    async fn refresh(
        &self,
        _provider: &ProviderName,
        refresh_token: &str,
    ) -> Result<TokenSet, OAuthError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.entered.notify_waiters();
        let delay = *self.delay.lock().expect("lock");
        tokio::time::sleep(delay).await;
        let step = self
            .script
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or(Step::Ok);
        match step {
            Step::InvalidGrant => {
                return Err(OAuthError::InvalidGrant {
                    description: "Token has been expired or revoked.".into(),
                });
            }
            Step::Transient => {
                return Err(OAuthError::Transient {
                    detail: "503 Service Unavailable".into(),
                    retry_after: None,
                    timed_out: false,
                });
            }
            Step::Hang => tokio::time::sleep(Duration::from_secs(30)).await,
            Step::Ok => {}
        }
        let mut live = self.live_refresh_token.lock().expect("lock");
        if *live != refresh_token {
            return Err(OAuthError::InvalidGrant {
                description: "refresh token was already used".into(),
            });
        }
        let rotated = self.rotate.load(Ordering::SeqCst).then(|| {
            *live = format!("{}refresh-{n}", self.prefix);
            SecretString::from(live.clone())
        });
        Ok(TokenSet {
            access_token: SecretString::from(self.access(n)),
            refresh_token: rotated,
            token_type: "Bearer".into(),
            expires_in: Some(LIFETIME.as_secs()),
            scope: None,
            id_token: None,
        })
    }

    async fn revoke(
        &self,
        _provider: &ProviderName,
        _token: &str,
        _kind: TokenKind,
    ) -> Result<bool, OAuthError> {
        Ok(false)
    }
}

fn policy() -> RefreshPolicy {
    RefreshPolicy {
        min_remaining: Duration::from_secs(60),
        fraction: 0.10,
        lease: Duration::from_secs(3),
        provider_timeout: Duration::from_secs(1),
        attempts: 3,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        lock_poll: Duration::from_millis(10),
        ..RefreshPolicy::default()
    }
}

/// Everything one "process" of Relay holds, around one store.
struct Harness {
    store: Arc<dyn Store>,
    provider: Arc<ScriptedProvider>,
    keyring: Arc<Keyring>,
    clock: ManualClock,
    service: Arc<TokenService>,
    workspace: WorkspaceId,
}

impl Harness {
    async fn new(t: &TestDb, prefix: &str) -> Self {
        let store = t.store();
        let workspace = store
            .ensure_workspace("acme", START)
            .await
            .expect("workspace")
            .id;
        let provider = ScriptedProvider::new(prefix);
        let keyring = Arc::new(Keyring::new(&MasterKey::generate(), &[]));
        let clock = ManualClock::new(START);
        let service = build_service(&store, &provider, &keyring, &clock, policy());
        Self {
            store,
            provider,
            keyring,
            clock,
            service,
            workspace,
        }
    }

    /// Another instance on its own pool and cache, sharing the database, the provider, the
    /// master key and the (manual) time.
    fn peer(&self, store: Arc<dyn Store>) -> Arc<TokenService> {
        build_service(&store, &self.provider, &self.keyring, &self.clock, policy())
    }

    async fn connect_actor(&self, actor: &str) -> Connection {
        self.service
            .store_new(
                NewConnection {
                    workspace_id: self.workspace.clone(),
                    provider: ProviderName::parse("google").expect("provider"),
                    actor_type: ActorType::user(),
                    actor_id: ActorId::parse(actor).expect("actor"),
                    tokens: self.provider.initial_tokens(),
                    requested_scopes: Scopes::parse("openid email").expect("scopes"),
                    expires_at: None,
                    account: None,
                },
                "test",
            )
            .await
            .expect("store the connection")
    }

    async fn token(&self, id: &ConnectionId) -> Result<String, ServiceError> {
        token(&self.service, &self.workspace, id, TokenRequest::default()).await
    }

    async fn row(&self, id: &ConnectionId) -> Connection {
        self.store
            .get_connection(id)
            .await
            .expect("get")
            .expect("connection exists")
    }

    fn open(&self, conn: &Connection, column: &str) -> String {
        let sealed = match column {
            REFRESH_TOKEN => conn.refresh_token.as_deref().expect("a refresh token"),
            _ => &conn.access_token,
        };
        self.keyring
            .open_string(sealed, conn.binding(column))
            .expect("opens")
            .to_string()
    }
}

fn build_service(
    store: &Arc<dyn Store>,
    provider: &Arc<ScriptedProvider>,
    keyring: &Arc<Keyring>,
    clock: &ManualClock,
    policy: RefreshPolicy,
) -> Arc<TokenService> {
    let cache: Arc<dyn ConnectionCache> =
        Arc::new(MemoryCache::new(1_000, Duration::from_secs(300)));
    let clock: Arc<dyn Clock> = Arc::new(clock.clone());
    Arc::new(TokenService::new(
        store.clone(),
        cache,
        provider.clone(),
        keyring.clone(),
        clock,
        policy,
    ))
}

async fn token(
    service: &TokenService,
    workspace: &WorkspaceId,
    id: &ConnectionId,
    req: TokenRequest,
) -> Result<String, ServiceError> {
    service
        .token(workspace, id, req)
        .await
        .map(|t| t.access_token.expose_secret().to_owned())
}

/// Starts `n` concurrent `token()` calls released together; returns each result and path.
async fn stampede(
    service: &Arc<TokenService>,
    workspace: &WorkspaceId,
    id: &ConnectionId,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<(String, ReadPath), ServiceError>>> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    (0..n)
        .map(|_| {
            let (service, workspace, id, barrier) = (
                service.clone(),
                workspace.clone(),
                id.clone(),
                barrier.clone(),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                service
                    .token(&workspace, &id, TokenRequest::default())
                    .await
                    .map(|t| (t.access_token.expose_secret().to_owned(), t.path))
            })
        })
        .collect()
}

on_every_backend!(
    db a_stampede_of_200_callers_makes_one_refresh,
    db two_instances_on_one_database_make_one_refresh,
    db force_refresh_joins_a_refresh_in_flight,
    db refresh_tokens_are_kept_or_rotated,
    db invalid_grant_marks_the_connection_for_reauthorization,
    db transient_failures_are_retried_and_leave_the_status_alone,
    db a_timed_out_provider_is_transient,
    db a_fallback_token_still_honours_min_ttl,
    db a_refresh_whose_caller_goes_away_still_stores_the_rotated_tokens,
    db an_expired_token_is_never_served_while_a_retry_is_scheduled,
    db a_ciphertext_copied_to_another_row_does_not_open,
    db no_plaintext_token_reaches_the_database,
    db concurrent_lease_races_on_separate_pools_never_error,
    db the_refresher_step_refreshes_due_leaves_the_rest_and_backs_off,
    db the_refresher_step_marks_a_dead_grant_and_skips_it_after,
);

/// The background step on its own: due → refreshed; not due → untouched; a failure →
/// scheduled again with backoff, status unchanged.
async fn the_refresher_step_refreshes_due_leaves_the_rest_and_backs_off(t: &TestDb) {
    let h = Harness::new(t, "").await;
    let due = t.db.due_connections();
    let a = h.connect_actor("a").await;
    h.clock.advance(Duration::from_secs(1000));
    let b = h.connect_actor("b").await;

    let nothing = h
        .service
        .refresh_due(due.as_ref(), h.clock.now(), 10)
        .await
        .expect("step");
    assert_eq!(nothing.claimed, 0, "nothing is due yet");
    assert_eq!(h.provider.calls(), 0);

    // `a` is due (issued 3300 s ago), `b` is not.
    h.clock.advance(UNTIL_DUE - Duration::from_secs(1000));
    let step = h
        .service
        .refresh_due(due.as_ref(), h.clock.now(), 10)
        .await
        .expect("step");
    assert_eq!((step.claimed, step.refreshed, step.failed), (1, 1, 0));
    assert_eq!(h.provider.calls(), 1);
    let a_row = h.row(&a.id).await;
    assert_eq!(a_row.version, a.version + 1);
    assert_eq!(a_row.lease_owner, None);
    assert_eq!(h.open(&a_row, ACCESS_TOKEN), h.provider.access(1));
    assert!(
        a_row.next_refresh_at.expect("scheduled") > h.clock.now().plus(Duration::from_secs(3000))
    );
    assert_eq!(h.row(&b.id).await.version, b.version, "b untouched");
    // A reader now gets the new token without another refresh.
    assert_eq!(h.token(&a.id).await.expect("token"), h.provider.access(1));
    assert_eq!(h.provider.calls(), 1);

    // `b` becomes due while the provider fails: backoff, status unchanged.
    h.clock.advance(Duration::from_secs(1000));
    h.provider
        .push(&[Step::Transient, Step::Transient, Step::Transient]);
    let failed = h
        .service
        .refresh_due(due.as_ref(), h.clock.now(), 10)
        .await
        .expect("step");
    assert_eq!((failed.claimed, failed.refreshed, failed.failed), (1, 0, 1));
    let b_row = h.row(&b.id).await;
    assert_eq!(b_row.status, ConnectionStatus::Active);
    assert_eq!(b_row.refresh_failures, 1);
    assert_eq!(b_row.lease_owner, None);
    assert_eq!(b_row.version, b.version, "the tokens did not change");
    let retry_at = b_row.next_refresh_at.expect("retry scheduled");
    assert!(retry_at > h.clock.now(), "backoff: not retried at once");
    let again = h
        .service
        .refresh_due(due.as_ref(), h.clock.now(), 10)
        .await
        .expect("step");
    assert_eq!(again.claimed, 0, "the backoff is respected");
    h.clock.advance(h.clock.now().until(retry_at));
    let retried = h
        .service
        .refresh_due(due.as_ref(), h.clock.now(), 10)
        .await
        .expect("step");
    assert_eq!((retried.claimed, retried.refreshed), (1, 1));
}

async fn the_refresher_step_marks_a_dead_grant_and_skips_it_after(t: &TestDb) {
    let h = Harness::new(t, "").await;
    let due = t.db.due_connections();
    let a = h.connect_actor("a").await;
    h.clock.advance(UNTIL_DUE);
    h.provider.push(&[Step::InvalidGrant]);
    let step = h
        .service
        .refresh_due(due.as_ref(), h.clock.now(), 10)
        .await
        .expect("step");
    assert_eq!((step.claimed, step.needs_reauth), (1, 1));
    assert_eq!(h.row(&a.id).await.status, ConnectionStatus::NeedsReauth);
    h.clock.advance(Duration::from_secs(10_000));
    let later = h
        .service
        .refresh_due(due.as_ref(), h.clock.now(), 10)
        .await
        .expect("step");
    assert_eq!(
        later.claimed, 0,
        "a dead grant is not retried in the background"
    );
    assert_eq!(h.provider.calls(), 1);
}

async fn a_stampede_of_200_callers_makes_one_refresh(t: &TestDb) {
    let h = Harness::new(t, "").await;
    let conn = h.connect_actor("alice").await;
    h.clock.advance(UNTIL_DUE);
    h.provider.set_delay(Duration::from_millis(100));

    let mut refreshed = 0;
    for task in stampede(&h.service, &h.workspace, &conn.id, 200).await {
        let (token, path) = task.await.expect("task").expect("a token for every caller");
        assert_eq!(
            token,
            h.provider.access(1),
            "every caller gets the new token"
        );
        refreshed += usize::from(path == ReadPath::Refreshed);
    }
    assert_eq!(h.provider.calls(), 1, "one refresh reached the provider");
    assert_eq!(refreshed, 1);
    let row = h.row(&conn.id).await;
    assert_eq!(row.version, conn.version + 1);
    assert_eq!(row.lease_owner, None, "the lease was released");
    assert_eq!(row.last_refreshed_at, Some(START.plus(UNTIL_DUE)));
}

async fn two_instances_on_one_database_make_one_refresh(t: &TestDb) {
    let h = Harness::new(t, "").await;
    let conn = h.connect_actor("alice").await;
    let other_db = t.open_again().await;
    let other = h.peer(other_db.store());
    // Expired: neither instance may hand out the old token while the other refreshes.
    h.clock.advance(UNTIL_EXPIRED);
    h.provider.set_delay(Duration::from_millis(200));

    let mut tasks = stampede(&h.service, &h.workspace, &conn.id, 100).await;
    tasks.extend(stampede(&other, &h.workspace, &conn.id, 100).await);
    for task in tasks {
        let (token, _) = task.await.expect("task").expect("a token for every caller");
        assert_eq!(token, h.provider.access(1));
    }
    assert_eq!(h.provider.calls(), 1, "one refresh across both instances");
    other_db.close().await;
}

async fn force_refresh_joins_a_refresh_in_flight(t: &TestDb) {
    let h = Harness::new(t, "").await;
    let conn = h.connect_actor("alice").await;
    h.clock.advance(UNTIL_DUE);
    h.provider.set_delay(Duration::from_millis(300));

    let entered = h.provider.entered.notified();
    let first = {
        let (service, ws, id) = (h.service.clone(), h.workspace.clone(), conn.id.clone());
        tokio::spawn(async move { token(&service, &ws, &id, TokenRequest::default()).await })
    };
    entered.await;
    let forced = token(
        &h.service,
        &h.workspace,
        &conn.id,
        TokenRequest {
            force_refresh: true,
            ..Default::default()
        },
    )
    .await
    .expect("forced");
    assert_eq!(forced, h.provider.access(1), "joined the refresh in flight");
    assert_eq!(
        first.await.expect("task").expect("first"),
        h.provider.access(1)
    );
    assert_eq!(h.provider.calls(), 1);

    // With nothing in flight, forcing does refresh.
    h.provider.set_delay(Duration::ZERO);
    let forced = token(
        &h.service,
        &h.workspace,
        &conn.id,
        TokenRequest {
            force_refresh: true,
            ..Default::default()
        },
    )
    .await
    .expect("forced");
    assert_eq!(forced, h.provider.access(2));
    assert_eq!(h.provider.calls(), 2);
}

async fn refresh_tokens_are_kept_or_rotated(t: &TestDb) {
    let h = Harness::new(t, "").await;
    let conn = h.connect_actor("alice").await;

    // Google-like: no refresh token in the response; the stored one is kept and still works.
    h.clock.advance(UNTIL_DUE);
    assert_eq!(
        h.token(&conn.id).await.expect("refresh"),
        h.provider.access(1)
    );
    let row = h.row(&conn.id).await;
    assert_eq!(h.open(&row, REFRESH_TOKEN), "refresh-0");
    h.clock.advance(UNTIL_DUE);
    assert_eq!(
        h.token(&conn.id).await.expect("refresh"),
        h.provider.access(2)
    );

    // Microsoft-like: each response rotates it; the new one replaces the old in the same
    // write, and the old one is dead at the provider.
    h.provider.rotate.store(true, Ordering::SeqCst);
    h.clock.advance(UNTIL_DUE);
    assert_eq!(
        h.token(&conn.id).await.expect("refresh"),
        h.provider.access(3)
    );
    let row = h.row(&conn.id).await;
    assert_eq!(h.open(&row, REFRESH_TOKEN), "refresh-3");
    assert_eq!(h.open(&row, ACCESS_TOKEN), h.provider.access(3));
    h.clock.advance(UNTIL_DUE);
    assert_eq!(
        h.token(&conn.id).await.expect("the rotated token works"),
        h.provider.access(4)
    );
    let row = h.row(&conn.id).await;
    assert_eq!(h.open(&row, REFRESH_TOKEN), "refresh-4");
    assert_eq!(row.status, ConnectionStatus::Active);
    assert_eq!(h.provider.calls(), 4);
}

async fn invalid_grant_marks_the_connection_for_reauthorization(t: &TestDb) {
    let h = Harness::new(t, "").await;
    let conn = h.connect_actor("alice").await;
    h.clock.advance(UNTIL_DUE);
    h.provider.push(&[Step::InvalidGrant]);

    let err = h.token(&conn.id).await.expect_err("the grant is dead");
    let ServiceError::NeedsReauth { reason } = err else {
        panic!("expected NeedsReauth, got {err:?}");
    };
    assert!(reason.starts_with("invalid_grant"), "{reason}");
    let row = h.row(&conn.id).await;
    assert_eq!(row.status, ConnectionStatus::NeedsReauth);
    assert_eq!(row.status_reason.as_deref(), Some(reason.as_str()));
    assert_eq!(row.lease_owner, None);

    // Later callers are told the same without asking the provider again.
    assert!(matches!(
        h.token(&conn.id).await,
        Err(ServiceError::NeedsReauth { .. })
    ));
    assert_eq!(h.provider.calls(), 1);
}

async fn transient_failures_are_retried_and_leave_the_status_alone(t: &TestDb) {
    let h = Harness::new(t, "").await;
    let conn = h.connect_actor("alice").await;
    h.clock.advance(UNTIL_DUE);
    h.provider
        .push(&[Step::Transient, Step::Transient, Step::Transient]);

    let served = h.token(&conn.id).await.expect("the still-valid token");
    assert_eq!(served, h.provider.access(0));
    assert_eq!(h.provider.calls(), 3, "retried up to the policy's attempts");
    let row = h.row(&conn.id).await;
    assert_eq!(row.status, ConnectionStatus::Active);
    assert_eq!(row.status_reason, None);
    assert_eq!(
        row.version, conn.version,
        "nothing was written but the failure"
    );
    assert_eq!(row.refresh_failures, 1);
    assert_eq!(row.lease_owner, None);
    assert_eq!(
        row.next_refresh_at,
        Some(h.clock.now().plus(policy().backoff_max)),
        "the background refresher tries again later"
    );

    // Once expired, a transient failure is an error for the caller, still not a status change.
    h.clock.advance(UNTIL_EXPIRED);
    h.provider
        .push(&[Step::Transient, Step::Transient, Step::Transient]);
    assert!(matches!(
        h.token(&conn.id).await,
        Err(ServiceError::ProviderUnavailable { .. })
    ));
    let row = h.row(&conn.id).await;
    assert_eq!(row.status, ConnectionStatus::Active);
    assert_eq!(row.refresh_failures, 2);

    // Once the scheduled retry time has passed and the provider has recovered, the next call
    // refreshes. (Before that time, see the next test.)
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(
        h.token(&conn.id).await.expect("recovered"),
        h.provider.access(7)
    );
    assert_eq!(h.row(&conn.id).await.refresh_failures, 0);
}

/// After a transient failure the next attempt is scheduled (`next_refresh_at = now + backoff`);
/// an access token that has already expired must still count as due meanwhile, never be
/// served as valid.
async fn an_expired_token_is_never_served_while_a_retry_is_scheduled(t: &TestDb) {
    let h = Harness::new(t, "").await;
    let conn = h.connect_actor("alice").await;
    h.clock.advance(UNTIL_EXPIRED);
    h.provider
        .push(&[Step::Transient, Step::Transient, Step::Transient]);
    assert!(matches!(
        h.token(&conn.id).await,
        Err(ServiceError::ProviderUnavailable { .. })
    ));

    // The provider is back; the clock has not reached the scheduled retry. The expired token
    // is not handed out: the call refreshes.
    assert_eq!(
        h.token(&conn.id).await.expect("refreshed"),
        h.provider.access(4)
    );
}

async fn a_timed_out_provider_is_transient(t: &TestDb) {
    let h = Harness::new(t, "").await;
    let conn = h.connect_actor("alice").await;
    let once = RefreshPolicy {
        attempts: 1,
        ..policy()
    };
    let service = build_service(&h.store, &h.provider, &h.keyring, &h.clock, once);
    h.clock.advance(UNTIL_DUE);
    h.provider.push(&[Step::Hang]);

    let started = std::time::Instant::now();
    let served = token(&service, &h.workspace, &conn.id, TokenRequest::default())
        .await
        .expect("the still-valid token");
    assert_eq!(served, h.provider.access(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the deadline held"
    );
    let row = h.row(&conn.id).await;
    assert_eq!(row.status, ConnectionStatus::Active);
    assert_eq!(row.refresh_failures, 1);
}

async fn a_ciphertext_copied_to_another_row_does_not_open(t: &TestDb) {
    let h = Harness::new(t, "").await;
    let alice = h.connect_actor("alice").await;
    let bob = h.connect_actor("bob").await;

    // Someone with write access to the table pastes alice's sealed tokens into bob's row.
    let mut forged = h.row(&bob.id).await;
    forged.access_token = alice.access_token.clone();
    forged.refresh_token = alice.refresh_token.clone();
    h.store.upsert_connection(&forged).await.expect("write");

    // A fresh instance (empty cache) reads the forged row.
    let service = h.peer(h.store.clone());
    let err = token(&service, &h.workspace, &bob.id, TokenRequest::default())
        .await
        .expect_err("must not open");
    assert!(
        matches!(err, ServiceError::Vault(VaultError::Forged)),
        "{err:?}"
    );
    assert!(err.to_string().contains("could not be decrypted"), "{err}");

    // Refreshing needs the refresh token, which fails the same way, and frees the lease.
    h.clock.advance(UNTIL_DUE);
    let err = token(&service, &h.workspace, &bob.id, TokenRequest::default())
        .await
        .expect_err("must not open");
    assert!(
        matches!(err, ServiceError::Vault(VaultError::Forged)),
        "{err:?}"
    );
    assert_eq!(h.provider.calls(), 0, "nothing was sent to the provider");
    assert_eq!(h.row(&bob.id).await.lease_owner, None);
    // Alice's own row is unaffected.
    assert_eq!(
        h.token(&alice.id).await.expect("alice"),
        h.provider.access(1)
    );
}

async fn no_plaintext_token_reaches_the_database(t: &TestDb) {
    let canary = format!("canary{}-", uuid::Uuid::new_v4().simple());
    let h = Harness::new(t, &canary).await;
    h.provider.rotate.store(true, Ordering::SeqCst);
    let conn = h.connect_actor("alice").await;
    h.clock.advance(UNTIL_DUE);
    let refreshed = h.token(&conn.id).await.expect("refresh");
    assert!(refreshed.starts_with(&canary));
    let row = h.row(&conn.id).await;
    assert!(h.open(&row, REFRESH_TOKEN).starts_with(&canary));

    let needles = [
        canary.as_bytes().to_vec(),
        hex(canary.as_bytes()).into_bytes(),
    ];
    let assert_absent = |haystack: &[u8], what: &str| {
        for needle in &needles {
            assert!(
                !contains(haystack, needle),
                "plaintext token material found in {what}"
            );
        }
    };

    match t.kind() {
        DatabaseKind::Sqlite => {
            let path = t.sqlite_path().expect("a file");
            let mut bytes = std::fs::read(path).expect("read the database file");
            let mut wal = path.clone().into_os_string();
            wal.push("-wal");
            bytes.extend(std::fs::read(&wal).unwrap_or_default());
            assert!(
                contains(&bytes, conn.id.as_str().as_bytes()),
                "the rows are in the bytes read"
            );
            assert!(
                contains(&bytes, &row.access_token[..20]),
                "sealed bytes are"
            );
            assert_absent(&bytes, "the SQLite files");
        }
        DatabaseKind::Postgres => {
            let pool = sqlx::PgPool::connect(&t.url).await.expect("connect");
            let columns: Vec<(Vec<u8>, Option<Vec<u8>>, String)> =
                sqlx::query_as("SELECT access_token, refresh_token, c::text FROM connections c")
                    .fetch_all(&pool)
                    .await
                    .expect("select");
            assert_eq!(columns.len(), 1);
            for (access, refresh, as_text) in &columns {
                assert_absent(access, "access_token");
                assert_absent(refresh.as_deref().unwrap_or_default(), "refresh_token");
                assert!(as_text.contains(conn.id.as_str()));
                assert_absent(as_text.as_bytes(), "the row as text");
            }
            pool.close().await;
            // What an operator's backup would hold, when pg_dump is installed.
            if let Ok(out) = std::process::Command::new("pg_dump")
                .args(["--data-only", "--table=connections", &t.url])
                .output()
            {
                if out.status.success() {
                    assert!(contains(&out.stdout, conn.id.as_str().as_bytes()));
                    assert_absent(&out.stdout, "pg_dump output");
                } else {
                    eprintln!(
                        "notice: pg_dump failed ({}); checked with SELECT only",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
            }
        }
    }
}

/// SQLite serialises writers: many tasks on several pools (as several processes would have)
/// racing for one lease must all get an answer, never a "database is locked" error.
async fn concurrent_lease_races_on_separate_pools_never_error(t: &TestDb) {
    let h = Harness::new(t, "").await;
    let conn = h.connect_actor("alice").await;
    let second = t.open_again().await;
    let stores = [h.store.clone(), second.store()];
    for round in 0..3i64 {
        let now = START.plus(Duration::from_secs(60 * round as u64));
        let until = now.plus(Duration::from_secs(30));
        let barrier = Arc::new(tokio::sync::Barrier::new(200));
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let store = stores[i % 2].clone();
                let (id, barrier) = (conn.id.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let owner = format!("r{round}-{i}");
                    store
                        .try_acquire_lease(&id, &owner, now, until)
                        .await
                        .map(|won| won.map(|_| owner))
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            if let Some(owner) = task
                .await
                .expect("task")
                .expect("no error under contention")
            {
                winners.push(owner);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        h.store
            .release_lease(&conn.id, &winners[0], None)
            .await
            .expect("release");
    }
    second.close().await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// When a refresh fails and the current token is the fallback, the caller's `min_ttl` still
/// holds: a caller that asked for ten more minutes does not get a token expiring in five.
async fn a_fallback_token_still_honours_min_ttl(t: &TestDb) {
    let h = Harness::new(t, "").await;
    let conn = h.connect_actor("alice").await;
    h.clock.advance(UNTIL_DUE); // 300 s of validity left
    h.provider
        .push(&[Step::Transient, Step::Transient, Step::Transient]);
    let req = TokenRequest {
        min_ttl: Some(Duration::from_secs(600)),
        force_refresh: false,
    };
    let got = token(&h.service, &h.workspace, &conn.id, req).await;
    assert!(
        matches!(got, Err(ServiceError::ProviderUnavailable { .. })),
        "a token expiring before min_ttl was served: {got:?}"
    );
    // Without that requirement the same token is a fine fallback.
    h.provider
        .push(&[Step::Transient, Step::Transient, Step::Transient]);
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(
        h.token(&conn.id).await.expect("fallback"),
        h.provider.access(0)
    );
}

/// A rotating provider spends the old refresh token when it answers. A refresh must then
/// store the new one even if the request that started it is gone (client disconnect,
/// timeout): with refreshes running as tasks of their own, dropping the caller mid-call
/// loses nothing, and the next read is served the new token without another refresh.
async fn a_refresh_whose_caller_goes_away_still_stores_the_rotated_tokens(t: &TestDb) {
    let h = Harness::new(t, "").await;
    h.service
        .run_refreshes_on(tokio::runtime::Handle::current());
    h.provider.rotate.store(true, Ordering::SeqCst);
    h.provider.set_delay(Duration::from_millis(300));
    let conn = h.connect_actor("alice").await;
    h.clock.advance(UNTIL_EXPIRED);

    let entered = h.provider.entered.notified();
    let caller = {
        let (service, workspace, id) = (h.service.clone(), h.workspace.clone(), conn.id.clone());
        tokio::spawn(async move { token(&service, &workspace, &id, TokenRequest::default()).await })
    };
    entered.await;
    caller.abort();
    assert!(caller.await.expect_err("aborted").is_cancelled());

    // The refresh goes on without its caller and stores what the provider rotated.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.row(&conn.id).await.version == conn.version {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refresh was lost"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let row = h.row(&conn.id).await;
    assert_eq!(h.open(&row, REFRESH_TOKEN), "refresh-1");
    assert_eq!(h.open(&row, ACCESS_TOKEN), h.provider.access(1));
    assert_eq!(
        h.token(&conn.id).await.expect("the stored token"),
        h.provider.access(1)
    );
    assert_eq!(h.provider.calls(), 1);
    // The task took the connection's gate with it and let go of it when done: nothing is left
    // registered for a refresh whose caller went away.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while h.service.refreshes_in_flight() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gate of a finished refresh stayed registered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
