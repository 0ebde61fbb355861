// SPDX-License-Identifier: GPL-2.0

//! What upstream's Rust PCI bus adapter ([`kernel::pci`]) lacks for a
//! driver that binds only on the administrator's request.

use kernel::{bindings, device, error::to_result, pci, prelude::*};

/// A PCI ID table entry that matches every device, but only a device whose
/// `driver_override` names the driver: the C
/// `PCI_DRIVER_OVERRIDE_DEVICE_VFIO(PCI_ANY_ID, PCI_ANY_ID)` of vfio-pci. A
/// driver with only this entry never binds on its own, and its module alias
/// (`vfio_pci:...`, from modpost) does not make udev load it for a device.
pub(crate) const fn any_device_override_only() -> pci::DeviceId {
    let raw = bindings::pci_device_id {
        vendor: !0,
        device: !0,
        subvendor: !0,
        subdevice: !0,
        class: 0,
        class_mask: 0,
        driver_data: 0,
        override_only: bindings::PCI_ID_F_VFIO_DRIVER_OVERRIDE,
    };
    // SAFETY: `pci::DeviceId` is a `#[repr(transparent)]` wrapper of
    // `struct pci_device_id` with no invariant of its own (its
    // `RawDeviceId` implementation says so), and every field is set.
    unsafe { core::mem::transmute::<bindings::pci_device_id, pci::DeviceId>(raw) }
}

/// Enables `dev` for I/O and memory decoding, undone when the driver
/// unbinds (`pcim_enable_device()`). Upstream's Rust offers memory decoding
/// only, and a serial card's registers are mostly in I/O BARs.
pub(crate) fn enable_device_managed(dev: &pci::Device<device::Core<'_>>) -> Result {
    // `pci::Device` is a transparent wrapper of `struct pci_dev`.
    let raw = core::ptr::from_ref(dev)
        .cast::<bindings::pci_dev>()
        .cast_mut();
    // SAFETY: `raw` is the live device being probed (the `Core` context
    // holds its lock), which is what `pcim_enable_device()` expects; the
    // devres action it adds runs when the driver unbinds.
    to_result(unsafe { bindings::pcim_enable_device(raw) })
}
