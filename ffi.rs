// SPDX-License-Identifier: GPL-2.0

//! The FFI and adapter layer: bindings for the C APIs upstream Rust lacks
//! (VFIO, mdev, eventfd) and safe wrappers around them. Every `unsafe` block
//! of rmdev lives under this module.

pub(crate) mod bindings;
pub(crate) mod eventfd;
pub(crate) mod mdev;
pub(crate) mod vfio;
