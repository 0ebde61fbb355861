// SPDX-License-Identifier: GPL-2.0

//! The mdev parent driver and its device personalities.
//!
//! The one personality so far is a PCI serial card with one or two 16550A
//! ports, guest-compatible with the kernel's `mtty` sample (same IDs, class
//! and BAR layout), built on [`crate::vfio_pci_core`] through its hooks only.

pub(crate) mod card;
pub(crate) mod uart;

use crate::ffi::mdev::{AttrInfo, MdevDriver, TypeInfo};
use crate::sysfs::{buf::Buf, parse::parse_bool, pool::Pool, types::TYPES};
use crate::vfio_pci_core::{
    emul::{
        config::{Bar, ConfigSpace},
        mig::{Sections, Writer, TAG_DEVICE},
        region::DevRegion,
        EResult, Errno,
    },
    Ctx, PciCore, PciDevice,
};
use core::fmt::{self, Write};
use kernel::{prelude::*, sync::Arc};
use uart::Uart;

/// The serial card personality: `ports` 16550A ports.
pub(crate) struct Serial {
    ports: usize,
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
}

impl SerialState {
    fn update_irq(&self, n: usize, ctx: &mut Ctx) {
        let level = self.ports[..n].iter().any(Uart::irq);
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

    fn bar_read(state: &mut SerialState, ctx: &mut Ctx, bar: usize, off: u64, data: &mut [u8]) {
        let n = state.ports.len();
        if let Some(port) = state.ports.get_mut(bar) {
            // The library checked `off + data.len()` against the BAR's size,
            // so the register offsets cannot wrap.
            for (i, b) in data.iter_mut().enumerate() {
                *b = port.read(off.wrapping_add(i as u64));
            }
        }
        state.update_irq(n, ctx);
    }

    fn bar_write(state: &mut SerialState, ctx: &mut Ctx, bar: usize, off: u64, data: &[u8]) {
        let n = state.ports.len();
        if let Some(port) = state.ports.get_mut(bar) {
            for (i, &b) in data.iter().enumerate() {
                port.write(off.wrapping_add(i as u64), b);
            }
        }
        state.update_irq(n, ctx);
    }

    fn reset(state: &mut SerialState, ctx: &mut Ctx) {
        state.ports.iter_mut().for_each(Uart::reset);
        ctx.set_irq(false);
    }

    const MIGRATION: bool = true;

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
        // Every port loads into a copy first, so a bad second port leaves
        // the first one untouched too.
        let mut ports = state.ports.clone();
        for (i, p) in ports[..self.ports].iter_mut().enumerate() {
            p.load(s.get(TAG_DEVICE + i as u16)?)?;
        }
        state.ports = ports;
        Ok(())
    }
}

/// The mdev driver: types backed by one pool of ports.
pub(crate) struct SerialDriver {
    pool: Arc<Pool>,
    types: [TypeInfo; TYPES.len()],
}

impl SerialDriver {
    /// A driver drawing on `pool`.
    pub(crate) fn new(pool: Arc<Pool>) -> Self {
        Self {
            pool,
            types: core::array::from_fn(|i| TypeInfo {
                sysfs_name: TYPES[i].sysfs_name,
                pretty_name: TYPES[i].pretty_name,
            }),
        }
    }
}

impl MdevDriver for SerialDriver {
    type Instance = PciCore<Serial>;
    const NAME: &'static CStr = c"rmdev";
    const ATTR_GROUP: &'static CStr = c"rmdev";
    const ATTRS: &'static [AttrInfo] = &[
        // Read-only: interrupts delivered, and per port the line settings
        // and byte counters.
        AttrInfo {
            name: c"state",
            writable: false,
        },
        // 1 (default): what a port transmits loops back to its receiver, as
        // mtty does; 0: nothing is attached to the lines.
        AttrInfo {
            name: c"loopback",
            writable: true,
        },
    ];

    fn types(&self) -> &[TypeInfo] {
        &self.types
    }

    fn probe(&self, index: usize) -> Result<Pin<KBox<Self::Instance>>> {
        let t = TYPES.get(index).ok_or(EINVAL)?;
        if !self.pool.try_take(t.ports) {
            return Err(ENOSPC);
        }
        // From here the ports are owned by `Serial`, whose drop returns them,
        // on the error paths below as well.
        let dev = Serial {
            ports: t.ports as usize,
            express: t.express,
            pool: self.pool.clone(),
            regions: [card::stats_region(t.ports as usize)],
        };
        let state = SerialState {
            ports: [Uart::new(), Uart::new()],
        };
        KBox::pin_init(PciCore::new(dev, state)?, GFP_KERNEL)
    }

    fn available(&self, index: usize) -> u32 {
        TYPES.get(index).map_or(0, |t| self.pool.available(t.ports))
    }

    fn description(&self, index: usize, out: &mut Buf<'_>) -> fmt::Result {
        match TYPES.get(index) {
            Some(t) => writeln!(out, "{}", t.description),
            None => Ok(()),
        }
    }

    fn show_attr(instance: &Self::Instance, index: usize, out: &mut Buf<'_>) -> fmt::Result {
        let ports = instance.device().ports;
        instance.with_state(|s, ctx| {
            if index == 1 {
                return writeln!(out, "{}", u8::from(s.ports[0].wired()));
            }
            writeln!(out, "irqs {}", ctx.irqs_delivered())?;
            for (i, p) in s.ports[..ports].iter().enumerate() {
                let st = p.stats();
                writeln!(
                    out,
                    "port{} divisor {} lcr {:#04x} mcr {:#04x} tx {} rx {} overrun {}",
                    i, st.divisor, st.lcr, st.mcr, st.tx, st.rx, st.overruns
                )?;
            }
            Ok(())
        })
    }

    fn store_attr(instance: &Self::Instance, index: usize, input: &[u8]) -> Result {
        if index != 1 {
            return Err(EACCES);
        }
        let wired = parse_bool(input).ok_or(EINVAL)?;
        instance.with_state_mut(|s| s.ports.iter_mut().for_each(|p| p.set_wired(wired)));
        Ok(())
    }
}
