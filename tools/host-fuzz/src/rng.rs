// SPDX-License-Identifier: GPL-2.0

//! A small deterministic generator (SplitMix64), so that a case replays from
//! its seed and index alone.

/// A SplitMix64 generator.
pub struct Rng(u64);

/// SplitMix64's output function: a good 64-bit mix of `z`.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The generator of case `case` of the run seeded with `seed` for the
    /// target numbered `target`: independent of every other case.
    pub fn for_case(seed: u64, target: u64, case: u64) -> Self {
        Self(mix(seed ^ mix(target.wrapping_add(1) << 56 ^ case)))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// A number in `0..n` (`n` must not be zero).
    pub fn below(&mut self, n: u64) -> u64 {
        // The bias of the modulo is far below what the tests can notice.
        self.next_u64() % n
    }

    /// A `usize` in `0..n` (`n` must not be zero).
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_replay_and_differ() {
        let a: Vec<u64> = (0..4).map(|_| Rng::for_case(7, 1, 3).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::for_case(7, 1, 3).next_u64(),
            Rng::for_case(7, 1, 4).next_u64()
        );
        assert_ne!(
            Rng::for_case(7, 1, 3).next_u64(),
            Rng::for_case(7, 2, 3).next_u64()
        );
        let mut r = Rng::new(1);
        let mut seen = [false; 16];
        for _ in 0..1000 {
            seen[r.index(16)] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
