// SPDX-License-Identifier: GPL-2.0

//! The type-0 header: identity, command and status, and the base address
//! registers (PCI Local Bus 3.0, 6.2).

use super::*;

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

/// What a base address register decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bar {
    /// No BAR: reads zero, writes are ignored, sizing finds nothing.
    None,
    /// I/O space of `size` bytes (a power of two, at least 4).
    Io(u32),
    /// 32-bit memory space of `size` bytes (a power of two, at least 16).
    /// Offered to devices; the serial card has I/O BARs only.
    #[cfg_attr(not(test), expect(dead_code, reason = "no device has one yet"))]
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

impl ConfigSpace {
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
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

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
}
