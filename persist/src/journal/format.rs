//! The on-disk format: segment names, the segment header and the record frame.
//!
//! Pure byte layout and checksums; nothing here touches a file. The layout itself is documented
//! in the parent module, and any change to it must bump [`FORMAT_VERSION`].

use std::ffi::OsStr;

/// The first eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RBSNJRNL";

/// The version of the segment and record layout written by this code.
pub const FORMAT_VERSION: u32 = 1;

/// Length of the header at the start of every segment file.
pub const SEGMENT_HEADER_LEN: usize = 32;

/// Length of the frame header in front of every record's payload.
pub const RECORD_HEADER_LEN: usize = 16;

/// The largest payload a record may carry. Engine events are a few hundred bytes; the bound
/// exists so a corrupt length field is recognised as impossible instead of being trusted.
pub const MAX_PAYLOAD_LEN: u32 = 16 * 1024 * 1024;

const SEGMENT_SUFFIX: &str = ".seg";
const SEGMENT_DIGITS: usize = 20;
pub(crate) const TEMP_SUFFIX: &str = ".seg.tmp";

/// File name of the segment whose first record has sequence number `base_seq`: zero-padded so
/// that names sort like the numbers they hold.
pub fn segment_file_name(base_seq: u64) -> String {
    format!("{base_seq:0SEGMENT_DIGITS$}{SEGMENT_SUFFIX}")
}

/// The base sequence number of a segment file name, or `None` when the name is not one this
/// journal writes.
pub fn parse_segment_file_name(name: &OsStr) -> Option<u64> {
    let name = name.to_str()?;
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn is_temp_segment_name(name: &OsStr) -> bool {
    name.to_str().and_then(|n| n.strip_suffix(TEMP_SUFFIX)).is_some_and(|digits| {
        digits.len() == SEGMENT_DIGITS && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

pub(crate) fn encode_segment_header(base_seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    // 12..16: flags, none defined in version 1.
    header[16..24].copy_from_slice(&base_seq.to_le_bytes());
    let crc = crc32fast::hash(&header[0..24]);
    header[24..28].copy_from_slice(&crc.to_le_bytes());
    // 28..32: reserved, zero.
    header
}

/// What a segment header says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentHeader {
    Valid {
        base_seq: u64,
    },
    /// Magic and checksum are right, but the layout is one this code does not know.
    OtherVersion {
        version: u32,
    },
    Invalid,
}

pub(crate) fn decode_segment_header(header: &[u8; SEGMENT_HEADER_LEN]) -> SegmentHeader {
    if header[0..8] != SEGMENT_MAGIC {
        return SegmentHeader::Invalid;
    }
    let stored_crc = u32_at(header, 24);
    if crc32fast::hash(&header[0..24]) != stored_crc {
        return SegmentHeader::Invalid;
    }
    let version = u32_at(header, 8);
    if version != FORMAT_VERSION {
        return SegmentHeader::OtherVersion { version };
    }
    if u32_at(header, 12) != 0 || u32_at(header, 28) != 0 {
        return SegmentHeader::Invalid;
    }
    SegmentHeader::Valid { base_seq: u64_at(header, 16) }
}

/// The fixed part of a record: payload length, checksum and sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub len: u32,
    pub crc: u32,
    pub seq: u64,
}

pub(crate) fn encode_record_header(seq: u64, payload: &[u8]) -> [u8; RECORD_HEADER_LEN] {
    // Callers bound the payload by MAX_PAYLOAD_LEN first, so the length fits in a u32.
    let len = payload.len() as u32;
    let mut header = [0u8; RECORD_HEADER_LEN];
    header[0..4].copy_from_slice(&len.to_le_bytes());
    header[8..16].copy_from_slice(&seq.to_le_bytes());
    let crc = record_crc(len, seq, payload);
    header[4..8].copy_from_slice(&crc.to_le_bytes());
    header
}

pub(crate) fn decode_record_header(header: &[u8; RECORD_HEADER_LEN]) -> RecordHeader {
    RecordHeader { len: u32_at(header, 0), crc: u32_at(header, 4), seq: u64_at(header, 8) }
}

pub(crate) fn record_crc(len: u32, seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len.to_le_bytes());
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// How a byte run starting at a record boundary reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A whole record with a good checksum, `total` bytes long including its header.
    Record { seq: u64, total: usize },
    /// The bytes end before the record does; `needed` is the total length once known.
    Incomplete { needed: usize },
    /// The bytes cannot be a record: bad checksum or impossible length.
    Invalid(FrameDefect),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameDefect {
    ImpossibleLength(u32),
    BadChecksum,
}

pub(crate) fn parse_frame(bytes: &[u8]) -> Frame {
    let Some(header) = bytes.first_chunk::<RECORD_HEADER_LEN>() else {
        return Frame::Incomplete { needed: RECORD_HEADER_LEN };
    };
    let header = decode_record_header(header);
    if header.len > MAX_PAYLOAD_LEN {
        return Frame::Invalid(FrameDefect::ImpossibleLength(header.len));
    }
    let total = RECORD_HEADER_LEN + header.len as usize;
    let Some(payload) = bytes.get(RECORD_HEADER_LEN..total) else {
        return Frame::Incomplete { needed: total };
    };
    if record_crc(header.len, header.seq, payload) != header.crc {
        return Frame::Invalid(FrameDefect::BadChecksum);
    }
    Frame::Record { seq: header.seq, total }
}

/// The offset of the first whole, checksum-valid record in `bytes` with a sequence number above
/// `after_seq`, searching every byte offset. Used to tell a torn tail (nothing valid follows)
/// from corruption in the middle (something valid follows).
pub(crate) fn find_valid_record(bytes: &[u8], after_seq: u64) -> Option<usize> {
    (0..bytes.len().saturating_sub(RECORD_HEADER_LEN - 1)).find(
        |&at| matches!(parse_frame(&bytes[at..]), Frame::Record { seq, .. } if seq > after_seq),
    )
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_sort_like_their_numbers_and_parse_back() {
        let bases = [1u64, 9, 10, 99, 100, 12_345_678_901, u64::MAX];
        let names: Vec<String> = bases.iter().map(|&b| segment_file_name(b)).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        for (&base, name) in bases.iter().zip(&names) {
            assert_eq!(parse_segment_file_name(OsStr::new(name)), Some(base));
        }
        for foreign in
            ["1.seg", "journal.lock", "0000000000000000000a.seg", "00000000000000000001.seg.tmp"]
        {
            assert_eq!(parse_segment_file_name(OsStr::new(foreign)), None, "{foreign}");
        }
        assert!(is_temp_segment_name(OsStr::new("00000000000000000001.seg.tmp")));
        assert!(!is_temp_segment_name(OsStr::new("notes.seg.tmp")));
    }

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let header = encode_segment_header(42);
        assert_eq!(decode_segment_header(&header), SegmentHeader::Valid { base_seq: 42 });
        for at in 0..SEGMENT_HEADER_LEN {
            let mut damaged = header;
            damaged[at] ^= 0x01;
            assert_ne!(decode_segment_header(&damaged), SegmentHeader::Valid { base_seq: 42 });
        }
        let mut future = header;
        future[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32fast::hash(&future[0..24]);
        future[24..28].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_segment_header(&future), SegmentHeader::OtherVersion { version: 2 });
    }

    #[test]
    fn record_frames_parse_and_every_single_bit_flip_is_caught() {
        let payload = b"an encoded engine event";
        let mut bytes = encode_record_header(7, payload).to_vec();
        bytes.extend_from_slice(payload);
        assert_eq!(parse_frame(&bytes), Frame::Record { seq: 7, total: bytes.len() });
        for cut in 0..bytes.len() {
            assert!(matches!(parse_frame(&bytes[..cut]), Frame::Incomplete { .. }), "cut {cut}");
        }
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(parse_frame(&damaged), Frame::Record { .. }),
                "bit {bit} flipped yet the record still reads as valid"
            );
        }
        assert!(matches!(
            parse_frame(&[0xff; RECORD_HEADER_LEN]),
            Frame::Invalid(FrameDefect::ImpossibleLength(u32::MAX))
        ));
        assert_eq!(parse_frame(&[0u8; 64]), Frame::Invalid(FrameDefect::BadChecksum));
    }

    #[test]
    fn resync_finds_the_next_valid_record_above_a_sequence_number() {
        let mut bytes = vec![0xAB; 13];
        let at = bytes.len();
        bytes.extend_from_slice(&encode_record_header(9, b"x"));
        bytes.push(b'x');
        assert_eq!(find_valid_record(&bytes, 8), Some(at));
        assert_eq!(find_valid_record(&bytes, 9), None);
        assert_eq!(find_valid_record(&bytes[..bytes.len() - 1], 0), None);
        assert_eq!(find_valid_record(&[], 0), None);
    }
}
