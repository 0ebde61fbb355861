// SPDX-License-Identifier: GPL-2.0

//! Fault injection on every entry point userspace reaches: `create` and
//! `remove`, opening the device through the group and through its iommufd
//! character device, each device ioctl, region reads and writes, `mmap`, the
//! migration arcs and data-file reads and writes, and the attributes.
//!
//! Each entry point is called first without a fault (the baseline), then
//! with the n-th fault-injection point of this thread failing, for n = 1,
//! 2, … (`/proc/thread-self/fail-nth`; reading it back after the call gives
//! 0 if the fault was injected, else the count the call did not reach),
//! until a call reaches fewer than n points. Every attempt that had its
//! fault injected must fail with `ENOMEM` or with the error the baseline
//! call gives, or succeed if the kernel really handled the failure (the
//! diagnostic counts those), and leave the device and the pool usable; the
//! last attempt must give the baseline result. An entry point that still
//! reaches an n-th point at [`CAP`], or a call that does not return within
//! [`HANG`], fails the test.
//!
//! Failslab leaves allocations that may sleep alone, and the page allocator's
//! injection leaves order-0 and highmem ones alone, unless told otherwise:
//! [`Knobs`] tells them (and keeps their reports out of the log) for the
//! run, and puts the old values back afterwards.

use crate::dev::{errno, ioctl_arg, ioctl_buf, ioctl_val, open, pread, pwrite};
use crate::irqs::Efd;
use crate::ktap::Ktap;
use crate::mig::{drain, get_state, read_fd, reset, set_state, write_fd};
use crate::regions::{region, region_caps};
use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};
use vfio_uapi::{
    argsz, iommu_ioas_alloc, vfio_device_attach_iommufd_pt, vfio_device_bind_iommufd,
    vfio_device_feature, vfio_device_feature_mig_state, vfio_device_feature_migration,
    vfio_device_info, vfio_irq_info, vfio_irq_set, vfio_precopy_info, vfio_region_info, Arg, Plain,
    VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2, VFIO_TYPE1v2_IOMMU, IOMMU_IOAS_ALLOC,
    VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_FEATURE,
    VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MIGRATION,
    VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
    VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_GET_INFO,
    VFIO_DEVICE_GET_IRQ_INFO, VFIO_DEVICE_GET_REGION_INFO, VFIO_DEVICE_RESET, VFIO_DEVICE_SET_IRQS,
    VFIO_DEVICE_STATE_PRE_COPY as PRE_COPY, VFIO_DEVICE_STATE_PRE_COPY_P2P as PRE_COPY_P2P,
    VFIO_DEVICE_STATE_RESUMING as RESUMING, VFIO_DEVICE_STATE_RUNNING as RUNNING,
    VFIO_DEVICE_STATE_RUNNING_P2P as RUNNING_P2P, VFIO_DEVICE_STATE_STOP as STOP,
    VFIO_DEVICE_STATE_STOP_COPY as STOP_COPY, VFIO_GROUP_GET_DEVICE_FD, VFIO_GROUP_SET_CONTAINER,
    VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_UNMASK,
    VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE, VFIO_MIGRATION_P2P,
    VFIO_MIGRATION_PRE_COPY, VFIO_MIGRATION_STOP_COPY, VFIO_MIG_GET_PRECOPY_INFO,
    VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX,
    VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
    VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU,
};

/// Attempts per entry point: one that still reaches an n-th
/// fault-injection point at this n fails the test.
const CAP: u32 = 200;

/// How long one attempt may take before the run is declared hung.
const HANG: Duration = Duration::from_secs(60);

/// The fault-injection settings of the run, and what they were before.
const KNOBS: [(&str, &str); 6] = [
    ("/sys/kernel/debug/failslab/ignore-gfp-wait", "N"),
    ("/sys/kernel/debug/failslab/verbose", "0"),
    ("/sys/kernel/debug/fail_page_alloc/ignore-gfp-wait", "N"),
    ("/sys/kernel/debug/fail_page_alloc/ignore-gfp-highmem", "N"),
    ("/sys/kernel/debug/fail_page_alloc/min-order", "0"),
    ("/sys/kernel/debug/fail_page_alloc/verbose", "0"),
];

/// The debugfs settings [`KNOBS`] names, set for as long as this lives.
struct Knobs {
    saved: Vec<(&'static str, String)>,
}

impl Knobs {
    fn set() -> Result<Self, String> {
        let mut k = Self { saved: Vec::new() };
        for (path, value) in KNOBS {
            let old = fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
            fs::write(path, value).map_err(|e| format!("{path}: {e}"))?;
            k.saved.push((path, old.trim().to_owned()));
        }
        Ok(k)
    }
}

impl Drop for Knobs {
    fn drop(&mut self) {
        for (path, old) in self.saved.iter().rev() {
            let _ = fs::write(path, old);
        }
    }
}

/// This thread's `fail-nth` file.
struct FailNth(OwnedFd);

impl FailNth {
    fn open() -> Result<Self, String> {
        open("/proc/thread-self/fail-nth", libc::O_RDWR)
            .map(Self)
            .map_err(|e| format!("/proc/thread-self/fail-nth: {e}"))
    }

    /// Writes `n` (no heap allocation: this runs between arming and the
    /// call, where a page fault of our own could take the fault).
    fn write(&self, n: u32) -> bool {
        let mut b = [0u8; 10];
        let mut i = b.len();
        let mut v = n;
        loop {
            i -= 1;
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        pwrite(&self.0, &b[i..], 0) == Ok(b.len() - i)
    }

    /// The count left: 0 once the fault was injected.
    fn left(&self) -> Option<u32> {
        let mut b = [0u8; 16];
        let n = pread(&self.0, &mut b, 0).ok()?;
        std::str::from_utf8(b.get(..n)?).ok()?.trim().parse().ok()
    }

    /// Runs `call` with the `n`-th fault-injection point this thread
    /// reaches failing (none if `n` is 0): its result and whether the fault
    /// was injected.
    fn call<R>(&self, n: u32, call: impl FnOnce() -> R) -> (R, bool) {
        if n == 0 {
            return (call(), false);
        }
        if !self.write(n) {
            println!("# fail-nth: cannot arm n={n}: errno {}", errno());
            flush();
            std::process::exit(1);
        }
        let r = call();
        let injected = self.left() == Some(0);
        let _ = self.write(0);
        (r, injected)
    }
}

/// One attempt: the call's result (a value or the errno), whether its
/// fault was injected, and whether the device and the pool were usable
/// afterwards (what was wrong if not).
struct Try {
    res: Result<i64, i32>,
    injected: bool,
    sane: Result<(), String>,
}

/// The attempt under way, for the watchdog: when it started, the test, n.
static WATCH: Mutex<Option<(Instant, String, u32)>> = Mutex::new(None);

fn watch(what: Option<(&str, u32)>) {
    if let Ok(mut w) = WATCH.lock() {
        *w = what.map(|(s, n)| (Instant::now(), s.to_owned(), n));
    }
}

/// Fails the run if one attempt takes longer than [`HANG`]: a call that
/// never returns is reported as the failure it is, and the process exits
/// (a task stuck in the kernel is then also the hung-task detector's).
fn watchdog() {
    thread::spawn(|| loop {
        thread::sleep(Duration::from_secs(1));
        let hung = WATCH.lock().ok().and_then(|w| {
            w.as_ref()
                .filter(|(t0, _, _)| t0.elapsed() > HANG)
                .map(|(_, s, n)| (s.clone(), *n))
        });
        if let Some((test, n)) = hung {
            println!("not ok - {test}");
            println!("# hangs: the call with n={n} has not returned in {HANG:?}");
            flush();
            // SAFETY: _exit has no preconditions; nothing is left to flush.
            unsafe { libc::_exit(1) };
        }
    });
}

fn flush() {
    let _ = io::stdout().flush();
}

/// Touches stack the calls will use, so that no page fault of the tool's
/// own stack happens while a fault is armed.
#[inline(never)]
fn prefault_stack() {
    let mut b = [1u8; 512 * 1024];
    std::hint::black_box(&mut b);
}

/// One count line of the summary.
struct Count {
    injected: u32,
    survived: u32,
}

/// The entry points of one mdev type, and their counts.
struct Run<'a> {
    t: &'a mut Ktap,
    fail: &'a FailNth,
    /// The type's name, the prefix of every test.
    label: String,
    counts: Vec<Count>,
}

impl Run<'_> {
    /// Runs entry point `name`: `one(fail, n)` makes one attempt with the
    /// n-th point failing (n = 0: none, the baseline).
    fn entry(&mut self, name: &str, mut one: impl FnMut(&FailNth, u32) -> Try) {
        let test = format!("faults: {}: {name}", self.label);
        let mut problems = Vec::new();
        watch(Some((&test, 0)));
        let base = one(self.fail, 0);
        if let Err(why) = &base.sane {
            problems.push(format!("without a fault: {why}"));
        }
        let (mut injected, mut survived) = (0, 0);
        let mut n = 1;
        while problems.is_empty() {
            if n > CAP {
                problems.push(format!("still reaching an n-th point at n={CAP}"));
                break;
            }
            watch(Some((&test, n)));
            let a = one(self.fail, n);
            if let Err(why) = a.sane {
                problems.push(format!("n={n} ({:?}): {why}", a.res));
                break;
            }
            if !a.injected {
                if a.res != base.res {
                    problems.push(format!(
                        "n={n}, no fault injected: {:?}, without a fault {:?}",
                        a.res, base.res
                    ));
                }
                break;
            }
            injected += 1;
            match a.res {
                Ok(_) => survived += 1,
                Err(e) if e == libc::ENOMEM || base.res == Err(e) => {}
                Err(e) => problems.push(format!("n={n}: errno {e}, not ENOMEM")),
            }
            n += 1;
        }
        watch(None);
        self.t
            .check(&test, problems.is_empty(), || problems.join("; "));
        let anyway = if survived > 0 {
            format!(" (the call succeeded anyway after {survived})")
        } else {
            String::new()
        };
        self.t.diag(&format!(
            "{}: {name}: {injected} faults injected{anyway}",
            self.label
        ));
        self.counts.push(Count { injected, survived });
    }
}

/// An attempt's result as the runner compares it.
fn res<T>(r: &Result<T, i32>) -> Result<i64, i32> {
    r.as_ref().map(|_| 0).map_err(|e| *e)
}

fn sane(ok: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(why())
    }
}

fn new_uuid() -> String {
    fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// A type's `available_instances`, or `u32::MAX` if it does not read.
fn available(tdir: &str) -> u32 {
    fs::read_to_string(format!("{tdir}/available_instances"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u32::MAX)
}

fn dev_path(u: &str) -> String {
    format!("/sys/bus/mdev/devices/{u}")
}

/// Writes `val` to the sysfs file `path` in one `write()`, the `n`-th
/// point failing.
fn sysfs_write(f: &FailNth, n: u32, path: &str, val: &[u8]) -> (Result<i64, i32>, bool) {
    let fd = match open(path, libc::O_WRONLY) {
        Ok(fd) => fd,
        Err(e) => return (Err(e.raw_os_error().unwrap_or(0)), false),
    };
    let (r, injected) = f.call(n, || pwrite(&fd, val, 0));
    (r.map(|k| k as i64), injected)
}

fn write_plain(path: &str, val: &str) -> Result<(), String> {
    fs::write(path, val).map_err(|e| format!("{path}: {e}"))
}

/// A device's legacy group, in a type1 container.
struct Group {
    _container: OwnedFd,
    group: OwnedFd,
    name: CString,
}

impl Group {
    fn open(sysfs: &str) -> Result<Self, String> {
        let link = fs::read_link(Path::new(sysfs).join("iommu_group"))
            .map_err(|e| format!("{sysfs}/iommu_group: {e}"))?;
        let num = link.file_name().and_then(|s| s.to_str()).unwrap_or("");
        let container = open("/dev/vfio/vfio", libc::O_RDWR).map_err(|e| e.to_string())?;
        let group = open(&format!("/dev/vfio/{num}"), libc::O_RDWR)
            .map_err(|e| format!("group {num}: {e}"))?;
        let mut cfd = container.as_raw_fd();
        // SAFETY: The argument points to an int holding the container fd.
        let r = unsafe { libc::ioctl(group.as_raw_fd(), VFIO_GROUP_SET_CONTAINER, &mut cfd) };
        if r < 0 {
            return Err(format!("SET_CONTAINER: errno {}", errno()));
        }
        ioctl_val(&container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU.into())
            .or_else(|_| ioctl_val(&container, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU.into()))
            .map_err(|e| format!("SET_IOMMU: errno {e}"))?;
        let base = Path::new(sysfs).file_name().and_then(|s| s.to_str());
        let name = CString::new(base.unwrap_or("")).map_err(|e| e.to_string())?;
        Ok(Self {
            _container: container,
            group,
            name,
        })
    }

    /// `VFIO_GROUP_GET_DEVICE_FD`.
    fn device(&self) -> Result<OwnedFd, i32> {
        // SAFETY: The argument is a C string naming the device.
        let fd = unsafe {
            libc::ioctl(
                self.group.as_raw_fd(),
                VFIO_GROUP_GET_DEVICE_FD,
                self.name.as_ptr(),
            )
        };
        if fd < 0 {
            return Err(errno());
        }
        // SAFETY: `fd` is a new descriptor owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// The vendor and device IDs from config space, the cheap sanity check.
fn ids(fd: &OwnedFd) -> Option<u32> {
    let (cfg, _) = region(fd, VFIO_PCI_CONFIG_REGION_INDEX)?;
    let mut b = [0u8; 4];
    (pread(fd, &mut b, cfg) == Ok(4)).then(|| u32::from_le_bytes(b))
}

fn ids_are(fd: &OwnedFd, want: u32) -> Result<(), String> {
    let got = ids(fd);
    sane(got == Some(want), || {
        format!("config IDs read {got:x?}, want {want:#x}")
    })
}

/// Opens `sysfs` through a group of its own and checks its IDs.
fn usable(sysfs: &str, want: u32) -> Result<(), String> {
    let g = Group::open(sysfs)?;
    let d = g
        .device()
        .map_err(|e| format!("GET_DEVICE_FD: errno {e}"))?;
    ids_are(&d, want)
}

/// The device's iommufd character device, `/dev/vfio/devices/vfioN`.
fn cdev_node(sysfs: &str) -> Option<String> {
    fs::read_dir(Path::new(sysfs).join("vfio-dev"))
        .ok()?
        .filter_map(|e| e.ok())
        .find_map(|e| {
            e.file_name()
                .to_str()
                .filter(|n| n.starts_with("vfio"))
                .map(|n| format!("/dev/vfio/devices/{n}"))
        })
}

fn bind(dfd: &OwnedFd, iommufd: &OwnedFd) -> Result<i32, i32> {
    let mut b = vfio_device_bind_iommufd {
        argsz: offset_of!(vfio_device_bind_iommufd, token_uuid_ptr) as u32,
        iommufd: iommufd.as_raw_fd(),
        ..Default::default()
    };
    ioctl_arg(dfd, VFIO_DEVICE_BIND_IOMMUFD, &mut b)
}

fn ioas(iommufd: &OwnedFd) -> Result<u32, i32> {
    let mut a = iommu_ioas_alloc {
        size: size_of::<iommu_ioas_alloc>() as u32,
        ..Default::default()
    };
    ioctl_arg(iommufd, IOMMU_IOAS_ALLOC, &mut a).map(|_| a.out_ioas_id)
}

fn attach_arg(ioas: u32) -> vfio_device_attach_iommufd_pt {
    vfio_device_attach_iommufd_pt {
        argsz: offset_of!(vfio_device_attach_iommufd_pt, pasid) as u32,
        pt_id: ioas,
        ..Default::default()
    }
}

/// The rest of a cdev open after `open()`: bind, an IOAS, attach, and the
/// IDs read.
fn cdev_finish(dfd: &OwnedFd, want: u32) -> Result<(), String> {
    let iommufd = open("/dev/iommu", libc::O_RDWR).map_err(|e| e.to_string())?;
    bind(dfd, &iommufd).map_err(|e| format!("BIND_IOMMUFD: errno {e}"))?;
    let id = ioas(&iommufd).map_err(|e| format!("IOAS_ALLOC: errno {e}"))?;
    ioctl_arg(dfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &mut attach_arg(id))
        .map_err(|e| format!("ATTACH_IOMMUFD_PT: errno {e}"))?;
    ids_are(dfd, want)
}

fn cdev_usable(node: &str, want: u32) -> Result<(), String> {
    let dfd = open(node, libc::O_RDWR).map_err(|e| format!("{node}: {e}"))?;
    cdev_finish(&dfd, want)
}

/// `mmap()` of `len` bytes at `off` of the device file: the address, or
/// the errno.
fn map(fd: &OwnedFd, off: u64, len: usize) -> Result<usize, i32> {
    // SAFETY: A new shared mapping at an address the kernel picks; nothing
    // of ours is replaced.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            off as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        Err(errno())
    } else {
        Ok(p as usize)
    }
}

/// Reads the first byte of a mapping made by [`map`] and unmaps it.
fn touch_unmap(addr: usize, len: usize) -> u8 {
    // SAFETY: `addr` is a live mapping of at least one readable byte.
    let b = unsafe { std::ptr::read_volatile(addr as *const u8) };
    // SAFETY: `addr` and `len` are a whole mapping made by `map`.
    unsafe { libc::munmap(addr as *mut libc::c_void, len) };
    b
}

/// A `VFIO_DEVICE_FEATURE` argument with `flags` and `data` bytes.
fn feature_arg(flags: u32, data: usize) -> Arg<vfio_device_feature> {
    let len = argsz::<vfio_device_feature>() + data as u32;
    let head = vfio_device_feature {
        argsz: len,
        flags,
        ..Default::default()
    };
    Arg::with_len(head, &[], len as usize)
}

/// A `VFIO_DEVICE_SET_IRQS` argument.
fn irq_arg(flags: u32, index: u32, count: u32, data: &[u8]) -> Arg<vfio_irq_set> {
    let head = vfio_irq_set {
        argsz: argsz::<vfio_irq_set>() + data.len() as u32,
        flags,
        index,
        start: 0,
        count,
        ..Default::default()
    };
    Arg::new(head, data)
}

/// An argument with room for a capability chain after the struct.
fn room<T: Plain>(head: T) -> Arg<T> {
    Arg::with_len(head, &[], 4096)
}

/// Entry points on a type: create and remove.
fn lifecycle(run: &mut Run<'_>, tdir: &str, want: u32) {
    let create = format!("{tdir}/create");
    run.entry("create", |f, n| {
        let before = available(tdir);
        let u = new_uuid();
        let dev = dev_path(&u);
        let (r, injected) = sysfs_write(f, n, &create, u.as_bytes());
        let exists = Path::new(&dev).exists();
        let after = available(tdir);
        let check = if r.is_ok() {
            sane(exists && after == before.wrapping_sub(1), || {
                format!("created: exists {exists}, available {before} -> {after}")
            })
            .and_then(|()| usable(&dev, want))
        } else {
            // The UUID is free again and the pool is exact: the same UUID
            // creates.
            sane(!exists && after == before, || {
                format!("failed: exists {exists}, available {before} -> {after}")
            })
            .and_then(|()| write_plain(&create, &u))
            .and_then(|()| usable(&dev, want))
        };
        let gone = write_plain(&format!("{dev}/remove"), "1");
        let check = check.and(gone).and_then(|()| {
            let a = available(tdir);
            sane(a == before, || {
                format!("available {a} after the remove, {before} before")
            })
        });
        Try {
            res: r,
            injected,
            sane: check,
        }
    });
    run.entry("remove", |f, n| {
        let u = new_uuid();
        let dev = dev_path(&u);
        let before = available(tdir);
        if let Err(e) = write_plain(&create, &u) {
            return Try {
                res: Err(0),
                injected: false,
                sane: Err(format!("create: {e}")),
            };
        }
        let (r, injected) = sysfs_write(f, n, &format!("{dev}/remove"), b"1");
        let exists = Path::new(&dev).exists();
        let after = available(tdir);
        let check = if r.is_ok() {
            sane(!exists && after == before, || {
                format!("removed: exists {exists}, available {before} -> {after}")
            })
        } else {
            // A failed remove leaves a working device, which then removes.
            sane(exists && after == before.wrapping_sub(1), || {
                format!("failed: exists {exists}, available {before} -> {after}")
            })
            .and_then(|()| usable(&dev, want))
            .and_then(|()| write_plain(&format!("{dev}/remove"), "1"))
            .and_then(|()| {
                let a = available(tdir);
                sane(!Path::new(&dev).exists() && a == before, || {
                    format!("after the second remove, available {a}")
                })
            })
        };
        Try {
            res: r,
            injected,
            sane: check,
        }
    });
}

/// The per-instance attributes: every file of the instance's own attribute
/// group (`rmdev/`, or mtty's `vendor/`) read, and the writable ones written
/// with a value that changes them; and the type's `available_instances`.
fn attributes(run: &mut Run<'_>, tdir: &str, dev: &str) {
    let mut files: Vec<String> = ["rmdev", "vendor"]
        .iter()
        .filter_map(|g| fs::read_dir(format!("{dev}/{g}")).ok())
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.path().to_str().map(str::to_owned))
        .collect();
    files.sort();
    files.push(format!("{tdir}/available_instances"));
    for path in &files {
        let short = path.rsplit('/').take(2).collect::<Vec<_>>();
        let short = format!("{}/{}", short[1], short[0]);
        run.entry(&format!("read {short}"), |f, n| {
            let Ok(fd) = open(path, libc::O_RDONLY) else {
                return Try {
                    res: Err(errno()),
                    injected: false,
                    sane: Err(format!("{path} does not open")),
                };
            };
            let mut b = [0u8; 4096];
            let (r, injected) = f.call(n, || pread(&fd, &mut b, 0));
            let check = fs::read_to_string(path)
                .map(|_| ())
                .map_err(|e| format!("a second read: {e}"));
            Try {
                res: res(&r),
                injected,
                sane: check,
            }
        });
    }
    let loopback = format!("{dev}/rmdev/loopback");
    if !Path::new(&loopback).exists() {
        return;
    }
    run.entry("write rmdev/loopback", |f, n| {
        if let Err(e) = write_plain(&loopback, "1") {
            return Try {
                res: Err(0),
                injected: false,
                sane: Err(e),
            };
        }
        let (r, injected) = sysfs_write(f, n, &loopback, b"0");
        let now = fs::read_to_string(&loopback).unwrap_or_default();
        let want = if r.is_ok() { "0" } else { "1" };
        let check = sane(now.trim() == want, || {
            format!("reads {:?} after {r:?}", now.trim())
        });
        let _ = write_plain(&loopback, "1");
        Try {
            res: r,
            injected,
            sane: check,
        }
    });
}

/// Opening the device: through the group (`GET_DEVICE_FD`), and through
/// the cdev (`open`, `BIND_IOMMUFD`, `ATTACH_IOMMUFD_PT`).
fn opens(run: &mut Run<'_>, dev: &str, want: u32) {
    match Group::open(dev) {
        Ok(g) => run.entry("open through the group (GET_DEVICE_FD)", |f, n| {
            let (r, injected) = f.call(n, || g.device());
            let check = match &r {
                Ok(d) => ids_are(d, want),
                Err(_) => g
                    .device()
                    .map_err(|e| format!("the next GET_DEVICE_FD: errno {e}"))
                    .and_then(|d| ids_are(&d, want)),
            };
            Try {
                res: res(&r),
                injected,
                sane: check,
            }
        }),
        Err(e) => run.t.check(
            &format!("faults: {}: the group opens", run.label),
            false,
            || e,
        ),
    }
    let Some(node) = cdev_node(dev) else {
        run.t.check(
            &format!("faults: {}: the device has a cdev", run.label),
            false,
            || "no vfio-dev/vfioN".into(),
        );
        return;
    };
    let cnode = CString::new(node.as_str()).unwrap_or_default();
    run.entry("cdev open", |f, n| {
        // SAFETY: `cnode` is a C string; open has no other preconditions.
        let (fd, injected) = f.call(n, || unsafe {
            libc::open(cnode.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC)
        });
        let r = if fd < 0 { Err(errno()) } else { Ok(0) };
        let check = if fd >= 0 {
            // SAFETY: `fd` is a new descriptor owned by nobody else.
            let dfd = unsafe { OwnedFd::from_raw_fd(fd) };
            cdev_finish(&dfd, want)
        } else {
            cdev_usable(&node, want)
        };
        Try {
            res: r,
            injected,
            sane: check,
        }
    });
    run.entry("cdev BIND_IOMMUFD", |f, n| {
        let (Ok(dfd), Ok(iommufd)) = (open(&node, libc::O_RDWR), open("/dev/iommu", libc::O_RDWR))
        else {
            return Try {
                res: Err(0),
                injected: false,
                sane: Err("the cdev or /dev/iommu does not open".into()),
            };
        };
        let (r, injected) = f.call(n, || bind(&dfd, &iommufd));
        let check = if r.is_ok() {
            ioas(&iommufd)
                .and_then(|id| ioctl_arg(&dfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &mut attach_arg(id)))
                .map_err(|e| format!("after the bind: errno {e}"))
                .and_then(|_| ids_are(&dfd, want))
        } else {
            drop((dfd, iommufd));
            cdev_usable(&node, want)
        };
        Try {
            res: res(&r),
            injected,
            sane: check,
        }
    });
    run.entry("cdev ATTACH_IOMMUFD_PT", |f, n| {
        let set_up = open(&node, libc::O_RDWR)
            .map_err(|e| e.to_string())
            .and_then(|dfd| {
                let iommufd = open("/dev/iommu", libc::O_RDWR).map_err(|e| e.to_string())?;
                bind(&dfd, &iommufd).map_err(|e| format!("bind: errno {e}"))?;
                let id = ioas(&iommufd).map_err(|e| format!("IOAS: errno {e}"))?;
                Ok((dfd, iommufd, id))
            });
        let (dfd, _iommufd, id) = match set_up {
            Ok(s) => s,
            Err(e) => {
                return Try {
                    res: Err(0),
                    injected: false,
                    sane: Err(e),
                }
            }
        };
        let mut arg = attach_arg(id);
        let (r, injected) = f.call(n, || {
            ioctl_arg(&dfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &mut arg)
        });
        // A failed attach can be repeated on the same file.
        let check = r
            .or_else(|_| ioctl_arg(&dfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &mut attach_arg(id)))
            .map_err(|e| format!("attach again: errno {e}"))
            .and_then(|_| ids_are(&dfd, want));
        Try {
            res: res(&r),
            injected,
            sane: check,
        }
    });
}

/// An ioctl on the open device whose argument `mk` builds before the
/// fault is armed; afterwards the IDs must read.
fn ioctl_entry<T: Plain>(
    run: &mut Run<'_>,
    fd: &OwnedFd,
    want: u32,
    name: &str,
    req: libc::c_ulong,
    mk: impl Fn() -> Arg<T>,
) {
    run.entry(name, |f, n| {
        let mut arg = mk();
        let (r, injected) = f.call(n, || ioctl_buf(fd, req, &mut arg));
        Try {
            res: r.map(i64::from),
            injected,
            sane: ids_are(fd, want),
        }
    });
}

/// Turns off every interrupt index the device has (`counts` by index).
fn quiesce(fd: &OwnedFd, counts: &[u32]) {
    for (index, &count) in counts.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let index = index as u32;
        let none = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
        if ioctl_buf(fd, VFIO_DEVICE_SET_IRQS, &mut irq_arg(none, index, 0, &[])).is_err() {
            // The form a driver that refuses count 0 takes: fd -1 each.
            let data: Vec<u8> = (0..count).flat_map(|_| (-1i32).to_le_bytes()).collect();
            let flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
            let _ = ioctl_buf(
                fd,
                VFIO_DEVICE_SET_IRQS,
                &mut irq_arg(flags, index, count, &data),
            );
        }
    }
}

/// The device's ioctls, on a device opened through the group.
fn ioctls(run: &mut Run<'_>, fd: &OwnedFd, want: u32) {
    let mut info = vfio_device_info {
        argsz: argsz::<vfio_device_info>(),
        ..Default::default()
    };
    let (regions, irqs) = match ioctl_arg(fd, VFIO_DEVICE_GET_INFO, &mut info) {
        Ok(_) => (info.num_regions.min(64), info.num_irqs.min(16)),
        Err(_) => (0, 0),
    };
    ioctl_entry(run, fd, want, "GET_INFO", VFIO_DEVICE_GET_INFO, || {
        room(vfio_device_info {
            argsz: 4096,
            ..Default::default()
        })
    });
    for index in 0..regions {
        let name = format!("GET_REGION_INFO {index}");
        ioctl_entry(run, fd, want, &name, VFIO_DEVICE_GET_REGION_INFO, || {
            room(vfio_region_info {
                argsz: 4096,
                index,
                ..Default::default()
            })
        });
    }
    let mut counts = Vec::new();
    for index in 0..irqs {
        let name = format!("GET_IRQ_INFO {index}");
        ioctl_entry(run, fd, want, &name, VFIO_DEVICE_GET_IRQ_INFO, || {
            Arg::new(
                vfio_irq_info {
                    argsz: argsz::<vfio_irq_info>(),
                    index,
                    ..Default::default()
                },
                &[],
            )
        });
        let mut ii = vfio_irq_info {
            argsz: argsz::<vfio_irq_info>(),
            index,
            ..Default::default()
        };
        counts.push(
            ioctl_arg(fd, VFIO_DEVICE_GET_IRQ_INFO, &mut ii)
                .map(|_| ii.count.min(64))
                .unwrap_or(0),
        );
    }
    set_irqs(run, fd, want, &counts);
    run.entry("RESET", |f, n| {
        let (r, injected) = f.call(n, || ioctl_val(fd, VFIO_DEVICE_RESET, 0));
        Try {
            res: r.map(i64::from),
            injected,
            sane: ids_are(fd, want),
        }
    });
    let features: [(&str, u32, usize); 7] = [
        (
            "probe MIGRATION",
            VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION,
            0,
        ),
        (
            "get MIGRATION",
            VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION,
            size_of::<vfio_device_feature_migration>(),
        ),
        (
            "get MIG_DEVICE_STATE",
            VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
            8,
        ),
        (
            "get MIG_DATA_SIZE",
            VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
            8,
        ),
        (
            "probe MIG_PRECOPY_INFOv2",
            VFIO_DEVICE_FEATURE_PROBE
                | VFIO_DEVICE_FEATURE_SET
                | VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2,
            0,
        ),
        (
            "set MIG_PRECOPY_INFOv2",
            VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2,
            0,
        ),
        (
            "probe DMA_LOGGING_START",
            VFIO_DEVICE_FEATURE_PROBE
                | VFIO_DEVICE_FEATURE_SET
                | VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
            0,
        ),
    ];
    for (name, flags, data) in features {
        let name = format!("DEVICE_FEATURE {name}");
        ioctl_entry(run, fd, want, &name, VFIO_DEVICE_FEATURE, || {
            feature_arg(flags, data)
        });
    }
    region_access(run, fd, want, regions);
}

/// `SET_IRQS` on each index the device has: eventfd triggers (every
/// vector), and on INTx and MSI the loopback triggers (DATA_NONE and
/// DATA_BOOL), the mask and unmask actions and the count-0 disable, each on
/// an index whose trigger is set.
fn set_irqs(run: &mut Run<'_>, fd: &OwnedFd, want: u32, counts: &[u32]) {
    let efds: Vec<Efd> = (0..8).map(|_| Efd::new()).collect();
    let fds = |k: u32| -> Vec<u8> {
        efds.iter()
            .cycle()
            .take(k as usize)
            .flat_map(|e| e.raw().to_le_bytes())
            .collect()
    };
    let names = ["INTx", "MSI", "MSI-X", "ERR", "REQ"];
    let trigger = VFIO_IRQ_SET_ACTION_TRIGGER;
    for (index, name) in names.iter().enumerate() {
        let count = counts.get(index).copied().unwrap_or(0);
        if count == 0 {
            run.t.skip(
                &format!("faults: {}: SET_IRQS {name}", run.label),
                "the device has no such interrupt",
            );
            continue;
        }
        let index = index as u32;
        let on = VFIO_IRQ_SET_DATA_EVENTFD | trigger;
        // (name, flags, count, data, whether the trigger is set first)
        let mut cases: Vec<(String, u32, u32, Vec<u8>, bool)> = vec![(
            format!("SET_IRQS {name} eventfd trigger"),
            VFIO_IRQ_SET_DATA_EVENTFD | trigger,
            count,
            fds(count),
            false,
        )];
        if index == VFIO_PCI_INTX_IRQ_INDEX || index == VFIO_PCI_MSI_IRQ_INDEX {
            cases.extend([
                (
                    format!("SET_IRQS {name} DATA_NONE trigger"),
                    VFIO_IRQ_SET_DATA_NONE | trigger,
                    1,
                    vec![],
                    true,
                ),
                (
                    format!("SET_IRQS {name} DATA_BOOL trigger"),
                    VFIO_IRQ_SET_DATA_BOOL | trigger,
                    1,
                    vec![1],
                    true,
                ),
                (
                    format!("SET_IRQS {name} count 0 disable"),
                    VFIO_IRQ_SET_DATA_NONE | trigger,
                    0,
                    vec![],
                    true,
                ),
            ]);
        }
        if index == VFIO_PCI_INTX_IRQ_INDEX {
            cases.extend([
                (
                    format!("SET_IRQS {name} mask"),
                    VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK,
                    1,
                    vec![],
                    true,
                ),
                (
                    format!("SET_IRQS {name} unmask eventfd"),
                    VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK,
                    1,
                    fds(1),
                    true,
                ),
            ]);
        }
        for (case, flags, k, data, first) in cases {
            let mut base = None;
            run.entry(&case, |f, n| {
                quiesce(fd, counts);
                if first {
                    let mut on = irq_arg(on, index, count, &fds(count));
                    let _ = ioctl_buf(fd, VFIO_DEVICE_SET_IRQS, &mut on);
                }
                let mut arg = irq_arg(flags, index, k, &data);
                let (r, injected) = f.call(n, || ioctl_buf(fd, VFIO_DEVICE_SET_IRQS, &mut arg));
                // Usable: the same call without a fault gives what it gave
                // without any, and the index turns off.
                let again = ioctl_buf(
                    fd,
                    VFIO_DEVICE_SET_IRQS,
                    &mut irq_arg(flags, index, k, &data),
                );
                let again = res(&again.map(|_| ()));
                let b = *base.get_or_insert(again);
                let check = sane(again == b, || {
                    format!("the same call afterwards: {again:?}, at first {b:?}")
                })
                .and_then(|()| ids_are(fd, want));
                quiesce(fd, counts);
                Try {
                    res: r.map(i64::from),
                    injected,
                    sane: check,
                }
            });
        }
    }
    for e in &efds {
        e.take();
    }
}

/// Region reads and writes (config space, the BARs, the device-specific
/// regions) and `mmap()` where a region allows it.
fn region_access(run: &mut Run<'_>, fd: &OwnedFd, want: u32, regions: u32) {
    for index in 0..regions {
        let Ok(c) = region_caps(fd, index) else {
            continue;
        };
        if c.size == 0 {
            continue;
        }
        let what = match index {
            VFIO_PCI_CONFIG_REGION_INDEX => "config".to_owned(),
            i if i < VFIO_PCI_CONFIG_REGION_INDEX => format!("BAR{i}"),
            i => format!("region {i}"),
        };
        let len = c.size.min(4096) as usize;
        if c.flags & VFIO_REGION_INFO_FLAG_READ != 0 {
            run.entry(&format!("read {what} ({len} bytes)"), |f, n| {
                let mut b = vec![0x5au8; len];
                let (r, injected) = f.call(n, || pread(fd, &mut b, c.offset));
                Try {
                    res: r.map(|k| k as i64),
                    injected,
                    sane: ids_are(fd, want),
                }
            });
        }
        // What a write may change without effect on the rest: the command
        // register as it is, the UART's scratch register, a mappable page.
        let target = if index == VFIO_PCI_CONFIG_REGION_INDEX {
            Some((4, 2))
        } else if index < VFIO_PCI_CONFIG_REGION_INDEX && c.size == 8 {
            Some((7, 1))
        } else {
            c.sparse
                .as_ref()
                .and_then(|a| a.first().copied())
                .filter(|_| c.flags & VFIO_REGION_INFO_FLAG_MMAP != 0)
                .map(|(off, size)| (off, size.min(4096) as usize))
        };
        if let (true, Some((off, wlen))) = (c.flags & VFIO_REGION_INFO_FLAG_WRITE != 0, target) {
            run.entry(&format!("write {what} ({wlen} bytes)"), |f, n| {
                let mut b = vec![0u8; wlen];
                let _ = pread(fd, &mut b, c.offset + off);
                if index != VFIO_PCI_CONFIG_REGION_INDEX {
                    b.iter_mut().for_each(|x| *x = x.wrapping_add(1));
                }
                let (r, injected) = f.call(n, || pwrite(fd, &b, c.offset + off));
                let mut back = vec![0u8; wlen];
                let read = pread(fd, &mut back, c.offset + off);
                let check = sane(r.is_err() || back == b, || {
                    format!("the write succeeded but reads back differently ({read:?})")
                })
                .and_then(|()| ids_are(fd, want));
                Try {
                    res: r.map(|k| k as i64),
                    injected,
                    sane: check,
                }
            });
        }
        if c.flags & VFIO_REGION_INFO_FLAG_MMAP != 0 {
            let (off, size) = c
                .sparse
                .as_ref()
                .and_then(|a| a.first().copied())
                .unwrap_or((0, c.size));
            let len = size as usize;
            run.entry(&format!("mmap {what}"), |f, n| {
                let (r, injected) = f.call(n, || map(fd, c.offset + off, len));
                let check = match r {
                    Ok(addr) => {
                        let mut b = [0u8; 1];
                        let _ = pread(fd, &mut b, c.offset + off);
                        let m = touch_unmap(addr, len);
                        sane(m == b[0], || {
                            format!("the mapping reads {m}, the region {}", b[0])
                        })
                    }
                    Err(_) => Ok(()),
                }
                .and_then(|()| ids_are(fd, want));
                Try {
                    res: res(&r),
                    injected,
                    sane: check,
                }
            });
        }
    }
}

/// Brings the device to `s` from a reset: the data file of the last state
/// that has one.
fn reach(fd: &OwnedFd, s: u32, stream: &[u8]) -> Result<Option<OwnedFd>, String> {
    if !reset(fd) {
        return Err("RESET fails".into());
    }
    let path: &[u32] = match s {
        RUNNING => &[],
        PRE_COPY_P2P => &[PRE_COPY, PRE_COPY_P2P],
        s => &[s][..],
    };
    let mut file = None;
    for &step in path {
        if let Some(f) = set_state(fd, step).map_err(|e| format!("to {step}: errno {e}"))? {
            file = Some(f);
        }
    }
    if s == RESUMING && !stream.is_empty() {
        let Some(data) = &file else {
            return Err("RESUMING gave no data file".into());
        };
        write_fd(data, stream).map_err(|e| format!("stream write: errno {e}"))?;
    }
    Ok(file)
}

fn state_name(s: u32) -> &'static str {
    crate::mig::name(s)
}

/// The migration arcs the device offers and its data files.
fn migration(run: &mut Run<'_>, fd: &OwnedFd, want: u32) {
    let mut arg = feature_arg(
        VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION,
        size_of::<vfio_device_feature_migration>(),
    );
    let offered = ioctl_buf(fd, VFIO_DEVICE_FEATURE, &mut arg)
        .ok()
        .and_then(|_| arg.get_data::<vfio_device_feature_migration>())
        .map_or(0, |m| m.flags);
    let has = |flag: u32| offered & u64::from(flag) != 0;
    if !has(VFIO_MIGRATION_STOP_COPY) {
        run.t.skip(
            &format!("faults: {}: migration", run.label),
            "the device does not offer migration",
        );
        return;
    }
    // A stream of this device after a reset, for RESUMING.
    let stream = reach(fd, STOP_COPY, &[])
        .ok()
        .flatten()
        .map(|f| drain(&f).0)
        .unwrap_or_default();
    let mut arcs = vec![
        (RUNNING, STOP),
        (STOP, RUNNING),
        (STOP, STOP_COPY),
        (STOP_COPY, STOP),
        (STOP, RESUMING),
        (RESUMING, STOP),
    ];
    let p2p = has(VFIO_MIGRATION_P2P);
    let pre = has(VFIO_MIGRATION_PRE_COPY);
    if p2p {
        arcs.extend([
            (RUNNING, RUNNING_P2P),
            (RUNNING_P2P, STOP),
            (STOP, RUNNING_P2P),
            (RUNNING_P2P, RUNNING),
        ]);
    }
    if pre {
        arcs.extend([
            (RUNNING, PRE_COPY),
            (PRE_COPY, RUNNING),
            (PRE_COPY, STOP_COPY),
        ]);
    }
    if pre && p2p {
        arcs.extend([
            (PRE_COPY, PRE_COPY_P2P),
            (PRE_COPY_P2P, PRE_COPY),
            (PRE_COPY_P2P, STOP_COPY),
            (RUNNING_P2P, PRE_COPY_P2P),
            (PRE_COPY_P2P, RUNNING_P2P),
        ]);
    }
    for (from, to) in arcs {
        let name = format!("{} -> {}", state_name(from), state_name(to));
        run.entry(&name, |f, n| {
            let file = match reach(fd, from, &stream) {
                Ok(file) => file,
                Err(e) => {
                    return Try {
                        res: Err(0),
                        injected: false,
                        sane: Err(format!("reaching {}: {e}", state_name(from))),
                    }
                }
            };
            let mut feature = feature_arg(
                VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
                8,
            );
            feature.set_data(vfio_device_feature_mig_state {
                device_state: to,
                data_fd: -1,
            });
            let (r, injected) = f.call(n, || ioctl_buf(fd, VFIO_DEVICE_FEATURE, &mut feature));
            let new_fd = feature
                .get_data::<vfio_device_feature_mig_state>()
                .map_or(-1, |d| d.data_fd);
            if r.is_ok() && new_fd >= 0 {
                // SAFETY: A data fd the kernel installed for us.
                drop(unsafe { OwnedFd::from_raw_fd(new_fd) });
            }
            let now = get_state(fd);
            // A failed arc leaves the device in the state it was in, in one
            // on the way or in ERROR (the uAPI allows each); a reset brings
            // it back to RUNNING from any of them.
            let check = match r {
                Ok(_) => sane(now == Ok(to), || format!("state {now:?} after success")),
                Err(_) => sane(now.is_ok(), || {
                    format!("GET state after a failed arc: {now:?}")
                }),
            }
            .and_then(|()| {
                drop(file);
                sane(reset(fd) && get_state(fd) == Ok(RUNNING), || {
                    "a reset does not bring it back to RUNNING".into()
                })
            })
            .and_then(|()| ids_are(fd, want));
            Try {
                res: r.map(i64::from),
                injected,
                sane: check,
            }
        });
    }
    data_files(run, fd, want, &stream, pre);
    let _ = reset(fd);
}

/// Reads of the saving data files (STOP_COPY, PRE_COPY), the resuming
/// file's write and `PRECOPY_INFO`.
fn data_files(run: &mut Run<'_>, fd: &OwnedFd, want: u32, stream: &[u8], pre: bool) {
    let mut saving = vec![("STOP_COPY data read", STOP_COPY)];
    if pre {
        saving.push(("PRE_COPY data read", PRE_COPY));
    }
    for (name, state) in saving {
        let mut whole: Option<Vec<u8>> = None;
        run.entry(name, |f, n| {
            let file = match reach(fd, state, &[]) {
                Ok(Some(file)) => file,
                r => {
                    return Try {
                        res: Err(0),
                        injected: false,
                        sane: Err(format!("no data file: {:?}", r.map(|f| f.is_some()))),
                    }
                }
            };
            let mut b = vec![0xa5u8; 4096];
            let (r, injected) = f.call(n, || read_fd(&file, &mut b));
            // The data the failed read did not return is still there: what
            // it and the rest give is the stream a plain read gives.
            let mut got = r.map_or_else(|_| Vec::new(), |k| b[..k].to_vec());
            got.extend(drain(&file).0);
            let first = whole.get_or_insert_with(|| got.clone());
            let check = sane(*first == got, || {
                format!(
                    "{} bytes after {r:?}, {} without a fault",
                    got.len(),
                    first.len()
                )
            })
            .and_then(|()| ids_are(fd, want));
            drop(file);
            let _ = reset(fd);
            Try {
                res: r.map(|k| k as i64),
                injected,
                sane: check,
            }
        });
    }
    run.entry("RESUMING data write", |f, n| {
        let file = match reach(fd, RESUMING, &[]) {
            Ok(Some(file)) => file,
            r => {
                return Try {
                    res: Err(0),
                    injected: false,
                    sane: Err(format!("no data file: {:?}", r.map(|f| f.is_some()))),
                }
            }
        };
        let (r, injected) = f.call(n, || write_fd(&file, stream));
        // Whatever the failed write did not take is written again, and the
        // stream then loads.
        let done = *r.as_ref().unwrap_or(&0);
        let rest = stream.get(done..).unwrap_or(&[]);
        let check = (if rest.is_empty() {
            Ok(0)
        } else {
            write_fd(&file, rest)
        })
        .map_err(|e| format!("writing the rest: errno {e}"))
        .and_then(|_| set_state(fd, STOP).map_err(|e| format!("RESUMING -> STOP: errno {e}")))
        .and_then(|_| ids_are(fd, want));
        drop(file);
        let _ = reset(fd);
        Try {
            res: r.map(|k| k as i64),
            injected,
            sane: check,
        }
    });
    if !pre {
        return;
    }
    run.entry("PRECOPY_INFO", |f, n| {
        let file = match reach(fd, PRE_COPY, &[]) {
            Ok(Some(file)) => file,
            r => {
                return Try {
                    res: Err(0),
                    injected: false,
                    sane: Err(format!("no data file: {:?}", r.map(|f| f.is_some()))),
                }
            }
        };
        let mut info = vfio_precopy_info {
            argsz: argsz::<vfio_precopy_info>(),
            ..Default::default()
        };
        let (r, injected) = f.call(n, || ioctl_arg(&file, VFIO_MIG_GET_PRECOPY_INFO, &mut info));
        drop(file);
        let _ = reset(fd);
        Try {
            res: r.map(i64::from),
            injected,
            sane: ids_are(fd, want),
        }
    });
}

/// Every entry point on the type at `tdir`.
fn type_entries(run: &mut Run<'_>, tdir: &str) {
    let start = available(tdir);
    let u = new_uuid();
    let dev = dev_path(&u);
    if let Err(e) = write_plain(&format!("{tdir}/create"), &u) {
        run.t.check(
            &format!("faults: {}: an instance creates", run.label),
            false,
            || e,
        );
        return;
    }
    let want = match Group::open(&dev).and_then(|g| {
        g.device()
            .map_err(|e| format!("errno {e}"))
            .and_then(|d| ids(&d).ok_or_else(|| "no IDs".into()))
    }) {
        Ok(w) => w,
        Err(e) => {
            run.t.check(
                &format!("faults: {}: the instance opens", run.label),
                false,
                || e,
            );
            let _ = write_plain(&format!("{dev}/remove"), "1");
            return;
        }
    };
    lifecycle(run, tdir, want);
    attributes(run, tdir, &dev);
    opens(run, &dev, want);
    match Group::open(&dev).and_then(|g| {
        let d = g.device().map_err(|e| format!("errno {e}"))?;
        Ok((g, d))
    }) {
        Ok((_g, d)) => {
            ioctls(run, &d, want);
            migration(run, &d, want);
        }
        Err(e) => run.t.check(
            &format!("faults: {}: the instance opens", run.label),
            false,
            || e,
        ),
    }
    let r = write_plain(&format!("{dev}/remove"), "1");
    let end = available(tdir);
    run.t.check(
        &format!("faults: {}: the pool is exact at the end", run.label),
        r.is_ok() && end == start,
        || format!("{r:?}, available {start} at the start, {end} at the end"),
    );
}

/// The `faults` command: every entry point on each type directory given.
pub(crate) fn run(t: &mut Ktap, tdirs: &[&str]) {
    let fail = match FailNth::open() {
        Ok(f) => f,
        Err(e) => {
            t.skip(
                "faults",
                &format!("no fault injection in this kernel ({e})"),
            );
            return;
        }
    };
    let knobs = match Knobs::set() {
        Ok(k) => k,
        Err(e) => {
            t.check("faults: the fault-injection settings take", false, || e);
            return;
        }
    };
    prefault_stack();
    watchdog();
    let t0 = Instant::now();
    let mut all = Vec::new();
    for tdir in tdirs {
        let label = tdir.rsplit('/').next().unwrap_or(tdir).to_owned();
        let mut run = Run {
            t,
            fail: &fail,
            label,
            counts: Vec::new(),
        };
        type_entries(&mut run, tdir);
        all.push((run.label, run.counts));
    }
    drop(knobs);
    t.diag(&format!("faults: {:.1} s", t0.elapsed().as_secs_f64()));
    for (label, counts) in &all {
        let total: u32 = counts.iter().map(|c| c.injected).sum();
        let survived: u32 = counts.iter().map(|c| c.survived).sum();
        t.diag(&format!(
            "faults: {label}: {} entry points, {total} faults injected, {survived} survived",
            counts.len()
        ));
    }
}
