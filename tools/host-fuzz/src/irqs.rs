// SPDX-License-Identifier: GPL-2.0

//! `VFIO_DEVICE_SET_IRQS`: random headers and data against a reference of
//! the uAPI contract (`include/uapi/linux/vfio.h`, vfio-pci's
//! `vfio_set_irqs_validate_and_prepare()` and `vfio_pci_set_irqs_ioctl()`),
//! interleaved with the device raising and lowering its line, guest
//! configuration writes (INTx disable, the MSI mask bit), migration stops,
//! resets and the INTx unmask irqfd firing.
//!
//! The reference decides each call's result (success, `EINVAL`, `ENOTTY`,
//! a bad descriptor, `EBUSY`) and keeps the state the contract implies:
//! which index is enabled, which eventfd each interrupt has, INTx masking,
//! the line, the MSI pending bit. Checked after every step: the result, the
//! signal count of every eventfd (so the enabled set is what was asked: a
//! trigger reaches exactly the eventfds the reference holds, and nothing
//! after a disable), the number of eventfd references held (none leaked,
//! none put twice), the armed irqfd, the delivered counter, and that no
//! reference was put under the lock. Closing the device at the end leaves
//! no reference and no irqfd.
//!
//! rmdev differs from vfio-pci where its documentation says so, and the
//! reference follows rmdev there, each difference named:
//! - `DIFF_ACTION`: zero or several action bits are `EINVAL` in the header
//!   check; vfio-pci passes the header and finds no handler (`ENOTTY`).
//! - `DIFF_DISABLE_RANGE`: the "disable all" form (`DATA_NONE`, `TRIGGER`,
//!   count 0) is accepted whatever `start` is, also on an index with no
//!   interrupts; vfio-pci wants `start` below the index's count.
//! - `DIFF_NEG_FD`: a descriptor below -1 is `EINVAL` on every index;
//!   vfio-pci treats it as -1 on INTx, MSI and MSI-X.
//! - `DIFF_FD_FIRST`: the descriptors of an eventfd trigger are resolved
//!   before the interrupt state is looked at (outside the lock), so a bad
//!   one is reported before an index conflict or a wrong range; vfio-pci
//!   checks the state first.

use crate::rng::Rng;
use crate::Target;
use rmdev_core::vfio_pci_core::host_api::{Error, Irqs, SetHdr, MAX_VECTORS};

const NONE: u32 = 1;
const BOOL: u32 = 2;
const EVENTFD: u32 = 4;
const MASK: u32 = 8;
const UNMASK: u32 = 16;
const TRIGGER: u32 = 32;
const MINSZ: u32 = 20;

const INTX: u32 = 0;
const MSI: u32 = 1;
const MSIX: u32 = 2;
const ERR: u32 = 3;
const REQ: u32 = 4;

/// The reference state.
#[derive(Clone, Default)]
struct Ref {
    /// Enabled index: INTx, MSI or MSI-X.
    mode: Option<u32>,
    intx: Option<i32>,
    vectors: [Option<i32>; MAX_VECTORS],
    err: Option<i32>,
    req: Option<i32>,
    intx_masked: bool,
    line: bool,
    stopped: bool,
    held: bool,
    /// The guest's command register has INTx disable set.
    intx_disabled: bool,
    /// MSI vector 0's mask and pending bits (PCI Express card only).
    msi_mask: bool,
    msi_pending: bool,
    unmask: Option<i32>,
    signals: [u64; 32],
    delivered: u64,
}

impl Ref {
    fn refs(&self) -> i64 {
        let v = self.vectors.iter().flatten().count();
        (v + [self.intx, self.err, self.req].iter().flatten().count()) as i64
    }

    fn signal(&mut self, fd: Option<i32>) {
        if let Some(fd) = fd {
            self.signals[fd as usize] += 1;
        }
    }

    fn send_vector(&mut self, v: usize) {
        if let Some(fd) = self.vectors[v] {
            self.signals[fd as usize] += 1;
            self.delivered += 1;
        }
    }

    fn deliver_intx(&mut self, automask: bool) {
        if self.stopped || self.intx_masked || self.intx_disabled {
            return;
        }
        if let Some(fd) = self.intx {
            self.signals[fd as usize] += 1;
            self.intx_masked = automask;
            self.delivered += 1;
        }
    }

    fn send_msi(&mut self, express: bool) {
        if express && self.msi_mask {
            self.msi_pending = true;
        } else {
            self.send_vector(0);
        }
    }

    fn send_unmasked(&mut self) {
        if self.mode == Some(MSI) && !self.stopped && self.msi_pending && !self.msi_mask {
            self.msi_pending = false;
            self.send_vector(0);
        }
    }
}

/// The header check the contract gives, with rmdev's named differences.
/// `Some(err)` for a refused header.
fn check_header(h: &SetHdr, count: impl Fn(u32) -> u32, mutant: u32) -> Option<Error> {
    let data = h.flags & (NONE | BOOL | EVENTFD);
    let action = h.flags & (MASK | UNMASK | TRIGGER);
    let unit: u64 = match data {
        NONE => 0,
        BOOL => 1,
        EVENTFD => 4,
        _ => 5,
    };
    let minsz = if mutant == 1 { MINSZ - 1 } else { MINSZ };
    if h.argsz < minsz || h.index >= 5 || h.flags & !0x3f != 0 || unit == 5 {
        return Some(Error::Inval);
    }
    // DIFF_ACTION.
    if action.count_ones() != 1 {
        return Some(Error::Inval);
    }
    let n = u64::from(count(h.index));
    let (start, cnt) = (u64::from(h.start), u64::from(h.count));
    // DIFF_DISABLE_RANGE.
    let disable_all = cnt == 0 && data == NONE && action == TRIGGER;
    // Mutant 2 forgets that `start` itself must name an interrupt.
    let start_past = mutant != 2 && start >= n;
    if !disable_all && (start_past || start + cnt > n) {
        return Some(Error::Inval);
    }
    if u64::from(h.argsz).saturating_sub(u64::from(MINSZ)) < cnt * unit {
        return Some(Error::Inval);
    }
    None
}

/// The target.
pub struct Fuzz {
    mutant: u32,
    data: Vec<u8>,
}

impl Target for Fuzz {
    const NAME: &'static str = "irqs";
    const ID: u64 = 2;

    fn new(mutant: u32) -> Self {
        Self {
            mutant,
            data: vec![0; 64],
        }
    }

    fn case(&mut self, rng: &mut Rng) -> Result<(), String> {
        let (ports, express) = rng.pick(&[(1, false), (2, false), (1, true)]);
        let dev = Irqs::card(ports, express).map_err(|e| format!("card: {e:?}"))?;
        let mut r = Ref::default();
        let ops = 1 + rng.index(24);
        for op in 0..ops {
            let what = self
                .step(&dev, &mut r, express, rng)
                .map_err(|e| format!("express {express}, op {op}: {e}"))?;
            compare(&dev, &r).map_err(|e| format!("express {express}, op {op} ({what}): {e}"))?;
        }
        dev.close();
        if dev.live_refs() != 0 || dev.unmask_armed().is_some() {
            return Err(format!(
                "closed with {} eventfd references held, irqfd {:?}",
                dev.live_refs(),
                dev.unmask_armed()
            ));
        }
        Ok(())
    }
}

/// The device's observable state equals the reference's.
fn compare(dev: &Irqs, r: &Ref) -> Result<(), String> {
    if let Some(v) = dev.violation() {
        return Err(v.into());
    }
    for fd in 0..32 {
        if dev.signals(fd) != r.signals[fd as usize] {
            return Err(format!(
                "eventfd {fd} signalled {} times, not {}",
                dev.signals(fd),
                r.signals[fd as usize]
            ));
        }
    }
    if dev.live_refs() != r.refs() {
        return Err(format!(
            "{} eventfd references held, not {}",
            dev.live_refs(),
            r.refs()
        ));
    }
    if dev.unmask_armed() != r.unmask {
        return Err(format!(
            "irqfd {:?}, not {:?}",
            dev.unmask_armed(),
            r.unmask
        ));
    }
    if dev.delivered() != r.delivered {
        return Err(format!(
            "{} interrupts delivered, not {}",
            dev.delivered(),
            r.delivered
        ));
    }
    Ok(())
}

/// A random `u32` biased to the edges.
fn edge(rng: &mut Rng, small: u32) -> u32 {
    match rng.below(8) {
        0 => u32::MAX - rng.below(3) as u32,
        1 => rng.next_u64() as u32,
        2 => 0x8000_0000,
        _ => rng.below(u64::from(small)) as u32,
    }
}

/// A random descriptor: mostly a valid one or -1.
fn fd(rng: &mut Rng) -> i32 {
    match rng.below(16) {
        0 => -2 - rng.below(4) as i32,
        1 => 32 + rng.below(4) as i32,
        2 => i32::MIN,
        3..=5 => -1,
        _ => rng.below(32) as i32,
    }
}

impl Fuzz {
    fn step(
        &mut self,
        dev: &Irqs,
        r: &mut Ref,
        express: bool,
        rng: &mut Rng,
    ) -> Result<&'static str, String> {
        match rng.below(20) {
            0 | 1 => {
                let level = rng.one_in(2);
                dev.set_line(level);
                let rising = level && !r.line;
                r.line = level;
                if r.stopped {
                    r.held |= rising;
                } else {
                    match r.mode {
                        Some(MSI) if rising => r.send_msi(express),
                        Some(MSIX) if rising => r.send_vector(0),
                        Some(INTX) if level => r.deliver_intx(true),
                        _ => {}
                    }
                }
                Ok("line")
            }
            2 => {
                // The guest flips INTx disable (I/O decode stays on).
                let dis = rng.one_in(2);
                let cmd: u16 = 1 | if dis { 0x400 } else { 0 };
                let flr = dev
                    .write_config(4, &cmd.to_le_bytes())
                    .map_err(|e| format!("command write: {e:?}"))?;
                if flr {
                    return Err("a command write asked for FLR".into());
                }
                let was = r.intx_disabled;
                r.intx_disabled = dis;
                if was && r.line && r.mode == Some(INTX) {
                    r.deliver_intx(true);
                }
                r.send_unmasked();
                Ok("command")
            }
            3 if express => {
                let mask = rng.one_in(2);
                dev.write_config(0x50, &u32::from(mask).to_le_bytes())
                    .map_err(|e| format!("mask write: {e:?}"))?;
                r.msi_mask = mask;
                r.send_unmasked();
                Ok("msi mask")
            }
            4 => {
                if rng.one_in(2) {
                    dev.stop();
                    r.stopped = true;
                } else {
                    dev.run();
                    r.stopped = false;
                    let held = std::mem::take(&mut r.held);
                    r.send_unmasked();
                    if r.line {
                        match r.mode {
                            Some(MSI) if held => r.send_msi(express),
                            Some(MSIX) if held => r.send_vector(0),
                            Some(INTX) => r.deliver_intx(true),
                            _ => {}
                        }
                    }
                }
                Ok("stop/run")
            }
            5 if rng.one_in(4) => {
                let device = rng.one_in(2);
                dev.reset(device).map_err(|e| format!("reset: {e:?}"))?;
                if device {
                    r.stopped = false;
                }
                r.intx_masked = false;
                r.line = false;
                r.held = false;
                r.intx_disabled = false;
                r.msi_mask = false;
                r.msi_pending = false;
                Ok("reset")
            }
            6 => {
                dev.fire_unmask_irqfd();
                if r.unmask.is_some() && r.mode == Some(INTX) {
                    r.intx_masked = false;
                    if r.line {
                        r.deliver_intx(true);
                    }
                }
                Ok("irqfd")
            }
            _ => {
                self.set_irqs(dev, r, rng)?;
                Ok("set_irqs")
            }
        }
    }

    /// One random `SET_IRQS` call, its result and effects checked.
    fn set_irqs(&mut self, dev: &Irqs, r: &mut Ref, rng: &mut Rng) -> Result<(), String> {
        let structured = !rng.one_in(4);
        let index = if structured {
            rng.below(5) as u32
        } else {
            edge(rng, 7)
        };
        let flags = if structured {
            rng.pick(&[NONE, BOOL, EVENTFD]) | rng.pick(&[MASK, UNMASK, TRIGGER, TRIGGER])
        } else {
            match rng.below(3) {
                0 => rng.below(0x40) as u32,
                1 => rng.next_u64() as u32,
                _ => rng.pick(&[NONE, BOOL, EVENTFD]) | rng.pick(&[0, MASK | TRIGGER, 0x38]),
            }
        };
        let n = dev.count(index);
        let (start, count) = if structured {
            match rng.below(6) {
                0 => (0, 0),
                1 => (edge(rng, 4), edge(rng, 4)),
                _ => {
                    let s = rng.below(u64::from(n) + 1) as u32;
                    (s, rng.below(u64::from(n - s.min(n)) + 2) as u32)
                }
            }
        } else {
            (edge(rng, 10), edge(rng, 10))
        };
        let unit = match flags & 7 {
            BOOL => 1,
            EVENTFD => 4,
            _ => 0,
        };
        let need = u64::from(count) * unit;
        let argsz = match rng.below(8) {
            0 => rng.below(24) as u32,
            1 => u32::MAX,
            2 => MINSZ + need.min(64) as u32 - 1,
            _ => MINSZ + need.min(64) as u32,
        };
        let h = SetHdr {
            argsz,
            flags,
            index,
            start,
            count,
        };
        // The data: descriptors or bytes as the flags say.
        for chunk in self.data.chunks_mut(4) {
            if flags & 7 == EVENTFD {
                chunk.copy_from_slice(&fd(rng).to_le_bytes());
            } else {
                let v = if rng.one_in(3) { 0 } else { rng.byte() };
                chunk.iter_mut().for_each(|b| *b = v);
            }
        }
        let got = dev.set_irqs(&h, &self.data);
        let want = self.apply(dev, r, &h);
        if got != want {
            return Err(format!("{h:x?}: {got:?}, the contract says {want:?}"));
        }
        Ok(())
    }

    /// The reference's result of `h` with `self.data`, and its effect on
    /// `r`.
    fn apply(&self, dev: &Irqs, r: &mut Ref, h: &SetHdr) -> Result<(), Error> {
        if let Some(e) = check_header(h, |i| dev.count(i), self.mutant) {
            return Err(e);
        }
        let data = h.flags & 7;
        let action = h.flags & 0x38;
        let (start, count) = (h.start as usize, h.count as usize);
        let fds: Vec<i32> = self
            .data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let fires = |i: usize| match data {
            NONE => true,
            BOOL => self.data[i] != 0,
            _ => false,
        };
        // Descriptors are taken in order before anything changes.
        let take = |n: usize| -> Result<Vec<Option<i32>>, Error> {
            fds[..n]
                .iter()
                .map(|&f| match f {
                    -1 => Ok(None),
                    f if f < -1 => Err(Error::Inval), // DIFF_NEG_FD
                    f if f >= 32 => Err(Error::BadFd),
                    f => Ok(Some(f)),
                })
                .collect()
        };
        let disable = count == 0 && data == NONE;
        // DIFF_FD_FIRST.
        let new = if data == EVENTFD && action == TRIGGER {
            take(count)?
        } else {
            Vec::new()
        };
        match (h.index, action) {
            (INTX, UNMASK) if data == EVENTFD => {
                if r.mode != Some(INTX) || start != 0 || count != 1 {
                    return Err(Error::Inval);
                }
                match fds[0] {
                    f if f >= 32 => return Err(Error::BadFd),
                    f if f >= 0 => {
                        if r.unmask.is_some() {
                            return Err(Error::Busy);
                        }
                        r.unmask = Some(f);
                    }
                    _ => r.unmask = None,
                }
            }
            (INTX, MASK | UNMASK) => {
                if r.mode != Some(INTX) || start != 0 || count != 1 {
                    return Err(Error::Inval);
                }
                if data == EVENTFD {
                    return Err(Error::NoTty);
                }
                if fires(0) {
                    if action == MASK {
                        r.intx_masked = true;
                    } else {
                        r.intx_masked = false;
                        if r.line {
                            r.deliver_intx(true);
                        }
                    }
                }
            }
            (INTX, TRIGGER) => {
                if r.mode == Some(INTX) && disable {
                    r.intx = None;
                    r.mode = None;
                    r.unmask = None;
                } else if !matches!(r.mode, None | Some(INTX)) || start != 0 || count != 1 {
                    return Err(Error::Inval);
                } else if data == EVENTFD {
                    r.intx = new[0];
                    if r.mode.is_none() {
                        r.mode = Some(INTX);
                        r.intx_masked = false;
                    }
                } else if r.mode != Some(INTX) {
                    return Err(Error::Inval);
                } else if fires(0) {
                    r.signal(r.intx);
                }
            }
            (MSI | MSIX, TRIGGER) => {
                let idx = h.index;
                if r.mode == Some(idx) && disable {
                    r.vectors = [None; MAX_VECTORS];
                    r.mode = None;
                } else if r.mode.is_some() && r.mode != Some(idx) {
                    return Err(Error::Inval);
                } else if data == EVENTFD {
                    if count == 0 && r.mode != Some(idx) {
                        return Err(Error::Inval);
                    }
                    r.vectors[start..start + count].copy_from_slice(&new);
                    r.mode = Some(idx);
                } else if r.mode != Some(idx) {
                    return Err(Error::Inval);
                } else {
                    for i in 0..count {
                        if fires(i) {
                            r.signal(r.vectors[start + i]);
                        }
                    }
                }
            }
            (ERR | REQ, TRIGGER) => {
                let slot = if h.index == ERR {
                    &mut r.err
                } else {
                    &mut r.req
                };
                match data {
                    NONE => {
                        let Some(f) = *slot else {
                            return Err(Error::Inval);
                        };
                        if count > 0 {
                            r.signals[f as usize] += 1;
                        } else {
                            *slot = None;
                        }
                    }
                    _ if count == 0 => return Err(Error::Inval),
                    BOOL => {
                        if let (true, Some(f)) = (fires(0), *slot) {
                            r.signals[f as usize] += 1;
                        }
                    }
                    _ => *slot = new[0],
                }
            }
            _ => return Err(Error::NoTty),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mutant_reference_is_caught() {
        crate::tests::mutants_are_caught::<Fuzz>(2);
    }

    #[test]
    fn the_reference_predicate_matches_known_headers() {
        let one = |i| if i == INTX || i == REQ { 1 } else { 0 };
        let h = |argsz, flags, index, start, count| SetHdr {
            argsz,
            flags,
            index,
            start,
            count,
        };
        assert_eq!(
            check_header(&h(24, EVENTFD | TRIGGER, 0, 0, 1), one, 0),
            None
        );
        for bad in [
            h(19, EVENTFD | TRIGGER, 0, 0, 1),
            h(23, EVENTFD | TRIGGER, 0, 0, 1),
            h(24, EVENTFD | TRIGGER, 5, 0, 1),
            h(24, EVENTFD | BOOL | TRIGGER, 0, 0, 1),
            h(24, EVENTFD | TRIGGER, 0, u32::MAX, 2),
            h(24, EVENTFD | TRIGGER, 1, 0, 1),
        ] {
            assert_eq!(check_header(&bad, one, 0), Some(Error::Inval), "{bad:?}");
        }
    }
}
