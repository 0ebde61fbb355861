// SPDX-License-Identifier: GPL-2.0

//! Interrupt indexes and the `VFIO_DEVICE_SET_IRQS` argument checks.
//!
//! The checks mirror `vfio_set_irqs_validate_and_prepare()` in
//! `drivers/vfio/vfio_main.c`, with the count taken per index as vfio-pci
//! does (an index with no interrupts accepts nothing), and decode the flags
//! into one data type and one action.

use super::config::{reg, ConfigSpace};
use super::intrs::VECTORS;
use super::uapi::*;
use super::{EResult, Errno};

/// What `VFIO_DEVICE_GET_IRQ_INFO` reports for one index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct IrqInfo {
    /// `VFIO_IRQ_INFO_*` flags.
    pub(crate) flags: u32,
    /// Number of interrupts at this index.
    pub(crate) count: u32,
}

/// What `VFIO_DEVICE_GET_IRQ_INFO` reports for interrupt index `index` of a
/// function whose configuration space at reset is `cfg`, offering `msi` MSI
/// and `msix` MSI-X vectors (each reported up to [`VECTORS`]), as vfio-pci
/// reports a physical function: INTx if it has an interrupt pin, ERR for a
/// PCI Express function (AER), and REQ always. `None` for an index that does
/// not exist.
pub(crate) fn irq_info(index: u32, cfg: &ConfigSpace, msi: u32, msix: u32) -> Option<IrqInfo> {
    let count = match index {
        VFIO_PCI_INTX_IRQ_INDEX => u32::from(cfg.u16_at(reg::INT_LINE) >> 8 != 0),
        VFIO_PCI_MSI_IRQ_INDEX => msi.min(VECTORS as u32),
        VFIO_PCI_MSIX_IRQ_INDEX => msix.min(VECTORS as u32),
        VFIO_PCI_ERR_IRQ_INDEX => u32::from(cfg.is_express()),
        VFIO_PCI_REQ_IRQ_INDEX => 1,
        _ => return None,
    };
    let flags = VFIO_IRQ_INFO_EVENTFD
        | match index {
            VFIO_PCI_INTX_IRQ_INDEX => VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED,
            VFIO_PCI_MSIX_IRQ_INDEX => 0,
            _ => VFIO_IRQ_INFO_NORESIZE,
        };
    Some(IrqInfo { flags, count })
}

/// The data that follows a `struct vfio_irq_set` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IrqData {
    /// No data: the action applies to every interrupt in the range.
    None,
    /// One byte per interrupt: act where it is non-zero.
    Bool,
    /// One `s32` file descriptor per interrupt; -1 de-assigns.
    EventFd,
}

/// The action of a `VFIO_DEVICE_SET_IRQS` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IrqAction {
    /// `VFIO_IRQ_SET_ACTION_MASK`.
    Mask,
    /// `VFIO_IRQ_SET_ACTION_UNMASK`.
    Unmask,
    /// `VFIO_IRQ_SET_ACTION_TRIGGER`.
    Trigger,
}

/// The fixed part of `struct vfio_irq_set`, as the kernel glue copied it
/// from userspace (field by field from the bindgen struct, whose size the
/// glue checks against this one at compile time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub(crate) struct IrqSetHdr {
    pub(crate) argsz: u32,
    pub(crate) flags: u32,
    pub(crate) index: u32,
    pub(crate) start: u32,
    pub(crate) count: u32,
}

const _: () = assert!(size_of::<IrqSetHdr>() == IRQ_SET_MINSZ);

/// A checked `VFIO_DEVICE_SET_IRQS` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IrqSet {
    pub(crate) index: u32,
    pub(crate) start: u32,
    pub(crate) count: u32,
    pub(crate) data: IrqData,
    pub(crate) action: IrqAction,
    /// Bytes of data that follow the header.
    pub(crate) data_size: usize,
}

/// Decodes and checks a `struct vfio_irq_set` header. `count_of` gives the
/// number of interrupts at an index. Every failure is `EINVAL`, as the
/// contract names.
pub(crate) fn check_set(hdr: &IrqSetHdr, count_of: impl Fn(u32) -> u32) -> EResult<IrqSet> {
    let IrqSetHdr {
        argsz,
        flags,
        index,
        start,
        count,
    } = *hdr;
    if (argsz as usize) < IRQ_SET_MINSZ
        || index >= VFIO_PCI_NUM_IRQS
        || flags & !(VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK) != 0
    {
        return Err(Errno::Inval);
    }
    let data = match flags & VFIO_IRQ_SET_DATA_TYPE_MASK {
        VFIO_IRQ_SET_DATA_NONE => IrqData::None,
        VFIO_IRQ_SET_DATA_BOOL => IrqData::Bool,
        VFIO_IRQ_SET_DATA_EVENTFD => IrqData::EventFd,
        _ => return Err(Errno::Inval),
    };
    let action = match flags & VFIO_IRQ_SET_ACTION_TYPE_MASK {
        VFIO_IRQ_SET_ACTION_MASK => IrqAction::Mask,
        VFIO_IRQ_SET_ACTION_UNMASK => IrqAction::Unmask,
        VFIO_IRQ_SET_ACTION_TRIGGER => IrqAction::Trigger,
        _ => return Err(Errno::Inval),
    };
    let n = count_of(index);
    let end = start.checked_add(count).ok_or(Errno::Inval)?;
    // A zero count with no data is the "disable all" form of TRIGGER; any
    // other request must name interrupts that exist.
    let disable_all = count == 0 && data == IrqData::None && action == IrqAction::Trigger;
    if !disable_all && (start >= n || end > n) {
        return Err(Errno::Inval);
    }
    let unit = match data {
        IrqData::None => 0,
        IrqData::Bool => 1,
        IrqData::EventFd => 4,
    };
    let data_size = (count as usize).checked_mul(unit).ok_or(Errno::Inval)?;
    if (argsz as usize - IRQ_SET_MINSZ) < data_size {
        return Err(Errno::Inval);
    }
    Ok(IrqSet {
        index,
        start,
        count,
        data,
        action,
        data_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(argsz: u32, flags: u32, index: u32, start: u32, count: u32) -> IrqSetHdr {
        IrqSetHdr {
            argsz,
            flags,
            index,
            start,
            count,
        }
    }

    // INTx, MSI and REQ have one interrupt each; MSI-X and ERR have none.
    fn counts(i: u32) -> u32 {
        match i {
            VFIO_PCI_INTX_IRQ_INDEX | VFIO_PCI_MSI_IRQ_INDEX | VFIO_PCI_REQ_IRQ_INDEX => 1,
            _ => 0,
        }
    }

    const TRIG_FD: u32 = VFIO_IRQ_SET_ACTION_TRIGGER | VFIO_IRQ_SET_DATA_EVENTFD;

    #[test]
    fn irq_info_follows_the_function() {
        let mut c = ConfigSpace::with_header(1, 2, 0x070002, 0);
        let info =
            |c: &ConfigSpace, i, msi, msix| irq_info(i, c, msi, msix).map(|x| (x.flags, x.count));
        let (ev, nr) = (VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_INFO_NORESIZE);
        // No pin, no MSI, not Express: only REQ has an interrupt.
        let intx_flags = ev | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED;
        assert_eq!(
            info(&c, VFIO_PCI_INTX_IRQ_INDEX, 0, 0),
            Some((intx_flags, 0))
        );
        assert_eq!(info(&c, VFIO_PCI_MSI_IRQ_INDEX, 0, 0), Some((ev | nr, 0)));
        assert_eq!(info(&c, VFIO_PCI_MSIX_IRQ_INDEX, 0, 0), Some((ev, 0)));
        assert_eq!(info(&c, VFIO_PCI_ERR_IRQ_INDEX, 0, 0), Some((ev | nr, 0)));
        assert_eq!(info(&c, VFIO_PCI_REQ_IRQ_INDEX, 0, 0), Some((ev | nr, 1)));
        assert_eq!(info(&c, VFIO_PCI_NUM_IRQS, 0, 0), None);
        // A pin, vectors (capped at what the library delivers), Express.
        c.set(reg::INT_PIN, 1, 1);
        c.add_pcie(0x60).unwrap();
        assert_eq!(
            info(&c, VFIO_PCI_INTX_IRQ_INDEX, 0, 0),
            Some((intx_flags, 1))
        );
        assert_eq!(info(&c, VFIO_PCI_MSI_IRQ_INDEX, 4, 0), Some((ev | nr, 4)));
        assert_eq!(
            info(&c, VFIO_PCI_MSIX_IRQ_INDEX, 0, 64),
            Some((ev, VECTORS as u32))
        );
        assert_eq!(info(&c, VFIO_PCI_ERR_IRQ_INDEX, 0, 0), Some((ev | nr, 1)));
    }

    #[test]
    fn accepts_an_eventfd_trigger() {
        let s = check_set(&hdr(24, TRIG_FD, 0, 0, 1), counts).unwrap();
        assert_eq!(
            (s.data, s.action, s.data_size),
            (IrqData::EventFd, IrqAction::Trigger, 4)
        );
    }

    #[test]
    fn disable_all_form_is_accepted_even_without_interrupts() {
        let f = VFIO_IRQ_SET_ACTION_TRIGGER | VFIO_IRQ_SET_DATA_NONE;
        assert!(check_set(&hdr(20, f, VFIO_PCI_MSIX_IRQ_INDEX, 0, 0), counts).is_ok());
        // With data it is not the disable form, and MSI-X has nothing.
        assert_eq!(
            check_set(&hdr(20, f, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1), counts),
            Err(Errno::Inval)
        );
    }

    #[test]
    fn rejects_every_malformed_header() {
        let bad = [
            hdr(19, TRIG_FD, 0, 0, 1),                            // argsz below minsz
            hdr(23, TRIG_FD, 0, 0, 1),                            // no room for the fd
            hdr(24, TRIG_FD, 5, 0, 1),                            // index out of range
            hdr(24, TRIG_FD | 1 << 6, 0, 0, 1),                   // unknown flag
            hdr(24, VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, 1),        // no data type
            hdr(24, VFIO_IRQ_SET_DATA_EVENTFD, 0, 0, 1),          // no action
            hdr(24, TRIG_FD | VFIO_IRQ_SET_DATA_BOOL, 0, 0, 1),   // two data types
            hdr(24, TRIG_FD | VFIO_IRQ_SET_ACTION_MASK, 0, 0, 1), // two actions
            hdr(24, TRIG_FD, 0, 1, 1),                            // start past the end
            hdr(28, TRIG_FD, 0, 0, 2),                            // range past the end
            hdr(24, TRIG_FD, 0, u32::MAX, 2),                     // start + count wraps
            hdr(u32::MAX, TRIG_FD, 0, 0, u32::MAX),               // count far too large
            hdr(24, TRIG_FD, VFIO_PCI_ERR_IRQ_INDEX, 0, 1),       // index with no interrupts
        ];
        for (i, h) in bad.iter().enumerate() {
            assert_eq!(check_set(h, counts), Err(Errno::Inval), "case {i}");
        }
    }
}
