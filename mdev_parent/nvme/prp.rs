// SPDX-License-Identifier: GPL-2.0

//! PRP entries and PRP lists, resolved into a bounded list of guest memory
//! segments.
//!
//! A command's data starts at PRP1, which may have a dword-aligned offset
//! into its memory page, and runs to that page's end. If the rest fits in one
//! page, PRP2 points at it (page aligned); otherwise PRP2 points at a PRP
//! list: page-aligned entries, one per page of the rest. A list need not
//! start at a page boundary (Linux takes short lists from a 256-byte DMA
//! pool), but it ends at one: if more entries are needed than fit before the
//! end of the list's page, the page's last entry points to the next list
//! page instead. Offsets that break these rules complete the command with
//! Invalid PRP Offset; a list the controller cannot read, with Data Transfer
//! Error. The walk is bounded by [`super::MAX_TRANSFER`], so a list that
//! chains to itself ends too.

use super::{
    cmd::{sc, Status},
    GuestMem, MAX_TRANSFER, PAGE_SIZE,
};

/// The most segments a transfer resolves to: one per page, plus one when
/// PRP1 has an offset.
pub(crate) const MAX_SEGS: usize = (MAX_TRANSFER / PAGE_SIZE) as usize + 1;

/// Entries read from a list in one guest memory access.
const LIST_BATCH: usize = 32;

/// A contiguous run of guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Seg {
    pub(crate) iova: u64,
    pub(crate) len: u32,
}

/// Up to [`MAX_SEGS`] segments, in transfer order; adjacent ones merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegList {
    segs: [Seg; MAX_SEGS],
    n: usize,
}

impl Default for SegList {
    fn default() -> Self {
        Self::new()
    }
}

impl SegList {
    pub(crate) const fn new() -> Self {
        Self {
            segs: [Seg { iova: 0, len: 0 }; MAX_SEGS],
            n: 0,
        }
    }

    /// The segments.
    pub(crate) fn as_slice(&self) -> &[Seg] {
        self.segs.get(..self.n).unwrap_or(&[])
    }

    /// Forgets every segment.
    pub(crate) fn clear(&mut self) {
        self.n = 0;
    }

    /// The bytes the segments cover.
    pub(crate) fn total(&self) -> u64 {
        self.as_slice().iter().map(|s| u64::from(s.len)).sum()
    }

    /// Appends `len` bytes at `iova`, merged with the last segment when
    /// they continue it. Data Transfer Error if the range wraps the address
    /// space; Invalid Field if the list is full.
    pub(crate) fn push(&mut self, iova: u64, len: u32) -> Result<(), Status> {
        if iova.checked_add(u64::from(len)).is_none() {
            return Err(sc::DATA_TRANSFER_ERROR | sc::DNR);
        }
        if let Some(last) = self.n.checked_sub(1).and_then(|i| self.segs.get_mut(i)) {
            let end = last.iova.wrapping_add(u64::from(last.len));
            if end == iova {
                if let Some(l) = last.len.checked_add(len) {
                    last.len = l;
                    return Ok(());
                }
            }
        }
        let slot = self
            .segs
            .get_mut(self.n)
            .ok_or(sc::INVALID_FIELD | sc::DNR)?;
        *slot = Seg { iova, len };
        self.n = self.n.saturating_add(1);
        Ok(())
    }

    /// A list of the given segments (for tests and for restored requests).
    #[cfg(test)]
    pub(crate) fn of(segs: &[Seg]) -> Self {
        let mut l = Self::new();
        for s in segs {
            let _ = l.push(s.iova, s.len);
        }
        l
    }
}

/// The offset of `addr` in its memory page.
fn page_offset(addr: u64) -> u64 {
    addr & (PAGE_SIZE - 1)
}

/// Resolves `len` bytes described by `prp1` and `prp2` into `out`.
///
/// `len` above [`MAX_TRANSFER`] is Invalid Field (the caller checks MDTS
/// first and reports it the same way).
pub(crate) fn walk(
    mem: &mut impl GuestMem,
    prp1: u64,
    prp2: u64,
    len: u64,
    out: &mut SegList,
) -> Result<(), Status> {
    out.clear();
    if len == 0 {
        return Ok(());
    }
    if len > MAX_TRANSFER {
        return Err(sc::INVALID_FIELD | sc::DNR);
    }
    if prp1 & 3 != 0 {
        return Err(sc::INVALID_PRP_OFFSET | sc::DNR);
    }
    let first = len.min(PAGE_SIZE - page_offset(prp1));
    // Both fit in u32: they are at most MAX_TRANSFER.
    out.push(prp1, first as u32)?;
    let mut left = len.saturating_sub(first);
    if left == 0 {
        return Ok(());
    }
    if left <= PAGE_SIZE {
        if page_offset(prp2) != 0 {
            return Err(sc::INVALID_PRP_OFFSET | sc::DNR);
        }
        return out.push(prp2, left as u32);
    }
    if prp2 & 7 != 0 {
        return Err(sc::INVALID_PRP_OFFSET | sc::DNR);
    }
    let mut cursor = prp2;
    // Every turn takes at least one data entry or follows one chain
    // pointer; a list that only chains runs out of turns.
    let mut turns = 2 * MAX_SEGS;
    while left > 0 {
        turns = turns.checked_sub(1).ok_or(sc::INVALID_FIELD | sc::DNR)?;
        let room = (PAGE_SIZE - page_offset(cursor)) / 8;
        let needed = left.div_ceil(PAGE_SIZE);
        let (data, chain) = if needed > room {
            (room.saturating_sub(1), true)
        } else {
            (needed, false)
        };
        let mut done = 0u64;
        while done < data {
            let batch = (data - done).min(LIST_BATCH as u64) as usize;
            let mut buf = [0u8; LIST_BATCH * 8];
            let bytes = buf.get_mut(..batch * 8).ok_or(sc::INTERNAL)?;
            let at = cursor
                .checked_add(done.saturating_mul(8))
                .ok_or(sc::DATA_TRANSFER_ERROR | sc::DNR)?;
            mem.read(at, bytes)
                .map_err(|_| sc::DATA_TRANSFER_ERROR | sc::DNR)?;
            for e in bytes.chunks_exact(8) {
                let mut q = [0u8; 8];
                q.copy_from_slice(e);
                let entry = u64::from_le_bytes(q);
                if page_offset(entry) != 0 {
                    return Err(sc::INVALID_PRP_OFFSET | sc::DNR);
                }
                let n = left.min(PAGE_SIZE);
                out.push(entry, n as u32)?;
                left -= n;
            }
            done = done.saturating_add(batch as u64);
        }
        if chain {
            let at = cursor
                .checked_add(data.saturating_mul(8))
                .ok_or(sc::DATA_TRANSFER_ERROR | sc::DNR)?;
            let mut q = [0u8; 8];
            mem.read(at, &mut q)
                .map_err(|_| sc::DATA_TRANSFER_ERROR | sc::DNR)?;
            let next = u64::from_le_bytes(q);
            if next & 7 != 0 {
                return Err(sc::INVALID_PRP_OFFSET | sc::DNR);
            }
            cursor = next;
        }
    }
    Ok(())
}

/// Fills `buf` from the segments in order. Data Transfer Error on a fault.
pub(crate) fn copy_in(
    mem: &mut impl GuestMem,
    segs: &SegList,
    buf: &mut [u8],
) -> Result<(), Status> {
    let mut rest = buf;
    for s in segs.as_slice() {
        if rest.is_empty() {
            break;
        }
        let n = rest.len().min(s.len as usize);
        let (now, later) = rest.split_at_mut(n);
        mem.read(s.iova, now)
            .map_err(|_| sc::DATA_TRANSFER_ERROR | sc::DNR)?;
        rest = later;
    }
    Ok(())
}
