// SPDX-License-Identifier: GPL-2.0

//! Parent drivers and the device personalities built on the library.
//!
//! The one personality so far is a PCI serial card with one or two 16550A
//! ports ([`serial`]), guest-compatible with the kernel's `mtty` sample (same
//! IDs, class and BAR layout); [`card`] and [`uart`] are its kernel-free
//! parts. The one parent kind so far is the virtual parent ([`virt`]), a
//! class device with a pool of software ports. A parent is an
//! [`crate::ffi::mdev::Parent`] on some device with the serial types of
//! [`crate::sysfs::lifecycle`], so another kind (a PCI card's driver, say)
//! registers the same types on its own device with its own pool.

pub(crate) mod card;
/// The physical card driver's kernel-free parts; its PCI glue is not merged
/// yet, so the module build does not use them.
#[expect(dead_code, reason = "the physical card's PCI glue comes next")]
pub(crate) mod hwport;
#[expect(dead_code, reason = "the physical card's PCI glue comes next")]
pub(crate) mod physcard;
pub(crate) mod serial;
pub(crate) mod uart;
pub(crate) mod virt;
