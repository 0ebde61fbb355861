// SPDX-License-Identifier: GPL-2.0

//! Byte registers in a PCI BAR, through `ioread8()`/`iowrite8()`.
//!
//! Upstream's [`pci::Bar`] maps a BAR with `pci_iomap()`, which works for
//! I/O and memory BARs alike, but its accessors are `readb()` and friends,
//! which are for memory only. Serial cards mostly have I/O BARs (QEMU's
//! `pci-serial` cards all do), so registers are read and written here with
//! the `ioread8()` family, which takes either kind of `pci_iomap()` cookie.
//! The BAR itself stays upstream's: requested, mapped and unmapped by
//! [`pci::Bar`], and revoked on unbind when held in a
//! [`kernel::devres::Devres`].
//!
//! [`pci::Bar`]: kernel::pci::Bar

use core::ffi::c_void;
use kernel::{bindings, io::Io, pci, prelude::*};

/// How many registers a window has: a 16550's eight.
pub(crate) const WINDOW: usize = 8;

/// The eight registers of one port at `off` in a mapped BAR.
///
/// # Invariants
///
/// `off + WINDOW <= bar.maxsize()`: every register is inside the mapping,
/// which lives as long as the borrow of `bar`.
pub(crate) struct Regs<'a> {
    bar: &'a pci::Bar<'static>,
    off: usize,
}

impl<'a> Regs<'a> {
    /// The registers at `off` in `bar`; `EINVAL` when they do not fit.
    pub(crate) fn new(bar: &'a pci::Bar<'static>, off: usize) -> Result<Self> {
        let end = off.checked_add(WINDOW).ok_or(EINVAL)?;
        if end > bar.maxsize() {
            return Err(EINVAL);
        }
        // INVARIANT: Checked above.
        Ok(Self { bar, off })
    }

    /// Reads register `reg` (0-7); a register outside the window reads as
    /// an absent device does, all ones.
    #[inline]
    pub(crate) fn read(&self, reg: u8) -> u8 {
        let reg = usize::from(reg);
        if reg >= WINDOW {
            return 0xff;
        }
        let addr = self.bar.addr() + self.off + reg;
        // SAFETY: `addr` is inside the BAR's `pci_iomap()` mapping (the type
        // invariant and the check above), which `ioread8()` accepts whether
        // it maps port or memory space. The value fits a byte.
        (unsafe { bindings::ioread8(addr as *const c_void) }) as u8
    }

    /// Writes `v` to register `reg` (0-7); a register outside the window is
    /// ignored.
    #[inline]
    pub(crate) fn write(&self, reg: u8, v: u8) {
        let reg = usize::from(reg);
        if reg >= WINDOW {
            return;
        }
        let addr = self.bar.addr() + self.off + reg;
        // SAFETY: As in `read`.
        unsafe { bindings::iowrite8(v, addr as *mut c_void) }
    }
}
