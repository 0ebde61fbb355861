// SPDX-License-Identifier: GPL-2.0

//! The sysfs side: boolean attribute parsing and the shared port pool.
//!
//! `parse_bool` gets short strings over an alphabet that can spell every
//! accepted form and its near misses, and must agree with the rule the
//! attributes document (`1 y Y on` true, `0 n N off` false, one trailing
//! newline allowed, anything else refused). The pool gets random takes and
//! gives, sizes at their edges, against a counter: a take succeeds exactly
//! when it asks for at least one and at most what is free, a give never
//! makes the pool larger than its capacity, and `available` is the number
//! of whole instances that fit.

use crate::rng::Rng;
use crate::Target;
use rmdev_core::vfio_pci_core::host_api::{parse_bool, Pool};

/// The target.
pub struct Fuzz {
    mutant: u32,
}

/// The documented rule.
fn reference(s: &[u8], mutant: u32) -> Option<bool> {
    let s = match s {
        [rest @ .., b'\n'] => rest,
        _ => s,
    };
    match s {
        b"1" | b"y" | b"Y" | b"on" => Some(true),
        b"yes" if mutant == 1 => Some(true),
        b"0" | b"n" | b"N" | b"off" => Some(false),
        _ => None,
    }
}

impl Target for Fuzz {
    const NAME: &'static str = "sysfs";
    const ID: u64 = 5;

    fn new(mutant: u32) -> Self {
        Self { mutant }
    }

    fn case(&mut self, rng: &mut Rng) -> Result<(), String> {
        // A string, often one of the forms with a small change.
        const ALPHABET: &[u8] = b"01yYnNoOfFeEs\n \t\0x";
        const FORMS: [&[u8]; 9] = [b"1", b"y", b"Y", b"on", b"0", b"n", b"N", b"off", b"yes"];
        let mut s: Vec<u8> = if rng.one_in(2) {
            rng.pick(&FORMS).to_vec()
        } else {
            (0..rng.index(5)).map(|_| rng.pick(ALPHABET)).collect()
        };
        match rng.below(6) {
            0 => s.push(b'\n'),
            1 => s.insert(rng.index(s.len() + 1), rng.pick(ALPHABET)),
            2 if !s.is_empty() => {
                s.remove(rng.index(s.len()));
            }
            _ => {}
        }
        let (got, want) = (parse_bool(&s), reference(&s, self.mutant));
        if got != want {
            return Err(format!("parse_bool({s:?}) is {got:?}, not {want:?}"));
        }

        let cap = rng.pick(&[0, 1, 2, 3, 8, 64, u32::MAX - 1, u32::MAX]);
        let pool = Pool::new(cap);
        let mut free = cap;
        for op in 0..rng.index(32) {
            let n = match rng.below(4) {
                0 => rng.pick(&[0, 1, 2, cap, cap.wrapping_add(1), u32::MAX]),
                _ => rng.below(4) as u32,
            };
            match rng.below(3) {
                0 => {
                    let want = n > 0 && n <= free;
                    if pool.try_take(n) != want {
                        return Err(format!("op {op}: take {n} of {free} not {want}"));
                    }
                    if want {
                        free -= n;
                    }
                }
                1 => {
                    pool.give(n);
                    free = if self.mutant == 2 {
                        free.saturating_add(n)
                    } else {
                        free.saturating_add(n).min(cap)
                    };
                }
                _ => {
                    let want = free.checked_div(n).unwrap_or(0);
                    if pool.available(n) != want {
                        return Err(format!("op {op}: available({n}) with {free} free"));
                    }
                }
            }
            if pool.free() != free || free > cap {
                return Err(format!("op {op}: {} free, the model {free}", pool.free()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mutant_model_is_caught() {
        crate::tests::mutants_are_caught::<Fuzz>(2);
    }
}
