// SPDX-License-Identifier: GPL-2.0

//! The power management capability (PCI Power Management 1.2): D0 and
//! D3hot.

use super::*;

impl ConfigSpace {
    /// Adds a power management capability at `off`: D0 and D3hot only, no
    /// PME, and No_Soft_Reset set (the function keeps its state across
    /// D3hot, as an emulated device does). The power state is the guest's;
    /// a write asking for a state the capability does not offer (D1, D2)
    /// is discarded, as the PCI PM spec requires.
    pub(crate) fn add_pm(&mut self, off: usize) {
        self.mark_used(off, cap::PM_SIZEOF);
        self.link_cap(off, cap::ID_PM);
        self.set(off + cap::PM_PMC, 2, cap::PM_PMC_VERSION_1_2.into());
        self.set(off + cap::PM_CTRL, 2, cap::PM_CTRL_NO_SOFT_RESET.into());
        self.apply(&Perm {
            off: off + cap::PM_CTRL,
            len: 2,
            write: cap::PM_CTRL_STATE_MASK.into(),
            rw1c: 0,
            why: "PM control: the power state is the guest's; without PME, PME enable and status read zero",
        });
        self.pm = off;
    }

    /// The power state (0 for D0 to 3 for D3hot), if there is a power
    /// management capability.
    pub(crate) fn power_state(&self) -> Option<u8> {
        (self.pm != 0)
            .then(|| (self.u16_at(self.pm + cap::PM_CTRL) & cap::PM_CTRL_STATE_MASK) as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    #[test]
    fn pm_capability_offers_d0_and_d3hot_only() {
        let mut c = serial_like();
        c.add_msi(0x40, 1);
        c.add_pm(0x50);
        let mut caps = [(0, 0); 4];
        let n = c.caps(&mut caps);
        assert_eq!(&caps[..n], &[(0x50, cap::ID_PM), (0x40, cap::ID_MSI)]);
        // PMC is read-only.
        c.write(0x52, &[0xff, 0xff]).unwrap();
        assert_eq!(c.u16_at(0x52), cap::PM_PMC_VERSION_1_2);
        assert_eq!(c.power_state(), Some(0));
        // D3hot sticks; PME enable, PME status and No_Soft_Reset do not move.
        c.write(0x54, &0xffffu16.to_le_bytes()).unwrap();
        assert_eq!(c.u16_at(0x54), 3 | cap::PM_CTRL_NO_SOFT_RESET);
        // D1 and D2 are not offered: the write is discarded.
        c.write(0x54, &[1, 0]).unwrap();
        assert_eq!(c.power_state(), Some(3));
        c.write(0x54, &[2, 0]).unwrap();
        assert_eq!(c.power_state(), Some(3));
        // Back to D0, also as part of a wider write across the register.
        wr32(&mut c, 0x54, 0);
        assert_eq!(c.power_state(), Some(0));
        c.write(0x53, &[0, 1]).unwrap();
        assert_eq!(c.power_state(), Some(0));
    }

    #[test]
    fn no_pm_capability_no_power_state() {
        let mut c = serial_like();
        assert_eq!(c.power_state(), None);
        // The bytes where a capability would be stay read-only.
        c.write(0x54, &[3, 0]).unwrap();
        assert_eq!(c.u16_at(0x54), 0);
    }
}
