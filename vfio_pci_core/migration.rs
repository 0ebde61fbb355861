// SPDX-License-Identifier: GPL-2.0

//! VFIO migration v2 for devices built on the library.
//!
//! The library runs the state machine and owns the stream; a device takes
//! part through three hooks of [`PciDevice`] only ([`PciDevice::save`],
//! [`PciDevice::load`] and [`PciDevice::mig_variant`]), so it never sees how
//! the library keeps configuration space, interrupts or the data files. The
//! state machine and stream format are kernel-free and host-tested
//! ([`super::emul::mig`]); this file adds the data files and the locking.
//!
//! Locks nest in one order: the migration mutex, then a data file's mutex,
//! then the library's spinlock.

use super::{
    emul::{
        mig::{self, Arc as Step, Identity, MigState, Writer},
        EResult, Errno,
    },
    kerr, BarMemory, Inner, PciCore, PciDevice,
};
use crate::ffi::{
    bindings as vb,
    vfio::{DataFile, DataFileOps, UserBuf},
};
use kernel::{
    bindings, new_mutex,
    page::PAGE_SIZE,
    prelude::*,
    sync::{Arc, Mutex},
};

/// `ENOMSG`, which the kernel crate does not name.
fn enomsg() -> Error {
    Error::from_errno(-(bindings::ENOMSG as i32))
}

/// The migration state and the data files that are open.
pub(super) struct MigCtl {
    state: MigState,
    saving: Option<Arc<MigFile>>,
    resuming: Option<Arc<MigFile>>,
    /// Stream lengths by [`Records::slot`], once counted (0: not yet). They
    /// depend on the device's layout only (the `save` hook's contract).
    sizes: [usize; 3],
}

impl MigCtl {
    /// The state of a device that was just opened or reset.
    pub(super) const fn new() -> Self {
        Self {
            state: MigState::Running,
            saving: None,
            resuming: None,
            sizes: [0; 3],
        }
    }
}

/// Bytes of stream a data file keeps in itself: the serial card's whole
/// stream fits, so a migration cycle allocates nothing for it beyond the
/// file. A longer stream (a device with BAR memory) moves to the heap.
const INLINE: usize = 320;

/// A data file's stream: in the file itself while it is short, else in a
/// vector.
struct Stream {
    inline: [u8; INLINE],
    /// Bytes used of `inline`; zero once the stream is in `heap`.
    len: usize,
    /// Bytes of `inline` that may be non-zero: those from here on are zero,
    /// so growing into them needs no clearing (a new file's stream is
    /// written or received once, and clearing it again would double the
    /// bytes a migration cycle moves).
    dirty: usize,
    /// The stream once it outgrew `inline`. A resuming stream grows with
    /// each write, up to [`mig::MAX_STREAM`]; `KVVec` lets a large one live
    /// in virtually contiguous memory rather than demand physically
    /// contiguous pages (growth by doubling would otherwise ask `kmalloc`
    /// for 128 KiB).
    heap: KVVec<u8>,
}

impl Stream {
    const fn new() -> Self {
        Self {
            inline: [0; INLINE],
            len: 0,
            dirty: 0,
            heap: KVVec::new(),
        }
    }

    fn on_heap(&self) -> bool {
        self.heap.capacity() > 0
    }

    fn as_slice(&self) -> &[u8] {
        if self.on_heap() {
            &self.heap
        } else {
            self.inline.get(..self.len).unwrap_or(&[])
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Grows the stream by `n` zeroed bytes and returns them; `EFBIG` past
    /// [`mig::MAX_STREAM`].
    fn grow(&mut self, n: usize) -> Result<&mut [u8]> {
        let old = self.len();
        let new = old.checked_add(n).ok_or(EFBIG)?;
        if new > mig::MAX_STREAM {
            return Err(EFBIG);
        }
        if !self.on_heap() && new <= INLINE {
            // Only the part that held bytes before is cleared.
            if let Some(used) = self.inline.get_mut(old..new.min(self.dirty)) {
                used.fill(0);
            }
            self.dirty = self.dirty.max(new);
            self.len = new;
            return self.inline.get_mut(old..new).ok_or(EINVAL);
        }
        if !self.on_heap() {
            let mut heap = KVVec::with_capacity(new, GFP_KERNEL_ACCOUNT)?;
            heap.extend_from_slice(self.as_slice(), GFP_KERNEL_ACCOUNT)?;
            self.heap = heap;
            self.len = 0;
        }
        self.heap.resize(new, 0, GFP_KERNEL_ACCOUNT)?;
        self.heap.get_mut(old..).ok_or(EINVAL)
    }

    /// Cuts the stream back to its first `len` bytes.
    fn truncate(&mut self, len: usize) {
        if self.on_heap() {
            self.heap.truncate(len);
        } else {
            self.len = self.len.min(len);
        }
    }

    /// Empties the stream and frees its memory.
    fn clear(&mut self) {
        self.heap = KVVec::new();
        self.len = 0;
    }
}

/// The contents of a data file.
struct FileData {
    /// The stream: produced in full before it is read (saving), or received
    /// so far (resuming).
    buf: Stream,
    /// Bytes read so far (saving).
    pos: usize,
    /// The device left the state the file belongs to: reads and writes fail.
    disabled: bool,
    /// The saving file is in a `PRE_COPY` state: reaching the end of what
    /// there is means "no more for now" (`ENOMSG`), not end of stream.
    precopy: bool,
    /// The resuming file received data it refused; it takes no more.
    broken: bool,
    /// Bytes of `buf` (resuming) already checked as complete records, so
    /// each write checks only what is new.
    checked: usize,
    /// What the checks found: the last state record's payload, and the
    /// bytes of a record still arriving.
    got: mig::Received,
}

/// A migration data file: a saving file is read, a resuming file written.
#[pin_data]
pub(crate) struct MigFile {
    name: &'static [u8],
    variant: u32,
    /// Userspace's `MIG_PRECOPY_INFOv2` opt-in as it was when the file
    /// opened (QEMU opts in when it opens the device, before migrating).
    precopy_v2: bool,
    #[pin]
    data: Mutex<FileData>,
}

impl MigFile {
    fn new(
        name: &'static [u8],
        variant: u32,
        precopy_v2: bool,
        precopy: bool,
    ) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                name,
                variant,
                precopy_v2,
                data <- new_mutex!(FileData {
                    buf: Stream::new(),
                    pos: 0,
                    disabled: false,
                    precopy,
                    broken: false,
                    checked: 0,
                    got: mig::Received {
                        state: None,
                        partial: 0,
                    },
                }),
            }),
            GFP_KERNEL,
        )
    }

    fn id(&self) -> Identity<'static> {
        Identity {
            name: self.name,
            variant: self.variant,
        }
    }

    /// Ends the file's use: every later read or write fails with `ENODEV`,
    /// and its memory goes now rather than when userspace closes it.
    fn disable(&self) {
        self.data.lock().disable();
    }
}

impl FileData {
    /// [`MigFile::disable`], under the file's lock.
    fn disable(&mut self) {
        self.disabled = true;
        self.buf.clear();
        self.pos = 0;
    }
}

// The model's `minsz` is the uAPI struct's size.
const _: () = assert!(size_of::<vb::vfio_precopy_info>() == mig::PRECOPY_INFO_MINSZ);

impl DataFileOps for MigFile {
    fn read(&self, out: &UserBuf) -> Result<usize> {
        let mut d = self.data.lock();
        if d.disabled {
            return Err(ENODEV);
        }
        let rest = d.buf.as_slice().get(d.pos..).ok_or(EINVAL)?;
        if rest.is_empty() {
            // The uAPI: in PRE_COPY the end of what there is now is a
            // temporary end of stream; in STOP_COPY it is the end.
            return if d.precopy { Err(enomsg()) } else { Ok(0) };
        }
        let n = rest.len().min(out.len());
        out.write(rest.get(..n).ok_or(EINVAL)?)?;
        d.pos += n;
        Ok(n)
    }

    fn write(&self, input: &UserBuf) -> Result<usize> {
        let mut d = self.data.lock();
        if d.disabled {
            return Err(ENODEV);
        }
        if d.broken {
            return Err(EINVAL);
        }
        let old = d.buf.len();
        if let Err(e) = d.buf.grow(input.len()).and_then(|tail| input.read(tail)) {
            d.buf.truncate(old);
            return Err(e);
        }
        // Check what arrived as soon as it can be checked, so a bad stream
        // fails the write that brought it, not only the final load. Records
        // checked by earlier writes are not checked again.
        let from = d.checked;
        match mig::check_stream(d.buf.as_slice().get(from..).unwrap_or(&[]), &self.id()) {
            Ok(got) => {
                if let Some((start, end)) = got.state {
                    d.got.state = Some((start + from, end + from));
                }
                d.got.partial = got.partial;
                d.checked = d.buf.len() - got.partial;
                Ok(input.len())
            }
            Err(e) => {
                d.broken = true;
                Err(kerr(e))
            }
        }
    }

    fn ioctl(&self, cmd: u32, arg: usize) -> Result<isize> {
        if cmd != mig::VFIO_MIG_GET_PRECOPY_INFO {
            return Err(ENOTTY);
        }
        let u = UserBuf::new(arg, mig::PRECOPY_INFO_MINSZ);
        let mut info: vb::vfio_precopy_info = u.read_obj()?;
        if (info.argsz as usize) < mig::PRECOPY_INFO_MINSZ {
            return Err(EINVAL);
        }
        let initial = {
            let d = self.data.lock();
            // Valid only on a saving file in a PRE_COPY state.
            if d.disabled || !d.precopy {
                return Err(EINVAL);
            }
            d.buf.len().saturating_sub(d.pos)
        };
        if self.precopy_v2 {
            // Flags are output with v2; this device never reinitialises.
            info.flags = 0;
        }
        info.initial_bytes = initial as u64;
        // The device sends its whole state in STOP_COPY; nothing it does in
        // PRE_COPY makes earlier data stale.
        info.dirty_bytes = 0;
        u.write_obj(&info)?;
        Ok(0)
    }
}

/// Which records a stream holds.
#[derive(Clone, Copy)]
struct Records {
    identity: bool,
    state: bool,
}

impl Records {
    /// Where the length of such a stream is cached in [`MigCtl::sizes`].
    fn slot(self) -> usize {
        match (self.identity, self.state) {
            (true, false) => 0,
            (true, true) => 1,
            _ => 2,
        }
    }
}

impl<D: PciDevice> PciCore<D> {
    fn mig_id(&self) -> Identity<'static> {
        Identity {
            name: D::NAME.to_bytes(),
            variant: self.sh.dev.mig_variant(),
        }
    }

    /// Writes the records `r` of the stream for the state in `g`.
    fn write_stream(&self, g: &Inner<D::State>, w: &mut Writer<'_>, r: Records) -> EResult {
        let id = self.mig_id();
        if r.identity {
            w.record(mig::KIND_IDENTITY, &id, |_| Ok(()))?;
        }
        if r.state {
            w.record(mig::KIND_STATE, &id, |w| {
                // The layout's fingerprint, then only the bytes that can
                // change: the target has the same layout or refuses.
                w.section(mig::TAG_CONFIG, |w| {
                    w.u32(self.cfg_fp)?;
                    w.fill(self.cfg_map.len(), |b| {
                        g.ctx.cfg.save_changeable(&self.cfg_map, b)
                    })
                })?;
                w.section(mig::TAG_IRQ, |w| w.u8(g.ctx.irq_level().into()))?;
                if self.memories().next().is_some() {
                    // The pages are read under the lock, as region accesses
                    // are; the guest is stopped, so nothing writes them.
                    w.section(mig::TAG_BAR_MEMORY, |w| {
                        for p in self.memories().flat_map(|m| m.pages.iter()) {
                            w.fill(PAGE_SIZE, |b| p.read(0, b).map_err(|_| Errno::Inval))?;
                        }
                        Ok(())
                    })?;
                }
                self.sh.dev.save(&g.dev, w)
            })?;
        }
        Ok(())
    }

    /// Appends the stream's records `r` for the device's current state to
    /// `d` (a saving file's data, under its lock): the room is made outside
    /// the library's lock (a spinlock) at the length counted the first
    /// time, then written under it.
    fn snapshot(&self, sizes: &mut [usize; 3], r: Records, d: &mut FileData) -> Result {
        let slot = sizes.get_mut(r.slot()).ok_or(EINVAL)?;
        if *slot == 0 {
            let g = self.sh.inner.lock();
            let mut w = Writer::counting();
            self.write_stream(&g, &mut w, r).map_err(kerr)?;
            *slot = w.len();
        }
        let n = *slot;
        let old = d.buf.len();
        let written = d.buf.grow(n).and_then(|out| {
            let g = self.sh.inner.lock();
            let mut w = Writer::new(out);
            // A device whose saved size changed (against the hook's
            // contract) gets `EINVAL` rather than a short stream.
            self.write_stream(&g, &mut w, r).map_err(kerr)?;
            if w.len() != n {
                return Err(EINVAL);
            }
            Ok(())
        });
        if written.is_err() {
            d.buf.truncate(old);
        }
        written
    }

    /// Loads the stream the resuming file received (`d`, its data under
    /// its lock).
    fn load(&self, d: &FileData) -> Result {
        if d.broken {
            return Err(EINVAL);
        }
        // Every byte was checked as it arrived.
        let s = mig::sections(d.buf.as_slice(), d.got).map_err(kerr)?;
        let mut cfg = mig::Reader::new(s.get(mig::TAG_CONFIG).map_err(kerr)?);
        if cfg.u32().map_err(kerr)? != self.cfg_fp {
            return Err(EINVAL);
        }
        let cfg = cfg.bytes(cfg.remaining()).map_err(kerr)?;
        let mut irq = mig::Reader::new(s.get(mig::TAG_IRQ).map_err(kerr)?);
        let asserted = irq.bool().map_err(kerr)?;
        irq.finish().map_err(kerr)?;
        // The BARs' memory: exactly its size, or no section for a device
        // without any.
        let memory_len: usize = self.memories().map(BarMemory::len).sum();
        let memory = if memory_len > 0 {
            let m = s.get(mig::TAG_BAR_MEMORY).map_err(kerr)?;
            if m.len() != memory_len {
                return Err(EINVAL);
            }
            m
        } else {
            if s.count(mig::TAG_BAR_MEMORY..=mig::TAG_BAR_MEMORY) != 0 {
                return Err(EINVAL);
            }
            &[]
        };
        let mut g = self.sh.inner.lock();
        let Inner { ctx, dev, .. } = &mut *g;
        // Everything is checked before anything changes: the configuration
        // space first (without changing it), then the device's own sections
        // (the hook checks all before it applies any).
        self.cfg_map.check(cfg).map_err(kerr)?;
        self.sh.dev.load(dev, &s).map_err(kerr)?;
        ctx.cfg
            .restore_changeable(&self.cfg_map, cfg)
            .map_err(kerr)?;
        let pages = self.memories().flat_map(|m| m.pages.iter());
        for (p, data) in pages.zip(memory.chunks(PAGE_SIZE)) {
            p.write(0, data)?;
        }
        // An edge held back before the load belonged to the old state.
        ctx.load_irq_level(asserted);
        Ok(())
    }

    /// One arc of the state machine; the file it opens, if any.
    fn step(&self, ctl: &mut MigCtl, next: MigState, v2: bool) -> Result<Option<DataFile>> {
        let id = self.mig_id();
        let file = |precopy: bool| MigFile::new(id.name, id.variant, v2, precopy);
        let step = mig::arc(ctl.state, next).ok_or(EINVAL)?;
        let out = match step {
            Step::Nothing => None,
            Step::Stop => {
                self.sh.inner.lock().ctx.stop();
                None
            }
            Step::Run => {
                self.sh.inner.lock().ctx.run();
                None
            }
            Step::StartPreCopy | Step::StopCopy => {
                let precopy = step == Step::StartPreCopy;
                let f = file(precopy)?;
                self.snapshot(
                    &mut ctl.sizes,
                    Records {
                        identity: true,
                        state: !precopy,
                    },
                    &mut f.data.lock(),
                )?;
                let df = DataFile::new(f.clone(), false)?;
                ctl.saving = Some(f);
                Some(df)
            }
            Step::FinishPreCopy => {
                let f = ctl.saving.as_ref().ok_or(EINVAL)?;
                // The device stops here (STOP_COPY is a stopped state) before
                // its state is taken.
                self.sh.inner.lock().ctx.stop();
                let mut d = f.data.lock();
                self.snapshot(
                    &mut ctl.sizes,
                    Records {
                        identity: false,
                        state: true,
                    },
                    &mut d,
                )?;
                d.precopy = false;
                // The same file goes on: no new one for userspace.
                None
            }
            Step::EndSave => {
                if let Some(f) = ctl.saving.take() {
                    f.disable();
                }
                None
            }
            Step::StartResume => {
                let f = file(false)?;
                let df = DataFile::new(f.clone(), true)?;
                ctl.resuming = Some(f);
                Some(df)
            }
            Step::Load => {
                let f = ctl.resuming.take().ok_or(EINVAL)?;
                // Loaded and disabled in one hold of the file's lock.
                let mut d = f.data.lock();
                if let Err(e) = self.load(&d) {
                    drop(d);
                    // A failed load keeps the file, as the state stays.
                    ctl.resuming = Some(f);
                    return Err(e);
                }
                d.disable();
                None
            }
        };
        ctl.state = next;
        Ok(out)
    }

    /// `MIG_DEVICE_STATE` set: walks the arcs to `new`.
    ///
    /// A failed arc leaves the device in the last state it reached, with the
    /// errno of the failure; the walk is at most four arcs long.
    pub(super) fn mig_set_state(&self, new: u32, v2: bool) -> Result<Option<DataFile>> {
        let new = MigState::from_u32(new).ok_or(EINVAL)?;
        let mut ctl = self.mig.lock();
        let mut out = None;
        while ctl.state != new {
            let next = mig::next_state(ctl.state, new).map_err(kerr)?;
            // Only the arc into the requested state may open a file; the
            // table never puts such an arc mid-way, and a file opened there
            // would be dropped (closed) here rather than leak.
            out = self.step(&mut ctl, next, v2)?;
        }
        Ok(out)
    }

    /// `MIG_DEVICE_STATE` get.
    pub(super) fn mig_state(&self) -> u32 {
        self.mig.lock().state as u32
    }

    /// `MIG_DATA_SIZE`: the bytes a `STOP_COPY` stream would hold now.
    pub(super) fn mig_data_size(&self) -> Result<usize> {
        let g = self.sh.inner.lock();
        let mut w = Writer::counting();
        self.write_stream(
            &g,
            &mut w,
            Records {
                identity: true,
                state: true,
            },
        )
        .map_err(kerr)?;
        Ok(w.len())
    }

    /// A device reset (`VFIO_DEVICE_RESET`, close): back to `RUNNING` with
    /// no data file in use (open files fail every later read and write with
    /// `ENODEV`), and the function reset. Under the migration mutex, so that
    /// no state change falls between the two.
    pub(super) fn reset_all(&self) {
        let mut ctl = self.mig.lock();
        ctl.state = MigState::Running;
        for f in [ctl.saving.take(), ctl.resuming.take()]
            .into_iter()
            .flatten()
        {
            f.disable();
        }
        self.reset();
    }
}
