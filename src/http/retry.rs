//! Retry policy as pure functions (STYLE §4): what to retry, and how long to wait.
//!
//! Idempotent requests retry 5xx, 408, 429, 498 (Swift's rate limit), 413 when the service says
//! when to retry (Rackspace's compute `overLimit`), connection failures, resets and timeouts.
//!
//! A request that creates something (a POST) is never retried when the service may have acted on
//! it: a reset or a timeout after the request went out, or a 500/502/504, could all follow a
//! success. Only answers that say "not done" (429, 498, 503, 413 with a retry time) and failures to
//! connect at all are retried; the rest go back to the migration, which settles them by looking
//! the resource up (docs/state-machine.md). `Retry-After` (seconds or HTTP-date) is honoured, capped by the backoff maximum.
//! Backoff is decorrelated jitter: `next = min(max, random(base, 3 × previous))`.

use std::time::{Duration, SystemTime};

/// Retry limits.
#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// No retry starts after this much time since the first attempt.
    pub retry_timeout: Duration,
    pub base: Duration,
    pub max: Duration,
    /// Seed of the jitter; tests fix it so delays are repeatable.
    pub seed: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 8,
            retry_timeout: Duration::from_secs(600),
            base: Duration::from_millis(200),
            max: Duration::from_secs(30),
            seed: 0x1f2e_3d4c,
        }
    }
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

/// What to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Done,
    /// Retry, after at least this long if the service said so.
    Retry(Option<Duration>),
    Fail,
}

/// The retry decision for one attempt.
pub fn classify(outcome: &Outcome, idempotent: bool) -> Decision {
    match outcome {
        Outcome::Status {
            status,
            retry_after,
        } => match status {
            200..=399 => Decision::Done,
            429 | 498 | 503 => Decision::Retry(*retry_after),
            413 if retry_after.is_some() => Decision::Retry(*retry_after),
            408 | 500..=599 if idempotent => Decision::Retry(*retry_after),
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
    let at = humantime::parse_rfc3339_weak(at.trim_end_matches('Z')).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
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
    pub fn new(cfg: &RetryConfig) -> Self {
        Self {
            base: cfg.base,
            max: cfg.max,
            prev: cfg.base,
            rng: cfg.seed | 1,
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
            assert_eq!(
                classify(&outcome, idempotent),
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
        let cfg = RetryConfig::default();
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
}
