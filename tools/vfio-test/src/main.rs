// SPDX-License-Identifier: GPL-2.0

//! Userspace checks of a VFIO PCI device, run inside the test VM.
//!
//! It opens a device by its sysfs path, either through the legacy group and
//! type1 container or through the iommufd character device, and checks the
//! uAPI contract. Results are KTAP test lines without numbers
//! (`ok - name` / `not ok - name`); the VM test script numbers them.
//!
//! The uAPI numbers are written out (in `tools/vfio_uapi.rs`) from `vfio.h`
//! rather than taken from the driver, so that a wrong number in the driver
//! cannot hide itself.
//!
//! Usage:
//!   vfio-test [--reference=mtty] check group|cdev SYSFSDEV
//!                                           run the checks; with the option,
//!                                           mtty's known deviations from the
//!                                           contract are reported as TODO
//!   vfio-test abuse SYSFSDEV               guest-side bad input on a serial card
//!   vfio-test hold SYSFSDEV                open the device, print "held", wait
//!                                           for standard input to close
//!   vfio-test req SYSFSDEV                 open the device with a REQ eventfd,
//!                                           print "held", and close the device
//!                                           when the kernel asks for it back
//!                                           (print "req"), as QEMU does

mod express;
mod faults;
mod mig;
#[path = "../../vfio_uapi.rs"]
mod vfio_uapi;
use vfio_uapi::*;

use std::ffi::CString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

const VFIO_TYPE1_IOMMU: libc::c_ulong = 1;
const VFIO_TYPE1V2_IOMMU: libc::c_ulong = 3;
const VFIO_GROUP_FLAGS_VIABLE: u32 = 1;
const VFIO_DEVICE_FLAGS_PCI: u32 = 1 << 1;
const VFIO_PCI_CONFIG_REGION_INDEX: u32 = 7;
const VFIO_PCI_NUM_REGIONS: u32 = 9;
const VFIO_PCI_MSIX_IRQ_INDEX: u32 = 2;
const VFIO_PCI_INTX_IRQ_INDEX: u32 = 0;
const VFIO_IRQ_INFO_EVENTFD: u32 = 1;
const VFIO_PCI_REQ_IRQ_INDEX: u32 = 4;
const VFIO_IRQ_SET_DATA_EVENTFD: u32 = 1 << 2;
const VFIO_IRQ_SET_ACTION_TRIGGER: u32 = 1 << 5;

/// Checks the reference driver named on the command line is known to fail:
/// they are reported as KTAP `TODO` (expected failures), not as failures.
/// The contract is the judge; these are the C sample's deviations from it.
const MTTY_DEVIATIONS: &[&str] = &[
    // MTTY_CONFIG_SPACE_SIZE is 0xff, one byte short of PCI config space.
    "config region is at least 256 bytes",
    // With the 255-byte size, mtty's bounds check lets these through.
    "config read across the end is EINVAL",
    "config read past the end is EINVAL",
    // The C helper vfio_set_irqs_validate_and_prepare() lets two actions
    // through and mtty then acts on one of them.
    "SET_IRQS with two actions is EINVAL",
    // mtty ignores DATA_BOOL loopback triggers.
    "a DATA_BOOL trigger of 1 fires",
    // mtty refuses the count-0 "disable all" form of TRIGGER.
    "count 0 with DATA_NONE disables the index",
    // mtty offers no REQ interrupt (so a remove waits for userspace for ever).
    "REQ trigger eventfd is assigned",
    "a DATA_NONE trigger makes the REQ eventfd readable",
    // mtty answers a position in no region with EFAULT.
    "a read of a region index past the last is EINVAL",
];

/// Collects results and prints them as KTAP lines.
struct Ktap {
    failed: u32,
    known: &'static [&'static str],
    target: &'static str,
}

impl Ktap {
    fn check(&mut self, name: &str, ok: bool, detail: impl FnOnce() -> String) {
        if ok {
            println!("ok - {name}");
        } else if self.known.contains(&name) {
            println!("not ok - {name} # TODO known deviation of {}", self.target);
            println!("# {}", detail());
        } else {
            self.failed += 1;
            println!("not ok - {name}");
            println!("# {}", detail());
        }
        let _ = io::stdout().flush();
    }
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn open(path: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is a valid C string; open has no other preconditions.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `ioctl(fd, req, buf)`; returns the result or the errno.
fn ioctl_buf(fd: &OwnedFd, req: libc::c_ulong, buf: &mut [u8]) -> Result<i32, i32> {
    // SAFETY: `buf` is valid for its whole length; the kernel reads at most
    // `argsz` bytes, which the callers keep within the buffer.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, buf.as_mut_ptr()) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

fn ioctl_val(fd: &OwnedFd, req: libc::c_ulong, val: libc::c_ulong) -> Result<i32, i32> {
    // SAFETY: These requests take an integer argument.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, val) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

fn u32s(words: &[u32], len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    for (i, w) in words.iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    b
}

fn get32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn get64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// An open device and what keeps it open.
struct Dev {
    fd: OwnedFd,
    _keep: Vec<OwnedFd>,
}

fn open_group(t: &mut Ktap, sysfs: &str) -> Option<Dev> {
    let group = fs::read_link(Path::new(sysfs).join("iommu_group")).ok()?;
    let group = group.file_name()?.to_str()?.to_owned();
    let container = open("/dev/vfio/vfio", libc::O_RDWR).ok()?;
    t.check(
        "container API version is 0",
        ioctl_val(&container, VFIO_GET_API_VERSION, 0) == Ok(0),
        || "VFIO_GET_API_VERSION".into(),
    );
    let gfd = match open(&format!("/dev/vfio/{group}"), libc::O_RDWR) {
        Ok(f) => f,
        Err(e) => {
            t.check("open the group", false, || e.to_string());
            return None;
        }
    };
    let mut st = u32s(&[8, 0], 8);
    let r = ioctl_buf(&gfd, VFIO_GROUP_GET_STATUS, &mut st);
    t.check(
        "group is viable",
        r.is_ok() && get32(&st, 4) & VFIO_GROUP_FLAGS_VIABLE != 0,
        || format!("{r:?} flags {:#x}", get32(&st, 4)),
    );
    let mut cfd = container.as_raw_fd();
    // SAFETY: The argument points to an int holding the container fd.
    let r = unsafe { libc::ioctl(gfd.as_raw_fd(), VFIO_GROUP_SET_CONTAINER, &mut cfd) };
    t.check("group joins the container", r == 0, || {
        format!("errno {}", errno())
    });
    let r = ioctl_val(&container, VFIO_SET_IOMMU, VFIO_TYPE1V2_IOMMU)
        .or_else(|_| ioctl_val(&container, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU));
    t.check("container takes the type1 IOMMU", r.is_ok(), || {
        format!("{r:?}")
    });
    let name = CString::new(Path::new(sysfs).file_name()?.to_str()?).ok()?;
    // SAFETY: The argument is a C string naming the device.
    let fd = unsafe { libc::ioctl(gfd.as_raw_fd(), VFIO_GROUP_GET_DEVICE_FD, name.as_ptr()) };
    t.check("group hands out the device fd", fd >= 0, || {
        format!("errno {}", errno())
    });
    if fd < 0 {
        return None;
    }
    Some(Dev {
        // SAFETY: `fd` is a new descriptor owned by nobody else.
        fd: unsafe { OwnedFd::from_raw_fd(fd) },
        _keep: vec![gfd, container],
    })
}

fn open_cdev(t: &mut Ktap, sysfs: &str) -> Option<Dev> {
    let node = fs::read_dir(Path::new(sysfs).join("vfio-dev"))
        .ok()?
        .filter_map(|e| e.ok())
        .find_map(|e| {
            e.file_name()
                .to_str()
                .filter(|n| n.starts_with("vfio"))
                .map(str::to_owned)
        });
    t.check("device has a vfio-dev cdev", node.is_some(), || {
        "no vfio-dev/vfioN".into()
    });
    let dfd = open(&format!("/dev/vfio/devices/{}", node?), libc::O_RDWR).ok()?;
    let iommufd = match open("/dev/iommu", libc::O_RDWR) {
        Ok(f) => f,
        Err(e) => {
            t.check("open /dev/iommu", false, || e.to_string());
            return None;
        }
    };
    let mut bind = u32s(&[16, 0, iommufd.as_raw_fd() as u32, 0], 24);
    let r = ioctl_buf(&dfd, VFIO_DEVICE_BIND_IOMMUFD, &mut bind);
    t.check("cdev binds to iommufd", r.is_ok(), || format!("{r:?}"));
    let mut ioas = u32s(&[12, 0, 0], 12);
    let r = ioctl_buf(&iommufd, IOMMU_IOAS_ALLOC, &mut ioas);
    t.check("iommufd allocates an IOAS", r.is_ok(), || format!("{r:?}"));
    let mut att = u32s(&[12, 0, get32(&ioas, 8)], 16);
    let r = ioctl_buf(&dfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &mut att);
    t.check("cdev attaches to the IOAS", r.is_ok(), || format!("{r:?}"));
    Some(Dev {
        fd: dfd,
        _keep: vec![iommufd],
    })
}

fn pread(fd: &OwnedFd, buf: &mut [u8], off: u64) -> Result<usize, i32> {
    // SAFETY: `buf` is valid for writes of its length.
    let r = unsafe {
        libc::pread(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            off as libc::off_t,
        )
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as usize)
    }
}

fn pwrite(fd: &OwnedFd, buf: &[u8], off: u64) -> Result<usize, i32> {
    // SAFETY: `buf` is valid for reads of its length.
    let r = unsafe {
        libc::pwrite(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            off as libc::off_t,
        )
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as usize)
    }
}

/// A little-endian config register of `len` bytes (1, 2 or 4) at `reg`, or
/// `None` if the read fails.
fn cfg_rd(fd: &OwnedFd, cfg: u64, reg: u64, len: usize) -> Option<u32> {
    let mut b = [0u8; 4];
    (pread(fd, &mut b[..len], cfg + reg) == Ok(len)).then(|| u32::from_le_bytes(b))
}

fn cfg_wr(fd: &OwnedFd, cfg: u64, reg: u64, len: usize, v: u32) {
    let _ = pwrite(fd, &v.to_le_bytes()[..len], cfg + reg);
}

/// Config-space permissions a guest relies on: read-only identity, BAR
/// sizing, status bits, the interrupt registers, a well-formed capability
/// list. Every register changed is put back.
fn config_perms(t: &mut Ktap, fd: &OwnedFd, cfg: u64) {
    let ids = cfg_rd(fd, cfg, 0, 4);
    cfg_wr(fd, cfg, 0, 4, !0);
    let after = cfg_rd(fd, cfg, 0, 4);
    t.check(
        "vendor and device IDs are read-only",
        ids.is_some() && after == ids,
        || format!("{ids:x?} -> {after:x?}"),
    );
    let class = cfg_rd(fd, cfg, 8, 4);
    cfg_wr(fd, cfg, 8, 4, 0);
    let after = cfg_rd(fd, cfg, 8, 4);
    t.check(
        "class code and revision are read-only",
        class.is_some() && after == class,
        || format!("{class:x?} -> {after:x?}"),
    );

    // BAR sizing: all ones in, the size mask and the type bits back.
    let orig = cfg_rd(fd, cfg, 0x10, 4).unwrap_or(0);
    cfg_wr(fd, cfg, 0x10, 4, !0);
    let mask = cfg_rd(fd, cfg, 0x10, 4).unwrap_or(0);
    cfg_wr(fd, cfg, 0x10, 4, orig);
    let back = cfg_rd(fd, cfg, 0x10, 4).unwrap_or(0);
    let (type_bits, addr) = if orig & 1 != 0 {
        (0x3, !0x3)
    } else {
        (0xf, !0xf)
    };
    let size = (!(mask & addr)).wrapping_add(1);
    t.check(
        "BAR0 sizing reads back a power-of-two size mask and the type bits",
        mask != !0 && size.is_power_of_two() && size >= 4 && mask & type_bits == orig & type_bits,
        || format!("orig {orig:#x} mask {mask:#x}"),
    );
    t.check(
        "BAR0 takes its address back after sizing",
        back == orig,
        || format!("orig {orig:#x} back {back:#x}"),
    );

    bars64(t, fd, cfg);

    // Status: read-only bits survive a write of all ones, and the
    // write-one-to-clear error bits (0xf900) are not set by it.
    let st = cfg_rd(fd, cfg, 6, 2).unwrap_or(0);
    cfg_wr(fd, cfg, 6, 2, 0xffff);
    let st2 = cfg_rd(fd, cfg, 6, 2).unwrap_or(0);
    t.check(
        "status: read-only bits survive a write of ones, RW1C bits end clear",
        st2 & 0x06ff == st & 0x06ff && st2 & 0xf900 == 0,
        || format!("{st:#06x} -> {st2:#06x}"),
    );

    let pin = cfg_rd(fd, cfg, 0x3d, 1);
    cfg_wr(fd, cfg, 0x3d, 1, 0);
    let pin2 = cfg_rd(fd, cfg, 0x3d, 1);
    t.check(
        "interrupt pin is read-only",
        pin.is_some() && pin2 == pin,
        || format!("{pin:?} -> {pin2:?}"),
    );
    let line = cfg_rd(fd, cfg, 0x3c, 1).unwrap_or(0);
    cfg_wr(fd, cfg, 0x3c, 1, 0x0b);
    let line2 = cfg_rd(fd, cfg, 0x3c, 1);
    cfg_wr(fd, cfg, 0x3c, 1, line);
    t.check("interrupt line is read-write", line2 == Some(0x0b), || {
        format!("{line2:?}")
    });

    // The capability list, when the status register announces one: every
    // pointer dword aligned and past the header, every ID non-zero, and the
    // list ends (at most 48 entries fit in 192 bytes).
    let mut caps = Vec::new();
    let mut pm = None;
    let mut well_formed = true;
    if st & 0x10 != 0 {
        let mut p = cfg_rd(fd, cfg, 0x34, 1).unwrap_or(0);
        while p != 0 {
            let id = cfg_rd(fd, cfg, u64::from(p), 1).unwrap_or(0);
            if !(0x40..=0xfc).contains(&p) || p & 3 != 0 || id == 0 || caps.len() >= 48 {
                well_formed = false;
                break;
            }
            caps.push(format!("{id:02x}@{p:02x}"));
            if id == 0x01 {
                pm = Some(u64::from(p));
            }
            p = cfg_rd(fd, cfg, u64::from(p) + 1, 1).unwrap_or(0);
        }
    }
    println!("# capabilities: {}", caps.join(" "));
    t.check(
        "the capability list is absent or well formed",
        well_formed,
        || caps.join(" "),
    );

    // Power management: D3hot and back to D0; a state PMC does not offer
    // (D1 here, when unsupported) is discarded.
    if let Some(pm) = pm {
        let pmc = cfg_rd(fd, cfg, pm + 2, 2).unwrap_or(0);
        let ctrl = cfg_rd(fd, cfg, pm + 4, 2).unwrap_or(0) & !3;
        let state = || cfg_rd(fd, cfg, pm + 4, 2).map(|v| v & 3);
        cfg_wr(fd, cfg, pm + 4, 2, ctrl | 3);
        let d3 = state();
        let d1_refused = if pmc & (1 << 9) == 0 {
            cfg_wr(fd, cfg, pm + 4, 2, ctrl | 1);
            state() == Some(3)
        } else {
            true
        };
        cfg_wr(fd, cfg, pm + 4, 2, ctrl);
        let d0 = state();
        t.check(
            "PM: D3hot and back to D0, an unsupported state is discarded",
            d3 == Some(3) && d1_refused && d0 == Some(0),
            || format!("pmc {pmc:#x} d3 {d3:?} d1 refused {d1_refused} d0 {d0:?}"),
        );
    }
}

/// 64-bit memory BARs: sizing both registers with all ones reads back a
/// 64-bit power-of-two mask whose low register keeps the type bits, both
/// registers take their address back, and the upper register's region is
/// empty (vfio-pci reports the upper half of a 64-bit BAR so). A device
/// without one (mtty) passes with nothing to check.
fn bars64(t: &mut Ktap, fd: &OwnedFd, cfg: u64) {
    let mut i = 0;
    while i < 5 {
        let (lo, hi) = (0x10 + 4 * i, 0x14 + 4 * i);
        let orig = cfg_rd(fd, cfg, lo, 4).unwrap_or(0);
        if orig & 0x7 != 0x4 {
            i += 1;
            continue;
        }
        let orig_hi = cfg_rd(fd, cfg, hi, 4).unwrap_or(0);
        cfg_wr(fd, cfg, lo, 4, !0);
        cfg_wr(fd, cfg, hi, 4, !0);
        let mask_lo = cfg_rd(fd, cfg, lo, 4).unwrap_or(0);
        let mask_hi = cfg_rd(fd, cfg, hi, 4).unwrap_or(0);
        cfg_wr(fd, cfg, lo, 4, orig);
        cfg_wr(fd, cfg, hi, 4, orig_hi);
        let back = (cfg_rd(fd, cfg, lo, 4), cfg_rd(fd, cfg, hi, 4));
        let mask = u64::from(mask_lo & !0xf) | u64::from(mask_hi) << 32;
        let size = (!mask).wrapping_add(1);
        // A power-of-two size means the mask is ones down to the size.
        t.check(
            &format!("BAR{i}: 64-bit sizing of both registers reads back a power-of-two mask and the type bits"),
            size.is_power_of_two() && size >= 16 && mask_lo & 0xf == orig & 0xf,
            || format!("orig {orig_hi:#x}:{orig:#x} mask {mask_hi:#x}:{mask_lo:#x}"),
        );
        t.check(
            &format!("BAR{i}: a 64-bit BAR takes its address back after sizing"),
            back == (Some(orig), Some(orig_hi)),
            || format!("orig {orig_hi:#x}:{orig:#x} back {back:x?}"),
        );
        let r = region(fd, i as u32);
        t.check(
            &format!("BAR{i}: the region's size is the 64-bit BAR's size"),
            r.is_some_and(|r| r.1 == size),
            || format!("region {r:x?} size {size:#x}"),
        );
        let up = region(fd, i as u32 + 1);
        t.check(
            &format!(
                "BAR{}: the upper half of 64-bit BAR{i} is an empty region",
                i + 1
            ),
            up.is_some_and(|r| r.1 == 0),
            || format!("region {up:x?}"),
        );
        i += 2;
    }
}

const VFIO_REGION_INFO_FLAG_WRITE: u32 = 1 << 1;
const VFIO_REGION_INFO_FLAG_CAPS: u32 = 1 << 3;
const VFIO_REGION_INFO_CAP_SPARSE_MMAP: u16 = 1;
const VFIO_REGION_INFO_CAP_TYPE: u16 = 2;
/// rmdev's serial statistics region: vendor type 0x4348, subtype 1, per
/// port three little-endian u64 counters (tx, rx, overruns).
const SERIAL_STATS: (u32, u32) = (1 << 31 | 0x4348, 1);

/// GET_REGION_INFO with room for the capability chain, walked: the
/// region's flags, size and offset, the areas of a sparse-mmap capability
/// and the (type, subtype) of a region-type capability, where present.
#[derive(Debug)]
struct RegionCaps {
    flags: u32,
    size: u64,
    offset: u64,
    sparse: Option<Vec<(u64, u64)>>,
    kind: Option<(u32, u32)>,
}

fn region_caps(fd: &OwnedFd, index: u32) -> Result<RegionCaps, String> {
    // Room for any chain: the kernel reports the size it needs in argsz.
    let mut b = u32s(&[4096, 0, index], 4096);
    ioctl_buf(fd, VFIO_DEVICE_GET_REGION_INFO, &mut b).map_err(|e| format!("errno {e}"))?;
    let (flags, argsz) = (get32(&b, 4), get32(&b, 0) as usize);
    let mut r = RegionCaps {
        flags,
        size: get64(&b, 16),
        offset: get64(&b, 24),
        sparse: None,
        kind: None,
    };
    if flags & VFIO_REGION_INFO_FLAG_CAPS == 0 {
        return Ok(r);
    }
    if argsz > b.len() {
        return Err(format!("argsz {argsz} larger than the buffer"));
    }
    let mut at = get32(&b, 12) as usize;
    for _ in 0..16 {
        if at < 32 || at + 8 > argsz {
            return Err(format!("capability at {at} outside argsz {argsz}"));
        }
        match u16::from_le_bytes([b[at], b[at + 1]]) {
            VFIO_REGION_INFO_CAP_SPARSE_MMAP => {
                let n = get32(&b, at + 8) as usize;
                if n > 64 || at + 16 + 16 * n > argsz {
                    return Err(format!("{n} areas overrun argsz {argsz}"));
                }
                let areas = (0..n)
                    .map(|i| (get64(&b, at + 16 + 16 * i), get64(&b, at + 24 + 16 * i)))
                    .collect();
                r.sparse = Some(areas);
            }
            VFIO_REGION_INFO_CAP_TYPE => {
                if at + 16 > argsz {
                    return Err(format!("type capability at {at} overruns argsz {argsz}"));
                }
                r.kind = Some((get32(&b, at + 8), get32(&b, at + 12)));
            }
            _ => {}
        }
        match get32(&b, at + 4) as usize {
            0 => return Ok(r),
            next => at = next,
        }
    }
    Err("capability chain does not end".into())
}

/// A region's flags, size, offset and region-type capability.
type DevRegionInfo = (u32, u64, u64, Option<(u32, u32)>);

fn dev_region_info(fd: &OwnedFd, index: u32) -> Result<DevRegionInfo, String> {
    region_caps(fd, index).map(|r| (r.flags, r.size, r.offset, r.kind))
}

/// Device-specific regions (index VFIO_PCI_NUM_REGIONS and up, as many as
/// GET_INFO counts): each has FLAG_CAPS and a region-type capability, reads
/// inside it work, reads past or across its end are EINVAL, and a write to
/// a read-only one is EINVAL. A device without any (mtty) passes with
/// nothing to check. On rmdev's serial cards the statistics region must be
/// there, and its first port's tx counter grows by N after N THR writes.
fn dev_regions(t: &mut Ktap, fd: &OwnedFd, num_regions: u32, serial: bool) {
    println!("# num_regions {num_regions}");
    let mut stats = None;
    for index in VFIO_PCI_NUM_REGIONS..num_regions.min(VFIO_PCI_NUM_REGIONS + 64) {
        let r = dev_region_info(fd, index);
        t.check(
            &format!("region {index}: FLAG_CAPS with a region-type capability"),
            matches!(r, Ok((f, _, _, Some(_))) if f & VFIO_REGION_INFO_FLAG_CAPS != 0),
            || format!("{r:x?}"),
        );
        let Ok((flags, size, off, kind)) = r else {
            continue;
        };
        println!("# region {index}: type {kind:x?} size {size} flags {flags:#x}");
        let n = size.min(4096) as usize;
        let mut buf = vec![0u8; n];
        let whole = pread(fd, &mut buf, off);
        let mut b4 = [0u8; 4];
        let last = pread(fd, &mut b4[..1], off + size - 1);
        t.check(
            &format!("region {index}: reads within bounds work"),
            whole == Ok(n) && last == Ok(1),
            || format!("{whole:?} {last:?}"),
        );
        let past = pread(fd, &mut b4[..1], off + size);
        let across = pread(fd, &mut b4, off + size - 2);
        t.check(
            &format!("region {index}: reads past or across the end are EINVAL"),
            past == Err(libc::EINVAL) && across == Err(libc::EINVAL),
            || format!("{past:?} {across:?}"),
        );
        if flags & VFIO_REGION_INFO_FLAG_WRITE == 0 {
            let w = pwrite(fd, &[0], off);
            t.check(
                &format!("region {index}: a write to a read-only region is EINVAL"),
                w == Err(libc::EINVAL),
                || format!("{w:?}"),
            );
        }
        if kind == Some(SERIAL_STATS) && stats.is_none() {
            stats = Some((off, size));
        }
    }
    if !serial {
        return;
    }
    t.check(
        "serial: GET_INFO counts a statistics region (vendor 0x4348, subtype 1)",
        stats.is_some(),
        || format!("num_regions {num_regions}"),
    );
    let (Some((off, size)), Some(bar0)) = (stats, region(fd, 0).map(|r| r.0)) else {
        return;
    };
    t.check(
        "serial statistics: 24 read-only bytes per port",
        size == 24 || size == 48,
        || format!("size {size}"),
    );
    let tx = || {
        let mut b = [0u8; 8];
        (pread(fd, &mut b, off) == Ok(8)).then(|| u64::from_le_bytes(b))
    };
    let before = tx();
    // Plain line settings, no interrupts; the bytes loop back and are read.
    let _ = pwrite(fd, &[0x03], bar0 + 3);
    let _ = pwrite(fd, &[0x00], bar0 + 1);
    const N: u64 = 5;
    for b in 0..N as u8 {
        let _ = pwrite(fd, &[b'0' + b], bar0);
    }
    let after = tx();
    let mut lsr = [0u8];
    let mut drained = 0;
    while pread(fd, &mut lsr, bar0 + 5) == Ok(1) && lsr[0] & 1 != 0 && drained < 64 {
        let _ = pread(fd, &mut [0u8], bar0);
        drained += 1;
    }
    t.check(
        "serial statistics: the tx counter grows by N after N THR writes",
        before.is_some() && after == before.map(|b| b + N),
        || format!("{before:?} -> {after:?}"),
    );
}

/// Region `index`'s (offset, size) from GET_REGION_INFO.
fn region(fd: &OwnedFd, index: u32) -> Option<(u64, u64)> {
    let mut ri = u32s(&[32, 0, index, 0], 32);
    ioctl_buf(fd, VFIO_DEVICE_GET_REGION_INFO, &mut ri).ok()?;
    Some((get64(&ri, 24), get64(&ri, 16)))
}

/// Guest-side abuse: every offset and size of every BAR and of config space,
/// read and written with patterns, plus DLAB toggles in the middle of a
/// transfer and a receive overrun. The device must answer in bounds, refuse
/// out of bounds with EINVAL, and work normally after a reset.
fn abuse(t: &mut Ktap, dev: &Dev) {
    let fd = &dev.fd;
    let mut bad = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for index in [0, 1, 2, 3, 4, 5, VFIO_PCI_CONFIG_REGION_INDEX] {
        let Some((base, size)) = region(fd, index) else {
            continue;
        };
        if size == 0 {
            continue;
        }
        for off in 0..size + 8 {
            for len in [1usize, 2, 3, 4, 8] {
                let inside = off + len as u64 <= size;
                let mut b = [0u8; 8];
                let r = pread(fd, &mut b[..len], base + off);
                if r != if inside { Ok(len) } else { Err(libc::EINVAL) } {
                    bad.push(format!("read region {index} off {off} len {len}: {r:?}"));
                }
                for pat in [0xffu8, 0x00, 0x80] {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let mut w = [pat; 8];
                    if pat == 0x80 {
                        w = seed.to_le_bytes();
                    }
                    let r = pwrite(fd, &w[..len], base + off);
                    if r != if inside { Ok(len) } else { Err(libc::EINVAL) } {
                        bad.push(format!("write region {index} off {off} len {len}: {r:?}"));
                    }
                }
            }
        }
    }
    t.check(
        "every offset and size of BARs and config is answered or refused with EINVAL",
        bad.is_empty(),
        || bad.iter().take(3).cloned().collect::<Vec<_>>().join("; "),
    );
    let r = ioctl_val(fd, VFIO_DEVICE_RESET, 0);
    t.check("RESET after the abuse succeeds", r.is_ok(), || {
        format!("{r:?}")
    });
    let Some((bar0, _)) = region(fd, 0) else {
        return;
    };
    // DLAB toggles in the middle of a transfer: bytes written with DLAB set
    // go to the divisor latch, the others loop back.
    let mut got = Vec::new();
    for (i, b) in b"rmdev-dlab".iter().enumerate() {
        let _ = pwrite(fd, &[if i % 3 == 1 { 0x83 } else { 0x03 }], bar0 + 3);
        let _ = pwrite(fd, &[*b], bar0);
    }
    let _ = pwrite(fd, &[0x03], bar0 + 3);
    let mut lsr = [0u8];
    while pread(fd, &mut lsr, bar0 + 5) == Ok(1) && lsr[0] & 1 != 0 && got.len() < 64 {
        let mut c = [0u8];
        let _ = pread(fd, &mut c, bar0);
        got.push(c[0]);
    }
    let want: Vec<u8> = b"rmdev-dlab"
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 1)
        .map(|(_, b)| *b)
        .collect();
    t.check(
        "DLAB toggles mid-transfer keep the other bytes intact",
        got == want,
        || format!("got {got:?} want {want:?}"),
    );
    // Overrun: 20 bytes into a 16-byte FIFO sets OE, keeps 16.
    for b in 0..20u8 {
        let _ = pwrite(fd, &[b], bar0);
    }
    let _ = pread(fd, &mut lsr, bar0 + 5);
    let mut n = 0;
    let mut l = [0u8];
    while pread(fd, &mut l, bar0 + 5) == Ok(1) && l[0] & 1 != 0 && n < 64 {
        let mut c = [0u8];
        let _ = pread(fd, &mut c, bar0);
        n += 1;
    }
    t.check(
        "a receive overrun sets LSR.OE and keeps the FIFO's 16 bytes",
        lsr[0] & 2 != 0 && n == 16,
        || format!("lsr {:#x}, {n} bytes", lsr[0]),
    );
    uart_irqs(t, fd, bar0);
}

/// The UART's own interrupts through INTx (level, automasked) and MSI (one
/// message per rising edge).
fn uart_irqs(t: &mut Ktap, fd: &OwnedFd, bar0: u64) {
    let trig_fd = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    let unmask = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK;
    let drain = || {
        let mut c = [0u8];
        for _ in 0..32 {
            let _ = pread(fd, &mut c, bar0);
        }
    };
    drain();
    let e = Efd::new();
    let _ = set_irqs(
        fd,
        trig_fd,
        VFIO_PCI_INTX_IRQ_INDEX,
        0,
        1,
        &e.raw().to_le_bytes(),
    );
    let _ = pwrite(fd, &[0x01], bar0 + 1); // IER: received data available.
    let _ = pwrite(fd, b"a", bar0);
    let n1 = e.take();
    let _ = pwrite(fd, b"b", bar0);
    let n2 = e.take();
    t.check(
        "received data raises INTx once, then INTx stays masked",
        (n1, n2) == (1, 0),
        || format!("counters {n1} {n2}"),
    );
    let _ = set_irqs(fd, unmask, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, &[]);
    let n = e.take();
    t.check(
        "unmasking a still-asserted INTx delivers it again",
        n == 1,
        || format!("counter {n}"),
    );
    drain();
    let _ = set_irqs(fd, unmask, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, &[]);
    let n = e.take();
    t.check(
        "unmasking after the cause is gone delivers nothing",
        n == 0,
        || format!("counter {n}"),
    );
    // INTx unmask through an irqfd: signalling the eventfd unmasks, as KVM
    // does when the guest acknowledges the interrupt.
    let u = Efd::new();
    let unmask_fd = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK;
    let r = set_irqs(
        fd,
        unmask_fd,
        VFIO_PCI_INTX_IRQ_INDEX,
        0,
        1,
        &u.raw().to_le_bytes(),
    );
    let r2 = set_irqs(
        fd,
        unmask_fd,
        VFIO_PCI_INTX_IRQ_INDEX,
        0,
        1,
        &u.raw().to_le_bytes(),
    );
    t.check(
        "an INTx unmask irqfd is armed; arming a second is EBUSY",
        r.is_ok() && r2 == Err(libc::EBUSY),
        || format!("{r:?} {r2:?}"),
    );
    let _ = pwrite(fd, b"e", bar0);
    let n1 = e.take();
    u.signal();
    let mut n2 = 0;
    for _ in 0..100 {
        n2 = e.take();
        if n2 != 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    t.check(
        "signalling the irqfd unmasks: the still-asserted INTx comes again",
        (n1, n2) == (1, 1),
        || format!("counters {n1} {n2}"),
    );
    let r = set_irqs(
        fd,
        unmask_fd,
        VFIO_PCI_INTX_IRQ_INDEX,
        0,
        1,
        &(-1i32).to_le_bytes(),
    );
    u.signal();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let n = e.take();
    t.check(
        "a disarmed irqfd unmasks nothing",
        r.is_ok() && n == 0,
        || format!("{r:?} counter {n}"),
    );
    drain();
    // INTx off (count 0 with DATA_NONE; a -1 eventfd would only clear the
    // trigger and leave INTx enabled, as with vfio-pci).
    let none = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
    let _ = set_irqs(fd, none, VFIO_PCI_INTX_IRQ_INDEX, 0, 0, &[]);

    let m = Efd::new();
    let r = set_irqs(
        fd,
        trig_fd,
        VFIO_PCI_MSI_IRQ_INDEX,
        0,
        1,
        &m.raw().to_le_bytes(),
    );
    t.check(
        "MSI trigger eventfd is assigned once INTx is off",
        r.is_ok(),
        || format!("{r:?}"),
    );
    let _ = pwrite(fd, b"c", bar0);
    let n1 = m.take();
    drain();
    let _ = pwrite(fd, b"d", bar0);
    let n2 = m.take();
    t.check("each new cause sends one MSI", (n1, n2) == (1, 1), || {
        format!("counters {n1} {n2}")
    });
    let _ = set_irqs(fd, none, VFIO_PCI_MSI_IRQ_INDEX, 0, 0, &[]);
    let _ = pwrite(fd, &[0x00], bar0 + 1);
    drain();
}

fn checks(t: &mut Ktap, dev: &Dev) {
    let fd = &dev.fd;
    let mut info = u32s(&[16], 16);
    let r = ioctl_buf(fd, VFIO_DEVICE_GET_INFO, &mut info);
    t.check(
        "GET_INFO reports a PCI device",
        r.is_ok() && get32(&info, 4) & VFIO_DEVICE_FLAGS_PCI != 0,
        || format!("{r:?} flags {:#x}", get32(&info, 4)),
    );
    t.check(
        "GET_INFO counts the regions and IRQ indexes QEMU needs",
        get32(&info, 8) >= VFIO_PCI_NUM_REGIONS && get32(&info, 12) > VFIO_PCI_MSIX_IRQ_INDEX,
        || format!("regions {} irqs {}", get32(&info, 8), get32(&info, 12)),
    );
    let mut short = u32s(&[15], 16);
    let r = ioctl_buf(fd, VFIO_DEVICE_GET_INFO, &mut short);
    t.check(
        "GET_INFO with argsz below minsz is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );

    let mut ri = u32s(&[32, 0, VFIO_PCI_CONFIG_REGION_INDEX, 0], 32);
    let r = ioctl_buf(fd, VFIO_DEVICE_GET_REGION_INFO, &mut ri);
    let (size, offset) = (get64(&ri, 16), get64(&ri, 24));
    t.check(
        "config region is at least 256 bytes",
        r.is_ok() && size >= 256,
        || format!("{r:?} size {size}"),
    );
    let mut bad = u32s(&[32, 0, 1000, 0], 32);
    let r = ioctl_buf(fd, VFIO_DEVICE_GET_REGION_INFO, &mut bad);
    t.check(
        "REGION_INFO of a region that does not exist is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );

    let mut cfg = [0u8; 64];
    let r = pread(fd, &mut cfg, offset);
    t.check("config space header reads", r == Ok(64), || {
        format!("{r:?}")
    });
    let ids = get32(&cfg, 0);
    t.check(
        "config space has a vendor ID",
        ids & 0xffff != 0 && ids & 0xffff != 0xffff,
        || format!("ids {ids:#x}"),
    );
    println!(
        "# device {:04x}:{:04x} class {:06x}",
        ids & 0xffff,
        ids >> 16,
        get32(&cfg, 8) >> 8
    );
    let mut b4 = [0u8; 4];
    let r = pread(fd, &mut b4, offset + size - 2);
    t.check(
        "config read across the end is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    let r = pread(fd, &mut b4, offset + size);
    t.check(
        "config read past the end is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );

    config_perms(t, fd, offset);
    express::checks(t, fd, offset, size);
    let serial = ids == 0x3253_4348 && t.target != "mtty";
    dev_regions(t, fd, get32(&info, 8), serial);

    let mut irq = u32s(&[16, 0, VFIO_PCI_INTX_IRQ_INDEX, 0], 16);
    let r = ioctl_buf(fd, VFIO_DEVICE_GET_IRQ_INFO, &mut irq);
    t.check(
        "INTx is an eventfd interrupt",
        r.is_ok() && get32(&irq, 4) & VFIO_IRQ_INFO_EVENTFD != 0,
        || format!("{r:?} flags {:#x}", get32(&irq, 4)),
    );

    let r = ioctl_val(fd, VFIO_DEVICE_RESET, 0);
    t.check("RESET succeeds", r.is_ok(), || format!("{r:?}"));
    let r = ioctl_val(fd, io(99), 0);
    t.check("an unknown ioctl is ENOTTY", r == Err(libc::ENOTTY), || {
        format!("{r:?}")
    });
    irq_checks(t, fd);
    faults::checks(t, fd);
}

const VFIO_IRQ_SET_DATA_NONE: u32 = 1;
const VFIO_IRQ_SET_DATA_BOOL: u32 = 1 << 1;
const VFIO_IRQ_SET_ACTION_UNMASK: u32 = 1 << 4;
const VFIO_PCI_MSI_IRQ_INDEX: u32 = 1;
const VFIO_IRQ_INFO_MASKABLE: u32 = 1 << 1;
const VFIO_IRQ_INFO_AUTOMASKED: u32 = 1 << 2;

/// An eventfd owned by the test.
struct Efd(OwnedFd);

impl Efd {
    fn new() -> Self {
        // SAFETY: eventfd has no memory preconditions.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(fd >= 0, "eventfd");
        // SAFETY: `fd` is new and ours.
        Efd(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// The counter, read and reset (0 if nothing was signalled).
    fn take(&self) -> u64 {
        let mut v = [0u8; 8];
        // SAFETY: `v` is valid for 8 bytes.
        let r = unsafe { libc::read(self.0.as_raw_fd(), v.as_mut_ptr().cast(), 8) };
        if r == 8 {
            u64::from_le_bytes(v)
        } else {
            0
        }
    }

    fn raw(&self) -> u32 {
        self.0.as_raw_fd() as u32
    }

    /// Adds one to the counter, as a signaller does.
    fn signal(&self) {
        let v = 1u64.to_le_bytes();
        // SAFETY: `v` is valid for 8 bytes.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), v.as_ptr().cast(), 8) };
    }
}

/// `VFIO_DEVICE_SET_IRQS` with `words` after the header's argsz.
fn set_irqs(
    fd: &OwnedFd,
    flags: u32,
    index: u32,
    start: u32,
    count: u32,
    data: &[u8],
) -> Result<i32, i32> {
    let argsz = 20 + data.len();
    let mut b = u32s(&[argsz as u32, flags, index, start, count], argsz);
    b[20..].copy_from_slice(data);
    ioctl_buf(fd, VFIO_DEVICE_SET_IRQS, &mut b)
}

/// The `SET_IRQS` matrix on the INTx, MSI and REQ indexes, with loopback
/// triggers that must make the eventfds readable.
fn irq_checks(t: &mut Ktap, fd: &OwnedFd) {
    let info = |index: u32| {
        let mut b = u32s(&[16, 0, index, 0], 16);
        ioctl_buf(fd, VFIO_DEVICE_GET_IRQ_INFO, &mut b).map(|_| (get32(&b, 4), get32(&b, 12)))
    };
    let intx = info(VFIO_PCI_INTX_IRQ_INDEX);
    t.check(
        "INTx is one maskable, automasked interrupt",
        matches!(intx, Ok((f, 1)) if f & (VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED) == 6),
        || format!("{intx:?}"),
    );
    let r = info(5);
    t.check(
        "IRQ_INFO of index 5 is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    let mut short = u32s(&[15, 0, 0, 0], 16);
    let r = ioctl_buf(fd, VFIO_DEVICE_GET_IRQ_INFO, &mut short);
    t.check(
        "IRQ_INFO with argsz below minsz is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );

    let trig_fd = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    let trig_none = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
    let trig_bool = VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER;
    let mut hdr = u32s(&[19, trig_none, 0, 0, 1], 20);
    let r = ioctl_buf(fd, VFIO_DEVICE_SET_IRQS, &mut hdr);
    t.check(
        "SET_IRQS with argsz below minsz is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    let r = set_irqs(fd, trig_fd | VFIO_IRQ_SET_DATA_BOOL, 0, 0, 1, &[0; 4]);
    t.check(
        "SET_IRQS with two data types is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    let r = set_irqs(fd, trig_none | VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1, &[]);
    t.check(
        "SET_IRQS with two actions is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    let r = set_irqs(fd, trig_none, 5, 0, 1, &[]);
    t.check(
        "SET_IRQS on index 5 is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    let r = set_irqs(fd, trig_none, 0, 1, 1, &[]);
    t.check(
        "SET_IRQS past the index's count is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    let r = set_irqs(fd, trig_fd, 0, 0, 1, &[]);
    t.check(
        "SET_IRQS without room for the eventfd is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    let r = set_irqs(fd, trig_fd, 0, 0, 1, &9999i32.to_le_bytes());
    t.check(
        "SET_IRQS with a descriptor that is not open is EBADF",
        r == Err(libc::EBADF),
        || format!("{r:?}"),
    );

    // INTx: assign, loop back, de-assign.
    let e = Efd::new();
    let r = set_irqs(fd, trig_fd, 0, 0, 1, &e.raw().to_le_bytes());
    t.check("INTx trigger eventfd is assigned", r.is_ok(), || {
        format!("{r:?}")
    });
    let _ = set_irqs(fd, trig_none, 0, 0, 1, &[]);
    let n = e.take();
    t.check(
        "a DATA_NONE trigger makes the INTx eventfd readable",
        n == 1,
        || format!("counter {n}"),
    );
    let _ = set_irqs(fd, trig_bool, 0, 0, 1, &[0]);
    let n = e.take();
    t.check("a DATA_BOOL trigger of 0 does not fire", n == 0, || {
        format!("counter {n}")
    });
    let _ = set_irqs(fd, trig_bool, 0, 0, 1, &[1]);
    let n = e.take();
    t.check("a DATA_BOOL trigger of 1 fires", n == 1, || {
        format!("counter {n}")
    });
    let r = set_irqs(
        fd,
        trig_fd,
        VFIO_PCI_MSI_IRQ_INDEX,
        0,
        1,
        &Efd::new().raw().to_le_bytes(),
    );
    t.check(
        "enabling MSI while INTx is enabled is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    let r = set_irqs(fd, trig_fd, 0, 0, 1, &(-1i32).to_le_bytes());
    t.check("fd -1 de-assigns the INTx trigger", r.is_ok(), || {
        format!("{r:?}")
    });
    let _ = set_irqs(fd, trig_none, 0, 0, 1, &[]);
    let n = e.take();
    t.check("a de-assigned trigger no longer fires", n == 0, || {
        format!("counter {n}")
    });
    let r = set_irqs(fd, trig_none, 0, 0, 0, &[]);
    t.check(
        "count 0 with DATA_NONE disables the index",
        r.is_ok(),
        || format!("{r:?}"),
    );

    // REQ: assign and loop back.
    let q = Efd::new();
    let r = set_irqs(
        fd,
        trig_fd,
        VFIO_PCI_REQ_IRQ_INDEX,
        0,
        1,
        &q.raw().to_le_bytes(),
    );
    t.check("REQ trigger eventfd is assigned", r.is_ok(), || {
        format!("{r:?}")
    });
    let _ = set_irqs(fd, trig_none, VFIO_PCI_REQ_IRQ_INDEX, 0, 1, &[]);
    let n = q.take();
    t.check(
        "a DATA_NONE trigger makes the REQ eventfd readable",
        n == 1,
        || format!("counter {n}"),
    );
    let _ = set_irqs(fd, trig_none, VFIO_PCI_REQ_IRQ_INDEX, 0, 0, &[]);
}

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    let mut t = Ktap {
        failed: 0,
        known: &[],
        target: "",
    };
    if args.get(1).map(String::as_str) == Some("--reference=mtty") {
        args.remove(1);
        t.known = [MTTY_DEVIATIONS, mig::MTTY_DEVIATIONS].concat().leak();
        t.target = "mtty";
    }
    match args.iter().map(String::as_str).collect::<Vec<_>>()[1..] {
        ["check", how @ ("group" | "cdev"), sysfs] => {
            let dev = if how == "group" {
                open_group(&mut t, sysfs)
            } else {
                open_cdev(&mut t, sysfs)
            };
            t.check(
                &format!("device opens through the {how} path"),
                dev.is_some(),
                || "see above".into(),
            );
            if let Some(dev) = dev {
                checks(&mut t, &dev);
            }
        }
        ["abuse", sysfs] => {
            let dev = open_group(&mut t, sysfs);
            t.check("device opens for the abuse test", dev.is_some(), || {
                "see above".into()
            });
            if let Some(dev) = dev {
                abuse(&mut t, &dev);
            }
        }
        ["mig", src, dst, ref rest @ ..] if rest.len() <= 1 => {
            mig::run(&mut t, src, dst, rest.first().copied());
        }
        ["hold", sysfs] => {
            let dev = open_group(&mut t, sysfs);
            if dev.is_none() {
                eprintln!("vfio-test: cannot open {sysfs}");
                std::process::exit(1);
            }
            println!("held");
            let _ = io::stdout().flush();
            let mut sink = Vec::new();
            let _ = io::stdin().read_to_end(&mut sink);
            return;
        }
        ["req", sysfs] => {
            let Some(dev) = open_group(&mut t, sysfs) else {
                eprintln!("vfio-test: cannot open {sysfs}");
                std::process::exit(1);
            };
            // SAFETY: eventfd has no memory preconditions.
            let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
            if efd < 0 {
                std::process::exit(1);
            }
            let mut set = u32s(
                &[
                    24,
                    VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
                    VFIO_PCI_REQ_IRQ_INDEX,
                    0,
                    1,
                    efd as u32,
                ],
                24,
            );
            if let Err(e) = ioctl_buf(&dev.fd, VFIO_DEVICE_SET_IRQS, &mut set) {
                eprintln!("vfio-test: SET_IRQS REQ: errno {e}");
                std::process::exit(1);
            }
            println!("held");
            let _ = io::stdout().flush();
            let mut pfd = libc::pollfd {
                fd: efd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `pfd` is one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, 120_000) };
            println!("{}", if r == 1 { "req" } else { "timeout" });
            let _ = io::stdout().flush();
            drop(dev);
            // SAFETY: `efd` is ours and closed once.
            unsafe { libc::close(efd) };
            return;
        }
        _ => {
            eprintln!(
                "usage: vfio-test check group|cdev SYSFSDEV | abuse SYSFSDEV | mig SRC DST [ONEPORT] | hold SYSFSDEV | req SYSFSDEV"
            );
            std::process::exit(2);
        }
    }
    std::process::exit(if t.failed == 0 { 0 } else { 1 });
}
