// SPDX-License-Identifier: GPL-2.0

//! The vendor-specific capability: read-only data of the device's.

use super::*;

impl ConfigSpace {
    /// Adds a vendor-specific capability at `off` carrying `data`: the
    /// length byte counts the three header bytes and the data, and every
    /// byte is read-only (the vendor defines the contents, not their
    /// writability; a device wanting writable bytes applies its own lines).
    ///
    /// Fails with `EINVAL`, changing nothing, if the capability is not
    /// dword aligned at or after 0x40, does not fit in conventional space
    /// or overlaps another capability.
    pub(crate) fn add_vendor(&mut self, off: usize, data: &[u8]) -> EResult {
        let len = data
            .len()
            .checked_add(cap::VNDR_HEADER)
            .ok_or(Errno::Inval)?;
        let len_byte = u8::try_from(len).map_err(|_| Errno::Inval)?;
        self.claim(off, len)?;
        self.link_cap(off, cap::ID_VNDR);
        self.set(off + cap::VNDR_LEN, 1, len_byte.into());
        for (i, &b) in data.iter().enumerate() {
            self.set(off + cap::VNDR_HEADER + i, 1, b.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    #[test]
    fn vendor_capability_is_read_only_data() {
        let mut c = serial_like();
        c.add_msi(0x40, 1);
        c.add_vendor(0x50, b"rmdev").unwrap();
        let mut caps = [(0, 0); 4];
        let n = c.caps(&mut caps);
        assert_eq!(&caps[..n], &[(0x50, cap::ID_VNDR), (0x40, cap::ID_MSI)]);
        let mut b = [0u8; 8];
        c.read(0x50, &mut b).unwrap();
        assert_eq!(&b, &[0x09, 0x40, 8, b'r', b'm', b'd', b'e', b'v']);
        c.write(0x50, &[0xff; 8]).unwrap();
        let mut after = [0u8; 8];
        c.read(0x50, &mut after).unwrap();
        assert_eq!(after, b);
        // An empty one is just the header; the largest fills the space.
        c.add_vendor(0x58, &[]).unwrap();
        assert_eq!(c.u16_at(0x5a), 3);
        c.add_vendor(0x5c, &[0xa5; 0xa1]).unwrap();
        assert_eq!(c.val[0x5e], 0xa4);
        assert_eq!(c.val[0xff], 0xa5);
        assert_eq!(c.caps(&mut caps), 4);
    }

    #[test]
    fn vendor_capability_must_fit_and_not_overlap() {
        let mut c = serial_like();
        c.add_pm(0x40);
        let before = c.val;
        for (off, len) in [
            (0x44, 1),
            (0x3c, 1),
            (0x4a, 1),
            (0xfc, 2),
            (0x48, 0xb6),
            (0x48, 300),
            (usize::MAX - 3, 1),
        ] {
            assert_eq!(c.add_vendor(off, &[0; 300][..len]), Err(Errno::Inval));
        }
        assert_eq!(c.val, before);
        assert_eq!(c.add_vendor(0xfc, &[1]), Ok(()));
        assert_eq!(c.add_vendor(0x48, &[0; 0xb1]), Ok(()), "0x48 to 0xfc");
    }
}
