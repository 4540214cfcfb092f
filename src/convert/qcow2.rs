//! A qcow2 image's layout, fixed before any data is written: the header, the L1 table, the
//! refcount table and blocks, the L2 tables, then the data clusters in the order they will arrive.
//! Version 2 of the format (qemu's `compat=0.10`), which every qcow2 reader accepts; the field
//! layout is qemu's `docs/interop/qcow2.txt` (gitlab.com/qemu-project/qemu). Every cluster in use
//! has refcount 1, so L1 and L2 entries carry `QCOW_OFLAG_COPIED` as `qemu-img check` expects.

/// The format's magic, `QFI\xfb`.
const MAGIC: u32 = 0x5146_49fb;
/// Bytes of a version 2 header.
const HEADER_LEN: usize = 72;
/// L1 and L2 entries: the cluster is used exactly once (refcount 1).
const COPIED: u64 = 1 << 63;
/// Version 2 refcounts are 16 bits.
const REFCOUNT_BYTES: u64 = 2;

/// Where everything goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub cluster_size: u64,
    pub virtual_size: u64,
    l1_entries: u64,
    l1_offset: u64,
    refcount_table_offset: u64,
    refcount_table_clusters: u64,
    refcount_blocks_offset: u64,
    refcount_blocks: u64,
    l2_offset: u64,
    /// Which L1 entries have an L2 table, in order (their tables follow one another).
    l2_for: Vec<u64>,
    /// Where the first data cluster goes.
    pub data_offset: u64,
    /// Host cluster of each guest cluster that holds data, in the order data arrives.
    data: Vec<u64>,
}

impl Layout {
    /// The layout of an image of `virtual_size` bytes whose data clusters are the guest
    /// clusters `data`, in the order their bytes will be written (each at most once).
    pub fn new(virtual_size: u64, cluster_size: u64, data: Vec<u64>) -> Self {
        let cs = cluster_size;
        let l2_entries = cs / 8;
        let guest_clusters = virtual_size.div_ceil(cs);
        let l1_entries = guest_clusters.div_ceil(l2_entries).max(1);
        let l1_clusters = (l1_entries * 8).div_ceil(cs);
        let mut l2_for: Vec<u64> = data.iter().map(|c| c / l2_entries).collect();
        l2_for.sort_unstable();
        l2_for.dedup();
        let fixed = 1 + l1_clusters + l2_for.len() as u64 + data.len() as u64;
        // The refcount structures count themselves too: grow them until they cover everything.
        let per_block = cs / REFCOUNT_BYTES;
        let (mut blocks, mut table) = (1u64, 1u64);
        loop {
            let total = fixed + blocks + table;
            let need_blocks = total.div_ceil(per_block);
            let need_table = (need_blocks * 8).div_ceil(cs);
            if need_blocks <= blocks && need_table <= table {
                break;
            }
            blocks = blocks.max(need_blocks);
            table = table.max(need_table);
        }
        let l1_offset = cs;
        let refcount_table_offset = l1_offset + l1_clusters * cs;
        let refcount_blocks_offset = refcount_table_offset + table * cs;
        let l2_offset = refcount_blocks_offset + blocks * cs;
        let data_offset = l2_offset + l2_for.len() as u64 * cs;
        Self {
            cluster_size: cs,
            virtual_size,
            l1_entries,
            l1_offset,
            refcount_table_offset,
            refcount_table_clusters: table,
            refcount_blocks_offset,
            refcount_blocks: blocks,
            l2_offset,
            l2_for,
            data_offset,
            data,
        }
    }

    /// The whole image's length.
    pub fn len(&self) -> u64 {
        self.data_offset + self.data.len() as u64 * self.cluster_size
    }

    /// Whether the image holds no data cluster.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Every byte before the first data cluster: header, L1, refcounts and L2 tables.
    pub fn metadata(&self) -> Vec<u8> {
        let cs = self.cluster_size;
        let mut out = vec![0u8; self.data_offset as usize];
        self.header(&mut out[..HEADER_LEN]);
        // Refcount table → blocks; every cluster of the file has refcount 1.
        for b in 0..self.refcount_blocks {
            let at = (self.refcount_table_offset + b * 8) as usize;
            put_u64(&mut out, at, self.refcount_blocks_offset + b * cs);
        }
        let clusters = self.len() / cs;
        for c in 0..clusters {
            let at = (self.refcount_blocks_offset + c * REFCOUNT_BYTES) as usize;
            out[at..at + 2].copy_from_slice(&1u16.to_be_bytes());
        }
        // L1 → L2 tables, in the order of `l2_for`.
        for (i, l1) in self.l2_for.iter().enumerate() {
            let table = self.l2_offset + i as u64 * cs;
            put_u64(&mut out, (self.l1_offset + l1 * 8) as usize, table | COPIED);
        }
        // L2 → data clusters, in arrival order.
        let l2_entries = cs / 8;
        for (n, guest) in self.data.iter().enumerate() {
            let table = self
                .l2_for
                .binary_search(&(guest / l2_entries))
                .unwrap_or(0) as u64;
            let at = self.l2_offset + table * cs + (guest % l2_entries) * 8;
            let host = self.data_offset + n as u64 * cs;
            put_u64(&mut out, at as usize, host | COPIED);
        }
        out
    }

    fn header(&self, h: &mut [u8]) {
        h[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        h[4..8].copy_from_slice(&2u32.to_be_bytes());
        // 8..20: no backing file.
        h[20..24].copy_from_slice(&self.cluster_size.trailing_zeros().to_be_bytes());
        h[24..32].copy_from_slice(&self.virtual_size.to_be_bytes());
        // 32..36: no encryption.
        h[36..40].copy_from_slice(&(self.l1_entries as u32).to_be_bytes());
        h[40..48].copy_from_slice(&self.l1_offset.to_be_bytes());
        h[48..56].copy_from_slice(&self.refcount_table_offset.to_be_bytes());
        h[56..60].copy_from_slice(&(self.refcount_table_clusters as u32).to_be_bytes());
        // 60..72: no snapshots.
    }
}

fn put_u64(out: &mut [u8], at: usize, v: u64) {
    out[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refcounts_cover_every_cluster_including_their_own() {
        // 32768 refcounts per 64 KiB block: 40 000 data clusters need two blocks.
        let l = Layout::new(40_000 << 16, 1 << 16, (0..40_000).collect());
        assert_eq!(l.refcount_blocks, 2);
        assert_eq!(l.len() % (1 << 16), 0);
        let meta = l.metadata();
        assert_eq!(&meta[0..4], b"QFI\xfb");
        // The last cluster of the file is counted.
        let last = l.len() / l.cluster_size - 1;
        let at = (l.refcount_blocks_offset + last * 2) as usize;
        assert_eq!(&meta[at..at + 2], &[0, 1]);
    }
}
