// SPDX-License-Identifier: GPL-2.0

//! The NVMe controller's PCI face (kernel-free): identity, BARs and
//! configuration space.
//!
//! A PCI Express function of class 01h/08h prog-if 02h (NVM Express), which
//! is what the Linux `nvme` driver and SeaBIOS bind by. BAR0 (64-bit
//! memory, 16 KiB) holds the controller's registers and doorbells; the
//! MSI-X table and PBA have a 64-bit memory BAR of their own (BAR2), so that
//! the register BAR is the device's whole and can be served in process
//! context (see `PciDevice::process_bar`). Interrupts: INTx, MSI with
//! per-vector masking and MSI-X, [`VECTORS`] vectors each.

use crate::vfio_pci_core::emul::{
    config::{reg, Bar, ConfigSpace},
    EResult,
};

/// PCI identity: the vendor rmdev's serial card uses (mtty's), a device ID
/// of its own. Guests bind by class, not by ID.
pub(crate) const VENDOR: u16 = 0x4348;
pub(crate) const DEVICE: u16 = 0x3254;
pub(crate) const CLASS_PROG: u32 = 0x01_08_02;
pub(crate) const REVISION: u8 = 0x01;

/// The register BAR and its size (the doorbells of every queue fit in the
/// second 4 KiB page, with a stride of four bytes).
pub(crate) const REGS_BAR: usize = 0;
pub(crate) const REGS_BAR_SIZE: u64 = 0x4000;
/// The MSI-X BAR: the table at 0 and the PBA at 2 KiB (BAR3 is its upper
/// half).
pub(crate) const MSIX_BAR: usize = 2;
pub(crate) const MSIX_BAR_SIZE: u64 = 0x1000;
pub(crate) const MSIX_PBA: u32 = 0x800;
/// Interrupt vectors offered, MSI and MSI-X alike: the library's maximum.
pub(crate) const VECTORS: u16 = 8;

/// Where the capabilities sit: power management (8 bytes), MSI with
/// per-vector masking (0x18), PCI Express (0x3c), MSI-X (12).
pub(crate) const PM_CAP: usize = 0x40;
pub(crate) const MSI_CAP: usize = 0x50;
pub(crate) const PCIE_CAP: usize = 0x70;
pub(crate) const MSIX_CAP: usize = 0xb0;

/// BAR `index` of the controller.
pub(crate) fn bar(index: usize) -> Bar {
    match index {
        REGS_BAR => Bar::Mem64(REGS_BAR_SIZE),
        MSIX_BAR => Bar::Mem64(MSIX_BAR_SIZE),
        _ => Bar::None,
    }
}

/// The controller's configuration space at reset.
pub(crate) fn config() -> EResult<ConfigSpace> {
    let mut c = ConfigSpace::with_header(VENDOR, DEVICE, CLASS_PROG, REVISION);
    c.set(reg::SUBSYS_VENDOR, 2, VENDOR.into());
    c.set(reg::SUBSYS_ID, 2, DEVICE.into());
    c.set(reg::INT_PIN, 1, 1);
    for i in 0..6 {
        match bar(i) {
            Bar::None => {}
            b => c.set_bar(i, b)?,
        }
    }
    c.add_pm(PM_CAP);
    c.add_msi_ext(MSI_CAP, VECTORS.into(), true, true)?;
    c.add_pcie(PCIE_CAP)?;
    c.add_msix(
        MSIX_CAP,
        VECTORS,
        MSIX_BAR as u8,
        0,
        MSIX_BAR as u8,
        MSIX_PBA,
    )?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfio_pci_core::emul::config::cap;

    #[test]
    fn the_function_is_an_nvme_controller_with_its_capabilities() {
        let c = config().unwrap();
        let mut b = [0u8; 4];
        c.read(reg::CLASS_PROG - 1, &mut b).unwrap();
        assert_eq!(u32::from_le_bytes(b) >> 8, CLASS_PROG);
        let mut caps = [(0, 0); 8];
        let n = c.caps(&mut caps);
        assert_eq!(
            &caps[..n],
            // The chain lists the last one added first.
            &[
                (MSIX_CAP, cap::ID_MSIX),
                (PCIE_CAP, cap::ID_EXP),
                (MSI_CAP, cap::ID_MSI),
                (PM_CAP, cap::ID_PM),
            ]
        );
        assert!(c.is_express());
        let l = c.msix_layout().unwrap();
        assert_eq!((l.table_bar, l.pba_bar), (MSIX_BAR, MSIX_BAR));
        // The register BAR holds nothing the library serves.
        assert_ne!(l.table_bar, REGS_BAR);
        for i in 0..6 {
            assert_eq!(c.bar(i), bar(i));
        }
    }
}
