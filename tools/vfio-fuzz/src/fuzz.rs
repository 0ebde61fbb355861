// SPDX-License-Identifier: GPL-2.0

//! One fuzzing thread: a seeded sequence of calls on the shared device fd,
//! each checked against the outcomes the uAPI contract allows.

use crate::model::{region_info, walk_caps, Expect, Model, CAP_ROOM, WINDOW};
use crate::rng::Rng;
use crate::stats::{Kind, Stats};
use crate::sys::{self, ioctl, Group, Sys};
use std::mem::offset_of;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::RwLock;
use vfio_uapi::{
    argsz, vfio_device_feature, vfio_device_feature_dma_logging_control,
    vfio_device_feature_dma_logging_report, vfio_device_feature_mig_data_size,
    vfio_device_feature_mig_state, vfio_device_info, vfio_irq_info, vfio_irq_set,
    vfio_precopy_info, Arg, VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2, VFIO_BASE,
    VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_FEATURE, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
    VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MASK,
    VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
    VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_GET_INFO,
    VFIO_DEVICE_GET_IRQ_INFO, VFIO_DEVICE_RESET, VFIO_DEVICE_SET_IRQS, VFIO_DEVICE_STATE_PRE_COPY,
    VFIO_DEVICE_STATE_PRE_COPY_P2P, VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_RUNNING,
    VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_STOP_COPY, VFIO_IRQ_SET_ACTION_MASK,
    VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_BOOL,
    VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE, VFIO_MIGRATION_PRE_COPY,
    VFIO_MIG_GET_PRECOPY_INFO, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_TYPE,
};

/// An address nothing is mapped at: the kernel must refuse it with EFAULT.
const BAD_PTR: usize = 8;

/// The largest region access.
const MAX_LEN: usize = 8192;

/// Data files a thread keeps open at most.
const MAX_DATA_FDS: usize = 4;

/// Eventfds a thread keeps open.
const EVENTFDS: usize = 4;

/// What the threads share.
pub(crate) struct Shared {
    pub(crate) model: Model,
    pub(crate) group: Group,
    /// The device fd all threads use. Calls hold the read lock; a
    /// close/reopen takes the write lock, so that it is the last close (the
    /// device's `close_device` runs) and no call sees a closed fd.
    pub(crate) dev: RwLock<Option<OwnedFd>>,
    pub(crate) stats: Stats,
    /// Device calls made so far, and the budget.
    pub(crate) done: AtomicU64,
    pub(crate) budget: u64,
    pub(crate) stop: AtomicBool,
}

/// `_IO(type, nr)`.
fn io(nr: u32) -> libc::c_ulong {
    libc::c_ulong::from(u32::from(VFIO_TYPE) << 8 | nr)
}

fn is(r: Sys, allowed: &[i32]) -> bool {
    match r {
        Ok(_) => true,
        Err(e) => allowed.contains(&e),
    }
}

fn errs(r: Sys, allowed: &[i32]) -> bool {
    matches!(r, Err(e) if allowed.contains(&e))
}

/// A migration data file and whether it is a saving (read) one.
struct DataFd {
    fd: OwnedFd,
    saving: bool,
}

pub(crate) struct Fuzz<'a> {
    sh: &'a Shared,
    rng: Rng,
    tid: usize,
    /// The number of the current step in this thread's sequence.
    step: u64,
    efds: Vec<OwnedFd>,
    /// A descriptor number that was an eventfd and is closed (it may be
    /// reused by then: the checks allow for that).
    closed: i32,
    data: Vec<DataFd>,
    /// The last stream read from a saving file, for feeding resuming ones.
    saved: Vec<u8>,
    buf: Vec<u64>,
}

impl<'a> Fuzz<'a> {
    pub(crate) fn new(sh: &'a Shared, tid: usize, seed: u64) -> Self {
        let efds = (0..EVENTFDS).filter_map(|_| sys::eventfd()).collect();
        // A number that was an eventfd and is closed now.
        let closed = sys::eventfd().map_or(-1, |f| f.as_raw_fd());
        Self {
            sh,
            rng: Rng::new(seed),
            tid,
            step: 0,
            efds,
            closed,
            data: Vec::new(),
            saved: Vec::new(),
            buf: vec![0; (MAX_LEN + CAP_ROOM) / 8],
        }
    }

    fn model(&self) -> &Model {
        &self.sh.model
    }

    /// Counts a call and records a failure if `ok` is false.
    fn check(&mut self, k: Kind, ok: bool, what: impl FnOnce() -> String) {
        self.sh.stats.count(k);
        self.sh.done.fetch_add(1, Relaxed);
        if !ok {
            self.sh.stats.fail(format!(
                "thread {} step {}: {}",
                self.tid,
                self.step,
                what()
            ));
        }
    }

    fn buf_addr(&mut self) -> usize {
        self.buf.as_mut_ptr() as usize
    }

    /// Runs until the budget is spent or the run is stopped.
    pub(crate) fn run(&mut self) {
        while !self.sh.stop.load(Relaxed) && self.sh.done.load(Relaxed) < self.sh.budget {
            self.step += 1;
            // A close/reopen in 200 steps: it waits for every other
            // thread's call to end.
            if self.rng.one_in(200) {
                self.reopen();
                continue;
            }
            let choice = 2 + self.rng.below(98);
            let guard = match self.sh.dev.read() {
                Ok(g) => g,
                Err(_) => return,
            };
            let Some(fd) = guard.as_ref().map(AsRawFd::as_raw_fd) else {
                return;
            };
            match choice {
                2..=26 => self.rw(fd, false),
                27..=41 => self.rw(fd, true),
                42..=44 => self.get_info(fd),
                45..=51 => self.region_info(fd),
                52..=55 => self.irq_info(fd),
                56..=66 => self.set_irqs(fd),
                67 => self.reset(fd),
                68..=73 => self.feature(fd),
                74..=81 => self.mig(fd),
                82..=90 => self.data_op(),
                91..=94 => self.mmap(fd),
                95..=97 => self.other_ioctl(fd),
                _ => self.second_fd(),
            }
            drop(guard);
        }
    }

    /// A file position: mostly at the edges of a region, sometimes in a
    /// window no region has, at the top of a window or negative.
    fn pos(&mut self, len: usize) -> i64 {
        let n = self.model().regions.len() as u64;
        let index = match self.rng.below(20) {
            0 => n + self.rng.below(3),
            1 => self.rng.below(1 << 23),
            2 => return -(self.rng.below(1 << 20) as i64) - 1,
            3 => return i64::MAX - self.rng.below(8) as i64,
            _ => self.rng.below(n),
        };
        let base = index << 40;
        let size = self
            .model()
            .regions
            .get(index as usize)
            .map_or(0, |r| r.size);
        let len = len as u64;
        let off = match self.rng.below(12) {
            0 => 0,
            1 => size.wrapping_sub(1),
            2 => size,
            3 => size + 1,
            4 => size.wrapping_sub(len),
            5 => size.wrapping_sub(len).wrapping_add(1),
            6 => size.wrapping_sub(len).wrapping_sub(1),
            7 => WINDOW - 1 - self.rng.below(8),
            8 => WINDOW - len,
            9 => self.rng.below(WINDOW),
            _ => self.rng.below(size.max(1)),
        };
        base.wrapping_add(off & (WINDOW - 1)) as i64
    }

    fn len(&mut self) -> usize {
        match self.rng.below(10) {
            0 => 0,
            1..=4 => self.rng.pick(&[1, 2, 4, 8]),
            5 => self.rng.pick(&[3, 5, 6, 7, 9, 255, 256, 257]),
            6 => 1 << self.rng.below(14),
            _ => self.rng.below(MAX_LEN as u64 + 1) as usize,
        }
        .min(MAX_LEN)
    }

    /// A region read or write, checked exactly against the layout; a read
    /// of configuration space that covers the IDs must return them.
    fn rw(&mut self, fd: RawFd, write: bool) {
        let len = self.len();
        let pos = self.pos(len);
        let bad = self.rng.one_in(50);
        let mut want = self.model().expect_rw(pos, len, write);
        if bad {
            want = match want {
                Expect::Is(Ok(n)) if n > 0 => Expect::Is(Err(libc::EFAULT)),
                // A write may copy its data in before it checks the
                // position: either refusal is right.
                Expect::Is(Err(libc::EINVAL)) if write && len > 0 => Expect::InvalOrFault,
                w => w,
            };
        }
        let addr = if bad { BAD_PTR } else { self.buf_addr() };
        let r = if write {
            let bytes = len.div_ceil(8);
            for i in 0..bytes.min(self.buf.len()) {
                self.buf[i] = self.rng.next();
            }
            sys::pwrite(fd, addr, len, pos)
        } else {
            sys::pread(fd, addr, len, pos)
        };
        let k = if write { Kind::Pwrite } else { Kind::Pread };
        let name = if write { "pwrite" } else { "pread" };
        self.check(k, want.allows(r), || {
            format!("{name}(pos {pos:#x}, len {len}, bad buffer {bad}) = {r:?}, want {want:?}")
        });
        let cfg = self.model().regions[VFIO_PCI_CONFIG_REGION_INDEX as usize].offset as i64;
        if !write && !bad && pos == cfg && matches!(r, Ok(n) if n >= 4) {
            let got = self.buf[0].to_le_bytes();
            let ids = self.model().ids;
            self.check(Kind::Pread, got[..4] == ids, || {
                format!("config read IDs {:02x?}, want {ids:02x?}", &got[..4])
            });
        }
    }

    fn argsz(&mut self, minsz: u32, full: u32) -> u32 {
        match self.rng.below(8) {
            0 => 0,
            1 => minsz - 1,
            2 => minsz,
            3 => full,
            4 => full + 1,
            5 => self.rng.edge_u32(),
            _ => full,
        }
    }

    fn get_info(&mut self, fd: RawFd) {
        let minsz = offset_of!(vfio_device_info, cap_offset) as u32;
        let a = self.argsz(minsz, argsz::<vfio_device_info>());
        let bad = self.rng.one_in(30);
        let info = vfio_device_info {
            argsz: a,
            ..Default::default()
        };
        let mut arg = Arg::with_len(info, &[], 64);
        let r = ioctl(
            fd,
            VFIO_DEVICE_GET_INFO,
            if bad {
                BAD_PTR
            } else {
                arg.as_mut_ptr() as usize
            },
        );
        let h = arg.head();
        let m = self.model();
        let ok = if bad {
            errs(r, &[libc::EFAULT])
        } else if a < minsz {
            errs(r, &[libc::EINVAL])
        } else {
            r == Ok(0)
                && h.flags == m.flags
                && h.num_regions as usize == m.regions.len()
                && h.num_irqs as usize == m.irqs.len()
        };
        self.check(Kind::GetInfo, ok, || {
            format!(
                "GET_INFO(argsz {a}, bad {bad}) = {r:?}, flags {:#x} regions {} irqs {}",
                h.flags, h.num_regions, h.num_irqs
            )
        });
    }

    fn index(&mut self, n: usize) -> u32 {
        match self.rng.below(8) {
            0 => n as u32 + self.rng.below(3) as u32,
            1 => self.rng.edge_u32(),
            _ => self.rng.below(n as u64) as u32,
        }
    }

    /// `GET_REGION_INFO` with `argsz` and index edges; the answer must match
    /// the layout, with the capability chain there only when it fits.
    fn region_info(&mut self, fd: RawFd) {
        let n = self.model().regions.len();
        let index = self.index(n);
        let need = self
            .model()
            .regions
            .get(index as usize)
            .map_or(32, |r| r.need);
        let a = match self.rng.below(4) {
            0 => need.wrapping_sub(1),
            1 => need,
            _ => self.argsz(32, CAP_ROOM as u32),
        };
        let bad = self.rng.one_in(30);
        let (r, arg) = if bad {
            let r = ioctl(fd, vfio_uapi::VFIO_DEVICE_GET_REGION_INFO, BAD_PTR);
            (r, Arg::new(vfio_uapi::vfio_region_info::default(), &[]))
        } else {
            region_info(fd, index, a)
        };
        let h = arg.head();
        let want = self.model().regions.get(index as usize).cloned();
        let (ok, why) = if bad {
            (errs(r, &[libc::EFAULT]), String::new())
        } else if a < 32 {
            (errs(r, &[libc::EINVAL]), String::new())
        } else if let Some(w) = want {
            let caps = h.flags & vfio_uapi::VFIO_REGION_INFO_FLAG_CAPS != 0;
            let base = r == Ok(0)
                && h.offset == w.offset
                && h.size == w.size
                && h.flags & !vfio_uapi::VFIO_REGION_INFO_FLAG_CAPS == w.flags
                && caps == (w.need > 32);
            if !base || !caps {
                (base, String::new())
            } else if a < w.need {
                (h.argsz == w.need && h.cap_offset == 0, String::new())
            } else {
                match walk_caps(&arg) {
                    Ok(areas) => (areas == w.areas, format!(" areas {areas:?}")),
                    Err(e) => (false, e),
                }
            }
        } else {
            (errs(r, &[libc::EINVAL]), String::new())
        };
        self.check(Kind::RegionInfo, ok, || {
            format!(
                "GET_REGION_INFO(index {index}, argsz {a}, bad {bad}) = {r:?}: argsz {} flags {:#x} cap_offset {} size {:#x} offset {:#x}{why}",
                h.argsz, h.flags, h.cap_offset, h.size, h.offset
            )
        });
    }

    fn irq_info(&mut self, fd: RawFd) {
        let n = self.model().irqs.len();
        let index = self.index(n);
        let full = argsz::<vfio_irq_info>();
        let a = self.argsz(full, full);
        let bad = self.rng.one_in(30);
        let mut ii = vfio_irq_info {
            argsz: a,
            index,
            ..Default::default()
        };
        let addr = if bad {
            BAD_PTR
        } else {
            std::ptr::from_mut(&mut ii) as usize
        };
        let r = ioctl(fd, VFIO_DEVICE_GET_IRQ_INFO, addr);
        let want = self.model().irqs.get(index as usize).copied();
        let ok = if bad {
            errs(r, &[libc::EFAULT])
        } else if a < full {
            errs(r, &[libc::EINVAL])
        } else {
            match want {
                Some(w) => r == Ok(0) && (ii.flags, ii.count) == w,
                None => errs(r, &[libc::EINVAL]),
            }
        };
        self.check(Kind::IrqInfo, ok, || {
            format!(
                "GET_IRQ_INFO(index {index}, argsz {a}, bad {bad}) = {r:?}: flags {:#x} count {}, want {want:?}",
                ii.flags, ii.count
            )
        });
    }

    /// An eventfd array element: a live eventfd, -1 (tear down), a closed
    /// descriptor, a descriptor that is no eventfd, or one never opened.
    fn efd(&mut self, dev: RawFd) -> i32 {
        match self.rng.below(10) {
            0 => -1,
            1 => self.closed,
            2 => dev,
            3 => 1 << 20,
            _ => {
                let i = self.rng.below(self.efds.len() as u64) as usize;
                self.efds.get(i).map_or(-1, AsRawFd::as_raw_fd)
            }
        }
    }

    /// `SET_IRQS` with random flags, index, start and count at their edges,
    /// and data (bools or eventfds) that may not match them.
    fn set_irqs(&mut self, fd: RawFd) {
        let data_kind = self.rng.pick(&[
            VFIO_IRQ_SET_DATA_NONE,
            VFIO_IRQ_SET_DATA_BOOL,
            VFIO_IRQ_SET_DATA_EVENTFD,
            VFIO_IRQ_SET_DATA_EVENTFD,
        ]);
        let action = self.rng.pick(&[
            VFIO_IRQ_SET_ACTION_MASK,
            VFIO_IRQ_SET_ACTION_UNMASK,
            VFIO_IRQ_SET_ACTION_TRIGGER,
            VFIO_IRQ_SET_ACTION_TRIGGER,
        ]);
        let mut flags = data_kind | action;
        if self.rng.one_in(10) {
            flags |= 1 << self.rng.below(32);
        }
        let nirqs = self.model().irqs.len();
        let index = self.index(nirqs);
        let max = self.model().irqs.get(index as usize).map_or(1, |i| i.1);
        let start = match self.rng.below(5) {
            0..=2 => 0,
            3 => self.rng.below(u64::from(max) + 2) as u32,
            _ => self.rng.edge_u32(),
        };
        let count = match self.rng.below(6) {
            0 => 0,
            1 | 2 => 1,
            3 => max.saturating_sub(start),
            4 => self.rng.below(u64::from(max) + 2) as u32,
            _ => self.rng.edge_u32(),
        };
        let elem = match data_kind {
            VFIO_IRQ_SET_DATA_BOOL => 1,
            VFIO_IRQ_SET_DATA_EVENTFD => 4,
            _ => 0,
        };
        let items = (count as usize).min(64);
        let mut data = Vec::with_capacity(items * elem);
        for _ in 0..items {
            match elem {
                1 => data.push(self.rng.below(2) as u8),
                4 => {
                    let e = self.efd(fd);
                    data.extend_from_slice(&e.to_ne_bytes());
                }
                _ => {}
            }
        }
        let minsz = argsz::<vfio_irq_set>();
        let exact = minsz + data.len() as u32;
        let a = match self.rng.below(8) {
            0 => exact.wrapping_sub(1),
            1 => self.rng.edge_u32(),
            2 => minsz - 1,
            _ => exact,
        };
        let head = vfio_irq_set {
            argsz: a,
            flags,
            index,
            start,
            count,
            ..Default::default()
        };
        // Room past the data, so that the kernel reads only our memory
        // whatever argsz says (it reads at most count * 4 bytes, capped).
        let mut arg = Arg::with_len(head, &data, 1024);
        let bad = self.rng.one_in(40);
        let addr = if bad {
            BAD_PTR
        } else {
            arg.as_mut_ptr() as usize
        };
        let r = ioctl(fd, VFIO_DEVICE_SET_IRQS, addr);
        let ok = if bad {
            errs(r, &[libc::EFAULT])
        } else if a < minsz || index as usize >= nirqs || flags & !0x3f != 0 {
            errs(r, &[libc::EINVAL])
        } else if data_kind == VFIO_IRQ_SET_DATA_EVENTFD {
            // ENOTTY: an action the index does not support (vfio-pci's
            // answer too, e.g. MASK on MSI); EBUSY: an unmask irqfd is
            // armed already (as vfio-pci's virqfd).
            let busy = action == VFIO_IRQ_SET_ACTION_UNMASK && flags & 0x3f == data_kind | action;
            let e = [libc::EINVAL, libc::ENOTTY, libc::EBADF, libc::EBUSY];
            is(r, &e[..if busy { 4 } else { 3 }])
        } else {
            is(r, &[libc::EINVAL, libc::ENOTTY])
        };
        self.check(Kind::SetIrqs, ok, || {
            format!("SET_IRQS(argsz {a}, flags {flags:#x}, index {index}, start {start}, count {count}, data {data:02x?}, bad {bad}) = {r:?}")
        });
        // Now and then an eventfd is replaced, so that closed ones are
        // seen in use.
        if self.rng.one_in(20) && !self.efds.is_empty() {
            // The new one first, so that it does not take the old number.
            if let Some(e) = sys::eventfd() {
                self.efds.push(e);
            }
            let i = self.rng.below(self.efds.len() as u64 - 1) as usize;
            let old = self.efds.swap_remove(i);
            self.closed = old.as_raw_fd();
            drop(old);
        }
    }

    fn reset(&mut self, fd: RawFd) {
        let r = ioctl(fd, VFIO_DEVICE_RESET, 0);
        self.check(Kind::Reset, r == Ok(0), || format!("RESET = {r:?}"));
    }

    /// `DEVICE_FEATURE` with random flags, feature index, argsz and data.
    fn feature(&mut self, fd: RawFd) {
        let feat = match self.rng.below(4) {
            0 => self.rng.below(0x10000) as u32,
            _ => self.rng.below(14) as u32,
        };
        let mut ops = 0;
        for bit in [
            VFIO_DEVICE_FEATURE_GET,
            VFIO_DEVICE_FEATURE_SET,
            VFIO_DEVICE_FEATURE_PROBE,
        ] {
            if self.rng.one_in(2) {
                ops |= bit;
            }
        }
        let mut flags = feat | ops;
        if self.rng.one_in(12) {
            flags |= 1 << (19 + self.rng.below(13));
        }
        let minsz = argsz::<vfio_device_feature>();
        let a = match self.rng.below(6) {
            0 => self.rng.below(u64::from(minsz) + 1) as u32,
            1 => self.rng.edge_u32(),
            _ => minsz + self.rng.pick(&[0, 4, 8, 16, 24, 32]),
        };
        let mut data = [0u8; 64];
        self.rng.fill(&mut data);
        let scratch = self.buf_addr() as u64;
        let head = vfio_device_feature {
            argsz: a,
            flags,
            ..Default::default()
        };
        let mut arg = Arg::with_len(head, &data, 1024);
        if feat == VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT {
            // The kernel pins the bitmap's pages: keep it in our buffer and
            // small.
            let page = 1u64 << (12 + self.rng.below(3));
            let len = page * self.rng.below(8 * 1024);
            arg.set_data(vfio_device_feature_dma_logging_report {
                iova: self.rng.below(1 << 40) * page,
                length: len,
                page_size: if self.rng.one_in(8) {
                    self.rng.next()
                } else {
                    page
                },
                bitmap: scratch,
            });
        } else if feat == VFIO_DEVICE_FEATURE_DMA_LOGGING_START && self.rng.one_in(2) {
            // Ranges read from our buffer (random bytes, so mostly refused).
            arg.set_data(vfio_device_feature_dma_logging_control {
                page_size: 1 << (12 + self.rng.below(3)),
                num_ranges: self.rng.below(300) as u32,
                __reserved: 0,
                ranges: scratch,
            });
        }
        let bad = self.rng.one_in(40);
        let addr = if bad {
            BAD_PTR
        } else {
            arg.as_mut_ptr() as usize
        };
        let r = ioctl(fd, VFIO_DEVICE_FEATURE, addr);
        let get_set = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET;
        let ok = if bad {
            errs(r, &[libc::EFAULT])
        } else if a < minsz
            || flags & !(VFIO_DEVICE_FEATURE_MASK | get_set | VFIO_DEVICE_FEATURE_PROBE) != 0
            || (ops & VFIO_DEVICE_FEATURE_PROBE == 0 && ops & get_set == get_set)
        {
            errs(r, &[libc::EINVAL])
        } else {
            is(
                r,
                &[
                    libc::EINVAL,
                    libc::ENOTTY,
                    libc::EFAULT,
                    libc::E2BIG,
                    libc::EOVERFLOW,
                ],
            )
        };
        self.check(Kind::Feature, ok, || {
            format!("DEVICE_FEATURE(argsz {a}, flags {flags:#x}, bad {bad}) = {r:?}")
        });
        // A state change may have opened a data file: it is ours now.
        if !bad
            && r.is_ok()
            && feat == VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE
            && ops & VFIO_DEVICE_FEATURE_SET != 0
            && ops & VFIO_DEVICE_FEATURE_PROBE == 0
        {
            if let Some(m) = arg.get_data::<vfio_device_feature_mig_state>() {
                self.adopt(m.data_fd, m.device_state != VFIO_DEVICE_STATE_RESUMING);
            }
        }
    }

    fn adopt(&mut self, fd: i32, saving: bool) {
        if let Some(fd) = sys::own(fd) {
            if self.data.len() >= MAX_DATA_FDS {
                self.data.remove(0);
            }
            if saving {
                self.saved.clear();
            }
            self.data.push(DataFd { fd, saving });
        }
    }

    /// `MIG_DEVICE_STATE` get and set along random arcs, `MIG_DATA_SIZE`
    /// and the `PRECOPY_INFOv2` opt-in.
    fn mig(&mut self, fd: RawFd) {
        let mig = self.model().mig;
        let c = self.rng.below(10);
        if c == 0 {
            let mut d = vfio_device_feature_mig_data_size::default();
            let r = feature(
                fd,
                VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
                &mut d,
            );
            let ok = if mig == 0 {
                errs(r, &[libc::ENOTTY])
            } else {
                r == Ok(0) && d.stop_copy_length > 0
            };
            self.check(Kind::MigState, ok, || {
                format!("MIG_DATA_SIZE = {r:?}, {}", d.stop_copy_length)
            });
            return;
        }
        if c == 1 {
            let head = vfio_device_feature {
                argsz: argsz::<vfio_device_feature>(),
                flags: VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2,
                ..Default::default()
            };
            let mut arg = Arg::new(head, &[]);
            let r = ioctl(fd, VFIO_DEVICE_FEATURE, arg.as_mut_ptr() as usize);
            let ok = if mig & VFIO_MIGRATION_PRE_COPY != 0 {
                r == Ok(0)
            } else {
                errs(r, &[libc::EINVAL])
            };
            self.check(Kind::MigState, ok, || format!("PRECOPY_INFOv2 SET = {r:?}"));
            return;
        }
        if c == 2 {
            let mut d = vfio_device_feature_mig_state::default();
            let r = feature(
                fd,
                VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
                &mut d,
            );
            let ok = if mig == 0 {
                errs(r, &[libc::ENOTTY])
            } else {
                // The device never reports ERROR: a failed arc leaves it in
                // the last state it reached.
                r == Ok(0) && (1..=7).contains(&d.device_state)
            };
            self.check(Kind::MigState, ok, || {
                format!("MIG_DEVICE_STATE GET = {r:?}, state {}", d.device_state)
            });
            return;
        }
        let target = match self.rng.below(12) {
            0 => 0,
            1 => 8 + self.rng.below(4) as u32,
            2 => self.rng.next() as u32,
            3 => VFIO_DEVICE_STATE_RUNNING,
            _ => 1 + self.rng.below(7) as u32,
        };
        let mut d = vfio_device_feature_mig_state {
            device_state: target,
            data_fd: -1,
        };
        let r = feature(
            fd,
            VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
            &mut d,
        );
        let opens = [
            VFIO_DEVICE_STATE_STOP_COPY,
            VFIO_DEVICE_STATE_RESUMING,
            VFIO_DEVICE_STATE_PRE_COPY,
            VFIO_DEVICE_STATE_PRE_COPY_P2P,
        ];
        let ok = if mig == 0 {
            errs(r, &[libc::ENOTTY])
        } else if !(1..=7).contains(&target) {
            errs(r, &[libc::EINVAL])
        } else {
            match r {
                Ok(_) => d.data_fd < 0 || opens.contains(&target),
                Err(e) => e == libc::EINVAL && d.data_fd == -1,
            }
        };
        self.check(Kind::MigState, ok, || {
            format!(
                "MIG_DEVICE_STATE SET {target} = {r:?}, data_fd {}",
                d.data_fd
            )
        });
        if r.is_ok() {
            self.adopt(d.data_fd, target != VFIO_DEVICE_STATE_RESUMING);
        }
    }

    /// Traffic on a migration data file: reads (of saving files; the bytes
    /// are kept), writes (of what was saved, cut or corrupted, or noise),
    /// `PRECOPY_INFO`, `pread` (a stream has no position) and close.
    fn data_op(&mut self) {
        if self.data.is_empty() {
            return;
        }
        let i = self.rng.below(self.data.len() as u64) as usize;
        let (fd, saving) = (self.data[i].fd.as_raw_fd(), self.data[i].saving);
        match self.rng.below(10) {
            0..=3 => {
                let len = self.rng.pick(&[0, 1, 7, 64, 100, 4096, MAX_LEN]);
                let mut b = vec![0u8; len];
                let r = sys::read(fd, &mut b);
                let ok = match r {
                    Ok(n) => saving && n as usize <= len,
                    Err(e) => {
                        // A resuming file is write-only.
                        [libc::ENODEV, libc::ENOMSG].contains(&e) || (!saving && e == libc::EBADF)
                    }
                };
                self.check(Kind::DataRead, ok, || {
                    format!("data read(saving {saving}, len {len}) = {r:?}")
                });
                if let Ok(n) = r {
                    if self.saved.len() < 65536 {
                        self.saved.extend_from_slice(&b[..n as usize]);
                    }
                }
            }
            4..=6 => {
                let mut b = if self.saved.is_empty() || self.rng.one_in(4) {
                    let mut v = vec![0u8; self.rng.below(512) as usize];
                    self.rng.fill(&mut v);
                    v
                } else {
                    let cut = self.rng.below(self.saved.len() as u64 + 1) as usize;
                    self.saved[..cut].to_vec()
                };
                if !b.is_empty() && self.rng.one_in(4) {
                    let at = self.rng.below(b.len() as u64) as usize;
                    b[at] ^= 1 << self.rng.below(8);
                }
                let r = sys::write(fd, &b);
                let ok = match r {
                    Ok(n) => !saving && n as usize == b.len(),
                    Err(e) => {
                        [libc::ENODEV, libc::EINVAL, libc::EFBIG].contains(&e)
                            || (saving && e == libc::EBADF)
                    }
                };
                self.check(Kind::DataWrite, ok, || {
                    format!("data write(saving {saving}, len {}) = {r:?}", b.len())
                });
            }
            7 => {
                let full = argsz::<vfio_precopy_info>();
                let a = self.argsz(full, full);
                let mut info = vfio_precopy_info {
                    argsz: a,
                    ..Default::default()
                };
                let cmd = if self.rng.one_in(8) {
                    io(self.rng.below(64) as u32 + VFIO_BASE)
                } else {
                    VFIO_MIG_GET_PRECOPY_INFO
                };
                let r = ioctl(fd, cmd, std::ptr::from_mut(&mut info) as usize);
                let ok = if cmd != VFIO_MIG_GET_PRECOPY_INFO {
                    errs(r, &[libc::ENOTTY, libc::EINVAL])
                } else if a < full || !saving {
                    errs(r, &[libc::EINVAL])
                } else {
                    is(r, &[libc::EINVAL]) && info.dirty_bytes == 0
                };
                self.check(Kind::DataIoctl, ok, || {
                    format!("data ioctl {cmd:#x}(argsz {a}, saving {saving}) = {r:?}")
                });
            }
            8 => {
                let mut b = [0u8; 8];
                let r = sys::pread(fd, b.as_mut_ptr() as usize, 8, 0);
                self.check(Kind::DataIoctl, errs(r, &[libc::ESPIPE]), || {
                    format!("data pread = {r:?}, want ESPIPE")
                });
            }
            _ => {
                self.data.swap_remove(i);
            }
        }
    }

    /// A mapping at a random offset and length, mostly near the mappable
    /// areas; it must succeed exactly when it lies in an area, and its
    /// pages must then be readable and writable.
    fn mmap(&mut self, fd: RawFd) {
        let page = self.model().page;
        let areas: Vec<(u64, u64)> = self
            .model()
            .regions
            .iter()
            .flat_map(|r| r.areas.iter().map(move |&(o, s)| (r.offset + o, s)))
            .collect();
        let (base, size) = if areas.is_empty() || self.rng.one_in(4) {
            let n = self.model().regions.len() as u64;
            ((self.rng.below(n + 1)) << 40, page)
        } else {
            self.rng.pick(&areas)
        };
        let off = match self.rng.below(8) {
            0 => base.wrapping_sub(page),
            1 => base + size,
            2 => base + size - page,
            3 => base + self.rng.below(size),
            4 => base.wrapping_add(WINDOW - page),
            _ => base,
        };
        let len = match self.rng.below(6) {
            0 => size,
            1 => size + page,
            2 => self.rng.below(3 * size),
            3 => page * (1 + self.rng.below(3)),
            _ => page,
        };
        let shared = !self.rng.one_in(10);
        let want = shared && self.model().mmap_ok(off, len);
        let r = sys::mmap_touch(fd, len as usize, off as i64, shared, page as usize);
        let ok = if want {
            r == Ok(0)
        } else {
            errs(r, &[libc::EINVAL, libc::EOVERFLOW, libc::ENOMEM])
        };
        self.check(Kind::Mmap, ok, || {
            format!(
                "mmap(off {off:#x}, len {len:#x}, shared {shared}) = {r:?}, want success {want}"
            )
        });
    }

    /// An ioctl the device does not have: VFIO request numbers with no
    /// device meaning, or with size and direction bits.
    fn other_ioctl(&mut self, fd: RawFd) {
        let nr = VFIO_BASE + self.rng.below(40) as u32;
        let structured = [7, 8, 9, 10, 11, 17].map(|n| VFIO_BASE + n);
        if structured.contains(&nr) && self.rng.below(4) != 0 {
            return;
        }
        let mut cmd = io(nr);
        if structured.contains(&nr) || self.rng.one_in(3) {
            // The same number with a size or direction: another request.
            cmd |= (1 + self.rng.below(0x3fff)) << 16;
        }
        let addr = self.buf_addr();
        let r = ioctl(fd, cmd, addr);
        let ok = if cmd == VFIO_DEVICE_BIND_IOMMUFD {
            // A cdev-only ioctl: the argument's checks, then EINVAL on a
            // device fd from a group.
            errs(r, &[libc::EINVAL, libc::E2BIG, libc::EFAULT])
        } else {
            errs(r, &[libc::ENOTTY])
        };
        self.check(Kind::OtherIoctl, ok, || format!("ioctl {cmd:#x} = {r:?}"));
    }

    /// A second device fd from the group: one call on it, then closed.
    fn second_fd(&mut self) {
        let r = self.sh.group.device();
        let ok = r.is_ok();
        let e = r.as_ref().err().copied();
        self.check(Kind::Reopen, ok, || {
            format!("second device fd: errno {e:?}")
        });
        if let Ok(fd) = r {
            self.get_info(fd.as_raw_fd());
        }
    }

    /// Closes the shared device fd (the last close: the device's
    /// `close_device` runs) and opens it again. A fresh open is RUNNING.
    fn reopen(&mut self) {
        let Ok(mut g) = self.sh.dev.write() else {
            return;
        };
        drop(g.take());
        let r = self.sh.group.device();
        let e = r.as_ref().err().copied();
        *g = r.ok();
        let Some(fd) = g.as_ref().map(AsRawFd::as_raw_fd) else {
            self.check(Kind::Reopen, false, || format!("reopen: errno {e:?}"));
            self.sh.stop.store(true, Relaxed);
            return;
        };
        if self.model().mig == 0 {
            self.check(Kind::Reopen, true, String::new);
            return;
        }
        let mut d = vfio_device_feature_mig_state::default();
        let r = feature(
            fd,
            VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
            &mut d,
        );
        self.check(
            Kind::Reopen,
            r == Ok(0) && d.device_state == VFIO_DEVICE_STATE_RUNNING,
            || format!("reopened device: state {} ({r:?})", d.device_state),
        );
    }
}

/// `VFIO_DEVICE_FEATURE` with `flags` and `data`, which the kernel may fill
/// in.
pub(crate) fn feature<D: vfio_uapi::Plain + Copy>(fd: RawFd, flags: u32, data: &mut D) -> Sys {
    let head = vfio_device_feature {
        argsz: argsz::<vfio_device_feature>() + argsz::<D>(),
        flags,
        ..Default::default()
    };
    let len = head.argsz as usize;
    let mut arg = Arg::with_len(head, &[], len);
    arg.set_data(*data);
    let r = ioctl(fd, VFIO_DEVICE_FEATURE, arg.as_mut_ptr() as usize);
    if let Some(d) = arg.get_data() {
        *data = d;
    }
    r
}

/// Brings the device back after a run, single-threaded: the migration
/// state to RUNNING (through a reset if it will not go), a reset, and the
/// IDs read back. Returns what failed.
pub(crate) fn restore(m: &Model, fd: RawFd) -> Vec<String> {
    let mut bad = Vec::new();
    if m.mig != 0 {
        let mut d = vfio_device_feature_mig_state {
            device_state: VFIO_DEVICE_STATE_RUNNING,
            data_fd: -1,
        };
        let set = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE;
        if feature(fd, set, &mut d).is_err() {
            // Some arcs (RESUMING with a bad stream) only end by reset.
            let _ = ioctl(fd, VFIO_DEVICE_RESET, 0);
            let r = feature(fd, set, &mut d);
            if r.is_err() {
                bad.push(format!("migration state back to RUNNING: {r:?}"));
            }
        }
        let mut g = vfio_device_feature_mig_state::default();
        let r = feature(
            fd,
            VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
            &mut g,
        );
        if r != Ok(0) || g.device_state != VFIO_DEVICE_STATE_RUNNING {
            bad.push(format!(
                "migration state after restore: {r:?} {}",
                g.device_state
            ));
        }
        // A full round: STOP and back.
        for s in [VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_RUNNING] {
            let mut d = vfio_device_feature_mig_state {
                device_state: s,
                data_fd: -1,
            };
            let r = feature(fd, set, &mut d);
            if r != Ok(0) {
                bad.push(format!("migration state {s} after the run: {r:?}"));
            }
        }
    }
    let r = ioctl(fd, VFIO_DEVICE_RESET, 0);
    if r != Ok(0) {
        bad.push(format!("RESET after the run: {r:?}"));
    }
    let cfg = m.regions[VFIO_PCI_CONFIG_REGION_INDEX as usize].offset;
    let mut ids = [0u8; 4];
    let r = sys::pread(fd, ids.as_mut_ptr() as usize, 4, cfg as i64);
    if r != Ok(4) || ids != m.ids {
        bad.push(format!(
            "config IDs after the run: {r:?} {ids:02x?}, want {:02x?}",
            m.ids
        ));
    }
    bad
}
