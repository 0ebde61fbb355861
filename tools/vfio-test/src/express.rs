// SPDX-License-Identifier: GPL-2.0

//! Checks of a PCI Express function: extended configuration space, Function
//! Level Reset through the PCI Express capability, MSI-X, the ERR
//! interrupt, and `mmap()` of BAR memory with the sparse-mmap capability.
//! They run on any device whose capability list has a PCI Express
//! capability; the contract is vfio-pci's for the same function.

use crate::config::{cfg_rd, cfg_wr};
use crate::dev::{errno, ioctl_val, pread, pwrite};
use crate::irqs::{irq_info, set_irqs, Efd};
use crate::ktap::Ktap;
use crate::regions::{region, region_caps};
use std::os::fd::OwnedFd;
use vfio_uapi::{
    PCI_BASE_ADDRESS_2, PCI_BASE_ADDRESS_MEM_TYPE_64, PCI_BASE_ADDRESS_MEM_TYPE_MASK,
    PCI_BASE_ADDRESS_SPACE_IO, PCI_CAPABILITY_LIST, PCI_CAP_ID_EXP, PCI_CAP_ID_MSI,
    PCI_CAP_ID_MSIX, PCI_CAP_ID_VNDR, PCI_CAP_LIST_NEXT, PCI_CFG_SPACE_SIZE, PCI_COMMAND,
    PCI_COMMAND_MASTER, PCI_EXP_DEVCAP, PCI_EXP_DEVCAP_FLR, PCI_EXP_DEVCTL, PCI_EXP_DEVCTL_BCR_FLR,
    PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_QSIZE, PCI_MSIX_TABLE, PCI_MSIX_TABLE_BIR, PCI_MSI_FLAGS,
    PCI_MSI_FLAGS_64BIT, PCI_MSI_FLAGS_MASKBIT, PCI_MSI_MASK_32, PCI_MSI_MASK_64,
    PCI_MSI_PENDING_32, PCI_MSI_PENDING_64, PCI_STD_HEADER_SIZEOF, PCI_VENDOR_ID,
    VFIO_DEVICE_RESET, VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_BOOL,
    VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE, VFIO_PCI_BAR0_REGION_INDEX,
    VFIO_PCI_BAR2_REGION_INDEX, VFIO_PCI_BAR5_REGION_INDEX, VFIO_PCI_ERR_IRQ_INDEX,
    VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX,
    VFIO_REGION_INFO_FLAG_MMAP,
};

/// Where rmdev's PCI Express serial function has its scratch memory: BAR2,
/// (offset, size).
const SERIAL_MEMORY: (u32, u64, u64) = (VFIO_PCI_BAR2_REGION_INDEX, 0x1000, 0x1000);

/// The capability list as (offset, id), walked with a bound.
fn caps(fd: &OwnedFd, cfg: u64) -> Vec<(u64, u32)> {
    let mut out = Vec::new();
    let mut p = cfg_rd(fd, cfg, PCI_CAPABILITY_LIST, 1).unwrap_or(0) as u64 & !3;
    while p >= u64::from(PCI_STD_HEADER_SIZEOF) && out.len() < 48 {
        let id = cfg_rd(fd, cfg, p, 1).unwrap_or(0);
        out.push((p, id));
        p = cfg_rd(fd, cfg, p + u64::from(PCI_CAP_LIST_NEXT), 1).unwrap_or(0) as u64 & !3;
    }
    out
}

/// A region's flags, size, offset and sparse-mmap areas.
type RegionMmap = (u32, u64, u64, Option<Vec<(u64, u64)>>);

fn region_mmap(fd: &OwnedFd, index: u32) -> Result<RegionMmap, String> {
    region_caps(fd, index).map(|r| (r.flags, r.size, r.offset, r.sparse))
}

/// A shared mapping of the device file; unmapped when dropped.
struct Map {
    ptr: *mut u8,
    len: usize,
}

impl Map {
    /// `mmap()` of `len` bytes at file offset `off`, read-write; the errno
    /// if it fails.
    fn new(fd: &OwnedFd, off: u64, len: usize, flags: libc::c_int) -> Result<Self, i32> {
        // SAFETY: A new mapping at an address the kernel picks; it aliases
        // no Rust object.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                std::os::fd::AsRawFd::as_raw_fd(fd),
                off as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            Err(errno())
        } else {
            Ok(Self { ptr: p.cast(), len })
        }
    }

    fn get(&self, i: usize) -> u8 {
        assert!(i < self.len);
        // SAFETY: `i` is inside the mapping; volatile as the device (the
        // kernel, through the region) may change the byte.
        unsafe { self.ptr.add(i).read_volatile() }
    }

    fn set(&self, i: usize, v: u8) {
        assert!(i < self.len);
        // SAFETY: As in `get`; the mapping is writable.
        unsafe { self.ptr.add(i).write_volatile(v) }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: The mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Only errnos: whether an `mmap()` fails, and how.
fn map_errno(fd: &OwnedFd, off: u64, len: usize, flags: libc::c_int) -> Result<(), i32> {
    Map::new(fd, off, len, flags).map(drop)
}

/// BAR memory: region information (FLAG_MMAP and a sparse-mmap capability
/// listing exactly the mappable areas), a shared mapping that agrees with
/// the region both ways, `mmap()` refused (`EINVAL`) outside the areas, for
/// private mappings and for BARs without memory; a reset and an FLR zero the
/// memory, and migration carries it. On rmdev's serial function the memory
/// must be BAR2's scratch page; on another device the checks run on the
/// first BAR offering `mmap()`, if any.
fn bar_memory(t: &mut Ktap, fd: &OwnedFd, serial: bool, cfg: u64, exp: u64) {
    let page = 4096u64;
    let mut found = None;
    for index in VFIO_PCI_BAR0_REGION_INDEX..=VFIO_PCI_BAR5_REGION_INDEX {
        let r = region_mmap(fd, index);
        if serial && index == SERIAL_MEMORY.0 {
            let want = vec![(SERIAL_MEMORY.1, SERIAL_MEMORY.2)];
            t.check(
                "BAR memory: BAR2 has FLAG_MMAP and a sparse-mmap capability listing its memory",
                matches!(&r, Ok((f, 8192, _, Some(a)))
                    if f & VFIO_REGION_INFO_FLAG_MMAP != 0 && *a == want),
                || format!("{r:x?}"),
            );
        }
        match r {
            Ok((f, size, offset, Some(areas)))
                if f & VFIO_REGION_INFO_FLAG_MMAP != 0 && found.is_none() =>
            {
                found = Some((index, size, offset, areas));
            }
            Ok((f, _, _, _)) if serial && index != SERIAL_MEMORY.0 => t.check(
                &format!("BAR memory: BAR{index} has no FLAG_MMAP"),
                f & VFIO_REGION_INFO_FLAG_MMAP == 0,
                || format!("flags {f:#x}"),
            ),
            _ => {}
        }
    }
    if serial {
        let r = map_errno(
            fd,
            region(fd, VFIO_PCI_BAR0_REGION_INDEX).map_or(0, |r| r.0),
            page as usize,
            libc::MAP_SHARED,
        );
        t.check(
            "BAR memory: mmap of a BAR without memory (BAR0) is EINVAL",
            r == Err(libc::EINVAL),
            || format!("{r:?}"),
        );
    }
    let Some((index, size, base, areas)) = found else {
        if serial {
            t.check("BAR memory: BAR2 can be mapped", false, || {
                "no region offers mmap".into()
            });
        }
        return;
    };
    let Some(&(aoff, asize)) = areas.first() else {
        t.check(
            "BAR memory: the sparse-mmap capability lists an area",
            false,
            || "no area".into(),
        );
        return;
    };
    t.check(
        "BAR memory: the areas are page aligned and inside the region",
        areas
            .iter()
            .all(|&(o, s)| o % page == 0 && s % page == 0 && s > 0 && o + s <= size),
        || format!("BAR{index} size {size:#x} areas {areas:x?}"),
    );
    let map = Map::new(fd, base + aoff, asize as usize, libc::MAP_SHARED);
    t.check(
        "BAR memory: MAP_SHARED of the area maps",
        map.is_ok(),
        || format!("{:?}", map.as_ref().err()),
    );
    let Ok(map) = map else {
        return;
    };
    let last = asize as usize - 1;
    for (i, v) in [(0, 0x5a), (1, 0xa5), (last, 0x3c)] {
        map.set(i, v);
    }
    let mut b = [0u8; 2];
    let r1 = pread(fd, &mut b, base + aoff);
    let mut l = [0u8];
    let r2 = pread(fd, &mut l, base + aoff + last as u64);
    t.check(
        "BAR memory: a write through the mapping reads back through the region",
        r1 == Ok(2) && r2 == Ok(1) && b == [0x5a, 0xa5] && l[0] == 0x3c,
        || format!("{r1:?} {r2:?} {b:x?} {:#x}", l[0]),
    );
    let r = pwrite(fd, &[0x11, 0x22, 0x33, 0x44], base + aoff + 8);
    let got: Vec<u8> = (8..12).map(|i| map.get(i)).collect();
    t.check(
        "BAR memory: a write through the region reads back through the mapping",
        r == Ok(4) && got == [0x11, 0x22, 0x33, 0x44],
        || format!("{r:?} {got:x?}"),
    );
    let refused = [
        ("the first page (MSI-X table and PBA)", 0, page),
        ("one page past the area", aoff + asize, page),
        ("past the BAR's end", size, page),
        ("the area and one page more", aoff, asize + page),
    ];
    for (what, off, len) in refused {
        if what.starts_with("the first page") && aoff == 0 {
            continue;
        }
        let r = map_errno(fd, base + off, len as usize, libc::MAP_SHARED);
        t.check(
            &format!("BAR memory: mmap of {what} is EINVAL"),
            r == Err(libc::EINVAL),
            || format!("{r:?}"),
        );
    }
    let r = map_errno(fd, base + aoff, page as usize, libc::MAP_PRIVATE);
    t.check(
        "BAR memory: a MAP_PRIVATE mapping is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );

    // Migration carries the memory: save, scribble, load, compare.
    if serial {
        map.set(0x100, 0x77);
        let stream = crate::mig::save(fd);
        map.set(0x100, 0x88);
        let r = stream.and_then(|s| crate::mig::load(fd, &s));
        let got = (map.get(0), map.get(0x100), map.get(last));
        t.check(
            "BAR memory: migration carries it (STOP_COPY stream loaded back)",
            r.is_ok() && got == (0x5a, 0x77, 0x3c),
            || format!("{r:?} {got:x?}"),
        );
        map.set(0, 0x5a);
    }

    // The whole area in one call each way: served whole, not in the
    // library's internal chunks (QEMU treats a short count as a failure).
    let pattern: Vec<u8> = (0..asize as usize).map(|i| (i * 7 + 3) as u8).collect();
    let w = pwrite(fd, &pattern, base + aoff);
    let mut back = vec![0u8; asize as usize];
    let r = pread(fd, &mut back, base + aoff);
    let mapped = (0..asize as usize).all(|i| map.get(i) == pattern[i]);
    t.check(
        "BAR memory: the whole area is written and read in one call each",
        w == Ok(pattern.len()) && r == Ok(back.len()) && back == pattern && mapped,
        || format!("{w:?} {r:?} same {} mapped {mapped}", back == pattern),
    );
    let r = ioctl_val(fd, VFIO_DEVICE_RESET, 0);
    let mut b = [0xffu8; 16];
    let r1 = pread(fd, &mut b, base + aoff);
    let zero = (0..asize as usize).all(|i| map.get(i) == 0);
    t.check(
        "BAR memory: VFIO_DEVICE_RESET zeroes it (mapping and region)",
        r.is_ok() && r1 == Ok(16) && b == [0; 16] && zero,
        || format!("{r:?} {r1:?} {b:x?} all zero {zero}"),
    );
    if serial {
        map.set(4, 0x99);
        let ctl = cfg_rd(fd, cfg, exp + u64::from(PCI_EXP_DEVCTL), 2).unwrap_or(0);
        cfg_wr(
            fd,
            cfg,
            exp + u64::from(PCI_EXP_DEVCTL),
            2,
            ctl | PCI_EXP_DEVCTL_BCR_FLR,
        );
        t.check(
            "BAR memory: a Function Level Reset zeroes it",
            map.get(4) == 0,
            || format!("{:#x}", map.get(4)),
        );
    }
}

/// MSI per-vector masking, if the capability offers it: mask bits writable
/// for the vectors offered, pending bits read-only; on rmdev's serial
/// function (`bar0`, its port), an interrupt raised while vector 0 is masked
/// signals nothing and sets the pending bit, and unmasking sends it once and
/// clears the bit.
fn msi_masking(t: &mut Ktap, fd: &OwnedFd, cfg: u64, msi: u64, bar0: Option<u64>) {
    let ctrl = cfg_rd(fd, cfg, msi + u64::from(PCI_MSI_FLAGS), 2).unwrap_or(0);
    if ctrl & PCI_MSI_FLAGS_MASKBIT == 0 {
        return;
    }
    let (mask, pending) = if ctrl & PCI_MSI_FLAGS_64BIT != 0 {
        (PCI_MSI_MASK_64, PCI_MSI_PENDING_64)
    } else {
        (PCI_MSI_MASK_32, PCI_MSI_PENDING_32)
    };
    let (mask, pending) = (msi + u64::from(mask), msi + u64::from(pending));
    let vectors = 1u64 << ((ctrl >> 1) & 7).min(5);
    let offered = ((1u64 << vectors) - 1) as u32;
    let orig = cfg_rd(fd, cfg, mask, 4).unwrap_or(0);
    cfg_wr(fd, cfg, mask, 4, !0);
    let all = cfg_rd(fd, cfg, mask, 4);
    cfg_wr(fd, cfg, mask, 4, orig);
    t.check(
        "MSI masking: a mask bit is writable for each vector offered, no other",
        all == Some(offered),
        || format!("{all:x?}, {vectors} vectors"),
    );
    let p = cfg_rd(fd, cfg, pending, 4);
    cfg_wr(fd, cfg, pending, 4, !p.unwrap_or(0));
    let p2 = cfg_rd(fd, cfg, pending, 4);
    t.check(
        "MSI masking: the pending bits are read-only",
        p.is_some() && p2 == p,
        || format!("{p:x?} -> {p2:x?}"),
    );
    let Some(bar0) = bar0 else {
        return;
    };
    let e = Efd::new();
    let r = set_irqs(
        fd,
        VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
        VFIO_PCI_MSI_IRQ_INDEX,
        0,
        1,
        &e.raw().to_le_bytes(),
    );
    t.check(
        "MSI masking: MSI enabled with an eventfd",
        r.is_ok(),
        || format!("{r:?}"),
    );
    cfg_wr(fd, cfg, mask, 4, 1);
    // Received data available (IER bit 0); the default loopback brings the
    // byte written to THR back to the receiver.
    let _ = pwrite(fd, &[0x01], bar0 + 1);
    let _ = pwrite(fd, b"m", bar0);
    let held = e.take();
    let p = cfg_rd(fd, cfg, pending, 4);
    t.check(
        "MSI masking: a masked vector signals nothing and sets its pending bit",
        held == 0 && p.is_some_and(|p| p & 1 != 0),
        || format!("signals {held} pending {p:x?}"),
    );
    cfg_wr(fd, cfg, mask, 4, 0);
    let sent = e.take();
    let p = cfg_rd(fd, cfg, pending, 4);
    t.check(
        "MSI masking: unmasking sends the pending message once and clears the bit",
        sent == 1 && p.is_some_and(|p| p & 1 == 0),
        || format!("signals {sent} pending {p:x?}"),
    );
    // Put the port and the interrupt back.
    let mut c = [0u8];
    let _ = pread(fd, &mut c, bar0);
    let _ = pwrite(fd, &[0x00], bar0 + 1);
    let _ = set_irqs(
        fd,
        VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
        VFIO_PCI_MSI_IRQ_INDEX,
        0,
        0,
        &[],
    );
    cfg_wr(fd, cfg, mask, 4, orig);
}

/// Runs the checks if the device is a PCI Express function.
pub(crate) fn checks(t: &mut Ktap, fd: &OwnedFd, cfg: u64, cfg_size: u64) {
    let list = caps(fd, cfg);
    let Some(&(exp, _)) = list.iter().find(|c| c.1 == PCI_CAP_ID_EXP) else {
        return;
    };
    t.check(
        "PCI Express: config region is 4 KiB",
        cfg_size == 4096,
        || format!("size {cfg_size}"),
    );
    // An extended list: an all-zero header (none) or headers that chain
    // upwards within extended space and end.
    let mut p = u64::from(PCI_CFG_SPACE_SIZE);
    let mut n = 0;
    let mut good = true;
    while n < 480 {
        let h = cfg_rd(fd, cfg, p, 4);
        match h {
            None => {
                good = false;
                break;
            }
            Some(0) => break,
            Some(h) => {
                n += 1;
                // The next pointer is the header's top 12 bits.
                p = u64::from(h >> 20) & !3;
                if p < u64::from(PCI_CFG_SPACE_SIZE) {
                    break;
                }
            }
        }
    }
    t.check(
        "PCI Express: the extended capability list reads and ends",
        good && n < 480,
        || format!("{n} headers, last at {p:#x}"),
    );
    if let Some(&(v, _)) = list.iter().find(|c| c.1 == PCI_CAP_ID_VNDR) {
        // The byte after the ID and next pointer is the capability's length.
        let len = cfg_rd(fd, cfg, v + 2, 1).unwrap_or(0) as u64;
        t.check(
            "vendor-specific capability length covers its header and fits",
            len >= 3 && v + len <= 256,
            || format!("at {v:#x} length {len}"),
        );
    }

    let bar0 = region(fd, VFIO_PCI_BAR0_REGION_INDEX)
        .filter(|r| r.1 >= 8)
        .map(|r| r.0);
    let serial = cfg_rd(fd, cfg, PCI_VENDOR_ID, 4) == Some(0x3253_4348);
    let devcap = cfg_rd(fd, cfg, exp + u64::from(PCI_EXP_DEVCAP), 4).unwrap_or(0);
    if devcap & PCI_EXP_DEVCAP_FLR != 0 {
        let cmd = cfg_rd(fd, cfg, PCI_COMMAND, 2).unwrap_or(0);
        cfg_wr(fd, cfg, PCI_COMMAND, 2, cmd | PCI_COMMAND_MASTER);
        if let (true, Some(b)) = (serial, bar0) {
            let _ = pwrite(fd, &[0x77], b + 7);
        }
        let ctl = cfg_rd(fd, cfg, exp + u64::from(PCI_EXP_DEVCTL), 2).unwrap_or(0);
        cfg_wr(
            fd,
            cfg,
            exp + u64::from(PCI_EXP_DEVCTL),
            2,
            ctl | PCI_EXP_DEVCTL_BCR_FLR,
        );
        let after = cfg_rd(fd, cfg, exp + u64::from(PCI_EXP_DEVCTL), 2).unwrap_or(0);
        t.check(
            "FLR: Initiate Function Level Reset reads back zero",
            after & PCI_EXP_DEVCTL_BCR_FLR == 0,
            || format!("devctl {after:#x}"),
        );
        let cmd2 = cfg_rd(fd, cfg, PCI_COMMAND, 2).unwrap_or(0);
        t.check(
            "FLR: the command register returns to its reset value",
            cmd2 & PCI_COMMAND_MASTER == 0,
            || format!("command {cmd:#x} -> {cmd2:#x}"),
        );
        if let (true, Some(b)) = (serial, bar0) {
            let mut s = [0u8];
            let _ = pread(fd, &mut s, b + 7);
            t.check(
                "FLR: the function's registers reset (scratch)",
                s[0] == 0,
                || format!("scratch {:#x}", s[0]),
            );
        }
    }

    let err = irq_info(fd, VFIO_PCI_ERR_IRQ_INDEX);
    t.check(
        "ERR: one eventfd interrupt on a PCI Express function",
        matches!(err, Ok((f, 1)) if f & VFIO_IRQ_INFO_EVENTFD != 0),
        || format!("{err:?}"),
    );
    let trig_fd = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    let trig_none = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
    let trig_bool = VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER;
    let e = Efd::new();
    let r = set_irqs(
        fd,
        trig_fd,
        VFIO_PCI_ERR_IRQ_INDEX,
        0,
        1,
        &e.raw().to_le_bytes(),
    );
    let _ = set_irqs(fd, trig_none, VFIO_PCI_ERR_IRQ_INDEX, 0, 1, &[]);
    let n = e.take();
    t.check(
        "ERR: a DATA_NONE trigger makes the eventfd readable",
        r.is_ok() && n == 1,
        || format!("{r:?} count {n}"),
    );
    let _ = set_irqs(fd, trig_none, VFIO_PCI_ERR_IRQ_INDEX, 0, 0, &[]);

    if serial {
        let bar2 = cfg_rd(fd, cfg, PCI_BASE_ADDRESS_2, 4);
        t.check(
            "rmdev's PCI Express function has a 64-bit memory BAR2",
            bar2.is_some_and(|b| {
                b & (PCI_BASE_ADDRESS_SPACE_IO | PCI_BASE_ADDRESS_MEM_TYPE_MASK)
                    == PCI_BASE_ADDRESS_MEM_TYPE_64
            }),
            || format!("BAR2 {bar2:x?}"),
        );
    }
    bar_memory(t, fd, serial, cfg, exp);
    if let Some(&(msi, _)) = list.iter().find(|c| c.1 == PCI_CAP_ID_MSI) {
        msi_masking(t, fd, cfg, msi, if serial { bar0 } else { None });
    }

    let Some(&(mx, _)) = list.iter().find(|c| c.1 == PCI_CAP_ID_MSIX) else {
        return;
    };
    let ctrl = cfg_rd(fd, cfg, mx + u64::from(PCI_MSIX_FLAGS), 2).unwrap_or(0);
    let table = cfg_rd(fd, cfg, mx + u64::from(PCI_MSIX_TABLE), 4).unwrap_or(0);
    let vectors = (ctrl & PCI_MSIX_FLAGS_QSIZE) + 1;
    let info = irq_info(fd, VFIO_PCI_MSIX_IRQ_INDEX);
    t.check(
        "MSI-X: IRQ_INFO counts the table's vectors",
        matches!(info, Ok((f, c)) if f & VFIO_IRQ_INFO_EVENTFD != 0 && c == vectors),
        || format!("{info:?}, table has {vectors}"),
    );
    if let Some((off, size)) = region(fd, table & PCI_MSIX_TABLE_BIR) {
        let at = u64::from(table & !PCI_MSIX_TABLE_BIR);
        let mut b = [0u8; 4];
        let r = pread(fd, &mut b, off + at);
        t.check(
            "MSI-X: the table reads all ones through the region (userspace owns it)",
            size > at && r == Ok(4) && b == [0xff; 4],
            || format!("{r:?} {b:x?}"),
        );
    }
    if vectors < 2 {
        return;
    }
    let (e0, e1) = (Efd::new(), Efd::new());
    let r = set_irqs(
        fd,
        trig_fd,
        VFIO_PCI_MSIX_IRQ_INDEX,
        1,
        1,
        &e1.raw().to_le_bytes(),
    );
    let _ = set_irqs(fd, trig_none, VFIO_PCI_MSIX_IRQ_INDEX, 1, 1, &[]);
    let n = e1.take();
    t.check(
        "MSI-X: an eventfd on vector 1 alone; a trigger of vector 1 fires it",
        r.is_ok() && n == 1,
        || format!("{r:?} count {n}"),
    );
    let r = set_irqs(
        fd,
        trig_fd,
        VFIO_PCI_MSIX_IRQ_INDEX,
        0,
        1,
        &e0.raw().to_le_bytes(),
    );
    let _ = set_irqs(fd, trig_bool, VFIO_PCI_MSIX_IRQ_INDEX, 0, 2, &[0, 1]);
    let (n0, n1) = (e0.take(), e1.take());
    t.check(
        "MSI-X: a DATA_BOOL trigger fires only the vectors set",
        r.is_ok() && (n0, n1) == (0, 1),
        || format!("{r:?} counts {n0} {n1}"),
    );
    let intx = Efd::new();
    let r = set_irqs(
        fd,
        trig_fd,
        VFIO_PCI_INTX_IRQ_INDEX,
        0,
        1,
        &intx.raw().to_le_bytes(),
    );
    t.check(
        "MSI-X and INTx are exclusive (EINVAL)",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    if let (true, Some(b)) = (serial, bar0) {
        let mut c = [0u8];
        for _ in 0..32 {
            let _ = pread(fd, &mut c, b);
        }
        let _ = pwrite(fd, &[0x01], b + 1);
        let _ = pwrite(fd, b"x", b);
        let (n0, n1) = (e0.take(), e1.take());
        let _ = pwrite(fd, &[0x00], b + 1);
        t.check(
            "MSI-X: received data fires vector 0",
            (n0, n1) == (1, 0),
            || format!("counts {n0} {n1}"),
        );
    }
    let r = set_irqs(fd, trig_none, VFIO_PCI_MSIX_IRQ_INDEX, 0, 0, &[]);
    let r2 = set_irqs(
        fd,
        trig_fd,
        VFIO_PCI_INTX_IRQ_INDEX,
        0,
        1,
        &intx.raw().to_le_bytes(),
    );
    t.check(
        "MSI-X: disabling all vectors lets INTx be enabled",
        r.is_ok() && r2.is_ok(),
        || format!("{r:?} {r2:?}"),
    );
    let _ = set_irqs(fd, trig_none, VFIO_PCI_INTX_IRQ_INDEX, 0, 0, &[]);
}
