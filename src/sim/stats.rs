//! Counters the simulator keeps, readable by tests: bytes in and out per region, requests by method
//! and route, and resources created by kind and name. Tests use them to prove "nothing was created
//! twice" and "a resume re-sent at most the segments in flight".

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

/// A snapshot of the counters.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Snapshot {
    /// Request body bytes received, per region.
    pub bytes_in: BTreeMap<String, u64>,
    /// Response body bytes sent, per region.
    pub bytes_out: BTreeMap<String, u64>,
    /// Requests by `"METHOD route"`, e.g. `"PUT object"`.
    pub requests: BTreeMap<String, u64>,
    /// Resources created by kind (`"object"`, `"container"`, …), each with the names created.
    pub created: BTreeMap<String, Vec<String>>,
    /// Cloud Files requests that came over ServiceNet (the `internalURL`), per region.
    pub servicenet: BTreeMap<String, u64>,
    /// Servers that Nova reports ACTIVE but whose guest did not boot (`region/name`): built from an
    /// image without `vm_mode`, which XenServer then starts as PV (docs/real-cloud.md).
    pub unbootable: Vec<String>,
}

/// Shared, thread-safe counters. The lock is never held across an await.
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<Snapshot>,
}

impl Stats {
    fn with(&self, f: impl FnOnce(&mut Snapshot)) {
        // A poisoned lock only means another handler panicked mid-update; counters stay usable.
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard);
    }

    pub fn request(&self, method: &str, route: &str) {
        self.with(|s| *s.requests.entry(format!("{method} {route}")).or_default() += 1);
    }

    pub fn bytes_in(&self, region: &str, n: u64) {
        self.with(|s| *s.bytes_in.entry(region.to_string()).or_default() += n);
    }

    pub fn bytes_out(&self, region: &str, n: u64) {
        self.with(|s| *s.bytes_out.entry(region.to_string()).or_default() += n);
    }

    pub fn created(&self, kind: &str, name: String) {
        self.with(|s| s.created.entry(kind.to_string()).or_default().push(name));
    }

    pub fn servicenet(&self, region: &str) {
        self.with(|s| *s.servicenet.entry(region.to_string()).or_default() += 1);
    }

    pub fn unbootable(&self, name: String) {
        self.with(|s| s.unbootable.push(name));
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut out = Snapshot::default();
        self.with(|s| out = s.clone());
        out
    }
}
