// SPDX-License-Identifier: GPL-2.0

//! Mediated device parents, types and drivers.
//!
//! C header: [`include/linux/mdev.h`](srctree/include/linux/mdev.h).
//!
//! A [`Parent`] registers everything an mdev parent needs, in order: the
//! `mdev_driver` (with a per-instance attribute group), a device class and one
//! device of it named after the driver (so that type directories read
//! `<name>-<type>`), and the `mdev_parent` with its types. Dropping it undoes
//! the steps in reverse; unregistering the parent removes every instance.

use super::{bindings as vb, vfio};
use crate::sysfs::buf::Buf;
use core::{fmt, ptr};
use kernel::{
    bindings,
    error::{from_err_ptr, from_result, to_result},
    page::PAGE_SIZE,
    prelude::*,
    types::Opaque,
    ThisModule,
};

/// An mdev type as the driver declares it.
#[derive(Clone, Copy)]
pub(crate) struct TypeInfo {
    /// The type's sysfs name; the directory is `<driver name>-<sysfs_name>`.
    pub(crate) sysfs_name: &'static CStr,
    /// What the type's `name` attribute shows.
    pub(crate) pretty_name: &'static CStr,
}

/// An mdev parent driver: its types, and how it makes instances.
pub(crate) trait MdevDriver: Send + Sync + Sized + 'static {
    /// The VFIO device every instance is.
    type Instance: vfio::VfioOps;

    /// The driver, class and parent device name.
    const NAME: &'static CStr;
    /// The name of the per-instance attribute group directory.
    const ATTR_GROUP: &'static CStr;
    /// The per-instance attributes in that directory.
    const ATTRS: &'static [AttrInfo];

    /// The types, in sysfs order.
    fn types(&self) -> &[TypeInfo];

    /// Makes the data of a new instance of type `index`.
    fn probe(&self, index: usize) -> Result<Pin<KBox<Self::Instance>>>;

    /// How many more instances of type `index` can be made now.
    fn available(&self, index: usize) -> u32;

    /// The `description` of type `index`.
    fn description(&self, index: usize, out: &mut Buf<'_>) -> fmt::Result;

    /// Shows per-instance attribute `index` of an instance.
    fn show_attr(instance: &Self::Instance, index: usize, out: &mut Buf<'_>) -> fmt::Result;

    /// Stores `input` (what userspace wrote) into writable attribute `index`.
    fn store_attr(instance: &Self::Instance, index: usize, input: &[u8]) -> Result;
}

/// A per-instance attribute as the driver declares it.
#[derive(Clone, Copy)]
pub(crate) struct AttrInfo {
    /// The file name.
    pub(crate) name: &'static CStr,
    /// Whether userspace (root) may write it.
    pub(crate) writable: bool,
}

/// One per-instance attribute, as registered: the C object first, so that
/// the `struct device_attribute *` sysfs passes leads back to the index.
#[repr(C)]
struct AttrSlot {
    raw: Opaque<bindings::device_attribute>,
    index: usize,
}

/// One type, as registered: the C object first, so that the core's
/// `struct mdev_type *` leads back to it.
#[repr(C)]
struct TypeSlot<D> {
    raw: Opaque<vb::mdev_type>,
    index: usize,
    drv: *const D,
}

/// Everything registered for a parent, in memory that does not move.
struct Inner<D: MdevDriver> {
    drv: D,
    driver: Opaque<vb::mdev_driver>,
    parent: Opaque<vb::mdev_parent>,
    attr_slots: KVec<AttrSlot>,
    attrs: KVec<*mut bindings::attribute>,
    group: Opaque<bindings::attribute_group>,
    groups: [*const bindings::attribute_group; 2],
    types: KVec<TypeSlot<D>>,
    type_ptrs: KVec<*mut vb::mdev_type>,
    class: *mut bindings::class,
    dev: *mut bindings::device,
}

/// How far registration got, so that [`Drop`] undoes exactly that.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Stage {
    None,
    Driver,
    Class,
    Device,
    Parent,
}

/// A registered mdev parent.
///
/// # Invariants
///
/// `inner` is pinned in a box for the registration's life, so the pointers
/// the C side keeps into it stay valid; `stage` says which steps succeeded.
pub(crate) struct Parent<D: MdevDriver> {
    inner: Pin<KBox<Inner<D>>>,
    stage: Stage,
}

// SAFETY: The raw pointers are owned by the registration and only used to
// unregister, which may happen from any thread; `D` is `Send + Sync`.
unsafe impl<D: MdevDriver> Send for Parent<D> {}
// SAFETY: `&self` only gives out `&D`, which is `Sync`.
unsafe impl<D: MdevDriver> Sync for Parent<D> {}
// SAFETY: Pointers inside are only dereferenced by the C core, which
// serialises its callbacks against unregistration.
unsafe impl<D: MdevDriver> Send for Inner<D> {}

impl<D: MdevDriver> Parent<D> {
    /// Registers the driver `drv` and its parent device and types.
    pub(crate) fn new(drv: D, module: &'static ThisModule) -> Result<Self> {
        let ntypes = drv.types().len();
        let mut types = KVec::with_capacity(ntypes, GFP_KERNEL)?;
        let mut type_ptrs = KVec::with_capacity(ntypes, GFP_KERNEL)?;
        for i in 0..ntypes {
            types.push(
                TypeSlot {
                    raw: Opaque::zeroed(),
                    index: i,
                    drv: ptr::null(),
                },
                GFP_KERNEL,
            )?;
            type_ptrs.push(ptr::null_mut(), GFP_KERNEL)?;
        }
        let nattrs = D::ATTRS.len();
        let mut attr_slots = KVec::with_capacity(nattrs, GFP_KERNEL)?;
        let mut attrs = KVec::with_capacity(nattrs + 1, GFP_KERNEL)?;
        for index in 0..nattrs {
            attr_slots.push(
                AttrSlot {
                    raw: Opaque::zeroed(),
                    index,
                },
                GFP_KERNEL,
            )?;
            attrs.push(ptr::null_mut(), GFP_KERNEL)?;
        }
        // The NULL that ends the array.
        attrs.push(ptr::null_mut(), GFP_KERNEL)?;
        let inner = KBox::pin(
            Inner {
                drv,
                driver: Opaque::zeroed(),
                parent: Opaque::zeroed(),
                attr_slots,
                attrs,
                group: Opaque::zeroed(),
                groups: [ptr::null(); 2],
                types,
                type_ptrs,
                class: ptr::null_mut(),
                dev: ptr::null_mut(),
            },
            GFP_KERNEL,
        )?;
        let mut this = Self {
            inner,
            stage: Stage::None,
        };
        this.register(module)?;
        Ok(this)
    }

    fn register(&mut self, module: &'static ThisModule) -> Result {
        // SAFETY: `Inner` is never moved out of its box (see the type
        // invariant); the fields are only written here, before registration.
        let inner = unsafe { Pin::get_unchecked_mut(self.inner.as_mut()) };
        let drv_ptr: *const D = &inner.drv;

        // The types: the core reads the names and links the slots up.
        for (i, info) in inner.drv.types().iter().enumerate() {
            let slot = &mut inner.types[i];
            slot.drv = drv_ptr;
            let raw = slot.raw.get();
            // SAFETY: `raw` is our zeroed `mdev_type`, not yet shared.
            unsafe {
                (*raw).sysfs_name = info.sysfs_name.as_char_ptr();
                (*raw).pretty_name = info.pretty_name.as_char_ptr();
            }
            inner.type_ptrs[i] = raw;
        }

        // The per-instance attribute group.
        for (i, info) in D::ATTRS.iter().enumerate() {
            let attr = inner.attr_slots[i].raw.get();
            // SAFETY: `attr` is our zeroed attribute, not yet shared.
            unsafe {
                (*attr).attr.name = info.name.as_char_ptr();
                (*attr).attr.mode = if info.writable { 0o644 } else { 0o444 };
                (*attr).__bindgen_anon_1.show = Some(show_attr::<D>);
                if info.writable {
                    (*attr).__bindgen_anon_2.store = Some(store_attr::<D>);
                }
                #[cfg(CONFIG_DEBUG_LOCK_ALLOC)]
                {
                    (*attr).attr.key = kernel::static_lock_class!().as_ptr();
                }
            }
            // SAFETY: Taking the address of a field of a live attribute.
            inner.attrs[i] = unsafe { &raw mut (*attr).attr };
        }
        let group = inner.group.get();
        // SAFETY: `group` is our zeroed group, not yet shared; `attrs` is
        // NULL-terminated and lives as long as the group.
        unsafe {
            (*group).name = D::ATTR_GROUP.as_char_ptr();
            (*group).__bindgen_anon_2.attrs = inner.attrs.as_mut_ptr();
        }
        inner.groups[0] = group;

        // The driver.
        let driver = inner.driver.get();
        // SAFETY: `driver` is our zeroed `mdev_driver`, not yet shared; every
        // pointer stored lives in `inner` or in static memory.
        unsafe {
            (*driver).device_api = c"vfio-pci".as_char_ptr();
            (*driver).probe = Some(probe::<D>);
            (*driver).remove = Some(remove::<D>);
            (*driver).get_available = Some(get_available::<D>);
            (*driver).show_description = Some(show_description::<D>);
            (*driver).driver.name = D::NAME.as_char_ptr();
            (*driver).driver.owner = module.as_ptr();
            (*driver).driver.mod_name = D::NAME.as_char_ptr();
            (*driver).driver.dev_groups = inner.groups.as_ptr();
        }
        // SAFETY: `driver` is fully set up and pinned until `Drop`.
        to_result(unsafe { vb::mdev_register_driver(driver) })?;
        self.stage = Stage::Driver;

        // SAFETY: The name is a static C string.
        inner.class = from_err_ptr(unsafe { bindings::class_create(D::NAME.as_char_ptr()) })?;
        self.stage = Stage::Class;

        // SAFETY: `class` is live; the name has no format directives, so the
        // format takes no arguments.
        inner.dev = from_err_ptr(unsafe {
            bindings::device_create(
                inner.class,
                ptr::null_mut(),
                0,
                ptr::null_mut(),
                D::NAME.as_char_ptr(),
            )
        })?;
        self.stage = Stage::Device;

        let ntypes = u32::try_from(inner.type_ptrs.len()).map_err(|_| EINVAL)?;
        // SAFETY: Everything passed is set up and pinned until `Drop`.
        to_result(unsafe {
            vb::mdev_register_parent(
                inner.parent.get(),
                inner.dev,
                driver,
                inner.type_ptrs.as_mut_ptr(),
                ntypes,
            )
        })?;
        self.stage = Stage::Parent;
        Ok(())
    }
}

impl<D: MdevDriver> Drop for Parent<D> {
    fn drop(&mut self) {
        let inner = &self.inner;
        // SAFETY: Each step is undone only if it was done (`stage`), once.
        unsafe {
            if self.stage >= Stage::Parent {
                // Removes every instance, calling `remove` for each.
                vb::mdev_unregister_parent(inner.parent.get());
            }
            if self.stage >= Stage::Device {
                bindings::device_unregister(inner.dev);
            }
            if self.stage >= Stage::Class {
                bindings::class_destroy(inner.class);
            }
            if self.stage >= Stage::Driver {
                vb::mdev_unregister_driver(inner.driver.get());
            }
        }
    }
}

/// Returns the slot of a type of ours.
///
/// # Safety
///
/// `mtype` is one of the types a live [`Parent<D>`] registered.
unsafe fn slot<'a, D: MdevDriver>(mtype: *mut vb::mdev_type) -> (&'a D, usize) {
    // SAFETY: `raw` is the first field of the `#[repr(C)]` slot, and the slot
    // points at the driver data of the same live parent.
    unsafe {
        let s = &*mtype.cast::<TypeSlot<D>>();
        (&*s.drv, s.index)
    }
}

/// Formats into a sysfs page and returns the length.
///
/// # Safety
///
/// `buf` is a sysfs buffer of `PAGE_SIZE` bytes.
unsafe fn emit(buf: *mut c_char, f: impl FnOnce(&mut Buf<'_>) -> fmt::Result) -> isize {
    // SAFETY: sysfs hands `show` callbacks a page-sized buffer.
    let page = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), PAGE_SIZE) };
    let mut out = Buf::new(page);
    let _ = f(&mut out);
    out.len() as isize
}

/// # Safety
///
/// Called by the mdev core with a new instance of one of our types.
unsafe extern "C" fn probe<D: MdevDriver>(mdev: *mut vb::mdev_device) -> c_int {
    // SAFETY: The core passes a live mdev device whose type is ours.
    let (drv, index) = unsafe { slot::<D>((*mdev).type_) };
    from_result(|| {
        let data = drv.probe(index)?;
        // SAFETY: The mdev device outlives the registration, which `remove`
        // drops before the device goes.
        let reg = unsafe { vfio::Registration::new(&raw mut (*mdev).dev, data)? };
        let reg = KBox::new(reg, GFP_KERNEL)?;
        // SAFETY: The device is live; `remove` takes the box back.
        unsafe { bindings::dev_set_drvdata(&raw mut (*mdev).dev, KBox::into_raw(reg).cast()) };
        Ok(0)
    })
}

/// # Safety
///
/// Called by the mdev core on an instance `probe` succeeded for.
unsafe extern "C" fn remove<D: MdevDriver>(mdev: *mut vb::mdev_device) {
    // SAFETY: The device is live during `remove`.
    let reg = unsafe { bindings::dev_get_drvdata(&raw mut (*mdev).dev) };
    if reg.is_null() {
        return;
    }
    // SAFETY: The device is live; clearing the pointer first means nothing
    // can reach the registration while it is dropped.
    unsafe { bindings::dev_set_drvdata(&raw mut (*mdev).dev, ptr::null_mut()) };
    // SAFETY: `probe` stored a leaked `KBox<Registration>` here; dropping it
    // unregisters the VFIO device (waiting for its users) and drops it.
    drop(unsafe { KBox::from_raw(reg.cast::<vfio::Registration<D::Instance>>()) });
}

/// # Safety
///
/// Called by the mdev core with one of our types.
unsafe extern "C" fn get_available<D: MdevDriver>(mtype: *mut vb::mdev_type) -> c_uint {
    // SAFETY: The core passes one of our registered types.
    let (drv, index) = unsafe { slot::<D>(mtype) };
    drv.available(index)
}

/// # Safety
///
/// Called by the mdev core with one of our types and a sysfs page.
unsafe extern "C" fn show_description<D: MdevDriver>(
    mtype: *mut vb::mdev_type,
    buf: *mut c_char,
) -> isize {
    // SAFETY: The core passes one of our registered types.
    let (drv, index) = unsafe { slot::<D>(mtype) };
    // SAFETY: `buf` is a sysfs page.
    unsafe { emit(buf, |out| drv.description(index, out)) }
}

/// Returns the registration of an instance and the index of one of its
/// attributes.
///
/// # Safety
///
/// `dev` is an instance bound to our driver with `attr` one of its driver
/// attributes, which exist only between `probe` and `remove`.
unsafe fn attr_target<'a, D: MdevDriver>(
    dev: *mut bindings::device,
    attr: *mut bindings::device_attribute,
) -> Option<(&'a vfio::Registration<D::Instance>, usize)> {
    // SAFETY: The device is live while its attributes exist.
    let reg = unsafe { bindings::dev_get_drvdata(dev) };
    if reg.is_null() {
        return None;
    }
    // SAFETY: `probe` stored the registration, which lives until `remove`,
    // after sysfs removed the attributes; `attr` is the first field of one of
    // our `#[repr(C)]` slots.
    unsafe {
        Some((
            &*reg.cast::<vfio::Registration<D::Instance>>(),
            (*attr.cast::<AttrSlot>()).index,
        ))
    }
}

/// # Safety
///
/// Called by sysfs for an attribute of an instance bound to our driver.
unsafe extern "C" fn show_attr<D: MdevDriver>(
    dev: *mut bindings::device,
    attr: *mut bindings::device_attribute,
    buf: *mut c_char,
) -> isize {
    // SAFETY: As the function's contract says.
    let Some((reg, index)) = (unsafe { attr_target::<D>(dev, attr) }) else {
        return ENODEV.to_errno() as isize;
    };
    // SAFETY: `buf` is a sysfs page.
    unsafe { emit(buf, |out| D::show_attr(reg.data(), index, out)) }
}

/// # Safety
///
/// Called by sysfs for a writable attribute of an instance bound to our
/// driver, with `count` bytes at `buf`.
unsafe extern "C" fn store_attr<D: MdevDriver>(
    dev: *mut bindings::device,
    attr: *mut bindings::device_attribute,
    buf: *const c_char,
    count: usize,
) -> isize {
    // SAFETY: As the function's contract says.
    let Some((reg, index)) = (unsafe { attr_target::<D>(dev, attr) }) else {
        return ENODEV.to_errno() as isize;
    };
    // SAFETY: sysfs passes `count` readable bytes (at most a page).
    let input = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), count) };
    match D::store_attr(reg.data(), index, input) {
        Ok(()) => count as isize,
        Err(e) => e.to_errno() as isize,
    }
}
