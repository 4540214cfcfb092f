//! Disk geometry (cylinders, heads, sectors per track) as the VHD footer stores it.
//!
//! The geometry matters twice: qemu takes the CHS product as the virtual size for some creators, and
//! XenServer's checker rejects a footer whose geometry is larger than the one the spec's algorithm
//! computes for the current size ("geometry too large"). The algorithm is the one in the VHD spec's
//! appendix, as implemented by blktap's `vhd_chs` (`vhd/lib/libvhd.c` in xapi-project/blktap).

use serde::Serialize;

/// Bytes per sector; fixed at 512 by the VHD format.
pub const SECTOR: u64 = 512;

/// The largest geometry the 4-byte field can express: 65535 × 16 × 255.
pub const MAX: Geometry = Geometry {
    cylinders: 65535,
    heads: 16,
    sectors: 255,
};

/// Cylinders, heads and sectors per track, as stored big-endian at footer offset 56.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Geometry {
    pub cylinders: u16,
    pub heads: u8,
    pub sectors: u8,
}

impl Geometry {
    /// Decodes the 4-byte on-disk field.
    pub fn from_be_bytes(raw: [u8; 4]) -> Self {
        Self {
            cylinders: u16::from_be_bytes([raw[0], raw[1]]),
            heads: raw[2],
            sectors: raw[3],
        }
    }

    /// Encodes the 4-byte on-disk field.
    pub fn to_be_bytes(self) -> [u8; 4] {
        let [c0, c1] = self.cylinders.to_be_bytes();
        [c0, c1, self.heads, self.sectors]
    }

    /// The size in bytes that this geometry addresses (C × H × S × 512).
    pub fn product_bytes(self) -> u64 {
        u64::from(self.cylinders) * u64::from(self.heads) * u64::from(self.sectors) * SECTOR
    }

    /// The packed value blktap compares (`C << 16 | H << 8 | S`).
    pub fn packed(self) -> u32 {
        u32::from_be_bytes(self.to_be_bytes())
    }

    /// The geometry the spec's algorithm assigns to a disk of `size` bytes.
    ///
    /// Like blktap, the sector count is rounded up, so the product is at most `size` rounded up to a
    /// sector and usually a little below it.
    pub fn for_size(size: u64) -> Self {
        let max_sectors = MAX.product_bytes() / SECTOR;
        let sectors = size.div_ceil(SECTOR).min(max_sectors);
        let (spt, heads, cth) = if sectors >= 65535 * 16 * 63 {
            (255, 16, sectors / 255)
        } else {
            let mut spt = 17;
            let mut cth = sectors / 17;
            let mut heads = cth.div_ceil(1024).max(4);
            if cth >= heads * 1024 || heads > 16 {
                spt = 31;
                heads = 16;
                cth = sectors / 31;
            }
            if cth >= heads * 1024 {
                spt = 63;
                heads = 16;
                cth = sectors / 63;
            }
            (spt, heads, cth)
        };
        // Every value fits its field: heads ≤ 16, spt ≤ 255 and cylinders ≤ 65535 because the sector
        // count was clamped to the maximum geometry above.
        Self {
            cylinders: u16::try_from(cth / heads).unwrap_or(u16::MAX),
            heads: u8::try_from(heads).unwrap_or(u8::MAX),
            sectors: u8::try_from(spt).unwrap_or(u8::MAX),
        }
    }

    /// The smallest size at or above `size` that a geometry addresses exactly, as `qemu-img create`
    /// rounds (measured with `qemu-img create -f vpc`: 10M → 10 514 432, 40G → 42 951 106 560).
    pub fn qemu_rounded(size: u64) -> (Self, u64) {
        let mut sectors = size.div_ceil(SECTOR);
        loop {
            let geometry = Self::for_size(sectors * SECTOR);
            let product = geometry.product_bytes();
            if product >= size || geometry == MAX {
                return (geometry, product.max(size));
            }
            sectors += 1;
        }
    }
}

impl std::fmt::Display for Geometry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.cylinders, self.heads, self.sectors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_blktap_observations() {
        // A 21 MB XenServer (`tap`) image → 23 068 672 bytes with CHS 662/4/17.
        let g = Geometry::for_size(23_068_672);
        assert_eq!((g.cylinders, g.heads, g.sectors), (662, 4, 17));
        assert_eq!(g.product_bytes(), 23_048_192);
        // 40 GiB tap → CHS 20560/16/255 = 42 949 017 600.
        let g = Geometry::for_size(42_949_672_960);
        assert_eq!(g.to_string(), "20560/16/255");
        assert_eq!(g.product_bytes(), 42_949_017_600);
    }

    #[test]
    fn matches_qemu_rounding() {
        let mib = 1 << 20;
        for (requested, rounded) in [
            (10 * mib, 10_514_432),
            (20 * mib, 20_994_048),
            (100 * mib, 104_865_792),
            (1 << 30, 1_073_995_776),
            (40u64 << 30, 42_951_106_560),
            (127u64 << 30, 136_365_219_840),
        ] {
            assert_eq!(Geometry::qemu_rounded(requested).1, rounded, "{requested}");
        }
        let (g, _) = Geometry::qemu_rounded(40u64 << 30);
        assert_eq!(g.to_string(), "20561/16/255");
    }

    #[test]
    fn clamps_at_maximum() {
        assert_eq!(Geometry::for_size(u64::MAX), MAX);
        assert_eq!(Geometry::from_be_bytes(MAX.to_be_bytes()), MAX);
    }
}
