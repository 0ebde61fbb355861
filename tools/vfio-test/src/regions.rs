// SPDX-License-Identifier: GPL-2.0

//! Device and region information: `GET_INFO`, `GET_REGION_INFO` with its
//! capability chain, and the device-specific regions past the PCI ones
//! (rmdev's serial statistics among them).

use crate::dev::{ioctl_arg, ioctl_buf, pread, pwrite};
use crate::ktap::Ktap;
use std::mem::{offset_of, size_of};
use std::os::fd::OwnedFd;
use vfio_uapi::{
    argsz, read, vfio_device_info, vfio_info_cap_header, vfio_region_info,
    vfio_region_info_cap_sparse_mmap, vfio_region_info_cap_type, vfio_region_sparse_mmap_area, Arg,
    VFIO_DEVICE_FLAGS_PCI, VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_REGION_INFO,
    VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_MSIX_IRQ_INDEX,
    VFIO_PCI_NUM_REGIONS, VFIO_REGION_INFO_CAP_SPARSE_MMAP, VFIO_REGION_INFO_CAP_TYPE,
    VFIO_REGION_INFO_FLAG_CAPS, VFIO_REGION_INFO_FLAG_WRITE, VFIO_REGION_TYPE_PCI_VENDOR_TYPE,
};

/// rmdev's serial statistics region: vendor type 0x4348, subtype 1, per
/// port three little-endian u64 counters (tx, rx, overruns).
const SERIAL_STATS: (u32, u32) = (VFIO_REGION_TYPE_PCI_VENDOR_TYPE | 0x4348, 1);

/// `GET_INFO`: a PCI device with the regions and interrupts QEMU needs, and
/// a short argument refused. Returns the device information.
pub(crate) fn device_info(t: &mut Ktap, fd: &OwnedFd) -> vfio_device_info {
    // The argument size is the kernel's minimum: up to the capability
    // offset, which is only read by callers that ask for capabilities.
    let minsz = offset_of!(vfio_device_info, cap_offset) as u32;
    let mut info = vfio_device_info {
        argsz: minsz,
        ..Default::default()
    };
    let r = ioctl_arg(fd, VFIO_DEVICE_GET_INFO, &mut info);
    t.check(
        "GET_INFO reports a PCI device",
        r.is_ok() && info.flags & VFIO_DEVICE_FLAGS_PCI != 0,
        || format!("{r:?} flags {:#x}", info.flags),
    );
    t.check(
        "GET_INFO counts the regions and IRQ indexes QEMU needs",
        info.num_regions >= VFIO_PCI_NUM_REGIONS && info.num_irqs > VFIO_PCI_MSIX_IRQ_INDEX,
        || format!("regions {} irqs {}", info.num_regions, info.num_irqs),
    );
    let mut short = vfio_device_info {
        argsz: minsz - 1,
        ..Default::default()
    };
    let r = ioctl_arg(fd, VFIO_DEVICE_GET_INFO, &mut short);
    t.check(
        "GET_INFO with argsz below minsz is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    info
}

/// `GET_REGION_INFO` of the config region, which must cover PCI config
/// space, and of a region that does not exist. Returns the config region's
/// (offset, size).
pub(crate) fn config_info(t: &mut Ktap, fd: &OwnedFd) -> (u64, u64) {
    let mut ri = region_info(VFIO_PCI_CONFIG_REGION_INDEX);
    let r = ioctl_arg(fd, VFIO_DEVICE_GET_REGION_INFO, &mut ri);
    t.check(
        "config region is at least 256 bytes",
        r.is_ok() && ri.size >= u64::from(vfio_uapi::PCI_CFG_SPACE_SIZE),
        || format!("{r:?} size {}", ri.size),
    );
    let mut bad = region_info(1000);
    let r = ioctl_arg(fd, VFIO_DEVICE_GET_REGION_INFO, &mut bad);
    t.check(
        "REGION_INFO of a region that does not exist is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    (ri.offset, ri.size)
}

fn region_info(index: u32) -> vfio_region_info {
    vfio_region_info {
        argsz: argsz::<vfio_region_info>(),
        index,
        ..Default::default()
    }
}

/// Region `index`'s (offset, size) from GET_REGION_INFO.
pub(crate) fn region(fd: &OwnedFd, index: u32) -> Option<(u64, u64)> {
    let mut ri = region_info(index);
    ioctl_arg(fd, VFIO_DEVICE_GET_REGION_INFO, &mut ri).ok()?;
    Some((ri.offset, ri.size))
}

/// GET_REGION_INFO with room for the capability chain, walked: the
/// region's flags, size and offset, the areas of a sparse-mmap capability
/// and the (type, subtype) of a region-type capability, where present.
#[derive(Debug)]
pub(crate) struct RegionCaps {
    pub(crate) flags: u32,
    pub(crate) size: u64,
    pub(crate) offset: u64,
    pub(crate) sparse: Option<Vec<(u64, u64)>>,
    pub(crate) kind: Option<(u32, u32)>,
}

pub(crate) fn region_caps(fd: &OwnedFd, index: u32) -> Result<RegionCaps, String> {
    // Room for any chain: the kernel reports the size it needs in argsz.
    const ROOM: usize = 4096;
    let head = vfio_region_info {
        argsz: ROOM as u32,
        index,
        ..Default::default()
    };
    let mut arg = Arg::with_len(head, &[], ROOM);
    ioctl_buf(fd, VFIO_DEVICE_GET_REGION_INFO, &mut arg).map_err(|e| format!("errno {e}"))?;
    let info = arg.head();
    let (flags, argsz) = (info.flags, info.argsz as usize);
    let mut r = RegionCaps {
        flags,
        size: info.size,
        offset: info.offset,
        sparse: None,
        kind: None,
    };
    if flags & VFIO_REGION_INFO_FLAG_CAPS == 0 {
        return Ok(r);
    }
    if argsz > ROOM {
        return Err(format!("argsz {argsz} larger than the buffer"));
    }
    let b = &arg.bytes()[..argsz];
    let mut at = info.cap_offset as usize;
    for _ in 0..16 {
        let Some(hdr) =
            read::<vfio_info_cap_header>(b, at).filter(|_| at >= size_of::<vfio_region_info>())
        else {
            return Err(format!("capability at {at} outside argsz {argsz}"));
        };
        match u32::from(hdr.id) {
            VFIO_REGION_INFO_CAP_SPARSE_MMAP => {
                let first = at + size_of::<vfio_region_info_cap_sparse_mmap>();
                let area = size_of::<vfio_region_sparse_mmap_area>();
                let n = read::<vfio_region_info_cap_sparse_mmap>(b, at)
                    .map_or(0, |c| c.nr_areas as usize);
                if n > 64 || first + area * n > argsz {
                    return Err(format!("{n} areas overrun argsz {argsz}"));
                }
                let areas = (0..n)
                    .filter_map(|i| read::<vfio_region_sparse_mmap_area>(b, first + area * i))
                    .map(|a| (a.offset, a.size))
                    .collect();
                r.sparse = Some(areas);
            }
            VFIO_REGION_INFO_CAP_TYPE => {
                let Some(c) = read::<vfio_region_info_cap_type>(b, at) else {
                    return Err(format!("type capability at {at} overruns argsz {argsz}"));
                };
                r.kind = Some((c.type_, c.subtype));
            }
            _ => {}
        }
        match hdr.next as usize {
            0 => return Ok(r),
            next => at = next,
        }
    }
    Err("capability chain does not end".into())
}

/// Device-specific regions (index VFIO_PCI_NUM_REGIONS and up, as many as
/// GET_INFO counts): each has FLAG_CAPS and a region-type capability, reads
/// inside it work, a read past its end is EINVAL and one across it is served
/// up to the end, and a write to
/// a read-only one is EINVAL. A device without any (mtty) passes with
/// nothing to check. On rmdev's serial cards the statistics region must be
/// there, and its first port's tx counter grows by N after N THR writes.
pub(crate) fn device_regions(t: &mut Ktap, fd: &OwnedFd, num_regions: u32, serial: bool) {
    t.diag(&format!("num_regions {num_regions}"));
    let mut stats = None;
    for index in VFIO_PCI_NUM_REGIONS..num_regions.min(VFIO_PCI_NUM_REGIONS + 64) {
        let r = region_caps(fd, index);
        t.check(
            &format!("region {index}: FLAG_CAPS with a region-type capability"),
            matches!(&r, Ok(c) if c.flags & VFIO_REGION_INFO_FLAG_CAPS != 0 && c.kind.is_some()),
            || format!("{r:x?}"),
        );
        let Ok(RegionCaps {
            flags,
            size,
            offset: off,
            kind,
            ..
        }) = r
        else {
            continue;
        };
        t.diag(&format!(
            "region {index}: type {kind:x?} size {size} flags {flags:#x}"
        ));
        let n = size.min(4096) as usize;
        let mut buf = vec![0u8; n];
        let whole = pread(fd, &mut buf, off);
        let mut b4 = [0u8; 4];
        let last = pread(fd, &mut b4[..1], off + size - 1);
        t.check(
            &format!("region {index}: reads within bounds work"),
            whole == Ok(n) && last == Ok(1),
            || format!("{whole:?} {last:?}"),
        );
        let past = pread(fd, &mut b4[..1], off + size);
        t.check(
            &format!("region {index}: a read past the end is EINVAL"),
            past == Err(libc::EINVAL),
            || format!("{past:?}"),
        );
        let across = pread(fd, &mut b4, off + size - 2);
        t.check(
            &format!("region {index}: a read across the end is served up to it"),
            across == Ok(2),
            || format!("{across:?}"),
        );
        if flags & VFIO_REGION_INFO_FLAG_WRITE == 0 {
            let w = pwrite(fd, &[0], off);
            t.check(
                &format!("region {index}: a write to a read-only region is EINVAL"),
                w == Err(libc::EINVAL),
                || format!("{w:?}"),
            );
        }
        if kind == Some(SERIAL_STATS) && stats.is_none() {
            stats = Some((off, size));
        }
    }
    if !serial {
        return;
    }
    t.check(
        "serial: GET_INFO counts a statistics region (vendor 0x4348, subtype 1)",
        stats.is_some(),
        || format!("num_regions {num_regions}"),
    );
    let (Some((off, size)), Some(bar0)) =
        (stats, region(fd, VFIO_PCI_BAR0_REGION_INDEX).map(|r| r.0))
    else {
        return;
    };
    t.check(
        "serial statistics: 24 read-only bytes per port",
        size == 24 || size == 48,
        || format!("size {size}"),
    );
    let tx = || {
        let mut b = [0u8; 8];
        (pread(fd, &mut b, off) == Ok(8)).then(|| u64::from_le_bytes(b))
    };
    let before = tx();
    // Plain line settings, no interrupts; the bytes loop back and are read.
    let _ = pwrite(fd, &[0x03], bar0 + 3);
    let _ = pwrite(fd, &[0x00], bar0 + 1);
    const N: u64 = 5;
    for b in 0..N as u8 {
        let _ = pwrite(fd, &[b'0' + b], bar0);
    }
    let after = tx();
    let mut lsr = [0u8];
    let mut drained = 0;
    while pread(fd, &mut lsr, bar0 + 5) == Ok(1) && lsr[0] & 1 != 0 && drained < 64 {
        let _ = pread(fd, &mut [0u8], bar0);
        drained += 1;
    }
    t.check(
        "serial statistics: the tx counter grows by N after N THR writes",
        before.is_some() && after == before.map(|b| b + N),
        || format!("{before:?} -> {after:?}"),
    );
}
