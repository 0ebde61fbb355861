// SPDX-License-Identifier: GPL-2.0

//! VFIO and iommufd uAPI numbers, written out from `include/uapi/linux/vfio.h`
//! and `iommufd.h` rather than taken from the driver, so that a wrong number
//! in the driver cannot hide itself. Shared by the userspace tools; each uses
//! a part of the table.

#![allow(dead_code)]

/// `_IO(';', nr)`: VFIO and iommufd share the type letter.
pub const fn io(nr: u32) -> libc::c_ulong {
    ((b';' as u32) << 8 | nr) as libc::c_ulong
}

pub const VFIO_GET_API_VERSION: libc::c_ulong = io(100);
pub const VFIO_SET_IOMMU: libc::c_ulong = io(102);
pub const VFIO_GROUP_GET_STATUS: libc::c_ulong = io(103);
pub const VFIO_GROUP_SET_CONTAINER: libc::c_ulong = io(104);
pub const VFIO_GROUP_GET_DEVICE_FD: libc::c_ulong = io(106);
pub const VFIO_DEVICE_GET_INFO: libc::c_ulong = io(107);
pub const VFIO_DEVICE_GET_REGION_INFO: libc::c_ulong = io(108);
pub const VFIO_DEVICE_GET_IRQ_INFO: libc::c_ulong = io(109);
pub const VFIO_DEVICE_SET_IRQS: libc::c_ulong = io(110);
pub const VFIO_DEVICE_RESET: libc::c_ulong = io(111);
pub const VFIO_DEVICE_BIND_IOMMUFD: libc::c_ulong = io(118);
pub const VFIO_DEVICE_ATTACH_IOMMUFD_PT: libc::c_ulong = io(119);
pub const IOMMU_IOAS_ALLOC: libc::c_ulong = io(0x81);
