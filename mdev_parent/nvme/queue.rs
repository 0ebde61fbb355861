// SPDX-License-Identifier: GPL-2.0

//! Submission and completion queue state.
//!
//! Queues are rings of `size` entries in guest memory, physically
//! contiguous from `base`. The controller consumes a submission queue from
//! its head to the tail the guest rings, and produces completions at a
//! completion queue's tail up to the head the guest rings, flipping the
//! phase tag each time the tail wraps. A completion queue is full when one
//! more entry would make its tail reach its head.

use super::{
    cmd::{Status, CQE_SIZE, SQE_SIZE},
    QUEUE_ENTRIES_MAX,
};

/// Entries from `from` to `to` on a ring of `size` (`from` and `to` below
/// `size`).
pub(crate) fn distance(from: u16, to: u16, size: u16) -> u16 {
    if to >= from {
        to - from
    } else {
        size.wrapping_sub(from).wrapping_add(to)
    }
}

/// The next index after `i` on a ring of `size`.
fn next(i: u16, size: u16) -> u16 {
    if i >= size.saturating_sub(1) {
        0
    } else {
        i + 1
    }
}

/// A completion the caller delivered while its completion queue was full:
/// command identifier and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Held {
    pub(crate) cid: u16,
    pub(crate) status: Status,
}

/// A submission queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sq {
    /// Whether the queue exists.
    pub(crate) valid: bool,
    /// Guest address of entry 0.
    pub(crate) base: u64,
    /// Entries (2 or more).
    pub(crate) size: u16,
    /// The next entry the controller fetches.
    pub(crate) head: u16,
    /// The tail the guest rang last.
    pub(crate) tail: u16,
    /// The completion queue its completions go to.
    pub(crate) cqid: u16,
    /// Which incarnation of the queue identifier this is: requests carry it
    /// so that a completion for a deleted queue is never posted to its
    /// successor.
    pub(crate) epoch: u32,
    /// Commands fetched and not completed yet (I/O requests the caller
    /// executes).
    pub(crate) in_flight: u16,
    /// Completions waiting for room in the completion queue, as a ring.
    held: [Held; QUEUE_ENTRIES_MAX as usize],
    held_head: u16,
    held_len: u16,
}

/// Queues are equal when the guest could not tell them apart: the slots of
/// the held store not in use do not count. (For the tests: the kernel has no
/// use for it.)
#[cfg(test)]
impl PartialEq for Sq {
    fn eq(&self, o: &Self) -> bool {
        self.valid == o.valid
            && self.base == o.base
            && self.size == o.size
            && self.head == o.head
            && self.tail == o.tail
            && self.cqid == o.cqid
            && self.epoch == o.epoch
            && self.in_flight == o.in_flight
            && self.held_len == o.held_len
            && self.held_iter().eq(o.held_iter())
    }
}

#[cfg(test)]
impl Eq for Sq {}

impl Sq {
    pub(crate) const EMPTY: Self = Self {
        valid: false,
        base: 0,
        size: 0,
        head: 0,
        tail: 0,
        cqid: 0,
        epoch: 0,
        in_flight: 0,
        held: [Held { cid: 0, status: 0 }; QUEUE_ENTRIES_MAX as usize],
        held_head: 0,
        held_len: 0,
    };

    /// A new, empty queue.
    pub(crate) fn new(base: u64, size: u16, cqid: u16, epoch: u32) -> Self {
        Self {
            valid: true,
            base,
            size,
            cqid,
            epoch,
            ..Self::EMPTY
        }
    }

    /// Entries the guest submitted that the controller has not fetched.
    pub(crate) fn pending(&self) -> u16 {
        if self.size == 0 {
            0
        } else {
            distance(self.head, self.tail, self.size)
        }
    }

    /// Whether `tail` is a valid tail doorbell value.
    pub(crate) fn tail_valid(&self, tail: u32) -> bool {
        tail < u32::from(self.size)
    }

    /// The address of the entry at the head.
    pub(crate) fn head_addr(&self) -> Option<u64> {
        self.base
            .checked_add(u64::from(self.head).checked_mul(SQE_SIZE)?)
    }

    /// Moves the head past one fetched entry.
    pub(crate) fn advance(&mut self) {
        self.head = next(self.head, self.size);
    }

    /// Completions held back.
    pub(crate) fn held_len(&self) -> u16 {
        self.held_len
    }

    /// Holds a completion back. False if the store is full, which cannot
    /// happen while commands in flight are bounded by the queue size.
    pub(crate) fn hold(&mut self, h: Held) -> bool {
        let cap = self.held.len() as u16;
        if self.held_len >= cap {
            return false;
        }
        let at = self.held_head.wrapping_add(self.held_len) % cap;
        match self.held.get_mut(usize::from(at)) {
            Some(slot) => *slot = h,
            None => return false,
        }
        self.held_len += 1;
        true
    }

    /// The oldest completion held back.
    pub(crate) fn peek_held(&self) -> Option<Held> {
        if self.held_len == 0 {
            return None;
        }
        self.held.get(usize::from(self.held_head)).copied()
    }

    /// Drops the oldest completion held back.
    pub(crate) fn pop_held(&mut self) {
        if self.held_len > 0 {
            self.held_head = self.held_head.wrapping_add(1) % self.held.len() as u16;
            self.held_len -= 1;
        }
    }

    /// The completions held back, oldest first.
    pub(crate) fn held_iter(&self) -> impl Iterator<Item = Held> + '_ {
        let cap = self.held.len();
        (0..usize::from(self.held_len)).filter_map(move |i| {
            self.held
                .get(usize::from(self.held_head).wrapping_add(i) % cap)
                .copied()
        })
    }
}

/// A completion queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cq {
    /// Whether the queue exists.
    pub(crate) valid: bool,
    /// Guest address of entry 0.
    pub(crate) base: u64,
    /// Entries (2 or more).
    pub(crate) size: u16,
    /// The head the guest rang last: the oldest entry it has not consumed.
    pub(crate) head: u16,
    /// Where the controller posts the next entry.
    pub(crate) tail: u16,
    /// The phase tag the next entry carries.
    pub(crate) phase: bool,
    /// Whether the queue signals an interrupt, and which vector.
    pub(crate) ien: bool,
    pub(crate) iv: u16,
}

impl Cq {
    pub(crate) const EMPTY: Self = Self {
        valid: false,
        base: 0,
        size: 0,
        head: 0,
        tail: 0,
        phase: false,
        ien: false,
        iv: 0,
    };

    /// A new, empty queue: its first pass carries phase 1.
    pub(crate) fn new(base: u64, size: u16, ien: bool, iv: u16) -> Self {
        Self {
            valid: true,
            base,
            size,
            phase: true,
            ien,
            iv,
            ..Self::EMPTY
        }
    }

    /// Whether no entry can be posted until the guest moves the head.
    pub(crate) fn full(&self) -> bool {
        self.size == 0 || next(self.tail, self.size) == self.head
    }

    /// Entries posted that the guest has not consumed (by the head it rang).
    pub(crate) fn unread(&self) -> u16 {
        if self.size == 0 {
            0
        } else {
            distance(self.head, self.tail, self.size)
        }
    }

    /// Whether `head` is a valid head doorbell value: within the queue and
    /// not past the entries posted.
    pub(crate) fn head_valid(&self, head: u32) -> bool {
        match u16::try_from(head) {
            Ok(h) if h < self.size => distance(self.head, h, self.size) <= self.unread(),
            _ => false,
        }
    }

    /// The address and phase of the next entry; [`Self::advance`] then
    /// moves past it.
    pub(crate) fn tail_addr(&self) -> Option<u64> {
        self.base
            .checked_add(u64::from(self.tail).checked_mul(CQE_SIZE)?)
    }

    /// Moves the tail past a posted entry, flipping the phase on a wrap.
    pub(crate) fn advance(&mut self) {
        self.tail = next(self.tail, self.size);
        if self.tail == 0 {
            self.phase = !self.phase;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_wrap_and_flip_phase() {
        let mut cq = Cq::new(0x1000, 3, true, 1);
        assert!(!cq.full());
        assert!(cq.phase);
        cq.advance();
        cq.advance();
        assert!(cq.full(), "a ring of 3 holds 2 entries");
        assert!(cq.phase, "no wrap yet");
        assert_eq!(cq.unread(), 2);
        assert!(cq.head_valid(2));
        assert!(cq.head_valid(1));
        cq.head = 2;
        assert!(!cq.head_valid(1), "the head cannot move back");
        cq.advance();
        assert_eq!(cq.tail, 0);
        assert!(!cq.phase, "the wrap flips the phase");
        assert!(!cq.head_valid(1), "nothing posted at 1");
        assert!(cq.head_valid(0));
        assert!(!cq.head_valid(3));
        assert!(!cq.head_valid(0x1_0000));
        assert_eq!(distance(2, 1, 3), 2);
    }

    #[test]
    fn held_completions_stay_in_order_and_bounded() {
        let mut sq = Sq::new(0, 4, 1, 1);
        for i in 0..QUEUE_ENTRIES_MAX {
            assert!(sq.hold(Held { cid: i, status: 0 }));
        }
        assert!(!sq.hold(Held { cid: 0, status: 0 }));
        for i in 0..10 {
            assert_eq!(sq.peek_held().map(|h| h.cid), Some(i));
            sq.pop_held();
        }
        assert!(sq.hold(Held { cid: 99, status: 1 }));
        let v: std::vec::Vec<u16> = sq.held_iter().map(|h| h.cid).collect();
        assert_eq!(v.len(), usize::from(QUEUE_ENTRIES_MAX) - 9);
        assert_eq!(v.first(), Some(&10));
        assert_eq!(v.last(), Some(&99));
        assert!(!sq.tail_valid(4));
        assert!(sq.tail_valid(3));
    }

    extern crate std;
}
