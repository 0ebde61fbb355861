// SPDX-License-Identifier: GPL-2.0

//! rmdev: mediated VFIO PCI devices, written in Rust.
//!
//! The module registers an mdev parent device `rmdev` (class `rmdev`) whose
//! types create VFIO PCI devices userspace can hand to a VM:
//!
//! ```text
//! echo $uuid > /sys/class/mdev_bus/rmdev/mdev_supported_types/rmdev-serial-2/create
//! qemu-system-x86_64 ... -device vfio-pci,sysfsdev=/sys/bus/mdev/devices/$uuid
//! ```
//!
//! A second parent, `rmdev_nvme`, offers mediated NVMe controllers
//! (`rmdev_nvme-ram`).
//!
//! The crate has four parts: [`vfio_pci_core`] (the virtual PCI function
//! library), [`mdev_parent`] (the parent driver and device personalities),
//! [`sysfs`] (the type lifecycle) and [`ffi`] (bindings and safe wrappers,
//! the only place with `unsafe`).

mod ffi;
mod mdev_parent;
mod sysfs;
mod vfio_pci_core;

use ffi::mdev::Registration;
use kernel::{driver, pci, prelude::*};
use mdev_parent::{
    phys::PciDriver,
    virt::{NvmeParent, VirtualParent},
};
use sysfs::{lifecycle::SerialTypes, nvme_types::NvmeTypes};

/// Largest pool accepted: bounds the memory a typo in `ports` can commit.
const MAX_PORTS: u32 = 4096;

module! {
    type: Rmdev,
    name: "rmdev",
    authors: ["The rmdev developers"],
    description: "Mediated VFIO PCI devices written in Rust",
    license: "GPL",
    // `iova_bitmap_set()`, for the DMA log's reports.
    imports_ns: ["IOMMUFD"],
    params: {
        ports: u32 {
            default: 24,
            description: "Serial ports shared by all rmdev instances (1-4096)",
        },
        nvme_mib: u32 {
            default: 64,
            description: "Size of the NVMe parent's RAM namespace in MiB (1-4096)",
        },
        nvme_instances: u32 {
            default: 4,
            description: "NVMe controllers the NVMe parent offers (1-64)",
        },
    },
}

/// The module: the mdev driver, the virtual parent, and the PCI driver of
/// the cards that become physical parents.
#[pin_data]
struct Rmdev {
    /// Dropped first (fields drop in order): parents go before the driver
    /// their types belong to. Unregistering the PCI driver unbinds every
    /// card, which removes its parent.
    #[pin]
    pci: driver::Registration<pci::Adapter<PciDriver>>,
    #[pin]
    parent: VirtualParent,
    #[pin]
    nvme: NvmeParent,
    #[pin]
    driver: Registration<SerialTypes>,
    #[pin]
    nvme_driver: Registration<NvmeTypes>,
}

impl kernel::InPlaceModule for Rmdev {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let ports = *module_parameters::ports.value();
        let nvme_mib = *module_parameters::nvme_mib.value();
        let nvme_instances = *module_parameters::nvme_instances.value();
        try_pin_init!(Self {
            _: {
                if ports == 0 || ports > MAX_PORTS {
                    pr_err!("ports={} is out of range 1-{}\n", ports, MAX_PORTS);
                    Err(EINVAL)?;
                }
                ffi::mdev::init_globals();
            },
            _: {
                if nvme_mib == 0 || nvme_mib > 4096 || nvme_instances == 0 || nvme_instances > 64 {
                    pr_err!("nvme_mib={} or nvme_instances={} is out of range\n", nvme_mib, nvme_instances);
                    Err(EINVAL)?;
                }
            },
            nvme_driver <- Registration::new(module),
            driver <- Registration::new(module),
            parent <- VirtualParent::new(&driver, ports),
            nvme <- NvmeParent::new(&nvme_driver, nvme_mib as usize * (1 << 20), nvme_instances),
            pci <- driver::Registration::new(c"rmdev", module),
            _: {
                pr_info!("registered parent rmdev with {} ports\n", ports);
            },
        })
    }
}

#[kunit_tests(rmdev_core)]
mod tests {
    use crate::ffi::{
        event::{EventHandler, EventSlot},
        irqlock::new_irq_spinlock,
        mem::SharedPage,
    };
    use crate::mdev_parent::uart::{off, Uart};
    use crate::sysfs::pool::Pool;
    use crate::vfio_pci_core::emul::{
        config::{reg, Bar, ConfigSpace},
        region,
    };
    use core::sync::atomic::{AtomicU32, Ordering};
    use kernel::{page::PAGE_SIZE, prelude::*};

    /// Counts the events it gets.
    struct Counter(AtomicU32);

    impl EventHandler for Counter {
        fn event(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_waker_runs_its_handler_only_while_the_slot_lives() {
        let Ok(slot) = KBox::pin_init(EventSlot::new(Counter(AtomicU32::new(0))), GFP_KERNEL)
        else {
            // No memory: nothing to check.
            return;
        };
        let waker = slot.waker();
        waker.wake();
        waker.clone().wake();
        assert_eq!(slot.0.load(Ordering::Relaxed), 2);
        drop(slot);
        // The slot is gone: waking does nothing (and touches nothing).
        waker.wake();
    }

    #[test]
    fn the_irq_safe_lock_guards_its_data() {
        let Ok(lock) = KBox::pin_init(new_irq_spinlock!(5u32, c"rmdev_test"), GFP_KERNEL) else {
            return;
        };
        *lock.lock() += 1;
        assert_eq!(*lock.lock(), 6);
    }

    #[test]
    fn bar_sizing_in_kernel() {
        let mut c = ConfigSpace::with_header(0x4348, 0x3253, 0x07_00_02, 0x10);
        assert!(c.set_bar(0, Bar::Io(8)).is_ok());
        c.write(reg::BAR0, &[0xff; 4]).unwrap_or(());
        let mut b = [0u8; 4];
        assert!(c.read(reg::BAR0, &mut b).is_ok());
        assert_eq!(u32::from_le_bytes(b), 0xffff_fff9);
        assert!(c.read(0xfd, &mut b).is_err());
    }

    #[test]
    fn msi_capability_in_kernel() {
        let mut c = ConfigSpace::with_header(0x4348, 0x3253, 0x07_00_02, 0x10);
        c.add_msi(0x40, 1);
        let mut caps = [(0, 0); 4];
        assert_eq!(c.caps(&mut caps), 1);
        assert_eq!(caps[0], (0x40, 0x05));
        assert!(!c.msi_enabled(0x40));
        assert!(c.write(0x42, &[1, 0]).is_ok());
        assert!(c.msi_enabled(0x40));
    }

    #[test]
    fn region_decode_cuts_at_the_end_and_rejects_wrapping_positions() {
        let sizes = |i: u32| if i == 7 { Some(256) } else { None };
        assert!(region::decode(i64::MAX, 1, sizes).is_err());
        // Served up to the region's end; refused at and past it.
        assert_eq!(
            region::decode((7i64 << 40) + 255, 2, sizes).map(|a| a.count),
            Ok(1)
        );
        assert_eq!(
            region::decode((7i64 << 40) + 254, 2, sizes).map(|a| a.count),
            Ok(2)
        );
        assert!(region::decode((7i64 << 40) + 256, 1, sizes).is_err());
    }

    #[test]
    fn uart_loopback_in_kernel() {
        let mut u = Uart::new();
        for b in 0..16u8 {
            u.write(off::RBR_THR_DLL, b);
        }
        for b in 0..16u8 {
            assert_eq!(u.read(off::RBR_THR_DLL), b);
        }
        assert_eq!(u.stats().overruns, 0);
    }

    #[test]
    fn shared_page_in_kernel() {
        let Ok(p) = SharedPage::new() else {
            // No memory: nothing to check.
            return;
        };
        let mut b = [0xffu8; 4];
        // Allocated zeroed.
        assert!(p.read(PAGE_SIZE - 4, &mut b).is_ok());
        assert_eq!(b, [0; 4]);
        assert!(p.write(PAGE_SIZE - 2, &[1, 2]).is_ok());
        assert!(p.read(PAGE_SIZE - 4, &mut b).is_ok());
        assert_eq!(b, [0, 0, 1, 2]);
        // Across the end, and an offset that wraps.
        assert!(p.write(PAGE_SIZE - 1, &[1, 2]).is_err());
        assert!(p.read(usize::MAX, &mut b).is_err());
        p.zero();
        assert!(p.read(PAGE_SIZE - 4, &mut b).is_ok());
        assert_eq!(b, [0; 4]);
    }

    #[test]
    fn pool_accounting_in_kernel() {
        let p = Pool::new(3);
        assert!(p.try_take(2));
        assert!(!p.try_take(2));
        assert_eq!(p.available(1), 1);
        p.give(2);
        assert_eq!(p.available(1), 3);
    }
}
