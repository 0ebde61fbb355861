// SPDX-License-Identifier: GPL-2.0

//! Kernel-free VFIO PCI device model.
//!
//! Everything in this module is `no_std` code that depends on `core` only: the
//! kernel module compiles it, and `cargo test` runs it on the host. It knows the
//! VFIO uAPI and PCI semantics, and nothing about kernel objects.

pub(crate) mod config;
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "the DMA layer's first user, the NVMe device of issue 14, is not in yet"
    )
)]
pub(crate) mod dma;
pub(crate) mod intrs;
pub(crate) mod irq;
pub(crate) mod mig;
pub(crate) mod rdwr;
pub(crate) mod region;
/// Host-only: the generator behind the property tests.
#[cfg(test)]
pub(crate) mod testrng;
pub(crate) mod uapi;

/// An error of the kernel-free model, turned into an errno by the kernel glue.
///
/// Each variant names the errno the VFIO contract gives for the condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Errno {
    /// `EINVAL`: a malformed argument (bad index, size, flags or range).
    Inval,
    /// `ENOTTY`: a request the device does not offer.
    NoTty,
    /// `ENOSPC`: a bounded table of the device is full.
    NoSpc,
    /// `EFAULT`: guest memory the device used is not mapped (any more).
    Fault,
    /// `EBUSY`: the object is in use.
    Busy,
    /// `E2BIG`: more items than the device takes.
    TooBig,
    /// `EOVERFLOW`: a range that wraps the address space.
    Overflow,
    /// `EPERM`: an access the object does not allow.
    Perm,
}

/// The result type of the kernel-free model.
pub(crate) type EResult<T = ()> = core::result::Result<T, Errno>;
