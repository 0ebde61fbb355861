// SPDX-License-Identifier: GPL-2.0

//! Parent drivers and the device personalities built on the library.
//!
//! The one personality so far is a PCI serial card with one or two 16550A
//! ports ([`serial`]), guest-compatible with the kernel's `mtty` sample (same
//! IDs, class and BAR layout); [`card`] and [`uart`] are its kernel-free
//! parts. There are two parent kinds: the virtual parent ([`virt`]), a class
//! device with a pool of software ports, and the physical parent ([`phys`]),
//! a multi-port serial card rmdev drives as a PCI driver, whose ports back
//! the instances' ports. Its kernel-free parts are the card table
//! ([`physcard`]), the physical port's driver ([`hwport`]) and the
//! mediation between a virtual and a physical port ([`mediate`]). A parent
//! is an [`crate::ffi::mdev::Parent`] on some device with the serial types of
//! [`crate::sysfs::lifecycle`].
//!
//! The second personality is an NVMe controller ([`nvme_dev`]): the
//! kernel-free model of [`nvme`] and the PCI face of [`nvme_pci`] on the
//! library, offered by a parent of its own ([`virt::NvmeParent`]) with a
//! namespace in host RAM.

pub(crate) mod card;
pub(crate) mod hwport;
pub(crate) mod mediate;
#[expect(
    dead_code,
    reason = "the glue does not use the model's migration stream and namespace changes yet"
)]
pub(crate) mod nvme;
pub(crate) mod nvme_dev;
pub(crate) mod nvme_pci;
pub(crate) mod phys;
pub(crate) mod physcard;
pub(crate) mod serial;
pub(crate) mod uart;
pub(crate) mod virt;
