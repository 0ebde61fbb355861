// SPDX-License-Identifier: GPL-2.0

//! Mediated device drivers, parents and types: the mdev bus adapter.
//!
//! C header: [`include/linux/mdev.h`](srctree/include/linux/mdev.h).
//!
//! The adapter follows the kernel's Rust bus adapters (`rust/kernel/auxiliary.rs`,
//! `rust/kernel/pci.rs`): a driver implements [`Driver`]; [`Adapter`] turns
//! the C callbacks into calls of it; the driver's instance data is typed
//! driver data of the mdev device, set in `probe` and taken back in `remove`.
//! Registrations are pin-initialised and undo themselves when dropped:
//!
//! * [`Registration`] registers the `mdev_driver` (one per driver, with its
//!   per-instance attribute group);
//! * [`Parent`] registers an `mdev_parent` with its types on any
//!   [`Device`]: a class device of the module's own (the virtual parent), or a
//!   PCI device the driver is bound to. Each parent carries data of the
//!   driver's choosing ([`Driver::ParentData`]), which the type callbacks get.
//!
//! A parent must be dropped before the driver registration it was made with;
//! dropping it removes every instance of its types. A parent made where the
//! registration is out of reach (a PCI driver's probe) finds it by name with
//! [`Parent::new_registered`]: a registration is listed while it exists.

use super::vfio;
use core::sync::atomic::{AtomicBool, Ordering};
use core::{fmt, marker::PhantomData, ptr};
use kernel::{
    bindings,
    device::{self, Device},
    error::{from_result, to_result},
    page::PAGE_SIZE,
    prelude::*,
    str::Formatter,
    sync::aref::ARef,
    types::{ForeignOwnable, Opaque},
    ThisModule,
};

use super::bindings as vb;

/// A registered mdev driver, as [`Parent::new_registered`] finds it.
struct Listed {
    name: &'static CStr,
    /// The address of the registration's `struct mdev_driver`.
    raw: usize,
}

/// The most mdev drivers the module registers (one per device kind).
const MAX_DRIVERS: usize = 2;

kernel::sync::global_lock! {
    // SAFETY: `init_globals` initialises it, once, from module init, before
    // any registration exists to use it.
    unsafe(uninit) static DRIVER: Mutex<[Option<Listed>; MAX_DRIVERS]> = [const { None }; MAX_DRIVERS];
}

/// Prepares this module's global state. The module's init calls it first.
pub(crate) fn init_globals() {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: `DONE` makes this the one call; it comes before any lock of
    // `DRIVER` (module init calls it before registering anything).
    unsafe { DRIVER.init() };
}

/// An mdev type as a parent declares it.
#[derive(Clone, Copy)]
pub(crate) struct TypeInfo {
    /// The type's sysfs name; the directory is `<parent's driver>-<sysfs_name>`.
    pub(crate) sysfs_name: &'static CStr,
    /// What the type's `name` attribute shows.
    pub(crate) pretty_name: &'static CStr,
}

/// A per-instance attribute as the driver declares it.
#[derive(Clone, Copy)]
pub(crate) struct AttrInfo {
    /// The file name.
    pub(crate) name: &'static CStr,
    /// Whether userspace (root) may write it.
    pub(crate) writable: bool,
}

/// An mdev driver: how instances of its parents' types are made, and their
/// per-instance attributes.
pub(crate) trait Driver: Send + Sync + Sized + 'static {
    /// The VFIO device every instance is.
    type Instance: vfio::VfioOps;

    /// What each parent carries for its types (for example the pool its
    /// instances draw on).
    type ParentData: Send + Sync;

    /// The driver's name.
    const NAME: &'static CStr;
    /// The name of the per-instance attribute group directory.
    const ATTR_GROUP: &'static CStr;
    /// The per-instance attributes in that directory.
    const ATTRS: &'static [AttrInfo];

    /// Makes the data of a new instance of type `index` of `parent`.
    fn probe(parent: &Self::ParentData, index: usize) -> Result<Pin<KBox<Self::Instance>>>;

    /// How many more instances of type `index` of `parent` can be made now.
    fn available(parent: &Self::ParentData, index: usize) -> u32;

    /// Writes the `description` of type `index` of `parent`.
    fn description(
        parent: &Self::ParentData,
        index: usize,
        out: &mut dyn fmt::Write,
    ) -> fmt::Result;

    /// Writes per-instance attribute `index` of an instance.
    fn show_attr(instance: &Self::Instance, index: usize, out: &mut dyn fmt::Write) -> fmt::Result;

    /// Stores `input` (what userspace wrote) into writable attribute `index`.
    fn store_attr(instance: &Self::Instance, index: usize, input: &[u8]) -> Result;
}

/// The typed driver data of a bound instance.
type InstanceData<T> = vfio::Registration<<T as Driver>::Instance>;

/// The C side of a driver's per-instance attributes: the attributes, the
/// NULL-terminated array of them, the group and the NULL-terminated array of
/// groups, in one allocation that does not move while registered.
struct AttrTable {
    /// The attributes; only the C side reads them, through `ptrs`.
    _attrs: KVec<AttrSlot>,
    ptrs: KVec<*mut bindings::attribute>,
    group: Opaque<bindings::attribute_group>,
    groups: [*const bindings::attribute_group; 2],
}

/// One per-instance attribute: the C object first, so that the
/// `struct device_attribute *` sysfs passes leads back to the index.
#[repr(C)]
struct AttrSlot {
    raw: Opaque<bindings::device_attribute>,
    index: usize,
}

impl AttrTable {
    /// The attribute group of `T`, pinned because sysfs keeps pointers into it.
    fn new<T: Driver>() -> Result<Pin<KBox<Self>>> {
        let n = T::ATTRS.len();
        let mut attrs = KVec::with_capacity(n, GFP_KERNEL)?;
        // One more pointer: the NULL that ends the array.
        let mut ptrs = KVec::with_capacity(n + 1, GFP_KERNEL)?;
        for (index, info) in T::ATTRS.iter().enumerate() {
            let mut raw = bindings::device_attribute::default();
            raw.attr.name = info.name.as_char_ptr();
            raw.attr.mode = if info.writable { 0o644 } else { 0o444 };
            raw.__bindgen_anon_1.show = Some(Adapter::<T>::show_attr);
            if info.writable {
                raw.__bindgen_anon_2.store = Some(Adapter::<T>::store_attr);
            }
            #[cfg(CONFIG_DEBUG_LOCK_ALLOC)]
            {
                raw.attr.key = kernel::static_lock_class!().as_ptr();
            }
            attrs.push(
                AttrSlot {
                    raw: Opaque::new(raw),
                    index,
                },
                GFP_KERNEL,
            )?;
        }
        // The element pointers stay valid: the vector is full and never grows.
        for slot in attrs.iter() {
            // SAFETY: Taking the address of a field of a live attribute.
            ptrs.push(unsafe { &raw mut (*slot.raw.get()).attr }, GFP_KERNEL)?;
        }
        ptrs.push(ptr::null_mut(), GFP_KERNEL)?;
        let mut table = KBox::pin(
            Self {
                _attrs: attrs,
                ptrs,
                group: Opaque::new(bindings::attribute_group::default()),
                groups: [ptr::null(); 2],
            },
            GFP_KERNEL,
        )?;
        // SAFETY: Only plain fields are written; nothing is moved out.
        let t = unsafe { Pin::get_unchecked_mut(table.as_mut()) };
        let group = t.group.get();
        // SAFETY: `group` is our group, not yet shared; `ptrs` is
        // NULL-terminated and lives in the same pinned allocation.
        unsafe {
            (*group).name = T::ATTR_GROUP.as_char_ptr();
            (*group).__bindgen_anon_2.attrs = t.ptrs.as_mut_ptr();
        }
        t.groups[0] = group;
        Ok(table)
    }
}

/// A registered mdev driver.
///
/// # Invariants
///
/// `raw` is registered with `mdev_register_driver()` from the moment the
/// value is initialised until it is dropped; its attribute group lives in
/// `attrs`, pinned for as long.
#[pin_data(PinnedDrop)]
pub(crate) struct Registration<T: Driver> {
    attrs: Pin<KBox<AttrTable>>,
    #[pin]
    raw: Opaque<vb::mdev_driver>,
    _t: PhantomData<T>,
}

// SAFETY: The registration is only used to unregister, and to give parents
// the driver's address; both may happen from any thread.
unsafe impl<T: Driver> Send for Registration<T> {}
// SAFETY: `&self` gives out nothing but the C object's address.
unsafe impl<T: Driver> Sync for Registration<T> {}

impl<T: Driver> Registration<T> {
    /// Registers the mdev driver `T` of `module`.
    pub(crate) fn new(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            attrs: AttrTable::new::<T>()?,
            // Last: once registered, the core may call back into the fields
            // above.
            raw <- Opaque::try_ffi_init(move |drv: *mut vb::mdev_driver| {
                // SAFETY: `try_ffi_init` hands us valid memory for the driver,
                // which we fill entirely before registering it; every pointer
                // stored lives in static memory or in `attrs`, initialised
                // above and pinned until after `mdev_unregister_driver()`.
                unsafe {
                    drv.write(vb::mdev_driver::default());
                    (*drv).device_api = c"vfio-pci".as_char_ptr();
                    (*drv).probe = Some(Adapter::<T>::probe_callback);
                    (*drv).remove = Some(Adapter::<T>::remove_callback);
                    (*drv).get_available = Some(Adapter::<T>::get_available);
                    (*drv).show_description = Some(Adapter::<T>::show_description);
                    (*drv).driver.name = T::NAME.as_char_ptr();
                    (*drv).driver.owner = module.as_ptr();
                    (*drv).driver.mod_name = T::NAME.as_char_ptr();
                    (*drv).driver.dev_groups = attrs.groups.as_ptr();
                    to_result(vb::mdev_register_driver(drv))?;
                }
                let mut listed = DRIVER.lock();
                match listed.iter_mut().find(|l| l.is_none()) {
                    Some(slot) => {
                        *slot = Some(Listed {
                            name: T::NAME,
                            raw: drv as usize,
                        })
                    }
                    None => {
                        drop(listed);
                        // SAFETY: Registered just above; nothing uses it yet.
                        unsafe { vb::mdev_unregister_driver(drv) };
                        return Err(ENOSPC);
                    }
                }
                Ok::<(), Error>(())
            }),
            _t: PhantomData,
        })
    }

    fn as_raw(&self) -> *mut vb::mdev_driver {
        self.raw.get()
    }
}

#[pinned_drop]
impl<T: Driver> PinnedDrop for Registration<T> {
    fn drop(self: Pin<&mut Self>) {
        {
            let mut listed = DRIVER.lock();
            for slot in listed.iter_mut() {
                if slot
                    .as_ref()
                    .is_some_and(|l| l.raw == self.raw.get() as usize)
                {
                    *slot = None;
                }
            }
        }
        // SAFETY: By the type invariant the driver is registered; this is the
        // only place it is unregistered.
        unsafe { vb::mdev_unregister_driver(self.raw.get()) };
    }
}

/// One type of a parent, as registered: the C object first, so that the
/// core's `struct mdev_type *` leads back to the index.
#[repr(C)]
struct TypeSlot {
    raw: Opaque<vb::mdev_type>,
    index: usize,
}

/// A parent's types: the slots and the array of pointers to them that the
/// core takes, in memory that does not move.
struct TypeTable {
    /// The types; only the C side reads them, through `ptrs`.
    _slots: KVec<TypeSlot>,
    ptrs: KVec<*mut vb::mdev_type>,
}

impl TypeTable {
    fn new(types: &[TypeInfo]) -> Result<Self> {
        let mut slots = KVec::with_capacity(types.len(), GFP_KERNEL)?;
        let mut ptrs = KVec::with_capacity(types.len(), GFP_KERNEL)?;
        for (index, info) in types.iter().enumerate() {
            let raw = vb::mdev_type {
                sysfs_name: info.sysfs_name.as_char_ptr(),
                pretty_name: info.pretty_name.as_char_ptr(),
                ..Default::default()
            };
            slots.push(
                TypeSlot {
                    raw: Opaque::new(raw),
                    index,
                },
                GFP_KERNEL,
            )?;
        }
        // The vector is full and never grows, so the pointers stay valid.
        for slot in slots.iter() {
            ptrs.push(slot.raw.get(), GFP_KERNEL)?;
        }
        Ok(Self {
            _slots: slots,
            ptrs,
        })
    }
}

/// A registered mdev parent: types of driver `T` on a device.
///
/// # Invariants
///
/// `raw` is registered with `mdev_register_parent()` on `dev`, with the
/// driver registration it was made with and the types in `types`, from the
/// moment the value is initialised until it is dropped.
#[pin_data(PinnedDrop)]
pub(crate) struct Parent<T: Driver> {
    data: T::ParentData,
    types: TypeTable,
    dev: ARef<Device>,
    #[pin]
    raw: Opaque<vb::mdev_parent>,
}

// SAFETY: The C parent is only used to unregister, which may happen from any
// thread; the data is `Send`.
unsafe impl<T: Driver> Send for Parent<T> {}
// SAFETY: `&self` gives out `&T::ParentData`, which is `Sync`.
unsafe impl<T: Driver> Sync for Parent<T> {}

impl<T: Driver> Parent<T> {
    /// Registers `types` of driver `driver` on `dev`, with `data` for the
    /// type callbacks. `driver` must outlive the parent (drop the parent
    /// first).
    pub(crate) fn new<'a>(
        dev: &'a Device,
        driver: &'a Registration<T>,
        infos: &'a [TypeInfo],
        data: T::ParentData,
    ) -> impl PinInit<Self, Error> + 'a
    where
        T::ParentData: 'a,
    {
        let drv = Registration::<T>::as_raw(driver);
        // `Device` is a transparent wrapper of the C `struct device`.
        let dev_ptr = ptr::from_ref(dev).cast::<bindings::device>().cast_mut();
        try_pin_init!(Self {
            data,
            types: TypeTable::new(infos)?,
            dev: ARef::from(dev),
            // Last: once registered, the core may call back into the fields
            // above.
            raw <- Opaque::try_ffi_init(move |parent: *mut vb::mdev_parent| {
                let n = u32::try_from(types.ptrs.len()).map_err(|_| EINVAL)?;
                // SAFETY: `parent` is valid memory the core initialises;
                // `dev_ptr` is the live device `dev` (held by the reference
                // above); `drv` is registered and outlives the parent (the
                // caller's contract); the type slots live in `types`, which
                // stays in place (heap memory) until after unregistration.
                to_result(unsafe {
                    vb::mdev_register_parent(parent, dev_ptr, drv, types.ptrs.as_mut_ptr(), n)
                })
            }),
        })
    }
}

impl<T: Driver> Parent<T> {
    /// Registers `types` of driver `T` on `dev`, with `data` for the type
    /// callbacks, finding `T`'s registration by its name: `ENODEV` when it
    /// is not registered. The registration must outlive the parent, as with
    /// [`Parent::new`]: the module drops what holds parents (its PCI driver)
    /// before the registration.
    pub(crate) fn new_registered<'a>(
        dev: &'a Device,
        infos: &'a [TypeInfo],
        data: T::ParentData,
    ) -> impl PinInit<Self, Error> + 'a
    where
        T::ParentData: 'a,
    {
        let dev_ptr = ptr::from_ref(dev).cast::<bindings::device>().cast_mut();
        try_pin_init!(Self {
            data,
            types: TypeTable::new(infos)?,
            dev: ARef::from(dev),
            raw <- Opaque::try_ffi_init(move |parent: *mut vb::mdev_parent| {
                let n = u32::try_from(types.ptrs.len()).map_err(|_| EINVAL)?;
                // Held across the registration: the driver cannot be
                // unlisted (and then unregistered) half way.
                let listed = DRIVER.lock();
                let drv = listed
                    .iter()
                    .flatten()
                    .find(|l| l.name == T::NAME)
                    .ok_or(ENODEV)?
                    .raw as *mut vb::mdev_driver;
                // SAFETY: As in `Parent::new`; `drv` is a registered driver:
                // it is listed, and it is unlisted before it is unregistered.
                to_result(unsafe {
                    vb::mdev_register_parent(parent, dev_ptr, drv, types.ptrs.as_mut_ptr(), n)
                })
            }),
        })
    }
}

#[pinned_drop]
impl<T: Driver> PinnedDrop for Parent<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: By the type invariant the parent is registered; this is the
        // only place it is unregistered. It removes every instance first.
        unsafe { vb::mdev_unregister_parent(self.raw.get()) };
    }
}

/// The adapter between the mdev core's callbacks and a [`Driver`].
pub(crate) struct Adapter<T: Driver>(PhantomData<T>);

impl<T: Driver> Adapter<T> {
    /// Returns the parent and index of a type of ours.
    ///
    /// # Safety
    ///
    /// `mtype` is one of the types a live [`Parent<T>`] registered.
    unsafe fn type_of<'a>(mtype: *mut vb::mdev_type) -> (&'a Parent<T>, usize) {
        // SAFETY: `raw` is the first field of the `#[repr(C)]` slot; the core
        // set `parent` to our registered `mdev_parent`, which is the `raw`
        // field of a live, pinned `Parent<T>`.
        unsafe {
            let index = (*mtype.cast::<TypeSlot>()).index;
            let parent = (*mtype).parent.cast::<Opaque<vb::mdev_parent>>();
            (&*kernel::container_of!(parent, Parent<T>, raw), index)
        }
    }

    /// Formats into a sysfs page and returns the length written.
    ///
    /// # Safety
    ///
    /// `buf` is a sysfs buffer of `PAGE_SIZE` bytes.
    unsafe fn emit(buf: *mut c_char, f: impl FnOnce(&mut dyn fmt::Write) -> fmt::Result) -> isize {
        // SAFETY: sysfs hands `show` callbacks a page-sized buffer.
        let page = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), PAGE_SIZE) };
        let mut out = Formatter::new(page);
        // What does not fit is dropped, as `sysfs_emit()` does.
        let _ = f(&mut out);
        out.bytes_written().min(PAGE_SIZE) as isize
    }

    /// The instance device of `mdev`, in the context of its bus callbacks.
    ///
    /// # Safety
    ///
    /// `mdev` is live for `'a`, and the caller is one of its driver's
    /// callbacks.
    unsafe fn device<'a>(
        mdev: *mut vb::mdev_device,
    ) -> &'a device::Device<device::CoreInternal<'a>> {
        // SAFETY: `Device` is a transparent wrapper of `struct device`, which
        // is live for `'a` by the contract.
        unsafe { &*(&raw mut (*mdev).dev).cast() }
    }

    /// # Safety
    ///
    /// Called by the mdev core with a new instance of one of our types.
    unsafe extern "C" fn probe_callback(mdev: *mut vb::mdev_device) -> c_int {
        // SAFETY: The core passes a live mdev device whose type is ours.
        let (parent, index) = unsafe { Self::type_of((*mdev).type_) };
        // SAFETY: As above; this is the driver's probe.
        let dev = unsafe { Self::device(mdev) };
        from_result(|| {
            let instance = T::probe(&parent.data, index)?;
            // The driver data's box is allocated before the VFIO device
            // registers, so nothing can fail once userspace can open it.
            // SAFETY: The VFIO device is unregistered when the driver data
            // drops, in `remove_callback`, while the mdev device is live.
            dev.set_drvdata(unsafe { vfio::Registration::new(&raw mut (*mdev).dev, instance) })?;
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Called by the mdev core on an instance `probe_callback` succeeded for.
    unsafe extern "C" fn remove_callback(mdev: *mut vb::mdev_device) {
        // SAFETY: The core passes a live mdev device.
        let raw = unsafe { &raw mut (*mdev).dev };
        // SAFETY: The device is live during `remove`.
        let data = unsafe { bindings::dev_get_drvdata(raw) };
        if data.is_null() {
            return;
        }
        // SAFETY: The device is live; clearing the pointer first means nothing
        // can reach the driver data while it is dropped.
        unsafe { bindings::dev_set_drvdata(raw, ptr::null_mut()) };
        // SAFETY: `probe_callback` stored a `Pin<KBox<InstanceData<T>>>` with
        // `set_drvdata`; dropping it unregisters the VFIO device (waiting for
        // its users, asking them with `request`) and releases it.
        drop(unsafe { Pin::<KBox<InstanceData<T>>>::from_foreign(data.cast()) });
    }

    /// # Safety
    ///
    /// Called by the mdev core with one of our types.
    unsafe extern "C" fn get_available(mtype: *mut vb::mdev_type) -> c_uint {
        // SAFETY: The core passes one of our registered types.
        let (parent, index) = unsafe { Self::type_of(mtype) };
        T::available(&parent.data, index)
    }

    /// # Safety
    ///
    /// Called by the mdev core with one of our types and a sysfs page.
    unsafe extern "C" fn show_description(mtype: *mut vb::mdev_type, buf: *mut c_char) -> isize {
        // SAFETY: The core passes one of our registered types.
        let (parent, index) = unsafe { Self::type_of(mtype) };
        // SAFETY: `buf` is a sysfs page.
        unsafe { Self::emit(buf, |out| T::description(&parent.data, index, out)) }
    }

    /// Returns the driver data of an instance and the index of one of its
    /// attributes.
    ///
    /// # Safety
    ///
    /// `dev` is an instance bound to our driver with `attr` one of its driver
    /// attributes, which exist only between `probe` and `remove`.
    unsafe fn attr_target<'a>(
        dev: *mut bindings::device,
        attr: *mut bindings::device_attribute,
    ) -> (Pin<&'a InstanceData<T>>, usize) {
        // SAFETY: The driver core adds the attributes after `probe` set the
        // driver data and removes them before `remove`; `Device` is a
        // transparent wrapper of `struct device`; `attr` is the first field
        // of one of our `#[repr(C)]` slots.
        unsafe {
            let d = &*dev.cast::<device::Device<device::CoreInternal<'a>>>();
            (
                d.drvdata_borrow::<InstanceData<T>>(),
                (*attr.cast::<AttrSlot>()).index,
            )
        }
    }

    /// # Safety
    ///
    /// Called by sysfs for an attribute of an instance bound to our driver.
    unsafe extern "C" fn show_attr(
        dev: *mut bindings::device,
        attr: *mut bindings::device_attribute,
        buf: *mut c_char,
    ) -> isize {
        // SAFETY: As the function's contract says.
        let (data, index) = unsafe { Self::attr_target(dev, attr) };
        // SAFETY: `buf` is a sysfs page.
        unsafe { Self::emit(buf, |out| T::show_attr(data.data(), index, out)) }
    }

    /// # Safety
    ///
    /// Called by sysfs for a writable attribute of an instance bound to our
    /// driver, with `count` bytes at `buf`.
    unsafe extern "C" fn store_attr(
        dev: *mut bindings::device,
        attr: *mut bindings::device_attribute,
        buf: *const c_char,
        count: usize,
    ) -> isize {
        // SAFETY: As the function's contract says.
        let (data, index) = unsafe { Self::attr_target(dev, attr) };
        // SAFETY: sysfs passes `count` readable bytes (at most a page).
        let input = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), count) };
        match T::store_attr(data.data(), index, input) {
            Ok(()) => count as isize,
            Err(e) => e.to_errno() as isize,
        }
    }
}
