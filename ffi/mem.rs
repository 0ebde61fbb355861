// SPDX-License-Identifier: GPL-2.0

//! Memory a device shares with userspace through `mmap()` of its file.
//!
//! C headers: [`include/linux/highmem.h`](srctree/include/linux/highmem.h)
//! (local mappings) and [`include/linux/mm.h`](srctree/include/linux/mm.h)
//! (`vm_insert_page`).

use kernel::{
    alloc::flags::__GFP_ZERO,
    bindings,
    mm::virt::{flags, VmaNew},
    page::{Page, PAGE_SIZE},
    prelude::*,
};

/// A zeroed page of memory that userspace may map and write at any time.
///
/// # Invariants
///
/// `page` is an order-0 page; this value owns one reference to it, and every
/// mapping of it into userspace holds one of its own. Userspace may read and
/// write the page concurrently through such a mapping, so the kernel touches
/// it only with volatile accesses through a local mapping, never through
/// Rust references: a racing user write can make the kernel see a mix of old
/// and new bytes, nothing worse.
pub(crate) struct SharedPage {
    page: Page,
}

/// Checks that `len` bytes at `off` lie inside a page.
fn in_page(off: usize, len: usize) -> Result {
    match off.checked_add(len) {
        Some(end) if end <= PAGE_SIZE => Ok(()),
        _ => Err(EINVAL),
    }
}

impl SharedPage {
    /// A new zeroed page, charged to the caller's memory cgroup. Sleeps.
    pub(crate) fn new() -> Result<Self> {
        let page = Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?;
        // INVARIANT: `alloc_page` returns an order-0 page with one reference.
        Ok(Self { page })
    }

    /// Runs `f` with the page mapped at a kernel address, valid for
    /// [`PAGE_SIZE`] bytes during the call. Does not sleep.
    fn with_mapped<R>(&self, f: impl FnOnce(*mut u8) -> R) -> R {
        // SAFETY: By the type invariant the page is live.
        let addr = unsafe { bindings::kmap_local_page(self.page.as_ptr()) };
        let r = f(addr.cast());
        // SAFETY: `addr` is the local mapping made above. Local mappings
        // must be undone in reverse order: `f` only sees a raw pointer and
        // every local mapping of this module is undone before the call that
        // made it returns, so this one is the most recent still in place.
        unsafe { bindings::kunmap_local(addr) };
        r
    }

    /// Copies the bytes at `off` into `out`. `EINVAL` if they do not lie
    /// inside the page. Does not sleep.
    pub(crate) fn read(&self, off: usize, out: &mut [u8]) -> Result {
        in_page(off, out.len())?;
        self.with_mapped(|p| {
            for (i, b) in out.iter_mut().enumerate() {
                // SAFETY: `off + i` is below `PAGE_SIZE` (checked above) and
                // `p` is mapped for `PAGE_SIZE` bytes. The read is volatile:
                // userspace may write the byte concurrently (see the type
                // invariant).
                *b = unsafe { p.add(off + i).read_volatile() };
            }
        });
        Ok(())
    }

    /// Copies `data` into the page at `off`. `EINVAL` if it does not fit
    /// inside the page. Does not sleep.
    pub(crate) fn write(&self, off: usize, data: &[u8]) -> Result {
        in_page(off, data.len())?;
        self.with_mapped(|p| {
            for (i, &b) in data.iter().enumerate() {
                // SAFETY: As in `read`; the page is writable kernel memory.
                unsafe { p.add(off + i).write_volatile(b) };
            }
        });
        Ok(())
    }

    /// Zeroes the whole page. Does not sleep.
    pub(crate) fn zero(&self) {
        self.with_mapped(|p| {
            let words = p.cast::<u64>();
            for i in 0..PAGE_SIZE / size_of::<u64>() {
                // SAFETY: A local mapping is page aligned, so `words` is
                // aligned for `u64`, and the `PAGE_SIZE / 8` words lie inside
                // the mapping. Volatile as in `read`.
                unsafe { words.add(i).write_volatile(0) };
            }
        });
    }
}

/// A mapping of a device file that is being set up (the VFIO `mmap` op).
///
/// # Invariants
///
/// `vma` is undergoing its initial setup in an `f_ops->mmap()` hook, under
/// the mmap write lock, for as long as this value exists.
pub(crate) struct Mapping<'a> {
    vma: &'a VmaNew,
}

impl<'a> Mapping<'a> {
    /// Wraps a mapping that is being set up.
    ///
    /// # Safety
    ///
    /// `vma` is a valid VMA undergoing its initial setup in an
    /// `f_ops->mmap()` hook for the lifetime `'a`.
    pub(crate) unsafe fn from_raw(vma: *mut bindings::vm_area_struct) -> Self {
        // SAFETY: By the function's contract.
        let vma = unsafe { VmaNew::from_raw(vma) };
        // INVARIANT: By the function's contract.
        Self { vma }
    }

    /// The mapping's offset in the file, in pages (`vm_pgoff`).
    pub(crate) fn pgoff(&self) -> u64 {
        // SAFETY: By the type invariant the VMA is valid and only this hook
        // sees it yet (its setup runs under the mmap write lock), so the read
        // races with nothing.
        unsafe { (*self.vma.as_ptr()).vm_pgoff as u64 }
    }

    /// The mapping's length in bytes (a multiple of the page size).
    pub(crate) fn len(&self) -> u64 {
        self.vma.end().saturating_sub(self.vma.start()) as u64
    }

    /// Whether the mapping is shared (`MAP_SHARED`, `VM_SHARED`): writes go
    /// to the pages themselves rather than to private copies.
    pub(crate) fn shared(&self) -> bool {
        self.vma.flags() & flags::SHARED != 0
    }

    /// Maps `pages`, in order, over the whole mapping, which must be exactly
    /// that long (`EINVAL` otherwise). The mapping cannot grow (`mremap`) and
    /// stays out of core dumps.
    ///
    /// Each page mapped gains a reference that the mapping holds until it is
    /// unmapped (`vm_insert_page()` takes it, `mm/memory.c`), so a page stays
    /// valid while mapped even if its owner drops it first.
    pub(crate) fn insert(&self, pages: &[SharedPage]) -> Result {
        let bytes = pages.len().checked_mul(PAGE_SIZE).ok_or(EINVAL)?;
        if bytes as u64 != self.len() {
            return Err(EINVAL);
        }
        self.vma.set_dontexpand();
        self.vma.set_dontdump();
        let vma = self.vma.set_mixedmap();
        let mut addr = vma.start();
        for p in pages {
            vma.vm_insert_page(addr, &p.page)?;
            addr = addr.checked_add(PAGE_SIZE).ok_or(EINVAL)?;
        }
        Ok(())
    }
}
