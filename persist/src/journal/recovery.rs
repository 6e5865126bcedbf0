//! Start-up recovery: verify every segment, cut a torn tail off the last one, refuse anything
//! else that is wrong.
//!
//! Runs under the journal's lock, before any append. It may only ever shorten the last segment
//! (back to its last whole record), delete a last segment that holds no record, and delete
//! leftover temporary files of an unfinished rotation; every other defect is an error and the
//! files are left exactly as found.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::error::{Corruption, JournalError, io_err};
use super::format::{
    self, MAX_PAYLOAD_LEN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SegmentHeader,
    decode_record_header, decode_segment_header, encode_segment_header, find_valid_record,
    record_crc,
};

const SCAN_BUFFER: usize = 256 * 1024;

/// A jump in sequence numbers: `next` follows `after` with numbers missing in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqGap {
    pub after: u64,
    pub next: u64,
}

/// Bytes cut off the end of the last segment at start-up: a record a crash left unfinished, or
/// zeroes or garbage after the last whole record, with no valid record after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub file: PathBuf,
    /// Where the last whole record ended and the file now ends.
    pub offset: u64,
    pub bytes: u64,
    /// What the first bad bytes looked like.
    pub cause: Corruption,
}

/// What start-up found and did, for the daemon to log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovery {
    pub dir: PathBuf,
    /// Segments in the journal once recovery is done.
    pub segments: usize,
    pub records: u64,
    /// Sequence number of the first record, 0 when the journal is empty.
    pub first_seq: u64,
    /// Sequence number of the last record, 0 when the journal is empty.
    pub last_seq: u64,
    /// Jumps in the sequence numbers (allowed, but worth an operator's look).
    pub gaps: u64,
    pub first_gap: Option<SeqGap>,
    pub torn_tail: Option<TornTail>,
    /// Files deleted: a last segment left without records, leftovers of an unfinished rotation.
    pub removed: Vec<PathBuf>,
}

impl Recovery {
    /// True when recovery changed nothing on disk.
    pub fn was_clean(&self) -> bool {
        self.torn_tail.is_none() && self.removed.is_empty()
    }
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "journal {}: {} segment(s), {} record(s)",
            self.dir.display(),
            self.segments,
            self.records
        )?;
        if self.records > 0 {
            write!(f, ", seq {}..={}", self.first_seq, self.last_seq)?;
        }
        if let Some(gap) = self.first_gap {
            write!(f, ", {} seq gap(s), first after {} (next {})", self.gaps, gap.after, gap.next)?;
        }
        if let Some(tail) = &self.torn_tail {
            write!(
                f,
                "; truncated a torn tail of {} byte(s) at {} offset {} ({})",
                tail.bytes,
                tail.file.display(),
                tail.offset,
                tail.cause
            )?;
        }
        for removed in &self.removed {
            write!(f, "; removed {}", removed.display())?;
        }
        Ok(())
    }
}

/// A segment as the writer tracks it.
#[derive(Debug, Clone)]
pub(crate) struct SegmentInfo {
    pub base_seq: u64,
    /// 0 while the segment holds no record yet.
    pub last_seq: u64,
    pub path: PathBuf,
}

/// A segment file's base sequence number and path.
pub(crate) type NamedSegment = (u64, PathBuf);

/// What a journal directory holds, by name.
pub(crate) struct Listing {
    /// Sorted by base sequence number.
    pub segments: Vec<NamedSegment>,
    /// Leftovers of a rotation that never completed.
    pub temporaries: Vec<PathBuf>,
}

pub(crate) fn list_segments(dir: &Path) -> Result<Listing, JournalError> {
    let mut listing = Listing { segments: Vec::new(), temporaries: Vec::new() };
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let name = entry.file_name();
        if let Some(base) = format::parse_segment_file_name(&name) {
            listing.segments.push((base, entry.path()));
        } else if format::is_temp_segment_name(&name) {
            listing.temporaries.push(entry.path());
        }
    }
    listing.segments.sort_unstable_by_key(|&(base, _)| base);
    Ok(listing)
}

/// Verifies the journal in `dir` and repairs a torn tail. The caller holds the lock.
pub(crate) fn recover(dir: &Path) -> Result<(Vec<SegmentInfo>, Recovery), JournalError> {
    let Listing { segments: listed, temporaries } = list_segments(dir)?;
    let mut report = Recovery { dir: dir.to_path_buf(), ..Recovery::default() };
    let mut segments = Vec::with_capacity(listed.len());
    let mut payload = Vec::new();
    let mut last_action = None;
    for (index, (base_seq, path)) in listed.iter().enumerate() {
        let is_last = index + 1 == listed.len();
        let scan = scan_segment(path, *base_seq, report.last_seq, is_last, &mut payload)?;
        match scan {
            Scan::Unfinished => last_action = Some(LastAction::Remove(path.clone())),
            Scan::Records(found) => {
                if report.first_seq == 0 {
                    report.first_seq = found.first_seq;
                }
                if let Some(gap) = found.first_gap.filter(|_| report.first_gap.is_none()) {
                    report.first_gap = Some(gap);
                }
                report.gaps += found.gaps;
                report.records += found.records;
                report.last_seq = found.last_seq;
                if let Some(tail) = found.torn_tail {
                    let empty = found.records == 0;
                    last_action = Some(LastAction::Truncate { tail, remove_after: empty });
                }
                if found.records > 0 {
                    segments.push(SegmentInfo {
                        base_seq: *base_seq,
                        last_seq: found.last_seq,
                        path: path.clone(),
                    });
                }
                // A last segment with a valid header and no record is left by a crash between
                // rotation and the first write; it goes, or its name would promise a seq that
                // the next append may not use.
                if found.records == 0 && last_action.is_none() {
                    last_action = Some(LastAction::Remove(path.clone()));
                }
            }
        }
    }

    // Everything verified; only now touch the disk.
    let mut directory_changed = false;
    for temporary in temporaries {
        remove_file(&temporary)?;
        report.removed.push(temporary);
        directory_changed = true;
    }
    match last_action {
        None => {}
        Some(LastAction::Remove(path)) => {
            remove_file(&path)?;
            report.removed.push(path);
            directory_changed = true;
        }
        Some(LastAction::Truncate { tail, remove_after }) => {
            if remove_after {
                remove_file(&tail.file)?;
                report.removed.push(tail.file.clone());
                directory_changed = true;
            } else {
                truncate(&tail.file, tail.offset)?;
            }
            report.torn_tail = Some(tail);
        }
    }
    if directory_changed {
        sync_dir(dir)?;
    }
    report.segments = segments.len();
    Ok((segments, report))
}

enum LastAction {
    Remove(PathBuf),
    Truncate { tail: TornTail, remove_after: bool },
}

enum Scan {
    /// The last segment's header itself was never completely written: the file holds nothing.
    Unfinished,
    Records(Found),
}

struct Found {
    records: u64,
    first_seq: u64,
    last_seq: u64,
    gaps: u64,
    first_gap: Option<SeqGap>,
    torn_tail: Option<TornTail>,
}

fn corrupt(path: &Path, offset: u64, reason: Corruption) -> JournalError {
    JournalError::Corrupt { file: path.to_path_buf(), offset, reason }
}

fn scan_segment(
    path: &Path,
    base_seq: u64,
    previous_seq: u64,
    is_last: bool,
    payload: &mut Vec<u8>,
) -> Result<Scan, JournalError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    let file_len = file.metadata().map_err(io_err("stat", path))?.len();
    let mut reader = BufReader::with_capacity(SCAN_BUFFER, file);

    if file_len < SEGMENT_HEADER_LEN as u64 {
        let mut partial = vec![0u8; file_len as usize];
        reader.read_exact(&mut partial).map_err(io_err("read", path))?;
        let expected = encode_segment_header(base_seq);
        let torn_creation = partial.iter().all(|&b| b == 0) || expected.starts_with(&partial);
        return if is_last && torn_creation {
            Ok(Scan::Unfinished)
        } else {
            Err(corrupt(path, 0, Corruption::BadSegmentHeader))
        };
    }
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    reader.read_exact(&mut header).map_err(io_err("read", path))?;
    match decode_segment_header(&header) {
        SegmentHeader::Valid { base_seq: header_seq } if header_seq == base_seq => {}
        SegmentHeader::Valid { base_seq: header_seq } => {
            return Err(corrupt(path, 0, Corruption::SegmentNameMismatch { header_seq }));
        }
        SegmentHeader::OtherVersion { version } => {
            return Err(JournalError::UnsupportedVersion { file: path.to_path_buf(), version });
        }
        SegmentHeader::Invalid => {
            // Size extended but the header never reached the disk: zeroes, and no record after.
            if is_last && header.iter().all(|&b| b == 0) {
                let rest = read_from(path, SEGMENT_HEADER_LEN as u64)?;
                if find_valid_record(&rest, previous_seq).is_none() {
                    return Ok(Scan::Unfinished);
                }
            }
            return Err(corrupt(path, 0, Corruption::BadSegmentHeader));
        }
    }

    let mut found = Found {
        records: 0,
        first_seq: 0,
        last_seq: previous_seq,
        gaps: 0,
        first_gap: None,
        torn_tail: None,
    };
    let mut offset = SEGMENT_HEADER_LEN as u64;
    let defect = loop {
        let remaining = file_len - offset;
        if remaining == 0 {
            break None;
        }
        if remaining < RECORD_HEADER_LEN as u64 {
            break Some(Corruption::RecordCutShort);
        }
        let mut record_header = [0u8; RECORD_HEADER_LEN];
        reader.read_exact(&mut record_header).map_err(io_err("read", path))?;
        let record = decode_record_header(&record_header);
        if record.len > MAX_PAYLOAD_LEN {
            break Some(Corruption::ImpossibleLength { len: record.len });
        }
        let total = RECORD_HEADER_LEN as u64 + u64::from(record.len);
        if total > remaining {
            break Some(Corruption::RecordCutShort);
        }
        payload.resize(record.len as usize, 0);
        reader.read_exact(payload).map_err(io_err("read", path))?;
        if record_crc(record.len, record.seq, payload) != record.crc {
            break Some(Corruption::BadChecksum);
        }
        // A whole record with a good checksum cannot be a torn write: a wrong seq is corruption
        // wherever it sits.
        if found.records == 0 && record.seq != base_seq {
            return Err(corrupt(
                path,
                offset,
                Corruption::FirstSeqMismatch { seq: record.seq, base_seq },
            ));
        }
        if record.seq <= found.last_seq {
            return Err(corrupt(
                path,
                offset,
                Corruption::SeqNotIncreasing { seq: record.seq, previous: found.last_seq },
            ));
        }
        if found.last_seq != 0 && record.seq != found.last_seq + 1 {
            found.gaps += 1;
            found.first_gap.get_or_insert(SeqGap { after: found.last_seq, next: record.seq });
        }
        if found.records == 0 {
            found.first_seq = record.seq;
        }
        found.records += 1;
        found.last_seq = record.seq;
        offset += total;
    };

    if let Some(reason) = defect {
        if !is_last {
            return Err(corrupt(path, offset, reason));
        }
        // In the last segment, bad bytes with nothing valid after them are what a crash leaves;
        // a valid record after them means damage in the middle.
        let rest = read_from(path, offset + 1)?;
        if find_valid_record(&rest, found.last_seq).is_some() {
            return Err(corrupt(path, offset, reason));
        }
        found.torn_tail = Some(TornTail {
            file: path.to_path_buf(),
            offset,
            bytes: file_len - offset,
            cause: reason,
        });
    } else if found.records == 0 && !is_last {
        return Err(corrupt(path, SEGMENT_HEADER_LEN as u64, Corruption::EmptySegment));
    }
    Ok(Scan::Records(found))
}

fn read_from(path: &Path, offset: u64) -> Result<Vec<u8>, JournalError> {
    let mut file = File::open(path).map_err(io_err("open", path))?;
    file.seek(SeekFrom::Start(offset)).map_err(io_err("seek", path))?;
    let mut rest = Vec::new();
    file.read_to_end(&mut rest).map_err(io_err("read", path))?;
    Ok(rest)
}

fn truncate(path: &Path, len: u64) -> Result<(), JournalError> {
    let file = OpenOptions::new().write(true).open(path).map_err(io_err("open", path))?;
    file.set_len(len).map_err(io_err("truncate", path))?;
    file.sync_all().map_err(io_err("fsync", path))
}

pub(crate) fn remove_file(path: &Path) -> Result<(), JournalError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

/// Makes creations, renames and removals of entries in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("fsync directory", dir))
}
