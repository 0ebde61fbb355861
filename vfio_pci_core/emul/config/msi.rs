// SPDX-License-Identifier: GPL-2.0

//! The MSI capability (PCI Local Bus 3.0, 6.8.1): its layouts and the
//! per-vector mask and pending bits.

use super::*;

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

impl ConfigSpace {
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

    /// Whether the guest enabled MSI in the capability at `off`.
    pub(crate) fn msi_enabled(&self, off: usize) -> bool {
        self.u16_at(off + cap::MSI_FLAGS) & cap::MSI_FLAGS_ENABLE != 0
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

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
}
