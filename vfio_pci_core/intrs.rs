// SPDX-License-Identifier: GPL-2.0

//! Interrupt ioctls: `VFIO_DEVICE_GET_IRQ_INFO` and `VFIO_DEVICE_SET_IRQS`.
//!
//! The state machine and what `SET_IRQS` does are kernel-free and
//! host-tested ([`super::emul::intrs`]); this file adapts them to the
//! kernel: it copies the arguments from userspace as the uAPI structs, takes
//! eventfd references from descriptors, and supplies the lock and the INTx
//! unmask irqfd.

use super::{
    emul::{
        intrs::{self, IrqArgs, IrqHost, Signal, VECTORS},
        irq::{self, check_set, IrqData, IrqInfo, IrqSetHdr},
        uapi::*,
    },
    kerr, Ctx, Inner, PciCore, PciDevice,
};
use crate::ffi::{bindings as vb, eventfd::EventFd, vfio::IrqfdHandler, vfio::UserBuf};
use kernel::{prelude::*, sync::SpinLock};

// The model's mirror of the header is the uAPI struct's fixed part.
const _: () = assert!(size_of::<IrqSetHdr>() == size_of::<vb::vfio_irq_set>());
const _: () = assert!(size_of::<vb::vfio_irq_info>() == IRQ_INFO_MINSZ);

impl Signal for EventFd {
    #[inline]
    fn signal(&self) {
        EventFd::signal(self);
    }
}

impl<S: Send + Unpin> IrqfdHandler for SpinLock<Inner<S>> {
    /// The INTx unmask irqfd fired: unmask, and deliver a line still
    /// asserted (level semantics).
    fn irqfd_fired(&self) {
        self.lock().ctx.unmask_intx();
    }
}

impl<D: PciDevice> IrqHost for PciCore<D> {
    type Fd = EventFd;
    type Error = Error;

    fn eventfd(&self, fd: i32) -> Result<EventFd> {
        EventFd::from_fd(fd)
    }

    fn locked<R>(&self, f: impl FnOnce(&mut Ctx) -> R) -> R {
        f(&mut self.sh.inner.lock().ctx)
    }

    fn arm_unmask(&self, fd: i32) -> Result {
        self.sh.inner.arm(fd)
    }

    fn disarm_unmask(&self) {
        self.sh.inner.disarm();
    }
}

impl<D: PciDevice> PciCore<D> {
    /// What `VFIO_DEVICE_GET_IRQ_INFO` reports for interrupt index `index`.
    pub(super) fn irq_info(&self, index: u32) -> Option<IrqInfo> {
        let msix = self.msix.as_ref().map_or(0, |l| l.vectors);
        irq::irq_info(index, &self.reset_cfg, self.sh.dev.msi_vectors(), msix)
    }

    /// `VFIO_DEVICE_GET_IRQ_INFO`.
    pub(super) fn get_irq_info(&self, arg: usize) -> Result<isize> {
        let u = UserBuf::new(arg, IRQ_INFO_MINSZ);
        let mut info: vb::vfio_irq_info = u.read_obj()?;
        if (info.argsz as usize) < IRQ_INFO_MINSZ {
            return Err(EINVAL);
        }
        let i = self.irq_info(info.index).ok_or(EINVAL)?;
        info.flags = i.flags;
        info.count = i.count;
        u.write_obj(&info)?;
        Ok(0)
    }

    /// `VFIO_DEVICE_SET_IRQS`: the header and data are copied and checked
    /// here, and the model does the rest ([`intrs::set_irqs`]).
    pub(super) fn set_irqs(&self, arg: usize) -> Result<isize> {
        let h: vb::vfio_irq_set = UserBuf::new(arg, IRQ_SET_MINSZ).read_obj()?;
        let hdr = IrqSetHdr {
            argsz: h.argsz,
            flags: h.flags,
            index: h.index,
            start: h.start,
            count: h.count,
        };
        let s = check_set(&hdr, |i| self.irq_info(i).map_or(0, |x| x.count)).map_err(kerr)?;
        // At most one 4-byte eventfd per vector: no allocation needed.
        let data = UserBuf::new(arg.wrapping_add(IRQ_SET_MINSZ), s.data_size);
        let mut fds = [0i32; VECTORS];
        let mut bools = [0u8; 4 * VECTORS];
        let args = match s.data {
            IrqData::None => IrqArgs::None,
            IrqData::Bool => {
                let b = bools.get_mut(..s.data_size).ok_or(EINVAL)?;
                data.read(b)?;
                IrqArgs::Bool(b)
            }
            IrqData::EventFd => {
                if s.data_size > size_of_val(&fds) {
                    return Err(EINVAL);
                }
                fds = data.read_obj()?;
                IrqArgs::Fds(fds.get(..s.count as usize).ok_or(EINVAL)?)
            }
        };
        // One SET_IRQS at a time, as vfio-pci's igate: the irqfd arming and
        // the mode it depends on cannot interleave with another call.
        let _gate = self.igate.lock();
        intrs::set_irqs(self, &s, args)?;
        Ok(0)
    }
}
