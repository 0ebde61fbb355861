// SPDX-License-Identifier: GPL-2.0

//! The one place that prints results: KTAP test lines without numbers
//! (`ok - name`, `not ok - name`, `not ok - name # TODO ...`, `ok - name #
//! SKIP ...`) and `#` diagnostic lines; the VM test script numbers them.
//!
//! With `--reference=mtty`, the checks the C sample is known to fail are
//! reported as KTAP `TODO` (expected failures), not as failures. The
//! contract is the judge; these are the C sample's deviations from it.

use std::io::{self, Write};

/// mtty's known deviations from the contract, by check name.
const MTTY_DEVIATIONS: &[&str] = &[
    // MTTY_CONFIG_SPACE_SIZE is 0xff, one byte short of PCI config space.
    "config region is at least 256 bytes",
    // With the 255-byte size, mtty's bounds check lets these through.
    "config read across the end is served up to the end",
    "config read past the end is EINVAL",
    // The C helper vfio_set_irqs_validate_and_prepare() lets two actions
    // through and mtty then acts on one of them.
    "SET_IRQS with two actions is EINVAL",
    // mtty ignores DATA_BOOL loopback triggers.
    "a DATA_BOOL trigger of 1 fires",
    // mtty refuses the count-0 "disable all" form of TRIGGER.
    "count 0 with DATA_NONE disables the index",
    // mtty offers no REQ interrupt (so a remove waits for userspace for ever).
    "REQ trigger eventfd is assigned",
    "a DATA_NONE trigger makes the REQ eventfd readable",
    // mtty answers a position in no region with EFAULT.
    "a read of a region index past the last is EINVAL",
    // Migration: mtty's saving read returns 0 (end of stream) in PRE_COPY
    // too.
    "PRE_COPY: reading past the initial data is ENOMSG",
    // mtty keeps its migration state across close and open.
    "the device opens again, RUNNING",
    // mtty takes any amount of data until the load and then fails with
    // ENOMEM past its fixed buffer; rmdev refuses past 64 KiB with EFBIG.
    "a stream over 64 KiB is refused with EFBIG",
    // mtty checks only the header; it loads a corrupted body as it is.
    "a corrupted stream is refused",
    // mtty's failed header check is EFAULT, not EINVAL.
    "a stream with a bad magic is refused with EINVAL",
    "a two-port stream into a one-port card is refused with EINVAL",
];

/// Collects results and prints them as KTAP lines.
pub(crate) struct Ktap {
    failed: u32,
    known: &'static [&'static str],
    /// The reference driver under test (`"mtty"`), or `""` for rmdev.
    pub(crate) target: &'static str,
}

impl Ktap {
    /// A reporter for rmdev, or for the reference driver `reference` (only
    /// `mtty` is known), whose known deviations become `TODO`.
    pub(crate) fn new(reference: Option<&str>) -> Self {
        match reference {
            Some("mtty") => Self {
                failed: 0,
                known: MTTY_DEVIATIONS,
                target: "mtty",
            },
            _ => Self {
                failed: 0,
                known: &[],
                target: "",
            },
        }
    }

    /// Reports check `name`; on failure, `detail` says what was seen.
    pub(crate) fn check(&mut self, name: &str, ok: bool, detail: impl FnOnce() -> String) {
        if ok {
            println!("ok - {name}");
        } else if self.known.contains(&name) {
            println!("not ok - {name} # TODO known deviation of {}", self.target);
            println!("# {}", detail());
        } else {
            self.failed += 1;
            println!("not ok - {name}");
            println!("# {}", detail());
        }
        flush();
    }

    /// Reports check `name` as skipped, for `reason`.
    pub(crate) fn skip(&mut self, name: &str, reason: &str) {
        println!("ok - {name} # SKIP {reason}");
        flush();
    }

    /// A diagnostic line.
    pub(crate) fn diag(&self, text: &str) {
        println!("# {text}");
        flush();
    }

    /// Whether every check passed or failed as known.
    pub(crate) fn passed(&self) -> bool {
        self.failed == 0
    }
}

fn flush() {
    let _ = io::stdout().flush();
}
