//! The crash-safe local journal: every engine record, durable on local disk before anything
//! else hears of it.
//!
//! It is the embedded store of `robsond demo` and the write-ahead log in production: start-up
//! replays it to rebuild the engine, and the Postgres writer catches up from it after an outage.
//! It owns the files of one directory (segments and a lock file) and nothing else; it never
//! interprets payloads (the codec's job) and never runs on the hot thread.
//!
//! # Files
//!
//! One directory holds `journal.lock` and the segments, named by the sequence number of their
//! first record, zero-padded to 20 digits so that names sort like numbers:
//! `00000000000000000001.seg`, `00000000000000052311.seg`, … A segment is created as
//! `<name>.seg.tmp` and renamed once its header is durable; a leftover `.tmp` is deleted at
//! start-up. Other files in the directory are ignored.
//!
//! # Segment layout (format version 1, all integers little-endian)
//!
//! ```text
//! segment header, 32 bytes
//!   0   8  magic "RBSNJRNL"
//!   8   4  format version (1); a reader refuses any other
//!  12   4  flags, 0 (none defined in version 1)
//!  16   8  base seq: the first record's seq, equal to the file name
//!  24   4  CRC-32 of bytes 0..24
//!  28   4  reserved, 0
//! then records, back to back, each a 16-byte frame header and the payload
//!   0   4  payload length n (at most MAX_PAYLOAD_LEN)
//!   4   4  CRC-32 over bytes 0..4, bytes 8..16 and the payload
//!   8   8  seq
//!  16   n  payload (opaque here)
//! ```
//!
//! # Sequence numbers
//!
//! Start at 1 (0 means "none" in [`Journal::durable_seq`] and friends) and strictly increase
//! across the whole journal; an append that does not increase is refused. A jump is allowed —
//! the journal does not own numbering — but it is counted in [`JournalStats::gaps`] and in
//! [`Recovery::gaps`] so the daemon can flag it.
//!
//! # Durability
//!
//! Appends collect in memory and go to the kernel in one `write` per batch; the batch is
//! fsynced after [`JournalConfig::sync_every_records`] records or once its oldest record has
//! waited [`JournalConfig::sync_interval`] (checked on append, and by [`Journal::sync_if_due`],
//! which the cold thread calls when idle), or on [`Journal::sync`]. [`Journal::durable_seq`]
//! only moves after that fsync returns; nothing above it may be acknowledged. Rotation seals
//! the old segment with an fsync first, and every creation, rename and deletion of a segment is
//! followed by an fsync of the directory. A failed write or fsync stops the handle for good
//! ([`JournalError::Failed`]): after an fsync error the kernel may have dropped the pages, so
//! only a reopen, which re-reads the disk, can say what is there.
//!
//! # Recovery
//!
//! [`Journal::open`] checks every record of every segment. In the last segment, bytes that are
//! not a whole valid record, with no valid record anywhere after them, are what a crash leaves:
//! they are cut off (reported in [`Recovery::torn_tail`]), and a last segment left without
//! records is deleted. Anything else — a bad checksum or impossible length with a valid record
//! after it, any defect in an earlier segment, a sequence number going backwards — stops
//! start-up with [`JournalError::Corrupt`] naming the file and byte offset, and nothing is
//! changed on disk. (After a power loss, a filesystem may persist a later page of an unsynced
//! batch but not an earlier one; that shows as corruption and needs an operator, which is the
//! safe side to err on.)
//!
//! # Reading
//!
//! [`Journal::reader_from`] gives a [`JournalReader`] that finds the segment holding a
//! sequence number from the file names, scans to it, and then follows the writer, returning
//! only durable records; it can live on another thread. [`JournalReader::open_read_only`]
//! reads a journal without its writer.
//!
//! # Retention
//!
//! [`Journal::prune`] deletes the oldest whole segments at or below a caller's watermark, minus
//! the newest [`JournalConfig::keep_segments`] and those younger than
//! [`JournalConfig::keep_age`]; never the active segment.
//!
//! # Locking
//!
//! `journal.lock` is locked exclusively (`flock`) for the journal's lifetime, and holds the
//! owner's process id; a second [`Journal::open`] of the directory, from this process or
//! another, fails with [`JournalError::Locked`].

mod error;
mod format;
mod reader;
mod recovery;
mod writer;

pub use error::{Corruption, JournalError};
pub use format::{
    FORMAT_VERSION, MAX_PAYLOAD_LEN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
    parse_segment_file_name, segment_file_name,
};
pub use reader::{JournalReader, OwnedRecord, Record};
pub use recovery::{Recovery, SeqGap, TornTail};
pub use writer::{DurableSeq, Journal, JournalConfig, JournalStats, LOCK_FILE_NAME, Pruned};
