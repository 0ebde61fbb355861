// SPDX-License-Identifier: GPL-2.0

//! A work item embedded in the object whose handler it runs.
//!
//! C header: [`include/linux/workqueue.h`](srctree/include/linux/workqueue.h).
//!
//! Upstream's `kernel::workqueue` queues work items that own a reference to
//! their object (an `Arc` or a `KBox` given to the queue). A device's worker
//! belongs to the device instead: it is queued from register accesses and
//! interrupt paths many times a second, needs no reference of its own, and
//! must be gone when the device is. [`WorkSlot`] is that: the handler is the
//! slot's own field, queuing takes `&self` (and works in atomic context),
//! and dropping the slot cancels the work and waits for a run in progress.

use core::marker::PhantomPinned;
use kernel::{bindings, prelude::*, types::Opaque};

/// What a [`WorkSlot`]'s work runs.
pub(crate) trait WorkHandler: Sync + Sized {
    /// Runs on the system's default (unbound) workqueue, in process context (it may
    /// sleep), with the slot (which it may queue again). The work is not
    /// run twice at once; one queued while it runs runs again afterwards.
    fn work(slot: &WorkSlot<Self>);
}

/// A handler `H` with a work item that runs it. The value dereferences to
/// `H`.
///
/// # Invariants
///
/// - `work` was initialised by `init_work_with_key()` with [`run::<H>`] as
///   its function, and is only touched by the workqueue functions.
/// - The value is pinned (`!Unpin`, made only through [`WorkSlot::new`]),
///   so `work` and `handler` stay at their addresses; the drop cancels the
///   work and waits for it before either goes.
#[pin_data(PinnedDrop)]
pub(crate) struct WorkSlot<H> {
    #[pin]
    work: Opaque<bindings::work_struct>,
    #[pin]
    handler: H,
    #[pin]
    _pin: PhantomPinned,
}

// SAFETY: The work item is the workqueue's to touch; the handler is sent
// with the slot.
unsafe impl<H: Send> Send for WorkSlot<H> {}
// SAFETY: Shared access queues the work (the workqueue serialises that) or
// reads the handler, which is `Sync`.
unsafe impl<H: Sync> Sync for WorkSlot<H> {}

impl<H: WorkHandler> WorkSlot<H> {
    /// `handler` with its work item, not queued.
    pub(crate) fn new<E>(handler: impl PinInit<H, E>) -> impl PinInit<Self, E> {
        try_pin_init!(Self {
            // `slot` is the work item's memory, pinned with the slot; `run::<H>`
            // is its function. The lock class is static.
            work <- Opaque::try_ffi_init(|slot: *mut bindings::work_struct| {
                // SAFETY: As above.
                unsafe {
                    bindings::init_work_with_key(
                        slot,
                        Some(run::<H>),
                        false,
                        c"rmdev_work".as_char_ptr(),
                        kernel::static_lock_class!().as_ptr(),
                    )
                };
                Ok(())
            }),
            handler <- handler,
            _pin: PhantomPinned,
        }? E)
    }

    /// Queues the work, unless it is queued already. Does not sleep.
    pub(crate) fn queue(&self) {
        // SAFETY: The work item is initialised and pinned (type invariant);
        // the queue is the kernel's own. The drop cancels it before it goes.
        unsafe {
            bindings::queue_work_on(
                bindings::wq_misc_consts_WORK_CPU_UNBOUND as c_int,
                bindings::system_dfl_wq,
                self.work.get(),
            )
        };
    }

    /// Cancels the work if it is queued and waits for a run in progress to
    /// end. Sleeps. The work may be queued again afterwards.
    pub(crate) fn cancel(&self) {
        // SAFETY: The work item is initialised (type invariant).
        unsafe { bindings::cancel_work_sync(self.work.get()) };
    }
}

impl<H> core::ops::Deref for WorkSlot<H> {
    type Target = H;

    fn deref(&self) -> &H {
        &self.handler
    }
}

#[pinned_drop]
impl<H> PinnedDrop for WorkSlot<H> {
    fn drop(self: Pin<&mut Self>) {
        // Nothing can queue it any more (that takes `&self`); a run that
        // queued itself again is cancelled too.
        // SAFETY: The work item is initialised (type invariant).
        unsafe { bindings::cancel_work_sync(self.work.get()) };
    }
}

/// # Safety
///
/// Called by the workqueue for a work item of a live [`WorkSlot<H>`]
/// (whose drop waits for this call).
unsafe extern "C" fn run<H: WorkHandler>(work: *mut bindings::work_struct) {
    // SAFETY: `work` is the `work` field of a pinned, live `WorkSlot<H>`
    // (the type invariant): stepping back by its offset gives the slot.
    let slot = unsafe {
        &*work
            .cast::<u8>()
            .sub(core::mem::offset_of!(WorkSlot<H>, work))
            .cast::<WorkSlot<H>>()
    };
    H::work(slot);
}
