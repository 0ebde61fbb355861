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
    vfio::{self, UserBuf},
};
use emul::{
    config::{reg, Bar, ConfigSpace, CFG_SIZE},
    irq::{check_set, IrqAction, IrqData, IrqInfo},
    mig::{Sections, Writer},
    region,
    uapi::*,
    EResult, Errno,
};
use kernel::{
    new_mutex, new_spinlock,
    prelude::*,
    sync::{Mutex, SpinLock},
};
use migration::MigCtl;

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

    /// The configuration space at reset: identity, BARs, capabilities.
    fn config(&self) -> ConfigSpace;

    /// BAR `index` (0-5).
    fn bar(&self, index: usize) -> Bar;

    /// The number of MSI vectors the device offers (0 for none).
    fn msi_vectors(&self) -> u32 {
        0
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
}

/// Interrupt state: the eventfds userspace gave, and INTx masking.
struct Irqs {
    mode: IrqMode,
    intx: Option<EventFd>,
    msi: Option<EventFd>,
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
            msi: None,
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

    /// Sets the level of the device's interrupt. With MSI enabled a rising
    /// level sends one message; with INTx the line is delivered when not
    /// masked, then masked until userspace unmasks it (VFIO's automasking).
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
            IrqMode::Msi if rising => {
                if let Some(fd) = &self.irqs.msi {
                    fd.signal();
                    self.irqs.delivered += 1;
                }
            }
            IrqMode::Intx if asserted => self.deliver_intx(),
            _ => {}
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
        if !self.irqs.asserted {
            return;
        }
        match self.irqs.mode {
            IrqMode::Msi if held => {
                if let Some(fd) = &self.irqs.msi {
                    fd.signal();
                    self.irqs.delivered += 1;
                }
            }
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
    /// A spinlock, not a mutex: every access under it is a few loads and
    /// stores of emulated registers, and a sleeping lock's bookkeeping
    /// costs more than the work it guards.
    #[pin]
    inner: SpinLock<Inner<D::State>>,
    /// The migration state machine and its data files; a mutex, as opening
    /// and filling files sleeps.
    #[pin]
    mig: Mutex<MigCtl>,
}

impl<D: PciDevice> PciCore<D> {
    /// A device `dev` with initial state `state`.
    pub(crate) fn new(dev: D, state: D::State) -> impl PinInit<Self, Error> {
        let cfg = dev.config();
        let bars = core::array::from_fn(|i| dev.bar(i));
        try_pin_init!(Self {
            bars,
            reset_cfg: cfg.clone(),
            inner <- new_spinlock!(Inner {
                ctx: Ctx { cfg, irqs: Irqs::new() },
                dev: state,
            }),
            mig <- new_mutex!(MigCtl::new()),
            dev,
        })
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
            VFIO_PCI_CONFIG_REGION_INDEX => Some(CFG_SIZE as u64),
            0..=VFIO_PCI_BAR5_REGION_INDEX => Some(self.bars[index as usize].size().into()),
            VFIO_PCI_ROM_REGION_INDEX | VFIO_PCI_VGA_REGION_INDEX => Some(0),
            _ => None,
        }
    }

    fn irq_info(&self, index: u32) -> Option<IrqInfo> {
        let count = match index {
            VFIO_PCI_INTX_IRQ_INDEX => u32::from(self.reset_cfg.u16_at(reg::INT_LINE) >> 8 != 0),
            VFIO_PCI_MSI_IRQ_INDEX => self.dev.msi_vectors(),
            VFIO_PCI_MSIX_IRQ_INDEX | VFIO_PCI_ERR_IRQ_INDEX => 0,
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
                    // Lifting INTx disable delivers a pending line.
                    if old & reg::CMD_INTX_DISABLE != 0
                        && ctx.irqs.asserted
                        && ctx.irqs.mode == IrqMode::Intx
                    {
                        ctx.deliver_intx();
                    }
                } else {
                    ctx.cfg.read(off, buf).map_err(kerr)?;
                }
            }
            0..=VFIO_PCI_BAR5_REGION_INDEX => {
                let bar = a.index as usize;
                if write {
                    D::bar_write(dev, ctx, bar, a.offset, buf);
                } else {
                    D::bar_read(dev, ctx, bar, a.offset, buf);
                }
            }
            _ => return Err(EINVAL),
        }
        Ok(buf.len())
    }

    fn set_irqs(&self, arg: usize) -> Result<isize> {
        let mut hdr = [0u8; IRQ_SET_MINSZ];
        UserBuf::new(arg, IRQ_SET_MINSZ).read(&mut hdr)?;
        let s = check_set(&hdr, |i| self.irq_info(i).map_or(0, |x| x.count)).map_err(kerr)?;
        let mut data = KVec::from_elem(0u8, s.data_size, GFP_KERNEL)?;
        UserBuf::new(arg.wrapping_add(IRQ_SET_MINSZ), s.data_size).read(&mut data)?;

        // Take new eventfd references before the lock: a bad fd fails the
        // call without changing anything.
        let newfd = match (s.data, s.count) {
            (IrqData::EventFd, 1) => match data
                .get(..4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            {
                Some(-1) => None,
                Some(fd) if fd >= 0 => Some(EventFd::from_fd(fd)?),
                _ => return Err(EINVAL),
            },
            (IrqData::EventFd, _) => return Err(EINVAL),
            _ => None,
        };
        // Whether a NONE/BOOL request applies (BOOL acts where the byte is set).
        let act = match s.data {
            IrqData::None => s.count > 0,
            IrqData::Bool => data.first().is_some_and(|&b| b != 0),
            IrqData::EventFd => true,
        };

        let mut g = self.inner.lock();
        let irqs = &mut g.ctx.irqs;
        // Dropped after the lock: putting an eventfd may take other locks.
        let old: Option<EventFd>;
        match (s.index, s.action) {
            (VFIO_PCI_INTX_IRQ_INDEX, IrqAction::Mask)
            | (VFIO_PCI_INTX_IRQ_INDEX, IrqAction::Unmask) => {
                if s.data == IrqData::EventFd {
                    // Unmask through an eventfd (irqfd) is not offered.
                    return Err(EINVAL);
                }
                if act && irqs.mode == IrqMode::Intx {
                    let mask = s.action == IrqAction::Mask;
                    irqs.intx_masked = mask;
                    if !mask && irqs.asserted {
                        g.ctx.deliver_intx();
                    }
                }
                old = None;
            }
            (VFIO_PCI_INTX_IRQ_INDEX | VFIO_PCI_MSI_IRQ_INDEX, IrqAction::Trigger) => {
                let mode = if s.index == VFIO_PCI_INTX_IRQ_INDEX {
                    IrqMode::Intx
                } else {
                    IrqMode::Msi
                };
                if s.data == IrqData::EventFd || (s.count == 0 && s.data == IrqData::None) {
                    if irqs.mode != IrqMode::None && irqs.mode != mode {
                        // One mode at a time, as vfio-pci enforces.
                        return Err(EINVAL);
                    }
                    let slot = if mode == IrqMode::Intx {
                        &mut irqs.intx
                    } else {
                        &mut irqs.msi
                    };
                    old = core::mem::replace(slot, newfd);
                    irqs.mode = if slot.is_some() { mode } else { IrqMode::None };
                    irqs.intx_masked = false;
                } else {
                    // Loopback: NONE or a set BOOL fires the interrupt.
                    if act && irqs.mode == mode {
                        let fd = if mode == IrqMode::Intx {
                            &irqs.intx
                        } else {
                            &irqs.msi
                        };
                        if let Some(fd) = fd {
                            fd.signal();
                        }
                    }
                    old = None;
                }
            }
            (VFIO_PCI_REQ_IRQ_INDEX, IrqAction::Trigger) => {
                if s.data == IrqData::EventFd || (s.count == 0 && s.data == IrqData::None) {
                    old = core::mem::replace(&mut irqs.req, newfd);
                } else {
                    if act {
                        if let Some(fd) = &irqs.req {
                            fd.signal();
                        }
                    }
                    old = None;
                }
            }
            _ => return Err(ENOTTY),
        }
        drop(g);
        drop(old);
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
            (8, VFIO_PCI_NUM_REGIONS),
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
        ctx.cfg = self.reset_cfg.clone();
        ctx.irqs.intx_masked = false;
        ctx.irqs.asserted = false;
        ctx.irqs.stopped = false;
        ctx.irqs.held = false;
        D::reset(dev, ctx);
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
        // The last user went: drop every eventfd it left set, so nothing
        // leaks and no stale trigger survives to the next open.
        let (a, b, c) = {
            let mut g = self.inner.lock();
            let irqs = &mut g.ctx.irqs;
            irqs.mode = IrqMode::None;
            (irqs.intx.take(), irqs.msi.take(), irqs.req.take())
        };
        drop((a, b, c));
        // Data files still open fail from now on: the transfer cannot
        // outlive the user that started it.
        self.mig_reset();
        self.reset();
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
                self.mig_reset();
                self.reset();
                Ok(0)
            }
            _ => Err(ENOTTY),
        }
    }

    fn region_info(&self, index: u32) -> Result<vfio::RegionInfo> {
        let size = self.region_size(index).ok_or(EINVAL)?;
        let flags = if size > 0 {
            VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE
        } else {
            0
        };
        Ok(vfio::RegionInfo {
            offset: region::index_to_offset(index),
            size,
            flags,
        })
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
