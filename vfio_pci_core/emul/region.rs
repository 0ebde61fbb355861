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

/// One access, decoded: which region, where in it, and how many bytes of it
/// the region serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Access {
    pub(crate) index: u32,
    pub(crate) offset: u64,
    /// The bytes to serve: the count asked for, cut at the region's end.
    pub(crate) count: usize,
}

/// Decodes a file position and checks the access against `size_of(index)`,
/// which returns `None` for a region that does not exist.
///
/// The rule for every region is vfio-pci's rule for BARs
/// (`vfio_pci_bar_rw()`): an access that starts inside a region is served up
/// to the region's end, so one that runs past it gets a short count; one
/// that starts at or past the end, in a region that does not exist, at a
/// negative position, or whose end does not fit a file position, is
/// `EINVAL`. A zero-length access is valid anywhere up to the region's end.
pub(crate) fn decode(
    pos: i64,
    count: usize,
    size_of: impl Fn(u32) -> Option<u64>,
) -> EResult<Access> {
    let upos = u64::try_from(pos).map_err(|_| Errno::Inval)?;
    let index = u32::try_from(upos >> OFFSET_SHIFT).map_err(|_| Errno::Inval)?;
    let offset = upos & ((1u64 << OFFSET_SHIFT) - 1);
    let size = size_of(index).ok_or(Errno::Inval)?;
    // The end of the access must be a file position, as the VFS demands.
    let wide = i64::try_from(count).map_err(|_| Errno::Inval)?;
    pos.checked_add(wide).ok_or(Errno::Inval)?;
    if offset > size || (offset == size && count > 0) {
        return Err(Errno::Inval);
    }
    // `offset <= size` here, so this neither wraps nor exceeds `count`.
    let left = size - offset;
    let count = usize::try_from(left).map_or(count, |l| count.min(l));
    Ok(Access {
        index,
        offset,
        count,
    })
}

/// The most device-specific regions a device may declare.
pub(crate) const MAX_DEV_REGIONS: usize = 8;

/// A device-specific region (index `VFIO_PCI_NUM_REGIONS` and up): what
/// `VFIO_DEVICE_GET_REGION_INFO` reports of it, with a region-type
/// capability (`VFIO_REGION_INFO_CAP_TYPE`) naming its type and subtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DevRegion {
    /// The region type, for example `VFIO_REGION_TYPE_PCI_VENDOR_TYPE` with
    /// a PCI vendor ID in the low 16 bits.
    pub(crate) kind: u32,
    /// The subtype, defined by the type's owner.
    pub(crate) subtype: u32,
    /// Size in bytes, from 1 to `1 << 40` (what a region can address).
    pub(crate) size: u64,
    /// Whether userspace may write it; a write to a read-only region is
    /// `EINVAL`.
    pub(crate) writable: bool,
}

/// Checks the device-specific regions a device declares: at most
/// [`MAX_DEV_REGIONS`] of them, each of a size from 1 byte to what a
/// region can address. `EINVAL` otherwise.
pub(crate) fn check_dev_regions(regions: &[DevRegion]) -> EResult {
    let fits = |r: &DevRegion| (1..=1u64 << OFFSET_SHIFT).contains(&r.size);
    if regions.len() > MAX_DEV_REGIONS || !regions.iter().all(fits) {
        return Err(Errno::Inval);
    }
    Ok(())
}

/// The most mappable areas one region lists in its sparse-mmap capability.
pub(crate) const MAX_AREAS: usize = 2;

/// A part of a region userspace may map, as the sparse-mmap capability
/// (`VFIO_REGION_INFO_CAP_SPARSE_MMAP`) lists it: bytes from `offset` of the
/// region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Area {
    pub(crate) offset: u64,
    pub(crate) size: u64,
}

impl Area {
    /// Whether `offset..offset + len` lies entirely inside the area.
    fn holds(&self, offset: u64, len: u64) -> bool {
        match (offset.checked_add(len), self.offset.checked_add(self.size)) {
            (Some(end), Some(area_end)) => offset >= self.offset && end <= area_end,
            _ => false,
        }
    }
}

/// Checks the memory a device declares in a BAR of `bar_size` bytes: it is
/// not empty, starts and ends on a page boundary (of `page` bytes, a power of
/// two), lies inside the BAR, and shares no page with any of `hidden` (the
/// MSI-X table and PBA, which userspace emulates and which must never be
/// mapped, as in vfio-pci).
pub(crate) fn check_memory(
    mem: &core::ops::Range<u64>,
    bar_size: u64,
    hidden: &[core::ops::Range<u64>],
    page: u64,
) -> EResult {
    let mask = page.checked_sub(1).ok_or(Errno::Inval)?;
    if mem.start >= mem.end || mem.start & mask != 0 || mem.end & mask != 0 || mem.end > bar_size {
        return Err(Errno::Inval);
    }
    for h in hidden.iter().filter(|h| h.start < h.end) {
        // The pages the hidden range touches, rounded outwards.
        let first = h.start & !mask;
        let last = h.end.checked_add(mask).ok_or(Errno::Inval)? & !mask;
        if first < mem.end && mem.start < last {
            return Err(Errno::Inval);
        }
    }
    Ok(())
}

/// An `mmap()` of the device file, decoded and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MapRequest {
    /// The region.
    pub(crate) index: u32,
    /// Where the mapping starts, in bytes from the start of the area that
    /// holds it (a multiple of the page size).
    pub(crate) area_offset: u64,
    /// The mapping's length in bytes (a multiple of the page size).
    pub(crate) len: u64,
}

/// Decodes an `mmap()` of the device file with vfio-pci's contract: the file
/// offset is `pgoff` pages of `1 << page_shift` bytes, whose region index is
/// `pgoff >> (40 - page_shift)`; the `len` bytes mapped (a non-zero multiple
/// of the page size) must lie entirely inside one of the areas `areas_of`
/// lists for that region (none for a region that cannot be mapped). Every
/// failure is `EINVAL`.
pub(crate) fn decode_mmap(
    pgoff: u64,
    len: u64,
    page_shift: u32,
    areas_of: impl Fn(u32) -> [Option<Area>; MAX_AREAS],
) -> EResult<MapRequest> {
    let page = 1u64.checked_shl(page_shift).ok_or(Errno::Inval)?;
    let pos = pgoff.checked_mul(page).ok_or(Errno::Inval)?;
    let index = u32::try_from(pos >> OFFSET_SHIFT).map_err(|_| Errno::Inval)?;
    let offset = pos & ((1u64 << OFFSET_SHIFT) - 1);
    if len == 0 || !len.is_multiple_of(page) {
        return Err(Errno::Inval);
    }
    let area = areas_of(index)
        .into_iter()
        .flatten()
        .find(|a| a.holds(offset, len))
        .ok_or(Errno::Inval)?;
    Ok(MapRequest {
        index,
        area_offset: offset - area.offset,
        len,
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

    const PAGE: u64 = 4096;

    fn areas(i: u32) -> [Option<Area>; MAX_AREAS] {
        match i {
            2 => [
                Some(Area {
                    offset: 0x1000,
                    size: 0x2000,
                }),
                None,
            ],
            _ => [None; MAX_AREAS],
        }
    }

    #[test]
    fn memory_must_be_page_aligned_inside_the_bar_and_clear_of_msix() {
        let msix = [0..32, 0x800..0x808];
        assert_eq!(check_memory(&(0x1000..0x2000), 0x2000, &msix, PAGE), Ok(()));
        let bad = [
            (0x1000..0x1000, "empty"),
            (0x1800..0x2000, "unaligned start"),
            (0x1000..0x1800, "unaligned end"),
            (0x1000..0x3000, "past the BAR"),
            (0..0x1000, "the MSI-X page"),
            (0..0x2000, "covers the MSI-X page"),
        ];
        for (r, why) in bad {
            assert_eq!(
                check_memory(&r, 0x2000, &msix, PAGE),
                Err(Errno::Inval),
                "{why}"
            );
        }
        // A table ending mid-page still claims its whole page.
        let table = [0x1f00..0x2010, 0..0];
        assert_eq!(
            check_memory(&(0x2000..0x3000), 0x4000, &table, PAGE),
            Err(Errno::Inval)
        );
        assert_eq!(
            check_memory(&(0x3000..0x4000), 0x4000, &table, PAGE),
            Ok(())
        );
        assert_eq!(
            check_memory(&(0..0x1000), 0x1000, &[], 0),
            Err(Errno::Inval)
        );
    }

    #[test]
    fn mmap_must_lie_inside_an_area() {
        let pg = |index: u64, off: u64| (index << OFFSET_SHIFT | off) / PAGE;
        assert_eq!(
            decode_mmap(pg(2, 0x1000), 0x2000, 12, areas),
            Ok(MapRequest {
                index: 2,
                area_offset: 0,
                len: 0x2000
            })
        );
        assert_eq!(
            decode_mmap(pg(2, 0x2000), 0x1000, 12, areas).map(|m| m.area_offset),
            Ok(0x1000)
        );
        let bad = [
            (pg(2, 0), 0x1000, "the MSI-X page"),
            (pg(2, 0), 0x3000, "starts before the area"),
            (pg(2, 0x2000), 0x2000, "runs past the area"),
            (pg(2, 0x3000), 0x1000, "past the BAR"),
            (pg(2, 0x1000), 0, "empty"),
            (pg(2, 0x1000), 0x800, "not whole pages"),
            (pg(2, 0x1000), !0xfff, "huge"),
            (pg(0, 0), 0x1000, "a region without areas"),
            (pg(9, 0x1000), 0x1000, "no such region"),
            (u64::MAX, 0x1000, "pgoff overflows"),
            (u64::MAX >> 12, 0x1000, "huge index"),
        ];
        for (pgoff, len, why) in bad {
            assert_eq!(
                decode_mmap(pgoff, len, 12, areas),
                Err(Errno::Inval),
                "{why}"
            );
        }
    }

    #[test]
    fn device_regions_are_few_and_addressable() {
        let r = |size| DevRegion {
            kind: 1 << 31 | 0x4348,
            subtype: 1,
            size,
            writable: false,
        };
        assert_eq!(check_dev_regions(&[]), Ok(()));
        assert_eq!(check_dev_regions(&[r(1), r(1 << OFFSET_SHIFT)]), Ok(()));
        assert_eq!(check_dev_regions(&[r(0)]), Err(Errno::Inval));
        assert_eq!(
            check_dev_regions(&[r(1), r((1 << OFFSET_SHIFT) + 1)]),
            Err(Errno::Inval)
        );
        assert_eq!(check_dev_regions(&[r(8); MAX_DEV_REGIONS]), Ok(()));
        assert_eq!(
            check_dev_regions(&[r(8); MAX_DEV_REGIONS + 1]),
            Err(Errno::Inval)
        );
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
            decode(c + 253, 4, sizes).map(|a| (a.offset, a.count)),
            Ok((253, 3)),
            "crosses the end: served up to it"
        );
        assert_eq!(
            decode(c, 4096, sizes).map(|a| a.count),
            Ok(256),
            "a read of a page of a 256-byte region"
        );
        assert_eq!(
            decode(c + 256, 0, sizes).map(|a| a.count),
            Ok(0),
            "empty access at the end"
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
            decode(i64::MAX - 2, 4, sizes),
            Err(Errno::Inval),
            "end past the largest position"
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
            let wrapped = i64::try_from(count)
                .ok()
                .and_then(|c| pos.checked_add(c))
                .is_none();
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
                // Served up to the end, never past it, never more than asked.
                let want = count.min((size - a.offset) as usize);
                assert_eq!(a.count, want, "iter {iter}: {a:?} of {count}");
                assert!(
                    u128::from(a.offset) + a.count as u128 <= u128::from(size),
                    "iter {iter}: {a:?} overruns {size}"
                );
                assert!(a.offset < size || count == 0);
            }
        }
        assert!(hits > 500 && wraps > 1_000, "{hits} {wraps}");
    }
}
