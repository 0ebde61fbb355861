// SPDX-License-Identifier: GPL-2.0

//! Opening a device through the legacy group and type1 container or through
//! its iommufd character device, and the system calls the checks make on
//! it: ioctls with uAPI structs, `pread` and `pwrite`.

use crate::ktap::Ktap;
use std::ffi::CString;
use std::fs;
use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use vfio_uapi::{
    argsz, iommu_ioas_alloc, vfio_device_attach_iommufd_pt, vfio_device_bind_iommufd,
    vfio_group_status, Arg, Plain, VFIO_TYPE1v2_IOMMU, IOMMU_IOAS_ALLOC,
    VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_RESET,
    VFIO_GET_API_VERSION, VFIO_GROUP_FLAGS_VIABLE, VFIO_GROUP_GET_DEVICE_FD, VFIO_GROUP_GET_STATUS,
    VFIO_GROUP_SET_CONTAINER, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU,
};

/// An ioctl request number no VFIO ioctl has: the one below the first.
pub(crate) const UNKNOWN_IOCTL: libc::c_ulong = VFIO_GET_API_VERSION - 1;

pub(crate) fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

pub(crate) fn open(path: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is a valid C string; open has no other preconditions.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn result(r: libc::c_int) -> Result<i32, i32> {
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

/// `ioctl(fd, req, arg)` on a uAPI struct; returns the result or the errno.
pub(crate) fn ioctl_arg<T: Plain>(
    fd: &OwnedFd,
    req: libc::c_ulong,
    arg: &mut T,
) -> Result<i32, i32> {
    // SAFETY: `arg` is valid for reads and writes of a whole `T`; the kernel
    // reads at most `argsz` bytes, which the callers keep within it.
    result(unsafe { libc::ioctl(fd.as_raw_fd(), req, std::ptr::from_mut(arg)) })
}

/// `ioctl(fd, req, arg)` on a uAPI struct followed by data.
pub(crate) fn ioctl_buf<T: Plain>(
    fd: &OwnedFd,
    req: libc::c_ulong,
    arg: &mut Arg<T>,
) -> Result<i32, i32> {
    // SAFETY: The argument is valid for `arg.len()` bytes; the kernel reads
    // at most `argsz` bytes, which the callers keep within it.
    result(unsafe { libc::ioctl(fd.as_raw_fd(), req, arg.as_mut_ptr()) })
}

pub(crate) fn ioctl_val(fd: &OwnedFd, req: libc::c_ulong, val: libc::c_ulong) -> Result<i32, i32> {
    // SAFETY: These requests take an integer argument.
    result(unsafe { libc::ioctl(fd.as_raw_fd(), req, val) })
}

pub(crate) fn pread(fd: &OwnedFd, buf: &mut [u8], off: u64) -> Result<usize, i32> {
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

pub(crate) fn pwrite(fd: &OwnedFd, buf: &[u8], off: u64) -> Result<usize, i32> {
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

/// An open device and what keeps it open.
pub(crate) struct Dev {
    pub(crate) fd: OwnedFd,
    _keep: Vec<OwnedFd>,
}

pub(crate) fn open_group(t: &mut Ktap, sysfs: &str) -> Option<Dev> {
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
    let mut st = vfio_group_status {
        argsz: argsz::<vfio_group_status>(),
        ..Default::default()
    };
    let r = ioctl_arg(&gfd, VFIO_GROUP_GET_STATUS, &mut st);
    t.check(
        "group is viable",
        r.is_ok() && st.flags & VFIO_GROUP_FLAGS_VIABLE != 0,
        || format!("{r:?} flags {:#x}", st.flags),
    );
    let mut cfd = container.as_raw_fd();
    // SAFETY: The argument points to an int holding the container fd.
    let r = unsafe { libc::ioctl(gfd.as_raw_fd(), VFIO_GROUP_SET_CONTAINER, &mut cfd) };
    t.check("group joins the container", r == 0, || {
        format!("errno {}", errno())
    });
    let r = ioctl_val(&container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU.into())
        .or_else(|_| ioctl_val(&container, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU.into()));
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

pub(crate) fn open_cdev(t: &mut Ktap, sysfs: &str) -> Option<Dev> {
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
    // The argument sizes are the kernel's minimum: up to the fields the
    // kernel has always read (no token, no PASID).
    let mut bind = vfio_device_bind_iommufd {
        argsz: offset_of!(vfio_device_bind_iommufd, token_uuid_ptr) as u32,
        iommufd: iommufd.as_raw_fd(),
        ..Default::default()
    };
    let r = ioctl_arg(&dfd, VFIO_DEVICE_BIND_IOMMUFD, &mut bind);
    t.check("cdev binds to iommufd", r.is_ok(), || format!("{r:?}"));
    let mut ioas = iommu_ioas_alloc {
        size: size_of::<iommu_ioas_alloc>() as u32,
        ..Default::default()
    };
    let r = ioctl_arg(&iommufd, IOMMU_IOAS_ALLOC, &mut ioas);
    t.check("iommufd allocates an IOAS", r.is_ok(), || format!("{r:?}"));
    let mut att = vfio_device_attach_iommufd_pt {
        argsz: offset_of!(vfio_device_attach_iommufd_pt, pasid) as u32,
        pt_id: ioas.out_ioas_id,
        ..Default::default()
    };
    let r = ioctl_arg(&dfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &mut att);
    t.check("cdev attaches to the IOAS", r.is_ok(), || format!("{r:?}"));
    Some(Dev {
        fd: dfd,
        _keep: vec![iommufd],
    })
}

/// `VFIO_DEVICE_RESET` and an ioctl VFIO does not have.
pub(crate) fn ioctls(t: &mut Ktap, fd: &OwnedFd) {
    let r = ioctl_val(fd, VFIO_DEVICE_RESET, 0);
    t.check("RESET succeeds", r.is_ok(), || format!("{r:?}"));
    let r = ioctl_val(fd, UNKNOWN_IOCTL, 0);
    t.check("an unknown ioctl is ENOTTY", r == Err(libc::ENOTTY), || {
        format!("{r:?}")
    });
}
