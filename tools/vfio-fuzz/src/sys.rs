// SPDX-License-Identifier: GPL-2.0

//! The system calls the fuzzer makes, each returning its result or errno,
//! and opening a device through its VFIO group and a type1 container (as
//! `tools/vfio-test` does, without the checks).

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use vfio_uapi::{
    VFIO_TYPE1v2_IOMMU, VFIO_GROUP_GET_DEVICE_FD, VFIO_GROUP_SET_CONTAINER, VFIO_SET_IOMMU,
    VFIO_TYPE1_IOMMU,
};

/// A system call's result: its non-negative return value, or the errno.
pub(crate) type Sys = Result<i64, i32>;

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn res(r: i64) -> Sys {
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

/// `ioctl(fd, req, arg)` with the argument as a raw address.
pub(crate) fn ioctl(fd: RawFd, req: libc::c_ulong, arg: usize) -> Sys {
    // SAFETY: The callers pass the address of a buffer of theirs large
    // enough for what the request makes the kernel write (at most the
    // `argsz` they set, which never exceeds the buffer), or an address
    // nothing is mapped at, which the kernel refuses with EFAULT.
    res(unsafe { libc::ioctl(fd, req, arg as *mut libc::c_void) }.into())
}

/// `pread(fd, addr, len, pos)`.
pub(crate) fn pread(fd: RawFd, addr: usize, len: usize, pos: i64) -> Sys {
    // SAFETY: `addr` is a buffer of the caller valid for `len` bytes, or an
    // unmapped address the kernel refuses with EFAULT.
    res(unsafe { libc::pread(fd, addr as *mut libc::c_void, len, pos) } as i64)
}

/// `pwrite(fd, addr, len, pos)`.
pub(crate) fn pwrite(fd: RawFd, addr: usize, len: usize, pos: i64) -> Sys {
    // SAFETY: As for `pread`; the kernel only reads the buffer.
    res(unsafe { libc::pwrite(fd, addr as *const libc::c_void, len, pos) } as i64)
}

/// `read(fd, addr, len)`.
pub(crate) fn read(fd: RawFd, buf: &mut [u8]) -> Sys {
    // SAFETY: `buf` is valid for writes of its length.
    res(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } as i64)
}

/// `write(fd, addr, len)`.
pub(crate) fn write(fd: RawFd, buf: &[u8]) -> Sys {
    // SAFETY: `buf` is valid for reads of its length.
    res(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) } as i64)
}

/// A new eventfd.
pub(crate) fn eventfd() -> Option<OwnedFd> {
    // SAFETY: eventfd has no memory preconditions.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    // SAFETY: A non-negative `fd` is new and ours.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Takes ownership of a descriptor the kernel installed for us.
pub(crate) fn own(fd: i32) -> Option<OwnedFd> {
    // SAFETY: The callers pass only descriptors the kernel just returned
    // to this thread (a device fd or a migration data fd), owned by nobody.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A shared mapping of `len` bytes of `fd` at `off`, touched page by page
/// (read and written) and unmapped. `Ok(0)` if it mapped.
pub(crate) fn mmap_touch(fd: RawFd, len: usize, off: i64, shared: bool, page: usize) -> Sys {
    let flags = if shared {
        libc::MAP_SHARED
    } else {
        libc::MAP_PRIVATE
    };
    // SAFETY: A new mapping at an address the kernel chooses; no existing
    // memory is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            fd,
            off,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(errno());
    }
    let base = p.cast::<u8>();
    let mut at = 0;
    while at < len {
        // SAFETY: `at < len`, inside the mapping just made, readable and
        // writable; volatile, so the accesses really happen.
        unsafe {
            let q = base.add(at);
            let v = q.read_volatile();
            q.write_volatile(v.wrapping_add(1));
        }
        at += page;
    }
    // SAFETY: The mapping made above, unmapped once.
    res(unsafe { libc::munmap(p, len) }.into())
}

fn open(path: &str) -> io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is a valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    own(fd).ok_or_else(io::Error::last_os_error)
}

/// A device's VFIO group in a type1 container, which hand out device fds.
pub(crate) struct Group {
    group: OwnedFd,
    _container: OwnedFd,
    name: CString,
}

impl Group {
    /// The group of the device at sysfs path `sysfs`, joined to a new
    /// container with a type1 IOMMU.
    pub(crate) fn open(sysfs: &str) -> Result<Self, String> {
        let link = fs::read_link(Path::new(sysfs).join("iommu_group"))
            .map_err(|e| format!("{sysfs}/iommu_group: {e}"))?;
        let num = link
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or("iommu_group link without a name")?;
        let container = open("/dev/vfio/vfio").map_err(|e| format!("/dev/vfio/vfio: {e}"))?;
        let group = open(&format!("/dev/vfio/{num}")).map_err(|e| format!("group {num}: {e}"))?;
        let cfd = container.as_raw_fd();
        ioctl(
            group.as_raw_fd(),
            VFIO_GROUP_SET_CONTAINER,
            std::ptr::from_ref(&cfd) as usize,
        )
        .map_err(|e| format!("GROUP_SET_CONTAINER: errno {e}"))?;
        let c = container.as_raw_fd();
        ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU as usize)
            .or_else(|_| ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU as usize))
            .map_err(|e| format!("SET_IOMMU: errno {e}"))?;
        let name = Path::new(sysfs)
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| CString::new(n).ok())
            .ok_or("bad device path")?;
        Ok(Self {
            group,
            _container: container,
            name,
        })
    }

    /// A new device fd (`VFIO_GROUP_GET_DEVICE_FD`).
    pub(crate) fn device(&self) -> Result<OwnedFd, i32> {
        let r = ioctl(
            self.group.as_raw_fd(),
            VFIO_GROUP_GET_DEVICE_FD,
            self.name.as_ptr() as usize,
        )?;
        own(r as i32).ok_or(libc::EBADF)
    }
}
