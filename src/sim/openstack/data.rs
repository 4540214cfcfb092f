//! Glance's image data on the OpenStack side: `PUT …/file` and `PUT …/stage` streamed to disk
//! and hashed on the way (refused with 409 out of turn, 413 over the size cap, 415 when the
//! bytes are not the declared format), and `GET …/file` whole or by one range.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use md5::{Digest, Md5};
use serde_json::{Value, json};
use sha2::Sha512;
use tokio::io::AsyncWriteExt;

use super::{Image, OpenStack, SIZE_CAP, accepts, error, inspect, set_status};

/// Reads a request body to its end (at most the size cap), discarding it.
pub(super) async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    let mut read = 0u64;
    while let Some(Ok(chunk)) = stream.next().await {
        read += chunk.len() as u64;
        if read > SIZE_CAP {
            break;
        }
    }
}

/// Where a `PUT` of image data goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Receive {
    /// `…/file`: stored, inspected, `active`.
    File,
    /// `…/stage`: kept for the import, `uploading` with its size (real Glance 33 computes no
    /// hashes and inspects nothing until the import).
    Stage,
}

/// `PUT /v2/images/{id}/file` (or `…/stage`): streamed to a file, hashed on the way, then
/// inspected and `active` (or staged, `uploading`).
pub(super) async fn upload(
    os: &OpenStack,
    id: &str,
    image: &Image,
    body: Body,
    to: Receive,
) -> Response {
    let (during, state) = match to {
        Receive::File => ("saving", "saving"),
        Receive::Stage => ("uploading", "uploading"),
    };
    let now = image
        .record
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("queued")
        .to_string();
    if now != "queued" {
        // The body is read (up to the size cap) before the answer, so a client still writing it
        // sees the 409 rather than a broken pipe: which one a client sees of a server that answers
        // early is a race of timing, not a behaviour to model.
        drain(body).await;
        return error(
            StatusCode::CONFLICT,
            &format!("Image status transition from {now} to {state} is not allowed"),
        );
    }
    let declared = image
        .record
        .get("disk_format")
        .and_then(Value::as_str)
        .unwrap_or("raw")
        .to_string();
    set_status(os, id, during, &[]);
    let path = match to {
        Receive::File => os.dir.join(id),
        Receive::Stage => os.dir.join(format!("{id}.staged")),
    };
    let Ok(mut file) = tokio::fs::File::create(&path).await else {
        set_status(os, id, "queued", &[]);
        return error(StatusCode::INTERNAL_SERVER_ERROR, "cannot store the data");
    };
    let (mut md5, mut sha512) = (Md5::new(), Sha512::new());
    let (mut size, mut head) = (0u64, Vec::new());
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            // The client went away: as Glance does, the image returns to queued.
            set_status(os, id, "queued", &[]);
            return error(StatusCode::BAD_REQUEST, "the upload was cut short");
        };
        size += chunk.len() as u64;
        if size > os.size_cap {
            // The rest is read (and dropped) first, so the client sees the 413 rather than a
            // broken pipe (which one a client of an early answer sees is a race of timing).
            drain(Body::from_stream(stream)).await;
            let _ = tokio::fs::remove_file(&path).await;
            set_status(os, id, "queued", &[]);
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Image exceeds the storage quota",
            );
        }
        if head.len() < 512 {
            head.extend_from_slice(&chunk[..chunk.len().min(512 - head.len())]);
        }
        md5.update(&chunk);
        sha512.update(&chunk);
        if file.write_all(&chunk).await.is_err() {
            set_status(os, id, "queued", &[]);
            return error(StatusCode::INTERNAL_SERVER_ERROR, "cannot store the data");
        }
    }
    let _ = file.flush().await;
    if to == Receive::Stage {
        let staged = (
            hex::encode(md5.finalize()),
            hex::encode(sha512.finalize()),
            head,
        );
        if let Some(i) = os
            .images
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(id)
        {
            i.staged = Some(staged);
        }
        set_status(os, id, "uploading", &[("size", json!(size))]);
        return StatusCode::NO_CONTENT.into_response();
    }
    let found = inspect(&head);
    if !accepts(&declared, found) {
        let _ = tokio::fs::remove_file(&path).await;
        set_status(os, id, "queued", &[]);
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("Image disk_format {declared} does not match stream data {found}"),
        );
    }
    set_status(
        os,
        id,
        "active",
        &[
            ("size", json!(size)),
            ("checksum", json!(hex::encode(md5.finalize()))),
            ("os_hash_algo", json!("sha512")),
            ("os_hash_value", json!(hex::encode(sha512.finalize()))),
        ],
    );
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /v2/images/{id}/file`, whole or one `Range` (206).
pub(super) async fn download(
    os: &OpenStack,
    id: &str,
    image: &Image,
    headers: &HeaderMap,
) -> Response {
    if image.record.get("status").and_then(Value::as_str) != Some("active") {
        return StatusCode::NO_CONTENT.into_response();
    }
    let path = os.dir.join(id);
    let range = headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
    let len = tokio::fs::metadata(&path).await.map(|m| m.len());
    match (range, len) {
        (_, Err(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the data"),
        // Only the range is read: a ranged download of a large image reads each byte once.
        (Some((start, end)), Ok(len)) if start <= end && start < len => {
            let end = end.min(len - 1);
            let Ok(part) = read_range(&path, start, end - start + 1).await else {
                return error(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the data");
            };
            let mut resp = (StatusCode::PARTIAL_CONTENT, part).into_response();
            if let Ok(v) = format!("bytes {start}-{end}/{len}").parse() {
                resp.headers_mut().insert("Content-Range", v);
            }
            resp
        }
        (Some(_), Ok(_)) => StatusCode::RANGE_NOT_SATISFIABLE.into_response(),
        (None, Ok(_)) => match tokio::fs::read(&path).await {
            Ok(data) => (StatusCode::OK, data).into_response(),
            Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the data"),
        },
    }
}

/// `len` bytes of the file at `path` from `start`.
async fn read_range(path: &std::path::Path, start: u64, len: u64) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(start)).await?;
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    file.read_exact(&mut buf).await?;
    Ok(buf)
}
