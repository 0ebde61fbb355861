// SPDX-License-Identifier: GPL-2.0

//! Bookkeeping of a device's DMA into guest memory: the pages it holds
//! pinned, and the log of the pages it wrote.
//!
//! Both halves answer to the emulated-IOMMU contract of the VFIO core
//! (`include/linux/vfio.h`, Documentation/driver-api/vfio.rst):
//!
//! - A device pins guest pages with `vfio_pin_pages()` and must unpin every
//!   page of a range, with the iova and count it pinned, before its
//!   `dma_unmap` op returns for that range. [`PinTable`] records each pin,
//!   counts the users of its pages, and tells the unmap which pins it may
//!   drop now and whether it has to wait for a user or a pin in progress.
//! - `VFIO_DEVICE_FEATURE_DMA_LOGGING_*` asks the device for the pages it
//!   wrote inside the ranges given at start. [`DirtyLog`] is that log: a
//!   bitmap over the ranges at a granularity chosen by [`log_layout`],
//!   marked on every write and read back (and cleared) in any window.
//!
//! Nothing here touches memory or kernel objects: the kernel glue keeps the
//! pinned pages and the bitmap's storage, and calls these under its lock.

use super::{EResult, Errno};
use core::{
    marker::PhantomData,
    ops::{Deref, DerefMut},
};

/// The smallest logging granularity: the 4 KiB the uAPI's report demands.
pub(crate) const MIN_LOG_SHIFT: u32 = 12;

/// The most bits one log may take (a 32 MiB bitmap, 1 TiB of ranges at
/// 4 KiB). Wider ranges are logged at a coarser granularity, which reports
/// more than was written, never less.
pub(crate) const MAX_LOG_BITS: u64 = 1 << 28;

/// One range of a dirty log, as laid out by [`log_layout`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LogRange {
    /// The first iova of the range.
    start: u64,
    /// The last iova of the range (inclusive, so a range may end at the top
    /// of the address space).
    last: u64,
    /// The range's first bit in the log's bitmap.
    first_bit: u64,
}

/// What [`log_layout`] chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogLayout {
    /// The granularity, as a shift: one bit logs `1 << shift` bytes.
    pub(crate) shift: u32,
    /// The bits the bitmap needs.
    pub(crate) bits: u64,
}

impl LogLayout {
    /// The 64-bit words the bitmap needs.
    pub(crate) fn words(&self) -> u64 {
        self.bits.div_ceil(64)
    }

    /// The granularity in bytes, which `LOGGING_START` reports back.
    pub(crate) fn page_size(&self) -> u64 {
        1u64 << self.shift
    }
}

/// Checks the `(iova, length)` ranges of a `DMA_LOGGING_START` and lays
/// them out in `out` (sorted by iova; `out` must hold one entry per range),
/// choosing the granularity from the caller's `hint`.
///
/// The uAPI lets the device pick another page size when it cannot honour
/// the hint: a hint that is not a power of two of at least 4 KiB gets
/// 4 KiB, and the granularity grows until the bitmap fits
/// [`MAX_LOG_BITS`]. No range, an empty range or overlapping ranges are
/// `EINVAL`, a range that wraps is `EOVERFLOW`, more ranges than `out`
/// holds is `E2BIG`.
pub(crate) fn log_layout(
    ranges: &[(u64, u64)],
    hint: u64,
    out: &mut [LogRange],
) -> EResult<LogLayout> {
    if ranges.is_empty() {
        return Err(Errno::Inval);
    }
    let out = out.get_mut(..ranges.len()).ok_or(Errno::TooBig)?;
    for (slot, &(iova, len)) in out.iter_mut().zip(ranges) {
        let span = len.checked_sub(1).ok_or(Errno::Inval)?;
        let last = iova.checked_add(span).ok_or(Errno::Overflow)?;
        *slot = LogRange {
            start: iova,
            last,
            first_bit: 0,
        };
    }
    // An insertion sort: at most a page's worth of ranges, usually in order
    // already (the core hands them over from an interval tree), and no
    // panicking paths as `core`'s sorts carry.
    for i in 1..out.len() {
        let mut j = i;
        while j > 0 && out[j - 1].start > out[j].start {
            out.swap(j - 1, j);
            j -= 1;
        }
    }
    if out.windows(2).any(|w| w[0].last >= w[1].start) {
        return Err(Errno::Inval);
    }
    let mut shift = if hint.is_power_of_two() && hint >= 1 << MIN_LOG_SHIFT {
        hint.trailing_zeros()
    } else {
        MIN_LOG_SHIFT
    };
    loop {
        match count_bits(out, shift) {
            Some(bits) if bits <= MAX_LOG_BITS => break,
            _ => shift += 1,
        }
    }
    let mut next = 0u64;
    for r in out.iter_mut() {
        r.first_bit = next;
        // Cannot overflow: `count_bits` summed these without overflow.
        next += (r.last >> shift) - (r.start >> shift) + 1;
    }
    Ok(LogLayout { shift, bits: next })
}

/// The bits `ranges` need at granularity `shift`, if the sum fits a `u64`.
fn count_bits(ranges: &[LogRange], shift: u32) -> Option<u64> {
    ranges.iter().try_fold(0u64, |acc, r| {
        acc.checked_add((r.last >> shift) - (r.start >> shift) + 1)
    })
}

/// The pages a device wrote, over the ranges of one `DMA_LOGGING_START`.
///
/// `R` holds the ranges as [`log_layout`] laid them out, `B` the bitmap (at
/// least [`LogLayout::words`] zeroed words); the kernel glue allocates both.
pub(crate) struct DirtyLog<R, B> {
    ranges: R,
    bits: B,
    shift: u32,
}

impl<R: Deref<Target = [LogRange]>, B: DerefMut<Target = [u64]>> DirtyLog<R, B> {
    /// A log with nothing dirty over `ranges`, laid out as `layout` says.
    /// `EINVAL` if `bits` is too small for the layout.
    pub(crate) fn new(ranges: R, mut bits: B, layout: LogLayout) -> EResult<Self> {
        let words = usize::try_from(layout.words()).map_err(|_| Errno::Inval)?;
        if bits.len() < words {
            return Err(Errno::Inval);
        }
        bits.fill(0);
        Ok(Self {
            ranges,
            bits,
            shift: layout.shift,
        })
    }

    /// Records that the device wrote the `len` bytes at `iova`. Bytes
    /// outside the log's ranges are not logged, as the uAPI allows.
    pub(crate) fn mark(&mut self, iova: u64, len: u64) {
        let Some(span) = len.checked_sub(1) else {
            return;
        };
        let last = iova.saturating_add(span);
        let shift = self.shift;
        let Self { ranges, bits, .. } = self;
        let ranges = &**ranges;
        let bits = &mut **bits;
        let from = ranges.partition_point(|r| r.last < iova);
        for r in ranges.get(from..).unwrap_or(&[]) {
            if r.start > last {
                break;
            }
            let lo = (iova.max(r.start) >> shift) - (r.start >> shift) + r.first_bit;
            let hi = (last.min(r.last) >> shift) - (r.start >> shift) + r.first_bit;
            for bit in lo..=hi {
                set_bit(bits, bit);
            }
        }
    }

    /// Reports what the device wrote in the `len` bytes at `iova` and
    /// clears it: `emit(iova, len)` gets each written stretch, clipped to
    /// the window and to the log's ranges, adjacent pages merged.
    ///
    /// A logged page that reaches outside the window is reported but stays
    /// marked, so that the report of the neighbouring window sees it too:
    /// a page may be reported twice, never lost.
    pub(crate) fn report(&mut self, iova: u64, len: u64, mut emit: impl FnMut(u64, u64)) {
        let Some(span) = len.checked_sub(1) else {
            return;
        };
        let wlast = iova.saturating_add(span);
        let shift = self.shift;
        let Self { ranges, bits, .. } = self;
        let ranges = &**ranges;
        let bits = &mut **bits;
        // The stretch being gathered, as (first, last) iovas.
        let mut run: Option<(u64, u64)> = None;
        let from = ranges.partition_point(|r| r.last < iova);
        for r in ranges.get(from..).unwrap_or(&[]) {
            if r.start > wlast {
                break;
            }
            let base = r.start >> shift;
            let lo = (iova.max(r.start) >> shift) - base + r.first_bit;
            let hi = (wlast.min(r.last) >> shift) - base + r.first_bit;
            let mut bit = lo;
            while let Some(b) = next_set(bits, bit, hi) {
                let page = b - r.first_bit + base;
                let pfirst = page << shift;
                let plast = pfirst | ((1u64 << shift) - 1);
                // The part of the page inside the range, and of that the
                // part inside the window.
                let (rfirst, rlast) = (pfirst.max(r.start), plast.min(r.last));
                let (first, last) = (rfirst.max(iova), rlast.min(wlast));
                if rfirst >= iova && rlast <= wlast {
                    clear_bit(bits, b);
                }
                run = match run {
                    Some((f, l)) if l.checked_add(1) == Some(first) => Some((f, last)),
                    Some((f, l)) => {
                        emit(f, l - f + 1);
                        Some((first, last))
                    }
                    None => Some((first, last)),
                };
                match b.checked_add(1) {
                    Some(n) => bit = n,
                    None => break,
                }
            }
        }
        if let Some((f, l)) = run {
            // A stretch lies inside the window, whose length is a `u64`,
            // so its length fits one too.
            emit(f, (l - f).saturating_add(1));
        }
    }
}

/// Sets bit `bit` of `bits`, if it is in it.
fn set_bit(bits: &mut [u64], bit: u64) {
    if let Some(w) = usize::try_from(bit / 64).ok().and_then(|i| bits.get_mut(i)) {
        *w |= 1 << (bit % 64);
    }
}

/// Clears bit `bit` of `bits`, if it is in it.
fn clear_bit(bits: &mut [u64], bit: u64) {
    if let Some(w) = usize::try_from(bit / 64).ok().and_then(|i| bits.get_mut(i)) {
        *w &= !(1 << (bit % 64));
    }
}

/// The first set bit of `bits` in `from..=to`, skipping clear words whole.
fn next_set(bits: &[u64], from: u64, to: u64) -> Option<u64> {
    let mut bit = from;
    while bit <= to {
        let w = *usize::try_from(bit / 64).ok().and_then(|i| bits.get(i))?;
        let rest = w >> (bit % 64);
        if rest != 0 {
            let found = bit + u64::from(rest.trailing_zeros());
            return (found <= to).then_some(found);
        }
        bit = (bit / 64 + 1).checked_mul(64)?;
    }
    None
}

/// The identity of one pin in a [`PinTable`]; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PinId(u64);

/// The most pins a device may hold at once.
pub(crate) const MAX_PINS: usize = 256;

/// The most pages a device may hold pinned at once (256 MiB of 4 KiB
/// pages): guest memory a device pins stays resident, so a guest cannot
/// make the host pin without bound.
pub(crate) const MAX_PINNED_PAGES: u64 = 1 << 16;

/// One pin: its range, and what holds it.
pub(crate) struct Slot<P> {
    id: PinId,
    iova: u64,
    /// Bytes, a whole number of pages.
    len: u64,
    npage: u64,
    write: bool,
    /// The pinned pages, once `vfio_pin_pages()` returned.
    pages: Option<P>,
    /// Users of the pages, plus one while the pin is in progress.
    users: u32,
    /// An unmap or an unpin wants the pin gone: no new user may come, and
    /// the pin goes when its last user leaves.
    revoked: bool,
}

/// What [`PinTable::finish`] decided.
pub(crate) enum Finished<P> {
    /// The pin is in the table.
    Held,
    /// The pin was revoked while it was made (an unmap of its range came
    /// meanwhile): the caller unpins these pages at once.
    Revoked(P),
    /// The pin failed.
    Failed,
}

/// The pins of one device and the users of their pages.
///
/// The glue keeps it under a lock and never holds that lock across a call
/// into the IOMMU (pinning or unpinning), so the bookkeeping is in two
/// steps: [`Self::begin`] reserves, [`Self::finish`] records the result.
/// A user of pinned pages [`Self::acquire`]s the pin and
/// [`Self::release`]s it when its copy is done; [`Self::unmap`] takes
/// every pin of a range once none of them is in use or in progress.
///
/// `S` holds the slots (the glue allocates [`MAX_PINS`] of them: too large
/// for a kernel stack); their number bounds the pins.
pub(crate) struct PinTable<P, S> {
    slots: S,
    next: u64,
    pages: u64,
    _p: PhantomData<P>,
}

impl<P, S: DerefMut<Target = [Option<Slot<P>>]>> PinTable<P, S> {
    /// An empty table in `slots`.
    pub(crate) fn new(mut slots: S) -> Self {
        slots.iter_mut().for_each(|s| *s = None);
        Self {
            slots,
            next: 0,
            pages: 0,
            _p: PhantomData,
        }
    }

    fn slot(&mut self, id: PinId) -> Option<&mut Slot<P>> {
        self.slots.iter_mut().flatten().find(|s| s.id == id)
    }

    /// Reserves a pin of `npage` pages of `page_size` bytes at `iova`.
    /// `EINVAL` for no page, an iova not page aligned or a range that wraps;
    /// `ENOSPC` when the table or the page budget is full.
    pub(crate) fn begin(
        &mut self,
        iova: u64,
        npage: u64,
        write: bool,
        page_size: u64,
    ) -> EResult<PinId> {
        if npage == 0 || page_size == 0 || !iova.is_multiple_of(page_size) {
            return Err(Errno::Inval);
        }
        let len = npage.checked_mul(page_size).ok_or(Errno::Inval)?;
        iova.checked_add(len - 1).ok_or(Errno::Inval)?;
        let pages = self.pages.checked_add(npage).ok_or(Errno::NoSpc)?;
        if pages > MAX_PINNED_PAGES {
            return Err(Errno::NoSpc);
        }
        let free = self
            .slots
            .iter_mut()
            .find(|s| s.is_none())
            .ok_or(Errno::NoSpc)?;
        let id = PinId(self.next);
        self.next += 1;
        *free = Some(Slot {
            id,
            iova,
            len,
            npage,
            write,
            pages: None,
            users: 1,
            revoked: false,
        });
        self.pages = pages;
        Ok(id)
    }

    /// Records the result of the pin `id` reserved: its pages, or `None`
    /// if pinning failed.
    ///
    /// A pin revoked meanwhile gives its pages back ([`Finished::Revoked`])
    /// but keeps its slot, as in use, so that an unmap waiting for it goes
    /// on waiting: the caller unpins the pages and then calls
    /// [`Self::release`].
    pub(crate) fn finish(&mut self, id: PinId, pages: Option<P>) -> Finished<P> {
        let Some(s) = self.slot(id) else {
            // Not reserved (a bug of the caller): nothing to record, and
            // pages the caller holds must go back.
            return pages.map_or(Finished::Failed, Finished::Revoked);
        };
        match pages {
            Some(p) if s.revoked => Finished::Revoked(p),
            Some(p) => {
                s.users = s.users.saturating_sub(1);
                s.pages = Some(p);
                Finished::Held
            }
            None => {
                self.remove(id);
                Finished::Failed
            }
        }
    }

    /// Drops slot `id` and its pages from the budget, returning its pages.
    fn remove(&mut self, id: PinId) -> Option<P> {
        let entry = self
            .slots
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(|s| s.id == id))?;
        let s = entry.take()?;
        self.pages = self.pages.saturating_sub(s.npage);
        s.pages
    }

    /// A new user of pin `id`'s pages, which gets them: `EFAULT` if the pin
    /// is gone or going (its range was unmapped), `EPERM` if the user wants
    /// to `write` pages pinned for reading only.
    pub(crate) fn acquire(&mut self, id: PinId, write: bool) -> EResult<&P> {
        let s = self.slot(id).ok_or(Errno::Fault)?;
        if s.revoked || s.pages.is_none() {
            return Err(Errno::Fault);
        }
        if write && !s.write {
            return Err(Errno::Perm);
        }
        s.users = s.users.checked_add(1).ok_or(Errno::Busy)?;
        s.pages.as_ref().ok_or(Errno::Fault)
    }

    /// A user of pin `id` left.
    ///
    /// If the pin was revoked and this was its last user, returns its pages
    /// and keeps the slot as in use: the caller unpins the pages and calls
    /// `release` once more, which frees the slot. An unmap waiting for the
    /// pin therefore returns only once the pages are unpinned.
    pub(crate) fn release(&mut self, id: PinId) -> Option<P> {
        let s = self.slot(id)?;
        s.users = s.users.saturating_sub(1);
        if !s.revoked || s.users > 0 {
            return None;
        }
        match s.pages.take() {
            Some(p) => {
                s.users = 1;
                Some(p)
            }
            None => {
                self.remove(id);
                None
            }
        }
    }

    /// The device is done with pin `id`. If nothing uses it, returns its
    /// pages, to be unpinned and then [`Self::release`]d as above;
    /// otherwise its last user's release does.
    pub(crate) fn unpin(&mut self, id: PinId) -> Option<P> {
        let s = self.slot(id)?;
        s.revoked = true;
        if s.users > 0 {
            return None;
        }
        let p = s.pages.take()?;
        s.users = 1;
        Some(p)
    }

    /// The `len` bytes at `iova` are being unmapped. Revokes every pin that
    /// overlaps them; if none of those is in use or in progress, takes them
    /// all out, handing each one's pages to `out` (the caller unpins them),
    /// and returns `true`. Otherwise it returns `false` and takes nothing:
    /// the caller waits for the users to leave and asks again.
    pub(crate) fn unmap(&mut self, iova: u64, len: u64, mut out: impl FnMut(P)) -> bool {
        let Some(span) = len.checked_sub(1) else {
            return true;
        };
        let last = iova.saturating_add(span);
        let mut idle = true;
        for s in self.slots.iter_mut().flatten() {
            if overlaps(s.iova, s.len, iova, last) {
                s.revoked = true;
                idle &= s.users == 0;
            }
        }
        if !idle {
            return false;
        }
        for entry in self.slots.iter_mut() {
            if entry
                .as_ref()
                .is_some_and(|s| overlaps(s.iova, s.len, iova, last))
            {
                if let Some(s) = entry.take() {
                    self.pages = self.pages.saturating_sub(s.npage);
                    if let Some(p) = s.pages {
                        out(p);
                    }
                }
            }
        }
        true
    }

    /// Whether pin `id` is still usable (not gone, not revoked).
    pub(crate) fn valid(&mut self, id: PinId) -> bool {
        self.slot(id).is_some_and(|s| !s.revoked)
    }

    /// Calls `f(iova, len)` for every pin made for writing: the device may
    /// write those pages at any time, so the dirty log reports them in
    /// every round, as type1 does with its pinned pages.
    pub(crate) fn for_each_writable(&self, mut f: impl FnMut(u64, u64)) {
        for s in self.slots.iter().flatten() {
            if s.write && s.pages.is_some() {
                f(s.iova, s.len);
            }
        }
    }

    /// The pins held or in progress.
    pub(crate) fn count(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// The pages pinned or being pinned.
    pub(crate) fn pages(&self) -> u64 {
        self.pages
    }
}

/// Whether the `len` bytes at `start` overlap `[first, last]`.
fn overlaps(start: u64, len: u64, first: u64, last: u64) -> bool {
    let Some(end) = len.checked_sub(1).and_then(|s| start.checked_add(s)) else {
        return false;
    };
    start <= last && first <= end
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::super::testrng::Rng;
    use super::*;
    use std::{collections::BTreeSet, vec, vec::Vec};

    const K4: u64 = 4096;

    /// An empty pin table with its slots on the host heap.
    fn table<P>() -> PinTable<P, Vec<Option<Slot<P>>>> {
        PinTable::new((0..MAX_PINS).map(|_| None).collect())
    }

    /// A log over `ranges` with `hint`, its storage on the host heap.
    fn log(ranges: &[(u64, u64)], hint: u64) -> DirtyLog<Vec<LogRange>, Vec<u64>> {
        let mut out = vec![LogRange::default(); ranges.len()];
        let l = log_layout(ranges, hint, &mut out).unwrap();
        DirtyLog::new(out, vec![0; l.words() as usize], l).unwrap()
    }

    /// Everything a report of the window emits.
    fn report(l: &mut DirtyLog<Vec<LogRange>, Vec<u64>>, iova: u64, len: u64) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        l.report(iova, len, |a, n| v.push((a, n)));
        v
    }

    #[test]
    fn layout_validates_like_the_uapi() {
        let mut out = [LogRange::default(); 4];
        assert_eq!(log_layout(&[], K4, &mut out), Err(Errno::Inval));
        assert_eq!(log_layout(&[(0, 0)], K4, &mut out), Err(Errno::Inval));
        assert_eq!(
            log_layout(&[(u64::MAX - K4 + 1, 2 * K4)], K4, &mut out),
            Err(Errno::Overflow)
        );
        assert_eq!(
            log_layout(&[(0, 2 * K4), (K4, K4)], K4, &mut out),
            Err(Errno::Inval)
        );
        assert_eq!(log_layout(&[(0, K4); 5], K4, &mut out), Err(Errno::TooBig));
        // A range that ends at the top of the address space is fine.
        let l = log_layout(&[(u64::MAX - K4 + 1, K4)], K4, &mut out).unwrap();
        assert_eq!((l.shift, l.bits), (12, 1));
        // Adjacent ranges, given out of order, are sorted.
        let l = log_layout(&[(2 * K4, K4), (0, 2 * K4)], K4, &mut out).unwrap();
        assert_eq!(l.bits, 3);
        assert_eq!(out[0].start, 0);
        assert_eq!(out[1].first_bit, 2);
    }

    #[test]
    fn granularity_follows_the_hint_and_the_bound() {
        let mut out = [LogRange::default(); 2];
        for (hint, shift) in [
            (K4, 12),
            (1 << 21, 21),
            (0, 12),
            (3000, 12),
            (12288, 12),
            (1, 12),
        ] {
            let l = log_layout(&[(0, 1 << 30)], hint, &mut out).unwrap();
            assert_eq!(l.shift, shift, "hint {hint}");
            assert_eq!(l.page_size(), 1 << shift);
        }
        // The whole address space fits the bitmap bound.
        let l = log_layout(&[(0, 1 << 63), (1 << 63, 1 << 63)], K4, &mut out).unwrap();
        assert!(l.bits <= MAX_LOG_BITS);
        assert_eq!(l.shift, 64 - 28);
    }

    #[test]
    fn marks_are_reported_once_then_cleared() {
        let mut l = log(&[(0x10000, 0x10000), (0x40000, 0x4000)], K4);
        l.mark(0x10010, 8);
        l.mark(0x11000, 0x2000);
        l.mark(0x40fff, 2);
        // Outside every range: not logged.
        l.mark(0x30000, 0x1000);
        l.mark(0, 0);
        assert_eq!(
            report(&mut l, 0, 1 << 20),
            [(0x10000, 0x3000), (0x40000, 0x2000)]
        );
        assert_eq!(report(&mut l, 0, 1 << 20), []);
    }

    #[test]
    fn a_window_clips_and_keeps_what_it_does_not_cover() {
        // At 2 MiB granularity a page reaches past a 4 KiB window.
        let mut l = log(&[(0, 1 << 22)], 1 << 21);
        l.mark(0x1000, 1);
        assert_eq!(report(&mut l, 0x1000, 0x1000), [(0x1000, 0x1000)]);
        // Still marked: the report did not cover the whole page.
        assert_eq!(report(&mut l, 0, 1 << 21), [(0, 1 << 21)]);
        assert_eq!(report(&mut l, 0, 1 << 21), []);
    }

    #[test]
    fn stretches_merge_across_ranges_that_touch() {
        let mut l = log(&[(0, 2 * K4), (2 * K4, 2 * K4)], K4);
        l.mark(K4, 2 * K4);
        assert_eq!(report(&mut l, 0, 4 * K4), [(K4, 2 * K4)]);
    }

    #[test]
    fn the_top_of_the_address_space() {
        let top = u64::MAX - 2 * K4 + 1;
        let mut l = log(&[(top, 2 * K4)], K4);
        l.mark(u64::MAX, 1);
        l.mark(u64::MAX - 5, 100);
        assert_eq!(report(&mut l, top, 2 * K4), [(u64::MAX - K4 + 1, K4)]);
        let mut l = log(&[(0, 1 << 63), (1 << 63, 1 << 63)], K4);
        l.mark(0, u64::MAX);
        // The window's length stops one byte short of the top.
        assert_eq!(report(&mut l, 0, u64::MAX), [(0, u64::MAX)]);
        // Its last (64 GiB) page was not covered whole, so it stays marked.
        let g = 1u64 << 36;
        assert_eq!(report(&mut l, 1, u64::MAX), [(u64::MAX - g + 1, g)]);
    }

    /// Property: against a set of written 4 KiB pages, a report of every
    /// window covers every written page in it, and nothing that was not
    /// written (at 4 KiB granularity), and a later full report finds
    /// exactly the pages no window covered.
    #[test]
    fn random_marks_and_windows_match_a_model() {
        let mut rng = Rng::new(0xd1a7);
        for _ in 0..300 {
            let n = 1 + rng.index(4);
            let mut ranges = Vec::new();
            let mut at = rng.below(16) * K4;
            for _ in 0..n {
                let len = (1 + rng.below(64)) * K4;
                ranges.push((at, len));
                at += len + rng.below(4) * K4;
            }
            let mut l = log(&ranges, K4);
            let mut written = BTreeSet::new();
            for _ in 0..rng.index(20) {
                let iova = rng.below(at + 4 * K4);
                let len = 1 + rng.below(3 * K4);
                l.mark(iova, len);
                for page in iova / K4..=(iova + len - 1) / K4 {
                    let p = page * K4;
                    if ranges.iter().any(|&(s, n)| p >= s && p < s + n) {
                        written.insert(p);
                    }
                }
            }
            let wfirst = rng.below(at / K4 + 1) * K4;
            let wlen = (1 + rng.below(64)) * K4;
            let mut seen = BTreeSet::new();
            for (a, n) in report(&mut l, wfirst, wlen) {
                assert!(a % K4 == 0 && n % K4 == 0);
                for p in (a..a + n).step_by(K4 as usize) {
                    assert!(written.contains(&p), "reported {p:#x} never written");
                    seen.insert(p);
                }
            }
            let inside: BTreeSet<u64> = written
                .iter()
                .copied()
                .filter(|&p| p >= wfirst && p < wfirst + wlen)
                .collect();
            assert_eq!(seen, inside);
            let rest: BTreeSet<u64> = report(&mut l, 0, u64::MAX)
                .into_iter()
                .flat_map(|(a, n)| (a..a + n).step_by(K4 as usize))
                .collect();
            let expect: BTreeSet<u64> = written.difference(&inside).copied().collect();
            assert_eq!(rest, expect);
        }
    }

    /// Negative control for the property above: a log that forgets marks
    /// (a mark of zero length) fails the comparison with the model.
    #[test]
    fn the_model_comparison_catches_a_lost_write() {
        let mut l = log(&[(0, 16 * K4)], K4);
        l.mark(3 * K4, 0);
        let v = report(&mut l, 0, 16 * K4);
        assert_ne!(v, [(3 * K4, K4)]);
    }

    #[test]
    fn pins_are_bounded_and_validated() {
        let mut t = table::<u32>();
        assert_eq!(t.begin(1, 1, true, K4), Err(Errno::Inval));
        assert_eq!(t.begin(0, 0, true, K4), Err(Errno::Inval));
        assert_eq!(t.begin(u64::MAX - K4 + 1, 2, true, K4), Err(Errno::Inval));
        assert_eq!(
            t.begin(0, MAX_PINNED_PAGES + 1, true, K4),
            Err(Errno::NoSpc)
        );
        for i in 0..MAX_PINS as u64 {
            let id = t.begin(i * K4, 1, false, K4).unwrap();
            assert!(matches!(t.finish(id, Some(i as u32)), Finished::Held));
        }
        assert_eq!(t.begin(1 << 40, 1, false, K4), Err(Errno::NoSpc));
        assert_eq!(t.count(), MAX_PINS);
        let mut n = 0;
        assert!(t.unmap(0, 1 << 40, |_| n += 1));
        assert_eq!((n, t.count(), t.pages()), (MAX_PINS, 0, 0));
    }

    #[test]
    fn unmap_waits_for_users_and_pins_in_progress() {
        let mut t = table::<&str>();
        let a = t.begin(0x1000, 2, true, K4).unwrap();
        // In progress: the unmap must wait, and revokes the pin.
        assert!(!t.unmap(0x2000, 0x1000, |_| panic!()));
        assert!(matches!(t.finish(a, Some("a")), Finished::Revoked("a")));
        // Until the caller has unpinned, the unmap still waits.
        assert!(!t.unmap(0x2000, 0x1000, |_| panic!()));
        assert_eq!(t.release(a), None);
        assert!(t.unmap(0x2000, 0x1000, |_| panic!()));
        assert_eq!(t.count(), 0);

        let b = t.begin(0x1000, 2, true, K4).unwrap();
        assert!(matches!(t.finish(b, Some("b")), Finished::Held));
        assert_eq!(t.acquire(b, true), Ok(&"b"));
        // A range next to the pin does not touch it.
        assert!(t.unmap(0x3000, 0x1000, |_| panic!()));
        assert!(t.unmap(0, 0x1000, |_| panic!()));
        // In use: revoked, kept until the user leaves.
        assert!(!t.unmap(0x2fff, 1, |_| panic!()));
        assert_eq!(t.acquire(b, true), Err(Errno::Fault));
        assert!(!t.valid(b));
        // The last user leaving hands the pages back for unpinning...
        assert_eq!(t.release(b), Some("b"));
        assert!(!t.unmap(0x2fff, 1, |_| panic!()));
        // ...and once they are unpinned the unmap's retry finds nothing.
        assert_eq!(t.release(b), None);
        assert!(t.unmap(0x2fff, 1, |_| panic!()));
        assert_eq!((t.count(), t.pages()), (0, 0));
    }

    #[test]
    fn unpin_and_failure_free_the_budget() {
        let mut t = table::<u8>();
        let a = t.begin(0, 3, false, K4).unwrap();
        assert!(matches!(t.finish(a, None), Finished::Failed));
        assert_eq!(t.pages(), 0);
        let b = t.begin(0, 3, true, K4).unwrap();
        assert!(matches!(t.finish(b, Some(7)), Finished::Held));
        let mut w = Vec::new();
        t.for_each_writable(|i, n| w.push((i, n)));
        assert_eq!(w, [(0, 3 * K4)]);
        assert_eq!(t.acquire(b, true), Ok(&7));
        assert_eq!(t.unpin(b), None);
        assert_eq!(t.release(b), Some(7));
        assert_eq!(t.count(), 1);
        assert_eq!(t.release(b), None);
        assert_eq!((t.count(), t.pages()), (0, 0));
        // An idle pin is handed back at once.
        let d = t.begin(0, 1, false, K4).unwrap();
        assert!(matches!(t.finish(d, Some(9)), Finished::Held));
        assert_eq!(t.acquire(d, true), Err(Errno::Perm));
        assert_eq!(t.acquire(d, false), Ok(&9));
        assert_eq!(t.release(d), None);
        assert_eq!(t.unpin(d), Some(9));
        assert_eq!(t.release(d), None);
        assert_eq!(t.count(), 0);
        // Ids are not reused.
        let c = t.begin(0, 1, false, K4).unwrap();
        assert_ne!(b, c);
        assert_eq!(t.release(b), None);
    }
}
