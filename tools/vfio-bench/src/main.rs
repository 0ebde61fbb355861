// SPDX-License-Identifier: GPL-2.0

//! Latency benchmark of VFIO mdev devices, run inside the test VM.
//!
//! `vfio-bench OUT.json NAME=SYSFSDEV NAME=SYSFSDEV` opens both devices
//! through their VFIO groups, and times, on a thread pinned to one CPU, after
//! a warm-up, in several repetitions of many iterations, the two devices
//! taking turns repetition by repetition (so that the machine's drifting speed
//! under emulation falls on both alike): trapped BAR register reads and
//! writes (1 and 4 bytes), config-space reads and writes, the GET_INFO,
//! GET_IRQ_INFO and SET_IRQS ioctls, the interrupt path (a register write
//! whose interrupt makes an eventfd readable), and migration (a whole
//! stop-copy cycle, and a whole resume of the device's own stream). The same harness measures the
//! machine's floor: `pread` of `/dev/zero`, an ioctl the kernel refuses at
//! once, and an eventfd write plus read. It prints a table with the ratio of
//! the first device to the second and to the floor, and writes the figures
//! as JSON.

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Instant;
use vfio_uapi::{
    argsz, vfio_device_feature, vfio_device_feature_mig_state, vfio_device_info, vfio_irq_info,
    vfio_irq_set, vfio_region_info, Arg, Plain, VFIO_TYPE1v2_IOMMU, VFIO_DEVICE_FEATURE,
    VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_GET_INFO,
    VFIO_DEVICE_GET_IRQ_INFO, VFIO_DEVICE_GET_REGION_INFO, VFIO_DEVICE_SET_IRQS,
    VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_STOP_COPY,
    VFIO_GET_API_VERSION, VFIO_GROUP_GET_DEVICE_FD, VFIO_GROUP_SET_CONTAINER,
    VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_EVENTFD,
    VFIO_IRQ_SET_DATA_NONE, VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX,
    VFIO_PCI_INTX_IRQ_INDEX, VFIO_SET_IOMMU,
};

const WARMUP: usize = 500;
const ITERS: usize = 1024;
const REPS: usize = 41;

fn open(path: &str) -> Option<OwnedFd> {
    let c = CString::new(path).ok()?;
    // SAFETY: `c` is a valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    // SAFETY: A new descriptor owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `ioctl(fd, req, arg)` on a uAPI struct.
fn ioctl<T: Plain>(fd: i32, req: libc::c_ulong, arg: &mut T) -> i32 {
    // SAFETY: `arg` is valid for a whole `T`, which covers argsz.
    unsafe { libc::ioctl(fd, req, std::ptr::from_mut(arg)) }
}

/// `ioctl(fd, req, arg)` on a uAPI struct followed by data.
fn ioctl_buf<T: Plain>(fd: i32, req: libc::c_ulong, arg: &mut Arg<T>) -> i32 {
    // SAFETY: The argument is valid for its length, which covers argsz.
    unsafe { libc::ioctl(fd, req, arg.as_mut_ptr()) }
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
    unsafe {
        libc::ioctl(
            container.as_raw_fd(),
            VFIO_SET_IOMMU,
            libc::c_ulong::from(VFIO_TYPE1v2_IOMMU),
        )
    };
    let name = CString::new(Path::new(sysfs).file_name()?.to_str()?).ok()?;
    // SAFETY: A C string argument.
    let fd = unsafe { libc::ioctl(gfd.as_raw_fd(), VFIO_GROUP_GET_DEVICE_FD, name.as_ptr()) };
    if fd < 0 {
        return None;
    }
    // SAFETY: A new descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let off = |index: u32| {
        let mut ri = vfio_region_info {
            argsz: argsz::<vfio_region_info>(),
            index,
            ..Default::default()
        };
        ioctl(fd.as_raw_fd(), VFIO_DEVICE_GET_REGION_INFO, &mut ri);
        ri.offset
    };
    let (bar0, cfg) = (
        off(VFIO_PCI_BAR0_REGION_INDEX),
        off(VFIO_PCI_CONFIG_REGION_INDEX),
    );
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
#[derive(Clone, Copy)]
struct Stat {
    p50: f64,
    p99: f64,
}

impl Stat {
    const NONE: Stat = Stat {
        p50: f64::NAN,
        p99: f64::NAN,
    };
}

/// Calls timed together: reading the clock in a TCG guest costs about as
/// much as the calls measured (and comes in coarse steps), so each sample is
/// the mean of a batch of calls between two clock reads.
const BATCH: usize = 16;

/// One repetition: ITERS calls of `op` in batches; returns the (p50, p99)
/// of the per-call time over the batches.
fn rep(t: &mut [f64], op: &mut dyn FnMut() -> bool) -> (f64, f64) {
    for slot in t.iter_mut() {
        let s = Instant::now();
        for _ in 0..BATCH {
            op();
        }
        *slot = s.elapsed().as_nanos() as f64 / BATCH as f64;
    }
    t.sort_by(|a, b| a.total_cmp(b));
    (t[t.len() / 2], t[t.len() * 99 / 100])
}

/// The median and 99th percentile of `v` (sorted in place), or no figure
/// if the operation failed or fewer than `min` samples came.
fn percentiles(v: &mut [f64], ok: bool, min: usize) -> Stat {
    if !ok || v.len() < min.max(1) {
        return Stat::NONE;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Stat {
        p50: v[v.len() / 2],
        p99: v[v.len() * 99 / 100],
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Times each of `ops` (one per device or floor) in REPS repetitions taken
/// in turn, so that drift in the machine's speed during the run (common
/// under emulation) falls on all of them alike. An operation that fails on
/// its first call gets no figure: an error path is not what is measured.
fn measure(ops: &mut [&mut dyn FnMut() -> bool]) -> Vec<Stat> {
    let ok: Vec<bool> = ops.iter_mut().map(|op| op()).collect();
    for op in ops.iter_mut() {
        for _ in 0..WARMUP {
            op();
        }
    }
    let mut t = vec![0f64; ITERS / BATCH];
    let mut p50s = vec![Vec::new(); ops.len()];
    let mut p99s = vec![Vec::new(); ops.len()];
    let n = ops.len();
    for r in 0..REPS {
        // Every other round goes backwards, so no operation always runs
        // right after the same other one.
        for k in 0..n {
            let i = if r % 2 == 0 { k } else { n - 1 - k };
            let (a, b) = rep(&mut t, &mut *ops[i]);
            p50s[i].push(a);
            p99s[i].push(b);
        }
    }
    (0..ops.len())
        .map(|i| {
            if ok[i] {
                Stat {
                    p50: median(&mut p50s[i]),
                    p99: median(&mut p99s[i]),
                }
            } else {
                Stat::NONE
            }
        })
        .collect()
}

fn eventfd() -> OwnedFd {
    // SAFETY: No memory preconditions.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(fd >= 0, "eventfd");
    // SAFETY: A new descriptor owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `SET_IRQS`: one eventfd (or -1) as the trigger of vector 0 of `index`.
fn set_irq_fd(dev: i32, index: u32, efd: i32) -> i32 {
    let head = vfio_irq_set {
        argsz: argsz::<vfio_irq_set>() + 4,
        flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
        index,
        start: 0,
        count: 1,
        ..Default::default()
    };
    ioctl_buf(
        dev,
        VFIO_DEVICE_SET_IRQS,
        &mut Arg::new(head, &efd.to_le_bytes()),
    )
}

/// The rows measured on every device, in this order: [`DEV_OP_ROWS`] rows
/// of single calls (see [`dev_op`]), the interrupt path, then migration.
const ROWS: [&str; 12] = [
    "bar read 1B",
    "bar write 1B",
    "bar read 4B",
    "bar write 4B",
    "config read 4B",
    "config write 4B",
    "ioctl GET_INFO",
    "ioctl GET_IRQ_INFO",
    "ioctl SET_IRQS assign+release",
    "interrupt: write to eventfd readable",
    "migration: stop-copy (save, read, run)",
    "migration: resume (write, load, run)",
];

/// The rows [`dev_op`] measures.
const DEV_OP_ROWS: usize = 9;

/// The operation of row `row` (below the interrupt row) on device `d`; it
/// returns whether the call did what it should. `efd` is an eventfd.
fn dev_op(row: usize, d: &Dev, efd: i32) -> Box<dyn FnMut() -> bool> {
    let fd = d.fd.as_raw_fd();
    let (bar0, cfg) = (d.bar0, d.cfg);
    let mut b = [0u8; 4];
    match row {
        0 => Box::new(move || pread(fd, &mut b[..1], bar0 + 5) == 1),
        1 => Box::new(move || pwrite(fd, &[0x5a], bar0 + 7) == 1),
        2 => Box::new(move || pread(fd, &mut b, bar0 + 4) == 4),
        3 => Box::new(move || pwrite(fd, &[0, 0, 0, 0x5a], bar0 + 4) == 4),
        4 => Box::new(move || pread(fd, &mut b, cfg) == 4),
        5 => Box::new(move || pwrite(fd, &[0x0a, 0, 0, 0], cfg + 0x3c) == 4),
        6 => {
            // The kernel's minimum argument size: no capabilities.
            let mut info = vfio_device_info {
                argsz: std::mem::offset_of!(vfio_device_info, cap_offset) as u32,
                ..Default::default()
            };
            Box::new(move || ioctl(fd, VFIO_DEVICE_GET_INFO, &mut info) == 0)
        }
        7 => {
            let mut irq = vfio_irq_info {
                argsz: argsz::<vfio_irq_info>(),
                index: VFIO_PCI_INTX_IRQ_INDEX,
                ..Default::default()
            };
            Box::new(move || ioctl(fd, VFIO_DEVICE_GET_IRQ_INFO, &mut irq) == 0)
        }
        _ => Box::new(move || set_irq_fd(fd, 0, efd) == 0 && set_irq_fd(fd, 0, -1) == 0),
    }
}

/// Interrupt path samples on one device: a THR write loops back, the
/// received-data interrupt makes the INTx eventfd readable; then drain and
/// unmask, untimed. Returns false once the device has failed to interrupt
/// within 100 ms ten times.
fn irq_samples(d: &Dev, efd: i32, n: usize, out: &mut Vec<f64>) -> bool {
    let fd = d.fd.as_raw_fd();
    let head = vfio_irq_set {
        argsz: argsz::<vfio_irq_set>(),
        flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
        index: VFIO_PCI_INTX_IRQ_INDEX,
        start: 0,
        count: 1,
        ..Default::default()
    };
    let mut unmask = Arg::new(head, &[]);
    let (mut v, mut c) = ([0u8; 8], [0u8; 1]);
    let mut timeouts = 0;
    for _ in 0..n {
        let mut pfd = libc::pollfd {
            fd: efd,
            events: libc::POLLIN,
            revents: 0,
        };
        let s = Instant::now();
        pwrite(fd, b"x", d.bar0);
        // SAFETY: `pfd` is one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, 100) };
        let ns = s.elapsed().as_nanos() as f64;
        if r == 1 {
            out.push(ns);
            // SAFETY: Reads the 8-byte counter into `v`; poll said the
            // eventfd is readable, so the read does not block.
            unsafe { libc::read(efd, v.as_mut_ptr().cast(), 8) };
        } else {
            timeouts += 1;
            if timeouts >= 10 {
                return false;
            }
        }
        pread(fd, &mut c, d.bar0);
        ioctl_buf(fd, VFIO_DEVICE_SET_IRQS, &mut unmask);
    }
    true
}

/// Every row on every device, measured side by side.
fn device_rows(devs: &[Dev]) -> Vec<Vec<Stat>> {
    let efds: Vec<OwnedFd> = devs.iter().map(|_| eventfd()).collect();
    let mut rows = Vec::new();
    // The first row is measured twice and its first figures dropped: the
    // first thousands of calls of a run are slower (caches, and under
    // emulation code translation), whatever the device.
    for row in (0..1).chain(0..DEV_OP_ROWS) {
        let mut ops: Vec<Box<dyn FnMut() -> bool>> = devs
            .iter()
            .zip(&efds)
            .map(|(d, e)| dev_op(row, d, e.as_raw_fd()))
            .collect();
        let mut refs: Vec<&mut dyn FnMut() -> bool> =
            ops.iter_mut().map(|o| o.as_mut() as _).collect();
        rows.push(measure(&mut refs));
    }
    rows.remove(0);
    // The interrupt path, in turns as well. The FIFO is enabled with a
    // receive trigger level of one byte (mtty raises no receive interrupt
    // before its FCR is written), and the received-data interrupt on.
    for (d, e) in devs.iter().zip(&efds) {
        let fd = d.fd.as_raw_fd();
        pwrite(fd, &[0x07], d.bar0 + 2);
        pwrite(fd, &[0x01], d.bar0 + 1);
        set_irq_fd(fd, 0, e.as_raw_fd());
    }
    let mut samples = vec![Vec::new(); devs.len()];
    let mut alive = vec![true; devs.len()];
    for r in 0..=REPS {
        for (i, (d, e)) in devs.iter().zip(&efds).enumerate() {
            if alive[i] {
                // The first round is the warm-up.
                let mut sink = Vec::new();
                let out = if r == 0 { &mut sink } else { &mut samples[i] };
                alive[i] = irq_samples(d, e.as_raw_fd(), ITERS / REPS, out);
            }
        }
    }
    rows.push(
        samples
            .iter_mut()
            .zip(&alive)
            .map(|(v, &ok)| percentiles(v, ok, ITERS / 2))
            .collect(),
    );
    for (d, _) in devs.iter().zip(&efds) {
        let fd = d.fd.as_raw_fd();
        pwrite(fd, &[0x00], d.bar0 + 1);
        set_irq_fd(fd, 0, -1);
    }
    rows.extend(mig_rows(devs));
    rows
}

/// Migration cycles: each is milliseconds long, so they are timed one by
/// one, in MIG_REPS rounds of MIG_ITERS taken in turns.
const MIG_REPS: usize = 11;
const MIG_ITERS: usize = 8;

/// Sets the migration state; the data fd returned, -1 for none, or None on
/// failure.
fn mig_set(fd: i32, state: u32) -> Option<i32> {
    let head = vfio_device_feature {
        argsz: argsz::<vfio_device_feature>() + argsz::<vfio_device_feature_mig_state>(),
        flags: VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
        ..Default::default()
    };
    let data = vfio_device_feature_mig_state {
        device_state: state,
        data_fd: -1,
    };
    let len = head.argsz as usize;
    let mut arg = Arg::with_len(head, &[], len);
    arg.set_data(data);
    (ioctl_buf(fd, VFIO_DEVICE_FEATURE, &mut arg) == 0)
        .then(|| arg.get_data::<vfio_device_feature_mig_state>())
        .flatten()
        .map(|d| d.data_fd)
}

/// One stop-copy: RUNNING -> STOP_COPY, read the stream to its end, back
/// to RUNNING. The stream, or None on any failure.
fn stop_copy(fd: i32) -> Option<Vec<u8>> {
    let dfd = mig_set(fd, VFIO_DEVICE_STATE_STOP_COPY).filter(|&d| d >= 0)?;
    // SAFETY: A new descriptor the kernel installed for us.
    let dfd = unsafe { OwnedFd::from_raw_fd(dfd) };
    let mut out = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        // SAFETY: `b` is valid for its length.
        let n = unsafe { libc::read(dfd.as_raw_fd(), b.as_mut_ptr().cast(), b.len()) };
        match n {
            0 => break,
            n if n > 0 => out.extend_from_slice(&b[..n as usize]),
            _ => return None,
        }
    }
    mig_set(fd, VFIO_DEVICE_STATE_RUNNING)?;
    Some(out)
}

/// One resume of `stream`: RUNNING -> RESUMING, write, back to RUNNING
/// (which loads it).
fn resume(fd: i32, stream: &[u8]) -> bool {
    let Some(dfd) = mig_set(fd, VFIO_DEVICE_STATE_RESUMING).filter(|&d| d >= 0) else {
        return false;
    };
    // SAFETY: A new descriptor the kernel installed for us.
    let dfd = unsafe { OwnedFd::from_raw_fd(dfd) };
    // SAFETY: `stream` is valid for its length.
    let n = unsafe { libc::write(dfd.as_raw_fd(), stream.as_ptr().cast(), stream.len()) };
    n == stream.len() as isize && mig_set(fd, VFIO_DEVICE_STATE_RUNNING).is_some()
}

/// The migration rows: a stop-copy cycle and a resume cycle per device (a
/// device resumes its own stream), timed whole, in turns.
fn mig_rows(devs: &[Dev]) -> Vec<Vec<Stat>> {
    let streams: Vec<Option<Vec<u8>>> = devs.iter().map(|d| stop_copy(d.fd.as_raw_fd())).collect();
    let mut out = Vec::new();
    for row in 0..2 {
        let mut samples = vec![Vec::new(); devs.len()];
        let mut ok = vec![true; devs.len()];
        for r in 0..=MIG_REPS {
            for k in 0..devs.len() {
                let i = if r % 2 == 0 { k } else { devs.len() - 1 - k };
                let fd = devs[i].fd.as_raw_fd();
                for _ in 0..MIG_ITERS {
                    let s = Instant::now();
                    let good = match (row, &streams[i]) {
                        (0, _) => stop_copy(fd).is_some(),
                        (_, Some(st)) => resume(fd, st),
                        _ => false,
                    };
                    let ns = s.elapsed().as_nanos() as f64;
                    ok[i] &= good;
                    // The first round is the warm-up.
                    if r > 0 {
                        samples[i].push(ns);
                    }
                }
            }
        }
        out.push(
            samples
                .iter_mut()
                .zip(&ok)
                .map(|(v, &good)| percentiles(v, good, 1))
                .collect(),
        );
    }
    out
}

/// The floor rows, in this order.
const FLOOR: [&str; 3] = [
    "floor: pread 4B /dev/zero",
    "floor: refused ioctl",
    "floor: eventfd write+read",
];

/// The floor: what the same kinds of syscalls cost on this machine.
fn floor_rows() -> Vec<Stat> {
    let zero = fs::File::open("/dev/zero").ok();
    let zfd = zero.as_ref().map_or(-1, |f| f.as_raw_fd());
    let mut b = [0u8; 4];
    let e = eventfd();
    let efd = e.as_raw_fd();
    let one = 1u64.to_le_bytes();
    let mut v = [0u8; 8];
    let mut zread = || pread(zfd, &mut b, 0) == 4;
    // The number below VFIO's first ioctl, which /dev/zero does not know.
    // SAFETY: An ioctl /dev/zero refuses without touching memory.
    let mut refused = || unsafe { libc::ioctl(zfd, VFIO_GET_API_VERSION - 1, 0) } < 0;
    let mut evt = || {
        // SAFETY: 8-byte buffers, as eventfd requires.
        unsafe {
            libc::write(efd, one.as_ptr().cast(), 8) == 8
                && libc::read(efd, v.as_mut_ptr().cast(), 8) == 8
        }
    };
    measure(&mut [&mut zread, &mut refused, &mut evt])
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
    if row.starts_with("ioctl") || row.starts_with("migration") {
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

/// `lifecycle LIVE CYCLES TYPEDIR...`: with LIVE instances of each type
/// alive, times CYCLES create+remove cycles through sysfs per type, the types
/// taking turns cycle by cycle; prints "p50 p99" in ns per type, one line
/// each, or "n/a" for a type whose pool cannot hold LIVE + 1 instances.
fn lifecycle(live: usize, cycles: usize, tdirs: &[String]) {
    let mut alive: Vec<Vec<String>> = Vec::new();
    let mut able = Vec::new();
    for tdir in tdirs {
        let mut a = Vec::new();
        for _ in 0..live {
            match create(tdir) {
                Some(u) => a.push(u),
                None => break,
            }
        }
        able.push(a.len() == live);
        alive.push(a);
    }
    let mut t = vec![Vec::new(); tdirs.len()];
    for _ in 0..cycles {
        for (i, tdir) in tdirs.iter().enumerate() {
            if !able[i] {
                continue;
            }
            let s = Instant::now();
            let Some(u) = create(tdir) else {
                able[i] = false;
                continue;
            };
            remove(&u);
            t[i].push(s.elapsed().as_nanos() as f64);
        }
    }
    alive.iter().flatten().for_each(|u| remove(u));
    for v in t.iter_mut() {
        if v.len() < cycles {
            println!("n/a");
            continue;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        println!("{:.0} {:.0}", v[v.len() / 2], v[v.len() * 99 / 100]);
    }
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

/// Prints one pass's table.
fn print_rows(names: &[String], rows: &[Vec<Stat>], floor: &[Stat]) {
    let rows: Vec<(Stat, Stat, f64)> = rows
        .iter()
        .map(|st| (st[0], st[1], st[0].p50 / st[1].p50))
        .collect();
    print_table(names, &rows, floor);
}

/// Prints the table: per row both devices' p50 and p99, the ratio of the
/// first to the second, and the first's ratio to the floor.
fn print_table(names: &[String], rows: &[(Stat, Stat, f64)], floor: &[Stat]) {
    let (an, bn) = (&names[0], &names[1]);
    println!(
        "{:<38} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}",
        "operation (ns)",
        format!("{an} p50"),
        format!("{an} p99"),
        format!("{bn} p50"),
        format!("{bn} p99"),
        format!("{an}/{bn}"),
        format!("{an}/floor")
    );
    for (row, (sa, sb, ratio)) in ROWS.iter().zip(rows) {
        let fl = floor[floor_of(row)];
        println!(
            "{:<38} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>8.2} {:>8.2}",
            row,
            sa.p50,
            sa.p99,
            sb.p50,
            sb.p99,
            ratio,
            sa.p50 / fl.p50
        );
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    // `--runs N` first: N measurement passes, and the median of them.
    let mut runs = 1;
    if args.get(1).map(String::as_str) == Some("--runs") && args.len() > 2 {
        runs = args[2].parse().unwrap_or(0);
        if runs == 0 {
            eprintln!("vfio-bench: --runs takes a number of passes, 1 or more");
            std::process::exit(2);
        }
        args.drain(1..3);
    }
    match args.get(1).map(String::as_str) {
        Some("lifecycle") if args.len() >= 5 => {
            lifecycle(
                args[2].parse().unwrap_or(0),
                args[3].parse().unwrap_or(0),
                &args[4..],
            );
            return;
        }
        Some("spin") if args.len() == 5 => {
            // `spin SYSFSDEV ROW N`: row ROW's operation N times, untimed,
            // for a profiler to watch.
            let Some(dev) = open_dev(&args[2]) else {
                eprintln!("vfio-bench: cannot open {}", args[2]);
                std::process::exit(1);
            };
            let row: usize = args[3].parse().unwrap_or(0);
            let n: usize = args[4].parse().unwrap_or(0);
            if row == DEV_OP_ROWS + 1 || row == DEV_OP_ROWS + 2 {
                // The migration rows: whole stop-copy or resume cycles.
                let fd = dev.fd.as_raw_fd();
                let stream = stop_copy(fd).unwrap_or_default();
                let ok = (0..n)
                    .filter(|_| {
                        if row == DEV_OP_ROWS + 1 {
                            stop_copy(fd).is_some()
                        } else {
                            resume(fd, &stream)
                        }
                    })
                    .count();
                println!("{}: {ok} of {n} cycles succeeded", ROWS[row]);
                return;
            }
            let row = row.min(DEV_OP_ROWS - 1);
            let e = eventfd();
            let mut op = dev_op(row, &dev, e.as_raw_fd());
            let ok = (0..n).filter(|_| op()).count();
            println!("{}: {ok} of {n} calls succeeded", ROWS[row]);
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
            "usage: vfio-bench [--runs N] OUT.json NAME=SYSFSDEV NAME=SYSFSDEV | lifecycle LIVE CYCLES TYPEDIR... | memory TYPEDIR N | spin SYSFSDEV ROW N"
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
    let mut names = Vec::new();
    let mut devs = Vec::new();
    for a in &args[2..] {
        let Some((name, path)) = a.split_once('=') else {
            continue;
        };
        let Some(dev) = open_dev(path) else {
            eprintln!("vfio-bench: cannot open {path}");
            std::process::exit(1);
        };
        names.push(name.to_owned());
        devs.push(dev);
    }
    if devs.len() != 2 {
        eprintln!("vfio-bench: give two devices");
        std::process::exit(2);
    }
    // Each pass measures every row on both devices side by side, so each
    // pass's ratio compares the two in the same conditions; the table is
    // the median over the passes, of the ratios and of the figures.
    let passes: Vec<Vec<Vec<Stat>>> = (0..runs)
        .map(|k| {
            let rows = device_rows(&devs);
            if runs > 1 {
                println!("# pass {} of {runs}", k + 1);
                print_rows(&names, &rows, &floor);
            }
            rows
        })
        .collect();
    let (an, bn) = (&names[0], &names[1]);
    if runs > 1 {
        println!("# median of {runs} passes");
    }
    let med = |f: &dyn Fn(&[Stat]) -> f64, row: usize| {
        let mut v: Vec<f64> = passes.iter().map(|p| f(&p[row])).collect();
        median(&mut v)
    };
    let mut json = format!("{{\n  \"passes\": {runs},\n  \"rows\": [\n");
    let mut rows = Vec::new();
    for (i, row) in ROWS.iter().enumerate() {
        let sa = Stat {
            p50: med(&|s| s[0].p50, i),
            p99: med(&|s| s[0].p99, i),
        };
        let sb = Stat {
            p50: med(&|s| s[1].p50, i),
            p99: med(&|s| s[1].p99, i),
        };
        let ratio = med(&|s| s[0].p50 / s[1].p50, i);
        let fl = floor[floor_of(row)];
        let each: Vec<String> = passes
            .iter()
            .map(|p| num(p[i][0].p50 / p[i][1].p50))
            .collect();
        let _ = writeln!(
            json,
            "    {{\"op\": \"{row}\", \"{an}_p50\": {}, \"{an}_p99\": {}, \"{bn}_p50\": {}, \"{bn}_p99\": {}, \"ratio_{an}_{bn}\": {}, \"ratio_{an}_{bn}_each\": [{}], \"ratio_{an}_floor\": {}}}{}",
            num(sa.p50),
            num(sa.p99),
            num(sb.p50),
            num(sb.p99),
            num(ratio),
            each.join(", "),
            num(sa.p50 / fl.p50),
            if i + 1 < ROWS.len() { "," } else { "" },
        );
        rows.push((sa, sb, ratio));
    }
    print_table(&names, &rows, &floor);
    json.push_str("  ],\n  \"migration_stream_bytes\": {");
    for (i, (n, d)) in names.iter().zip(&devs).enumerate() {
        let len = stop_copy(d.fd.as_raw_fd()).map_or(0, |s| s.len());
        println!(
            "{:<38} {:>10}",
            format!("migration stream bytes ({n})"),
            len
        );
        let _ = write!(json, "{}\"{n}\": {len}", if i > 0 { ", " } else { "" });
    }
    json.push_str("},\n  \"floor\": [\n");
    for (i, (row, s)) in FLOOR.iter().zip(&floor).enumerate() {
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
