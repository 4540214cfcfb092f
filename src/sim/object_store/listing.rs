//! Container listings, JSON or plain text, as Swift pages them.

use super::*;

/// A container listing, JSON or plain text, honouring prefix, marker, end_marker and limit.
pub(super) fn listing(
    objs: &BTreeMap<String, Object>,
    query: &BTreeMap<String, String>,
) -> Response {
    let prefix = query.get("prefix").map(String::as_str).unwrap_or("");
    let marker = query.get("marker").cloned().unwrap_or_default();
    let end_marker = query.get("end_marker");
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(10_000)
        .min(10_000);
    let names = objs
        .range::<String, _>((
            std::ops::Bound::Excluded(marker),
            std::ops::Bound::Unbounded,
        ))
        .filter(|(n, _)| n.starts_with(prefix))
        .take_while(|(n, _)| end_marker.is_none_or(|e| *n < e))
        .take(limit);
    let json = query.get("format").is_some_and(|f| f == "json");
    if json {
        let items: Vec<serde_json::Value> = names
            .map(|(n, o)| {
                let (hash, bytes) = match o.kind {
                    // A DLO manifest lists as 0 bytes with the md5 of nothing.
                    Kind::Dlo { .. } => (md5_hex([b""]), 0),
                    _ => (o.etag.clone(), o.bytes),
                };
                serde_json::json!({"name": n, "hash": hash, "bytes": bytes, "content_type": o.content_type,
                    "last_modified": humantime::format_rfc3339_micros(o.modified).to_string().trim_end_matches('Z')})
            })
            .collect();
        return axum::Json(items).into_response();
    }
    let text: String = names.map(|(n, _)| format!("{n}\n")).collect();
    if text.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}
