// SPDX-License-Identifier: GPL-2.0

//! The controller: BAR0 accesses, enable, reset and shutdown, servicing the
//! queues, completions and interrupts.
//!
//! The controller is *running* while CSTS.RDY is set, CSTS.CFS is clear, no
//! reset is draining and no shutdown was requested; only then does it fetch
//! commands. Completions of requests the caller executes are posted whenever
//! their queue still exists (so a shutdown can finish), and dropped once a
//! reset or a fatal error made the queue meaningless.

use super::{
    admin::AdminResult,
    cmd::{cqe, sc, Sqe, Status, SQE_SIZE},
    io::{self, IoRequest, IoSink, Tag},
    queue::{Cq, Held, Sq},
    regs::{self, Reg},
    Config, ConfigError, GuestMem, Namespace, AER_MAX, MAX_IO_QUEUES, MAX_NS, NUM_QUEUES,
};

/// How the glue delivers the controller's interrupts, which decides what
/// INTMS and INTMC do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IrqMode {
    /// MSI-X: one vector per completion queue's IV; INTMS and INTMC are
    /// ignored.
    MsiX,
    /// MSI: IV selects the message; INTMS masks per vector.
    Msi,
    /// INTx: one level-triggered line; INTMS bit 0 masks it.
    Intx,
}

/// Interrupt vectors to signal, as a bit mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Irqs(pub(crate) u32);

impl Irqs {
    fn add(&mut self, v: u16) {
        if let Some(bit) = 1u32.checked_shl(u32::from(v)) {
            self.0 |= bit;
        }
    }

    /// Whether no vector needs signalling.
    pub(crate) fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The vectors, lowest first.
    pub(crate) fn vectors(&self) -> impl Iterator<Item = u16> + '_ {
        (0..32u16).filter(move |&v| self.0 & (1 << v) != 0)
    }
}

/// What the caller must do after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[must_use]
pub(crate) struct Effect {
    /// A queue needs service: call [`Controller::process`] (from a worker).
    pub(crate) kick: bool,
    /// Vectors to signal now.
    pub(crate) irqs: Irqs,
}

impl Effect {
    fn merge(self, o: Effect) -> Effect {
        Effect {
            kick: self.kick || o.kick,
            irqs: Irqs(self.irqs.0 | o.irqs.0),
        }
    }
}

/// The settings of Set Features, with their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Features {
    pub(crate) arbitration: u32,
    pub(crate) power_mgmt: u32,
    /// The composite temperature's over and under thresholds, in kelvin.
    pub(crate) temp_over: u16,
    pub(crate) temp_under: u16,
    pub(crate) err_recovery: u32,
    /// Volatile Write Cache enabled.
    pub(crate) vwc: bool,
    pub(crate) coalescing: u32,
    /// Coalescing Disable, per interrupt vector.
    pub(crate) vector_cd: u32,
    pub(crate) write_atomicity: u32,
    /// Asynchronous Event Configuration.
    pub(crate) aec: u32,
}

impl Features {
    pub(crate) const DEFAULT: Self = Self {
        arbitration: 0,
        power_mgmt: 0,
        temp_over: super::admin::WCTEMP,
        temp_under: 0,
        err_recovery: 0,
        vwc: true,
        coalescing: 0,
        vector_cd: 0,
        write_atomicity: 0,
        aec: 0,
    };
}

/// Asynchronous event requests held, and events waiting for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Aer {
    /// Command identifiers of the requests held, oldest first.
    pub(crate) cids: [u16; AER_MAX],
    pub(crate) n: u8,
    /// A Namespace Attribute Changed notice waits to be reported.
    pub(crate) ns_notice: bool,
    /// Notices are masked until the host reads the Changed Namespace List.
    pub(crate) notice_masked: bool,
    /// The Changed Namespace List: bit `i` is namespace `i + 1`.
    pub(crate) changed_ns: u32,
}

impl Aer {
    pub(crate) const EMPTY: Self = Self {
        cids: [0; AER_MAX],
        n: 0,
        ns_notice: false,
        notice_masked: false,
        changed_ns: 0,
    };
}

/// The SMART / Health counters the controller keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counters {
    pub(crate) bytes_read: u64,
    pub(crate) bytes_written: u64,
    pub(crate) reads: u64,
    pub(crate) writes: u64,
}

/// A Delete I/O Submission Queue waiting for the queue's commands in
/// flight: its command identifier and the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PendingDelete {
    pub(crate) cid: u16,
    pub(crate) sqid: u16,
}

/// An NVMe controller.
///
/// About 3 KiB; the glue keeps it in an allocation of its own.
#[derive(Debug, Clone)]
#[cfg_attr(test, derive(PartialEq, Eq))]
pub(crate) struct Controller {
    pub(super) cfg: Config,
    pub(super) irq_mode: IrqMode,
    pub(super) cc: u32,
    pub(super) csts: u32,
    pub(super) aqa: u32,
    pub(super) asq: u64,
    pub(super) acq: u64,
    pub(super) intms: u32,
    pub(super) sqs: [Sq; NUM_QUEUES],
    pub(super) cqs: [Cq; NUM_QUEUES],
    /// Doorbell Buffer Config: the shadow doorbell and event index pages.
    pub(super) dbbuf: Option<(u64, u64)>,
    pub(super) feat: Features,
    pub(super) aer: Aer,
    pub(super) pending_delete: Option<PendingDelete>,
    /// Incremented for every new submission queue and every reset: a
    /// request's [`Tag`] names the incarnation of its queue.
    pub(super) epoch: u32,
    /// Requests handed to the caller and not completed yet, of any epoch.
    pub(super) outstanding: u32,
    /// A reset waits for [`Self::outstanding`] to reach zero.
    pub(super) draining: bool,
    /// A shutdown waits for [`Self::outstanding`] to reach zero.
    pub(super) shutting_down: bool,
    pub(super) counters: Counters,
}

/// The controller stopped: a queue is broken (CSTS.CFS is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fatal;

impl Controller {
    /// A controller in its power-on state (disabled), after checking `cfg`.
    pub(crate) fn new(cfg: &Config, irq_mode: IrqMode) -> Result<Self, ConfigError> {
        cfg.check()?;
        Ok(Self {
            cfg: *cfg,
            irq_mode,
            cc: 0,
            csts: 0,
            aqa: 0,
            asq: 0,
            acq: 0,
            intms: 0,
            sqs: [Sq::EMPTY; NUM_QUEUES],
            cqs: [Cq::EMPTY; NUM_QUEUES],
            dbbuf: None,
            feat: Features::DEFAULT,
            aer: Aer::EMPTY,
            pending_delete: None,
            epoch: 0,
            outstanding: 0,
            draining: false,
            shutting_down: false,
            counters: Counters::default(),
        })
    }

    /// The configuration it was created with.
    pub(crate) fn config(&self) -> &Config {
        &self.cfg
    }

    /// Switches the interrupt mode (when the guest enables MSI-X, MSI or
    /// neither). Returns the vectors to signal for entries still unread.
    pub(crate) fn set_irq_mode(&mut self, mode: IrqMode) -> Irqs {
        self.irq_mode = mode;
        let mut irqs = Irqs::default();
        for v in 0..self.cfg.vectors {
            if self.vector_asserted(v) {
                irqs.add(v);
            }
        }
        irqs
    }

    /// Requests handed to the caller and not completed yet. A reset or a
    /// shutdown finishes when this is zero.
    pub(crate) fn outstanding(&self) -> u32 {
        self.outstanding
    }

    /// Whether CSTS.CFS is set.
    pub(crate) fn fatal(&self) -> bool {
        self.csts & regs::CSTS_CFS != 0
    }

    /// Whether the controller fetches commands.
    pub(crate) fn running(&self) -> bool {
        self.csts & (regs::CSTS_RDY | regs::CSTS_CFS) == regs::CSTS_RDY
            && !self.draining
            && regs::cc_shn(self.cc) == 0
            && !self.shutting_down
    }

    /// Replaces namespace `nsid` (1 to [`MAX_NS`]): attaches, detaches or
    /// resizes it, and reports a Namespace Attribute Changed notice if the
    /// guest enabled them. `Err` for a bad identifier or namespace.
    pub(crate) fn set_namespace(
        &mut self,
        nsid: u32,
        ns: Option<Namespace>,
    ) -> Result<Effect, ConfigError> {
        if ns.is_some_and(|n| n.bytes().is_none()) {
            return Err(ConfigError::Namespace);
        }
        let i = usize::try_from(nsid)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .filter(|&i| i < MAX_NS)
            .ok_or(ConfigError::Namespace)?;
        let slot = self
            .cfg
            .namespaces
            .get_mut(i)
            .ok_or(ConfigError::Namespace)?;
        *slot = ns;
        self.aer.changed_ns |= 1 << i;
        let mut e = Effect::default();
        if self.feat.aec & super::admin::AEC_NS_ATTR != 0 {
            self.aer.ns_notice = true;
            e.kick = true;
        }
        Ok(e)
    }

    /// Reads `size` bytes at `offset` of BAR0. Doorbells, reserved
    /// registers and accesses that are neither naturally aligned nor within
    /// one register read as zero.
    pub(crate) fn mmio_read(&self, offset: u64, size: usize) -> u64 {
        match size {
            8 if offset.is_multiple_of(8) => {
                let lo = self.read32(offset);
                let hi = offset.checked_add(4).map_or(0, |o| self.read32(o));
                u64::from(lo) | (u64::from(hi) << 32)
            }
            4 if offset.is_multiple_of(4) => u64::from(self.read32(offset)),
            1 | 2 if offset.is_multiple_of(size as u64) => {
                let d = self.read32(offset & !3);
                let shift = (offset & 3) * 8;
                let mask = if size == 1 { 0xff } else { 0xffff };
                u64::from((d >> shift) & mask)
            }
            _ => 0,
        }
    }

    fn read32(&self, offset: u64) -> u32 {
        match regs::decode(offset) {
            Reg::Ctrl(regs::CAP) => regs::CAP_VALUE as u32,
            Reg::Ctrl(o) if o == regs::CAP + 4 => (regs::CAP_VALUE >> 32) as u32,
            Reg::Ctrl(regs::VS) => regs::VERSION,
            Reg::Ctrl(regs::INTMS) | Reg::Ctrl(regs::INTMC) => self.intms,
            Reg::Ctrl(regs::CC) => self.cc,
            Reg::Ctrl(regs::CSTS) => self.csts,
            Reg::Ctrl(regs::AQA) => self.aqa,
            Reg::Ctrl(regs::ASQ) => self.asq as u32,
            Reg::Ctrl(o) if o == regs::ASQ + 4 => (self.asq >> 32) as u32,
            Reg::Ctrl(regs::ACQ) => self.acq as u32,
            Reg::Ctrl(o) if o == regs::ACQ + 4 => (self.acq >> 32) as u32,
            _ => 0,
        }
    }

    /// Writes `size` bytes of `value` at `offset` of BAR0. 8-byte accesses
    /// are two 4-byte ones, low dword first; other sizes and misaligned
    /// accesses are ignored.
    pub(crate) fn mmio_write(&mut self, offset: u64, size: usize, value: u64) -> Effect {
        match size {
            8 if offset.is_multiple_of(8) => {
                let e = self.write32(offset, value as u32);
                match offset.checked_add(4) {
                    Some(o) => e.merge(self.write32(o, (value >> 32) as u32)),
                    None => e,
                }
            }
            4 if offset.is_multiple_of(4) => self.write32(offset, value as u32),
            _ => Effect::default(),
        }
    }

    fn write32(&mut self, offset: u64, v: u32) -> Effect {
        let mut e = Effect::default();
        match regs::decode(offset) {
            Reg::Ctrl(regs::INTMS) if self.irq_mode != IrqMode::MsiX => {
                self.intms |= v;
            }
            Reg::Ctrl(regs::INTMC) if self.irq_mode != IrqMode::MsiX => {
                let unmasked = self.intms & v;
                self.intms &= !v;
                for vec in 0..32u16 {
                    if unmasked & (1 << vec) != 0 && self.vector_asserted(vec) {
                        e.irqs.add(vec);
                    }
                }
            }
            Reg::Ctrl(regs::CC) => e = self.cc_write(v),
            Reg::Ctrl(regs::AQA) => self.aqa = v & regs::AQA_WRITABLE,
            Reg::Ctrl(regs::ASQ) => self.asq = (self.asq & !0xffff_ffff) | u64::from(v),
            Reg::Ctrl(o) if o == regs::ASQ + 4 => {
                self.asq = (self.asq & 0xffff_ffff) | (u64::from(v) << 32)
            }
            Reg::Ctrl(regs::ACQ) => self.acq = (self.acq & !0xffff_ffff) | u64::from(v),
            Reg::Ctrl(o) if o == regs::ACQ + 4 => {
                self.acq = (self.acq & 0xffff_ffff) | (u64::from(v) << 32)
            }
            Reg::Doorbell(db) => e = self.doorbell(db, v),
            // No NVM subsystem reset (CAP.NSSRS is 0).
            Reg::Ctrl(regs::NSSR) => {}
            // CAP, VS, CSTS and reserved space.
            _ => {}
        }
        self.asq &= regs::ADDR_WRITABLE;
        self.acq &= regs::ADDR_WRITABLE;
        e
    }

    fn cc_write(&mut self, v: u32) -> Effect {
        let old = self.cc;
        let new = v & regs::CC_WRITABLE;
        self.cc = new;
        let mut e = Effect::default();
        if old & regs::CC_EN != 0 && new & regs::CC_EN == 0 {
            self.reset();
            e.kick = self.outstanding > 0;
        } else if old & regs::CC_EN == 0 && new & regs::CC_EN != 0 {
            self.enable();
        }
        if regs::cc_shn(new) != 0 && regs::cc_shn(old) == 0 {
            self.shutting_down = true;
            self.csts = (self.csts & !regs::CSTS_SHST_MASK) | regs::CSTS_SHST_OCCURRING;
            e.kick |= self.outstanding > 0;
        }
        self.finish_drain();
        e
    }

    /// Controller reset (CC.EN from 1 to 0): every queue, held event
    /// request and setting goes; requests in flight drain (see
    /// [`Self::finish_drain`]).
    fn reset(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        self.sqs = [Sq::EMPTY; NUM_QUEUES];
        self.cqs = [Cq::EMPTY; NUM_QUEUES];
        self.dbbuf = None;
        self.feat = Features::DEFAULT;
        let changed = self.aer.changed_ns;
        self.aer = Aer {
            changed_ns: changed,
            ..Aer::EMPTY
        };
        self.pending_delete = None;
        self.intms = 0;
        self.draining = true;
    }

    /// A function level reset (FLR, `VFIO_DEVICE_RESET`): back to the
    /// power-on state, registers included. Requests the caller still
    /// executes drain as after a controller reset (their completions are
    /// dropped): report the reset done once [`Self::outstanding`] is zero.
    pub(crate) fn function_reset(&mut self) -> Effect {
        self.reset();
        self.aer = Aer::EMPTY;
        self.cc = 0;
        self.csts = 0;
        self.aqa = 0;
        self.asq = 0;
        self.acq = 0;
        self.shutting_down = false;
        self.finish_drain();
        Effect {
            kick: self.outstanding > 0,
            irqs: Irqs::default(),
        }
    }

    /// Finishes a reset or shutdown once nothing is outstanding: a reset
    /// clears CSTS (and enables again if CC.EN was set meanwhile), a
    /// shutdown reports completion.
    fn finish_drain(&mut self) {
        if self.outstanding != 0 {
            return;
        }
        if self.draining {
            self.draining = false;
            self.shutting_down = false;
            self.csts = 0;
            if self.cc & regs::CC_EN != 0 {
                self.enable();
            }
        }
        if self.shutting_down {
            self.shutting_down = false;
            self.csts = (self.csts & !regs::CSTS_SHST_MASK) | regs::CSTS_SHST_COMPLETE;
        }
    }

    /// CC.EN from 0 to 1: checks the admin queues and CC, then sets
    /// CSTS.RDY, or CSTS.CFS if something is invalid.
    fn enable(&mut self) {
        if self.draining {
            return;
        }
        let sqs = (self.aqa & 0xfff) as u16 + 1;
        let cqs = ((self.aqa >> 16) & 0xfff) as u16 + 1;
        if !regs::cc_valid(self.cc) || sqs < 2 || cqs < 2 || self.asq == 0 || self.acq == 0 {
            self.csts |= regs::CSTS_CFS;
            return;
        }
        self.epoch = self.epoch.wrapping_add(1);
        if let (Some(sq), Some(cq)) = (self.sqs.get_mut(0), self.cqs.get_mut(0)) {
            *sq = Sq::new(self.asq, sqs, 0, self.epoch);
            *cq = Cq::new(self.acq, cqs, true, 0);
        }
        self.feat = Features::DEFAULT;
        self.csts = regs::CSTS_RDY;
    }

    /// Makes the controller fatal: it stops until a reset.
    pub(super) fn set_fatal(&mut self) -> Fatal {
        self.csts |= regs::CSTS_CFS;
        Fatal
    }

    fn doorbell(&mut self, db: regs::Doorbell, v: u32) -> Effect {
        let mut e = Effect::default();
        if self.csts & (regs::CSTS_RDY | regs::CSTS_CFS) != regs::CSTS_RDY || self.draining {
            return e;
        }
        if !regs::doorbell_in_range(db) {
            self.set_fatal();
            return e;
        }
        let qid = usize::from(db.qid);
        if db.cq {
            let Some(cq) = self.cqs.get_mut(qid) else {
                return e;
            };
            if !cq.valid || !cq.head_valid(v) {
                self.set_fatal();
                return e;
            }
            let was_full = cq.full();
            cq.head = v as u16;
            e.kick = was_full || self.held_for(db.qid) || (qid == 0 && self.aer.ns_notice);
        } else {
            let Some(sq) = self.sqs.get_mut(qid) else {
                return e;
            };
            if !sq.valid || !sq.tail_valid(v) {
                self.set_fatal();
                return e;
            }
            sq.tail = v as u16;
            e.kick = true;
        }
        e
    }

    /// Whether a submission queue bound to completion queue `cqid` holds
    /// completions back.
    fn held_for(&self, cqid: u16) -> bool {
        self.sqs
            .iter()
            .any(|s| s.valid && s.cqid == cqid && s.held_len() > 0)
    }

    /// Whether vector `v` has a completion queue with entries the guest has
    /// not consumed, and is not masked (MSI and INTx).
    fn vector_asserted(&self, v: u16) -> bool {
        let (mask_bit, all_to_zero) = match self.irq_mode {
            IrqMode::MsiX => (None, false),
            IrqMode::Msi => (Some(v), false),
            IrqMode::Intx => (Some(0), true),
        };
        if let Some(b) = mask_bit {
            if self.intms & 1u32.checked_shl(u32::from(b)).unwrap_or(0) != 0 {
                return false;
            }
        }
        self.cqs
            .iter()
            .any(|c| c.valid && c.ien && (all_to_zero || c.iv == v) && c.unread() > 0)
    }

    /// The INTx line's level: a completion queue with interrupts enabled
    /// has entries unread and INTMS bit 0 is clear.
    pub(crate) fn intx_asserted(&self) -> bool {
        self.irq_mode == IrqMode::Intx && self.vector_asserted(0)
    }

    /// Signals `cq`'s vector after a post, unless masked.
    fn signal(&self, iv: u16, irqs: &mut Irqs) {
        let v = match self.irq_mode {
            IrqMode::MsiX => iv,
            IrqMode::Msi => iv,
            IrqMode::Intx => 0,
        };
        if self.irq_mode == IrqMode::MsiX
            || self.intms & 1u32.checked_shl(u32::from(v)).unwrap_or(0) == 0
        {
            irqs.add(v);
        }
    }

    /// Posts a completion for `sqid`'s command `cid` if its completion
    /// queue has room. `Ok(false)` if it is full.
    pub(super) fn post(
        &mut self,
        mem: &mut impl GuestMem,
        sqid: u16,
        cid: u16,
        status: Status,
        result: u32,
        irqs: &mut Irqs,
    ) -> Result<bool, Fatal> {
        let Some(sq) = self.sqs.get(usize::from(sqid)) else {
            return Ok(false);
        };
        let (head, cqid) = (sq.head, sq.cqid);
        let Some(cq) = self.cqs.get(usize::from(cqid)) else {
            return Ok(false);
        };
        if !cq.valid || cq.full() {
            return Ok(false);
        }
        let entry = cqe(result, head, sqid, cid, status, cq.phase);
        let Some(addr) = cq.tail_addr() else {
            return Err(self.set_fatal());
        };
        if mem.write(addr, &entry).is_err() {
            return Err(self.set_fatal());
        }
        let (ien, iv) = (cq.ien, cq.iv);
        if let Some(cq) = self.cqs.get_mut(usize::from(cqid)) {
            cq.advance();
        }
        if ien {
            self.signal(iv, irqs);
        }
        Ok(true)
    }

    /// Completes a request the caller executed, with `status` (a status not
    /// allowed to callers becomes Internal Error). The completion is posted,
    /// held back while its completion queue is full, or dropped if its
    /// queue is gone (reset, deleted) or the controller is fatal.
    pub(crate) fn complete(&mut self, mem: &mut impl GuestMem, tag: Tag, status: Status) -> Effect {
        let mut e = Effect::default();
        self.outstanding = self.outstanding.saturating_sub(1);
        let status = if sc::valid(status) {
            status
        } else {
            sc::INTERNAL
        };
        let fatal = self.fatal();
        if let Some(sq) = self
            .sqs
            .get_mut(usize::from(tag.sqid))
            .filter(|s| s.valid && s.epoch == tag.epoch && tag.sqid != 0)
        {
            if fatal {
                sq.in_flight = sq.in_flight.saturating_sub(1);
            } else {
                match self.post(mem, tag.sqid, tag.cid, status, 0, &mut e.irqs) {
                    Ok(true) => {
                        if let Some(sq) = self.sqs.get_mut(usize::from(tag.sqid)) {
                            sq.in_flight = sq.in_flight.saturating_sub(1);
                        }
                    }
                    Ok(false) => {
                        if let Some(sq) = self.sqs.get_mut(usize::from(tag.sqid)) {
                            if !sq.hold(Held {
                                cid: tag.cid,
                                status,
                            }) {
                                // Cannot happen: held completions are
                                // bounded by the queue size. Treat it as
                                // the broken state it would be.
                                self.set_fatal();
                            }
                        }
                    }
                    Err(Fatal) => {}
                }
                if let Some(sq) = self.sqs.get(usize::from(tag.sqid)) {
                    e.kick = sq.pending() > 0
                        || self
                            .pending_delete
                            .is_some_and(|p| p.sqid == tag.sqid && sq.in_flight == 0);
                }
            }
        }
        let was_draining = self.draining || self.shutting_down;
        self.finish_drain();
        if was_draining && self.running() {
            e.kick = true;
        }
        e
    }

    /// Services every queue: reads shadow doorbells, posts held
    /// completions, runs admin commands, and hands I/O commands to `sink`
    /// (up to each queue's size in flight). `kick` in the result means work
    /// remains that no doorbell will announce (the sink refused a request,
    /// or the guest kept adding entries): call again, when the sink has
    /// room.
    pub(crate) fn process(&mut self, mem: &mut impl GuestMem, sink: &mut impl IoSink) -> Effect {
        let mut e = Effect::default();
        if self.fatal() || self.csts & regs::CSTS_RDY == 0 || self.draining {
            return e;
        }
        if self.process_inner(mem, sink, &mut e).is_err() {
            e.kick = false;
        }
        e
    }

    fn process_inner(
        &mut self,
        mem: &mut impl GuestMem,
        sink: &mut impl IoSink,
        e: &mut Effect,
    ) -> Result<(), Fatal> {
        for qid in 1..=MAX_IO_QUEUES {
            self.read_shadow_cq(mem, qid)?;
            self.flush_held(mem, qid, &mut e.irqs)?;
        }
        self.service_admin(mem, &mut e.irqs)?;
        if !self.running() {
            return Ok(());
        }
        for qid in 1..=MAX_IO_QUEUES {
            if !self.service_io(mem, qid, sink, &mut e.irqs)? {
                e.kick = true;
            }
        }
        Ok(())
    }

    /// The shadow doorbell and event index addresses of a doorbell.
    fn shadow_addrs(&self, qid: u16, cq: bool) -> Option<(u64, u64)> {
        let (dbs, eis) = self.dbbuf?;
        if qid == 0 {
            return None;
        }
        let off = u64::from(qid) * 8 + if cq { 4 } else { 0 };
        Some((dbs.checked_add(off)?, eis.checked_add(off)?))
    }

    fn read_u32(mem: &mut impl GuestMem, addr: u64) -> Option<u32> {
        let mut b = [0u8; 4];
        mem.read(addr, &mut b).ok()?;
        Some(u32::from_le_bytes(b))
    }

    /// Takes an I/O completion queue's head from its shadow doorbell.
    fn read_shadow_cq(&mut self, mem: &mut impl GuestMem, qid: u16) -> Result<(), Fatal> {
        let valid = self.cqs.get(usize::from(qid)).is_some_and(|c| c.valid);
        let Some((db, _)) = self.shadow_addrs(qid, true).filter(|_| valid) else {
            return Ok(());
        };
        let Some(v) = Self::read_u32(mem, db) else {
            return Err(self.set_fatal());
        };
        let Some(cq) = self.cqs.get_mut(usize::from(qid)) else {
            return Ok(());
        };
        if !cq.head_valid(v) {
            return Err(self.set_fatal());
        }
        cq.head = v as u16;
        Ok(())
    }

    /// Posts completions `sqid` holds back while its completion queue has
    /// room. With shadow doorbells, asks the guest to ring the completion
    /// queue's head doorbell if some stay held.
    fn flush_held(
        &mut self,
        mem: &mut impl GuestMem,
        sqid: u16,
        irqs: &mut Irqs,
    ) -> Result<(), Fatal> {
        // Each turn posts one completion or ends; the event index dance
        // repeats only while the guest keeps freeing entries.
        for _ in 0..2 * super::QUEUE_ENTRIES_MAX {
            let Some(sq) = self.sqs.get(usize::from(sqid)).filter(|s| s.valid) else {
                return Ok(());
            };
            let cqid = sq.cqid;
            let Some(h) = sq.peek_held() else {
                return Ok(());
            };
            if self.post(mem, sqid, h.cid, h.status, 0, irqs)? {
                if let Some(sq) = self.sqs.get_mut(usize::from(sqid)) {
                    sq.pop_held();
                    sq.in_flight = sq.in_flight.saturating_sub(1);
                }
                continue;
            }
            // Full. Tell the guest where the head must move past, then look
            // again in case it moved meanwhile.
            let Some((_, ei)) = self.shadow_addrs(cqid, true) else {
                return Ok(());
            };
            let head = self.cqs.get(usize::from(cqid)).map_or(0, |c| c.head);
            if mem.write(ei, &u32::from(head).to_le_bytes()).is_err() {
                return Err(self.set_fatal());
            }
            self.read_shadow_cq(mem, cqid)?;
            if self.cqs.get(usize::from(cqid)).map_or(0, |c| c.head) == head {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Reads the submission queue entry at `sqid`'s head.
    fn fetch(&mut self, mem: &mut impl GuestMem, sqid: u16) -> Result<Sqe, Fatal> {
        let addr = self.sqs.get(usize::from(sqid)).and_then(|s| s.head_addr());
        let mut raw = [0u8; SQE_SIZE as usize];
        match addr {
            Some(a) if mem.read(a, &mut raw).is_ok() => Ok(Sqe(raw)),
            _ => Err(self.set_fatal()),
        }
    }

    /// Runs admin commands while the admin completion queue has room, then
    /// reports waiting asynchronous events.
    fn service_admin(&mut self, mem: &mut impl GuestMem, irqs: &mut Irqs) -> Result<(), Fatal> {
        // Each turn runs a command or ends; one more turn than the queue
        // holds finishes a deletion its last command started.
        let admin_entries = self.sqs.first().map_or(0, |s| u32::from(s.size));
        for _ in 0..=admin_entries + 1 {
            if let Some(p) = self.pending_delete {
                let drained = self
                    .sqs
                    .get(usize::from(p.sqid))
                    .is_none_or(|s| s.in_flight == 0);
                if !drained || !self.post(mem, 0, p.cid, sc::SUCCESS, 0, irqs)? {
                    break;
                }
                if let Some(sq) = self.sqs.get_mut(usize::from(p.sqid)) {
                    *sq = Sq::EMPTY;
                }
                self.pending_delete = None;
            }
            let ready = self.running()
                && self.sqs.first().is_some_and(|s| s.pending() > 0)
                && self.cqs.first().is_some_and(|c| !c.full());
            if !ready {
                break;
            }
            let sqe = self.fetch(mem, 0)?;
            if let Some(sq) = self.sqs.first_mut() {
                sq.advance();
            }
            match self.admin(mem, &sqe) {
                AdminResult::Done { status, result } => {
                    self.post(mem, 0, sqe.cid(), status, result, irqs)?;
                }
                AdminResult::Held => {}
            }
        }
        self.deliver_events(mem, irqs)
    }

    /// Completes a held asynchronous event request with a waiting event.
    fn deliver_events(&mut self, mem: &mut impl GuestMem, irqs: &mut Irqs) -> Result<(), Fatal> {
        if !self.aer.ns_notice || self.aer.notice_masked || self.aer.n == 0 || !self.running() {
            return Ok(());
        }
        let cid = self.aer.cids[0];
        // Notice (type 2), Namespace Attribute Changed (0), log page 04h.
        let result = 2 | (0x04 << 16);
        if self.post(mem, 0, cid, sc::SUCCESS, result, irqs)? {
            self.aer.cids.copy_within(1.., 0);
            self.aer.n = self.aer.n.saturating_sub(1);
            self.aer.ns_notice = false;
            self.aer.notice_masked = true;
        }
        Ok(())
    }

    /// Hands `sqid`'s commands to `sink`. `Ok(false)` if the sink refused
    /// one, or commands may remain that no doorbell will announce.
    fn service_io(
        &mut self,
        mem: &mut impl GuestMem,
        sqid: u16,
        sink: &mut impl IoSink,
        irqs: &mut Irqs,
    ) -> Result<bool, Fatal> {
        let deleting = self.pending_delete.is_some_and(|p| p.sqid == sqid);
        let Some(sq) = self.sqs.get(usize::from(sqid)).filter(|s| s.valid) else {
            return Ok(true);
        };
        if deleting {
            return Ok(true);
        }
        let size = sq.size;
        let shadow = self.shadow_addrs(sqid, false);
        let mut req = IoRequest::EMPTY;
        if let Some((db, _)) = shadow {
            self.read_shadow_sq(mem, sqid, db)?;
        }
        // Bounded: each turn fetches a command, or ends, or takes a tail the
        // guest moved meanwhile. A guest that keeps adding entries through
        // shadow doorbells may use up the turns: then ask to be called again.
        for _ in 0..=2 * u32::from(size) {
            let Some(sq) = self.sqs.get(usize::from(sqid)) else {
                return Ok(true);
            };
            if sq.pending() == 0 {
                let tail = sq.tail;
                let Some((db, ei)) = shadow else {
                    return Ok(true);
                };
                // Ask for a doorbell write past this tail, then check that
                // the guest did not add entries before it saw the index.
                if mem.write(ei, &u32::from(tail).to_le_bytes()).is_err() {
                    return Err(self.set_fatal());
                }
                if self.read_shadow_sq(mem, sqid, db)? == tail {
                    return Ok(true);
                }
                continue;
            }
            if sq.in_flight >= size {
                return Ok(true);
            }
            let epoch = sq.epoch;
            let sqe = self.fetch(mem, sqid)?;
            let tag = Tag {
                sqid,
                cid: sqe.cid(),
                epoch,
            };
            let parsed = io::parse(&self.cfg.namespaces, mem, &sqe, tag, &mut req);
            match parsed {
                Ok(true) => {
                    if !sink.submit(&req) {
                        return Ok(false);
                    }
                    self.outstanding = self.outstanding.saturating_add(1);
                    self.count(&req);
                    if let Some(sq) = self.sqs.get_mut(usize::from(sqid)) {
                        sq.advance();
                        sq.in_flight = sq.in_flight.saturating_add(1);
                    }
                }
                Ok(false) | Err(_) => {
                    let status = parsed.err().unwrap_or(sc::SUCCESS);
                    if let Some(sq) = self.sqs.get_mut(usize::from(sqid)) {
                        sq.advance();
                        sq.in_flight = sq.in_flight.saturating_add(1);
                    }
                    if self.post(mem, sqid, tag.cid, status, 0, irqs)? {
                        if let Some(sq) = self.sqs.get_mut(usize::from(sqid)) {
                            sq.in_flight = sq.in_flight.saturating_sub(1);
                        }
                    } else if let Some(sq) = self.sqs.get_mut(usize::from(sqid)) {
                        sq.hold(Held {
                            cid: tag.cid,
                            status,
                        });
                    }
                }
            }
        }
        Ok(false)
    }

    /// Takes an I/O submission queue's tail from its shadow doorbell at
    /// `db`, and returns it.
    fn read_shadow_sq(
        &mut self,
        mem: &mut impl GuestMem,
        sqid: u16,
        db: u64,
    ) -> Result<u16, Fatal> {
        let Some(t) = Self::read_u32(mem, db) else {
            return Err(self.set_fatal());
        };
        match self.sqs.get_mut(usize::from(sqid)) {
            Some(sq) if sq.tail_valid(t) => {
                sq.tail = t as u16;
                Ok(sq.tail)
            }
            _ => Err(self.set_fatal()),
        }
    }

    /// Adds a request to the SMART / Health counters.
    fn count(&mut self, req: &IoRequest) {
        let c = &mut self.counters;
        match req.kind {
            io::IoKind::Read => {
                c.reads = c.reads.wrapping_add(1);
                c.bytes_read = c.bytes_read.wrapping_add(req.len);
            }
            io::IoKind::Write => {
                c.writes = c.writes.wrapping_add(1);
                c.bytes_written = c.bytes_written.wrapping_add(req.len);
            }
            _ => {}
        }
    }

    /// The namespace `nsid` names, if it is attached.
    pub(super) fn namespace(&self, nsid: u32) -> Option<&Namespace> {
        let i = usize::try_from(nsid).ok()?.checked_sub(1)?;
        self.cfg.namespaces.get(i)?.as_ref()
    }

    /// Whether the state is consistent: what every operation keeps true
    /// (the property test checks it after each step).
    #[cfg(test)]
    pub(crate) fn invariants(&self) -> Result<(), &'static str> {
        use super::{ADMIN_ENTRIES_MAX, QUEUE_ENTRIES_MAX};
        let mut in_flight = 0u32;
        for (i, (sq, cq)) in self.sqs.iter().zip(&self.cqs).enumerate() {
            let max = if i == 0 {
                ADMIN_ENTRIES_MAX
            } else {
                QUEUE_ENTRIES_MAX
            };
            if sq.valid {
                if sq.size < 2 || sq.size > max || sq.head >= sq.size || sq.tail >= sq.size {
                    return Err("submission queue bounds");
                }
                if i != 0 && sq.in_flight > sq.size {
                    return Err("in flight above the queue size");
                }
                if sq.held_len() > sq.in_flight && i != 0 {
                    return Err("more held than in flight");
                }
                if !sq.held_iter().all(|h| sc::valid(h.status)) {
                    return Err("a held status callers may not give");
                }
                if !self.cqs.get(usize::from(sq.cqid)).is_some_and(|c| c.valid) {
                    return Err("submission queue without its completion queue");
                }
                in_flight += u32::from(sq.in_flight) - u32::from(sq.held_len());
            } else if *sq != Sq::EMPTY {
                return Err("stale submission queue");
            }
            if cq.valid {
                if cq.size < 2 || cq.size > max || cq.head >= cq.size || cq.tail >= cq.size {
                    return Err("completion queue bounds");
                }
                if cq.ien && cq.iv >= self.cfg.vectors {
                    return Err("vector out of range");
                }
            } else if *cq != Cq::EMPTY {
                return Err("stale completion queue");
            }
        }
        if !self.fatal() && !self.draining && in_flight > self.outstanding {
            return Err("in flight exceeds outstanding");
        }
        if usize::from(self.aer.n) > AER_MAX {
            return Err("too many event requests");
        }
        if self.csts & regs::CSTS_RDY == 0 && self.sqs.iter().any(|s| s.valid) {
            return Err("queues while not ready");
        }
        Ok(())
    }
}
