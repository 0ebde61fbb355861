// SPDX-License-Identifier: GPL-2.0

//! Mediation (kernel-free): what moves between a guest's virtual port
//! ([`Uart`]) and the physical port backing it ([`HwPort`]) each time either
//! side has news. The kernel glue calls [`sync`] after every guest access to
//! a mediated port and when the card's interrupt thread reports the
//! hardware's news, under the instance's lock and the port's lock.

use super::{
    hwport::{HwPort, LineSettings, PortIo},
    physcard::scale_divisor,
    uart::Uart,
};

/// Brings the two sides of a mediated port up to date: the guest's line
/// settings go to the hardware; bytes the guest transmitted go to the
/// hardware's transmit ring while it has room (the rest stays in the
/// virtual FIFO, so THR stays full for the guest); received bytes go to the
/// guest's receive FIFO while it has room (the rest stays in the hardware's
/// ring); the hardware's modem inputs become the guest's. Bounded: each
/// loop moves at most one FIFO's worth. The guest's divisor is for a
/// 115200 base; the card's ports run from `base_baud`.
///
/// Line settings are applied only while the guest has DLAB clear, so a
/// divisor is never applied half written.
pub(crate) fn sync(uart: &mut Uart, hw: &mut HwPort, io: &impl PortIo, base_baud: u32) {
    if let Some((divisor, lcr, mcr)) = uart.line() {
        let divisor = scale_divisor(divisor, base_baud);
        hw.apply(io, LineSettings { divisor, lcr, mcr });
    }
    while uart.tx_len() > 0 && hw.tx_room() > 0 {
        let Some(b) = uart.pop_tx() else {
            break;
        };
        // There was room: the byte is queued.
        let _ = hw.queue_tx(io, b);
    }
    while uart.rx_room() > 0 {
        let Some(rx) = hw.pop_rx(io) else {
            break;
        };
        match rx.byte {
            Some(b) => uart.deliver(b, rx.errors),
            None => uart.line_errors(rx.errors),
        }
    }
    uart.set_modem_inputs(hw.modem_inputs(), hw.take_modem_deltas());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mdev_parent::{hwport::tests::Fake, uart::off};
    extern crate std;
    use std::vec::Vec;

    const LSR_DR: u8 = 1;
    const LSR_THRE: u8 = 1 << 5;

    /// A guest port mediated by a physical port on the fake 16550.
    struct Rig {
        guest: Uart,
        hw: HwPort,
        fake: Fake,
    }

    impl Rig {
        fn new() -> Self {
            let mut guest = Uart::new();
            guest.set_mediated();
            // The guest's 8250 driver: FIFOs on, 8N1, interrupts on.
            guest.write(off::IIR_FCR, 0x07);
            guest.write(off::LCR, 0x03);
            guest.write(off::IER_DLM, 0x0f);
            let fake = Fake::new();
            let mut hw = HwPort::new();
            hw.start(&fake);
            Self { guest, hw, fake }
        }

        /// The hardware's interrupt, then the instance's event.
        fn interrupt(&mut self) {
            if self.fake.irq() {
                self.hw.service(&self.fake);
            }
            sync(&mut self.guest, &mut self.hw, &self.fake, 115_200);
        }
    }

    fn pattern(n: usize, seed: u32) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    /// The guest sends `data` as a driver does (up to 16 bytes whenever THR
    /// is empty, or ignoring THRE when `careless`) while the wire moves
    /// `wire` bytes per step; returns what went out on the wire.
    fn send(data: &[u8], wire: usize, careless: bool) -> Vec<u8> {
        let mut r = Rig::new();
        let mut next = 0;
        for _ in 0..100_000 {
            if next == data.len() && r.guest.tx_len() == 0 && r.hw.tx_room() == 64 {
                break;
            }
            if careless || r.guest.read(off::LSR) & LSR_THRE != 0 {
                for &b in data[next..].iter().take(16) {
                    r.guest.write(off::RBR_THR_DLL, b);
                    next += 1;
                }
                sync(&mut r.guest, &mut r.hw, &r.fake, 115_200);
            }
            r.fake.wire_moves(wire);
            r.interrupt();
        }
        // What is still in the hardware's FIFO leaves too.
        for _ in 0..100 {
            r.fake.wire_moves(16);
            r.interrupt();
        }
        r.fake.sent()
    }

    #[test]
    fn what_the_guest_sends_leaves_on_the_wire_in_order_whatever_the_line_speed() {
        let data = pattern(5000, 7);
        for wire in [1, 3, 16] {
            let sent = send(&data, wire, false);
            assert_eq!(sent.len(), data.len(), "wire moves {wire} per step");
            assert_eq!(sent, data, "wire moves {wire} per step");
        }
    }

    #[test]
    fn negative_control_a_guest_ignoring_thre_loses_bytes_and_the_check_sees_it() {
        let data = pattern(2000, 9);
        assert_ne!(send(&data, 1, true), data);
    }

    #[test]
    fn what_arrives_on_the_wire_reaches_the_guest_in_order_with_its_errors() {
        let data = pattern(5000, 3);
        let mut r = Rig::new();
        r.fake.send_to_port(&data[..2500]);
        r.fake.send_bad(0x55, 0x08);
        r.fake.send_to_port(&data[2500..]);
        let mut got = Vec::new();
        let mut framing = Vec::new();
        for step in 0..100_000 {
            if got.len() == data.len() + 1 {
                break;
            }
            r.fake.arrive(5);
            r.interrupt();
            // A slow guest: it reads only every third step, so the rings
            // fill and the hardware is held back.
            if step % 3 == 0 {
                loop {
                    let lsr = r.guest.read(off::LSR);
                    if lsr & LSR_DR == 0 {
                        break;
                    }
                    if lsr & 0x08 != 0 {
                        framing.push(got.len());
                    }
                    got.push(r.guest.read(off::RBR_THR_DLL));
                    sync(&mut r.guest, &mut r.hw, &r.fake, 115_200);
                }
            }
        }
        let mut want = data[..2500].to_vec();
        want.push(0x55);
        want.extend_from_slice(&data[2500..]);
        assert_eq!(got, want);
        assert_eq!(r.guest.stats().overruns, 0, "nothing lost to overrun");
        assert!(!framing.is_empty(), "the framing error reached the guest");
    }

    #[test]
    fn line_settings_reach_the_hardware_scaled_and_only_once_dlab_is_clear() {
        let mut r = Rig::new();
        r.guest.write(off::LCR, 0x83);
        r.guest.write(off::RBR_THR_DLL, 12);
        sync(&mut r.guest, &mut r.hw, &r.fake, 921_600);
        assert_eq!(r.hw.line().divisor, 1, "half way: not applied");
        r.guest.write(off::LCR, 0x1b);
        r.guest.write(off::MCR, 0x1f);
        sync(&mut r.guest, &mut r.hw, &r.fake, 921_600);
        let l = r.hw.line();
        assert_eq!((l.divisor, l.lcr), (96, 0x1b), "9600 baud on an 8x clock");
        assert_eq!(l.mcr & 0x18, 0, "OUT2 and loopback are not the guest's");
    }

    #[test]
    fn modem_line_changes_reach_the_guest() {
        let mut r = Rig::new();
        r.guest.read(off::MSR);
        r.fake.set_modem_inputs(0xb0);
        r.interrupt();
        r.fake.set_modem_inputs(0x30);
        r.interrupt();
        let msr = r.guest.read(off::MSR);
        assert_eq!(msr & 0xf0, 0x30);
        assert_ne!(msr & 0x08, 0, "DCD dropped: its delta is set");
    }
}
