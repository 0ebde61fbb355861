// SPDX-License-Identifier: GPL-2.0

//! The virtual parent: a class device named `rmdev` that owns no hardware,
//! whose types draw on a pool of software ports.

use super::serial::PortSource;
use crate::ffi::{
    class::ClassDevice,
    mdev::{Parent, Registration},
};
use crate::sysfs::{lifecycle::SerialTypes, pool::Pool};
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
