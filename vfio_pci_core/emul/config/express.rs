// SPDX-License-Identifier: GPL-2.0

//! The PCI Express capability (PCI Express Base 6.0, 7.5.3) of an
//! endpoint, and Function Level Reset.

use super::*;

/// The permission table of a PCI Express capability at `off` (see
/// [`ConfigSpace::add_pcie`]). Read-only registers with a reason worth
/// keeping have a line with no writable bits.
pub(super) fn pcie_perms(off: usize) -> [Perm; 6] {
    [
        Perm {
            off: off + cap::EXP_DEVCTL,
            len: 2,
            write: (cap::EXP_DEVCTL_REPORTING
                | cap::EXP_DEVCTL_RELAX_EN
                | cap::EXP_DEVCTL_PAYLOAD
                | cap::EXP_DEVCTL_EXT_TAG
                | cap::EXP_DEVCTL_AUX_PME
                | cap::EXP_DEVCTL_NOSNOOP_EN
                | cap::EXP_DEVCTL_READRQ)
                .into(),
            rw1c: 0,
            why: "device control: error reporting, relaxed ordering, payload and read request sizes, extended tags, aux power and no-snoop are the guest's as in vfio-pci; phantom functions are not offered, so the bit reads zero; Initiate FLR reads zero, a one written to it is a reset request the library takes",
        },
        Perm {
            off: off + cap::EXP_DEVSTA,
            len: 2,
            write: 0,
            rw1c: cap::EXP_DEVSTA_ERRORS.into(),
            why: "device status: error detected bits are write-1-to-clear; aux power and transactions pending report state",
        },
        Perm {
            off: off + cap::EXP_LNKCTL,
            len: 2,
            write: (cap::EXP_LNKCTL_ASPMC
                | cap::EXP_LNKCTL_RCB
                | cap::EXP_LNKCTL_CCC
                | cap::EXP_LNKCTL_ES)
                .into(),
            rw1c: 0,
            why: "link control: ASPM control, read completion boundary, common clock and extended synch are plain storage on an emulated link; the rest is reserved or unsupported for an endpoint",
        },
        Perm {
            off: off + cap::EXP_LNKSTA,
            len: 2,
            write: 0,
            rw1c: 0,
            why: "link status: reports a trained x1 link at 2.5 GT/s; the bandwidth status bits belong to downstream ports",
        },
        Perm {
            off: off + cap::EXP_DEVCTL2,
            len: 2,
            write: 0,
            rw1c: 0,
            why: "device control 2: device capabilities 2 offers nothing, so every field is hardwired to zero",
        },
        Perm {
            off: off + cap::EXP_LNKCTL2,
            len: 2,
            write: 0,
            rw1c: 0,
            why: "link control 2: target speed is the only speed; the compliance and margining knobs have no meaning for an emulated link",
        },
    ]
}

impl ConfigSpace {
    /// Adds a version 2 PCI Express capability for an endpoint at `off`
    /// (0x3c bytes) and makes configuration space 4096 bytes long, as a
    /// PCI Express function's is (see [`ConfigSpace::set_extended`]).
    ///
    /// The function is Function Level Reset capable: a write that sets
    /// Initiate FLR is recorded for [`ConfigSpace::take_flr_request`], and
    /// the bit itself always reads zero. The link is a fixed x1 link at
    /// 2.5 GT/s without ASPM, and none of the optional features of the
    /// second set of registers is offered.
    ///
    /// Fails with `EINVAL`, changing nothing, if the capability is not
    /// dword aligned at or after 0x40, does not fit in conventional space
    /// or overlaps another capability.
    pub(crate) fn add_pcie(&mut self, off: usize) -> EResult {
        self.claim(off, cap::EXP_SIZEOF_V2)?;
        self.link_cap(off, cap::ID_EXP);
        self.set(off + cap::EXP_FLAGS, 2, cap::EXP_FLAGS_V2_ENDPOINT.into());
        self.set(
            off + cap::EXP_DEVCAP,
            4,
            cap::EXP_DEVCAP_RBER | cap::EXP_DEVCAP_FLR,
        );
        self.set(
            off + cap::EXP_DEVCTL,
            2,
            (cap::EXP_DEVCTL_RELAX_EN | cap::EXP_DEVCTL_NOSNOOP_EN | cap::EXP_DEVCTL_READRQ_512B)
                .into(),
        );
        self.set(
            off + cap::EXP_LNKCAP,
            4,
            cap::EXP_LNKCAP_SLS_2_5GB | cap::EXP_LNKCAP_MLW_X1 | cap::EXP_LNKCAP_ASPM_OPT,
        );
        self.set(
            off + cap::EXP_LNKSTA,
            2,
            (cap::EXP_LNKSTA_CLS_2_5GB | cap::EXP_LNKSTA_NLW_X1 | cap::EXP_LNKSTA_SLC).into(),
        );
        self.set(off + cap::EXP_LNKCAP2, 4, cap::EXP_LNKCAP2_SLS_2_5GB);
        self.set(off + cap::EXP_LNKCTL2, 2, cap::EXP_LNKCTL2_TLS_2_5GT.into());
        for p in pcie_perms(off) {
            self.apply(&p);
        }
        self.pcie = off;
        self.set_extended();
        Ok(())
    }

    /// Whether the function has a PCI Express capability.
    pub(crate) fn is_express(&self) -> bool {
        self.pcie != 0
    }

    /// Whether a guest write asked for a Function Level Reset since the last
    /// call, clearing the request. The library calls it after every write
    /// and resets the function when it returns `true`.
    pub(crate) fn take_flr_request(&mut self) -> bool {
        core::mem::take(&mut self.flr)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    #[test]
    fn extended_space_is_4096_bytes_with_an_empty_capability_list() {
        let mut c = serial_like();
        c.set_extended();
        assert_eq!(c.size(), CFG_EXT_SIZE);
        // A zero header at 0x100 means no extended capabilities.
        assert_eq!(rd32(&c, EXT_CAP_START), 0);
        assert_eq!(rd32(&c, CFG_EXT_SIZE - 4), 0);
        // Extended space is read-only when no capability opens it.
        wr32(&mut c, EXT_CAP_START, 0xffff_ffff);
        wr32(&mut c, 0x800, 0xffff_ffff);
        assert_eq!(rd32(&c, EXT_CAP_START), 0);
        assert_eq!(rd32(&c, 0x800), 0);
        // Conventional space behaves as before.
        wr32(&mut c, reg::BAR0, 0xffff_ffff);
        assert_eq!(rd32(&c, reg::BAR0), 0xffff_fff9);
        // Accesses crossing or past the end fail and change nothing.
        let before = c.val;
        let mut b = [0u8; 4];
        assert_eq!(c.read(CFG_EXT_SIZE - 2, &mut b), Err(Errno::Inval));
        assert_eq!(c.read(CFG_EXT_SIZE, &mut b[..1]), Err(Errno::Inval));
        assert_eq!(c.write(CFG_EXT_SIZE - 1, &[1, 2]), Err(Errno::Inval));
        assert_eq!(c.write(usize::MAX, &[1]), Err(Errno::Inval));
        assert_eq!(c.val, before);
        assert_eq!(c.read(CFG_EXT_SIZE - 1, &mut b[..1]), Ok(()));
        // Zero-length accesses are fine up to the end, not past it.
        assert_eq!(c.read(CFG_EXT_SIZE, &mut []), Ok(()));
        assert_eq!(c.write(CFG_EXT_SIZE + 1, &[]), Err(Errno::Inval));
    }

    #[test]
    fn pcie_capability_describes_an_x1_endpoint() {
        let mut c = serial_like();
        c.add_pm(0x40);
        c.add_pcie(0x60).unwrap();
        assert_eq!(c.size(), CFG_EXT_SIZE);
        let mut caps = [(0, 0); 4];
        let n = c.caps(&mut caps);
        assert_eq!(&caps[..n], &[(0x60, cap::ID_EXP), (0x40, cap::ID_PM)]);
        assert_eq!(c.u16_at(0x62), 0x0002, "version 2, endpoint");
        let devcap = rd32(&c, 0x64);
        assert_eq!(devcap & cap::EXP_DEVCAP_PAYLOAD, 0, "128-byte payload");
        assert_ne!(devcap & cap::EXP_DEVCAP_FLR, 0);
        assert_eq!(c.u16_at(0x68), 0x2810, "reset device control");
        assert_eq!(rd32(&c, 0x6c) & 0x3ff, 0x11, "x1 at 2.5 GT/s");
        assert_eq!(c.u16_at(0x72) & 0x3ff, 0x11, "trained x1 at 2.5 GT/s");
        assert_eq!(rd32(&c, 0x8c), 0x2, "supported speeds: 2.5 GT/s");
        // Every register but the control ones is read-only.
        for o in (0x60..0x9c).step_by(4) {
            let before = rd32(&c, o);
            wr32(&mut c, o, 0xffff_ffff);
            wr32(&mut c, o, 0);
            let after = rd32(&c, o);
            match o {
                0x68 => assert_eq!(after, 0),
                0x70 => assert_eq!(after, before & !0xcb),
                _ => assert_eq!(after, before, "offset {o:#x}"),
            }
        }
        assert_eq!(rd32(&c, EXT_CAP_START), 0, "no extended capabilities");
    }

    #[test]
    fn pcie_device_control_takes_defined_bits_and_flr_reads_zero() {
        let mut c = serial_like();
        c.add_pcie(0x60).unwrap();
        assert!(!c.take_flr_request());
        // Everything but phantom functions and Initiate FLR sticks.
        c.write(0x68, &0x7fffu16.to_le_bytes()).unwrap();
        assert_eq!(c.u16_at(0x68), 0x7dff);
        assert!(!c.take_flr_request(), "no FLR without bit 15");
        // Initiate FLR reads zero and is reported once.
        c.write(0x68, &0xffffu16.to_le_bytes()).unwrap();
        assert_eq!(c.u16_at(0x68), 0x7dff);
        assert!(c.take_flr_request());
        assert!(!c.take_flr_request());
        // Also through a byte write or a dword write that covers it.
        c.write(0x69, &[0x80]).unwrap();
        assert!(c.take_flr_request());
        wr32(&mut c, 0x68, 0x8000);
        assert!(c.take_flr_request());
        assert_eq!(c.u16_at(0x68), 0);
        // A write next to the register does not request one.
        c.write(0x6a, &[0xff, 0xff]).unwrap();
        c.write(0x67, &[0xff]).unwrap();
        assert!(!c.take_flr_request());
        // A failed write does not either.
        assert_eq!(c.write(0x69, &[0x80; 4096]), Err(Errno::Inval));
        assert!(!c.take_flr_request());
    }

    #[test]
    fn pcie_device_status_errors_are_rw1c() {
        let mut c = serial_like();
        c.add_pcie(0x60).unwrap();
        c.set(0x6a, 2, 0x3f);
        c.write(0x6a, &[0, 0]).unwrap();
        assert_eq!(c.u16_at(0x6a), 0x3f);
        c.write(0x6a, &[0x05, 0]).unwrap();
        assert_eq!(c.u16_at(0x6a), 0x3a);
        c.write(0x6a, &[0xff, 0xff]).unwrap();
        assert_eq!(c.u16_at(0x6a), 0x30, "aux power and pending stay");
    }
}
