// SPDX-License-Identifier: GPL-2.0

//! Userspace checks of a VFIO PCI device, run inside the test VM.
//!
//! It opens a device by its sysfs path, either through the legacy group and
//! type1 container or through the iommufd character device, and checks the
//! uAPI contract. Results are KTAP test lines without numbers
//! (`ok - name` / `not ok - name`, printed by `ktap.rs` only); the VM test
//! script numbers them.
//!
//! The uAPI numbers and structs come from the `vfio-uapi` crate, generated
//! from the kernel's headers rather than taken from the driver, so that a
//! wrong number in the driver cannot hide itself.
//!
//! Usage:
//!   vfio-test [--reference=mtty] check group|cdev SYSFSDEV
//!                                           run the checks; with the option,
//!                                           mtty's known deviations from the
//!                                           contract are reported as TODO
//!   vfio-test abuse SYSFSDEV               guest-side bad input on a serial card
//!   vfio-test [--reference=mtty] faults TYPEDIR...
//!                                           fault injection on every entry
//!                                           point, on instances of each mdev
//!                                           type directory given (failnth.rs)
//!   vfio-test nomig SYSFSDEV CONTROL       a device without migration refuses
//!                                           every migration feature (ENOTTY);
//!                                           CONTROL, one that migrates, takes
//!                                           the same calls
//!   vfio-test hold SYSFSDEV                open the device, print "held", wait
//!                                           for standard input to close
//!   vfio-test req SYSFSDEV                 open the device with a REQ eventfd,
//!                                           print "held", and close the device
//!                                           when the kernel asks for it back
//!                                           (print "req"), as QEMU does

mod abuse;
mod config;
mod dev;
mod express;
mod failnth;
mod faults;
mod irqs;
mod ktap;
mod mig;
mod regions;

use dev::{ioctl_buf, open_cdev, open_group, Dev};
use ktap::Ktap;
use std::io::{self, Read, Write};
use vfio_uapi::{
    argsz, vfio_irq_set, Arg, VFIO_DEVICE_SET_IRQS, VFIO_IRQ_SET_ACTION_TRIGGER,
    VFIO_IRQ_SET_DATA_EVENTFD, VFIO_PCI_REQ_IRQ_INDEX,
};

/// The `check` command: every area in turn.
fn checks(t: &mut Ktap, dev: &Dev) {
    let fd = &dev.fd;
    let info = regions::device_info(t, fd);
    let (cfg, cfg_size) = regions::config_info(t, fd);
    let ids = config::header(t, fd, cfg, cfg_size);
    config::perms(t, fd, cfg);
    express::checks(t, fd, cfg, cfg_size);
    let serial = ids == 0x3253_4348 && t.target != "mtty";
    regions::device_regions(t, fd, info.num_regions, serial);
    irqs::intx_eventfd(t, fd);
    dev::ioctls(t, fd);
    irqs::checks(t, fd);
    faults::checks(t, fd);
}

/// The `req` command: holds the device with a REQ eventfd until the kernel
/// signals it, or two minutes pass.
fn req(t: &mut Ktap, sysfs: &str) {
    let Some(dev) = open_group(t, sysfs) else {
        eprintln!("vfio-test: cannot open {sysfs}");
        std::process::exit(1);
    };
    // SAFETY: eventfd has no memory preconditions.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if efd < 0 {
        std::process::exit(1);
    }
    let head = vfio_irq_set {
        argsz: argsz::<vfio_irq_set>() + 4,
        flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
        index: VFIO_PCI_REQ_IRQ_INDEX,
        start: 0,
        count: 1,
        ..Default::default()
    };
    let mut set = Arg::new(head, &efd.to_le_bytes());
    if let Err(e) = ioctl_buf(&dev.fd, VFIO_DEVICE_SET_IRQS, &mut set) {
        eprintln!("vfio-test: SET_IRQS REQ: errno {e}");
        std::process::exit(1);
    }
    println!("held");
    let _ = io::stdout().flush();
    let mut pfd = libc::pollfd {
        fd: efd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd.
    let r = unsafe { libc::poll(&mut pfd, 1, 120_000) };
    println!("{}", if r == 1 { "req" } else { "timeout" });
    let _ = io::stdout().flush();
    drop(dev);
    // SAFETY: `efd` is ours and closed once.
    unsafe { libc::close(efd) };
}

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    let reference = args
        .get(1)
        .and_then(|a| a.strip_prefix("--reference="))
        .map(str::to_owned);
    if reference.is_some() {
        args.remove(1);
    }
    let mut t = Ktap::new(reference.as_deref());
    match args.iter().map(String::as_str).collect::<Vec<_>>()[1..] {
        ["check", how @ ("group" | "cdev"), sysfs] => {
            let dev = if how == "group" {
                open_group(&mut t, sysfs)
            } else {
                open_cdev(&mut t, sysfs)
            };
            t.check(
                &format!("device opens through the {how} path"),
                dev.is_some(),
                || "see above".into(),
            );
            if let Some(dev) = dev {
                checks(&mut t, &dev);
            }
        }
        ["abuse", sysfs] => {
            let dev = open_group(&mut t, sysfs);
            t.check("device opens for the abuse test", dev.is_some(), || {
                "see above".into()
            });
            if let Some(dev) = dev {
                abuse::run(&mut t, &dev);
            }
        }
        ["mig", src, dst, ref rest @ ..] if rest.len() <= 1 => {
            mig::run(&mut t, src, dst, rest.first().copied());
        }
        ["nomig", sysfs, control] => mig::refused(&mut t, sysfs, control),
        ["faults", ref tdirs @ ..] if !tdirs.is_empty() => failnth::run(&mut t, tdirs),
        ["hold", sysfs] => {
            let dev = open_group(&mut t, sysfs);
            if dev.is_none() {
                eprintln!("vfio-test: cannot open {sysfs}");
                std::process::exit(1);
            }
            println!("held");
            let _ = io::stdout().flush();
            let mut sink = Vec::new();
            let _ = io::stdin().read_to_end(&mut sink);
            return;
        }
        ["req", sysfs] => {
            req(&mut t, sysfs);
            return;
        }
        _ => {
            eprintln!(
                "usage: vfio-test [--reference=mtty] check group|cdev SYSFSDEV | abuse SYSFSDEV | mig SRC DST [ONEPORT] | nomig SYSFSDEV CONTROL | faults TYPEDIR... | hold SYSFSDEV | req SYSFSDEV"
            );
            std::process::exit(2);
        }
    }
    std::process::exit(if t.passed() { 0 } else { 1 });
}
