// SPDX-License-Identifier: GPL-2.0

//! PCI configuration space as data.
//!
//! The model follows `drivers/vfio/pci/vfio_pci_config.c`: every byte has a
//! value and permission bits. The zero state is "all readable, nothing
//! writable"; a table of [`Perm`] lines, each with its reason, opens bits for
//! the guest. Writes merge only writable bits, and write-1-to-clear bits are
//! cleared by the ones written to them. BAR sizing needs no code of its own: a
//! BAR's writable bits are exactly the address bits above its size, so writing
//! all-ones reads back the size mask with the read-only type bits.

use super::{EResult, Errno};

mod express;
mod header;
mod msi;
mod msix;
mod pm;
mod vendor;

pub(crate) use header::{Bar, BARS};

/// Size of conventional PCI configuration space.
pub(crate) const CFG_SIZE: usize = 256;

/// Size of PCI Express extended configuration space (PCIe 6.x, 7.2.2): the
/// conventional 256 bytes followed by extended capabilities from 0x100.
pub(crate) const CFG_EXT_SIZE: usize = 4096;

/// Offset of the first extended capability header (PCIe 6.x, 7.6.3).
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "no extended capability yet: only the tests look there"
    )
)]
pub(crate) const EXT_CAP_START: usize = CFG_SIZE;

/// Offsets and bits of the standard type-0 header (PCI Local Bus 3.0, 6.1).
/// The table is complete on purpose, whether or not every entry is used yet.
#[expect(dead_code, reason = "a complete table of the specification")]
pub(crate) mod reg {
    pub(crate) const VENDOR_ID: usize = 0x00;
    pub(crate) const DEVICE_ID: usize = 0x02;
    pub(crate) const COMMAND: usize = 0x04;
    pub(crate) const STATUS: usize = 0x06;
    pub(crate) const REVISION: usize = 0x08;
    pub(crate) const CLASS_PROG: usize = 0x09;
    pub(crate) const CACHE_LINE: usize = 0x0c;
    pub(crate) const LATENCY: usize = 0x0d;
    pub(crate) const HEADER_TYPE: usize = 0x0e;
    pub(crate) const BAR0: usize = 0x10;
    pub(crate) const SUBSYS_VENDOR: usize = 0x2c;
    pub(crate) const SUBSYS_ID: usize = 0x2e;
    pub(crate) const ROM: usize = 0x30;
    pub(crate) const CAP_PTR: usize = 0x34;
    pub(crate) const INT_LINE: usize = 0x3c;
    pub(crate) const INT_PIN: usize = 0x3d;

    pub(crate) const CMD_IO: u16 = 1 << 0;
    pub(crate) const CMD_MEMORY: u16 = 1 << 1;
    pub(crate) const CMD_MASTER: u16 = 1 << 2;
    pub(crate) const CMD_PARITY: u16 = 1 << 6;
    pub(crate) const CMD_SERR: u16 = 1 << 8;
    pub(crate) const CMD_INTX_DISABLE: u16 = 1 << 10;

    pub(crate) const STATUS_INTERRUPT: u16 = 1 << 3;
    pub(crate) const STATUS_CAP_LIST: u16 = 1 << 4;
    pub(crate) const STATUS_DEVSEL_MEDIUM: u16 = 1 << 9;
    /// Master data parity error, signalled/received target abort, received
    /// master abort, signalled system error, detected parity error.
    pub(crate) const STATUS_RW1C: u16 =
        (1 << 8) | (1 << 11) | (1 << 12) | (1 << 13) | (1 << 14) | (1 << 15);
}

/// Capability IDs, register offsets and bits (PCI Local Bus 3.0, 6.7 and
/// 6.8; PCIe 6.x, 7.5.3 and 7.7). The tables are complete on purpose,
/// whether or not every entry is used yet.
#[expect(dead_code, reason = "a complete table of the specification")]
pub(crate) mod cap {
    pub(crate) const ID_PM: u8 = 0x01;
    pub(crate) const PM_PMC: usize = 2;
    pub(crate) const PM_CTRL: usize = 4;
    /// PMC: PCI Power Management spec version 1.2 (value 3); no D1, no D2,
    /// no PME.
    pub(crate) const PM_PMC_VERSION_1_2: u16 = 0x0003;
    pub(crate) const PM_CTRL_STATE_MASK: u16 = 0x0003;
    pub(crate) const PM_CTRL_NO_SOFT_RESET: u16 = 1 << 3;
    pub(crate) const ID_MSI: u8 = 0x05;
    pub(crate) const MSI_FLAGS: usize = 2;
    pub(crate) const MSI_ADDRESS_LO: usize = 4;
    pub(crate) const MSI_ADDRESS_HI: usize = 8;
    pub(crate) const MSI_DATA_32: usize = 8;
    pub(crate) const MSI_MASK_32: usize = 0x0c;
    pub(crate) const MSI_PENDING_32: usize = 0x10;
    pub(crate) const MSI_DATA_64: usize = 12;
    pub(crate) const MSI_MASK_64: usize = 0x10;
    pub(crate) const MSI_PENDING_64: usize = 0x14;
    pub(crate) const MSI_FLAGS_ENABLE: u16 = 1 << 0;
    /// Message control: Multiple Message Capable, log2 of the vectors.
    pub(crate) const MSI_FLAGS_QMASK: u16 = 0x0e;
    pub(crate) const MSI_FLAGS_QSIZE: u16 = 0x70;
    pub(crate) const MSI_FLAGS_64BIT: u16 = 1 << 7;
    /// Message control: Per-Vector Masking Capable.
    pub(crate) const MSI_FLAGS_MASKBIT: u16 = 1 << 8;
    /// Bytes of a 32-bit MSI capability without per-vector masking.
    pub(crate) const MSI_SIZEOF_32: usize = 10;
    /// Bytes of a 64-bit MSI capability without per-vector masking.
    pub(crate) const MSI_SIZEOF_64: usize = 14;
    /// Bytes of a 32-bit MSI capability with per-vector masking.
    pub(crate) const MSI_SIZEOF_32_MASK: usize = 0x14;
    /// Bytes of a 64-bit MSI capability with per-vector masking.
    pub(crate) const MSI_SIZEOF_64_MASK: usize = 0x18;
    /// Bytes of a power management capability.
    pub(crate) const PM_SIZEOF: usize = 8;

    /// Vendor-specific capability (PCI Local Bus 3.0, 6.8): ID, next
    /// pointer and length byte, then the vendor's data.
    pub(crate) const ID_VNDR: u8 = 0x09;
    pub(crate) const VNDR_LEN: usize = 2;
    /// Bytes of the vendor-specific capability's header.
    pub(crate) const VNDR_HEADER: usize = 3;

    /// MSI-X capability (PCIe 6.x, 7.7.2).
    pub(crate) const ID_MSIX: u8 = 0x11;
    pub(crate) const MSIX_FLAGS: usize = 2;
    pub(crate) const MSIX_TABLE: usize = 4;
    pub(crate) const MSIX_PBA: usize = 8;
    /// Bytes of an MSI-X capability.
    pub(crate) const MSIX_SIZEOF: usize = 12;
    /// Message control: Table Size, the number of vectors minus one.
    pub(crate) const MSIX_FLAGS_QSIZE: u16 = 0x07ff;
    /// Message control: Function Mask.
    pub(crate) const MSIX_FLAGS_MASKALL: u16 = 1 << 14;
    /// Message control: MSI-X Enable.
    pub(crate) const MSIX_FLAGS_ENABLE: u16 = 1 << 15;
    /// Table and PBA offset registers: the BAR indicator bits.
    pub(crate) const MSIX_BIR: u32 = 0x7;

    /// PCI Express capability (PCIe 6.x, 7.5.3).
    pub(crate) const ID_EXP: u8 = 0x10;
    pub(crate) const EXP_FLAGS: usize = 0x02;
    pub(crate) const EXP_DEVCAP: usize = 0x04;
    pub(crate) const EXP_DEVCTL: usize = 0x08;
    pub(crate) const EXP_DEVSTA: usize = 0x0a;
    pub(crate) const EXP_LNKCAP: usize = 0x0c;
    pub(crate) const EXP_LNKCTL: usize = 0x10;
    pub(crate) const EXP_LNKSTA: usize = 0x12;
    pub(crate) const EXP_DEVCAP2: usize = 0x24;
    pub(crate) const EXP_DEVCTL2: usize = 0x28;
    pub(crate) const EXP_LNKCAP2: usize = 0x2c;
    pub(crate) const EXP_LNKCTL2: usize = 0x30;
    /// Bytes of a version 2 PCI Express capability, slot registers included.
    pub(crate) const EXP_SIZEOF_V2: usize = 0x3c;
    /// Capabilities register: version 2, device/port type 0 (endpoint).
    pub(crate) const EXP_FLAGS_V2_ENDPOINT: u16 = 0x0002;
    /// Device capabilities: Max_Payload_Size Supported is 0 (128 bytes).
    pub(crate) const EXP_DEVCAP_PAYLOAD: u32 = 0x7;
    /// Device capabilities: role-based error reporting, which every function
    /// since PCIe 1.1 must set.
    pub(crate) const EXP_DEVCAP_RBER: u32 = 1 << 15;
    /// Device capabilities: Function Level Reset capable.
    pub(crate) const EXP_DEVCAP_FLR: u32 = 1 << 28;
    /// Device control: correctable, non-fatal, fatal and unsupported
    /// request reporting enables.
    pub(crate) const EXP_DEVCTL_REPORTING: u16 = 0x000f;
    pub(crate) const EXP_DEVCTL_RELAX_EN: u16 = 1 << 4;
    pub(crate) const EXP_DEVCTL_PAYLOAD: u16 = 0x00e0;
    pub(crate) const EXP_DEVCTL_EXT_TAG: u16 = 1 << 8;
    pub(crate) const EXP_DEVCTL_PHANTOM: u16 = 1 << 9;
    pub(crate) const EXP_DEVCTL_AUX_PME: u16 = 1 << 10;
    pub(crate) const EXP_DEVCTL_NOSNOOP_EN: u16 = 1 << 11;
    pub(crate) const EXP_DEVCTL_READRQ: u16 = 0x7000;
    /// Max_Read_Request_Size 512 bytes, the reset value the spec gives.
    pub(crate) const EXP_DEVCTL_READRQ_512B: u16 = 0x2000;
    pub(crate) const EXP_DEVCTL_BCR_FLR: u16 = 1 << 15;
    /// Device status: correctable, non-fatal, fatal and unsupported request
    /// detected, all write-1-to-clear.
    pub(crate) const EXP_DEVSTA_ERRORS: u16 = 0x000f;
    /// Link capabilities: 2.5 GT/s (bit 0 of the supported speeds vector).
    pub(crate) const EXP_LNKCAP_SLS_2_5GB: u32 = 0x1;
    /// Link capabilities: maximum width x1.
    pub(crate) const EXP_LNKCAP_MLW_X1: u32 = 0x1 << 4;
    /// Link capabilities: ASPM optionality compliance, set by every function
    /// built to PCIe 3.0 or later.
    pub(crate) const EXP_LNKCAP_ASPM_OPT: u32 = 1 << 22;
    pub(crate) const EXP_LNKCTL_ASPMC: u16 = 0x0003;
    pub(crate) const EXP_LNKCTL_RCB: u16 = 1 << 3;
    pub(crate) const EXP_LNKCTL_CCC: u16 = 1 << 6;
    pub(crate) const EXP_LNKCTL_ES: u16 = 1 << 7;
    /// Link status: current speed 2.5 GT/s.
    pub(crate) const EXP_LNKSTA_CLS_2_5GB: u16 = 0x1;
    /// Link status: negotiated width x1.
    pub(crate) const EXP_LNKSTA_NLW_X1: u16 = 0x1 << 4;
    /// Link status: slot clock configuration (the platform's reference clock).
    pub(crate) const EXP_LNKSTA_SLC: u16 = 1 << 12;
    /// Link capabilities 2: supported link speeds vector, 2.5 GT/s only.
    pub(crate) const EXP_LNKCAP2_SLS_2_5GB: u32 = 1 << 1;
    /// Link control 2: target link speed 2.5 GT/s.
    pub(crate) const EXP_LNKCTL2_TLS_2_5GT: u16 = 0x1;
}

/// One permission line: which bits of a register the guest may change.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Perm {
    /// Offset of the register.
    pub(crate) off: usize,
    /// Width of the register in bytes (1, 2 or 4).
    pub(crate) len: usize,
    /// Bits a write stores.
    pub(crate) write: u32,
    /// Bits a write of one clears.
    pub(crate) rw1c: u32,
    /// Why the register has these permissions: documentation kept as data
    /// next to the bits, read by the host tests.
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the host tests only"))]
    pub(crate) why: &'static str,
}

/// Which bits of each configuration byte can change after reset (see
/// [`ConfigSpace::change_map`]).
#[derive(Clone)]
pub(crate) struct ChangeMap {
    bits: [u8; CFG_SIZE],
    /// The offsets of the bytes with any changeable bit, in order, in the
    /// first `len` entries: saving and loading visit those bytes only,
    /// not all of conventional space.
    at: [u8; CFG_SIZE],
    /// Bytes with any changeable bit.
    len: usize,
}

// Every offset of conventional space fits in a byte of `ChangeMap::at`.
const _: () = assert!(CFG_SIZE <= 1 << u8::BITS);

impl ChangeMap {
    /// The number of bytes [`ConfigSpace::changeable_bytes`] gives.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The offsets of the changeable bytes, in order.
    fn offsets(&self) -> impl Iterator<Item = usize> + '_ {
        self.at.iter().take(self.len).map(|&o| usize::from(o))
    }

    /// Whether `saved` has one byte per changeable byte (`EINVAL` if not).
    pub(crate) fn check(&self, saved: &[u8]) -> EResult {
        if saved.len() == self.len {
            Ok(())
        } else {
            Err(Errno::Inval)
        }
    }
}

/// Where a function's MSI-X table and pending bit array are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MsixLayout {
    /// Vectors in the table.
    pub(crate) vectors: u32,
    /// The BAR holding the table.
    pub(crate) table_bar: usize,
    /// The table's bytes within that BAR.
    pub(crate) table: core::ops::Range<u64>,
    /// The BAR holding the pending bit array.
    pub(crate) pba_bar: usize,
    /// The array's bytes within that BAR.
    pub(crate) pba: core::ops::Range<u64>,
}

/// A configuration space: values and permission bits, byte by byte.
///
/// The arrays hold conventional space only ([`CFG_SIZE`] bytes). A PCI
/// Express function's extended space ([`ConfigSpace::size`] is then
/// [`CFG_EXT_SIZE`]) has no extended capability yet, so it reads zero (an
/// empty extended capability list) and ignores writes, and needs no storage:
/// the value stays under 1 KiB, cheap to clone for the reset copy and safe on
/// the kernel stack. A builder of extended capabilities will need storage
/// for the bytes it uses.
///
/// # Invariants
///
/// `write[i] & rw1c[i] == 0` for every byte: a bit is either stored or
/// cleared by writes, never both. `size` is [`CFG_SIZE`] or [`CFG_EXT_SIZE`].
#[derive(Clone)]
pub(crate) struct ConfigSpace {
    val: [u8; CFG_SIZE],
    write: [u8; CFG_SIZE],
    rw1c: [u8; CFG_SIZE],
    /// Bytes the guest can reach: [`CFG_SIZE`] or [`CFG_EXT_SIZE`].
    size: usize,
    /// Offset of the power management capability, 0 if there is none.
    pm: usize,
    /// Offset of the PCI Express capability, 0 if there is none.
    pcie: usize,
    /// Offset of the MSI-X capability, 0 if there is none.
    msix: usize,
    /// Offset of the MSI capability, 0 if there is none.
    msi: usize,
    /// Whether a guest write asked for a Function Level Reset that the
    /// library has not yet taken (see [`ConfigSpace::take_flr_request`]).
    flr: bool,
    /// Bytes of conventional space the header and the capabilities occupy,
    /// one bit per byte, so that a builder refuses to overlap them.
    used: [u64; CFG_SIZE / 64],
    /// The BARs [`ConfigSpace::set_bar`] configured, so that a 64-bit BAR
    /// does not take a register another BAR holds.
    bars: [Bar; BARS],
}

impl ConfigSpace {
    /// An all-zero, read-only configuration space.
    pub(crate) const fn new() -> Self {
        Self {
            val: [0; CFG_SIZE],
            write: [0; CFG_SIZE],
            rw1c: [0; CFG_SIZE],
            size: CFG_SIZE,
            pm: 0,
            pcie: 0,
            msix: 0,
            msi: 0,
            flr: false,
            // The type-0 header takes the first 64 bytes.
            used: [u64::MAX, 0, 0, 0],
            bars: [Bar::None; BARS],
        }
    }

    /// The number of bytes of configuration space the guest can reach:
    /// [`CFG_SIZE`], or [`CFG_EXT_SIZE`] for a PCI Express function.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Makes the space 4096 bytes long, as every PCI Express function's is
    /// (builder use; the PCI Express capability builder calls it). With no
    /// extended capability added, the header at 0x100 stays all zero, which
    /// says "no extended capabilities" (PCIe 6.x, 7.6.3); the rest of
    /// extended space reads zero and is read-only.
    pub(crate) fn set_extended(&mut self) {
        self.size = CFG_EXT_SIZE;
    }

    /// Sets the reset value of a `len`-byte register (builder use).
    pub(crate) fn set(&mut self, off: usize, len: usize, v: u32) {
        for i in 0..len.min(4) {
            if let Some(b) = self.val.get_mut(off + i) {
                *b = (v >> (8 * i)) as u8;
            }
        }
    }

    /// Applies one permission line (builder use).
    pub(crate) fn apply(&mut self, p: &Perm) {
        for i in 0..p.len.min(4) {
            let (w, c) = ((p.write >> (8 * i)) as u8, (p.rw1c >> (8 * i)) as u8);
            if let (Some(wb), Some(cb)) =
                (self.write.get_mut(p.off + i), self.rw1c.get_mut(p.off + i))
            {
                // INVARIANT: a bit marked RW1C is never also a stored bit.
                *wb = w & !c;
                *cb = c;
            }
        }
    }

    /// Whether byte `i` of conventional space is taken (out of range counts
    /// as taken).
    fn is_used(&self, i: usize) -> bool {
        match self.used.get(i / 64) {
            Some(w) => w & (1 << (i % 64)) != 0,
            None => true,
        }
    }

    /// Marks `len` bytes at `off` as taken, as far as they lie in
    /// conventional space.
    fn mark_used(&mut self, off: usize, len: usize) {
        for i in off..off.saturating_add(len).min(CFG_SIZE) {
            if let Some(w) = self.used.get_mut(i / 64) {
                *w |= 1 << (i % 64);
            }
        }
    }

    /// Takes `len` bytes at `off` for a new capability: fails with `EINVAL`,
    /// changing nothing, unless the capability starts dword aligned after
    /// the header, ends inside conventional space and overlaps nothing
    /// taken before.
    fn claim(&mut self, off: usize, len: usize) -> EResult {
        let end = off.checked_add(len).ok_or(Errno::Inval)?;
        if off < 0x40 || off & 3 != 0 || end > CFG_SIZE || (off..end).any(|i| self.is_used(i)) {
            return Err(Errno::Inval);
        }
        self.mark_used(off, len);
        Ok(())
    }

    /// Links a capability with ID `id` at `off` into the capability list
    /// (at its head) and sets the status bit that announces the list.
    fn link_cap(&mut self, off: usize, id: u8) {
        let head = self.val[reg::CAP_PTR];
        self.set(off, 1, id.into());
        self.set(off + 1, 1, head.into());
        self.set(reg::CAP_PTR, 1, off as u32);
        self.set_status_bits(reg::STATUS_CAP_LIST, true);
    }

    /// A little-endian 32-bit register.
    fn u32_at(&self, off: usize) -> u32 {
        u32::from(self.u16_at(off)) | u32::from(self.u16_at(off.saturating_add(2))) << 16
    }

    /// Walks the capability list and returns the `(offset, id)` pairs, at
    /// most 48 of them (a loop in a corrupt list cannot hang the walk).
    pub(crate) fn caps(&self, out: &mut [(usize, u8)]) -> usize {
        let mut n = 0;
        let mut p = usize::from(self.val[reg::CAP_PTR] & !3);
        while p >= 0x40 && n < out.len() && n < 48 {
            out[n] = (p, self.val[p]);
            n += 1;
            p = usize::from(self.val[p + 1] & !3);
        }
        n
    }

    /// The byte range `off..off + len`, if it lies inside the first
    /// [`ConfigSpace::size`] bytes.
    fn range(&self, off: usize, len: usize) -> EResult<core::ops::Range<usize>> {
        let end = off.checked_add(len).ok_or(Errno::Inval)?;
        if end > self.size {
            return Err(Errno::Inval);
        }
        Ok(off..end)
    }

    /// Reads `out.len()` bytes at `off`.
    ///
    /// Fails with `EINVAL` if any byte lies outside configuration space
    /// (past [`ConfigSpace::size`]).
    pub(crate) fn read(&self, off: usize, out: &mut [u8]) -> EResult {
        let r = self.range(off, out.len())?;
        // Stored bytes first; extended space past them reads zero.
        let stored = r.start.min(CFG_SIZE)..r.end.min(CFG_SIZE);
        let src = self.val.get(stored).ok_or(Errno::Inval)?;
        let mut src = src.iter();
        for b in out.iter_mut() {
            *b = src.next().copied().unwrap_or(0);
        }
        Ok(())
    }

    /// Writes `data` at `off`, honouring every byte's permissions.
    ///
    /// Fails with `EINVAL`, changing nothing, if any byte lies outside
    /// configuration space (past [`ConfigSpace::size`]).
    #[inline(always)]
    pub(crate) fn write(&mut self, off: usize, data: &[u8]) -> EResult {
        let r = self.range(off, data.len())?;
        // Extended space holds nothing writable: only the stored bytes take
        // the write (the zip below stops at the shorter side).
        let r = r.start.min(CFG_SIZE)..r.end.min(CFG_SIZE);
        // Only a write that reaches the power state field can change it; the
        // check below is skipped for every other write.
        let pm_ctrl = self.pm + cap::PM_CTRL;
        let state = if self.pm != 0 && r.contains(&pm_ctrl) {
            self.power_state()
        } else {
            None
        };
        let (Some(val), Some(write), Some(rw1c)) = (
            self.val.get_mut(r.clone()),
            self.write.get(r.clone()),
            self.rw1c.get(r),
        ) else {
            return Err(Errno::Inval);
        };
        for (((v, &w), &c), &d) in val.iter_mut().zip(write).zip(rw1c).zip(data) {
            *v = ((*v & !w) | (d & w)) & !(d & c);
        }
        // Initiate FLR is not stored (it reads zero); a one written to it is
        // a request for the library.
        if self.pcie != 0 {
            let flr_byte = self.pcie + cap::EXP_DEVCTL + 1;
            let flr_bit = (cap::EXP_DEVCTL_BCR_FLR >> 8) as u8;
            if let Some(d) = flr_byte.checked_sub(off).and_then(|i| data.get(i)) {
                if d & flr_bit != 0 {
                    self.flr = true;
                }
            }
        }
        // A power state the capability does not offer: the write completes
        // and the state stays.
        if let Some(old) = state {
            if let (Some(1 | 2), Some(b)) = (self.power_state(), self.val.get_mut(pm_ctrl)) {
                *b = (*b & !(cap::PM_CTRL_STATE_MASK as u8)) | old;
            }
        }
        Ok(())
    }

    /// Every byte's bits that may differ from their reset value: the
    /// guest's (writable, write-1-to-clear) and the device's own (the
    /// interrupt status bit, MSI pending bits). Computed once per layout.
    pub(crate) fn change_map(&self) -> ChangeMap {
        let mut m = [0u8; CFG_SIZE];
        for ((d, w), c) in m.iter_mut().zip(&self.write).zip(&self.rw1c) {
            *d = w | c;
        }
        if let Some(b) = m.get_mut(reg::STATUS) {
            *b |= reg::STATUS_INTERRUPT as u8;
        }
        // The MSI pending bits of the vectors offered are the device's.
        if let Some((l, (_, pending))) = self.msi_layout().and_then(|l| Some((l, l.mask?))) {
            for k in 0..4 {
                if let Some(b) = m.get_mut(pending + k) {
                    *b |= (l.vector_bits() >> (8 * k)) as u8;
                }
            }
        }
        let mut at = [0u8; CFG_SIZE];
        let mut len = 0;
        for (i, _) in m.iter().enumerate().filter(|(_, &b)| b != 0) {
            // `i` is below `CFG_SIZE`, which fits in a byte (checked above),
            // and so is `len`.
            if let Some(slot) = at.get_mut(len) {
                *slot = i as u8;
                len += 1;
            }
        }
        ChangeMap { bits: m, at, len }
    }

    /// A fingerprint of everything that cannot change: the fixed bits'
    /// values and every permission mask. Two spaces built the same way (same
    /// IDs, BARs and capabilities) have the same one; a migration target
    /// compares it instead of the bytes themselves.
    pub(crate) fn layout_fingerprint(&self) -> u32 {
        let map = self.change_map();
        let mut crc = super::mig::Crc32::new();
        for (v, m) in self.val.iter().zip(&map.bits) {
            crc.update(&[v & !m]);
        }
        crc.update(&self.write);
        crc.update(&self.rw1c);
        crc.update(&(self.size as u32).to_le_bytes());
        crc.finish()
    }

    /// The bytes that can change (per `map`, this layout's
    /// [`Self::change_map`]), in offset order: what a migration stream
    /// carries of configuration space. The rest is the layout, which the
    /// target has too. The kernel writes them with
    /// [`Self::save_changeable`]; the tests read them here.
    #[cfg(test)]
    pub(crate) fn changeable_bytes<'a>(
        &'a self,
        map: &'a ChangeMap,
    ) -> impl Iterator<Item = u8> + 'a {
        map.offsets().map(|o| self.val.get(o).copied().unwrap_or(0))
    }

    /// Writes [`Self::changeable_bytes`] into `out`, which must hold exactly
    /// [`ChangeMap::len`] bytes (`EINVAL` otherwise, writing nothing).
    pub(crate) fn save_changeable(&self, map: &ChangeMap, out: &mut [u8]) -> EResult {
        map.check(out)?;
        for (d, o) in out.iter_mut().zip(map.offsets()) {
            *d = self.val.get(o).copied().unwrap_or(0);
        }
        Ok(())
    }

    /// Loads what [`Self::changeable_bytes`] gave on a source with the same
    /// layout: each byte's changeable bits are taken, the others stay.
    /// `EINVAL`, changing nothing, if `saved` has another length.
    pub(crate) fn restore_changeable(&mut self, map: &ChangeMap, saved: &[u8]) -> EResult {
        map.check(saved)?;
        for (&d, o) in saved.iter().zip(map.offsets()) {
            if let (Some(v), Some(&m)) = (self.val.get_mut(o), map.bits.get(o)) {
                *v = (*v & !m) | (d & m);
            }
        }
        Ok(())
    }

    /// A little-endian 16-bit register.
    pub(crate) fn u16_at(&self, off: usize) -> u16 {
        let lo = self.val.get(off).copied().unwrap_or(0);
        let hi = off
            .checked_add(1)
            .and_then(|o| self.val.get(o))
            .copied()
            .unwrap_or(0);
        u16::from_le_bytes([lo, hi])
    }

    /// The command register.
    pub(crate) fn command(&self) -> u16 {
        self.u16_at(reg::COMMAND)
    }

    /// Sets or clears device-owned status bits (for example the interrupt
    /// status bit), bypassing the guest's permissions.
    pub(crate) fn set_status_bits(&mut self, bits: u16, on: bool) {
        let s = self.u16_at(reg::STATUS);
        let s = if on { s | bits } else { s & !bits };
        self.set(reg::STATUS, 2, s.into());
    }
}

#[cfg(test)]
mod tests {
    use super::super::testrng::Rng;
    use super::express::pcie_perms;
    use super::header::HEADER_PERMS;
    use super::*;

    pub(super) fn serial_like() -> ConfigSpace {
        let mut c = ConfigSpace::with_header(0x4348, 0x3253, 0x07_00_02, 0x10);
        c.set_bar(0, Bar::Io(8)).unwrap();
        c.set_bar(1, Bar::Mem32(0x1000)).unwrap();
        c.set(reg::INT_PIN, 1, 1);
        c
    }

    #[test]
    fn changeable_bytes_move_state_and_the_fingerprint_the_layout() {
        let mut a = serial_like();
        a.add_pm(0x50);
        a.write(reg::BAR0, &0xc040u32.to_le_bytes()).unwrap();
        a.write(reg::COMMAND, &[1, 0]).unwrap();
        a.write(reg::INT_LINE, &[11]).unwrap();
        a.write(0x54, &[3, 0]).unwrap();
        a.set_status_bits(reg::STATUS_INTERRUPT, true);
        let mut buf = [0u8; CFG_SIZE];
        let mut n = 0;
        let map = a.change_map();
        for (d, b) in buf.iter_mut().zip(a.changeable_bytes(&map)) {
            *d = b;
            n += 1;
        }
        let saved = &buf[..n];
        assert!(saved.len() < 64, "only what can change travels");
        assert_eq!(map.len(), n);
        let mut out = [0xa5u8; CFG_SIZE];
        assert_eq!(a.save_changeable(&map, &mut out[..n]), Ok(()));
        assert_eq!(&out[..n], saved, "the same bytes as the iterator");
        assert_eq!(
            a.save_changeable(&map, &mut out[..n + 1]),
            Err(Errno::Inval)
        );
        assert_eq!(
            a.save_changeable(&map, &mut out[..n - 1]),
            Err(Errno::Inval)
        );
        let mut b = serial_like();
        b.add_pm(0x50);
        assert_eq!(b.layout_fingerprint(), a.layout_fingerprint());
        b.restore_changeable(&map, saved).unwrap();
        assert_eq!(b.val, a.val);
        assert_eq!(b.power_state(), Some(3));
        assert_eq!(rd32(&b, reg::BAR0), 0xc041);
        assert_eq!(b.restore_changeable(&map, &saved[1..]), Err(Errno::Inval));
        // Another layout: no PM capability, another device ID, a bigger BAR.
        let c = serial_like();
        assert_ne!(c.layout_fingerprint(), a.layout_fingerprint());
        let mut d = a.clone();
        d.set(reg::DEVICE_ID, 2, 0x1234);
        assert_ne!(d.layout_fingerprint(), a.layout_fingerprint());
        let mut e = serial_like();
        e.add_pm(0x50);
        e.set_bar(0, Bar::Io(16)).unwrap();
        assert_ne!(e.layout_fingerprint(), a.layout_fingerprint());
        // The guest's changes do not move the fingerprint.
        let mut f = a.clone();
        f.write(reg::COMMAND, &[0, 0]).unwrap();
        assert_eq!(f.layout_fingerprint(), a.layout_fingerprint());
    }

    pub(super) fn rd32(c: &ConfigSpace, off: usize) -> u32 {
        let mut b = [0u8; 4];
        c.read(off, &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    pub(super) fn wr32(c: &mut ConfigSpace, off: usize, v: u32) {
        c.write(off, &v.to_le_bytes()).unwrap();
    }

    #[test]
    fn accesses_past_the_end_fail_and_change_nothing() {
        let mut c = serial_like();
        let before = c.val;
        let mut b = [0u8; 4];
        assert_eq!(c.read(0xfd, &mut b), Err(Errno::Inval));
        assert_eq!(c.read(usize::MAX, &mut b), Err(Errno::Inval));
        assert_eq!(c.write(0xff, &[1, 2]), Err(Errno::Inval));
        assert_eq!(c.write(usize::MAX - 1, &[1, 2, 3]), Err(Errno::Inval));
        assert_eq!(c.val, before);
        // The last byte itself is in range.
        assert_eq!(c.read(0xff, &mut b[..1]), Ok(()));
    }

    #[test]
    fn a_looping_capability_list_ends() {
        let mut c = ConfigSpace::new();
        c.set(reg::CAP_PTR, 1, 0x40);
        c.set(0x40, 2, 0x4005);
        let mut caps = [(0, 0); 64];
        assert_eq!(c.caps(&mut caps), 48);
    }

    #[test]
    fn conventional_space_ends_at_256() {
        let mut c = serial_like();
        assert_eq!(c.size(), CFG_SIZE);
        let mut b = [0u8; 4];
        assert_eq!(c.read(EXT_CAP_START, &mut b), Err(Errno::Inval));
        assert_eq!(c.write(EXT_CAP_START, &[0xff]), Err(Errno::Inval));
        assert_eq!(c.read(0xfc, &mut b), Ok(()));
    }

    /// A device with the capabilities whose bits are set in `mask` (MSI,
    /// PM, PCI Express, MSI-X, vendor-specific), and the list it expects,
    /// head first.
    fn with_caps(mask: u32) -> (ConfigSpace, [(usize, u8); 5], usize) {
        let mut c = serial_like();
        let mut want = [(0, 0); 5];
        let mut n = 0;
        let mut push = |off, id| {
            want[n] = (off, id);
            n += 1;
        };
        if mask & 1 != 0 {
            c.add_msi(0x40, 1);
            push(0x40, cap::ID_MSI);
        }
        if mask & 2 != 0 {
            c.add_pm(0x50);
            push(0x50, cap::ID_PM);
        }
        if mask & 4 != 0 {
            c.add_pcie(0x60).unwrap();
            push(0x60, cap::ID_EXP);
        }
        if mask & 8 != 0 {
            c.add_msix(0xa0, 4, 1, 0, 1, 0x800).unwrap();
            push(0xa0, cap::ID_MSIX);
        }
        if mask & 16 != 0 {
            c.add_vendor(0xb0, b"rmdev").unwrap();
            push(0xb0, cap::ID_VNDR);
        }
        want[..n].reverse();
        (c, want, n)
    }

    #[test]
    fn the_list_holds_exactly_the_capabilities_added() {
        for mask in 0..32 {
            let (c, want, n) = with_caps(mask);
            let mut caps = [(0, 0); 8];
            assert_eq!(c.caps(&mut caps), n, "mask {mask:#x}");
            assert_eq!(&caps[..n], &want[..n], "mask {mask:#x}");
            let listed = c.u16_at(reg::STATUS) & reg::STATUS_CAP_LIST != 0;
            assert_eq!(listed, n > 0, "mask {mask:#x}");
            let express = mask & 4 != 0;
            let size = if express { CFG_EXT_SIZE } else { CFG_SIZE };
            assert_eq!(c.size(), size, "mask {mask:#x}");
            assert_eq!(c.msix_control().is_some(), mask & 8 != 0);
            assert_eq!(c.power_state().is_some(), mask & 2 != 0);
            if express {
                // An empty extended capability list: a zero header at 0x100.
                let mut h = [0xffu8; 4];
                c.read(EXT_CAP_START, &mut h).unwrap();
                assert_eq!(h, [0; 4], "mask {mask:#x}");
            }
        }
    }

    /// A random access offset: mostly in conventional space, where the
    /// registers are, or elsewhere near the space; sometimes anywhere.
    fn random_offset(rng: &mut Rng, size: usize) -> usize {
        match rng.below(16) {
            0 => usize::MAX - rng.index(16),
            1 => rng.next_u64() as usize,
            2 => size - rng.index(8),
            3..=5 => rng.index(size + 16),
            _ => rng.index(CFG_SIZE),
        }
    }

    /// A random access length: mostly register sized, sometimes long.
    fn random_len(rng: &mut Rng) -> usize {
        match rng.below(16) {
            0 => rng.index(CFG_EXT_SIZE + 16),
            1 => 0,
            2..=4 => rng.index(300),
            _ => [1, 2, 4][rng.index(3)],
        }
    }

    #[test]
    fn random_accesses_keep_every_invariant() {
        let (mut c, want, n) = with_caps(31);
        let want = &want[..n];
        let size = c.size();
        let ids = (rd32(&c, 0), rd32(&c, 8));
        let (write, rw1c) = (c.write, c.rw1c);
        let flr = (0x60 + cap::EXP_DEVCTL + 1, 0x80u8);
        let mut rng = Rng::new(0x5eed_c0f1);
        let mut buf = [0u8; CFG_EXT_SIZE + 16];
        let (mut ok_writes, mut rw1c_clears) = (0, 0);
        for iter in 0..20_000 {
            // The device raises error bits now and then, so RW1C bits have
            // ones to clear.
            if rng.one_in(8) {
                c.set_status_bits(reg::STATUS_RW1C, true);
                c.set(0x60 + cap::EXP_DEVSTA, 2, cap::EXP_DEVSTA_ERRORS.into());
            }
            let off = random_offset(&mut rng, size);
            let len = random_len(&mut rng);
            let in_range = off.checked_add(len).is_some_and(|e| e <= size);
            let data = &mut buf[..len];
            rng.fill(data);
            if rng.one_in(2) {
                let r = c.read(off, data);
                assert_eq!(r.is_ok(), in_range, "iter {iter}: read {off:#x}+{len}");
                if in_range {
                    for (i, &b) in data.iter().enumerate() {
                        let want = c.val.get(off + i).copied().unwrap_or(0);
                        assert_eq!(b, want, "iter {iter}: byte {:#x}", off + i);
                    }
                }
                continue;
            }
            let before = c.val;
            let r = c.write(off, data);
            assert_eq!(r.is_ok(), in_range, "iter {iter}: write {off:#x}+{len}");
            let asked_flr =
                in_range && (off..off + len).contains(&flr.0) && data[flr.0 - off] & flr.1 != 0;
            assert_eq!(c.take_flr_request(), asked_flr, "iter {iter}");
            if !in_range {
                assert_eq!(c.val, before, "iter {iter}: failed write changed");
                continue;
            }
            ok_writes += 1;
            for i in 0..CFG_SIZE {
                let changed = c.val[i] ^ before[i];
                let ro = !write[i] & !rw1c[i];
                assert_eq!(changed & ro, 0, "iter {iter}: read-only bits of {i:#x}");
                assert_eq!(c.val[i] & !before[i] & rw1c[i], 0, "iter {iter}: RW1C set");
                if changed & rw1c[i] != 0 {
                    rw1c_clears += 1;
                }
                if !(off..off + len).contains(&i) {
                    assert_eq!(changed, 0, "iter {iter}: byte {i:#x} outside the write");
                }
            }
            assert_eq!((rd32(&c, 0), rd32(&c, 8)), ids, "iter {iter}: IDs");
            assert_eq!((c.write, c.rw1c), (write, rw1c), "permissions moved");
            let mut caps = [(0, 0); 8];
            let m = c.caps(&mut caps);
            assert_eq!(&caps[..m], want, "iter {iter}: capability list");
            for &(p, _) in &caps[..m] {
                assert!(p >= 0x40 && p % 4 == 0);
            }
            let mut h = [0xffu8; 4];
            if size > CFG_SIZE {
                c.read(EXT_CAP_START, &mut h).unwrap();
                assert_eq!(h, [0; 4], "iter {iter}: extended list stays empty");
            }
            assert_eq!(c.size(), size);
            assert!(matches!(c.power_state(), Some(0 | 3)));
        }
        // The run exercised what it checks.
        assert!(
            ok_writes > 5_000 && rw1c_clears > 100,
            "{ok_writes} {rw1c_clears}"
        );
    }

    #[test]
    fn random_accesses_to_conventional_space_stop_at_256() {
        let (mut c, _, _) = with_caps(1 | 2 | 8 | 16);
        let mut rng = Rng::new(42);
        let mut buf = [0u8; CFG_EXT_SIZE + 16];
        for _ in 0..5_000 {
            let off = random_offset(&mut rng, CFG_SIZE);
            let len = random_len(&mut rng);
            let in_range = off.checked_add(len).is_some_and(|e| e <= CFG_SIZE);
            let before = c.val;
            assert_eq!(c.write(off, &buf[..len]).is_ok(), in_range);
            assert_eq!(c.read(off, &mut buf[..len]).is_ok(), in_range);
            assert!(c.val[CFG_SIZE..] == before[CFG_SIZE..]);
        }
    }

    #[test]
    fn capabilities_must_fit_and_not_overlap() {
        let mut c = serial_like();
        c.add_msi(0x40, 1);
        let before = (c.val, c.size());
        for off in [0x00, 0x3c, 0x40, 0x4c, 0x62, 0xc8, 0xfc, usize::MAX] {
            assert_eq!(c.add_pcie(off), Err(Errno::Inval), "offset {off:#x}");
        }
        assert_eq!((c.val, c.size()), before);
        // Right after the MSI capability, and at the very end, it fits.
        assert_eq!(c.add_pcie(0x50), Ok(()));
        let mut c = serial_like();
        assert_eq!(c.add_pcie(0xc4), Ok(()));
    }

    #[test]
    fn permission_lines_never_mix_stored_and_rw1c_bits() {
        let mut c = serial_like();
        c.add_msi(0x40, 1);
        c.add_pm(0x50);
        c.add_pcie(0x60).unwrap();
        for i in 0..CFG_SIZE {
            assert_eq!(c.write[i] & c.rw1c[i], 0, "byte {i:#x}");
        }
        for p in HEADER_PERMS.iter().chain(&pcie_perms(0x60)) {
            assert!(!p.why.is_empty());
        }
    }
}
