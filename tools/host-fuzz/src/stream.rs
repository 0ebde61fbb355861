// SPDX-License-Identifier: GPL-2.0

//! The migration stream: a card in a random state saves its stream, a fresh
//! card of the same type loads it (in writes of random lengths, as a
//! resuming file receives it) and saves the same bytes again; then the
//! stream is mutated (bit flips, truncation, length fields at their edges,
//! concatenations, foreign or duplicated sections, bytes changed with the
//! checksum fixed so the change reaches the device's checks, random bytes)
//! and loaded into a card, which must accept it exactly when a reference
//! parser written here from the format's documentation (`emul/mig.rs`,
//! Documentation/vfio_pci_core.rst) and the 16550A save format accepts it.
//! An accepted stream must leave the card in the state the reference
//! decoded (its saved stream is the reference's encoding of that state); a
//! refused one must leave the card as it was.

use crate::rng::{mix, Rng};
use crate::Target;
use rmdev_core::vfio_pci_core::host_api::{Card, FIFO_SIZE, UART_SAVED_SIZE};

const MAGIC: &[u8; 4] = b"RMDV";
const HEADER: usize = 20;
const TAG_CONFIG: u16 = 1;
const TAG_IRQ: u16 = 2;
const TAG_MEMORY: u16 = 3;
const TAG_DEVICE: u16 = 0x100;
const NAME: &[u8] = b"rmdev-serial";
const MAX_PAYLOAD: usize = 64 * 1024;

/// The CRC-32 table (IEEE 802.3, reflected polynomial 0xedb88320).
static CRC: std::sync::LazyLock<[u32; 256]> = std::sync::LazyLock::new(|| {
    std::array::from_fn(|i| {
        (0..8).fold(i as u32, |c, _| {
            if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            }
        })
    })
});

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it).
fn crc32(data: &[u8]) -> u32 {
    let t = &*CRC;
    !data.iter().fold(!0u32, |c, &b| {
        t[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

/// What the reference knows of the target card.
#[derive(Clone)]
struct Layout {
    ports: usize,
    variant: u32,
    fingerprint: u32,
    /// Per changeable configuration byte, the bits a load takes.
    masks: Vec<u8>,
    memory: usize,
}

/// A card's state as a stream carries it.
#[derive(Clone, Debug, PartialEq)]
struct State {
    config: Vec<u8>,
    line: u8,
    memory: Vec<u8>,
    ports: Vec<Vec<u8>>,
}

/// Reads a little-endian field.
fn le(b: &[u8], at: usize, n: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(n)?)?;
    Some(s.iter().rev().fold(0u64, |v, &x| v << 8 | u64::from(x)))
}

/// Whether a port's saved bytes are a state the guest could produce.
fn port_valid(p: &[u8]) -> bool {
    if p.len() != UART_SAVED_SIZE {
        return false;
    }
    let len = usize::from(p[0]);
    let r = &p[1 + FIFO_SIZE..];
    let (ier, fcr, mcr, lsr, thri) = (r[0], r[1], r[3], r[4], r[9]);
    len <= FIFO_SIZE
        && p[1 + len.min(FIFO_SIZE)..1 + FIFO_SIZE]
            .iter()
            .all(|&b| b == 0)
        && ier & 0xf0 == 0
        && fcr & !0xc9 == 0
        && mcr & 0xe0 == 0
        && lsr & 0x80 == 0
        && lsr & 0x60 == 0x60
        && (lsr & 1 != 0) == (len > 0)
        && thri <= 1
}

/// The reference: the state `buf` loads into a card with `l`'s layout whose
/// current state is `cur`, or `None` if the load must fail.
fn reference(buf: &[u8], l: &Layout, cur: &State) -> Option<State> {
    let mut pos = 0;
    let mut last = None;
    while pos < buf.len() {
        if buf.get(pos..pos + 4)? != MAGIC
            || le(buf, pos + 4, 2)? != 1
            || !matches!(le(buf, pos + 8, 2)?, 1 | 2)
            || le(buf, pos + 10, 2)? != 0
        {
            return None;
        }
        let kind = le(buf, pos + 8, 2)?;
        let len = le(buf, pos + 12, 4)? as usize;
        if len > MAX_PAYLOAD {
            return None;
        }
        let payload = buf.get(pos + HEADER..pos + HEADER + len)?;
        if crc32(payload) as u64 != le(buf, pos + 16, 4)? {
            return None;
        }
        let nl = usize::from(*payload.first()?);
        if payload.get(1..1 + nl)? != NAME || le(payload, 1 + nl, 4)? != u64::from(l.variant) {
            return None;
        }
        let body = &payload[1 + nl + 4..];
        if kind == 1 {
            if !body.is_empty() {
                return None;
            }
        } else {
            let mut secs = Vec::new();
            let mut p = 0;
            while p < body.len() {
                let tag = le(body, p, 2)? as u16;
                if le(body, p + 2, 2)? != 0 {
                    return None;
                }
                let n = le(body, p + 4, 4)? as usize;
                secs.push((tag, body.get(p + 8..(p + 8).checked_add(n)?)?));
                p += 8 + n;
            }
            last = Some(secs);
        }
        pos += HEADER + len;
    }
    let secs = last?;
    let one = |tag: u16| {
        let mut it = secs.iter().filter(|(t, _)| *t == tag);
        match (it.next(), it.next()) {
            (Some(&(_, d)), None) => Some(d),
            _ => None,
        }
    };
    let cfg = one(TAG_CONFIG)?;
    if le(cfg, 0, 4)? != u64::from(l.fingerprint) || cfg.len() != 4 + l.masks.len() {
        return None;
    }
    let irq = one(TAG_IRQ)?;
    if irq.len() != 1 || irq[0] > 1 {
        return None;
    }
    let memory = if l.memory > 0 {
        let m = one(TAG_MEMORY)?;
        if m.len() != l.memory {
            return None;
        }
        m.to_vec()
    } else {
        if secs.iter().any(|(t, _)| *t == TAG_MEMORY) {
            return None;
        }
        Vec::new()
    };
    if secs.iter().filter(|(t, _)| *t >= TAG_DEVICE).count() != l.ports {
        return None;
    }
    let mut ports = Vec::new();
    for i in 0..l.ports {
        let p = one(TAG_DEVICE + i as u16)?;
        if !port_valid(p) {
            return None;
        }
        ports.push(p.to_vec());
    }
    let config = cfg[4..]
        .iter()
        .zip(&cur.config)
        .zip(&l.masks)
        .map(|((&new, &old), &m)| (new & m) | (old & !m))
        .collect();
    Some(State {
        config,
        line: irq[0],
        memory,
        ports,
    })
}

/// A record of `kind` for the identity `variant`, with `body`.
fn record(kind: u16, variant: u32, body: &[u8]) -> Vec<u8> {
    let mut payload = vec![NAME.len() as u8];
    payload.extend_from_slice(NAME);
    payload.extend_from_slice(&variant.to_le_bytes());
    payload.extend_from_slice(body);
    let mut r = MAGIC.to_vec();
    for v in [1u16, 0, kind, 0] {
        r.extend_from_slice(&v.to_le_bytes());
    }
    r.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    r.extend_from_slice(&crc32(&payload).to_le_bytes());
    r.extend_from_slice(&payload);
    r
}

fn section(out: &mut Vec<u8>, tag: u16, data: &[u8]) {
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
}

/// The reference's encoding of `s` for a card with layout `l`: what the
/// card must save once it holds `s`.
fn encode(s: &State, l: &Layout) -> Vec<u8> {
    let mut body = Vec::new();
    let mut cfg = l.fingerprint.to_le_bytes().to_vec();
    cfg.extend_from_slice(&s.config);
    section(&mut body, TAG_CONFIG, &cfg);
    section(&mut body, TAG_IRQ, &[s.line]);
    if l.memory > 0 {
        section(&mut body, TAG_MEMORY, &s.memory);
    }
    for (i, p) in s.ports.iter().enumerate() {
        section(&mut body, TAG_DEVICE + i as u16, p);
    }
    let mut out = record(1, l.variant, &[]);
    out.extend(record(2, l.variant, &body));
    out
}

/// Recomputes the checksum of the record at `pos`, if its header and
/// payload are all there.
fn fix_crc(buf: &mut [u8], pos: usize) {
    let Some(len) = le(buf, pos + 12, 4) else {
        return;
    };
    let end = (pos + HEADER).saturating_add(len as usize);
    if let Some(p) = buf.get(pos + HEADER..end) {
        let c = crc32(p).to_le_bytes();
        buf[pos + 16..pos + 20].copy_from_slice(&c);
    }
}

/// The target.
pub struct Fuzz {
    mutant: u32,
    /// Each card type at reset, its layout and its reset state.
    cards: Vec<(Card, Layout, State)>,
}

impl Target for Fuzz {
    const NAME: &'static str = "stream";
    const ID: u64 = 3;

    fn new(mutant: u32) -> Self {
        let cards = [(1, false), (2, false), (1, true)]
            .iter()
            .map(|&(ports, express)| {
                let c = Card::new(ports, express).expect("the card builds");
                let l = Layout {
                    ports,
                    variant: c.variant(),
                    fingerprint: c.fingerprint(),
                    masks: c.config_masks(),
                    memory: c.mem_len(),
                };
                let reset = decode_own(&c, &l).expect("the reference reads a fresh card");
                (c, l, reset)
            })
            .collect();
        Self { mutant, cards }
    }

    fn case(&mut self, rng: &mut Rng) -> Result<(), String> {
        let k = rng.index(self.cards.len());
        let (fresh, l, reset) = &self.cards[k];
        let (fresh, l) = (fresh.clone(), l.clone());
        let mut a = fresh.clone();
        drive(&mut a, rng);
        let s = a.save_stream().map_err(|e| format!("save: {e:?}"))?;
        // The saved stream is the reference's encoding of what it decodes.
        let sa = reference(&s, &l, reset).ok_or("the reference refuses a saved stream")?;
        if encode(&sa, &l) != s {
            return Err("the saved stream is not the reference's encoding".into());
        }
        // Round trip: load into a fresh card, save the same bytes.
        let mut b = fresh.clone();
        b.load_stream(&s, &chunks(rng, s.len()))
            .map_err(|e| format!("a saved stream does not load: {e:?}"))?;
        if b.save_stream().map_err(|e| format!("save: {e:?}"))? != s {
            return Err("save, load, save changed the stream".into());
        }
        // A mutated stream into a card in some state of its own.
        let mut c = fresh.clone();
        if rng.one_in(2) {
            drive(&mut c, rng);
        }
        let before = c.save_stream().map_err(|e| format!("save: {e:?}"))?;
        let cur = reference(&before, &l, reset).ok_or("the reference refuses a saved stream")?;
        let (m, how) = self.mutate(&s, k, rng);
        // Mutant 1: the reference forgets that the checksum matters.
        let want = if self.mutant == 1 {
            reference_no_crc(&m, &l, &cur)
        } else {
            reference(&m, &l, &cur)
        };
        let got = c.load_stream(&m, &chunks(rng, m.len()));
        let after = c.save_stream().map_err(|e| format!("save: {e:?}"))?;
        match (got, want) {
            (Ok(()), Some(w)) => {
                if after != encode(&w, &l) {
                    return Err(format!("{how}: loaded, but not the state the stream holds"));
                }
            }
            (Err(_), None) => {
                if after != before {
                    return Err(format!("{how}: refused, but the card changed"));
                }
            }
            (got, want) => {
                return Err(format!(
                    "{how}: load {got:?}, the reference {} it ({} bytes)",
                    if want.is_some() { "accepts" } else { "refuses" },
                    m.len()
                ))
            }
        }
        Ok(())
    }
}

/// The reference with the checksum ignored (a wrong model, for the
/// negative control).
fn reference_no_crc(buf: &[u8], l: &Layout, cur: &State) -> Option<State> {
    let mut b = buf.to_vec();
    let mut pos = 0;
    while let Some(len) = le(&b, pos + 12, 4) {
        fix_crc(&mut b, pos);
        pos = pos.saturating_add(HEADER).saturating_add(len as usize);
    }
    reference(&b, l, cur)
}

/// The reference's decoding of a card's own stream.
fn decode_own(c: &Card, l: &Layout) -> Result<State, String> {
    let s = c.save_stream().map_err(|e| format!("save: {e:?}"))?;
    // Any current state will do: the config bytes are taken whole here.
    let all = State {
        config: vec![0; l.masks.len()],
        line: 0,
        memory: Vec::new(),
        ports: Vec::new(),
    };
    let mut full = l.clone();
    full.masks = vec![0xff; l.masks.len()];
    reference(&s, &full, &all).ok_or_else(|| "the reference refuses a fresh card".into())
}

/// Random write lengths that add up to `n` or more.
fn chunks(rng: &mut Rng, n: usize) -> Vec<usize> {
    match rng.below(4) {
        0 => vec![n],
        1 => vec![1; n],
        _ => {
            let mut v = Vec::new();
            let mut left = n;
            while left > 0 {
                let c = 1 + rng.index(left.min(64));
                v.push(c);
                left -= c;
            }
            v
        }
    }
}

/// Drives a card into a random state a guest could reach.
fn drive(c: &mut Card, rng: &mut Rng) {
    for _ in 0..rng.index(40) {
        match rng.below(10) {
            0..=4 => {
                let p = rng.index(c.ports());
                let reg = rng.below(8);
                let v = match reg {
                    3 => rng.byte() & 0x7f,
                    2 => 1 | rng.byte() & 0xc0,
                    _ => rng.byte(),
                };
                c.port_write(p, reg, v);
            }
            5..=6 => {
                let p = rng.index(c.ports());
                c.port_read(p, rng.below(8));
            }
            7 => {
                let off = rng.index(0x100);
                let mut d = [0u8; 4];
                rng.fill(&mut d);
                let len = rng.pick(&[1, 2, 4]);
                let _ = c.cfg_write(off & !(len - 1), &d[..len]);
            }
            8 => {
                // The device raises status error bits.
                let mut st = [0u8; 2];
                let _ = c.cfg_read(6, &mut st);
                let st = u32::from(u16::from_le_bytes(st)) | (rng.next_u64() as u32 & 0xf900);
                c.cfg_device_set(6, 2, st);
            }
            _ => {
                if c.mem_len() > 0 {
                    let off = rng.index(c.mem_len());
                    c.mem_write(off, rng.byte());
                }
            }
        }
    }
}

impl Fuzz {
    /// A mutation of the valid stream `s` of card `k`, and its name.
    fn mutate(&self, s: &[u8], k: usize, rng: &mut Rng) -> (Vec<u8>, &'static str) {
        let mut m = s.to_vec();
        let second = le(s, 12, 4).unwrap_or(0) as usize + HEADER;
        let rec = if rng.one_in(2) { 0 } else { second };
        let body = second + HEADER + 1 + NAME.len() + 4;
        match rng.below(13) {
            0 => {
                for _ in 0..1 + rng.index(3) {
                    let i = rng.index(m.len());
                    m[i] ^= 1 << rng.below(8);
                }
                (m, "bit flips")
            }
            1 => {
                m.truncate(rng.index(m.len()));
                (m, "truncated")
            }
            2 => {
                let v = rng.pick(&[0, 1, 0xffff_ffff, 0x1_0000, 0x1_0001, 0x8000_0000]);
                let v = match rng.below(3) {
                    0 => v,
                    1 => le(&m, rec + 12, 4).unwrap_or(0) as u32 + 1,
                    _ => (le(&m, rec + 12, 4).unwrap_or(0) as u32).wrapping_sub(1),
                };
                m[rec + 12..rec + 16].copy_from_slice(&v.to_le_bytes());
                if rng.one_in(2) {
                    fix_crc(&mut m, rec);
                }
                (m, "record length")
            }
            3 => {
                // A section length at an edge, checksum fixed.
                let mut p = body;
                let mut offs = Vec::new();
                while let Some(n) = le(&m, p + 4, 4) {
                    offs.push(p);
                    p += 8 + n as usize;
                    if p >= m.len() {
                        break;
                    }
                }
                if let Some(&at) = offs.get(rng.index(offs.len().max(1))) {
                    let old = le(&m, at + 4, 4).unwrap_or(0) as u32;
                    let v = rng.pick(&[0, old + 1, old.wrapping_sub(1), u32::MAX, old + 8]);
                    m[at + 4..at + 8].copy_from_slice(&v.to_le_bytes());
                }
                fix_crc(&mut m, second);
                (m, "section length")
            }
            4 => {
                m.extend_from_slice(s);
                (m, "twice")
            }
            5 => {
                // Another state of the same card type follows.
                let mut o = self.cards[k].0.clone();
                let mut r2 = Rng::new(mix(rng.next_u64()));
                drive(&mut o, &mut r2);
                m.extend(o.save_stream().unwrap_or_default());
                (m, "another state after")
            }
            6 => {
                let j = (k + 1 + rng.index(self.cards.len() - 1)) % self.cards.len();
                let o = self.cards[j].0.save_stream().unwrap_or_default();
                if rng.one_in(2) {
                    m.extend(o);
                    (m, "another type after")
                } else {
                    (o, "another type")
                }
            }
            7 => {
                m.truncate(second);
                (m, "identity only")
            }
            8..=9 => {
                // A byte of the state record's body changed, the checksum
                // fixed, so the device's own checks see it.
                let i = body + rng.index(m.len() - body);
                m[i] = match rng.below(3) {
                    0 => rng.byte(),
                    1 => m[i] ^ (1 << rng.below(8)),
                    _ => rng.pick(&[0, 1, 2, 0x10, 0x11, 0xff]),
                };
                fix_crc(&mut m, second);
                (m, "body byte, checksum fixed")
            }
            10 => {
                // A section added: unknown, duplicated or another port.
                let tag = rng.pick(&[
                    0x7f, 0x4, 0xff, TAG_CONFIG, TAG_IRQ, TAG_MEMORY, 0x100, 0x101, 0x102, 0xffff,
                ]);
                let mut extra = Vec::new();
                let len = rng.pick(&[0, 1, UART_SAVED_SIZE, 9]);
                let mut d = vec![0u8; len];
                rng.fill(&mut d);
                section(&mut extra, tag, &d);
                let at = if rng.one_in(2) { m.len() } else { body };
                m.splice(at..at, extra.iter().copied());
                let n = le(&m, second + 12, 4).unwrap_or(0) as u32 + extra.len() as u32;
                m[second + 12..second + 16].copy_from_slice(&n.to_le_bytes());
                fix_crc(&mut m, second);
                (m, "section added")
            }
            11 => {
                // The minor version and header fields.
                let f = rng.pick(&[6, 4, 8, 10]);
                let v = rng.pick(&[0u16, 1, 2, 3, 0xffff]);
                m[rec + f..rec + f + 2].copy_from_slice(&v.to_le_bytes());
                (m, "header field")
            }
            _ => {
                let mut r = vec![0u8; rng.index(200)];
                rng.fill(&mut r);
                if rng.one_in(2) && r.len() >= 4 {
                    r[..4].copy_from_slice(MAGIC);
                }
                (r, "random bytes")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_crc_is_the_standard_one() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn every_mutant_reference_is_caught() {
        crate::tests::mutants_are_caught::<Fuzz>(1);
    }
}
