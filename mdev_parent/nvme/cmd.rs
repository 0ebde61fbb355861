// SPDX-License-Identifier: GPL-2.0

//! The layout of submission and completion queue entries, and status codes.

/// Bytes of a submission queue entry (CC.IOSQES 6).
pub(crate) const SQE_SIZE: u64 = 64;
/// Bytes of a completion queue entry (CC.IOCQES 4).
pub(crate) const CQE_SIZE: u64 = 16;

/// A completion status as the Status Field's bits 15:1 of the completion's
/// dword 3 carry it (without the phase tag): SC in bits 7:0, SCT in bits
/// 10:8, More in 13 and Do Not Retry in 14, as Linux's `NVME_SC_*` are.
pub(crate) type Status = u16;

/// Status codes.
pub(crate) mod sc {
    use super::Status;

    /// Do Not Retry: the same command would fail again.
    pub(crate) const DNR: Status = 0x4000;

    /// Generic command status (SCT 0).
    pub(crate) const SUCCESS: Status = 0x00;
    pub(crate) const INVALID_OPCODE: Status = 0x01;
    pub(crate) const INVALID_FIELD: Status = 0x02;
    pub(crate) const DATA_TRANSFER_ERROR: Status = 0x04;
    pub(crate) const INTERNAL: Status = 0x06;
    pub(crate) const INVALID_NS: Status = 0x0b;
    pub(crate) const CMD_SEQ_ERROR: Status = 0x0c;
    pub(crate) const INVALID_PRP_OFFSET: Status = 0x13;
    pub(crate) const LBA_RANGE: Status = 0x80;

    /// Command specific status (SCT 1).
    pub(crate) const CQ_INVALID: Status = 0x100;
    pub(crate) const QID_INVALID: Status = 0x101;
    pub(crate) const QUEUE_SIZE: Status = 0x102;
    pub(crate) const AER_LIMIT: Status = 0x105;
    pub(crate) const INVALID_VECTOR: Status = 0x108;
    pub(crate) const INVALID_LOG_PAGE: Status = 0x109;
    pub(crate) const INVALID_QUEUE_DELETION: Status = 0x10c;
    pub(crate) const FEATURE_NOT_SAVEABLE: Status = 0x10d;

    /// Whether `s` is a status the model or its caller may complete a
    /// command with: SCT 0 to 3 or 7, no reserved bits, and no More bit (the
    /// model has no error log entries to point it at).
    pub(crate) fn valid(s: Status) -> bool {
        s & !(DNR | 0x07ff) == 0 && matches!((s >> 8) & 7, 0..=3 | 7)
    }
}

/// Admin command opcodes.
pub(crate) mod admin_op {
    pub(crate) const DELETE_SQ: u8 = 0x00;
    pub(crate) const CREATE_SQ: u8 = 0x01;
    pub(crate) const GET_LOG_PAGE: u8 = 0x02;
    pub(crate) const DELETE_CQ: u8 = 0x04;
    pub(crate) const CREATE_CQ: u8 = 0x05;
    pub(crate) const IDENTIFY: u8 = 0x06;
    pub(crate) const ABORT: u8 = 0x08;
    pub(crate) const SET_FEATURES: u8 = 0x09;
    pub(crate) const GET_FEATURES: u8 = 0x0a;
    pub(crate) const ASYNC_EVENT: u8 = 0x0c;
    pub(crate) const DBBUF_CONFIG: u8 = 0x7c;
}

/// NVM command set opcodes.
pub(crate) mod io_op {
    pub(crate) const FLUSH: u8 = 0x00;
    pub(crate) const WRITE: u8 = 0x01;
    pub(crate) const READ: u8 = 0x02;
    pub(crate) const WRITE_ZEROES: u8 = 0x08;
    pub(crate) const DSM: u8 = 0x09;
}

/// A submission queue entry, as the guest wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sqe(pub(crate) [u8; SQE_SIZE as usize]);

impl Sqe {
    /// Dword `i` (0 to 15), little endian.
    pub(crate) fn dw(&self, i: usize) -> u32 {
        let mut d = [0u8; 4];
        if let Some(s) = self.0.get(i * 4..i * 4 + 4) {
            d.copy_from_slice(s);
        }
        u32::from_le_bytes(d)
    }

    /// The quadword in dwords `i` and `i + 1`.
    pub(crate) fn qw(&self, i: usize) -> u64 {
        u64::from(self.dw(i)) | (u64::from(self.dw(i + 1)) << 32)
    }

    pub(crate) fn opcode(&self) -> u8 {
        self.dw(0) as u8
    }

    /// The fused operation field (CDW0 bits 9:8).
    pub(crate) fn fuse(&self) -> u32 {
        (self.dw(0) >> 8) & 3
    }

    /// PRP or SGL for Data Transfer (CDW0 bits 15:14).
    pub(crate) fn psdt(&self) -> u32 {
        (self.dw(0) >> 14) & 3
    }

    pub(crate) fn cid(&self) -> u16 {
        (self.dw(0) >> 16) as u16
    }

    pub(crate) fn nsid(&self) -> u32 {
        self.dw(1)
    }

    pub(crate) fn prp1(&self) -> u64 {
        self.qw(6)
    }

    pub(crate) fn prp2(&self) -> u64 {
        self.qw(8)
    }

    /// Command dwords 10 to 15.
    pub(crate) fn cdw(&self, i: usize) -> u32 {
        self.dw(i)
    }
}

/// Builds a completion queue entry.
pub(crate) fn cqe(
    result: u32,
    sq_head: u16,
    sqid: u16,
    cid: u16,
    status: Status,
    phase: bool,
) -> [u8; 16] {
    let mut e = [0u8; 16];
    let dw2 = u32::from(sq_head) | (u32::from(sqid) << 16);
    let dw3 = u32::from(cid) | (u32::from(phase) << 16) | (u32::from(status) << 17);
    for (i, d) in [result, 0, dw2, dw3].iter().enumerate() {
        if let Some(s) = e.get_mut(i * 4..i * 4 + 4) {
            s.copy_from_slice(&d.to_le_bytes());
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_decode_and_encode() {
        let mut raw = [0u8; 64];
        raw[0] = 0x02;
        raw[1] = 0x41;
        raw[2..4].copy_from_slice(&0xbeefu16.to_le_bytes());
        raw[4..8].copy_from_slice(&7u32.to_le_bytes());
        raw[24..32].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        let s = Sqe(raw);
        assert_eq!(s.opcode(), 2);
        assert_eq!(s.fuse(), 1);
        assert_eq!(s.psdt(), 1);
        assert_eq!(s.cid(), 0xbeef);
        assert_eq!(s.nsid(), 7);
        assert_eq!(s.prp1(), 0x1122_3344_5566_7788);
        assert_eq!(s.dw(16), 0, "out of range reads zero");
        let e = cqe(5, 3, 2, 0xbeef, sc::LBA_RANGE | sc::DNR, true);
        assert_eq!(&e[0..4], &5u32.to_le_bytes());
        assert_eq!(&e[8..12], &(3u32 | (2 << 16)).to_le_bytes());
        let dw3 = u32::from_le_bytes([e[12], e[13], e[14], e[15]]);
        assert_eq!(dw3 & 0xffff, 0xbeef);
        assert_eq!((dw3 >> 16) & 1, 1);
        assert_eq!(dw3 >> 17, 0x4080);
        assert!(sc::valid(sc::LBA_RANGE | sc::DNR));
        assert!(sc::valid(sc::QID_INVALID));
        assert!(!sc::valid(0x0400));
        assert!(!sc::valid(0x2000));
        assert!(!sc::valid(0x8000));
    }
}
