//! A rate-limit gate shared by every request of a fleet: when one request is told to slow down
//! (413 with a retry time, 429, Swift's 498), the gate closes for the wait the service asked for
//! and every other request that passes through it waits too, instead of each member of the fleet
//! finding the limit on its own and burning its retry budget against it.
//!
//! Rate limits are per account (Rackspace's compute limits: "absolute" and "rate" limits per
//! tenant, docs/real-cloud.md), so one gate per account's API is the honest model. A gate never
//! fails a request: it only delays the next attempt.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A shared "not before" instant.
#[derive(Debug, Default)]
pub struct Gate {
    until: Mutex<Option<Instant>>,
    /// How often the gate has closed (for reports and tests).
    closed: std::sync::atomic::AtomicU32,
}

impl Gate {
    pub fn new() -> Self {
        Self::default()
    }

    /// Closes the gate for `wait` from now, unless it is already closed for longer.
    pub fn close_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut g = self.until.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none_or(|u| u < until) {
            *g = Some(until);
        }
        self.closed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long a request must still wait before it may go out.
    pub fn remaining(&self) -> Duration {
        let g = self.until.lock().unwrap_or_else(|e| e.into_inner());
        g.map_or(Duration::ZERO, |u| {
            u.saturating_duration_since(Instant::now())
        })
    }

    /// Times the gate has closed.
    pub fn times_closed(&self) -> u32 {
        self.closed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until the gate is open (it may close again while waiting: the wait is re-read).
    pub async fn pass(&self) {
        loop {
            let wait = self.remaining();
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// Whether an answer is a rate limit that concerns every request of the account.
pub fn is_rate_limit(status: u16) -> bool {
    matches!(status, 413 | 429 | 498)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_gate_holds_every_request_until_it_opens() {
        let gate = std::sync::Arc::new(Gate::new());
        gate.close_for(Duration::from_millis(300));
        gate.close_for(Duration::from_millis(100));
        let started = Instant::now();
        gate.pass().await;
        assert!(
            started.elapsed() >= Duration::from_millis(290),
            "the longer wait wins"
        );
        assert_eq!(gate.times_closed(), 2);
        let started = Instant::now();
        gate.pass().await;
        assert!(started.elapsed() < Duration::from_millis(50), "open now");
    }
}
