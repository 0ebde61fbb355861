// SPDX-License-Identifier: GPL-2.0

//! Region addressing and BAR access splitting: `pread`/`pwrite` positions
//! and counts, `mmap()` offsets and lengths at their edges, and the runs an
//! access to a BAR with an MSI-X table, a PBA and plain memory is split into.
//!
//! `decode` must follow the rule Documentation/vfio_pci_core.rst states (and
//! vfio-pci's `vfio_pci_bar_rw()`): region `i` at `i << 40`; an access that
//! starts inside a region is served up to its end; one at or past the end
//! (unless empty and at the end), in a region that does not exist, at a
//! negative position or whose end is no file position is `EINVAL`.
//! `decode_mmap` maps only whole pages entirely inside a listed area. The
//! runs must tile the access in order, each byte going where it belongs:
//! the table reads all ones, the PBA zero (the table winning where they
//! overlap, then the PBA, then the memory), the memory at its own offset,
//! and every other byte to the device at its BAR offset.

use crate::rng::Rng;
use crate::Target;
use rmdev_core::vfio_pci_core::host_api::{
    bar_runs, region_decode, region_decode_mmap, Error, RunTarget,
};
use std::ops::Range;

const SHIFT: u32 = 40;

/// The target.
pub struct Fuzz {
    mutant: u32,
}

/// A size, position or count biased to edges.
fn edge64(rng: &mut Rng, around: u64) -> u64 {
    match rng.below(8) {
        0 => rng.next_u64(),
        1 => u64::MAX - rng.below(4),
        2 => around,
        3 => around.wrapping_add(1),
        4 => around.wrapping_sub(1),
        _ => rng.below(around.saturating_add(16).max(1)),
    }
}

impl Target for Fuzz {
    const NAME: &'static str = "region";
    const ID: u64 = 6;

    fn new(mutant: u32) -> Self {
        Self { mutant }
    }

    fn case(&mut self, rng: &mut Rng) -> Result<(), String> {
        self.rw(rng)?;
        self.mmap(rng)?;
        self.runs(rng)
    }
}

impl Fuzz {
    fn rw(&self, rng: &mut Rng) -> Result<(), String> {
        // Ten regions, some empty, some absent.
        let sizes: Vec<Option<u64>> = (0..10)
            .map(|_| match rng.below(6) {
                0 => None,
                1 => Some(0),
                2 => Some(1 << SHIFT),
                _ => Some(rng.pick(&[1, 8, 256, 4096, 8192]) as u64),
            })
            .collect();
        let index = rng.below(12);
        let size = sizes.get(index as usize).copied().flatten().unwrap_or(0);
        let offset = edge64(rng, size) & ((1 << SHIFT) - 1);
        let pos = match rng.below(8) {
            0 => -(rng.below(8) as i64) - 1,
            1 => i64::MAX - rng.below(8) as i64,
            2 => rng.next_u64() as i64,
            _ => (index << SHIFT | offset) as i64,
        };
        let count = match rng.below(8) {
            0 => usize::MAX - rng.index(4),
            1 => i64::MAX as usize - rng.index(4) + 2,
            2 => 0,
            _ => edge64(rng, size.saturating_sub(offset)) as usize,
        };
        let want = reference_decode(pos, count, &sizes, self.mutant);
        let got = region_decode(pos, count, &sizes);
        if got != want {
            return Err(format!(
                "decode({pos:#x}, {count:#x}) is {got:x?}, not {want:x?}"
            ));
        }
        Ok(())
    }

    fn mmap(&self, rng: &mut Rng) -> Result<(), String> {
        let shift = rng.pick(&[12, 12, 12, 16, 21, 63, 64]);
        let page = 1u64.checked_shl(shift).unwrap_or(0);
        let areas: Vec<Vec<(u64, u64)>> = (0..10)
            .map(|_| {
                (0..rng.index(3))
                    .map(|_| {
                        let o = rng.below(16) * 4096;
                        let s = match rng.below(4) {
                            0 => rng.pick(&[u64::MAX - o, u64::MAX - o - 4095, u64::MAX]),
                            _ => rng.below(4) * 4096,
                        };
                        (o, s)
                    })
                    .collect()
            })
            .collect();
        let index = rng.below(12);
        let pgoff = match rng.below(6) {
            0 => rng.next_u64(),
            1 => u64::MAX - rng.below(4),
            _ => {
                let off = rng.below(20) * 4096;
                (index << SHIFT | off) / page.max(1)
            }
        };
        let len = match rng.below(6) {
            0 => 0,
            1 => rng.next_u64(),
            2 => 4096 * rng.below(6) + rng.below(2),
            _ => page.wrapping_mul(rng.below(5)),
        };
        let want = reference_mmap(pgoff, len, shift, &areas);
        let got = region_decode_mmap(pgoff, len, shift, &areas);
        if got != want {
            return Err(format!(
                "decode_mmap({pgoff:#x}, {len:#x}, {shift}) is {got:x?}, not {want:x?}"
            ));
        }
        Ok(())
    }

    fn runs(&self, rng: &mut Rng) -> Result<(), String> {
        let bar = rng.pick(&[0x100u64, 0x2000, 1 << 20, 1 << SHIFT]);
        let range = |rng: &mut Rng| -> Range<u64> {
            if rng.one_in(4) {
                return 0..0;
            }
            let a = rng.below(bar.min(0x4000) + 1);
            let b = a + rng.below(0x1000);
            a..b.min(bar)
        };
        let (table, pba, memory) = (range(rng), range(rng), range(rng));
        let off = match rng.below(4) {
            0 => bar - rng.below(bar.min(64) + 1),
            _ => rng.below(bar.min(0x4000)),
        };
        let len = rng.index(300).min((bar - off) as usize);
        let runs = bar_runs(table.clone(), pba.clone(), memory.clone(), off, len);
        let mut at = 0;
        for &(a, n, t) in &runs {
            if a != at || n == 0 {
                return Err(format!("runs {runs:x?} do not tile {len} bytes"));
            }
            for k in 0..n {
                let pos = off + (a + k) as u64;
                let want = if table.contains(&pos) {
                    RunTarget::Fill(0xff)
                } else if pba.contains(&pos) && self.mutant != 2 {
                    RunTarget::Fill(0)
                } else if memory.contains(&pos) {
                    RunTarget::Memory(pos - memory.start)
                } else {
                    RunTarget::Device(pos)
                };
                let got = match t {
                    RunTarget::Memory(o) => RunTarget::Memory(o + k as u64),
                    RunTarget::Device(o) => RunTarget::Device(o + k as u64),
                    f => f,
                };
                if got != want {
                    return Err(format!(
                        "byte {pos:#x} goes to {got:x?}, not {want:x?} (table {table:x?}, pba {pba:x?}, memory {memory:x?})"
                    ));
                }
            }
            at += n;
        }
        if at != len {
            return Err(format!("runs cover {at} of {len} bytes"));
        }
        Ok(())
    }
}

/// The documented rule for a `pread`/`pwrite`.
fn reference_decode(
    pos: i64,
    count: usize,
    sizes: &[Option<u64>],
    mutant: u32,
) -> Result<(u32, u64, usize), Error> {
    if pos < 0 {
        return Err(Error::Inval);
    }
    let upos = pos as u64;
    let index = (upos >> SHIFT) as u32;
    let offset = upos & ((1 << SHIFT) - 1);
    let size = sizes
        .get(index as usize)
        .copied()
        .flatten()
        .ok_or(Error::Inval)?;
    // The end must be a file position (a non-negative `i64`).
    if (pos as i128) + (count as i128) > i64::MAX as i128 {
        return Err(Error::Inval);
    }
    // Mutant 1 takes a non-empty access that starts at the end (serving
    // nothing) for a valid one.
    let past = offset > size || (offset == size && count > 0 && mutant != 1);
    if past {
        return Err(Error::Inval);
    }
    let served = (count as u128).min(u128::from(size - offset.min(size))) as usize;
    Ok((index, offset, served))
}

/// The documented rule for an `mmap()`.
fn reference_mmap(
    pgoff: u64,
    len: u64,
    shift: u32,
    areas: &[Vec<(u64, u64)>],
) -> Result<(u32, u64, u64), Error> {
    if shift >= 64 {
        return Err(Error::Inval);
    }
    let page = 1u128 << shift;
    let pos = u128::from(pgoff) * page;
    if pos > u128::from(u64::MAX) {
        return Err(Error::Inval);
    }
    let index = u32::try_from(pos >> SHIFT).map_err(|_| Error::Inval)?;
    let offset = (pos & ((1 << SHIFT) - 1)) as u64;
    if len == 0 || u128::from(len) % page != 0 {
        return Err(Error::Inval);
    }
    let end = u128::from(offset) + u128::from(len);
    areas
        .get(index as usize)
        .into_iter()
        .flatten()
        .take(2)
        .find(|&&(o, s)| {
            let area_end = u128::from(o) + u128::from(s);
            area_end <= u128::from(u64::MAX) && offset >= o && end <= area_end
        })
        .map(|&(o, _)| (index, offset - o, len))
        .ok_or(Error::Inval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mutant_model_is_caught() {
        crate::tests::mutants_are_caught::<Fuzz>(2);
    }
}
