// SPDX-License-Identifier: GPL-2.0

//! BAR0's register file: offsets, fields and the values the controller
//! reports.
//!
//! BAR0 is [`BAR0_SIZE`] bytes: the controller registers in its first 4 KiB
//! and the doorbells from [`DOORBELLS`], two per queue (submission queue
//! tail, then completion queue head) with CAP.DSTRD 0, i.e. 4 bytes apart.
//! Everything past the last existing queue's doorbells is still doorbell
//! space: a write there names a queue that does not exist.

use super::{MAX_IO_QUEUES, QUEUE_ENTRIES_MAX};

/// Bytes of BAR0 (a 64-bit memory BAR).
pub(crate) const BAR0_SIZE: u64 = 16 * 1024;

/// Register offsets.
pub(crate) const CAP: u64 = 0x00;
pub(crate) const VS: u64 = 0x08;
pub(crate) const INTMS: u64 = 0x0c;
pub(crate) const INTMC: u64 = 0x10;
pub(crate) const CC: u64 = 0x14;
pub(crate) const CSTS: u64 = 0x1c;
pub(crate) const NSSR: u64 = 0x20;
pub(crate) const AQA: u64 = 0x24;
pub(crate) const ASQ: u64 = 0x28;
pub(crate) const ACQ: u64 = 0x30;
/// The first doorbell (the admin submission queue's tail).
pub(crate) const DOORBELLS: u64 = 0x1000;

/// NVMe 1.4.0.
pub(crate) const VERSION: u32 = 0x0001_0400;

/// CAP.TO: ready within 10 seconds (in 500 ms units).
const CAP_TO: u64 = 20;

/// The Controller Capabilities register: MQES from [`QUEUE_ENTRIES_MAX`],
/// contiguous queues required (CQR), round robin arbitration only, the
/// timeout, doorbell stride 0, the NVM command set, and 4 KiB pages only
/// (MPSMIN and MPSMAX 0).
pub(crate) const CAP_VALUE: u64 =
    (QUEUE_ENTRIES_MAX as u64 - 1) | (1 << 16) | (CAP_TO << 24) | (1 << 37);

/// CC fields.
pub(crate) const CC_EN: u32 = 1 << 0;
pub(crate) const CC_CSS_SHIFT: u32 = 4;
pub(crate) const CC_MPS_SHIFT: u32 = 7;
pub(crate) const CC_AMS_SHIFT: u32 = 11;
pub(crate) const CC_SHN_SHIFT: u32 = 14;
pub(crate) const CC_IOSQES_SHIFT: u32 = 16;
pub(crate) const CC_IOCQES_SHIFT: u32 = 20;
/// The bits of CC the controller keeps (EN, CSS, MPS, AMS, SHN, IOSQES,
/// IOCQES); the others are reserved and read as zero.
pub(crate) const CC_WRITABLE: u32 = 0x00ff_fff1;

/// CSTS fields.
pub(crate) const CSTS_RDY: u32 = 1 << 0;
pub(crate) const CSTS_CFS: u32 = 1 << 1;
pub(crate) const CSTS_SHST_OCCURRING: u32 = 1 << 2;
pub(crate) const CSTS_SHST_COMPLETE: u32 = 2 << 2;
pub(crate) const CSTS_SHST_MASK: u32 = 3 << 2;

/// AQA: the admin queues' sizes, zero based, in bits 11:0 (submission) and
/// 27:16 (completion).
pub(crate) const AQA_WRITABLE: u32 = 0x0fff_0fff;
/// ASQ and ACQ: page-aligned addresses; bits 11:0 are reserved.
pub(crate) const ADDR_WRITABLE: u64 = !0xfff;

/// CC.SHN: a shutdown notification (normal or abrupt).
pub(crate) fn cc_shn(cc: u32) -> u32 {
    (cc >> CC_SHN_SHIFT) & 3
}

/// Whether `cc`'s enable-time fields are what this controller supports:
/// the NVM command set, 4 KiB pages, round robin arbitration, 64-byte
/// submission and 16-byte completion queue entries.
pub(crate) fn cc_valid(cc: u32) -> bool {
    (cc >> CC_CSS_SHIFT) & 7 == 0
        && (cc >> CC_MPS_SHIFT) & 0xf == 0
        && (cc >> CC_AMS_SHIFT) & 7 == 0
        && (cc >> CC_IOSQES_SHIFT) & 0xf == 6
        && (cc >> CC_IOCQES_SHIFT) & 0xf == 4
}

/// A doorbell: which queue, and whether it is the completion queue's head
/// (or the submission queue's tail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Doorbell {
    pub(crate) qid: u16,
    pub(crate) cq: bool,
}

/// Where a dword-aligned offset in BAR0 falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reg {
    /// A controller register, by its dword's offset.
    Ctrl(u64),
    /// A doorbell, which may name a queue that does not exist.
    Doorbell(Doorbell),
    /// Outside BAR0.
    Outside,
}

/// Decodes the dword at `offset` (which must be 4-aligned).
pub(crate) fn decode(offset: u64) -> Reg {
    if offset >= BAR0_SIZE {
        Reg::Outside
    } else if offset >= DOORBELLS {
        let n = (offset - DOORBELLS) / 4;
        Reg::Doorbell(Doorbell {
            qid: (n / 2) as u16,
            cq: n % 2 == 1,
        })
    } else {
        Reg::Ctrl(offset)
    }
}

/// Whether a doorbell names an existing queue identifier.
pub(crate) fn doorbell_in_range(d: Doorbell) -> bool {
    d.qid <= MAX_IO_QUEUES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_and_decode() {
        assert_eq!(CAP_VALUE & 0xffff, u64::from(QUEUE_ENTRIES_MAX) - 1);
        assert_eq!((CAP_VALUE >> 32) & 0xf, 0, "doorbell stride 0");
        assert_eq!((CAP_VALUE >> 37) & 0xff, 1, "NVM command set");
        assert_eq!((CAP_VALUE >> 48) & 0xff, 0, "4 KiB pages only");
        assert_eq!(decode(CC), Reg::Ctrl(CC));
        assert_eq!(
            decode(0x1000),
            Reg::Doorbell(Doorbell { qid: 0, cq: false })
        );
        assert_eq!(decode(0x100c), Reg::Doorbell(Doorbell { qid: 1, cq: true }));
        assert_eq!(
            decode(BAR0_SIZE - 4),
            Reg::Doorbell(Doorbell {
                qid: 1535,
                cq: true
            })
        );
        assert_eq!(decode(BAR0_SIZE), Reg::Outside);
        assert!(doorbell_in_range(Doorbell {
            qid: MAX_IO_QUEUES,
            cq: true
        }));
        assert!(!doorbell_in_range(Doorbell {
            qid: MAX_IO_QUEUES + 1,
            cq: false
        }));
        let good = (6 << CC_IOSQES_SHIFT) | (4 << CC_IOCQES_SHIFT) | CC_EN;
        assert!(cc_valid(good));
        assert!(!cc_valid(good | (1 << CC_MPS_SHIFT)));
        assert!(!cc_valid(good | (1 << CC_CSS_SHIFT)));
        assert!(!cc_valid(good | (1 << CC_AMS_SHIFT)));
        assert!(!cc_valid(CC_EN | (4 << CC_IOCQES_SHIFT)));
    }
}
