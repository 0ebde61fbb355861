// SPDX-License-Identifier: GPL-2.0

//! Driving one physical 16550-compatible port (kernel-free).
//!
//! The PCI driver of a physical card gives each instance port one physical
//! port and moves bytes between them through the software rings of a
//! [`HwPort`]: received bytes (with the line status errors that came with
//! them) wait in an RX ring until the instance takes them, and transmitted
//! bytes wait in a TX ring until the hardware FIFO has room. The register
//! access itself is the glue's ([`PortIo`], over `ioread8`/`iowrite8` or port
//! I/O), and so is the locking: every method here touches the registers, and
//! [`HwPort::apply`] sets DLAB for a moment (which turns offsets 0 and 1 into
//! the divisor latch), so all of them must run under the one lock the
//! interrupt handler takes.
//!
//! Nothing here trusts the hardware: a surprise-removed card reads 0xff
//! everywhere and a broken one may claim "data ready" forever, so every loop
//! over registers has a fixed bound ([`SERVICE_MAX_ACCESSES`] for
//! [`HwPort::service`]), and no register value can make a method panic or
//! drop a received byte in software.

/// Register offsets within a port's 8-byte window.
pub(crate) mod reg {
    /// Receive buffer (read) and transmit holding register (write); the
    /// divisor latch's low byte while DLAB is set.
    pub(crate) const RBR_THR_DLL: u8 = 0;
    /// Interrupt enable; the divisor latch's high byte while DLAB is set.
    pub(crate) const IER_DLM: u8 = 1;
    /// Interrupt identification (read) and FIFO control (write).
    pub(crate) const IIR_FCR: u8 = 2;
    pub(crate) const LCR: u8 = 3;
    pub(crate) const MCR: u8 = 4;
    pub(crate) const LSR: u8 = 5;
    pub(crate) const MSR: u8 = 6;
    pub(crate) const SCR: u8 = 7;
}

pub(crate) const IER_RDI: u8 = 1 << 0;
pub(crate) const IER_THRI: u8 = 1 << 1;
pub(crate) const IER_RLSI: u8 = 1 << 2;
pub(crate) const IER_MSI: u8 = 1 << 3;

const IIR_NO_INT: u8 = 0x01;
/// The interrupt identification bits and the "no interrupt" bit; bits 5-4
/// are left out because some 16550 derivatives use them.
const IIR_ID_MASK: u8 = 0x0f;
const IIR_FIFO_BITS: u8 = 0xc0;

const FCR_ENABLE: u8 = 1 << 0;
const FCR_CLEAR_RCVR: u8 = 1 << 1;
const FCR_CLEAR_XMIT: u8 = 1 << 2;
/// Receive trigger level 8 of 16. A lower level costs an interrupt every few
/// bytes; a higher one (14) leaves 2 bytes of margin, about 170 us at
/// 115200 baud, for the interrupt to be taken before the FIFO overruns. At 8
/// the margin is 8 bytes (about 700 us), and the receive timeout interrupt
/// still delivers a trickle below the level. The kernel's 8250 driver uses
/// the same level for a 16550A.
const FCR_TRIGGER_8: u8 = 0x80;

pub(crate) const LCR_DLAB: u8 = 1 << 7;
/// 8 data bits, no parity, 1 stop bit.
pub(crate) const LCR_8N1: u8 = 0x03;

pub(crate) const MCR_DTR: u8 = 1 << 0;
pub(crate) const MCR_RTS: u8 = 1 << 1;
pub(crate) const MCR_OUT1: u8 = 1 << 2;
/// OUT2 gates the port's interrupt onto the bus on PC-style cards: it is the
/// driver's, set while an instance has the port.
pub(crate) const MCR_OUT2: u8 = 1 << 3;
/// Loopback: never set by this driver, and never by a guest.
#[cfg_attr(
    not(test),
    expect(dead_code, reason = "the tests check it stays clear")
)]
pub(crate) const MCR_LOOP: u8 = 1 << 4;
/// The MCR bits a guest controls.
pub(crate) const MCR_GUEST: u8 = MCR_DTR | MCR_RTS | MCR_OUT1;

pub(crate) const LSR_DR: u8 = 1 << 0;
pub(crate) const LSR_OE: u8 = 1 << 1;
pub(crate) const LSR_PE: u8 = 1 << 2;
pub(crate) const LSR_FE: u8 = 1 << 3;
pub(crate) const LSR_BI: u8 = 1 << 4;
pub(crate) const LSR_THRE: u8 = 1 << 5;
/// The error bits that travel with a received byte.
pub(crate) const LSR_ERRORS: u8 = LSR_OE | LSR_PE | LSR_FE | LSR_BI;

/// The modem status inputs: CTS, DSR, RI and DCD.
pub(crate) const MSR_INPUTS: u8 = 0xf0;
/// The modem status change bits: DCTS, DDSR, TERI and DDCD.
pub(crate) const MSR_DELTAS: u8 = 0x0f;

/// Entries of the receive ring.
pub(crate) const RX_RING: usize = 256;
/// Bytes of the transmit ring.
pub(crate) const TX_RING: usize = 64;
/// The hardware FIFO's depth: the most bytes written to THR per THR-empty.
/// (A 16C950 in its enhanced mode has 128, but it starts, and stays, in
/// 16550 mode with 16.)
pub(crate) const HW_FIFO: usize = 16;
/// The most times [`HwPort::service`] reads IIR.
pub(crate) const SERVICE_ROUNDS: usize = 16;
/// The most bytes [`HwPort::service`] reads from RBR in one call. A 16550
/// gives 16 per interrupt at most; the rest of the budget is for bytes that
/// arrive while the handler runs. A port that still has data interrupts
/// again.
pub(crate) const SERVICE_RX_BUDGET: usize = 64;
/// The most register accesses of one [`HwPort::service`] call: per round an
/// IIR, an LSR and an MSR read, an IER write and a burst of THR writes; per
/// byte received an RBR and an LSR read.
#[cfg_attr(
    not(test),
    expect(dead_code, reason = "the tests hold the handler to it")
)]
pub(crate) const SERVICE_MAX_ACCESSES: usize =
    SERVICE_ROUNDS * (4 + HW_FIFO) + 2 * SERVICE_RX_BUDGET;
/// [`HwPort::pop_rx`] re-enables the receive interrupt of a throttled port
/// once the ring has room for a hardware FIFO's worth of bytes, so that it
/// does not write IER for every byte taken.
pub(crate) const UNTHROTTLE_ROOM: usize = HW_FIFO;

/// Register access to one physical port's 8 registers (offsets 0-7). The
/// glue implements it over `ioread8`/`iowrite8` (or port I/O).
pub(crate) trait PortIo {
    /// Reads register `reg` (0-7).
    fn read(&self, reg: u8) -> u8;
    /// Writes `v` to register `reg` (0-7).
    fn write(&self, reg: u8, v: u8);
}

/// Line settings a guest programs, applied to the physical port.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct LineSettings {
    /// The divisor latch, for the card's clock (see
    /// `physcard::scale_divisor` for cards whose base is not 115200). A
    /// divisor of 0 is applied as 1: the 16550 datasheet leaves 0 undefined
    /// and on real parts it stops the baud clock, which would leave bytes in
    /// the TX FIFO forever.
    pub(crate) divisor: u16,
    /// Word length, stop bits, parity and break (bit 6). DLAB (bit 7) is
    /// never part of it: it is ignored.
    pub(crate) lcr: u8,
    /// DTR, RTS and OUT1 (bits 0-2). The other bits (OUT2 and LOOP) are the
    /// driver's: they are ignored.
    pub(crate) mcr: u8,
}

impl LineSettings {
    /// What [`HwPort::start`] applies: 8N1 at divisor 1, DTR and RTS on.
    pub(crate) const DEFAULT: Self = Self {
        divisor: 1,
        lcr: LCR_8N1,
        mcr: MCR_DTR | MCR_RTS,
    };

    /// The settings as they are applied: divisor 0 becomes 1, DLAB and the
    /// driver's MCR bits are dropped.
    pub(crate) fn sanitized(self) -> Self {
        Self {
            divisor: self.divisor.max(1),
            lcr: self.lcr & !LCR_DLAB,
            mcr: self.mcr & MCR_GUEST,
        }
    }
}

/// One entry of the receive ring.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Rx {
    /// The byte received, or `None` for line status errors that came with no
    /// byte (an overrun seen when the FIFO was already read empty, say).
    pub(crate) byte: Option<u8>,
    /// The LSR error bits (OE, PE, FE, BI) that came with it.
    pub(crate) errors: u8,
}

/// What [`HwPort::service`] found, for the instance using the port.
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Events {
    /// The port was interrupting (for a shared INTx handler's return value).
    pub(crate) handled: bool,
    /// Bytes (or errors) were queued in the RX ring.
    pub(crate) rx: bool,
    /// Bytes left the TX ring, so it has room again.
    pub(crate) tx_room: bool,
    /// The modem status changed (see [`HwPort::modem_inputs`] and
    /// [`HwPort::take_modem_deltas`]).
    pub(crate) modem: bool,
}

/// One physical port's driver state: software rings between the hardware and
/// the instance using it. No allocation: the rings are fixed arrays.
pub(crate) struct HwPort {
    rx: [Rx; RX_RING],
    rx_head: usize,
    rx_len: usize,
    tx: [u8; TX_RING],
    tx_head: usize,
    tx_len: usize,
    /// The modem status inputs (MSR bits 4-7) last read.
    msr: u8,
    /// Change bits (MSR bits 0-3) read since [`HwPort::take_modem_deltas`].
    msr_deltas: u8,
    /// What IER holds (the driver is the only writer).
    ier: u8,
    /// The RX ring filled up and the receive interrupt is off.
    throttled: bool,
    /// Errors read from LSR that are not in the RX ring yet: they go with the
    /// next byte read, or alone at the next service that finds no byte.
    pending_err: u8,
    /// The line settings last applied (sanitized).
    line: LineSettings,
    /// An instance has the port (between [`HwPort::start`] and
    /// [`HwPort::stop`]).
    active: bool,
}

impl Default for HwPort {
    fn default() -> Self {
        Self::new()
    }
}

impl HwPort {
    /// A port that no instance uses.
    pub(crate) const fn new() -> Self {
        Self {
            rx: [Rx {
                byte: None,
                errors: 0,
            }; RX_RING],
            rx_head: 0,
            rx_len: 0,
            tx: [0; TX_RING],
            tx_head: 0,
            tx_len: 0,
            msr: 0,
            msr_deltas: 0,
            ier: 0,
            throttled: false,
            pending_err: 0,
            line: LineSettings::DEFAULT,
            active: false,
        }
    }

    /// Whether a 16550 answers at `io`. It checks that IER reads back the 0
    /// written to it, that the scratch register echoes two patterns, that IIR
    /// reports "FIFOs enabled, no interrupt" with the FIFOs on and "no FIFOs,
    /// no interrupt" with them off, and that the transmitter is empty after
    /// its FIFO is cleared. A device that reads 0xff (or 0x00) everywhere,
    /// or plain memory that echoes every write, fails. It leaves the port
    /// quiet: IER 0, MCR 0 (OUT2 off), FIFOs off, DLAB off.
    pub(crate) fn probe(io: &impl PortIo) -> bool {
        io.write(reg::LCR, 0);
        io.write(reg::IER_DLM, 0);
        io.write(reg::MCR, 0);
        let mut ok = io.read(reg::IER_DLM) == 0;
        for pattern in [0x55, 0xaa] {
            io.write(reg::SCR, pattern);
            ok &= io.read(reg::SCR) == pattern;
        }
        io.write(reg::SCR, 0);
        io.write(reg::IIR_FCR, FCR_ENABLE | FCR_CLEAR_RCVR | FCR_CLEAR_XMIT);
        ok &= io.read(reg::IIR_FCR) & (IIR_FIFO_BITS | IIR_ID_MASK) == IIR_FIFO_BITS | IIR_NO_INT;
        let lsr = io.read(reg::LSR);
        ok &= lsr != 0xff && lsr & LSR_THRE != 0;
        io.write(reg::IIR_FCR, 0);
        ok &= io.read(reg::IIR_FCR) & (IIR_FIFO_BITS | IIR_ID_MASK) == IIR_NO_INT;
        ok
    }

    /// An instance takes the port: empty rings, FIFOs on and cleared
    /// (receive trigger at 8 bytes), 8N1 at divisor 1 until the guest says
    /// otherwise, MCR = DTR|RTS|OUT2, IER = RDI|RLSI|MSI (THRI only while
    /// bytes are in flight). Stale state (LSR errors, a byte, MSR changes, a
    /// pending interrupt) is read away.
    pub(crate) fn start(&mut self, io: &impl PortIo) {
        self.empty_rings();
        io.write(reg::LCR, 0);
        io.write(reg::IER_DLM, 0);
        self.ier = 0;
        io.write(
            reg::IIR_FCR,
            FCR_ENABLE | FCR_CLEAR_RCVR | FCR_CLEAR_XMIT | FCR_TRIGGER_8,
        );
        let line = LineSettings::DEFAULT;
        self.write_divisor(io, line);
        io.write(reg::MCR, line.mcr | MCR_OUT2);
        self.line = line;
        // The FIFO was cleared, but a 16450-like part may still hold one
        // byte: read it and the errors away, a bounded number of times.
        for _ in 0..=HW_FIFO {
            if io.read(reg::LSR) & LSR_DR == 0 {
                break;
            }
            io.read(reg::RBR_THR_DLL);
        }
        self.msr = io.read(reg::MSR) & MSR_INPUTS;
        self.msr_deltas = 0;
        io.read(reg::IIR_FCR);
        self.active = true;
        self.set_ier(io, IER_RDI | IER_RLSI | IER_MSI);
    }

    /// The instance lets go (or the card goes): IER 0, MCR 0, FIFOs cleared
    /// and off, rings emptied.
    pub(crate) fn stop(&mut self, io: &impl PortIo) {
        io.write(reg::LCR, self.line.lcr & !LCR_DLAB);
        io.write(reg::IER_DLM, 0);
        self.ier = 0;
        io.write(reg::MCR, 0);
        io.write(reg::IIR_FCR, FCR_ENABLE | FCR_CLEAR_RCVR | FCR_CLEAR_XMIT);
        io.write(reg::IIR_FCR, 0);
        self.empty_rings();
        self.active = false;
    }

    /// Applies `line` (sanitized, see [`LineSettings`]) if it differs from
    /// what was applied: the divisor with DLAB set only while it is written,
    /// then LCR without DLAB; MCR with the driver's OUT2. A port no instance
    /// has is left alone.
    pub(crate) fn apply(&mut self, io: &impl PortIo, line: LineSettings) {
        let want = line.sanitized();
        if !self.active || want == self.line {
            return;
        }
        if want.divisor != self.line.divisor {
            self.write_divisor(io, want);
        } else if want.lcr != self.line.lcr {
            io.write(reg::LCR, want.lcr);
        }
        if want.mcr != self.line.mcr {
            io.write(reg::MCR, want.mcr | MCR_OUT2);
        }
        self.line = want;
    }

    /// The line settings last applied.
    pub(crate) fn line(&self) -> LineSettings {
        self.line
    }

    /// The interrupt handler's part. It reads IIR until the port stops
    /// interrupting, at most [`SERVICE_ROUNDS`] times, and in each round
    /// receives (bytes into the RX ring with the LSR errors that came with
    /// them, at most [`SERVICE_RX_BUDGET`] per call; when the ring is full,
    /// RDI goes off in IER and the rest stays in the hardware FIFO), records
    /// MSR changes, and on THR empty moves up to [`HW_FIFO`] bytes from the
    /// TX ring to THR (THRI goes off when the ring is empty). It makes at
    /// most [`SERVICE_MAX_ACCESSES`] register accesses. A port that was not
    /// interrupting returns `handled: false` (shared INTx). A port with no
    /// instance that interrupts anyway is silenced (IER 0).
    pub(crate) fn service(&mut self, io: &impl PortIo) -> Events {
        let mut ev = Events::default();
        let mut budget = SERVICE_RX_BUDGET;
        for _ in 0..SERVICE_ROUNDS {
            if io.read(reg::IIR_FCR) & IIR_NO_INT != 0 {
                break;
            }
            ev.handled = true;
            if !self.active {
                io.write(reg::IER_DLM, 0);
                self.ier = 0;
                break;
            }
            let lsr = self.receive(io, &mut budget, &mut ev);
            let msr = io.read(reg::MSR);
            if msr & MSR_DELTAS != 0 || msr & MSR_INPUTS != self.msr {
                ev.modem = true;
            }
            self.msr = msr & MSR_INPUTS;
            self.msr_deltas |= msr & MSR_DELTAS;
            if lsr & LSR_THRE != 0 {
                if self.transmit(io) {
                    ev.tx_room = true;
                }
                if self.tx_len == 0 {
                    self.set_ier(io, self.ier & !IER_THRI);
                }
            }
        }
        ev
    }

    /// Queues one byte for transmission; false when the TX ring is full or
    /// no instance has the port (the caller keeps the byte). When THR is
    /// empty (LSR.THRE) it writes up to [`HW_FIFO`] bytes straight away, and
    /// it turns THRI on, so that [`HwPort::service`] sends the rest and says
    /// when the ring has room. LSR errors seen on the way are kept for the
    /// RX ring (reading LSR clears them in the hardware).
    pub(crate) fn queue_tx(&mut self, io: &impl PortIo, b: u8) -> bool {
        if !self.active || self.tx_len == TX_RING {
            return false;
        }
        self.tx[(self.tx_head + self.tx_len) % TX_RING] = b;
        self.tx_len += 1;
        let lsr = io.read(reg::LSR);
        self.pending_err |= lsr & LSR_ERRORS;
        if lsr & LSR_THRE != 0 {
            self.transmit(io);
        }
        self.set_ier(io, self.ier | IER_THRI);
        true
    }

    /// Free bytes in the TX ring.
    pub(crate) fn tx_room(&self) -> usize {
        TX_RING - self.tx_len
    }

    /// The next received byte (or error alone) with its LSR error bits. A
    /// throttled port gets its receive interrupt back once the ring has
    /// [`UNTHROTTLE_ROOM`] entries free.
    pub(crate) fn pop_rx(&mut self, io: &impl PortIo) -> Option<Rx> {
        if self.rx_len == 0 {
            return None;
        }
        let e = self.rx[self.rx_head];
        self.rx_head = (self.rx_head + 1) % RX_RING;
        self.rx_len -= 1;
        if self.throttled && self.active && RX_RING - self.rx_len >= UNTHROTTLE_ROOM {
            self.throttled = false;
            self.set_ier(io, self.ier | IER_RDI);
        }
        Some(e)
    }

    /// Entries in the RX ring.
    pub(crate) fn rx_len(&self) -> usize {
        self.rx_len
    }

    /// Whether the RX ring filled up and the receive interrupt is off.
    pub(crate) fn throttled(&self) -> bool {
        self.throttled
    }

    /// The modem status inputs (MSR bits 4-7: CTS, DSR, RI, DCD) last read.
    pub(crate) fn modem_inputs(&self) -> u8 {
        self.msr
    }

    /// The MSR change bits (DCTS, DDSR, TERI, DDCD) read since the last
    /// call: a ring pulse shows as TERI even when RI reads the same before
    /// and after.
    pub(crate) fn take_modem_deltas(&mut self) -> u8 {
        core::mem::take(&mut self.msr_deltas)
    }

    fn empty_rings(&mut self) {
        self.rx_head = 0;
        self.rx_len = 0;
        self.tx_head = 0;
        self.tx_len = 0;
        self.throttled = false;
        self.pending_err = 0;
    }

    /// Writes IER if it changes. DLAB is off whenever this runs.
    fn set_ier(&mut self, io: &impl PortIo, v: u8) {
        if v != self.ier {
            self.ier = v;
            io.write(reg::IER_DLM, v);
        }
    }

    /// Writes the divisor latch with DLAB set, then `line.lcr` without it.
    fn write_divisor(&self, io: &impl PortIo, line: LineSettings) {
        let [lo, hi] = line.divisor.to_le_bytes();
        io.write(reg::LCR, line.lcr | LCR_DLAB);
        io.write(reg::RBR_THR_DLL, lo);
        io.write(reg::IER_DLM, hi);
        io.write(reg::LCR, line.lcr);
    }

    fn push_rx(&mut self, e: Rx) {
        // The callers check for room; a full ring keeps what it has.
        if self.rx_len < RX_RING {
            self.rx[(self.rx_head + self.rx_len) % RX_RING] = e;
            self.rx_len += 1;
        }
    }

    /// Moves received bytes from the hardware into the RX ring while it has
    /// room and `budget` lasts; returns the last LSR value read.
    fn receive(&mut self, io: &impl PortIo, budget: &mut usize, ev: &mut Events) -> u8 {
        let mut lsr = io.read(reg::LSR);
        // Each pass reads one byte, or ends the loop.
        for _ in 0..=SERVICE_RX_BUDGET {
            let errors = self.pending_err | (lsr & LSR_ERRORS);
            if lsr & LSR_DR == 0 {
                // Errors that came with no byte are queued alone (or wait
                // for room, to go with a later byte).
                if errors != 0 && self.rx_len < RX_RING {
                    self.push_rx(Rx { byte: None, errors });
                    self.pending_err = 0;
                    ev.rx = true;
                } else {
                    self.pending_err = errors;
                }
                break;
            }
            // The errors belong to the byte at the head of the hardware
            // FIFO: they wait with it when it cannot be read now.
            self.pending_err = errors;
            if self.rx_len == RX_RING {
                if !self.throttled {
                    self.throttled = true;
                    self.set_ier(io, self.ier & !IER_RDI);
                }
                break;
            }
            if *budget == 0 {
                break;
            }
            *budget -= 1;
            let byte = io.read(reg::RBR_THR_DLL);
            self.push_rx(Rx {
                byte: Some(byte),
                errors,
            });
            self.pending_err = 0;
            ev.rx = true;
            lsr = io.read(reg::LSR);
        }
        lsr
    }

    /// Writes up to [`HW_FIFO`] bytes from the TX ring to THR (whose FIFO is
    /// empty); returns whether it wrote any.
    fn transmit(&mut self, io: &impl PortIo) -> bool {
        let n = self.tx_len.min(HW_FIFO);
        for _ in 0..n {
            io.write(reg::RBR_THR_DLL, self.tx[self.tx_head]);
            self.tx_head = (self.tx_head + 1) % TX_RING;
        }
        self.tx_len -= n;
        n > 0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    extern crate std;
    use core::cell::{Cell, RefCell};
    use std::{collections::VecDeque, vec::Vec};

    /// A seeded xorshift generator, so that the random tests repeat.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// A number in `0..n` (`n` > 0).
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// The state of [`Fake`], a 16550A as far as the driver can tell: a
    /// 16-byte receive FIFO fed from a wire the test controls, a 16-byte
    /// transmit FIFO that empties only when the test says the wire moved,
    /// LSR errors per byte, modem inputs, and interrupt identification by
    /// the datasheet's priorities. Loopback is not modelled (the driver
    /// never sets it).
    #[derive(Default)]
    pub(crate) struct State {
        ier: u8,
        lcr: u8,
        mcr: u8,
        scr: u8,
        dll: u8,
        dlm: u8,
        fifo_on: bool,
        trigger: usize,
        /// The receive FIFO: bytes with their PE/FE/BI bits.
        rx: VecDeque<(u8, u8)>,
        /// Bytes on the wire that have not reached the FIFO yet.
        wire_in: VecDeque<(u8, u8)>,
        /// Overrun (or other errors) with no byte, until LSR is read.
        lone_err: u8,
        tx: VecDeque<u8>,
        /// What went out on the wire, in order.
        sent: Vec<u8>,
        /// THR writes that found the transmit FIFO full (lost bytes).
        tx_overflow: usize,
        thri_pending: bool,
        msr_in: u8,
        msr_delta: u8,
        accesses: usize,
        /// Every write, in order, for the tests of `apply`.
        writes: Vec<(u8, u8)>,
    }

    impl State {
        fn lsr_errors(&self) -> u8 {
            self.lone_err | self.rx.front().map_or(0, |e| e.1)
        }

        /// The IIR value, without the side effect of reading it.
        fn iir(&self) -> u8 {
            let id = if self.ier & IER_RLSI != 0 && self.lsr_errors() != 0 {
                0x06
            } else if self.ier & IER_RDI != 0 && self.rx.len() >= self.trigger.max(1) {
                0x04
            } else if self.ier & IER_RDI != 0 && !self.rx.is_empty() {
                // The character timeout, as if it had already expired.
                0x0c
            } else if self.ier & IER_THRI != 0 && self.thri_pending {
                0x02
            } else if self.ier & IER_MSI != 0 && self.msr_delta != 0 {
                0x00
            } else {
                IIR_NO_INT
            };
            id | if self.fifo_on { IIR_FIFO_BITS } else { 0 }
        }

        fn dlab(&self) -> bool {
            self.lcr & LCR_DLAB != 0
        }
    }

    /// A fake 16550A (see [`State`]); `mediate.rs` tests with it too.
    #[derive(Default)]
    pub(crate) struct Fake(RefCell<State>);

    impl Fake {
        pub(crate) fn new() -> Self {
            let f = Self::default();
            f.0.borrow_mut().trigger = 1;
            f
        }

        /// The bytes `data` are on the wire, to arrive later.
        pub(crate) fn send_to_port(&self, data: &[u8]) {
            let mut s = self.0.borrow_mut();
            s.wire_in.extend(data.iter().map(|&b| (b, 0)));
        }

        /// One byte with errors (PE, FE, BI) is on the wire.
        pub(crate) fn send_bad(&self, b: u8, errors: u8) {
            self.0.borrow_mut().wire_in.push_back((b, errors));
        }

        /// Up to `n` bytes move from the wire into the receive FIFO, while
        /// it has room (the sender is flow-controlled: nothing is lost).
        pub(crate) fn arrive(&self, n: usize) {
            let mut s = self.0.borrow_mut();
            for _ in 0..n {
                if s.rx.len() == HW_FIFO {
                    break;
                }
                let Some(e) = s.wire_in.pop_front() else {
                    break;
                };
                s.rx.push_back(e);
            }
        }

        /// Up to `n` bytes leave the transmit FIFO on the wire.
        pub(crate) fn wire_moves(&self, n: usize) {
            let mut s = self.0.borrow_mut();
            let before = s.tx.len();
            for _ in 0..n {
                let Some(b) = s.tx.pop_front() else {
                    break;
                };
                s.sent.push(b);
            }
            if before > 0 && s.tx.is_empty() {
                s.thri_pending = true;
            }
        }

        pub(crate) fn set_modem_inputs(&self, v: u8) {
            let mut s = self.0.borrow_mut();
            let old = s.msr_in;
            let changed = old ^ v;
            let mut d = 0;
            if changed & 0x10 != 0 {
                d |= 0x01;
            }
            if changed & 0x20 != 0 {
                d |= 0x02;
            }
            if old & 0x40 != 0 && v & 0x40 == 0 {
                d |= 0x04;
            }
            if changed & 0x80 != 0 {
                d |= 0x08;
            }
            s.msr_in = v & MSR_INPUTS;
            s.msr_delta |= d;
        }

        /// The port's interrupt output as the bus sees it (gated by OUT2).
        pub(crate) fn irq(&self) -> bool {
            let s = self.0.borrow();
            s.iir() & IIR_NO_INT == 0 && s.mcr & MCR_OUT2 != 0
        }

        pub(crate) fn sent(&self) -> Vec<u8> {
            self.0.borrow().sent.clone()
        }
    }

    impl PortIo for Fake {
        fn read(&self, reg: u8) -> u8 {
            let mut s = self.0.borrow_mut();
            s.accesses += 1;
            match reg {
                reg::RBR_THR_DLL if s.dlab() => s.dll,
                reg::RBR_THR_DLL => s.rx.pop_front().map_or(0, |e| e.0),
                reg::IER_DLM if s.dlab() => s.dlm,
                reg::IER_DLM => s.ier,
                reg::IIR_FCR => {
                    let v = s.iir();
                    if v & IIR_ID_MASK == 0x02 {
                        s.thri_pending = false;
                    }
                    v
                }
                reg::LCR => s.lcr,
                reg::MCR => s.mcr,
                reg::LSR => {
                    let empty = if s.tx.is_empty() { 0x60 } else { 0 };
                    let v = u8::from(!s.rx.is_empty()) | s.lsr_errors() | empty;
                    s.lone_err = 0;
                    if let Some(e) = s.rx.front_mut() {
                        e.1 = 0;
                    }
                    v
                }
                reg::MSR => {
                    let v = s.msr_in | s.msr_delta;
                    s.msr_delta = 0;
                    v
                }
                reg::SCR => s.scr,
                _ => 0xff,
            }
        }

        fn write(&self, reg: u8, v: u8) {
            let mut s = self.0.borrow_mut();
            s.accesses += 1;
            s.writes.push((reg, v));
            match reg {
                reg::RBR_THR_DLL if s.dlab() => s.dll = v,
                reg::RBR_THR_DLL => {
                    if s.tx.len() == HW_FIFO {
                        s.tx_overflow += 1;
                    } else {
                        s.tx.push_back(v);
                    }
                    s.thri_pending = false;
                }
                reg::IER_DLM if s.dlab() => s.dlm = v,
                reg::IER_DLM => {
                    let v = v & 0x0f;
                    if v & !s.ier & IER_THRI != 0 && s.tx.is_empty() {
                        s.thri_pending = true;
                    }
                    s.ier = v;
                }
                reg::IIR_FCR => {
                    s.fifo_on = v & FCR_ENABLE != 0;
                    if v & FCR_CLEAR_RCVR != 0 {
                        s.rx.clear();
                    }
                    if v & FCR_CLEAR_XMIT != 0 {
                        s.tx.clear();
                    }
                    s.trigger = [1, 4, 8, 14][usize::from(v >> 6)];
                }
                reg::LCR => s.lcr = v,
                reg::MCR => s.mcr = v & 0x1f,
                reg::SCR => s.scr = v,
                _ => {}
            }
        }
    }

    /// A device that reads `0` everywhere and ignores writes.
    struct Const(u8, Cell<usize>);

    impl PortIo for Const {
        fn read(&self, _: u8) -> u8 {
            self.1.set(self.1.get() + 1);
            self.0
        }
        fn write(&self, _: u8, _: u8) {
            self.1.set(self.1.get() + 1);
        }
    }

    /// Plain memory: every register echoes what was written to it.
    #[derive(Default)]
    struct Ram([Cell<u8>; 8]);

    impl PortIo for Ram {
        fn read(&self, reg: u8) -> u8 {
            self.0[usize::from(reg & 7)].get()
        }
        fn write(&self, reg: u8, v: u8) {
            self.0[usize::from(reg & 7)].set(v);
        }
    }

    /// A broken port that says "data ready" (and interrupts) forever.
    #[derive(Default)]
    struct Babbler {
        accesses: Cell<usize>,
        next: Cell<u8>,
    }

    impl PortIo for Babbler {
        fn read(&self, reg: u8) -> u8 {
            self.accesses.set(self.accesses.get() + 1);
            match reg {
                reg::IIR_FCR => 0xc4,
                reg::LSR => LSR_DR | LSR_THRE | 0x40,
                reg::RBR_THR_DLL => {
                    self.next.set(self.next.get().wrapping_add(1));
                    self.next.get()
                }
                _ => 0,
            }
        }
        fn write(&self, _: u8, _: u8) {
            self.accesses.set(self.accesses.get() + 1);
        }
    }

    /// A port whose every read is random.
    struct Chaos {
        rng: RefCell<Rng>,
        accesses: Cell<usize>,
    }

    impl PortIo for Chaos {
        fn read(&self, _: u8) -> u8 {
            self.accesses.set(self.accesses.get() + 1);
            self.rng.borrow_mut().next() as u8
        }
        fn write(&self, _: u8, _: u8) {
            self.accesses.set(self.accesses.get() + 1);
        }
    }

    fn started() -> (Fake, HwPort) {
        let f = Fake::new();
        let mut p = HwPort::new();
        p.start(&f);
        (f, p)
    }

    /// Runs the interrupt handler while the fake interrupts (bounded).
    fn irq(f: &Fake, p: &mut HwPort) -> Events {
        let mut all = Events::default();
        for _ in 0..8 {
            if !f.irq() {
                break;
            }
            let e = p.service(f);
            assert!(e.handled);
            all.rx |= e.rx;
            all.tx_room |= e.tx_room;
            all.modem |= e.modem;
            all.handled = true;
        }
        all
    }

    fn pop_all(f: &Fake, p: &mut HwPort) -> Vec<Rx> {
        let mut v = Vec::new();
        while let Some(e) = p.pop_rx(f) {
            v.push(e);
        }
        v
    }

    #[test]
    fn probe_accepts_a_16550_and_leaves_it_quiet() {
        let f = Fake::new();
        f.0.borrow_mut().ier = 0x0f;
        f.0.borrow_mut().mcr = MCR_OUT2;
        assert!(HwPort::probe(&f));
        let s = f.0.borrow();
        assert_eq!((s.ier, s.mcr & MCR_OUT2, s.lcr & LCR_DLAB), (0, 0, 0));
        assert!(!s.fifo_on);
    }

    #[test]
    fn probe_refuses_what_is_not_a_16550() {
        assert!(!HwPort::probe(&Const(0xff, Cell::new(0))));
        assert!(!HwPort::probe(&Const(0x00, Cell::new(0))));
        assert!(!HwPort::probe(&Ram::default()));
        // A 16450 (no FIFOs): IIR never shows the FIFO bits.
        struct NoFifo(Fake);
        impl PortIo for NoFifo {
            fn read(&self, reg: u8) -> u8 {
                let v = self.0.read(reg);
                if reg == reg::IIR_FCR {
                    v & !IIR_FIFO_BITS
                } else {
                    v
                }
            }
            fn write(&self, reg: u8, v: u8) {
                self.0.write(reg, v)
            }
        }
        assert!(!HwPort::probe(&NoFifo(Fake::new())));
    }

    #[test]
    fn start_programs_the_port() {
        let (f, p) = started();
        let s = f.0.borrow();
        assert_eq!(s.ier, IER_RDI | IER_RLSI | IER_MSI);
        assert_eq!(s.mcr, MCR_DTR | MCR_RTS | MCR_OUT2);
        assert_eq!((s.lcr, s.dll, s.dlm), (LCR_8N1, 1, 0));
        assert!(s.fifo_on);
        assert_eq!(s.trigger, 8);
        assert_eq!(p.line(), LineSettings::DEFAULT);
        drop(s);
        assert!(!f.irq());
    }

    #[test]
    fn start_reads_stale_state_away() {
        let f = Fake::new();
        f.send_bad(1, LSR_PE);
        f.arrive(1);
        f.set_modem_inputs(0x30);
        // Without FCR clearing it (a part whose FIFO reset is broken).
        struct NoClear<'a>(&'a Fake);
        impl PortIo for NoClear<'_> {
            fn read(&self, reg: u8) -> u8 {
                self.0.read(reg)
            }
            fn write(&self, reg: u8, v: u8) {
                let v = if reg == reg::IIR_FCR { v & !0x06 } else { v };
                self.0.write(reg, v)
            }
        }
        let mut p = HwPort::new();
        p.start(&NoClear(&f));
        assert!(f.0.borrow().rx.is_empty());
        assert_eq!(p.modem_inputs(), 0x30);
        assert!(!f.irq());
        assert_eq!(p.rx_len(), 0);
    }

    #[test]
    fn stop_quiets_the_port_and_empties_the_rings() {
        let (f, mut p) = started();
        f.send_to_port(b"abc");
        f.arrive(3);
        irq(&f, &mut p);
        for b in 0..40 {
            assert!(p.queue_tx(&f, b));
        }
        assert!(p.rx_len() > 0);
        p.stop(&f);
        let s = f.0.borrow();
        assert_eq!((s.ier, s.mcr), (0, 0));
        assert!(s.rx.is_empty() && s.tx.is_empty() && !s.fifo_on);
        drop(s);
        assert_eq!((p.rx_len(), p.tx_room()), (0, TX_RING));
        assert!(!p.queue_tx(&f, 1));
        assert!(!f.irq());
    }

    #[test]
    fn not_interrupting_is_not_handled() {
        let (f, mut p) = started();
        assert_eq!(p.service(&f), Events::default());
        // The same with data present but the port's interrupts off.
        f.send_to_port(b"x");
        f.arrive(1);
        f.0.borrow_mut().ier = 0;
        assert_eq!(p.service(&f), Events::default());
        assert_eq!(p.rx_len(), 0);
        // An absent card.
        let gone = Const(0xff, Cell::new(0));
        assert_eq!(p.service(&gone), Events::default());
        assert!(gone.1.get() <= 1);
    }

    #[test]
    fn rx_keeps_order_and_loses_nothing_across_wraparound() {
        let (f, mut p) = started();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let data: Vec<u8> = (0..20_000).map(|_| rng.next() as u8).collect();
        f.send_to_port(&data);
        let mut got = Vec::new();
        let mut throttles = 0;
        for _ in 0..200_000 {
            if got.len() == data.len() {
                break;
            }
            f.arrive(rng.below(20));
            if rng.below(2) == 0 {
                irq(&f, &mut p);
            }
            if p.throttled() {
                throttles += 1;
            }
            // The instance takes bytes more slowly than they arrive, in
            // bursts, so that the ring fills and throttles now and then.
            let take = if rng.below(4) == 0 { rng.below(60) } else { 0 };
            for _ in 0..take {
                match p.pop_rx(&f) {
                    Some(Rx {
                        byte: Some(b),
                        errors: 0,
                    }) => got.push(b),
                    Some(e) => panic!("unexpected {e:?}"),
                    None => break,
                }
            }
        }
        assert_eq!(got.len(), data.len());
        assert!(got == data, "bytes reordered or changed");
        // The run must have exercised throttling, or it proves less.
        assert!(throttles > 0);
    }

    #[test]
    fn tx_keeps_order_and_loses_nothing_across_wraparound() {
        let (f, mut p) = started();
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let data: Vec<u8> = (0..20_000).map(|_| rng.next() as u8).collect();
        let mut next = 0;
        let mut refused = 0;
        for _ in 0..200_000 {
            if f.sent().len() == data.len() {
                break;
            }
            for _ in 0..rng.below(30) {
                let Some(&b) = data.get(next) else {
                    break;
                };
                if !p.queue_tx(&f, b) {
                    refused += 1;
                    assert_eq!(p.tx_room(), 0);
                    break;
                }
                next += 1;
            }
            f.wire_moves(rng.below(20));
            irq(&f, &mut p);
        }
        assert!(f.sent() == data, "bytes reordered, changed or lost");
        assert_eq!(f.0.borrow().tx_overflow, 0);
        assert!(refused > 0);
        // All sent: THRI is off again.
        irq(&f, &mut p);
        assert_eq!(f.0.borrow().ier & IER_THRI, 0);
    }

    #[test]
    fn a_full_rx_ring_throttles_and_leaves_bytes_in_the_fifo() {
        let (f, mut p) = started();
        let data: Vec<u8> = (0..RX_RING + 10).map(|i| i as u8).collect();
        f.send_to_port(&data);
        for _ in 0..100 {
            f.arrive(HW_FIFO);
            irq(&f, &mut p);
        }
        assert_eq!(p.rx_len(), RX_RING);
        assert!(p.throttled());
        let s = f.0.borrow();
        assert_eq!(s.ier & IER_RDI, 0);
        assert_eq!(s.rx.len(), 10, "the rest waits in the hardware FIFO");
        drop(s);
        assert!(!f.irq(), "a throttled port must not interrupt");
        // One pop is not enough room to re-enable reception.
        let mut got: Vec<u8> = Vec::new();
        got.push(p.pop_rx(&f).and_then(|e| e.byte).unwrap());
        assert!(p.throttled());
        for _ in 1..UNTHROTTLE_ROOM {
            got.push(p.pop_rx(&f).and_then(|e| e.byte).unwrap());
        }
        assert!(!p.throttled());
        assert_ne!(f.0.borrow().ier & IER_RDI, 0);
        assert!(f.irq());
        irq(&f, &mut p);
        got.extend(pop_all(&f, &mut p).iter().map(|e| e.byte.unwrap()));
        assert_eq!(got, data);
    }

    #[test]
    fn tx_backpressure_refuses_without_losing() {
        let (f, mut p) = started();
        // The first byte goes to the empty hardware FIFO at once; the rest
        // wait in the ring, as a 16550 does not say how full its FIFO is.
        let mut queued = 0u32;
        while p.queue_tx(&f, queued as u8) {
            queued += 1;
            assert!(queued < 1000);
        }
        assert_eq!(queued as usize, TX_RING + 1);
        assert_eq!(p.tx_room(), 0);
        assert_eq!(f.0.borrow().tx.len(), 1);
        assert_ne!(f.0.borrow().ier & IER_THRI, 0);
        // Nothing moves until the wire does.
        assert!(!f.irq());
        f.wire_moves(1);
        let e = irq(&f, &mut p);
        assert!(e.tx_room);
        assert_eq!(p.tx_room(), HW_FIFO);
        assert_eq!(f.0.borrow().tx.len(), HW_FIFO);
        for _ in 0..10 {
            f.wire_moves(HW_FIFO);
            irq(&f, &mut p);
        }
        let want: Vec<u8> = (0..queued).map(|i| i as u8).collect();
        assert_eq!(f.sent(), want);
        assert_eq!(f.0.borrow().tx_overflow, 0);
    }

    #[test]
    fn errors_travel_with_their_byte() {
        let (f, mut p) = started();
        f.send_bad(b'a', 0);
        f.send_bad(b'b', LSR_PE);
        f.send_bad(b'c', LSR_FE);
        f.send_bad(0, LSR_BI | LSR_FE);
        f.send_bad(b'd', 0);
        f.arrive(5);
        let e = irq(&f, &mut p);
        assert!(e.rx);
        let got = pop_all(&f, &mut p);
        let want = [
            (Some(b'a'), 0),
            (Some(b'b'), LSR_PE),
            (Some(b'c'), LSR_FE),
            (Some(0), LSR_BI | LSR_FE),
            (Some(b'd'), 0),
        ];
        let got: Vec<_> = got.iter().map(|e| (e.byte, e.errors)).collect();
        assert_eq!(got, want);
        // An overrun with no byte left is queued alone.
        f.0.borrow_mut().lone_err = LSR_OE;
        irq(&f, &mut p);
        assert_eq!(
            p.pop_rx(&f),
            Some(Rx {
                byte: None,
                errors: LSR_OE
            })
        );
        assert_eq!(p.pop_rx(&f), None);
    }

    #[test]
    fn an_error_seen_while_throttled_waits_for_its_byte() {
        let (f, mut p) = started();
        let data: Vec<u8> = (0..RX_RING).map(|i| i as u8).collect();
        f.send_to_port(&data);
        for _ in 0..40 {
            f.arrive(HW_FIFO);
            irq(&f, &mut p);
        }
        assert_eq!(p.rx_len(), RX_RING);
        // Fill the ring to the brim, then a bad byte arrives: RLSI is still
        // on, so the port interrupts, and LSR (read once) clears the error.
        f.send_bad(b'!', LSR_PE);
        f.arrive(1);
        assert!(f.irq());
        irq(&f, &mut p);
        assert!(p.throttled());
        assert_eq!(f.0.borrow().rx.len(), 1);
        // A transmit reads LSR too: nothing may be lost there either.
        assert!(p.queue_tx(&f, 0));
        for _ in 0..RX_RING {
            p.pop_rx(&f);
        }
        irq(&f, &mut p);
        assert_eq!(
            p.pop_rx(&f),
            Some(Rx {
                byte: Some(b'!'),
                errors: LSR_PE
            })
        );
    }

    #[test]
    fn modem_changes_are_reported() {
        let (f, mut p) = started();
        f.set_modem_inputs(0x90);
        let e = irq(&f, &mut p);
        assert!(e.modem && !e.rx);
        assert_eq!(p.modem_inputs(), 0x90);
        assert_eq!(p.take_modem_deltas(), 0x09);
        assert_eq!(p.take_modem_deltas(), 0);
        // A ring pulse: RI goes up and down between two interrupts.
        f.set_modem_inputs(0xd0);
        f.set_modem_inputs(0x90);
        let e = irq(&f, &mut p);
        assert!(e.modem);
        assert_eq!(p.modem_inputs(), 0x90);
        assert_eq!(p.take_modem_deltas(), 0x04);
    }

    #[test]
    fn service_is_bounded_on_a_babbling_port() {
        let b = Babbler::default();
        let mut p = HwPort::new();
        p.start(&b);
        for round in 0..10 {
            b.accesses.set(0);
            let e = p.service(&b);
            assert!(e.handled);
            assert!(
                b.accesses.get() <= SERVICE_MAX_ACCESSES,
                "round {round}: {} accesses",
                b.accesses.get()
            );
            assert!(p.rx_len() <= RX_RING);
        }
        assert_eq!(p.rx_len(), RX_RING);
        assert!(p.throttled());
        // The bytes kept their order.
        let first = p.pop_rx(&b).and_then(|e| e.byte).unwrap();
        let second = p.pop_rx(&b).and_then(|e| e.byte).unwrap();
        assert_eq!(second, first.wrapping_add(1));
    }

    #[test]
    fn service_is_bounded_on_absent_and_zero_devices() {
        for v in [0xff, 0x00, 0xfe] {
            let d = Const(v, Cell::new(0));
            let mut p = HwPort::new();
            p.start(&d);
            for _ in 0..(RX_RING / SERVICE_ROUNDS + 4) {
                d.1.set(0);
                let e = p.service(&d);
                assert_eq!(e.handled, v != 0xff);
                assert!(d.1.get() <= SERVICE_MAX_ACCESSES, "{v:#x}: {}", d.1.get());
            }
            assert!(p.queue_tx(&d, 1));
            assert!(p.rx_len() <= RX_RING);
        }
    }

    #[test]
    fn random_registers_never_break_the_driver() {
        let d = Chaos {
            rng: RefCell::new(Rng(0xdead_beef_cafe_f00d)),
            accesses: Cell::new(0),
        };
        let mut rng = Rng(42);
        let mut p = HwPort::new();
        p.start(&d);
        for _ in 0..20_000 {
            match rng.below(4) {
                0 => {
                    d.accesses.set(0);
                    p.service(&d);
                    assert!(d.accesses.get() <= SERVICE_MAX_ACCESSES);
                }
                1 => {
                    p.queue_tx(&d, rng.next() as u8);
                }
                2 => {
                    p.pop_rx(&d);
                }
                _ => p.apply(
                    &d,
                    LineSettings {
                        divisor: rng.next() as u16,
                        lcr: rng.next() as u8,
                        mcr: rng.next() as u8,
                    },
                ),
            }
            assert!(p.rx_len() <= RX_RING && p.tx_room() <= TX_RING);
        }
    }

    #[test]
    fn an_inactive_port_that_interrupts_is_silenced() {
        let f = Fake::new();
        let mut p = HwPort::new();
        f.set_modem_inputs(0x10);
        f.0.borrow_mut().ier = IER_MSI;
        assert!(p.service(&f).handled);
        assert_eq!(f.0.borrow().ier, 0);
        assert_eq!(p.service(&f), Events::default());
    }

    #[test]
    fn apply_writes_the_divisor_under_dlab_and_lcr_without() {
        let (f, mut p) = started();
        f.0.borrow_mut().writes.clear();
        let line = LineSettings {
            divisor: 0x0302,
            lcr: 0x80 | 0x40 | 0x1a,
            mcr: MCR_DTR,
        };
        p.apply(&f, line);
        let w = f.0.borrow().writes.clone();
        assert_eq!(
            w,
            [
                (reg::LCR, 0x5a | LCR_DLAB),
                (reg::RBR_THR_DLL, 0x02),
                (reg::IER_DLM, 0x03),
                (reg::LCR, 0x5a),
                (reg::MCR, MCR_DTR | MCR_OUT2),
            ]
        );
        let s = f.0.borrow();
        assert_eq!(
            (s.dll, s.dlm, s.lcr, s.ier),
            (2, 3, 0x5a, IER_RDI | IER_RLSI | IER_MSI)
        );
        drop(s);
        // The same again writes nothing; only LCR changes writes only LCR.
        f.0.borrow_mut().writes.clear();
        p.apply(&f, line);
        assert!(f.0.borrow().writes.is_empty());
        p.apply(&f, LineSettings { lcr: 0x03, ..line });
        assert_eq!(f.0.borrow().writes, [(reg::LCR, 0x03)]);
        // Divisor 0 is applied as 1.
        p.apply(&f, LineSettings { divisor: 0, ..line });
        assert_eq!((f.0.borrow().dll, f.0.borrow().dlm), (1, 0));
        assert_eq!(p.line().divisor, 1);
        // Received bytes still read as data after all that.
        f.send_to_port(b"z");
        f.arrive(1);
        irq(&f, &mut p);
        assert_eq!(p.pop_rx(&f).and_then(|e| e.byte), Some(b'z'));
    }

    #[test]
    fn the_guest_never_controls_out2_or_loop() {
        let (f, mut p) = started();
        for mcr in [0xff, 0x00, MCR_LOOP, MCR_OUT2, MCR_RTS | MCR_LOOP] {
            p.apply(
                &f,
                LineSettings {
                    mcr,
                    ..LineSettings::DEFAULT
                },
            );
            let hw = f.0.borrow().mcr;
            assert_eq!(hw & MCR_LOOP, 0, "{mcr:#x}");
            assert_ne!(hw & MCR_OUT2, 0, "{mcr:#x}");
            assert_eq!(hw & MCR_GUEST, mcr & MCR_GUEST, "{mcr:#x}");
        }
    }

    /// Negative control for the fake: a THR write to a full transmit FIFO
    /// is counted, so the TX tests would see a driver that overfills it.
    #[test]
    fn the_fake_detects_an_overfilled_tx_fifo() {
        let (f, _) = started();
        for b in 0..=HW_FIFO as u8 {
            f.write(reg::RBR_THR_DLL, b);
        }
        assert_eq!(f.0.borrow().tx_overflow, 1);
    }
}
