// SPDX-License-Identifier: GPL-2.0

//! What the device said about itself when the run started (its regions,
//! interrupts, identity and migration support), and the outcomes the uAPI
//! contract allows for an access given that layout.

use crate::sys::{ioctl, pread, Sys};
use std::mem::{offset_of, size_of};
use std::os::fd::RawFd;
use vfio_uapi::{
    argsz, read, vfio_device_feature, vfio_device_feature_migration, vfio_device_info,
    vfio_info_cap_header, vfio_irq_info, vfio_region_info, vfio_region_info_cap_sparse_mmap,
    vfio_region_sparse_mmap_area, Arg, VFIO_DEVICE_FEATURE, VFIO_DEVICE_FEATURE_GET,
    VFIO_DEVICE_FEATURE_MIGRATION, VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_IRQ_INFO,
    VFIO_DEVICE_GET_REGION_INFO, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_REGION_INFO_CAP_SPARSE_MMAP,
    VFIO_REGION_INFO_FLAG_CAPS, VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
};

/// Bits of a file position that address within one region (the VFIO PCI
/// convention, `VFIO_PCI_OFFSET_SHIFT`; userspace learns each region's
/// start from `GET_REGION_INFO`, and the checks use that).
pub(crate) const WINDOW: u64 = 1 << 40;

/// The room `GET_REGION_INFO` gets when a capability chain is wanted.
pub(crate) const CAP_ROOM: usize = 4096;

/// One region as `GET_REGION_INFO` described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Region {
    pub(crate) offset: u64,
    pub(crate) size: u64,
    /// The flags without `FLAG_CAPS`.
    pub(crate) flags: u32,
    /// The `argsz` a call needs for the whole capability chain (the bare
    /// struct's size when there is none).
    pub(crate) need: u32,
    /// The sparse-mmap areas: (offset, size) within the region.
    pub(crate) areas: Vec<(u64, u64)>,
}

/// The device as it described itself.
#[derive(Debug)]
pub(crate) struct Model {
    pub(crate) flags: u32,
    pub(crate) regions: Vec<Region>,
    /// (flags, count) of each interrupt index.
    pub(crate) irqs: Vec<(u32, u32)>,
    /// Configuration bytes 0-3: vendor and device ID.
    pub(crate) ids: [u8; 4],
    /// The `VFIO_MIGRATION_*` flags (0: no migration).
    pub(crate) mig: u32,
    pub(crate) page: u64,
}

/// The outcome a region access must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Exactly this result.
    Is(Sys),
    /// A zero-length access: 0 or `EINVAL` (regions that cannot be accessed
    /// at all refuse even these).
    ZeroOrInval,
    /// A refused access from a bad buffer: `EINVAL` or `EFAULT`.
    InvalOrFault,
}

impl Expect {
    pub(crate) fn allows(self, r: Sys) -> bool {
        match self {
            Expect::Is(w) => r == w,
            Expect::ZeroOrInval => r == Ok(0) || r == Err(libc::EINVAL),
            Expect::InvalOrFault => r == Err(libc::EINVAL) || r == Err(libc::EFAULT),
        }
    }
}

/// `GET_REGION_INFO` with room for the chain; the struct and the whole
/// argument's bytes.
pub(crate) fn region_info(fd: RawFd, index: u32, argsz: u32) -> (Sys, Arg<vfio_region_info>) {
    let head = vfio_region_info {
        argsz,
        index,
        ..Default::default()
    };
    let mut arg = Arg::with_len(head, &[], CAP_ROOM);
    let r = ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, arg.as_mut_ptr() as usize);
    (r, arg)
}

/// The sparse-mmap areas of a region's capability chain, read from `arg`
/// (a `GET_REGION_INFO` answer with the chain in it). `Err` with a reason
/// if the chain is malformed: a capability outside the answer, a `next`
/// that does not move forward, or a sparse-mmap capability whose areas do
/// not fit.
pub(crate) fn walk_caps(arg: &Arg<vfio_region_info>) -> Result<Vec<(u64, u64)>, String> {
    let info = arg.head();
    let bytes = arg.bytes();
    let end = (info.argsz as usize).min(bytes.len());
    let mut areas = Vec::new();
    let mut at = info.cap_offset as usize;
    let mut steps = 0;
    while at != 0 {
        steps += 1;
        if steps > 16 || at < size_of::<vfio_region_info>() {
            return Err(format!("capability at {at} (step {steps})"));
        }
        let h: vfio_info_cap_header = read(&bytes[..end], at)
            .ok_or_else(|| format!("capability header at {at} past argsz {end}"))?;
        if u32::from(h.id) == VFIO_REGION_INFO_CAP_SPARSE_MMAP {
            let c: vfio_region_info_cap_sparse_mmap = read(&bytes[..end], at)
                .ok_or_else(|| format!("sparse-mmap capability at {at} past argsz"))?;
            let first = at + offset_of!(vfio_region_info_cap_sparse_mmap, areas);
            for i in 0..c.nr_areas as usize {
                let a: vfio_region_sparse_mmap_area = read(
                    &bytes[..end],
                    first + i * size_of::<vfio_region_sparse_mmap_area>(),
                )
                .ok_or_else(|| format!("sparse area {i} past argsz"))?;
                areas.push((a.offset, a.size));
            }
        }
        let next = h.next as usize;
        if next != 0 && next <= at {
            return Err(format!("capability at {at} links back to {next}"));
        }
        at = next;
    }
    Ok(areas)
}

impl Model {
    /// Asks the device on `fd`.
    pub(crate) fn probe(fd: RawFd) -> Result<Self, String> {
        let mut info = vfio_device_info {
            argsz: argsz::<vfio_device_info>(),
            ..Default::default()
        };
        ioctl(
            fd,
            VFIO_DEVICE_GET_INFO,
            std::ptr::from_mut(&mut info) as usize,
        )
        .map_err(|e| format!("GET_INFO: errno {e}"))?;
        let mut regions = Vec::new();
        for index in 0..info.num_regions {
            // First with the bare struct's size, which the kernel answers
            // with the size the chain needs; then with room for it.
            let (r, arg) = region_info(fd, index, argsz::<vfio_region_info>());
            r.map_err(|e| format!("GET_REGION_INFO {index}: errno {e}"))?;
            let need = arg.head().argsz;
            let (r, arg) = region_info(fd, index, CAP_ROOM as u32);
            r.map_err(|e| format!("GET_REGION_INFO {index}: errno {e}"))?;
            let h = arg.head();
            let areas = if h.flags & VFIO_REGION_INFO_FLAG_CAPS != 0 {
                walk_caps(&arg).map_err(|e| format!("region {index}: {e}"))?
            } else {
                Vec::new()
            };
            regions.push(Region {
                offset: h.offset,
                size: h.size,
                flags: h.flags & !VFIO_REGION_INFO_FLAG_CAPS,
                need,
                areas,
            });
        }
        let mut irqs = Vec::new();
        for index in 0..info.num_irqs {
            let mut ii = vfio_irq_info {
                argsz: argsz::<vfio_irq_info>(),
                index,
                ..Default::default()
            };
            ioctl(
                fd,
                VFIO_DEVICE_GET_IRQ_INFO,
                std::ptr::from_mut(&mut ii) as usize,
            )
            .map_err(|e| format!("GET_IRQ_INFO {index}: errno {e}"))?;
            irqs.push((ii.flags, ii.count));
        }
        let cfg = regions
            .get(VFIO_PCI_CONFIG_REGION_INDEX as usize)
            .ok_or("no config region")?;
        let mut ids = [0u8; 4];
        let r = pread(fd, ids.as_mut_ptr() as usize, 4, cfg.offset as i64);
        if r != Ok(4) {
            return Err(format!("config read: {r:?}"));
        }
        let head = vfio_device_feature {
            argsz: argsz::<vfio_device_feature>() + argsz::<vfio_device_feature_migration>(),
            flags: VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION,
            ..Default::default()
        };
        let mut arg = Arg::with_len(head, &[], 64);
        let mig = match ioctl(fd, VFIO_DEVICE_FEATURE, arg.as_mut_ptr() as usize) {
            Ok(_) => arg
                .get_data::<vfio_device_feature_migration>()
                .map_or(0, |m| m.flags as u32),
            Err(_) => 0,
        };
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
        Ok(Self {
            flags: info.flags,
            regions,
            irqs,
            ids,
            mig,
            page,
        })
    }

    /// The region whose window holds file position `pos`, and the offset
    /// in it.
    fn locate(&self, pos: u64) -> Option<(&Region, u64)> {
        self.regions
            .iter()
            .find(|r| pos >= r.offset && pos - r.offset < WINDOW)
            .map(|r| (r, pos - r.offset))
    }

    /// What a `pread` (or `pwrite`) of `len` bytes at `pos` must return:
    /// the bytes from `pos` up to the region's end; `EINVAL` at a negative
    /// position, past the region's end, in a window no region has, for a
    /// position + length that overflows, and for a write to a region
    /// without `FLAG_WRITE` (or a read of one without `FLAG_READ`).
    pub(crate) fn expect_rw(&self, pos: i64, len: usize, write: bool) -> Expect {
        let inval = Expect::Is(Err(libc::EINVAL));
        if pos < 0 || pos.checked_add(len as i64).is_none() {
            return inval;
        }
        let Some((r, off)) = self.locate(pos as u64) else {
            return inval;
        };
        if off > r.size || (off == r.size && len > 0) {
            return inval;
        }
        let n = (r.size - off).min(len as u64);
        let need = if write {
            VFIO_REGION_INFO_FLAG_WRITE
        } else {
            VFIO_REGION_INFO_FLAG_READ
        };
        if n == 0 {
            return Expect::ZeroOrInval;
        }
        if r.flags & need == 0 {
            return inval;
        }
        Expect::Is(Ok(n as i64))
    }

    /// Whether a shared mapping of `len` bytes at file offset `off` must
    /// succeed: page aligned, non-empty and inside one sparse-mmap area.
    pub(crate) fn mmap_ok(&self, off: u64, len: u64) -> bool {
        if len == 0 || !off.is_multiple_of(self.page) {
            return false;
        }
        let len = len.div_ceil(self.page) * self.page;
        let Some((r, o)) = self.locate(off) else {
            return false;
        };
        r.areas
            .iter()
            .any(|&(a, s)| o >= a && o.checked_add(len).is_some_and(|e| e <= a + s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        let reg = |offset, size, flags, areas: Vec<(u64, u64)>| Region {
            offset,
            size,
            flags,
            need: 32,
            areas,
        };
        let rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
        Model {
            flags: 0,
            regions: vec![
                reg(0, 8, rw, vec![]),
                reg(WINDOW, 0, 0, vec![]),
                reg(2 * WINDOW, 0x4000, rw, vec![(0x1000, 0x1000)]),
                reg(3 * WINDOW, 24, VFIO_REGION_INFO_FLAG_READ, vec![]),
            ],
            irqs: vec![],
            ids: [0; 4],
            mig: 0,
            page: 4096,
        }
    }

    #[test]
    fn accesses_run_to_the_region_end() {
        let m = model();
        assert_eq!(m.expect_rw(0, 4, false), Expect::Is(Ok(4)));
        assert_eq!(m.expect_rw(6, 4, true), Expect::Is(Ok(2)));
        assert_eq!(m.expect_rw(8, 1, false), Expect::Is(Err(libc::EINVAL)));
        assert_eq!(m.expect_rw(8, 0, false), Expect::ZeroOrInval);
        assert_eq!(m.expect_rw(9, 0, false), Expect::Is(Err(libc::EINVAL)));
        assert_eq!(m.expect_rw(-1, 1, false), Expect::Is(Err(libc::EINVAL)));
        assert_eq!(
            m.expect_rw(i64::MAX - 2, 4, false),
            Expect::Is(Err(libc::EINVAL))
        );
        assert_eq!(m.expect_rw(WINDOW as i64, 0, false), Expect::ZeroOrInval);
        assert_eq!(
            m.expect_rw(3 * WINDOW as i64, 4, true),
            Expect::Is(Err(libc::EINVAL))
        );
        assert_eq!(
            m.expect_rw(3 * WINDOW as i64 + 20, 8, false),
            Expect::Is(Ok(4))
        );
        assert_eq!(
            m.expect_rw(4 * WINDOW as i64, 1, false),
            Expect::Is(Err(libc::EINVAL))
        );
    }

    #[test]
    fn mmap_needs_an_area() {
        let m = model();
        let b = 2 * WINDOW;
        assert!(m.mmap_ok(b + 0x1000, 0x1000));
        assert!(m.mmap_ok(b + 0x1000, 1), "the length rounds up to a page");
        assert!(!m.mmap_ok(b + 0x1000, 0x1001));
        assert!(!m.mmap_ok(b, 0x1000));
        assert!(!m.mmap_ok(b + 0x1000, 0));
        assert!(!m.mmap_ok(b + 0x1800, 0x800));
        assert!(!m.mmap_ok(0, 0x1000));
    }
}
