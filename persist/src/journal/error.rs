//! Typed errors of the journal, each naming the file or directory an operator must look at.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::format::MAX_PAYLOAD_LEN;

/// Everything that can go wrong opening, appending to, reading or pruning a journal.
#[derive(Debug)]
#[non_exhaustive]
pub enum JournalError {
    /// A system call failed; `op` says which, `path` on what.
    Io { op: &'static str, path: PathBuf, source: io::Error },
    /// Bytes that must hold a valid record do not. The files are left as found.
    Corrupt { file: PathBuf, offset: u64, reason: Corruption },
    /// A segment written in a format version this code does not read.
    UnsupportedVersion { file: PathBuf, version: u32 },
    /// Another journal handle (in this process or another) holds the directory's lock.
    Locked { dir: PathBuf, holder_pid: Option<u32> },
    /// Sequence numbers start at 1; 0 means "nothing" in [`super::Journal::durable_seq`].
    ZeroSeq,
    /// An append whose sequence number is not above the last one appended.
    SeqNotIncreasing { seq: u64, last: u64 },
    /// A payload above [`MAX_PAYLOAD_LEN`].
    RecordTooLarge { len: usize },
    /// A configuration value that cannot work.
    InvalidConfig(&'static str),
    /// An earlier write or fsync failed, so what reached the disk is unknown; the handle refuses
    /// further work. Reopening the journal recovers from what is on disk.
    Failed { dir: PathBuf },
}

/// Why bytes were judged corrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// Wrong magic, checksum or reserved bytes in the segment header.
    BadSegmentHeader,
    /// The header's base sequence number differs from the one in the file name.
    SegmentNameMismatch { header_seq: u64 },
    /// A length field larger than any record may be.
    ImpossibleLength { len: u32 },
    /// The record's checksum does not match its bytes.
    BadChecksum,
    /// The file ends inside a record, in a segment that was complete when it was closed.
    RecordCutShort,
    /// A valid record whose sequence number is not above the one before it.
    SeqNotIncreasing { seq: u64, previous: u64 },
    /// A segment whose first record's sequence number is not the one its name promises.
    FirstSeqMismatch { seq: u64, base_seq: u64 },
    /// A segment that is not the last one yet holds no record.
    EmptySegment,
    /// A record known to be durable is not where it must be.
    MissingDurableRecord { durable_seq: u64 },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Corruption::BadSegmentHeader => f.write_str("bad segment header"),
            Corruption::SegmentNameMismatch { header_seq } => {
                write!(f, "segment header says its first seq is {header_seq}, unlike its name")
            }
            Corruption::ImpossibleLength { len } => {
                write!(f, "record length {len} exceeds the maximum {MAX_PAYLOAD_LEN}")
            }
            Corruption::BadChecksum => f.write_str("record checksum mismatch"),
            Corruption::RecordCutShort => f.write_str("record cut short in a closed segment"),
            Corruption::SeqNotIncreasing { seq, previous } => {
                write!(f, "record seq {seq} is not above the previous seq {previous}")
            }
            Corruption::FirstSeqMismatch { seq, base_seq } => {
                write!(f, "first record has seq {seq} but the segment is named for {base_seq}")
            }
            Corruption::EmptySegment => f.write_str("closed segment holds no record"),
            Corruption::MissingDurableRecord { durable_seq } => {
                write!(f, "records up to durable seq {durable_seq} should be here but are not")
            }
        }
    }
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Io { op, path, source } => {
                write!(f, "journal: cannot {op} {}: {source}", path.display())
            }
            JournalError::Corrupt { file, offset, reason } => write!(
                f,
                "journal corrupt: {} at byte offset {offset}: {reason}; the files are left \
                 untouched for inspection",
                file.display()
            ),
            JournalError::UnsupportedVersion { file, version } => write!(
                f,
                "journal segment {} has format version {version}, this build reads version {}",
                file.display(),
                super::format::FORMAT_VERSION
            ),
            JournalError::Locked { dir, holder_pid } => {
                write!(f, "journal {} is locked by another writer", dir.display())?;
                if let Some(pid) = holder_pid {
                    write!(f, " (process {pid})")?;
                }
                Ok(())
            }
            JournalError::ZeroSeq => f.write_str("journal: sequence numbers start at 1, got 0"),
            JournalError::SeqNotIncreasing { seq, last } => {
                write!(f, "journal: seq {seq} is not above the last appended seq {last}")
            }
            JournalError::RecordTooLarge { len } => {
                write!(f, "journal: record of {len} bytes exceeds the maximum {MAX_PAYLOAD_LEN}")
            }
            JournalError::InvalidConfig(what) => {
                write!(f, "journal: invalid configuration: {what}")
            }
            JournalError::Failed { dir } => write!(
                f,
                "journal {} stopped after an earlier write or fsync failure; reopen it to recover",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JournalError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Wraps an `io::Error` with what was being done and to which path; the path is copied only
/// when there is an error.
pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> JournalError + 'a {
    move |source| JournalError::Io { op, path: path.to_path_buf(), source }
}
