//! Small formatting helpers for people: byte sizes and counted nouns. Used by the engine's
//! descriptions and by every renderer, so a size reads the same everywhere.

/// Bytes in binary units: `1.50 GiB`.
pub fn size(bytes: u64) -> String {
    humansize::format_size(bytes, humansize::BINARY)
}

/// `1 segment`, `7 segments`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_segment_is_singular() {
        assert_eq!(count(1, "segment"), "1 segment");
        assert_eq!(count(0, "segment"), "0 segments");
        assert_eq!(count(7, "segment"), "7 segments");
        assert_eq!(size(2560), "2.50 KiB");
    }
}
