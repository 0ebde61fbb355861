// SPDX-License-Identifier: GPL-2.0

//! How an access to a BAR is split between the parts the library serves
//! itself and the device, as `drivers/vfio/pci/vfio_pci_rdwr.c` keeps the
//! MSI-X table away from the device.
//!
//! The MSI-X table and PBA are userspace's to emulate, as with vfio-pci: in
//! the region they read all ones (table) and zero (PBA) and ignore writes.
//! A BAR's plain memory, if any, is served from the library's pages; every
//! other byte goes to the device.

use core::ops::Range;

/// The parts of one BAR the device does not serve. An empty range is no
/// part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BarParts {
    /// The MSI-X table, if it is in this BAR.
    pub(crate) table: Range<u64>,
    /// The MSI-X PBA, if it is in this BAR.
    pub(crate) pba: Range<u64>,
    /// The BAR's plain memory.
    pub(crate) memory: Range<u64>,
}

/// Where one run of an access goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Reads return this byte, writes are dropped (the MSI-X table and PBA).
    Fill(u8),
    /// The BAR's plain memory, at this offset into it.
    Memory(u64),
    /// The device, at this offset of the BAR.
    Device(u64),
}

/// One run of an access: `len` bytes from `at` bytes into the access's
/// buffer, going to `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) at: usize,
    pub(crate) len: usize,
    pub(crate) target: Target,
}

impl BarParts {
    /// Whether the device serves the whole BAR: every access goes to it in
    /// one piece (the fast path).
    pub(crate) fn is_empty(&self) -> bool {
        self.table.is_empty() && self.pba.is_empty() && self.memory.is_empty()
    }

    /// The runs of an access of `len` bytes at `off` of the BAR, in order:
    /// each lies in one part or in none. A part listed earlier wins where
    /// parts overlap (table, PBA, memory).
    pub(crate) fn runs(&self, off: u64, len: usize) -> Runs<'_> {
        Runs {
            parts: self,
            off,
            len,
            done: 0,
        }
    }

    fn list(&self) -> [(&Range<u64>, Option<u8>); 3] {
        [
            (&self.table, Some(0xff)),
            (&self.pba, Some(0)),
            (&self.memory, None),
        ]
    }
}

/// The iterator [`BarParts::runs`] returns.
pub(crate) struct Runs<'a> {
    parts: &'a BarParts,
    off: u64,
    len: usize,
    done: usize,
}

impl Iterator for Runs<'_> {
    type Item = Run;

    fn next(&mut self) -> Option<Run> {
        if self.done >= self.len {
            return None;
        }
        let pos = self.off.saturating_add(self.done as u64);
        let left = (self.len - self.done) as u64;
        let list = self.parts.list();
        let inside = list
            .iter()
            .enumerate()
            .find(|(_, (r, _))| r.contains(&pos))
            .map(|(k, (r, fill))| {
                let target = match fill {
                    Some(b) => Target::Fill(*b),
                    None => Target::Memory(pos - r.start),
                };
                // An earlier part that begins inside this one wins from
                // its start: the run stops there.
                let end = list
                    .get(..k)
                    .unwrap_or(&[])
                    .iter()
                    .filter(|(e, _)| !e.is_empty() && e.start > pos)
                    .fold(r.end, |end, (e, _)| end.min(e.start));
                (Some(end), target)
            });
        // Outside every part, the run ends where the next part starts, or
        // with the access.
        let (end, target) = inside.unwrap_or_else(|| {
            let next = list
                .iter()
                .map(|(r, _)| r.start)
                .filter(|&st| st > pos)
                .min();
            (next, Target::Device(pos))
        });
        // At least one byte: `end > pos` where there is an end.
        let len = end.map_or(left, |e| (e - pos).min(left)) as usize;
        let run = Run {
            at: self.done,
            len,
            target,
        };
        self.done += len;
        Some(run)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn parts() -> BarParts {
        BarParts {
            table: 0x1000..0x1080,
            pba: 0x1800..0x1808,
            memory: 0x2000..0x4000,
        }
    }

    fn runs(p: &BarParts, off: u64, len: usize) -> Vec<(usize, usize, Target)> {
        p.runs(off, len).map(|r| (r.at, r.len, r.target)).collect()
    }

    #[test]
    fn no_parts_is_the_fast_path() {
        let p = BarParts::default();
        assert!(p.is_empty());
        assert!(!parts().is_empty());
        // Through the iterator it is one device run all the same.
        assert_eq!(runs(&p, 8, 4), [(0, 4, Target::Device(8))]);
    }

    #[test]
    fn accesses_inside_one_part_are_one_run() {
        let p = parts();
        assert_eq!(runs(&p, 0x10, 4), [(0, 4, Target::Device(0x10))]);
        assert_eq!(runs(&p, 0x1010, 8), [(0, 8, Target::Fill(0xff))]);
        assert_eq!(runs(&p, 0x1800, 8), [(0, 8, Target::Fill(0))]);
        assert_eq!(runs(&p, 0x2ffc, 4), [(0, 4, Target::Memory(0xffc))]);
    }

    #[test]
    fn accesses_across_parts_split_at_each_edge() {
        let p = parts();
        assert_eq!(
            runs(&p, 0x0ffe, 4),
            [(0, 2, Target::Device(0x0ffe)), (2, 2, Target::Fill(0xff))]
        );
        assert_eq!(
            runs(&p, 0x107c, 8),
            [(0, 4, Target::Fill(0xff)), (4, 4, Target::Device(0x1080))]
        );
        // Device, PBA, device, memory in one long access.
        assert_eq!(
            runs(&p, 0x17f0, 0x820),
            [
                (0, 0x10, Target::Device(0x17f0)),
                (0x10, 8, Target::Fill(0)),
                (0x18, 0x7f8, Target::Device(0x1808)),
                (0x810, 0x10, Target::Memory(0)),
            ]
        );
        // Memory to the BAR's end.
        assert_eq!(
            runs(&p, 0x3ffe, 4),
            [
                (0, 2, Target::Memory(0x1ffe)),
                (2, 2, Target::Device(0x4000))
            ]
        );
    }

    #[test]
    fn runs_cover_the_access_exactly() {
        let p = parts();
        for off in (0x0f00..0x4100).step_by(0x7b) {
            for len in [0usize, 1, 3, 8, 0x90, 0x1001] {
                let mut at = 0;
                for r in p.runs(off, len) {
                    assert_eq!(r.at, at);
                    assert!(r.len > 0);
                    at += r.len;
                }
                assert_eq!(at, len, "off {off:#x} len {len}");
            }
        }
    }

    #[test]
    fn earlier_parts_win_where_they_overlap() {
        let p = BarParts {
            table: 0x0..0x10,
            pba: 0x8..0x18,
            memory: 0x0..0x1000,
        };
        assert_eq!(
            runs(&p, 0, 0x20),
            [
                (0, 0x10, Target::Fill(0xff)),
                (0x10, 8, Target::Fill(0)),
                (0x18, 8, Target::Memory(0x18)),
            ]
        );
    }

    /// Found by `tools/host-fuzz`: a run that starts in a later part stops
    /// where an earlier part begins inside it, which then wins.
    #[test]
    fn an_earlier_part_inside_a_later_one_wins_from_its_start() {
        let p = BarParts {
            table: 0x80..0x100,
            pba: 0xc0..0x100,
            memory: 0x30..0x100,
        };
        assert_eq!(
            runs(&p, 0x70, 0x20),
            [
                (0, 0x10, Target::Memory(0x40)),
                (0x10, 0x10, Target::Fill(0xff)),
            ]
        );
        let p = BarParts {
            table: 0..0,
            pba: 0x10..0x18,
            memory: 0..0x1000,
        };
        assert_eq!(
            runs(&p, 0, 0x20),
            [
                (0, 0x10, Target::Memory(0)),
                (0x10, 8, Target::Fill(0)),
                (0x18, 8, Target::Memory(0x18)),
            ]
        );
    }

    #[test]
    fn a_position_near_the_top_does_not_wrap() {
        let p = parts();
        assert_eq!(
            runs(&p, u64::MAX - 1, 4),
            [(0, 4, Target::Device(u64::MAX - 1))]
        );
    }
}
