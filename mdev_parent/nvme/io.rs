// SPDX-License-Identifier: GPL-2.0

//! The NVM command set: I/O commands turned into requests for the caller.
//!
//! The model checks a command (opcode, namespace, block range, transfer
//! size, data pointers) and resolves its data pointers; the caller moves
//! the data. A command that fails a check completes at once with its
//! status and never reaches the caller.

use super::{
    cmd::{io_op, sc, Sqe, Status},
    prp::{self, Seg, SegList, MAX_SEGS},
    GuestMem, Namespace, MAX_NS, MAX_TRANSFER,
};

/// Which command a request came from: enough to complete it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Tag {
    /// The submission queue.
    pub(crate) sqid: u16,
    /// The command identifier.
    pub(crate) cid: u16,
    /// The queue's incarnation: a completion for a queue deleted (or reset)
    /// since is dropped.
    pub(crate) epoch: u32,
}

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IoKind {
    /// Copy `len` bytes from the namespace at `offset` into the segments.
    Read,
    /// Copy `len` bytes from the segments into the namespace at `offset`.
    Write,
    /// Make written data durable (no range).
    Flush,
    /// Zero `len` bytes of the namespace at `offset` (no segments).
    WriteZeroes,
    /// Deallocate ranges: each segment is a range of the namespace, `iova`
    /// its first block and `len` its block count (a hint: doing nothing is
    /// correct, as the controller does not promise what deallocated blocks
    /// read as).
    Deallocate,
}

/// An I/O command for the caller to execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IoRequest {
    /// Pass to [`super::ctrl::Controller::complete`].
    pub(crate) tag: Tag,
    /// The namespace (1 to [`MAX_NS`]).
    pub(crate) nsid: u32,
    pub(crate) kind: IoKind,
    /// Byte offset in the namespace, and byte length (zero for Flush and
    /// Deallocate).
    pub(crate) offset: u64,
    pub(crate) len: u64,
    /// Force Unit Access: the write (or read) must reach stable media.
    pub(crate) fua: bool,
    /// log2 of the namespace's block size.
    pub(crate) lba_shift: u8,
    /// Guest memory of Read and Write, in transfer order (they add up to
    /// `len`); block ranges of Deallocate.
    pub(crate) segs: SegList,
}

impl IoRequest {
    pub(crate) const EMPTY: Self = Self {
        tag: Tag {
            sqid: 0,
            cid: 0,
            epoch: 0,
        },
        nsid: 0,
        kind: IoKind::Flush,
        offset: 0,
        len: 0,
        fua: false,
        lba_shift: 9,
        segs: SegList::new(),
    };

    /// The guest memory segments (or block ranges, for Deallocate).
    pub(crate) fn segments(&self) -> &[Seg] {
        self.segs.as_slice()
    }
}

/// Where the caller takes requests.
pub(crate) trait IoSink {
    /// Takes `req` (copying what it needs). False if it has no room now:
    /// the command stays in its queue and is offered again later.
    fn submit(&mut self, req: &IoRequest) -> bool;
}

impl<F: FnMut(&IoRequest) -> bool> IoSink for F {
    fn submit(&mut self, req: &IoRequest) -> bool {
        self(req)
    }
}

/// Bytes of a Dataset Management range.
const DSM_RANGE: usize = 16;

/// Checks I/O command `sqe` and fills `req`. `Ok(true)` if the caller must
/// execute it, `Ok(false)` if it is complete already (successfully), `Err`
/// with the status it fails with.
pub(crate) fn parse(
    namespaces: &[Option<Namespace>; MAX_NS],
    mem: &mut impl GuestMem,
    sqe: &Sqe,
    tag: Tag,
    req: &mut IoRequest,
) -> Result<bool, Status> {
    let op = sqe.opcode();
    if !matches!(
        op,
        io_op::FLUSH | io_op::WRITE | io_op::READ | io_op::WRITE_ZEROES | io_op::DSM
    ) {
        return Err(sc::INVALID_OPCODE | sc::DNR);
    }
    if sqe.fuse() != 0 || sqe.psdt() != 0 {
        return Err(sc::INVALID_FIELD | sc::DNR);
    }
    let nsid = sqe.nsid();
    let ns = usize::try_from(nsid)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| namespaces.get(i))
        .and_then(|n| n.as_ref())
        .ok_or(sc::INVALID_NS | sc::DNR)?;
    *req = IoRequest {
        tag,
        nsid,
        lba_shift: ns.lba_shift,
        ..IoRequest::EMPTY
    };
    let slba = sqe.qw(10);
    let nlb = u64::from(sqe.cdw(12) & 0xffff) + 1;
    let in_range = |slba: u64, nlb: u64| slba.checked_add(nlb).is_some_and(|end| end <= ns.blocks);
    match op {
        io_op::FLUSH => Ok(true),
        io_op::READ | io_op::WRITE | io_op::WRITE_ZEROES => {
            if !in_range(slba, nlb) {
                return Err(sc::LBA_RANGE | sc::DNR);
            }
            // Both fit: the range is within a namespace whose byte size
            // fits in u64.
            let shift = u32::from(ns.lba_shift);
            req.offset = slba.checked_shl(shift).ok_or(sc::INTERNAL)?;
            req.len = nlb.checked_shl(shift).ok_or(sc::INTERNAL)?;
            req.fua = sqe.cdw(12) & (1 << 30) != 0;
            if op == io_op::WRITE_ZEROES {
                req.kind = IoKind::WriteZeroes;
                return Ok(true);
            }
            req.kind = if op == io_op::READ {
                IoKind::Read
            } else {
                IoKind::Write
            };
            if req.len > MAX_TRANSFER {
                return Err(sc::INVALID_FIELD | sc::DNR);
            }
            prp::walk(mem, sqe.prp1(), sqe.prp2(), req.len, &mut req.segs)?;
            Ok(true)
        }
        _ => {
            // Dataset Management: only Deallocate does anything.
            if sqe.cdw(11) & (1 << 2) == 0 {
                return Ok(false);
            }
            let nr = (sqe.cdw(10) & 0xff) as usize + 1;
            if nr > MAX_SEGS {
                return Err(sc::INVALID_FIELD | sc::DNR);
            }
            let mut buf = [0u8; MAX_SEGS * DSM_RANGE];
            let bytes = buf.get_mut(..nr * DSM_RANGE).ok_or(sc::INTERNAL)?;
            let mut segs = SegList::new();
            prp::walk(mem, sqe.prp1(), sqe.prp2(), bytes.len() as u64, &mut segs)?;
            prp::copy_in(mem, &segs, bytes)?;
            req.kind = IoKind::Deallocate;
            for r in bytes.chunks_exact(DSM_RANGE) {
                let mut w = [0u8; 4];
                let mut q = [0u8; 8];
                w.copy_from_slice(r.get(4..8).ok_or(sc::INTERNAL)?);
                q.copy_from_slice(r.get(8..16).ok_or(sc::INTERNAL)?);
                let (len, start) = (u32::from_le_bytes(w), u64::from_le_bytes(q));
                if !in_range(start, u64::from(len)) {
                    return Err(sc::LBA_RANGE | sc::DNR);
                }
                if len > 0 {
                    req.segs.push(start, len)?;
                }
            }
            Ok(!req.segs.as_slice().is_empty())
        }
    }
}
