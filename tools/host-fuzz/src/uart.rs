// SPDX-License-Identifier: GPL-2.0

//! The 16550A ports: random register sequences on every port of a card
//! against a shadow model written from the 16550A datasheet and the model's
//! documented choices (`mdev_parent/uart.rs`: transmission is instant, what
//! is sent loops back to the same port when the line is wired or in MCR
//! loop mode, a byte arriving at a full 16-byte FIFO is lost with OE).
//!
//! Every read is compared with the model's value, and after every access:
//! the FIFO level is within 0..=16 and equals the model's, LSR data ready
//! holds exactly when the FIFO has data, THR empty and transmitter empty
//! always hold (the transmit FIFO is always empty), the port asserts its
//! interrupt exactly when the highest-priority cause IER enables is pending,
//! and the counters agree: every byte written to THR was received, lost to
//! an overrun, dropped by an unwired line, cleared by FCR or is still in the
//! FIFO, and every byte read from RBR was received once, in order. Now and
//! then the port is saved and loaded into a fresh one, which must save the
//! same bytes.

use crate::rng::Rng;
use crate::Target;
use rmdev_core::vfio_pci_core::host_api::{Uart, FIFO_SIZE, UART_SAVED_SIZE};
use std::collections::VecDeque;

const RBR: u64 = 0;
const IER: u64 = 1;
const IIR: u64 = 2;
const LCR: u64 = 3;
const MCR: u64 = 4;
const LSR: u64 = 5;
const MSR: u64 = 6;
const SCR: u64 = 7;

/// The shadow of one port.
#[derive(Clone)]
struct Shadow {
    fifo: VecDeque<u8>,
    /// The FIFO depth the model believes in.
    depth: usize,
    ier: u8,
    fcr: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    /// An overrun since LSR was last read.
    oe: bool,
    /// A THR-empty interrupt is pending.
    thri: bool,
    /// Modem status inputs (bits 7:4) and deltas (bits 3:0).
    msr: u8,
    wired: bool,
    tx: u64,
    rx: u64,
    overruns: u64,
    /// Bytes dropped by an unwired line or cleared by FCR.
    dropped: u64,
    /// Whether IIR ranks THR empty above received data (a wrong model).
    thri_first: bool,
}

impl Shadow {
    fn new(wired: bool) -> Self {
        Self {
            fifo: VecDeque::new(),
            depth: FIFO_SIZE,
            ier: 0,
            fcr: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            dll: 12,
            dlm: 0,
            oe: false,
            thri: false,
            // Outside loop mode the line looks connected: CTS, DSR, DCD.
            msr: 0xb0,
            wired,
            tx: 0,
            rx: 0,
            overruns: 0,
            dropped: 0,
            thri_first: false,
        }
    }

    fn dlab(&self) -> bool {
        self.lcr & 0x80 != 0
    }

    fn trigger(&self) -> usize {
        if self.fcr & 1 == 0 {
            return 1;
        }
        [1, 4, 8, 14][usize::from(self.fcr >> 6)]
    }

    /// IIR bits 3:0: line status, then received data (at the trigger level,
    /// or a timeout below it), then THR empty, then modem status; 1 if none.
    fn iir(&self) -> u8 {
        let rda = (self.ier & 1 != 0 && !self.fifo.is_empty()).then(|| {
            if self.fifo.len() >= self.trigger() {
                0x04
            } else {
                0x0c
            }
        });
        let thre = (self.ier & 2 != 0 && self.thri).then_some(0x02);
        if self.ier & 4 != 0 && self.oe {
            0x06
        } else if let Some(v) = if self.thri_first {
            thre.or(rda)
        } else {
            rda.or(thre)
        } {
            v
        } else if self.ier & 8 != 0 && self.msr & 0x0f != 0 {
            0x00
        } else {
            0x01
        }
    }

    fn modem(&mut self) {
        let inputs = if self.mcr & 0x10 != 0 {
            // Loop mode: RTS to CTS, DTR to DSR, OUT1 to RI, OUT2 to DCD.
            let m = self.mcr;
            (m & 2) << 3 | (m & 1) << 5 | (m & 4) << 4 | (m & 8) << 4
        } else {
            0xb0
        };
        let old = self.msr & 0xf0;
        let mut d = self.msr & 0x0f;
        d |= ((old ^ inputs) & 0xb0) >> 4;
        // Trailing edge of RI.
        if old & 0x40 != 0 && inputs & 0x40 == 0 {
            d |= 0x04;
        }
        self.msr = inputs | d;
    }

    fn read(&mut self, reg: u64) -> u8 {
        match reg {
            RBR if self.dlab() => self.dll,
            RBR => match self.fifo.pop_front() {
                Some(b) => {
                    self.rx += 1;
                    b
                }
                None => 0,
            },
            IER if self.dlab() => self.dlm,
            IER => self.ier,
            IIR => {
                let v = self.iir();
                if v == 0x02 {
                    self.thri = false;
                }
                v | if self.fcr & 1 != 0 { 0xc0 } else { 0 }
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let v = self.lsr();
                self.oe = false;
                v
            }
            MSR => {
                let v = self.msr;
                self.msr &= 0xf0;
                v
            }
            SCR => self.scr,
            _ => 0xff,
        }
    }

    fn lsr(&self) -> u8 {
        u8::from(!self.fifo.is_empty()) | u8::from(self.oe) << 1 | 0x60
    }

    fn write(&mut self, reg: u64, v: u8) {
        match reg {
            RBR if self.dlab() => self.dll = v,
            RBR => {
                self.tx += 1;
                if self.wired || self.mcr & 0x10 != 0 {
                    if self.fifo.len() < self.depth {
                        self.fifo.push_back(v);
                    } else {
                        self.oe = true;
                        self.overruns += 1;
                    }
                } else {
                    self.dropped += 1;
                }
                self.thri = true;
            }
            IER if self.dlab() => self.dlm = v,
            IER => {
                if self.ier & 2 == 0 && v & 2 != 0 {
                    self.thri = true;
                }
                self.ier = v & 0x0f;
            }
            IIR => {
                if v & 2 != 0 || (v ^ self.fcr) & 1 != 0 {
                    self.dropped += self.fifo.len() as u64;
                    self.fifo.clear();
                }
                self.fcr = v & 0xc9;
            }
            LCR => self.lcr = v,
            MCR => {
                self.mcr = v & 0x1f;
                self.modem();
            }
            SCR => self.scr = v,
            _ => {}
        }
    }

    fn reset(&mut self) {
        let keep = (self.wired, self.tx, self.rx, self.overruns, self.depth);
        let dropped = self.dropped + self.fifo.len() as u64;
        let thri_first = self.thri_first;
        *self = Self::new(keep.0);
        (self.tx, self.rx, self.overruns, self.depth) = (keep.1, keep.2, keep.3, keep.4);
        self.dropped = dropped;
        self.thri_first = thri_first;
    }
}

/// The target: a card's one or two ports.
pub struct Fuzz {
    mutant: u32,
}

impl Target for Fuzz {
    const NAME: &'static str = "uart";
    const ID: u64 = 4;

    fn new(mutant: u32) -> Self {
        Self { mutant }
    }

    fn case(&mut self, rng: &mut Rng) -> Result<(), String> {
        let n = 1 + rng.index(2);
        let mut ports: Vec<(Uart, Shadow)> = (0..n)
            .map(|_| {
                let wired = !rng.one_in(8);
                let mut u = Uart::new();
                u.set_wired(wired);
                let mut s = Shadow::new(wired);
                match self.mutant {
                    1 => s.depth = FIFO_SIZE - 1,
                    2 => s.thri_first = true,
                    _ => {}
                }
                (u, s)
            })
            .collect();
        let ops = 1 + rng.index(64);
        for op in 0..ops {
            let p = rng.index(n);
            let (u, s) = &mut ports[p];
            step(u, s, rng).map_err(|e| format!("port {p} op {op}: {e}"))?;
            check(u, s).map_err(|e| format!("port {p} after op {op}: {e}"))?;
        }
        Ok(())
    }
}

fn step(u: &mut Uart, s: &mut Shadow, rng: &mut Rng) -> Result<(), String> {
    let k = rng.below(100);
    let reg = match k {
        0..=29 => RBR,
        30..=41 => LSR,
        42..=53 => IIR,
        54..=61 => IER,
        62..=67 => LCR,
        68..=73 => MCR,
        74..=78 => MSR,
        79..=82 => SCR,
        83..=85 => rng.below(8),
        86 => 8 + rng.below(u64::MAX - 8),
        87 => {
            u.reset();
            s.reset();
            return Ok(());
        }
        88 => {
            let w = rng.one_in(2);
            u.set_wired(w);
            s.wired = w;
            return Ok(());
        }
        89..=90 => {
            // A burst, as the 8250 driver sends up to 16 bytes per THR
            // empty interrupt: enough to fill the FIFO.
            for _ in 0..1 + rng.index(24) {
                let v = rng.byte();
                u.write(RBR, v);
                s.write(RBR, v);
            }
            return Ok(());
        }
        91 => {
            // Save, load into a fresh port, save again: the same bytes.
            let a = u.save();
            let mut v = Uart::new();
            v.load(&a)
                .map_err(|e| format!("loading a saved port: {e:?}"))?;
            if v.save() != a {
                return Err("a loaded port saves other bytes".into());
            }
            return Ok(());
        }
        _ => IIR,
    };
    let write = rng.one_in(2);
    if write {
        let v = match (reg, rng.below(4)) {
            // DLAB on now and then, but mostly off so that data flows.
            (LCR, 0) => 0x80 | rng.byte(),
            (LCR, _) => rng.byte() & 0x7f,
            // FIFO control: mostly enable with a trigger level.
            (IIR, 0) => rng.byte(),
            (IIR, _) => 1 | rng.byte() & 0xc0,
            _ => rng.byte(),
        };
        u.write(reg, v);
        s.write(reg, v);
    } else {
        let got = u.read(reg);
        let want = s.read(reg);
        if got != want {
            return Err(format!(
                "read of register {reg} gave {got:#04x}, not {want:#04x}"
            ));
        }
    }
    Ok(())
}

/// The invariants after every access, from the saved state (which reads
/// nothing that changes the port) and the counters.
fn check(u: &Uart, s: &Shadow) -> Result<(), String> {
    let saved = u.save();
    if saved.len() != UART_SAVED_SIZE {
        return Err(format!("saved {} bytes", saved.len()));
    }
    let level = usize::from(saved[0]);
    if level > FIFO_SIZE {
        return Err(format!("FIFO level {level}"));
    }
    let fifo: Vec<u8> = s.fifo.iter().copied().collect();
    if level != fifo.len() || saved[1..1 + level] != fifo[..] {
        return Err(format!(
            "FIFO holds {:?}, the model {:?}",
            &saved[1..1 + level],
            fifo
        ));
    }
    let lsr = saved[1 + FIFO_SIZE + 4];
    if (lsr & 1 != 0) != (level > 0) {
        return Err(format!("LSR {lsr:#04x} with {level} bytes in the FIFO"));
    }
    if lsr & 0x60 != 0x60 {
        return Err(format!("LSR {lsr:#04x}: the transmitter is never busy"));
    }
    if lsr != s.lsr() {
        return Err(format!("LSR {lsr:#04x}, the model {:#04x}", s.lsr()));
    }
    if u.irq() != (s.iir() != 0x01) {
        return Err(format!(
            "interrupt {}, IIR would say {:#x}",
            u.irq(),
            s.iir()
        ));
    }
    let (div, lcr, mcr, tx, rx, ovr) = u.stats();
    if (div, lcr, mcr) != (u16::from_le_bytes([s.dll, s.dlm]), s.lcr, s.mcr) {
        return Err(format!("line settings {div} {lcr:#x} {mcr:#x}"));
    }
    if (tx, rx, ovr) != (s.tx, s.rx, s.overruns) {
        return Err(format!(
            "counters tx {tx} rx {rx} overruns {ovr}, the model {} {} {}",
            s.tx, s.rx, s.overruns
        ));
    }
    // Conservation: every byte sent is accounted for exactly once.
    if tx != rx + ovr + s.dropped + level as u64 {
        return Err(format!(
            "bytes lost or duplicated: {tx} sent, {rx} read, {ovr} overrun, {} dropped, {level} queued",
            s.dropped
        ));
    }
    // Every other register the port saves is the model's.
    let regs = [
        s.ier,
        s.fcr,
        s.lcr,
        s.mcr,
        s.lsr(),
        s.msr,
        s.scr,
        s.dll,
        s.dlm,
        u8::from(s.thri),
    ];
    if saved[1 + FIFO_SIZE..] != regs {
        return Err(format!(
            "saved registers {:x?}, the model {regs:x?}",
            &saved[1 + FIFO_SIZE..]
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mutant_model_is_caught() {
        crate::tests::mutants_are_caught::<Fuzz>(2);
    }
}
