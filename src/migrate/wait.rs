//! Waiting for the services: poll at a fixed interval until a check says done, a deadline passes,
//! or Ctrl-C arrives. Every sleep is a safe point to stop at.
//!
//! The interval comes from the plan (Rackspace asks for tasks no more often than every 30 s, and
//! servers and images every 10 s); the deadline bounds each wait, not the migration.

use std::time::{Duration, Instant};

use super::{Ctx, Error};
use crate::progress::Event;

/// What one check saw.
pub enum Poll<T> {
    Ready(T),
    /// Still working, with the status to show.
    Pending(String),
}

/// Sleeps `secs`, or returns [`Error::Interrupted`] if Ctrl-C comes first.
pub async fn pause(ctx: &Ctx, secs: f64) -> Result<(), Error> {
    let d = Duration::from_secs_f64(secs.max(0.0));
    tokio::select! {
        () = tokio::time::sleep(d) => Ok(()),
        () = ctx.cancel.cancelled() => Err(Error::Interrupted),
    }
}

/// Calls `check` every `interval` seconds until it is ready. Status changes are reported.
pub async fn until<T>(
    ctx: &Ctx,
    what: &str,
    interval: f64,
    deadline: f64,
    mut check: impl AsyncFnMut() -> Result<Poll<T>, Error>,
) -> Result<T, Error> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        match check().await? {
            Poll::Ready(v) => return Ok(v),
            Poll::Pending(status) => {
                if status != last {
                    ctx.emit(Event::Waiting {
                        what: what.to_string(),
                        status: status.clone(),
                    });
                    last = status;
                }
            }
        }
        if started.elapsed().as_secs_f64() > deadline {
            return Err(Error::Timeout {
                what: what.to_string(),
                seconds: deadline,
                status: last,
            });
        }
        pause(ctx, interval).await?;
    }
}
