// SPDX-License-Identifier: GPL-2.0

//! VFIO devices: a `#[vtable]` trait for `struct vfio_device_ops` and the
//! registration of emulated-IOMMU devices.
//!
//! C header: [`include/linux/vfio.h`](srctree/include/linux/vfio.h).
//!
//! The C core allocates `struct vfio_device` (it must come first in the
//! allocation) and frees it when its last reference goes. Rust data hangs off
//! it as a boxed pointer set right after allocation and dropped from the
//! `release` op, so the data lives exactly as long as the VFIO device.

use super::{
    bindings as vb,
    dma::{self, DirtyBitmap, VfioDev},
    mem::Mapping,
};
use core::{marker::PhantomData, ptr::NonNull};
use kernel::{
    bindings,
    error::{from_err_ptr, from_result, to_result, VTABLE_DEFAULT_ERROR},
    new_mutex,
    prelude::*,
    sync::{Arc, Mutex},
    transmute::{AsBytes, FromBytes},
    types::Opaque,
};

/// The user buffer of one `read()` or `write()` on the device file.
///
/// The register path is the device's hottest, so this calls the kernel's
/// `copy_to_user`/`copy_from_user` directly, without the generic `UserSlice`
/// layer. It uses them rather than the bare exported `_copy_{to,from}_user`
/// so that `check_copy_size()` (hardened usercopy) still sees every copy.
///
/// # Invariants
///
/// `ptr` is a userspace address (from the VFIO core or an ioctl argument)
/// with `len` bytes claimed behind it. It is only handed to the user-copy
/// functions, which check the range and fault safely, so no value of it can
/// make a copy touch kernel memory.
pub(crate) struct UserBuf {
    ptr: *mut c_void,
    len: usize,
}

impl UserBuf {
    /// The `len` bytes at userspace address `addr` (an ioctl's argument).
    ///
    /// Any address is acceptable: the copies check it.
    pub(crate) fn new(addr: usize, len: usize) -> Self {
        // INVARIANT: `addr` is only ever used as a user address.
        Self {
            ptr: addr as *mut c_void,
            len,
        }
    }

    /// The buffer's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The `len` bytes at `at` of the buffer, if they lie inside it.
    pub(crate) fn sub(&self, at: usize, len: usize) -> Option<Self> {
        if at.checked_add(len)? > self.len {
            return None;
        }
        // INVARIANT: A part of a user range is a user range; the address is
        // never dereferenced, only handed to the copy functions.
        Some(Self {
            ptr: self.ptr.wrapping_byte_add(at),
            len,
        })
    }

    /// Copies `data` to the start of the buffer.
    ///
    /// `EFAULT` if `data` is longer than the buffer or the copy faults.
    pub(crate) fn write(&self, data: &[u8]) -> Result {
        if data.len() > self.len {
            return Err(EFAULT);
        }
        // SAFETY: By the type invariant `ptr` is a user address for `len` bytes,
        // and `data` is a valid kernel buffer no longer than that; the copy
        // function checks the user range itself.
        let left = unsafe { bindings::copy_to_user(self.ptr, data.as_ptr().cast(), data.len()) };
        if left == 0 {
            Ok(())
        } else {
            Err(EFAULT)
        }
    }

    /// Fills `data` from the start of the buffer.
    ///
    /// `EFAULT` if `data` is longer than the buffer or the copy faults.
    pub(crate) fn read(&self, data: &mut [u8]) -> Result {
        if data.len() > self.len {
            return Err(EFAULT);
        }
        // SAFETY: As in `write`; `data` is a valid, writable kernel buffer.
        let left =
            unsafe { bindings::copy_from_user(data.as_mut_ptr().cast(), self.ptr, data.len()) };
        if left == 0 {
            Ok(())
        } else {
            Err(EFAULT)
        }
    }

    /// Reads a `T` from the start of the buffer, as vfio-pci copies an
    /// ioctl's argument into a zeroed struct: the first `min(len,
    /// size_of::<T>())` bytes come from userspace (the uAPI's `minsz`, when
    /// the buffer was made that long), the rest are zero.
    ///
    /// `EFAULT` if the copy faults.
    pub(crate) fn read_obj<T: FromBytes + AsBytes + Default>(&self) -> Result<T> {
        let mut v = T::default();
        let n = self.len.min(size_of::<T>());
        self.read(v.as_bytes_mut().get_mut(..n).ok_or(EFAULT)?)?;
        Ok(v)
    }

    /// Writes the first `min(len, size_of::<T>())` bytes of `v` to the start
    /// of the buffer (what [`UserBuf::read_obj`] read, back).
    ///
    /// `EFAULT` if the copy faults.
    pub(crate) fn write_obj<T: AsBytes>(&self, v: &T) -> Result {
        let n = self.len.min(size_of::<T>());
        self.write(v.as_bytes().get(..n).ok_or(EFAULT)?)
    }
}

/// Implements [`FromBytes`] and [`AsBytes`] for uAPI structs made of `u32`
/// and `u64` fields only, checking at compile time that their size is the
/// sum of the fields' (so there is no padding).
macro_rules! plain_uapi_struct {
    ($($t:ident { $($f:ident: $ft:ty),* $(,)? })*) => {$(
        const _: () = assert!(size_of::<vb::$t>() == 0 $(+ size_of::<$ft>())*);
        // Every field named exists with its type (or this does not build).
        const _: fn(&vb::$t) = |v| { $(let _: &$ft = &v.$f;)* };
        // SAFETY: The bindgen struct is `#[repr(C)]` with integer fields
        // only (a flexible array member, if any, is zero-sized): every bit
        // pattern is valid, and it has no interior mutability.
        unsafe impl FromBytes for vb::$t {}
        // SAFETY: As above; its size is the sum of its fields' (checked
        // above), so it has no padding and every byte is initialised.
        unsafe impl AsBytes for vb::$t {}
    )*};
}

plain_uapi_struct! {
    vfio_device_info { argsz: u32, flags: u32, num_regions: u32, num_irqs: u32, cap_offset: u32, pad: u32 }
    vfio_irq_info { argsz: u32, flags: u32, index: u32, count: u32 }
    vfio_irq_set { argsz: u32, flags: u32, index: u32, start: u32, count: u32 }
    vfio_precopy_info { argsz: u32, flags: u32, initial_bytes: u64, dirty_bytes: u64 }
}

/// The most mappable areas [`RegionInfo`] can list.
pub(crate) const SPARSE_AREAS: usize = 2;

/// What `VFIO_DEVICE_GET_REGION_INFO` reports for a region.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RegionInfo {
    /// The region's offset on the device file descriptor.
    pub(crate) offset: u64,
    /// The region's size in bytes (zero for a region that is not there).
    pub(crate) size: u64,
    /// `VFIO_REGION_INFO_FLAG_*`.
    pub(crate) flags: u32,
    /// The parts of the region userspace may `mmap()`, as (offset, size)
    /// pairs. If there is any, the region's information carries a
    /// sparse-mmap capability (`VFIO_REGION_INFO_CAP_SPARSE_MMAP`) listing
    /// them in order.
    pub(crate) sparse: [Option<(u64, u64)>; SPARSE_AREAS],
    /// The region's type and subtype, for a device-specific region: the
    /// region's information then carries a region-type capability
    /// (`VFIO_REGION_INFO_CAP_TYPE`).
    pub(crate) kind: Option<(u32, u32)>,
}

/// `struct vfio_region_info_cap_sparse_mmap` with room for its areas.
#[repr(C)]
struct SparseCap {
    header: vb::vfio_info_cap_header,
    nr_areas: u32,
    reserved: u32,
    areas: [vb::vfio_region_sparse_mmap_area; SPARSE_AREAS],
}

// The areas follow the C struct's fixed part exactly.
const _: () = assert!(
    core::mem::offset_of!(SparseCap, areas) == size_of::<vb::vfio_region_info_cap_sparse_mmap>()
);

/// A capability of an information chain, as the VFIO core copies it.
///
/// # Safety
///
/// Implementers are `#[repr(C)]` structures whose first field is a
/// `struct vfio_info_cap_header`, followed by the capability's data.
unsafe trait InfoCap: Sized {}

// SAFETY: `SparseCap` is `#[repr(C)]` and starts with its header.
unsafe impl InfoCap for SparseCap {}
// SAFETY: The bindgen struct is `#[repr(C)]` and starts with its header.
unsafe impl InfoCap for vb::vfio_region_info_cap_type {}

/// Adds the first `len` bytes of `cap` to the core's capability chain
/// `caps` with `vfio_info_add_capability()`, which copies them (so `cap`
/// need not outlive the call) and links them in. `EINVAL` if `len` does not
/// cover the header or runs past `cap`.
///
/// # Safety
///
/// `caps` is the capability chain the VFIO core passed to the current
/// `get_region_info_caps` call.
unsafe fn add_info_cap<C: InfoCap>(
    caps: *mut vb::vfio_info_cap,
    cap: &mut C,
    len: usize,
) -> Result {
    if len < size_of::<vb::vfio_info_cap_header>() || len > size_of::<C>() {
        return Err(EINVAL);
    }
    // SAFETY: `caps` is the core's chain for this call (the caller's
    // contract); by `InfoCap` a `C` starts with its header, and `cap` is
    // valid for reads of `len` bytes, at most its size (checked above).
    to_result(unsafe { vb::vfio_info_add_capability(caps, core::ptr::from_mut(cap).cast(), len) })
}

/// The operations of a VFIO device, called by the VFIO core.
///
/// Optional operations that are not implemented are left `NULL` in the C
/// table, so the core applies its own default.
#[vtable]
pub(crate) trait VfioOps: Sized + Send + Sync {
    /// The name the core reports for the device's ops.
    const NAME: &'static CStr;

    /// The device file was opened for the first time.
    fn open_device(&self) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// The last user of the device closed it.
    fn close_device(&self) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// `read()` on the device file at `pos`; returns the bytes copied.
    fn read(&self, out: &UserBuf, pos: i64) -> Result<usize>;

    /// `write()` on the device file at `pos`; returns the bytes consumed.
    fn write(&self, input: &UserBuf, pos: i64) -> Result<usize>;

    /// Any device ioctl the VFIO core does not handle itself.
    fn ioctl(&self, cmd: u32, arg: usize) -> Result<isize>;

    /// Region `index` for `VFIO_DEVICE_GET_REGION_INFO`, which the core owns.
    fn region_info(&self, index: u32) -> Result<RegionInfo>;

    /// `mmap()` of the device file: checks the request and maps its pages.
    fn mmap(&self, _map: &Mapping<'_>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// The core asks userspace to release the device (the `count`th time).
    fn request(&self, _count: u32) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// The `VFIO_MIGRATION_*` flags the device offers. Read once, when the
    /// device registers, and only if it implements `migration_set_state`.
    fn migration_flags(&self) -> u32 {
        0
    }

    /// Moves the migration state machine to `state` (`VFIO_DEVICE_FEATURE`
    /// with `MIG_DEVICE_STATE`), returning the data file the final arc opens,
    /// if it opens one. `precopy_v2` says whether userspace opted in to
    /// `VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2`.
    fn migration_set_state(&self, _state: u32, _precopy_v2: bool) -> Result<Option<DataFile>> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// The current migration state.
    fn migration_get_state(&self) -> Result<u32> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// The bytes `STOP_COPY` would produce now (`MIG_DATA_SIZE`).
    fn migration_data_size(&self) -> Result<usize> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Whether the device reaches guest memory. Only such a device gets the
    /// `dma_unmap` op (without it `vfio_pin_pages()` refuses) and the DMA
    /// logging ops below; any other device that migrates truthfully logs
    /// nothing.
    const DMA: bool = false;

    /// The device's VFIO device, for DMA ([`VfioDev`]): handed over once,
    /// before the device is registered.
    fn attach(&self, _dev: VfioDev) {}

    /// The `len` bytes of guest memory at `iova` are being unmapped: before
    /// this returns the device stops using them and unpins every page it
    /// pinned there. May come before `open_device` and after close.
    fn dma_unmap(&self, _iova: u64, _len: u64) {}

    /// `DMA_LOGGING_START` over `(iova, length)` ranges (the core checked
    /// that they are aligned to the page size asked for, and do not overlap
    /// or wrap). The device may change `page_size` to the granularity it
    /// logs at, which userspace then reads back.
    fn log_start(&self, _ranges: &[(u64, u64)], _page_size: &mut u64) -> Result {
        Ok(())
    }

    /// `DMA_LOGGING_STOP`.
    fn log_stop(&self) {}

    /// Part of a `DMA_LOGGING_REPORT`: reports into `bitmap` what the device
    /// wrote in the `len` bytes at `iova`, and forgets it.
    fn log_report(&self, _iova: u64, _len: u64, _bitmap: &DirtyBitmap<'_>) -> Result {
        Ok(())
    }
}

/// The allocation the VFIO core makes for a device of ours.
///
/// # Invariants
///
/// `vdev` is first, as `_vfio_alloc_device()` requires. `data` is null until
/// [`Registration::new`] stores a leaked `KBox<T>` in it, which is then owned
/// by this allocation and dropped in `release`.
#[repr(C)]
struct Raw<T> {
    vdev: vb::vfio_device,
    data: *const T,
}

/// The C table of operations for `T`.
struct VTable<T>(PhantomData<T>);

impl<T: VfioOps> VTable<T> {
    const OPS: vb::vfio_device_ops = vb::vfio_device_ops {
        name: kernel::str::as_char_ptr_in_const_context(T::NAME).cast_mut(),
        init: None,
        release: Some(release::<T>),
        bind_iommufd: Some(vb::vfio_iommufd_emulated_bind),
        unbind_iommufd: Some(vb::vfio_iommufd_emulated_unbind),
        attach_ioas: Some(vb::vfio_iommufd_emulated_attach_ioas),
        detach_ioas: Some(vb::vfio_iommufd_emulated_detach_ioas),
        pasid_attach_ioas: None,
        pasid_detach_ioas: None,
        open_device: if T::HAS_OPEN_DEVICE {
            Some(open_device::<T>)
        } else {
            None
        },
        close_device: if T::HAS_CLOSE_DEVICE {
            Some(close_device::<T>)
        } else {
            None
        },
        read: Some(read::<T>),
        write: Some(write::<T>),
        ioctl: Some(ioctl::<T>),
        get_region_info_caps: Some(get_region_info_caps::<T>),
        mmap: if T::HAS_MMAP { Some(mmap::<T>) } else { None },
        request: if T::HAS_REQUEST {
            Some(request::<T>)
        } else {
            None
        },
        match_: None,
        match_token_uuid: None,
        dma_unmap: if T::DMA { Some(dma_unmap::<T>) } else { None },
        device_feature: None,
    };

    /// The table, in static memory.
    const fn build() -> &'static vb::vfio_device_ops {
        &Self::OPS
    }

    const MIG: vb::vfio_migration_ops = vb::vfio_migration_ops {
        migration_set_state: Some(migration_set_state::<T>),
        migration_get_state: Some(migration_get_state::<T>),
        migration_get_data_size: Some(migration_get_data_size::<T>),
    };

    /// The migration table, in static memory.
    const fn mig_ops() -> &'static vb::vfio_migration_ops {
        &Self::MIG
    }

    const LOG: vb::vfio_log_ops = vb::vfio_log_ops {
        log_start: Some(dev_log_start::<T>),
        log_stop: Some(dev_log_stop::<T>),
        log_read_and_clear: Some(dev_log_read_and_clear::<T>),
    };

    /// The DMA logging table: the device's own if it does DMA.
    const fn log_ops() -> &'static vb::vfio_log_ops {
        if T::DMA {
            &Self::LOG
        } else {
            &NO_DMA_LOG_OPS
        }
    }
}

/// # Safety
///
/// Called by the VFIO core on a registered device of ours (any time, even
/// before it is opened).
unsafe extern "C" fn dma_unmap<T: VfioOps>(vdev: *mut vb::vfio_device, iova: u64, len: u64) {
    // SAFETY: Registered devices have their data set until release.
    unsafe { data::<T>(vdev) }.dma_unmap(iova, len);
}

/// # Safety
///
/// Called by the VFIO core on a registered device of ours, with its tree of
/// `nnodes` ranges and a valid page size pointer, under its own lock.
unsafe extern "C" fn dev_log_start<T: VfioOps>(
    vdev: *mut vb::vfio_device,
    ranges: *mut bindings::rb_root_cached,
    nnodes: u32,
    page_size: *mut u64,
) -> c_int {
    // SAFETY: Registered devices have their data set until release.
    let d = unsafe { data::<T>(vdev) };
    from_result(|| {
        // SAFETY: The core's tree for this call.
        let ranges = unsafe { dma::log_ranges(ranges, nnodes) }?;
        // SAFETY: The core passes its own copy of the page size.
        let page_size = unsafe { &mut *page_size };
        d.log_start(&ranges, page_size).map(|()| 0)
    })
}

/// # Safety
///
/// Called by the VFIO core on a registered device of ours.
unsafe extern "C" fn dev_log_stop<T: VfioOps>(vdev: *mut vb::vfio_device) -> c_int {
    // SAFETY: Registered devices have their data set until release.
    unsafe { data::<T>(vdev) }.log_stop();
    0
}

/// # Safety
///
/// Called by the VFIO core on a registered device of ours, with the bitmap
/// of the current report, for one window of it.
unsafe extern "C" fn dev_log_read_and_clear<T: VfioOps>(
    vdev: *mut vb::vfio_device,
    iova: c_ulong,
    length: c_ulong,
    dirty: *mut bindings::iova_bitmap,
) -> c_int {
    // SAFETY: Registered devices have their data set until release.
    let d = unsafe { data::<T>(vdev) };
    from_result(|| {
        let dirty = NonNull::new(dirty).ok_or(EINVAL)?;
        // SAFETY: The core's bitmap for this call; the value is dropped
        // before the call returns.
        let bitmap = unsafe { DirtyBitmap::new(dirty) };
        d.log_report(iova as u64, length as u64, &bitmap)
            .map(|()| 0)
    })
}

/// Dirty-page logging for a device that does no DMA.
///
/// QEMU migrates a VFIO device only when it can learn which guest pages the
/// device dirtied, from the device or from the IOMMU. An emulated device
/// never writes guest memory, so it starts and stops logging without doing
/// anything and always reports that nothing is dirty.
static NO_DMA_LOG_OPS: vb::vfio_log_ops = vb::vfio_log_ops {
    log_start: Some(log_start),
    log_stop: Some(log_stop),
    log_read_and_clear: Some(log_read_and_clear),
};

extern "C" fn log_start(
    _vdev: *mut vb::vfio_device,
    _ranges: *mut bindings::rb_root_cached,
    _nnodes: u32,
    _page_size: *mut u64,
) -> c_int {
    0
}

extern "C" fn log_stop(_vdev: *mut vb::vfio_device) -> c_int {
    0
}

extern "C" fn log_read_and_clear(
    _vdev: *mut vb::vfio_device,
    _iova: c_ulong,
    _length: c_ulong,
    _dirty: *mut bindings::iova_bitmap,
) -> c_int {
    // No bit is set in the bitmap: the device dirtied no page.
    0
}

/// # Safety
///
/// Called by the VFIO core on a registered device of ours (the device's
/// own locking serialises state changes).
unsafe extern "C" fn migration_set_state<T: VfioOps>(
    vdev: *mut vb::vfio_device,
    state: vb::vfio_device_mig_state,
) -> *mut bindings::file {
    // SAFETY: Registered devices have their data set until release.
    let d = unsafe { data::<T>(vdev) };
    // SAFETY: `vdev` is live for the call. The core sets this field when
    // userspace opts in (a `DEVICE_FEATURE` call that may run concurrently on
    // another thread) and clears it on open, without a lock we hold, so it is
    // read once and volatile, as `READ_ONCE()` would.
    let v2 = unsafe { core::ptr::read_volatile(&raw const (*vdev).precopy_info_v2) } != 0;
    match d.migration_set_state(state, v2) {
        Ok(Some(f)) => f.into_raw(),
        Ok(None) => core::ptr::null_mut(),
        Err(e) => e.to_ptr(),
    }
}

/// # Safety
///
/// Called by the VFIO core on a registered device of ours, with `state`
/// valid for writes.
unsafe extern "C" fn migration_get_state<T: VfioOps>(
    vdev: *mut vb::vfio_device,
    state: *mut vb::vfio_device_mig_state,
) -> c_int {
    // SAFETY: Registered devices have their data set until release.
    let d = unsafe { data::<T>(vdev) };
    from_result(|| {
        let s = d.migration_get_state()?;
        // SAFETY: The core passes a valid pointer for the result.
        unsafe { *state = s };
        Ok(0)
    })
}

/// # Safety
///
/// Called by the VFIO core on a registered device of ours, with `len`
/// valid for writes.
unsafe extern "C" fn migration_get_data_size<T: VfioOps>(
    vdev: *mut vb::vfio_device,
    len: *mut c_ulong,
) -> c_int {
    // SAFETY: Registered devices have their data set until release.
    let d = unsafe { data::<T>(vdev) };
    from_result(|| {
        let n = d.migration_data_size()?;
        // SAFETY: The core passes a valid pointer for the result.
        unsafe { *len = n as c_ulong };
        Ok(0)
    })
}

/// What a migration data file does: its data and position are the
/// implementer's; the file is a stream (no `pread`, no seeking).
pub(crate) trait DataFileOps: Send + Sync + Sized + 'static {
    /// `read()`: copies the next bytes of the stream to `out`.
    fn read(&self, out: &UserBuf) -> Result<usize>;

    /// `write()`: takes the next bytes of the stream from `input`.
    fn write(&self, input: &UserBuf) -> Result<usize>;

    /// An ioctl on the data file.
    fn ioctl(&self, cmd: u32, arg: usize) -> Result<isize>;
}

/// A migration data file: an anonymous-inode file backed by an `Arc<T>`.
///
/// # Invariants
///
/// `file` is a file made by [`DataFile::new`], and this value owns one
/// reference to it. The file's `private_data` is an `Arc<T>` turned into a
/// raw pointer, dropped by the file's `release`.
pub(crate) struct DataFile {
    file: *mut bindings::file,
}

impl DataFile {
    /// A new file calling `data` for reads (`write` false) or writes.
    pub(crate) fn new<T: DataFileOps>(data: Arc<T>, write: bool) -> Result<Self> {
        let raw = Arc::into_raw(data);
        let flags = if write {
            bindings::O_WRONLY
        } else {
            bindings::O_RDONLY
        };
        // SAFETY: The name is a static C string and the table is static; the
        // private data stays valid until `release`, which owns it.
        let file = from_err_ptr(unsafe {
            vb::anon_inode_getfile(
                c"rmdev_mig".as_char_ptr(),
                DataVTable::<T>::build(),
                raw.cast_mut().cast(),
                flags as c_int,
            )
        });
        match file {
            Ok(file) => {
                // SAFETY: `file` is a new, valid file with its inode set; a
                // stream file has no position and refuses `pread`/`lseek`.
                unsafe { bindings::stream_open((*file).f_inode, file) };
                // INVARIANT: The reference `anon_inode_getfile` returned is
                // ours, and `release` owns the private data.
                Ok(Self { file })
            }
            Err(e) => {
                // SAFETY: No file took the pointer, so it is still ours.
                drop(unsafe { Arc::from_raw(raw) });
                Err(e)
            }
        }
    }

    /// Hands the file's reference to the caller (the VFIO core installs it
    /// as a file descriptor).
    fn into_raw(self) -> *mut bindings::file {
        let f = self.file;
        core::mem::forget(self);
        f
    }
}

impl Drop for DataFile {
    fn drop(&mut self) {
        // SAFETY: By the type invariant this value owns one reference.
        unsafe { bindings::fput(self.file) };
    }
}

// SAFETY: The file is only a counted reference; dropping it from any thread
// is allowed.
unsafe impl Send for DataFile {}

/// The file operations of a data file backed by `T`.
struct DataVTable<T>(PhantomData<T>);

impl<T: DataFileOps> DataVTable<T> {
    const OPS: bindings::file_operations = bindings::file_operations {
        // The module stays loaded while a data file is open, even after its
        // device went.
        owner: (&raw const bindings::__this_module).cast_mut(),
        read: Some(data_read::<T>),
        write: Some(data_write::<T>),
        unlocked_ioctl: Some(data_ioctl::<T>),
        #[cfg(CONFIG_COMPAT)]
        compat_ioctl: bindings::compat_ptr_ioctl,
        release: Some(data_release::<T>),
        ..pin_init::zeroed()
    };

    const fn build() -> &'static bindings::file_operations {
        &Self::OPS
    }
}

/// Returns the data of a data file of ours.
///
/// # Safety
///
/// `file` is a live file made by [`DataFile::new`] for `T`, not yet released.
unsafe fn file_data<'a, T>(file: *mut bindings::file) -> &'a T {
    // SAFETY: By the contract `private_data` is a live `Arc<T>`'s pointer.
    unsafe { &*(*file).private_data.cast::<T>() }
}

/// # Safety
///
/// Called by the VFS on a live data file of ours with a user buffer.
unsafe extern "C" fn data_read<T: DataFileOps>(
    file: *mut bindings::file,
    buf: *mut c_char,
    count: usize,
    _ppos: *mut bindings::loff_t,
) -> isize {
    // SAFETY: The file is live for the call.
    let d = unsafe { file_data::<T>(file) };
    // INVARIANT: `buf` is the user buffer of `count` bytes the VFS passed.
    let out = UserBuf {
        ptr: buf.cast(),
        len: count,
    };
    from_result(|| d.read(&out).map(|n| n as isize))
}

/// # Safety
///
/// Called by the VFS on a live data file of ours with a user buffer.
unsafe extern "C" fn data_write<T: DataFileOps>(
    file: *mut bindings::file,
    buf: *const c_char,
    count: usize,
    _ppos: *mut bindings::loff_t,
) -> isize {
    // SAFETY: The file is live for the call.
    let d = unsafe { file_data::<T>(file) };
    // INVARIANT: `buf` is the user buffer of `count` bytes the VFS passed.
    let input = UserBuf {
        ptr: buf.cast_mut().cast(),
        len: count,
    };
    from_result(|| d.write(&input).map(|n| n as isize))
}

/// # Safety
///
/// Called by the VFS on a live data file of ours.
unsafe extern "C" fn data_ioctl<T: DataFileOps>(
    file: *mut bindings::file,
    cmd: c_uint,
    arg: c_ulong,
) -> c_long {
    // SAFETY: The file is live for the call.
    let d = unsafe { file_data::<T>(file) };
    from_result(|| d.ioctl(cmd, arg).map(|r| r as c_long))
}

/// # Safety
///
/// Called by the VFS once, when the last reference to a data file goes.
unsafe extern "C" fn data_release<T: DataFileOps>(
    _inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> c_int {
    // SAFETY: `private_data` is the `Arc<T>` `DataFile::new` stored, and
    // nothing uses it after release.
    drop(unsafe { Arc::from_raw((*file).private_data.cast::<T>().cast_const()) });
    0
}

/// Returns the data of a device of ours.
///
/// # Safety
///
/// `vdev` is a device allocated by [`Registration::new`] for `T`, whose
/// `data` has been set and not yet released, for the lifetime `'a`.
unsafe fn data<'a, T>(vdev: *mut vb::vfio_device) -> &'a T {
    // SAFETY: By the function's contract `vdev` is the first field of a live
    // `Raw<T>` (it is `#[repr(C)]`) whose `data` points to a live `T`.
    unsafe { &*(*vdev.cast::<Raw<T>>()).data }
}

/// # Safety
///
/// Called by the VFIO core once, when the last reference to `vdev` goes.
unsafe extern "C" fn release<T: VfioOps>(vdev: *mut vb::vfio_device) {
    // SAFETY: `vdev` is the first field of a `Raw<T>`, see `Registration::new`.
    let raw = unsafe { &mut *vdev.cast::<Raw<T>>() };
    if !raw.data.is_null() {
        // SAFETY: By the invariant of `Raw`, a non-null `data` is a leaked
        // `KBox<T>` owned by this allocation; nothing uses it after release.
        drop(unsafe { KBox::from_raw(raw.data.cast_mut()) });
        raw.data = core::ptr::null();
    }
}

/// # Safety
///
/// Called by the VFIO core on a registered device of ours.
unsafe extern "C" fn open_device<T: VfioOps>(vdev: *mut vb::vfio_device) -> c_int {
    // SAFETY: Registered devices have their data set until release.
    let d = unsafe { data::<T>(vdev) };
    from_result(|| d.open_device().map(|()| 0))
}

/// # Safety
///
/// Called by the VFIO core on a registered device of ours.
unsafe extern "C" fn close_device<T: VfioOps>(vdev: *mut vb::vfio_device) {
    // SAFETY: Registered devices have their data set until release.
    unsafe { data::<T>(vdev) }.close_device();
}

/// # Safety
///
/// Called by the VFIO core on a registered device of ours, with a user
/// buffer of `count` bytes and a valid position pointer.
unsafe extern "C" fn read<T: VfioOps>(
    vdev: *mut vb::vfio_device,
    buf: *mut c_char,
    count: usize,
    ppos: *mut bindings::loff_t,
) -> isize {
    // SAFETY: Registered devices have their data set until release.
    let d = unsafe { data::<T>(vdev) };
    // SAFETY: The core passes the file's position, valid for this call.
    let pos = unsafe { *ppos };
    // INVARIANT: `buf` is the user buffer the core passed for `count` bytes.
    let out = UserBuf {
        ptr: buf.cast(),
        len: count,
    };
    from_result(|| {
        let n = d.read(&out, pos)?;
        // SAFETY: As above; the position advances by what was read.
        unsafe { *ppos = pos.saturating_add(n as i64) };
        Ok(n as isize)
    })
}

/// # Safety
///
/// Called by the VFIO core on a registered device of ours, with a user
/// buffer of `count` bytes and a valid position pointer.
unsafe extern "C" fn write<T: VfioOps>(
    vdev: *mut vb::vfio_device,
    buf: *const c_char,
    count: usize,
    ppos: *mut bindings::loff_t,
) -> isize {
    // SAFETY: Registered devices have their data set until release.
    let d = unsafe { data::<T>(vdev) };
    // SAFETY: The core passes the file's position, valid for this call.
    let pos = unsafe { *ppos };
    // INVARIANT: `buf` is the user buffer the core passed for `count` bytes.
    let input = UserBuf {
        ptr: buf.cast_mut().cast(),
        len: count,
    };
    from_result(|| {
        let n = d.write(&input, pos)?;
        // SAFETY: As above; the position advances by what was written.
        unsafe { *ppos = pos.saturating_add(n as i64) };
        Ok(n as isize)
    })
}

/// # Safety
///
/// Called by the VFIO core on a registered device of ours.
unsafe extern "C" fn ioctl<T: VfioOps>(
    vdev: *mut vb::vfio_device,
    cmd: c_uint,
    arg: c_ulong,
) -> c_long {
    // SAFETY: Registered devices have their data set until release.
    let d = unsafe { data::<T>(vdev) };
    from_result(|| d.ioctl(cmd, arg).map(|r| r as c_long))
}

/// # Safety
///
/// Called by the VFIO core on a registered device of ours, with `info`
/// valid for reads and writes for the duration of the call.
unsafe extern "C" fn get_region_info_caps<T: VfioOps>(
    vdev: *mut vb::vfio_device,
    info: *mut vb::vfio_region_info,
    caps: *mut vb::vfio_info_cap,
) -> c_int {
    // SAFETY: Registered devices have their data set until release.
    let d = unsafe { data::<T>(vdev) };
    // SAFETY: The core passes its own copy of the user's argument.
    let info = unsafe { &mut *info };
    from_result(|| {
        let r = d.region_info(info.index)?;
        info.offset = r.offset;
        info.size = r.size;
        info.flags = r.flags;
        let mut cap = SparseCap {
            header: vb::vfio_info_cap_header {
                id: vb::VFIO_REGION_INFO_CAP_SPARSE_MMAP as u16,
                version: 1,
                next: 0,
            },
            nr_areas: 0,
            reserved: 0,
            areas: [const { vb::vfio_region_sparse_mmap_area { offset: 0, size: 0 } };
                SPARSE_AREAS],
        };
        let mut n = 0;
        for (slot, (offset, size)) in cap.areas.iter_mut().zip(r.sparse.iter().flatten()) {
            *slot = vb::vfio_region_sparse_mmap_area {
                offset: *offset,
                size: *size,
            };
            n += 1;
        }
        if n > 0 {
            cap.nr_areas = n as u32;
            let len = size_of::<vb::vfio_region_info_cap_sparse_mmap>()
                + n * size_of::<vb::vfio_region_sparse_mmap_area>();
            // SAFETY: `caps` is the core's capability chain for this call.
            unsafe { add_info_cap(caps, &mut cap, len) }?;
        }
        if let Some((kind, subtype)) = r.kind {
            let mut cap = vb::vfio_region_info_cap_type {
                header: vb::vfio_info_cap_header {
                    id: vb::VFIO_REGION_INFO_CAP_TYPE as u16,
                    version: 1,
                    next: 0,
                },
                type_: kind,
                subtype,
            };
            let len = size_of::<vb::vfio_region_info_cap_type>();
            // SAFETY: `caps` is the core's capability chain for this call.
            unsafe { add_info_cap(caps, &mut cap, len) }?;
        }
        Ok(0)
    })
}

/// # Safety
///
/// Called by the VFIO core on a registered device of ours, from the device
/// file's `mmap` file operation, with `vma` undergoing its initial setup.
unsafe extern "C" fn mmap<T: VfioOps>(
    vdev: *mut vb::vfio_device,
    vma: *mut bindings::vm_area_struct,
) -> c_int {
    // SAFETY: Registered devices have their data set until release.
    let d = unsafe { data::<T>(vdev) };
    // SAFETY: The core calls this op from `f_ops->mmap()` of the device file,
    // while `vma` is being set up, for the duration of the call.
    let map = unsafe { Mapping::from_raw(vma) };
    from_result(|| d.mmap(&map).map(|()| 0))
}

/// # Safety
///
/// Called by the VFIO core on a registered device of ours.
unsafe extern "C" fn request<T: VfioOps>(vdev: *mut vb::vfio_device, count: c_uint) {
    // SAFETY: Registered devices have their data set until release.
    unsafe { data::<T>(vdev) }.request(count);
}

/// A VFIO device registered with an emulated IOMMU (the mdev kind).
///
/// # Invariants
///
/// `vdev` is a device of ours with its data set, registered with
/// `vfio_register_emulated_iommu_dev()`, and this value holds one reference
/// to it. [`Drop`] unregisters it (waiting for users to close it, and asking
/// them with `request` meanwhile) and drops the reference.
pub(crate) struct Registration<T: VfioOps> {
    vdev: *mut vb::vfio_device,
    _t: PhantomData<T>,
}

// SAFETY: The registration is only a handle; the core's functions on it may
// be called from any thread.
unsafe impl<T: VfioOps> Send for Registration<T> {}
// SAFETY: No `&self` method touches the device.
unsafe impl<T: VfioOps> Sync for Registration<T> {}

impl<T: VfioOps> Registration<T> {
    /// Allocates a VFIO device for the (mdev) device `dev`, hands it `data`
    /// and registers it with an emulated IOMMU, when the returned initialiser
    /// runs: the memory the registration goes to exists by then, so nothing
    /// that can fail follows the moment userspace can open the device.
    ///
    /// # Safety
    ///
    /// `dev` is a live device that outlives the registration.
    pub(crate) unsafe fn new(
        dev: *mut bindings::device,
        data: Pin<KBox<T>>,
    ) -> impl PinInit<Self, Error> {
        try_init!(Self {
            // SAFETY: The caller's contract.
            vdev: unsafe { Self::register(dev, data) }?,
            _t: PhantomData,
        })
    }

    /// Allocates, sets up and registers the VFIO device (see [`Self::new`]).
    ///
    /// # Safety
    ///
    /// `dev` is a live device that outlives the registration.
    unsafe fn register(
        dev: *mut bindings::device,
        data: Pin<KBox<T>>,
    ) -> Result<*mut vb::vfio_device> {
        // SAFETY: `dev` is live by the contract; the size covers `Raw<T>`,
        // whose first field is the `vfio_device`, and the ops table is static.
        let vdev = from_err_ptr(unsafe {
            vb::_vfio_alloc_device(size_of::<Raw<T>>(), dev, VTable::<T>::build())
        })?;
        let flags = if T::HAS_MIGRATION_SET_STATE {
            data.migration_flags()
        } else {
            0
        };
        if let Some(v) = NonNull::new(vdev) {
            // SAFETY: `vdev` is ours, and the handle goes to the data that
            // becomes its own just below, dropped when it is released.
            data.attach(unsafe { VfioDev::new(v) });
        }
        // SAFETY: The allocation is a zeroed `Raw<T>`; storing the data
        // transfers its ownership to the allocation (see `release`). The data
        // stays pinned: it is only ever dropped in place, never moved.
        unsafe { (*vdev.cast::<Raw<T>>()).data = KBox::into_raw(Pin::into_inner_unchecked(data)) };
        if flags != 0 {
            // SAFETY: `vdev` is ours and not registered yet; the tables are
            // static. The core reads these fields only after registration.
            unsafe {
                (*vdev).migration_flags = flags;
                (*vdev).mig_ops = VTable::<T>::mig_ops();
                (*vdev).log_ops = VTable::<T>::log_ops();
            }
        }
        // SAFETY: `vdev` was fully set up above.
        let ret = to_result(unsafe { vb::vfio_register_emulated_iommu_dev(vdev) });
        if let Err(e) = ret {
            // SAFETY: Drops the allocation's only reference; `release` then
            // drops the data.
            unsafe { bindings::put_device(&raw mut (*vdev).device) };
            return Err(e);
        }
        Ok(vdev)
    }

    /// The Rust data of the device.
    pub(crate) fn data(&self) -> &T {
        // SAFETY: By the type invariant the device and its data are live
        // while the registration exists.
        unsafe { data::<T>(self.vdev) }
    }
}

impl<T: VfioOps> Drop for Registration<T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the device is registered, and this is
        // the only place it is unregistered and our reference dropped.
        unsafe {
            vb::vfio_unregister_group_dev(self.vdev);
            bindings::put_device(&raw mut (*self.vdev).device);
        }
    }
}

/// What runs when an irqfd userspace gave is signalled.
pub(crate) trait IrqfdHandler: Sync {
    /// The eventfd was signalled. Runs in process context (the VFIO core's
    /// irqfd work item), never inside the signaller: a handler may take a
    /// spinlock under which the same eventfd is signalled.
    fn irqfd_fired(&self);
}

/// A handler `H` together with the slot of one irqfd that calls it (the
/// VFIO core's `struct virqfd`), as vfio-pci uses one for INTx unmask. The
/// value dereferences to `H`.
///
/// The handler is the slot's own field, and the slot disarms its irqfd when
/// it is dropped, before the handler is: whatever the caller does, the
/// handler outlives the irqfd, so arming needs no promise of the caller.
///
/// # Invariants
///
/// - `virqfd` is only read and written by the VFIO core's `vfio_virqfd_*`
///   functions (under the core's own lock), and `lock` serialises our calls
///   to them.
/// - The value is pinned: it is `!Unpin` and made only through the
///   [`PinInit`] of [`IrqfdSlot::new`]. So `handler`, whose address the core
///   keeps as the irqfd's data, does not move, and its memory stays valid
///   until the value is dropped; the drop disarms the irqfd and waits for
///   its work before any field is dropped.
#[pin_data(PinnedDrop)]
pub(crate) struct IrqfdSlot<H> {
    #[pin]
    handler: H,
    #[pin]
    virqfd: Opaque<*mut vb::virqfd>,
    #[pin]
    lock: Mutex<()>,
}

// SAFETY: The slot is only touched by the VFIO core under its lock, and our
// calls are serialised by `lock`; the handler is sent with it.
unsafe impl<H: Send> Send for IrqfdSlot<H> {}
// SAFETY: As above; the handler is shared with the irqfd's work item, which
// only calls `IrqfdHandler::irqfd_fired(&H)`.
unsafe impl<H: Sync> Sync for IrqfdSlot<H> {}

impl<H> IrqfdSlot<H> {
    /// `handler` with an empty slot.
    pub(crate) fn new(handler: impl PinInit<H>) -> impl PinInit<Self> {
        pin_init!(Self {
            handler <- handler,
            virqfd: Opaque::new(core::ptr::null_mut()),
            lock <- new_mutex!(()),
        })
    }

    /// Stops and frees the irqfd, if there is one; when this returns the
    /// handler is not running for it and will not run again. Sleeps.
    pub(crate) fn disarm(&self) {
        let _g = self.lock.lock();
        // SAFETY: The slot is valid; the core tolerates an empty one. It
        // waits for the work item to finish.
        unsafe { vb::vfio_virqfd_disable(self.virqfd.get()) };
    }
}

impl<H: IrqfdHandler> IrqfdSlot<H> {
    /// Makes eventfd `fd` call the handler's [`IrqfdHandler::irqfd_fired`]
    /// when signalled. `EBUSY` if the slot holds one already (as vfio-pci),
    /// `EBADF` or `EINVAL` for a bad descriptor. Sleeps.
    pub(crate) fn arm(&self, fd: i32) -> Result {
        let _g = self.lock.lock();
        // SAFETY: The slot is valid storage the core owns the contents of.
        // The work function gets `handler`, which by the type invariant
        // stays at its address until the drop, and the drop disarms the
        // irqfd and waits for its work first.
        to_result(unsafe {
            vb::vfio_virqfd_enable(
                core::ptr::from_ref(&self.handler).cast_mut().cast(),
                None,
                Some(irqfd_work::<H>),
                core::ptr::null_mut(),
                self.virqfd.get(),
                fd,
            )
        })
    }
}

impl<H> core::ops::Deref for IrqfdSlot<H> {
    type Target = H;

    fn deref(&self) -> &H {
        &self.handler
    }
}

#[pinned_drop]
impl<H> PinnedDrop for IrqfdSlot<H> {
    fn drop(self: Pin<&mut Self>) {
        // Before any field goes: the handler must outlive the irqfd.
        self.disarm();
    }
}

/// # Safety
///
/// Called by the VFIO core's irqfd work with the `opaque` that
/// [`IrqfdSlot::arm`] passed: the handler of a slot, live until the slot
/// disarms the irqfd, which waits for this work.
unsafe extern "C" fn irqfd_work<H: IrqfdHandler>(opaque: *mut c_void, _data: *mut c_void) {
    // SAFETY: See above.
    unsafe { &*opaque.cast::<H>() }.irqfd_fired();
}
