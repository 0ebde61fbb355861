// SPDX-License-Identifier: GPL-2.0

//! The serial types' lifecycle: what the mdev core asks of a type (create,
//! `available_instances`, `description`) and the per-instance attributes,
//! answered from the type table ([`super::types`]) and the parent's pool
//! ([`super::pool`]). Any parent kind registers these types.

use super::{parse::parse_bool, types::TYPES};
use crate::ffi::mdev::{AttrInfo, Driver, TypeInfo};
use crate::mdev_parent::serial::{Instance, PortSource, Serial};
use core::fmt;
use kernel::prelude::*;

/// The mdev driver of the serial types.
pub(crate) struct SerialTypes;

/// The per-instance attributes, by index in [`SerialTypes::ATTRS`].
const ATTR_STATE: usize = 0;
const ATTR_LOOPBACK: usize = 1;

impl SerialTypes {
    /// The types as the mdev core registers them, in the table's order.
    pub(crate) const TYPES: &'static [TypeInfo] = &{
        let mut out = [TypeInfo {
            sysfs_name: c"",
            pretty_name: c"",
        }; TYPES.len()];
        let mut i = 0;
        while i < TYPES.len() {
            out[i] = TypeInfo {
                sysfs_name: TYPES[i].sysfs_name,
                pretty_name: TYPES[i].pretty_name,
            };
            i += 1;
        }
        out
    };
}

impl Driver for SerialTypes {
    type Instance = Instance;
    /// Where the parent's instances get their ports.
    type ParentData = PortSource;

    const NAME: &'static CStr = c"rmdev";
    const ATTR_GROUP: &'static CStr = c"rmdev";
    const ATTRS: &'static [AttrInfo] = &[
        // Read-only: interrupts delivered, and per port the line settings
        // and byte counters.
        AttrInfo {
            name: c"state",
            writable: false,
        },
        // 1 (default): what a port transmits loops back to its receiver, as
        // mtty does; 0: nothing is attached to the lines.
        AttrInfo {
            name: c"loopback",
            writable: true,
        },
    ];

    fn probe(src: &PortSource, index: usize) -> Result<Pin<KBox<Instance>>> {
        Serial::create(src, TYPES.get(index).ok_or(EINVAL)?)
    }

    fn available(src: &PortSource, index: usize) -> u32 {
        TYPES.get(index).map_or(0, |t| src.pool.available(t.ports))
    }

    fn description(_src: &PortSource, index: usize, out: &mut dyn fmt::Write) -> fmt::Result {
        match TYPES.get(index) {
            Some(t) => writeln!(out, "{}", t.description),
            None => Ok(()),
        }
    }

    fn show_attr(instance: &Instance, index: usize, out: &mut dyn fmt::Write) -> fmt::Result {
        match index {
            ATTR_STATE => Serial::show_state(instance, out),
            ATTR_LOOPBACK => writeln!(out, "{}", u8::from(Serial::loopback(instance))),
            _ => Ok(()),
        }
    }

    fn store_attr(instance: &Instance, index: usize, input: &[u8]) -> Result {
        if index != ATTR_LOOPBACK {
            return Err(EACCES);
        }
        Serial::set_loopback(instance, parse_bool(input).ok_or(EINVAL)?);
        Ok(())
    }
}
