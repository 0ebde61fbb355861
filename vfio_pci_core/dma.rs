// SPDX-License-Identifier: GPL-2.0

//! The library's DMA layer: guest memory for devices that reach it.
//!
//! A device reads and writes guest memory through [`Dma`], which the library
//! owns, never through the VFIO core directly: every copy and every pin goes
//! through one place that knows whether the device is open, which pages are
//! pinned and who is using them, and which pages the device wrote. That is
//! what lets the library keep the two promises the VFIO core asks of an
//! emulated device:
//!
//! - **`dma_unmap`**: when userspace unmaps guest memory, every page the
//!   device pinned there is unpinned, with the iova and count it was pinned
//!   with, before the op returns. Copies into pinned pages in progress
//!   finish first; later ones fail with `EFAULT`, and the device learns of
//!   the unmap through [`PciDevice::dma_unmapped`](super::PciDevice).
//! - **DMA logging**: every page the device wrote, through [`Dma::write`] or
//!   into pages pinned for writing, is reported by `DMA_LOGGING_REPORT`
//!   (pages pinned for writing in every report while they stay pinned, as
//!   type1 does), so QEMU can trust the device's log for live migration.
//!
//! The bookkeeping is kernel-free ([`emul::dma`](super::emul::dma)); this
//! file holds the lock, the pinned pages and the log's memory. The lock is
//! never held across a call into the IOMMU: the VFIO core calls `dma_unmap`
//! under its own locks, which a pin in progress may be waiting for.

use super::emul::dma::{
    log_layout, DirtyLog, Finished, LogRange, PinId, PinTable, Slot, MAX_PINS, MIN_LOG_SHIFT,
};
use crate::ffi::dma::{DirtyBitmap, PinnedPages, VfioDev};
use kernel::{
    alloc::{KVVec, KVec},
    new_condvar, new_mutex,
    page::PAGE_SIZE,
    prelude::*,
    sync::{Arc, CondVar, Mutex, SetOnce},
};

/// The pinned pages of one pin, shared with the copies that use them.
type Pages = Arc<PinnedPages>;

/// A device's dirty log, with its memory.
type Log = DirtyLog<KVec<LogRange>, KVVec<u64>>;

/// What [`Dma`] guards.
struct State {
    /// Between `open_device` and `close_device`: only then may the device
    /// reach guest memory (the VFIO core warns otherwise).
    open: bool,
    /// Copies through `vfio_dma_rw()` in progress.
    copies: u32,
    pins: PinTable<Pages, KVec<Option<Slot<Pages>>>>,
    log: Option<Log>,
}

/// Guest memory, for a device built on the library.
#[pin_data]
pub(crate) struct Dma {
    dev: SetOnce<VfioDev>,
    #[pin]
    state: Mutex<State>,
    /// Signalled whenever a copy or a user of pinned pages finishes, and
    /// when a pin completes: `dma_unmap` and `close_device` wait on it.
    #[pin]
    idle: CondVar,
}

/// A pin of guest pages a device holds, by identity (see [`Dma::pin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pin(PinId);

impl Dma {
    /// A layer with no device attached yet.
    pub(crate) fn new() -> Result<impl PinInit<Self, Error>> {
        // On the heap, filled one slot at a time: the table is too large to
        // build on a kernel stack.
        let mut slots = KVec::with_capacity(MAX_PINS, GFP_KERNEL)?;
        for _ in 0..MAX_PINS {
            slots.push(None, GFP_KERNEL)?;
        }
        let pins = PinTable::new(slots);
        Ok(try_pin_init!(Self {
            dev: SetOnce::new(),
            state <- new_mutex!(State {
                open: false,
                copies: 0,
                pins,
                log: None,
            }),
            idle <- new_condvar!(),
        }))
    }

    /// Takes the device's VFIO handle (once, at registration).
    pub(crate) fn attach(&self, dev: VfioDev) {
        // A second handle (there is none) would just be dropped.
        let _ = self.dev.populate(dev);
    }

    /// The handle, while the device is open; `ENODEV` otherwise.
    fn handle(&self, st: &State) -> Result<&VfioDev> {
        if !st.open {
            return Err(ENODEV);
        }
        self.dev.as_ref().ok_or(ENODEV)
    }

    /// Starts a copy: `ENODEV` unless the device is open.
    fn begin_copy(&self) -> Result<&VfioDev> {
        let mut st = self.state.lock();
        let dev = self.handle(&st)?;
        st.copies = st.copies.checked_add(1).ok_or(EBUSY)?;
        Ok(dev)
    }

    /// Ends a copy; one of `len` bytes at `iova` written is logged.
    fn end_copy(&self, write: Option<(u64, u64)>) {
        let mut st = self.state.lock();
        st.copies = st.copies.saturating_sub(1);
        if let (Some((iova, len)), Some(log)) = (write, st.log.as_mut()) {
            log.mark(iova, len);
        }
        drop(st);
        self.idle.notify_all();
    }

    /// Copies guest memory at `iova` into `buf`. Sleeps; `EFAULT` if the
    /// memory is not mapped, `ENODEV` if the device is not open.
    pub(crate) fn read(&self, iova: u64, buf: &mut [u8]) -> Result {
        let dev = self.begin_copy()?;
        let r = dev.read(iova, buf);
        self.end_copy(None);
        r
    }

    /// Copies `buf` into guest memory at `iova`, and logs the write. Sleeps;
    /// errors as [`Self::read`].
    pub(crate) fn write(&self, iova: u64, buf: &[u8]) -> Result {
        let dev = self.begin_copy()?;
        let r = dev.write(iova, buf);
        // Logged even if the copy failed part way: it may have written some.
        self.end_copy(Some((iova, buf.len() as u64)));
        r
    }

    /// Pins the `npage` guest pages at `iova` (page aligned), for writing
    /// too if `write`, until [`Self::unpin`], an unmap of any of them, or
    /// the device's close. Sleeps. `EINVAL` for a bad range, `ENOSPC` past
    /// the device's pin budget, `EFAULT` if the memory is not mapped or was
    /// unmapped meanwhile, `ENODEV` if the device is not open.
    pub(crate) fn pin(&self, iova: u64, npage: usize, write: bool) -> Result<Pin> {
        let (id, dev) = {
            let mut st = self.state.lock();
            let dev = self.handle(&st)?;
            let id = st.pins.begin(iova, npage as u64, write, PAGE_SIZE as u64)?;
            (id, dev)
        };
        let pinned = dev.pin(iova, npage, write);
        let (pinned, err) = match pinned {
            Ok(p) => (Arc::new(p, GFP_KERNEL).ok(), ENOMEM),
            Err(e) => (None, e),
        };
        let done = self.state.lock().pins.finish(id, pinned);
        match done {
            Finished::Held => {
                self.idle.notify_all();
                Ok(Pin(id))
            }
            Finished::Revoked(p) => {
                // Unpinned before the slot goes, so that the unmap waiting
                // for it returns only after.
                drop(p);
                self.release(id);
                Err(EFAULT)
            }
            Finished::Failed => {
                self.idle.notify_all();
                Err(err)
            }
        }
    }

    /// One user of pin `id` left: if it was revoked and this was its last
    /// user, its pages are unpinned here.
    fn release(&self, id: PinId) {
        loop {
            let pages = self.state.lock().pins.release(id);
            match pages {
                // Unpinned outside the lock; the slot stays (as in use)
                // until the second release.
                Some(p) => drop(p),
                None => break,
            }
        }
        self.idle.notify_all();
    }

    /// Runs `f` on the pages of `pin`, which stay pinned meanwhile (an
    /// unmap of them waits). `EFAULT` if they were unmapped, `EPERM` if
    /// `write` and they were pinned for reading only.
    fn with_pages<R>(&self, pin: Pin, write: bool, f: impl FnOnce(&PinnedPages) -> R) -> Result<R> {
        let pages = {
            let mut st = self.state.lock();
            let p = st.pins.acquire(pin.0, write)?;
            p.clone()
        };
        let r = f(&pages);
        drop(pages);
        self.release(pin.0);
        Ok(r)
    }

    /// Copies the `buf.len()` bytes at `off` of `pin`'s pages into `buf`.
    pub(crate) fn pin_read(&self, pin: Pin, off: usize, buf: &mut [u8]) -> Result {
        self.with_pages(pin, false, |p| p.read(off, buf))?
    }

    /// Copies `buf` into `pin`'s pages at `off`. `EPERM` if they were not
    /// pinned for writing. Pages pinned for writing are reported dirty in
    /// every round anyway, so this logs nothing itself.
    pub(crate) fn pin_write(&self, pin: Pin, off: usize, buf: &[u8]) -> Result {
        self.with_pages(pin, true, |p| p.write(off, buf))?
    }

    /// The device is done with `pin`: its pages are unpinned now, or when
    /// its last copy finishes.
    pub(crate) fn unpin(&self, pin: Pin) {
        let pages = self.state.lock().pins.unpin(pin.0);
        if let Some(p) = pages {
            drop(p);
            self.release(pin.0);
        }
    }

    /// Whether `pin` still holds its pages (no unmap took them).
    pub(crate) fn pinned(&self, pin: Pin) -> bool {
        self.state.lock().pins.valid(pin.0)
    }

    /// `dma_unmap`: waits until no copy uses a pin overlapping the `len`
    /// bytes at `iova` and no such pin is in progress, then unpins all of
    /// them. Returns whether the device held any.
    pub(crate) fn unmap(&self, iova: u64, len: u64) -> bool {
        // Room for every pin the table can hold, taken before the lock: the
        // pages are unpinned after it is dropped. Without the memory, they
        // are unpinned under the lock, which is still before the op returns.
        let mut gone = KVec::<Pages>::with_capacity(MAX_PINS, GFP_KERNEL).unwrap_or_default();
        let mut any = false;
        let mut st = self.state.lock();
        while !st.pins.unmap(iova, len, |p| {
            any = true;
            // Cannot fail when the room was taken above.
            let _ = gone.push(p, GFP_NOWAIT);
        }) {
            self.idle.wait(&mut st);
        }
        drop(st);
        drop(gone);
        any
    }

    /// `open_device`: guest memory may be reached from now on.
    pub(crate) fn open(&self) {
        self.state.lock().open = true;
    }

    /// `close_device`: refuses new copies and pins, waits for the copies in
    /// progress, and unpins everything. The device must have stopped its
    /// own users of pins first. Also ends DMA logging.
    pub(crate) fn close(&self) {
        let mut st = self.state.lock();
        st.open = false;
        while st.copies > 0 {
            self.idle.wait(&mut st);
        }
        st.log = None;
        drop(st);
        // Every pin starts at least a page below the top of the address
        // space, so this covers them all.
        self.unmap(0, u64::MAX);
    }

    /// `DMA_LOGGING_START`: `EINVAL` if logging runs already.
    pub(crate) fn log_start(&self, ranges: &[(u64, u64)], page_size: &mut u64) -> Result {
        let mut layout_ranges = KVec::from_elem(LogRange::default(), ranges.len(), GFP_KERNEL)?;
        let layout = log_layout(ranges, *page_size, &mut layout_ranges)?;
        let words = usize::try_from(layout.words()).map_err(|_| ENOMEM)?;
        let bits = KVVec::from_elem(0u64, words, GFP_KERNEL)?;
        let log = DirtyLog::new(layout_ranges, bits, layout)?;
        let mut st = self.state.lock();
        if st.log.is_some() {
            return Err(EINVAL);
        }
        st.log = Some(log);
        *page_size = layout.page_size();
        Ok(())
    }

    /// `DMA_LOGGING_STOP`.
    pub(crate) fn log_stop(&self) {
        self.state.lock().log = None;
    }

    /// One window of `DMA_LOGGING_REPORT`: `EINVAL` if logging is off.
    pub(crate) fn log_report(&self, iova: u64, len: u64, bitmap: &DirtyBitmap<'_>) -> Result {
        let mut st = self.state.lock();
        let State { pins, log, .. } = &mut *st;
        let log = log.as_mut().ok_or(EINVAL)?;
        pins.for_each_writable(|a, n| log.mark(a, n));
        log.report(iova, len, |a, n| bitmap.set(a, n));
        Ok(())
    }
}

// The log's finest granularity is the smallest page a report may ask for.
const _: () = assert!(1 << MIN_LOG_SHIFT <= PAGE_SIZE);
