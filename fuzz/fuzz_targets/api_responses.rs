//! Fuzzes every parser of service answers: the identity token response and its catalog lookups,
//! servers, images, tasks, Cloud Files listings and SLO manifests, error bodies, `Retry-After` and
//! `Location`. None may panic, whatever the bytes.

#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use imgferry::api::{self, compute, identity, images, object_store};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(session) = identity::parse_session(&text) {
        for kind in ["compute", "image", "object-store"] {
            let _ = session.endpoint(kind, "DFW");
            let _ = session.endpoint(kind, "iad");
        }
    }
    let _ = identity::check_transport(&text);
    let _ = serde_json::from_slice::<compute::Server>(data).map(|s| s.ip_addresses());
    let _ = serde_json::from_slice::<images::Image>(data);
    let _ = serde_json::from_slice::<images::Task>(data).map(|t| (t.state(), t.result_str("image_id")));
    let _ = serde_json::from_slice::<Vec<object_store::Listed>>(data);
    let _ = serde_json::from_slice::<Vec<object_store::SloEntry>>(data);
    let _ = api::short_message(&text);
    let _ = imgferry::http::retry::parse_retry_after(&text, UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    let _ = compute::image_id_from_location(&text);
    let _ = imgferry::migrate::steps::import_code_in(&text);
});
