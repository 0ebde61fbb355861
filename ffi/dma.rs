// SPDX-License-Identifier: GPL-2.0

//! DMA into guest memory through the VFIO core's emulated IOMMU.
//!
//! C header: [`include/linux/vfio.h`](srctree/include/linux/vfio.h)
//! (`vfio_pin_pages`, `vfio_unpin_pages`, `vfio_dma_rw`) and
//! [`include/linux/iova_bitmap.h`](srctree/include/linux/iova_bitmap.h).
//!
//! An emulated device reaches guest memory in two ways: it copies through
//! `vfio_dma_rw()`, which goes through the container's or the iommufd
//! access's mapping on every call, or it pins guest pages with
//! `vfio_pin_pages()` and then reads and writes them directly. Both need
//! the device to be open: the VFIO core warns otherwise, so the library
//! calls them only between `open_device` and the end of `close_device`.

use super::bindings as vb;
use core::{marker::PhantomData, ptr::NonNull};
use kernel::{
    alloc::KVec,
    bindings,
    error::to_result,
    page::{BorrowedPage, PAGE_SIZE},
    prelude::*,
};

/// The most pages one `vfio_pin_pages()` call takes
/// (`VFIO_PIN_PAGES_MAX_ENTRIES`).
pub(crate) const PIN_CHUNK: usize = PAGE_SIZE / size_of::<c_ulong>();

/// The VFIO device a library instance is registered as, for DMA.
///
/// # Invariants
///
/// `vdev` is a VFIO device of ours, allocated and not yet released. It is
/// handed only to the device's own data (see `vfio::Registration`), which the
/// device's release drops: so it is valid for as long as the value exists.
pub(crate) struct VfioDev {
    vdev: NonNull<vb::vfio_device>,
}

// SAFETY: The handle only names the device; the VFIO core's DMA functions
// may be called on it from any thread.
unsafe impl Send for VfioDev {}
// SAFETY: As above; no method changes the handle.
unsafe impl Sync for VfioDev {}

impl VfioDev {
    /// The handle of `vdev`.
    ///
    /// # Safety
    ///
    /// `vdev` is a VFIO device of ours whose data will own the handle, so
    /// that the handle goes before the device is released.
    pub(super) unsafe fn new(vdev: NonNull<vb::vfio_device>) -> Self {
        // INVARIANT: The caller's contract.
        Self { vdev }
    }

    /// Copies the `buf.len()` bytes of guest memory at `iova` into `buf`.
    ///
    /// The device must be open (the library's contract). `EFAULT` if guest
    /// memory there is not mapped (or not readable).
    pub(crate) fn read(&self, iova: u64, buf: &mut [u8]) -> Result {
        if buf.is_empty() {
            return Ok(());
        }
        // SAFETY: By the type invariant `vdev` is live; `buf` is a valid
        // kernel buffer of its length, which the core writes into only.
        to_result(unsafe {
            vb::vfio_dma_rw(
                self.vdev.as_ptr(),
                iova,
                buf.as_mut_ptr().cast(),
                buf.len(),
                false,
            )
        })
    }

    /// Copies `buf` into guest memory at `iova`.
    ///
    /// The device must be open. `EFAULT` if guest memory there is not
    /// mapped (or not writable).
    pub(crate) fn write(&self, iova: u64, buf: &[u8]) -> Result {
        if buf.is_empty() {
            return Ok(());
        }
        // SAFETY: As in `read`; with `write` set the core only reads the
        // buffer, so casting away its constness is sound.
        to_result(unsafe {
            vb::vfio_dma_rw(
                self.vdev.as_ptr(),
                iova,
                buf.as_ptr().cast_mut().cast(),
                buf.len(),
                true,
            )
        })
    }

    /// Pins the `npage` guest pages at `iova` (page aligned), for writing
    /// too if `write`, in calls of at most [`PIN_CHUNK`] pages.
    ///
    /// The device must be open and implement `dma_unmap`, and the library
    /// must drop the pin before that op returns for a range overlapping it.
    /// If a call fails, the pages pinned so far are unpinned.
    pub(crate) fn pin(&self, iova: u64, npage: usize, write: bool) -> Result<PinnedPages> {
        if npage == 0 || !iova.is_multiple_of(PAGE_SIZE as u64) {
            return Err(EINVAL);
        }
        let pages = KVec::with_capacity(npage, GFP_KERNEL)?;
        // SAFETY: `vdev` is live (type invariant); the reference taken here
        // keeps its memory until `PinnedPages` drops it.
        unsafe { bindings::get_device(&raw mut (*self.vdev.as_ptr()).device) };
        // INVARIANT: `pages` is empty, so nothing is pinned yet; it grows
        // by exactly what each call below pinned.
        let mut pinned = PinnedPages {
            vdev: self.vdev,
            iova,
            pages,
        };
        let prot = bindings::IOMMU_READ | if write { bindings::IOMMU_WRITE } else { 0 };
        let mut buf = [core::ptr::null_mut::<bindings::page>(); 64];
        while pinned.pages.len() < npage {
            let done = pinned.pages.len();
            let n = (npage - done).min(PIN_CHUNK).min(buf.len());
            let at = (done as u64)
                .checked_mul(PAGE_SIZE as u64)
                .and_then(|o| iova.checked_add(o))
                .ok_or(EINVAL)?;
            // SAFETY: `vdev` is live; `buf` has room for `n` page pointers,
            // which the core fills on success.
            let ret = unsafe {
                vb::vfio_pin_pages(
                    self.vdev.as_ptr(),
                    at,
                    n as c_int,
                    prot as c_int,
                    buf.as_mut_ptr(),
                )
            };
            if ret < 0 {
                // `pinned` unpins what is in it.
                return Err(Error::from_errno(ret));
            }
            let chunk = buf.get(..n).unwrap_or(&[]);
            if ret as usize != n || chunk.len() != n || chunk.iter().any(|p| p.is_null()) {
                // The core pins all or nothing and fills every entry;
                // anything else is unpinned whole, as it was pinned.
                if ret > 0 {
                    // SAFETY: `ret` pages at `at` were pinned by the call
                    // above with this iova; they go back with the same.
                    unsafe { vb::vfio_unpin_pages(self.vdev.as_ptr(), at, ret) };
                }
                return Err(EFAULT);
            }
            for p in chunk.iter().filter_map(|p| NonNull::new(*p)) {
                // Cannot fail: the capacity is `npage`.
                pinned.pages.push(p, GFP_KERNEL)?;
            }
        }
        Ok(pinned)
    }
}

/// Guest pages pinned by [`VfioDev::pin`]; dropping the value unpins them
/// with the iovas and counts they were pinned with.
///
/// # Invariants
///
/// - `vdev` is a VFIO device of ours on which this value holds a reference
///   (so its memory stays), and it is open until the value is dropped (the
///   library's contract: it drops pins in `dma_unmap` and `close_device`).
/// - `pages` are the pages of `pages.len()` page-sized steps from `iova`,
///   pinned by this device, in order, in chunks of [`PIN_CHUNK`] from
///   `iova`, and they stay pinned (so valid) until the drop.
pub(crate) struct PinnedPages {
    vdev: NonNull<vb::vfio_device>,
    iova: u64,
    pages: KVec<NonNull<bindings::page>>,
}

// SAFETY: The value owns page references and a device reference; both may
// be dropped from any thread.
unsafe impl Send for PinnedPages {}
// SAFETY: Shared access only reads the pages, see `read`/`write`.
unsafe impl Sync for PinnedPages {}

impl PinnedPages {
    /// The guest address of the first page.
    pub(crate) fn iova(&self) -> u64 {
        self.iova
    }

    /// The bytes pinned.
    pub(crate) fn len(&self) -> usize {
        self.pages.len() * PAGE_SIZE
    }

    /// Calls `f(page, offset in page, start in the caller's buffer, len)`
    /// for each page piece of the `len` bytes at `off`.
    fn pieces(
        &self,
        off: usize,
        len: usize,
        mut f: impl FnMut(&BorrowedPage<'_>, usize, usize, usize) -> Result,
    ) -> Result {
        let end = off.checked_add(len).ok_or(EINVAL)?;
        if end > self.len() {
            return Err(EINVAL);
        }
        let mut at = off;
        while at < end {
            let page = self.pages.get(at / PAGE_SIZE).ok_or(EINVAL)?;
            let in_page = at % PAGE_SIZE;
            let n = (PAGE_SIZE - in_page).min(end - at);
            // SAFETY: By the type invariant the page stays pinned, so valid,
            // while `self` exists, which outlives this borrow.
            let p = unsafe { BorrowedPage::from_raw(*page) };
            f(&p, in_page, at - off, n)?;
            at += n;
        }
        Ok(())
    }

    /// Copies the `buf.len()` bytes at `off` of the pinned pages into `buf`.
    pub(crate) fn read(&self, off: usize, buf: &mut [u8]) -> Result {
        let len = buf.len();
        self.pieces(off, len, |p, in_page, at, n| {
            let dst = buf.get_mut(at..at + n).ok_or(EINVAL)?;
            // SAFETY: `dst` is valid for `n` bytes. The page is guest
            // memory the guest may write concurrently, as C drivers of
            // emulated devices read it: the bytes land in our own buffer
            // and are never interpreted in place.
            unsafe { p.read_raw(dst.as_mut_ptr(), in_page, n) }
        })
    }

    /// Copies `buf` into the pinned pages at `off`.
    pub(crate) fn write(&self, off: usize, buf: &[u8]) -> Result {
        self.pieces(off, buf.len(), |p, in_page, at, n| {
            let src = buf.get(at..at + n).ok_or(EINVAL)?;
            // SAFETY: `src` is valid for `n` bytes. The guest owns the page
            // and may touch it concurrently, as with C drivers; no Rust
            // reference to the page exists.
            unsafe { p.write_raw(src.as_ptr(), in_page, n) }
        })
    }
}

impl Drop for PinnedPages {
    fn drop(&mut self) {
        let mut done = 0;
        while done < self.pages.len() {
            let n = (self.pages.len() - done).min(PIN_CHUNK).min(64);
            let at = self.iova + (done * PAGE_SIZE) as u64;
            // SAFETY: By the type invariant the device is open and these
            // `n` pages at `at` were pinned by one call with this iova and
            // count (the chunks of `pin`).
            unsafe { vb::vfio_unpin_pages(self.vdev.as_ptr(), at, n as c_int) };
            done += n;
        }
        // SAFETY: The reference `VfioDev::pin` took.
        unsafe { bindings::put_device(&raw mut (*self.vdev.as_ptr()).device) };
    }
}

/// The ranges of a `DMA_LOGGING_START`, as the VFIO core hands them over (an
/// interval tree), turned into `(iova, length)` pairs.
///
/// # Safety
///
/// `root` is the core's tree for the current `log_start` call.
pub(super) unsafe fn log_ranges(
    root: *mut bindings::rb_root_cached,
    nnodes: u32,
) -> Result<KVec<(u64, u64)>> {
    let mut v = KVec::with_capacity(nnodes as usize, GFP_KERNEL)?;
    // SAFETY: `root` is the core's tree (the caller's contract).
    let mut node = unsafe { bindings::interval_tree_iter_first(root, 0, c_ulong::MAX) };
    while let Some(n) = NonNull::new(node) {
        // SAFETY: The tree's nodes are valid during the call.
        let (start, last) = unsafe { ((*n.as_ptr()).start, (*n.as_ptr()).last) };
        // An empty range (length 0) has `last == start - 1`: it comes out
        // with length 0, which the layout refuses.
        let len = (last as u64).wrapping_sub(start as u64).wrapping_add(1);
        v.push((start as u64, len), GFP_KERNEL)?;
        // SAFETY: As above; `n` is a node of the tree.
        node = unsafe { bindings::interval_tree_iter_next(n.as_ptr(), 0, c_ulong::MAX) };
    }
    Ok(v)
}

/// The user's bitmap of a `DMA_LOGGING_REPORT`, for the window of one
/// `log_read_and_clear` call.
///
/// # Invariants
///
/// `bitmap` is the core's bitmap for the current call, valid for `'a`.
pub(crate) struct DirtyBitmap<'a> {
    bitmap: NonNull<bindings::iova_bitmap>,
    _call: PhantomData<&'a mut bindings::iova_bitmap>,
}

impl DirtyBitmap<'_> {
    /// The bitmap the core passed.
    ///
    /// # Safety
    ///
    /// `bitmap` is the core's bitmap for the current `log_read_and_clear`
    /// call, and the value does not outlive the call.
    pub(super) unsafe fn new(bitmap: NonNull<bindings::iova_bitmap>) -> Self {
        // INVARIANT: The caller's contract.
        Self {
            bitmap,
            _call: PhantomData,
        }
    }

    /// Reports the `len` bytes at `iova` as written; the caller keeps to
    /// the window of the call.
    pub(crate) fn set(&self, iova: u64, len: u64) {
        let (Ok(iova), Ok(len)) = (c_ulong::try_from(iova), usize::try_from(len)) else {
            return;
        };
        // SAFETY: By the type invariant the bitmap is the core's, for this
        // call; it checks the range against its own window.
        unsafe { bindings::iova_bitmap_set(self.bitmap.as_ptr(), iova, len) };
    }
}
