// SPDX-License-Identifier: GPL-2.0

//! A 16550A UART register model (kernel-free).
//!
//! Registers, FIFOs and interrupt causes follow the 16550A datasheet. What
//! the guest transmits is looped back to the same port's receiver, as mtty
//! does, and it is transmitted at once: the transmitter is always empty again
//! right after a write. The receive FIFO holds 16 bytes; a byte arriving when
//! it is full is lost and sets the overrun bit, as on real hardware.
//!
//! A *mediated* port ([`Uart::set_mediated`]) is backed by a physical port
//! instead: what the guest transmits waits in a 16-byte transmit FIFO until
//! the driver of the physical port takes it ([`Uart::pop_tx`]), so THR stays
//! full (LSR.THRE clear) for as long as the hardware is busy; received bytes
//! come from the physical port ([`Uart::deliver`]) only while the receive
//! FIFO has room, and the modem status inputs are the physical port's.

/// Register offsets within the port's 8-byte I/O window.
pub(crate) mod off {
    pub(crate) const RBR_THR_DLL: u64 = 0;
    pub(crate) const IER_DLM: u64 = 1;
    pub(crate) const IIR_FCR: u64 = 2;
    pub(crate) const LCR: u64 = 3;
    pub(crate) const MCR: u64 = 4;
    pub(crate) const LSR: u64 = 5;
    pub(crate) const MSR: u64 = 6;
    pub(crate) const SCR: u64 = 7;
}

const IER_RDI: u8 = 1 << 0;
const IER_THRI: u8 = 1 << 1;
const IER_RLSI: u8 = 1 << 2;
const IER_MSI: u8 = 1 << 3;

const IIR_NO_INT: u8 = 0x01;
const IIR_MSI: u8 = 0x00;
const IIR_THRI: u8 = 0x02;
const IIR_RDI: u8 = 0x04;
const IIR_RLSI: u8 = 0x06;
const IIR_TIMEOUT: u8 = 0x0c;
const IIR_FIFO_ENABLED: u8 = 0xc0;

const FCR_ENABLE: u8 = 1 << 0;
const FCR_CLEAR_RCVR: u8 = 1 << 1;
const FCR_CLEAR_XMIT: u8 = 1 << 2;

const LCR_DLAB: u8 = 1 << 7;

const MCR_DTR: u8 = 1 << 0;
const MCR_RTS: u8 = 1 << 1;
const MCR_OUT1: u8 = 1 << 2;
const MCR_OUT2: u8 = 1 << 3;
const MCR_LOOP: u8 = 1 << 4;

const LSR_DR: u8 = 1 << 0;
const LSR_OE: u8 = 1 << 1;
const LSR_BI_FE_PE: u8 = 0x1c;
const LSR_THRE: u8 = 1 << 5;
const LSR_TEMT: u8 = 1 << 6;

const MSR_DELTAS: u8 = 0x0f;
const MSR_CTS: u8 = 1 << 4;
const MSR_DSR: u8 = 1 << 5;
const MSR_RI: u8 = 1 << 6;
const MSR_DCD: u8 = 1 << 7;

use crate::vfio_pci_core::emul::{
    mig::{Reader, Writer},
    EResult, Errno,
};

/// Depth of the receive FIFO.
pub(crate) const FIFO_SIZE: usize = 16;

/// A byte ring of [`FIFO_SIZE`] bytes that tells full from empty by count.
#[derive(Clone)]
struct Fifo {
    buf: [u8; FIFO_SIZE],
    head: usize,
    len: usize,
}

impl Fifo {
    const fn new() -> Self {
        Self {
            buf: [0; FIFO_SIZE],
            head: 0,
            len: 0,
        }
    }

    fn push(&mut self, b: u8) -> bool {
        if self.len == FIFO_SIZE {
            return false;
        }
        self.buf[(self.head + self.len) % FIFO_SIZE] = b;
        self.len += 1;
        true
    }

    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let b = self.buf[self.head];
        self.head = (self.head + 1) % FIFO_SIZE;
        self.len -= 1;
        Some(b)
    }

    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

/// Line settings and counters, for the debug attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stats {
    /// Divisor latch (115200 / divisor is the baud rate).
    pub(crate) divisor: u16,
    /// Line control register.
    pub(crate) lcr: u8,
    /// Modem control register.
    pub(crate) mcr: u8,
    /// Bytes the guest wrote to THR.
    pub(crate) tx: u64,
    /// Bytes the guest read from RBR.
    pub(crate) rx: u64,
    /// Bytes lost to overrun.
    pub(crate) overruns: u64,
}

/// A port's state as [`Uart::save`] wrote it, checked by [`Saved::check`]
/// and ready for [`Uart::apply`], which cannot fail: a card checks all its
/// ports before it changes any.
pub(crate) struct Saved {
    /// Bytes in the receive FIFO.
    len: usize,
    /// The FIFO's bytes, oldest first, zero past `len`.
    fifo: [u8; FIFO_SIZE],
    /// IER, FCR, LCR, MCR, LSR, MSR, SCR, DLL and DLM.
    regs: [u8; 9],
    thri_pending: bool,
}

impl Saved {
    /// Reads and checks a port's section: `EINVAL` for a value the guest
    /// could not have produced (a FIFO longer than 16, reserved bits set, a
    /// data-ready bit that disagrees with the FIFO) or a wrong length.
    pub(crate) fn check(data: &[u8]) -> EResult<Self> {
        let mut r = Reader::new(data);
        let len = usize::from(r.u8()?);
        let fifo: [u8; FIFO_SIZE] = r.array()?;
        let regs: [u8; 9] = r.array()?;
        let thri_pending = r.bool()?;
        r.finish()?;
        let [ier, fcr, _lcr, mcr, lsr, _msr, _scr, _dll, _dlm] = regs;
        let lsr_bits = LSR_DR | LSR_OE | LSR_BI_FE_PE | LSR_THRE | LSR_TEMT;
        let valid = len <= FIFO_SIZE
            && fifo.iter().skip(len).all(|&b| b == 0)
            && ier & !0x0f == 0
            && fcr & !0xc9 == 0
            && mcr & !0x1f == 0
            && lsr & !lsr_bits == 0
            && lsr & (LSR_THRE | LSR_TEMT) == LSR_THRE | LSR_TEMT
            && (lsr & LSR_DR != 0) == (len > 0);
        if !valid {
            return Err(Errno::Inval);
        }
        Ok(Self {
            len,
            fifo,
            regs,
            thri_pending,
        })
    }
}

/// One 16550A port.
#[derive(Clone)]
pub(crate) struct Uart {
    rx: Fifo,
    ier: u8,
    fcr: u8,
    lcr: u8,
    mcr: u8,
    lsr: u8,
    msr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    /// A THR-empty interrupt is pending (cleared by reading IIR or writing THR).
    thri_pending: bool,
    /// The line loops back: transmitted bytes reach our receiver. Without it
    /// nothing is attached to the line and transmitted bytes are dropped.
    wired: bool,
    /// Backed by a physical port: transmitted bytes wait in `txq`.
    mediated: bool,
    /// Bytes written to THR the physical port has not taken yet.
    txq: Fifo,
    /// The modem status inputs of a mediated port (MSR bits 7:4), as its
    /// physical port last reported them.
    modem_in: u8,
    tx: u64,
    rx_count: u64,
    overruns: u64,
}

impl Default for Uart {
    fn default() -> Self {
        Self::new()
    }
}

impl Uart {
    /// A port in its reset state: 9600 baud, FIFOs off, no interrupts.
    pub(crate) const fn new() -> Self {
        Self {
            rx: Fifo::new(),
            ier: 0,
            fcr: 0,
            lcr: 0,
            mcr: 0,
            lsr: LSR_THRE | LSR_TEMT,
            // Outside loopback the line looks connected: CTS, DSR and DCD.
            msr: MSR_CTS | MSR_DSR | MSR_DCD,
            scr: 0,
            dll: 12,
            dlm: 0,
            thri_pending: false,
            wired: true,
            mediated: false,
            txq: Fifo::new(),
            modem_in: MSR_CTS | MSR_DSR | MSR_DCD,
            tx: 0,
            rx_count: 0,
            overruns: 0,
        }
    }

    /// Returns the registers to their reset state. The byte counters are
    /// statistics, not registers: they survive, so the debug attribute still
    /// tells what a VM did after it let go of the device.
    pub(crate) fn reset(&mut self) {
        *self = Self {
            wired: self.wired,
            mediated: self.mediated,
            modem_in: self.modem_in,
            // A mediated port's inputs are the hardware's, without deltas.
            msr: if self.mediated {
                self.modem_in
            } else {
                MSR_CTS | MSR_DSR | MSR_DCD
            },
            tx: self.tx,
            rx_count: self.rx_count,
            overruns: self.overruns,
            ..Self::new()
        };
    }

    fn dlab(&self) -> bool {
        self.lcr & LCR_DLAB != 0
    }

    fn fifo_enabled(&self) -> bool {
        self.fcr & FCR_ENABLE != 0
    }

    /// Receive trigger level from FCR bits 7:6.
    fn rx_trigger(&self) -> usize {
        if !self.fifo_enabled() {
            return 1;
        }
        match self.fcr >> 6 {
            0 => 1,
            1 => 4,
            2 => 8,
            _ => 14,
        }
    }

    /// The highest-priority pending interrupt, as IIR bits 3:0.
    #[inline(always)]
    fn pending(&self) -> u8 {
        if self.ier & IER_RLSI != 0 && self.lsr & (LSR_OE | LSR_BI_FE_PE) != 0 {
            IIR_RLSI
        } else if self.ier & IER_RDI != 0 && self.rx.len > 0 {
            // Below the trigger level the data would wait for the character
            // timeout; with no wire timing it is reported at once as such.
            if self.rx.len >= self.rx_trigger() {
                IIR_RDI
            } else {
                IIR_TIMEOUT
            }
        } else if self.ier & IER_THRI != 0 && self.thri_pending {
            IIR_THRI
        } else if self.ier & IER_MSI != 0 && self.msr & MSR_DELTAS != 0 {
            IIR_MSI
        } else {
            IIR_NO_INT
        }
    }

    /// Whether the port asserts its interrupt.
    #[inline(always)]
    pub(crate) fn irq(&self) -> bool {
        self.pending() != IIR_NO_INT
    }

    /// Modem status inputs: in loopback they follow the modem outputs.
    fn update_msr(&mut self) {
        let inputs = if self.mcr & MCR_LOOP != 0 {
            (if self.mcr & MCR_RTS != 0 { MSR_CTS } else { 0 })
                | (if self.mcr & MCR_DTR != 0 { MSR_DSR } else { 0 })
                | (if self.mcr & MCR_OUT1 != 0 { MSR_RI } else { 0 })
                | (if self.mcr & MCR_OUT2 != 0 { MSR_DCD } else { 0 })
        } else if self.mediated {
            self.modem_in
        } else {
            MSR_CTS | MSR_DSR | MSR_DCD
        };
        let old = self.msr & 0xf0;
        let mut deltas = self.msr & MSR_DELTAS;
        let changed = old ^ inputs;
        deltas |= (changed & (MSR_CTS | MSR_DSR | MSR_DCD)) >> 4;
        // TERI: RI went from on to off.
        if old & MSR_RI != 0 && inputs & MSR_RI == 0 {
            deltas |= 1 << 2;
        }
        self.msr = inputs | deltas;
    }

    fn receive(&mut self, b: u8) {
        if self.rx.push(b) {
            self.lsr |= LSR_DR;
        } else {
            self.lsr |= LSR_OE;
            self.overruns += 1;
        }
    }

    /// A guest read of register `reg` (0-7).
    #[inline(always)]
    pub(crate) fn read(&mut self, reg: u64) -> u8 {
        match reg {
            off::RBR_THR_DLL if self.dlab() => self.dll,
            off::RBR_THR_DLL => match self.rx.pop() {
                Some(b) => {
                    self.rx_count += 1;
                    if self.rx.len == 0 {
                        self.lsr &= !LSR_DR;
                    }
                    b
                }
                None => 0,
            },
            off::IER_DLM if self.dlab() => self.dlm,
            off::IER_DLM => self.ier,
            off::IIR_FCR => {
                let p = self.pending();
                if p == IIR_THRI {
                    self.thri_pending = false;
                }
                p | if self.fifo_enabled() {
                    IIR_FIFO_ENABLED
                } else {
                    0
                }
            }
            off::LCR => self.lcr,
            off::MCR => self.mcr,
            off::LSR => {
                let v = self.lsr;
                self.lsr &= !(LSR_OE | LSR_BI_FE_PE);
                v
            }
            off::MSR => {
                let v = self.msr;
                self.msr &= !MSR_DELTAS;
                v
            }
            off::SCR => self.scr,
            _ => 0xff,
        }
    }

    /// A guest write of `v` to register `reg` (0-7).
    #[inline(always)]
    pub(crate) fn write(&mut self, reg: u64, v: u8) {
        match reg {
            off::RBR_THR_DLL if self.dlab() => self.dll = v,
            off::RBR_THR_DLL if self.mediated && self.mcr & MCR_LOOP == 0 => {
                self.tx += 1;
                // Held until the physical port takes it. A guest that writes
                // past a full FIFO (ignoring THRE) loses the byte, as on a
                // real 16550.
                let _ = self.txq.push(v);
                self.lsr &= !(LSR_THRE | LSR_TEMT);
                self.thri_pending = false;
            }
            off::RBR_THR_DLL => {
                self.tx += 1;
                // Sent at once, and looped back to our own receiver when the
                // line is wired so (the MCR loopback mode also loops).
                if self.wired || self.mcr & MCR_LOOP != 0 {
                    self.receive(v);
                }
                self.thri_pending = true;
            }
            off::IER_DLM if self.dlab() => self.dlm = v,
            off::IER_DLM => {
                let was = self.ier;
                self.ier = v & 0x0f;
                // Enabling the THR-empty interrupt with THR empty raises it.
                if was & IER_THRI == 0 && self.ier & IER_THRI != 0 {
                    self.thri_pending = true;
                }
            }
            off::IIR_FCR => {
                if v & FCR_CLEAR_RCVR != 0 || (v ^ self.fcr) & FCR_ENABLE != 0 {
                    self.rx.clear();
                    self.lsr &= !LSR_DR;
                }
                // Transmission is instant unless the port is mediated.
                if v & FCR_CLEAR_XMIT != 0 && self.txq.len > 0 {
                    self.txq.clear();
                    self.lsr |= LSR_THRE | LSR_TEMT;
                    self.thri_pending = true;
                }
                self.fcr = v & 0xc9;
            }
            off::LCR => self.lcr = v,
            off::MCR => {
                self.mcr = v & 0x1f;
                self.update_msr();
            }
            off::SCR => self.scr = v,
            // LSR and MSR are read-only; writes to them are ignored.
            _ => {}
        }
    }

    /// Connects or disconnects the line's loopback (a setting of the
    /// instance, kept across resets).
    pub(crate) fn set_wired(&mut self, wired: bool) {
        self.wired = wired;
    }

    /// Whether the line loops back.
    pub(crate) fn wired(&self) -> bool {
        self.wired
    }

    /// Backs the port by a physical port (see the module's documentation).
    pub(crate) fn set_mediated(&mut self) {
        self.mediated = true;
        self.update_msr();
    }

    /// Takes the oldest byte the guest transmitted, for the physical port.
    /// When that empties the transmit FIFO, THR is empty again and the
    /// THR-empty interrupt is raised.
    pub(crate) fn pop_tx(&mut self) -> Option<u8> {
        let b = self.txq.pop()?;
        if self.txq.len == 0 {
            self.lsr |= LSR_THRE | LSR_TEMT;
            self.thri_pending = true;
        }
        Some(b)
    }

    /// Bytes waiting for the physical port.
    pub(crate) fn tx_len(&self) -> usize {
        self.txq.len
    }

    /// How many received bytes a mediated port takes now: the room in its
    /// receive FIFO, none while the guest has it in loopback mode (the
    /// line's input is then cut, so they wait).
    pub(crate) fn rx_room(&self) -> usize {
        if !self.mediated || self.mcr & MCR_LOOP != 0 {
            return 0;
        }
        FIFO_SIZE - self.rx.len
    }

    /// A byte the physical port received, with the line status error bits
    /// (overrun, parity, framing, break) that came with it.
    pub(crate) fn deliver(&mut self, b: u8, errors: u8) {
        self.receive(b);
        self.lsr |= errors & (LSR_OE | LSR_BI_FE_PE);
    }

    /// Line status errors the physical port saw with no byte (an overrun
    /// after its FIFO was read empty, say).
    pub(crate) fn line_errors(&mut self, errors: u8) {
        self.lsr |= errors & (LSR_OE | LSR_BI_FE_PE);
    }

    /// The physical port's modem status inputs (MSR bits 7:4) and the
    /// changes it saw (bits 3:0: a ring pulse shows only there); changes
    /// set the delta bits and may raise the modem status interrupt.
    pub(crate) fn set_modem_inputs(&mut self, inputs: u8, deltas: u8) {
        self.modem_in = inputs & 0xf0;
        self.update_msr();
        if self.mcr & MCR_LOOP == 0 {
            self.msr |= deltas & MSR_DELTAS;
        }
    }

    /// The line settings the guest programmed, for the physical port: the
    /// divisor, LCR without DLAB, and the modem outputs DTR, RTS and OUT1
    /// (OUT2 and loopback stay the driver's). `None` while DLAB is set: the
    /// guest is writing the divisor, and half of it is no setting.
    pub(crate) fn line(&self) -> Option<(u16, u8, u8)> {
        (!self.dlab()).then_some((
            u16::from_le_bytes([self.dll, self.dlm]),
            self.lcr,
            self.mcr & (MCR_DTR | MCR_RTS | MCR_OUT1),
        ))
    }

    /// Bytes a port's registers take in the migration stream.
    pub(crate) const SAVED_SIZE: usize = 1 + FIFO_SIZE + 10;

    /// Writes the guest-visible state for migration: the receive FIFO (its
    /// length, then the bytes oldest first, zero padded to [`FIFO_SIZE`]),
    /// IER, FCR, LCR, MCR, LSR, MSR, SCR, DLL, DLM and whether a THR-empty
    /// interrupt is pending. Always [`Self::SAVED_SIZE`] bytes. The loopback
    /// wiring and the counters belong to the instance, not the guest, and
    /// stay behind.
    pub(crate) fn save(&self, w: &mut Writer<'_>) -> EResult {
        // Assembled here and written in one piece.
        let mut b = [0u8; Self::SAVED_SIZE];
        let (len, rest) = b.split_at_mut(1);
        let (fifo, regs) = rest.split_at_mut(FIFO_SIZE);
        len[0] = self.rx.len as u8;
        for (i, d) in fifo.iter_mut().take(self.rx.len).enumerate() {
            *d = self.rx.buf[(self.rx.head + i) % FIFO_SIZE];
        }
        let thri = self.thri_pending.into();
        let all = [
            self.ier, self.fcr, self.lcr, self.mcr, self.lsr, self.msr, self.scr, self.dll,
            self.dlm, thri,
        ];
        regs.copy_from_slice(&all);
        w.bytes(&b)
    }

    /// Loads what [`Self::save`] wrote. Every field is checked before any
    /// is applied: a value the guest could not have produced (a FIFO longer
    /// than 16, reserved bits set, a data-ready bit that disagrees with the
    /// FIFO) fails with `EINVAL` and leaves the port as it was.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "the card checks all its ports before it applies any"
        )
    )]
    pub(crate) fn load(&mut self, data: &[u8]) -> EResult {
        let saved = Saved::check(data)?;
        self.apply(&saved);
        Ok(())
    }

    /// Applies a port's checked saved state ([`Saved::check`]) in place;
    /// the wiring and the counters stay.
    pub(crate) fn apply(&mut self, s: &Saved) {
        let [ier, fcr, lcr, mcr, lsr, msr, scr, dll, dlm] = s.regs;
        // The FIFO holds the saved bytes oldest first, from its start.
        self.rx.buf = s.fifo;
        self.rx.head = 0;
        self.rx.len = s.len;
        self.ier = ier;
        self.fcr = fcr;
        self.lcr = lcr;
        self.mcr = mcr;
        self.lsr = lsr;
        self.msr = msr;
        self.scr = scr;
        self.dll = dll;
        self.dlm = dlm;
        self.thri_pending = s.thri_pending;
    }

    /// Line settings and counters.
    pub(crate) fn stats(&self) -> Stats {
        Stats {
            divisor: u16::from_le_bytes([self.dll, self.dlm]),
            lcr: self.lcr,
            mcr: self.mcr,
            tx: self.tx,
            rx: self.rx_count,
            overruns: self.overruns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    fn drain(u: &mut Uart) -> Vec<u8> {
        let mut v = Vec::new();
        while u.read(off::LSR) & LSR_DR != 0 {
            v.push(u.read(off::RBR_THR_DLL));
        }
        v
    }

    #[test]
    fn reset_state() {
        let mut u = Uart::new();
        assert_eq!(u.read(off::LSR), LSR_THRE | LSR_TEMT);
        assert_eq!(u.read(off::IIR_FCR), IIR_NO_INT);
        assert!(!u.irq());
        assert_eq!(u.stats().divisor, 12);
    }

    #[test]
    fn sixteen_byte_burst_loops_back_intact() {
        // The 8250 driver sends 16 bytes per THR-empty interrupt; mtty
        // wedges on this, the model must not.
        let mut u = Uart::new();
        u.write(
            off::IIR_FCR,
            FCR_ENABLE | FCR_CLEAR_RCVR | FCR_CLEAR_XMIT | 0x80,
        );
        let data: Vec<u8> = (0..16u8).map(|i| i.wrapping_mul(37)).collect();
        for &b in &data {
            u.write(off::RBR_THR_DLL, b);
        }
        assert_eq!(u.read(off::LSR) & LSR_OE, 0);
        assert_eq!(drain(&mut u), data);
        assert_eq!((u.stats().tx, u.stats().rx), (16, 16));
    }

    #[test]
    fn overrun_sets_oe_and_loses_only_the_extra_byte() {
        let mut u = Uart::new();
        u.write(off::IER_DLM, IER_RLSI);
        for b in 0..20u8 {
            u.write(off::RBR_THR_DLL, b);
        }
        assert_eq!(u.read(off::IIR_FCR) & 0x0f, IIR_RLSI);
        let lsr = u.read(off::LSR);
        assert_ne!(lsr & LSR_OE, 0);
        assert_eq!(u.read(off::LSR) & LSR_OE, 0, "reading LSR clears OE");
        assert_eq!(drain(&mut u), (0..16).collect::<Vec<u8>>());
        assert_eq!(u.stats().overruns, 4);
    }

    #[test]
    fn interrupt_priorities_and_clearing() {
        let mut u = Uart::new();
        u.write(off::IIR_FCR, FCR_ENABLE | 0xc0); // Trigger level 14.
        u.write(off::IER_DLM, IER_RDI | IER_THRI);
        // Enabling THRI with THR empty raises it; reading IIR clears it.
        assert_eq!(u.read(off::IIR_FCR), IIR_FIFO_ENABLED | IIR_THRI);
        assert_eq!(u.read(off::IIR_FCR), IIR_FIFO_ENABLED | IIR_NO_INT);
        // Data below the trigger level reports as a timeout, above as RDI,
        // and both outrank THR empty.
        u.write(off::RBR_THR_DLL, b'a');
        assert_eq!(u.read(off::IIR_FCR) & 0x0f, IIR_TIMEOUT);
        for _ in 0..13 {
            u.write(off::RBR_THR_DLL, b'b');
        }
        assert_eq!(u.read(off::IIR_FCR) & 0x0f, IIR_RDI);
        drain(&mut u);
        assert_eq!(u.read(off::IIR_FCR) & 0x0f, IIR_THRI);
        assert!(!u.irq());
    }

    #[test]
    fn divisor_latch_and_scratch() {
        let mut u = Uart::new();
        u.write(off::LCR, LCR_DLAB | 0x03);
        u.write(off::RBR_THR_DLL, 1);
        u.write(off::IER_DLM, 0);
        // With DLAB set, THR and IER are not touched.
        assert_eq!(u.stats().tx, 0);
        u.write(off::LCR, 0x03);
        assert_eq!(u.read(off::IER_DLM), 0);
        assert_eq!(u.stats().divisor, 1);
        u.write(off::SCR, 0x5a);
        assert_eq!(u.read(off::SCR), 0x5a);
    }

    #[test]
    fn loopback_modem_lines_pass_the_8250_probe() {
        // serial8250's autoconfig: MCR = LOOP | OUT2 | RTS, expects MSR 0x90.
        let mut u = Uart::new();
        u.write(off::MCR, MCR_LOOP | 0x0a);
        assert_eq!(u.read(off::MSR) & 0xf0, MSR_DCD | MSR_CTS);
        u.write(off::MCR, 0);
        assert_eq!(u.read(off::MSR) & 0xf0, MSR_CTS | MSR_DSR | MSR_DCD);
    }

    #[test]
    fn reset_clears_registers_but_keeps_counters() {
        let mut u = Uart::new();
        u.write(off::LCR, 0x83);
        u.write(off::RBR_THR_DLL, 3);
        u.write(off::LCR, 0x03);
        u.write(off::RBR_THR_DLL, 7);
        u.reset();
        assert_eq!(u.read(off::LCR), 0);
        assert_eq!(u.read(off::LSR) & LSR_DR, 0, "the receive FIFO is empty");
        assert_eq!((u.stats().divisor, u.stats().tx), (12, 1));
    }

    #[test]
    fn an_unwired_line_drops_what_it_sends_unless_in_loop_mode() {
        let mut u = Uart::new();
        u.set_wired(false);
        u.write(off::RBR_THR_DLL, 1);
        assert_eq!(u.read(off::LSR) & LSR_DR, 0);
        u.write(off::MCR, MCR_LOOP);
        u.write(off::RBR_THR_DLL, 2);
        assert_eq!(u.read(off::RBR_THR_DLL), 2);
        u.reset();
        assert!(!u.wired(), "wiring is a setting, not a register");
    }

    fn saved(u: &Uart) -> Vec<u8> {
        let mut buf = [0u8; Uart::SAVED_SIZE];
        let mut w = Writer::new(&mut buf);
        u.save(&mut w).unwrap();
        assert_eq!(w.len(), Uart::SAVED_SIZE);
        buf.to_vec()
    }

    #[test]
    fn saved_bytes_keep_their_layout() {
        let mut u = Uart::new();
        u.write(off::SCR, 0x5a);
        u.write(off::RBR_THR_DLL, b'x');
        let mut want = [0u8; Uart::SAVED_SIZE];
        want[0] = 1;
        want[1] = b'x';
        // IER, FCR, LCR, MCR, LSR, MSR, SCR, DLL, DLM, THR-empty pending.
        want[17..].copy_from_slice(&[0, 0, 0, 0, 0x61, 0xb0, 0x5a, 12, 0, 1]);
        assert_eq!(saved(&u), want);
    }

    #[test]
    fn a_loaded_port_continues_where_the_saved_one_stopped() {
        let mut a = Uart::new();
        a.write(off::LCR, LCR_DLAB);
        a.write(off::RBR_THR_DLL, 1);
        a.write(off::IER_DLM, 0);
        a.write(off::LCR, 0x1b);
        a.write(off::IIR_FCR, 0x81);
        a.write(off::IER_DLM, IER_RDI);
        a.write(off::MCR, MCR_DTR | MCR_RTS | MCR_OUT2);
        a.write(off::SCR, 0x5a);
        // Wrap the ring so the saved order matters.
        for b in b"0123456789abc" {
            a.write(off::RBR_THR_DLL, *b);
        }
        for _ in 0..10 {
            a.read(off::RBR_THR_DLL);
        }
        for b in b"hello" {
            a.write(off::RBR_THR_DLL, *b);
        }
        let mut b = Uart::new();
        b.set_wired(false);
        b.load(&saved(&a)).unwrap();
        assert!(!b.wired(), "the wiring is the instance's own");
        assert_eq!(b.stats().divisor, 1);
        assert_eq!(b.read(off::LCR), 0x1b);
        assert_eq!(b.read(off::SCR), 0x5a);
        assert_eq!(b.read(off::MCR), MCR_DTR | MCR_RTS | MCR_OUT2);
        assert_eq!(b.read(off::IIR_FCR), a.read(off::IIR_FCR));
        assert_eq!(drain(&mut b), b"abchello");
        assert_eq!(b.read(off::LSR) & LSR_DR, 0);
    }

    #[test]
    fn impossible_saved_ports_are_refused_and_change_nothing() {
        let mut a = Uart::new();
        a.write(off::RBR_THR_DLL, b'x');
        let good = saved(&a);
        let mut b = Uart::new();
        b.write(off::SCR, 7);
        let before = saved(&b);
        let bad = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut v = good.clone();
            f(&mut v);
            v
        };
        for (what, v) in [
            ("fifo too long", bad(&|v| v[0] = 17)),
            ("data ready without data", bad(&|v| v[0] = 0)),
            ("padding", bad(&|v| v[5] = 1)),
            ("reserved IER bits", bad(&|v| v[17] = 0xf0)),
            ("reserved FCR bits", bad(&|v| v[18] = 0x06)),
            ("reserved MCR bits", bad(&|v| v[20] = 0x20)),
            ("THR never empty", bad(&|v| v[21] = LSR_DR)),
            ("flag not a bool", bad(&|v| v[26] = 2)),
            ("short", good[..Uart::SAVED_SIZE - 1].to_vec()),
            ("long", bad(&|v| v.push(0))),
        ] {
            assert_eq!(b.load(&v), Err(Errno::Inval), "{what}");
            assert_eq!(saved(&b), before, "{what} changed the port");
        }
        assert_eq!(b.load(&good), Ok(()));
        assert_eq!(b.read(off::RBR_THR_DLL), b'x');
    }

    #[test]
    fn every_register_accepts_any_value() {
        let mut u = Uart::new();
        for reg in 0..8 {
            for v in 0..=255u8 {
                u.write(reg, v);
                let _ = u.read(reg);
            }
        }
        let _ = u.read(8);
        u.write(u64::MAX, 1);
    }

    #[test]
    fn a_mediated_port_holds_what_it_sends_until_the_hardware_takes_it() {
        let mut u = Uart::new();
        u.set_mediated();
        u.write(off::IER_DLM, IER_THRI | IER_RDI);
        assert_eq!(
            u.read(off::IIR_FCR) & 0x0f,
            IIR_THRI,
            "enabling THRI raises it"
        );
        for b in 0..16u8 {
            u.write(off::RBR_THR_DLL, b);
        }
        // Nothing loops back, THR is full and no THR-empty interrupt waits.
        assert_eq!(u.read(off::LSR) & (LSR_DR | LSR_THRE | LSR_TEMT), 0);
        assert!(!u.irq());
        assert_eq!(u.tx_len(), 16);
        // A byte past a full FIFO is lost, as on hardware.
        u.write(off::RBR_THR_DLL, 99);
        let sent: Vec<u8> = core::iter::from_fn(|| u.pop_tx()).collect();
        assert_eq!(sent, (0..16).collect::<Vec<u8>>());
        // Empty again: THRE and the interrupt come back.
        assert_ne!(u.read(off::LSR) & LSR_THRE, 0);
        assert!(u.irq());
        assert_eq!(u.read(off::IIR_FCR) & 0x0f, IIR_THRI);
        // Clearing the transmit FIFO drops what waits and empties THR.
        u.write(off::RBR_THR_DLL, 1);
        u.write(off::IIR_FCR, FCR_ENABLE | FCR_CLEAR_XMIT);
        assert_eq!(u.tx_len(), 0);
        assert_ne!(u.read(off::LSR) & LSR_THRE, 0);
    }

    #[test]
    fn a_mediated_port_receives_only_what_fits_and_keeps_errors() {
        let mut u = Uart::new();
        assert_eq!(u.rx_room(), 0, "a software port takes nothing");
        u.set_mediated();
        u.write(off::IIR_FCR, FCR_ENABLE);
        assert_eq!(u.rx_room(), FIFO_SIZE);
        for b in 0..16u8 {
            u.deliver(b, if b == 3 { LSR_BI_FE_PE & 0x08 } else { 0 });
        }
        assert_eq!(u.rx_room(), 0);
        let lsr = u.read(off::LSR);
        assert_ne!(lsr & 0x08, 0, "the framing error is reported");
        assert_eq!(u.read(off::LSR) & 0x08, 0, "and cleared by reading LSR");
        assert_eq!(drain(&mut u), (0..16).collect::<Vec<u8>>());
        assert_eq!(u.stats().overruns, 0);
        // In loopback mode the line's input is cut: nothing is taken, and
        // what the guest sends loops back instead of waiting for the wire.
        u.write(off::MCR, MCR_LOOP);
        assert_eq!(u.rx_room(), 0);
        u.write(off::RBR_THR_DLL, 7);
        assert_eq!(u.tx_len(), 0);
        assert_eq!(drain(&mut u), [7]);
    }

    #[test]
    fn a_mediated_port_reports_the_hardware_modem_lines_and_line_settings() {
        let mut u = Uart::new();
        u.set_mediated();
        u.read(off::MSR);
        u.write(off::IER_DLM, IER_MSI);
        u.set_modem_inputs(MSR_CTS, 0);
        let msr = u.read(off::MSR);
        assert_eq!(msr & 0xf0, MSR_CTS);
        assert_ne!(msr & 0x0f, 0, "DSR and DCD dropped: deltas");
        // A ring pulse the hardware saw reaches the guest.
        u.set_modem_inputs(MSR_CTS, 1 << 2);
        assert_eq!(u.read(off::MSR) & 0x0f, 1 << 2);
        u.write(off::LCR, LCR_DLAB | 0x03);
        u.write(off::RBR_THR_DLL, 0x34);
        u.write(off::IER_DLM, 0x12);
        assert_eq!(u.line(), None, "no setting while DLAB is set");
        u.write(off::LCR, 0x43);
        u.write(off::MCR, MCR_DTR | MCR_OUT2 | MCR_LOOP);
        assert_eq!(u.line(), Some((0x1234, 0x43, MCR_DTR)));
        // A reset keeps the port mediated and its inputs.
        u.reset();
        assert_eq!(u.read(off::MSR) & 0xf0, MSR_CTS);
        u.write(off::RBR_THR_DLL, 1);
        assert_eq!(u.pop_tx(), Some(1));
    }
}
