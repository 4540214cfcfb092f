//! The checks made before anything is transferred, shared by the migration's steps, the dry run
//! and `imgferry validate`: validating a VHD source (a local file, or an exported object by HTTP
//! Range reads) and recording the verdict; and the default name of the imported image.

use std::path::Path;

use super::state::{Entry, FileStamp, ObjectRef, Plan, VhdFacts};
use super::{Error, RegionApi};
use crate::api::object_store::{ObjectStore, RemoteObject};
use crate::vhd::{self, ImportCode, Policy};

/// Where the VHD to validate is.
pub enum VhdSource<'a> {
    File(&'a Path),
    /// An object of `len` bytes in `files`.
    Object {
        files: &'a ObjectStore,
        object: &'a ObjectRef,
        len: u64,
    },
}

/// Validates a VHD the way XenServer will. A bad VHD is a report with problems, not an error; the
/// error is for a source that could not be read.
pub async fn validate(source: VhdSource<'_>, policy: &Policy) -> Result<vhd::Report, Error> {
    match source {
        VhdSource::File(path) => {
            let fail = |source| Error::Validate {
                object: path.display().to_string(),
                source,
            };
            let file = vhd::FileSource::open(path).map_err(|source| {
                fail(vhd::Error::Open {
                    path: path.display().to_string(),
                    source,
                })
            })?;
            vhd::validate(&file, policy).await.map_err(fail)
        }
        VhdSource::Object { files, object, len } => {
            let remote = RemoteObject {
                store: files,
                container: object.container.clone(),
                name: object.object.clone(),
                len,
            };
            vhd::validate(&remote, policy)
                .await
                .map_err(|source| Error::Validate {
                    object: object.to_string(),
                    source,
                })
        }
    }
}

/// What the state file keeps of a report.
pub fn facts(r: &vhd::Report) -> VhdFacts {
    let describe = |f: &vhd::Finding| {
        let mut s = format!("{} at byte {}: found {}", f.field, f.offset, f.found);
        if !f.expected.is_empty() {
            s.push_str(&format!(", expected {}", f.expected));
        }
        s
    };
    VhdFacts {
        disk_type: r.disk_type.map(str::to_string),
        virtual_size: r.virtual_size.as_ref().map(|v| v.bytes),
        physical_size: r.physical_size,
        file_size: r.file_size,
        predicted_code: r.verdict.code.map(ImportCode::number),
        problems: r.problems.iter().map(|p| describe(&p.finding)).collect(),
        warnings: r.warnings.iter().map(describe).collect(),
    }
}

/// The imported image's name when the user gave none: named after what it came from, as a person
/// would name it ("web-1 from DFW (imgferry)"), looked up with one GET. When the lookup fails the
/// id stands in for the name; the migration itself reports a missing source properly.
pub async fn default_name(src: Option<&RegionApi>, plan: &Plan) -> String {
    let from = plan.from.as_deref().unwrap_or("-");
    let named = |what: &str| format!("{what} from {from} (imgferry)");
    match (&plan.entry, src) {
        (Entry::Vhd { path }, _) => format!(
            "{} (imgferry)",
            Path::new(path)
                .file_stem()
                .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned())
        ),
        (Entry::Server { id }, Some(src)) => match src.compute.get_server(id).await {
            Ok(Some(s)) if !s.name.is_empty() => named(&s.name),
            _ => named(&format!("server {id}")),
        },
        (Entry::Image { id }, Some(src)) => match src.images.get_image(id).await {
            Ok(Some(i)) => named(i.name.as_deref().filter(|n| !n.is_empty()).unwrap_or(id)),
            _ => named(&format!("image {id}")),
        },
        (Entry::Export { object, .. }, _) => named(object.trim_end_matches(".vhd")),
        (entry, _) => named(&entry.describe()),
    }
}

/// The stamp of a local VHD, taken when it is validated.
pub async fn stamp(path: &Path) -> Result<FileStamp, Error> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || FileStamp::of(&p))
        .await
        .map_err(|e| Error::Final(format!("cannot read {}: {e}", path.display())))?
        .map_err(|e| Error::Final(format!("cannot read {}: {e}", path.display())))
}

/// Refuses to go on with a local VHD that is not the version that was validated.
pub async fn unchanged(path: &Path, validated: Option<&FileStamp>) -> Result<(), Error> {
    let Some(validated) = validated else {
        return Ok(());
    };
    let now = stamp(path).await?;
    if now != *validated {
        return Err(changed(path));
    }
    Ok(())
}

/// Re-reads a local VHD whole and compares its SHA-256 with what the transfer sent.
pub async fn same_sha256(path: &Path, sent: &str) -> Result<(), Error> {
    if sha256_of(path).await? != sent {
        return Err(changed(path));
    }
    Ok(())
}

/// The SHA-256 of a whole local file, hex (read off the async workers).
pub async fn sha256_of(path: &Path) -> Result<String, Error> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        use sha2::Digest;
        use std::io::Read;
        let mut f = std::fs::File::open(&p)?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match f.read(&mut buf)? {
                0 => return Ok(hex::encode(h.finalize())),
                n => h.update(&buf[..n]),
            }
        }
    })
    .await
    .map_err(|e| Error::Final(format!("cannot read {}: {e}", path.display())))?
    .map_err(|e| Error::Final(format!("cannot read {}: {e}", path.display())))
}

fn changed(path: &Path) -> Error {
    Error::Final(format!(
        "{} changed after it was validated (size, time or bytes differ), so the uploaded copy \
         matches neither version; start a new migration (--new) once nothing writes to it",
        path.display()
    ))
}
