// SPDX-License-Identifier: GPL-2.0

//! The virtual parent: a class device named `rmdev` that owns no hardware,
//! whose types draw on a pool of software ports.

use super::{
    nvme_dev::{NvmeSource, RamNs},
    serial::PortSource,
};
use crate::ffi::{
    class::ClassDevice,
    mdev::{Parent, Registration},
};
use crate::sysfs::{lifecycle::SerialTypes, nvme_types::NvmeTypes, pool::Pool};
use kernel::{prelude::*, sync::Arc};

/// The class device and the parent registered on it.
#[pin_data]
pub(crate) struct VirtualParent {
    /// Dropped first (fields drop in order): removes every instance before
    /// the device goes.
    #[pin]
    parent: Parent<SerialTypes>,
    dev: ClassDevice,
}

impl VirtualParent {
    /// Creates the device `rmdev` and registers the serial types on it, with
    /// `ports` software ports shared by all its instances.
    pub(crate) fn new(
        driver: &Registration<SerialTypes>,
        ports: u32,
    ) -> impl PinInit<Self, Error> + '_ {
        try_pin_init!(Self {
            dev: ClassDevice::new(c"rmdev")?,
            parent <- Parent::new(
                dev.device(),
                driver,
                SerialTypes::TYPES,
                PortSource {
                    pool: Arc::new(Pool::new(ports), GFP_KERNEL)?,
                    card: None,
                },
            ),
        })
    }
}

/// The NVMe parent: a class device `rmdev_nvme` that owns a namespace in
/// host RAM, which its instances share.
#[pin_data]
pub(crate) struct NvmeParent {
    #[pin]
    parent: Parent<NvmeTypes>,
    dev: ClassDevice,
}

impl NvmeParent {
    /// Creates the device `rmdev_nvme` with a RAM namespace of `bytes`
    /// bytes and room for `instances` controllers.
    pub(crate) fn new(
        driver: &Registration<NvmeTypes>,
        bytes: usize,
        instances: u32,
    ) -> impl PinInit<Self, Error> + '_ {
        try_pin_init!(Self {
            dev: ClassDevice::new(c"rmdev_nvme")?,
            parent <- Parent::new(
                dev.device(),
                driver,
                NvmeTypes::TYPES,
                NvmeSource {
                    ns: RamNs::new(bytes, *b"rmdev-ram-ns-01\0")?,
                    pool: Arc::new(Pool::new(instances), GFP_KERNEL)?,
                },
            ),
        })
    }
}
