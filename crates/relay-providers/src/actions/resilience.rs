//! How Relay calls provider APIs: a circuit breaker per provider API (Google's Gmail and Drive
//! apart, Microsoft's Outlook) and a retry policy that only repeats requests that cannot have
//! had an effect.
//!
//! Retried: connect failures (nothing was sent), timeouts of reads (idempotent), 429 (the
//! provider refused to process; `Retry-After` is honoured) and 502/503/504 (the gateway or
//! service did not process it). Never retried: a timeout or broken connection after a send
//! was written (it may have been delivered), and any other status.
//!
//! The breaker opens after `failures` consecutive failed calls (a call fails when its last
//! attempt got a 5xx, 429, timeout or connect error; its retries do not count again), refuses
//! calls for `open_for`, then lets one trial call through (half-open): its success closes the
//! breaker, its failure opens it again. One breaker per (provider, API): a Drive outage does
//! not stop Gmail sends of the same Google provider. Time comes from the `Clock` port,
//! so tests move it instead of sleeping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use relay_core::actions::{ActionError, Api, BreakerSnapshot};
use relay_core::{Clock, Timestamp, random};

/// Whether repeating a request could do something twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// A read: safe to repeat after a timeout.
    Read,
    /// A send: repeat only when it provably was not processed.
    Send,
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    pub base: Duration,
    pub max: Duration,
    /// A `Retry-After` longer than this is not waited for: the 429 is reported.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            base: Duration::from_secs(1),
            max: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// base × 2^attempt, capped, with "equal jitter" (half fixed, half random) so that
    /// many callers do not retry in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.max);
        exp.mul_f64(0.5 + 0.5 * random::unit_fraction())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    HalfOpen,
    Open,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open => "open",
        }
    }

    fn gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }
}

#[derive(Debug, Default)]
struct Entry {
    failures: u32,
    opened_at: Option<Timestamp>,
    trial_in_flight: bool,
}

/// Which breaker: a provider's name and one of its APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BreakerKey<'a> {
    pub provider: &'a str,
    pub api: Api,
}

impl BreakerKey<'_> {
    fn owned(self) -> (String, Api) {
        (self.provider.to_owned(), self.api)
    }
}

impl std::fmt::Display for BreakerKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.provider, self.api.as_str())
    }
}

/// Circuit breakers, one per (provider name, API).
pub struct Breakers {
    clock: Arc<dyn Clock>,
    failures: u32,
    open_for: Duration,
    entries: Mutex<HashMap<(String, Api), Entry>>,
}

impl Breakers {
    pub fn new(clock: Arc<dyn Clock>, failures: u32, open_for: Duration) -> Self {
        Self {
            clock,
            failures: failures.max(1),
            open_for,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Api), Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn state_of(&self, e: &Entry, now: Timestamp) -> State {
        match e.opened_at {
            None => State::Closed,
            Some(at) if now < at.plus(self.open_for) => State::Open,
            Some(_) => State::HalfOpen,
        }
    }

    /// Registers a provider API (gauge at 0) so `/ready` and dashboards see it before its
    /// first call.
    pub fn register(&self, key: BreakerKey<'_>) {
        self.lock().entry(key.owned()).or_default();
        set_gauge(key, State::Closed);
    }

    /// Asks to make a call; `Err(wait)` while the breaker is open.
    pub fn acquire(&self, key: BreakerKey<'_>) -> Result<(), Duration> {
        let now = self.clock.now();
        let mut entries = self.lock();
        let e = entries.entry(key.owned()).or_default();
        match self.state_of(e, now) {
            State::Closed => Ok(()),
            State::Open => {
                let at = e.opened_at.unwrap_or(now);
                Err(now.until(at.plus(self.open_for)))
            }
            State::HalfOpen if e.trial_in_flight => Err(Duration::from_secs(1)),
            State::HalfOpen => {
                e.trial_in_flight = true;
                set_gauge(key, State::HalfOpen);
                Ok(())
            }
        }
    }

    pub fn success(&self, key: BreakerKey<'_>) {
        let mut entries = self.lock();
        let e = entries.entry(key.owned()).or_default();
        let was_open = e.opened_at.is_some();
        *e = Entry::default();
        if was_open {
            tracing::info!(
                provider = key.provider,
                api = key.api.as_str(),
                "circuit breaker closed"
            );
        }
        set_gauge(key, State::Closed);
    }

    pub fn failure(&self, key: BreakerKey<'_>) {
        let now = self.clock.now();
        let mut entries = self.lock();
        let e = entries.entry(key.owned()).or_default();
        e.failures = e.failures.saturating_add(1);
        let trial_failed = e.trial_in_flight;
        e.trial_in_flight = false;
        if trial_failed || (e.opened_at.is_none() && e.failures >= self.failures) {
            e.opened_at = Some(now);
            tracing::warn!(
                provider = key.provider,
                api = key.api.as_str(),
                failures = e.failures,
                "circuit breaker opened"
            );
            set_gauge(key, State::Open);
        }
    }

    pub fn snapshot(&self) -> Vec<BreakerSnapshot> {
        let now = self.clock.now();
        let entries = self.lock();
        let mut out: Vec<_> = entries
            .iter()
            .map(|((provider, api), e)| {
                let state = self.state_of(e, now);
                set_gauge(
                    BreakerKey {
                        provider,
                        api: *api,
                    },
                    state,
                );
                BreakerSnapshot {
                    provider: provider.clone(),
                    api: api.as_str(),
                    state: state.as_str(),
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.provider, a.api).cmp(&(&b.provider, b.api)));
        out
    }
}

fn set_gauge(key: BreakerKey<'_>, state: State) {
    metrics::gauge!("circuit_breaker_state", "provider" => key.provider.to_owned(), "api" => key.api.as_str())
        .set(state.gauge());
}

/// A response that the caller maps (anything that is not a retried failure).
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
    /// The body was longer than the cap and was cut.
    pub truncated: bool,
}

/// Reads at most `cap` bytes of a body; the rest is dropped with the connection.
pub async fn read_capped(mut resp: reqwest::Response, cap: usize) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = cap.saturating_sub(body.len());
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    return (body, true);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) | Err(_) => return (body, false),
        }
    }
}

/// One logical call: breaker, retries, and a body read with a cap.
pub struct Call<'a> {
    pub api: Api,
    /// The breakers to use, `None` for webhooks (each destination is its own party, one
    /// failing receiver must not block the others).
    pub breaker: Option<&'a Breakers>,
    /// The provider whose API this is: the breaker is (`provider`, `api`).
    pub provider: &'a str,
    pub effect: Effect,
    pub retry: &'a RetryPolicy,
    pub body_cap: usize,
}

impl Call<'_> {
    /// Makes the call, retrying as the policy allows. The breaker is asked once and told the
    /// outcome once, whatever the number of attempts: one execute whose five attempts all
    /// failed is one failure, not five (which alone opened the breaker).
    pub async fn run<F>(&self, build: F) -> Result<Answer, ActionError>
    where
        F: Fn() -> reqwest::RequestBuilder,
    {
        let key = BreakerKey {
            provider: self.provider,
            api: self.api,
        };
        if let Some(b) = self.breaker
            && let Err(wait) = b.acquire(key)
        {
            return Err(ActionError::CircuitOpen(key.to_string(), wait));
        }
        let mut failed = false;
        let result = self.attempts(build, &mut failed).await;
        if let Some(b) = self.breaker {
            if failed {
                b.failure(key);
            } else {
                b.success(key);
            }
        }
        result
    }

    /// The attempts of one call; `failed` says whether the last one was a provider failure
    /// (connect error, timeout, 5xx, 429).
    async fn attempts<F>(&self, build: F, failed: &mut bool) -> Result<Answer, ActionError>
    where
        F: Fn() -> reqwest::RequestBuilder,
    {
        let mut attempt = 0u32;
        loop {
            let last = attempt >= self.retry.max_retries;
            let outcome = build().send().await;
            let retry_in = match outcome {
                Err(e) if e.is_connect() => {
                    *failed = true;
                    if last {
                        return Err(ActionError::ConnectionFailed(format!(
                            "could not connect to {}: {}",
                            self.api.as_str(),
                            connect_detail(&e)
                        )));
                    }
                    self.retry.backoff(attempt)
                }
                Err(e) if e.is_timeout() => {
                    *failed = true;
                    if self.effect == Effect::Send || last {
                        return Err(ActionError::Timeout(format!(
                            "{} did not answer in time{}",
                            self.api.as_str(),
                            if self.effect == Effect::Send {
                                "; the request may have been delivered, so it is not repeated"
                            } else {
                                ""
                            }
                        )));
                    }
                    self.retry.backoff(attempt)
                }
                Err(_) => {
                    *failed = true;
                    return Err(ActionError::Timeout(format!(
                        "the connection to {} broke before an answer arrived; the request may have been delivered, so it is not repeated",
                        self.api.as_str()
                    )));
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retryable = matches!(status, 429 | 502 | 503 | 504);
                    *failed = status >= 500 || status == 429;
                    let retry_after = retry_after(resp.headers());
                    if !retryable || last {
                        let headers = resp.headers().clone();
                        let (body, truncated) = read_capped(resp, self.body_cap).await;
                        return Ok(Answer {
                            status,
                            headers,
                            body,
                            truncated,
                        });
                    }
                    let backoff = self.retry.backoff(attempt);
                    match retry_after {
                        Some(ra) if ra > self.retry.max_retry_after => {
                            let headers = resp.headers().clone();
                            let (body, truncated) = read_capped(resp, self.body_cap).await;
                            return Ok(Answer {
                                status,
                                headers,
                                body,
                                truncated,
                            });
                        }
                        Some(ra) => ra.max(backoff),
                        None => backoff,
                    }
                }
            };
            tracing::debug!(
                api = self.api.as_str(),
                attempt,
                delay_ms = retry_in.as_millis() as u64,
                "retrying a provider call"
            );
            tokio::time::sleep(retry_in).await;
            attempt += 1;
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare from APIs; treated as absent).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The innermost cause of a connect error, without the URL (which may carry a query).
fn connect_detail(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut last = String::from("connection failed");
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_core::ManualClock;

    const GMAIL: BreakerKey<'static> = BreakerKey {
        provider: "google",
        api: Api::Gmail,
    };
    const DRIVE: BreakerKey<'static> = BreakerKey {
        provider: "google",
        api: Api::Drive,
    };
    const OUTLOOK: BreakerKey<'static> = BreakerKey {
        provider: "microsoft",
        api: Api::Outlook,
    };

    fn state_of(b: &Breakers, key: BreakerKey<'_>) -> &'static str {
        b.snapshot()
            .into_iter()
            .find(|s| s.provider == key.provider && s.api == key.api.as_str())
            .map_or("absent", |s| s.state)
    }

    #[test]
    fn the_breaker_opens_after_five_failures_and_half_opens_after_a_minute() {
        let clock = ManualClock::new(Timestamp(1_000_000));
        let b = Breakers::new(Arc::new(clock.clone()), 5, Duration::from_secs(60));
        for _ in 0..4 {
            assert!(b.acquire(GMAIL).is_ok());
            b.failure(GMAIL);
        }
        assert!(b.acquire(GMAIL).is_ok(), "four failures keep it closed");
        b.failure(GMAIL);
        let wait = b.acquire(GMAIL).expect_err("open after five");
        assert_eq!(wait, Duration::from_secs(60));
        assert_eq!(state_of(&b, GMAIL), "open");
        assert!(b.acquire(OUTLOOK).is_ok(), "per provider");
        clock.advance(Duration::from_secs(60));
        assert_eq!(state_of(&b, GMAIL), "half_open");
        assert!(b.acquire(GMAIL).is_ok(), "one trial call");
        assert!(b.acquire(GMAIL).is_err(), "only one trial at a time");
        b.failure(GMAIL);
        assert!(b.acquire(GMAIL).is_err(), "a failed trial reopens");
        clock.advance(Duration::from_secs(61));
        assert!(b.acquire(GMAIL).is_ok());
        b.success(GMAIL);
        assert_eq!(state_of(&b, GMAIL), "closed");
        assert!(b.acquire(GMAIL).is_ok());
    }

    #[test]
    fn each_provider_api_has_its_own_breaker_listed_from_registration() {
        let clock = ManualClock::new(Timestamp(1_000_000));
        let b = Breakers::new(Arc::new(clock), 2, Duration::from_secs(60));
        for key in [GMAIL, DRIVE, OUTLOOK] {
            b.register(key);
        }
        let listed: Vec<_> = b
            .snapshot()
            .into_iter()
            .map(|s| (s.provider, s.api, s.state))
            .collect();
        assert_eq!(
            listed,
            [
                ("google".to_owned(), "drive", "closed"),
                ("google".to_owned(), "gmail", "closed"),
                ("microsoft".to_owned(), "outlook", "closed"),
            ],
            "every registered API is listed before any call"
        );
        for _ in 0..2 {
            b.acquire(DRIVE).expect("closed until the second failure");
            b.failure(DRIVE);
        }
        assert!(b.acquire(DRIVE).is_err(), "Drive's breaker opened");
        assert!(
            b.acquire(GMAIL).is_ok(),
            "Gmail of the same provider still runs"
        );
        assert_eq!(state_of(&b, GMAIL), "closed");
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let p = RetryPolicy::default();
        for (attempt, full) in [(0, 1), (1, 2), (2, 4), (3, 8), (6, 8)] {
            let d = p.backoff(attempt);
            let full = Duration::from_secs(full);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
    }
}
