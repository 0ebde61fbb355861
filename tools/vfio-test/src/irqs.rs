// SPDX-License-Identifier: GPL-2.0

//! Interrupts: `GET_IRQ_INFO`, the `SET_IRQS` matrix on the INTx, MSI and
//! REQ indexes with loopback triggers, and the UART's own interrupts through
//! INTx (level, automasked, unmasked by an irqfd) and MSI.

use crate::dev::{ioctl_arg, ioctl_buf, pread, pwrite};
use crate::ktap::Ktap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use vfio_uapi::{
    argsz, vfio_irq_info, vfio_irq_set, Arg, VFIO_DEVICE_GET_IRQ_INFO, VFIO_DEVICE_SET_IRQS,
    VFIO_IRQ_INFO_AUTOMASKED, VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_INFO_MASKABLE,
    VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_BOOL,
    VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE, VFIO_PCI_INTX_IRQ_INDEX,
    VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_NUM_IRQS, VFIO_PCI_REQ_IRQ_INDEX,
};

/// An eventfd owned by the test.
pub(crate) struct Efd(OwnedFd);

impl Efd {
    pub(crate) fn new() -> Self {
        // SAFETY: eventfd has no memory preconditions.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(fd >= 0, "eventfd");
        // SAFETY: `fd` is new and ours.
        Efd(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// The counter, read and reset (0 if nothing was signalled).
    pub(crate) fn take(&self) -> u64 {
        let mut v = [0u8; 8];
        // SAFETY: `v` is valid for 8 bytes.
        let r = unsafe { libc::read(self.0.as_raw_fd(), v.as_mut_ptr().cast(), 8) };
        if r == 8 {
            u64::from_le_bytes(v)
        } else {
            0
        }
    }

    pub(crate) fn raw(&self) -> u32 {
        self.0.as_raw_fd() as u32
    }

    /// Adds one to the counter, as a signaller does.
    pub(crate) fn signal(&self) {
        let v = 1u64.to_le_bytes();
        // SAFETY: `v` is valid for 8 bytes.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), v.as_ptr().cast(), 8) };
    }
}

/// `VFIO_DEVICE_SET_IRQS` with `data` after the header.
pub(crate) fn set_irqs(
    fd: &OwnedFd,
    flags: u32,
    index: u32,
    start: u32,
    count: u32,
    data: &[u8],
) -> Result<i32, i32> {
    let head = vfio_irq_set {
        argsz: argsz::<vfio_irq_set>() + data.len() as u32,
        flags,
        index,
        start,
        count,
        ..Default::default()
    };
    ioctl_buf(fd, VFIO_DEVICE_SET_IRQS, &mut Arg::new(head, data))
}

/// `GET_IRQ_INFO` of `index`: (flags, count), or the errno.
pub(crate) fn irq_info(fd: &OwnedFd, index: u32) -> Result<(u32, u32), i32> {
    let mut info = vfio_irq_info {
        argsz: argsz::<vfio_irq_info>(),
        index,
        ..Default::default()
    };
    ioctl_arg(fd, VFIO_DEVICE_GET_IRQ_INFO, &mut info).map(|_| (info.flags, info.count))
}

/// INTx is signalled through an eventfd.
pub(crate) fn intx_eventfd(t: &mut Ktap, fd: &OwnedFd) {
    let r = irq_info(fd, VFIO_PCI_INTX_IRQ_INDEX);
    t.check(
        "INTx is an eventfd interrupt",
        matches!(r, Ok((f, _)) if f & VFIO_IRQ_INFO_EVENTFD != 0),
        || format!("{r:?}"),
    );
}

/// The `SET_IRQS` matrix on the INTx, MSI and REQ indexes, with loopback
/// triggers that must make the eventfds readable.
pub(crate) fn checks(t: &mut Ktap, fd: &OwnedFd) {
    let intx = irq_info(fd, VFIO_PCI_INTX_IRQ_INDEX);
    let masked = VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
    t.check(
        "INTx is one maskable, automasked interrupt",
        matches!(intx, Ok((f, 1)) if f & masked == masked),
        || format!("{intx:?}"),
    );
    // The first index past the PCI ones (VFIO_PCI_NUM_IRQS, 5).
    let past = VFIO_PCI_NUM_IRQS;
    let r = irq_info(fd, past);
    t.check(
        "IRQ_INFO of index 5 is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    let mut short = vfio_irq_info {
        argsz: argsz::<vfio_irq_info>() - 1,
        ..Default::default()
    };
    let r = ioctl_arg(fd, VFIO_DEVICE_GET_IRQ_INFO, &mut short);
    t.check(
        "IRQ_INFO with argsz below minsz is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );

    let trig_fd = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    let trig_none = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
    let trig_bool = VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER;
    let intx = VFIO_PCI_INTX_IRQ_INDEX;
    let head = vfio_irq_set {
        argsz: argsz::<vfio_irq_set>() - 1,
        flags: trig_none,
        index: intx,
        start: 0,
        count: 1,
        ..Default::default()
    };
    let r = ioctl_buf(fd, VFIO_DEVICE_SET_IRQS, &mut Arg::new(head, &[]));
    t.check(
        "SET_IRQS with argsz below minsz is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    let r = set_irqs(fd, trig_fd | VFIO_IRQ_SET_DATA_BOOL, intx, 0, 1, &[0; 4]);
    t.check(
        "SET_IRQS with two data types is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    let r = set_irqs(fd, trig_none | VFIO_IRQ_SET_ACTION_UNMASK, intx, 0, 1, &[]);
    t.check(
        "SET_IRQS with two actions is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    let r = set_irqs(fd, trig_none, past, 0, 1, &[]);
    t.check(
        "SET_IRQS on index 5 is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    let r = set_irqs(fd, trig_none, intx, 1, 1, &[]);
    t.check(
        "SET_IRQS past the index's count is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    let r = set_irqs(fd, trig_fd, intx, 0, 1, &[]);
    t.check(
        "SET_IRQS without room for the eventfd is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    let r = set_irqs(fd, trig_fd, intx, 0, 1, &9999i32.to_le_bytes());
    t.check(
        "SET_IRQS with a descriptor that is not open is EBADF",
        r == Err(libc::EBADF),
        || format!("{r:?}"),
    );

    // INTx: assign, loop back, de-assign.
    let e = Efd::new();
    let r = set_irqs(fd, trig_fd, intx, 0, 1, &e.raw().to_le_bytes());
    t.check("INTx trigger eventfd is assigned", r.is_ok(), || {
        format!("{r:?}")
    });
    let _ = set_irqs(fd, trig_none, intx, 0, 1, &[]);
    let n = e.take();
    t.check(
        "a DATA_NONE trigger makes the INTx eventfd readable",
        n == 1,
        || format!("counter {n}"),
    );
    let _ = set_irqs(fd, trig_bool, intx, 0, 1, &[0]);
    let n = e.take();
    t.check("a DATA_BOOL trigger of 0 does not fire", n == 0, || {
        format!("counter {n}")
    });
    let _ = set_irqs(fd, trig_bool, intx, 0, 1, &[1]);
    let n = e.take();
    t.check("a DATA_BOOL trigger of 1 fires", n == 1, || {
        format!("counter {n}")
    });
    let r = set_irqs(
        fd,
        trig_fd,
        VFIO_PCI_MSI_IRQ_INDEX,
        0,
        1,
        &Efd::new().raw().to_le_bytes(),
    );
    t.check(
        "enabling MSI while INTx is enabled is EINVAL",
        r == Err(libc::EINVAL),
        || format!("{r:?}"),
    );
    let r = set_irqs(fd, trig_fd, intx, 0, 1, &(-1i32).to_le_bytes());
    t.check("fd -1 de-assigns the INTx trigger", r.is_ok(), || {
        format!("{r:?}")
    });
    let _ = set_irqs(fd, trig_none, intx, 0, 1, &[]);
    let n = e.take();
    t.check("a de-assigned trigger no longer fires", n == 0, || {
        format!("counter {n}")
    });
    let r = set_irqs(fd, trig_none, intx, 0, 0, &[]);
    t.check(
        "count 0 with DATA_NONE disables the index",
        r.is_ok(),
        || format!("{r:?}"),
    );

    // REQ: assign and loop back.
    let q = Efd::new();
    let r = set_irqs(
        fd,
        trig_fd,
        VFIO_PCI_REQ_IRQ_INDEX,
        0,
        1,
        &q.raw().to_le_bytes(),
    );
    t.check("REQ trigger eventfd is assigned", r.is_ok(), || {
        format!("{r:?}")
    });
    let _ = set_irqs(fd, trig_none, VFIO_PCI_REQ_IRQ_INDEX, 0, 1, &[]);
    let n = q.take();
    t.check(
        "a DATA_NONE trigger makes the REQ eventfd readable",
        n == 1,
        || format!("counter {n}"),
    );
    let _ = set_irqs(fd, trig_none, VFIO_PCI_REQ_IRQ_INDEX, 0, 0, &[]);
}

/// The UART's own interrupts through INTx (level, automasked) and MSI (one
/// message per rising edge).
pub(crate) fn uart(t: &mut Ktap, fd: &OwnedFd, bar0: u64) {
    let trig_fd = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    let unmask = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK;
    let drain = || {
        let mut c = [0u8];
        for _ in 0..32 {
            let _ = pread(fd, &mut c, bar0);
        }
    };
    drain();
    let e = Efd::new();
    let _ = set_irqs(
        fd,
        trig_fd,
        VFIO_PCI_INTX_IRQ_INDEX,
        0,
        1,
        &e.raw().to_le_bytes(),
    );
    let _ = pwrite(fd, &[0x01], bar0 + 1); // IER: received data available.
    let _ = pwrite(fd, b"a", bar0);
    let n1 = e.take();
    let _ = pwrite(fd, b"b", bar0);
    let n2 = e.take();
    t.check(
        "received data raises INTx once, then INTx stays masked",
        (n1, n2) == (1, 0),
        || format!("counters {n1} {n2}"),
    );
    let _ = set_irqs(fd, unmask, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, &[]);
    let n = e.take();
    t.check(
        "unmasking a still-asserted INTx delivers it again",
        n == 1,
        || format!("counter {n}"),
    );
    drain();
    let _ = set_irqs(fd, unmask, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, &[]);
    let n = e.take();
    t.check(
        "unmasking after the cause is gone delivers nothing",
        n == 0,
        || format!("counter {n}"),
    );
    // INTx unmask through an irqfd: signalling the eventfd unmasks, as KVM
    // does when the guest acknowledges the interrupt.
    let u = Efd::new();
    let unmask_fd = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK;
    let r = set_irqs(
        fd,
        unmask_fd,
        VFIO_PCI_INTX_IRQ_INDEX,
        0,
        1,
        &u.raw().to_le_bytes(),
    );
    let r2 = set_irqs(
        fd,
        unmask_fd,
        VFIO_PCI_INTX_IRQ_INDEX,
        0,
        1,
        &u.raw().to_le_bytes(),
    );
    t.check(
        "an INTx unmask irqfd is armed; arming a second is EBUSY",
        r.is_ok() && r2 == Err(libc::EBUSY),
        || format!("{r:?} {r2:?}"),
    );
    let _ = pwrite(fd, b"e", bar0);
    let n1 = e.take();
    u.signal();
    let mut n2 = 0;
    for _ in 0..100 {
        n2 = e.take();
        if n2 != 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    t.check(
        "signalling the irqfd unmasks: the still-asserted INTx comes again",
        (n1, n2) == (1, 1),
        || format!("counters {n1} {n2}"),
    );
    let r = set_irqs(
        fd,
        unmask_fd,
        VFIO_PCI_INTX_IRQ_INDEX,
        0,
        1,
        &(-1i32).to_le_bytes(),
    );
    u.signal();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let n = e.take();
    t.check(
        "a disarmed irqfd unmasks nothing",
        r.is_ok() && n == 0,
        || format!("{r:?} counter {n}"),
    );
    drain();
    // INTx off (count 0 with DATA_NONE; a -1 eventfd would only clear the
    // trigger and leave INTx enabled, as with vfio-pci).
    let none = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
    let _ = set_irqs(fd, none, VFIO_PCI_INTX_IRQ_INDEX, 0, 0, &[]);

    let m = Efd::new();
    let r = set_irqs(
        fd,
        trig_fd,
        VFIO_PCI_MSI_IRQ_INDEX,
        0,
        1,
        &m.raw().to_le_bytes(),
    );
    t.check(
        "MSI trigger eventfd is assigned once INTx is off",
        r.is_ok(),
        || format!("{r:?}"),
    );
    let _ = pwrite(fd, b"c", bar0);
    let n1 = m.take();
    drain();
    let _ = pwrite(fd, b"d", bar0);
    let n2 = m.take();
    t.check("each new cause sends one MSI", (n1, n2) == (1, 1), || {
        format!("counters {n1} {n2}")
    });
    let _ = set_irqs(fd, none, VFIO_PCI_MSI_IRQ_INDEX, 0, 0, &[]);
    let _ = pwrite(fd, &[0x00], bar0 + 1);
    drain();
}
