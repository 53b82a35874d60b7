//! Cross-cutting behaviour of advisors as layers that wrap any [`LlmAdvisor`] and are one
//! themselves: [`Timeout`] (a limit on one attempt), [`RateLimit`] (a least interval between
//! attempts) and [`Retry`] (temporary failures tried again after a backoff with jitter).
//! [`apply`] stacks them as a provider file asks, retry outermost:
//!
//! ```text
//! Retry(RateLimit(Timeout(advisor)))
//! ```
//!
//! so every attempt waits for its turn, and the timeout measures the attempt alone. The
//! jitter comes from a generator seeded from the provider file (`seed`), so a rerun waits
//! exactly as the run it repeats.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::advice::{Advice, AdvisorContext, Capabilities, LlmAdvisor};
use crate::error::{AdvisorError, Result};

/// The methods a decorator does not change, answered by the advisor it wraps (`self.inner`):
/// a decorated advisor keeps the name, capabilities and endpoint of the one inside.
macro_rules! forward_to_inner {
    () => {
        fn name(&self) -> String {
            self.inner.name()
        }

        fn capabilities(&self) -> Capabilities {
            self.inner.capabilities()
        }

        fn endpoint(&self) -> Option<String> {
            self.inner.endpoint()
        }

        fn request_record(&self, context: &AdvisorContext) -> Option<crate::advice::CallRecord> {
            self.inner.request_record(context)
        }
    };
}

/// How calls to an advisor are bounded and retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallPolicy {
    /// Limit on one attempt (an advice, its repair request included); none: no limit.
    pub timeout: Option<Duration>,
    /// Retries after the first attempt, on temporary errors only.
    pub retries: u32,
    /// First backoff; doubled each retry, times a jitter factor drawn in [1, 1.5).
    pub backoff: Duration,
    /// Longest wait between attempts (a longer `Retry-After` is cut to it).
    pub max_backoff: Duration,
    /// Seed of the jitter.
    pub seed: u64,
    /// At most this many attempts per minute; none: no limit.
    pub requests_per_minute: Option<f64>,
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self {
            timeout: Some(Duration::from_secs(60)),
            retries: 3,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            seed: 0,
            requests_per_minute: None,
        }
    }
}

impl CallPolicy {
    /// No limit, no retry: the advisor as it is.
    pub fn none() -> Self {
        Self {
            timeout: None,
            retries: 0,
            requests_per_minute: None,
            ..Self::default()
        }
    }
}

/// Wraps `advisor` in the layers `policy` asks for (none when it asks for none).
pub fn apply<A: LlmAdvisor + 'static>(advisor: A, policy: &CallPolicy) -> Box<dyn LlmAdvisor> {
    let mut a: Box<dyn LlmAdvisor> = Box::new(advisor);
    if let Some(limit) = policy.timeout {
        a = Box::new(Timeout::new(a, limit));
    }
    if let Some(rpm) = policy.requests_per_minute {
        a = Box::new(RateLimit::new(a, rpm));
    }
    if policy.retries > 0 {
        a = Box::new(Retry::new(a, policy));
    }
    a
}

/// Fails an attempt that takes longer than a limit with [`AdvisorError::Timeout`] (a
/// temporary error), dropping the attempt: an HTTP request in flight is cancelled and its
/// connection closed.
pub struct Timeout<A> {
    inner: A,
    limit: Duration,
}

impl<A> Timeout<A> {
    /// `inner` with attempts limited to `limit`.
    pub fn new(inner: A, limit: Duration) -> Self {
        Self { inner, limit }
    }
}

#[async_trait]
impl<A: LlmAdvisor> LlmAdvisor for Timeout<A> {
    forward_to_inner!();

    async fn advise(&self, context: &AdvisorContext) -> Result<Advice> {
        match tokio::time::timeout(self.limit, self.inner.advise(context)).await {
            Ok(answer) => answer,
            // The advice's future is dropped here, and with it its HTTP request: the
            // connection closes, so a server that notices (llama.cpp's does) stops generating.
            Err(_) => {
                let seconds = self.limit.as_secs_f64();
                let calls = self
                    .inner
                    .request_record(context)
                    .map(|mut r| {
                        r.latency_s = seconds;
                        r.error = Some(format!("no reply within {seconds} s"));
                        r
                    })
                    .into_iter()
                    .collect::<Vec<_>>();
                Err(AdvisorError::Timeout {
                    provider: self.inner.name(),
                    endpoint: self
                        .inner
                        .endpoint()
                        .unwrap_or_else(|| "(in process)".into()),
                    seconds,
                    calls: Box::new(calls),
                })
            }
        }
    }
}

/// Starts attempts at least `60 / requests_per_minute` seconds apart.
pub struct RateLimit<A> {
    inner: A,
    interval: Duration,
    next: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

impl<A> RateLimit<A> {
    /// `inner` with at most `requests_per_minute` attempts per minute.
    pub fn new(inner: A, requests_per_minute: f64) -> Self {
        Self {
            inner,
            interval: Duration::from_secs_f64(60.0 / requests_per_minute),
            next: tokio::sync::Mutex::new(None),
        }
    }
}

#[async_trait]
impl<A: LlmAdvisor> LlmAdvisor for RateLimit<A> {
    forward_to_inner!();

    async fn advise(&self, context: &AdvisorContext) -> Result<Advice> {
        {
            let mut next = self.next.lock().await;
            let now = tokio::time::Instant::now();
            let start = match *next {
                Some(t) if t > now => {
                    tokio::time::sleep_until(t).await;
                    t
                }
                _ => now,
            };
            *next = Some(start + self.interval);
        }
        self.inner.advise(context).await
    }
}

/// Tries an advice again after a temporary error ([`AdvisorError::is_temporary`]), up to a
/// number of retries, waiting `backoff * 2^(k-1)` times a jitter factor in [1, 1.5) before
/// retry `k` (at least the server's `Retry-After`, at most `max_backoff`). A permanent error
/// ends at once. On success the first call record counts every attempt and their time, so
/// the record reads as the one request it was.
pub struct Retry<A> {
    inner: A,
    retries: u32,
    backoff: Duration,
    max_backoff: Duration,
    rng: Mutex<fastrand::Rng>,
}

impl<A> Retry<A> {
    /// `inner` retried as `policy` says (its retries, backoff and seed).
    pub fn new(inner: A, policy: &CallPolicy) -> Self {
        Self {
            inner,
            retries: policy.retries,
            backoff: policy.backoff,
            max_backoff: policy.max_backoff,
            rng: Mutex::new(fastrand::Rng::with_seed(policy.seed)),
        }
    }

    /// The wait before retry `k` (1-based) after `error`.
    fn wait(&self, k: u32, error: &AdvisorError) -> Duration {
        let jitter = 1.0 + 0.5 * self.rng.lock().expect("jitter generator").f64();
        let base = self.backoff.as_secs_f64() * 2f64.powi(k as i32 - 1) * jitter;
        let asked = error.retry_after().map_or(0.0, |d| d.as_secs_f64());
        Duration::from_secs_f64(base.max(asked).min(self.max_backoff.as_secs_f64()))
    }
}

#[async_trait]
impl<A: LlmAdvisor> LlmAdvisor for Retry<A> {
    forward_to_inner!();

    async fn advise(&self, context: &AdvisorContext) -> Result<Advice> {
        let started = tokio::time::Instant::now();
        let mut failed = 0u32;
        // The calls of the failed attempts, kept with the final error.
        let mut earlier = Vec::new();
        loop {
            match self.inner.advise(context).await {
                Ok(mut advice) => {
                    if failed > 0 {
                        if let Some(first) = advice.calls.first_mut() {
                            first.attempts += failed;
                            first.latency_s = started.elapsed().as_secs_f64();
                        }
                    }
                    return Ok(advice);
                }
                Err(e) if e.is_temporary() && failed < self.retries => {
                    failed += 1;
                    earlier.extend_from_slice(e.calls());
                    let wait = self.wait(failed, &e);
                    tracing::warn!(
                        "{}: attempt {failed} failed ({e}); retrying in {:.1} s",
                        self.inner.name(),
                        wait.as_secs_f64()
                    );
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e.with_earlier_calls(earlier)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::advice::{CallRecord, OutputMode};
    use crate::rule_based::RuleBasedAdvisor;

    /// Fails its first `failures` attempts with a 503 (or hangs, when `hang`), then answers as
    /// the rule-based physicist with one call record; counts attempts.
    struct Flaky {
        failures: u32,
        hang: bool,
        attempts: AtomicU32,
        retry_after: Option<Duration>,
    }

    impl Flaky {
        fn new(failures: u32) -> Self {
            Self {
                failures,
                hang: false,
                attempts: AtomicU32::new(0),
                retry_after: None,
            }
        }
    }

    #[async_trait]
    impl LlmAdvisor for Flaky {
        fn name(&self) -> String {
            "flaky".into()
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities {
                json_schema: false,
                network: true,
                deterministic: false,
                mode: OutputMode::Goals,
            }
        }
        fn endpoint(&self) -> Option<String> {
            Some("http://127.0.0.1:9".into())
        }
        async fn advise(&self, context: &AdvisorContext) -> Result<Advice> {
            let n = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
            if n <= self.failures {
                if self.hang {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                return Err(AdvisorError::Http {
                    provider: "flaky".into(),
                    endpoint: "http://127.0.0.1:9".into(),
                    status: 503,
                    message: "overloaded".into(),
                    retry_after: self.retry_after,
                    calls: Box::default(),
                });
            }
            let mut advice = RuleBasedAdvisor.decide(context);
            advice.calls.push(CallRecord {
                provider: "flaky".into(),
                model: "m".into(),
                served_model: None,
                system: "s".into(),
                messages: vec![("user".into(), "u".into())],
                reply: "{}".into(),
                latency_s: 0.0,
                tokens_in: None,
                tokens_cached: None,
                tokens_out: None,
                attempts: 1,
                error: None,
            });
            Ok(advice)
        }
    }

    fn context() -> AdvisorContext {
        let text = include_str!("../../../configs/protocols/cervix.toml");
        let protocol =
            tps_api::Protocol::parse(text, std::path::Path::new("cervix.toml")).expect("protocol");
        let planning = protocol.planning.clone().expect("planning");
        let mut fake = tps_api::fake::FakeTps::new(&protocol).expect("fake");
        use tps_api::Tps;
        let report = fake.optimize(&[]).expect("report");
        AdvisorContext::for_protocol(&protocol, &planning, report, Vec::new(), Vec::new())
    }

    fn policy(retries: u32, seed: u64) -> CallPolicy {
        CallPolicy {
            timeout: Some(Duration::from_secs(10)),
            retries,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            seed,
            requests_per_minute: None,
        }
    }

    /// Time (tokio's clock, paused: exact) that `advisor` takes for one advice.
    async fn timed(advisor: &dyn LlmAdvisor) -> (Result<Advice>, Duration) {
        let t = tokio::time::Instant::now();
        let r = advisor.advise(&context()).await;
        (r, t.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn retries_temporary_errors_and_folds_the_attempts_into_the_record() {
        let a = apply(Flaky::new(2), &policy(3, 7));
        let (advice, waited) = timed(a.as_ref()).await;
        let advice = advice.unwrap();
        assert_eq!(advice.calls[0].attempts, 3);
        // Two waits: 0.5 s and 1 s, each times a factor in [1, 1.5).
        let s = waited.as_secs_f64();
        assert!((1.5..2.25).contains(&s), "{s}");
        assert!((advice.calls[0].latency_s - s).abs() < 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_seed_gives_the_same_waits() {
        let mut seen = Vec::new();
        for seed in [7, 7, 8] {
            let (_, waited) = timed(apply(Flaky::new(3), &policy(3, seed)).as_ref()).await;
            seen.push(waited);
        }
        assert_eq!(seen[0], seen[1], "a replay waits as the run it repeats");
        assert_ne!(seen[0], seen[2], "another seed, other jitter");
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_last_retry_and_honours_retry_after() {
        let mut flaky = Flaky::new(10);
        flaky.retry_after = Some(Duration::from_secs(4));
        let retry = Retry::new(flaky, &policy(2, 1));
        let (e, waited) = timed(&retry).await;
        assert!(matches!(e, Err(AdvisorError::Http { status: 503, .. })));
        assert_eq!(retry.inner.attempts.load(Ordering::SeqCst), 3);
        // Both waits are the server's 4 s (longer than the backoff).
        assert_eq!(waited, Duration::from_secs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_is_not_retried() {
        struct Refused(AtomicU32);
        #[async_trait]
        impl LlmAdvisor for Refused {
            fn name(&self) -> String {
                "refused".into()
            }
            fn capabilities(&self) -> Capabilities {
                RuleBasedAdvisor.capabilities()
            }
            async fn advise(&self, _: &AdvisorContext) -> Result<Advice> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Err(AdvisorError::Http {
                    provider: "refused".into(),
                    endpoint: "e".into(),
                    status: 401,
                    message: "bad key".into(),
                    retry_after: None,
                    calls: Box::default(),
                })
            }
        }
        let retry = Retry::new(Refused(AtomicU32::new(0)), &policy(5, 1));
        assert!(retry.advise(&context()).await.is_err());
        assert_eq!(retry.inner.0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_attempt_times_out_and_is_retried() {
        let mut flaky = Flaky::new(1);
        flaky.hang = true;
        let p = CallPolicy {
            timeout: Some(Duration::from_secs(2)),
            ..policy(1, 3)
        };
        let (advice, waited) = timed(apply(flaky, &p).as_ref()).await;
        assert_eq!(advice.unwrap().calls[0].attempts, 2);
        let s = waited.as_secs_f64();
        assert!(
            (2.5..2.75).contains(&s),
            "2 s timeout and a 0.5-0.75 s wait: {s}"
        );
        let mut flaky = Flaky::new(5);
        flaky.hang = true;
        let e = Timeout::new(flaky, Duration::from_secs(2))
            .advise(&context())
            .await
            .unwrap_err();
        assert!(e.is_temporary());
        assert!(
            e.to_string().contains("127.0.0.1:9") && e.to_string().contains("2 s"),
            "{e}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_spaces_the_attempts() {
        let limited = RateLimit::new(Flaky::new(0), 120.0);
        let t = tokio::time::Instant::now();
        let mut starts = Vec::new();
        for _ in 0..3 {
            limited.advise(&context()).await.unwrap();
            starts.push(t.elapsed());
        }
        assert_eq!(
            starts,
            [
                Duration::ZERO,
                Duration::from_millis(500),
                Duration::from_secs(1)
            ]
        );
    }
}
