// SPDX-License-Identifier: GPL-2.0

//! Events from outside an object: a pinned handler and the [`Waker`]s other
//! code holds to run it, as a hardware interrupt's thread tells the instance
//! that owns a physical port that data arrived.
//!
//! The handler lives in the [`EventSlot`] that owns it; a waker only holds a
//! shared link to the slot. Dropping the slot cuts the link and waits for a
//! call in progress, so a waker may outlive the slot (it then does nothing)
//! and no caller has to promise anything about lifetimes.

use core::{ffi::c_void, marker::PhantomPinned};
use kernel::{
    new_mutex,
    prelude::*,
    sync::{Arc, Mutex},
};

/// What runs when a [`Waker`] of the slot holding it is woken.
pub(crate) trait EventHandler: Sync {
    /// Something happened for the handler. Runs in process context (it may
    /// sleep), with no lock of the waker's caller held by this module.
    fn event(&self);
}

/// The handler a slot points its link at: its address and how to call it.
#[derive(Clone, Copy)]
struct Target {
    data: *const c_void,
    call: unsafe fn(*const c_void),
}

/// The link between a slot and its wakers.
///
/// # Invariants
///
/// While `target` is `Some`, its `data` is the address of the live, pinned
/// handler of the slot that set it, and `call` is [`call::<H>`] for that
/// handler's type. The slot sets it to `None`, under the mutex, before its
/// handler is dropped.
#[pin_data]
struct Link {
    #[pin]
    target: Mutex<Option<Target>>,
}

// SAFETY: The pointer is only used under the mutex while the slot keeps the
// handler alive (the invariant), and the handler is `Sync`: calling it from
// any thread is allowed.
unsafe impl Send for Link {}
// SAFETY: As above.
unsafe impl Sync for Link {}

/// # Safety
///
/// `data` is the address of a live `H`.
unsafe fn call<H: EventHandler>(data: *const c_void) {
    // SAFETY: The caller's contract.
    unsafe { &*data.cast::<H>() }.event();
}

/// A handler `H` that [`Waker`]s can call. The value dereferences to `H`.
///
/// # Invariants
///
/// The value is pinned: it is `!Unpin` and made only through the
/// [`PinInit`] of [`EventSlot::new`], so `handler` does not move while the
/// link may point at it, and the drop clears the link before `handler` goes.
#[pin_data(PinnedDrop)]
pub(crate) struct EventSlot<H> {
    #[pin]
    handler: H,
    link: Arc<Link>,
    #[pin]
    _pin: PhantomPinned,
}

impl<H: EventHandler> EventSlot<H> {
    /// `handler`, with no waker yet.
    pub(crate) fn new(handler: impl PinInit<H>) -> impl PinInit<Self, Error> {
        let link = Arc::pin_init(
            pin_init!(Link {
                target <- new_mutex!(None),
            }),
            GFP_KERNEL,
        );
        try_pin_init!(Self {
            handler <- handler,
            link: link?,
            _pin: PhantomPinned,
        }? Error)
    }

    /// A waker that calls this slot's handler.
    pub(crate) fn waker(&self) -> Waker {
        let mut t = self.link.target.lock();
        // INVARIANT: `self` is pinned (the type invariant), so the handler
        // stays at this address until the drop, which clears the link.
        *t = Some(Target {
            data: core::ptr::from_ref(&self.handler).cast(),
            call: call::<H>,
        });
        Waker(self.link.clone())
    }
}

impl<H> core::ops::Deref for EventSlot<H> {
    type Target = H;

    fn deref(&self) -> &H {
        &self.handler
    }
}

#[pinned_drop]
impl<H> PinnedDrop for EventSlot<H> {
    fn drop(self: Pin<&mut Self>) {
        // Taking the mutex waits for a call in progress; after it no waker
        // reaches the handler.
        *self.link.target.lock() = None;
    }
}

/// Calls the handler of an [`EventSlot`] while the slot lives.
#[derive(Clone)]
pub(crate) struct Waker(Arc<Link>);

impl Waker {
    /// Runs the handler's [`EventHandler::event`] now, in the caller's
    /// context, if the slot still exists. Sleeps (a mutex orders it with the
    /// slot's drop), so it is for process context only.
    pub(crate) fn wake(&self) {
        let t = self.0.target.lock();
        if let Some(t) = *t {
            // SAFETY: While the link is set the handler is alive and
            // pinned, and the slot cannot clear it (and then drop the
            // handler) until this guard is released: the type invariant.
            unsafe { (t.call)(t.data) }
        }
    }
}
