// SPDX-License-Identifier: GPL-2.0

//! VFIO migration v2 checks on two serial cards: the state machine on one,
//! its state moved to the other, bad streams and aborts.
//!
//! The devices are 16550A serial cards (rmdev's or mtty's; both loop what a
//! port sends back to its receiver), so the test sets line registers and
//! leaves bytes in a receive FIFO with an interrupt pending, and checks that
//! the target shows exactly that after the move.

use crate::dev::{errno, ioctl_arg, ioctl_buf, ioctl_val, open_group, pread, pwrite, Dev};
use crate::ktap::Ktap;
use crate::regions::region;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;
use vfio_uapi::{
    argsz, vfio_device_feature, vfio_device_feature_mig_data_size, vfio_device_feature_mig_state,
    vfio_device_feature_migration, vfio_precopy_info, Arg, Plain, VFIO_DEVICE_FEATURE,
    VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MIGRATION,
    VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
    VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_RESET,
    VFIO_DEVICE_STATE_ERROR as ERROR, VFIO_DEVICE_STATE_PRE_COPY as PRE_COPY,
    VFIO_DEVICE_STATE_PRE_COPY_P2P as PRE_COPY_P2P, VFIO_DEVICE_STATE_RESUMING as RESUMING,
    VFIO_DEVICE_STATE_RUNNING as RUNNING, VFIO_DEVICE_STATE_RUNNING_P2P as RUNNING_P2P,
    VFIO_DEVICE_STATE_STOP as STOP, VFIO_DEVICE_STATE_STOP_COPY as STOP_COPY, VFIO_MIGRATION_P2P,
    VFIO_MIGRATION_PRE_COPY, VFIO_MIGRATION_STOP_COPY, VFIO_MIG_GET_PRECOPY_INFO,
    VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_BAR1_REGION_INDEX,
};

const STATES: [u32; 7] = [
    STOP,
    RUNNING,
    STOP_COPY,
    RESUMING,
    RUNNING_P2P,
    PRE_COPY,
    PRE_COPY_P2P,
];

pub(crate) fn name(s: u32) -> &'static str {
    match s {
        ERROR => "ERROR",
        STOP => "STOP",
        RUNNING => "RUNNING",
        STOP_COPY => "STOP_COPY",
        RESUMING => "RESUMING",
        RUNNING_P2P => "RUNNING_P2P",
        PRE_COPY => "PRE_COPY",
        PRE_COPY_P2P => "PRE_COPY_P2P",
        _ => "?",
    }
}

/// `VFIO_DEVICE_FEATURE` with `flags` (index and GET/SET/PROBE) and the
/// feature's `data`, which the kernel may fill in.
pub(crate) fn feature<D: Plain + Copy>(fd: &OwnedFd, flags: u32, data: &mut D) -> Result<i32, i32> {
    let head = vfio_device_feature {
        argsz: argsz::<vfio_device_feature>() + argsz::<D>(),
        flags,
        ..Default::default()
    };
    let len = head.argsz as usize;
    let mut arg = Arg::with_len(head, &[], len);
    arg.set_data(*data);
    let r = ioctl_buf(fd, VFIO_DEVICE_FEATURE, &mut arg);
    if let Some(d) = arg.get_data() {
        *data = d;
    }
    r
}

/// `VFIO_DEVICE_FEATURE` with `flags` and no data, as a probe is.
pub(crate) fn feature_probe(fd: &OwnedFd, flags: u32) -> Result<i32, i32> {
    let head = vfio_device_feature {
        argsz: argsz::<vfio_device_feature>(),
        flags,
        ..Default::default()
    };
    ioctl_buf(fd, VFIO_DEVICE_FEATURE, &mut Arg::new(head, &[]))
}

pub(crate) fn get_state(fd: &OwnedFd) -> Result<u32, i32> {
    let mut d = vfio_device_feature_mig_state::default();
    feature(
        fd,
        VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
        &mut d,
    )?;
    Ok(d.device_state)
}

/// Sets the migration state; the data fd the kernel returns, if any.
pub(crate) fn set_state(fd: &OwnedFd, s: u32) -> Result<Option<OwnedFd>, i32> {
    let mut d = vfio_device_feature_mig_state {
        device_state: s,
        data_fd: -1,
    };
    feature(
        fd,
        VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
        &mut d,
    )?;
    let dfd = d.data_fd;
    // SAFETY: A non-negative data_fd is a new descriptor installed for us.
    Ok((dfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(dfd) }))
}

pub(crate) fn reset(fd: &OwnedFd) -> bool {
    ioctl_val(fd, VFIO_DEVICE_RESET, 0).is_ok()
}

pub(crate) fn read_fd(fd: &OwnedFd, buf: &mut [u8]) -> Result<usize, i32> {
    // SAFETY: `buf` is valid for writes of its length.
    let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as usize)
    }
}

pub(crate) fn write_fd(fd: &OwnedFd, buf: &[u8]) -> Result<usize, i32> {
    // SAFETY: `buf` is valid for reads of its length.
    let r = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as usize)
    }
}

/// Reads a data fd in 100-byte pieces until it ends (0) or fails; the bytes
/// and how it ended.
pub(crate) fn drain(fd: &OwnedFd) -> (Vec<u8>, Result<(), i32>) {
    let mut out = Vec::new();
    let mut b = [0u8; 100];
    for _ in 0..100_000 {
        match read_fd(fd, &mut b) {
            Ok(0) => return (out, Ok(())),
            Ok(n) => out.extend_from_slice(&b[..n]),
            Err(e) => return (out, Err(e)),
        }
    }
    (out, Err(0))
}

/// `VFIO_MIG_GET_PRECOPY_INFO`: (initial_bytes, dirty_bytes).
pub(crate) fn precopy_info(fd: &OwnedFd) -> Result<(u64, u64), i32> {
    let mut info = vfio_precopy_info {
        argsz: argsz::<vfio_precopy_info>(),
        ..Default::default()
    };
    ioctl_arg(fd, VFIO_MIG_GET_PRECOPY_INFO, &mut info)?;
    Ok((info.initial_bytes, info.dirty_bytes))
}

/// Writes a whole stream to a resuming fd, in 64-byte pieces (so the
/// driver sees records arrive in parts); the first error.
pub(crate) fn feed(fd: &OwnedFd, data: &[u8]) -> Result<(), i32> {
    for c in data.chunks(64) {
        write_fd(fd, c)?;
    }
    Ok(())
}

/// One device under test: its fd and where port 0's registers are.
struct Card {
    dev: Dev,
    bar0: u64,
    bar1: Option<u64>,
}

impl Card {
    fn open(t: &mut Ktap, sysfs: &str) -> Option<Self> {
        let dev = open_group(t, sysfs)?;
        let (bar0, size0) = region(&dev.fd, VFIO_PCI_BAR0_REGION_INDEX)?;
        let bar1 = region(&dev.fd, VFIO_PCI_BAR1_REGION_INDEX)
            .filter(|r| r.1 > 0)
            .map(|r| r.0);
        (size0 >= 8).then_some(Self { dev, bar0, bar1 })
    }

    fn fd(&self) -> &OwnedFd {
        &self.dev.fd
    }

    fn rd(&self, base: u64, reg: u64) -> u8 {
        let mut b = [0u8];
        let _ = pread(self.fd(), &mut b, base + reg);
        b[0]
    }

    fn wr(&self, base: u64, reg: u64, v: u8) {
        let _ = pwrite(self.fd(), &[v], base + reg);
    }

    /// Line settings and FIFO contents a target must reproduce.
    fn set_up(&self) {
        let b = self.bar0;
        // Start from an empty FIFO whatever a reset left (mtty's reset keeps
        // received bytes).
        for _ in 0..32 {
            if self.rd(b, 5) & 1 == 0 {
                break;
            }
            self.rd(b, 0);
        }
        // 38400 baud (divisor 3), 8N1 with an extra stop bit and parity.
        self.wr(b, 3, 0x80);
        self.wr(b, 0, 3);
        self.wr(b, 1, 0);
        self.wr(b, 3, 0x1b);
        // FIFO on with a trigger level of 4; data and line-status interrupts.
        self.wr(b, 2, 0x41);
        self.wr(b, 1, 0x05);
        self.wr(b, 4, 0x0b);
        self.wr(b, 7, 0x5a);
        for &c in b"hello" {
            self.wr(b, 0, c);
        }
        if let Some(b1) = self.bar1 {
            self.wr(b1, 3, 0x03);
            self.wr(b1, 7, 0xa5);
        }
    }

    /// What `set_up` left, as the target shows it; `drain` reads the FIFO.
    fn observe(&self, drain: bool) -> String {
        let b = self.bar0;
        let lcr = self.rd(b, 3);
        self.wr(b, 3, lcr | 0x80);
        let (dll, dlm) = (self.rd(b, 0), self.rd(b, 1));
        self.wr(b, 3, lcr);
        let mut s = format!(
            "lcr {lcr:#x} div {} ier {:#x} iir {:#x} mcr {:#x} scr {:#x} lsr.dr {}",
            u16::from_le_bytes([dll, dlm]),
            self.rd(b, 1),
            self.rd(b, 2),
            self.rd(b, 4),
            self.rd(b, 7),
            self.rd(b, 5) & 1,
        );
        if drain {
            let mut fifo = Vec::new();
            while self.rd(b, 5) & 1 != 0 && fifo.len() < 32 {
                fifo.push(self.rd(b, 0));
            }
            s += &format!(" fifo {:?}", String::from_utf8_lossy(&fifo));
        }
        if let Some(b1) = self.bar1 {
            s += &format!(" port1 lcr {:#x} scr {:#x}", self.rd(b1, 3), self.rd(b1, 7));
        }
        s
    }
}

/// What a port shows after `set_up`: the registers as the source has them
/// (read without draining), then the FIFO.
fn expected(before: &str) -> String {
    let (regs, port1) = match before.find(" port1") {
        Some(i) => before.split_at(i),
        None => (before, ""),
    };
    format!("{regs} fifo \"hello\"{port1}")
}

/// Moves `c` to `to` from a fresh `RUNNING`; whether it got there.
fn reach(c: &Card, to: u32) -> bool {
    reset(c.fd()) && set_state(c.fd(), to).is_ok() && get_state(c.fd()) == Ok(to)
}

/// Every pair of states: the request lands in the target, with a data fd
/// exactly when the target starts a transfer, and the refused requests
/// (`STOP_COPY` to a `PRE_COPY` state, leaving `RESUMING` with no data) fail
/// with `EINVAL` and change nothing.
fn state_machine(t: &mut Ktap, c: &Card) {
    for &from in &STATES {
        let mut bad = Vec::new();
        for &to in &STATES {
            if !reach(c, from) {
                bad.push(format!("cannot reach {}", name(from)));
                break;
            }
            let r = set_state(c.fd(), to);
            let now = get_state(c.fd());
            let refused = (from == STOP_COPY && matches!(to, PRE_COPY | PRE_COPY_P2P))
                || (from == RESUMING && to != RESUMING);
            let fd_expected = from != to
                && match to {
                    PRE_COPY | PRE_COPY_P2P => !matches!(from, PRE_COPY | PRE_COPY_P2P),
                    STOP_COPY => !matches!(from, PRE_COPY | PRE_COPY_P2P),
                    RESUMING => true,
                    _ => false,
                };
            let good = if refused {
                r.is_err() && r.as_ref().err() == Some(&libc::EINVAL) && now == Ok(from)
            } else {
                matches!(&r, Ok(f) if f.is_some() == fd_expected) && now == Ok(to)
            };
            if !good {
                bad.push(format!(
                    "-> {}: {:?} now {:?}",
                    name(to),
                    r.map(|f| f.is_some()),
                    now.map(name)
                ));
            }
        }
        t.check(
            &format!(
                "from {}: every target state is reached as the uAPI says",
                name(from)
            ),
            bad.is_empty(),
            || bad.join("; "),
        );
    }
    let _ = reset(c.fd());
    let r = [ERROR, 8, u32::MAX].map(|s| set_state(c.fd(), s).err());
    t.check(
        "ERROR and unknown states are refused with EINVAL",
        r == [Some(libc::EINVAL); 3] && get_state(c.fd()) == Ok(RUNNING),
        || format!("{r:?}"),
    );
    t.check(
        "a reset leaves the device RUNNING",
        reach(c, STOP) && reset(c.fd()) && get_state(c.fd()) == Ok(RUNNING),
        || format!("{:?}", get_state(c.fd())),
    );
}

/// The PRE_COPY phase, then STOP_COPY on the same fd; returns the stream.
fn precopy(t: &mut Ktap, c: &Card) -> Vec<u8> {
    let _ = reset(c.fd());
    c.set_up();
    let Ok(Some(fd)) = set_state(c.fd(), PRE_COPY) else {
        t.check("RUNNING -> PRE_COPY returns a data fd", false, || {
            String::new()
        });
        return Vec::new();
    };
    let info = precopy_info(&fd);
    t.check(
        "PRE_COPY: initial_bytes is non-zero, dirty_bytes zero",
        matches!(info, Ok((i, 0)) if i > 0),
        || format!("{info:?}"),
    );
    let (mut stream, end) = drain(&fd);
    t.check(
        "PRE_COPY: reading past the initial data is ENOMSG",
        end == Err(libc::ENOMSG) && info.is_ok_and(|(i, _)| i as usize == stream.len()),
        || format!("{end:?} after {} bytes, info {info:?}", stream.len()),
    );
    let info = precopy_info(&fd);
    t.check(
        "PRE_COPY: initial_bytes is zero once read",
        info == Ok((0, 0)),
        || format!("{info:?}"),
    );
    let r = set_state(c.fd(), STOP_COPY);
    t.check(
        "PRE_COPY -> STOP_COPY keeps the same data fd",
        matches!(r, Ok(None)),
        || format!("{:?}", r.map(|f| f.is_some())),
    );
    let r = precopy_info(&fd);
    t.check(
        "PRECOPY_INFO in STOP_COPY is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    let (rest, end) = drain(&fd);
    t.check(
        "STOP_COPY: the stream goes on and ends with EOF",
        end.is_ok() && !rest.is_empty(),
        || format!("{end:?} after {} bytes", rest.len()),
    );
    stream.extend_from_slice(&rest);
    let r = set_state(c.fd(), RUNNING);
    t.check(
        "STOP_COPY -> RUNNING; the source keeps its state",
        r.is_ok() && c.rd(c.bar0, 7) == 0x5a && c.rd(c.bar0, 5) & 1 == 1,
        || format!("{:?}", r.map(|f| f.is_some())),
    );
    stream
}

/// STOP_COPY straight from RUNNING; returns the stream and prints its size
/// and time.
fn stop_copy(t: &mut Ktap, c: &Card) -> Vec<u8> {
    let _ = reset(c.fd());
    c.set_up();
    let mut d = vfio_device_feature_mig_data_size::default();
    let size = feature(
        c.fd(),
        VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
        &mut d,
    )
    .map(|_| d.stop_copy_length);
    let start = Instant::now();
    let r = set_state(c.fd(), STOP_COPY);
    let Ok(Some(fd)) = r else {
        t.check("RUNNING -> STOP_COPY returns a data fd", false, || {
            format!("{:?}", r.map(|f| f.is_some()))
        });
        return Vec::new();
    };
    let (stream, end) = drain(&fd);
    let took = start.elapsed();
    t.diag(&format!(
        "stop-copy: {} bytes in {} us (MIG_DATA_SIZE said {size:?})",
        stream.len(),
        took.as_micros()
    ));
    t.check(
        "STOP_COPY: the stream ends with EOF; MIG_DATA_SIZE covers it",
        end.is_ok() && !stream.is_empty() && size.is_ok_and(|s| s as usize >= stream.len()),
        || format!("{end:?}, {} bytes, size {size:?}", stream.len()),
    );
    let _ = set_state(c.fd(), RUNNING);
    stream
}

/// Loads `stream` into `c`: RUNNING -> RESUMING, write, RESUMING -> RUNNING.
fn resume(c: &Card, stream: &[u8]) -> Result<(), String> {
    load(c.fd(), stream)
}

/// Loads `stream` into the device `dev`: a reset, RUNNING -> RESUMING,
/// write, RESUMING -> RUNNING.
pub(crate) fn load(dev: &OwnedFd, stream: &[u8]) -> Result<(), String> {
    if !reset(dev) {
        return Err("reset failed".into());
    }
    let fd = match set_state(dev, RESUMING) {
        Ok(Some(fd)) => fd,
        r => return Err(format!("RESUMING: {:?}", r.map(|f| f.is_some()))),
    };
    feed(&fd, stream).map_err(|e| format!("write: errno {e}"))?;
    set_state(dev, RUNNING)
        .map(|_| ())
        .map_err(|e| format!("RESUMING -> RUNNING: errno {e}"))
}

/// The `STOP_COPY` stream of the device `dev`, which then runs again.
pub(crate) fn save(dev: &OwnedFd) -> Result<Vec<u8>, String> {
    let fd = match set_state(dev, STOP_COPY) {
        Ok(Some(fd)) => fd,
        r => return Err(format!("STOP_COPY: {:?}", r.map(|f| f.is_some()))),
    };
    let (stream, end) = drain(&fd);
    let back = set_state(dev, RUNNING);
    end.map_err(|e| format!("read: errno {e}"))?;
    back.map_err(|e| format!("STOP_COPY -> RUNNING: errno {e}"))?;
    Ok(stream)
}

/// A target that refused a stream stays in RESUMING and works after a reset.
fn usable_after_reset(c: &Card) -> bool {
    reset(c.fd()) && get_state(c.fd()) == Ok(RUNNING) && {
        c.wr(c.bar0, 7, 0x3c);
        c.rd(c.bar0, 7) == 0x3c
    }
}

/// Writes `stream` to a new RESUMING fd of `c`, then asks for STOP; the
/// errno of the first step that refused it (0 if none did).
fn refused_with(c: &Card, stream: &[u8]) -> i32 {
    let _ = reset(c.fd());
    let Ok(Some(fd)) = set_state(c.fd(), RESUMING) else {
        return -1;
    };
    if let Err(e) = feed(&fd, stream) {
        return e;
    }
    match set_state(c.fd(), STOP) {
        Err(e) if get_state(c.fd()) == Ok(RESUMING) => e,
        Err(_) => -2,
        Ok(_) => 0,
    }
}

fn bad_streams(t: &mut Ktap, dst: &Card, good: &[u8], one_port: Option<&Card>) {
    let cases: Vec<(&str, Vec<u8>, Option<i32>)> = vec![
        (
            "an empty stream is refused with EINVAL",
            Vec::new(),
            Some(libc::EINVAL),
        ),
        (
            "a truncated stream is refused with EINVAL",
            good[..good.len() - 1].to_vec(),
            Some(libc::EINVAL),
        ),
        (
            "a stream cut after its first record is refused with EINVAL",
            good[..good.len() / 3].to_vec(),
            Some(libc::EINVAL),
        ),
        (
            "a corrupted stream is refused",
            {
                let mut b = good.to_vec();
                let i = b.len() - 3;
                b[i] ^= 0x40;
                b
            },
            None,
        ),
        (
            "a stream with a bad magic is refused with EINVAL",
            {
                let mut b = good.to_vec();
                b[0] ^= 0xff;
                b
            },
            Some(libc::EINVAL),
        ),
        (
            "a stream over 64 KiB is refused with EFBIG",
            vec![0u8; 65 * 1024],
            Some(libc::EFBIG),
        ),
    ];
    for (what, stream, want) in cases {
        let e = if stream.len() > 64 * 1024 {
            // One write of the whole buffer.
            let _ = reset(dst.fd());
            match set_state(dst.fd(), RESUMING) {
                Ok(Some(fd)) => write_fd(&fd, &stream).err().unwrap_or(0),
                _ => -1,
            }
        } else {
            refused_with(dst, &stream)
        };
        let ok = match want {
            Some(w) => e == w,
            None => e > 0,
        };
        t.check(what, ok, || format!("errno {e}"));
        t.check(
            &format!("{what}: the target works after a reset"),
            usable_after_reset(dst),
            || "scratch register does not hold".into(),
        );
    }
    if let Some(one) = one_port {
        let e = refused_with(one, good);
        t.check(
            "a two-port stream into a one-port card is refused with EINVAL",
            e == libc::EINVAL,
            || format!("errno {e}"),
        );
        t.check(
            "the one-port card works after a reset",
            usable_after_reset(one),
            String::new,
        );
    }
}

fn aborts(t: &mut Ktap, c: &Card) {
    // PRE_COPY abandoned: the fd stops working.
    let _ = reset(c.fd());
    let fd = set_state(c.fd(), PRE_COPY).ok().flatten();
    let r = set_state(c.fd(), RUNNING);
    let e = fd.as_ref().map(|f| read_fd(f, &mut [0u8; 8]));
    t.check(
        "PRE_COPY -> RUNNING ends the data fd (ENODEV)",
        r.is_ok() && e == Some(Err(libc::ENODEV)),
        || format!("{e:?}"),
    );
    // STOP_COPY abandoned half way.
    let _ = reset(c.fd());
    let fd = set_state(c.fd(), STOP_COPY).ok().flatten();
    let first = fd.as_ref().map(|f| read_fd(f, &mut [0u8; 8]));
    let r = set_state(c.fd(), RUNNING);
    let e = fd.as_ref().map(|f| read_fd(f, &mut [0u8; 8]));
    t.check(
        "STOP_COPY -> RUNNING half way ends the data fd (ENODEV)",
        r.is_ok() && first == Some(Ok(8)) && e == Some(Err(libc::ENODEV)),
        || format!("{first:?} {e:?}"),
    );
    // RESUMING abandoned by a reset.
    let _ = reset(c.fd());
    let fd = set_state(c.fd(), RESUMING).ok().flatten();
    let first = fd.as_ref().map(|f| write_fd(f, b"RMDV"));
    let ok = reset(c.fd());
    let e = fd.as_ref().map(|f| write_fd(f, b"RMDV"));
    t.check(
        "a reset in RESUMING ends the data fd (ENODEV) and leaves RUNNING",
        ok && e == Some(Err(libc::ENODEV)) && get_state(c.fd()) == Ok(RUNNING),
        || format!("{first:?} {e:?}"),
    );
    // Data fds are streams: no pread, no seek.
    let _ = reset(c.fd());
    if let Ok(Some(fd)) = set_state(c.fd(), STOP_COPY) {
        let r = pread(&fd, &mut [0u8; 4], 0);
        // SAFETY: lseek on a valid fd.
        let s = unsafe { libc::lseek(fd.as_raw_fd(), 0, libc::SEEK_SET) };
        t.check(
            "a data fd refuses pread and lseek (ESPIPE)",
            r == Err(libc::ESPIPE) && s < 0 && errno() == libc::ESPIPE,
            || format!("{r:?} {s}"),
        );
    }
    let _ = reset(c.fd());
}

/// The whole migration test: `src` and `dst` are cards of one type, `one`
/// optionally a card with fewer ports.
pub(crate) fn run(t: &mut Ktap, src: &str, dst: &str, one: Option<&str>) {
    let (Some(a), Some(b)) = (Card::open(t, src), Card::open(t, dst)) else {
        t.check("both cards open", false, || "see above".into());
        return;
    };
    let mut d = vfio_device_feature_migration::default();
    let r = feature(
        a.fd(),
        VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_MIGRATION,
        &mut d,
    );
    t.check("the migration feature probes", r.is_ok(), || {
        format!("{r:?}")
    });
    let r = feature(
        a.fd(),
        VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION,
        &mut d,
    );
    let flags = d.flags;
    let want = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY;
    t.check(
        "migration flags are STOP_COPY, P2P and PRE_COPY",
        r.is_ok() && flags == u64::from(want),
        || format!("{r:?} {flags:#x}"),
    );
    let r = feature_probe(
        a.fd(),
        VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
    );
    t.check(
        "DMA logging is offered (what QEMU needs to migrate)",
        r.is_ok(),
        || format!("{r:?}"),
    );
    t.check(
        "a freshly opened device is RUNNING",
        get_state(a.fd()) == Ok(RUNNING),
        || format!("{:?}", get_state(a.fd())),
    );
    state_machine(t, &a);

    let _ = reset(a.fd());
    a.set_up();
    let before = a.observe(false);
    t.check(
        "the source has received data pending (IIR reports it)",
        before.contains("iir 0xc4") && before.contains("lsr.dr 1"),
        || before.clone(),
    );
    let want = expected(&before);
    let pre = precopy(t, &a);
    let r = resume(&b, &pre);
    let seen = b.observe(true);
    t.check(
        "a PRE_COPY stream moves the state: registers, FIFO, pending interrupt",
        r.is_ok() && seen == want,
        || format!("{r:?}: {seen} (want {want})"),
    );
    let stream = stop_copy(t, &a);
    let r = resume(&b, &stream);
    let seen = b.observe(true);
    t.check(
        "a STOP_COPY stream moves the state: registers, FIFO, pending interrupt",
        r.is_ok() && seen == want,
        || format!("{r:?}: {seen} (want {want})"),
    );
    let seen = a.observe(true);
    t.check(
        "the source continues where it stopped",
        seen == want,
        || format!("{seen} (want {want})"),
    );
    let one = one.and_then(|p| Card::open(t, p));
    if !stream.is_empty() {
        bad_streams(t, &b, &stream, one.as_ref());
    }
    aborts(t, &a);

    // Closing the device ends a transfer that is still open.
    let _ = reset(a.fd());
    let fd = set_state(a.fd(), STOP_COPY).ok().flatten();
    drop(a);
    let e = fd.as_ref().map(|f| read_fd(f, &mut [0u8; 8]));
    t.check(
        "closing the device ends an open data fd (ENODEV)",
        e == Some(Err(libc::ENODEV)),
        || format!("{e:?}"),
    );
    drop(fd);
    let again = Card::open(t, src);
    t.check(
        "the device opens again, RUNNING",
        again
            .as_ref()
            .is_some_and(|c| get_state(c.fd()) == Ok(RUNNING)),
        String::new,
    );
}

/// A device that offers no migration: every migration feature of
/// `VFIO_DEVICE_FEATURE` (the probe, the flags, the state, the data size)
/// and DMA logging are `ENOTTY`, the VFIO core's answer for a device without
/// migration or logging operations, and the device still works afterwards.
/// The same calls on `control`, a device that migrates, must succeed, so
/// that the refusals are the device's and not the calls'.
pub(crate) fn refused(t: &mut Ktap, sysfs: &str, control: &str) {
    let (Some(c), Some(m)) = (Card::open(t, sysfs), Card::open(t, control)) else {
        t.check("both devices open", false, || "see above".into());
        return;
    };
    // Each call, on one device: the errno, or 0 when it succeeds.
    let calls = |fd: &OwnedFd| {
        let code = |r: Result<i32, i32>| r.err().unwrap_or(0);
        let mut mig = vfio_device_feature_migration::default();
        let mut size = vfio_device_feature_mig_data_size::default();
        [
            (
                "probe",
                code(feature_probe(
                    fd,
                    VFIO_DEVICE_FEATURE_GET
                        | VFIO_DEVICE_FEATURE_PROBE
                        | VFIO_DEVICE_FEATURE_MIGRATION,
                )),
            ),
            (
                "flags",
                code(feature(
                    fd,
                    VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION,
                    &mut mig,
                )),
            ),
            ("get state", get_state(fd).err().unwrap_or(0)),
            ("set STOP", set_state(fd, STOP).err().unwrap_or(0)),
            (
                "data size",
                code(feature(
                    fd,
                    VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
                    &mut size,
                )),
            ),
            (
                "DMA logging",
                code(feature_probe(
                    fd,
                    VFIO_DEVICE_FEATURE_SET
                        | VFIO_DEVICE_FEATURE_PROBE
                        | VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
                )),
            ),
        ]
    };
    let got = calls(c.fd());
    t.check(
        "the migration feature probe is ENOTTY",
        got[0].1 == libc::ENOTTY,
        || format!("{got:?}"),
    );
    t.check(
        "reading the migration flags is ENOTTY (none advertised)",
        got[1].1 == libc::ENOTTY,
        || format!("{got:?}"),
    );
    t.check(
        "getting and setting the state and the data size are ENOTTY",
        got[2..5].iter().all(|g| g.1 == libc::ENOTTY),
        || format!("{got:?}"),
    );
    t.check(
        "DMA logging is not offered either (ENOTTY)",
        got[5].1 == libc::ENOTTY,
        || format!("{got:?}"),
    );
    t.check(
        "the device still works (reset, scratch register)",
        reset(c.fd()) && {
            c.wr(c.bar0, 7, 0xa7);
            c.rd(c.bar0, 7) == 0xa7
        },
        String::new,
    );
    // The control goes back to RUNNING: `calls` left it in STOP.
    let ctl = calls(m.fd());
    let _ = reset(m.fd());
    t.check(
        "control: the same calls succeed on a device that migrates",
        ctl.iter().all(|g| g.1 == 0),
        || format!("{ctl:?}"),
    );
}
