// SPDX-License-Identifier: GPL-2.0

//! A fuzzer of a mediated VFIO device's file descriptor, run inside the
//! test VM (`make fuzz`, and a short slice in `make test`).
//!
//! It opens one device through its VFIO group and runs several threads on
//! the same device fd, each a seeded sequence of calls: region reads and
//! writes at offsets biased to region edges, the device ioctls with their
//! argument sizes, indexes, flags and counts at their edges, `SET_IRQS`
//! with eventfd arrays (-1, closed and foreign descriptors among them),
//! `DEVICE_FEATURE` with migration arcs and traffic on the data files,
//! `mmap` at random offsets, resets and close/reopen, while another thread
//! creates and removes other instances of the same type through sysfs.
//!
//! Every call's result is checked against what the uAPI contract allows for
//! it (an exact result where the device's layout decides it, a set of
//! errnos otherwise), not only for not crashing. After the run the device
//! must still work (migration state back to RUNNING, reset, IDs read back)
//! and the type's `available_instances` must be back where it was.
//!
//! Reproducing: the seed is printed first; `--seed S` repeats a run. With
//! several threads only each thread's sequence of calls is reproducible,
//! not how the threads interleave; a failure names its thread and step, and
//! `--only-thread I` replays thread I's sequence alone.
//!
//! Usage: vfio-fuzz [--seed S] [--calls N] [--threads T] [--only-thread I]
//!                  [--no-churn] SYSFSDEV

mod fuzz;
mod model;
mod rng;
mod stats;
mod sys;

use fuzz::{Fuzz, Shared};
use model::Model;
use rng::Rng;
use stats::{Kind, Stats, KINDS};
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::exit;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::RwLock;
use std::thread;
use std::time::Instant;
use sys::Group;

struct Opts {
    seed: u64,
    calls: u64,
    threads: usize,
    only: Option<usize>,
    churn: bool,
    dev: String,
}

fn usage() -> ! {
    eprintln!(
        "usage: vfio-fuzz [--seed S] [--calls N] [--threads T] [--only-thread I] [--no-churn] SYSFSDEV"
    );
    exit(2);
}

fn num(s: Option<String>) -> u64 {
    let Some(s) = s else { usage() };
    let r = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.unwrap_or_else(|_| usage())
}

fn opts() -> Opts {
    let mut o = Opts {
        seed: 0,
        calls: 100_000,
        threads: 4,
        only: None,
        churn: true,
        dev: String::new(),
    };
    let mut seeded = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seed" => {
                o.seed = num(args.next());
                seeded = true;
            }
            "--calls" => o.calls = num(args.next()),
            "--threads" => o.threads = num(args.next()).clamp(1, 64) as usize,
            "--only-thread" => o.only = Some(num(args.next()) as usize),
            "--no-churn" => o.churn = false,
            _ if a.starts_with('-') || !o.dev.is_empty() => usage(),
            _ => o.dev = a,
        }
    }
    if o.dev.is_empty() {
        usage();
    }
    if !seeded {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        o.seed = Rng::derive(t, u64::from(std::process::id()));
    }
    o
}

fn available(tdir: &Path) -> Option<u64> {
    fs::read_to_string(tdir.join("available_instances"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn sysfs_write(path: &Path, val: &str) -> Result<(), i32> {
    fs::write(path, val).map_err(|e| e.raw_os_error().unwrap_or(0))
}

/// Creates and removes other instances of the device's type until `stop`:
/// a create succeeds or finds the pool empty (ENOSPC); a remove succeeds.
fn churn(tdir: &Path, seed: u64, stats: &Stats, stop: &AtomicBool) {
    let mut rng = Rng::new(seed);
    let mut step = 0u64;
    while !stop.load(Relaxed) {
        let mut made = Vec::new();
        for _ in 0..1 + rng.below(3) {
            step += 1;
            let (a, b) = (rng.next(), rng.next());
            let u = format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xfff,
                b >> 52,
                b & 0xffff_ffff_ffff
            );
            let r = sysfs_write(&tdir.join("create"), &u);
            stats.count(Kind::Create);
            match r {
                Ok(()) => made.push(u),
                Err(libc::ENOSPC) => {}
                Err(e) => stats.fail(format!("churn step {step}: create {u}: errno {e}")),
            }
        }
        for u in made {
            step += 1;
            let dev = format!("/sys/bus/mdev/devices/{u}");
            if rng.one_in(4) {
                // Opened and closed while the other threads run.
                if let Ok(g) = Group::open(&dev) {
                    let _ = g.device();
                }
            }
            let r = sysfs_write(&Path::new(&dev).join("remove"), "1");
            stats.count(Kind::Remove);
            if let Err(e) = r {
                stats.fail(format!("churn step {step}: remove {u}: errno {e}"));
            }
        }
    }
}

fn main() {
    let o = opts();
    let tdir: PathBuf = fs::canonicalize(Path::new(&o.dev).join("mdev_type")).unwrap_or_else(|e| {
        eprintln!("vfio-fuzz: {}/mdev_type: {e}", o.dev);
        exit(2);
    });
    let tname = tdir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("?")
        .to_owned();
    println!(
        "vfio-fuzz: seed {:#x}, {} threads, {} calls, type {tname}, device {}",
        o.seed, o.threads, o.calls, o.dev
    );
    println!(
        "vfio-fuzz: reproduce with --seed {:#x} --threads {} (each thread's sequence, not their interleaving)",
        o.seed, o.threads
    );
    let group = Group::open(&o.dev).unwrap_or_else(|e| {
        eprintln!("vfio-fuzz: {e}");
        exit(2);
    });
    let fd = group.device().unwrap_or_else(|e| {
        eprintln!("vfio-fuzz: GET_DEVICE_FD: errno {e}");
        exit(2);
    });
    let model = Model::probe(fd.as_raw_fd()).unwrap_or_else(|e| {
        eprintln!("vfio-fuzz: probing the device: {e}");
        exit(2);
    });
    let avail0 = available(&tdir);
    let sh = Shared {
        model,
        group,
        dev: RwLock::new(Some(fd)),
        stats: Stats::default(),
        done: AtomicU64::new(0),
        budget: o.calls,
        stop: AtomicBool::new(false),
    };
    let churn_stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let tids: Vec<usize> = match o.only {
        Some(i) => vec![i],
        None => (0..o.threads).collect(),
    };
    thread::scope(|s| {
        let churner = o
            .churn
            .then(|| s.spawn(|| churn(&tdir, Rng::derive(o.seed, 1000), &sh.stats, &churn_stop)));
        let workers: Vec<_> = tids
            .iter()
            .map(|&i| {
                let seed = Rng::derive(o.seed, i as u64);
                let sh = &sh;
                s.spawn(move || Fuzz::new(sh, i, seed).run())
            })
            .collect();
        for w in workers {
            if w.join().is_err() {
                sh.stats.fail("a fuzzing thread panicked".into());
            }
        }
        churn_stop.store(true, Relaxed);
        if let Some(c) = churner {
            if c.join().is_err() {
                sh.stats.fail("the churn thread panicked".into());
            }
        }
    });
    let secs = t0.elapsed().as_secs_f64();
    let guard = sh.dev.read().ok();
    let fd = guard
        .as_ref()
        .and_then(|g| g.as_ref())
        .map(AsRawFd::as_raw_fd);
    let after = match fd {
        Some(fd) => fuzz::restore(&sh.model, fd),
        None => vec!["no device fd at the end".into()],
    };
    drop(guard);
    for e in after {
        sh.stats.fail(format!("after the run: {e}"));
    }
    // The device closed and opened once more must be fresh.
    if let Ok(mut g) = sh.dev.write() {
        drop(g.take());
        match sh.group.device() {
            Ok(fd) => {
                for e in fuzz::restore(&sh.model, fd.as_raw_fd()) {
                    sh.stats.fail(format!("after reopening: {e}"));
                }
            }
            Err(e) => sh.stats.fail(format!("reopening after the run: errno {e}")),
        }
    }
    let avail1 = available(&tdir);
    if avail0 != avail1 {
        sh.stats.fail(format!(
            "available_instances {avail1:?} after the run, {avail0:?} before"
        ));
    }
    let calls = sh.stats.device_calls();
    println!(
        "vfio-fuzz: type {tname}: {calls} calls in {secs:.1} s ({:.0} calls/s), {} failures",
        calls as f64 / secs.max(1e-9),
        sh.stats.failures()
    );
    for (k, name) in KINDS {
        let n = sh.stats.calls(k);
        if n > 0 {
            println!("vfio-fuzz:   {name:<22} {n:>10}");
        }
    }
    let fails = sh.stats.first_failures();
    for f in &fails {
        println!("vfio-fuzz: FAIL {f}");
    }
    exit(i32::from(sh.stats.failures() > 0));
}
