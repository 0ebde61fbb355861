// SPDX-License-Identifier: GPL-2.0

//! The MSI-X capability (PCI Local Bus 3.0, 6.8.2): where the table and
//! the pending bit array are. Their contents are userspace's to emulate.

use super::*;

impl ConfigSpace {
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

    /// The MSI-X capability's Message Control register, if there is an
    /// MSI-X capability.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "the library leaves MSI-X enable and masking to userspace"
        )
    )]
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
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

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
}
