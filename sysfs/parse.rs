// SPDX-License-Identifier: GPL-2.0

//! Parsing of what userspace writes to rmdev's sysfs attributes.

/// Parses a boolean as `kstrtobool()` does for the common spellings: `1`,
/// `y`, `Y`, `on` are true; `0`, `n`, `N`, `off` are false; one trailing
/// newline is allowed (what `echo` writes). Anything else is `None`.
pub(crate) fn parse_bool(input: &[u8]) -> Option<bool> {
    let s = input.strip_suffix(b"\n").unwrap_or(input);
    match s {
        b"1" | b"y" | b"Y" | b"on" => Some(true),
        b"0" | b"n" | b"N" | b"off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans() {
        for t in [&b"1"[..], b"1\n", b"y", b"Y\n", b"on"] {
            assert_eq!(parse_bool(t), Some(true), "{t:?}");
        }
        for f in [&b"0"[..], b"0\n", b"n", b"N", b"off\n"] {
            assert_eq!(parse_bool(f), Some(false), "{f:?}");
        }
        for bad in [
            &b""[..],
            b"\n",
            b"2",
            b"1\n\n",
            b" 1",
            b"yes",
            b"true",
            b"\x00",
            b"01",
        ] {
            assert_eq!(parse_bool(bad), None, "{bad:?}");
        }
    }
}
