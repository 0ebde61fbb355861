// SPDX-License-Identifier: GPL-2.0

//! Generated bindings for `linux/vfio.h` and `linux/mdev.h`.
//!
//! Only `vfio_*`, `mdev_*` and `VFIO_*` items are generated; every type they
//! refer to (`device`, `kobject`, `guid_t`, ...) resolves to the kernel's own
//! `bindings` crate, so no kernel type exists twice.

#![allow(
    dead_code,
    missing_docs,
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    unreachable_pub,
    improper_ctypes,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::undocumented_unsafe_blocks,
    clippy::ptr_as_ptr,
    clippy::ref_as_ptr,
    clippy::cast_lossless,
    clippy::as_underscore
)]

#[allow(unused_imports)]
use kernel::{bindings::*, ffi};
#[allow(unused_imports)]
use pin_init::{MaybeZeroable, Zeroable};

include!("bindings_generated.rs");
