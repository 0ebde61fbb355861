// SPDX-License-Identifier: GPL-2.0

//! The config region: its header and bounds, the permissions a guest relies
//! on (read-only identity, BAR sizing, status bits, the interrupt registers,
//! a well-formed capability list, power management) and 64-bit BARs.

use crate::dev::{pread, pwrite};
use crate::ktap::Ktap;
use crate::regions::region;
use std::os::fd::OwnedFd;
use vfio_uapi::{
    PCI_BASE_ADDRESS_0, PCI_BASE_ADDRESS_MEM_MASK, PCI_BASE_ADDRESS_MEM_TYPE_64,
    PCI_BASE_ADDRESS_MEM_TYPE_MASK, PCI_BASE_ADDRESS_SPACE_IO, PCI_CAPABILITY_LIST, PCI_CAP_ID_PM,
    PCI_CAP_LIST_NEXT, PCI_CLASS_REVISION, PCI_INTERRUPT_LINE, PCI_INTERRUPT_PIN, PCI_PM_CAP_D1,
    PCI_PM_CTRL, PCI_PM_CTRL_STATE_MASK, PCI_PM_PMC, PCI_STATUS, PCI_STATUS_CAP_LIST,
    PCI_STATUS_DETECTED_PARITY, PCI_STATUS_DEVSEL_MASK, PCI_STATUS_PARITY,
    PCI_STATUS_REC_MASTER_ABORT, PCI_STATUS_REC_TARGET_ABORT, PCI_STATUS_SIG_SYSTEM_ERROR,
    PCI_STATUS_SIG_TARGET_ABORT, PCI_STD_HEADER_SIZEOF, PCI_VENDOR_ID,
};

/// A little-endian config register of `len` bytes (1, 2 or 4) at `reg`, or
/// `None` if the read fails.
pub(crate) fn cfg_rd(fd: &OwnedFd, cfg: u64, reg: impl Into<u64>, len: usize) -> Option<u32> {
    let mut b = [0u8; 4];
    (pread(fd, &mut b[..len], cfg + reg.into()) == Ok(len)).then(|| u32::from_le_bytes(b))
}

pub(crate) fn cfg_wr(fd: &OwnedFd, cfg: u64, reg: impl Into<u64>, len: usize, v: u32) {
    let _ = pwrite(fd, &v.to_le_bytes()[..len], cfg + reg.into());
}

/// The config region's standard header and its end: reads inside work, a
/// read of the whole region is served whole, one across the end up to the
/// end (vfio-pci's rule for BARs), one past the end is `EINVAL`. Returns the vendor and device
/// IDs (vendor in the low half).
pub(crate) fn header(t: &mut Ktap, fd: &OwnedFd, cfg: u64, size: u64) -> u32 {
    let mut hdr = [0u8; PCI_STD_HEADER_SIZEOF as usize];
    let r = pread(fd, &mut hdr, cfg);
    t.check("config space header reads", r == Ok(hdr.len()), || {
        format!("{r:?}")
    });
    let word = |reg: u32| {
        let at = reg as usize;
        u32::from_le_bytes([hdr[at], hdr[at + 1], hdr[at + 2], hdr[at + 3]])
    };
    let ids = word(PCI_VENDOR_ID);
    t.check(
        "config space has a vendor ID",
        ids & 0xffff != 0 && ids & 0xffff != 0xffff,
        || format!("ids {ids:#x}"),
    );
    t.diag(&format!(
        "device {:04x}:{:04x} class {:06x}",
        ids & 0xffff,
        ids >> 16,
        word(PCI_CLASS_REVISION) >> 8
    ));
    // QEMU reads configuration space with one pread of the region's size
    // (up to 4 KiB) and treats a short count as a failure.
    let mut all = vec![0u8; size as usize];
    let r = pread(fd, &mut all, cfg);
    t.check(
        "config space reads whole in one call",
        r == Ok(all.len()) && all[..hdr.len()] == hdr[..],
        || format!("{r:?} of {size}"),
    );
    let mut b4 = [0u8; 4];
    let r = pread(fd, &mut b4, cfg + size - 2);
    let mut last = [0u8; 2];
    let r2 = pread(fd, &mut last, cfg + size - 2);
    t.check(
        "config read across the end is served up to the end",
        r == Ok(2) && r2 == Ok(2) && b4[..2] == last,
        || format!("{r:?} {r2:?}"),
    );
    let r = pread(fd, &mut b4, cfg + size);
    t.check(
        "config read past the end is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    ids
}

/// Config-space permissions a guest relies on: read-only identity, BAR
/// sizing, status bits, the interrupt registers, a well-formed capability
/// list. Every register changed is put back.
pub(crate) fn perms(t: &mut Ktap, fd: &OwnedFd, cfg: u64) {
    let ids = cfg_rd(fd, cfg, PCI_VENDOR_ID, 4);
    cfg_wr(fd, cfg, PCI_VENDOR_ID, 4, !0);
    let after = cfg_rd(fd, cfg, PCI_VENDOR_ID, 4);
    t.check(
        "vendor and device IDs are read-only",
        ids.is_some() && after == ids,
        || format!("{ids:x?} -> {after:x?}"),
    );
    let class = cfg_rd(fd, cfg, PCI_CLASS_REVISION, 4);
    cfg_wr(fd, cfg, PCI_CLASS_REVISION, 4, 0);
    let after = cfg_rd(fd, cfg, PCI_CLASS_REVISION, 4);
    t.check(
        "class code and revision are read-only",
        class.is_some() && after == class,
        || format!("{class:x?} -> {after:x?}"),
    );

    // BAR sizing: all ones in, the size mask and the type bits back.
    let bar0 = PCI_BASE_ADDRESS_0;
    let orig = cfg_rd(fd, cfg, bar0, 4).unwrap_or(0);
    cfg_wr(fd, cfg, bar0, 4, !0);
    let mask = cfg_rd(fd, cfg, bar0, 4).unwrap_or(0);
    cfg_wr(fd, cfg, bar0, 4, orig);
    let back = cfg_rd(fd, cfg, bar0, 4).unwrap_or(0);
    let (type_bits, addr) = if orig & PCI_BASE_ADDRESS_SPACE_IO != 0 {
        (0x3, !0x3)
    } else {
        (0xf, !0xf)
    };
    let size = (!(mask & addr)).wrapping_add(1);
    t.check(
        "BAR0 sizing reads back a power-of-two size mask and the type bits",
        mask != !0 && size.is_power_of_two() && size >= 4 && mask & type_bits == orig & type_bits,
        || format!("orig {orig:#x} mask {mask:#x}"),
    );
    t.check(
        "BAR0 takes its address back after sizing",
        back == orig,
        || format!("orig {orig:#x} back {back:#x}"),
    );

    bars64(t, fd, cfg);

    // Status: read-only bits survive a write of all ones, and the
    // write-one-to-clear error bits are not set by it.
    let rw1c = PCI_STATUS_PARITY
        | PCI_STATUS_SIG_TARGET_ABORT
        | PCI_STATUS_REC_TARGET_ABORT
        | PCI_STATUS_REC_MASTER_ABORT
        | PCI_STATUS_SIG_SYSTEM_ERROR
        | PCI_STATUS_DETECTED_PARITY;
    let read_only = 0xff | PCI_STATUS_DEVSEL_MASK;
    let st = cfg_rd(fd, cfg, PCI_STATUS, 2).unwrap_or(0);
    cfg_wr(fd, cfg, PCI_STATUS, 2, 0xffff);
    let st2 = cfg_rd(fd, cfg, PCI_STATUS, 2).unwrap_or(0);
    t.check(
        "status: read-only bits survive a write of ones, RW1C bits end clear",
        st2 & read_only == st & read_only && st2 & rw1c == 0,
        || format!("{st:#06x} -> {st2:#06x}"),
    );

    let pin = cfg_rd(fd, cfg, PCI_INTERRUPT_PIN, 1);
    cfg_wr(fd, cfg, PCI_INTERRUPT_PIN, 1, 0);
    let pin2 = cfg_rd(fd, cfg, PCI_INTERRUPT_PIN, 1);
    t.check(
        "interrupt pin is read-only",
        pin.is_some() && pin2 == pin,
        || format!("{pin:?} -> {pin2:?}"),
    );
    let line = cfg_rd(fd, cfg, PCI_INTERRUPT_LINE, 1).unwrap_or(0);
    cfg_wr(fd, cfg, PCI_INTERRUPT_LINE, 1, 0x0b);
    let line2 = cfg_rd(fd, cfg, PCI_INTERRUPT_LINE, 1);
    cfg_wr(fd, cfg, PCI_INTERRUPT_LINE, 1, line);
    t.check("interrupt line is read-write", line2 == Some(0x0b), || {
        format!("{line2:?}")
    });

    // The capability list, when the status register announces one: every
    // pointer dword aligned and past the header, every ID non-zero, and the
    // list ends (at most 48 entries fit in 192 bytes).
    let mut caps = Vec::new();
    let mut pm = None;
    let mut well_formed = true;
    if st & PCI_STATUS_CAP_LIST != 0 {
        let mut p = cfg_rd(fd, cfg, PCI_CAPABILITY_LIST, 1).unwrap_or(0);
        while p != 0 {
            let id = cfg_rd(fd, cfg, p, 1).unwrap_or(0);
            if !(PCI_STD_HEADER_SIZEOF..=0xfc).contains(&p)
                || p & 3 != 0
                || id == 0
                || caps.len() >= 48
            {
                well_formed = false;
                break;
            }
            caps.push(format!("{id:02x}@{p:02x}"));
            if id == PCI_CAP_ID_PM {
                pm = Some(u64::from(p));
            }
            p = cfg_rd(fd, cfg, p + PCI_CAP_LIST_NEXT, 1).unwrap_or(0);
        }
    }
    t.diag(&format!("capabilities: {}", caps.join(" ")));
    t.check(
        "the capability list is absent or well formed",
        well_formed,
        || caps.join(" "),
    );

    // Power management: D3hot and back to D0; a state PMC does not offer
    // (D1 here, when unsupported) is discarded.
    if let Some(pm) = pm {
        let (pmc_reg, ctrl_reg) = (pm + u64::from(PCI_PM_PMC), pm + u64::from(PCI_PM_CTRL));
        let pmc = cfg_rd(fd, cfg, pmc_reg, 2).unwrap_or(0);
        let ctrl = cfg_rd(fd, cfg, ctrl_reg, 2).unwrap_or(0) & !PCI_PM_CTRL_STATE_MASK;
        let state = || cfg_rd(fd, cfg, ctrl_reg, 2).map(|v| v & PCI_PM_CTRL_STATE_MASK);
        // D3hot is power state 3, D1 is 1, D0 is 0.
        cfg_wr(fd, cfg, ctrl_reg, 2, ctrl | 3);
        let d3 = state();
        let d1_refused = if pmc & PCI_PM_CAP_D1 == 0 {
            cfg_wr(fd, cfg, ctrl_reg, 2, ctrl | 1);
            state() == Some(3)
        } else {
            true
        };
        cfg_wr(fd, cfg, ctrl_reg, 2, ctrl);
        let d0 = state();
        t.check(
            "PM: D3hot and back to D0, an unsupported state is discarded",
            d3 == Some(3) && d1_refused && d0 == Some(0),
            || format!("pmc {pmc:#x} d3 {d3:?} d1 refused {d1_refused} d0 {d0:?}"),
        );
    }
}

/// 64-bit memory BARs: sizing both registers with all ones reads back a
/// 64-bit power-of-two mask whose low register keeps the type bits, both
/// registers take their address back, and the upper register's region is
/// empty (vfio-pci reports the upper half of a 64-bit BAR so). A device
/// without one (mtty) passes with nothing to check.
fn bars64(t: &mut Ktap, fd: &OwnedFd, cfg: u64) {
    let type_mask = PCI_BASE_ADDRESS_SPACE_IO | PCI_BASE_ADDRESS_MEM_TYPE_MASK;
    let flag_bits = !(PCI_BASE_ADDRESS_MEM_MASK as u32);
    let mut i = 0;
    while i < 5 {
        let lo = u64::from(PCI_BASE_ADDRESS_0) + 4 * i;
        let hi = lo + 4;
        let orig = cfg_rd(fd, cfg, lo, 4).unwrap_or(0);
        if orig & type_mask != PCI_BASE_ADDRESS_MEM_TYPE_64 {
            i += 1;
            continue;
        }
        let orig_hi = cfg_rd(fd, cfg, hi, 4).unwrap_or(0);
        cfg_wr(fd, cfg, lo, 4, !0);
        cfg_wr(fd, cfg, hi, 4, !0);
        let mask_lo = cfg_rd(fd, cfg, lo, 4).unwrap_or(0);
        let mask_hi = cfg_rd(fd, cfg, hi, 4).unwrap_or(0);
        cfg_wr(fd, cfg, lo, 4, orig);
        cfg_wr(fd, cfg, hi, 4, orig_hi);
        let back = (cfg_rd(fd, cfg, lo, 4), cfg_rd(fd, cfg, hi, 4));
        let mask = u64::from(mask_lo & !flag_bits) | u64::from(mask_hi) << 32;
        let size = (!mask).wrapping_add(1);
        // A power-of-two size means the mask is ones down to the size.
        t.check(
            &format!("BAR{i}: 64-bit sizing of both registers reads back a power-of-two mask and the type bits"),
            size.is_power_of_two() && size >= 16 && mask_lo & flag_bits == orig & flag_bits,
            || format!("orig {orig_hi:#x}:{orig:#x} mask {mask_hi:#x}:{mask_lo:#x}"),
        );
        t.check(
            &format!("BAR{i}: a 64-bit BAR takes its address back after sizing"),
            back == (Some(orig), Some(orig_hi)),
            || format!("orig {orig_hi:#x}:{orig:#x} back {back:x?}"),
        );
        let r = region(fd, i as u32);
        t.check(
            &format!("BAR{i}: the region's size is the 64-bit BAR's size"),
            r.is_some_and(|r| r.1 == size),
            || format!("region {r:x?} size {size:#x}"),
        );
        let up = region(fd, i as u32 + 1);
        t.check(
            &format!(
                "BAR{}: the upper half of 64-bit BAR{i} is an empty region",
                i + 1
            ),
            up.is_some_and(|r| r.1 == 0),
            || format!("region {up:x?}"),
        );
        i += 2;
    }
}
