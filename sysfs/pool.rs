// SPDX-License-Identifier: GPL-2.0

//! The shared pool of ports that every rmdev type draws on.
//!
//! One atomic counter of free ports: a reservation is a compare-and-swap loop
//! that never takes more than is free, so `available_instances` is exact at
//! any moment, also under concurrent creates and removes.

use core::sync::atomic::{AtomicU32, Ordering};

/// A pool of `capacity` interchangeable units.
pub(crate) struct Pool {
    free: AtomicU32,
    capacity: u32,
}

impl Pool {
    /// A full pool.
    pub(crate) const fn new(capacity: u32) -> Self {
        Self {
            free: AtomicU32::new(capacity),
            capacity,
        }
    }

    /// Takes `n` units, or none if fewer than `n` are free.
    pub(crate) fn try_take(&self, n: u32) -> bool {
        if n == 0 {
            return false;
        }
        self.free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |f| f.checked_sub(n))
            .is_ok()
    }

    /// Returns `n` units taken before with [`Pool::try_take`].
    pub(crate) fn give(&self, n: u32) {
        // Saturate at capacity: giving back more than was taken is a bug in
        // the caller, and must not make the pool larger than it is.
        let cap = self.capacity;
        let _ = self
            .free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |f| {
                Some(f.saturating_add(n).min(cap))
            });
    }

    /// Units free now.
    pub(crate) fn free(&self) -> u32 {
        self.free.load(Ordering::Acquire)
    }

    /// How many more instances of `per` units each fit now.
    pub(crate) fn available(&self, per: u32) -> u32 {
        self.free().checked_div(per).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::{sync::Arc, thread, vec::Vec};

    #[test]
    fn takes_and_gives() {
        let p = Pool::new(5);
        assert_eq!(p.available(2), 2);
        assert!(p.try_take(2));
        assert!(p.try_take(2));
        assert!(!p.try_take(2), "one port left, two asked");
        assert_eq!((p.free(), p.available(1), p.available(2)), (1, 1, 0));
        p.give(2);
        assert_eq!(p.free(), 3);
        p.give(100);
        assert_eq!(p.free(), 5, "never above capacity");
        assert!(!p.try_take(0));
        assert_eq!(p.available(0), 0);
    }

    #[test]
    fn concurrent_takes_never_oversubscribe() {
        let p = Arc::new(Pool::new(24));
        let taken: Vec<u32> = (0..8)
            .map(|t| {
                let p = p.clone();
                thread::spawn(move || {
                    let per = 1 + t % 2;
                    let mut got = 0;
                    for _ in 0..1000 {
                        if p.try_take(per) {
                            got += per;
                            if got % 3 == 0 {
                                p.give(per);
                                got -= per;
                            }
                        }
                    }
                    got
                })
            })
            .map(|h| h.join().unwrap())
            .collect();
        assert_eq!(taken.iter().sum::<u32>() + p.free(), 24);
    }
}
