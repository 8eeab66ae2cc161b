//! The fixed 64-byte header at the start of every mlxfn file.
//!
//! ```text
//! 0  magic            [u8; 8]  b"\x89MLXFN\r\n"
//! 8  format_version   u32      FORMAT_VERSION
//! 12 header_size      u32      64
//! 16 flatbuffer_off   u64      64
//! 24 flatbuffer_size  u64
//! 32 segments_off     u64      a multiple of 64 (of 16384 in version 1)
//! 40 segments_size    u64
//! 48 file_size        u64
//! 56 flatbuffer_crc32 u32      crc32 of the flatbuffer bytes
//! 60 header_crc32     u32      crc32 of bytes 0..60
//! ```
//! All integers little-endian.

use crate::layout::{SEGMENT_ALIGNMENT, SMALL_CONSTANT_ALIGNMENT};

/// The first eight bytes of every mlxfn file. The high first byte keeps it
/// from being text; `\r\n` catches line-ending conversion.
pub const MAGIC: [u8; 8] = *b"\x89MLXFN\r\n";
/// The newest format version this build reads and writes (a graph with no
/// expression program is written as version 2: `Graph::format_version`).
pub const FORMAT_VERSION: u32 = 3;
/// The oldest format version this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// Size of the header in bytes.
pub const HEADER_SIZE: usize = 64;

/// The alignment of the segment area: version 1 put it on a page boundary,
/// version 2 packs small constants right after the graph (`layout`).
pub fn segments_alignment(format_version: u32) -> u64 {
    if format_version == 1 {
        SEGMENT_ALIGNMENT
    } else {
        SMALL_CONSTANT_ALIGNMENT
    }
}

/// The decoded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The file's format version.
    pub format_version: u32,
    /// Offset of the flatbuffer (64 in version 1).
    pub flatbuffer_offset: u64,
    /// Length of the flatbuffer.
    pub flatbuffer_size: u64,
    /// Offset of the segment area.
    pub segments_offset: u64,
    /// Length of the segment area.
    pub segments_size: u64,
    /// Total file length.
    pub file_size: u64,
    /// crc32 of the flatbuffer bytes.
    pub flatbuffer_crc32: u32,
}

/// What is wrong with a header, before the path is known.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderProblem {
    /// Fewer than 64 bytes.
    Short,
    /// The magic does not match.
    Magic,
    /// The header's own checksum does not match.
    Checksum,
    /// A newer format version.
    Newer(u32),
    /// A field is out of range.
    Field(&'static str, String),
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

impl Header {
    /// Encode into the 64 header bytes, checksum included.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&self.format_version.to_le_bytes());
        out[12..16].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        out[16..24].copy_from_slice(&self.flatbuffer_offset.to_le_bytes());
        out[24..32].copy_from_slice(&self.flatbuffer_size.to_le_bytes());
        out[32..40].copy_from_slice(&self.segments_offset.to_le_bytes());
        out[40..48].copy_from_slice(&self.segments_size.to_le_bytes());
        out[48..56].copy_from_slice(&self.file_size.to_le_bytes());
        out[56..60].copy_from_slice(&self.flatbuffer_crc32.to_le_bytes());
        let crc = crc32fast::hash(&out[..60]);
        out[60..64].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decode and check the header: magic, checksum, version, and that the
    /// flatbuffer and segment area lie inside `file_size` without overlap.
    /// The caller compares `file_size` with the real length.
    pub fn decode(bytes: &[u8]) -> Result<Header, HeaderProblem> {
        if bytes.len() < HEADER_SIZE {
            return Err(if bytes.len() >= MAGIC.len() && bytes[..8] != MAGIC {
                HeaderProblem::Magic
            } else {
                HeaderProblem::Short
            });
        }
        if bytes[..8] != MAGIC {
            return Err(HeaderProblem::Magic);
        }
        if crc32fast::hash(&bytes[..60]) != u32_at(bytes, 60) {
            return Err(HeaderProblem::Checksum);
        }
        let header = Header {
            format_version: u32_at(bytes, 8),
            flatbuffer_offset: u64_at(bytes, 16),
            flatbuffer_size: u64_at(bytes, 24),
            segments_offset: u64_at(bytes, 32),
            segments_size: u64_at(bytes, 40),
            file_size: u64_at(bytes, 48),
            flatbuffer_crc32: u32_at(bytes, 56),
        };
        if header.format_version > FORMAT_VERSION {
            return Err(HeaderProblem::Newer(header.format_version));
        }
        if header.format_version < OLDEST_FORMAT_VERSION {
            return Err(HeaderProblem::Field("format_version", format!("{} is not a version", header.format_version)));
        }
        let header_size = u32_at(bytes, 12);
        if header_size as usize != HEADER_SIZE {
            return Err(HeaderProblem::Field("header_size", format!("{header_size}, expected 64")));
        }
        header.check_ranges()?;
        Ok(header)
    }

    fn check_ranges(&self) -> Result<(), HeaderProblem> {
        let field = |name, detail: String| Err(HeaderProblem::Field(name, detail));
        if self.flatbuffer_offset != HEADER_SIZE as u64 {
            return field("flatbuffer_offset", format!("{}, expected 64", self.flatbuffer_offset));
        }
        let Some(fb_end) = self.flatbuffer_offset.checked_add(self.flatbuffer_size) else {
            return field("flatbuffer_size", format!("{} overflows", self.flatbuffer_size));
        };
        if fb_end > self.file_size {
            return field(
                "flatbuffer_size",
                format!("the flatbuffer ends at {fb_end}, past the file size {}", self.file_size),
            );
        }
        if self.segments_offset < fb_end {
            return field(
                "segments_offset",
                format!("{} overlaps the flatbuffer ending at {fb_end}", self.segments_offset),
            );
        }
        let alignment = segments_alignment(self.format_version);
        if self.segments_size > 0 && !self.segments_offset.is_multiple_of(alignment) {
            return field("segments_offset", format!("{} is not a multiple of {alignment}", self.segments_offset));
        }
        match self.segments_offset.checked_add(self.segments_size) {
            Some(end) if end == self.file_size => Ok(()),
            Some(end) => {
                field("segments_size", format!("the segments end at {end} but the file size is {}", self.file_size))
            }
            None => field("segments_size", format!("{} overflows", self.segments_size)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            format_version: FORMAT_VERSION,
            flatbuffer_offset: 64,
            flatbuffer_size: 100,
            segments_offset: SEGMENT_ALIGNMENT,
            segments_size: 2 * SEGMENT_ALIGNMENT,
            file_size: 3 * SEGMENT_ALIGNMENT,
            flatbuffer_crc32: 7,
        }
    }

    #[test]
    fn round_trip() {
        let h = sample();
        assert_eq!(Header::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let bytes = sample().encode();
        for bit in 0..HEADER_SIZE * 8 {
            let mut b = bytes;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(Header::decode(&b).is_err(), "flip of bit {bit} went unnoticed");
        }
    }

    #[test]
    fn problems_are_named() {
        assert_eq!(Header::decode(&[]), Err(HeaderProblem::Short));
        assert_eq!(Header::decode(b"not an mlxfn file"), Err(HeaderProblem::Magic));
        let newer = Header { format_version: 9, ..sample() }.encode();
        assert_eq!(Header::decode(&newer), Err(HeaderProblem::Newer(9)));
        let past_end = Header { flatbuffer_size: 1 << 40, ..sample() }.encode();
        assert!(matches!(Header::decode(&past_end), Err(HeaderProblem::Field("flatbuffer_size", _))));
        let unaligned = Header { segments_offset: 100 + 64 + 8, ..sample() }.encode();
        assert!(matches!(Header::decode(&unaligned), Err(HeaderProblem::Field("segments_offset", _))));
        let page = Header { format_version: 1, segments_offset: 200 * 64, ..sample() }.encode();
        assert!(
            matches!(Header::decode(&page), Err(HeaderProblem::Field("segments_offset", _))),
            "version 1 needs pages"
        );
        let overflow = Header { segments_size: u64::MAX, ..sample() }.encode();
        assert!(matches!(Header::decode(&overflow), Err(HeaderProblem::Field("segments_size", _))));
    }
}
