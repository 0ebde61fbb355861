// SPDX-License-Identifier: GPL-2.0

//! Serial loopback check, run inside the second-level guest.
//!
//! `l2-serial TTY BYTES CHUNK [XORHEX]` puts `/dev/TTY` in raw mode, writes
//! BYTES pseudo-random bytes in writes of at most CHUNK bytes (waiting for
//! each to drain), reads what comes back, and compares. Without XORHEX the
//! device must loop every byte back as it was (rmdev's virtual ports, mtty);
//! with it every byte must come back XOR-ed with that key, as the test
//! relay behind a physical port sends it (tests/qemu/serial-relay.py), so
//! that a byte looped back inside the device, or one from another port,
//! fails. It prints one KTAP-style line (`ok - ...` or `not ok - ...`) and
//! the interrupt count the port gained, from `/proc/interrupts`. The binary
//! is linked statically: the second-level guest has nothing but busybox.
//!
//! `l2-serial --data BYTES [XORHEX]` writes to standard output the bytes the
//! check with those arguments sends, for the side that records them.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

/// The port's IRQ number, from sysfs (0: the port has none and is polled).
fn irq_of(tty: &str) -> Option<u32> {
    fs::read_to_string(format!("/sys/class/tty/{tty}/irq"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The interrupts the port's IRQ line has taken, from `/proc/interrupts`.
/// The line is found by the port's IRQ number: ports that share a line (two
/// cards on one INTx pin) are listed there under the first port's name only.
/// A port without an IRQ (number 0, polled by a timer) has taken none.
fn irqs(tty: &str) -> u64 {
    let text = fs::read_to_string("/proc/interrupts").unwrap_or_default();
    let irq = irq_of(tty);
    if irq == Some(0) {
        return 0;
    }
    let label = irq.map(|n| format!("{n}:"));
    text.lines()
        .filter(|l| {
            let mut w = l.split_whitespace();
            let first = w.next();
            match &label {
                Some(label) => first == Some(label.as_str()),
                None => w.any(|w| w == tty),
            }
        })
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .map_while(|w| w.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

fn raw(f: &File) -> std::io::Result<()> {
    // SAFETY: `t` is a plain C struct filled by tcgetattr before use.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `f` is an open tty and `t` a valid termios.
    if unsafe { libc::tcgetattr(f.as_raw_fd(), &mut t) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `t` is a valid termios.
    unsafe { libc::cfmakeraw(&mut t) };
    t.c_cflag |= libc::CLOCAL | libc::CREAD;
    t.c_cflag &= !libc::CRTSCTS;
    t.c_cc[libc::VMIN] = 0;
    t.c_cc[libc::VTIME] = 1;
    // SAFETY: As above.
    if unsafe { libc::tcsetattr(f.as_raw_fd(), libc::TCSANOW, &t) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: Discards anything queued before the test.
    unsafe { libc::tcflush(f.as_raw_fd(), libc::TCIOFLUSH) };
    Ok(())
}

/// The BYTES pseudo-random bytes a check sends. With a key the sequence
/// starts from another seed, so that two ports checked at once send
/// different data; without one it is the sequence the plain loopback check
/// always sent.
fn pattern(total: usize, key: Option<u8>) -> Vec<u8> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    if let Some(k) = key {
        seed ^= u64::from(k).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    (0..total)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// What must come back for `data`: the bytes themselves, or each XOR-ed
/// with the key.
fn expected(data: &[u8], key: Option<u8>) -> Vec<u8> {
    let k = key.unwrap_or(0);
    data.iter().map(|b| b ^ k).collect()
}

/// Parses a key given in hexadecimal, with or without `0x`.
fn parse_key(s: &str) -> Option<u8> {
    let h = s.strip_prefix("0x").unwrap_or(s);
    u8::from_str_radix(h, 16).ok()
}

fn run(tty: &str, total: usize, chunk: usize, key: Option<u8>) -> Result<(usize, u64), String> {
    let path = format!("/dev/{tty}");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&path)
        .map_err(|e| format!("open {path}: {e}"))?;
    raw(&f).map_err(|e| format!("raw mode: {e}"))?;
    let data = pattern(total, key);
    let want_back = expected(&data, key);
    let before = irqs(tty);
    let mut reader = f.try_clone().map_err(|e| e.to_string())?;
    let want = total;
    let rx = std::thread::spawn(move || {
        let mut got = Vec::with_capacity(want);
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut idle = Instant::now();
        while got.len() < want
            && Instant::now() < deadline
            && idle.elapsed() < Duration::from_secs(5)
        {
            match reader.read(&mut buf) {
                Ok(0) => {}
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    idle = Instant::now();
                }
                Err(_) => break,
            }
        }
        got
    });
    let mut w = &f;
    for c in data.chunks(chunk.max(1)) {
        w.write_all(c).map_err(|e| format!("write: {e}"))?;
        // SAFETY: Waits until the chunk has left the port.
        unsafe { libc::tcdrain(f.as_raw_fd()) };
    }
    let got = rx.join().map_err(|_| "reader failed".to_string())?;
    let after = irqs(tty);
    if got != want_back {
        let first = got
            .iter()
            .zip(&want_back)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len());
        return Err(format!(
            "read back {} of {} bytes, first difference at {}",
            got.len(),
            total,
            first
        ));
    }
    Ok((total, after - before))
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() >= 3 && a.len() <= 4 && a[1] == "--data" {
        let key = a.get(3).map(|k| parse_key(k));
        let (Ok(total), None | Some(Some(_))) = (a[2].parse::<usize>(), key) else {
            eprintln!("usage: l2-serial --data BYTES [XORHEX]");
            std::process::exit(2);
        };
        let out = pattern(total, key.flatten());
        if std::io::stdout().write_all(&out).is_err() {
            std::process::exit(1);
        }
        return;
    }
    if a.len() != 4 && a.len() != 5 {
        eprintln!("usage: l2-serial TTY BYTES CHUNK [XORHEX] | l2-serial --data BYTES [XORHEX]");
        std::process::exit(2);
    }
    let (tty, total, chunk) = (&a[1], a[2].parse().unwrap_or(0), a[3].parse().unwrap_or(0));
    let key = match a.get(4).map(|k| parse_key(k)) {
        None => None,
        Some(Some(k)) => Some(k),
        Some(None) => {
            eprintln!("l2-serial: the XOR key is one byte in hexadecimal, like 50");
            std::process::exit(2);
        }
    };
    let what = match key {
        None => "loop back intact".to_string(),
        Some(k) => format!("come back XOR 0x{k:02x} intact"),
    };
    match run(tty, total, chunk, key) {
        Ok((n, irq)) => {
            println!("ok - L2 {tty}: {n} bytes in writes of {chunk} {what}");
            let line = irq_of(tty).map_or("?".to_string(), |n| n.to_string());
            println!("# L2 {tty}: {irq} interrupts (IRQ {line})");
            println!(
                "{} - L2 {tty}: the transfer is interrupt-driven",
                if irq > 0 { "ok" } else { "not ok" }
            );
        }
        Err(e) => {
            println!("not ok - L2 {tty}: {total} bytes in writes of {chunk} {what}");
            println!("# {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_pattern_is_the_old_sequence() {
        // The first bytes of the xorshift sequence the loopback check has
        // always sent, so the virtual parent's tests send the same data.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let old: Vec<u8> = (0..64)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        assert_eq!(pattern(64, None), old);
        assert_eq!(expected(&old, None), old);
    }

    #[test]
    fn keyed_patterns_differ_per_port() {
        let a = pattern(4096, Some(0x50));
        let b = pattern(4096, Some(0x51));
        assert_ne!(a, b);
        assert_ne!(a, pattern(4096, None));
        assert_eq!(a, pattern(4096, Some(0x50)));
    }

    #[test]
    fn xor_catches_a_loopback_and_a_crossed_port() {
        let data = pattern(4096, Some(0x50));
        let want = expected(&data, Some(0x50));
        assert!(want.iter().zip(&data).all(|(w, d)| w ^ d == 0x50));
        // A device that looped the bytes back internally.
        assert_ne!(data, want);
        // The echo of port 1 (key 0x51) arriving on port 0.
        assert_ne!(expected(&data, Some(0x51)), want);
    }

    #[test]
    fn keys_parse_in_hex() {
        assert_eq!(parse_key("50"), Some(0x50));
        assert_eq!(parse_key("0x5f"), Some(0x5f));
        assert_eq!(parse_key("100"), None);
        assert_eq!(parse_key("zz"), None);
    }
}
