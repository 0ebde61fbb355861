// SPDX-License-Identifier: GPL-2.0

//! The serial card's PCI face (kernel-free): BARs and configuration space.
//!
//! Both variants carry mtty's identity (vendor 0x4348, device 0x3253, class
//! 07h/00h prog-if 02h) so a stock guest's `8250_pci` binds them, one 8-byte
//! I/O BAR per port and MSI at 0x40. The conventional variants have mtty's
//! layout: a 64-bit MSI capability and power management at 0x50. The PCI
//! Express variant's MSI has per-vector masking (so power management moves
//! to 0x58), and it adds what a PCI Express function has: a PCI Express
//! capability (with Function Level Reset) and 4 KiB of configuration space,
//! MSI-X with its table and PBA in a 64-bit memory BAR (BAR2 and BAR3, as a
//! PCI Express function's memory BARs usually are) that also holds a page of
//! mappable scratch memory, and a vendor-specific capability naming the card.

use crate::vfio_pci_core::emul::{
    config::{reg, Bar, ConfigSpace},
    region::DevRegion,
    uapi::VFIO_REGION_TYPE_PCI_VENDOR_TYPE,
    EResult,
};

/// PCI identity, the same as mtty's.
pub(crate) const VENDOR: u16 = 0x4348;
pub(crate) const DEVICE: u16 = 0x3253;
pub(crate) const CLASS_PROG: u32 = 0x07_00_02;
pub(crate) const REVISION: u8 = 0x10;
/// Where the capabilities sit. MSI takes 14 bytes (0x18 with per-vector
/// masking, on the PCI Express variant), PM 8, PCI Express 0x3c, MSI-X 12.
pub(crate) const MSI_CAP: usize = 0x40;
pub(crate) const PM_CAP: usize = 0x50;
/// The PCI Express variant's power management capability, after its longer
/// MSI capability.
pub(crate) const EXP_PM_CAP: usize = 0x58;
pub(crate) const PCIE_CAP: usize = 0x60;
pub(crate) const MSIX_CAP: usize = 0xa0;
pub(crate) const VNDR_CAP: usize = 0xb0;
/// One port per 8-byte I/O BAR.
pub(crate) const PORT_BAR_SIZE: u32 = 8;
/// The MSI-X BAR: the table at 0 and the PBA at 2 KiB in its first page,
/// then a page of scratch memory. A 64-bit BAR: BAR3 holds its upper half.
pub(crate) const MSIX_BAR: usize = 2;
pub(crate) const MSIX_BAR_SIZE: u64 = 8192;
pub(crate) const MSIX_PBA: u32 = 0x800;
/// The scratch memory in the MSI-X BAR: plain RAM the library backs with a
/// page, which userspace may map (it shares no page with the table or PBA).
pub(crate) const SCRATCH: core::ops::Range<u64> = 0x1000..0x2000;
/// MSI-X vectors: the ports' interrupt is vector 0; vector 1 is spare, so
/// userspace can exercise ranges.
pub(crate) const MSIX_VECTORS: u16 = 2;
/// What the vendor-specific capability carries.
pub(crate) const VNDR_DATA: &[u8] = b"rmdev";

/// The statistics region's type: a PCI vendor type with the card's vendor
/// ID, which names the subtypes.
pub(crate) const STATS_TYPE: u32 = VFIO_REGION_TYPE_PCI_VENDOR_TYPE | VENDOR as u32;
/// The statistics region's subtype.
pub(crate) const STATS_SUBTYPE: u32 = 1;
/// Bytes of statistics per port: three little-endian `u64` counters.
pub(crate) const STATS_PORT_SIZE: usize = 24;
/// The most ports a card has.
pub(crate) const MAX_PORTS: usize = 2;

/// The card's read-only statistics region (device region 0, VFIO region
/// index 9): for each port, at `24 * port`, the bytes transmitted (written
/// to THR), received (read from RBR) and lost to receive overruns since the
/// instance was created, each a little-endian `u64`. It does not change the
/// PCI function the guest sees, only the VFIO region list; the counters are
/// the instance's, not the guest's (a reset keeps them; they do not
/// migrate).
pub(crate) fn stats_region(ports: usize) -> DevRegion {
    DevRegion {
        kind: STATS_TYPE,
        subtype: STATS_SUBTYPE,
        size: (STATS_PORT_SIZE * ports.min(MAX_PORTS)) as u64,
        writable: false,
    }
}

/// Reads `out.len()` bytes at `off` of the statistics region whose ports
/// have the counters `ports` (`[tx, rx, overruns]` each). Bytes past the
/// ports given read zero.
pub(crate) fn stats_read(ports: &[[u64; 3]], off: u64, out: &mut [u8]) {
    let mut all = [0u8; STATS_PORT_SIZE * MAX_PORTS];
    for (chunk, counters) in all.chunks_exact_mut(STATS_PORT_SIZE).zip(ports) {
        for (b, c) in chunk.chunks_exact_mut(8).zip(counters) {
            b.copy_from_slice(&c.to_le_bytes());
        }
    }
    let start = usize::try_from(off).unwrap_or(usize::MAX);
    for (i, b) in out.iter_mut().enumerate() {
        *b = start
            .checked_add(i)
            .and_then(|j| all.get(j))
            .copied()
            .unwrap_or(0);
    }
}

/// BAR `index` of a card with `ports` ports.
pub(crate) fn bar(ports: usize, express: bool, index: usize) -> Bar {
    if index < ports {
        Bar::Io(PORT_BAR_SIZE)
    } else if express && index == MSIX_BAR {
        Bar::Mem64(MSIX_BAR_SIZE)
    } else {
        Bar::None
    }
}

/// The plain memory in BAR `index` of a card: the PCI Express variant's
/// scratch page.
pub(crate) fn bar_memory(express: bool, index: usize) -> Option<core::ops::Range<u64>> {
    (express && index == MSIX_BAR).then_some(SCRATCH)
}

/// The card's configuration space at reset.
pub(crate) fn config(ports: usize, express: bool) -> EResult<ConfigSpace> {
    let mut c = ConfigSpace::with_header(VENDOR, DEVICE, CLASS_PROG, REVISION);
    c.set(reg::SUBSYS_VENDOR, 2, VENDOR.into());
    c.set(reg::SUBSYS_ID, 2, DEVICE.into());
    // Decode I/O from the start, as mtty does.
    c.set(reg::COMMAND, 2, reg::CMD_IO.into());
    c.set(reg::INT_PIN, 1, 1);
    // Only the BARs there are: the upper half of a 64-bit BAR is not one
    // of its own (and an unset BAR already reads zero and sizes to nothing).
    for i in 0..6 {
        match bar(ports, express, i) {
            Bar::None => {}
            b => c.set_bar(i, b)?,
        }
    }
    // MSI, announced in config space as well as in GET_IRQ_INFO (mtty offers
    // MSI only in the latter, where a guest cannot see it). The PCI Express
    // variant's has per-vector masking, which the library emulates; the
    // conventional cards keep mtty's layout.
    // Power management (D0 and D3hot), as PCI requires of a PCI Express
    // function and as guests expect to find.
    if express {
        c.add_msi_ext(MSI_CAP, 1, true, true)?;
        c.add_pm(EXP_PM_CAP);
    } else {
        c.add_msi(MSI_CAP, 1);
        c.add_pm(PM_CAP);
    }
    if express {
        c.add_pcie(PCIE_CAP)?;
        c.add_msix(
            MSIX_CAP,
            MSIX_VECTORS,
            MSIX_BAR as u8,
            0,
            MSIX_BAR as u8,
            MSIX_PBA,
        )?;
        c.add_vendor(VNDR_CAP, VNDR_DATA)?;
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfio_pci_core::emul::config::{cap, CFG_EXT_SIZE, CFG_SIZE};
    use crate::vfio_pci_core::emul::mig::crc32;

    #[test]
    fn both_variants_build_with_their_capabilities() {
        let plain = config(2, false).unwrap();
        let mut caps = [(0, 0); 8];
        let n = plain.caps(&mut caps);
        assert_eq!(&caps[..n], &[(PM_CAP, cap::ID_PM), (MSI_CAP, cap::ID_MSI)]);
        assert_eq!(plain.size(), CFG_SIZE);
        assert_eq!(plain.msix_layout(), None);
        assert!(!plain.is_express());

        let x = config(1, true).unwrap();
        let n = x.caps(&mut caps);
        assert_eq!(
            &caps[..n],
            &[
                (VNDR_CAP, cap::ID_VNDR),
                (MSIX_CAP, cap::ID_MSIX),
                (PCIE_CAP, cap::ID_EXP),
                (EXP_PM_CAP, cap::ID_PM),
                (MSI_CAP, cap::ID_MSI),
            ]
        );
        // A maskable 64-bit MSI capability that ends where PM starts.
        let msi = x.msi_layout().unwrap();
        assert!(msi.is_64bit);
        assert_eq!(msi.mask, Some((MSI_CAP + 0x10, MSI_CAP + 0x14)));
        assert_eq!(MSI_CAP + cap::MSI_SIZEOF_64_MASK, EXP_PM_CAP);
        let m = plain.msi_layout().unwrap();
        assert_eq!((m.is_64bit, m.mask), (true, None), "mtty's layout");
        assert_eq!(x.size(), CFG_EXT_SIZE);
        assert!(x.is_express());
        let l = x.msix_layout().unwrap();
        assert_eq!(l.vectors, u32::from(MSIX_VECTORS));
        assert_eq!((l.table_bar, l.pba_bar), (MSIX_BAR, MSIX_BAR));
        assert!(l.table.end <= u64::from(MSIX_PBA));
        assert!(l.pba.end <= 0x1000);
        assert_eq!(bar(1, true, MSIX_BAR), Bar::Mem64(MSIX_BAR_SIZE));
        assert_eq!(bar(1, true, MSIX_BAR + 1), Bar::None, "the upper half");
        assert!(x.is_bar_upper(MSIX_BAR + 1));
        assert_eq!(bar(1, false, MSIX_BAR), Bar::None);
        // The scratch page follows the page holding the table and PBA, and
        // ends the BAR.
        assert_eq!(bar_memory(true, MSIX_BAR), Some(0x1000..0x2000));
        assert!(l.pba.end <= SCRATCH.start && SCRATCH.start.is_multiple_of(4096));
        assert_eq!(SCRATCH.end, MSIX_BAR_SIZE);
        assert_eq!(
            crate::vfio_pci_core::emul::region::check_memory(
                &SCRATCH,
                MSIX_BAR_SIZE,
                &[l.table.clone(), l.pba.clone()],
                4096
            ),
            Ok(())
        );
        for i in 0..6 {
            assert_eq!(bar_memory(false, i), None, "conventional: no memory");
            assert_eq!(bar_memory(true, i).is_some(), i == MSIX_BAR);
        }
        let mut v = [0u8; 8];
        x.read(VNDR_CAP + 3, &mut v[..VNDR_DATA.len()]).unwrap();
        assert_eq!(&v[..VNDR_DATA.len()], VNDR_DATA);
    }

    /// A digest of a configuration space: its 256 bytes at reset and its
    /// layout fingerprint (fixed bits and every permission mask).
    fn digest(c: &ConfigSpace) -> (u32, u32) {
        let mut b = [0u8; CFG_SIZE];
        c.read(0, &mut b).unwrap();
        (crc32(&b), c.layout_fingerprint())
    }

    #[test]
    fn conventional_cards_stay_byte_for_byte_as_they_were() {
        // The values the conventional cards had before the PCI Express card
        // gained its 64-bit BAR: they mirror mtty, so they must not move.
        assert_eq!(
            digest(&config(1, false).unwrap()),
            (0x4e51_786a, 0xa818_df5f)
        );
        assert_eq!(
            digest(&config(2, false).unwrap()),
            (0x8a85_e453, 0xc89f_71b0)
        );
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
    fn express_bar2_is_64bit_and_sizes_restores_and_resets() {
        let reset = config(1, true).unwrap();
        let mut c = reset.clone();
        let (lo, hi) = (reg::BAR0 + 4 * MSIX_BAR, reg::BAR0 + 4 * MSIX_BAR + 4);
        assert_eq!((rd32(&c, lo), rd32(&c, hi)), (0x4, 0), "64-bit memory");
        wr32(&mut c, lo, !0);
        wr32(&mut c, hi, !0);
        let mask = u64::from(rd32(&c, lo)) | u64::from(rd32(&c, hi)) << 32;
        assert_eq!(mask & !0xf, !(MSIX_BAR_SIZE - 1), "the 64-bit size mask");
        assert_eq!(mask & 0xf, 0x4, "type bits survive sizing");
        // An address above 4 GiB sticks; the MSI-X table BIR still names
        // the lower register.
        wr32(&mut c, lo, 0xfebf_0000);
        wr32(&mut c, hi, 0x1);
        assert_eq!((rd32(&c, lo), rd32(&c, hi)), (0xfebf_0004, 0x1));
        assert_eq!(c.msix_layout().unwrap().table_bar, MSIX_BAR);
        // The ports' BAR and the empty BARs are as before.
        wr32(&mut c, reg::BAR0, !0);
        assert_eq!(rd32(&c, reg::BAR0), 0xffff_fff9);
        for i in [1, 4, 5] {
            wr32(&mut c, reg::BAR0 + 4 * i, !0);
            assert_eq!(rd32(&c, reg::BAR0 + 4 * i), 0, "BAR{i}");
        }
        // A reset copy brings both registers back.
        c.clone_from(&reset);
        assert_eq!((rd32(&c, lo), rd32(&c, hi)), (0x4, 0));
    }

    #[test]
    fn express_msi_mask_holds_the_interrupt_until_unmasked() {
        let mut c = config(1, true).unwrap();
        let (mask, pending) = c.msi_layout().unwrap().mask.unwrap();
        // Only vector 0 is offered: one mask bit.
        wr32(&mut c, mask, !0);
        assert_eq!(rd32(&c, mask), 1);
        assert!(!c.msi_raise(0));
        assert_eq!(rd32(&c, pending), 1);
        wr32(&mut c, mask, 0);
        assert_eq!(c.msi_take_unmasked(), 1);
        assert_eq!(rd32(&c, pending), 0);
        assert!(c.msi_raise(0));
    }

    #[test]
    fn statistics_region_layout() {
        let r = stats_region(2);
        assert_eq!(r.kind, 0x8000_4348);
        assert_eq!((r.subtype, r.size, r.writable), (1, 48, false));
        assert_eq!(stats_region(1).size, 24);
        assert_eq!(
            crate::vfio_pci_core::emul::region::check_dev_regions(&[r]),
            Ok(())
        );
        let ports = [[1, 2, 3], [0x0102_0304_0506_0708, 5, 6]];
        let mut b = [0xffu8; 48];
        stats_read(&ports, 0, &mut b);
        assert_eq!(&b[..8], &1u64.to_le_bytes());
        assert_eq!(&b[8..16], &2u64.to_le_bytes());
        assert_eq!(&b[16..24], &3u64.to_le_bytes());
        assert_eq!(&b[24..32], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&b[40..48], &6u64.to_le_bytes());
        // Unaligned and partial reads, and reads past the data.
        let mut c = [0xffu8; 3];
        stats_read(&ports, 25, &mut c);
        assert_eq!(c, [7, 6, 5]);
        stats_read(&ports[..1], 30, &mut c);
        assert_eq!(c, [0, 0, 0]);
        stats_read(&ports, u64::MAX, &mut c);
        assert_eq!(c, [0, 0, 0]);
    }
}
