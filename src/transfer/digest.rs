//! Whole-image digests that survive a restart.
//!
//! An in-order hasher feeds SHA-256 and MD5 with the image's bytes in order, segment after segment.
//! Their internal states are serialised (the RustCrypto 0.11 hashers implement `SerializableState`)
//! into the persisted transfer state at each segment boundary, so after a kill and a resume the final
//! digests are still true whole-file digests. A third MD5 covers the current *source* segment, so a
//! source segment that was split into several pieces is still checked against its listed md5.

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sha2::digest::common::hazmat::SerializableState;

/// The serialised hasher states, hex-encoded for the JSON state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestState {
    pub sha256: String,
    pub md5: String,
    pub segment_md5: String,
}

/// The live hashers.
#[derive(Clone)]
pub struct Digests {
    sha256: Sha256,
    md5: Md5,
    segment_md5: Md5,
}

impl Default for Digests {
    fn default() -> Self {
        Self {
            sha256: Sha256::new(),
            md5: Md5::new(),
            segment_md5: Md5::new(),
        }
    }
}

/// The MD5 half of [`Digests`] (whole image and current source segment).
pub struct Md5Part {
    md5: Md5,
    segment_md5: Md5,
}

impl Md5Part {
    pub fn update(&mut self, bytes: &[u8], in_split_segment: bool) {
        self.md5.update(bytes);
        if in_split_segment {
            self.segment_md5.update(bytes);
        }
    }
}

/// The SHA-256 half of [`Digests`].
pub struct Sha256Part(Sha256);

impl Sha256Part {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// A state file whose hasher state cannot be restored.
#[derive(Debug, thiserror::Error)]
#[error("the saved digest state is damaged ({0})")]
pub struct StateError(&'static str);

fn restore<T: SerializableState>(hex_state: &str, what: &'static str) -> Result<T, StateError> {
    let bytes = hex::decode(hex_state).map_err(|_| StateError(what))?;
    let array = sha2::digest::common::hazmat::SerializedState::<T>::try_from(bytes.as_slice())
        .map_err(|_| StateError(what))?;
    T::deserialize(&array).map_err(|_| StateError(what))
}

impl Digests {
    /// Feeds the next bytes of the image; `in_split_segment` also feeds the source-segment md5.
    pub fn update(&mut self, bytes: &[u8], in_split_segment: bool) {
        self.sha256.update(bytes);
        self.md5.update(bytes);
        if in_split_segment {
            self.segment_md5.update(bytes);
        }
    }

    /// Splits the hashers so the MD5s and the SHA-256 can run on different threads.
    pub fn split(self) -> (Md5Part, Sha256Part) {
        (
            Md5Part {
                md5: self.md5,
                segment_md5: self.segment_md5,
            },
            Sha256Part(self.sha256),
        )
    }

    /// Puts split hashers back together.
    pub fn join(m: Md5Part, s: Sha256Part) -> Self {
        Self {
            sha256: s.0,
            md5: m.md5,
            segment_md5: m.segment_md5,
        }
    }

    /// Ends the current source segment, returning its md5 and starting the next one.
    pub fn finish_segment(&mut self) -> String {
        hex::encode(std::mem::take(&mut self.segment_md5).finalize())
    }

    pub fn save(&self) -> DigestState {
        DigestState {
            sha256: hex::encode(self.sha256.serialize()),
            md5: hex::encode(self.md5.serialize()),
            segment_md5: hex::encode(self.segment_md5.serialize()),
        }
    }

    pub fn restore(state: &DigestState) -> Result<Self, StateError> {
        Ok(Self {
            sha256: restore(&state.sha256, "sha256")?,
            md5: restore(&state.md5, "md5")?,
            segment_md5: restore(&state.segment_md5, "segment md5")?,
        })
    }

    /// The whole-image (sha256, md5).
    pub fn finish(self) -> (String, String) {
        (
            hex::encode(self.sha256.finalize()),
            hex::encode(self.md5.finalize()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_state_resumes_to_the_whole_file_digest() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
        let mut a = Digests::default();
        a.update(&data[..123_457], true);
        let saved = serde_json::to_string(&a.save()).unwrap();
        let mut b = Digests::restore(&serde_json::from_str(&saved).unwrap()).unwrap();
        b.update(&data[123_457..], true);
        let (sha, md5) = b.finish();
        assert_eq!(sha, hex::encode(Sha256::digest(&data)));
        assert_eq!(md5, hex::encode(Md5::digest(&data)));
    }

    #[test]
    fn damaged_state_is_an_error() {
        let mut s = Digests::default().save();
        s.sha256.truncate(10);
        assert!(Digests::restore(&s).is_err());
    }
}
