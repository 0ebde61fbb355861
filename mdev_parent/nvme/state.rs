// SPDX-License-Identifier: GPL-2.0

//! The controller's state as a byte stream, for migration.
//!
//! [`Controller::save`] writes the state a guest can observe into a device
//! section of the library's migration stream; [`Controller::restore`] loads
//! it into a controller created with the same namespaces, vendor IDs and
//! vector count. All fields are little endian:
//!
//! | field                 | contents                                           |
//! |-----------------------|----------------------------------------------------|
//! | header                | version (u16, [`VERSION`]), reserved (u16, zero)   |
//! | identity              | serial (20), model (40), subsystem NQN (256),      |
//! |                       | VID, SSVID, CNTLID, vectors (u16 each)             |
//! | namespaces            | [`MAX_NS`] times: present, block size shift (u8),  |
//! |                       | blocks (u64), identity (16)                        |
//! | registers             | CC, CSTS, AQA (u32), ASQ, ACQ (u64), INTMS (u32),  |
//! |                       | interrupt mode (u8: MSI-X, MSI, INTx)              |
//! | doorbell buffer       | present (u8), shadow and event index pages (u64)   |
//! | features              | arbitration, power (u32), thresholds (u16, u16),   |
//! |                       | error recovery (u32), write cache (u8),            |
//! |                       | coalescing, vector CD bits, atomicity, AEC (u32)   |
//! | events                | held requests (u8), their [`AER_MAX`] command ids  |
//! |                       | (u16), notice waiting, notices masked (u8),        |
//! |                       | changed namespaces (u32)                           |
//! | pending deletion      | present (u8), command id, queue (u16)              |
//! | epoch, counters       | u32; bytes read, written, reads, writes (u64)      |
//! | completion queues     | per queue: valid, base, size, head, tail, phase,   |
//! |                       | interrupts enabled, vector                         |
//! | submission queues     | per queue: valid, base, size, head, tail, CQ id,   |
//! |                       | held count (u16 each), epoch (u32), then           |
//! |                       | (command id, status) per completion held           |
//!
//! The controller is saved drained: no request may be outstanding with the
//! caller (the glue stops fetching and waits before it saves), so commands
//! in flight are exactly the completions held back, which the stream
//! carries. Restoring checks every field against what the controller could
//! have produced (sizes, heads and tails within their queues, bindings to
//! existing completion queues, vectors, statuses, reserved bits) before it
//! applies any: a stream that fails any check changes nothing.

use super::{
    cmd::sc,
    ctrl::{Aer, Controller, Counters, Features, IrqMode, PendingDelete},
    queue::{Cq, Held, Sq},
    regs, Namespace, ADMIN_ENTRIES_MAX, AER_MAX, MAX_IO_QUEUES, MAX_NS, NUM_QUEUES, PAGE_SIZE,
    QUEUE_ENTRIES_MAX,
};
use crate::vfio_pci_core::emul::{
    mig::{Reader, Writer},
    EResult, Errno,
};

/// The stream's version: a reader refuses any other.
pub(crate) const VERSION: u16 = 1;

fn w_u64(w: &mut Writer<'_>, v: u64) -> EResult {
    w.bytes(&v.to_le_bytes())
}

fn r_u64(r: &mut Reader<'_>) -> EResult<u64> {
    Ok(u64::from_le_bytes(r.array()?))
}

/// `Ok` if `ok`, `EINVAL` otherwise.
fn ensure(ok: bool) -> EResult {
    if ok {
        Ok(())
    } else {
        Err(Errno::Inval)
    }
}

/// A ring's base address: page aligned, and the ring fits the address
/// space.
fn ring_ok(base: u64, size: u16, entry: u64) -> bool {
    base & (PAGE_SIZE - 1) == 0 && base.checked_add(u64::from(size) * entry).is_some()
}

impl Controller {
    /// Writes the state. `EINVAL` while requests are outstanding or a reset
    /// drains.
    pub(crate) fn save(&self, w: &mut Writer<'_>) -> EResult {
        ensure(self.outstanding == 0 && !self.draining && !self.shutting_down)?;
        w.u16(VERSION)?;
        w.u16(0)?;
        let c = &self.cfg;
        w.bytes(&c.serial)?;
        w.bytes(&c.model)?;
        w.bytes(&c.subnqn)?;
        for v in [c.vid, c.ssvid, c.cntlid, c.vectors] {
            w.u16(v)?;
        }
        for ns in &c.namespaces {
            let n = ns.unwrap_or(Namespace {
                blocks: 0,
                lba_shift: 0,
                id: [0; 16],
            });
            w.u8(ns.is_some().into())?;
            w.u8(n.lba_shift)?;
            w_u64(w, n.blocks)?;
            w.bytes(&n.id)?;
        }
        w.u32(self.cc)?;
        w.u32(self.csts)?;
        w.u32(self.aqa)?;
        w_u64(w, self.asq)?;
        w_u64(w, self.acq)?;
        w.u32(self.intms)?;
        w.u8(match self.irq_mode {
            IrqMode::MsiX => 0,
            IrqMode::Msi => 1,
            IrqMode::Intx => 2,
        })?;
        let (dbs, eis) = self.dbbuf.unwrap_or((0, 0));
        w.u8(self.dbbuf.is_some().into())?;
        w_u64(w, dbs)?;
        w_u64(w, eis)?;
        let f = &self.feat;
        w.u32(f.arbitration)?;
        w.u32(f.power_mgmt)?;
        w.u16(f.temp_over)?;
        w.u16(f.temp_under)?;
        w.u32(f.err_recovery)?;
        w.u8(f.vwc.into())?;
        for v in [f.coalescing, f.vector_cd, f.write_atomicity, f.aec] {
            w.u32(v)?;
        }
        let a = &self.aer;
        w.u8(a.n)?;
        for &cid in &a.cids {
            w.u16(cid)?;
        }
        w.u8(a.ns_notice.into())?;
        w.u8(a.notice_masked.into())?;
        w.u32(a.changed_ns)?;
        let p = self.pending_delete;
        w.u8(p.is_some().into())?;
        w.u16(p.map_or(0, |p| p.cid))?;
        w.u16(p.map_or(0, |p| p.sqid))?;
        w.u32(self.epoch)?;
        let k = &self.counters;
        for v in [k.bytes_read, k.bytes_written, k.reads, k.writes] {
            w_u64(w, v)?;
        }
        for cq in &self.cqs {
            w.u8(cq.valid.into())?;
            w_u64(w, cq.base)?;
            for v in [cq.size, cq.head, cq.tail] {
                w.u16(v)?;
            }
            w.u8(cq.phase.into())?;
            w.u8(cq.ien.into())?;
            w.u16(cq.iv)?;
        }
        for sq in &self.sqs {
            w.u8(sq.valid.into())?;
            w_u64(w, sq.base)?;
            for v in [sq.size, sq.head, sq.tail, sq.cqid, sq.held_len()] {
                w.u16(v)?;
            }
            w.u32(sq.epoch)?;
            for h in sq.held_iter() {
                w.u16(h.cid)?;
                w.u16(h.status)?;
            }
        }
        Ok(())
    }

    /// Loads what [`Self::save`] wrote, all or nothing. `EINVAL` for a
    /// truncated, overlong or inconsistent stream, or one from a controller
    /// with other namespaces, vendor IDs or vector count; `EINVAL` too while
    /// requests are outstanding here.
    pub(crate) fn restore(&mut self, data: &[u8]) -> EResult {
        ensure(self.outstanding == 0)?;
        self.load(data, false)?;
        self.load(data, true)
    }

    /// Parses and checks `data`; applies it if `apply` (after a pass
    /// without, so that applying cannot fail half way).
    fn load(&mut self, data: &[u8], apply: bool) -> EResult {
        let mut r = Reader::new(data);
        ensure(r.u16()? == VERSION && r.u16()? == 0)?;
        let mut cfg = self.cfg;
        cfg.serial = r.array()?;
        cfg.model = r.array()?;
        cfg.subnqn = r.array()?;
        let ids = [r.u16()?, r.u16()?, r.u16()?, r.u16()?];
        cfg.cntlid = ids[2];
        ensure(ids[0] == cfg.vid && ids[1] == cfg.ssvid && ids[3] == cfg.vectors)?;
        ensure(cfg.check().is_ok())?;
        for ns in &self.cfg.namespaces {
            let present = r.bool()?;
            let lba_shift = r.u8()?;
            let blocks = r_u64(&mut r)?;
            let id: [u8; 16] = r.array()?;
            let got = present.then_some(Namespace {
                blocks,
                lba_shift,
                id,
            });
            ensure(got == *ns && (present || (lba_shift == 0 && blocks == 0 && id == [0; 16])))?;
        }
        let vectors = cfg.vectors;

        let cc = r.u32()?;
        let csts = r.u32()?;
        let aqa = r.u32()?;
        let asq = r_u64(&mut r)?;
        let acq = r_u64(&mut r)?;
        let intms = r.u32()?;
        let irq_mode = match r.u8()? {
            0 => IrqMode::MsiX,
            1 => IrqMode::Msi,
            2 => IrqMode::Intx,
            _ => return Err(Errno::Inval),
        };
        let ready = csts & regs::CSTS_RDY != 0;
        ensure(
            cc & !regs::CC_WRITABLE == 0
                && csts & !(regs::CSTS_RDY | regs::CSTS_CFS | regs::CSTS_SHST_MASK) == 0
                && csts & regs::CSTS_SHST_MASK != regs::CSTS_SHST_MASK
                && aqa & !regs::AQA_WRITABLE == 0
                && asq & !regs::ADDR_WRITABLE == 0
                && acq & !regs::ADDR_WRITABLE == 0
                && (!ready || cc & regs::CC_EN != 0)
                && (csts & regs::CSTS_SHST_MASK == 0 || regs::cc_shn(cc) != 0),
        )?;

        let has_dbbuf = r.bool()?;
        let dbs = r_u64(&mut r)?;
        let eis = r_u64(&mut r)?;
        ensure(if has_dbbuf {
            dbs & (PAGE_SIZE - 1) == 0 && eis & (PAGE_SIZE - 1) == 0 && dbs != eis && ready
        } else {
            dbs == 0 && eis == 0
        })?;

        let feat = Features {
            arbitration: r.u32()?,
            power_mgmt: r.u32()?,
            temp_over: r.u16()?,
            temp_under: r.u16()?,
            err_recovery: r.u32()?,
            vwc: r.bool()?,
            coalescing: r.u32()?,
            vector_cd: r.u32()?,
            write_atomicity: r.u32()?,
            aec: r.u32()?,
        };
        let cd_mask = 1u32
            .checked_shl(u32::from(vectors))
            .map_or(u32::MAX, |b| b.wrapping_sub(1));
        ensure(
            feat.arbitration & !0xffff_ff07 == 0
                && feat.power_mgmt & !0xe0 == 0
                && feat.err_recovery & !0xffff == 0
                && feat.coalescing & !0xffff == 0
                && feat.vector_cd & !cd_mask == 0
                && feat.write_atomicity & !1 == 0
                && feat.aec & !(0xff | super::admin::AEC_NS_ATTR) == 0,
        )?;

        let mut aer = Aer::EMPTY;
        aer.n = r.u8()?;
        for cid in aer.cids.iter_mut() {
            *cid = r.u16()?;
        }
        aer.ns_notice = r.bool()?;
        aer.notice_masked = r.bool()?;
        aer.changed_ns = r.u32()?;
        ensure(
            usize::from(aer.n) <= AER_MAX
                && (ready || aer.n == 0)
                && aer.cids.iter().skip(usize::from(aer.n)).all(|&c| c == 0)
                && aer.changed_ns >> MAX_NS == 0,
        )?;

        let has_pending = r.bool()?;
        let pending = PendingDelete {
            cid: r.u16()?,
            sqid: r.u16()?,
        };
        ensure(has_pending || (pending.cid == 0 && pending.sqid == 0))?;
        let epoch = r.u32()?;
        let counters = Counters {
            bytes_read: r_u64(&mut r)?,
            bytes_written: r_u64(&mut r)?,
            reads: r_u64(&mut r)?,
            writes: r_u64(&mut r)?,
        };

        let mut cq_valid = [false; NUM_QUEUES];
        for (i, valid_out) in cq_valid.iter_mut().enumerate() {
            let valid = r.bool()?;
            let cq = Cq {
                valid,
                base: r_u64(&mut r)?,
                size: r.u16()?,
                head: r.u16()?,
                tail: r.u16()?,
                phase: r.bool()?,
                ien: r.bool()?,
                iv: r.u16()?,
            };
            let max = if i == 0 {
                ADMIN_ENTRIES_MAX
            } else {
                QUEUE_ENTRIES_MAX
            };
            ensure(if valid {
                (2..=max).contains(&cq.size)
                    && ring_ok(cq.base, cq.size, super::cmd::CQE_SIZE)
                    && cq.head < cq.size
                    && cq.tail < cq.size
                    && if cq.ien { cq.iv < vectors } else { cq.iv == 0 }
                    && (i != 0 || (cq.ien && cq.iv == 0))
                    && ready
            } else {
                cq == Cq::EMPTY
            })?;
            ensure(i != 0 || valid == ready)?;
            *valid_out = valid;
            if apply {
                if let Some(slot) = self.cqs.get_mut(i) {
                    *slot = cq;
                }
            }
        }

        for i in 0..NUM_QUEUES {
            let valid = r.bool()?;
            let base = r_u64(&mut r)?;
            let [size, head, tail, cqid, held] = [r.u16()?, r.u16()?, r.u16()?, r.u16()?, r.u16()?];
            let sq_epoch = r.u32()?;
            let max = if i == 0 {
                ADMIN_ENTRIES_MAX
            } else {
                QUEUE_ENTRIES_MAX
            };
            let mut sq = if valid {
                Sq::new(base, size, cqid, sq_epoch)
            } else {
                Sq::EMPTY
            };
            sq.head = head;
            sq.tail = tail;
            ensure(if valid {
                (2..=max).contains(&size)
                    && ring_ok(base, size, super::cmd::SQE_SIZE)
                    && head < size
                    && tail < size
                    && held <= size
                    && if i == 0 {
                        cqid == 0 && held == 0
                    } else {
                        cqid != 0 && cq_valid.get(usize::from(cqid)).copied().unwrap_or(false)
                    }
            } else {
                base == 0
                    && size == 0
                    && head == 0
                    && tail == 0
                    && cqid == 0
                    && held == 0
                    && sq_epoch == 0
            })?;
            ensure(i != 0 || valid == ready)?;
            for _ in 0..held {
                let h = Held {
                    cid: r.u16()?,
                    status: r.u16()?,
                };
                ensure(sc::valid(h.status) && sq.hold(h))?;
            }
            sq.in_flight = held;
            if has_pending && usize::from(pending.sqid) == i {
                ensure(valid && i != 0)?;
            }
            if apply {
                if let Some(slot) = self.sqs.get_mut(i) {
                    *slot = sq;
                }
            }
        }
        ensure(!has_pending || (1..=MAX_IO_QUEUES).contains(&pending.sqid))?;
        r.finish()?;

        if apply {
            self.cfg = cfg;
            self.irq_mode = irq_mode;
            self.cc = cc;
            self.csts = csts;
            self.aqa = aqa;
            self.asq = asq;
            self.acq = acq;
            self.intms = intms;
            self.dbbuf = has_dbbuf.then_some((dbs, eis));
            self.feat = feat;
            self.aer = aer;
            self.pending_delete = has_pending.then_some(pending);
            self.epoch = epoch;
            self.counters = counters;
            self.draining = false;
            self.shutting_down = false;
        }
        Ok(())
    }
}
