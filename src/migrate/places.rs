//! A fleet's copy places: at most `--parallel` members copy at once, while up to as many more
//! image and export ahead of them.
//!
//! A member takes a copy place before it advances any step from [`Step::Exporting`] up to
//! [`Step::Uploaded`] (the steps that move bytes: the pipelined copy during the export, the
//! inspection, the transfer), and gives it back once it is uploaded. The fleet's own `--parallel`
//! admission place is given back when the member starts copying (see `fleet::member_sink`), so
//! the next members image and export while this one copies: their server-side work hides behind
//! the transfer instead of leaving the link idle between one round of members and the next.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::state::Step;

/// One member's view of the fleet's copy places.
#[derive(Debug)]
pub struct CopyPlaces {
    places: Arc<Semaphore>,
    held: Mutex<Option<OwnedSemaphorePermit>>,
}

impl CopyPlaces {
    pub fn new(places: Arc<Semaphore>) -> Self {
        Self {
            places,
            held: Mutex::new(None),
        }
    }

    /// Whether advancing from `step` moves bytes.
    fn copies(step: Step) -> bool {
        (Step::Exporting..Step::Uploaded).contains(&step)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Option<OwnedSemaphorePermit>> {
        // A poisoned lock still holds the permit.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Before the member advances from `step`: waits for a copy place when the step copies and
    /// none is held.
    pub async fn before(&self, step: Step) {
        if !Self::copies(step) || self.held().is_some() {
            return;
        }
        // The semaphore is never closed; `None` would only mean copying without a place.
        let permit = Arc::clone(&self.places).acquire_owned().await.ok();
        *self.held() = permit;
    }

    /// After the member reached `step`: gives the place back once it is past the copy.
    pub fn after(&self, step: Step) {
        if step >= Step::Uploaded {
            drop(self.held().take());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_place_is_held_from_the_export_to_the_upload() {
        let places = Arc::new(Semaphore::new(1));
        let a = CopyPlaces::new(Arc::clone(&places));
        a.before(Step::Imaging).await;
        assert_eq!(places.available_permits(), 1, "imaging takes no place");
        a.before(Step::Exporting).await;
        assert_eq!(places.available_permits(), 0);
        a.before(Step::Transferring).await;
        a.after(Step::Transferring);
        assert_eq!(places.available_permits(), 0, "still copying");
        a.after(Step::Uploaded);
        assert_eq!(places.available_permits(), 1);
    }
}
