// SPDX-License-Identifier: GPL-2.0

//! Call counts by kind and the failures found, shared by the threads.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// The kinds of call the fuzzer makes, for the counts it prints.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Pread,
    Pwrite,
    GetInfo,
    RegionInfo,
    IrqInfo,
    SetIrqs,
    Reset,
    Feature,
    MigState,
    DataRead,
    DataWrite,
    DataIoctl,
    Mmap,
    OtherIoctl,
    Reopen,
    Create,
    Remove,
}

pub(crate) const KINDS: [(Kind, &str); 17] = [
    (Kind::Pread, "pread"),
    (Kind::Pwrite, "pwrite"),
    (Kind::GetInfo, "GET_INFO"),
    (Kind::RegionInfo, "GET_REGION_INFO"),
    (Kind::IrqInfo, "GET_IRQ_INFO"),
    (Kind::SetIrqs, "SET_IRQS"),
    (Kind::Reset, "RESET"),
    (Kind::Feature, "DEVICE_FEATURE"),
    (Kind::MigState, "MIG_DEVICE_STATE"),
    (Kind::DataRead, "data fd read"),
    (Kind::DataWrite, "data fd write"),
    (Kind::DataIoctl, "data fd ioctl/pread"),
    (Kind::Mmap, "mmap"),
    (Kind::OtherIoctl, "other ioctl"),
    (Kind::Reopen, "close/reopen"),
    (Kind::Create, "sysfs create"),
    (Kind::Remove, "sysfs remove"),
];

/// The most failures kept for the report (all are counted).
const KEEP: usize = 30;

#[derive(Default)]
pub(crate) struct Stats {
    calls: [AtomicU64; KINDS.len()],
    fails: AtomicU64,
    first: Mutex<Vec<String>>,
}

impl Stats {
    pub(crate) fn count(&self, k: Kind) {
        self.calls[k as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn fail(&self, what: String) {
        self.fails.fetch_add(1, Relaxed);
        if let Ok(mut f) = self.first.lock() {
            if f.len() < KEEP {
                eprintln!("vfio-fuzz: FAIL {what}");
                f.push(what);
            }
        }
    }

    pub(crate) fn calls(&self, k: Kind) -> u64 {
        self.calls[k as usize].load(Relaxed)
    }

    /// Calls on the device (not the sysfs churn).
    pub(crate) fn device_calls(&self) -> u64 {
        KINDS
            .iter()
            .filter(|(k, _)| !matches!(k, Kind::Create | Kind::Remove))
            .map(|&(k, _)| self.calls(k))
            .sum()
    }

    pub(crate) fn failures(&self) -> u64 {
        self.fails.load(Relaxed)
    }

    pub(crate) fn first_failures(&self) -> Vec<String> {
        self.first.lock().map(|f| f.clone()).unwrap_or_default()
    }
}
