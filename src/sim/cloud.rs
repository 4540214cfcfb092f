//! The simulated cloud's state: servers, images and tasks per region, and the timing settings that
//! compress hours into milliseconds.
//!
//! Statuses that only depend on time (a server building, an image saving) are derived from
//! timestamps when read, so nothing has to run in the background for them; tasks, which do real work
//! (writing an export, reading an import), run on spawned tokio tasks.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::disk::Disk;

/// How long simulated operations take. Near zero in tests, a few seconds in the demo.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A server stays BUILD this long.
    pub build: Duration,
    /// createImage keeps the server busy (409) and the image queued/saving this long.
    pub imaging: Duration,
    /// An export or import task takes at least this long (pending half of it).
    pub task: Duration,
    /// Tokens live this long.
    pub token_ttl: Duration,
}

impl Timing {
    /// Near-instant timings for tests.
    pub fn instant() -> Self {
        Self {
            build: Duration::from_millis(20),
            imaging: Duration::from_millis(30),
            task: Duration::from_millis(20),
            token_ttl: Duration::from_secs(24 * 3600),
        }
    }

    /// A few seconds per step: slow enough to watch, fast enough for a demo.
    pub fn demo() -> Self {
        Self {
            build: Duration::from_secs(3),
            imaging: Duration::from_secs(3),
            task: Duration::from_secs(3),
            token_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Server {
    pub id: String,
    pub name: String,
    pub image_id: String,
    pub flavor: String,
    /// Boots from a Cloud Block Storage volume: `image` is empty in its JSON.
    pub boot_from_volume: bool,
    pub created: SystemTime,
    pub ready_at: Instant,
    /// When the current createImage finishes, if one is running.
    pub imaging_until: Option<(Instant, Instant)>,
    pub disk: Disk,
}

impl Server {
    pub fn status(&self) -> &'static str {
        if Instant::now() < self.ready_at {
            "BUILD"
        } else {
            "ACTIVE"
        }
    }

    /// Nova's task_state while imaging: image_snapshot, image_pending_upload, image_uploading.
    pub fn task_state(&self) -> Option<&'static str> {
        let (start, end) = self.imaging_until?;
        let now = Instant::now();
        if now >= end {
            return None;
        }
        let third = (end - start) / 3;
        Some(if now < start + third {
            "image_snapshot"
        } else if now < start + 2 * third {
            "image_pending_upload"
        } else {
            "image_uploading"
        })
    }
}

/// Where an image came from; stats count snapshots and imports separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Base,
    Snapshot,
    Imported,
}

#[derive(Debug, Clone)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub created: SystemTime,
    pub created_at: Instant,
    pub ready_at: Instant,
    pub disk: Disk,
    pub origin: Origin,
    pub instance_uuid: Option<String>,
    /// md5 of the VHD bytes (what an export of it would carry).
    pub checksum: Option<String>,
    /// The tenant that owns it (Rackspace's base images are owned by Rackspace, not the account).
    pub owner: String,
    /// `com.rackspace__1__options`: "0" for exportable images; licensed images (Windows, Red Hat)
    /// carry another value, and snapshots inherit it from the image their server was built from.
    pub options: String,
    /// A snapshot of a server that boots from a volume: it holds no system disk to export.
    pub volume_backed: bool,
    /// The disk's virtual size (what a server built from it needs).
    pub virtual_size: u64,
    /// Glance's `min_disk` (GB) and `min_ram` (MB): core attributes, user-settable.
    pub min_disk: u64,
    pub min_ram: u64,
    /// Other properties (`os_distro`, `org.openstack__1__os_distro`, the user's own keys).
    pub properties: std::collections::BTreeMap<String, String>,
}

impl Image {
    pub fn status(&self) -> &'static str {
        let now = Instant::now();
        if now >= self.ready_at {
            "active"
        } else if now < self.created_at + (self.ready_at - self.created_at) / 3 {
            "queued"
        } else {
            "saving"
        }
    }
}

#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub kind: &'static str,
    pub status: &'static str,
    pub input: Value,
    pub result: Option<Value>,
    pub message: String,
    pub created: SystemTime,
    pub updated: SystemTime,
}

#[derive(Debug, Default)]
pub struct Region {
    pub servers: BTreeMap<String, Server>,
    pub images: BTreeMap<String, Image>,
    pub tasks: BTreeMap<String, Task>,
}

/// Every region's state behind one lock, never held across an await.
#[derive(Debug, Default)]
pub struct Cloud {
    regions: Mutex<BTreeMap<String, Region>>,
}

impl Cloud {
    pub fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Region>> {
        self.regions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on one region's state (created on first use).
    pub fn with<T>(&self, region: &str, f: impl FnOnce(&mut Region) -> T) -> T {
        let mut all = self.lock();
        f(all.entry(region.to_string()).or_default())
    }
}

/// A random-looking, unique UUID-shaped id.
pub fn new_id() -> String {
    use md5::{Digest, Md5};
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let h = hex::encode(Md5::digest(
        format!("{n}-{:?}", SystemTime::now()).as_bytes(),
    ));
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// RFC 3339 time as the APIs print it.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
