//! The commit: the SLO manifest over the uploaded pieces, verified by its ETag (the md5 of the
//! piece md5s) and a HEAD of the whole object's size.

use super::context::Ctx;
use super::digest::Digests;
use super::source::etag_of_etags;
use super::{Endpoint, Error, Event, Outcome, Persist, TransferState};

/// PUTs the SLO manifest and verifies it: the returned ETag must be the md5 of the segment md5s,
/// and a HEAD must show the full size. A plain source object's own md5 must equal the whole-image md5.
pub(super) async fn commit(
    ctx: &Ctx,
    dest: &Endpoint,
    state: &mut TransferState,
    persist: &mut Persist<'_>,
) -> Result<Outcome, Error> {
    let (sha256, md5) = whole_digests(state)?;
    let mut md5s = Vec::with_capacity(state.pieces.len());
    let mut manifest = Vec::with_capacity(state.pieces.len());
    for p in &state.pieces {
        let m = p
            .md5
            .clone()
            .ok_or_else(|| Error::Invariant(format!("piece {} has no md5 at commit", p.index)))?;
        manifest.push(serde_json::json!({
            "path": format!("/{}/{}", dest.container, p.dest), "etag": m, "size_bytes": p.len,
        }));
        md5s.push(m);
    }
    let expected = etag_of_etags(md5s.iter().map(String::as_str));
    let etag = dest
        .store
        .put_slo(
            &dest.container,
            &dest.name,
            &serde_json::Value::Array(manifest),
        )
        .await?;
    if etag != expected {
        return Err(Error::Integrity {
            what: "the SLO manifest".into(),
            found: etag,
            expected,
        });
    }
    verify_stored(dest, state.source.len, &etag).await?;
    record(ctx, state, persist, etag, sha256, md5).await
}

/// The whole-image SHA-256 and MD5 from the hasher; a plain source object's own md5 (its ETag)
/// must equal the MD5.
pub(super) fn whole_digests(state: &TransferState) -> Result<(String, String), Error> {
    let (sha256, md5) = Digests::restore(&state.digest)?.finish();
    if state.source.kind == super::source::Kind::Object
        && let Some(etag) = &state.source.etag
        && *etag != md5
    {
        return Err(Error::Integrity {
            what: "the whole object".into(),
            found: md5,
            expected: etag.clone(),
        });
    }
    Ok((sha256, md5))
}

/// Records a verified commit in the state, saves it, says so, and returns the outcome.
pub(super) async fn record(
    ctx: &Ctx,
    state: &mut TransferState,
    persist: &mut Persist<'_>,
    etag: String,
    sha256: String,
    md5: String,
) -> Result<Outcome, Error> {
    state.manifest_etag = Some(etag.clone());
    state.sha256 = Some(sha256.clone());
    state.md5 = Some(md5.clone());
    persist(state.clone()).await.map_err(Error::Persist)?;
    ctx.emit(Event::Committed {
        etag: etag.clone(),
        sha256: sha256.clone(),
        md5: md5.clone(),
    });
    Ok(Outcome {
        bytes: state.source.len,
        segments: state.pieces.len(),
        manifest_etag: etag,
        sha256,
        md5,
    })
}

/// The manifest PUT's answer is not trusted alone: what is stored must have the full size and the
/// ETag of ETags too (Rackspace documents the stored ETag, not the PUT's answer).
async fn verify_stored(dest: &Endpoint, len: u64, etag: &str) -> Result<(), Error> {
    let meta = dest.store.head(&dest.container, &dest.name).await?;
    let (stored_len, stored_etag) = meta.map_or((0, String::new()), |m| (m.len, m.etag));
    let place = format!("{}/{}", dest.container, dest.name);
    if stored_len != len {
        return Err(Error::Integrity {
            what: format!("the size of {place}"),
            found: stored_len.to_string(),
            expected: len.to_string(),
        });
    }
    if stored_etag != etag {
        return Err(Error::Integrity {
            what: format!("the stored ETag of {place}"),
            found: stored_etag,
            expected: etag.to_string(),
        });
    }
    Ok(())
}
