//! Retry policy as pure functions: what to retry, and how long to wait.
//!
//! Idempotent requests retry 5xx, 408, 429, 498 (Swift's rate limit), 413 when the service says
//! when to retry (Rackspace's compute `overLimit`), connection failures, resets and timeouts.
//!
//! A request that creates something (a POST) is never retried when the service may have acted on
//! it: a reset or a timeout after the request went out, or a 500/502/504, could all follow a
//! success. Only answers that say "not done" (429, 498, 503, 413 with a retry time) and failures to
//! connect at all are retried; the rest go back to the migration, which settles them by looking
//! the resource up (docs/state-machine.md). `Retry-After` (seconds or HTTP-date) is honoured, capped by the backoff maximum.
//! Backoff is decorrelated jitter: `next = min(max, random(base, 3 × previous))`, drawn from a
//! random seed per [`Backoff`] so that parallel requests, and several imgferry processes side by
//! side, do not retry in lockstep; tests fix the seed to make delays repeatable.
//!
//! [`Attempts`] is the one budget of a logical request: every retry of it, whether the answer was
//! a retryable status or a body cut short while it was read, draws from the same count and the
//! same backoff.

use std::time::{Duration, Instant, SystemTime};

/// Retry limits.
#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// No retry starts after this much time since the first attempt.
    pub retry_timeout: Duration,
    pub base: Duration,
    pub max: Duration,
    /// Seed of the jitter. `None` (the default) draws a fresh random seed for every [`Backoff`];
    /// tests fix it so delays are repeatable.
    pub seed: Option<u64>,
    /// Ctrl-C or SIGTERM: cancels a request in flight and any backoff wait at once.
    pub cancel: Option<tokio_util::sync::CancellationToken>,
    /// The longest wait a service may ask for (`Retry-After`, `overLimit.retryAt`) that is waited
    /// out in full: longer than `max` (a daily limit, say) but within the step's deadline. Zero
    /// caps every wait at `max`.
    pub long_wait: Duration,
    /// A rate-limit gate shared with other requests (a fleet's API clients): a rate limit one of
    /// them meets delays all of them.
    pub gate: Option<std::sync::Arc<super::Gate>>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 8,
            retry_timeout: Duration::from_secs(600),
            base: Duration::from_millis(200),
            max: Duration::from_secs(30),
            seed: None,
            cancel: None,
            long_wait: Duration::ZERO,
            gate: None,
        }
    }
}

/// Whether a request may be repeated without changing the outcome (an enum, not a `bool`,
/// since it crosses modules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Reads, PUTs of objects and containers, deletes, authentication.
    Idempotent,
    /// A POST that creates something: repeated only when the service said it did not act.
    Creating,
}

/// What happened to one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// The connection could not be made: the request was never sent.
    Connect,
    /// The connection failed after the request may have been sent (reset, broken body).
    Reset,
    Timeout,
}

impl Outcome {
    /// A few words for the retry line the user sees.
    pub fn reason(&self) -> String {
        match self {
            Outcome::Status { status, .. } => format!("HTTP {status}"),
            Outcome::Timeout => "timeout".into(),
            Outcome::Connect => "cannot connect".into(),
            Outcome::Reset => "connection reset".into(),
        }
    }
}

/// What to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Done,
    /// Retry, after at least this long if the service said so.
    Retry(Option<Duration>),
    Fail,
}

/// The retry decision for one attempt.
///
/// A 422 on an idempotent request is retried: Swift answers 422 when the bytes it received do not
/// match the `ETag` sent with them, so the body was damaged in transit and sending the same
/// (re-read) bytes again is the cure.
pub fn classify(outcome: &Outcome, kind: Idempotency) -> Decision {
    let idempotent = kind == Idempotency::Idempotent;
    match outcome {
        Outcome::Status {
            status,
            retry_after,
        } => match status {
            200..=399 => Decision::Done,
            429 | 498 | 503 => Decision::Retry(*retry_after),
            413 if retry_after.is_some() => Decision::Retry(*retry_after),
            408 | 422 | 500..=599 if idempotent => Decision::Retry(*retry_after),
            _ => Decision::Fail,
        },
        Outcome::Connect => Decision::Retry(None),
        Outcome::Reset | Outcome::Timeout if idempotent => Decision::Retry(None),
        Outcome::Reset | Outcome::Timeout => Decision::Fail,
    }
}

/// Reads `Retry-After` in its seconds or HTTP-date form.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    parse_retry_after(v, SystemTime::now())
}

pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Reads Rackspace's `{"overLimit": {"retryAt": "2010-08-01T00:00:00Z", …}}` (any fault name),
/// the compute API's way of saying when a 413 may be retried.
pub fn parse_retry_at(body: &str, now: SystemTime) -> Option<Duration> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let at = v
        .as_object()?
        .values()
        .find_map(|f| f["retryAt"].as_str())?;
    let at = parse_time(at)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Reads a Rackspace timestamp: RFC 3339 with `Z` or an explicit offset
/// (`2016-08-11T20:00:44.526Z`, `2012-05-02T14:27:40.000-05:00`), or the older form without a
/// zone, which is UTC. Parsed by jiff, so no offset or date can overflow anything here.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let t = match s.trim().parse::<jiff::Timestamp>() {
        Ok(t) => t,
        Err(_) => s
            .trim()
            .parse::<jiff::civil::DateTime>()
            .ok()?
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()?
            .timestamp(),
    };
    Some(SystemTime::from(t))
}

/// Decorrelated-jitter backoff with its own small random source.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    prev: Duration,
    rng: u64,
}

impl Backoff {
    /// A backoff seeded from `cfg.seed`, or from the thread's random generator when it is `None`.
    pub fn new(cfg: &RetryConfig) -> Self {
        let seed = cfg.seed.unwrap_or_else(rand::random::<u64>);
        Self {
            base: cfg.base,
            max: cfg.max,
            prev: cfg.base,
            rng: seed | 1,
        }
    }

    fn random_unit(&mut self) -> f64 {
        use rand_xoshiro::rand_core::{Rng, SeedableRng};
        let mut r = rand_xoshiro::SplitMix64::seed_from_u64(self.rng);
        self.rng = r.next_u64();
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The next delay; a service's own hint is honoured (capped at the maximum).
    pub fn next(&mut self, hint: Option<Duration>) -> Duration {
        let upper = (self.prev * 3).max(self.base);
        let span = upper.saturating_sub(self.base).as_secs_f64();
        let jittered = self.base + Duration::from_secs_f64(span * self.random_unit());
        let delay = hint.map_or(jittered, |h| h.max(jittered)).min(self.max);
        self.prev = delay;
        delay
    }
}

/// The retry budget of one logical request: attempts made, when it started, and its backoff.
#[derive(Debug)]
pub struct Attempts {
    cancel: Option<tokio_util::sync::CancellationToken>,
    max_delay: Duration,
    long_wait: Duration,
    max_retries: u32,
    retry_timeout: Duration,
    backoff: Backoff,
    made: u32,
    started: Instant,
    gate: Option<std::sync::Arc<super::Gate>>,
}

impl Attempts {
    pub fn new(cfg: &RetryConfig) -> Self {
        Self {
            cancel: cfg.cancel.clone(),
            max_delay: cfg.max,
            long_wait: cfg.long_wait,
            max_retries: cfg.max_retries,
            retry_timeout: cfg.retry_timeout,
            backoff: Backoff::new(cfg),
            made: 0,
            started: Instant::now(),
            gate: cfg.gate.clone(),
        }
    }

    /// Waits while the shared rate-limit gate is closed.
    pub async fn pass_gate(&self) {
        if let Some(g) = &self.gate {
            g.pass().await;
        }
    }

    /// Closes the shared gate (if any) for `wait`: the service asked this request to slow down.
    pub fn close_gate(&self, wait: Duration) {
        if let Some(g) = &self.gate {
            g.close_for(wait);
        }
    }

    /// Counts the start of an attempt and returns its number (1 for the first).
    pub fn start(&mut self) -> u32 {
        self.made += 1;
        self.made
    }

    /// Runs `fut` unless the run is cancelled first; `None` when it was.
    pub async fn or_cancel<T>(&self, fut: impl std::future::Future<Output = T>) -> Option<T> {
        match &self.cancel {
            Some(c) => tokio::select! {
                v = fut => Some(v),
                () = c.cancelled() => None,
            },
            None => Some(fut.await),
        }
    }

    /// The backoff cap: a longer delay is one the service asked for.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    pub fn made(&self) -> u32 {
        self.made
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The delay before the next attempt, when `decision` asks for one and the budget allows it.
    /// A service's own wait longer than the backoff cap is honoured in full when it fits in
    /// `long_wait` (it is the service's limit, not a failure to count against the budget).
    pub fn retry_after(&mut self, decision: Decision) -> Option<Duration> {
        if self.too_long(decision).is_some() {
            return None;
        }
        match decision {
            Decision::Retry(Some(hint)) if hint > self.max_delay && hint <= self.long_wait => {
                Some(hint)
            }
            Decision::Retry(hint)
                if self.made <= self.max_retries && self.elapsed() < self.retry_timeout =>
            {
                Some(self.backoff.next(hint))
            }
            _ => None,
        }
    }

    /// The wait a service asked for that is longer than this request may wait, if that is why
    /// `decision` will not be retried. Only where long waits are allowed at all (`long_wait` set):
    /// elsewhere a long hint is capped at the backoff maximum, as before.
    pub fn too_long(&self, decision: Decision) -> Option<Duration> {
        match decision {
            Decision::Retry(Some(hint))
                if !self.long_wait.is_zero() && hint > self.max_delay && hint > self.long_wait =>
            {
                Some(hint)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        let s = |status| Outcome::Status {
            status,
            retry_after: None,
        };
        let hint = Some(Duration::from_secs(2));
        let cases = [
            (s(200), true, Decision::Done),
            (s(201), false, Decision::Done),
            (s(404), true, Decision::Fail),
            (s(401), true, Decision::Fail),
            (s(422), false, Decision::Fail),
            // An ETag mismatch on an upload: the body was damaged on the way; send it again.
            (s(422), true, Decision::Retry(None)),
            (s(408), true, Decision::Retry(None)),
            (s(429), true, Decision::Retry(None)),
            (s(498), true, Decision::Retry(None)),
            (s(500), true, Decision::Retry(None)),
            (s(503), true, Decision::Retry(None)),
            // A POST that creates things: only "not done" answers are retried.
            (s(500), false, Decision::Fail),
            (s(502), false, Decision::Fail),
            (s(504), false, Decision::Fail),
            (s(408), false, Decision::Fail),
            (s(503), false, Decision::Retry(None)),
            (s(429), false, Decision::Retry(None)),
            (s(413), true, Decision::Fail),
            (
                Outcome::Status {
                    status: 413,
                    retry_after: hint,
                },
                true,
                Decision::Retry(hint),
            ),
            (
                Outcome::Status {
                    status: 429,
                    retry_after: hint,
                },
                true,
                Decision::Retry(hint),
            ),
            (Outcome::Connect, false, Decision::Retry(None)),
            (Outcome::Reset, true, Decision::Retry(None)),
            (Outcome::Reset, false, Decision::Fail),
            (Outcome::Timeout, true, Decision::Retry(None)),
            (Outcome::Timeout, false, Decision::Fail),
        ];
        for (outcome, idempotent, want) in cases {
            let kind = if idempotent {
                Idempotency::Idempotent
            } else {
                Idempotency::Creating
            };
            assert_eq!(
                classify(&outcome, kind),
                want,
                "{outcome:?} idempotent={idempotent}"
            );
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn retry_at_from_an_over_limit_body() {
        let now = humantime::parse_rfc3339("2010-08-01T00:00:00Z").unwrap();
        let body =
            r#"{"overLimit": {"code": 413, "message": "x", "retryAt": "2010-08-01T00:00:09Z"}}"#;
        assert_eq!(parse_retry_at(body, now), Some(Duration::from_secs(9)));
        let past = r#"{"overLimit": {"retryAt": "2010-07-31T23:00:00Z"}}"#;
        assert_eq!(parse_retry_at(past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_at(r#"{"overLimit": {"code": 413}}"#, now), None);
        assert_eq!(parse_retry_at("<html>413</html>", now), None);
    }

    #[test]
    fn backoff_is_bounded_jittered_and_repeatable() {
        let cfg = RetryConfig {
            seed: Some(0x1f2e_3d4c),
            ..RetryConfig::default()
        };
        let run = || {
            let mut b = Backoff::new(&cfg);
            (0..12).map(|_| b.next(None)).collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run(), "the same seed gives the same delays");
        assert!(a.iter().all(|d| *d >= cfg.base && *d <= cfg.max), "{a:?}");
        assert!(a.windows(2).any(|w| w[0] != w[1]));
        let mut b = Backoff::new(&cfg);
        assert!(b.next(Some(Duration::from_secs(5))) >= Duration::from_secs(5));
        assert_eq!(b.next(Some(Duration::from_secs(3600))), cfg.max);
    }

    #[test]
    fn backoffs_without_a_seed_draw_different_delays() {
        // The default configuration has no seed: two backoffs (two requests, or two processes)
        // must not retry in lockstep. With 12 draws from a span of seconds, equal sequences would
        // mean a shared seed, not chance.
        let cfg = RetryConfig::default();
        assert_eq!(cfg.seed, None);
        let draw = || {
            let mut b = Backoff::new(&cfg);
            (0..12).map(|_| b.next(None)).collect::<Vec<_>>()
        };
        assert_ne!(draw(), draw());
    }

    #[test]
    fn attempts_share_one_budget() {
        let cfg = RetryConfig {
            max_retries: 2,
            base: Duration::from_millis(1),
            max: Duration::from_millis(2),
            seed: Some(1),
            ..RetryConfig::default()
        };
        let mut a = Attempts::new(&cfg);
        let mut retried = 0;
        loop {
            a.start();
            if a.retry_after(Decision::Retry(None)).is_none() {
                break;
            }
            retried += 1;
        }
        assert_eq!((a.made(), retried), (3, 2));
        assert_eq!(a.retry_after(Decision::Fail), None);
    }
}
