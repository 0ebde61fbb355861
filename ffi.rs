// SPDX-License-Identifier: GPL-2.0

//! The FFI and adapter layer: bindings for the C APIs upstream Rust lacks
//! (VFIO, mdev, eventfd, device classes, pages shared with userspace,
//! interrupt-safe locks, port I/O, events from interrupt threads) and
//! safe wrappers around them. Every `unsafe` block of rmdev lives under this
//! module, and it imports nothing from the rest of the crate.

pub(crate) mod bindings;
pub(crate) mod class;
#[expect(
    dead_code,
    reason = "the DMA layer's first user, the NVMe device of issue 14, is not in yet"
)]
pub(crate) mod dma;
pub(crate) mod event;
pub(crate) mod eventfd;
pub(crate) mod irqlock;
pub(crate) mod mdev;
pub(crate) mod mem;
pub(crate) mod pci;
pub(crate) mod portio;
pub(crate) mod vfio;
pub(crate) mod work;
