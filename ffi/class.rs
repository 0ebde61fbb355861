// SPDX-License-Identifier: GPL-2.0

//! A device class with one device of it: a parent device that owns no
//! hardware, as the kernel's `mtty` sample makes for its mdev parent.
//!
//! C header: [`include/linux/device/class.h`](srctree/include/linux/device/class.h).
//!
//! The device is named after the class and bound to no driver, so the mdev
//! core names the types of a parent on it `<class>-<type>`
//! (`dev_driver_string()` falls back to the class name).

use core::ptr::NonNull;
use kernel::{bindings, device::Device, error::from_err_ptr, prelude::*};

/// A registered device class.
///
/// # Invariants
///
/// `raw` came from `class_create()` and is destroyed exactly once, in
/// [`Drop`].
struct Class {
    raw: NonNull<bindings::class>,
}

impl Class {
    fn new(name: &'static CStr) -> Result<Self> {
        // SAFETY: The name is a static C string.
        let raw = from_err_ptr(unsafe { bindings::class_create(name.as_char_ptr()) })?;
        // INVARIANT: A non-error return is a live class.
        NonNull::new(raw).map(|raw| Self { raw }).ok_or(ENOMEM)
    }
}

impl Drop for Class {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the class is live and ours.
        unsafe { bindings::class_destroy(self.raw.as_ptr()) };
    }
}

/// A class and one device of it, both named `name`.
///
/// # Invariants
///
/// `dev` came from `device_create()` on `class` and is unregistered exactly
/// once, in [`Drop`], before the class goes (fields drop after `drop`).
pub(crate) struct ClassDevice {
    dev: NonNull<bindings::device>,
    _class: Class,
}

// SAFETY: Unregistering a device and destroying a class may happen on any
// thread; `&self` only gives out `&Device`, which is `Sync`.
unsafe impl Send for ClassDevice {}
// SAFETY: As above.
unsafe impl Sync for ClassDevice {}

impl ClassDevice {
    /// Creates the class `name` and the device `name` of it.
    pub(crate) fn new(name: &'static CStr) -> Result<Self> {
        let class = Class::new(name)?;
        // SAFETY: The class is live; the name has no format directives, so
        // the format takes no arguments.
        let dev = from_err_ptr(unsafe {
            bindings::device_create(
                class.raw.as_ptr(),
                core::ptr::null_mut(),
                0,
                core::ptr::null_mut(),
                name.as_char_ptr(),
            )
        })?;
        // On failure `class` drops here and is destroyed.
        let dev = NonNull::new(dev).ok_or(ENOMEM)?;
        // INVARIANT: `dev` is a live device of `class`.
        Ok(Self { dev, _class: class })
    }

    /// The device.
    pub(crate) fn device(&self) -> &Device {
        // SAFETY: By the type invariant the device is registered, and so
        // holds a reference, until `self` drops.
        unsafe { Device::from_raw(self.dev.as_ptr()) }
    }
}

impl Drop for ClassDevice {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the device is registered and this is
        // the only place it is unregistered.
        unsafe { bindings::device_unregister(self.dev.as_ptr()) };
    }
}
