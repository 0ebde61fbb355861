// SPDX-License-Identifier: GPL-2.0

//! The MSI-X table and pending bit array as data (PCIe 6.x, 6.1.4.2 and
//! 7.7.2).
//!
//! The MSI-X capability in configuration space (see
//! [`super::config::ConfigSpace::add_msix`]) only says where the table and
//! the pending bit array (PBA) live; this module models their contents. The
//! library routes BAR accesses that fall inside them to [`MsixTable`], keeps
//! the table's copy of MSI-X Enable and Function Mask in step with the
//! capability through [`MsixTable::set_control`], and sends the messages
//! that [`MsixTable::trigger`] and [`MsixTable::take_deliverable`] name.
//!
//! # Access rules
//!
//! The spec allows only aligned dword and aligned qword accesses to the table
//! and the PBA and leaves any other access undefined. The model rejects such
//! accesses with `EINVAL` and changes nothing; a failed read also fills the
//! caller's buffer with all ones. That is what a guest sees through QEMU,
//! which turns a failed VFIO region read into all ones and drops a failed
//! write, as a master abort would. The PBA is read-only: a well-formed write
//! to it succeeds and is ignored.

use super::{EResult, Errno};

/// Bytes of one table entry.
pub(crate) const ENTRY_SIZE: usize = 16;

/// The largest table the capability can describe (Table Size is 11 bits).
pub(crate) const MAX_VECTORS: usize = 2048;

/// Vector control: the entry's mask bit. The other bits are reserved and
/// read zero.
pub(crate) const CTRL_MASKED: u32 = 1 << 0;

/// Message control: MSI-X Enable.
pub(crate) const FLAGS_ENABLE: u16 = 1 << 15;

/// Message control: Function Mask.
pub(crate) const FLAGS_MASKALL: u16 = 1 << 14;

/// Dword indexes of the registers of an entry.
const ADDR_LO: usize = 0;
const ADDR_HI: usize = 1;
const DATA: usize = 2;
const CTRL: usize = 3;

/// The MSI-X table and PBA of a function with `N` vectors (1 to
/// [`MAX_VECTORS`], checked at compile time).
///
/// The value takes about 17 bytes per vector (16 for the entry and one for
/// the pending bit): a few hundred bytes for the handful of vectors an
/// emulated device needs, but 34 KiB at the maximum, far too big for the
/// kernel stack. A device with many vectors must build it in place in an
/// allocation rather than through [`MsixTable::new`] on the stack.
#[derive(Clone)]
pub(crate) struct MsixTable<const N: usize> {
    /// Message Address, Message Upper Address, Message Data and Vector
    /// Control of each entry.
    entries: [[u32; 4]; N],
    /// The pending bits.
    pending: [bool; N],
    /// The capability's MSI-X Enable bit.
    enabled: bool,
    /// The capability's Function Mask bit.
    function_mask: bool,
}

impl<const N: usize> Default for MsixTable<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> MsixTable<N> {
    /// Refuses, at compile time, a table the capability cannot describe.
    const VALID: () = assert!(N >= 1 && N <= MAX_VECTORS, "MSI-X needs 1 to 2048 vectors");

    /// A table in its reset state: every entry masked with zero address and
    /// data, nothing pending, MSI-X disabled and the function unmasked.
    pub(crate) const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::VALID;
        Self {
            entries: [[0, 0, 0, CTRL_MASKED]; N],
            pending: [false; N],
            enabled: false,
            function_mask: false,
        }
    }

    /// Returns the table to its reset state, in place.
    pub(crate) fn reset(&mut self) {
        for e in self.entries.iter_mut() {
            *e = [0, 0, 0, CTRL_MASKED];
        }
        self.pending = [false; N];
        self.enabled = false;
        self.function_mask = false;
    }

    /// Bytes of the table: 16 per vector.
    pub(crate) const fn table_size() -> usize {
        N * ENTRY_SIZE
    }

    /// Bytes of the PBA: one bit per vector, in whole qwords.
    pub(crate) const fn pba_size() -> usize {
        N.div_ceil(64) * 8
    }

    /// Checks an access of `len` bytes at `off` in a `size`-byte structure
    /// and returns the index of its first dword.
    fn dword_index(off: u64, len: usize, size: usize) -> EResult<usize> {
        let off = usize::try_from(off).map_err(|_| Errno::Inval)?;
        if !(len == 4 || len == 8) || off % len != 0 {
            return Err(Errno::Inval);
        }
        match off.checked_add(len) {
            Some(end) if end <= size => Ok(off / 4),
            _ => Err(Errno::Inval),
        }
    }

    /// Reads `out.len()` bytes at `off` of the table.
    ///
    /// Fails with `EINVAL`, filling `out` with all ones, unless the access
    /// is an aligned dword or qword inside the table.
    pub(crate) fn read(&self, off: u64, out: &mut [u8]) -> EResult {
        let Ok(first) = Self::dword_index(off, out.len(), Self::table_size()) else {
            out.fill(0xff);
            return Err(Errno::Inval);
        };
        for (i, chunk) in out.chunks_exact_mut(4).enumerate() {
            let d = first + i;
            let v = self
                .entries
                .get(d / 4)
                .and_then(|e| e.get(d % 4))
                .copied()
                .unwrap_or(!0);
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        Ok(())
    }

    /// Writes `data` at `off` of the table. Message Address keeps its low
    /// two bits zero (the address is dword aligned) and Vector Control
    /// keeps only its mask bit.
    ///
    /// Fails with `EINVAL`, changing nothing, unless the access is an
    /// aligned dword or qword inside the table. A write that unmasks a
    /// vector with its pending bit set makes that vector deliverable: call
    /// [`MsixTable::take_deliverable`] after every write.
    pub(crate) fn write(&mut self, off: u64, data: &[u8]) -> EResult {
        let first = Self::dword_index(off, data.len(), Self::table_size())?;
        for (i, chunk) in data.chunks_exact(4).enumerate() {
            let d = first + i;
            let v = u32::from_le_bytes(chunk.try_into().unwrap_or([0; 4]));
            let v = match d % 4 {
                ADDR_LO => v & !0x3,
                ADDR_HI | DATA => v,
                _ => v & CTRL_MASKED,
            };
            if let Some(r) = self.entries.get_mut(d / 4).and_then(|e| e.get_mut(d % 4)) {
                *r = v;
            }
        }
        Ok(())
    }

    /// Reads `out.len()` bytes at `off` of the PBA: bit `v % 64` of qword
    /// `v / 64` is vector `v`'s pending bit, bits past the last vector read
    /// zero.
    ///
    /// Fails with `EINVAL`, filling `out` with all ones, unless the access
    /// is an aligned dword or qword inside the PBA.
    pub(crate) fn read_pba(&self, off: u64, out: &mut [u8]) -> EResult {
        let Ok(first) = Self::dword_index(off, out.len(), Self::pba_size()) else {
            out.fill(0xff);
            return Err(Errno::Inval);
        };
        for (i, chunk) in out.chunks_exact_mut(4).enumerate() {
            let base = (first + i) * 32;
            let mut v = 0u32;
            for bit in 0..32 {
                if self.pending(base + bit) {
                    v |= 1 << bit;
                }
            }
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        Ok(())
    }

    /// A write of `data` at `off` of the PBA, which is read-only: a
    /// well-formed write succeeds and changes nothing.
    ///
    /// Fails with `EINVAL` unless the access is an aligned dword or qword
    /// inside the PBA.
    pub(crate) fn write_pba(&mut self, off: u64, data: &[u8]) -> EResult {
        Self::dword_index(off, data.len(), Self::pba_size()).map(|_| ())
    }

    /// Takes MSI-X Enable and Function Mask from the capability's Message
    /// Control register (see
    /// [`super::config::ConfigSpace::msix_control`]). Enabling MSI-X or
    /// clearing Function Mask can make pending vectors deliverable: call
    /// [`MsixTable::take_deliverable`] afterwards.
    pub(crate) fn set_control(&mut self, control: u16) {
        self.enabled = control & FLAGS_ENABLE != 0;
        self.function_mask = control & FLAGS_MASKALL != 0;
    }

    /// Whether MSI-X is enabled.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether `vector` is masked, by its own mask bit or by Function Mask.
    /// A vector the table does not have counts as masked.
    pub(crate) fn is_masked(&self, vector: usize) -> bool {
        match self.entries.get(vector) {
            Some(e) => self.function_mask || e[CTRL] & CTRL_MASKED != 0,
            None => true,
        }
    }

    /// Whether `vector` has its pending bit set (false for a vector the
    /// table does not have).
    pub(crate) fn pending(&self, vector: usize) -> bool {
        self.pending.get(vector).copied().unwrap_or(false)
    }

    /// Sets or clears the pending bit of `vector`; the device clears it when
    /// the event behind a masked vector goes away. A vector the table does
    /// not have is ignored.
    pub(crate) fn set_pending(&mut self, vector: usize, on: bool) {
        if let Some(p) = self.pending.get_mut(vector) {
            *p = on;
        }
    }

    /// The message address and data of `vector`, `None` for a vector the
    /// table does not have.
    pub(crate) fn message(&self, vector: usize) -> Option<(u64, u32)> {
        let e = self.entries.get(vector)?;
        let addr = u64::from(e[ADDR_HI]) << 32 | u64::from(e[ADDR_LO]);
        Some((addr, e[DATA]))
    }

    /// The device signals `vector`: returns `true` if the caller must send
    /// its message now; otherwise (MSI-X disabled, the vector or function
    /// masked) the pending bit is set and the message waits, as QEMU's
    /// `msix_notify()` does. A vector the table does not have is ignored.
    pub(crate) fn trigger(&mut self, vector: usize) -> bool {
        if vector >= N {
            return false;
        }
        if self.enabled && !self.is_masked(vector) {
            return true;
        }
        self.set_pending(vector, true);
        false
    }

    /// The next pending vector that is now deliverable (MSI-X enabled,
    /// neither it nor the function masked), with its pending bit cleared;
    /// the caller sends its message. Call it until it returns `None` after
    /// every table write and every change of Message Control.
    pub(crate) fn take_deliverable(&mut self) -> Option<usize> {
        if !self.enabled || self.function_mask {
            return None;
        }
        let v = (0..N).find(|&v| self.pending(v) && !self.is_masked(v))?;
        self.set_pending(v, false);
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testrng::Rng;
    use super::*;

    type Table = MsixTable<4>;

    fn rd32(t: &Table, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    fn wr32(t: &mut Table, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes()).unwrap();
    }

    fn pba(t: &Table) -> u64 {
        let mut b = [0u8; 8];
        t.read_pba(0, &mut b).unwrap();
        u64::from_le_bytes(b)
    }

    #[test]
    fn sizes_follow_the_vector_count() {
        assert_eq!(Table::table_size(), 64);
        assert_eq!(Table::pba_size(), 8);
        assert_eq!(MsixTable::<64>::pba_size(), 8);
        assert_eq!(MsixTable::<65>::pba_size(), 16);
        assert_eq!(MsixTable::<2048>::table_size(), 32768);
    }

    #[test]
    fn entries_reset_masked() {
        let t = Table::new();
        for v in 0..4 {
            let o = (v * ENTRY_SIZE) as u64;
            assert_eq!(rd32(&t, o), 0);
            assert_eq!(rd32(&t, o + 12), CTRL_MASKED);
            assert!(t.is_masked(v));
            assert_eq!(t.message(v), Some((0, 0)));
        }
        assert_eq!(t.message(4), None);
        assert!(t.is_masked(4));
    }

    #[test]
    fn registers_keep_their_defined_bits() {
        let mut t = Table::new();
        wr32(&mut t, 16, 0xfee0_1003);
        wr32(&mut t, 20, 0x1234_5678);
        wr32(&mut t, 24, 0xdead_beef);
        wr32(&mut t, 28, 0xffff_fffe);
        assert_eq!(rd32(&t, 16), 0xfee0_1000, "address is dword aligned");
        assert_eq!(rd32(&t, 28), 0, "reserved control bits read zero");
        assert_eq!(t.message(1), Some((0x1234_5678_fee0_1000, 0xdead_beef)));
        assert!(!t.is_masked(1));
        // Qword accesses cover two registers of one entry.
        t.write(32, &0x0000_0001_fee0_2000u64.to_le_bytes())
            .unwrap();
        t.write(40, &0xffff_ffff_0000_0042u64.to_le_bytes())
            .unwrap();
        let mut b = [0u8; 8];
        t.read(40, &mut b).unwrap();
        assert_eq!(u64::from_le_bytes(b), 0x0000_0001_0000_0042);
        assert_eq!(t.message(2), Some((0x1_fee0_2000, 0x42)));
    }

    #[test]
    fn malformed_accesses_fail_and_change_nothing() {
        let mut t = Table::new();
        wr32(&mut t, 0, 0xfee0_0000);
        let before = t.entries;
        for (off, len) in [
            (0u64, 1usize),
            (0, 2),
            (0, 3),
            (0, 16),
            (0, 0),
            (2, 4),
            (4, 8),
            (60, 8),
            (64, 4),
            (u64::MAX - 3, 4),
            (u64::MAX, 8),
        ] {
            let mut b = [0u8; 16];
            assert_eq!(t.read(off, &mut b[..len]), Err(Errno::Inval), "{off} {len}");
            assert!(b[..len].iter().all(|&x| x == 0xff));
            assert_eq!(t.write(off, &[0xff; 16][..len]), Err(Errno::Inval));
            assert_eq!(t.read_pba(off, &mut b[..len]), Err(Errno::Inval));
            assert_eq!(t.write_pba(off, &b[..len]), Err(Errno::Inval));
        }
        assert_eq!(t.entries, before);
        // The last dword and qword are fine.
        assert_eq!(rd32(&t, 60), CTRL_MASKED);
        assert_eq!(t.read(56, &mut [0; 8]), Ok(()));
    }

    #[test]
    fn a_masked_vector_pends_until_unmasked() {
        let mut t = Table::new();
        t.set_control(FLAGS_ENABLE);
        wr32(&mut t, 16, 0xfee0_0000);
        assert!(!t.trigger(1), "masked at reset");
        assert!(t.pending(1));
        assert_eq!(pba(&t), 0b10);
        assert_eq!(t.take_deliverable(), None, "still masked");
        // Unmasking makes it deliverable exactly once.
        wr32(&mut t, 28, 0);
        assert_eq!(t.take_deliverable(), Some(1));
        assert_eq!(t.take_deliverable(), None);
        assert_eq!(pba(&t), 0);
        // Unmasked, a trigger is delivered at once and nothing pends.
        assert!(t.trigger(1));
        assert_eq!(pba(&t), 0);
        // The device can withdraw a pending event.
        wr32(&mut t, 28, 1);
        assert!(!t.trigger(1));
        t.set_pending(1, false);
        wr32(&mut t, 28, 0);
        assert_eq!(t.take_deliverable(), None);
        // Vectors the table does not have are ignored.
        assert!(!t.trigger(4));
        t.set_pending(usize::MAX, true);
        assert_eq!(pba(&t), 0);
    }

    #[test]
    fn function_mask_and_enable_hold_back_every_vector() {
        let mut t = Table::new();
        for v in 0..4u64 {
            wr32(&mut t, v * 16 + 12, 0);
        }
        // Disabled: events pend.
        assert!(!t.trigger(0));
        t.set_control(FLAGS_ENABLE | FLAGS_MASKALL);
        assert!(t.is_masked(2));
        assert!(!t.trigger(2));
        assert_eq!(pba(&t), 0b101);
        assert_eq!(t.take_deliverable(), None);
        t.set_control(FLAGS_ENABLE);
        assert!(t.enabled());
        assert_eq!(t.take_deliverable(), Some(0));
        assert_eq!(t.take_deliverable(), Some(2));
        assert_eq!(t.take_deliverable(), None);
    }

    #[test]
    fn the_pba_is_read_only() {
        let mut t = Table::new();
        t.set_pending(3, true);
        assert_eq!(t.write_pba(0, &[0; 8]), Ok(()));
        assert_eq!(t.write_pba(4, &[0xff; 4]), Ok(()));
        assert_eq!(pba(&t), 0b1000);
        let mut b = [0u8; 4];
        t.read_pba(4, &mut b).unwrap();
        assert_eq!(b, [0; 4], "bits past the last vector read zero");
    }

    #[test]
    fn reset_restores_the_initial_state() {
        let mut t = Table::new();
        t.set_control(FLAGS_ENABLE | FLAGS_MASKALL);
        wr32(&mut t, 0, 0xfee0_0000);
        wr32(&mut t, 12, 0);
        t.set_pending(2, true);
        t.reset();
        assert!(!t.enabled());
        assert_eq!(t.entries, Table::new().entries);
        assert_eq!(pba(&t), 0);
    }

    #[test]
    fn random_accesses_keep_every_invariant() {
        type Big = MsixTable<70>;
        let mut t = Big::new();
        let mut rng = Rng::new(0x4d53_4958);
        let mut buf = [0u8; 24];
        let (mut table_writes, mut delivered) = (0, 0);
        for iter in 0..50_000 {
            let pba = rng.one_in(4);
            let size = if pba {
                Big::pba_size()
            } else {
                Big::table_size()
            };
            let off = match rng.below(16) {
                0 => u64::MAX - rng.below(16),
                1 => rng.next_u64(),
                _ => rng.below(size as u64 + 24),
            };
            let len = match rng.below(8) {
                0 => rng.index(buf.len() + 1),
                1 | 2 => 8,
                _ => 4,
            };
            let valid = (len == 4 || len == 8)
                && off % len as u64 == 0
                && off
                    .checked_add(len as u64)
                    .is_some_and(|e| e <= size as u64);
            let data = &mut buf[..len];
            rng.fill(data);
            let (entries, pending) = (t.entries, t.pending);
            let r = match (pba, rng.one_in(2)) {
                (false, false) => t.read(off, data),
                (false, true) => t.write(off, data),
                (true, false) => t.read_pba(off, data),
                (true, true) => t.write_pba(off, data),
            };
            assert_eq!(r.is_ok(), valid, "iter {iter}: {off:#x}+{len}");
            if r.is_err() {
                assert!(t.entries == entries, "iter {iter}: failed access changed");
            }
            if !pba && r.is_ok() && t.entries != entries {
                table_writes += 1;
            }
            if pba {
                assert!(
                    t.entries == entries,
                    "iter {iter}: PBA access changed the table"
                );
            }
            assert!(
                t.pending == pending,
                "iter {iter}: an access changed the PBA"
            );
            for e in &t.entries {
                assert_eq!(e[CTRL] & !CTRL_MASKED, 0, "iter {iter}: reserved bits");
                assert_eq!(e[ADDR_LO] & 3, 0, "iter {iter}: address alignment");
            }
            // The device and the capability act in between.
            match rng.below(8) {
                0 => t.set_control(rng.next_u64() as u16),
                1 => t.set_pending(rng.index(80), rng.one_in(2)),
                2 => {
                    let v = rng.index(80);
                    let deliver = t.trigger(v);
                    assert_eq!(deliver, v < 70 && t.enabled() && !t.is_masked(v));
                    assert_eq!(
                        t.pending(v),
                        v < 70 && (pending.get(v) == Some(&true) || !deliver)
                    );
                }
                _ => {}
            }
            while let Some(v) = t.take_deliverable() {
                assert!(v < 70 && t.enabled() && !t.is_masked(v) && !t.pending(v));
                delivered += 1;
            }
            // Nothing deliverable is left behind.
            assert!((0..70).all(|v| !(t.enabled() && t.pending(v) && !t.is_masked(v))));
        }
        assert!(
            table_writes > 1_000 && delivered > 100,
            "{table_writes} {delivered}"
        );
    }
}
