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

/// Size of conventional PCI configuration space.
pub(crate) const CFG_SIZE: usize = 256;

/// Size of PCI Express extended configuration space (PCIe 6.x, 7.2.2): the
/// conventional 256 bytes followed by extended capabilities from 0x100.
pub(crate) const CFG_EXT_SIZE: usize = 4096;

/// Offset of the first extended capability header (PCIe 6.x, 7.6.3).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const EXT_CAP_START: usize = CFG_SIZE;

/// Offsets and bits of the standard type-0 header (PCI Local Bus 3.0, 6.1).
/// The table is complete on purpose, whether or not every entry is used yet.
#[allow(dead_code)]
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
#[allow(dead_code)]
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
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) why: &'static str,
}

/// The permission table of the standard header, BARs excepted (they depend on
/// the BAR's size; see [`ConfigSpace::set_bar`]). Everything not listed is
/// read-only: IDs, class, revision, header type, BIST, subsystem IDs, the
/// capability pointer, interrupt pin, `Min_Gnt` and `Max_Lat`.
pub(crate) const HEADER_PERMS: &[Perm] = &[
    Perm {
        off: reg::COMMAND,
        len: 2,
        write: (reg::CMD_IO
            | reg::CMD_MEMORY
            | reg::CMD_MASTER
            | reg::CMD_PARITY
            | reg::CMD_SERR
            | reg::CMD_INTX_DISABLE) as u32,
        rw1c: 0,
        why:
            "command: decode enables, bus master, error reporting and INTx disable are the guest's",
    },
    Perm {
        off: reg::STATUS,
        len: 2,
        write: 0,
        rw1c: reg::STATUS_RW1C as u32,
        why: "status: error bits are write-1-to-clear, the rest reports device state",
    },
    Perm {
        off: reg::CACHE_LINE,
        len: 1,
        write: 0xff,
        rw1c: 0,
        why: "cache line size: plain storage the OS programs",
    },
    Perm {
        off: reg::LATENCY,
        len: 1,
        write: 0xff,
        rw1c: 0,
        why: "latency timer: plain storage the OS programs",
    },
    Perm {
        off: reg::INT_LINE,
        len: 1,
        write: 0xff,
        rw1c: 0,
        why: "interrupt line: a scratch byte for the OS's routing",
    },
];

/// The permission table of a PCI Express capability at `off` (see
/// [`ConfigSpace::add_pcie`]). Read-only registers with a reason worth
/// keeping have a line with no writable bits.
fn pcie_perms(off: usize) -> [Perm; 6] {
    [
        Perm {
            off: off + cap::EXP_DEVCTL,
            len: 2,
            write: (cap::EXP_DEVCTL_REPORTING
                | cap::EXP_DEVCTL_RELAX_EN
                | cap::EXP_DEVCTL_PAYLOAD
                | cap::EXP_DEVCTL_EXT_TAG
                | cap::EXP_DEVCTL_AUX_PME
                | cap::EXP_DEVCTL_NOSNOOP_EN
                | cap::EXP_DEVCTL_READRQ)
                .into(),
            rw1c: 0,
            why: "device control: error reporting, relaxed ordering, payload and read request sizes, extended tags, aux power and no-snoop are the guest's as in vfio-pci; phantom functions are not offered, so the bit reads zero; Initiate FLR reads zero, a one written to it is a reset request the library takes",
        },
        Perm {
            off: off + cap::EXP_DEVSTA,
            len: 2,
            write: 0,
            rw1c: cap::EXP_DEVSTA_ERRORS.into(),
            why: "device status: error detected bits are write-1-to-clear; aux power and transactions pending report state",
        },
        Perm {
            off: off + cap::EXP_LNKCTL,
            len: 2,
            write: (cap::EXP_LNKCTL_ASPMC
                | cap::EXP_LNKCTL_RCB
                | cap::EXP_LNKCTL_CCC
                | cap::EXP_LNKCTL_ES)
                .into(),
            rw1c: 0,
            why: "link control: ASPM control, read completion boundary, common clock and extended synch are plain storage on an emulated link; the rest is reserved or unsupported for an endpoint",
        },
        Perm {
            off: off + cap::EXP_LNKSTA,
            len: 2,
            write: 0,
            rw1c: 0,
            why: "link status: reports a trained x1 link at 2.5 GT/s; the bandwidth status bits belong to downstream ports",
        },
        Perm {
            off: off + cap::EXP_DEVCTL2,
            len: 2,
            write: 0,
            rw1c: 0,
            why: "device control 2: device capabilities 2 offers nothing, so every field is hardwired to zero",
        },
        Perm {
            off: off + cap::EXP_LNKCTL2,
            len: 2,
            write: 0,
            rw1c: 0,
            why: "link control 2: target speed is the only speed; the compliance and margining knobs have no meaning for an emulated link",
        },
    ]
}

/// What a base address register decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bar {
    /// No BAR: reads zero, writes are ignored, sizing finds nothing.
    None,
    /// I/O space of `size` bytes (a power of two, at least 4).
    Io(u32),
    /// 32-bit memory space of `size` bytes (a power of two, at least 16).
    /// Offered to devices; the serial card has I/O BARs only.
    #[cfg_attr(not(test), allow(dead_code))]
    Mem32(u32),
    /// 64-bit memory space of `size` bytes (a power of two, at least 16 and
    /// at most [`MAX_BAR64`]). It takes two BAR registers: the one it is set
    /// at holds the type bits and the low address bits, the next one the
    /// high address bits (PCI Local Bus 3.0, 6.2.5.1).
    Mem64(u64),
}

/// The largest 64-bit memory BAR: 1 TiB, the most one VFIO region can
/// address (a region's offsets are 40 bits wide, see
/// [`super::region::OFFSET_SHIFT`]).
pub(crate) const MAX_BAR64: u64 = 1 << 40;

/// The number of base address registers of a type-0 header.
pub(crate) const BARS: usize = 6;

impl Bar {
    /// The region size the BAR decodes, zero for none.
    pub(crate) fn size(self) -> u64 {
        match self {
            Bar::None => 0,
            Bar::Io(s) | Bar::Mem32(s) => s.into(),
            Bar::Mem64(s) => s,
        }
    }

    /// Whether the BAR takes two registers (BAR *i* and *i* + 1).
    pub(crate) fn is_64bit(self) -> bool {
        matches!(self, Bar::Mem64(_))
    }

    /// The read-only type bits of the BAR's first register, its smallest
    /// size, and its largest.
    fn kind(self) -> (u32, u64, u64) {
        match self {
            Bar::None => (0, 0, 0),
            Bar::Io(_) => (BAR_IO, 4, 1 << 32),
            Bar::Mem32(_) => (0, 16, 1 << 32),
            Bar::Mem64(_) => (BAR_MEM_TYPE_64, 16, MAX_BAR64),
        }
    }
}

/// A BAR register's space indicator: I/O space (PCI Local Bus 3.0, 6.2.5.1).
const BAR_IO: u32 = 0x1;
/// A memory BAR register's type field: 64-bit, located anywhere.
const BAR_MEM_TYPE_64: u32 = 0x4;

/// Which bits of each configuration byte can change after reset (see
/// [`ConfigSpace::change_map`]).
#[derive(Clone)]
pub(crate) struct ChangeMap {
    bits: [u8; CFG_SIZE],
    /// Bytes with any changeable bit.
    len: usize,
}

impl ChangeMap {
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

/// Where an MSI capability's registers are (PCI Local Bus 3.0, 6.8.1),
/// decoded from its read-only Message Control bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MsiLayout {
    /// Vectors the capability offers (Multiple Message Capable).
    pub(crate) vectors: u32,
    /// The message address is 64 bits wide.
    pub(crate) is_64bit: bool,
    /// Offset of the message data register.
    pub(crate) data: usize,
    /// Offsets of the mask and pending bits registers, if the capability
    /// has per-vector masking.
    pub(crate) mask: Option<(usize, usize)>,
}

impl MsiLayout {
    /// The bits of the mask and pending registers that name a vector the
    /// capability offers.
    pub(crate) fn vector_bits(&self) -> u32 {
        match self.vectors {
            32.. => u32::MAX,
            n => (1 << n) - 1,
        }
    }
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
    /// Offered to the kernel glue, which does not use it yet.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Makes the space 4096 bytes long, as every PCI Express function's is
    /// (builder use; the PCI Express capability builder calls it). With no
    /// extended capability added, the header at 0x100 stays all zero, which
    /// says "no extended capabilities" (PCIe 6.x, 7.6.3); the rest of
    /// extended space reads zero and is read-only.
    #[cfg_attr(not(test), allow(dead_code))]
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

    /// A type-0 header with the standard permissions applied.
    pub(crate) fn with_header(vendor: u16, device: u16, class_prog: u32, revision: u8) -> Self {
        let mut c = Self::new();
        c.set(reg::VENDOR_ID, 2, vendor.into());
        c.set(reg::DEVICE_ID, 2, device.into());
        c.set(reg::REVISION, 1, revision.into());
        c.set(reg::CLASS_PROG, 3, class_prog);
        c.set(reg::STATUS, 2, reg::STATUS_DEVSEL_MEDIUM.into());
        for p in HEADER_PERMS {
            c.apply(p);
        }
        c
    }

    /// Configures BAR `index` (0-5); the guest can then size and place it.
    ///
    /// A 64-bit memory BAR ([`Bar::Mem64`]) takes BAR `index` and `index +
    /// 1`: the first holds the type bits and the writable address bits above
    /// the size, the second the size mask's upper half, so writing all ones
    /// to both reads back the 64-bit mask. Setting a BAR again replaces it
    /// (and frees the upper register of a 64-bit BAR it replaces).
    ///
    /// Fails with `EINVAL`, changing nothing, if `index` is above 5, BAR
    /// `index` is the upper register of a 64-bit BAR, the size is not a
    /// power of two in the kind's range, or a 64-bit BAR would start at BAR
    /// 5 or take a register another BAR holds.
    pub(crate) fn set_bar(&mut self, index: usize, bar: Bar) -> EResult {
        if index >= BARS || self.is_bar_upper(index) {
            return Err(Errno::Inval);
        }
        let (flags, min, max) = bar.kind();
        let size = bar.size();
        if bar != Bar::None && (!size.is_power_of_two() || size < min || size > max) {
            return Err(Errno::Inval);
        }
        if bar.is_64bit() {
            let next = self.bars.get(index + 1).ok_or(Errno::Inval)?;
            if *next != Bar::None {
                return Err(Errno::Inval);
            }
        }
        // A 64-bit BAR replaced frees its upper register.
        if let Some(old) = self.bars.get(index).copied() {
            if old.is_64bit() {
                self.bar_regs(index + 1, 0, 0);
            }
        }
        // The address bits above the size are the guest's; the type bits and
        // the offset bits within the region are read-only.
        let write = if size == 0 { 0 } else { !(size - 1) };
        let type_mask = if flags & BAR_IO != 0 { 0x3 } else { 0xf };
        self.bar_regs(index, flags, write as u32 & !type_mask);
        if bar.is_64bit() {
            self.bar_regs(index + 1, 0, (write >> 32) as u32);
        }
        if let Some(b) = self.bars.get_mut(index) {
            *b = bar;
        }
        Ok(())
    }

    /// Sets BAR register `index` to `value` with `write` the bits the guest
    /// may write.
    fn bar_regs(&mut self, index: usize, value: u32, write: u32) {
        let off = reg::BAR0 + 4 * index;
        self.set(off, 4, value);
        self.apply(&Perm {
            off,
            len: 4,
            write,
            rw1c: 0,
            why: "BAR: address bits above the size are writable, so sizing reads back the mask; a 64-bit BAR's upper register holds the mask's upper half",
        });
    }

    /// Whether BAR register `index` is the upper half of a 64-bit BAR.
    pub(crate) fn is_bar_upper(&self, index: usize) -> bool {
        index
            .checked_sub(1)
            .and_then(|i| self.bars.get(i))
            .is_some_and(|b| b.is_64bit())
    }

    /// BAR `index` as [`ConfigSpace::set_bar`] configured it ([`Bar::None`]
    /// for the upper register of a 64-bit BAR, or past BAR 5).
    pub(crate) fn bar(&self, index: usize) -> Bar {
        self.bars.get(index).copied().unwrap_or(Bar::None)
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

    /// Adds an MSI capability at `off` offering `vectors` (a power of two,
    /// 1-32) with 64-bit addresses. Its registers follow the PCI spec's
    /// permissions: enable and multiple-message-enable are the guest's,
    /// multiple-message-capable and 64-bit-capable are read-only, the address
    /// is writable but dword aligned, the data writable. See
    /// [`ConfigSpace::add_msi_ext`] for the other layouts and checks.
    pub(crate) fn add_msi(&mut self, off: usize, vectors: u32) {
        self.mark_used(off, cap::MSI_SIZEOF_64);
        self.msi_regs(off, vectors.clamp(1, 32), true, false);
    }

    /// Adds an MSI capability at `off` offering `vectors` (a power of two,
    /// 1-32), with 32-bit or 64-bit addresses (`is_64bit`) and with or
    /// without per-vector masking (`maskable`), laid out as PCI Local Bus
    /// 3.0, 6.8.1 says: the data at 0x8 (32-bit) or 0xc (64-bit), then, if
    /// maskable, the mask bits at 0xc or 0x10 and the pending bits at 0x10
    /// or 0x14.
    ///
    /// The permissions are [`ConfigSpace::add_msi`]'s; with per-vector
    /// masking, the Per-Vector Masking Capable bit is set and read-only, a
    /// mask bit is writable for each vector the capability offers and the
    /// pending bits are the device's (read-only to the guest; see
    /// [`ConfigSpace::msi_raise`]).
    ///
    /// Fails with `EINVAL`, changing nothing, if `vectors` is not a power of
    /// two from 1 to 32, or the capability is not dword aligned at or after
    /// 0x40, does not fit in conventional space or overlaps another.
    pub(crate) fn add_msi_ext(
        &mut self,
        off: usize,
        vectors: u32,
        is_64bit: bool,
        maskable: bool,
    ) -> EResult {
        if !vectors.is_power_of_two() || vectors > 32 {
            return Err(Errno::Inval);
        }
        let len = match (is_64bit, maskable) {
            (false, false) => cap::MSI_SIZEOF_32,
            (true, false) => cap::MSI_SIZEOF_64,
            (false, true) => cap::MSI_SIZEOF_32_MASK,
            (true, true) => cap::MSI_SIZEOF_64_MASK,
        };
        self.claim(off, len)?;
        self.msi_regs(off, vectors, is_64bit, maskable);
        Ok(())
    }

    /// Links an MSI capability at `off` and sets its registers and
    /// permission lines (the bytes are already taken).
    fn msi_regs(&mut self, off: usize, vectors: u32, is_64bit: bool, maskable: bool) {
        let mmc = vectors.trailing_zeros();
        self.link_cap(off, cap::ID_MSI);
        let mut flags = mmc << 1;
        if is_64bit {
            flags |= u32::from(cap::MSI_FLAGS_64BIT);
        }
        if maskable {
            flags |= u32::from(cap::MSI_FLAGS_MASKBIT);
        }
        self.set(off + cap::MSI_FLAGS, 2, flags);
        self.msi = off;
        for p in [
            Perm {
                off: off + cap::MSI_FLAGS,
                len: 2,
                write: u32::from(cap::MSI_FLAGS_ENABLE | cap::MSI_FLAGS_QSIZE),
                rw1c: 0,
                why: "MSI control: enable and vectors enabled are the guest's; capable bits are fixed",
            },
            Perm {
                off: off + cap::MSI_ADDRESS_LO,
                len: 4,
                write: !0x3,
                rw1c: 0,
                why: "MSI address: dword aligned, the low two bits read zero",
            },
        ] {
            self.apply(&p);
        }
        if is_64bit {
            self.apply(&Perm {
                off: off + cap::MSI_ADDRESS_HI,
                len: 4,
                write: !0,
                rw1c: 0,
                why: "MSI upper address: any value",
            });
        }
        let Some(l) = self.msi_layout() else {
            return;
        };
        self.apply(&Perm {
            off: l.data,
            len: 2,
            write: 0xffff,
            rw1c: 0,
            why: "MSI data: any value",
        });
        if let Some((mask, pending)) = l.mask {
            for p in [
                Perm {
                    off: mask,
                    len: 4,
                    write: l.vector_bits(),
                    rw1c: 0,
                    why: "MSI mask bits: the guest's for each vector the capability offers; the rest are reserved",
                },
                Perm {
                    off: pending,
                    len: 4,
                    write: 0,
                    rw1c: 0,
                    why: "MSI pending bits: the device's, read-only to the guest; set while a masked vector has a message waiting",
                },
            ] {
                self.apply(&p);
            }
        }
    }

    /// Adds a power management capability at `off`: D0 and D3hot only, no
    /// PME, and No_Soft_Reset set (the function keeps its state across
    /// D3hot, as an emulated device does). The power state is the guest's;
    /// a write asking for a state the capability does not offer (D1, D2)
    /// is discarded, as the PCI PM spec requires.
    pub(crate) fn add_pm(&mut self, off: usize) {
        self.mark_used(off, cap::PM_SIZEOF);
        self.link_cap(off, cap::ID_PM);
        self.set(off + cap::PM_PMC, 2, cap::PM_PMC_VERSION_1_2.into());
        self.set(off + cap::PM_CTRL, 2, cap::PM_CTRL_NO_SOFT_RESET.into());
        self.apply(&Perm {
            off: off + cap::PM_CTRL,
            len: 2,
            write: cap::PM_CTRL_STATE_MASK.into(),
            rw1c: 0,
            why: "PM control: the power state is the guest's; without PME, PME enable and status read zero",
        });
        self.pm = off;
    }

    /// Adds a version 2 PCI Express capability for an endpoint at `off`
    /// (0x3c bytes) and makes configuration space 4096 bytes long, as a
    /// PCI Express function's is (see [`ConfigSpace::set_extended`]).
    ///
    /// The function is Function Level Reset capable: a write that sets
    /// Initiate FLR is recorded for [`ConfigSpace::take_flr_request`], and
    /// the bit itself always reads zero. The link is a fixed x1 link at
    /// 2.5 GT/s without ASPM, and none of the optional features of the
    /// second set of registers is offered.
    ///
    /// Fails with `EINVAL`, changing nothing, if the capability is not
    /// dword aligned at or after 0x40, does not fit in conventional space
    /// or overlaps another capability.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn add_pcie(&mut self, off: usize) -> EResult {
        self.claim(off, cap::EXP_SIZEOF_V2)?;
        self.link_cap(off, cap::ID_EXP);
        self.set(off + cap::EXP_FLAGS, 2, cap::EXP_FLAGS_V2_ENDPOINT.into());
        self.set(
            off + cap::EXP_DEVCAP,
            4,
            cap::EXP_DEVCAP_RBER | cap::EXP_DEVCAP_FLR,
        );
        self.set(
            off + cap::EXP_DEVCTL,
            2,
            (cap::EXP_DEVCTL_RELAX_EN | cap::EXP_DEVCTL_NOSNOOP_EN | cap::EXP_DEVCTL_READRQ_512B)
                .into(),
        );
        self.set(
            off + cap::EXP_LNKCAP,
            4,
            cap::EXP_LNKCAP_SLS_2_5GB | cap::EXP_LNKCAP_MLW_X1 | cap::EXP_LNKCAP_ASPM_OPT,
        );
        self.set(
            off + cap::EXP_LNKSTA,
            2,
            (cap::EXP_LNKSTA_CLS_2_5GB | cap::EXP_LNKSTA_NLW_X1 | cap::EXP_LNKSTA_SLC).into(),
        );
        self.set(off + cap::EXP_LNKCAP2, 4, cap::EXP_LNKCAP2_SLS_2_5GB);
        self.set(off + cap::EXP_LNKCTL2, 2, cap::EXP_LNKCTL2_TLS_2_5GT.into());
        for p in pcie_perms(off) {
            self.apply(&p);
        }
        self.pcie = off;
        self.set_extended();
        Ok(())
    }

    /// Adds an MSI-X capability at `off` for `vectors` vectors (1-2048)
    /// whose table lies at `table_offset` of BAR `table_bar` and whose
    /// pending bit array lies at `pba_offset` of BAR `pba_bar`. MSI-X Enable
    /// and Function Mask are the guest's; the table size and both location
    /// registers are read-only. The table and PBA themselves are modelled
    /// by userspace, as with vfio-pci: the library hides the table from the
    /// region (reads all ones, writes dropped) and delivers each vector to
    /// the eventfd `VFIO_DEVICE_SET_IRQS` gave it. See
    /// [`ConfigSpace::msix_layout`].
    ///
    /// Fails with `EINVAL`, changing nothing, if `vectors` is out of range,
    /// a BAR index is above 5, an offset is not qword aligned, the table and
    /// PBA overlap in one BAR, or the capability is not dword aligned at or
    /// after 0x40, does not fit in conventional space or overlaps another.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn add_msix(
        &mut self,
        off: usize,
        vectors: u16,
        table_bar: u8,
        table_offset: u32,
        pba_bar: u8,
        pba_offset: u32,
    ) -> EResult {
        let n = u64::from(vectors);
        if !(1..=2048).contains(&n)
            || table_bar > 5
            || pba_bar > 5
            || table_offset & 7 != 0
            || pba_offset & 7 != 0
        {
            return Err(Errno::Inval);
        }
        let (table, pba) = (u64::from(table_offset), u64::from(pba_offset));
        let (table_end, pba_end) = (table + 16 * n, pba + 8 * n.div_ceil(64));
        if table_bar == pba_bar && table < pba_end && pba < table_end {
            return Err(Errno::Inval);
        }
        self.claim(off, cap::MSIX_SIZEOF)?;
        self.link_cap(off, cap::ID_MSIX);
        self.set(off + cap::MSIX_FLAGS, 2, u32::from(vectors - 1));
        self.set(
            off + cap::MSIX_TABLE,
            4,
            table_offset | u32::from(table_bar),
        );
        self.set(off + cap::MSIX_PBA, 4, pba_offset | u32::from(pba_bar));
        self.apply(&Perm {
            off: off + cap::MSIX_FLAGS,
            len: 2,
            write: u32::from(cap::MSIX_FLAGS_ENABLE | cap::MSIX_FLAGS_MASKALL),
            rw1c: 0,
            why: "MSI-X control: enable and function mask are the guest's; the table size is fixed",
        });
        self.msix = off;
        Ok(())
    }

    /// Adds a vendor-specific capability at `off` carrying `data`: the
    /// length byte counts the three header bytes and the data, and every
    /// byte is read-only (the vendor defines the contents, not their
    /// writability; a device wanting writable bytes applies its own lines).
    ///
    /// Fails with `EINVAL`, changing nothing, if the capability is not
    /// dword aligned at or after 0x40, does not fit in conventional space
    /// or overlaps another capability.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn add_vendor(&mut self, off: usize, data: &[u8]) -> EResult {
        let len = data
            .len()
            .checked_add(cap::VNDR_HEADER)
            .ok_or(Errno::Inval)?;
        let len_byte = u8::try_from(len).map_err(|_| Errno::Inval)?;
        self.claim(off, len)?;
        self.link_cap(off, cap::ID_VNDR);
        self.set(off + cap::VNDR_LEN, 1, len_byte.into());
        for (i, &b) in data.iter().enumerate() {
            self.set(off + cap::VNDR_HEADER + i, 1, b.into());
        }
        Ok(())
    }

    /// The MSI-X capability's Message Control register, if there is an
    /// MSI-X capability.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn msix_control(&self) -> Option<u16> {
        (self.msix != 0).then(|| self.u16_at(self.msix + cap::MSIX_FLAGS))
    }

    /// Where the MSI-X table and PBA live, decoded from the capability, if
    /// there is one.
    pub(crate) fn msix_layout(&self) -> Option<MsixLayout> {
        if self.msix == 0 {
            return None;
        }
        let reg = |o: usize| {
            u32::from(self.u16_at(self.msix + o)) | u32::from(self.u16_at(self.msix + o + 2)) << 16
        };
        let (table, pba) = (reg(cap::MSIX_TABLE), reg(cap::MSIX_PBA));
        let vectors =
            u32::from(self.u16_at(self.msix + cap::MSIX_FLAGS) & cap::MSIX_FLAGS_QSIZE) + 1;
        Some(MsixLayout {
            vectors,
            table_bar: (table & cap::MSIX_BIR) as usize,
            table: u64::from(table & !cap::MSIX_BIR)
                ..u64::from(table & !cap::MSIX_BIR) + 16 * u64::from(vectors),
            pba_bar: (pba & cap::MSIX_BIR) as usize,
            pba: u64::from(pba & !cap::MSIX_BIR)
                ..u64::from(pba & !cap::MSIX_BIR) + 8 * u64::from(vectors.div_ceil(64)),
        })
    }

    /// Where the MSI capability's registers are, if there is one.
    pub(crate) fn msi_layout(&self) -> Option<MsiLayout> {
        if self.msi == 0 {
            return None;
        }
        let flags = self.u16_at(self.msi + cap::MSI_FLAGS);
        let is_64bit = flags & cap::MSI_FLAGS_64BIT != 0;
        let (data, mask, pending) = if is_64bit {
            (cap::MSI_DATA_64, cap::MSI_MASK_64, cap::MSI_PENDING_64)
        } else {
            (cap::MSI_DATA_32, cap::MSI_MASK_32, cap::MSI_PENDING_32)
        };
        Some(MsiLayout {
            vectors: 1 << ((flags & cap::MSI_FLAGS_QMASK) >> 1).min(5),
            is_64bit,
            data: self.msi + data,
            mask: (flags & cap::MSI_FLAGS_MASKBIT != 0)
                .then_some((self.msi + mask, self.msi + pending)),
        })
    }

    /// A little-endian 32-bit register.
    fn u32_at(&self, off: usize) -> u32 {
        u32::from(self.u16_at(off)) | u32::from(self.u16_at(off.saturating_add(2))) << 16
    }

    /// The device raises MSI vector `v`: whether the message goes out now.
    /// With per-vector masking and `v` masked, it does not: `v`'s pending
    /// bit is set instead (a device-owned bit, bypassing the guest's
    /// permissions) until [`ConfigSpace::msi_take_unmasked`] finds it
    /// unmasked. A vector the capability does not offer is never sent.
    pub(crate) fn msi_raise(&mut self, v: u32) -> bool {
        let Some(l) = self.msi_layout() else {
            return v == 0;
        };
        let Some(bit) = 1u32.checked_shl(v).filter(|b| b & l.vector_bits() != 0) else {
            return false;
        };
        let Some((mask, pending)) = l.mask else {
            return true;
        };
        if self.u32_at(mask) & bit == 0 {
            return true;
        }
        let p = self.u32_at(pending) | bit;
        self.set(pending, 4, p);
        false
    }

    /// The vectors whose pending bit is set but whose mask bit is clear (the
    /// guest unmasked them), as a bit mask; their pending bits are cleared,
    /// as the messages are now sent. Zero without per-vector masking.
    pub(crate) fn msi_take_unmasked(&mut self) -> u32 {
        let Some((mask, pending)) = self.msi_layout().and_then(|l| l.mask) else {
            return 0;
        };
        let p = self.u32_at(pending);
        let due = p & !self.u32_at(mask);
        if due != 0 {
            self.set(pending, 4, p & !due);
        }
        due
    }

    /// Whether the function has a PCI Express capability.
    pub(crate) fn is_express(&self) -> bool {
        self.pcie != 0
    }

    /// Whether a guest write asked for a Function Level Reset since the last
    /// call, clearing the request. The library calls it after every write
    /// and resets the function when it returns `true`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn take_flr_request(&mut self) -> bool {
        core::mem::take(&mut self.flr)
    }

    /// The power state (0 for D0 to 3 for D3hot), if there is a power
    /// management capability.
    pub(crate) fn power_state(&self) -> Option<u8> {
        (self.pm != 0)
            .then(|| (self.u16_at(self.pm + cap::PM_CTRL) & cap::PM_CTRL_STATE_MASK) as u8)
    }

    /// Whether the guest enabled MSI in the capability at `off`.
    pub(crate) fn msi_enabled(&self, off: usize) -> bool {
        self.u16_at(off + cap::MSI_FLAGS) & cap::MSI_FLAGS_ENABLE != 0
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
    pub(crate) fn write(&mut self, off: usize, data: &[u8]) -> EResult {
        let r = self.range(off, data.len())?;
        // Extended space holds nothing writable: only the stored bytes take
        // the write (the zip below stops at the shorter side).
        let r = r.start.min(CFG_SIZE)..r.end.min(CFG_SIZE);
        let state = self.power_state();
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
        if let (Some(old), Some(1 | 2)) = (state, self.power_state()) {
            if let Some(b) = self.val.get_mut(self.pm + cap::PM_CTRL) {
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
        let len = m.iter().filter(|&&b| b != 0).count();
        ChangeMap { bits: m, len }
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
    /// target has too.
    pub(crate) fn changeable_bytes<'a>(
        &'a self,
        map: &'a ChangeMap,
    ) -> impl Iterator<Item = u8> + 'a {
        self.val
            .iter()
            .zip(&map.bits)
            .filter(|(_, &m)| m != 0)
            .map(|(&v, _)| v)
    }

    /// Loads what [`Self::changeable_bytes`] gave on a source with the same
    /// layout: each byte's changeable bits are taken, the others stay.
    /// `EINVAL`, changing nothing, if `saved` has another length.
    pub(crate) fn restore_changeable(&mut self, map: &ChangeMap, saved: &[u8]) -> EResult {
        map.check(saved)?;
        let mut s = saved.iter();
        for (v, &m) in self.val.iter_mut().zip(&map.bits) {
            if m == 0 {
                continue;
            }
            if let Some(&d) = s.next() {
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
    use super::*;

    fn serial_like() -> ConfigSpace {
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

    fn rd32(c: &ConfigSpace, off: usize) -> u32 {
        let mut b = [0u8; 4];
        c.read(off, &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    fn wr32(c: &mut ConfigSpace, off: usize, v: u32) {
        c.write(off, &v.to_le_bytes()).unwrap();
    }

    #[test]
    fn ids_and_class_survive_writes() {
        let mut c = serial_like();
        wr32(&mut c, 0, 0xffff_ffff);
        wr32(&mut c, 8, 0);
        assert_eq!(rd32(&c, 0), 0x3253_4348);
        assert_eq!(rd32(&c, 8), 0x0700_0210);
        c.write(reg::INT_PIN, &[4]).unwrap();
        assert_eq!(rd32(&c, reg::INT_LINE) >> 8 & 0xff, 1);
    }

    #[test]
    fn command_takes_only_defined_bits() {
        let mut c = serial_like();
        c.write(reg::COMMAND, &0xffffu16.to_le_bytes()).unwrap();
        assert_eq!(
            c.command(),
            reg::CMD_IO
                | reg::CMD_MEMORY
                | reg::CMD_MASTER
                | reg::CMD_PARITY
                | reg::CMD_SERR
                | reg::CMD_INTX_DISABLE
        );
    }

    #[test]
    fn status_error_bits_are_rw1c() {
        let mut c = serial_like();
        c.set_status_bits(1 << 13 | 1 << 15 | reg::STATUS_INTERRUPT, true);
        // Writing zero changes nothing; writing one clears only that bit.
        c.write(reg::STATUS, &0u16.to_le_bytes()).unwrap();
        assert_eq!(
            c.u16_at(reg::STATUS) & (1 << 13 | 1 << 15),
            1 << 13 | 1 << 15
        );
        c.write(reg::STATUS, &(1u16 << 13).to_le_bytes()).unwrap();
        let s = c.u16_at(reg::STATUS);
        assert_eq!(s & (1 << 13), 0);
        assert_ne!(s & (1 << 15), 0);
        // The interrupt status bit is read-only for the guest.
        c.write(reg::STATUS, &0xffffu16.to_le_bytes()).unwrap();
        assert_ne!(c.u16_at(reg::STATUS) & reg::STATUS_INTERRUPT, 0);
        assert_ne!(c.u16_at(reg::STATUS) & reg::STATUS_DEVSEL_MEDIUM, 0);
    }

    #[test]
    fn bar_sizing_reads_back_the_mask() {
        let mut c = serial_like();
        wr32(&mut c, reg::BAR0, 0xffff_ffff);
        assert_eq!(rd32(&c, reg::BAR0), 0xffff_fff9, "8-byte I/O BAR");
        wr32(&mut c, reg::BAR0 + 4, 0xffff_ffff);
        assert_eq!(rd32(&c, reg::BAR0 + 4), 0xffff_f000, "4 KiB memory BAR");
        // Unused BARs and the ROM size to nothing.
        for off in [reg::BAR0 + 8, reg::BAR0 + 20, reg::ROM] {
            wr32(&mut c, off, 0xffff_ffff);
            assert_eq!(rd32(&c, off), 0, "offset {off:#x}");
        }
        // Placing the BAR keeps the type bits.
        wr32(&mut c, reg::BAR0, 0xc060);
        assert_eq!(rd32(&c, reg::BAR0), 0xc061);
    }

    fn rd64_bar(c: &ConfigSpace, index: usize) -> u64 {
        let off = reg::BAR0 + 4 * index;
        u64::from(rd32(c, off)) | u64::from(rd32(c, off + 4)) << 32
    }

    #[test]
    fn bar64_sizing_reads_back_the_64bit_mask_and_restores() {
        let mut c = serial_like();
        c.set_bar(2, Bar::Mem64(0x2000)).unwrap();
        assert_eq!(c.bar(2), Bar::Mem64(0x2000));
        assert_eq!((c.bar(3), c.is_bar_upper(3)), (Bar::None, true));
        assert_eq!(rd64_bar(&c, 2), 0x4, "64-bit memory, not prefetchable");
        // Sizing both registers reads back the 64-bit mask with the type.
        let (lo, hi) = (reg::BAR0 + 8, reg::BAR0 + 12);
        wr32(&mut c, lo, 0xffff_ffff);
        wr32(&mut c, hi, 0xffff_ffff);
        assert_eq!(rd64_bar(&c, 2), 0xffff_ffff_ffff_e004);
        // Placing it anywhere in the 64-bit space, then back.
        wr32(&mut c, lo, 0x1234_5fff);
        wr32(&mut c, hi, 0x89ab_cdef);
        assert_eq!(rd64_bar(&c, 2), 0x89ab_cdef_1234_4004);
        wr32(&mut c, lo, 0);
        wr32(&mut c, hi, 0);
        assert_eq!(rd64_bar(&c, 2), 0x4);
        // A BAR larger than 4 GiB has read-only low address bits.
        c.set_bar(2, Bar::Mem64(1 << 36)).unwrap();
        wr32(&mut c, lo, 0xffff_ffff);
        wr32(&mut c, hi, 0xffff_ffff);
        assert_eq!(rd64_bar(&c, 2), 0xffff_fff0_0000_0004);
        // The BAR and ROM after it stay empty.
        for off in [reg::BAR0 + 16, reg::BAR0 + 20, reg::ROM] {
            wr32(&mut c, off, 0xffff_ffff);
            assert_eq!(rd32(&c, off), 0, "offset {off:#x}");
        }
    }

    #[test]
    fn bar64_needs_two_free_registers() {
        let mut c = serial_like();
        let before = (c.val, c.write);
        for (index, bar, why) in [
            (5, Bar::Mem64(0x1000), "no register after BAR5"),
            (0, Bar::Mem64(0x1000), "BAR1 is taken"),
            (6, Bar::Io(8), "no BAR6"),
            (usize::MAX, Bar::None, "far past BAR5"),
            (2, Bar::Mem64(0x1800), "not a power of two"),
            (2, Bar::Mem64(8), "smaller than 16 bytes"),
            (2, Bar::Mem64(MAX_BAR64 * 2), "larger than a region"),
            (2, Bar::Mem32(8), "smaller than 16 bytes"),
            (2, Bar::Io(2), "smaller than 4 bytes"),
        ] {
            assert_eq!(c.set_bar(index, bar), Err(Errno::Inval), "{why}");
        }
        assert_eq!((c.val, c.write), before, "refusals change nothing");
        c.set_bar(3, Bar::Mem64(0x1000)).unwrap();
        // The upper register is no BAR of its own, and a 64-bit BAR right
        // before would take the lower register.
        assert_eq!(c.set_bar(4, Bar::Io(8)), Err(Errno::Inval));
        assert_eq!(c.set_bar(4, Bar::None), Err(Errno::Inval));
        assert_eq!(c.set_bar(2, Bar::Mem64(0x1000)), Err(Errno::Inval));
        assert_eq!(c.set_bar(5, Bar::Io(8)), Ok(()));
        // Replacing the 64-bit BAR frees its upper register.
        c.set_bar(3, Bar::Mem32(0x1000)).unwrap();
        assert!(!c.is_bar_upper(4));
        wr32(&mut c, reg::BAR0 + 16, 0xffff_ffff);
        assert_eq!(rd32(&c, reg::BAR0 + 16), 0, "BAR4 is empty again");
        c.set_bar(4, Bar::Io(8)).unwrap();
    }

    #[test]
    fn bar64_permissions_cover_exactly_the_address_bits() {
        let mut c = ConfigSpace::with_header(1, 2, 0, 0);
        c.set_bar(0, Bar::Mem64(0x4000)).unwrap();
        let w =
            |c: &ConfigSpace, o: usize| u32::from_le_bytes(c.write[o..o + 4].try_into().unwrap());
        assert_eq!(w(&c, reg::BAR0), 0xffff_c000);
        assert_eq!(w(&c, reg::BAR0 + 4), 0xffff_ffff);
        for o in (reg::BAR0 + 8..reg::BAR0 + 24).step_by(4) {
            assert_eq!(w(&c, o), 0, "offset {o:#x}");
        }
        assert!(c.rw1c[reg::BAR0..reg::BAR0 + 8].iter().all(|&b| b == 0));
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
    fn msi_capability_is_linked_and_permissioned() {
        let mut c = serial_like();
        c.add_msi(0x40, 1);
        assert_ne!(c.u16_at(reg::STATUS) & reg::STATUS_CAP_LIST, 0);
        let mut caps = [(0, 0); 4];
        let n = c.caps(&mut caps);
        assert_eq!(&caps[..n], &[(0x40, cap::ID_MSI)]);
        // The guest cannot move the list or change the ID.
        c.write(reg::CAP_PTR, &[0x80]).unwrap();
        c.write(0x40, &[0x11, 0x50]).unwrap();
        assert_eq!(c.caps(&mut caps), 1);
        assert_eq!(caps[0], (0x40, cap::ID_MSI));
        // Control: only enable and QSIZE stick; MMC=0 and 64-bit stay.
        c.write(0x42, &0xffffu16.to_le_bytes()).unwrap();
        assert_eq!(c.u16_at(0x42), 0x71 | cap::MSI_FLAGS_64BIT);
        assert!(c.msi_enabled(0x40));
        wr32(&mut c, 0x44, 0xfee0_1003);
        assert_eq!(rd32(&c, 0x44), 0xfee0_1000);
        wr32(&mut c, 0x48, 0x1234_5678);
        c.write(0x4c, &0xbeefu16.to_le_bytes()).unwrap();
        assert_eq!((rd32(&c, 0x48), c.u16_at(0x4c)), (0x1234_5678, 0xbeef));
        // Bytes past the capability stay read-only.
        c.write(0x4e, &[0xff, 0xff]).unwrap();
        assert_eq!(c.u16_at(0x4e), 0);
    }

    #[test]
    fn msi_ext_lays_out_the_four_variants() {
        // (64-bit, maskable) -> (size, data, mask, pending).
        for (is_64bit, maskable, len, data, mask) in [
            (false, false, 10, 0x48, None),
            (true, false, 14, 0x4c, None),
            (false, true, 0x14, 0x48, Some((0x4c, 0x50))),
            (true, true, 0x18, 0x4c, Some((0x50, 0x54))),
        ] {
            let mut c = serial_like();
            c.add_msi_ext(0x40, 4, is_64bit, maskable).unwrap();
            let l = c.msi_layout().unwrap();
            assert_eq!(
                l,
                MsiLayout {
                    vectors: 4,
                    is_64bit,
                    data,
                    mask
                }
            );
            let flags = c.u16_at(0x42);
            assert_eq!(flags & cap::MSI_FLAGS_QMASK, 2 << 1, "4 vectors capable");
            assert_eq!(flags & cap::MSI_FLAGS_64BIT != 0, is_64bit);
            assert_eq!(flags & cap::MSI_FLAGS_MASKBIT != 0, maskable);
            // Control: capable bits, 64-bit and per-vector masking stay.
            c.write(0x42, &0xffffu16.to_le_bytes()).unwrap();
            assert_eq!(c.u16_at(0x42), flags | 0x71);
            // Address dword aligned, data any value.
            wr32(&mut c, 0x44, 0xfee0_1003);
            assert_eq!(rd32(&c, 0x44), 0xfee0_1000);
            c.write(data, &0xbeefu16.to_le_bytes()).unwrap();
            assert_eq!(c.u16_at(data), 0xbeef);
            if is_64bit {
                wr32(&mut c, 0x48, 0x1234_5678);
                assert_eq!(rd32(&c, 0x48), 0x1234_5678);
            }
            if let Some((m, p)) = mask {
                // Mask bits only for the four vectors offered; pending bits
                // read-only.
                wr32(&mut c, m, !0);
                assert_eq!(rd32(&c, m), 0xf);
                wr32(&mut c, p, !0);
                assert_eq!(rd32(&c, p), 0);
            }
            // Nothing past the capability is writable, and it overlaps.
            let end: usize = 0x40 + len;
            wr32(&mut c, end.next_multiple_of(4), !0);
            assert_eq!(rd32(&c, end.next_multiple_of(4)), 0);
            assert_eq!(c.add_vendor((end - 1) & !3, &[]), Err(Errno::Inval));
            assert_eq!(c.add_vendor(end.next_multiple_of(4), &[]), Ok(()));
        }
    }

    #[test]
    fn msi_ext_refuses_bad_vectors_and_overlaps() {
        let mut c = serial_like();
        c.add_pm(0x58);
        let before = c.val;
        for (off, vectors) in [
            (0x40, 0),
            (0x40, 3),
            (0x40, 64),
            (0x42, 1),
            (0x44, 1),
            (0xf0, 1),
        ] {
            assert_eq!(
                c.add_msi_ext(off, vectors, true, true),
                Err(Errno::Inval),
                "{off:#x} {vectors}"
            );
        }
        assert_eq!(c.val, before);
        assert_eq!(c.msi_layout(), None);
        // 0x40 + 0x18 ends where the PM capability starts; 32 vectors own
        // every mask bit.
        c.add_msi_ext(0x40, 32, true, true).unwrap();
        wr32(&mut c, 0x50, !0);
        assert_eq!(rd32(&c, 0x50), !0);
    }

    #[test]
    fn msi_masked_vectors_wait_in_pending_until_unmasked() {
        let mut c = serial_like();
        c.add_msi_ext(0x40, 2, true, true).unwrap();
        let (m, p) = (0x50, 0x54);
        // Unmasked: sent at once, nothing pending.
        assert!(c.msi_raise(0));
        assert_eq!((rd32(&c, p), c.msi_take_unmasked()), (0, 0));
        // Masked: held as pending, once however often it is raised.
        wr32(&mut c, m, 0b01);
        assert!(!c.msi_raise(0));
        assert!(!c.msi_raise(0));
        assert!(c.msi_raise(1), "vector 1 is not masked");
        assert_eq!(rd32(&c, p), 0b01);
        assert_eq!(c.msi_take_unmasked(), 0, "still masked");
        // A vector the capability does not offer is never sent.
        assert!(!c.msi_raise(2));
        assert!(!c.msi_raise(40));
        assert_eq!(rd32(&c, p), 0b01);
        // The guest cannot clear the pending bit; unmasking delivers it.
        wr32(&mut c, p, 0);
        assert_eq!(rd32(&c, p), 0b01);
        wr32(&mut c, m, 0b10);
        assert_eq!(c.msi_take_unmasked(), 0b01);
        assert_eq!(rd32(&c, p), 0);
        assert_eq!(c.msi_take_unmasked(), 0, "delivered once");
        // Pending bits travel with the migrated state.
        assert!(!c.msi_raise(1));
        let map = c.change_map();
        let saved: [u8; 64] =
            core::array::from_fn(|i| c.changeable_bytes(&map).nth(i).unwrap_or(0));
        let n = c.changeable_bytes(&map).count();
        let mut d = serial_like();
        d.add_msi_ext(0x40, 2, true, true).unwrap();
        assert_eq!(d.layout_fingerprint(), c.layout_fingerprint());
        d.restore_changeable(&map, &saved[..n]).unwrap();
        assert_eq!((rd32(&d, m), rd32(&d, p)), (0b10, 0b10));
        // Without per-vector masking every offered vector goes out.
        let mut e = serial_like();
        e.add_msi(0x40, 1);
        assert!(e.msi_raise(0));
        assert!(!e.msi_raise(1));
        assert_eq!(e.msi_take_unmasked(), 0);
        // Without MSI, vector 0 (what the library sends) is not held.
        assert!(serial_like().msi_raise(0));
    }

    #[test]
    fn pm_capability_offers_d0_and_d3hot_only() {
        let mut c = serial_like();
        c.add_msi(0x40, 1);
        c.add_pm(0x50);
        let mut caps = [(0, 0); 4];
        let n = c.caps(&mut caps);
        assert_eq!(&caps[..n], &[(0x50, cap::ID_PM), (0x40, cap::ID_MSI)]);
        // PMC is read-only.
        c.write(0x52, &[0xff, 0xff]).unwrap();
        assert_eq!(c.u16_at(0x52), cap::PM_PMC_VERSION_1_2);
        assert_eq!(c.power_state(), Some(0));
        // D3hot sticks; PME enable, PME status and No_Soft_Reset do not move.
        c.write(0x54, &0xffffu16.to_le_bytes()).unwrap();
        assert_eq!(c.u16_at(0x54), 3 | cap::PM_CTRL_NO_SOFT_RESET);
        // D1 and D2 are not offered: the write is discarded.
        c.write(0x54, &[1, 0]).unwrap();
        assert_eq!(c.power_state(), Some(3));
        c.write(0x54, &[2, 0]).unwrap();
        assert_eq!(c.power_state(), Some(3));
        // Back to D0, also as part of a wider write across the register.
        wr32(&mut c, 0x54, 0);
        assert_eq!(c.power_state(), Some(0));
        c.write(0x53, &[0, 1]).unwrap();
        assert_eq!(c.power_state(), Some(0));
    }

    #[test]
    fn no_pm_capability_no_power_state() {
        let mut c = serial_like();
        assert_eq!(c.power_state(), None);
        // The bytes where a capability would be stay read-only.
        c.write(0x54, &[3, 0]).unwrap();
        assert_eq!(c.u16_at(0x54), 0);
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

    #[test]
    fn extended_space_is_4096_bytes_with_an_empty_capability_list() {
        let mut c = serial_like();
        c.set_extended();
        assert_eq!(c.size(), CFG_EXT_SIZE);
        // A zero header at 0x100 means no extended capabilities.
        assert_eq!(rd32(&c, EXT_CAP_START), 0);
        assert_eq!(rd32(&c, CFG_EXT_SIZE - 4), 0);
        // Extended space is read-only when no capability opens it.
        wr32(&mut c, EXT_CAP_START, 0xffff_ffff);
        wr32(&mut c, 0x800, 0xffff_ffff);
        assert_eq!(rd32(&c, EXT_CAP_START), 0);
        assert_eq!(rd32(&c, 0x800), 0);
        // Conventional space behaves as before.
        wr32(&mut c, reg::BAR0, 0xffff_ffff);
        assert_eq!(rd32(&c, reg::BAR0), 0xffff_fff9);
        // Accesses crossing or past the end fail and change nothing.
        let before = c.val;
        let mut b = [0u8; 4];
        assert_eq!(c.read(CFG_EXT_SIZE - 2, &mut b), Err(Errno::Inval));
        assert_eq!(c.read(CFG_EXT_SIZE, &mut b[..1]), Err(Errno::Inval));
        assert_eq!(c.write(CFG_EXT_SIZE - 1, &[1, 2]), Err(Errno::Inval));
        assert_eq!(c.write(usize::MAX, &[1]), Err(Errno::Inval));
        assert_eq!(c.val, before);
        assert_eq!(c.read(CFG_EXT_SIZE - 1, &mut b[..1]), Ok(()));
        // Zero-length accesses are fine up to the end, not past it.
        assert_eq!(c.read(CFG_EXT_SIZE, &mut []), Ok(()));
        assert_eq!(c.write(CFG_EXT_SIZE + 1, &[]), Err(Errno::Inval));
    }

    #[test]
    fn pcie_capability_describes_an_x1_endpoint() {
        let mut c = serial_like();
        c.add_pm(0x40);
        c.add_pcie(0x60).unwrap();
        assert_eq!(c.size(), CFG_EXT_SIZE);
        let mut caps = [(0, 0); 4];
        let n = c.caps(&mut caps);
        assert_eq!(&caps[..n], &[(0x60, cap::ID_EXP), (0x40, cap::ID_PM)]);
        assert_eq!(c.u16_at(0x62), 0x0002, "version 2, endpoint");
        let devcap = rd32(&c, 0x64);
        assert_eq!(devcap & cap::EXP_DEVCAP_PAYLOAD, 0, "128-byte payload");
        assert_ne!(devcap & cap::EXP_DEVCAP_FLR, 0);
        assert_eq!(c.u16_at(0x68), 0x2810, "reset device control");
        assert_eq!(rd32(&c, 0x6c) & 0x3ff, 0x11, "x1 at 2.5 GT/s");
        assert_eq!(c.u16_at(0x72) & 0x3ff, 0x11, "trained x1 at 2.5 GT/s");
        assert_eq!(rd32(&c, 0x8c), 0x2, "supported speeds: 2.5 GT/s");
        // Every register but the control ones is read-only.
        for o in (0x60..0x9c).step_by(4) {
            let before = rd32(&c, o);
            wr32(&mut c, o, 0xffff_ffff);
            wr32(&mut c, o, 0);
            let after = rd32(&c, o);
            match o {
                0x68 => assert_eq!(after, 0),
                0x70 => assert_eq!(after, before & !0xcb),
                _ => assert_eq!(after, before, "offset {o:#x}"),
            }
        }
        assert_eq!(rd32(&c, EXT_CAP_START), 0, "no extended capabilities");
    }

    #[test]
    fn pcie_device_control_takes_defined_bits_and_flr_reads_zero() {
        let mut c = serial_like();
        c.add_pcie(0x60).unwrap();
        assert!(!c.take_flr_request());
        // Everything but phantom functions and Initiate FLR sticks.
        c.write(0x68, &0x7fffu16.to_le_bytes()).unwrap();
        assert_eq!(c.u16_at(0x68), 0x7dff);
        assert!(!c.take_flr_request(), "no FLR without bit 15");
        // Initiate FLR reads zero and is reported once.
        c.write(0x68, &0xffffu16.to_le_bytes()).unwrap();
        assert_eq!(c.u16_at(0x68), 0x7dff);
        assert!(c.take_flr_request());
        assert!(!c.take_flr_request());
        // Also through a byte write or a dword write that covers it.
        c.write(0x69, &[0x80]).unwrap();
        assert!(c.take_flr_request());
        wr32(&mut c, 0x68, 0x8000);
        assert!(c.take_flr_request());
        assert_eq!(c.u16_at(0x68), 0);
        // A write next to the register does not request one.
        c.write(0x6a, &[0xff, 0xff]).unwrap();
        c.write(0x67, &[0xff]).unwrap();
        assert!(!c.take_flr_request());
        // A failed write does not either.
        assert_eq!(c.write(0x69, &[0x80; 4096]), Err(Errno::Inval));
        assert!(!c.take_flr_request());
    }

    #[test]
    fn pcie_device_status_errors_are_rw1c() {
        let mut c = serial_like();
        c.add_pcie(0x60).unwrap();
        c.set(0x6a, 2, 0x3f);
        c.write(0x6a, &[0, 0]).unwrap();
        assert_eq!(c.u16_at(0x6a), 0x3f);
        c.write(0x6a, &[0x05, 0]).unwrap();
        assert_eq!(c.u16_at(0x6a), 0x3a);
        c.write(0x6a, &[0xff, 0xff]).unwrap();
        assert_eq!(c.u16_at(0x6a), 0x30, "aux power and pending stay");
    }

    #[test]
    fn msix_capability_points_at_the_table_and_pba() {
        let mut c = serial_like();
        assert_eq!(c.msix_control(), None);
        c.add_msix(0x40, 8, 1, 0x800, 1, 0xc00).unwrap();
        let mut caps = [(0, 0); 4];
        let n = c.caps(&mut caps);
        assert_eq!(&caps[..n], &[(0x40, cap::ID_MSIX)]);
        assert_eq!(c.msix_control(), Some(7));
        assert_eq!(rd32(&c, 0x44), 0x801);
        assert_eq!(rd32(&c, 0x48), 0xc01);
        // Only enable and function mask stick.
        c.write(0x42, &0xffffu16.to_le_bytes()).unwrap();
        assert_eq!(c.msix_control(), Some(0xc007));
        c.write(0x43, &[0x80]).unwrap();
        assert_eq!(c.msix_control(), Some(0x8007));
        wr32(&mut c, 0x44, 0);
        wr32(&mut c, 0x48, 0xffff_ffff);
        assert_eq!((rd32(&c, 0x44), rd32(&c, 0x48)), (0x801, 0xc01));
        assert_eq!(rd32(&c, 0x4c), 0, "nothing past the capability");
    }

    #[test]
    fn msix_capability_rejects_impossible_layouts() {
        let mut c = serial_like();
        let before = c.val;
        for (vectors, tbar, toff, pbar, poff) in [
            (0, 0, 0, 0, 0x800),
            (2049, 0, 0, 0, 0x10000),
            (1, 6, 0, 0, 0x800),
            (1, 0, 0, 7, 0x800),
            (1, 0, 4, 0, 0x800),
            (1, 0, 0, 0, 0x804),
            (8, 2, 0, 2, 0x78),
            (8, 2, 0x100, 2, 0x178),
        ] {
            assert_eq!(
                c.add_msix(0x40, vectors, tbar, toff, pbar, poff),
                Err(Errno::Inval),
                "{vectors} {tbar} {toff:#x} {pbar} {poff:#x}"
            );
        }
        assert_eq!(c.val, before);
        // Back to back in one BAR, or at the same offset of two BARs, is fine.
        assert_eq!(c.add_msix(0x40, 8, 2, 0, 2, 0x80), Ok(()));
        assert_eq!(
            c.add_msix(0x44, 8, 2, 0, 3, 0),
            Err(Errno::Inval),
            "overlap"
        );
        assert_eq!(c.add_msix(0x4c, 2048, 2, 0, 3, 0), Ok(()));
        assert_eq!(c.u16_at(0x4e), 0x7ff);
    }

    #[test]
    fn vendor_capability_is_read_only_data() {
        let mut c = serial_like();
        c.add_msi(0x40, 1);
        c.add_vendor(0x50, b"rmdev").unwrap();
        let mut caps = [(0, 0); 4];
        let n = c.caps(&mut caps);
        assert_eq!(&caps[..n], &[(0x50, cap::ID_VNDR), (0x40, cap::ID_MSI)]);
        let mut b = [0u8; 8];
        c.read(0x50, &mut b).unwrap();
        assert_eq!(&b, &[0x09, 0x40, 8, b'r', b'm', b'd', b'e', b'v']);
        c.write(0x50, &[0xff; 8]).unwrap();
        let mut after = [0u8; 8];
        c.read(0x50, &mut after).unwrap();
        assert_eq!(after, b);
        // An empty one is just the header; the largest fills the space.
        c.add_vendor(0x58, &[]).unwrap();
        assert_eq!(c.u16_at(0x5a), 3);
        c.add_vendor(0x5c, &[0xa5; 0xa1]).unwrap();
        assert_eq!(c.val[0x5e], 0xa4);
        assert_eq!(c.val[0xff], 0xa5);
        assert_eq!(c.caps(&mut caps), 4);
    }

    #[test]
    fn vendor_capability_must_fit_and_not_overlap() {
        let mut c = serial_like();
        c.add_pm(0x40);
        let before = c.val;
        for (off, len) in [
            (0x44, 1),
            (0x3c, 1),
            (0x4a, 1),
            (0xfc, 2),
            (0x48, 0xb6),
            (0x48, 300),
            (usize::MAX - 3, 1),
        ] {
            assert_eq!(c.add_vendor(off, &[0; 300][..len]), Err(Errno::Inval));
        }
        assert_eq!(c.val, before);
        assert_eq!(c.add_vendor(0xfc, &[1]), Ok(()));
        assert_eq!(c.add_vendor(0x48, &[0; 0xb1]), Ok(()), "0x48 to 0xfc");
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
    fn msix_layout_decodes_the_capability() {
        let mut c = serial_like();
        assert_eq!(c.msix_layout(), None);
        c.add_msix(0x70, 3, 2, 0, 2, 0x800).unwrap();
        let l = c.msix_layout().unwrap();
        assert_eq!(l.vectors, 3);
        assert_eq!((l.table_bar, l.table.clone()), (2, 0..48));
        assert_eq!((l.pba_bar, l.pba.clone()), (2, 0x800..0x808));
        assert!(!c.is_express());
        c.add_pcie(0x80).unwrap();
        assert!(c.is_express());
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
