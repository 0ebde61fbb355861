// SPDX-License-Identifier: GPL-2.0

//! Host tests of the interrupt model, with counting fake eventfds and a
//! fake kernel side that records whether its lock is held.

extern crate std;

use super::*;
use crate::vfio_pci_core::emul::config::{cap, ConfigSpace, CFG_EXT_SIZE};
use crate::vfio_pci_core::emul::irq::{check_set, IrqSetHdr};
use core::cell::{Cell, RefCell};
use std::{rc::Rc, vec::Vec};

/// What the fakes saw.
#[derive(Default)]
struct Log {
    /// Signals per descriptor number.
    signals: RefCell<[u32; 32]>,
    /// Descriptors whose reference was put, in order.
    dropped: RefCell<Vec<i32>>,
    /// The fake lock is held.
    locked: Cell<bool>,
}

/// A counting eventfd: a reference to descriptor `fd`.
struct Fd {
    fd: i32,
    log: Rc<Log>,
}

impl Signal for Fd {
    fn signal(&self) {
        self.log.signals.borrow_mut()[self.fd as usize] += 1;
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        assert!(
            !self.log.locked.get(),
            "eventfd {} put under the lock",
            self.fd
        );
        self.log.dropped.borrow_mut().push(self.fd);
    }
}

/// The fake kernel side's errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Err {
    Model(Errno),
    /// `EBADF`: no eventfd behind the descriptor.
    BadFd,
    /// `EBUSY`: the unmask irqfd is armed already.
    Busy,
}

impl From<Errno> for Err {
    fn from(e: Errno) -> Self {
        Err::Model(e)
    }
}

const INVAL: Err = Err::Model(Errno::Inval);
const NOTTY: Err = Err::Model(Errno::NoTty);

/// The fake kernel side: descriptors 0-31 are eventfds, the lock a flag.
struct Host {
    ctx: RefCell<Ctx<Fd>>,
    log: Rc<Log>,
    /// The descriptor the unmask irqfd is armed on.
    unmask: Cell<Option<i32>>,
}

impl IrqHost for Host {
    type Fd = Fd;
    type Error = Err;

    fn eventfd(&self, fd: i32) -> Result<Fd, Err> {
        if fd >= 32 {
            return Err(Err::BadFd);
        }
        Ok(Fd {
            fd,
            log: self.log.clone(),
        })
    }

    fn locked<R>(&self, f: impl FnOnce(&mut Ctx<Fd>) -> R) -> R {
        assert!(!self.log.locked.replace(true), "lock taken twice");
        let r = f(&mut self.ctx.borrow_mut());
        self.log.locked.set(false);
        r
    }

    fn arm_unmask(&self, fd: i32) -> Result<(), Err> {
        assert!(!self.log.locked.get());
        if fd >= 32 {
            return Err(Err::BadFd);
        }
        if self.unmask.get().is_some() {
            return Err(Err::Busy);
        }
        self.unmask.set(Some(fd));
        Ok(())
    }

    fn disarm_unmask(&self) {
        assert!(!self.log.locked.get());
        self.unmask.set(None);
    }
}

/// MSI capability at 0x40: 64-bit, per-vector maskable; mask and pending
/// registers at these offsets.
const MSI_MASK: usize = 0x50;
const MSI_PENDING: usize = 0x54;

impl Host {
    /// A device with an INTx pin and a maskable 64-bit MSI capability
    /// offering `msi` vectors.
    fn new(msi: u32) -> Self {
        let mut c = ConfigSpace::with_header(0x1234, 0x5678, 0x070002, 1);
        c.set(reg::INT_PIN, 1, 1);
        c.add_msi_ext(0x40, msi, true, true).unwrap();
        Self {
            ctx: RefCell::new(Ctx::new(c)),
            log: Rc::new(Log::default()),
            unmask: Cell::new(None),
        }
    }

    fn signals(&self, fd: i32) -> u32 {
        self.log.signals.borrow()[fd as usize]
    }

    fn dropped(&self) -> Vec<i32> {
        core::mem::take(&mut *self.log.dropped.borrow_mut())
    }

    fn ctx(&self) -> core::cell::RefMut<'_, Ctx<Fd>> {
        self.ctx.borrow_mut()
    }

    /// Interrupts per index as the library reports them: one INTx, eight
    /// MSI and MSI-X vectors, ERR and REQ.
    fn count_of(i: u32) -> u32 {
        match i {
            VFIO_PCI_MSI_IRQ_INDEX | VFIO_PCI_MSIX_IRQ_INDEX => VECTORS as u32,
            _ => 1,
        }
    }

    /// One `SET_IRQS` call, header checked as the glue does.
    fn set(&self, flags: u32, index: u32, start: u32, args: IrqArgs<'_>) -> Result<(), Err> {
        let count = match args {
            IrqArgs::None => 0,
            IrqArgs::Bool(b) => b.len(),
            IrqArgs::Fds(f) => f.len(),
        };
        self.set_n(flags, index, start, count as u32, args)
    }

    fn set_n(
        &self,
        flags: u32,
        index: u32,
        start: u32,
        count: u32,
        args: IrqArgs<'_>,
    ) -> Result<(), Err> {
        let unit = match args {
            IrqArgs::None => 0,
            IrqArgs::Bool(_) => 1,
            IrqArgs::Fds(_) => 4,
        };
        let hdr = IrqSetHdr {
            argsz: IRQ_SET_MINSZ as u32 + unit * count,
            flags,
            index,
            start,
            count,
        };
        let s = check_set(&hdr, Self::count_of)?;
        set_irqs(self, &s, args)
    }

    fn cfg_write32(&self, off: usize, v: u32) -> bool {
        self.ctx().write_config(off, &v.to_le_bytes()).unwrap()
    }
}

const TRIG: u32 = VFIO_IRQ_SET_ACTION_TRIGGER;
const MASK: u32 = VFIO_IRQ_SET_ACTION_MASK;
const UNMASK: u32 = VFIO_IRQ_SET_ACTION_UNMASK;
const FD: u32 = VFIO_IRQ_SET_DATA_EVENTFD;
const NONE: u32 = VFIO_IRQ_SET_DATA_NONE;
const BOOL: u32 = VFIO_IRQ_SET_DATA_BOOL;
const INTX: u32 = VFIO_PCI_INTX_IRQ_INDEX;
const MSI: u32 = VFIO_PCI_MSI_IRQ_INDEX;
const MSIX: u32 = VFIO_PCI_MSIX_IRQ_INDEX;
const ERR: u32 = VFIO_PCI_ERR_IRQ_INDEX;
const REQ: u32 = VFIO_PCI_REQ_IRQ_INDEX;

#[test]
fn no_change_and_no_mode_deliver_nothing() {
    let h = Host::new(1);
    h.ctx().set_irq(false);
    h.ctx().set_irq(true);
    assert_eq!(h.ctx().irqs_delivered(), 0);
    // The status bit follows the line all the same.
    assert_ne!(h.ctx().cfg.u16_at(reg::STATUS) & reg::STATUS_INTERRUPT, 0);
    h.ctx().set_irq(false);
    assert_eq!(h.ctx().cfg.u16_at(reg::STATUS) & reg::STATUS_INTERRUPT, 0);
}

#[test]
fn intx_automasks_and_unmask_redelivers_a_held_level() {
    let h = Host::new(1);
    h.set(FD | TRIG, INTX, 0, IrqArgs::Fds(&[3])).unwrap();
    assert_eq!(h.ctx().irqs.mode, IrqMode::Intx);
    h.ctx().set_irq(true);
    assert_eq!(h.signals(3), 1);
    // Automasked: the level stays high, nothing more is delivered.
    h.ctx().set_irq(true);
    h.ctx().set_irq(false);
    h.ctx().set_irq(true);
    assert_eq!(h.signals(3), 1);
    // Unmask with the line still asserted: delivered again, masked again.
    h.set_n(NONE | UNMASK, INTX, 0, 1, IrqArgs::None).unwrap();
    assert_eq!(h.signals(3), 2);
    h.set_n(NONE | UNMASK, INTX, 0, 1, IrqArgs::None).unwrap();
    assert_eq!(h.signals(3), 3, "level semantics: every unmask re-delivers");
    // With the line low, unmasking delivers nothing; the next rise does.
    h.ctx().set_irq(false);
    h.set_n(NONE | UNMASK, INTX, 0, 1, IrqArgs::None).unwrap();
    assert_eq!(h.signals(3), 3);
    h.ctx().set_irq(true);
    assert_eq!(h.signals(3), 4);
    assert_eq!(h.ctx().irqs_delivered(), 4);
    // The irqfd's handler unmasks the same way.
    h.ctx().unmask_intx();
    assert_eq!(h.signals(3), 5);
    // Masked by userspace: a new rise is held until unmasked.
    h.ctx().set_irq(false);
    h.set(BOOL | MASK, INTX, 0, IrqArgs::Bool(&[1])).unwrap();
    h.ctx().unmask_intx();
    h.set(BOOL | MASK, INTX, 0, IrqArgs::Bool(&[1])).unwrap();
    h.ctx().set_irq(true);
    assert_eq!(h.signals(3), 5);
    // A BOOL unmask with a zero byte does nothing.
    h.set(BOOL | UNMASK, INTX, 0, IrqArgs::Bool(&[0])).unwrap();
    assert_eq!(h.signals(3), 5);
    h.set(BOOL | UNMASK, INTX, 0, IrqArgs::Bool(&[1])).unwrap();
    assert_eq!(h.signals(3), 6);
}

#[test]
fn intx_disable_in_command_holds_the_line_until_lifted() {
    let h = Host::new(1);
    h.set(FD | TRIG, INTX, 0, IrqArgs::Fds(&[3])).unwrap();
    let cmd = u32::from(reg::CMD_INTX_DISABLE);
    assert!(!h.cfg_write32(reg::COMMAND, cmd));
    h.ctx().set_irq(true);
    assert_eq!(h.signals(3), 0);
    // Lifting INTx disable delivers the pending line.
    h.cfg_write32(reg::COMMAND, 0);
    assert_eq!(h.signals(3), 1);
}

#[test]
fn msi_sends_on_rising_edges_only() {
    let h = Host::new(1);
    h.set(FD | TRIG, MSI, 0, IrqArgs::Fds(&[5])).unwrap();
    h.ctx().set_irq(true);
    h.ctx().set_irq(true);
    assert_eq!(h.signals(5), 1);
    h.ctx().set_irq(false);
    h.ctx().set_irq(true);
    assert_eq!(h.signals(5), 2);
}

#[test]
fn msi_per_vector_mask_holds_the_message_in_its_pending_bit() {
    let h = Host::new(1);
    h.set(FD | TRIG, MSI, 0, IrqArgs::Fds(&[5])).unwrap();
    h.cfg_write32(MSI_MASK, 1);
    h.ctx().set_irq(true);
    assert_eq!(h.signals(5), 0);
    let mut p = [0u8; 4];
    h.ctx().cfg.read(MSI_PENDING, &mut p).unwrap();
    assert_eq!(u32::from_le_bytes(p), 1, "pending");
    // Another write that leaves the mask set sends nothing.
    h.cfg_write32(MSI_MASK, 1);
    assert_eq!(h.signals(5), 0);
    // Unmasking sends it once and clears the pending bit.
    h.cfg_write32(MSI_MASK, 0);
    assert_eq!(h.signals(5), 1);
    h.cfg_write32(MSI_MASK, 0);
    assert_eq!(h.signals(5), 1);
    h.ctx().cfg.read(MSI_PENDING, &mut p).unwrap();
    assert_eq!(u32::from_le_bytes(p), 0);
}

#[test]
fn stopped_device_holds_an_edge_until_it_runs() {
    let h = Host::new(1);
    h.set(FD | TRIG, MSI, 0, IrqArgs::Fds(&[5])).unwrap();
    h.ctx().stop();
    h.ctx().set_irq(true);
    // The line staying high is no new edge, and does not lose the held one.
    h.ctx().set_irq(true);
    assert_eq!(h.signals(5), 0);
    h.ctx().run();
    assert_eq!(h.signals(5), 1, "the held edge goes out");
    h.ctx().run();
    assert_eq!(h.signals(5), 1, "once");
    // An edge that fell again while stopped still counts as one edge.
    h.ctx().set_irq(false);
    h.ctx().stop();
    h.ctx().set_irq(true);
    h.ctx().set_irq(false);
    h.ctx().run();
    assert_eq!(h.signals(5), 1, "the line is low when the device runs");
    // A vector unmasked while stopped is sent when the device runs.
    h.cfg_write32(MSI_MASK, 1);
    h.ctx().set_irq(true);
    h.ctx().stop();
    h.cfg_write32(MSI_MASK, 0);
    assert_eq!(h.signals(5), 1);
    h.ctx().run();
    assert_eq!(h.signals(5), 2);
    // A load forgets an edge held from the old state.
    h.ctx().set_irq(false);
    h.ctx().stop();
    h.ctx().set_irq(true);
    h.ctx().load_irq_level(true);
    h.ctx().run();
    assert_eq!(h.signals(5), 2);
    assert!(h.ctx().irq_level());
}

#[test]
fn stopped_intx_is_delivered_when_the_device_runs() {
    let h = Host::new(1);
    h.set(FD | TRIG, INTX, 0, IrqArgs::Fds(&[3])).unwrap();
    h.ctx().stop();
    h.ctx().set_irq(true);
    h.ctx().unmask_intx();
    assert_eq!(h.signals(3), 0);
    h.ctx().run();
    assert_eq!(h.signals(3), 1);
}

#[test]
fn msix_sends_vector_zero_and_loopback_fires_the_range() {
    let h = Host::new(1);
    h.set(FD | TRIG, MSIX, 0, IrqArgs::Fds(&[10, 11, -1, 13]))
        .unwrap();
    h.ctx().set_irq(true);
    assert_eq!(h.signals(10), 1);
    // NONE fires every vector of the range; a cleared one is skipped.
    h.set_n(NONE | TRIG, MSIX, 1, 3, IrqArgs::None).unwrap();
    assert_eq!([h.signals(10), h.signals(11), h.signals(13)], [1, 1, 1]);
    // BOOL fires where the byte is set.
    h.set(BOOL | TRIG, MSIX, 0, IrqArgs::Bool(&[1, 0, 0, 1]))
        .unwrap();
    assert_eq!([h.signals(10), h.signals(11), h.signals(13)], [2, 1, 2]);
    // Loopback signals are not delivered interrupts of the device.
    assert_eq!(h.ctx().irqs_delivered(), 1);
}

#[test]
fn replaced_eventfds_are_returned_and_put_after_the_lock() {
    let h = Host::new(4);
    h.set(FD | TRIG, MSI, 0, IrqArgs::Fds(&[1, 2])).unwrap();
    assert!(h.dropped().is_empty());
    // Replacing vector 1 and clearing vector 0 puts both old references.
    h.set(FD | TRIG, MSI, 0, IrqArgs::Fds(&[-1, 7])).unwrap();
    assert_eq!(h.dropped(), [1, 2]);
    // Disabling puts what is left, and the mode ends.
    h.set_n(NONE | TRIG, MSI, 0, 0, IrqArgs::None).unwrap();
    assert_eq!(h.dropped(), [7]);
    assert_eq!(h.ctx().irqs.mode, IrqMode::None);
    // A failed call puts the references it took, changing nothing.
    h.set(FD | TRIG, INTX, 0, IrqArgs::Fds(&[3])).unwrap();
    assert_eq!(
        h.set(FD | TRIG, MSI, 0, IrqArgs::Fds(&[4])),
        Err(INVAL),
        "INTx and MSI exclude each other"
    );
    assert_eq!(h.dropped(), [4]);
    // A bad descriptor fails before anything changes.
    assert_eq!(
        h.set(FD | TRIG, INTX, 0, IrqArgs::Fds(&[40])),
        Err(Err::BadFd)
    );
    h.ctx().set_irq(true);
    assert_eq!(h.signals(3), 1, "INTx still has its eventfd");
    // Close detaches everything, for the caller to put after the lock.
    h.set(FD | TRIG, ERR, 0, IrqArgs::Fds(&[8])).unwrap();
    h.set(FD | TRIG, REQ, 0, IrqArgs::Fds(&[9])).unwrap();
    let mut v = [const { None }; VECTORS];
    let rest = h.locked(|c| c.detach_all(&mut v));
    drop(v);
    drop(rest);
    assert_eq!(h.dropped(), [3, 8, 9]);
    assert_eq!(h.ctx().irqs.mode, IrqMode::None);
}

#[test]
fn err_and_req_take_one_eventfd_each() {
    let h = Host::new(1);
    // Loopback without an eventfd is EINVAL.
    assert_eq!(h.set_n(NONE | TRIG, REQ, 0, 1, IrqArgs::None), Err(INVAL));
    assert!(!h.ctx().signal_req());
    h.set(FD | TRIG, REQ, 0, IrqArgs::Fds(&[9])).unwrap();
    assert!(h.ctx().signal_req());
    h.set_n(NONE | TRIG, REQ, 0, 1, IrqArgs::None).unwrap();
    h.set(BOOL | TRIG, REQ, 0, IrqArgs::Bool(&[0])).unwrap();
    h.set(BOOL | TRIG, REQ, 0, IrqArgs::Bool(&[1])).unwrap();
    assert_eq!(h.signals(9), 3);
    // NONE with count 0 clears it.
    h.set_n(NONE | TRIG, REQ, 0, 0, IrqArgs::None).unwrap();
    assert_eq!(h.dropped(), [9]);
    assert!(!h.ctx().signal_req());
    // ERR: the device's report goes to its eventfd.
    h.set(FD | TRIG, ERR, 0, IrqArgs::Fds(&[8])).unwrap();
    h.ctx().report_error();
    assert_eq!(h.signals(8), 1);
}

#[test]
fn set_irqs_errnos() {
    let h = Host::new(1);
    // INTx mask or unmask without INTx enabled.
    assert_eq!(h.set_n(NONE | MASK, INTX, 0, 1, IrqArgs::None), Err(INVAL));
    assert_eq!(h.set(FD | UNMASK, INTX, 0, IrqArgs::Fds(&[2])), Err(INVAL));
    // Loopback on a disabled index.
    assert_eq!(h.set_n(NONE | TRIG, INTX, 0, 1, IrqArgs::None), Err(INVAL));
    assert_eq!(h.set_n(NONE | TRIG, MSI, 0, 1, IrqArgs::None), Err(INVAL));
    // Disabling an index that is not enabled, while another one is.
    h.set(FD | TRIG, INTX, 0, IrqArgs::Fds(&[3])).unwrap();
    assert_eq!(h.set_n(NONE | TRIG, MSIX, 0, 0, IrqArgs::None), Err(INVAL));
    assert_eq!(h.set(FD | TRIG, MSIX, 0, IrqArgs::Fds(&[4])), Err(INVAL));
    // Masking through an eventfd is not offered; nor is masking MSI or
    // acting on ERR/REQ other than by trigger.
    assert_eq!(h.set(FD | MASK, INTX, 0, IrqArgs::Fds(&[2])), Err(NOTTY));
    assert_eq!(h.set_n(NONE | MASK, MSI, 0, 1, IrqArgs::None), Err(NOTTY));
    assert_eq!(h.set_n(NONE | UNMASK, REQ, 0, 1, IrqArgs::None), Err(NOTTY));
    // A negative descriptor other than -1.
    assert_eq!(h.set(FD | TRIG, INTX, 0, IrqArgs::Fds(&[-2])), Err(INVAL));
    // ERR/REQ with data and no count.
    assert_eq!(h.set_n(FD | TRIG, REQ, 0, 0, IrqArgs::Fds(&[])), Err(INVAL));
    // Enabling MSI with no vector.
    h.set_n(NONE | TRIG, INTX, 0, 0, IrqArgs::None).unwrap();
    assert_eq!(h.set_n(FD | TRIG, MSI, 0, 0, IrqArgs::Fds(&[])), Err(INVAL));
    assert_eq!(h.ctx().irqs.mode, IrqMode::None);
}

/// Found by `tools/host-fuzz`: a request no handler takes is `ENOTTY`
/// before its descriptors are looked at, as in vfio-pci, whose MSI, MSI-X,
/// ERR and REQ mask and unmask have no handler and whose INTx mask never
/// reads its eventfd; a bad descriptor there used to turn it into `EINVAL`
/// or `EBADF`, and a good one took a reference for nothing.
#[test]
fn unhandled_requests_are_enotty_whatever_their_descriptors() {
    let h = Host::new(1);
    for fd in [-2, 40, 5] {
        for (flags, index) in [
            (FD | MASK, MSI),
            (FD | UNMASK, MSIX),
            (FD | MASK, ERR),
            (FD | UNMASK, REQ),
        ] {
            assert_eq!(
                h.set(flags, index, 0, IrqArgs::Fds(&[fd])),
                Err(NOTTY),
                "flags {flags:#x} index {index} fd {fd}"
            );
        }
        // INTx mask through an eventfd: EINVAL without INTx, else ENOTTY.
        assert_eq!(h.set(FD | MASK, INTX, 0, IrqArgs::Fds(&[fd])), Err(INVAL));
    }
    h.set(FD | TRIG, INTX, 0, IrqArgs::Fds(&[3])).unwrap();
    for fd in [-2, 40, 5] {
        assert_eq!(h.set(FD | MASK, INTX, 0, IrqArgs::Fds(&[fd])), Err(NOTTY));
    }
    assert!(h.dropped().is_empty(), "a reference taken for nothing");
}

#[test]
fn unmask_irqfd_arms_once_and_goes_with_intx() {
    let h = Host::new(1);
    h.set(FD | TRIG, INTX, 0, IrqArgs::Fds(&[3])).unwrap();
    h.set(FD | UNMASK, INTX, 0, IrqArgs::Fds(&[6])).unwrap();
    assert_eq!(h.unmask.get(), Some(6));
    assert_eq!(
        h.set(FD | UNMASK, INTX, 0, IrqArgs::Fds(&[7])),
        Err(Err::Busy)
    );
    // -1 disarms; arming again works.
    h.set(FD | UNMASK, INTX, 0, IrqArgs::Fds(&[-1])).unwrap();
    assert_eq!(h.unmask.get(), None);
    h.set(FD | UNMASK, INTX, 0, IrqArgs::Fds(&[7])).unwrap();
    // Replacing the INTx trigger keeps it; disabling INTx disarms it.
    h.set(FD | TRIG, INTX, 0, IrqArgs::Fds(&[4])).unwrap();
    assert_eq!(h.unmask.get(), Some(7));
    h.set_n(NONE | TRIG, INTX, 0, 0, IrqArgs::None).unwrap();
    assert_eq!(h.unmask.get(), None);
}

#[test]
fn reset_lowers_the_line_and_keeps_the_eventfds() {
    let h = Host::new(1);
    h.set(FD | TRIG, INTX, 0, IrqArgs::Fds(&[3])).unwrap();
    h.ctx().set_irq(true);
    h.ctx().stop();
    h.ctx().reset_irqs(true);
    assert!(!h.ctx().irq_level());
    // Running and unmasked: the next rise is delivered.
    h.ctx().set_irq(true);
    assert_eq!(h.signals(3), 2);
    assert_eq!(h.ctx().irqs.mode, IrqMode::Intx);
    // A Function Level Reset does not end a migration stop.
    h.ctx().stop();
    h.ctx().reset_irqs(false);
    h.ctx().set_irq(true);
    assert_eq!(h.signals(3), 2);
}

#[test]
fn flr_through_config_space_is_reported_not_performed() {
    let h = Host::new(1);
    h.ctx().cfg.add_pcie(0x60).unwrap();
    h.set(FD | TRIG, INTX, 0, IrqArgs::Fds(&[3])).unwrap();
    h.ctx().set_irq(true);
    let devctl = 0x60 + cap::EXP_DEVCTL;
    let flr = cap::EXP_DEVCTL_BCR_FLR.to_le_bytes();
    assert!(h.ctx().write_config(devctl, &flr).unwrap());
    // The caller resets; the model changed no interrupt state.
    assert!(h.ctx().irq_level());
    assert_eq!(h.ctx().irqs.mode, IrqMode::Intx);
    // A write that does not initiate FLR is not reported as one.
    assert!(!h.ctx().write_config(devctl, &[0, 0]).unwrap());
    assert_eq!(
        h.ctx().write_config(CFG_EXT_SIZE, &[0]),
        Err(Errno::Inval),
        "past the end"
    );
}

#[test]
fn pulses_go_to_their_own_vector() {
    let h = Host::new(4);
    // Nothing in INTx mode or with no mode.
    h.ctx().pulse(0);
    assert_eq!(h.ctx().irq_mode(), IrqMode::None);
    h.set(FD | TRIG, MSI, 0, IrqArgs::Fds(&[5, 6, 7, 8]))
        .unwrap();
    assert_eq!(h.ctx().irq_mode(), IrqMode::Msi);
    h.ctx().pulse(2);
    h.ctx().pulse(2);
    h.ctx().pulse(VECTORS as u32);
    assert_eq!(
        (h.signals(5), h.signals(6), h.signals(7), h.signals(8)),
        (0, 0, 2, 0)
    );
    // A masked MSI vector waits in its pending bit.
    h.cfg_write32(MSI_MASK, 1 << 3);
    h.ctx().pulse(3);
    assert_eq!(h.signals(8), 0);
    h.cfg_write32(MSI_MASK, 0);
    assert_eq!(h.signals(8), 1);
    // Held while stopped, sent once when the device runs.
    h.ctx().stop();
    h.ctx().pulse(1);
    h.ctx().pulse(1);
    assert_eq!(h.signals(6), 0);
    h.ctx().run();
    assert_eq!(h.signals(6), 1);
    // A reset forgets what was held.
    h.ctx().stop();
    h.ctx().pulse(0);
    h.ctx().reset_irqs(true);
    h.ctx().run();
    assert_eq!(h.signals(5), 0);
}
