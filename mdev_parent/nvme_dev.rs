// SPDX-License-Identifier: GPL-2.0

//! The mediated NVMe controller: the kernel-free model ([`super::nvme`])
//! on the library, with namespaces in host RAM that the parent owns.
//!
//! The controller's registers (BAR0) are served in process context
//! ([`PciDevice::process_bar`]) under the device's own mutex, as is the
//! worker that services the queues ([`PciDevice::work`]): both reach guest
//! memory through the library's DMA layer, which sleeps. A doorbell write
//! records its value and kicks the worker; the worker fetches commands,
//! runs admin commands inside the model, executes I/O requests against the
//! namespace (copies between guest memory and the namespace's pages), and
//! posts their completions, signalling each completion queue's vector.
//!
//! The library's lock guards only a reset counter: a VFIO device reset or a
//! Function Level Reset, which the library handles under its spinlock,
//! bumps it, and the next register access or worker run (under the mutex)
//! puts the controller back to its power-on state before anything else. The
//! worker executes requests synchronously, under the mutex, so no request
//! of the old controller survives a reset.

use super::{
    nvme::{
        cmd::{sc, Status},
        ctrl::{Controller, Effect, IrqMode},
        io::{IoKind, IoRequest},
        Config, DmaFault, GuestMem, Namespace, MAX_NS,
    },
    nvme_pci,
};
use crate::sysfs::pool::Pool;
use crate::vfio_pci_core::{
    dma::Dma,
    emul::{
        config::{Bar, ConfigSpace},
        intrs::IrqMode as LibIrqMode,
        EResult,
    },
    Ctx, Lib, PciCore, PciDevice,
};
use kernel::{
    alloc::{KVec, VVec},
    new_mutex,
    prelude::*,
    sync::{Arc, Mutex},
};

/// A namespace in host RAM, shared by name between the instances that see
/// it (a migration source and its destination see the same data).
#[pin_data]
pub(crate) struct RamNs {
    /// What the controllers report.
    pub(crate) ns: Namespace,
    /// The blocks. A mutex: copies to and from guest memory sleep.
    #[pin]
    data: Mutex<VVec<u8>>,
}

impl RamNs {
    /// A zeroed namespace of `bytes` bytes (a whole number of 512-byte
    /// blocks) with identity `id`.
    pub(crate) fn new(bytes: usize, id: [u8; 16]) -> Result<Arc<Self>> {
        let ns = Namespace {
            blocks: (bytes / 512) as u64,
            lba_shift: 9,
            id,
        };
        if ns.bytes() != Some(bytes as u64) {
            return Err(EINVAL);
        }
        let data = VVec::from_elem(0u8, bytes, GFP_KERNEL)?;
        Arc::pin_init(
            pin_init!(Self {
                ns,
                data <- new_mutex!(data),
            }),
            GFP_KERNEL,
        )
    }
}

/// What a parent's NVMe instances share: their namespace and how many of
/// them there may be.
pub(crate) struct NvmeSource {
    pub(crate) ns: Arc<RamNs>,
    pub(crate) pool: Arc<Pool>,
}

/// Guest memory through the library's DMA layer.
struct Mem<'a>(&'a Dma);

impl GuestMem for Mem<'_> {
    fn read(&mut self, iova: u64, buf: &mut [u8]) -> Result<(), DmaFault> {
        self.0.read(iova, buf).map_err(|_| DmaFault)
    }

    fn write(&mut self, iova: u64, buf: &[u8]) -> Result<(), DmaFault> {
        self.0.write(iova, buf).map_err(|_| DmaFault)
    }
}

/// The most I/O requests the worker takes from the model per round.
const BATCH: usize = 16;

/// The controller and what the worker needs with it, under the mutex.
struct Ctl {
    ctrl: KBox<Controller>,
    /// The library's reset counter this controller has seen.
    resets: u64,
    /// The interrupt mode the model was told.
    mode: IrqMode,
    /// Requests taken from the model in this round (capacity [`BATCH`]).
    reqs: KVec<IoRequest>,
}

/// The NVMe controller personality.
pub(crate) struct Nvme {
    /// In its own allocation: the library moves the device into place.
    ctl: Pin<KBox<Mutex<Ctl>>>,
    ns: Arc<RamNs>,
    _taken: Taken,
}

/// The state behind the library's lock: resets to apply.
pub(crate) struct NvmeState {
    resets: u64,
}

/// The model's interrupt mode for the library's.
fn model_mode(m: LibIrqMode) -> IrqMode {
    match m {
        LibIrqMode::Msix => IrqMode::MsiX,
        LibIrqMode::Msi => IrqMode::Msi,
        _ => IrqMode::Intx,
    }
}

impl Nvme {
    /// Applies a reset the library recorded and the guest's interrupt
    /// mode, before the controller does anything else.
    fn sync(&self, c: &mut Ctl, lib: &Lib<'_, Self>) {
        let (resets, mode) = lib.with_state(|s, ctx| (s.resets, model_mode(ctx.irq_mode())));
        if resets != c.resets {
            // Requests run synchronously under the mutex, so none is
            // outstanding: the reset completes at once.
            let _ = c.ctrl.function_reset();
            c.resets = resets;
        }
        if mode != c.mode {
            c.mode = mode;
            let irqs = c.ctrl.set_irq_mode(mode);
            Self::deliver(c, lib, Effect { kick: false, irqs });
        }
    }

    /// Signals what `e` asks for: the worker, and the vectors (with INTx,
    /// the line's level, which any register write may change).
    fn deliver(c: &Ctl, lib: &Lib<'_, Self>, e: Effect) {
        if e.kick {
            lib.kick();
        }
        if c.mode == IrqMode::Intx {
            let level = c.ctrl.intx_asserted();
            lib.with_state(|_, ctx| ctx.set_irq(level));
        } else if !e.irqs.is_empty() {
            lib.with_state(|_, ctx| {
                for v in e.irqs.vectors() {
                    ctx.pulse(v.into());
                }
            });
        }
    }

    /// Executes `r` against the namespace: the status to complete it with.
    fn execute(&self, dma: &Dma, r: &IoRequest) -> Status {
        if r.nsid != 1 {
            return sc::INVALID_NS;
        }
        let mut data = self.ns.data.lock();
        let Ok(mut at) = usize::try_from(r.offset) else {
            return sc::LBA_RANGE;
        };
        match r.kind {
            IoKind::Read | IoKind::Write => {
                for seg in r.segments() {
                    let len = seg.len as usize;
                    let Some(part) = at.checked_add(len).and_then(|end| data.get_mut(at..end))
                    else {
                        return sc::LBA_RANGE;
                    };
                    let ok = if r.kind == IoKind::Read {
                        dma.write(seg.iova, part)
                    } else {
                        dma.read(seg.iova, part)
                    };
                    if ok.is_err() {
                        return sc::DATA_TRANSFER_ERROR;
                    }
                    at += len;
                }
                sc::SUCCESS
            }
            IoKind::WriteZeroes => {
                let Some(part) = usize::try_from(r.len)
                    .ok()
                    .and_then(|n| at.checked_add(n))
                    .and_then(|end| data.get_mut(at..end))
                else {
                    return sc::LBA_RANGE;
                };
                part.fill(0);
                sc::SUCCESS
            }
            // RAM is always durable for the guest; deallocation is a hint.
            IoKind::Flush | IoKind::Deallocate => sc::SUCCESS,
        }
    }

    /// The identity and namespaces of instance number `serial` of `src`.
    fn config_for(src: &NvmeSource, serial: u32) -> Config {
        let mut cfg = Config {
            vid: nvme_pci::VENDOR,
            ssvid: nvme_pci::VENDOR,
            serial: [b' '; 20],
            model: Config::padded(b"rmdev mediated NVMe controller"),
            subnqn: [0; 256],
            cntlid: 1,
            vectors: nvme_pci::VECTORS,
            namespaces: [None; MAX_NS],
        };
        // Every instance has its own serial number and NQN: the guest's
        // driver refuses two controllers of one subsystem otherwise.
        let mut sn = [0u8; 20];
        let mut w = Fmt(&mut sn, 0);
        let _ = core::fmt::write(&mut w, format_args!("RMDEV{serial:08X}"));
        let n = w.1;
        cfg.serial = Config::padded(sn.get(..n).unwrap_or(&[]));
        let mut nqn = [0u8; 64];
        let mut w = Fmt(&mut nqn, 0);
        let _ = core::fmt::write(
            &mut w,
            format_args!("nqn.2026-12.io.rmdev:nvme:{serial:08x}"),
        );
        let n = w.1;
        cfg.subnqn = Config::nqn(nqn.get(..n).unwrap_or(&[]));
        cfg.namespaces[0] = Some(src.ns.ns);
        cfg
    }

    /// Makes instance number `serial` on `src`: `ENOSPC` when the parent
    /// has no room.
    pub(crate) fn create(src: &NvmeSource, serial: u32) -> Result<Pin<KBox<Instance>>> {
        if !src.pool.try_take(1) {
            return Err(ENOSPC);
        }
        // From here the slot is owned by `Taken`, whose drop returns it, on
        // the error paths below as well.
        let taken = Taken(src.pool.clone());
        let cfg = KBox::new(Self::config_for(src, serial), GFP_KERNEL)?;
        let ctrl = Controller::new(&cfg, IrqMode::Intx).map_err(|_| EINVAL)?;
        drop(cfg);
        let ctrl = KBox::new(ctrl, GFP_KERNEL)?;
        let ctl = KBox::pin_init(
            new_mutex!(Ctl {
                ctrl,
                resets: 0,
                mode: IrqMode::Intx,
                reqs: KVec::with_capacity(BATCH, GFP_KERNEL)?,
            }),
            GFP_KERNEL,
        )?;
        let dev = Nvme {
            ctl,
            ns: src.ns.clone(),
            _taken: taken,
        };
        KBox::pin_init(PciCore::new(dev, NvmeState { resets: 0 })?, GFP_KERNEL)
    }
}

/// One instance's place in its parent's pool, given back on drop.
struct Taken(Arc<Pool>);

impl Drop for Taken {
    fn drop(&mut self) {
        self.0.give(1);
    }
}

/// Formats into a byte buffer, counting what it wrote.
struct Fmt<'a>(&'a mut [u8], usize);

impl core::fmt::Write for Fmt<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            let slot = self.0.get_mut(self.1).ok_or(core::fmt::Error)?;
            *slot = b;
            self.1 += 1;
        }
        Ok(())
    }
}

impl PciDevice for Nvme {
    type State = NvmeState;
    const NAME: &'static CStr = c"rmdev-nvme";
    const DMA: bool = true;

    fn config(&self) -> EResult<ConfigSpace> {
        nvme_pci::config()
    }

    fn bar(&self, index: usize) -> Bar {
        nvme_pci::bar(index)
    }

    fn msi_vectors(&self) -> u32 {
        nvme_pci::VECTORS.into()
    }

    /// Nothing is served under the lock: BAR0 is served in process context
    /// and the MSI-X BAR by the library.
    fn bar_read(_s: &mut NvmeState, _ctx: &mut Ctx, _bar: usize, _off: u64, _data: &mut [u8]) {}

    fn bar_write(_s: &mut NvmeState, _ctx: &mut Ctx, _bar: usize, _off: u64, _data: &[u8]) {}

    fn process_bar(&self, bar: usize) -> bool {
        bar == nvme_pci::REGS_BAR
    }

    fn bar_rw(&self, lib: &Lib<'_, Self>, _bar: usize, off: u64, data: &mut [u8], write: bool) {
        let mut c = self.ctl.lock();
        self.sync(&mut c, lib);
        // Register-sized pieces: the model takes 1 to 8 bytes at a time.
        let mut at = 0;
        while at < data.len() {
            let n = match data.len() - at {
                8.. if (off + at as u64) % 8 == 0 => 8,
                4.. => 4,
                k => k,
            };
            let Some(piece) = data.get_mut(at..at + n) else {
                break;
            };
            let pos = off + at as u64;
            if write {
                let mut v = [0u8; 8];
                v[..n].copy_from_slice(piece);
                let e = c.ctrl.mmio_write(pos, n, u64::from_le_bytes(v));
                Self::deliver(&c, lib, e);
            } else {
                let v = c.ctrl.mmio_read(pos, n).to_le_bytes();
                piece.copy_from_slice(&v[..n]);
            }
            at += n;
        }
    }

    fn work(&self, lib: &Lib<'_, Self>) {
        let dma = lib.dma();
        let mut c = self.ctl.lock();
        self.sync(&mut c, lib);
        loop {
            let c = &mut *c;
            c.reqs.clear();
            let reqs = &mut c.reqs;
            let e = c.ctrl.process(&mut Mem(dma), &mut |r: &IoRequest| {
                reqs.len() < BATCH && reqs.push(*r, GFP_NOWAIT).is_ok()
            });
            let mut more = e.kick;
            Self::deliver(c, lib, Effect { kick: false, ..e });
            for i in 0..c.reqs.len() {
                let Some(r) = c.reqs.get(i).copied() else {
                    break;
                };
                let status = self.execute(dma, &r);
                let e = c.ctrl.complete(&mut Mem(dma), r.tag, status);
                more |= e.kick;
                Self::deliver(c, lib, Effect { kick: false, ..e });
            }
            if !more && c.reqs.is_empty() {
                break;
            }
        }
    }

    fn reset(state: &mut NvmeState, ctx: &mut Ctx) {
        state.resets = state.resets.wrapping_add(1);
        ctx.set_irq(false);
    }
}

/// An instance of the NVMe controller.
pub(crate) type Instance = PciCore<Nvme>;
