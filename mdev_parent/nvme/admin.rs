// SPDX-License-Identifier: GPL-2.0

//! The admin command set.
//!
//! Admin commands run inline when the controller fetches them; only an
//! Asynchronous Event Request (held until an event) and a Delete I/O
//! Submission Queue whose queue still has commands in flight (completed
//! once they are) finish later. Data the controller returns (Identify data,
//! log pages) is generated in 512-byte chunks straight into the command's
//! PRP segments, so no 4 KiB structure sits on the stack.

use super::{
    cmd::{admin_op, sc, Sqe, Status, CQE_SIZE, SQE_SIZE},
    ctrl::{Controller, Features, PendingDelete},
    prp::{self, SegList, MAX_SEGS},
    queue::{Cq, Sq},
    regs, GuestMem, AER_MAX, MAX_IO_QUEUES, MAX_NS, MAX_TRANSFER, MDTS, PAGE_SIZE,
    QUEUE_ENTRIES_MAX,
};

/// Warning and critical composite temperature thresholds, in kelvin.
pub(crate) const WCTEMP: u16 = 0x157;
const CCTEMP: u16 = 0x175;
/// The composite temperature the controller reports (40 °C).
const TEMPERATURE: u16 = 313;
/// Asynchronous Event Configuration: Namespace Attribute Notices.
pub(crate) const AEC_NS_ATTR: u32 = 1 << 8;
/// Asynchronous Event Configuration bits the controller keeps: the SMART
/// critical warnings and namespace attribute notices.
const AEC_SUPPORTED: u32 = 0xff | AEC_NS_ATTR;
/// Optional Admin Command Support: Doorbell Buffer Config.
const OACS: u16 = 1 << 8;
/// Optional NVM Command Support: Dataset Management and Write Zeroes.
const ONCS: u16 = (1 << 2) | (1 << 3);
/// Volatile Write Cache present; Flush to the broadcast namespace not
/// supported (bits 2:1 are 10b).
const VWC: u8 = 0x05;
/// Log Page Attributes: extended data (NUMDU and the offset).
const LPA: u8 = 0x04;
/// Firmware revision.
const FIRMWARE: &[u8; 8] = b"rmdev1  ";

/// Log page identifiers and sizes.
const LOG_ERROR: u8 = 0x01;
const LOG_SMART: u8 = 0x02;
const LOG_FIRMWARE: u8 = 0x03;
const LOG_CHANGED_NS: u8 = 0x04;

/// Bytes of Identify data.
const IDENTIFY_SIZE: u64 = 4096;
/// The size of the chunks data is generated in.
const CHUNK: usize = 512;

/// How an admin command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdminResult {
    /// Post a completion now.
    Done { status: Status, result: u32 },
    /// The completion comes later (an event request, a queue deletion).
    Held,
}

fn done(status: Status) -> AdminResult {
    AdminResult::Done { status, result: 0 }
}

fn ok(result: u32) -> AdminResult {
    AdminResult::Done {
        status: sc::SUCCESS,
        result,
    }
}

/// A window of generated data: fields written through it land where they
/// overlap the window and are dropped elsewhere.
pub(crate) struct Out<'a> {
    base: u64,
    buf: &'a mut [u8],
}

impl Out<'_> {
    /// Writes `bytes` at offset `at` of the structure.
    pub(crate) fn put(&mut self, at: u64, bytes: &[u8]) {
        let end = at.saturating_add(bytes.len() as u64);
        let win_end = self.base.saturating_add(self.buf.len() as u64);
        let (s, e) = (at.max(self.base), end.min(win_end));
        if s >= e {
            return;
        }
        // Within bounds: at <= s < e <= at + bytes.len(), and likewise for
        // the window.
        let src = bytes.get(s.wrapping_sub(at) as usize..e.wrapping_sub(at) as usize);
        let dst = self
            .buf
            .get_mut(s.wrapping_sub(self.base) as usize..e.wrapping_sub(self.base) as usize);
        if let (Some(src), Some(dst)) = (src, dst) {
            dst.copy_from_slice(src);
        }
    }

    fn u8(&mut self, at: u64, v: u8) {
        self.put(at, &[v]);
    }

    fn u16(&mut self, at: u64, v: u16) {
        self.put(at, &v.to_le_bytes());
    }

    fn u32(&mut self, at: u64, v: u32) {
        self.put(at, &v.to_le_bytes());
    }

    fn u64(&mut self, at: u64, v: u64) {
        self.put(at, &v.to_le_bytes());
    }
}

/// Writes `len` bytes of a structure, starting at its offset `origin`, to
/// `segs`; `gen` fills each chunk (zero elsewhere).
fn emit(
    mem: &mut impl GuestMem,
    segs: &SegList,
    origin: u64,
    gen: impl Fn(&mut Out<'_>),
) -> Result<(), Status> {
    let mut pos = origin;
    let mut buf = [0u8; CHUNK];
    for s in segs.as_slice() {
        let mut off = 0u64;
        while off < u64::from(s.len) {
            let n = (u64::from(s.len) - off).min(CHUNK as u64) as usize;
            let chunk = buf.get_mut(..n).ok_or(sc::INTERNAL)?;
            chunk.fill(0);
            gen(&mut Out {
                base: pos,
                buf: chunk,
            });
            mem.write(s.iova.wrapping_add(off), chunk)
                .map_err(|_| sc::DATA_TRANSFER_ERROR | sc::DNR)?;
            off += n as u64;
            pos = pos.saturating_add(n as u64);
        }
    }
    Ok(())
}

impl Controller {
    /// Runs admin command `sqe`.
    pub(super) fn admin(&mut self, mem: &mut impl GuestMem, sqe: &Sqe) -> AdminResult {
        if sqe.fuse() != 0 || sqe.psdt() != 0 {
            return done(sc::INVALID_FIELD | sc::DNR);
        }
        match sqe.opcode() {
            admin_op::DELETE_SQ => self.delete_sq(sqe),
            admin_op::CREATE_SQ => self.create_sq(sqe),
            admin_op::GET_LOG_PAGE => self.get_log_page(mem, sqe),
            admin_op::DELETE_CQ => self.delete_cq(sqe),
            admin_op::CREATE_CQ => self.create_cq(sqe),
            admin_op::IDENTIFY => self.identify(mem, sqe),
            // Abort never aborts: dword 0 bit 0 says "not aborted".
            admin_op::ABORT => ok(1),
            admin_op::SET_FEATURES => self.set_features(sqe),
            admin_op::GET_FEATURES => self.get_features(sqe),
            admin_op::ASYNC_EVENT => self.async_event(sqe),
            admin_op::DBBUF_CONFIG => self.dbbuf_config(mem, sqe),
            _ => done(sc::INVALID_OPCODE | sc::DNR),
        }
    }

    /// An I/O queue identifier from CDW10, if it is in range.
    fn io_qid(sqe: &Sqe) -> Option<u16> {
        let qid = sqe.cdw(10) as u16;
        (1..=MAX_IO_QUEUES).contains(&qid).then_some(qid)
    }

    /// A queue's size from CDW10 (zero based there), and whether its ring
    /// fits the address space at `base`.
    fn queue_geometry(sqe: &Sqe, entry: u64) -> Result<u16, Status> {
        let size = (sqe.cdw(10) >> 16) + 1;
        if size < 2 || size > u32::from(QUEUE_ENTRIES_MAX) {
            return Err(sc::QUEUE_SIZE | sc::DNR);
        }
        if sqe.cdw(11) & 1 == 0 {
            // Physically contiguous queues only (CAP.CQR).
            return Err(sc::INVALID_FIELD | sc::DNR);
        }
        let base = sqe.prp1();
        if base & (PAGE_SIZE - 1) != 0 {
            return Err(sc::INVALID_PRP_OFFSET | sc::DNR);
        }
        if base.checked_add(u64::from(size) * entry).is_none() {
            return Err(sc::INVALID_FIELD | sc::DNR);
        }
        Ok(size as u16)
    }

    fn create_cq(&mut self, sqe: &Sqe) -> AdminResult {
        let Some(qid) = Self::io_qid(sqe) else {
            return done(sc::QID_INVALID | sc::DNR);
        };
        if self.cqs.get(usize::from(qid)).is_none_or(|c| c.valid) {
            return done(sc::QID_INVALID | sc::DNR);
        }
        let size = match Self::queue_geometry(sqe, CQE_SIZE) {
            Ok(s) => s,
            Err(s) => return done(s),
        };
        let ien = sqe.cdw(11) & 2 != 0;
        let iv = (sqe.cdw(11) >> 16) as u16;
        if ien && iv >= self.cfg.vectors {
            return done(sc::INVALID_VECTOR | sc::DNR);
        }
        if let Some(cq) = self.cqs.get_mut(usize::from(qid)) {
            *cq = Cq::new(sqe.prp1(), size, ien, if ien { iv } else { 0 });
        }
        ok(0)
    }

    fn create_sq(&mut self, sqe: &Sqe) -> AdminResult {
        let Some(qid) = Self::io_qid(sqe) else {
            return done(sc::QID_INVALID | sc::DNR);
        };
        if self.sqs.get(usize::from(qid)).is_none_or(|s| s.valid) {
            return done(sc::QID_INVALID | sc::DNR);
        }
        let cqid = (sqe.cdw(11) >> 16) as u16;
        let cq_ok = cqid != 0 && self.cqs.get(usize::from(cqid)).is_some_and(|c| c.valid);
        if !cq_ok {
            return done(sc::CQ_INVALID | sc::DNR);
        }
        let size = match Self::queue_geometry(sqe, SQE_SIZE) {
            Ok(s) => s,
            Err(s) => return done(s),
        };
        self.epoch = self.epoch.wrapping_add(1);
        if let Some(sq) = self.sqs.get_mut(usize::from(qid)) {
            *sq = Sq::new(sqe.prp1(), size, cqid, self.epoch);
        }
        ok(0)
    }

    fn delete_sq(&mut self, sqe: &Sqe) -> AdminResult {
        let Some(qid) = Self::io_qid(sqe) else {
            return done(sc::QID_INVALID | sc::DNR);
        };
        if !self.sqs.get(usize::from(qid)).is_some_and(|s| s.valid) {
            return done(sc::QID_INVALID | sc::DNR);
        }
        // Completed by the admin service once nothing is in flight.
        self.pending_delete = Some(PendingDelete {
            cid: sqe.cid(),
            sqid: qid,
        });
        AdminResult::Held
    }

    fn delete_cq(&mut self, sqe: &Sqe) -> AdminResult {
        let Some(qid) = Self::io_qid(sqe) else {
            return done(sc::QID_INVALID | sc::DNR);
        };
        if !self.cqs.get(usize::from(qid)).is_some_and(|c| c.valid) {
            return done(sc::QID_INVALID | sc::DNR);
        }
        if self.sqs.iter().any(|s| s.valid && s.cqid == qid) {
            return done(sc::INVALID_QUEUE_DELETION | sc::DNR);
        }
        if let Some(cq) = self.cqs.get_mut(usize::from(qid)) {
            *cq = Cq::EMPTY;
        }
        ok(0)
    }

    fn async_event(&mut self, sqe: &Sqe) -> AdminResult {
        let n = usize::from(self.aer.n);
        match self.aer.cids.get_mut(n) {
            Some(slot) if n < AER_MAX => {
                *slot = sqe.cid();
                self.aer.n = self.aer.n.saturating_add(1);
                AdminResult::Held
            }
            _ => done(sc::AER_LIMIT),
        }
    }

    fn dbbuf_config(&mut self, mem: &mut impl GuestMem, sqe: &Sqe) -> AdminResult {
        let (dbs, eis) = (sqe.prp1(), sqe.prp2());
        if dbs & (PAGE_SIZE - 1) != 0 || eis & (PAGE_SIZE - 1) != 0 || dbs == eis {
            return done(sc::INVALID_FIELD | sc::DNR);
        }
        // Existing I/O queues start with shadow doorbells and event indices
        // at their current positions (Linux sends this command before any
        // I/O, with both pages zeroed, so it sees no change).
        for qid in 1..=MAX_IO_QUEUES {
            let i = usize::from(qid);
            let off = u64::from(qid) * 8;
            let sq = self.sqs.get(i).filter(|s| s.valid).map(|s| s.tail);
            let cq = self.cqs.get(i).filter(|c| c.valid).map(|c| c.head);
            for (v, extra) in [(sq, 0u64), (cq, 4)] {
                if let Some(v) = v {
                    for page in [dbs, eis] {
                        let at = page.wrapping_add(off + extra);
                        if mem.write(at, &u32::from(v).to_le_bytes()).is_err() {
                            return done(sc::DATA_TRANSFER_ERROR | sc::DNR);
                        }
                    }
                }
            }
        }
        self.dbbuf = Some((dbs, eis));
        ok(0)
    }

    /// Whether the broadcast or no namespace applies to a controller-wide
    /// log page.
    fn controller_nsid(nsid: u32) -> bool {
        nsid == 0 || nsid == u32::MAX
    }

    fn identify(&mut self, mem: &mut impl GuestMem, sqe: &Sqe) -> AdminResult {
        let cns = sqe.cdw(10) as u8;
        let nsid = sqe.nsid();
        let csi = (sqe.cdw(11) >> 24) as u8;
        let valid_nsid = (1..=MAX_NS as u32).contains(&nsid);
        let ns = self.namespace(nsid).copied();
        let check = match cns {
            0 if !valid_nsid => Err(sc::INVALID_NS | sc::DNR),
            2 if nsid >= 0xffff_fffe => Err(sc::INVALID_NS | sc::DNR),
            3 if ns.is_none() => Err(sc::INVALID_NS | sc::DNR),
            6 if csi != 0 => Err(sc::INVALID_FIELD | sc::DNR),
            0..=3 | 6 => Ok(()),
            _ => Err(sc::INVALID_FIELD | sc::DNR),
        };
        if let Err(s) = check {
            return done(s);
        }
        let mut segs = SegList::new();
        if let Err(s) = prp::walk(mem, sqe.prp1(), sqe.prp2(), IDENTIFY_SIZE, &mut segs) {
            return done(s);
        }
        let r = match cns {
            0 => emit(mem, &segs, 0, |o| {
                if let Some(n) = &ns {
                    o.u64(0, n.blocks);
                    o.u64(8, n.blocks);
                    o.u64(16, n.blocks);
                    o.put(104, &n.id);
                    o.put(120, &n.eui64());
                    o.u32(128, u32::from(n.lba_shift) << 16);
                }
            }),
            1 => emit(mem, &segs, 0, |o| self.identify_controller(o)),
            2 => emit(mem, &segs, 0, |o| {
                let mut at = 0;
                for (i, n) in self.cfg.namespaces.iter().enumerate() {
                    let id = i as u32 + 1;
                    if n.is_some() && id > nsid {
                        o.u32(at, id);
                        at += 4;
                    }
                }
            }),
            3 => emit(mem, &segs, 0, |o| {
                if let Some(n) = &ns {
                    o.put(0, &[1, 8, 0, 0]);
                    o.put(4, &n.eui64());
                    o.put(12, &[2, 16, 0, 0]);
                    o.put(16, &n.id);
                }
            }),
            _ => emit(mem, &segs, 0, |o| {
                // I/O Command Set specific (NVM): the Dataset Management
                // range limit.
                o.u8(3, MAX_SEGS as u8);
            }),
        };
        match r {
            Ok(()) => ok(0),
            Err(s) => done(s),
        }
    }

    /// Identify Controller data.
    fn identify_controller(&self, o: &mut Out<'_>) {
        let c = &self.cfg;
        o.u16(0, c.vid);
        o.u16(2, c.ssvid);
        o.put(4, &c.serial);
        o.put(24, &c.model);
        o.put(64, FIRMWARE);
        o.u8(72, 6);
        o.u8(77, MDTS);
        o.u16(78, c.cntlid);
        o.u32(80, regs::VERSION);
        o.u32(92, 1 << 8);
        // An I/O controller.
        o.u8(111, 1);
        o.u16(256, OACS);
        o.u8(258, 3);
        o.u8(259, AER_MAX as u8 - 1);
        // One firmware slot, read only.
        o.u8(260, 0x03);
        o.u8(261, LPA);
        o.u16(266, WCTEMP);
        o.u16(268, CCTEMP);
        o.u8(512, 0x66);
        o.u8(513, 0x44);
        o.u32(516, MAX_NS as u32);
        o.u16(520, ONCS);
        o.u8(525, VWC);
        o.put(768, &c.subnqn);
        // Power state 0: 25 W maximum.
        o.u16(2048, 2500);
    }

    fn get_log_page(&mut self, mem: &mut impl GuestMem, sqe: &Sqe) -> AdminResult {
        let cdw10 = sqe.cdw(10);
        let lid = cdw10 as u8;
        let rae = cdw10 & (1 << 15) != 0;
        let numd = ((u64::from(sqe.cdw(11) & 0xffff) << 16) | u64::from(cdw10 >> 16)) + 1;
        let len = numd * 4;
        let lpo = sqe.qw(12);
        let size: u64 = match lid {
            LOG_ERROR => 64,
            LOG_SMART | LOG_FIRMWARE => 512,
            LOG_CHANGED_NS => 4096,
            _ => return done(sc::INVALID_LOG_PAGE | sc::DNR),
        };
        if len > MAX_TRANSFER || lpo & 3 != 0 || lpo > size {
            return done(sc::INVALID_FIELD | sc::DNR);
        }
        if lid == LOG_SMART && !Self::controller_nsid(sqe.nsid()) {
            return done(sc::INVALID_FIELD | sc::DNR);
        }
        let mut segs = SegList::new();
        if let Err(s) = prp::walk(mem, sqe.prp1(), sqe.prp2(), len, &mut segs) {
            return done(s);
        }
        let r = match lid {
            LOG_SMART => emit(mem, &segs, lpo, |o| self.smart_log(o)),
            LOG_FIRMWARE => emit(mem, &segs, lpo, |o| {
                o.u8(0, 1);
                o.put(8, FIRMWARE);
            }),
            LOG_CHANGED_NS => emit(mem, &segs, lpo, |o| {
                let mut at = 0;
                for i in 0..MAX_NS as u32 {
                    if self.aer.changed_ns & (1 << i) != 0 {
                        o.u32(at, i + 1);
                        at += 4;
                    }
                }
            }),
            // No error is logged: every entry reads as unused.
            _ => emit(mem, &segs, lpo, |_| {}),
        };
        if let Err(s) = r {
            return done(s);
        }
        if lid == LOG_CHANGED_NS && !rae {
            self.aer.changed_ns = 0;
            self.aer.notice_masked = false;
        }
        ok(0)
    }

    /// The SMART / Health Information log.
    fn smart_log(&self, o: &mut Out<'_>) {
        let c = &self.counters;
        // Data units are thousands of 512-byte units, rounded up.
        let units = |b: u64| b.div_ceil(512 * 1000);
        o.u16(1, TEMPERATURE);
        o.u8(3, 100);
        o.u8(4, 10);
        o.u64(32, units(c.bytes_read));
        o.u64(48, units(c.bytes_written));
        o.u64(64, c.reads);
        o.u64(80, c.writes);
        o.u64(112, 1);
    }

    fn set_features(&mut self, sqe: &Sqe) -> AdminResult {
        let cdw10 = sqe.cdw(10);
        let v = sqe.cdw(11);
        if cdw10 & (1 << 31) != 0 {
            return done(sc::FEATURE_NOT_SAVEABLE | sc::DNR);
        }
        let f = &mut self.feat;
        match cdw10 as u8 {
            0x01 => f.arbitration = v & 0xffff_ff07,
            0x02 => {
                if v & 0x1f != 0 {
                    return done(sc::INVALID_FIELD | sc::DNR);
                }
                f.power_mgmt = v & 0xff;
            }
            0x04 => match Self::threshold(v) {
                Some(false) => f.temp_over = v as u16,
                Some(true) => f.temp_under = v as u16,
                None => return done(sc::INVALID_FIELD | sc::DNR),
            },
            0x05 => {
                if v & !0xffff != 0 {
                    return done(sc::INVALID_FIELD | sc::DNR);
                }
                f.err_recovery = v;
            }
            0x06 => f.vwc = v & 1 != 0,
            0x07 => {
                if self.sqs.iter().skip(1).any(|s| s.valid)
                    || self.cqs.iter().skip(1).any(|c| c.valid)
                {
                    return done(sc::CMD_SEQ_ERROR);
                }
                if v & 0xffff == 0xffff || v >> 16 == 0xffff {
                    return done(sc::INVALID_FIELD | sc::DNR);
                }
                return ok(Self::queues_allocated());
            }
            0x08 => f.coalescing = v & 0xffff,
            0x09 => {
                let iv = v as u16;
                if iv >= self.cfg.vectors {
                    return done(sc::INVALID_FIELD | sc::DNR);
                }
                let bit = 1u32.checked_shl(u32::from(iv)).unwrap_or(0);
                if v & (1 << 16) != 0 {
                    f.vector_cd |= bit;
                } else {
                    f.vector_cd &= !bit;
                }
            }
            0x0a => f.write_atomicity = v & 1,
            0x0b => f.aec = v & AEC_SUPPORTED,
            _ => return done(sc::INVALID_FIELD | sc::DNR),
        }
        ok(0)
    }

    /// Number of Queues' answer: every pair, zero based.
    fn queues_allocated() -> u32 {
        let n = u32::from(MAX_IO_QUEUES) - 1;
        n | (n << 16)
    }

    /// Temperature Threshold's selection: `Some(under)` for the composite
    /// temperature, `None` for a sensor or type that does not exist.
    fn threshold(v: u32) -> Option<bool> {
        let tmpsel = (v >> 16) & 0xf;
        match (tmpsel, (v >> 20) & 3) {
            (0, 0) => Some(false),
            (0, 1) => Some(true),
            _ => None,
        }
    }

    fn get_features(&mut self, sqe: &Sqe) -> AdminResult {
        let cdw10 = sqe.cdw(10);
        let v = sqe.cdw(11);
        let sel = (cdw10 >> 8) & 7;
        let f = match sel {
            0 => self.feat,
            1 | 2 => Features::DEFAULT,
            // Supported capabilities: changeable, not saveable, not
            // namespace specific.
            3 => {
                return if matches!(cdw10 as u8, 0x01..=0x02 | 0x04..=0x0b) {
                    ok(1 << 2)
                } else {
                    done(sc::INVALID_FIELD | sc::DNR)
                }
            }
            _ => return done(sc::INVALID_FIELD | sc::DNR),
        };
        let r = match cdw10 as u8 {
            0x01 => f.arbitration,
            0x02 => f.power_mgmt,
            0x04 => match Self::threshold(v) {
                Some(false) => u32::from(f.temp_over),
                Some(true) => u32::from(f.temp_under),
                None => return done(sc::INVALID_FIELD | sc::DNR),
            },
            0x05 => f.err_recovery,
            0x06 => u32::from(f.vwc),
            0x07 => Self::queues_allocated(),
            0x08 => f.coalescing,
            0x09 => {
                let iv = v as u16;
                if iv >= self.cfg.vectors {
                    return done(sc::INVALID_FIELD | sc::DNR);
                }
                u32::from(iv) | ((f.vector_cd.checked_shr(u32::from(iv)).unwrap_or(0) & 1) << 16)
            }
            0x0a => f.write_atomicity,
            0x0b => f.aec,
            _ => return done(sc::INVALID_FIELD | sc::DNR),
        };
        ok(r)
    }
}
