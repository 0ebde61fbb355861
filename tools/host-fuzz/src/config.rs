// SPDX-License-Identifier: GPL-2.0

//! Configuration space: random access sequences against a model of the
//! serial card's registers written from the PCI specifications and the
//! card's documentation (`mdev_parent/card.rs`, Documentation/
//! vfio_pci_core.rst), not from the library's permission tables.
//!
//! The model is a byte array with, per register, the bits the guest may
//! write and the bits it clears by writing one. Checked after every access:
//! the whole of conventional space equals the model (so read-only bits never
//! change, write-1-to-clear bits clear as written, writes outside defined
//! registers are ignored and failed accesses change nothing), reads return
//! the model's bytes and zero past them, an access succeeds exactly when it
//! lies inside the space, a Function Level Reset is requested exactly by a
//! write of Initiate FLR, and the capability list stays well formed with
//! its IDs and order. BAR sizing reads back the size mask and restores.

use crate::rng::Rng;
use crate::Target;
use rmdev_core::vfio_pci_core::host_api::{Config, CFG_EXT_SIZE, CFG_SIZE};

/// One register of the model: offset, width, writable bits, RW1C bits.
#[derive(Clone, Copy)]
struct Reg {
    off: usize,
    len: usize,
    write: u32,
    rw1c: u32,
}

const fn reg(off: usize, len: usize, write: u32, rw1c: u32) -> Reg {
    Reg {
        off,
        len,
        write,
        rw1c,
    }
}

/// The PM control register's power state field, where D1 and D2 writes are
/// discarded (the capability offers D0 and D3hot only).
const PM_STATE: u8 = 0x03;
/// Initiate FLR: bit 15 of device control, byte 1 bit 7.
const FLR_BIT: u8 = 0x80;

/// A device personality: the registers, the capability list and the BARs.
struct Personality {
    ports: usize,
    express: bool,
    regs: Vec<Reg>,
    /// `(offset, id, length)` of each capability, head of the list first.
    caps: Vec<(usize, u8, usize)>,
    /// The power management capability's offset.
    pm: usize,
    /// Offset of Initiate FLR's byte (PCI Express only).
    flr: Option<usize>,
    /// Per BAR register (0-5): what sizing reads back (all ones written).
    sizing: [u32; 6],
    /// The reset space, as the code built it (its values are the code's;
    /// the permissions are the model's).
    reset: [u8; CFG_SIZE],
    /// The code's configuration at reset.
    config: Config,
}

impl Personality {
    fn new(ports: usize, express: bool) -> Self {
        // Type 0 header (PCI Local Bus 3.0, 6.2): command bits the guest
        // owns (I/O, memory, master, parity, SERR, INTx disable), status
        // error bits RW1C, cache line, latency timer and interrupt line as
        // storage.
        let mut regs = vec![
            reg(0x04, 2, 0x0547, 0),
            reg(0x06, 2, 0, 0xf900),
            reg(0x0c, 1, 0xff, 0),
            reg(0x0d, 1, 0xff, 0),
            reg(0x3c, 1, 0xff, 0),
        ];
        // One 8-byte I/O BAR per port: address bits above the size.
        let mut sizing = [0u32; 6];
        for (p, s) in sizing.iter_mut().enumerate().take(ports) {
            regs.push(reg(0x10 + 4 * p, 4, !7, 0));
            *s = !7 | 1;
        }
        let mut caps = Vec::new();
        // MSI at 0x40, 64-bit: enable and multiple message enable; address
        // dword aligned; upper address; data. The PCI Express card's has
        // per-vector masking (one vector: one mask bit; pending read-only).
        regs.push(reg(0x42, 2, 0x0071, 0));
        regs.push(reg(0x44, 4, !3, 0));
        regs.push(reg(0x48, 4, !0, 0));
        regs.push(reg(0x4c, 2, 0xffff, 0));
        let pm = if express {
            regs.push(reg(0x50, 4, 1, 0));
            0x58
        } else {
            0x50
        };
        // Power management: the state field only.
        regs.push(reg(pm + 4, 2, u32::from(PM_STATE), 0));
        let mut flr = None;
        if express {
            // 64-bit memory BAR2 of 8 KiB (BAR3 its upper half).
            regs.push(reg(0x18, 4, !0x1fff, 0));
            regs.push(reg(0x1c, 4, !0, 0));
            sizing[2] = !0x1fff | 0x4;
            sizing[3] = !0;
            // PCI Express capability at 0x60: device control (everything
            // but phantom functions; Initiate FLR reads zero), device status
            // errors RW1C, link control ASPM, RCB, common clock, extended
            // synch.
            regs.push(reg(0x68, 2, 0x7dff, 0));
            regs.push(reg(0x6a, 2, 0, 0x000f));
            regs.push(reg(0x70, 2, 0x00cb, 0));
            flr = Some(0x69);
            // MSI-X at 0xa0: enable and function mask.
            regs.push(reg(0xa2, 2, 0xc000, 0));
            caps.extend([
                (0xb0, 0x09, 8),
                (0xa0, 0x11, 12),
                (0x60, 0x10, 0x3c),
                (0x58, 0x01, 8),
                (0x40, 0x05, 0x18),
            ]);
        } else {
            caps.extend([(0x50, 0x01, 8), (0x40, 0x05, 14)]);
        }
        let config = Config::card(ports, express).expect("the card builds");
        let mut reset = [0u8; CFG_SIZE];
        config
            .read(0, &mut reset)
            .expect("conventional space reads");
        Self {
            ports,
            express,
            regs,
            caps,
            pm,
            flr,
            sizing,
            reset,
            config,
        }
    }

    /// Per-byte writable and RW1C masks.
    fn masks(&self) -> ([u8; CFG_SIZE], [u8; CFG_SIZE]) {
        let (mut w, mut c) = ([0u8; CFG_SIZE], [0u8; CFG_SIZE]);
        for r in &self.regs {
            for i in 0..r.len {
                w[r.off + i] = (r.write >> (8 * i)) as u8;
                c[r.off + i] = (r.rw1c >> (8 * i)) as u8;
            }
        }
        (w, c)
    }

    /// Bytes that belong to the header or a capability: the rest of
    /// conventional space is undefined and reads zero.
    fn defined(&self) -> [bool; CFG_SIZE] {
        let mut d = [false; CFG_SIZE];
        d[..0x40].iter_mut().for_each(|b| *b = true);
        for &(off, _, len) in &self.caps {
            d[off..off + len].iter_mut().for_each(|b| *b = true);
        }
        d
    }
}

/// The model of one device during a case.
struct Model {
    val: [u8; CFG_SIZE],
    write: [u8; CFG_SIZE],
    rw1c: [u8; CFG_SIZE],
    size: usize,
    pm: usize,
    flr: Option<usize>,
}

impl Model {
    /// A guest write: whether it requests a Function Level Reset.
    fn write(&mut self, off: usize, data: &[u8]) -> bool {
        let old_state = self.val[self.pm + 4] & PM_STATE;
        let mut flr = false;
        for (k, &d) in data.iter().enumerate() {
            let i = off + k;
            if i >= CFG_SIZE {
                break;
            }
            let (w, c) = (self.write[i], self.rw1c[i]);
            self.val[i] = ((self.val[i] & !w) | (d & w)) & !(d & c);
            if Some(i) == self.flr && d & FLR_BIT != 0 {
                flr = true;
            }
        }
        // D1 and D2 are not offered: such a write leaves the state.
        let b = &mut self.val[self.pm + 4];
        if matches!(*b & PM_STATE, 1 | 2) {
            *b = (*b & !PM_STATE) | old_state;
        }
        flr
    }

    fn byte(&self, i: usize) -> u8 {
        self.val.get(i).copied().unwrap_or(0)
    }
}

/// The target: the three serial card types.
pub struct Fuzz {
    types: [Personality; 3],
    buf: Vec<u8>,
}

impl Target for Fuzz {
    const NAME: &'static str = "config";
    const ID: u64 = 1;

    fn new(mutant: u32) -> Self {
        let mut types = [
            Personality::new(1, false),
            Personality::new(2, false),
            Personality::new(1, true),
        ];
        match mutant {
            // The model believes Special Cycles (command bit 3) writable.
            1 => types.iter_mut().for_each(|t| t.regs[0].write |= 0x8),
            // The model forgets that status error bits are RW1C.
            2 => types.iter_mut().for_each(|t| t.regs[1].rw1c = 0),
            // The model expects another capability ID at the list's head.
            3 => types.iter_mut().for_each(|t| t.caps[0].1 ^= 1),
            // The model believes the port BAR is 16 bytes.
            4 => types.iter_mut().for_each(|t| t.sizing[0] = !15 | 1),
            _ => {}
        }
        Self {
            types,
            buf: vec![0; CFG_EXT_SIZE + 64],
        }
    }

    fn case(&mut self, rng: &mut Rng) -> Result<(), String> {
        let t = &self.types[rng.index(3)];
        let mut c = t.config.clone();
        let (write, rw1c) = t.masks();
        let mut m = Model {
            val: t.reset,
            write,
            rw1c,
            size: if t.express { CFG_EXT_SIZE } else { CFG_SIZE },
            pm: t.pm,
            flr: t.flr,
        };
        let who = format!("{} port(s), express {}", t.ports, t.express);
        if c.size() != m.size {
            return Err(format!("{who}: size {} not {}", c.size(), m.size));
        }
        check_caps(&c, t).map_err(|e| format!("{who}: at reset: {e}"))?;
        check_undefined(&c, t).map_err(|e| format!("{who}: at reset: {e}"))?;
        let ops = 1 + rng.index(16);
        for op in 0..ops {
            let r = step(&mut c, &mut m, t, rng, &mut self.buf);
            r.map_err(|e| format!("{who}: op {op}: {e}"))?;
        }
        check_undefined(&c, t).map_err(|e| format!("{who}: at the end: {e}"))
    }
}

/// A random offset: mostly on a register, sometimes anywhere, at the end
/// of the space, or far past it.
fn offset(rng: &mut Rng, t: &Personality, size: usize) -> usize {
    match rng.below(20) {
        0 => usize::MAX - rng.index(8),
        1 => rng.next_u64() as usize,
        2..=3 => size - 8 + rng.index(16),
        4..=6 => rng.index(size),
        7..=9 => rng.index(CFG_SIZE),
        _ => {
            let r = t.regs[rng.index(t.regs.len())];
            (r.off + rng.index(r.len + 3)).saturating_sub(rng.index(4))
        }
    }
}

/// A random length: mostly 1, 2 or 4, sometimes odd, empty or long.
fn length(rng: &mut Rng) -> usize {
    match rng.below(20) {
        0 => 0,
        1..=2 => rng.pick(&[3, 5, 6, 7, 8, 12, 16]),
        3 => rng.index(300),
        4 => rng.index(CFG_EXT_SIZE + 32),
        _ => rng.pick(&[1, 2, 4]),
    }
}

fn step(
    c: &mut Config,
    m: &mut Model,
    t: &Personality,
    rng: &mut Rng,
    buf: &mut [u8],
) -> Result<(), String> {
    match rng.below(16) {
        // The device raises its error bits, so RW1C bits have ones to clear.
        0 => {
            let st = rng.next_u64() as u32 & 0xf900;
            c.device_set(
                0x06,
                2,
                u32::from(u16::from_le_bytes([m.val[6], m.val[7]])) | st,
            );
            m.val[7] |= (st >> 8) as u8;
            if t.express {
                let e = rng.next_u64() as u8 & 0x0f;
                c.device_set(
                    0x6a,
                    2,
                    u32::from(m.val[0x6a] | e) | u32::from(m.val[0x6b]) << 8,
                );
                m.val[0x6a] |= e;
            }
            compare(c, m)
        }
        // BAR sizing: all ones, read back the mask, restore.
        1 => {
            let i = rng.index(7);
            let off = if i == 6 { 0x30 } else { 0x10 + 4 * i };
            let mut old = [0u8; 4];
            c.read(off, &mut old)
                .map_err(|e| format!("read BAR {i}: {e:?}"))?;
            c.write(off, &[0xff; 4])
                .map_err(|e| format!("size BAR {i}: {e:?}"))?;
            m.write(off, &[0xff; 4]);
            let mut got = [0u8; 4];
            c.read(off, &mut got)
                .map_err(|e| format!("read BAR {i}: {e:?}"))?;
            let want = if i == 6 { 0 } else { t.sizing[i] };
            let got = u32::from_le_bytes(got);
            if got != want {
                return Err(format!("BAR {i} sizes to {got:#x}, not {want:#x}"));
            }
            c.write(off, &old)
                .map_err(|e| format!("restore BAR {i}: {e:?}"))?;
            m.write(off, &old);
            compare(c, m)
        }
        // MSI vector 0 raised and taken (PCI Express: per-vector masking).
        2 if t.express => {
            let masked = m.val[0x50] & 1 != 0;
            let v = rng.below(3) as u32;
            let sent = c.msi_raise(v);
            let want = v == 0 && !masked;
            if sent != want {
                return Err(format!("msi_raise({v}) sent {sent}, masked {masked}"));
            }
            if v == 0 && masked {
                m.val[0x54] |= 1;
            }
            let due = c.msi_take_unmasked();
            let want_due = u32::from(m.val[0x54] & !m.val[0x50] & 1);
            if due != want_due {
                return Err(format!("msi_take_unmasked {due:#x} not {want_due:#x}"));
            }
            m.val[0x54] &= !(want_due as u8);
            compare(c, m)
        }
        n => {
            let off = offset(rng, t, m.size);
            let len = length(rng);
            let ok = off.checked_add(len).is_some_and(|e| e <= m.size);
            let data = &mut buf[..len];
            match rng.below(4) {
                0 => data.fill(0xff),
                1 => data.fill(0),
                _ => rng.fill(data),
            }
            if n % 2 == 0 {
                let r = c.read(off, data);
                if r.is_ok() != ok {
                    return Err(format!("read {off:#x}+{len}: {r:?}, in range {ok}"));
                }
                if ok {
                    for (k, &b) in data.iter().enumerate() {
                        if b != m.byte(off + k) {
                            return Err(format!(
                                "read {off:#x}+{len}: byte {:#x} is {b:#x}, not {:#x}",
                                off + k,
                                m.byte(off + k)
                            ));
                        }
                    }
                }
                return Ok(());
            }
            let r = c.write(off, data);
            if r.is_ok() != ok {
                return Err(format!("write {off:#x}+{len}: {r:?}, in range {ok}"));
            }
            let flr = ok && m.write(off, data);
            if c.take_flr_request() != flr {
                return Err(format!("write {off:#x}+{len}: FLR request not {flr}"));
            }
            compare(c, m)?;
            check_caps(c, t)
        }
    }
}

/// Conventional space equals the model.
fn compare(c: &Config, m: &Model) -> Result<(), String> {
    let mut got = [0u8; CFG_SIZE];
    c.read(0, &mut got)
        .map_err(|e| format!("read all: {e:?}"))?;
    if let Some(i) = (0..CFG_SIZE).find(|&i| got[i] != m.val[i]) {
        return Err(format!(
            "byte {i:#x} is {:#04x}, the model says {:#04x}",
            got[i], m.val[i]
        ));
    }
    Ok(())
}

/// The capability list is well formed: the status bit announces it, every
/// pointer is dword aligned past the header, there is no loop, and the IDs
/// and order are the personality's.
fn check_caps(c: &Config, t: &Personality) -> Result<(), String> {
    let mut hdr = [0u8; 0x40];
    c.read(0, &mut hdr)
        .map_err(|e| format!("read header: {e:?}"))?;
    if hdr[6] & 0x10 == 0 {
        return Err("status does not announce the capability list".into());
    }
    let mut p = usize::from(hdr[0x34]);
    let mut seen = Vec::new();
    while p != 0 {
        if !(0x40..=0xfc).contains(&p) || p % 4 != 0 {
            return Err(format!("capability pointer {p:#x} out of range"));
        }
        if seen.iter().any(|&(o, _)| o == p) {
            return Err(format!("capability list loops at {p:#x}"));
        }
        let mut h = [0u8; 2];
        c.read(p, &mut h).map_err(|e| format!("read cap: {e:?}"))?;
        seen.push((p, h[0]));
        p = usize::from(h[1]);
    }
    let want: Vec<(usize, u8)> = t.caps.iter().map(|&(o, id, _)| (o, id)).collect();
    if seen != want {
        return Err(format!("capability list {seen:x?}, not {want:x?}"));
    }
    Ok(())
}

/// Undefined conventional space and all of extended space read zero.
fn check_undefined(c: &Config, t: &Personality) -> Result<(), String> {
    let mut all = vec![0u8; c.size()];
    c.read(0, &mut all)
        .map_err(|e| format!("read all: {e:?}"))?;
    let d = t.defined();
    for (i, &b) in all.iter().enumerate() {
        if b != 0 && (i >= CFG_SIZE || !d[i]) {
            return Err(format!("undefined byte {i:#x} reads {b:#x}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mutant_model_is_caught() {
        crate::tests::mutants_are_caught::<Fuzz>(4);
    }
}
