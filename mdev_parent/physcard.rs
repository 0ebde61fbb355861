// SPDX-License-Identifier: GPL-2.0

//! The physical cards rmdev drives (kernel-free): where each card's 16550
//! ports are, and what clock they run on.
//!
//! The layouts come from QEMU (`hw/char/serial-pci.c` and
//! `serial-pci-multi.c`) and from the kernel's `8250_pci.c` board table; the
//! PCI driver checks a bound card's BARs against its layout with
//! [`windows`] before it maps anything.

use crate::vfio_pci_core::emul::{EResult, Errno};

/// The most ports a card in [`CARDS`] has.
pub(crate) const MAX_CARD_PORTS: usize = 4;
/// The bytes of one port's register window (8 registers, one byte apart).
pub(crate) const PORT_WINDOW: u64 = 8;
/// The PCI function's number of standard BARs.
pub(crate) const PCI_BARS: u8 = 6;
/// The base baud the guest programs divisors for: the virtual port's clock
/// (1.8432 MHz / 16), as on a PC's COM port.
pub(crate) const GUEST_BASE_BAUD: u32 = 115_200;

/// Where a card's ports' registers are.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Placement {
    /// All ports in BAR `bar`, port i at `offset + i * stride`.
    Packed { bar: u8, offset: u64, stride: u64 },
    /// Port i alone at offset 0 of BAR `first + i`.
    BarPerPort { first: u8 },
}

/// A card's layout.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Layout {
    /// A name for the kernel log.
    pub(crate) name: &'static str,
    /// Ports the card has (1 to [`MAX_CARD_PORTS`]).
    pub(crate) ports: u8,
    pub(crate) placement: Placement,
    /// The ports' base baud (UART clock / 16): a divisor of 1 gives this
    /// rate. The guest's divisors are for [`GUEST_BASE_BAUD`]; another base
    /// needs [`scale_divisor`].
    pub(crate) base_baud: u32,
}

/// Which PCI functions a [`Layout`] is for: vendor and device, and, for IDs
/// whose functions differ by subsystem (as `8250_pci.c` tells them apart),
/// the subsystem vendor and device too.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct CardId {
    pub(crate) vendor: u16,
    pub(crate) device: u16,
    pub(crate) subsystem: Option<(u16, u16)>,
}

const fn id(vendor: u16, device: u16) -> CardId {
    CardId {
        vendor,
        device,
        subsystem: None,
    }
}

/// The cards, most specific first for IDs that appear more than once.
pub(crate) const CARDS: &[(CardId, Layout)] = &[
    // QEMU's `pci-serial`: one port in an 8-byte I/O BAR0; QEMU's UART has
    // a base baud of 115200.
    (
        id(0x1b36, 0x0002),
        Layout {
            name: "QEMU pci-serial",
            ports: 1,
            placement: Placement::Packed {
                bar: 0,
                offset: 0,
                stride: 8,
            },
            base_baud: 115_200,
        },
    ),
    // QEMU's `pci-serial-2x`: a 16-byte I/O BAR0 with port i at 8 * i.
    (
        id(0x1b36, 0x0003),
        Layout {
            name: "QEMU pci-serial-2x",
            ports: 2,
            placement: Placement::Packed {
                bar: 0,
                offset: 0,
                stride: 8,
            },
            base_baud: 115_200,
        },
    ),
    // QEMU's `pci-serial-4x`: a 32-byte I/O BAR0 with port i at 8 * i.
    (
        id(0x1b36, 0x0004),
        Layout {
            name: "QEMU pci-serial-4x",
            ports: 4,
            placement: Placement::Packed {
                bar: 0,
                offset: 0,
                stride: 8,
            },
            base_baud: 115_200,
        },
    ),
    // Oxford Semiconductor OX16PCI954 without a known subsystem:
    // `8250_pci.c` gives it `pbn_b0_4_115200`, four ports 8 bytes apart in
    // BAR0 with a 1.8432 MHz clock (base 115200, no scaling). Boards that
    // fit other crystals are told apart there by subsystem (1152000,
    // 921600, 1843200); they are not in this table and a card with one of
    // those subsystems runs at the wrong rate here (TODO: add them by
    // subsystem when someone has one).
    (
        id(0x1415, 0x9501),
        Layout {
            name: "Oxford OX16PCI954",
            ports: 4,
            placement: Placement::Packed {
                bar: 0,
                offset: 0,
                stride: 8,
            },
            base_baud: 115_200,
        },
    ),
    // Oxford Semiconductor OX16PCI952: `pbn_b0_bt_2_921600`, one port per
    // BAR from BAR0, with a 14.7456 MHz clock (base 921600): the guest's
    // divisors are scaled by 8.
    (
        id(0x1415, 0x9521),
        Layout {
            name: "Oxford OX16PCI952",
            ports: 2,
            placement: Placement::BarPerPort { first: 0 },
            base_baud: 921_600,
        },
    ),
    // NetMos/MosChip 9835 as IBM ships it (subsystem 1014:0299), the one
    // 9835 that `8250_pci.c` drives: `pbn_b0_bt_2_115200`, one port per
    // BAR from BAR0, base 115200. Other 9835 boards are serial+parallel
    // combos for `parport_serial`, whose port count is in the subsystem
    // device ID; they are not matched.
    (
        CardId {
            vendor: 0x9710,
            device: 0x9835,
            subsystem: Some((0x1014, 0x0299)),
        },
        Layout {
            name: "NetMos 9835 (IBM)",
            ports: 2,
            placement: Placement::BarPerPort { first: 0 },
            base_baud: 115_200,
        },
    ),
];

/// The layout of the function with these IDs, if rmdev knows the card.
pub(crate) fn lookup(
    vendor: u16,
    device: u16,
    subvendor: u16,
    subdevice: u16,
) -> Option<&'static Layout> {
    CARDS.iter().find_map(|(id, layout)| {
        let subsystem_ok = !matches!(id.subsystem, Some(s) if s != (subvendor, subdevice));
        (id.vendor == vendor && id.device == device && subsystem_ok).then_some(layout)
    })
}

/// What a BAR is, as far as [`windows`] cares.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum BarKind {
    /// Not implemented (or not usable, such as the upper half of a 64-bit
    /// BAR).
    None,
    /// I/O ports.
    Io,
    /// Memory.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "the kernel glue reaches both kinds alike")
    )]
    Mem,
}

/// One port's registers: BAR and offset in it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Window {
    pub(crate) bar: u8,
    pub(crate) offset: u64,
}

/// Where each of the card's ports is, given each BAR's kind and length
/// (`bar(i)` for BAR `i`): port i's window is entry i, the entries past the
/// card's ports are `None`. `EINVAL` when the layout has no port or more
/// than [`MAX_CARD_PORTS`], names a BAR past the sixth, a BAR is not
/// implemented, or a window does not fit in its BAR (arithmetic is checked,
/// so a huge offset or stride is refused, not wrapped).
pub(crate) fn windows(
    layout: &Layout,
    bar: impl Fn(u8) -> (BarKind, u64),
) -> EResult<[Option<Window>; MAX_CARD_PORTS]> {
    let ports = usize::from(layout.ports);
    if ports == 0 || ports > MAX_CARD_PORTS {
        return Err(Errno::Inval);
    }
    let mut out = [None; MAX_CARD_PORTS];
    for (i, slot) in out.iter_mut().enumerate().take(ports) {
        // CAST: `i` is below MAX_CARD_PORTS.
        let i = i as u8;
        let w = match layout.placement {
            Placement::Packed {
                bar,
                offset,
                stride,
            } => Window {
                bar,
                offset: stride
                    .checked_mul(u64::from(i))
                    .and_then(|o| o.checked_add(offset))
                    .ok_or(Errno::Inval)?,
            },
            Placement::BarPerPort { first } => Window {
                bar: first.checked_add(i).ok_or(Errno::Inval)?,
                offset: 0,
            },
        };
        if w.bar >= PCI_BARS {
            return Err(Errno::Inval);
        }
        let (kind, len) = bar(w.bar);
        let end = w.offset.checked_add(PORT_WINDOW).ok_or(Errno::Inval)?;
        if kind == BarKind::None || end > len {
            return Err(Errno::Inval);
        }
        *slot = Some(w);
    }
    Ok(out)
}

/// The divisor to program on a port with base baud `base_baud` for the rate
/// a guest asks for with `guest` (a divisor for [`GUEST_BASE_BAUD`]):
/// `guest * base_baud / 115200`, rounded to the nearest. A guest divisor of
/// 0 is taken as 1 (as [`super::hwport::LineSettings`] does); the result is
/// kept within 1..=65535, so a rate the card cannot go down to becomes its
/// slowest, and one it cannot reach its fastest.
pub(crate) fn scale_divisor(guest: u16, base_baud: u32) -> u16 {
    let guest = u64::from(guest.max(1));
    let base = u64::from(GUEST_BASE_BAUD);
    let scaled = (guest * u64::from(base_baud) + base / 2) / base;
    u16::try_from(scaled.max(1)).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of BAR `b` that `layout` uses (0 for a BAR it does not).
    fn needed(layout: &Layout, b: u8) -> u64 {
        match layout.placement {
            Placement::Packed {
                bar,
                offset,
                stride,
            } if b == bar => offset + stride * u64::from(layout.ports - 1) + PORT_WINDOW,
            Placement::BarPerPort { first } if (first..first + layout.ports).contains(&b) => {
                PORT_WINDOW
            }
            _ => 0,
        }
    }

    /// BARs as the card would have them: each one it uses as large as the
    /// layout needs, rounded up to a power of two as PCI sizes are.
    fn fitting(layout: &Layout) -> impl Fn(u8) -> (BarKind, u64) + '_ {
        move |b| match needed(layout, b) {
            0 => (BarKind::None, 0),
            n => (BarKind::Io, n.next_power_of_two()),
        }
    }

    #[test]
    fn ids_are_unique_and_layouts_sane() {
        for (i, (a, la)) in CARDS.iter().enumerate() {
            for (b, _) in &CARDS[i + 1..] {
                assert_ne!(a, b, "{}", la.name);
            }
            assert!((1..=MAX_CARD_PORTS).contains(&usize::from(la.ports)));
            assert!(la.base_baud >= GUEST_BASE_BAUD);
            if let Placement::Packed { stride, .. } = la.placement {
                assert!(stride >= PORT_WINDOW, "{}: ports overlap", la.name);
            }
        }
    }

    #[test]
    fn every_layout_fits_its_plausible_bars() {
        for (_, l) in CARDS {
            let w = windows(l, fitting(l)).unwrap();
            let n = usize::from(l.ports);
            assert!(w[..n].iter().all(Option::is_some), "{}", l.name);
            assert!(w[n..].iter().all(Option::is_none), "{}", l.name);
            // No two ports share registers.
            for (i, a) in w.iter().flatten().enumerate() {
                for b in w.iter().flatten().skip(i + 1) {
                    assert!(
                        a.bar != b.bar || a.offset.abs_diff(b.offset) >= PORT_WINDOW,
                        "{}",
                        l.name
                    );
                }
            }
        }
    }

    #[test]
    fn known_layouts() {
        let q4 = lookup(0x1b36, 0x0004, 0x1af4, 0x1100).unwrap();
        let w = windows(q4, |b| {
            if b == 0 {
                (BarKind::Io, 32)
            } else {
                (BarKind::None, 0)
            }
        })
        .unwrap();
        let offs: [_; 4] = core::array::from_fn(|i| w[i].map(|w| (w.bar, w.offset)));
        assert_eq!(
            offs,
            [Some((0, 0)), Some((0, 8)), Some((0, 16)), Some((0, 24))]
        );
        let ox952 = lookup(0x1415, 0x9521, 0, 0).unwrap();
        let w = windows(ox952, |_| (BarKind::Mem, 4096)).unwrap();
        assert_eq!(
            (w[0], w[1], w[2]),
            (
                Some(Window { bar: 0, offset: 0 }),
                Some(Window { bar: 1, offset: 0 }),
                None
            )
        );
        assert_eq!(lookup(0x1b36, 0x0002, 0, 0).unwrap().ports, 1);
        assert_eq!(lookup(0x1b36, 0x0003, 0, 0).unwrap().ports, 2);
        assert_eq!(lookup(0x1415, 0x9501, 0, 0).unwrap().ports, 4);
    }

    #[test]
    fn subsystem_matching() {
        assert!(lookup(0x9710, 0x9835, 0x1014, 0x0299).is_some());
        assert!(lookup(0x9710, 0x9835, 0x1000, 0x0002).is_none());
        assert!(lookup(0x1b36, 0x0005, 0, 0).is_none());
        assert!(lookup(0x4348, 0x3253, 0, 0).is_none());
    }

    #[test]
    fn short_or_missing_bars_are_refused() {
        let mut checked = 0;
        for (_, l) in CARDS {
            let fit = fitting(l);
            for b in 0..PCI_BARS {
                let need = needed(l, b);
                if need == 0 {
                    continue;
                }
                // Exactly the bytes needed is enough; one fewer is not.
                let exact = |i| if i == b { (BarKind::Mem, need) } else { fit(i) };
                assert!(windows(l, exact).is_ok(), "{} BAR{b}", l.name);
                let short = |i| {
                    if i == b {
                        (BarKind::Io, need - 1)
                    } else {
                        fit(i)
                    }
                };
                assert_eq!(windows(l, short), Err(Errno::Inval), "{} BAR{b}", l.name);
                let gone = |i| {
                    if i == b {
                        (BarKind::None, 1 << 20)
                    } else {
                        fit(i)
                    }
                };
                assert_eq!(windows(l, gone), Err(Errno::Inval), "{} BAR{b}", l.name);
                checked += 1;
            }
        }
        assert!(checked >= CARDS.len());
    }

    #[test]
    fn huge_or_bad_layouts_are_refused_without_overflow() {
        let any = |_| (BarKind::Mem, u64::MAX);
        let packed = |offset, stride, ports| Layout {
            name: "test",
            ports,
            placement: Placement::Packed {
                bar: 0,
                offset,
                stride,
            },
            base_baud: GUEST_BASE_BAUD,
        };
        assert_eq!(
            windows(&packed(u64::MAX - 8, 8, 1), any).map(|w| w[0]),
            Ok(Some(Window {
                bar: 0,
                offset: u64::MAX - 8
            }))
        );
        assert_eq!(windows(&packed(u64::MAX - 7, 8, 1), any), Err(Errno::Inval));
        assert_eq!(windows(&packed(8, u64::MAX, 2), any), Err(Errno::Inval));
        assert_eq!(
            windows(&packed(u64::MAX / 2, u64::MAX / 2, 4), any),
            Err(Errno::Inval)
        );
        assert_eq!(windows(&packed(0, 8, 0), any), Err(Errno::Inval));
        assert_eq!(windows(&packed(0, 8, 5), any), Err(Errno::Inval));
        let per_bar = |first, ports| Layout {
            placement: Placement::BarPerPort { first },
            ..packed(0, 0, ports)
        };
        assert!(windows(&per_bar(2, 4), any).is_ok());
        assert_eq!(windows(&per_bar(3, 4), any), Err(Errno::Inval));
        assert_eq!(windows(&per_bar(254, 4), any), Err(Errno::Inval));
        assert_eq!(windows(&per_bar(u8::MAX, 2), any), Err(Errno::Inval));
    }

    #[test]
    fn divisors_scale_to_the_card_clock() {
        // The same clock: unchanged (0 is taken as 1).
        for d in [1, 2, 12, 384, u16::MAX] {
            assert_eq!(scale_divisor(d, GUEST_BASE_BAUD), d);
        }
        assert_eq!(scale_divisor(0, GUEST_BASE_BAUD), 1);
        // 921600 is 8 times as fast: 115200 baud is divisor 8 there.
        assert_eq!(scale_divisor(1, 921_600), 8);
        assert_eq!(scale_divisor(12, 921_600), 96);
        assert_eq!(scale_divisor(0, 921_600), 8);
        // Rounded to the nearest: 1130000 / 115200 is 9.809.
        assert_eq!(scale_divisor(1, 1_130_000), 10);
        assert_eq!(scale_divisor(3, 1_843_200), 48);
        // Too slow for the card: its slowest. Too fast: its fastest.
        assert_eq!(scale_divisor(u16::MAX, 921_600), u16::MAX);
        assert_eq!(scale_divisor(8192, 921_600), u16::MAX);
        assert_eq!(scale_divisor(8191, 921_600), 65_528);
        assert_eq!(scale_divisor(1, 1_000), 1);
        assert_eq!(scale_divisor(u16::MAX, u32::MAX), u16::MAX);
        // The rate the card runs at is the rate the guest asked for.
        for d in 1..=8191u16 {
            let hw = scale_divisor(d, 921_600);
            assert_eq!(921_600 / u32::from(hw), 115_200 / u32::from(d));
        }
    }
}
