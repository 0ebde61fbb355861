// SPDX-License-Identifier: GPL-2.0

//! The physical parent: rmdev as the PCI driver of a 16550 multi-port serial
//! card, slicing the card's ports among mediated devices.
//!
//! Binding is explicit, as with vfio-pci: the driver's one ID entry matches
//! only a device whose `driver_override` names `rmdev`, and probe refuses a
//! card it has no layout for ([`super::physcard`]). A bound card is an mdev
//! parent with the serial types; its pool is the card's ports, and each port
//! of an instance is backed by one physical port, which the instance
//! mediates ([`super::mediate`]): the guest programs a virtual 16550, and
//! rmdev drives the real one.
//!
//! The hardware side has three parts:
//! * the card's hard interrupt handler, which services every port that
//!   interrupts ([`HwPort::service`]: received bytes into a ring, queued
//!   bytes into the transmit FIFO) under the port's interrupt-safe lock, and
//!   wakes the interrupt thread when a port has news;
//! * the interrupt thread, which wakes the instance using the port; the
//!   instance then moves bytes between the rings and its virtual port under
//!   its own lock ([`crate::vfio_pci_core::PciDevice::event`]);
//! * the instance's register accesses, which do the same after every guest
//!   access to a mediated port.
//!
//! Lock order: the instance's lock, then a port's lock. The hard handler
//! takes only port locks; the thread takes none while it wakes.

use super::{
    hwport::{HwPort, PortIo},
    mediate, physcard,
    serial::PortSource,
    uart::Uart,
};
use crate::ffi::{
    event::Waker,
    irqlock::{new_irq_spinlock, IrqSpinLock},
    mdev::Parent,
    pci::{any_device_override_only, enable_device_managed},
    portio::Regs,
};
use crate::sysfs::{lifecycle::SerialTypes, pool::Pool};
use core::{
    fmt,
    sync::atomic::{AtomicBool, Ordering},
};
use kernel::{
    device::{self, Bound, Core},
    devres::Devres,
    irq, new_mutex, pci,
    prelude::*,
    str::CString,
    sync::{Arc, Mutex},
};

impl PortIo for Regs<'_> {
    #[inline]
    fn read(&self, reg: u8) -> u8 {
        Regs::read(self, reg)
    }

    #[inline]
    fn write(&self, reg: u8, v: u8) {
        Regs::write(self, reg, v)
    }
}

/// One physical port of a bound card.
#[pin_data]
struct PhysPort {
    /// The BAR holding its registers, and their offset in it.
    bar: u8,
    off: usize,
    /// The driver's state of the port; the hard interrupt handler takes it.
    #[pin]
    hw: IrqSpinLock<HwPort>,
    /// The instance using the port, as a waker.
    #[pin]
    user: Mutex<Option<Waker>>,
    /// The hard handler found news for the user; the thread passes it on.
    news: AtomicBool,
}

impl PhysPort {
    fn new(bar: u8, off: usize) -> impl PinInit<Self> {
        pin_init!(Self {
            bar,
            off,
            hw <- new_irq_spinlock!(HwPort::new(), c"rmdev_hwport"),
            user <- new_mutex!(None),
            news: AtomicBool::new(false),
        })
    }
}

/// A bound card's hardware: what its driver data, its interrupt handler and
/// the instances using its ports share.
#[pin_data]
pub(crate) struct CardHw {
    /// The PCI device's name (`0000:00:05.0`), for the instances' state.
    name: CString,
    /// The clock of the card's ports, as a base baud rate.
    base_baud: u32,
    /// The mapped BARs, by BAR number; revoked when the card unbinds.
    bars: KVec<(u8, Devres<pci::Bar<'static>>)>,
    ports: KVec<Pin<KBox<PhysPort>>>,
    /// Which ports an instance holds (bit `i` for port `i`).
    #[pin]
    claimed: Mutex<u32>,
}

impl CardHw {
    /// Maps the BARs of `pdev`, a card of layout `layout`, and checks that
    /// every port answers as a 16550.
    fn new(pdev: &pci::Device<Core<'_>>, layout: &physcard::Layout) -> Result<Arc<Self>> {
        let dev: &device::Device = pdev.as_ref();
        // Port and memory BARs are accessed alike (`ffi/portio.rs`): only
        // a missing BAR matters.
        let windows = physcard::windows(layout, |bar| match pdev.resource_len(u32::from(bar)) {
            Ok(len) if len > 0 => (physcard::BarKind::Io, len),
            _ => (physcard::BarKind::None, 0),
        })
        .map_err(|_| {
            dev_err!(dev, "the BARs of this {} are too small\n", layout.name);
            ENODEV
        })?;
        let n = usize::from(layout.ports);
        let mut bars = KVec::new();
        let mut ports = KVec::with_capacity(n, GFP_KERNEL)?;
        for w in windows.iter().flatten() {
            let (bar, off) = (w.bar, w.offset);
            if !bars.iter().any(|(b, _)| *b == bar) {
                let mapped = pdev.iomap_region(u32::from(bar), c"rmdev")?.into_devres()?;
                bars.push((bar, mapped), GFP_KERNEL)?;
            }
            let off = usize::try_from(off).map_err(|_| EINVAL)?;
            ports.push(
                KBox::pin_init(PhysPort::new(bar, off), GFP_KERNEL)?,
                GFP_KERNEL,
            )?;
        }
        let card = Arc::pin_init(
            try_pin_init!(Self {
                name: CString::try_from_fmt(fmt!("{}", dev.name()))?,
                base_baud: layout.base_baud,
                bars,
                ports,
                claimed <- new_mutex!(0),
            }? Error),
            GFP_KERNEL,
        )?;
        for i in 0..n {
            match card.with_io(i, |hw, io| {
                let ok = HwPort::probe(io);
                hw.stop(io);
                ok
            }) {
                Some(true) => {}
                _ => {
                    dev_err!(
                        dev,
                        "port {} of this {} does not answer as a 16550\n",
                        i,
                        layout.name
                    );
                    return Err(ENODEV);
                }
            }
        }
        Ok(card)
    }

    /// The mapping of BAR `bar`.
    fn bar(&self, bar: u8) -> Option<&Devres<pci::Bar<'static>>> {
        self.bars.iter().find(|(b, _)| *b == bar).map(|(_, m)| m)
    }

    /// Runs `f` on port `index` with its registers, from process context;
    /// `None` once the card is gone.
    fn with_io<R>(&self, index: usize, f: impl FnOnce(&mut HwPort, &Regs<'_>) -> R) -> Option<R> {
        let port = self.ports.get(index)?;
        let bar = self.bar(port.bar)?.try_access()?;
        let regs = Regs::new(&bar, port.off).ok()?;
        let mut hw = port.hw.lock();
        Some(f(&mut hw, &regs))
    }

    /// Claims `n` free ports (the lowest numbered) for a new instance.
    pub(crate) fn claim(this: &Arc<Self>, n: usize) -> Option<[Option<PortRef>; 2]> {
        let mut claimed = this.claimed.lock();
        let mut out = [None, None];
        let mut mask = *claimed;
        for slot in out.iter_mut().take(n) {
            let index = (0..this.ports.len()).find(|&i| mask & (1 << i) == 0)?;
            mask |= 1 << index;
            *slot = Some(index);
        }
        *claimed = mask;
        drop(claimed);
        Some(out.map(|i| {
            i.map(|index| PortRef {
                card: this.clone(),
                index,
            })
        }))
    }

    /// Port `index` starts working for the instance `waker` wakes.
    pub(crate) fn attach(&self, index: usize, waker: Waker) {
        let Some(port) = self.ports.get(index) else {
            return;
        };
        *port.user.lock() = Some(waker);
        self.with_io(index, |hw, io| hw.start(io));
    }

    /// Port `index` stops and is free again.
    fn detach(&self, index: usize) {
        let Some(port) = self.ports.get(index) else {
            return;
        };
        *port.user.lock() = None;
        self.with_io(index, |hw, io| hw.stop(io));
        *self.claimed.lock() &= !(1 << index);
    }
}

/// An instance's hold on one physical port; dropping it stops the port and
/// frees it.
pub(crate) struct PortRef {
    card: Arc<CardHw>,
    index: usize,
}

impl PortRef {
    /// The card and port number, to attach the port once the instance
    /// exists.
    pub(crate) fn target(&self) -> (Arc<CardHw>, usize) {
        (self.card.clone(), self.index)
    }

    /// Mediates between the guest's port `uart` and this physical port
    /// (see [`mediate::sync`]). Atomic context is fine.
    pub(crate) fn sync(&self, uart: &mut Uart) {
        let base = self.card.base_baud;
        self.card
            .with_io(self.index, |hw, io| mediate::sync(uart, hw, io, base));
    }
}

impl Drop for PortRef {
    fn drop(&mut self) {
        self.card.detach(self.index);
    }
}

impl fmt::Display for PortRef {
    /// The card and port, then what the physical port does: the divisor
    /// and LCR it runs with, the bytes waiting for the guest, and whether
    /// it holds further bytes back in the hardware.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.card.name.to_str().unwrap_or("?"),
            self.index
        )?;
        let Some(port) = self.card.ports.get(self.index) else {
            return Ok(());
        };
        let (line, queued, throttled) = {
            let hw = port.hw.lock();
            (hw.line(), hw.rx_len(), hw.throttled())
        };
        write!(
            f,
            " divisor {} lcr {:#04x} rxq {} throttled {}",
            line.divisor,
            line.lcr,
            queued,
            u8::from(throttled)
        )
    }
}

/// The card's interrupt handler.
struct CardIrq {
    card: Arc<CardHw>,
}

impl irq::ThreadedHandler for CardIrq {
    /// Services every port that interrupts. The line may be shared: a card
    /// with no port interrupting says so.
    fn handle(&self, dev: &device::Device<Bound>) -> irq::ThreadedIrqReturn {
        let mut handled = false;
        let mut news = false;
        for port in self.card.ports.iter() {
            let Some(Ok(bar)) = self.card.bar(port.bar).map(|b| b.access(dev)) else {
                continue;
            };
            let Ok(regs) = Regs::new(bar, port.off) else {
                continue;
            };
            let ev = port.hw.lock().service(&regs);
            handled |= ev.handled;
            if ev.rx || ev.tx_room || ev.modem {
                port.news.store(true, Ordering::Release);
                news = true;
            }
        }
        if news {
            irq::ThreadedIrqReturn::WakeThread
        } else if handled {
            irq::ThreadedIrqReturn::Handled
        } else {
            irq::ThreadedIrqReturn::None
        }
    }

    /// Tells the instances using ports with news.
    fn handle_threaded(&self, _dev: &device::Device<Bound>) -> irq::IrqReturn {
        for port in self.card.ports.iter() {
            if port.news.swap(false, Ordering::AcqRel) {
                let user = port.user.lock().clone();
                if let Some(w) = user {
                    w.wake();
                }
            }
        }
        irq::IrqReturn::Handled
    }
}

/// A bound card: the mdev parent on it, its interrupt and its hardware.
#[pin_data]
pub(crate) struct PhysParent {
    /// Dropped first (fields drop in order): removes every instance, which
    /// stops their ports, before the interrupt and the BARs go.
    #[pin]
    parent: Parent<SerialTypes>,
    #[pin]
    irq: irq::ThreadedRegistration<CardIrq>,
    _card: Arc<CardHw>,
}

/// The PCI driver of the cards.
pub(crate) struct PciDriver;

kernel::pci_device_table!(
    PCI_TABLE,
    MODULE_PCI_TABLE,
    <PciDriver as pci::Driver>::IdInfo,
    [(any_device_override_only(), ())]
);

impl pci::Driver for PciDriver {
    type IdInfo = ();
    type Data<'bound> = PhysParent;
    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: &'bound Self::IdInfo,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        pin_init::pin_init_scope(move || {
            let dev: &device::Device = pdev.as_ref();
            let (vendor, device) = (pdev.vendor_id().as_raw(), pdev.device_id());
            let (subvendor, subdevice) = (pdev.subsystem_vendor_id(), pdev.subsystem_device_id());
            let Some(layout) = physcard::lookup(vendor, device, subvendor, subdevice) else {
                dev_err!(
                    dev,
                    "{:04x}:{:04x} is not a serial card rmdev knows\n",
                    vendor,
                    device
                );
                return Err(ENODEV);
            };
            enable_device_managed(pdev)?;
            let card = CardHw::new(pdev, layout)?;
            let vectors = pdev.alloc_irq_vectors(1, 1, pci::IrqTypes::all())?;
            let pool = Arc::new(Pool::new(u32::from(layout.ports)), GFP_KERNEL)?;
            dev_info!(
                dev,
                "{} with {} ports: an mdev parent\n",
                layout.name,
                layout.ports
            );
            Ok(try_pin_init!(PhysParent {
                irq <- pdev.request_threaded_irq(
                    *vectors.start(),
                    irq::Flags::SHARED,
                    c"rmdev",
                    Ok::<_, Error>(CardIrq { card: card.clone() }),
                ),
                parent <- Parent::new_registered(
                    dev,
                    SerialTypes::TYPES,
                    PortSource {
                        pool,
                        card: Some(card.clone()),
                    },
                ),
                _card: card,
            }))
        })
    }
}
