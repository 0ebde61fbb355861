// SPDX-License-Identifier: GPL-2.0

//! Region addressing on the device file descriptor.
//!
//! As in vfio-pci, region `i` starts at `i << 40` of the device fd, so one
//! `pread`/`pwrite` position names a region and an offset within it. Every
//! access is checked against the region's size with checked arithmetic, so a
//! position or count near the top of the address space cannot wrap.

use super::{EResult, Errno};

/// Bits of a file position that address within one region.
pub(crate) const OFFSET_SHIFT: u32 = 40;

/// The file position where region `index` starts.
pub(crate) const fn index_to_offset(index: u32) -> u64 {
    (index as u64) << OFFSET_SHIFT
}

/// One access, decoded: which region and where in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Access {
    pub(crate) index: u32,
    pub(crate) offset: u64,
    pub(crate) count: usize,
}

/// Decodes a file position and checks the access against `size_of(index)`,
/// which returns `None` for a region that does not exist.
///
/// A zero-length access is valid anywhere inside an existing region. Every
/// failure is `EINVAL`.
pub(crate) fn decode(
    pos: i64,
    count: usize,
    size_of: impl Fn(u32) -> Option<u64>,
) -> EResult<Access> {
    let pos = u64::try_from(pos).map_err(|_| Errno::Inval)?;
    let index = u32::try_from(pos >> OFFSET_SHIFT).map_err(|_| Errno::Inval)?;
    let offset = pos & ((1u64 << OFFSET_SHIFT) - 1);
    let size = size_of(index).ok_or(Errno::Inval)?;
    let end = offset
        .checked_add(u64::try_from(count).map_err(|_| Errno::Inval)?)
        .ok_or(Errno::Inval)?;
    if end > size || (offset >= size && count > 0) {
        return Err(Errno::Inval);
    }
    Ok(Access {
        index,
        offset,
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testrng::Rng;
    use super::*;

    fn sizes(i: u32) -> Option<u64> {
        match i {
            0 => Some(8),
            7 => Some(256),
            1..=6 | 8 => Some(0),
            _ => None,
        }
    }

    #[test]
    fn decodes_region_and_offset() {
        let a = decode(index_to_offset(7) as i64 + 0x3c, 4, sizes).unwrap();
        assert_eq!(
            a,
            Access {
                index: 7,
                offset: 0x3c,
                count: 4
            }
        );
        assert!(decode(index_to_offset(0) as i64 + 7, 1, sizes).is_ok());
        assert!(decode(index_to_offset(7) as i64 + 255, 0, sizes).is_ok());
    }

    #[test]
    fn boundaries() {
        let c = index_to_offset(7) as i64;
        assert_eq!(
            decode(c + 253, 4, sizes),
            Err(Errno::Inval),
            "crosses the end"
        );
        assert_eq!(decode(c + 256, 1, sizes), Err(Errno::Inval), "past the end");
        assert_eq!(
            decode(c + 252, 4, sizes).map(|a| a.offset),
            Ok(252),
            "last dword"
        );
        assert_eq!(
            decode(index_to_offset(1) as i64, 1, sizes),
            Err(Errno::Inval),
            "empty BAR"
        );
        assert_eq!(
            decode(index_to_offset(9) as i64, 1, sizes),
            Err(Errno::Inval),
            "no region 9"
        );
        assert_eq!(decode(-1, 1, sizes), Err(Errno::Inval), "negative position");
        assert_eq!(decode(i64::MAX, 1, sizes), Err(Errno::Inval), "huge index");
        assert_eq!(
            decode(c + 8, usize::MAX, sizes),
            Err(Errno::Inval),
            "count wraps"
        );
        assert_eq!(
            decode(c + 0xff_ffff_ffff, 1, sizes),
            Err(Errno::Inval),
            "max offset"
        );
    }

    #[test]
    fn random_positions_and_counts_never_overrun() {
        let mut rng = Rng::new(0x7265_6769_6f6e);
        let (mut hits, mut wraps) = (0, 0);
        for iter in 0..100_000 {
            let index = match rng.below(4) {
                0 => rng.next_u64() >> OFFSET_SHIFT,
                _ => rng.below(10),
            };
            let offset = match rng.below(4) {
                0 => rng.next_u64() & ((1 << OFFSET_SHIFT) - 1),
                1 => (1 << OFFSET_SHIFT) - 1 - rng.below(16),
                _ => rng.below(300),
            };
            let pos = match rng.below(16) {
                0 => rng.next_u64() as i64,
                1 => i64::MAX - rng.below(16) as i64,
                _ => (index << OFFSET_SHIFT | offset) as i64,
            };
            let count = match rng.below(8) {
                0 => rng.next_u64() as usize,
                1 => usize::MAX - rng.index(16),
                _ => rng.index(300),
            };
            let r = decode(pos, count, sizes);
            let wrapped = (pos as u64).checked_add(count as u64).is_none();
            if wrapped {
                wraps += 1;
                assert!(r.is_err(), "iter {iter}: {pos:#x}+{count:#x} wraps");
            }
            if pos < 0 {
                assert!(r.is_err(), "iter {iter}: negative position");
            }
            if let Ok(a) = r {
                hits += 1;
                let size = sizes(a.index).unwrap();
                assert_eq!(u64::from(a.index), pos as u64 >> OFFSET_SHIFT);
                assert_eq!(a.offset, pos as u64 & ((1 << OFFSET_SHIFT) - 1));
                assert_eq!(a.count, count);
                assert!(
                    u128::from(a.offset) + count as u128 <= u128::from(size),
                    "iter {iter}: {a:?} overruns {size}"
                );
                assert!(a.offset < size || count == 0);
            }
        }
        assert!(hits > 500 && wraps > 1_000, "{hits} {wraps}");
    }
}
