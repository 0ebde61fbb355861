// SPDX-License-Identifier: GPL-2.0

//! The virtual PCI function library.
//!
//! [`PciCore`] owns every piece of VFIO PCI semantics: configuration space
//! with its permissions, region addressing, interrupts over eventfd, reset and
//! the device ioctls. Its state is private. A device built on it implements
//! [`PciDevice`] and sees only what that trait hands it: its own state, and a
//! [`Ctx`] through which it can raise interrupts and read the command
//! register. The compiler enforces the boundary: nothing else is visible.

pub(crate) mod emul;
mod migration;

use crate::ffi::{
    eventfd::EventFd,
    mem::{Mapping, SharedPage},
    vfio::{self, IrqfdHandler, IrqfdSlot, UserBuf},
};
use core::ops::Range;
use emul::{
    config::{reg, Bar, ChangeMap, ConfigSpace, MsixLayout},
    irq::{check_set, IrqAction, IrqData, IrqInfo},
    mig::{Sections, Writer},
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
    }
}

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

/// Which interrupt mode userspace enabled.
#[derive(Clone, Copy, PartialEq, Eq)]
enum IrqMode {
    None,
    Intx,
    Msi,
    Msix,
}

/// The most MSI or MSI-X vectors the library delivers. A device declaring
/// more in its capability has the first [`VECTORS`] reported and usable.
const VECTORS: usize = 8;

/// Interrupt state: the eventfds userspace gave, and INTx masking.
struct Irqs {
    mode: IrqMode,
    intx: Option<EventFd>,
    /// One eventfd per MSI or MSI-X vector, whichever `mode` says.
    vectors: [Option<EventFd>; VECTORS],
    err: Option<EventFd>,
    req: Option<EventFd>,
    /// INTx is masked (by userspace, or automatically on delivery).
    intx_masked: bool,
    /// The device asserts its interrupt line.
    asserted: bool,
    /// Interrupts delivered to userspace, for the debug attribute.
    delivered: u64,
    /// The device is stopped for migration: nothing is delivered.
    stopped: bool,
    /// An MSI edge arrived while stopped, to send when the device runs.
    held: bool,
}

impl Irqs {
    const fn new() -> Self {
        Self {
            mode: IrqMode::None,
            intx: None,
            vectors: [const { None }; VECTORS],
            err: None,
            req: None,
            intx_masked: false,
            asserted: false,
            delivered: 0,
            stopped: false,
            held: false,
        }
    }
}

/// What a device may touch of the library's state while it handles an
/// access: its interrupt line and a view of the command register.
pub(crate) struct Ctx {
    cfg: ConfigSpace,
    irqs: Irqs,
}

impl Ctx {
    /// The command register as the guest last wrote it.
    pub(crate) fn command(&self) -> u16 {
        self.cfg.command()
    }

    /// Interrupts delivered to userspace since the device was opened.
    pub(crate) fn irqs_delivered(&self) -> u64 {
        self.irqs.delivered
    }

    /// Sets the level of the device's interrupt. With MSI or MSI-X enabled a
    /// rising level sends one message on vector 0 (with MSI per-vector
    /// masking and the vector masked, it waits in its pending bit); with
    /// INTx the line is delivered when not masked, then masked until
    /// userspace unmasks it (VFIO's automasking).
    pub(crate) fn set_irq(&mut self, asserted: bool) {
        // The common case on every register access: no interrupt before and
        // none now, so nothing to change.
        if !asserted && !self.irqs.asserted {
            return;
        }
        let rising = asserted && !self.irqs.asserted;
        self.irqs.asserted = asserted;
        self.cfg.set_status_bits(reg::STATUS_INTERRUPT, asserted);
        if self.irqs.stopped {
            // A stopped device changes nothing outside itself; the edge is
            // sent when it runs again.
            self.irqs.held |= rising;
            return;
        }
        match self.irqs.mode {
            IrqMode::Msi if rising => self.send_msi(0),
            IrqMode::Msix if rising => self.send_vector(0),
            IrqMode::Intx if asserted => self.deliver_intx(),
            _ => {}
        }
    }

    /// Sends MSI vector `v`, unless the capability has per-vector masking
    /// and the guest masked `v`: its pending bit is then set instead, and
    /// the message goes out when the guest unmasks it (see
    /// [`Ctx::send_unmasked_msi`]).
    fn send_msi(&mut self, v: u32) {
        if self.cfg.msi_raise(v) {
            self.send_vector(v as usize);
        }
    }

    /// Sends the MSI messages whose vectors are pending and no longer
    /// masked (after a configuration write), clearing their pending bits.
    fn send_unmasked_msi(&mut self) {
        if self.irqs.mode != IrqMode::Msi || self.irqs.stopped {
            return;
        }
        let due = self.cfg.msi_take_unmasked();
        for v in 0..VECTORS {
            if due & (1 << v) != 0 {
                self.send_vector(v);
            }
        }
    }

    /// Signals the eventfd of MSI or MSI-X vector `v`, if userspace gave one.
    fn send_vector(&mut self, v: usize) {
        if let Some(Some(fd)) = self.irqs.vectors.get(v) {
            fd.signal();
            self.irqs.delivered += 1;
        }
    }

    /// Reports an error to userspace through the ERR eventfd (offered for
    /// PCI Express functions, as vfio-pci offers it for AER), if one is set.
    #[allow(dead_code)]
    pub(crate) fn report_error(&mut self) {
        if let Some(fd) = &self.irqs.err {
            fd.signal();
        }
    }

    /// The device stops for migration.
    fn stop(&mut self) {
        self.irqs.stopped = true;
    }

    /// The device runs again: an MSI edge that arrived while it was stopped
    /// is sent, and an asserted INTx line delivered unless masked.
    fn run(&mut self) {
        self.irqs.stopped = false;
        let held = core::mem::take(&mut self.irqs.held);
        // Vectors the guest unmasked while the device was stopped.
        self.send_unmasked_msi();
        if !self.irqs.asserted {
            return;
        }
        match self.irqs.mode {
            IrqMode::Msi if held => self.send_msi(0),
            IrqMode::Msix if held => self.send_vector(0),
            IrqMode::Intx => self.deliver_intx(),
            _ => {}
        }
    }

    fn deliver_intx(&mut self) {
        if self.irqs.stopped || self.irqs.intx_masked || self.command() & reg::CMD_INTX_DISABLE != 0
        {
            return;
        }
        if let Some(fd) = &self.irqs.intx {
            fd.signal();
            self.irqs.intx_masked = true;
            self.irqs.delivered += 1;
        }
    }
}

/// A BAR's plain memory (see [`PciDevice::bar_memory`]).
///
/// The pages are fixed when the device is created. Region accesses and reset
/// touch them under the library's lock; userspace may write them at any time
/// through a mapping, which the lock cannot order, as with real device memory.
struct BarMemory {
    /// Where the memory is in the BAR.
    range: Range<u64>,
    /// The pages backing it, in order.
    pages: KVec<SharedPage>,
}

impl BarMemory {
    /// Memory for `range` of a BAR, zeroed.
    fn new(range: Range<u64>) -> Result<Self> {
        let n = usize::try_from(range.end - range.start).map_err(|_| EINVAL)? / PAGE_SIZE;
        let mut pages = KVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            pages.push(SharedPage::new()?, GFP_KERNEL)?;
        }
        Ok(Self { range, pages })
    }

    /// The memory's size in bytes.
    fn len(&self) -> usize {
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
    fn zero(&self) {
        self.pages.iter().for_each(SharedPage::zero);
    }
}

/// Where a part of a BAR that the device does not serve is served from.
#[derive(Clone, Copy)]
enum Part {
    /// Reads return this byte, writes are dropped (the MSI-X table and PBA).
    Fill(u8),
    /// The BAR's plain memory.
    Memory,
}

/// The library's state behind its lock.
struct Inner<S> {
    ctx: Ctx,
    dev: S,
}

/// A VFIO PCI device built from a [`PciDevice`].
///
/// The fields are private: devices reach the state only through the hooks.
#[pin_data]
pub(crate) struct PciCore<D: PciDevice> {
    dev: D,
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
    /// A spinlock, not a mutex: every access under it is a few loads and
    /// stores of emulated registers, and a sleeping lock's bookkeeping
    /// costs more than the work it guards.
    #[pin]
    inner: SpinLock<Inner<D::State>>,
    /// The migration state machine and its data files; a mutex, as opening
    /// and filling files sleeps.
    #[pin]
    mig: Mutex<MigCtl>,
    /// The irqfd that unmasks INTx (`ACTION_UNMASK` with `DATA_EVENTFD`).
    #[pin]
    unmask: IrqfdSlot,
    /// Serialises `VFIO_DEVICE_SET_IRQS` calls (vfio-pci's `igate`).
    #[pin]
    igate: Mutex<()>,
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
        Ok(try_pin_init!(Self {
            bars,
            msix,
            memory,
            cfg_fp,
            cfg_map,
            reset_cfg: cfg.clone(),
            inner <- new_spinlock!(Inner {
                ctx: Ctx { cfg, irqs: Irqs::new() },
                dev: state,
            }),
            mig <- new_mutex!(MigCtl::new()),
            unmask <- IrqfdSlot::new(),
            igate <- new_mutex!(()),
            dev,
        }))
    }

    /// The device built on the library.
    pub(crate) fn device(&self) -> &D {
        &self.dev
    }

    /// Runs `f` on the device's state (for debug output).
    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&D::State, &Ctx) -> R) -> R {
        let g = self.inner.lock();
        f(&g.dev, &g.ctx)
    }

    /// Runs `f` on the device's state to change a setting of the instance
    /// (from a sysfs attribute, not from the guest).
    pub(crate) fn with_state_mut<R>(&self, f: impl FnOnce(&mut D::State) -> R) -> R {
        let mut g = self.inner.lock();
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
        self.dev.regions().get(i as usize)
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

    fn irq_info(&self, index: u32) -> Option<IrqInfo> {
        let count = match index {
            VFIO_PCI_INTX_IRQ_INDEX => u32::from(self.reset_cfg.u16_at(reg::INT_LINE) >> 8 != 0),
            VFIO_PCI_MSI_IRQ_INDEX => self.dev.msi_vectors().min(VECTORS as u32),
            VFIO_PCI_MSIX_IRQ_INDEX => self
                .msix
                .as_ref()
                .map_or(0, |l| l.vectors.min(VECTORS as u32)),
            // As vfio-pci: error reporting for PCI Express functions.
            VFIO_PCI_ERR_IRQ_INDEX => u32::from(self.reset_cfg.is_express()),
            VFIO_PCI_REQ_IRQ_INDEX => 1,
            _ => return None,
        };
        let flags = VFIO_IRQ_INFO_EVENTFD
            | match index {
                VFIO_PCI_INTX_IRQ_INDEX => VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED,
                VFIO_PCI_MSIX_IRQ_INDEX => 0,
                _ => VFIO_IRQ_INFO_NORESIZE,
            };
        Some(IrqInfo { flags, count })
    }

    /// One access to a region, on a kernel buffer, under the lock.
    fn access(&self, pos: i64, buf: &mut [u8], write: bool) -> Result<usize> {
        let a = region::decode(pos, buf.len(), |i| self.region_size(i)).map_err(kerr)?;
        let mut g = self.inner.lock();
        let Inner { ctx, dev } = &mut *g;
        match a.index {
            VFIO_PCI_CONFIG_REGION_INDEX => {
                let off = a.offset as usize;
                if write {
                    let old = ctx.cfg.command();
                    ctx.cfg.write(off, buf).map_err(kerr)?;
                    // Initiate Function Level Reset in the PCI Express
                    // capability: the function returns to its reset state.
                    if ctx.cfg.take_flr_request() {
                        self.reset_locked(ctx, dev);
                        return Ok(buf.len());
                    }
                    // Lifting INTx disable delivers a pending line.
                    if old & reg::CMD_INTX_DISABLE != 0
                        && ctx.irqs.asserted
                        && ctx.irqs.mode == IrqMode::Intx
                    {
                        ctx.deliver_intx();
                    }
                    // Clearing the mask bit of a pending MSI vector sends it.
                    ctx.send_unmasked_msi();
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

    /// An access to BAR `bar`. The MSI-X table and PBA are userspace's to
    /// emulate, as with vfio-pci: in the region they read all ones (table)
    /// and zero (PBA) and ignore writes. The BAR's plain memory, if any, is
    /// served from its pages; every other byte goes to the device.
    fn bar_access(
        &self,
        ctx: &mut Ctx,
        dev: &mut D::State,
        bar: usize,
        off: u64,
        buf: &mut [u8],
        write: bool,
    ) -> Result {
        let memory = self.memory.get(bar).and_then(Option::as_ref);
        let (table, pba) = match &self.msix {
            Some(l) => (
                (l.table_bar == bar).then_some(&l.table),
                (l.pba_bar == bar).then_some(&l.pba),
            ),
            None => (None, None),
        };
        let parts: [(Option<&Range<u64>>, Part); 3] = [
            (table, Part::Fill(0xff)),
            (pba, Part::Fill(0)),
            (memory.map(|m| &m.range), Part::Memory),
        ];
        if parts.iter().all(|(r, _)| r.is_none()) {
            if write {
                D::bar_write(dev, ctx, bar, off, buf);
            } else {
                D::bar_read(dev, ctx, bar, off, buf);
            }
            return Ok(());
        }
        // Split the access into runs that each lie in one part or in none.
        let mut done = 0;
        while done < buf.len() {
            let pos = off.saturating_add(done as u64);
            let left = (buf.len() - done) as u64;
            let inside = parts.iter().find_map(|(r, part)| {
                r.filter(|r| r.contains(&pos))
                    .map(|r| (r.start, r.end, *part))
            });
            let (start, end, part) = match inside {
                Some((start, end, part)) => (start, end, Some(part)),
                None => {
                    let next = parts
                        .iter()
                        .filter_map(|(r, _)| r.map(|r| r.start).filter(|&st| st > pos))
                        .min()
                        .unwrap_or(u64::MAX);
                    (pos, next, None)
                }
            };
            let n = (end - pos).min(left) as usize;
            let chunk = buf.get_mut(done..done + n).ok_or(EINVAL)?;
            match (part, write) {
                (Some(Part::Fill(_)), true) => {}
                (Some(Part::Fill(f)), false) => chunk.fill(f),
                (Some(Part::Memory), _) => {
                    memory.ok_or(EINVAL)?.access(pos - start, chunk, write)?;
                }
                (None, true) => D::bar_write(dev, ctx, bar, pos, chunk),
                (None, false) => D::bar_read(dev, ctx, bar, pos, chunk),
            }
            done += n;
        }
        Ok(())
    }

    /// `VFIO_DEVICE_SET_IRQS`, with vfio-pci's semantics index by index
    /// (`drivers/vfio/pci/vfio_pci_intrs.c`): an index is enabled by its
    /// first eventfd and stays enabled (a `-1` only clears a trigger) until
    /// `DATA_NONE` with count 0 disables it; INTx, MSI and MSI-X exclude each
    /// other; loopback triggers (`DATA_NONE`, `DATA_BOOL`) need the index
    /// enabled; ERR and REQ take one eventfd each.
    fn set_irqs(&self, arg: usize) -> Result<isize> {
        let mut hdr = [0u8; IRQ_SET_MINSZ];
        UserBuf::new(arg, IRQ_SET_MINSZ).read(&mut hdr)?;
        let s = check_set(&hdr, |i| self.irq_info(i).map_or(0, |x| x.count)).map_err(kerr)?;
        // At most one 4-byte eventfd per vector: no allocation needed.
        let mut buf = [0u8; 4 * VECTORS];
        let data = buf.get_mut(..s.data_size).ok_or(EINVAL)?;
        UserBuf::new(arg.wrapping_add(IRQ_SET_MINSZ), s.data_size).read(data)?;
        let data = &*data;
        let (start, count) = (s.start as usize, s.count as usize);
        let fd_at = |i: usize| -> Result<i32> {
            let b = data.get(4 * i..4 * i + 4).ok_or(EINVAL)?;
            Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        // One SET_IRQS at a time, as vfio-pci's igate: the irqfd arming below
        // and the mode it depends on cannot interleave with another call.
        let _gate = self.igate.lock();

        // INTx unmask through an eventfd (irqfd): fd >= 0 arms it while INTx
        // is enabled (EBUSY if one is armed), -1 disarms it.
        if (s.index, s.action, s.data)
            == (VFIO_PCI_INTX_IRQ_INDEX, IrqAction::Unmask, IrqData::EventFd)
        {
            if self.inner.lock().ctx.irqs.mode != IrqMode::Intx || start != 0 || count != 1 {
                return Err(EINVAL);
            }
            return match fd_at(0)? {
                fd if fd >= 0 => {
                    // SAFETY: `self` lives in the device's pinned allocation
                    // until release, and `close_device` (always before
                    // release) disarms the irqfd.
                    unsafe { self.unmask.enable(self, fd) }?;
                    Ok(0)
                }
                _ => {
                    self.unmask.disable();
                    Ok(0)
                }
            };
        }

        // Take new eventfd references before the lock: a bad fd fails the
        // call without changing anything. -1 clears a trigger.
        let mut newfds: [Option<EventFd>; VECTORS] = [const { None }; VECTORS];
        if s.data == IrqData::EventFd {
            if count > VECTORS {
                return Err(EINVAL);
            }
            for (i, slot) in newfds.iter_mut().take(count).enumerate() {
                *slot = match fd_at(i)? {
                    -1 => None,
                    fd if fd >= 0 => Some(EventFd::from_fd(fd)?),
                    _ => return Err(EINVAL),
                };
            }
        }
        // Whether a NONE or BOOL request acts on its `i`th interrupt (BOOL
        // acts where the byte is set).
        let fires = |i: usize| match s.data {
            IrqData::None => true,
            IrqData::Bool => data.get(i).is_some_and(|&b| b != 0),
            IrqData::EventFd => false,
        };
        let disable = count == 0 && s.data == IrqData::None;

        // Eventfds replaced are dropped after the lock (putting one may take
        // other locks); declared first so that they are.
        let mut old: [Option<EventFd>; VECTORS] = [const { None }; VECTORS];
        let mut g = self.inner.lock();
        let was_intx = g.ctx.irqs.mode == IrqMode::Intx;
        let irqs = &mut g.ctx.irqs;
        match (s.index, s.action) {
            (VFIO_PCI_INTX_IRQ_INDEX, IrqAction::Mask | IrqAction::Unmask) => {
                if irqs.mode != IrqMode::Intx || start != 0 || count != 1 {
                    return Err(EINVAL);
                }
                if s.data == IrqData::EventFd {
                    // Masking through an eventfd: vfio-pci does not offer it
                    // either; unmasking was handled above.
                    return Err(ENOTTY);
                }
                if fires(0) {
                    let mask = s.action == IrqAction::Mask;
                    irqs.intx_masked = mask;
                    if !mask && irqs.asserted {
                        g.ctx.deliver_intx();
                    }
                }
            }
            (VFIO_PCI_INTX_IRQ_INDEX, IrqAction::Trigger) => {
                if irqs.mode == IrqMode::Intx && disable {
                    old[0] = irqs.intx.take();
                    irqs.mode = IrqMode::None;
                } else if !matches!(irqs.mode, IrqMode::Intx | IrqMode::None)
                    || start != 0
                    || count != 1
                {
                    return Err(EINVAL);
                } else if s.data == IrqData::EventFd {
                    old[0] = core::mem::replace(&mut irqs.intx, newfds[0].take());
                    if irqs.mode == IrqMode::None {
                        irqs.mode = IrqMode::Intx;
                        irqs.intx_masked = false;
                    }
                } else if irqs.mode != IrqMode::Intx {
                    return Err(EINVAL);
                } else if fires(0) {
                    if let Some(fd) = &irqs.intx {
                        fd.signal();
                    }
                }
            }
            (VFIO_PCI_MSI_IRQ_INDEX | VFIO_PCI_MSIX_IRQ_INDEX, IrqAction::Trigger) => {
                let mode = if s.index == VFIO_PCI_MSI_IRQ_INDEX {
                    IrqMode::Msi
                } else {
                    IrqMode::Msix
                };
                if irqs.mode == mode && disable {
                    for (o, v) in old.iter_mut().zip(irqs.vectors.iter_mut()) {
                        *o = v.take();
                    }
                    irqs.mode = IrqMode::None;
                } else if irqs.mode != mode && irqs.mode != IrqMode::None {
                    return Err(EINVAL);
                } else if s.data == IrqData::EventFd {
                    if count == 0 && irqs.mode != mode {
                        // Enabling no vectors: vfio-pci fails to allocate.
                        return Err(EINVAL);
                    }
                    let slots = irqs.vectors.get_mut(start..start + count).ok_or(EINVAL)?;
                    for ((o, v), n) in old.iter_mut().zip(slots).zip(newfds.iter_mut()) {
                        *o = core::mem::replace(v, n.take());
                    }
                    irqs.mode = mode;
                } else if irqs.mode != mode {
                    return Err(EINVAL);
                } else {
                    // Loopback: NONE, or BOOL where set, fires the vectors.
                    for i in 0..count {
                        if fires(i) {
                            if let Some(Some(fd)) = irqs.vectors.get(start + i) {
                                fd.signal();
                            }
                        }
                    }
                }
            }
            (VFIO_PCI_ERR_IRQ_INDEX | VFIO_PCI_REQ_IRQ_INDEX, IrqAction::Trigger) => {
                let slot = if s.index == VFIO_PCI_ERR_IRQ_INDEX {
                    &mut irqs.err
                } else {
                    &mut irqs.req
                };
                match s.data {
                    IrqData::None => {
                        let Some(fd) = slot.as_ref() else {
                            return Err(EINVAL);
                        };
                        if count > 0 {
                            fd.signal();
                        } else {
                            old[0] = slot.take();
                        }
                    }
                    _ if count == 0 => return Err(EINVAL),
                    IrqData::Bool => {
                        if let (true, Some(fd)) = (fires(0), slot.as_ref()) {
                            fd.signal();
                        }
                    }
                    IrqData::EventFd => old[0] = core::mem::replace(slot, newfds[0].take()),
                }
            }
            _ => return Err(ENOTTY),
        }
        let left_intx = was_intx && g.ctx.irqs.mode != IrqMode::Intx;
        drop(g);
        drop(old);
        drop(newfds);
        if left_intx {
            // Without INTx the unmask irqfd has nothing to do; vfio-pci
            // disarms it with INTx too.
            self.unmask.disable();
        }
        Ok(0)
    }

    fn get_info(&self, arg: usize) -> Result<isize> {
        let u = UserBuf::new(arg, DEVICE_INFO_MINSZ);
        let mut b = [0u8; DEVICE_INFO_MINSZ];
        u.read(&mut b)?;
        if (le32(&b, 0).unwrap_or(0) as usize) < DEVICE_INFO_MINSZ {
            return Err(EINVAL);
        }
        for (off, v) in [
            (4, VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET),
            // At most `MAX_DEV_REGIONS`, checked at creation.
            (8, VFIO_PCI_NUM_REGIONS + self.dev.regions().len() as u32),
            (12, VFIO_PCI_NUM_IRQS),
        ] {
            put_le32(&mut b, off, v);
        }
        u.write(&b)?;
        Ok(0)
    }

    fn get_irq_info(&self, arg: usize) -> Result<isize> {
        let u = UserBuf::new(arg, IRQ_INFO_MINSZ);
        let mut b = [0u8; IRQ_INFO_MINSZ];
        u.read(&mut b)?;
        if (le32(&b, 0).unwrap_or(0) as usize) < IRQ_INFO_MINSZ {
            return Err(EINVAL);
        }
        let info = self
            .irq_info(le32(&b, 8).unwrap_or(u32::MAX))
            .ok_or(EINVAL)?;
        put_le32(&mut b, 4, info.flags);
        put_le32(&mut b, 12, info.count);
        u.write(&b)?;
        Ok(0)
    }

    fn reset(&self) {
        let mut g = self.inner.lock();
        let Inner { ctx, dev } = &mut *g;
        // A device reset also ends a migration stop (the caller moved the
        // migration state back to RUNNING); a Function Level Reset does not.
        ctx.irqs.stopped = false;
        self.reset_locked(ctx, dev);
    }

    /// Returns configuration space, interrupt state and the device to their
    /// reset state; the eventfds userspace set stay, as with vfio-pci.
    fn reset_locked(&self, ctx: &mut Ctx, dev: &mut D::State) {
        ctx.cfg.clone_from(&self.reset_cfg);
        ctx.irqs.intx_masked = false;
        ctx.irqs.asserted = false;
        ctx.irqs.held = false;
        self.memories().for_each(BarMemory::zero);
        D::reset(dev, ctx);
    }
}

impl<D: PciDevice> IrqfdHandler for PciCore<D> {
    /// The INTx unmask irqfd fired: unmask, and deliver a line still
    /// asserted (level semantics).
    fn irqfd_fired(&self) {
        let mut g = self.inner.lock();
        if g.ctx.irqs.mode == IrqMode::Intx {
            g.ctx.irqs.intx_masked = false;
            if g.ctx.irqs.asserted {
                g.ctx.deliver_intx();
            }
        }
    }
}

/// Largest chunk moved between userspace and a region per lock hold.
const CHUNK: usize = 256;

/// Largest access served from a register-sized buffer.
const SMALL: usize = 8;

impl<D: PciDevice> PciCore<D> {
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
}

#[vtable]
impl<D: PciDevice> vfio::VfioOps for PciCore<D> {
    const NAME: &'static CStr = D::NAME;

    fn close_device(&self) {
        // Disarmed first, outside the lock: its work item may be running.
        self.unmask.disable();
        // The last user went: drop every eventfd it left set, so nothing
        // leaks and no stale trigger survives to the next open.
        let old = {
            let mut g = self.inner.lock();
            let irqs = &mut g.ctx.irqs;
            irqs.mode = IrqMode::None;
            (
                irqs.intx.take(),
                core::mem::replace(&mut irqs.vectors, [const { None }; VECTORS]),
                irqs.err.take(),
                irqs.req.take(),
            )
        };
        drop(old);
        // Data files still open fail from now on: the transfer cannot
        // outlive the user that started it.
        self.reset_all();
    }

    fn read(&self, out: &UserBuf, pos: i64) -> Result<usize> {
        // Register-sized accesses, nearly all of them, get a buffer that
        // costs nothing to clear.
        if out.len() <= SMALL {
            self.read_via::<SMALL>(out, pos)
        } else {
            self.read_via::<CHUNK>(out, pos)
        }
    }

    fn write(&self, input: &UserBuf, pos: i64) -> Result<usize> {
        if input.len() <= SMALL {
            self.write_via::<SMALL>(input, pos)
        } else {
            self.write_via::<CHUNK>(input, pos)
        }
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
        if D::MIGRATION {
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
        let g = self.inner.lock();
        if let Some(fd) = &g.ctx.irqs.req {
            fd.signal();
        } else if count == 0 {
            pr_notice!("device in use and no REQ eventfd set: waiting for userspace to close it\n");
        }
    }
}
