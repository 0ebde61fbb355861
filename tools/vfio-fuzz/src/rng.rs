// SPDX-License-Identifier: GPL-2.0

//! A small seeded pseudo-random number generator (splitmix64), so that a
//! thread's sequence of choices is a function of its seed alone.

/// splitmix64: a 64-bit state advanced by a constant and mixed on output.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The seed of stream `i` derived from `seed`: distinct streams for the
    /// threads of one run.
    pub(crate) fn derive(seed: u64, i: u64) -> u64 {
        let mut r = Rng(seed ^ i.wrapping_mul(0xd1b5_4a32_d192_ed03));
        r.next()
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    /// True with probability `1 / n`.
    pub(crate) fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// One of `items` (which must not be empty).
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// A 32-bit value biased to edges: 0, 1, small numbers, the top of the
    /// range and plain random ones.
    pub(crate) fn edge_u32(&mut self) -> u32 {
        match self.below(6) {
            0 => 0,
            1 => self.below(4) as u32,
            2 => self.below(64) as u32,
            3 => u32::MAX - self.below(4) as u32,
            4 => 1u32 << self.below(32),
            _ => self.next() as u32,
        }
    }

    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..100 {
            assert_eq!(a.next(), b.next());
        }
        assert_ne!(Rng::derive(7, 0), Rng::derive(7, 1));
    }

    #[test]
    fn below_stays_below() {
        let mut r = Rng::new(1);
        for n in 1..100 {
            assert!(r.below(n) < n);
        }
        assert_eq!(r.below(0), 0);
    }
}
