// SPDX-License-Identifier: GPL-2.0

//! Latency benchmark of VFIO mdev devices, run inside the test VM.
//!
//! `vfio-bench OUT.json NAME=SYSFSDEV...` opens each device through its VFIO
//! group, and times, on a thread pinned to one CPU, after a warm-up, in
//! several repetitions of many iterations: trapped BAR register reads and
//! writes (1 and 4 bytes), config-space reads and writes, the GET_INFO,
//! GET_IRQ_INFO and SET_IRQS ioctls, and the interrupt path (a register write
//! whose interrupt makes an eventfd readable). The same harness measures the
//! machine's floor: `pread` of `/dev/zero`, an ioctl the kernel refuses at
//! once, and an eventfd write plus read. It prints a table with the ratio of
//! the first device to the second and to the floor, and writes the figures
//! as JSON.

#[path = "../../vfio_uapi.rs"]
mod vfio_uapi;
use vfio_uapi::*;

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Instant;

const WARMUP: usize = 500;
const ITERS: usize = 5000;
const REPS: usize = 5;

fn open(path: &str) -> Option<OwnedFd> {
    let c = CString::new(path).ok()?;
    // SAFETY: `c` is a valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    // SAFETY: A new descriptor owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

fn words(w: &[u32], len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    for (i, x) in w.iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&x.to_le_bytes());
    }
    b
}

fn ioctl(fd: i32, req: libc::c_ulong, buf: &mut [u8]) -> i32 {
    // SAFETY: `buf` is valid for its length, which covers argsz.
    unsafe { libc::ioctl(fd, req, buf.as_mut_ptr()) }
}

/// An open device: its fd, the kept group and container, region offsets.
struct Dev {
    fd: OwnedFd,
    _keep: [OwnedFd; 2],
    bar0: u64,
    cfg: u64,
}

fn open_dev(sysfs: &str) -> Option<Dev> {
    let group = fs::read_link(Path::new(sysfs).join("iommu_group")).ok()?;
    let container = open("/dev/vfio/vfio")?;
    let gfd = open(&format!("/dev/vfio/{}", group.file_name()?.to_str()?))?;
    let mut cfd = container.as_raw_fd();
    // SAFETY: The argument points to an int holding the container fd.
    if unsafe { libc::ioctl(gfd.as_raw_fd(), VFIO_GROUP_SET_CONTAINER, &mut cfd) } != 0 {
        return None;
    }
    // SAFETY: An integer argument.
    unsafe { libc::ioctl(container.as_raw_fd(), VFIO_SET_IOMMU, 3 as libc::c_ulong) };
    let name = CString::new(Path::new(sysfs).file_name()?.to_str()?).ok()?;
    // SAFETY: A C string argument.
    let fd = unsafe { libc::ioctl(gfd.as_raw_fd(), VFIO_GROUP_GET_DEVICE_FD, name.as_ptr()) };
    if fd < 0 {
        return None;
    }
    // SAFETY: A new descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let off = |index: u32| {
        let mut b = words(&[32, 0, index], 32);
        ioctl(fd.as_raw_fd(), VFIO_DEVICE_GET_REGION_INFO, &mut b);
        u64::from_le_bytes(b[24..32].try_into().unwrap_or([0; 8]))
    };
    let (bar0, cfg) = (off(0), off(7));
    Some(Dev {
        fd,
        _keep: [gfd, container],
        bar0,
        cfg,
    })
}

fn pread(fd: i32, buf: &mut [u8], off: u64) -> isize {
    // SAFETY: `buf` is valid for writes of its length.
    unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), off as libc::off_t) }
}

fn pwrite(fd: i32, buf: &[u8], off: u64) -> isize {
    // SAFETY: `buf` is valid for reads of its length.
    unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), off as libc::off_t) }
}

/// Median and 99th percentile of one operation, in nanoseconds: the
/// per-repetition figures' medians.
#[derive(Clone, Copy, Default)]
struct Stat {
    p50: f64,
    p99: f64,
}

fn measure(mut op: impl FnMut()) -> Stat {
    for _ in 0..WARMUP {
        op();
    }
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    let mut t = vec![0u32; ITERS];
    for _ in 0..REPS {
        for slot in t.iter_mut() {
            let s = Instant::now();
            op();
            *slot = s.elapsed().as_nanos().min(u32::MAX as u128) as u32;
        }
        t.sort_unstable();
        p50s.push(t[ITERS / 2] as f64);
        p99s.push(t[ITERS * 99 / 100] as f64);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    Stat {
        p50: med(&mut p50s),
        p99: med(&mut p99s),
    }
}

fn eventfd() -> OwnedFd {
    // SAFETY: No memory preconditions.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(fd >= 0, "eventfd");
    // SAFETY: A new descriptor owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn set_irq_fd(dev: i32, index: u32, efd: i32) -> i32 {
    let mut b = words(&[24, (1 << 2) | (1 << 5), index, 0, 1, efd as u32], 24);
    ioctl(dev, VFIO_DEVICE_SET_IRQS, &mut b)
}

/// The rows measured on one device.
fn device_rows(d: &Dev) -> Vec<(&'static str, Stat)> {
    let fd = d.fd.as_raw_fd();
    let (bar0, cfg) = (d.bar0, d.cfg);
    let mut b = [0u8; 4];
    let mut rows = vec![
        (
            "bar read 1B",
            measure(|| {
                pread(fd, &mut b[..1], bar0 + 5);
            }),
        ),
        (
            "bar write 1B",
            measure(|| {
                pwrite(fd, &[0x5a], bar0 + 7);
            }),
        ),
        (
            "bar read 4B",
            measure(|| {
                pread(fd, &mut b, bar0 + 4);
            }),
        ),
        (
            "bar write 4B",
            measure(|| {
                pwrite(fd, &[0, 0, 0, 0x5a], bar0 + 4);
            }),
        ),
        (
            "config read 4B",
            measure(|| {
                pread(fd, &mut b, cfg);
            }),
        ),
        (
            "config write 4B",
            measure(|| {
                pwrite(fd, &[0x0a, 0, 0, 0], cfg + 0x3c);
            }),
        ),
    ];
    let mut info = words(&[16], 16);
    rows.push((
        "ioctl GET_INFO",
        measure(|| {
            ioctl(fd, VFIO_DEVICE_GET_INFO, &mut info);
        }),
    ));
    let mut irq = words(&[16, 0, 0, 0], 16);
    rows.push((
        "ioctl GET_IRQ_INFO",
        measure(|| {
            ioctl(fd, VFIO_DEVICE_GET_IRQ_INFO, &mut irq);
        }),
    ));
    let e = eventfd();
    rows.push((
        "ioctl SET_IRQS assign+release",
        measure(|| {
            set_irq_fd(fd, 0, e.as_raw_fd());
            set_irq_fd(fd, 0, -1);
        }),
    ));

    // Interrupt path: THR write loops back, the received-data interrupt
    // makes the INTx eventfd readable; then drain and unmask, untimed. A
    // device that does not interrupt within 100 ms ten times gets no row.
    set_irq_fd(fd, 0, e.as_raw_fd());
    pwrite(fd, &[0x01], bar0 + 1);
    let mut unmask = words(&[20, 1 | (1 << 4), 0, 0, 1], 20);
    let mut v = [0u8; 8];
    let mut c = [0u8; 1];
    let mut samples = Vec::new();
    let mut timeouts = 0;
    for i in 0..(WARMUP + ITERS) {
        let mut pfd = libc::pollfd {
            fd: e.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let s = Instant::now();
        pwrite(fd, b"x", bar0);
        // SAFETY: `pfd` is one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, 100) };
        let ns = s.elapsed().as_nanos() as f64;
        if r != 1 {
            timeouts += 1;
            if timeouts >= 10 {
                break;
            }
        } else if i >= WARMUP {
            samples.push(ns);
        }
        if r == 1 {
            // SAFETY: Reads the 8-byte counter into `v`; poll said the
            // eventfd is readable, so the read does not block.
            unsafe { libc::read(e.as_raw_fd(), v.as_mut_ptr().cast(), 8) };
        }
        pread(fd, &mut c, bar0);
        ioctl(fd, VFIO_DEVICE_SET_IRQS, &mut unmask);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let stat = if samples.len() >= ITERS / 2 {
        Stat {
            p50: samples[samples.len() / 2],
            p99: samples[samples.len() * 99 / 100],
        }
    } else {
        Stat {
            p50: f64::NAN,
            p99: f64::NAN,
        }
    };
    rows.push(("interrupt: write to eventfd readable", stat));
    pwrite(fd, &[0x00], bar0 + 1);
    set_irq_fd(fd, 0, -1);
    rows
}

/// The floor: what the same kinds of syscalls cost on this machine.
fn floor_rows() -> Vec<(&'static str, Stat)> {
    let z = open("/dev/zero").map(|f| f.as_raw_fd());
    let zero = fs::File::open("/dev/zero").ok();
    let zfd = zero.as_ref().map_or(z.unwrap_or(-1), |f| f.as_raw_fd());
    let mut b = [0u8; 4];
    let e = eventfd();
    let one = 1u64.to_le_bytes();
    let mut v = [0u8; 8];
    vec![
        (
            "floor: pread 4B /dev/zero",
            measure(|| {
                pread(zfd, &mut b, 0);
            }),
        ),
        (
            "floor: refused ioctl",
            measure(|| {
                // SAFETY: An ioctl /dev/zero refuses without touching memory.
                unsafe { libc::ioctl(zfd, io(99), 0) };
            }),
        ),
        (
            "floor: eventfd write+read",
            measure(|| {
                // SAFETY: 8-byte buffers, as eventfd requires.
                unsafe {
                    libc::write(e.as_raw_fd(), one.as_ptr().cast(), 8);
                    libc::read(e.as_raw_fd(), v.as_mut_ptr().cast(), 8);
                }
            }),
        ),
    ]
}

/// A JSON number, or `null` for a figure that could not be measured.
fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "null".into()
    }
}

/// Which floor row a device row is compared with.
fn floor_of(row: &str) -> usize {
    if row.starts_with("ioctl") {
        1
    } else if row.starts_with("interrupt") {
        2
    } else {
        0
    }
}

/// A random UUID from the kernel.
fn uuid() -> String {
    fs::read_to_string("/proc/sys/kernel/random/uuid")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn create(tdir: &str) -> Option<String> {
    let u = uuid();
    fs::write(format!("{tdir}/create"), &u).ok().map(|_| u)
}

fn remove(u: &str) {
    let _ = fs::write(format!("/sys/bus/mdev/devices/{u}/remove"), "1");
}

/// `lifecycle TYPEDIR LIVE CYCLES`: with LIVE instances of the type alive,
/// times CYCLES create+remove cycles through sysfs; prints "p50 p99" in ns,
/// or "n/a" if the pool cannot hold LIVE + 1 instances.
fn lifecycle(tdir: &str, live: usize, cycles: usize) {
    let mut alive = Vec::new();
    for _ in 0..live {
        match create(tdir) {
            Some(u) => alive.push(u),
            None => break,
        }
    }
    let mut t = Vec::new();
    if alive.len() == live {
        for _ in 0..cycles {
            let s = Instant::now();
            let Some(u) = create(tdir) else { break };
            remove(&u);
            t.push(s.elapsed().as_nanos() as f64);
        }
    }
    alive.iter().for_each(|u| remove(u));
    if t.len() < cycles {
        println!("n/a");
        return;
    }
    t.sort_by(|a, b| a.total_cmp(b));
    println!("{:.0} {:.0}", t[t.len() / 2], t[t.len() * 99 / 100]);
}

/// Bytes in allocated slab objects: the sum over `/proc/slabinfo` of active
/// objects times object size (finer than `/proc/meminfo`'s Slab pages, which
/// do not move while partial slabs have room).
fn slab_bytes() -> u64 {
    let text = fs::read_to_string("/proc/slabinfo").unwrap_or_default();
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let active: u64 = f.get(1)?.parse().ok()?;
            let size: u64 = f.get(3)?.parse().ok()?;
            Some(active * size)
        })
        .sum()
}

/// `memory TYPEDIR N`: slab memory per live instance over N instances, in
/// bytes ("n/a" if N do not fit).
fn memory(tdir: &str, n: usize) {
    // Settle caches with one create/remove first.
    if let Some(u) = create(tdir) {
        remove(&u);
    }
    let before = slab_bytes();
    let alive: Vec<String> = (0..n).filter_map(|_| create(tdir)).collect();
    let after = slab_bytes();
    let got = alive.len();
    alive.iter().for_each(|u| remove(u));
    if got < n {
        println!("n/a");
    } else {
        println!("{}", after.saturating_sub(before) / n as u64);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("lifecycle") if args.len() == 5 => {
            lifecycle(
                &args[2],
                args[3].parse().unwrap_or(0),
                args[4].parse().unwrap_or(0),
            );
            return;
        }
        Some("memory") if args.len() == 4 => {
            memory(&args[2], args[3].parse().unwrap_or(0));
            return;
        }
        _ => {}
    }
    if args.len() < 4 {
        eprintln!(
            "usage: vfio-bench OUT.json NAME=SYSFSDEV NAME=SYSFSDEV | lifecycle TYPEDIR LIVE CYCLES | memory TYPEDIR N"
        );
        std::process::exit(2);
    }
    // SAFETY: A zeroed cpu_set_t with CPU 0 set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
    let floor = floor_rows();
    let mut results = Vec::new();
    for a in &args[2..] {
        let Some((name, path)) = a.split_once('=') else {
            continue;
        };
        let Some(dev) = open_dev(path) else {
            eprintln!("vfio-bench: cannot open {path}");
            std::process::exit(1);
        };
        results.push((name.to_owned(), device_rows(&dev)));
    }
    let (a, b) = (&results[0], &results[1]);
    println!(
        "{:<38} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}",
        "operation (ns)",
        format!("{} p50", a.0),
        format!("{} p99", a.0),
        format!("{} p50", b.0),
        format!("{} p99", b.0),
        format!("{}/{}", a.0, b.0),
        format!("{}/floor", a.0)
    );
    let mut json = String::from("{\n  \"rows\": [\n");
    for (i, (row, sa)) in a.1.iter().enumerate() {
        let sb = b.1[i].1;
        let fl = floor[floor_of(row)].1;
        println!(
            "{:<38} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>8.2} {:>8.2}",
            row,
            sa.p50,
            sa.p99,
            sb.p50,
            sb.p99,
            sa.p50 / sb.p50,
            sa.p50 / fl.p50
        );
        let _ = writeln!(
            json,
            "    {{\"op\": \"{row}\", \"{an}_p50\": {}, \"{an}_p99\": {}, \"{bn}_p50\": {}, \"{bn}_p99\": {}, \"ratio_{an}_{bn}\": {}, \"ratio_{an}_floor\": {}}}{}",
            num(sa.p50),
            num(sa.p99),
            num(sb.p50),
            num(sb.p99),
            num(sa.p50 / sb.p50),
            num(sa.p50 / fl.p50),
            if i + 1 < a.1.len() { "," } else { "" },
            an = a.0,
            bn = b.0
        );
    }
    json.push_str("  ],\n  \"floor\": [\n");
    for (i, (row, s)) in floor.iter().enumerate() {
        println!("{:<38} {:>10.0} {:>10.0}", row, s.p50, s.p99);
        let _ = writeln!(
            json,
            "    {{\"op\": \"{row}\", \"p50\": {:.0}, \"p99\": {:.0}}}{}",
            s.p50,
            s.p99,
            if i + 1 < floor.len() { "," } else { "" }
        );
    }
    json.push_str("  ]\n}\n");
    if let Err(e) = fs::write(&args[1], json) {
        eprintln!("vfio-bench: {}: {e}", args[1]);
    }
}
