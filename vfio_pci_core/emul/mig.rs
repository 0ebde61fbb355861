// SPDX-License-Identifier: GPL-2.0

//! VFIO migration v2: the device state machine and the migration stream.
//!
//! # State machine
//!
//! The library offers every optional state (`STOP_COPY`, `P2P` and
//! `PRE_COPY`), so the path between two states is the one the uAPI's table
//! in `include/uapi/linux/vfio.h` gives with nothing skipped. [`next_state`]
//! returns the next arc towards a requested state and [`arc`] says what the
//! library does on each arc; a request walks arcs until it arrives, and every
//! walk ends within three arcs (a host test checks all 49 pairs).
//!
//! # Stream
//!
//! The stream is a sequence of records. Each starts with a 20-byte header,
//! all fields little endian:
//!
//! | offset | size | field                                              |
//! |-------:|-----:|----------------------------------------------------|
//! | 0      | 4    | magic, the bytes `RMDV`                            |
//! | 4      | 2    | major version (1): a reader refuses another        |
//! | 6      | 2    | minor version (0): a reader accepts any            |
//! | 8      | 2    | kind: 1 identity, 2 device state                   |
//! | 10     | 2    | flags, zero                                        |
//! | 12     | 4    | payload length                                     |
//! | 16     | 4    | CRC-32 (IEEE 802.3) of the payload                 |
//!
//! Every payload starts with the device's identity: a length byte and the
//! device type's name, then a 32-bit variant (the serial card's port count).
//! An identity record holds just that and is sent first, in `PRE_COPY`, so
//! a target refuses an incompatible source before the source stops. A state
//! record follows the identity with sections, each a 2-byte tag, 2 reserved
//! bytes, a 4-byte length and the data: tag 1 is configuration space, tag 2
//! the library's interrupt state, tags from `0x100` belong to the device.
//! A reader skips sections it does not know (a newer minor version may add
//! some) and the device checks that its own are all there.

use super::{EResult, Errno};

/// `VFIO_MIGRATION_STOP_COPY`.
pub(crate) const VFIO_MIGRATION_STOP_COPY: u32 = 1 << 0;
/// `VFIO_MIGRATION_P2P`.
pub(crate) const VFIO_MIGRATION_P2P: u32 = 1 << 1;
/// `VFIO_MIGRATION_PRE_COPY`.
pub(crate) const VFIO_MIGRATION_PRE_COPY: u32 = 1 << 2;
/// The migration flags the library offers.
pub(crate) const FLAGS: u32 =
    VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY;

/// `VFIO_MIG_GET_PRECOPY_INFO`, an ioctl on the saving data file.
pub(crate) const VFIO_MIG_GET_PRECOPY_INFO: u32 =
    super::uapi::VFIO_TYPE << 8 | (super::uapi::VFIO_BASE + 21);
/// `minsz` of `struct vfio_precopy_info`: up to and including `dirty_bytes`.
pub(crate) const PRECOPY_INFO_MINSZ: usize = 24;

/// `enum vfio_device_mig_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum MigState {
    Error = 0,
    Stop = 1,
    Running = 2,
    StopCopy = 3,
    Resuming = 4,
    RunningP2p = 5,
    PreCopy = 6,
    PreCopyP2p = 7,
}

impl MigState {
    /// Every state, in uAPI order.
    pub(crate) const ALL: [MigState; 8] = [
        MigState::Error,
        MigState::Stop,
        MigState::Running,
        MigState::StopCopy,
        MigState::Resuming,
        MigState::RunningP2p,
        MigState::PreCopy,
        MigState::PreCopyP2p,
    ];

    /// The state numbered `v` in the uAPI.
    pub(crate) fn from_u32(v: u32) -> Option<Self> {
        Self::ALL.get(usize::try_from(v).ok()?).copied()
    }
}

/// The next state on the way from `cur` to `new`.
///
/// `EINVAL` for a target that is not a state a user may ask for (`ERROR` or
/// an unknown number) and for any request made in `ERROR`, which only a
/// device reset leaves. The table is the uAPI's with every optional state
/// supported; its one blocked arc, `STOP_COPY` to a `PRE_COPY` state, also
/// gets `EINVAL`.
pub(crate) fn next_state(cur: MigState, new: MigState) -> EResult<MigState> {
    use MigState::*;
    if cur == Error || new == Error {
        return Err(Errno::Inval);
    }
    if cur == new {
        return Ok(new);
    }
    let next = match (cur, new) {
        (Error, _) | (_, Error) => return Err(Errno::Inval),
        (Stop, StopCopy) => StopCopy,
        (Stop, Resuming) => Resuming,
        (Stop, _) => RunningP2p,
        (Running, PreCopy) => PreCopy,
        (Running, _) => RunningP2p,
        (PreCopy, PreCopyP2p | StopCopy) => PreCopyP2p,
        (PreCopy, _) => Running,
        (PreCopyP2p, PreCopy) => PreCopy,
        (PreCopyP2p, StopCopy) => StopCopy,
        (PreCopyP2p, _) => RunningP2p,
        (StopCopy, PreCopy | PreCopyP2p) => return Err(Errno::Inval),
        (StopCopy, _) => Stop,
        (Resuming, _) => Stop,
        (RunningP2p, Running | PreCopy) => Running,
        (RunningP2p, PreCopyP2p) => PreCopyP2p,
        (RunningP2p, _) => Stop,
    };
    Ok(next)
}

/// What the library does on one arc of the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arc {
    /// Nothing but the state changes (the device does no DMA, so the P2P
    /// arcs have nothing to quiesce).
    Nothing,
    /// The device stops running: interrupts are held back.
    Stop,
    /// The device runs again: held-back interrupts are delivered.
    Run,
    /// A saving file opens with the identity record (`PRE_COPY` entry).
    StartPreCopy,
    /// The saving file gets the state record and the stream its end.
    FinishPreCopy,
    /// A saving file opens with the whole stream (`STOP` to `STOP_COPY`).
    StopCopy,
    /// The saving file closes: the transfer is over or abandoned.
    EndSave,
    /// A resuming file opens.
    StartResume,
    /// The received stream is checked and loaded; the file closes.
    Load,
}

/// The action for the arc from `cur` to `next`, a state [`next_state`]
/// returned; `None` for a pair that is not an arc.
pub(crate) fn arc(cur: MigState, next: MigState) -> Option<Arc> {
    use MigState::*;
    Some(match (cur, next) {
        (Running, RunningP2p) | (RunningP2p, Running) => Arc::Nothing,
        (PreCopy, PreCopyP2p) | (PreCopyP2p, PreCopy) => Arc::Nothing,
        (RunningP2p, Stop) => Arc::Stop,
        (Stop, RunningP2p) => Arc::Run,
        (Running, PreCopy) | (RunningP2p, PreCopyP2p) => Arc::StartPreCopy,
        (PreCopyP2p, StopCopy) => Arc::FinishPreCopy,
        (Stop, StopCopy) => Arc::StopCopy,
        (PreCopy, Running) | (PreCopyP2p, RunningP2p) | (StopCopy, Stop) => Arc::EndSave,
        (Stop, Resuming) => Arc::StartResume,
        (Resuming, Stop) => Arc::Load,
        _ => return None,
    })
}

/// Magic number at the start of every record: `RMDV`.
pub(crate) const MAGIC: u32 = u32::from_le_bytes(*b"RMDV");
/// Major version: a reader refuses a stream with another.
pub(crate) const MAJOR: u16 = 1;
/// Minor version: a reader accepts any (unknown sections are skipped).
pub(crate) const MINOR: u16 = 0;
/// Record kind: the identity alone.
pub(crate) const KIND_IDENTITY: u16 = 1;
/// Record kind: the identity and the device's state.
pub(crate) const KIND_STATE: u16 = 2;
/// Size of a record header.
pub(crate) const HEADER_SIZE: usize = 20;
/// Section tag: configuration space.
pub(crate) const TAG_CONFIG: u16 = 1;
/// Section tag: the library's interrupt state.
pub(crate) const TAG_IRQ: u16 = 2;
/// Section tag: the plain memory of the device's BARs, in BAR order.
pub(crate) const TAG_BAR_MEMORY: u16 = 3;
/// The first section tag that belongs to the device.
pub(crate) const TAG_DEVICE: u16 = 0x100;
/// Largest stream a resuming file accepts. Streams are a few hundred bytes;
/// the limit bounds what a user can make the kernel hold.
pub(crate) const MAX_STREAM: usize = 64 * 1024;

/// The CRC-32 tables (IEEE 802.3 polynomial, reflected), built at compile
/// time. `CRC_TABLES[0]` is the classic byte table; `CRC_TABLES[k]` gives
/// the CRC of a byte followed by `k` zero bytes, so that eight bytes are
/// folded in at once ("slicing by 8"): one table lookup per byte, and one
/// loop turn per eight bytes instead of per byte.
const CRC_TABLES: [[u32; 256]; 8] = {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut k = 1;
        while k < 8 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            k += 1;
        }
        i += 1;
    }
    t
};

/// A running CRC-32 (IEEE 802.3, reflected, as zlib computes it).
pub(crate) struct Crc32(u32);

impl Crc32 {
    /// A CRC over nothing yet.
    pub(crate) const fn new() -> Self {
        Self(!0)
    }

    /// Adds `data`.
    pub(crate) fn update(&mut self, data: &[u8]) {
        let t = &CRC_TABLES;
        let mut c = self.0;
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            let lo = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) ^ c;
            let hi = u32::from_le_bytes([w[4], w[5], w[6], w[7]]);
            let at = |x: u32, k: usize| t[7 - k][(x >> (8 * (k % 4))) as usize & 0xff];
            c = at(lo, 0) ^ at(lo, 1) ^ at(lo, 2) ^ at(lo, 3);
            c ^= t[3][hi as usize & 0xff]
                ^ t[2][(hi >> 8) as usize & 0xff]
                ^ t[1][(hi >> 16) as usize & 0xff]
                ^ t[0][(hi >> 24) as usize];
        }
        for &b in words.remainder() {
            c = t[0][((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }

    /// The CRC of everything added.
    pub(crate) fn finish(&self) -> u32 {
        !self.0
    }
}

/// The CRC-32 of `data`.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(data);
    c.finish()
}

/// Who a stream belongs to: it loads only into a device with the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity<'a> {
    /// The device type's name (at most 255 bytes).
    pub(crate) name: &'a [u8],
    /// A device-defined variant that must match, such as a port count.
    pub(crate) variant: u32,
}

impl Identity<'_> {
    /// Bytes the identity takes in a payload.
    pub(crate) fn size(&self) -> usize {
        1 + self.name.len() + 4
    }
}

/// Writes little-endian values into a byte slice, or only counts them.
pub(crate) struct Writer<'a> {
    buf: Option<&'a mut [u8]>,
    pos: usize,
}

impl<'a> Writer<'a> {
    /// A writer filling `buf` from its start.
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self {
            buf: Some(buf),
            pos: 0,
        }
    }

    /// A writer that stores nothing and counts the bytes it is given.
    pub(crate) fn counting() -> Self {
        Self { buf: None, pos: 0 }
    }

    /// The bytes written (or counted) so far.
    pub(crate) fn len(&self) -> usize {
        self.pos
    }

    /// Appends `data`. `EINVAL` if it does not fit.
    #[inline]
    pub(crate) fn bytes(&mut self, data: &[u8]) -> EResult {
        let end = self.pos.checked_add(data.len()).ok_or(Errno::Inval)?;
        if let Some(buf) = self.buf.as_deref_mut() {
            buf.get_mut(self.pos..end)
                .ok_or(Errno::Inval)?
                .copy_from_slice(data);
        }
        self.pos = end;
        Ok(())
    }

    /// Appends `n` bytes that `f` writes in place (not called when
    /// counting), for data that is not in a slice already. `EINVAL` if they
    /// do not fit; `f`'s error if it fails.
    #[inline]
    pub(crate) fn fill(&mut self, n: usize, f: impl FnOnce(&mut [u8]) -> EResult) -> EResult {
        let end = self.pos.checked_add(n).ok_or(Errno::Inval)?;
        if let Some(buf) = self.buf.as_deref_mut() {
            f(buf.get_mut(self.pos..end).ok_or(Errno::Inval)?)?;
        }
        self.pos = end;
        Ok(())
    }

    /// Appends a byte.
    #[inline]
    pub(crate) fn u8(&mut self, v: u8) -> EResult {
        self.bytes(&[v])
    }

    /// Appends a little-endian `u16`.
    #[inline]
    pub(crate) fn u16(&mut self, v: u16) -> EResult {
        self.bytes(&v.to_le_bytes())
    }

    /// Appends a little-endian `u32`.
    #[inline]
    pub(crate) fn u32(&mut self, v: u32) -> EResult {
        self.bytes(&v.to_le_bytes())
    }

    /// Overwrites the `u32` at `at` (to fill in a length or checksum).
    #[inline]
    fn patch_u32(&mut self, at: usize, v: u32) -> EResult {
        if let Some(buf) = self.buf.as_deref_mut() {
            let end = at.checked_add(4).ok_or(Errno::Inval)?;
            buf.get_mut(at..end)
                .ok_or(Errno::Inval)?
                .copy_from_slice(&v.to_le_bytes());
        }
        Ok(())
    }

    /// The bytes from `from` to the current position (empty when counting).
    fn written(&self, from: usize) -> &[u8] {
        self.buf
            .as_deref()
            .and_then(|b| b.get(from..self.pos))
            .unwrap_or(&[])
    }

    /// Appends a section with `tag` whose data `f` writes.
    pub(crate) fn section(&mut self, tag: u16, f: impl FnOnce(&mut Self) -> EResult) -> EResult {
        self.u16(tag)?;
        self.u16(0)?;
        let len_at = self.pos;
        self.u32(0)?;
        let start = self.pos;
        f(self)?;
        let len = u32::try_from(self.pos - start).map_err(|_| Errno::Inval)?;
        self.patch_u32(len_at, len)
    }

    /// Appends a record of `kind` for `id` whose sections `f` writes.
    pub(crate) fn record(
        &mut self,
        kind: u16,
        id: &Identity<'_>,
        f: impl FnOnce(&mut Self) -> EResult,
    ) -> EResult {
        self.u32(MAGIC)?;
        self.u16(MAJOR)?;
        self.u16(MINOR)?;
        self.u16(kind)?;
        self.u16(0)?;
        let len_at = self.pos;
        self.u32(0)?;
        self.u32(0)?;
        let start = self.pos;
        self.u8(u8::try_from(id.name.len()).map_err(|_| Errno::Inval)?)?;
        self.bytes(id.name)?;
        self.u32(id.variant)?;
        f(self)?;
        let len = u32::try_from(self.pos - start).map_err(|_| Errno::Inval)?;
        let crc = crc32(self.written(start));
        self.patch_u32(len_at, len)?;
        self.patch_u32(len_at + 4, crc)
    }
}

/// Reads little-endian values from a byte slice; every read is checked.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next `n` bytes. `EINVAL` if there are fewer.
    #[inline]
    pub(crate) fn bytes(&mut self, n: usize) -> EResult<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(Errno::Inval)?;
        let s = self.buf.get(self.pos..end).ok_or(Errno::Inval)?;
        self.pos = end;
        Ok(s)
    }

    /// The next `N` bytes as an array.
    #[inline]
    pub(crate) fn array<const N: usize>(&mut self) -> EResult<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    /// The next byte.
    #[inline]
    pub(crate) fn u8(&mut self) -> EResult<u8> {
        Ok(self.array::<1>()?[0])
    }

    /// The next little-endian `u16`.
    #[inline]
    pub(crate) fn u16(&mut self) -> EResult<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// The next little-endian `u32`.
    #[inline]
    pub(crate) fn u32(&mut self) -> EResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A byte that must be 0 or 1, as a flag. `EINVAL` otherwise.
    #[inline]
    pub(crate) fn bool(&mut self) -> EResult<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Errno::Inval),
        }
    }

    /// `EINVAL` unless everything was read.
    pub(crate) fn finish(&self) -> EResult {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(Errno::Inval)
        }
    }
}

/// The sections of a state record's payload, after the identity.
#[derive(Clone, Copy)]
pub(crate) struct Sections<'a> {
    data: &'a [u8],
}

impl<'a> Sections<'a> {
    /// Every section's tag and data, in stream order. The layout was checked
    /// when the record was, so the walk cannot fail.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u16, &'a [u8])> {
        let mut r = Reader::new(self.data);
        core::iter::from_fn(move || {
            let tag = r.u16().ok()?;
            r.u16().ok()?;
            let len = r.u32().ok()?;
            let data = r.bytes(usize::try_from(len).ok()?).ok()?;
            Some((tag, data))
        })
    }

    /// The data of the one section with `tag`. `EINVAL` if there is none or
    /// more than one.
    pub(crate) fn get(&self, tag: u16) -> EResult<&'a [u8]> {
        let mut found = None;
        for (t, d) in self.iter() {
            if t == tag {
                if found.is_some() {
                    return Err(Errno::Inval);
                }
                found = Some(d);
            }
        }
        found.ok_or(Errno::Inval)
    }

    /// How many sections have a tag in `range`.
    pub(crate) fn count(&self, range: core::ops::RangeInclusive<u16>) -> usize {
        self.iter().filter(|(t, _)| range.contains(t)).count()
    }
}

/// Checks the section layout of `data`: every section lies inside it.
fn check_sections(data: &[u8]) -> EResult {
    let mut r = Reader::new(data);
    while r.remaining() > 0 {
        r.u16()?;
        if r.u16()? != 0 {
            return Err(Errno::Inval);
        }
        let len = r.u32()?;
        r.bytes(usize::try_from(len).map_err(|_| Errno::Inval)?)?;
    }
    Ok(())
}

/// What a resuming device has received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Received {
    /// Where the payload of the last complete state record starts and ends.
    pub(crate) state: Option<(usize, usize)>,
    /// Bytes after the last complete record: a record still arriving.
    pub(crate) partial: usize,
}

/// Checks the stream received so far against the identity `id`.
///
/// Called after every write to the resuming file, so a bad stream fails the
/// write that completes its first bad field: the magic and version as soon
/// as a header is in, the checksum, identity and section layout as soon as
/// the record is. `EINVAL` for anything malformed, corrupt or incompatible.
pub(crate) fn check_stream(buf: &[u8], id: &Identity<'_>) -> EResult<Received> {
    let mut pos = 0;
    let mut state = None;
    while pos < buf.len() {
        let rest = buf.get(pos..).ok_or(Errno::Inval)?;
        let mut r = Reader::new(rest);
        // Check each field of the header as far as it has arrived.
        let field = |r: &mut Reader<'_>, n: usize| -> Option<u32> {
            let b = r.bytes(n).ok()?;
            let mut a = [0u8; 4];
            a.get_mut(..n)?.copy_from_slice(b);
            Some(u32::from_le_bytes(a))
        };
        if rest.len() < 4 {
            if !MAGIC.to_le_bytes().starts_with(rest) {
                return Err(Errno::Inval);
            }
            return Ok(Received {
                state,
                partial: rest.len(),
            });
        }
        if field(&mut r, 4) != Some(MAGIC) {
            return Err(Errno::Inval);
        }
        let major = field(&mut r, 2);
        if major.is_some_and(|m| m != u32::from(MAJOR)) {
            return Err(Errno::Inval);
        }
        let _minor = field(&mut r, 2);
        let kind = field(&mut r, 2);
        if kind.is_some_and(|k| k != u32::from(KIND_IDENTITY) && k != u32::from(KIND_STATE)) {
            return Err(Errno::Inval);
        }
        let flags = field(&mut r, 2);
        if flags.is_some_and(|f| f != 0) {
            return Err(Errno::Inval);
        }
        let len = field(&mut r, 4);
        if len.is_some_and(|l| l as usize > MAX_STREAM) {
            return Err(Errno::Inval);
        }
        let crc = field(&mut r, 4);
        let (Some(kind), Some(len), Some(crc)) = (kind, len, crc) else {
            return Ok(Received {
                state,
                partial: rest.len(),
            });
        };
        let len = len as usize;
        let Ok(payload) = r.bytes(len) else {
            return Ok(Received {
                state,
                partial: rest.len(),
            });
        };
        if crc32(payload) != crc {
            return Err(Errno::Inval);
        }
        let mut p = Reader::new(payload);
        let name_len = usize::from(p.u8()?);
        if p.bytes(name_len)? != id.name || p.u32()? != id.variant {
            return Err(Errno::Inval);
        }
        let body = p.bytes(p.remaining())?;
        let start = pos + HEADER_SIZE + id.size();
        if kind == u32::from(KIND_IDENTITY) {
            if !body.is_empty() {
                return Err(Errno::Inval);
            }
        } else {
            check_sections(body)?;
            state = Some((start, start + body.len()));
        }
        pos += HEADER_SIZE + len;
    }
    Ok(Received { state, partial: 0 })
}

/// The sections to load from `buf`, all of which [`check_stream`] has
/// checked (possibly in parts, with `got` gathering the results).
///
/// `EINVAL` if the stream stops in the middle of a record or has no state
/// record. With several state records the last one counts.
pub(crate) fn sections(buf: &[u8], got: Received) -> EResult<Sections<'_>> {
    match got {
        Received {
            state: Some((start, end)),
            partial: 0,
        } => Ok(Sections {
            data: buf.get(start..end).ok_or(Errno::Inval)?,
        }),
        _ => Err(Errno::Inval),
    }
}

/// The sections of the complete stream `buf` to load, checked against `id`
/// in one go (the kernel checks as writes arrive, then calls [`sections`]).
#[cfg(test)]
pub(crate) fn final_state<'a>(buf: &'a [u8], id: &Identity<'_>) -> EResult<Sections<'a>> {
    let got = check_stream(buf, id)?;
    sections(buf, got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uapi_numbers_match_the_abi() {
        // The values the C headers expand to, as userspace sees them.
        assert_eq!(VFIO_MIG_GET_PRECOPY_INFO, 0x3b79);
        assert_eq!(PRECOPY_INFO_MINSZ, 24);
        assert_eq!(
            (
                VFIO_MIGRATION_STOP_COPY,
                VFIO_MIGRATION_P2P,
                VFIO_MIGRATION_PRE_COPY
            ),
            (1, 2, 4)
        );
        assert_eq!(FLAGS, 7, "STOP_COPY, P2P and PRE_COPY");
    }

    #[test]
    fn library_tags_are_distinct_and_below_the_devices() {
        let tags = [TAG_CONFIG, TAG_IRQ, TAG_BAR_MEMORY];
        for (i, t) in tags.iter().enumerate() {
            assert!(*t < TAG_DEVICE);
            assert!(!tags[..i].contains(t));
        }
    }

    const ID: Identity<'static> = Identity {
        name: b"rmdev-serial",
        variant: 2,
    };

    fn stream(buf: &mut [u8], id: &Identity<'_>) -> usize {
        let mut w = Writer::new(buf);
        w.record(KIND_IDENTITY, id, |_| Ok(())).unwrap();
        w.record(KIND_STATE, id, |w| {
            w.section(TAG_CONFIG, |w| w.bytes(&[0xaa; 16]))?;
            w.section(TAG_DEVICE, |w| w.u32(0x1234_5678))
        })
        .unwrap();
        w.len()
    }

    #[test]
    fn fill_writes_in_place_and_counts() {
        let mut buf = [0u8; 6];
        let mut w = Writer::new(&mut buf);
        w.u8(1).unwrap();
        w.fill(4, |b| {
            b.copy_from_slice(&[2, 3, 4, 5]);
            Ok(())
        })
        .unwrap();
        assert_eq!(w.fill(2, |_| panic!("does not fit")), Err(Errno::Inval));
        assert_eq!(w.fill(0, |_| Err(Errno::Inval)), Err(Errno::Inval));
        assert_eq!(w.len(), 5);
        assert_eq!(buf, [1, 2, 3, 4, 5, 0]);
        let mut c = Writer::counting();
        c.fill(4096, |_| panic!("counting writes nothing")).unwrap();
        assert_eq!(c.len(), 4096);
    }

    #[test]
    fn crc_matches_the_standard_check_value() {
        // The check value of CRC-32/ISO-HDLC over "123456789".
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn crc_by_eight_bytes_is_the_bitwise_crc() {
        // The definition, one bit at a time.
        fn bitwise(data: &[u8]) -> u32 {
            let mut c = !0u32;
            for &b in data {
                c ^= u32::from(b);
                for _ in 0..8 {
                    c = if c & 1 != 0 {
                        0xedb8_8320 ^ (c >> 1)
                    } else {
                        c >> 1
                    };
                }
            }
            !c
        }
        let mut rng = super::super::testrng::Rng::new(0x0063_7263_3332);
        let mut data = [0u8; 300];
        data.iter_mut().for_each(|b| *b = rng.below(256) as u8);
        for len in 0..data.len() {
            assert_eq!(crc32(&data[..len]), bitwise(&data[..len]), "len {len}");
        }
        // In pieces of any size, as records are checked.
        for split in 0..40 {
            let mut c = Crc32::new();
            c.update(&data[..split]);
            c.update(&data[split..]);
            assert_eq!(c.finish(), bitwise(&data), "split {split}");
        }
    }

    #[test]
    fn every_request_arrives_within_four_arcs_through_known_arcs() {
        for &from in &MigState::ALL[1..] {
            for &to in &MigState::ALL[1..] {
                let mut cur = from;
                let mut steps = 0;
                let blocked = from == MigState::StopCopy
                    && matches!(to, MigState::PreCopy | MigState::PreCopyP2p);
                while cur != to {
                    match next_state(cur, to) {
                        Ok(next) => {
                            assert!(arc(cur, next).is_some(), "{cur:?} -> {next:?} is no arc");
                            cur = next;
                        }
                        Err(e) => {
                            assert!(blocked, "{from:?} -> {to:?} refused");
                            assert_eq!(e, Errno::Inval);
                            break;
                        }
                    }
                    steps += 1;
                    assert!(steps <= 4, "{from:?} -> {to:?} takes too long");
                }
                assert_eq!(cur == to, !blocked);
            }
        }
    }

    #[test]
    fn the_uapi_paths_are_taken() {
        use MigState::*;
        let path = |mut cur: MigState, to: MigState| {
            let mut p = [cur; 5];
            let mut n = 1;
            while cur != to {
                cur = next_state(cur, to).unwrap();
                p[n] = cur;
                n += 1;
            }
            p[..n].to_vec()
        };
        // The documented multi-arc paths of vfio_mig_get_next_state().
        assert_eq!(
            path(Running, StopCopy),
            [Running, RunningP2p, Stop, StopCopy]
        );
        assert_eq!(
            path(Running, Resuming),
            [Running, RunningP2p, Stop, Resuming]
        );
        assert_eq!(path(PreCopy, StopCopy), [PreCopy, PreCopyP2p, StopCopy]);
        assert_eq!(
            path(StopCopy, Running),
            [StopCopy, Stop, RunningP2p, Running]
        );
        assert_eq!(
            path(Resuming, Running),
            [Resuming, Stop, RunningP2p, Running]
        );
        assert_eq!(path(Stop, PreCopy), [Stop, RunningP2p, Running, PreCopy]);
        assert_eq!(path(PreCopyP2p, Running), [PreCopyP2p, RunningP2p, Running]);
    }

    #[test]
    fn error_and_unknown_states_are_refused() {
        assert_eq!(MigState::from_u32(8), None);
        assert_eq!(MigState::from_u32(u32::MAX), None);
        for &s in &MigState::ALL {
            assert_eq!(next_state(s, MigState::Error), Err(Errno::Inval));
            assert_eq!(next_state(MigState::Error, s), Err(Errno::Inval));
        }
    }

    #[test]
    fn a_written_stream_reads_back() {
        let mut buf = [0u8; 256];
        let n = stream(&mut buf, &ID);
        let mut c = Writer::counting();
        c.record(KIND_IDENTITY, &ID, |_| Ok(())).unwrap();
        c.record(KIND_STATE, &ID, |w| {
            w.section(TAG_CONFIG, |w| w.bytes(&[0xaa; 16]))?;
            w.section(TAG_DEVICE, |w| w.u32(0x1234_5678))
        })
        .unwrap();
        assert_eq!(c.len(), n, "counting agrees with writing");
        assert_eq!(&buf[..4], b"RMDV");
        let s = final_state(&buf[..n], &ID).unwrap();
        assert_eq!(s.get(TAG_CONFIG).unwrap(), &[0xaa; 16]);
        assert_eq!(s.get(TAG_DEVICE).unwrap(), &0x1234_5678u32.to_le_bytes());
        assert_eq!(s.get(TAG_IRQ), Err(Errno::Inval));
        assert_eq!(s.count(TAG_DEVICE..=u16::MAX), 1);
    }

    #[test]
    fn every_prefix_is_incomplete_but_not_wrong() {
        let mut buf = [0u8; 256];
        let n = stream(&mut buf, &ID);
        for cut in 0..n {
            let got = check_stream(&buf[..cut], &ID).unwrap();
            assert!(got.partial > 0 || got.state.is_none() || cut == n);
            assert!(final_state(&buf[..cut], &ID).is_err(), "cut at {cut}");
        }
        assert!(final_state(&buf[..n], &ID).is_ok());
    }

    #[test]
    fn every_corrupted_byte_is_caught() {
        let mut buf = [0u8; 256];
        let n = stream(&mut buf, &ID);
        let second = HEADER_SIZE + ID.size();
        for i in 0..n {
            // The minor version may be anything.
            if [6, 7, second + 6, second + 7].contains(&i) {
                continue;
            }
            for bit in [0x01u8, 0x80] {
                let mut b = buf;
                b[i] ^= bit;
                assert!(
                    final_state(&b[..n], &ID).is_err(),
                    "flipping bit {bit:#x} of byte {i} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn another_device_or_version_is_refused_early() {
        let mut buf = [0u8; 256];
        let one_port = Identity {
            name: ID.name,
            variant: 1,
        };
        let n = stream(&mut buf, &ID);
        // A two-port stream into a one-port device: refused as soon as the
        // first record is complete.
        let first = HEADER_SIZE + ID.size();
        assert!(check_stream(&buf[..first - 1], &one_port).is_ok());
        assert_eq!(check_stream(&buf[..first], &one_port), Err(Errno::Inval));
        let other = Identity {
            name: b"mtty",
            variant: 2,
        };
        assert_eq!(
            final_state(&buf[..n], &other).map(|_| ()),
            Err(Errno::Inval)
        );
        // Another major version is refused once its field is in.
        let mut b = buf;
        b[4] = 2;
        assert_eq!(check_stream(&b[..6], &ID), Err(Errno::Inval));
        // So is a bad magic, from its first byte.
        assert_eq!(check_stream(b"X", &ID), Err(Errno::Inval));
        // An oversized length is refused before the payload arrives.
        let mut b = buf;
        b[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(check_stream(&b[..16], &ID), Err(Errno::Inval));
    }

    #[test]
    fn unknown_sections_are_skipped_and_duplicates_refused() {
        let mut buf = [0u8; 128];
        let mut w = Writer::new(&mut buf);
        w.record(KIND_STATE, &ID, |w| {
            w.section(0x7f, |w| w.bytes(b"future"))?;
            w.section(TAG_IRQ, |w| w.u8(1))?;
            w.section(TAG_IRQ, |w| w.u8(0))
        })
        .unwrap();
        let n = w.len();
        let s = final_state(&buf[..n], &ID).unwrap();
        assert_eq!(s.iter().count(), 3);
        assert_eq!(s.get(TAG_IRQ), Err(Errno::Inval));
        assert_eq!(s.get(0x7f).unwrap(), b"future");
    }

    #[test]
    fn a_full_buffer_refuses_more() {
        let mut buf = [0u8; 8];
        let mut w = Writer::new(&mut buf);
        assert_eq!(w.u32(1), Ok(()));
        assert_eq!(w.bytes(&[0; 5]), Err(Errno::Inval));
        let mut r = Reader::new(&buf[..3]);
        assert_eq!(r.u32(), Err(Errno::Inval));
        assert_eq!(r.u16(), Ok(0x0001));
        assert_eq!(r.bool(), Ok(false));
        assert_eq!(Reader::new(&[2]).bool(), Err(Errno::Inval));
    }
}
