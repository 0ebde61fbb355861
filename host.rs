// SPDX-License-Identifier: GPL-2.0

//! Host build of rmdev's kernel-free code, for `cargo test`.
//!
//! The kernel module compiles the same files as modules of its crate, at the
//! same paths (`crate::vfio_pci_core::emul`, `crate::sysfs::pool`, ...); this
//! root only gathers them so that their unit tests run on the host. Items that
//! only the kernel glue uses look unused in the library build, hence
//! `dead_code` is allowed there; the test build reports dead code, as the
//! tests use everything the kernel glue does.

#![no_std]
#![cfg_attr(not(test), allow(dead_code))]

/// The kernel-free part of the library.
pub mod vfio_pci_core {
    pub mod emul;
    /// Host-only: `pub` wrappers for `tools/host-fuzz` (Kbuild never
    /// compiles this file).
    #[path = "../host_api.rs"]
    pub mod host_api;
}

/// The kernel-free part of the type lifecycle.
pub mod sysfs {
    pub mod parse;
    pub mod pool;
    /// Its fields are read by the kernel's sysfs attributes only.
    #[cfg_attr(
        test,
        expect(dead_code, reason = "the kernel's type lifecycle reads the rest")
    )]
    pub mod types;
}

/// The kernel-free part of the device personalities.
pub mod mdev_parent {
    pub mod card;
    pub mod hwport;
    pub mod mediate;
    pub mod nvme;
    pub mod nvme_pci;
    pub mod physcard;
    pub mod uart;
}
