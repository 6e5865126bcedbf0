//! The journal's single writer: append, batched fsync, rotation, retention and the lock.
//!
//! Owns the active segment and the lock file. It never rewrites a byte once written (only
//! start-up recovery may cut a torn tail), never deletes the active segment, and never reports a
//! sequence number durable before the fsync covering it has returned.

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::error::{JournalError, io_err};
use super::format::{
    MAX_PAYLOAD_LEN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, TEMP_SUFFIX, encode_record_header,
    encode_segment_header, segment_file_name,
};
use super::reader::JournalReader;
use super::recovery::{self, Recovery, SegmentInfo, SeqGap, remove_file, sync_dir};

/// Name of the lock file inside the journal directory.
pub const LOCK_FILE_NAME: &str = "journal.lock";

/// How the journal batches fsyncs, rotates and retains segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// A new segment starts when the next record would take the active one past this size
    /// (a segment always takes at least one record, however large).
    pub segment_bytes: u64,
    /// fsync once this many records are waiting.
    pub sync_every_records: u32,
    /// fsync once the oldest waiting record has waited this long (checked on append and by
    /// [`Journal::sync_if_due`]).
    pub sync_interval: Duration,
    /// Waiting records are handed to the kernel (without fsync) once they fill this many bytes.
    pub write_buffer_bytes: usize,
    /// [`Journal::prune`] always keeps at least this many newest segments.
    pub keep_segments: usize,
    /// [`Journal::prune`] keeps segments last written less than this long ago.
    pub keep_age: Duration,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            segment_bytes: 16 * 1024 * 1024,
            sync_every_records: 1000,
            sync_interval: Duration::from_millis(5),
            write_buffer_bytes: 1024 * 1024,
            keep_segments: 0,
            keep_age: Duration::ZERO,
        }
    }
}

impl JournalConfig {
    fn validate(&self) -> Result<(), JournalError> {
        if self.sync_every_records == 0 {
            return Err(JournalError::InvalidConfig("sync_every_records must be at least 1"));
        }
        if self.segment_bytes <= SEGMENT_HEADER_LEN as u64 {
            return Err(JournalError::InvalidConfig(
                "segment_bytes must exceed the segment header",
            ));
        }
        Ok(())
    }
}

/// Counters for `/metrics` and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JournalStats {
    pub appended: u64,
    pub syncs: u64,
    pub bytes_written: u64,
    pub gaps: u64,
    pub last_gap: Option<SeqGap>,
    pub segments: usize,
    pub segments_created: u64,
    pub segments_removed: u64,
}

/// What [`Journal::prune`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    pub segments: usize,
    pub bytes: u64,
    /// Sequence number of the first record still in the journal, 0 when it is empty.
    pub first_seq: u64,
}

/// State the writer publishes to readers and other threads.
#[derive(Debug)]
pub(crate) struct Shared {
    pub durable_seq: AtomicU64,
    /// Base sequence number of the segment being written, 0 while there is none. It only grows:
    /// a reader seeing it above its own segment's knows that segment is complete.
    pub active_base: AtomicU64,
}

/// A cheap, cloneable view of the journal's durable sequence number for other threads.
#[derive(Debug, Clone)]
pub struct DurableSeq(Arc<Shared>);

impl DurableSeq {
    /// The highest sequence number known to be on disk (0: none).
    pub fn get(&self) -> u64 {
        self.0.durable_seq.load(Ordering::Acquire)
    }
}

/// An open, locked journal directory. One per directory across all processes.
pub struct Journal {
    dir: PathBuf,
    config: JournalConfig,
    /// Held, never read: the lock lives as long as this descriptor.
    _lock: File,
    /// Oldest first; the last one is the active segment.
    segments: Vec<SegmentInfo>,
    active: Option<File>,
    /// Bytes of the active segment already handed to the kernel.
    active_len: u64,
    /// Records appended but not yet handed to the kernel, framed.
    buffer: Vec<u8>,
    pending_records: u32,
    oldest_pending: Option<Instant>,
    last_seq: u64,
    written_seq: u64,
    durable_seq: u64,
    shared: Arc<Shared>,
    stats: JournalStats,
    failed: bool,
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir`, takes its lock, verifies every segment
    /// and cuts a torn tail. The returned [`Recovery`] says what was found and done.
    pub fn open(
        dir: impl AsRef<Path>,
        config: JournalConfig,
    ) -> Result<(Journal, Recovery), JournalError> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let lock = lock_dir(&dir)?;
        let (segments, recovery) = recovery::recover(&dir)?;

        let (active, active_len, active_base) = match segments.last() {
            Some(last) => {
                let file = OpenOptions::new()
                    .append(true)
                    .open(&last.path)
                    .map_err(io_err("open", &last.path))?;
                let len = file.metadata().map_err(io_err("stat", &last.path))?.len();
                // What a killed process left in the page cache is not yet on disk; make it so
                // before calling it durable.
                file.sync_data().map_err(io_err("fsync", &last.path))?;
                (Some(file), len, last.base_seq)
            }
            None => (None, 0, 0),
        };
        let last_seq = recovery.last_seq;
        let shared = Arc::new(Shared {
            durable_seq: AtomicU64::new(last_seq),
            active_base: AtomicU64::new(active_base),
        });
        let stats = JournalStats { segments: segments.len(), ..JournalStats::default() };
        let journal = Journal {
            dir,
            buffer: Vec::with_capacity(config.write_buffer_bytes.min(1 << 20)),
            config,
            _lock: lock,
            segments,
            active,
            active_len,
            pending_records: 0,
            oldest_pending: None,
            last_seq,
            written_seq: last_seq,
            durable_seq: last_seq,
            shared,
            stats,
            failed: false,
        };
        Ok((journal, recovery))
    }

    /// Appends one record. It is durable once [`Journal::durable_seq`] reaches `seq`, which
    /// happens by the configured batch size or interval, or on [`Journal::sync`].
    ///
    /// `seq` must be above every sequence number already in the journal; numbers may skip
    /// (counted in [`JournalStats::gaps`]).
    pub fn append(&mut self, seq: u64, payload: &[u8]) -> Result<(), JournalError> {
        self.ensure_usable()?;
        if seq == 0 {
            return Err(JournalError::ZeroSeq);
        }
        if seq <= self.last_seq {
            return Err(JournalError::SeqNotIncreasing { seq, last: self.last_seq });
        }
        if payload.len() > MAX_PAYLOAD_LEN as usize {
            return Err(JournalError::RecordTooLarge { len: payload.len() });
        }
        let record_len = (RECORD_HEADER_LEN + payload.len()) as u64;
        let starts_segment = match self.segments.last() {
            None => true,
            Some(active) => {
                active.last_seq != 0
                    && self.active_len + self.buffer.len() as u64 + record_len
                        > self.config.segment_bytes
            }
        };
        if starts_segment {
            self.start_segment(seq)?;
        }

        if self.last_seq != 0 && seq != self.last_seq + 1 {
            self.stats.gaps += 1;
            self.stats.last_gap = Some(SeqGap { after: self.last_seq, next: seq });
        }
        self.buffer.extend_from_slice(&encode_record_header(seq, payload));
        self.buffer.extend_from_slice(payload);
        self.last_seq = seq;
        if let Some(active) = self.segments.last_mut() {
            active.last_seq = seq;
        }
        self.stats.appended += 1;
        self.pending_records += 1;
        let oldest = *self.oldest_pending.get_or_insert_with(Instant::now);

        if self.pending_records >= self.config.sync_every_records
            || oldest.elapsed() >= self.config.sync_interval
        {
            self.sync()?;
        } else if self.buffer.len() >= self.config.write_buffer_bytes {
            self.write_buffer()?;
        }
        Ok(())
    }

    /// Writes and fsyncs everything appended so far; returns the durable sequence number.
    pub fn sync(&mut self) -> Result<u64, JournalError> {
        self.ensure_usable()?;
        self.write_buffer()?;
        if self.written_seq > self.durable_seq {
            let Some(active) = &self.active else {
                return Ok(self.durable_seq);
            };
            if let Err(source) = active.sync_data() {
                self.failed = true;
                return Err(io_err("fsync", self.active_path())(source));
            }
            self.durable_seq = self.written_seq;
            self.shared.durable_seq.store(self.durable_seq, Ordering::Release);
            self.stats.syncs += 1;
        }
        self.pending_records = 0;
        self.oldest_pending = None;
        Ok(self.durable_seq)
    }

    /// Syncs when the oldest waiting record has waited [`JournalConfig::sync_interval`] by
    /// `now`. The cold thread calls this when it has nothing to append, so a quiet period does
    /// not leave records waiting; [`Journal::sync_deadline`] tells it how long it may sleep.
    pub fn sync_if_due(&mut self, now: Instant) -> Result<bool, JournalError> {
        match self.sync_deadline() {
            Some(deadline) if now >= deadline => self.sync().map(|_| true),
            _ => Ok(false),
        }
    }

    /// When the records now waiting must be synced, `None` when nothing waits.
    pub fn sync_deadline(&self) -> Option<Instant> {
        self.oldest_pending.map(|oldest| oldest + self.config.sync_interval)
    }

    /// The highest sequence number known to be on disk (0: none). Nothing above it may be
    /// acknowledged.
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    /// A handle other threads can read the durable sequence number from.
    pub fn durable_watch(&self) -> DurableSeq {
        DurableSeq(Arc::clone(&self.shared))
    }

    /// The last sequence number appended, durable or not (0: none).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The first sequence number still in the journal (0: empty).
    pub fn first_seq(&self) -> u64 {
        self.segments.first().map_or(0, |s| s.base_seq)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stats(&self) -> JournalStats {
        JournalStats { segments: self.segments.len(), ..self.stats }
    }

    /// A reader from the first record with sequence number `from_seq` or above, that sees only
    /// durable records and keeps up as this journal appends, from any thread.
    pub fn reader_from(&self, from_seq: u64) -> JournalReader {
        JournalReader::following(self.dir.clone(), Arc::clone(&self.shared), from_seq)
    }

    /// Deletes the oldest segments whose every record is at or below `watermark` (e.g. what
    /// Postgres has confirmed), keeping the newest [`JournalConfig::keep_segments`] segments,
    /// those written within [`JournalConfig::keep_age`], and always the active segment.
    /// Deletion stops at the first segment that must stay, so the journal never has holes.
    pub fn prune(&mut self, watermark: u64) -> Result<Pruned, JournalError> {
        self.ensure_usable()?;
        let count = self.segments.len();
        let deletable = count.saturating_sub(self.config.keep_segments.max(1));
        let now = SystemTime::now();
        let mut pruned = Pruned::default();
        let mut outcome = Ok(());
        for segment in &self.segments[..deletable] {
            if segment.last_seq > watermark {
                break;
            }
            let metadata = match fs::metadata(&segment.path) {
                Ok(metadata) => metadata,
                Err(e) => {
                    outcome = Err(io_err("stat", &segment.path)(e));
                    break;
                }
            };
            if !self.config.keep_age.is_zero() {
                let written = metadata.modified().map_err(io_err("stat", &segment.path));
                let age = match written {
                    Ok(written) => now.duration_since(written).unwrap_or(Duration::ZERO),
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                };
                if age < self.config.keep_age {
                    break;
                }
            }
            if let Err(e) = remove_file(&segment.path) {
                outcome = Err(e);
                break;
            }
            pruned.segments += 1;
            pruned.bytes += metadata.len();
        }
        if pruned.segments > 0 {
            self.segments.drain(..pruned.segments);
            self.stats.segments_removed += pruned.segments as u64;
            sync_dir(&self.dir)?;
        }
        outcome?;
        pruned.first_seq = self.first_seq();
        Ok(pruned)
    }

    /// Syncs and releases the lock, reporting a failure that dropping would have to swallow.
    pub fn close(mut self) -> Result<(), JournalError> {
        self.sync().map(|_| ())
    }

    fn ensure_usable(&self) -> Result<(), JournalError> {
        if self.failed { Err(JournalError::Failed { dir: self.dir.clone() }) } else { Ok(()) }
    }

    fn active_path(&self) -> &Path {
        self.segments.last().map_or(self.dir.as_path(), |s| s.path.as_path())
    }

    /// Hands the waiting records to the kernel in one write.
    fn write_buffer(&mut self) -> Result<(), JournalError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let Some(active) = self.active.as_mut() else {
            return Ok(());
        };
        if let Err(source) = active.write_all(&self.buffer) {
            // Part of the batch may be in the file: only recovery can tell what.
            self.failed = true;
            return Err(io_err("write", self.active_path())(source));
        }
        self.active_len += self.buffer.len() as u64;
        self.stats.bytes_written += self.buffer.len() as u64;
        self.buffer.clear();
        self.written_seq = self.last_seq;
        Ok(())
    }

    /// Seals the active segment (all of it durable) and starts the next one, whose first record
    /// will be `first_seq`. The file appears under its final name only with a complete,
    /// durable header.
    fn start_segment(&mut self, first_seq: u64) -> Result<(), JournalError> {
        self.sync()?;
        let name = segment_file_name(first_seq);
        let path = self.dir.join(&name);
        let temporary = self.dir.join(format!("{}{TEMP_SUFFIX}", name.trim_end_matches(".seg")));
        let created = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&temporary)
                .map_err(io_err("create", &temporary))?;
            file.write_all(&encode_segment_header(first_seq))
                .map_err(io_err("write", &temporary))?;
            file.sync_all().map_err(io_err("fsync", &temporary))?;
            fs::rename(&temporary, &path).map_err(io_err("rename", &temporary))?;
            sync_dir(&self.dir)?;
            Ok(file)
        })();
        let file = match created {
            Ok(file) => file,
            Err(e) => {
                // The directory may or may not hold the new segment; recovery sorts it out.
                self.failed = true;
                return Err(e);
            }
        };
        self.active = Some(file);
        self.active_len = SEGMENT_HEADER_LEN as u64;
        self.segments.push(SegmentInfo { base_seq: first_seq, last_seq: 0, path });
        self.shared.active_base.store(first_seq, Ordering::Release);
        self.stats.segments_created += 1;
        Ok(())
    }
}

impl fmt::Debug for Journal {
    /// The state an operator needs, not the write buffer's bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("first_seq", &self.first_seq())
            .field("last_seq", &self.last_seq)
            .field("durable_seq", &self.durable_seq)
            .field("pending_records", &self.pending_records)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Best effort: a caller who needs to know uses close().
        if !self.failed {
            let _ = self.sync();
        }
    }
}

fn lock_dir(dir: &Path) -> Result<File, JournalError> {
    let path = dir.join(LOCK_FILE_NAME);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err("open lock file", &path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder_pid = fs::read_to_string(&path).ok().and_then(|s| s.trim().parse().ok());
            return Err(JournalError::Locked { dir: dir.to_path_buf(), holder_pid });
        }
        Err(TryLockError::Error(source)) => return Err(io_err("lock", &path)(source)),
    }
    // For the operator (and the Locked error of the next one): who holds it.
    file.set_len(0).map_err(io_err("write lock file", &path))?;
    writeln!(file, "{}", std::process::id()).map_err(io_err("write lock file", &path))?;
    Ok(file)
}
