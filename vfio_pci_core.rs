// SPDX-License-Identifier: GPL-2.0

//! The virtual PCI function library.
//!
//! [`PciCore`] owns every piece of VFIO PCI semantics: configuration space
//! with its permissions, region addressing, interrupts over eventfd, reset and
//! the device ioctls. Its state is private. A device built on it implements
//! [`PciDevice`] and sees only what that trait hands it: its own state, and a
//! [`Ctx`] through which it can raise interrupts and read the command
//! register. The compiler enforces the boundary: nothing else is visible.
//!
//! As `drivers/vfio/pci/` does, the files follow the uAPI: this one has the
//! device trait, the library's state and the `VfioOps` table; `intrs.rs`
//! the interrupt ioctls, `rdwr.rs` region access, `migration.rs` migration.
//! Each only adapts kernel-free, host-tested logic under [`emul`] to the
//! kernel (user copies, eventfds, locks, pages).

#[expect(
    dead_code,
    reason = "the DMA layer's first user, the NVMe device of issue 14, is not in yet"
)]
pub(crate) mod dma;
pub(crate) mod emul;
mod intrs;
mod migration;
mod rdwr;

use crate::ffi::{
    bindings as vb,
    dma::{DirtyBitmap, VfioDev},
    event::{EventHandler, EventSlot, Waker},
    eventfd::EventFd,
    mem::Mapping,
    vfio::{self, IrqfdSlot, UserBuf},
    work::{WorkHandler, WorkSlot},
};
use core::ops::Range;
use dma::Dma;
use emul::{
    config::{Bar, ChangeMap, ConfigSpace, MsixLayout},
    mig::{Sections, Writer},
    rdwr::BarParts,
    region::{self, Area, DevRegion, MAX_AREAS},
    uapi::*,
    EResult, Errno,
};
use kernel::{
    new_mutex, new_spinlock,
    page::{PAGE_SHIFT, PAGE_SIZE},
    prelude::*,
    sync::{Mutex, SpinLock},
};
use migration::MigCtl;
use rdwr::BarMemory;

// The library lists the areas of a region through the VFIO adapter.
const _: () = assert!(MAX_AREAS <= vfio::SPARSE_AREAS);

// The uAPI numbers of the kernel-free model must be the C headers' numbers.
macro_rules! same_as_c {
    ($($name:ident),* $(,)?) => {
        $(const _: () = assert!(
            emul::uapi::$name as u64 == crate::ffi::bindings::$name as u64,
            concat!(stringify!($name), " differs from linux/vfio.h"),
        );)*
    };
}
same_as_c!(
    VFIO_TYPE,
    VFIO_BASE,
    VFIO_DEVICE_FLAGS_RESET,
    VFIO_DEVICE_FLAGS_PCI,
    VFIO_REGION_INFO_FLAG_READ,
    VFIO_REGION_INFO_FLAG_WRITE,
    VFIO_REGION_INFO_FLAG_MMAP,
    VFIO_REGION_INFO_FLAG_CAPS,
    VFIO_REGION_INFO_CAP_TYPE,
    VFIO_REGION_TYPE_PCI_VENDOR_TYPE,
    VFIO_IRQ_INFO_EVENTFD,
    VFIO_IRQ_INFO_MASKABLE,
    VFIO_IRQ_INFO_AUTOMASKED,
    VFIO_IRQ_INFO_NORESIZE,
    VFIO_IRQ_SET_DATA_NONE,
    VFIO_IRQ_SET_DATA_BOOL,
    VFIO_IRQ_SET_DATA_EVENTFD,
    VFIO_IRQ_SET_ACTION_MASK,
    VFIO_IRQ_SET_ACTION_UNMASK,
    VFIO_IRQ_SET_ACTION_TRIGGER,
    VFIO_PCI_BAR0_REGION_INDEX,
    VFIO_PCI_BAR5_REGION_INDEX,
    VFIO_PCI_ROM_REGION_INDEX,
    VFIO_PCI_CONFIG_REGION_INDEX,
    VFIO_PCI_VGA_REGION_INDEX,
    VFIO_PCI_NUM_REGIONS,
    VFIO_PCI_INTX_IRQ_INDEX,
    VFIO_PCI_MSI_IRQ_INDEX,
    VFIO_PCI_MSIX_IRQ_INDEX,
    VFIO_PCI_ERR_IRQ_INDEX,
    VFIO_PCI_REQ_IRQ_INDEX,
    VFIO_PCI_NUM_IRQS,
);

/// Turns a model error into the kernel's.
fn kerr(e: Errno) -> Error {
    match e {
        Errno::Inval => EINVAL,
        Errno::NoTty => ENOTTY,
        Errno::NoSpc => ENOSPC,
        Errno::Fault => EFAULT,
        Errno::Busy => EBUSY,
        Errno::TooBig => E2BIG,
        Errno::Overflow => EOVERFLOW,
        Errno::Perm => EPERM,
    }
}

impl From<Errno> for Error {
    fn from(e: Errno) -> Self {
        kerr(e)
    }
}

// The uAPI structs' fixed parts the model names by size.
const _: () = assert!(core::mem::offset_of!(vb::vfio_device_info, cap_offset) == DEVICE_INFO_MINSZ);
const _: () = assert!(size_of::<vb::vfio_irq_info>() == IRQ_INFO_MINSZ);
const _: () = assert!(size_of::<vb::vfio_irq_set>() == IRQ_SET_MINSZ);

/// What a device built on the library implements.
pub(crate) trait PciDevice: Send + Sync + Sized + 'static {
    /// The device's mutable state, guarded by the library's lock.
    ///
    /// The lock is a spinlock: the hooks that get the state run in atomic
    /// context and must not sleep (no `GFP_KERNEL` allocation, no mutex, no
    /// user copy). A device with slow work defers it to a work item.
    type State: Send + Unpin;

    /// The name the VFIO core reports for the device's ops.
    const NAME: &'static CStr;

    /// The configuration space at reset: identity, BARs, capabilities. A
    /// builder error fails the device's creation with `EINVAL`.
    fn config(&self) -> EResult<ConfigSpace>;

    /// BAR `index` (0-5), as [`Self::config`] set it: [`Bar::None`] for
    /// the upper register of a 64-bit BAR (the device's creation fails with
    /// `EINVAL` otherwise).
    fn bar(&self, index: usize) -> Bar;

    /// The number of MSI vectors the device offers (0 for none).
    fn msi_vectors(&self) -> u32 {
        0
    }

    /// Plain memory in BAR `bar`: a range of the BAR that behaves as RAM,
    /// page aligned at both ends and clear of the MSI-X table's and PBA's
    /// pages (or the device's creation fails with `EINVAL`). The library
    /// backs it with zeroed pages: it serves the range's reads and writes
    /// itself (the BAR hooks never see them), lets userspace `mmap()` it,
    /// zeroes it on reset and carries it in the migration stream. Asked
    /// once, when the device is created.
    fn bar_memory(&self, _bar: usize) -> Option<Range<u64>> {
        None
    }

    /// The device's own regions (index `VFIO_PCI_NUM_REGIONS` and up, in
    /// order), at most [`region::MAX_DEV_REGIONS`]; each is reported with a
    /// region-type capability. Their accesses go to [`Self::region_read`]
    /// and [`Self::region_write`]. Asked at creation (a bad list fails it
    /// with `EINVAL`) and on every access, so it must not change.
    fn regions(&self) -> &[DevRegion] {
        &[]
    }

    /// A read of `data.len()` bytes at `off` of device region `region` (0
    /// for the first of [`Self::regions`]), checked to lie inside it. The
    /// buffer starts zeroed.
    fn region_read(
        _state: &mut Self::State,
        _ctx: &mut Ctx,
        _region: usize,
        _off: u64,
        _data: &mut [u8],
    ) {
    }

    /// A write of `data` at `off` of device region `region`, checked to lie
    /// inside a writable region.
    fn region_write(
        _state: &mut Self::State,
        _ctx: &mut Ctx,
        _region: usize,
        _off: u64,
        _data: &[u8],
    ) {
    }

    /// A guest read of `data.len()` bytes at `off` of BAR `bar`. The library
    /// has checked that the access lies inside the BAR.
    fn bar_read(state: &mut Self::State, ctx: &mut Ctx, bar: usize, off: u64, data: &mut [u8]);

    /// A guest write of `data` at `off` of BAR `bar`, checked likewise.
    fn bar_write(state: &mut Self::State, ctx: &mut Ctx, bar: usize, off: u64, data: &[u8]);

    /// Returns the device to its power-on state.
    fn reset(state: &mut Self::State, ctx: &mut Ctx);

    /// Something happened for the device outside the guest's accesses: a
    /// [`Waker`] from [`PciCore::waker`] was woken (for example by the
    /// interrupt thread of the hardware backing the device). Runs under the
    /// library's spinlock, like the access hooks.
    fn event(_state: &mut Self::State, _ctx: &mut Ctx) {}

    /// Whether the device reaches guest memory, through [`PciCore::dma`]
    /// only. The library then registers the `dma_unmap` op and logs the
    /// device's writes for migration; a device without DMA logs nothing,
    /// truthfully.
    const DMA: bool = false;

    /// The `len` bytes of guest memory at `iova` were unmapped: the library
    /// has unpinned what the device pinned there (`pinned` says whether it
    /// held any), and copies into those pins fail from now on. A device
    /// that cannot go on without that memory (its rings, say) makes itself
    /// fail here. Runs under the library's spinlock, at any time, even
    /// while the device is closed.
    fn dma_unmapped(
        _state: &mut Self::State,
        _ctx: &mut Ctx,
        _iova: u64,
        _len: u64,
        _pinned: bool,
    ) {
    }

    /// Whether BAR `bar` is served in process context by [`Self::bar_rw`]
    /// rather than under the library's spinlock by [`Self::bar_read`] and
    /// [`Self::bar_write`]: for a device whose registers reach state that
    /// its worker changes while it sleeps (guest memory, a block device).
    /// Such a BAR is the device's whole (no MSI-X table, PBA or plain
    /// memory in it, or the device's creation fails with `EINVAL`). Asked
    /// once, at creation.
    fn process_bar(&self, _bar: usize) -> bool {
        false
    }

    /// An access to a [`Self::process_bar`] BAR: a read fills `data`
    /// (zeroed), a write takes it. Runs in process context with no library
    /// lock held; the device serialises it with its worker itself.
    fn bar_rw(&self, _lib: &Lib<'_, Self>, _bar: usize, _off: u64, _data: &mut [u8], _write: bool) {
    }

    /// The device's worker, queued by [`Lib::kick`]: runs in process
    /// context, never twice at once. [`Self::stop_dma`] stops it.
    fn work(&self, _lib: &Lib<'_, Self>) {}

    /// Stops every use of guest memory the device makes outside the hooks
    /// (a worker thread, say) and waits for it to end. Sleeps. Called
    /// when the last user closes the device, before the library unpins
    /// everything.
    fn stop_dma(&self) {}

    /// Whether this device offers migration: [`Self::MIGRATION`] unless the
    /// device says otherwise (one backed by hardware whose state does not
    /// travel, say).
    fn migratable(&self) -> bool {
        Self::MIGRATION
    }

    /// Whether the device can be migrated: it implements [`Self::save`] and
    /// [`Self::load`]. The library then offers VFIO migration v2 with
    /// `STOP_COPY`, `P2P` and `PRE_COPY`.
    const MIGRATION: bool = false;

    /// A number that must be equal for a stream to load (for example the
    /// number of ports): it travels in the stream's identity, so a target
    /// refuses an incompatible source from the first record.
    fn mig_variant(&self) -> u32 {
        0
    }

    /// Writes the device's own state as sections with tags from
    /// [`emul::mig::TAG_DEVICE`] (see [`Writer::section`]). The size must
    /// depend on the device only, not on its state. Runs under the
    /// library's spinlock.
    fn save(&self, _state: &Self::State, _w: &mut Writer<'_>) -> EResult {
        Err(Errno::Inval)
    }

    /// Loads what [`Self::save`] wrote on the source. The stream's framing,
    /// checksum and identity are already checked; the hook checks its own
    /// sections, all of them before it changes anything, and fails with
    /// [`Errno::Inval`] leaving `state` as it was. Runs under the spinlock.
    fn load(&self, _state: &mut Self::State, _s: &Sections<'_>) -> EResult {
        Err(Errno::Inval)
    }
}

/// What a device may touch of the library's state while it handles an
/// access: its interrupt line and a view of the command register (see
/// [`emul::intrs::Ctx`]).
pub(crate) type Ctx = emul::intrs::Ctx<EventFd>;

/// The library's state behind its lock.
struct Inner<S> {
    ctx: Ctx,
    dev: S,
    /// The device's [`PciDevice::event`] hook.
    on_event: fn(&mut S, &mut Ctx),
}

impl<S: Send + Unpin> EventHandler for IrqfdSlot<SpinLock<Inner<S>>> {
    fn event(&self) {
        let mut g = self.lock();
        let Inner { ctx, dev, on_event } = &mut *g;
        on_event(dev, ctx);
    }
}

/// A VFIO PCI device built from a [`PciDevice`].
///
/// The fields are private: devices reach the state only through the hooks.
#[pin_data]
pub(crate) struct PciCore<D: PciDevice> {
    bars: [Bar; 6],
    reset_cfg: ConfigSpace,
    /// Where the MSI-X table and PBA are, if the device has MSI-X.
    msix: Option<MsixLayout>,
    /// The configuration space layout's fingerprint, for migration.
    cfg_fp: u32,
    /// Which configuration bits can change, for migration.
    cfg_map: ChangeMap,
    /// Each BAR's plain memory, if it has any.
    memory: [Option<BarMemory>; 6],
    /// The parts of each BAR the device does not serve (MSI-X table and
    /// PBA, plain memory), for splitting accesses.
    parts: [BarParts; 6],
    /// Whether the device serves each BAR whole (its parts are empty): the
    /// register path's one test, computed once.
    whole: [bool; 6],
    /// The device and the state its worker reaches, with the work item
    /// that runs the worker.
    #[pin]
    sh: WorkSlot<Shared<D>>,
    /// The migration state machine and its data files; a mutex, as opening
    /// and filling files sleeps.
    #[pin]
    mig: Mutex<MigCtl>,
    /// Serialises `VFIO_DEVICE_SET_IRQS` calls (vfio-pci's `igate`).
    #[pin]
    igate: Mutex<()>,
    /// The BARs the device serves in process context
    /// ([`PciDevice::process_bar`]).
    process: [bool; 6],
}

/// The parts of a device that its worker reaches as well as the library:
/// the device, the state behind the library's lock, and guest memory.
#[pin_data]
struct Shared<D: PciDevice> {
    dev: D,
    /// A spinlock, not a mutex: every access under it is a few loads and
    /// stores of emulated registers, and a sleeping lock's bookkeeping
    /// costs more than the work it guards. It comes with the irqfd that
    /// unmasks INTx (`ACTION_UNMASK` with `DATA_EVENTFD`), whose handler it
    /// is (see `intrs.rs`).
    /// In an event slot: the device's backend wakes it through a
    /// [`Waker`] (see [`PciDevice::event`]).
    #[pin]
    inner: EventSlot<IrqfdSlot<SpinLock<Inner<D::State>>>>,
    /// Guest memory, for a device that does DMA.
    #[pin]
    dma: Dma,
}

impl<D: PciDevice> WorkHandler for Shared<D> {
    fn work(slot: &WorkSlot<Self>) {
        slot.dev.work(&Lib { sh: slot });
    }
}

/// What a device reaches from process context: in its worker
/// ([`PciDevice::work`]) and its process-context BAR accesses
/// ([`PciDevice::bar_rw`]). No library lock is held there, so it may sleep.
pub(crate) struct Lib<'a, D: PciDevice> {
    sh: &'a WorkSlot<Shared<D>>,
}
impl<D: PciDevice> Lib<'_, D> {
    /// Guest memory (for a device with [`PciDevice::DMA`]).
    pub(crate) fn dma(&self) -> &Dma {
        &self.sh.dma
    }

    /// Runs `f` on the device's state and the library's context under the
    /// library's spinlock, as the access hooks run: to raise interrupts
    /// ([`Ctx::pulse`], [`Ctx::set_irq`]), say. `f` must not sleep.
    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&mut D::State, &mut Ctx) -> R) -> R {
        let mut g = self.sh.inner.lock();
        let Inner { ctx, dev, .. } = &mut *g;
        f(dev, ctx)
    }

    /// Queues the device's worker ([`PciDevice::work`]), unless it is
    /// queued already. Does not sleep.
    pub(crate) fn kick(&self) {
        self.sh.queue();
    }
}

impl<D: PciDevice> PciCore<D> {
    /// A device `dev` with initial state `state`.
    pub(crate) fn new(dev: D, state: D::State) -> Result<impl PinInit<Self, Error>> {
        let cfg = dev.config().map_err(kerr)?;
        region::check_dev_regions(dev.regions()).map_err(kerr)?;
        let bars: [Bar; 6] = core::array::from_fn(|i| dev.bar(i));
        // The BAR hook must agree with configuration space. In particular
        // the upper register of a 64-bit BAR is no BAR (`Bar::None`): its
        // region is empty, as vfio-pci reports it.
        if (0..6).any(|i| bars[i] != cfg.bar(i)) {
            return Err(EINVAL);
        }
        let msix = cfg.msix_layout();
        let cfg_fp = cfg.layout_fingerprint();
        let cfg_map = cfg.change_map();
        let mut memory = [const { None }; 6];
        for (i, slot) in memory.iter_mut().enumerate() {
            let Some(range) = dev.bar_memory(i) else {
                continue;
            };
            let hidden = msix.as_ref().map_or([0..0, 0..0], |l| {
                [
                    if l.table_bar == i {
                        l.table.clone()
                    } else {
                        0..0
                    },
                    if l.pba_bar == i { l.pba.clone() } else { 0..0 },
                ]
            });
            region::check_memory(&range, bars[i].size(), &hidden, PAGE_SIZE as u64)
                .map_err(kerr)?;
            *slot = Some(BarMemory::new(range)?);
        }
        let parts = core::array::from_fn(|i| {
            let mut p = BarParts::default();
            if let Some(l) = &msix {
                if l.table_bar == i {
                    p.table = l.table.clone();
                }
                if l.pba_bar == i {
                    p.pba = l.pba.clone();
                }
            }
            if let Some(Some(m)) = memory.get(i) {
                p.memory = m.range.clone();
            }
            p
        });
        let whole = core::array::from_fn(|i: usize| parts.get(i).is_none_or(BarParts::is_empty));
        let process: [bool; 6] = core::array::from_fn(|i| dev.process_bar(i));
        // A BAR served in process context is the device's whole: the MSI-X
        // table, the PBA and plain memory are served under the lock.
        if (0..6).any(|i| process[i] && !whole[i]) {
            return Err(EINVAL);
        }
        Ok(try_pin_init!(Self {
            bars,
            whole,
            msix,
            memory,
            parts,
            cfg_fp,
            cfg_map,
            reset_cfg: cfg.clone(),
            sh <- WorkSlot::new(try_pin_init!(Shared {
                inner <- EventSlot::new(IrqfdSlot::new(new_spinlock!(Inner {
                    ctx: Ctx::new(cfg),
                    dev: state,
                    on_event: D::event,
                }))),
                dma <- Dma::new()?,
                dev,
            }? Error)),
            mig <- new_mutex!(MigCtl::new()),
            igate <- new_mutex!(()),
            process,
        }))
    }

    /// The device built on the library.
    pub(crate) fn device(&self) -> &D {
        &self.sh.dev
    }

    /// Guest memory, for a device with [`PciDevice::DMA`]. Its calls sleep:
    /// a device uses it from a worker, never from the hooks.
    #[expect(
        dead_code,
        reason = "the DMA layer's first user, the NVMe device of issue 14, is not in yet"
    )]
    pub(crate) fn dma(&self) -> &Dma {
        &self.sh.dma
    }

    /// A waker that runs the device's [`PciDevice::event`] hook, for its
    /// backend. It does nothing once the device is gone.
    pub(crate) fn waker(&self) -> Waker {
        self.sh.inner.waker()
    }

    /// Runs `f` on the device's state (for debug output).
    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&D::State, &Ctx) -> R) -> R {
        let g = self.sh.inner.lock();
        f(&g.dev, &g.ctx)
    }

    /// Runs `f` on the device's state to change a setting of the instance
    /// (from a sysfs attribute, not from the guest).
    pub(crate) fn with_state_mut<R>(&self, f: impl FnOnce(&mut D::State) -> R) -> R {
        let mut g = self.sh.inner.lock();
        f(&mut g.dev)
    }

    fn region_size(&self, index: u32) -> Option<u64> {
        match index {
            VFIO_PCI_CONFIG_REGION_INDEX => Some(self.reset_cfg.size() as u64),
            // The upper half of a 64-bit BAR is `Bar::None`: an empty region.
            0..=VFIO_PCI_BAR5_REGION_INDEX => Some(self.bars[index as usize].size()),
            VFIO_PCI_ROM_REGION_INDEX | VFIO_PCI_VGA_REGION_INDEX => Some(0),
            _ => self.dev_region(index).map(|r| r.size),
        }
    }

    /// Device region `index` (`VFIO_PCI_NUM_REGIONS` and up), if there is one.
    fn dev_region(&self, index: u32) -> Option<&DevRegion> {
        let i = index.checked_sub(VFIO_PCI_NUM_REGIONS)?;
        self.sh.dev.regions().get(i as usize)
    }

    /// The parts of region `index` userspace may map: a BAR's memory.
    fn areas(&self, index: u32) -> [Option<Area>; MAX_AREAS] {
        let mut out = [None; MAX_AREAS];
        if let Some(Some(m)) = self.memory.get(index as usize) {
            out[0] = Some(Area {
                offset: m.range.start,
                size: m.range.end - m.range.start,
            });
        }
        out
    }

    /// Every BAR's plain memory, in BAR order.
    fn memories(&self) -> impl Iterator<Item = &BarMemory> {
        self.memory.iter().flatten()
    }

    fn get_info(&self, arg: usize) -> Result<isize> {
        let u = UserBuf::new(arg, DEVICE_INFO_MINSZ);
        let mut info: vb::vfio_device_info = u.read_obj()?;
        if (info.argsz as usize) < DEVICE_INFO_MINSZ {
            return Err(EINVAL);
        }
        info.flags = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET;
        // At most `MAX_DEV_REGIONS`, checked at creation.
        info.num_regions = VFIO_PCI_NUM_REGIONS + self.sh.dev.regions().len() as u32;
        info.num_irqs = VFIO_PCI_NUM_IRQS;
        u.write_obj(&info)?;
        Ok(0)
    }

    fn reset(&self) {
        let mut g = self.sh.inner.lock();
        let Inner { ctx, dev, .. } = &mut *g;
        // A device reset also ends a migration stop (the caller moved the
        // migration state back to RUNNING); a Function Level Reset does not.
        self.reset_locked(ctx, dev, true);
    }

    /// Returns configuration space, interrupt state and the device to their
    /// reset state; the eventfds userspace set stay, as with vfio-pci.
    /// `device` says a device reset, which also ends a migration stop, rather
    /// than a Function Level Reset.
    fn reset_locked(&self, ctx: &mut Ctx, dev: &mut D::State, device: bool) {
        ctx.cfg.clone_from(&self.reset_cfg);
        ctx.reset_irqs(device);
        self.memories().for_each(BarMemory::zero);
        D::reset(dev, ctx);
    }
}

#[vtable]
impl<D: PciDevice> vfio::VfioOps for PciCore<D> {
    const NAME: &'static CStr = D::NAME;
    const DMA: bool = D::DMA;

    fn attach(&self, dev: VfioDev) {
        self.sh.dma.attach(dev);
    }

    fn open_device(&self) -> Result {
        self.sh.dma.open();
        Ok(())
    }

    fn dma_unmap(&self, iova: u64, len: u64) {
        let pinned = self.sh.dma.unmap(iova, len);
        let mut g = self.sh.inner.lock();
        let Inner { ctx, dev, .. } = &mut *g;
        D::dma_unmapped(dev, ctx, iova, len, pinned);
    }

    fn log_start(&self, ranges: &[(u64, u64)], page_size: &mut u64) -> Result {
        self.sh.dma.log_start(ranges, page_size)
    }

    fn log_stop(&self) {
        self.sh.dma.log_stop();
    }

    fn log_report(&self, iova: u64, len: u64, bitmap: &DirtyBitmap<'_>) -> Result {
        self.sh.dma.log_report(iova, len, bitmap)
    }

    fn close_device(&self) {
        // The device's own users of guest memory stop first; then no copy
        // or pin survives the user that mapped the memory.
        self.sh.dev.stop_dma();
        self.sh.cancel();
        self.sh.dma.close();
        // Disarmed first, outside the lock: its work item may be running.
        self.sh.inner.disarm();
        // The last user went: drop every eventfd it left set (after the
        // lock), so nothing leaks and no stale trigger survives to the next
        // open.
        let mut vectors = [const { None }; emul::intrs::VECTORS];
        let rest = self.sh.inner.lock().ctx.detach_all(&mut vectors);
        drop(rest);
        drop(vectors);
        // Data files still open fail from now on: the transfer cannot
        // outlive the user that started it.
        self.reset_all();
    }

    fn read(&self, out: &UserBuf, pos: i64) -> Result<usize> {
        self.read_all(out, pos)
    }

    fn write(&self, input: &UserBuf, pos: i64) -> Result<usize> {
        self.write_all(input, pos)
    }

    fn ioctl(&self, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            VFIO_DEVICE_GET_INFO => self.get_info(arg),
            VFIO_DEVICE_GET_IRQ_INFO => self.get_irq_info(arg),
            VFIO_DEVICE_SET_IRQS => self.set_irqs(arg),
            VFIO_DEVICE_RESET => {
                // A reset ends any migration: the device runs again.
                self.reset_all();
                Ok(0)
            }
            _ => Err(ENOTTY),
        }
    }

    fn region_info(&self, index: u32) -> Result<vfio::RegionInfo> {
        let size = self.region_size(index).ok_or(EINVAL)?;
        let dev_region = self.dev_region(index);
        let mut flags = match dev_region {
            Some(r) if !r.writable => VFIO_REGION_INFO_FLAG_READ,
            _ if size > 0 => VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE,
            _ => 0,
        };
        let mut sparse = [None; vfio::SPARSE_AREAS];
        for (slot, a) in sparse
            .iter_mut()
            .zip(self.areas(index).into_iter().flatten())
        {
            *slot = Some((a.offset, a.size));
            flags |= VFIO_REGION_INFO_FLAG_MMAP;
        }
        Ok(vfio::RegionInfo {
            offset: region::index_to_offset(index),
            size,
            flags,
            sparse,
            kind: dev_region.map(|r| (r.kind, r.subtype)),
        })
    }

    /// `mmap()` of the device file, with vfio-pci's contract: the mapping is
    /// shared, lies entirely inside an area a region's sparse-mmap capability
    /// lists, and gets that area's pages; anything else is `EINVAL`.
    fn mmap(&self, map: &Mapping<'_>) -> Result {
        if !map.shared() {
            return Err(EINVAL);
        }
        let req = region::decode_mmap(map.pgoff(), map.len(), PAGE_SHIFT as u32, |i| self.areas(i))
            .map_err(kerr)?;
        let memory = self
            .memory
            .get(req.index as usize)
            .and_then(Option::as_ref)
            .ok_or(EINVAL)?;
        let first = usize::try_from(req.area_offset).map_err(|_| EINVAL)? / PAGE_SIZE;
        let count = usize::try_from(req.len).map_err(|_| EINVAL)? / PAGE_SIZE;
        let end = first.checked_add(count).ok_or(EINVAL)?;
        map.insert(memory.pages.get(first..end).ok_or(EINVAL)?)
    }

    fn migration_flags(&self) -> u32 {
        if self.sh.dev.migratable() {
            emul::mig::FLAGS
        } else {
            0
        }
    }

    fn migration_set_state(&self, state: u32, precopy_v2: bool) -> Result<Option<vfio::DataFile>> {
        self.mig_set_state(state, precopy_v2)
    }

    fn migration_get_state(&self) -> Result<u32> {
        Ok(self.mig_state())
    }

    fn migration_data_size(&self) -> Result<usize> {
        self.mig_data_size()
    }

    fn request(&self, count: u32) {
        let signalled = self.sh.inner.lock().ctx.signal_req();
        if !signalled && count == 0 {
            pr_notice!("device in use and no REQ eventfd set: waiting for userspace to close it\n");
        }
    }
}
