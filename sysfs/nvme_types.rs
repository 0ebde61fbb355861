// SPDX-License-Identifier: GPL-2.0

//! The NVMe types' lifecycle: what the mdev core asks of a type, answered
//! from the NVMe parent's data ([`NvmeSource`]).

use crate::ffi::mdev::{AttrInfo, Driver, TypeInfo};
use crate::mdev_parent::nvme_dev::{Instance, Nvme, NvmeSource};
use core::{
    fmt,
    sync::atomic::{AtomicU32, Ordering},
};
use kernel::prelude::*;

/// The mdev driver of the NVMe types.
pub(crate) struct NvmeTypes;

/// Instance numbers, for serial numbers and NQNs that differ.
static SERIAL: AtomicU32 = AtomicU32::new(1);

impl NvmeTypes {
    /// The one type: a controller that sees the parent's RAM namespace as
    /// namespace 1.
    pub(crate) const TYPES: &'static [TypeInfo] = &[TypeInfo {
        sysfs_name: c"ram",
        pretty_name: c"NVMe controller, RAM namespace",
    }];
}

impl Driver for NvmeTypes {
    type Instance = Instance;
    type ParentData = NvmeSource;

    const NAME: &'static CStr = c"rmdev-nvme";
    const ATTR_GROUP: &'static CStr = c"rmdev";
    const ATTRS: &'static [AttrInfo] = &[];

    fn probe(src: &NvmeSource, index: usize) -> Result<Pin<KBox<Instance>>> {
        if index >= Self::TYPES.len() {
            return Err(EINVAL);
        }
        Nvme::create(src, SERIAL.fetch_add(1, Ordering::Relaxed))
    }

    fn available(src: &NvmeSource, _index: usize) -> u32 {
        src.pool.available(1)
    }

    fn description(src: &NvmeSource, _index: usize, out: &mut dyn fmt::Write) -> fmt::Result {
        writeln!(
            out,
            "NVMe 1.4 controller (PCI Express, MSI-X), namespace 1: {} MiB of host RAM shared by the parent's instances",
            src.ns.ns.bytes().unwrap_or(0) >> 20
        )
    }

    fn show_attr(_instance: &Instance, _index: usize, _out: &mut dyn fmt::Write) -> fmt::Result {
        Ok(())
    }

    fn store_attr(_instance: &Instance, _index: usize, _input: &[u8]) -> Result {
        Err(EACCES)
    }
}
