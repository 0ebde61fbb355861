// SPDX-License-Identifier: GPL-2.0

//! The serial card personality: one or two 16550A ports behind the card's
//! PCI face ([`super::card`]), built on [`crate::vfio_pci_core`] through its
//! hooks only. Ports come from the pool of the parent the instance belongs
//! to and go back when the instance's VFIO device is released. On a
//! physical parent ([`super::phys`]) each port is also backed by one of the
//! card's physical ports, which it mediates ([`super::mediate`]).

use super::{
    card,
    phys::{CardHw, PortRef},
    uart::{Saved, Uart},
};
use crate::sysfs::{pool::Pool, types::TypeDesc};
use crate::vfio_pci_core::{
    emul::{
        config::{Bar, ConfigSpace},
        mig::{Sections, Writer, TAG_DEVICE},
        region::DevRegion,
        EResult, Errno,
    },
    Ctx, PciCore, PciDevice,
};
use core::fmt;
use kernel::{prelude::*, sync::Arc};

/// Where a parent's instances get their ports: the pool that counts them,
/// and on a physical parent the card whose ports back them.
pub(crate) struct PortSource {
    pub(crate) pool: Arc<Pool>,
    pub(crate) card: Option<Arc<CardHw>>,
}

/// The serial card personality: `ports` 16550A ports.
pub(crate) struct Serial {
    ports: usize,
    /// Backed by a card's physical ports.
    physical: bool,
    /// The PCI Express variant (see [`card`]).
    express: bool,
    /// The pool the ports came from; they go back when the instance goes.
    pool: Arc<Pool>,
    /// The device-specific regions: the statistics region (see
    /// [`card::stats_region`]).
    regions: [DevRegion; 1],
}

impl Drop for Serial {
    fn drop(&mut self) {
        self.pool.give(self.ports as u32);
    }
}

/// Per-instance mutable state: the ports.
pub(crate) struct SerialState {
    ports: [Uart; 2],
    /// The physical ports backing the ports, on a physical parent. Dropping
    /// one hands the physical port back to the card.
    phys: [Option<PortRef>; 2],
    /// The ports the card has (the others have no BAR and stay idle).
    count: usize,
}

impl SerialState {
    /// Sets the card's interrupt line from its ports' interrupts.
    #[inline(always)]
    fn update_irq(&self, ctx: &mut Ctx) {
        // A plain loop over the card's ports: this runs on every register
        // access.
        let mut level = false;
        for p in self.ports.iter().take(self.count) {
            level |= p.irq();
        }
        ctx.set_irq(level);
    }
}

impl PciDevice for Serial {
    type State = SerialState;
    const NAME: &'static CStr = c"rmdev-serial";

    fn config(&self) -> EResult<ConfigSpace> {
        card::config(self.ports, self.express)
    }

    fn msi_vectors(&self) -> u32 {
        1
    }

    fn bar(&self, index: usize) -> Bar {
        card::bar(self.ports, self.express, index)
    }

    fn bar_memory(&self, index: usize) -> Option<core::ops::Range<u64>> {
        card::bar_memory(self.express, index)
    }

    fn regions(&self) -> &[DevRegion] {
        &self.regions
    }

    /// The statistics region: the library checked the access against its
    /// size, which covers the instance's ports only.
    fn region_read(
        state: &mut SerialState,
        _ctx: &mut Ctx,
        _region: usize,
        off: u64,
        data: &mut [u8],
    ) {
        let counters = state.ports.each_ref().map(|p| {
            let s = p.stats();
            [s.tx, s.rx, s.overruns]
        });
        card::stats_read(&counters, off, data);
    }

    #[inline(always)]
    fn bar_read(state: &mut SerialState, ctx: &mut Ctx, bar: usize, off: u64, data: &mut [u8]) {
        if let Some(port) = state.ports.get_mut(bar) {
            // The library checked `off + data.len()` against the BAR's size,
            // so the register offsets cannot wrap.
            for (i, b) in data.iter_mut().enumerate() {
                *b = port.read(off.wrapping_add(i as u64));
            }
        }
        if let (Some(port), Some(Some(phys))) = (state.ports.get_mut(bar), state.phys.get(bar)) {
            phys.sync(port);
        }
        state.update_irq(ctx);
    }

    #[inline(always)]
    fn bar_write(state: &mut SerialState, ctx: &mut Ctx, bar: usize, off: u64, data: &[u8]) {
        if let Some(port) = state.ports.get_mut(bar) {
            for (i, &b) in data.iter().enumerate() {
                port.write(off.wrapping_add(i as u64), b);
            }
        }
        if let (Some(port), Some(Some(phys))) = (state.ports.get_mut(bar), state.phys.get(bar)) {
            phys.sync(port);
        }
        state.update_irq(ctx);
    }

    fn reset(state: &mut SerialState, ctx: &mut Ctx) {
        state.ports.iter_mut().for_each(Uart::reset);
        for (port, phys) in state.ports.iter_mut().zip(&state.phys) {
            if let Some(phys) = phys {
                phys.sync(port);
            }
        }
        ctx.set_irq(false);
    }

    /// The physical port has news (bytes, room, modem lines).
    fn event(state: &mut SerialState, ctx: &mut Ctx) {
        for (port, phys) in state.ports.iter_mut().zip(&state.phys) {
            if let Some(phys) = phys {
                phys.sync(port);
            }
        }
        state.update_irq(ctx);
    }

    const MIGRATION: bool = true;

    /// A port backed by hardware does not migrate: the bytes in flight on
    /// its physical port and the line itself stay on this host.
    fn migratable(&self) -> bool {
        !self.physical
    }

    /// The port count, and 0x100 for the PCI Express variant: a stream
    /// loads only into a card of the same type.
    fn mig_variant(&self) -> u32 {
        self.ports as u32 | u32::from(self.express) << 8
    }

    /// One section per port, tag `TAG_DEVICE + port`.
    fn save(&self, state: &SerialState, w: &mut Writer<'_>) -> EResult {
        for (i, p) in state.ports[..self.ports].iter().enumerate() {
            w.section(TAG_DEVICE + i as u16, |w| p.save(w))?;
        }
        Ok(())
    }

    fn load(&self, state: &mut SerialState, s: &Sections<'_>) -> EResult {
        if s.count(TAG_DEVICE..=u16::MAX) != self.ports {
            return Err(Errno::Inval);
        }
        // Every port is checked before any changes, so a bad second port
        // leaves the first one untouched too.
        let mut saved = [None, None];
        for (i, v) in saved.iter_mut().take(self.ports).enumerate() {
            *v = Some(Saved::check(s.get(TAG_DEVICE + i as u16)?)?);
        }
        for (p, v) in state.ports.iter_mut().zip(&saved) {
            if let Some(v) = v {
                p.apply(v);
            }
        }
        Ok(())
    }
}

/// An instance of the serial card: the library's device around [`Serial`].
pub(crate) type Instance = PciCore<Serial>;

impl Serial {
    /// Makes an instance of type `t`, taking its ports from `pool`: `ENOSPC`
    /// when the pool has too few.
    pub(crate) fn create(src: &PortSource, t: &TypeDesc) -> Result<Pin<KBox<Instance>>> {
        let pool = &src.pool;
        if !pool.try_take(t.ports) {
            return Err(ENOSPC);
        }
        // From here the ports are owned by `Serial`, whose drop returns them,
        // on the error paths below as well.
        let dev = Serial {
            ports: t.ports as usize,
            physical: src.card.is_some(),
            express: t.express,
            pool: pool.clone(),
            regions: [card::stats_region(t.ports as usize)],
        };
        let count = (t.ports as usize).min(card::MAX_PORTS);
        // The pool counts the card's ports, so the card has them free.
        let phys = match &src.card {
            Some(c) => CardHw::claim(c, count).ok_or(ENOSPC)?,
            None => [None, None],
        };
        let mut ports = [Uart::new(), Uart::new()];
        for (port, _) in ports.iter_mut().zip(&phys).filter(|(_, p)| p.is_some()) {
            port.set_mediated();
        }
        // Attaching sleeps: it is done below, outside the instance's lock.
        let attach = phys.each_ref().map(|p| p.as_ref().map(PortRef::target));
        let state = SerialState { ports, phys, count };
        let instance = KBox::pin_init(PciCore::new(dev, state)?, GFP_KERNEL)?;
        // The physical ports start working, and tell the instance when they
        // have news.
        let waker = instance.waker();
        for (card, index) in attach.iter().flatten() {
            card.attach(*index, waker.clone());
        }
        Ok(instance)
    }

    /// Writes the instance's state: interrupts delivered, and per port the
    /// line settings and byte counters.
    pub(crate) fn show_state(instance: &Instance, out: &mut dyn fmt::Write) -> fmt::Result {
        let ports = instance.device().ports;
        instance.with_state(|s, ctx| {
            writeln!(out, "irqs {}", ctx.irqs_delivered())?;
            for (i, p) in s.ports[..ports].iter().enumerate() {
                let st = p.stats();
                write!(
                    out,
                    "port{} divisor {} lcr {:#04x} mcr {:#04x} tx {} rx {} overrun {}",
                    i, st.divisor, st.lcr, st.mcr, st.tx, st.rx, st.overruns
                )?;
                match &s.phys[i] {
                    Some(phys) => writeln!(out, " phys {}", phys)?,
                    None => writeln!(out)?,
                }
            }
            Ok(())
        })
    }

    /// Whether what the ports transmit loops back to their receivers.
    pub(crate) fn loopback(instance: &Instance) -> bool {
        instance.with_state(|s, _| s.ports[0].wired())
    }

    /// Wires the ports' transmitters to their receivers, or cuts them.
    pub(crate) fn set_loopback(instance: &Instance, wired: bool) {
        instance.with_state_mut(|s| s.ports.iter_mut().for_each(|p| p.set_wired(wired)));
    }
}
