// SPDX-License-Identifier: GPL-2.0

//! Seeded property fuzzing of rmdev's kernel-free code on the host.
//!
//! Each target drives one part of the `no_std` crate (`rmdev-core`) with
//! random operation sequences and checks every result against a small model
//! written here from the specifications, not from the code: configuration
//! space (`config`), `VFIO_DEVICE_SET_IRQS` (`irqs`), the migration stream
//! (`stream`), the 16550A ports (`uart`), the sysfs attribute parsing
//! and port pool (`sysfs`), and region addressing and BAR access splitting
//! (`region`). A case is one short sequence on
//! a fresh device, generated from the run's seed and the case's index only,
//! so `--seed S --case I` replays a failure alone.
//!
//! ```text
//! host-fuzz [--target NAME|all] [--cases N] [--seed S] [--case I]
//! ```

mod config;
mod irqs;
mod region;
mod rng;
mod stream;
mod sysfs;
mod uart;

use rng::Rng;
use std::process::ExitCode;
use std::time::Instant;

/// A fuzz target: a device and its model, one case at a time.
pub trait Target {
    /// The name `--target` takes.
    const NAME: &'static str;
    /// The target's number, which keeps its cases apart from other
    /// targets' for the same seed.
    const ID: u64;
    /// The target with `mutant` 0, or a deliberately wrong model (a
    /// negative control: the checker must then report a failure).
    fn new(mutant: u32) -> Self;
    /// Runs one case; `Err` names the broken invariant.
    fn case(&mut self, rng: &mut Rng) -> Result<(), String>;
}

/// A failed case: where, and what broke.
#[derive(Debug)]
pub struct Failure {
    pub case: u64,
    pub what: String,
}

/// Runs cases `first..first + n` of target `T` for `seed`.
pub fn run<T: Target>(seed: u64, first: u64, n: u64, mutant: u32) -> Result<(), Failure> {
    let mut t = T::new(mutant);
    for case in first..first.saturating_add(n) {
        let mut rng = Rng::for_case(seed, T::ID, case);
        t.case(&mut rng).map_err(|what| Failure { case, what })?;
    }
    Ok(())
}

const TARGETS: [&str; 6] = [
    config::Fuzz::NAME,
    irqs::Fuzz::NAME,
    stream::Fuzz::NAME,
    uart::Fuzz::NAME,
    sysfs::Fuzz::NAME,
    region::Fuzz::NAME,
];

fn run_named(name: &str, seed: u64, first: u64, n: u64) -> Result<(), Failure> {
    match name {
        config::Fuzz::NAME => run::<config::Fuzz>(seed, first, n, 0),
        irqs::Fuzz::NAME => run::<irqs::Fuzz>(seed, first, n, 0),
        stream::Fuzz::NAME => run::<stream::Fuzz>(seed, first, n, 0),
        sysfs::Fuzz::NAME => run::<sysfs::Fuzz>(seed, first, n, 0),
        region::Fuzz::NAME => run::<region::Fuzz>(seed, first, n, 0),
        _ => run::<uart::Fuzz>(seed, first, n, 0),
    }
}

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: host-fuzz [--target {}|all] [--cases N] [--seed S] [--case I]",
        TARGETS.join("|")
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut target = String::from("all");
    let mut cases = 10_000_000u64;
    let mut seed = None;
    let mut one = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let Some(v) = args.next() else {
            return usage();
        };
        match a.as_str() {
            "--target" => target = v,
            "--cases" => match parse_u64(&v) {
                Some(n) => cases = n,
                None => return usage(),
            },
            "--seed" => match parse_u64(&v) {
                Some(n) => seed = Some(n),
                None => return usage(),
            },
            "--case" => match parse_u64(&v) {
                Some(n) => one = Some(n),
                None => return usage(),
            },
            _ => return usage(),
        }
    }
    let names: Vec<&str> = if target == "all" {
        TARGETS.to_vec()
    } else if let Some(t) = TARGETS.iter().find(|t| **t == target) {
        vec![*t]
    } else {
        return usage();
    };
    // Without a seed, one from the clock: printed, so it can be given back.
    let seed = seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        rng::mix(t)
    });
    let (first, n) = match one {
        Some(i) => (i, 1),
        None => (0, cases),
    };
    println!("host-fuzz: seed {seed:#018x}");
    for name in names {
        let start = Instant::now();
        let r = run_named(name, seed, first, n);
        let secs = start.elapsed().as_secs_f64();
        match r {
            Ok(()) => println!(
                "host-fuzz: {name:<7} {n} cases in {secs:.1} s ({:.0} cases/s)",
                n as f64 / secs.max(1e-9)
            ),
            Err(f) => {
                println!("host-fuzz: {name} FAILED at case {}: {}", f.case, f.what);
                println!(
                    "host-fuzz: replay with: host-fuzz --target {name} --seed {seed:#x} --case {}",
                    f.case
                );
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixed-seed slice `cargo test` runs: 10^4 cases per target.
    const SLICE: u64 = 10_000;
    const SEED: u64 = 0x686f_7374_6675_7a7a;

    fn slice<T: Target>() {
        if let Err(f) = run::<T>(SEED, 0, SLICE, 0) {
            panic!("{} case {}: {}", T::NAME, f.case, f.what);
        }
    }

    #[test]
    fn config_slice() {
        slice::<config::Fuzz>();
    }

    #[test]
    fn irqs_slice() {
        slice::<irqs::Fuzz>();
    }

    #[test]
    fn stream_slice() {
        slice::<stream::Fuzz>();
    }

    #[test]
    fn uart_slice() {
        slice::<uart::Fuzz>();
    }

    #[test]
    fn sysfs_slice() {
        slice::<sysfs::Fuzz>();
    }

    #[test]
    fn region_slice() {
        slice::<region::Fuzz>();
    }

    /// Every mutant of `T` (1..=`n`) is caught within the slice.
    pub(crate) fn mutants_are_caught<T: Target>(n: u32) {
        for m in 1..=n {
            let r = run::<T>(SEED, 0, SLICE, m);
            assert!(r.is_err(), "{} mutant {m} went unnoticed", T::NAME);
        }
    }

    #[test]
    fn a_failure_replays_from_its_seed_and_case() {
        let f = run::<uart::Fuzz>(SEED, 0, SLICE, 1).unwrap_err();
        let again = run::<uart::Fuzz>(SEED, f.case, 1, 1).unwrap_err();
        assert_eq!((again.case, again.what), (f.case, f.what));
    }
}
