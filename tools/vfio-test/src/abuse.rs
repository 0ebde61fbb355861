// SPDX-License-Identifier: GPL-2.0

//! Guest-side bad input on a serial card: every offset and size of every
//! BAR and of config space, DLAB toggles in the middle of a transfer, a
//! receive overrun, then the UART's interrupts.

use crate::dev::{ioctl_val, pread, pwrite, Dev};
use crate::irqs;
use crate::ktap::Ktap;
use crate::regions::region;
use vfio_uapi::{
    VFIO_DEVICE_RESET, VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_BAR5_REGION_INDEX,
    VFIO_PCI_CONFIG_REGION_INDEX,
};

/// Guest-side abuse: every offset and size of every BAR and of config space,
/// read and written with patterns, plus DLAB toggles in the middle of a
/// transfer and a receive overrun. The device must answer in bounds (up to a
/// region's end for an access that runs past it), refuse accesses that
/// start past the end with EINVAL, and work normally after a reset.
pub(crate) fn run(t: &mut Ktap, dev: &Dev) {
    let fd = &dev.fd;
    let mut bad = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for index in (VFIO_PCI_BAR0_REGION_INDEX..=VFIO_PCI_BAR5_REGION_INDEX)
        .chain([VFIO_PCI_CONFIG_REGION_INDEX])
    {
        let Some((base, size)) = region(fd, index) else {
            continue;
        };
        if size == 0 {
            continue;
        }
        for off in 0..size + 8 {
            for len in [1usize, 2, 3, 4, 8] {
                // Served up to the region's end, refused from it on.
                let want = if off < size {
                    Ok(len.min((size - off) as usize))
                } else {
                    Err(libc::EINVAL)
                };
                let mut b = [0u8; 8];
                let r = pread(fd, &mut b[..len], base + off);
                if r != want {
                    bad.push(format!("read region {index} off {off} len {len}: {r:?}"));
                }
                for pat in [0xffu8, 0x00, 0x80] {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let mut w = [pat; 8];
                    if pat == 0x80 {
                        w = seed.to_le_bytes();
                    }
                    let r = pwrite(fd, &w[..len], base + off);
                    if r != want {
                        bad.push(format!("write region {index} off {off} len {len}: {r:?}"));
                    }
                }
            }
        }
    }
    t.check(
        "every offset and size of BARs and config is answered or refused with EINVAL",
        bad.is_empty(),
        || bad.iter().take(3).cloned().collect::<Vec<_>>().join("; "),
    );
    let r = ioctl_val(fd, VFIO_DEVICE_RESET, 0);
    t.check("RESET after the abuse succeeds", r.is_ok(), || {
        format!("{r:?}")
    });
    let Some((bar0, _)) = region(fd, VFIO_PCI_BAR0_REGION_INDEX) else {
        return;
    };
    // DLAB toggles in the middle of a transfer: bytes written with DLAB set
    // go to the divisor latch, the others loop back.
    let mut got = Vec::new();
    for (i, b) in b"rmdev-dlab".iter().enumerate() {
        let _ = pwrite(fd, &[if i % 3 == 1 { 0x83 } else { 0x03 }], bar0 + 3);
        let _ = pwrite(fd, &[*b], bar0);
    }
    let _ = pwrite(fd, &[0x03], bar0 + 3);
    let mut lsr = [0u8];
    while pread(fd, &mut lsr, bar0 + 5) == Ok(1) && lsr[0] & 1 != 0 && got.len() < 64 {
        let mut c = [0u8];
        let _ = pread(fd, &mut c, bar0);
        got.push(c[0]);
    }
    let want: Vec<u8> = b"rmdev-dlab"
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 1)
        .map(|(_, b)| *b)
        .collect();
    t.check(
        "DLAB toggles mid-transfer keep the other bytes intact",
        got == want,
        || format!("got {got:?} want {want:?}"),
    );
    // Overrun: 20 bytes into a 16-byte FIFO sets OE, keeps 16.
    for b in 0..20u8 {
        let _ = pwrite(fd, &[b], bar0);
    }
    let _ = pread(fd, &mut lsr, bar0 + 5);
    let mut n = 0;
    let mut l = [0u8];
    while pread(fd, &mut l, bar0 + 5) == Ok(1) && l[0] & 1 != 0 && n < 64 {
        let mut c = [0u8];
        let _ = pread(fd, &mut c, bar0);
        n += 1;
    }
    t.check(
        "a receive overrun sets LSR.OE and keeps the FIFO's 16 bytes",
        lsr[0] & 2 != 0 && n == 16,
        || format!("lsr {:#x}, {n} bytes", lsr[0]),
    );
    irqs::uart(t, fd, bar0);
}
