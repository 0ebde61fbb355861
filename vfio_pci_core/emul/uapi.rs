// SPDX-License-Identifier: GPL-2.0

//! VFIO uAPI numbers from `include/uapi/linux/vfio.h`.
//!
//! They are repeated here so that the kernel-free model and its host tests can
//! use them. The kernel glue checks each one against the generated bindings at
//! compile time, so a mismatch does not build.

/// `VFIO_TYPE`, the ioctl type letter `';'`.
pub(crate) const VFIO_TYPE: u32 = b';' as u32;
/// `VFIO_BASE`, the first VFIO ioctl number.
pub(crate) const VFIO_BASE: u32 = 100;

/// `_IO(VFIO_TYPE, VFIO_BASE + nr)`.
const fn vfio_io(nr: u32) -> u32 {
    (VFIO_TYPE << 8) | (VFIO_BASE + nr)
}

pub(crate) const VFIO_DEVICE_GET_INFO: u32 = vfio_io(7);
/// The VFIO core handles this one itself since 6.19 (see `get_region_info_caps`).
#[cfg_attr(not(test), expect(dead_code, reason = "the VFIO core answers it"))]
pub(crate) const VFIO_DEVICE_GET_REGION_INFO: u32 = vfio_io(8);
pub(crate) const VFIO_DEVICE_GET_IRQ_INFO: u32 = vfio_io(9);
pub(crate) const VFIO_DEVICE_SET_IRQS: u32 = vfio_io(10);
pub(crate) const VFIO_DEVICE_RESET: u32 = vfio_io(11);
/// The VFIO core answers it itself: the migration features through the
/// device's migration ops, any other with `ENOTTY` (the library sets no
/// `device_feature` op).
#[cfg_attr(not(test), expect(dead_code, reason = "the VFIO core answers it"))]
pub(crate) const VFIO_DEVICE_FEATURE: u32 = vfio_io(17);

pub(crate) const VFIO_DEVICE_FLAGS_RESET: u32 = 1 << 0;
pub(crate) const VFIO_DEVICE_FLAGS_PCI: u32 = 1 << 1;

pub(crate) const VFIO_REGION_INFO_FLAG_READ: u32 = 1 << 0;
pub(crate) const VFIO_REGION_INFO_FLAG_WRITE: u32 = 1 << 1;
pub(crate) const VFIO_REGION_INFO_FLAG_MMAP: u32 = 1 << 2;
pub(crate) const VFIO_REGION_INFO_FLAG_CAPS: u32 = 1 << 3;
/// The region-type capability's ID: `struct vfio_region_info_cap_type`,
/// `{ u32 type, u32 subtype }` after the header.
pub(crate) const VFIO_REGION_INFO_CAP_TYPE: u32 = 2;
/// Region types from here on are PCI vendor types: the low 16 bits are the
/// vendor ID, the subtypes the vendor's.
pub(crate) const VFIO_REGION_TYPE_PCI_VENDOR_TYPE: u32 = 1 << 31;

pub(crate) const VFIO_IRQ_INFO_EVENTFD: u32 = 1 << 0;
pub(crate) const VFIO_IRQ_INFO_MASKABLE: u32 = 1 << 1;
pub(crate) const VFIO_IRQ_INFO_AUTOMASKED: u32 = 1 << 2;
pub(crate) const VFIO_IRQ_INFO_NORESIZE: u32 = 1 << 3;

pub(crate) const VFIO_IRQ_SET_DATA_NONE: u32 = 1 << 0;
pub(crate) const VFIO_IRQ_SET_DATA_BOOL: u32 = 1 << 1;
pub(crate) const VFIO_IRQ_SET_DATA_EVENTFD: u32 = 1 << 2;
pub(crate) const VFIO_IRQ_SET_ACTION_MASK: u32 = 1 << 3;
pub(crate) const VFIO_IRQ_SET_ACTION_UNMASK: u32 = 1 << 4;
pub(crate) const VFIO_IRQ_SET_ACTION_TRIGGER: u32 = 1 << 5;
pub(crate) const VFIO_IRQ_SET_DATA_TYPE_MASK: u32 =
    VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD;
pub(crate) const VFIO_IRQ_SET_ACTION_TYPE_MASK: u32 =
    VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER;

pub(crate) const VFIO_PCI_BAR0_REGION_INDEX: u32 = 0;
pub(crate) const VFIO_PCI_BAR5_REGION_INDEX: u32 = 5;
pub(crate) const VFIO_PCI_ROM_REGION_INDEX: u32 = 6;
pub(crate) const VFIO_PCI_CONFIG_REGION_INDEX: u32 = 7;
pub(crate) const VFIO_PCI_VGA_REGION_INDEX: u32 = 8;
pub(crate) const VFIO_PCI_NUM_REGIONS: u32 = 9;

pub(crate) const VFIO_PCI_INTX_IRQ_INDEX: u32 = 0;
pub(crate) const VFIO_PCI_MSI_IRQ_INDEX: u32 = 1;
pub(crate) const VFIO_PCI_MSIX_IRQ_INDEX: u32 = 2;
pub(crate) const VFIO_PCI_ERR_IRQ_INDEX: u32 = 3;
pub(crate) const VFIO_PCI_REQ_IRQ_INDEX: u32 = 4;
pub(crate) const VFIO_PCI_NUM_IRQS: u32 = 5;

/// `minsz` of `struct vfio_device_info`: up to and including `num_irqs`.
pub(crate) const DEVICE_INFO_MINSZ: usize = 16;
/// `minsz` of `struct vfio_irq_info`: up to and including `count`.
pub(crate) const IRQ_INFO_MINSZ: usize = 16;
/// `minsz` of `struct vfio_irq_set`: up to and including `count`.
pub(crate) const IRQ_SET_MINSZ: usize = 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_abi() {
        // The values the C headers expand to, as userspace sees them.
        assert_eq!(VFIO_DEVICE_GET_INFO, 0x3b6b);
        assert_eq!(VFIO_DEVICE_GET_REGION_INFO, 0x3b6c);
        assert_eq!(VFIO_DEVICE_GET_IRQ_INFO, 0x3b6d);
        assert_eq!(VFIO_DEVICE_SET_IRQS, 0x3b6e);
        assert_eq!(VFIO_DEVICE_RESET, 0x3b6f);
        assert_eq!(VFIO_DEVICE_FEATURE, 0x3b75);
    }

    #[test]
    fn flags_indexes_and_sizes_match_the_abi() {
        assert_eq!((VFIO_DEVICE_FLAGS_RESET, VFIO_DEVICE_FLAGS_PCI), (1, 2));
        assert_eq!(
            [
                VFIO_REGION_INFO_FLAG_READ,
                VFIO_REGION_INFO_FLAG_WRITE,
                VFIO_REGION_INFO_FLAG_MMAP,
                VFIO_REGION_INFO_FLAG_CAPS,
            ],
            [1, 2, 4, 8]
        );
        assert_eq!(VFIO_REGION_INFO_CAP_TYPE, 2);
        assert_eq!(
            [
                VFIO_PCI_BAR0_REGION_INDEX,
                VFIO_PCI_BAR5_REGION_INDEX,
                VFIO_PCI_ROM_REGION_INDEX,
                VFIO_PCI_CONFIG_REGION_INDEX,
                VFIO_PCI_VGA_REGION_INDEX,
                VFIO_PCI_NUM_REGIONS,
            ],
            [0, 5, 6, 7, 8, 9]
        );
        // Up to and including the last input field.
        assert_eq!(
            (DEVICE_INFO_MINSZ, IRQ_INFO_MINSZ, IRQ_SET_MINSZ),
            (16, 16, 20)
        );
    }
}
