// SPDX-License-Identifier: GPL-2.0

//! Checks of a PCI Express function: extended configuration space, Function
//! Level Reset through the PCI Express capability, MSI-X and the ERR
//! interrupt. They run on any device whose capability list has a PCI
//! Express capability; the contract is vfio-pci's for the same function.

use crate::vfio_uapi::VFIO_DEVICE_GET_IRQ_INFO;
use crate::{
    cfg_rd, cfg_wr, get32, ioctl_buf, pread, pwrite, region, set_irqs, u32s, Efd, Ktap,
    VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD,
    VFIO_IRQ_SET_DATA_NONE, VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX,
};
use std::os::fd::OwnedFd;

const VFIO_PCI_ERR_IRQ_INDEX: u32 = 3;
const CAP_EXP: u8 = 0x10;
const CAP_MSIX: u8 = 0x11;
const CAP_VNDR: u8 = 0x09;
const EXP_DEVCAP: u64 = 4;
const EXP_DEVCTL: u64 = 8;
const DEVCAP_FLR: u32 = 1 << 28;
const DEVCTL_FLR: u32 = 1 << 15;
const CMD_MASTER: u32 = 1 << 2;

/// The capability list as (offset, id), walked with a bound.
fn caps(fd: &OwnedFd, cfg: u64) -> Vec<(u64, u8)> {
    let mut out = Vec::new();
    let mut p = cfg_rd(fd, cfg, 0x34, 1).unwrap_or(0) as u64 & !3;
    while p >= 0x40 && out.len() < 48 {
        let id = cfg_rd(fd, cfg, p, 1).unwrap_or(0) as u8;
        out.push((p, id));
        p = cfg_rd(fd, cfg, p + 1, 1).unwrap_or(0) as u64 & !3;
    }
    out
}

fn irq_info(fd: &OwnedFd, index: u32) -> Result<(u32, u32), i32> {
    let mut b = u32s(&[16, 0, index, 0], 16);
    ioctl_buf(fd, VFIO_DEVICE_GET_IRQ_INFO, &mut b).map(|_| (get32(&b, 4), get32(&b, 12)))
}

/// Runs the checks if the device is a PCI Express function.
pub(crate) fn checks(t: &mut Ktap, fd: &OwnedFd, cfg: u64, cfg_size: u64) {
    let list = caps(fd, cfg);
    let Some(&(exp, _)) = list.iter().find(|c| c.1 == CAP_EXP) else {
        return;
    };
    t.check(
        "PCI Express: config region is 4 KiB",
        cfg_size == 4096,
        || format!("size {cfg_size}"),
    );
    // An extended list: an all-zero header (none) or headers that chain
    // upwards within extended space and end.
    let mut p = 0x100u64;
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
                p = u64::from(h >> 20) & !3;
                if p < 0x100 {
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
    if let Some(&(v, _)) = list.iter().find(|c| c.1 == CAP_VNDR) {
        let len = cfg_rd(fd, cfg, v + 2, 1).unwrap_or(0) as u64;
        t.check(
            "vendor-specific capability length covers its header and fits",
            len >= 3 && v + len <= 256,
            || format!("at {v:#x} length {len}"),
        );
    }

    let bar0 = region(fd, 0).filter(|r| r.1 >= 8).map(|r| r.0);
    let serial = cfg_rd(fd, cfg, 0, 4) == Some(0x3253_4348);
    let devcap = cfg_rd(fd, cfg, exp + EXP_DEVCAP, 4).unwrap_or(0);
    if devcap & DEVCAP_FLR != 0 {
        let cmd = cfg_rd(fd, cfg, 4, 2).unwrap_or(0);
        cfg_wr(fd, cfg, 4, 2, cmd | CMD_MASTER);
        if let (true, Some(b)) = (serial, bar0) {
            let _ = pwrite(fd, &[0x77], b + 7);
        }
        let ctl = cfg_rd(fd, cfg, exp + EXP_DEVCTL, 2).unwrap_or(0);
        cfg_wr(fd, cfg, exp + EXP_DEVCTL, 2, ctl | DEVCTL_FLR);
        let after = cfg_rd(fd, cfg, exp + EXP_DEVCTL, 2).unwrap_or(0);
        t.check(
            "FLR: Initiate Function Level Reset reads back zero",
            after & DEVCTL_FLR == 0,
            || format!("devctl {after:#x}"),
        );
        let cmd2 = cfg_rd(fd, cfg, 4, 2).unwrap_or(0);
        t.check(
            "FLR: the command register returns to its reset value",
            cmd2 & CMD_MASTER == 0,
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
        matches!(err, Ok((f, 1)) if f & 1 != 0),
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

    let Some(&(mx, _)) = list.iter().find(|c| c.1 == CAP_MSIX) else {
        return;
    };
    let ctrl = cfg_rd(fd, cfg, mx + 2, 2).unwrap_or(0);
    let table = cfg_rd(fd, cfg, mx + 4, 4).unwrap_or(0);
    let vectors = (ctrl & 0x7ff) + 1;
    let info = irq_info(fd, VFIO_PCI_MSIX_IRQ_INDEX);
    t.check(
        "MSI-X: IRQ_INFO counts the table's vectors",
        matches!(info, Ok((f, c)) if f & 1 != 0 && c == vectors),
        || format!("{info:?}, table has {vectors}"),
    );
    if let Some((off, size)) = region(fd, table & 7) {
        let at = u64::from(table & !7);
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
