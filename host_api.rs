// SPDX-License-Identifier: GPL-2.0

//! Host-only entry points into the kernel-free code, for `tools/host-fuzz`.
//!
//! The kernel-free items are `pub(crate)`, as the module build wants them
//! (its `unreachable_pub` lint); this module, which only `host.rs` lists and
//! Kbuild never compiles, wraps what the fuzzer drives in `pub` types. It
//! holds no model of its own: every call goes to the code the module runs.
//! The one exception is [`Card::load_stream`] and [`Card::save_stream`],
//! which repeat, step for step, what the kernel glue
//! (`vfio_pci_core/migration.rs`) does around the kernel-free stream code:
//! the glue itself needs a kernel to run.

extern crate std;

use super::emul::{
    config::ConfigSpace,
    intrs::{self, Ctx, Detached, IrqArgs, IrqHost, Signal, VECTORS},
    irq::{self, IrqData, IrqSetHdr},
    mig::{self, Identity, Reader, Received, Writer},
    Errno,
};
use crate::mdev_parent::{card, uart};
use core::cell::{Cell, RefCell};
use std::{rc::Rc, vec, vec::Vec};

/// An error of the kernel-free code, or of the fake kernel side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// `EINVAL`.
    Inval,
    /// `ENOTTY`.
    NoTty,
    /// `EBADF`: the fake kernel side has no eventfd behind the descriptor.
    BadFd,
    /// `EBUSY`: the INTx unmask irqfd is armed already.
    Busy,
    /// `ENOSPC`: a bounded table is full.
    NoSpc,
    /// `EFAULT`: guest memory is not mapped.
    Fault,
    /// `E2BIG`: too many items.
    TooBig,
    /// `EOVERFLOW`: a range wraps.
    Overflow,
    /// `EPERM`: an access not allowed.
    Perm,
}

impl From<Errno> for Error {
    fn from(e: Errno) -> Self {
        match e {
            Errno::Inval => Error::Inval,
            Errno::NoTty => Error::NoTty,
            Errno::NoSpc => Error::NoSpc,
            Errno::Fault => Error::Fault,
            Errno::Busy => Error::Busy,
            Errno::TooBig => Error::TooBig,
            Errno::Overflow => Error::Overflow,
            Errno::Perm => Error::Perm,
        }
    }
}

/// The result type of this module.
pub type Result<T = ()> = core::result::Result<T, Error>;

/// The number of MSI and MSI-X vectors the library delivers.
pub const MAX_VECTORS: usize = VECTORS;
/// The conventional and the PCI Express configuration space sizes.
pub const CFG_SIZE: usize = super::emul::config::CFG_SIZE;
/// The size of PCI Express configuration space.
pub const CFG_EXT_SIZE: usize = super::emul::config::CFG_EXT_SIZE;
/// The bytes of one port's registers in a migration stream.
pub const UART_SAVED_SIZE: usize = 1 + uart::FIFO_SIZE + 10;
/// The receive FIFO's depth.
pub const FIFO_SIZE: usize = uart::FIFO_SIZE;
/// The largest stream a resuming file accepts.
pub const MAX_STREAM: usize = mig::MAX_STREAM;
/// The migration identity name of the serial card.
pub const SERIAL_NAME: &[u8] = b"rmdev-serial";

/// The serial card's configuration space (`mdev_parent/card.rs`).
#[derive(Clone)]
pub struct Config(ConfigSpace);

impl Config {
    /// The card with `ports` ports, conventional or PCI Express, at reset.
    pub fn card(ports: usize, express: bool) -> Result<Self> {
        Ok(Self(card::config(ports, express)?))
    }

    /// The bytes the guest can reach.
    pub fn size(&self) -> usize {
        self.0.size()
    }

    /// A guest read.
    pub fn read(&self, off: usize, out: &mut [u8]) -> Result {
        Ok(self.0.read(off, out)?)
    }

    /// A guest write.
    pub fn write(&mut self, off: usize, data: &[u8]) -> Result {
        Ok(self.0.write(off, data)?)
    }

    /// Whether a write asked for a Function Level Reset since the last call.
    pub fn take_flr_request(&mut self) -> bool {
        self.0.take_flr_request()
    }

    /// The device sets a register's value, bypassing the guest's
    /// permissions (as it raises status bits).
    pub fn device_set(&mut self, off: usize, len: usize, v: u32) {
        self.0.set(off, len, v)
    }

    /// The device raises MSI vector `v`: whether the message goes out now.
    pub fn msi_raise(&mut self, v: u32) -> bool {
        self.0.msi_raise(v)
    }

    /// The pending MSI vectors now unmasked, taken.
    pub fn msi_take_unmasked(&mut self) -> u32 {
        self.0.msi_take_unmasked()
    }
}

/// What a `VFIO_DEVICE_SET_IRQS` header holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetHdr {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub start: u32,
    pub count: u32,
}

/// The checked request, as `check_set` decoded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// 0 none, 1 bool, 2 eventfd.
    pub data: u8,
    /// 0 mask, 1 unmask, 2 trigger.
    pub action: u8,
    /// Bytes of data after the header.
    pub data_size: usize,
}

/// `check_set` (`emul/irq.rs`) with `count_of` giving each index's count.
pub fn check_set(h: &SetHdr, count_of: impl Fn(u32) -> u32) -> Result<Checked> {
    let s = irq::check_set(&to_hdr(h), count_of)?;
    Ok(Checked {
        data: match s.data {
            IrqData::None => 0,
            IrqData::Bool => 1,
            IrqData::EventFd => 2,
        },
        action: match s.action {
            irq::IrqAction::Mask => 0,
            irq::IrqAction::Unmask => 1,
            irq::IrqAction::Trigger => 2,
        },
        data_size: s.data_size,
    })
}

fn to_hdr(h: &SetHdr) -> IrqSetHdr {
    IrqSetHdr {
        argsz: h.argsz,
        flags: h.flags,
        index: h.index,
        start: h.start,
        count: h.count,
    }
}

/// What the fake kernel side saw.
#[derive(Default)]
struct Log {
    /// Signals per descriptor 0-31.
    signals: RefCell<[u64; 32]>,
    /// Eventfd references taken and not put yet.
    live: Cell<i64>,
    /// The fake lock is held.
    locked: Cell<bool>,
    /// Something the contract forbids happened: a reference put under the
    /// lock, the lock taken twice, irqfd arming under the lock.
    violation: Cell<Option<&'static str>>,
}

impl Log {
    fn violate(&self, what: &'static str) {
        if self.violation.get().is_none() {
            self.violation.set(Some(what));
        }
    }
}

/// A counting fake eventfd: a reference to descriptor `fd`.
pub struct Fd {
    fd: i32,
    log: Rc<Log>,
}

impl Signal for Fd {
    fn signal(&self) {
        if let Some(c) = self.log.signals.borrow_mut().get_mut(self.fd as usize) {
            *c += 1;
        }
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        if self.log.locked.get() {
            self.log.violate("eventfd put under the lock");
        }
        self.log.live.set(self.log.live.get() - 1);
    }
}

/// The library's interrupt state for one card, behind a fake kernel side:
/// descriptors 0-31 are eventfds, anything else is `EBADF`.
pub struct Irqs {
    ctx: RefCell<Ctx<Fd>>,
    log: Rc<Log>,
    unmask: Cell<Option<i32>>,
    counts: [u32; 5],
    flags: [u32; 5],
    ports: usize,
    express: bool,
}

impl IrqHost for Irqs {
    type Fd = Fd;
    type Error = Error;

    fn eventfd(&self, fd: i32) -> Result<Fd> {
        if !(0..32).contains(&fd) {
            return Err(Error::BadFd);
        }
        self.log.live.set(self.log.live.get() + 1);
        Ok(Fd {
            fd,
            log: self.log.clone(),
        })
    }

    fn locked<R>(&self, f: impl FnOnce(&mut Ctx<Fd>) -> R) -> R {
        if self.log.locked.replace(true) {
            self.log.violate("lock taken twice");
        }
        let r = f(&mut self.ctx.borrow_mut());
        self.log.locked.set(false);
        r
    }

    fn arm_unmask(&self, fd: i32) -> Result {
        if self.log.locked.get() {
            self.log.violate("irqfd armed under the lock");
        }
        if !(0..32).contains(&fd) {
            return Err(Error::BadFd);
        }
        if self.unmask.get().is_some() {
            return Err(Error::Busy);
        }
        self.unmask.set(Some(fd));
        Ok(())
    }

    fn disarm_unmask(&self) {
        if self.log.locked.get() {
            self.log.violate("irqfd disarmed under the lock");
        }
        self.unmask.set(None);
    }
}

impl Irqs {
    /// The interrupt state of a freshly opened card (the serial card offers
    /// one MSI vector and, on the PCI Express variant, two MSI-X vectors).
    pub fn card(ports: usize, express: bool) -> Result<Self> {
        let cfg = card::config(ports, express)?;
        let msix = if express {
            u32::from(card::MSIX_VECTORS)
        } else {
            0
        };
        let mut counts = [0; 5];
        let mut flags = [0; 5];
        for i in 0..5 {
            let info = irq::irq_info(i as u32, &cfg, 1, msix).ok_or(Error::Inval)?;
            counts[i] = info.count;
            flags[i] = info.flags;
        }
        Ok(Self {
            ctx: RefCell::new(Ctx::new(cfg)),
            log: Rc::new(Log::default()),
            unmask: Cell::new(None),
            counts,
            flags,
            ports,
            express,
        })
    }

    /// `GET_IRQ_INFO`'s count for `index` (0 past the last index).
    pub fn count(&self, index: u32) -> u32 {
        self.counts.get(index as usize).copied().unwrap_or(0)
    }

    /// `GET_IRQ_INFO`'s flags for `index` (0 past the last index).
    pub fn info_flags(&self, index: u32) -> u32 {
        self.flags.get(index as usize).copied().unwrap_or(0)
    }

    /// `VFIO_DEVICE_SET_IRQS` as the glue (`vfio_pci_core/intrs.rs`) runs
    /// it: the header checked, `data` (what follows the header in the
    /// user's buffer, as long as the user made it) decoded, then the call.
    pub fn set_irqs(&self, h: &SetHdr, data: &[u8]) -> Result {
        let counts = self.counts;
        let s = irq::check_set(&to_hdr(h), |i| counts.get(i as usize).copied().unwrap_or(0))?;
        // The user's buffer ends where its data ends: a copy past it faults.
        let data = data.get(..s.data_size).ok_or(Error::Inval)?;
        let mut fds = [0i32; VECTORS];
        let args = match s.data {
            IrqData::None => IrqArgs::None,
            IrqData::Bool => {
                if s.data_size > 4 * VECTORS {
                    return Err(Error::Inval);
                }
                IrqArgs::Bool(data)
            }
            IrqData::EventFd => {
                if s.data_size > 4 * VECTORS {
                    return Err(Error::Inval);
                }
                for (f, b) in fds.iter_mut().zip(data.chunks_exact(4)) {
                    *f = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
                IrqArgs::Fds(fds.get(..s.count as usize).ok_or(Error::Inval)?)
            }
        };
        intrs::set_irqs(self, &s, args)
    }

    /// The device sets its interrupt line.
    pub fn set_line(&self, level: bool) {
        self.locked(|c| c.set_irq(level))
    }

    /// The INTx unmask irqfd fires (if one is armed).
    pub fn fire_unmask_irqfd(&self) {
        if self.unmask.get().is_some() {
            self.locked(|c| c.unmask_intx())
        }
    }

    /// A guest configuration write with its interrupt effects; whether it
    /// asked for a Function Level Reset.
    pub fn write_config(&self, off: usize, data: &[u8]) -> Result<bool> {
        Ok(self.locked(|c| c.write_config(off, data))?)
    }

    /// A guest configuration read.
    pub fn read_config(&self, off: usize, out: &mut [u8]) -> Result {
        Ok(self.locked(|c| c.cfg.read(off, out))?)
    }

    /// The device stops for migration.
    pub fn stop(&self) {
        self.locked(|c| c.stop())
    }

    /// The device runs again.
    pub fn run(&self) {
        self.locked(|c| c.run())
    }

    /// A device reset (`device`) or a Function Level Reset, as far as
    /// interrupts go: configuration space back to reset, the line low.
    pub fn reset(&self, device: bool) -> Result {
        let cfg = card::config(self.ports, self.express)?;
        self.locked(|c| {
            c.cfg = cfg;
            c.reset_irqs(device);
        });
        Ok(())
    }

    /// The last user closes the device: every eventfd is dropped after the
    /// lock, the irqfd disarmed first.
    pub fn close(&self) {
        self.disarm_unmask();
        let mut out: Detached<Fd> = [const { None }; VECTORS];
        let rest = self.locked(|c| c.detach_all(&mut out));
        drop(rest);
        drop(out);
    }

    /// Signals eventfd `fd` received.
    pub fn signals(&self, fd: i32) -> u64 {
        self.log
            .signals
            .borrow()
            .get(fd as usize)
            .copied()
            .unwrap_or(0)
    }

    /// Eventfd references held now.
    pub fn live_refs(&self) -> i64 {
        self.log.live.get()
    }

    /// The descriptor the unmask irqfd is armed on.
    pub fn unmask_armed(&self) -> Option<i32> {
        self.unmask.get()
    }

    /// A locking rule the library broke, if any.
    pub fn violation(&self) -> Option<&'static str> {
        self.log.violation.get()
    }

    /// Interrupts the library counted as delivered.
    pub fn delivered(&self) -> u64 {
        self.locked(|c| c.irqs_delivered())
    }
}

/// One 16550A port (`mdev_parent/uart.rs`).
#[derive(Clone, Default)]
pub struct Uart(uart::Uart);

impl Uart {
    /// A port at reset.
    pub fn new() -> Self {
        Self(uart::Uart::new())
    }

    /// A guest read of register `reg`.
    pub fn read(&mut self, reg: u64) -> u8 {
        self.0.read(reg)
    }

    /// A guest write of `v` to register `reg`.
    pub fn write(&mut self, reg: u64, v: u8) {
        self.0.write(reg, v)
    }

    /// Whether the port asserts its interrupt.
    pub fn irq(&self) -> bool {
        self.0.irq()
    }

    /// Wires or cuts the line's loopback.
    pub fn set_wired(&mut self, w: bool) {
        self.0.set_wired(w)
    }

    /// A register reset.
    pub fn reset(&mut self) {
        self.0.reset()
    }

    /// `(divisor, lcr, mcr, tx, rx, overruns)`.
    pub fn stats(&self) -> (u16, u8, u8, u64, u64, u64) {
        let s = self.0.stats();
        (s.divisor, s.lcr, s.mcr, s.tx, s.rx, s.overruns)
    }

    /// The port's saved state (exactly [`UART_SAVED_SIZE`] bytes).
    pub fn save(&self) -> Vec<u8> {
        let mut buf = vec![0u8; UART_SAVED_SIZE];
        let mut w = Writer::new(&mut buf);
        // The buffer is exactly as long as the saved state.
        let _ = self.0.save(&mut w);
        buf
    }

    /// Loads a saved state.
    pub fn load(&mut self, data: &[u8]) -> Result {
        let saved = uart::Saved::check(data)?;
        self.0.apply(&saved);
        Ok(())
    }
}

/// A whole serial card as the library holds it for migration: its
/// configuration space, interrupt line level, scratch memory (PCI Express
/// variant) and ports.
#[derive(Clone)]
pub struct Card {
    ports: usize,
    express: bool,
    cfg: ConfigSpace,
    fp: u32,
    line: bool,
    memory: Vec<u8>,
    uarts: [uart::Uart; 2],
}

impl Card {
    /// A card at reset.
    pub fn new(ports: usize, express: bool) -> Result<Self> {
        let cfg = card::config(ports, express)?;
        let fp = cfg.layout_fingerprint();
        let mem =
            card::bar_memory(express, card::MSIX_BAR).map_or(0, |r| (r.end - r.start) as usize);
        Ok(Self {
            ports,
            express,
            cfg,
            fp,
            line: false,
            memory: vec![0; mem],
            uarts: [uart::Uart::new(), uart::Uart::new()],
        })
    }

    /// The port count.
    pub fn ports(&self) -> usize {
        self.ports
    }

    /// The migration variant: the port count, 0x100 for PCI Express.
    pub fn variant(&self) -> u32 {
        self.ports as u32 | u32::from(self.express) << 8
    }

    /// The configuration layout's fingerprint.
    pub fn fingerprint(&self) -> u32 {
        self.fp
    }

    /// Bytes of the changeable configuration bytes in a stream.
    pub fn config_len(&self) -> usize {
        self.cfg.change_map().len()
    }

    /// Which bits of each changeable byte a load takes, in stream order:
    /// what `restore_changeable` does with all ones against all zeros.
    pub fn config_masks(&self) -> Vec<u8> {
        let map = self.cfg.change_map();
        let n = self.config_len();
        let mut c = self.cfg.clone();
        let _ = c.restore_changeable(&map, &vec![0xff; n]);
        let mut ones = vec![0; n];
        let _ = c.save_changeable(&map, &mut ones);
        let _ = c.restore_changeable(&map, &vec![0; n]);
        let mut zeros = vec![0; n];
        let _ = c.save_changeable(&map, &mut zeros);
        zeros.iter().zip(ones).map(|(z, o)| z ^ o).collect()
    }

    /// A guest configuration write.
    pub fn cfg_write(&mut self, off: usize, data: &[u8]) -> Result {
        Ok(self.cfg.write(off, data)?)
    }

    /// A guest configuration read.
    pub fn cfg_read(&self, off: usize, out: &mut [u8]) -> Result {
        Ok(self.cfg.read(off, out)?)
    }

    /// The device raises error status bits (device-owned).
    pub fn cfg_device_set(&mut self, off: usize, len: usize, v: u32) {
        self.cfg.set(off, len, v)
    }

    /// A guest access to a port register; the line follows the ports.
    pub fn port_write(&mut self, port: usize, reg: u64, v: u8) {
        if let Some(u) = self.uarts.get_mut(port) {
            u.write(reg, v);
        }
        self.line = self.uarts[..self.ports].iter().any(uart::Uart::irq);
    }

    /// A guest read of a port register.
    pub fn port_read(&mut self, port: usize, reg: u64) -> u8 {
        let v = self.uarts.get_mut(port).map_or(0xff, |u| u.read(reg));
        self.line = self.uarts[..self.ports].iter().any(uart::Uart::irq);
        v
    }

    /// A write to the scratch memory.
    pub fn mem_write(&mut self, off: usize, v: u8) {
        if let Some(b) = self.memory.get_mut(off) {
            *b = v;
        }
    }

    /// The scratch memory's size.
    pub fn mem_len(&self) -> usize {
        self.memory.len()
    }

    /// The stream a `STOP_COPY` saving file reads: the identity record,
    /// then the state record, as `PciCore::write_stream` writes them.
    pub fn save_stream(&self) -> Result<Vec<u8>> {
        let mut c = Writer::counting();
        self.write_stream(&mut c)?;
        let mut buf = vec![0u8; c.len()];
        let mut w = Writer::new(&mut buf);
        self.write_stream(&mut w)?;
        Ok(buf)
    }

    fn write_stream(&self, w: &mut Writer<'_>) -> core::result::Result<(), Errno> {
        let id = Identity {
            name: SERIAL_NAME,
            variant: self.variant(),
        };
        w.record(mig::KIND_IDENTITY, &id, |_| Ok(()))?;
        let map = self.cfg.change_map();
        w.record(mig::KIND_STATE, &id, |w| {
            w.section(mig::TAG_CONFIG, |w| {
                w.u32(self.fp)?;
                w.fill(map.len(), |b| self.cfg.save_changeable(&map, b))
            })?;
            w.section(mig::TAG_IRQ, |w| w.u8(self.line.into()))?;
            if !self.memory.is_empty() {
                w.section(mig::TAG_BAR_MEMORY, |w| w.bytes(&self.memory))?;
            }
            for (i, p) in self.uarts[..self.ports].iter().enumerate() {
                w.section(mig::TAG_DEVICE + i as u16, |w| p.save(w))?;
            }
            Ok(())
        })
    }

    /// A resuming file receives `stream` in writes of the lengths `chunks`
    /// gives (the rest in one last write), then `RESUMING` to `STOP` loads
    /// it, as `MigFile::write` and `PciCore::load` do: each write is checked
    /// as it arrives (a bad one breaks the file), the load checks
    /// everything before it changes anything. `Err` leaves the card as it
    /// was.
    pub fn load_stream(&mut self, stream: &[u8], chunks: &[usize]) -> Result {
        if stream.len() > MAX_STREAM {
            return Err(Error::Inval);
        }
        let id = Identity {
            name: SERIAL_NAME,
            variant: self.variant(),
        };
        let mut got = Received {
            state: None,
            partial: 0,
        };
        let mut checked = 0;
        let mut len = 0;
        let mut sizes = chunks.iter().copied();
        while len < stream.len() {
            let n = sizes
                .next()
                .unwrap_or(stream.len() - len)
                .min(stream.len() - len);
            len += n;
            let buf = &stream[..len];
            let r = mig::check_stream(buf.get(checked..).unwrap_or(&[]), &id)?;
            if let Some((start, end)) = r.state {
                got.state = Some((start + checked, end + checked));
            }
            got.partial = r.partial;
            checked = buf.len() - r.partial;
        }
        let s = mig::sections(stream, got)?;
        let mut cfg = Reader::new(s.get(mig::TAG_CONFIG)?);
        if cfg.u32()? != self.fp {
            return Err(Error::Inval);
        }
        let cfg = cfg.bytes(cfg.remaining())?;
        let mut irq = Reader::new(s.get(mig::TAG_IRQ)?);
        let asserted = irq.bool()?;
        irq.finish()?;
        let memory = if !self.memory.is_empty() {
            let m = s.get(mig::TAG_BAR_MEMORY)?;
            if m.len() != self.memory.len() {
                return Err(Error::Inval);
            }
            m
        } else {
            if s.count(mig::TAG_BAR_MEMORY..=mig::TAG_BAR_MEMORY) != 0 {
                return Err(Error::Inval);
            }
            &[]
        };
        let map = self.cfg.change_map();
        map.check(cfg)?;
        // `Serial::load`.
        if s.count(mig::TAG_DEVICE..=u16::MAX) != self.ports {
            return Err(Error::Inval);
        }
        let mut saved = Vec::with_capacity(self.ports);
        for i in 0..self.ports {
            saved.push(uart::Saved::check(s.get(mig::TAG_DEVICE + i as u16)?)?);
        }
        for (p, v) in self.uarts.iter_mut().zip(&saved) {
            p.apply(v);
        }
        self.cfg.restore_changeable(&map, cfg)?;
        self.memory.copy_from_slice(memory);
        self.line = asserted;
        Ok(())
    }
}

/// `parse_bool` (`sysfs/parse.rs`): what a boolean attribute accepts.
pub fn parse_bool(input: &[u8]) -> Option<bool> {
    crate::sysfs::parse::parse_bool(input)
}

/// The shared pool of ports (`sysfs/pool.rs`).
pub struct Pool(crate::sysfs::pool::Pool);

impl Pool {
    /// A full pool of `capacity` units.
    pub fn new(capacity: u32) -> Self {
        Self(crate::sysfs::pool::Pool::new(capacity))
    }

    /// Takes `n` units, or none.
    pub fn try_take(&self, n: u32) -> bool {
        self.0.try_take(n)
    }

    /// Returns `n` units.
    pub fn give(&self, n: u32) {
        self.0.give(n)
    }

    /// Units free now.
    pub fn free(&self) -> u32 {
        self.0.free()
    }

    /// Instances of `per` units that fit now.
    pub fn available(&self, per: u32) -> u32 {
        self.0.available(per)
    }
}

/// Where one run of a BAR access goes (`emul/rdwr.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunTarget {
    /// Reads return this byte, writes are dropped.
    Fill(u8),
    /// The BAR's plain memory, at this offset into it.
    Memory(u64),
    /// The device, at this offset of the BAR.
    Device(u64),
}

/// The runs `(at, len, target)` of an access of `len` bytes at `off` of a
/// BAR whose MSI-X table, PBA and memory are `table`, `pba` and `memory`.
pub fn bar_runs(
    table: core::ops::Range<u64>,
    pba: core::ops::Range<u64>,
    memory: core::ops::Range<u64>,
    off: u64,
    len: usize,
) -> Vec<(usize, usize, RunTarget)> {
    use super::emul::rdwr::{BarParts, Target};
    let p = BarParts { table, pba, memory };
    p.runs(off, len)
        .map(|r| {
            let t = match r.target {
                Target::Fill(b) => RunTarget::Fill(b),
                Target::Memory(o) => RunTarget::Memory(o),
                Target::Device(o) => RunTarget::Device(o),
            };
            (r.at, r.len, t)
        })
        .collect()
}

/// `region::decode`: `(index, offset, count)` of a `pread`/`pwrite` at
/// `pos` of `count` bytes, region `i` being `sizes[i]` bytes long (`None`:
/// no such region).
pub fn region_decode(pos: i64, count: usize, sizes: &[Option<u64>]) -> Result<(u32, u64, usize)> {
    let a = super::emul::region::decode(pos, count, |i| sizes.get(i as usize).copied().flatten())?;
    Ok((a.index, a.offset, a.count))
}

/// `region::decode_mmap`: `(index, area offset, len)` of an `mmap()` at
/// page `pgoff` of `len` bytes, region `i`'s areas being the `(offset,
/// size)` pairs `areas[i]` lists (at most two).
pub fn region_decode_mmap(
    pgoff: u64,
    len: u64,
    page_shift: u32,
    areas: &[Vec<(u64, u64)>],
) -> Result<(u32, u64, u64)> {
    use super::emul::region::{Area, MAX_AREAS};
    let m = super::emul::region::decode_mmap(pgoff, len, page_shift, |i| {
        let mut out = [None; MAX_AREAS];
        if let Some(list) = areas.get(i as usize) {
            for (o, &(offset, size)) in out.iter_mut().zip(list) {
                *o = Some(Area { offset, size });
            }
        }
        out
    })?;
    Ok((m.index, m.area_offset, m.len))
}
