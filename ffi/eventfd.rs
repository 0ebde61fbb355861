// SPDX-License-Identifier: GPL-2.0

//! Eventfd contexts, as VFIO uses them to deliver interrupts to userspace.
//!
//! C header: [`include/linux/eventfd.h`](srctree/include/linux/eventfd.h).

use core::ptr::NonNull;
use kernel::{bindings, error::from_err_ptr, prelude::*};

/// A counted reference to an eventfd context.
///
/// # Invariants
///
/// `ctx` came from `eventfd_ctx_fdget()` and this value owns one reference to
/// it, dropped exactly once in [`Drop`].
pub(crate) struct EventFd {
    ctx: NonNull<bindings::eventfd_ctx>,
}

// SAFETY: An eventfd context is reference counted and its signal path takes
// its own lock with interrupts disabled, so it may be used and released from
// any thread.
unsafe impl Send for EventFd {}
// SAFETY: `signal` is the only `&self` method and it is safe to call
// concurrently (see above).
unsafe impl Sync for EventFd {}

impl EventFd {
    /// Takes a reference to the eventfd behind the file descriptor `fd` of
    /// the calling process. Fails with `EBADF` or `EINVAL` as the C API does.
    pub(crate) fn from_fd(fd: i32) -> Result<Self> {
        // SAFETY: `eventfd_ctx_fdget` accepts any integer and either returns
        // a context with a new reference or an `ERR_PTR`.
        let ctx = from_err_ptr(unsafe { bindings::eventfd_ctx_fdget(fd) })?;
        // INVARIANT: a non-error return carries one reference, now ours.
        NonNull::new(ctx).map(|ctx| Self { ctx }).ok_or(EINVAL)
    }

    /// Adds one to the eventfd counter and wakes its waiters.
    pub(crate) fn signal(&self) {
        // SAFETY: By the type invariant `ctx` is a live context; signalling is
        // allowed from any context.
        unsafe { bindings::eventfd_signal_mask(self.ctx.as_ptr(), 0) };
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: By the type invariant we own one reference; this is the only
        // place it is dropped.
        unsafe { bindings::eventfd_ctx_put(self.ctx.as_ptr()) };
    }
}
