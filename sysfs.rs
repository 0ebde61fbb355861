// SPDX-License-Identifier: GPL-2.0

//! The mdev type lifecycle: the types, the shared pool behind
//! `available_instances`, descriptions and per-instance attributes.
//!
//! The mdev core owns the type directories in sysfs (`create`, `name`,
//! `device_api`, `available_instances`, `description`); rmdev supplies their
//! contents through [`crate::ffi::mdev::Driver`], implemented in
//! [`lifecycle`] from the data here.

pub(crate) mod lifecycle;
pub(crate) mod nvme_types;
pub(crate) mod parse;
pub(crate) mod pool;
pub(crate) mod types;
