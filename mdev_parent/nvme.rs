// SPDX-License-Identifier: GPL-2.0

//! A kernel-free model of an NVMe controller (NVM command set, PCI transport).
//!
//! The model is the part of a mediated NVMe controller that knows the NVMe
//! specification and nothing about the kernel: `core` only, no allocation,
//! no panics on anything a guest writes. It is what the Linux 7.2 `nvme`
//! driver and SeaBIOS's NVMe driver see: a controller that reports NVMe 1.4,
//! one 4 KiB memory page size, up to [`MAX_IO_QUEUES`] I/O queue pairs of at
//! most [`QUEUE_ENTRIES_MAX`] entries, up to [`MAX_NS`] namespaces of 512- or
//! 4096-byte blocks, PRP data pointers (no SGLs) and a 128 KiB maximum data
//! transfer ([`MDTS`]).
//!
//! The model follows the hardware's layout:
//!
//! - [`regs`]: BAR0's register file (CAP, VS, INTMS/INTMC, CC, CSTS, AQA,
//!   ASQ, ACQ) and where the doorbells sit (stride 0, from 0x1000);
//! - [`queue`]: submission and completion queue state (ring addresses,
//!   heads, tails, phase, interrupt vector, shadow doorbells, completions
//!   held back while a completion queue is full);
//! - [`cmd`]: the layout of commands and completions, and the status codes;
//! - [`prp`]: walking PRP entries and PRP lists into a bounded segment list;
//! - [`ctrl`]: the controller itself: MMIO, enable, reset and shutdown,
//!   queue servicing, completions and interrupts;
//! - [`admin`]: the admin command set (Identify, features, queues, log
//!   pages, asynchronous events, Abort, Doorbell Buffer Config);
//! - [`io`]: the NVM command set (Read, Write, Flush, Write Zeroes, Dataset
//!   Management), turned into requests for the caller to execute;
//! - [`state`]: the controller's state as a versioned, validated byte
//!   stream for migration.
//!
//! # Seams
//!
//! The glue that plugs the model into a mediated device provides guest
//! memory and executes data transfers; the model does the rest.
//!
//! - **Guest memory.** Every access the controller makes to guest memory
//!   goes through a [`GuestMem`] the caller passes in: reading submission
//!   queue entries, PRP lists and Dataset Management ranges, writing
//!   completion queue entries, Identify data and log pages, reading shadow
//!   doorbells and writing event indices. A [`DmaFault`] on a queue ring or
//!   a shadow doorbell makes the controller fatal (CSTS.CFS); a fault on a
//!   command's data or PRP list completes that command with Data Transfer
//!   Error. A completion entry is written in one call, its last dword (phase
//!   and status) last, so an implementation that copies in ascending order
//!   (as `vfio_dma_rw` does) publishes an entry only when it is whole.
//! - **Data transfers.** I/O commands' data does not move in the model.
//!   [`ctrl::Controller::process`] turns each I/O command into an
//!   [`io::IoRequest`] (namespace, kind, byte offset and length, and the
//!   resolved guest segments) and hands it to an [`io::IoSink`]; the caller
//!   executes it, possibly asynchronously, and calls
//!   [`ctrl::Controller::complete`] with the request's [`io::Tag`] and a
//!   status. The model then posts the completion (or holds it while the
//!   completion queue is full, and posts it when the guest frees a slot) and
//!   says which interrupt vectors to signal. Each submission queue has at
//!   most its size in commands in flight. Admin commands run inline.
//! - **Namespaces** are an id, a size in blocks, a block size and a 16-byte
//!   identity ([`Namespace`]); the controller's serial number, model and
//!   subsystem NQN come from the caller ([`Config`]), so every instance
//!   differs.
//! - **Interrupts.** Every call that can post a completion returns the
//!   [`ctrl::Irqs`] to signal: vectors (a completion queue's IV) whose queue
//!   received entries. With MSI-X each is a vector; with MSI or INTx
//!   ([`ctrl::IrqMode`]) INTMS/INTMC mask them, an unmask signals vectors
//!   with entries still unread, and [`ctrl::Controller::intx_asserted`] is
//!   the INTx line's level.
//! - **MMIO.** [`ctrl::Controller::mmio_read`] and
//!   [`ctrl::Controller::mmio_write`] take BAR0 accesses of any size and
//!   offset: 4- and 8-byte accesses work as the specification says, others
//!   read as the bytes of the containing register and are ignored on write.
//!   A doorbell write only records its value; the returned [`ctrl::Effect`]
//!   says whether a worker must call [`ctrl::Controller::process`].
//! - **Reset and shutdown.** CC.EN from 1 to 0 deletes every queue and
//!   forgets held asynchronous event requests; requests the caller still
//!   executes are drained: their completions are dropped, and CSTS.RDY
//!   reads 1 until [`ctrl::Controller::outstanding`] is zero. CC.SHN reports
//!   shutdown complete once nothing is outstanding. CC.EN from 0 to 1 checks
//!   AQA, ASQ, ACQ, CC.MPS, CC.CSS, CC.AMS, CC.IOSQES and CC.IOCQES and sets
//!   CSTS.RDY, or CSTS.CFS when one is invalid.
//!
//! # Usage
//!
//! ```text
//! // Creation: one controller per instance, in its own allocation.
//! let mut c = Controller::new(&Config { serial, model, subnqn, vectors, namespaces, .. },
//!                             IrqMode::Intx)?;
//! // When the guest enables MSI or MSI-X (config space write):
//! signal(c.set_irq_mode(IrqMode::MsiX));
//! // BAR0 trap (region read/write):
//! let v = c.mmio_read(offset, size);
//! let e = c.mmio_write(offset, size, value);
//! signal(e.irqs); set_intx(c.intx_asserted());
//! if e.kick { queue_work(worker) }
//! // Worker:
//! let e = c.process(&mut mem, &mut |req: &IoRequest| backend.try_submit(req));
//! signal(e.irqs); set_intx(c.intx_asserted());
//! if e.kick { requeue later, when the backend has room }
//! // Backend completion (any context that can take the controller's lock):
//! let e = c.complete(&mut mem, req.tag, status); // sc::SUCCESS, sc::DATA_TRANSFER_ERROR, ...
//! signal(e.irqs); set_intx(c.intx_asserted());
//! if e.kick { queue_work(worker) }
//! // VFIO reset / FLR:
//! let _ = c.function_reset(); wait until c.outstanding() == 0;
//! // Migration, source: stop calling process(), wait for c.outstanding() == 0,
//! // then c.save(&mut writer) into the device's section.
//! // Destination: c.restore(section)?; then, on RUNNING, call process() once:
//! // entries the guest queued and completions held back need no new doorbell.
//! ```
//!
//! All calls on one controller are serialised by the caller (one lock);
//! none sleeps or allocates. With everything inlined, [`ctrl::Controller::process`]
//! and [`ctrl::Controller::complete`] take about 2.4 KiB of stack in the
//! module build.
//!
//! Two instances one guest sees should not report the same namespace
//! identity: Linux clears duplicate NGUIDs and EUI-64s with an error. The
//! caller derives [`Namespace::id`] per instance (stably, so that a
//! migration target gets the same one: [`ctrl::Controller::restore`]
//! refuses other namespaces).
//!
//! # Choices where the specification leaves room
//!
//! - A doorbell write to a queue that does not exist, or with a value past
//!   the queue's end (a completion queue head past its tail) is a fatal
//!   error: CSTS.CFS, and the controller stops processing until a reset.
//!   Linux then reports the controller down and resets it; an asynchronous
//!   event would leave a guest that ignores it with a broken queue.
//! - Shadow doorbells (Doorbell Buffer Config) serve the I/O queues only,
//!   as Linux uses them; the admin queue keeps its MMIO doorbells.
//! - Deleting a submission queue waits until the caller completed the
//!   queue's commands in flight and their completions are posted (a full
//!   completion queue holds them back until the guest consumes entries), so
//!   no data moves after the guest saw the deletion complete; later admin
//!   commands wait meanwhile.
//! - Identify with CNS 6 (the NVM command set's controller data) reports
//!   the Dataset Management range limit; CNS values other than 0 to 3 and 6
//!   are Invalid Field in Command with Do Not Retry.
//! - A Dataset Management command with more ranges than fit one request
//!   ([`prp::MAX_SEGS`], reported as DMRL) is Invalid Field in Command.
//! - Migration carries the serial number, model and NQN: the guest keeps
//!   seeing the controller it probed.
//! - Number of Queues always grants [`MAX_IO_QUEUES`] pairs.
//! - Abort never aborts (the completion says so).
//!
//! # Left out
//!
//! SGLs, controller memory buffers, namespace management and attachment,
//! Format NVM, firmware download and commit, security send and receive,
//! reservations, Compare, Write Uncorrectable, fused operations, end-to-end
//! protection, metadata, autonomous power state transitions, keep alive,
//! host memory buffers, weighted round robin arbitration, subsystem reset,
//! and interrupt coalescing beyond storing its setting.

pub(crate) mod admin;
pub(crate) mod cmd;
pub(crate) mod ctrl;
pub(crate) mod io;
pub(crate) mod prp;
pub(crate) mod queue;
pub(crate) mod regs;
pub(crate) mod state;
#[cfg(test)]
mod tests;

/// The memory page size: the controller supports only 4 KiB (CAP.MPSMIN and
/// CAP.MPSMAX are 0).
pub(crate) const PAGE_SIZE: u64 = 4096;
/// Maximum Data Transfer Size, in memory pages as a power of two: 2^5 pages,
/// 128 KiB.
pub(crate) const MDTS: u8 = 5;
/// The largest data transfer of one command, in bytes.
pub(crate) const MAX_TRANSFER: u64 = PAGE_SIZE << MDTS;
/// The most I/O queue pairs (queue identifiers 1 to this).
pub(crate) const MAX_IO_QUEUES: u16 = 8;
/// The queues, admin included.
pub(crate) const NUM_QUEUES: usize = MAX_IO_QUEUES as usize + 1;
/// The most entries of an I/O queue (CAP.MQES is this minus one). A power
/// of two: SeaBIOS sizes its I/O queues at MQES + 1 (at most 256) and wraps
/// them with a mask. Linux takes the same depth (below its default 1024).
/// Each submission queue keeps room for this many held completions.
pub(crate) const QUEUE_ENTRIES_MAX: u16 = 64;
/// The most entries of the admin queues (AQA allows 4096).
pub(crate) const ADMIN_ENTRIES_MAX: u16 = 4096;
/// The highest namespace identifier (Identify Controller's NN).
pub(crate) const MAX_NS: usize = 4;
/// The most interrupt vectors a caller may offer.
pub(crate) const MAX_VECTORS: u16 = 32;
/// Asynchronous event requests the controller holds at once (AERL is one
/// less).
pub(crate) const AER_MAX: usize = 4;

/// An access to guest memory failed: the address is not mapped (or not
/// mappable for that direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DmaFault;

/// Guest memory as the controller reaches it, by I/O virtual address.
///
/// Implementations copy whole buffers; one that fails part way may leave
/// part of a write done, which the controller treats like any fault. A
/// write must be ordered before any later read (a full barrier, as
/// `smp_mb()` gives): the shadow doorbell protocol writes an event index and
/// then reads the doorbell again, as the guest does the reverse.
pub(crate) trait GuestMem {
    /// Reads `buf.len()` bytes at `iova`.
    fn read(&mut self, iova: u64, buf: &mut [u8]) -> Result<(), DmaFault>;
    /// Writes `buf` at `iova`, in ascending address order.
    fn write(&mut self, iova: u64, buf: &[u8]) -> Result<(), DmaFault>;
}

/// A namespace as the controller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Namespace {
    /// Its size in logical blocks (not zero).
    pub(crate) blocks: u64,
    /// log2 of its logical block size: 9 (512 bytes) or 12 (4096 bytes).
    pub(crate) lba_shift: u8,
    /// A unique identity: the namespace's NGUID, and the source of its
    /// EUI-64.
    pub(crate) id: [u8; 16],
}

impl Namespace {
    /// The namespace's size in bytes, if the fields are valid.
    pub(crate) fn bytes(&self) -> Option<u64> {
        if self.blocks == 0 || !matches!(self.lba_shift, 9 | 12) {
            return None;
        }
        self.blocks
            .checked_mul(1u64 << self.lba_shift)
            .filter(|b| b.checked_add(PAGE_SIZE).is_some())
    }

    /// The EUI-64 derived from the identity: its two halves folded, with the
    /// locally administered bit set in the first byte.
    pub(crate) fn eui64(&self) -> [u8; 8] {
        let mut e = [0u8; 8];
        for (i, b) in e.iter_mut().enumerate() {
            *b = self.id.get(i).copied().unwrap_or(0) ^ self.id.get(i + 8).copied().unwrap_or(0);
        }
        e[0] |= 0x02;
        e
    }
}

/// What the caller gives a controller at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Config {
    /// PCI vendor ID and subsystem vendor ID (Identify Controller VID and
    /// SSVID).
    pub(crate) vid: u16,
    pub(crate) ssvid: u16,
    /// Serial number: ASCII, space padded.
    pub(crate) serial: [u8; 20],
    /// Model number: ASCII, space padded.
    pub(crate) model: [u8; 40],
    /// NVM Subsystem NVMe Qualified Name: ASCII, zero padded.
    pub(crate) subnqn: [u8; 256],
    /// Controller ID.
    pub(crate) cntlid: u16,
    /// Interrupt vectors offered (1 to [`MAX_VECTORS`]): a completion
    /// queue's vector must be below it.
    pub(crate) vectors: u16,
    /// The namespaces: index `i` is namespace identifier `i + 1`.
    pub(crate) namespaces: [Option<Namespace>; MAX_NS],
}

/// Why a [`Config`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConfigError {
    /// A string is empty or not printable ASCII.
    Identity,
    /// The vector count is 0 or above [`MAX_VECTORS`].
    Vectors,
    /// A namespace has no blocks, an unsupported block size or a size that
    /// overflows.
    Namespace,
}

impl Config {
    /// Checks the fields a guest relies on.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        let printable = |s: &[u8]| s.iter().all(|&b| (0x20..0x7f).contains(&b));
        let nqn_len = self
            .subnqn
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.subnqn.len());
        let (nqn, pad) = self.subnqn.split_at(nqn_len);
        if !printable(&self.serial)
            || self.serial.iter().all(|&b| b == b' ')
            || !printable(&self.model)
            || nqn.is_empty()
            || nqn.len() >= self.subnqn.len()
            || !printable(nqn)
            || pad.iter().any(|&b| b != 0)
        {
            return Err(ConfigError::Identity);
        }
        if self.vectors == 0 || self.vectors > MAX_VECTORS {
            return Err(ConfigError::Vectors);
        }
        if self
            .namespaces
            .iter()
            .flatten()
            .any(|n| n.bytes().is_none())
        {
            return Err(ConfigError::Namespace);
        }
        Ok(())
    }

    /// Copies `s` into a space-padded field (truncating).
    pub(crate) fn padded<const N: usize>(s: &[u8]) -> [u8; N] {
        let mut f = [b' '; N];
        for (d, &b) in f.iter_mut().zip(s) {
            *d = b;
        }
        f
    }

    /// Copies `s` into a zero-padded NQN field (truncated to leave a zero).
    pub(crate) fn nqn(s: &[u8]) -> [u8; 256] {
        let mut f = [0u8; 256];
        for (d, &b) in f.iter_mut().take(255).zip(s) {
            *d = b;
        }
        f
    }
}
