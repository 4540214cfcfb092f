//! Sizes, durations and counts as people read and type them: byte sizes and counted nouns for
//! the engine's descriptions and every renderer (so a size reads the same everywhere), and the
//! parsers of the size and duration flags.

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

/// Parses a byte size: a plain number of bytes, or a number with a unit. Every unit is a power of
/// 1024 (`40G`, `40GB` and `40GiB` all mean 40 GiB), matching how the 40 GB import limit is read.
/// A size people type on `migrate`, `resume` and `validate`: `--max-virtual-size 40` almost
/// always means 40 GiB, and read as 40 bytes it would refuse every image, so the unit is
/// required (`B` for bytes). The simulator's and benchmarks' flags take bare bytes
/// ([`parse_bytes`]).
pub fn parse_size_with_unit(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!(
            "a size needs a unit: {t}GiB, {t}MiB, or {t}B if you mean bytes"
        ));
    }
    parse_bytes(s)
}

/// A duration in seconds: a plain number is seconds (`0.5`, `120`), anything else is read by
/// humantime (`30s`, `5m`, `12h`, `2d`, `1h 30m`).
pub fn parse_secs(s: &str) -> Result<f64, String> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<f64>() {
        return if secs.is_finite() && secs >= 0.0 {
            Ok(secs)
        } else {
            Err(format!(
                "{t} is not a duration: use a number of seconds or 30s, 5m, 12h"
            ))
        };
    }
    humantime::parse_duration(t)
        .map(|d| d.as_secs_f64())
        .map_err(|e| format!("{e}: expected a duration such as 30s, 5m, 12h or 2d"))
}

/// A size in bytes, with or without a binary unit.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s)
        .map_err(|e| format!("{e}: expected a size such as 40GiB or 128MiB"))
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

    #[test]
    fn sizes_parse() {
        // A number alone is refused where people type sizes, with the units it probably meant.
        let bare = parse_size_with_unit("40").unwrap_err();
        assert!(bare.contains("40GiB") && bare.contains("40B"), "{bare}");
        assert_eq!(parse_size_with_unit("42949672960B"), Ok(40 << 30));
        assert_eq!(parse_size_with_unit("40GiB"), Ok(40 << 30));
        assert_eq!(parse_bytes("40GiB"), Ok(40 << 30));
        assert_eq!(parse_bytes("40G"), Ok(40 << 30));
        assert_eq!(parse_bytes("128MiB"), Ok(128 << 20));
        assert_eq!(parse_bytes("512"), Ok(512));
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_secs("0.5"), Ok(0.5));
        assert_eq!(parse_secs("30s"), Ok(30.0));
        assert_eq!(parse_secs("5m"), Ok(300.0));
        assert_eq!(parse_secs("12h"), Ok(43_200.0));
        assert_eq!(parse_secs("1h 30m"), Ok(5_400.0));
        assert!(parse_secs("NaN").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").unwrap_err().contains("30s"));
    }
}
