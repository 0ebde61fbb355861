// SPDX-License-Identifier: GPL-2.0

//! Bounds and bad pointers: positions that wrap or name no region, zero
//! lengths, and ioctl arguments or read buffers the kernel cannot reach
//! (`EFAULT`), plus `VFIO_DEVICE_FEATURE`'s header checks.

use crate::dev::{errno, pread};
use crate::ktap::Ktap;
use crate::regions::region;
use std::os::fd::{AsRawFd, OwnedFd};
use vfio_uapi::{
    argsz, vfio_device_feature, Arg, VFIO_DEVICE_FEATURE, VFIO_DEVICE_FEATURE_GET,
    VFIO_DEVICE_FEATURE_MASK, VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_IRQ_INFO, VFIO_DEVICE_SET_IRQS,
    VFIO_PCI_CONFIG_REGION_INDEX,
};

/// `ioctl(fd, req, addr)` with a raw address; the errno, or 0.
fn ioctl_addr(fd: &OwnedFd, req: libc::c_ulong, addr: usize) -> i32 {
    // SAFETY: The kernel checks the address; an unmapped one is EFAULT.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, addr as *mut libc::c_void) };
    if r < 0 {
        errno()
    } else {
        0
    }
}

pub(crate) fn checks(t: &mut Ktap, fd: &OwnedFd) {
    let Some((cfg, size)) = region(fd, VFIO_PCI_CONFIG_REGION_INDEX) else {
        return;
    };
    let mut b = [0u8; 4];
    // The last byte of the config region's 2^40-byte window.
    let top = cfg + (1u64 << 40) - 1;
    let name = "a read at the top of a region's window is EINVAL";
    if t.target == "mtty" {
        // mtty does not bound this offset: its mdev_access() copies from
        // far past its config buffer and the kernel oopses (seen on 7.2.13).
        t.skip(name, "mtty reads out of bounds here and oopses");
    } else {
        let r = pread(fd, &mut b, top);
        t.check(name, r == Err(libc::EINVAL), || format!("{r:?}"));
    }
    let r = pread(fd, &mut b, 0x7fff_ffff_ffff_fffe);
    t.check(
        "a read whose position + count wraps is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    let r = pread(fd, &mut b, 40u64 << 40);
    t.check(
        "a read of a region index past the last is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    let r = pread(fd, &mut [], cfg);
    let r2 = pread(fd, &mut [], cfg + size);
    t.check(
        "a zero-length read inside a region returns 0",
        r == Ok(0) && r2.is_ok_and(|n| n == 0) || r2 == Err(libc::EINVAL),
        || format!("{r:?} {r2:?}"),
    );
    // SAFETY: A read into an address nothing is mapped at: the kernel must
    // refuse it with EFAULT rather than write anywhere.
    let r = unsafe { libc::pread(fd.as_raw_fd(), 8 as *mut libc::c_void, 4, cfg as i64) };
    let e = errno();
    t.check(
        "a read into an unmapped buffer is EFAULT",
        r < 0 && e == libc::EFAULT,
        || format!("{r} errno {e}"),
    );
    for (name, req) in [
        ("GET_INFO", VFIO_DEVICE_GET_INFO),
        ("GET_IRQ_INFO", VFIO_DEVICE_GET_IRQ_INFO),
        ("SET_IRQS", VFIO_DEVICE_SET_IRQS),
        ("DEVICE_FEATURE", VFIO_DEVICE_FEATURE),
    ] {
        let e = ioctl_addr(fd, req, 8);
        t.check(
            &format!("{name} with an unmapped argument is EFAULT"),
            e == libc::EFAULT,
            || format!("errno {e}"),
        );
    }
    // A header and eight bytes of data, with `argsz` and `flags` as given.
    let feature = |argsz: u32, flags: u32| {
        let head = vfio_device_feature {
            argsz,
            flags,
            ..Default::default()
        };
        let mut arg = Arg::new(head, &[0; 8]);
        ioctl_addr(fd, VFIO_DEVICE_FEATURE, arg.as_mut_ptr() as usize)
    };
    let get = VFIO_DEVICE_FEATURE_GET;
    let e = feature(argsz::<vfio_device_feature>() - 4, get);
    t.check(
        "DEVICE_FEATURE with argsz below its header is EINVAL",
        e == libc::EINVAL,
        || format!("errno {e}"),
    );
    // A flag bit above the ones the uAPI defines.
    let unknown_flag = VFIO_DEVICE_FEATURE_GET << 4;
    let e = feature(16, get | unknown_flag);
    t.check(
        "DEVICE_FEATURE with unknown flag bits is EINVAL",
        e == libc::EINVAL,
        || format!("errno {e}"),
    );
    // A feature index far above the ones the uAPI defines.
    let e = feature(16, get | (0x7ff0 & VFIO_DEVICE_FEATURE_MASK));
    t.check(
        "DEVICE_FEATURE of an unknown feature is ENOTTY",
        e == libc::ENOTTY,
        || format!("errno {e}"),
    );
}
