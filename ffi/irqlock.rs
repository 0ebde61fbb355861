// SPDX-License-Identifier: GPL-2.0

//! A spinlock that disables local interrupts while held, for data shared
//! between a hard interrupt handler and process context (the C
//! `spin_lock_irqsave()`). Upstream Rust's [`kernel::sync::SpinLock`] leaves
//! interrupts on, so an interrupt arriving on the CPU that holds it would
//! deadlock in a handler taking it too.
//!
//! It is a backend of the kernel's generic [`Lock`], so guards, lock classes
//! and pinning are upstream's; only the four lock operations are ours.

use kernel::{
    bindings,
    ffi::{c_char, c_ulong},
    sync::lock::Backend,
};

/// A lock whose holder runs with local interrupts disabled.
pub(crate) type IrqSpinLock<T> = kernel::sync::lock::Lock<T, IrqSaveBackend>;

/// Creates an [`IrqSpinLock`] initialiser with a lock class of its own for
/// each place it is used, as `new_spinlock!` does.
macro_rules! new_irq_spinlock {
    ($inner:expr, $name:literal $(,)?) => {
        $crate::ffi::irqlock::IrqSpinLock::new($inner, $name, kernel::static_lock_class!())
    };
}
pub(crate) use new_irq_spinlock;

/// The backend: `spinlock_t` taken with `spin_lock_irqsave()`; the guard
/// keeps the saved interrupt flags.
pub(crate) struct IrqSaveBackend;

/// The `raw_spinlock_t` inside a `spinlock_t`. Without `PREEMPT_RT` the
/// latter is a union whose first member is the former, at offset 0 (the C
/// `&lock->rlock`).
fn raw(ptr: *mut bindings::spinlock_t) -> *mut bindings::raw_spinlock_t {
    ptr.cast()
}

// A `PREEMPT_RT` kernel's `spinlock_t` is a sleeping lock with no raw lock
// inside: this backend is not for it.
#[cfg(CONFIG_PREEMPT_RT)]
compile_error!("IrqSpinLock needs a kernel without PREEMPT_RT");

// SAFETY: `lock` and `try_lock` acquire the spinlock with interrupts saved
// and disabled and `unlock` releases it restoring them, so the lock gives
// mutual exclusion like `SpinLockBackend`, from any context.
unsafe impl Backend for IrqSaveBackend {
    type State = bindings::spinlock_t;
    type GuardState = c_ulong;

    unsafe fn init(ptr: *mut Self::State, name: *const c_char, key: *mut bindings::lock_class_key) {
        // SAFETY: The caller's contract: `ptr` is valid for writes, `name`
        // and `key` live forever.
        unsafe { bindings::__spin_lock_init(ptr, name, key) }
    }

    unsafe fn lock(ptr: *mut Self::State) -> Self::GuardState {
        // SAFETY: `ptr` is an initialised lock (the caller's contract), and
        // its raw lock is at the same address (see `raw`).
        unsafe { bindings::_raw_spin_lock_irqsave(raw(ptr)) }
    }

    unsafe fn try_lock(_ptr: *mut Self::State) -> Option<Self::GuardState> {
        // No exported C function tries the lock with interrupts saved, and
        // rmdev never tries: it reports the lock busy, which a caller must
        // be ready for anyway.
        None
    }

    unsafe fn unlock(ptr: *mut Self::State, flags: &Self::GuardState) {
        // SAFETY: The caller holds the lock, taken by `lock` or `try_lock`,
        // which returned `flags`.
        unsafe { bindings::_raw_spin_unlock_irqrestore(raw(ptr), *flags) }
    }

    unsafe fn assert_is_held(ptr: *mut Self::State) {
        // SAFETY: `ptr` is an initialised lock.
        unsafe { bindings::spin_assert_is_held(ptr) }
    }
}
