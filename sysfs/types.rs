// SPDX-License-Identifier: GPL-2.0

//! The mdev types rmdev offers, as data.

/// One mdev type: its sysfs name (the directory is `rmdev-<name>`), what
/// `name` and `description` show, and how many ports an instance takes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TypeDesc {
    pub(crate) sysfs_name: &'static core::ffi::CStr,
    pub(crate) pretty_name: &'static core::ffi::CStr,
    pub(crate) description: &'static str,
    pub(crate) ports: u32,
    /// A PCI Express function (PCI Express capability with FLR, MSI-X,
    /// 4 KiB configuration space) rather than a conventional PCI one.
    pub(crate) express: bool,
}

/// Every type, in the order sysfs lists them.
pub(crate) const TYPES: &[TypeDesc] = &[
    TypeDesc {
        sysfs_name: c"serial-1",
        pretty_name: c"Single port serial",
        description: "16550A-compatible PCI serial card, one port (I/O BAR0)",
        ports: 1,
        express: false,
    },
    TypeDesc {
        sysfs_name: c"serial-2",
        pretty_name: c"Dual port serial",
        description: "16550A-compatible PCI serial card, two ports (I/O BAR0 and BAR1)",
        ports: 2,
        express: false,
    },
    TypeDesc {
        sysfs_name: c"pcie-serial-1",
        pretty_name: c"PCI Express single port serial",
        description: "16550A-compatible PCI Express serial function, one port (I/O BAR0), MSI-X and mappable scratch memory (64-bit memory BAR2), FLR",
        ports: 1,
        express: true,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_well_formed() {
        for (i, t) in TYPES.iter().enumerate() {
            assert!(
                t.ports >= 1 && t.ports <= 2,
                "a serial card has one or two BARs of ports"
            );
            assert!(!t.description.is_empty() && !t.description.contains('\n'));
            let n = t.sysfs_name.to_str().unwrap();
            assert!(n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            assert!(
                TYPES[..i].iter().all(|o| o.sysfs_name != t.sysfs_name),
                "unique names"
            );
        }
    }
}
