// SPDX-License-Identifier: GPL-2.0

//! Region access: `read()` and `write()` on the device file.
//!
//! Decoding a position ([`super::emul::region`]) and splitting a BAR access
//! between the MSI-X table, the PBA, the BAR's memory and the device
//! ([`super::emul::rdwr`]) are kernel-free and host-tested; this file moves
//! the bytes between userspace and the library under its lock.

use super::{
    emul::{
        rdwr::Target,
        region::{self},
        uapi::*,
    },
    kerr, Ctx, Inner, Lib, PciCore, PciDevice,
};
use crate::ffi::{mem::SharedPage, vfio::UserBuf};
use core::ops::Range;
use kernel::{page::PAGE_SIZE, prelude::*};

/// A BAR's plain memory (see [`PciDevice::bar_memory`]).
///
/// The pages are fixed when the device is created. Region accesses and reset
/// touch them under the library's lock; userspace may write them at any time
/// through a mapping, which the lock cannot order, as with real device memory.
pub(super) struct BarMemory {
    /// Where the memory is in the BAR.
    pub(super) range: Range<u64>,
    /// The pages backing it, in order.
    pub(super) pages: KVec<SharedPage>,
}

impl BarMemory {
    /// Memory for `range` of a BAR, zeroed.
    pub(super) fn new(range: Range<u64>) -> Result<Self> {
        let n = usize::try_from(range.end - range.start).map_err(|_| EINVAL)? / PAGE_SIZE;
        let mut pages = KVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            pages.push(SharedPage::new()?, GFP_KERNEL)?;
        }
        Ok(Self { range, pages })
    }

    /// The memory's size in bytes.
    pub(super) fn len(&self) -> usize {
        self.pages.len() * PAGE_SIZE
    }

    /// Reads (or writes) `buf` at `off` bytes into the memory, page by page.
    fn access(&self, off: u64, buf: &mut [u8], write: bool) -> Result {
        let mut off = usize::try_from(off).map_err(|_| EINVAL)?;
        let mut done = 0;
        while done < buf.len() {
            let page = self.pages.get(off / PAGE_SIZE).ok_or(EINVAL)?;
            let at = off % PAGE_SIZE;
            let n = (PAGE_SIZE - at).min(buf.len() - done);
            let chunk = buf.get_mut(done..done + n).ok_or(EINVAL)?;
            if write {
                page.write(at, chunk)?;
            } else {
                page.read(at, chunk)?;
            }
            done += n;
            off += n;
        }
        Ok(())
    }

    /// Zeroes the memory.
    pub(super) fn zero(&self) {
        self.pages.iter().for_each(SharedPage::zero);
    }
}

/// Largest chunk moved between userspace and a region per lock hold.
const CHUNK: usize = 256;

/// Largest access served from a register-sized buffer.
const SMALL: usize = 8;

impl<D: PciDevice> PciCore<D> {
    /// `read()` on the device file: the whole count, up to the region's end
    /// (see [`region::decode`]), moved in chunks of at most [`CHUNK`] bytes,
    /// one lock hold each. A fault after some bytes were moved ends the
    /// read with what was moved, as a short count.
    pub(super) fn read_all(&self, out: &UserBuf, pos: i64) -> Result<usize> {
        // Register-sized accesses, nearly all of them, get a buffer that
        // costs nothing to clear.
        if out.len() <= SMALL {
            return self.read_via::<SMALL>(out, pos);
        }
        self.in_chunks(out, pos, |part, at| self.read_via::<CHUNK>(part, at))
    }

    /// `write()` on the device file, as [`Self::read_all`] reads.
    pub(super) fn write_all(&self, input: &UserBuf, pos: i64) -> Result<usize> {
        if input.len() <= SMALL {
            return self.write_via::<SMALL>(input, pos);
        }
        self.in_chunks(input, pos, |part, at| self.write_via::<CHUNK>(part, at))
    }

    /// Runs `f` on the buffer's consecutive chunks of at most [`CHUNK`]
    /// bytes, for as much of it as the region serves from `pos`.
    fn in_chunks(
        &self,
        user: &UserBuf,
        pos: i64,
        f: impl Fn(&UserBuf, i64) -> Result<usize>,
    ) -> Result<usize> {
        let total = region::decode(pos, user.len(), |i| self.region_size(i))
            .map_err(kerr)?
            .count;
        let mut done = 0;
        while done < total {
            let n = (total - done).min(CHUNK);
            let part = user.sub(done, n).ok_or(EINVAL)?;
            // `decode` checked that `pos + total` is a file position.
            let at = pos.checked_add(done as i64).ok_or(EINVAL)?;
            match f(&part, at) {
                Ok(k) if k > 0 => done += k,
                Ok(_) => break,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(done)
    }

    /// A read through an `N`-byte kernel buffer: up to `N` bytes.
    fn read_via<const N: usize>(&self, out: &UserBuf, pos: i64) -> Result<usize> {
        let mut buf = [0u8; N];
        let n = out.len().min(N);
        let chunk = buf.get_mut(..n).ok_or(EINVAL)?;
        let n = self.access(pos, chunk, false)?;
        out.write(buf.get(..n).ok_or(EINVAL)?)?;
        Ok(n)
    }

    /// A write through an `N`-byte kernel buffer: up to `N` bytes.
    fn write_via<const N: usize>(&self, input: &UserBuf, pos: i64) -> Result<usize> {
        let mut buf = [0u8; N];
        let n = input.len().min(N);
        let chunk = buf.get_mut(..n).ok_or(EINVAL)?;
        input.read(chunk)?;
        self.access(pos, chunk, true)
    }

    /// One access to a region, on a kernel buffer, under the lock: returns
    /// the bytes served.
    ///
    /// Inlined into each caller, so that the register path of a read and of
    /// a write is one function with the device's hooks inside it: under
    /// emulation (and with return thunks) every call and return costs
    /// about as much as the register access itself.
    #[inline(always)]
    fn access(&self, pos: i64, buf: &mut [u8], write: bool) -> Result<usize> {
        let a = region::decode(pos, buf.len(), |i| self.region_size(i)).map_err(kerr)?;
        // The part of the buffer the region serves (all of it unless the
        // access runs past the region's end).
        let buf = buf.get_mut(..a.count).ok_or(EINVAL)?;
        if let Some(true) = self.process.get(a.index as usize) {
            // A BAR the device serves in process context, outside the lock.
            let lib = Lib { sh: &self.sh };
            self.sh
                .dev
                .bar_rw(&lib, a.index as usize, a.offset, buf, write);
            return Ok(buf.len());
        }
        let mut g = self.sh.inner.lock();
        let Inner { ctx, dev, .. } = &mut *g;
        match a.index {
            VFIO_PCI_CONFIG_REGION_INDEX => {
                let off = a.offset as usize;
                if write {
                    // Initiate Function Level Reset in the PCI Express
                    // capability: the function returns to its reset state.
                    if ctx.write_config(off, buf).map_err(kerr)? {
                        self.reset_locked(ctx, dev, false);
                    }
                } else {
                    ctx.cfg.read(off, buf).map_err(kerr)?;
                }
            }
            0..=VFIO_PCI_BAR5_REGION_INDEX => {
                self.bar_access(ctx, dev, a.index as usize, a.offset, buf, write)?
            }
            VFIO_PCI_NUM_REGIONS.. => {
                let i = (a.index - VFIO_PCI_NUM_REGIONS) as usize;
                match self.dev_region(a.index) {
                    Some(r) if write && r.writable => D::region_write(dev, ctx, i, a.offset, buf),
                    Some(_) if !write => D::region_read(dev, ctx, i, a.offset, buf),
                    _ => return Err(EINVAL),
                }
            }
            _ => return Err(EINVAL),
        }
        Ok(buf.len())
    }

    /// An access to BAR `bar`, split by [`super::emul::rdwr::BarParts`]
    /// between the MSI-X table and PBA (filled, writes dropped), the BAR's
    /// memory and the device.
    #[inline(always)]
    fn bar_access(
        &self,
        ctx: &mut Ctx,
        dev: &mut D::State,
        bar: usize,
        off: u64,
        buf: &mut [u8],
        write: bool,
    ) -> Result {
        if self.whole.get(bar).copied().unwrap_or(false) {
            if write {
                D::bar_write(dev, ctx, bar, off, buf);
            } else {
                D::bar_read(dev, ctx, bar, off, buf);
            }
            return Ok(());
        }
        let parts = self.parts.get(bar).ok_or(EINVAL)?;
        for run in parts.runs(off, buf.len()) {
            let chunk = buf.get_mut(run.at..run.at + run.len).ok_or(EINVAL)?;
            match (run.target, write) {
                (Target::Fill(_), true) => {}
                (Target::Fill(f), false) => chunk.fill(f),
                (Target::Memory(at), _) => {
                    let memory = self.memory.get(bar).and_then(Option::as_ref);
                    memory.ok_or(EINVAL)?.access(at, chunk, write)?;
                }
                (Target::Device(pos), true) => D::bar_write(dev, ctx, bar, pos, chunk),
                (Target::Device(pos), false) => D::bar_read(dev, ctx, bar, pos, chunk),
            }
        }
        Ok(())
    }
}
