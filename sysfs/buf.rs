// SPDX-License-Identifier: GPL-2.0

//! A bounded text buffer for sysfs `show` callbacks.

use core::fmt;

/// Formats into a fixed buffer (a sysfs page), truncating what does not fit,
/// as `sysfs_emit()` does. It never writes past the end.
pub(crate) struct Buf<'a> {
    b: &'a mut [u8],
    len: usize,
}

impl<'a> Buf<'a> {
    /// An empty buffer over `b`.
    pub(crate) fn new(b: &'a mut [u8]) -> Self {
        Self { b, len: 0 }
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The text written so far.
    #[cfg(test)]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.b[..self.len]
    }
}

impl fmt::Write for Buf<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.b.len() - self.len;
        let n = s.len().min(room);
        self.b[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn truncates_at_the_end() {
        let mut page = [0u8; 8];
        let mut b = Buf::new(&mut page);
        write!(b, "abcd-{}", 12345).unwrap();
        assert_eq!(b.len(), 8);
        assert_eq!(b.as_bytes(), b"abcd-123");
        write!(b, "more").unwrap();
        assert_eq!(b.len(), 8);
    }
}
