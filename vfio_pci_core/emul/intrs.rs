// SPDX-License-Identifier: GPL-2.0

//! Interrupts: the state machine behind INTx, MSI, MSI-X, ERR and REQ, and
//! what `VFIO_DEVICE_SET_IRQS` does to it.
//!
//! The semantics are vfio-pci's (`drivers/vfio/pci/vfio_pci_intrs.c`). The
//! model is generic over the eventfd ([`Signal`]) and, for `SET_IRQS`, over
//! the kernel side ([`IrqHost`]: eventfd references from descriptors, the
//! library's lock, the INTx unmask irqfd), so that all of it runs in host
//! tests with counting fakes.

use super::config::{reg, ConfigSpace};
use super::irq::{IrqAction, IrqData, IrqSet};
use super::uapi::*;
use super::{EResult, Errno};

/// An eventfd userspace gave to receive an interrupt.
pub(crate) trait Signal {
    /// Adds one to the eventfd's counter and wakes its waiters. Callable in
    /// atomic context.
    fn signal(&self);
}

/// The most MSI or MSI-X vectors the library delivers. A device declaring
/// more in its capability has the first [`VECTORS`] reported and usable.
pub(crate) const VECTORS: usize = 8;

/// Which interrupt mode userspace enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IrqMode {
    None,
    Intx,
    Msi,
    Msix,
}

/// Interrupt state: the eventfds userspace gave, and INTx masking.
struct Irqs<E> {
    mode: IrqMode,
    intx: Option<E>,
    /// One eventfd per MSI or MSI-X vector, whichever `mode` says.
    vectors: [Option<E>; VECTORS],
    err: Option<E>,
    req: Option<E>,
    /// INTx is masked (by userspace, or automatically on delivery).
    intx_masked: bool,
    /// The device asserts its interrupt line.
    asserted: bool,
    /// Interrupts delivered to userspace, for the debug attribute.
    delivered: u64,
    /// The device is stopped for migration: nothing is delivered.
    stopped: bool,
    /// An MSI edge arrived while stopped, to send when the device runs.
    held: bool,
    /// Vectors [`Ctx::pulse`]d while stopped, to send when the device runs.
    held_vectors: u32,
}

/// Eventfds taken out of the interrupt state, to be dropped by the caller
/// once it released the lock (putting an eventfd may take other locks).
pub(crate) type Detached<E> = [Option<E>; VECTORS];

/// What a device may touch of the library's state while it handles an
/// access: its interrupt line and a view of the command register.
///
/// The configuration space and every method that is not the device's are
/// visible to the library (`crate::vfio_pci_core`) only.
pub(crate) struct Ctx<E> {
    pub(in crate::vfio_pci_core) cfg: ConfigSpace,
    irqs: Irqs<E>,
}

impl<E: Signal> Ctx<E> {
    /// A device with configuration space `cfg`, no interrupt enabled.
    pub(in crate::vfio_pci_core) fn new(cfg: ConfigSpace) -> Self {
        Self {
            cfg,
            irqs: Irqs {
                mode: IrqMode::None,
                intx: None,
                vectors: [const { None }; VECTORS],
                err: None,
                req: None,
                intx_masked: false,
                asserted: false,
                delivered: 0,
                stopped: false,
                held: false,
                held_vectors: 0,
            },
        }
    }

    /// The command register as the guest last wrote it.
    pub(crate) fn command(&self) -> u16 {
        self.cfg.command()
    }

    /// Interrupts delivered to userspace since the device was opened.
    pub(crate) fn irqs_delivered(&self) -> u64 {
        self.irqs.delivered
    }

    /// Sets the level of the device's interrupt. With MSI or MSI-X enabled a
    /// rising level sends one message on vector 0 (with MSI per-vector
    /// masking and the vector masked, it waits in its pending bit); with
    /// INTx the line is delivered when not masked, then masked until
    /// userspace unmasks it (VFIO's automasking).
    #[inline(always)]
    pub(crate) fn set_irq(&mut self, asserted: bool) {
        // The common case on every register access: no interrupt before and
        // none now, so nothing to change.
        if !asserted && !self.irqs.asserted {
            return;
        }
        self.change_irq(asserted);
    }

    /// The interrupt mode userspace enabled, for a device with several
    /// vectors that must know whether each gets its own message.
    pub(crate) fn irq_mode(&self) -> IrqMode {
        self.irqs.mode
    }

    /// Sends one message on MSI or MSI-X vector `v` (a device with a vector
    /// per event, as an NVMe completion queue has). An MSI vector the guest
    /// masked waits in its pending bit; a vector beyond the enabled ones,
    /// or any vector in INTx mode, sends nothing (an INTx device uses
    /// [`Ctx::set_irq`]). While the device is stopped the message is held
    /// and sent when it runs.
    pub(crate) fn pulse(&mut self, v: u32) {
        if v as usize >= VECTORS {
            return;
        }
        if self.irqs.stopped {
            self.irqs.held_vectors |= 1 << v;
            return;
        }
        match self.irqs.mode {
            IrqMode::Msi => self.send_msi(v),
            IrqMode::Msix => self.send_vector(v as usize),
            _ => {}
        }
    }

    fn change_irq(&mut self, asserted: bool) {
        let rising = asserted && !self.irqs.asserted;
        self.irqs.asserted = asserted;
        self.cfg.set_status_bits(reg::STATUS_INTERRUPT, asserted);
        if self.irqs.stopped {
            // A stopped device changes nothing outside itself; the edge is
            // sent when it runs again.
            self.irqs.held |= rising;
            return;
        }
        match self.irqs.mode {
            IrqMode::Msi if rising => self.send_msi(0),
            IrqMode::Msix if rising => self.send_vector(0),
            IrqMode::Intx if asserted => self.deliver_intx(),
            _ => {}
        }
    }

    /// Reports an error to userspace through the ERR eventfd (offered for
    /// PCI Express functions, as vfio-pci offers it for AER), if one is set.
    #[cfg_attr(not(test), expect(dead_code, reason = "no device reports errors yet"))]
    pub(crate) fn report_error(&mut self) {
        if let Some(fd) = &self.irqs.err {
            fd.signal();
        }
    }

    /// Sends MSI vector `v`, unless the capability has per-vector masking
    /// and the guest masked `v`: its pending bit is then set instead, and
    /// the message goes out when the guest unmasks it (see
    /// [`Ctx::send_unmasked_msi`]).
    fn send_msi(&mut self, v: u32) {
        if self.cfg.msi_raise(v) {
            self.send_vector(v as usize);
        }
    }

    /// Sends the MSI messages whose vectors are pending and no longer
    /// masked (after a configuration write), clearing their pending bits.
    /// The test is inline: outside MSI mode, the common case of a
    /// configuration write, it is all there is to do.
    #[inline(always)]
    fn send_unmasked_msi(&mut self) {
        if self.irqs.mode != IrqMode::Msi || self.irqs.stopped {
            return;
        }
        self.send_pending_msi();
    }

    /// [`Ctx::send_unmasked_msi`] in MSI mode.
    fn send_pending_msi(&mut self) {
        let due = self.cfg.msi_take_unmasked();
        for v in 0..VECTORS {
            if due & (1 << v) != 0 {
                self.send_vector(v);
            }
        }
    }

    /// Signals the eventfd of MSI or MSI-X vector `v`, if userspace gave one.
    fn send_vector(&mut self, v: usize) {
        if let Some(Some(fd)) = self.irqs.vectors.get(v) {
            fd.signal();
            self.irqs.delivered += 1;
        }
    }

    /// Delivers the INTx line unless it is masked (by userspace, by the
    /// automask or by the command register) or the device is stopped; it is
    /// then masked until userspace unmasks it.
    fn deliver_intx(&mut self) {
        if self.irqs.stopped || self.irqs.intx_masked || self.command() & reg::CMD_INTX_DISABLE != 0
        {
            return;
        }
        if let Some(fd) = &self.irqs.intx {
            fd.signal();
            self.irqs.intx_masked = true;
            self.irqs.delivered += 1;
        }
    }

    /// Unmasks INTx (level semantics: a line still asserted is delivered
    /// again), if INTx is enabled. What the unmask irqfd does when it fires.
    pub(in crate::vfio_pci_core) fn unmask_intx(&mut self) {
        if self.irqs.mode == IrqMode::Intx {
            self.irqs.intx_masked = false;
            if self.irqs.asserted {
                self.deliver_intx();
            }
        }
    }

    /// A guest write of `data` at `off` of configuration space, with its
    /// effects on interrupts: lifting INTx disable delivers a pending line,
    /// clearing the mask bit of a pending MSI vector sends it. Returns
    /// whether the write initiated a Function Level Reset, which the caller
    /// then performs (interrupts are not touched in that case).
    #[inline(always)]
    pub(in crate::vfio_pci_core) fn write_config(
        &mut self,
        off: usize,
        data: &[u8],
    ) -> EResult<bool> {
        let old = self.cfg.command();
        self.cfg.write(off, data)?;
        if self.cfg.take_flr_request() {
            return Ok(true);
        }
        if old & reg::CMD_INTX_DISABLE != 0 && self.irqs.asserted && self.irqs.mode == IrqMode::Intx
        {
            self.deliver_intx();
        }
        self.send_unmasked_msi();
        Ok(false)
    }

    /// The device stops for migration: interrupts are held back.
    pub(in crate::vfio_pci_core) fn stop(&mut self) {
        self.irqs.stopped = true;
    }

    /// The device runs again: vectors the guest unmasked meanwhile are sent,
    /// an MSI edge that arrived while it was stopped is sent, and an
    /// asserted INTx line delivered unless masked.
    pub(in crate::vfio_pci_core) fn run(&mut self) {
        self.irqs.stopped = false;
        let held = core::mem::take(&mut self.irqs.held);
        let pulses = core::mem::take(&mut self.irqs.held_vectors);
        for v in (0..VECTORS as u32).filter(|v| pulses & (1 << v) != 0) {
            self.pulse(v);
        }
        self.send_unmasked_msi();
        if !self.irqs.asserted {
            return;
        }
        match self.irqs.mode {
            IrqMode::Msi if held => self.send_msi(0),
            IrqMode::Msix if held => self.send_vector(0),
            IrqMode::Intx => self.deliver_intx(),
            _ => {}
        }
    }

    /// A function reset: the line is low, INTx unmasked, no edge held. The
    /// eventfds userspace set stay, as with vfio-pci. With `device`, a
    /// device reset (not a Function Level Reset), a migration stop ends too.
    pub(in crate::vfio_pci_core) fn reset_irqs(&mut self, device: bool) {
        if device {
            self.irqs.stopped = false;
        }
        self.irqs.intx_masked = false;
        self.irqs.asserted = false;
        self.irqs.held = false;
        self.irqs.held_vectors = 0;
    }

    /// The level of the device's interrupt line, for migration.
    pub(in crate::vfio_pci_core) fn irq_level(&self) -> bool {
        self.irqs.asserted
    }

    /// Loads the interrupt line's level from a migration stream; an edge
    /// held back before belonged to the old state and is forgotten.
    pub(in crate::vfio_pci_core) fn load_irq_level(&mut self, asserted: bool) {
        self.irqs.asserted = asserted;
        self.irqs.held = false;
        self.irqs.held_vectors = 0;
    }

    /// Signals the REQ eventfd (the core asks userspace to release the
    /// device); false if userspace set none.
    pub(in crate::vfio_pci_core) fn signal_req(&self) -> bool {
        match &self.irqs.req {
            Some(fd) => {
                fd.signal();
                true
            }
            None => false,
        }
    }

    /// The last user closed the device: every interrupt is disabled and
    /// every eventfd taken out, into `out` (MSI or MSI-X vectors) and the
    /// returned array (INTx, ERR, REQ), for the caller to drop after the
    /// lock.
    pub(in crate::vfio_pci_core) fn detach_all(&mut self, out: &mut Detached<E>) -> [Option<E>; 3] {
        let irqs = &mut self.irqs;
        irqs.mode = IrqMode::None;
        for (o, v) in out.iter_mut().zip(irqs.vectors.iter_mut()) {
            *o = v.take();
        }
        [irqs.intx.take(), irqs.err.take(), irqs.req.take()]
    }

    /// The part of `VFIO_DEVICE_SET_IRQS` under the lock, for every request
    /// but an INTx unmask irqfd. `new` holds the eventfds of a `DATA_EVENTFD`
    /// request (`None` for -1), `bools` the bytes of a `DATA_BOOL` one.
    /// Eventfds replaced go to `old`, and the new ones used are taken out of
    /// `new`; the caller drops both after the lock. Returns whether INTx was
    /// enabled and no longer is.
    fn set_irqs_locked(
        &mut self,
        s: &IrqSet,
        new: &mut [Option<E>; VECTORS],
        bools: &[u8],
        old: &mut Detached<E>,
    ) -> EResult<bool> {
        let (start, count) = (s.start as usize, s.count as usize);
        // Whether a NONE or BOOL request acts on its `i`th interrupt (BOOL
        // acts where the byte is set).
        let fires = |i: usize| match s.data {
            IrqData::None => true,
            IrqData::Bool => bools.get(i).is_some_and(|&b| b != 0),
            IrqData::EventFd => false,
        };
        let disable = count == 0 && s.data == IrqData::None;
        let was_intx = self.irqs.mode == IrqMode::Intx;
        let irqs = &mut self.irqs;
        match (s.index, s.action) {
            (VFIO_PCI_INTX_IRQ_INDEX, IrqAction::Mask | IrqAction::Unmask) => {
                if irqs.mode != IrqMode::Intx || start != 0 || count != 1 {
                    return Err(Errno::Inval);
                }
                if s.data == IrqData::EventFd {
                    // Masking through an eventfd: vfio-pci does not offer it
                    // either; unmasking is the caller's (an irqfd).
                    return Err(Errno::NoTty);
                }
                if fires(0) {
                    if s.action == IrqAction::Mask {
                        irqs.intx_masked = true;
                    } else {
                        self.unmask_intx();
                    }
                }
            }
            (VFIO_PCI_INTX_IRQ_INDEX, IrqAction::Trigger) => {
                if irqs.mode == IrqMode::Intx && disable {
                    old[0] = irqs.intx.take();
                    irqs.mode = IrqMode::None;
                } else if !matches!(irqs.mode, IrqMode::Intx | IrqMode::None)
                    || start != 0
                    || count != 1
                {
                    return Err(Errno::Inval);
                } else if s.data == IrqData::EventFd {
                    old[0] = core::mem::replace(&mut irqs.intx, new[0].take());
                    if irqs.mode == IrqMode::None {
                        irqs.mode = IrqMode::Intx;
                        irqs.intx_masked = false;
                    }
                } else if irqs.mode != IrqMode::Intx {
                    return Err(Errno::Inval);
                } else if fires(0) {
                    if let Some(fd) = &irqs.intx {
                        fd.signal();
                    }
                }
            }
            (VFIO_PCI_MSI_IRQ_INDEX | VFIO_PCI_MSIX_IRQ_INDEX, IrqAction::Trigger) => {
                let mode = if s.index == VFIO_PCI_MSI_IRQ_INDEX {
                    IrqMode::Msi
                } else {
                    IrqMode::Msix
                };
                if irqs.mode == mode && disable {
                    for (o, v) in old.iter_mut().zip(irqs.vectors.iter_mut()) {
                        *o = v.take();
                    }
                    irqs.mode = IrqMode::None;
                } else if irqs.mode != mode && irqs.mode != IrqMode::None {
                    return Err(Errno::Inval);
                } else if s.data == IrqData::EventFd {
                    if count == 0 && irqs.mode != mode {
                        // Enabling no vectors: vfio-pci fails to allocate.
                        return Err(Errno::Inval);
                    }
                    let end = start.checked_add(count).ok_or(Errno::Inval)?;
                    let slots = irqs.vectors.get_mut(start..end).ok_or(Errno::Inval)?;
                    for ((o, v), n) in old.iter_mut().zip(slots).zip(new.iter_mut()) {
                        *o = core::mem::replace(v, n.take());
                    }
                    irqs.mode = mode;
                } else if irqs.mode != mode {
                    return Err(Errno::Inval);
                } else {
                    // Loopback: NONE, or BOOL where set, fires the vectors.
                    for i in 0..count {
                        if fires(i) {
                            if let Some(Some(fd)) = irqs.vectors.get(start + i) {
                                fd.signal();
                            }
                        }
                    }
                }
            }
            (VFIO_PCI_ERR_IRQ_INDEX | VFIO_PCI_REQ_IRQ_INDEX, IrqAction::Trigger) => {
                let slot = if s.index == VFIO_PCI_ERR_IRQ_INDEX {
                    &mut irqs.err
                } else {
                    &mut irqs.req
                };
                match s.data {
                    IrqData::None => {
                        let Some(fd) = slot.as_ref() else {
                            return Err(Errno::Inval);
                        };
                        if count > 0 {
                            fd.signal();
                        } else {
                            old[0] = slot.take();
                        }
                    }
                    _ if count == 0 => return Err(Errno::Inval),
                    IrqData::Bool => {
                        if let (true, Some(fd)) = (fires(0), slot.as_ref()) {
                            fd.signal();
                        }
                    }
                    IrqData::EventFd => old[0] = core::mem::replace(slot, new[0].take()),
                }
            }
            _ => return Err(Errno::NoTty),
        }
        Ok(was_intx && self.irqs.mode != IrqMode::Intx)
    }
}

/// The data that follows a checked `struct vfio_irq_set` header, as the
/// kernel side copied it from userspace.
#[derive(Debug, Clone, Copy)]
pub(crate) enum IrqArgs<'a> {
    /// `DATA_NONE`.
    None,
    /// `DATA_BOOL`: one byte per interrupt.
    Bool(&'a [u8]),
    /// `DATA_EVENTFD`: one file descriptor per interrupt, -1 to clear.
    Fds(&'a [i32]),
}

/// What `VFIO_DEVICE_SET_IRQS` needs of the kernel.
pub(crate) trait IrqHost {
    /// The eventfd type.
    type Fd: Signal;
    /// The kernel's error type; model errors convert into it.
    type Error: From<Errno>;

    /// Takes a reference to the eventfd behind descriptor `fd`.
    fn eventfd(&self, fd: i32) -> Result<Self::Fd, Self::Error>;

    /// Runs `f` on the interrupt state, under the library's lock.
    fn locked<R>(&self, f: impl FnOnce(&mut Ctx<Self::Fd>) -> R) -> R;

    /// Arms the INTx unmask irqfd on eventfd `fd` (outside the lock; may
    /// sleep). Fails with `EBUSY` if one is armed already.
    fn arm_unmask(&self, fd: i32) -> Result<(), Self::Error>;

    /// Disarms the INTx unmask irqfd, if one is armed (outside the lock).
    fn disarm_unmask(&self);
}

/// `VFIO_DEVICE_SET_IRQS` after the header check ([`super::irq::check_set`]),
/// with vfio-pci's semantics index by index: an index is enabled by its
/// first eventfd and stays enabled (a `-1` only clears a trigger) until
/// `DATA_NONE` with count 0 disables it; INTx, MSI and MSI-X exclude each
/// other; loopback triggers (`DATA_NONE`, `DATA_BOOL`) need the index
/// enabled; ERR and REQ take one eventfd each; the INTx unmask eventfd is an
/// irqfd. The caller serialises calls (vfio-pci's `igate`).
///
/// New eventfd references are taken before the lock, so a bad descriptor
/// fails the call without changing anything; eventfds replaced are dropped
/// after it.
pub(crate) fn set_irqs<H: IrqHost>(
    host: &H,
    s: &IrqSet,
    args: IrqArgs<'_>,
) -> Result<(), H::Error> {
    let (fds, bools): (&[i32], &[u8]) = match args {
        IrqArgs::None => (&[], &[]),
        IrqArgs::Bool(b) => (&[], b),
        IrqArgs::Fds(f) => (f, &[]),
    };
    let fd_at = |i: usize| fds.get(i).copied().ok_or(Errno::Inval);
    let count = s.count as usize;

    // INTx unmask through an eventfd (irqfd): fd >= 0 arms it while INTx is
    // enabled (EBUSY if one is armed), any other value disarms it.
    if (s.index, s.action, s.data) == (VFIO_PCI_INTX_IRQ_INDEX, IrqAction::Unmask, IrqData::EventFd)
    {
        if host.locked(|c| c.irqs.mode) != IrqMode::Intx || s.start != 0 || count != 1 {
            return Err(Errno::Inval.into());
        }
        match fd_at(0)? {
            fd if fd >= 0 => host.arm_unmask(fd)?,
            _ => host.disarm_unmask(),
        }
        return Ok(());
    }

    // A request no handler takes fails before its descriptors are looked
    // at, as in vfio-pci: mask and unmask exist for INTx only, and INTx
    // masking never reads its eventfd.
    match (s.index, s.action, s.data) {
        (VFIO_PCI_INTX_IRQ_INDEX, IrqAction::Mask, IrqData::EventFd) => {
            if host.locked(|c| c.irqs.mode) != IrqMode::Intx || s.start != 0 || count != 1 {
                return Err(Errno::Inval.into());
            }
            return Err(Errno::NoTty.into());
        }
        (VFIO_PCI_INTX_IRQ_INDEX, _, _) | (_, IrqAction::Trigger, _) => {}
        _ => return Err(Errno::NoTty.into()),
    }

    // Declared before `old`, so dropped after it; both after the lock.
    let mut new: [Option<H::Fd>; VECTORS] = [const { None }; VECTORS];
    if s.data == IrqData::EventFd {
        if count > VECTORS {
            return Err(Errno::Inval.into());
        }
        for (i, slot) in new.iter_mut().take(count).enumerate() {
            *slot = match fd_at(i)? {
                -1 => None,
                fd if fd >= 0 => Some(host.eventfd(fd)?),
                _ => return Err(Errno::Inval.into()),
            };
        }
    }
    let mut old: Detached<H::Fd> = [const { None }; VECTORS];
    let left_intx = host.locked(|c| c.set_irqs_locked(s, &mut new, bools, &mut old))?;
    drop(old);
    drop(new);
    if left_intx {
        // Without INTx the unmask irqfd has nothing to do; vfio-pci disarms
        // it with INTx too.
        host.disarm_unmask();
    }
    Ok(())
}

#[cfg(test)]
mod tests;
