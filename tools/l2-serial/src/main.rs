// SPDX-License-Identifier: GPL-2.0

//! Serial loopback check, run inside the second-level guest.
//!
//! `l2-serial TTY BYTES CHUNK` puts `/dev/TTY` in raw mode, writes BYTES
//! pseudo-random bytes in writes of at most CHUNK bytes (waiting for each to
//! drain), reads what the device loops back, and compares. It prints one
//! KTAP-style line (`ok - ...` or `not ok - ...`) and the interrupt count the
//! port gained, from `/proc/interrupts`. The binary is linked statically: the
//! second-level guest has nothing but busybox.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

fn irqs(tty: &str) -> u64 {
    let text = fs::read_to_string("/proc/interrupts").unwrap_or_default();
    text.lines()
        .filter(|l| l.split_whitespace().any(|w| w == tty))
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

fn run(tty: &str, total: usize, chunk: usize) -> Result<(usize, u64), String> {
    let path = format!("/dev/{tty}");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&path)
        .map_err(|e| format!("open {path}: {e}"))?;
    raw(&f).map_err(|e| format!("raw mode: {e}"))?;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<u8> = (0..total)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
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
    if got != data {
        let first = got
            .iter()
            .zip(&data)
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
    if a.len() != 4 {
        eprintln!("usage: l2-serial TTY BYTES CHUNK");
        std::process::exit(2);
    }
    let (tty, total, chunk) = (&a[1], a[2].parse().unwrap_or(0), a[3].parse().unwrap_or(0));
    match run(tty, total, chunk) {
        Ok((n, irq)) => {
            println!("ok - L2 {tty}: {n} bytes in writes of {chunk} loop back intact");
            println!("# L2 {tty}: {irq} interrupts");
            println!(
                "{} - L2 {tty}: the transfer is interrupt-driven",
                if irq > 0 { "ok" } else { "not ok" }
            );
        }
        Err(e) => {
            println!("not ok - L2 {tty}: {total} bytes in writes of {chunk} loop back intact");
            println!("# {e}");
        }
    }
}
