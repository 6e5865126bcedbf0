//! Reading records in order from a sequence number, while the writer may still be appending.
//!
//! A reader opens segment files read-only with its own descriptors and never writes, deletes
//! or locks anything. One made by [`super::Journal::reader_from`] returns only durable records
//! and follows the writer through rotations; one made by [`JournalReader::open_read_only`]
//! (an operator's tool, another process) returns whole records with a good checksum and stops
//! at the first bytes in the last segment that are not one yet.

use std::fmt;
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::error::{Corruption, JournalError, io_err};
use super::format::{
    Frame, FrameDefect, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SegmentHeader,
    decode_segment_header, parse_frame,
};
use super::recovery::{NamedSegment, list_segments};
use super::writer::Shared;

const READ_CHUNK: usize = 64 * 1024;

/// A record borrowed from the reader's buffer until the next read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub seq: u64,
    pub payload: &'a [u8],
}

/// A record with its own copy of the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// Reads records in sequence order starting at a given sequence number. Reaching the end is not
/// final: once more records are durable, [`JournalReader::read_next`] returns them.
///
/// A segment pruned before the reader gets to it is skipped, so a reader must stay above the
/// watermark given to [`super::Journal::prune`] (the Postgres writer, whose confirmations set
/// it, always is); a segment it already has open stays readable.
pub struct JournalReader {
    dir: PathBuf,
    writer: Option<Arc<Shared>>,
    from_seq: u64,
    /// The last sequence number read, including records skipped below `from_seq`.
    last_seen: u64,
    segment: Option<OpenSegment>,
    /// The directory's segments as last listed; listed again only when it has nothing newer.
    listing: Vec<NamedSegment>,
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    iteration_failed: bool,
}

struct OpenSegment {
    base_seq: u64,
    path: PathBuf,
    file: File,
    /// File offset of `buffer[start]`.
    offset: u64,
    header_read: bool,
    records: u64,
    /// Known complete: a later segment exists, so the writer has finished with this one.
    sealed: bool,
}

enum Step {
    Yield { seq: u64, at: usize, len: usize },
    Again,
    End,
}

impl JournalReader {
    pub(crate) fn following(dir: PathBuf, writer: Arc<Shared>, from_seq: u64) -> JournalReader {
        JournalReader::new(dir, Some(writer), from_seq)
    }

    /// A reader of the journal in `dir` without its writer: it takes no lock and may run while
    /// another process appends, returning whole, checksum-valid records only.
    pub fn open_read_only(dir: impl AsRef<Path>, from_seq: u64) -> JournalReader {
        JournalReader::new(dir.as_ref().to_path_buf(), None, from_seq)
    }

    fn new(dir: PathBuf, writer: Option<Arc<Shared>>, from_seq: u64) -> JournalReader {
        JournalReader {
            dir,
            writer,
            from_seq,
            last_seen: 0,
            segment: None,
            listing: Vec::new(),
            buffer: Vec::new(),
            start: 0,
            end: 0,
            iteration_failed: false,
        }
    }

    /// The next record at or above the starting sequence number, or `None` when there is none
    /// yet. A record that must be valid but is not is an error naming its file and offset.
    pub fn read_next(&mut self) -> Result<Option<Record<'_>>, JournalError> {
        loop {
            match self.step()? {
                Step::Again => {}
                Step::End => return Ok(None),
                Step::Yield { seq, at, len } => {
                    return Ok(Some(Record { seq, payload: &self.buffer[at..at + len] }));
                }
            }
        }
    }

    /// The highest sequence number this reader may return.
    fn bound(&self) -> u64 {
        self.writer.as_ref().map_or(u64::MAX, |w| w.durable_seq.load(Ordering::Acquire))
    }

    fn step(&mut self) -> Result<Step, JournalError> {
        // Loaded before reading: every record at or below it is whole in the files by now.
        let bound = self.bound();
        let Some(segment) = self.segment.as_mut() else {
            return self.open_first_segment();
        };
        let available = &self.buffer[self.start..self.end];
        if !segment.header_read {
            let Some(header) = available.first_chunk::<SEGMENT_HEADER_LEN>() else {
                let partial = !available.is_empty();
                if self.fill(SEGMENT_HEADER_LEN)? > 0 {
                    return Ok(Step::Again);
                }
                let defect = partial.then_some(Corruption::BadSegmentHeader);
                return self.at_end(bound, defect);
            };
            match decode_segment_header(header) {
                SegmentHeader::Valid { base_seq } if base_seq == segment.base_seq => {}
                SegmentHeader::Valid { base_seq } => {
                    let reason = Corruption::SegmentNameMismatch { header_seq: base_seq };
                    return Err(corrupt(&segment.path, 0, reason));
                }
                SegmentHeader::OtherVersion { version } => {
                    let file = segment.path.clone();
                    return Err(JournalError::UnsupportedVersion { file, version });
                }
                SegmentHeader::Invalid => {
                    return Err(corrupt(&segment.path, 0, Corruption::BadSegmentHeader));
                }
            }
            segment.header_read = true;
            self.consume(SEGMENT_HEADER_LEN);
            return Ok(Step::Again);
        }
        match parse_frame(available) {
            Frame::Record { seq, total } => {
                if seq > bound {
                    return self.rewind_and_end();
                }
                if segment.records == 0 && seq != segment.base_seq {
                    let reason = Corruption::FirstSeqMismatch { seq, base_seq: segment.base_seq };
                    return Err(corrupt(&segment.path, segment.offset, reason));
                }
                if seq <= self.last_seen {
                    let reason = Corruption::SeqNotIncreasing { seq, previous: self.last_seen };
                    return Err(corrupt(&segment.path, segment.offset, reason));
                }
                segment.records += 1;
                self.last_seen = seq;
                let at = self.start + RECORD_HEADER_LEN;
                self.consume(total);
                if seq < self.from_seq {
                    return Ok(Step::Again);
                }
                Ok(Step::Yield { seq, at, len: total - RECORD_HEADER_LEN })
            }
            Frame::Incomplete { needed } => {
                let cut_short = !available.is_empty();
                if self.fill(needed)? > 0 {
                    return Ok(Step::Again);
                }
                self.at_end(bound, cut_short.then_some(Corruption::RecordCutShort))
            }
            Frame::Invalid(defect) => {
                let reason = match defect {
                    FrameDefect::ImpossibleLength(len) => Corruption::ImpossibleLength { len },
                    FrameDefect::BadChecksum => Corruption::BadChecksum,
                };
                self.at_end(bound, Some(reason))
            }
        }
    }

    /// No whole record at the current position: either the writer has not got there yet, the
    /// segment is finished, or the bytes are damaged.
    fn at_end(&mut self, bound: u64, defect: Option<Corruption>) -> Result<Step, JournalError> {
        let Some((base_seq, sealed)) = self.segment.as_ref().map(|s| (s.base_seq, s.sealed)) else {
            return Ok(Step::End);
        };
        if !sealed && self.later_segment_exists(base_seq)? {
            // The writer finished this segment before starting the next: read it again to its
            // real end before judging it.
            if let Some(segment) = self.segment.as_mut() {
                segment.sealed = true;
            }
            return Ok(Step::Again);
        }
        let Some(segment) = self.segment.as_ref() else {
            return Ok(Step::End);
        };
        if !sealed {
            // The segment being written. Every durable record in it is whole on disk, so if one
            // is still ahead of us, these bytes should have been it.
            if bound != u64::MAX && bound >= segment.base_seq && self.last_seen < bound {
                let reason =
                    defect.unwrap_or(Corruption::MissingDurableRecord { durable_seq: bound });
                return Err(corrupt(&segment.path, segment.offset, reason));
            }
            return self.rewind_and_end();
        }
        if let Some(reason) = defect {
            return Err(corrupt(&segment.path, segment.offset, reason));
        }
        if segment.records == 0 {
            return Err(corrupt(&segment.path, segment.offset, Corruption::EmptySegment));
        }
        let current = segment.base_seq;
        self.open_segment_after(current)
    }

    fn later_segment_exists(&mut self, base_seq: u64) -> Result<bool, JournalError> {
        match &self.writer {
            // Greater, not different: a segment renamed into place is visible in the directory
            // a moment before the writer publishes it as active.
            Some(writer) => Ok(writer.active_base.load(Ordering::Acquire) > base_seq),
            None => Ok(self.segment_after(base_seq, false)?.is_some()),
        }
    }

    /// The first segment named above `base_seq`, from the cached listing when it has one
    /// (unless `fresh`), else from a new listing.
    fn segment_after(
        &mut self,
        base_seq: u64,
        fresh: bool,
    ) -> Result<Option<NamedSegment>, JournalError> {
        let cached =
            |listing: &[NamedSegment]| listing.iter().find(|&&(base, _)| base > base_seq).cloned();
        if !fresh && let Some(found) = cached(&self.listing) {
            return Ok(Some(found));
        }
        self.listing = list_segments(&self.dir)?.segments;
        Ok(cached(&self.listing))
    }

    /// Drops buffered bytes past the current position, which may show a write in progress,
    /// so the next call reads them afresh.
    fn rewind_and_end(&mut self) -> Result<Step, JournalError> {
        if let Some(segment) = self.segment.as_mut()
            && self.end > self.start
        {
            segment
                .file
                .seek(SeekFrom::Start(segment.offset))
                .map_err(io_err("seek", &segment.path))?;
            self.end = self.start;
        }
        Ok(Step::End)
    }

    fn open_first_segment(&mut self) -> Result<Step, JournalError> {
        loop {
            self.listing = list_segments(&self.dir)?.segments;
            // The segment holding `from_seq` is the last one named at or below it.
            let holding = self.listing.partition_point(|&(base, _)| base <= self.from_seq);
            let Some((base_seq, path)) = self.listing.get(holding.saturating_sub(1)).cloned()
            else {
                return Ok(Step::End);
            };
            if self.open_segment(base_seq, path)? {
                return Ok(Step::Again);
            }
        }
    }

    fn open_segment_after(&mut self, current: u64) -> Result<Step, JournalError> {
        let mut fresh = false;
        loop {
            let Some((base_seq, path)) = self.segment_after(current, fresh)? else {
                return Ok(Step::End);
            };
            if self.open_segment(base_seq, path)? {
                return Ok(Step::Again);
            }
            // Pruned since the listing: list again.
            fresh = true;
        }
    }

    /// False when the segment vanished (pruned) between listing and opening.
    fn open_segment(&mut self, base_seq: u64, path: PathBuf) -> Result<bool, JournalError> {
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        self.segment = Some(OpenSegment {
            base_seq,
            path,
            file,
            offset: 0,
            header_read: false,
            records: 0,
            sealed: false,
        });
        self.start = 0;
        self.end = 0;
        Ok(true)
    }

    fn consume(&mut self, len: usize) {
        self.start += len;
        if let Some(segment) = self.segment.as_mut() {
            segment.offset += len as u64;
        }
    }

    /// Reads more of the current segment so that at least `needed` bytes past the current
    /// position fit; returns how many bytes arrived (0 at the end of the file).
    fn fill(&mut self, needed: usize) -> Result<usize, JournalError> {
        let Some(segment) = self.segment.as_mut() else {
            return Ok(0);
        };
        let wanted = needed.max(READ_CHUNK);
        if self.buffer.len() - self.start < wanted {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.buffer.len() < wanted {
                self.buffer.resize(wanted, 0);
            }
        }
        loop {
            match segment.file.read(&mut self.buffer[self.end..]) {
                Ok(read) => {
                    self.end += read;
                    return Ok(read);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err("read", &segment.path)(e)),
            }
        }
    }
}

impl fmt::Debug for JournalReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalReader")
            .field("dir", &self.dir)
            .field("follows_writer", &self.writer.is_some())
            .field("from_seq", &self.from_seq)
            .field("last_seen", &self.last_seen)
            .field("segment", &self.segment.as_ref().map(|s| (&s.path, s.offset)))
            .finish_non_exhaustive()
    }
}

impl Iterator for JournalReader {
    type Item = Result<OwnedRecord, JournalError>;

    /// Owned records until the reader is caught up; stops for good after an error.
    fn next(&mut self) -> Option<Self::Item> {
        if self.iteration_failed {
            return None;
        }
        match self.read_next() {
            Ok(Some(record)) => {
                Some(Ok(OwnedRecord { seq: record.seq, payload: record.payload.to_vec() }))
            }
            Ok(None) => None,
            Err(e) => {
                self.iteration_failed = true;
                Some(Err(e))
            }
        }
    }
}

fn corrupt(path: &Path, offset: u64, reason: Corruption) -> JournalError {
    JournalError::Corrupt { file: path.to_path_buf(), offset, reason }
}
