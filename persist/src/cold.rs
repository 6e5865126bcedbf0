//! The cold thread: engine records from the hot thread's ring into the journal, and, on a thread
//! of its own, from the journal into Postgres.
//!
//! [`ColdWriter`] owns the `Journal` and the ring's consumer. It appends every record in ring
//! order (a record is encoded once, into a reused buffer), lets the journal batch its fsyncs,
//! publishes what is durable in [`ColdStatus`] (read by `/readyz` and `/metrics` without a
//! lock), and prunes: below the newest restart cut ([`RestartFold`], written to `restart.cut`
//! first) and, with Postgres configured, never above what Postgres confirmed. A failed append
//! or fsync ends it for good: [`ColdStatus::is_dead`] turns true and the daemon must stop
//! sending orders, since their records could no longer be made durable.
//!
//! [`PgFollower`] reads durable records from the journal's files (its own descriptors; the
//! `Journal` stays on the cold thread) from the seq after the one Postgres holds, batches them
//! and writes them with `PgWriter::write_blocking`, which retries until committed. So an
//! outage, a killed session or a restarted follower catches up from the journal, and nothing is
//! written twice (the writer is idempotent by seq).
//!
//! Neither ever blocks the hot thread: it only pushes into the ring, and may unpark the cold
//! thread ([`ColdThread::waker`]); the cold thread otherwise polls with a short park.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use engine::Record;
use rtrb::Consumer;

use crate::codec::{self, DecodeError};
use crate::journal::{DurableSeq, Journal, JournalError, JournalReader};
use crate::pg::{PgConfig, PgWriter, WriteError, WriterProgress};
use crate::recover::{RestartFold, write_cut};

/// How the cold thread paces itself.
#[derive(Clone, Debug)]
pub struct ColdConfig {
    /// Longest park when the ring is empty and no fsync is due; the hot thread may cut it short
    /// with [`ColdThread::waker`].
    pub idle_wait: Duration,
    /// Records taken from the ring at a time, between checks of the fsync deadline.
    pub drain_max: usize,
    /// How often pruning is considered (when idle, and at least this often when busy).
    pub prune_interval: Duration,
    /// Postgres is configured: prune only what it confirmed ([`ColdStatus::pg_confirmed`]).
    pub postgres: bool,
}

impl Default for ColdConfig {
    fn default() -> ColdConfig {
        ColdConfig {
            idle_wait: Duration::from_millis(1),
            drain_max: 4096,
            prune_interval: Duration::from_secs(1),
            postgres: false,
        }
    }
}

/// What the cold thread and the Postgres follower publish, for `/readyz` and `/metrics`.
#[derive(Debug, Default)]
pub struct ColdStatus {
    appended: AtomicU64,
    durable: AtomicU64,
    journal_first: AtomicU64,
    restart_cut: AtomicU64,
    segments_pruned: AtomicU64,
    prune_failures: AtomicU64,
    dead: AtomicBool,
    finished: AtomicBool,
    postgres: AtomicBool,
    pg_confirmed: AtomicU64,
    pg_connected: AtomicBool,
    pg_retries: AtomicU64,
    follower_dead: AtomicBool,
    errors: Mutex<Errors>,
}

#[derive(Debug, Default, Clone)]
struct Errors {
    journal: Option<String>,
    prune: Option<String>,
    restart: Option<String>,
    follower: Option<String>,
    follower_retry: Option<String>,
}

impl ColdStatus {
    /// The last seq appended to the journal, durable or not (0: none).
    pub fn appended_seq(&self) -> u64 {
        self.appended.load(Ordering::Acquire)
    }

    /// The highest seq on disk; nothing above it may be acknowledged.
    pub fn durable_seq(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// The first seq the journal still holds (0: empty).
    pub fn journal_first_seq(&self) -> u64 {
        self.journal_first.load(Ordering::Acquire)
    }

    /// Where a restart folds from (see `recover`); segments below it may be pruned.
    pub fn restart_cut(&self) -> u64 {
        self.restart_cut.load(Ordering::Acquire)
    }

    pub fn segments_pruned(&self) -> u64 {
        self.segments_pruned.load(Ordering::Acquire)
    }

    pub fn prune_failures(&self) -> u64 {
        self.prune_failures.load(Ordering::Acquire)
    }

    /// The journal failed: records can no longer be made durable. Readiness must fail and no
    /// order may be sent.
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// The cold thread ended (cleanly or not).
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// What killed the journal thread.
    pub fn journal_error(&self) -> Option<String> {
        self.errors().journal
    }

    /// The last pruning failure (pruning is retried; appends go on).
    pub fn prune_error(&self) -> Option<String> {
        self.errors().prune
    }

    /// Why pruning stopped for good: the records stopped folding (an engine bug to report).
    pub fn restart_error(&self) -> Option<String> {
        self.errors().restart
    }

    pub fn postgres_configured(&self) -> bool {
        self.postgres.load(Ordering::Acquire)
    }

    /// The highest seq Postgres is known to hold.
    pub fn pg_confirmed(&self) -> u64 {
        self.pg_confirmed.load(Ordering::Acquire)
    }

    /// Durable records Postgres does not have yet (0 without Postgres).
    pub fn pg_lag(&self) -> u64 {
        if self.postgres_configured() {
            self.durable_seq().saturating_sub(self.pg_confirmed())
        } else {
            0
        }
    }

    pub fn pg_connected(&self) -> bool {
        self.pg_connected.load(Ordering::Acquire)
    }

    /// Failed Postgres attempts so far (each retried after a backoff).
    pub fn pg_retries(&self) -> u64 {
        self.pg_retries.load(Ordering::Acquire)
    }

    /// The follower met an error retrying cannot fix (see [`FollowerError`]).
    pub fn follower_dead(&self) -> bool {
        self.follower_dead.load(Ordering::Acquire)
    }

    pub fn follower_error(&self) -> Option<String> {
        self.errors().follower
    }

    /// The last retryable Postgres failure, for the log and `/readyz`.
    pub fn pg_last_retry_error(&self) -> Option<String> {
        self.errors().follower_retry
    }

    fn errors(&self) -> Errors {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }

    fn note(&self, set: impl FnOnce(&mut Errors)) {
        if let Ok(mut errors) = self.errors.lock() {
            set(&mut errors);
        }
    }
}

/// Why the cold thread stopped.
#[derive(Debug)]
pub enum ColdError {
    /// Appending `seq` (or syncing, when `seq` is 0) failed; the journal refuses further work.
    Journal { seq: u64, error: JournalError },
    /// The `RestartFold` handed over was not the journal's: its last seq differs.
    NotLoaded { fold_last: u64, journal_last: u64 },
}

impl fmt::Display for ColdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColdError::Journal { seq: 0, error } => write!(f, "cold thread: {error}"),
            ColdError::Journal { seq, error } => {
                write!(f, "cold thread: journaling record {seq}: {error}")
            }
            ColdError::NotLoaded { fold_last, journal_last } => write!(
                f,
                "cold thread: the restart fold ends at seq {fold_last} but the journal at \
                 {journal_last}: load_state must fold this journal first"
            ),
        }
    }
}

impl std::error::Error for ColdError {}

/// What a clean stop leaves behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColdSummary {
    pub appended: u64,
    pub durable_seq: u64,
    pub segments_pruned: u64,
}

/// The journal side of the cold thread; see the module doc.
pub struct ColdWriter {
    journal: Journal,
    ring: Consumer<Record>,
    restart: RestartFold,
    config: ColdConfig,
    status: Arc<ColdStatus>,
    cut: u64,
    encoded: Vec<u8>,
    appended: u64,
}

impl ColdWriter {
    /// `restart` is `Loaded::restart` from `load_state` on this journal (an empty fold for an
    /// empty journal): pruning is only as safe as it is faithful.
    pub fn new(
        journal: Journal,
        ring: Consumer<Record>,
        restart: RestartFold,
        config: ColdConfig,
    ) -> Result<ColdWriter, ColdError> {
        if restart.last_seq() != journal.last_seq() {
            let (fold_last, journal_last) = (restart.last_seq(), journal.last_seq());
            return Err(ColdError::NotLoaded { fold_last, journal_last });
        }
        let cut = restart.start().max(journal.first_seq()).max(1);
        let status = Arc::new(ColdStatus::default());
        status.appended.store(journal.last_seq(), Ordering::Release);
        status.durable.store(journal.durable_seq(), Ordering::Release);
        status.journal_first.store(journal.first_seq(), Ordering::Release);
        status.restart_cut.store(cut, Ordering::Release);
        status.postgres.store(config.postgres, Ordering::Release);
        Ok(ColdWriter {
            journal,
            ring,
            restart,
            config,
            status,
            cut,
            encoded: Vec::with_capacity(512),
            appended: 0,
        })
    }

    pub fn status(&self) -> Arc<ColdStatus> {
        Arc::clone(&self.status)
    }

    /// What a [`PgFollower`] reads: the journal's directory, its durable seq and the status.
    pub fn feed(&self) -> JournalFeed {
        JournalFeed {
            dir: self.journal.dir().to_path_buf(),
            durable: self.journal.durable_watch(),
            status: Arc::clone(&self.status),
        }
    }

    /// Runs on the calling thread until the producer is dropped or `stop` is set, and the ring
    /// is empty; then syncs and closes the journal.
    pub fn run(mut self, stop: &AtomicBool) -> Result<ColdSummary, ColdError> {
        let outcome = self.run_loop(stop);
        let outcome = outcome.and_then(|()| self.finish());
        if let Err(error) = &outcome {
            let message = error.to_string();
            self.status.note(|e| e.journal = Some(message));
            self.status.dead.store(true, Ordering::Release);
        }
        self.status.finished.store(true, Ordering::Release);
        let summary = ColdSummary {
            appended: self.appended,
            durable_seq: self.status.durable_seq(),
            segments_pruned: self.status.segments_pruned(),
        };
        outcome?;
        // The lock goes with the handle; close() syncs once more, a no-op by now.
        self.journal.close().map_err(|error| ColdError::Journal { seq: 0, error })?;
        Ok(summary)
    }

    /// Runs on a thread of its own, named `robsond-cold`.
    pub fn spawn(self) -> io::Result<ColdThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let status = self.status();
        let thread_stop = Arc::clone(&stop);
        let handle = thread::Builder::new()
            .name("robsond-cold".to_owned())
            .spawn(move || self.run(&thread_stop))?;
        Ok(ColdThread { handle, stop, status })
    }

    fn run_loop(&mut self, stop: &AtomicBool) -> Result<(), ColdError> {
        let mut prune_due = Instant::now();
        loop {
            let ready = self.ring.slots().min(self.config.drain_max.max(1));
            if ready > 0 {
                self.drain(ready)?;
                if Instant::now() >= prune_due {
                    self.prune();
                    prune_due = Instant::now() + self.config.prune_interval;
                }
                continue;
            }
            if stop.load(Ordering::Acquire) || self.ring.is_abandoned() {
                // Anything pushed before the producer went is visible now.
                if self.ring.is_empty() {
                    return Ok(());
                }
                continue;
            }
            let now = Instant::now();
            if self
                .journal
                .sync_if_due(now)
                .map_err(|error| ColdError::Journal { seq: 0, error })?
            {
                self.publish();
            }
            if now >= prune_due {
                self.prune();
                prune_due = Instant::now() + self.config.prune_interval;
            }
            let wake = match self.journal.sync_deadline() {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => self.config.idle_wait,
            };
            if !wake.is_zero() {
                thread::park_timeout(wake.min(self.config.idle_wait));
            }
        }
    }

    fn drain(&mut self, ready: usize) -> Result<(), ColdError> {
        let chunk = self.ring.read_chunk(ready).expect("no more than the slots available");
        let (first, second) = chunk.as_slices();
        for record in first.iter().chain(second) {
            self.encoded.clear();
            codec::encode(record, &mut self.encoded);
            self.journal
                .append(record.seq, &self.encoded)
                .map_err(|error| ColdError::Journal { seq: record.seq, error })?;
            self.appended += 1;
            if self.restart.broken().is_none()
                && let Err(error) = self.restart.observe(record)
            {
                let message = format!("pruning stopped: {error}");
                self.status.note(|e| e.restart = Some(message));
            }
        }
        chunk.commit_all();
        self.publish();
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ColdError> {
        self.journal.sync().map_err(|error| ColdError::Journal { seq: 0, error })?;
        self.publish();
        Ok(())
    }

    fn publish(&self) {
        self.status.journal_first.store(self.journal.first_seq(), Ordering::Release);
        self.status.appended.store(self.journal.last_seq(), Ordering::Release);
        self.status.durable.store(self.journal.durable_seq(), Ordering::Release);
    }

    /// Moves the cut as far as the records allow and deletes the segments below it. A failure
    /// is noted and retried next time: it costs disk space, never a record.
    fn prune(&mut self) {
        let mut limit = self.journal.durable_seq();
        if self.status.postgres_configured() {
            // Everything below the cut must be in Postgres.
            limit = limit.min(self.status.pg_confirmed().saturating_add(1));
        }
        if let Some(cut) = self.restart.cut_within(limit).filter(|&cut| cut > self.cut) {
            if let Err(error) = write_cut(self.journal.dir(), cut) {
                self.prune_failed(error);
                return;
            }
            self.cut = cut;
            self.restart.forget_before(cut);
            self.status.restart_cut.store(cut, Ordering::Release);
        }
        if self.cut > self.journal.first_seq() {
            match self.journal.prune(self.cut - 1) {
                Ok(pruned) => {
                    self.status.segments_pruned.fetch_add(pruned.segments as u64, Ordering::AcqRel);
                    self.status.journal_first.store(pruned.first_seq, Ordering::Release);
                }
                Err(error) => self.prune_failed(error),
            }
        }
    }

    fn prune_failed(&self, error: JournalError) {
        self.status.prune_failures.fetch_add(1, Ordering::AcqRel);
        let message = error.to_string();
        self.status.note(|e| e.prune = Some(message));
    }
}

impl fmt::Debug for ColdWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ColdWriter")
            .field("journal", &self.journal)
            .field("cut", &self.cut)
            .field("appended", &self.appended)
            .finish_non_exhaustive()
    }
}

/// The running cold thread.
#[derive(Debug)]
pub struct ColdThread {
    handle: JoinHandle<Result<ColdSummary, ColdError>>,
    stop: Arc<AtomicBool>,
    status: Arc<ColdStatus>,
}

impl ColdThread {
    /// Unparks the cold thread (the hot thread may call `unpark` on it after a push to cut the
    /// idle wait short; it costs a syscall, so at most once per batch).
    pub fn waker(&self) -> Thread {
        self.handle.thread().clone()
    }

    pub fn status(&self) -> Arc<ColdStatus> {
        Arc::clone(&self.status)
    }

    /// Asks it to drain the ring and stop, and waits. Stop the producer first: records pushed
    /// after the ring was seen empty are not journaled.
    pub fn stop_and_join(self) -> Result<ColdSummary, ColdError> {
        self.stop.store(true, Ordering::Release);
        self.handle.thread().unpark();
        self.join()
    }

    /// Waits for it to end (it ends by itself once the producer is dropped and the ring empty).
    pub fn join(self) -> Result<ColdSummary, ColdError> {
        self.handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

// ---- Postgres follower ----

/// The journal as a follower sees it; cheap to clone, one per follower.
#[derive(Clone, Debug)]
pub struct JournalFeed {
    dir: PathBuf,
    durable: DurableSeq,
    status: Arc<ColdStatus>,
}

impl JournalFeed {
    pub fn status(&self) -> &Arc<ColdStatus> {
        &self.status
    }
}

#[derive(Clone, Debug)]
pub struct FollowerConfig {
    /// Records per Postgres transaction at most (fewer when fewer are durable).
    pub batch_max: usize,
    /// Wait before looking for new durable records when there were none.
    pub idle_wait: Duration,
}

impl Default for FollowerConfig {
    fn default() -> FollowerConfig {
        FollowerConfig { batch_max: 2_000, idle_wait: Duration::from_millis(5) }
    }
}

/// Why the follower stopped: each needs an operator, since retrying cannot help.
#[derive(Debug)]
pub enum FollowerError {
    /// Postgres refused a batch for a reason that retrying cannot fix (`Diverged`, ...).
    Write(WriteError),
    /// The journal could not be read.
    Journal(JournalError),
    Decode {
        seq: u64,
        error: DecodeError,
    },
    /// Postgres ends at `confirmed` but the journal no longer holds the next records: the
    /// journal was pruned without Postgres (or the database lost rows).
    JournalAhead {
        confirmed: u64,
        next_in_journal: u64,
    },
}

impl fmt::Display for FollowerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FollowerError::Write(e) => write!(f, "postgres follower: {e}"),
            FollowerError::Journal(e) => write!(f, "postgres follower: {e}"),
            FollowerError::Decode { seq, error } => {
                write!(f, "postgres follower: journal record {seq} does not decode: {error}")
            }
            FollowerError::JournalAhead { confirmed, next_in_journal } => write!(
                f,
                "postgres follower: postgres ends at seq {confirmed} but the journal continues \
                 only from seq {next_in_journal}: the records between are gone from the journal"
            ),
        }
    }
}

impl std::error::Error for FollowerError {}

/// Copies the journal's durable records into Postgres; see the module doc.
pub struct PgFollower {
    writer: PgWriter,
    feed: JournalFeed,
    config: FollowerConfig,
}

impl PgFollower {
    /// No I/O here: the first connection is made by `run`.
    pub fn new(pg: PgConfig, feed: JournalFeed, config: FollowerConfig) -> PgFollower {
        feed.status.postgres.store(true, Ordering::Release);
        PgFollower { writer: PgWriter::new(pg), feed, config }
    }

    /// The writer's own counters (sessions, failures, rows written).
    pub fn progress(&self) -> Arc<WriterProgress> {
        self.writer.progress()
    }

    /// Runs on the calling thread until `stop` is set (`Ok`) or an error retrying cannot fix.
    pub fn run(mut self, stop: &AtomicBool) -> Result<(), FollowerError> {
        let outcome = self.follow(stop);
        let status = &self.feed.status;
        status.pg_connected.store(false, Ordering::Release);
        if let Err(error) = &outcome {
            let message = error.to_string();
            status.note(|e| e.follower = Some(message));
            status.follower_dead.store(true, Ordering::Release);
        }
        outcome
    }

    /// Runs on a thread of its own, named `robsond-pg`.
    pub fn spawn(self) -> io::Result<FollowerThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let progress = self.progress();
        let handle = thread::Builder::new()
            .name("robsond-pg".to_owned())
            .spawn(move || self.run(&thread_stop))?;
        Ok(FollowerThread { handle, stop, progress })
    }

    fn follow(&mut self, stop: &AtomicBool) -> Result<(), FollowerError> {
        let Some(resume) = self.connect(stop)? else { return Ok(()) };
        let status = Arc::clone(&self.feed.status);
        let mut next = resume + 1;
        if resume == 0 {
            // An empty database starts where a restart would: at the journal's cut, so that
            // Postgres alone can restore the state too.
            next = next.max(status.restart_cut());
        }
        let mut reader = JournalReader::open_read_only(&self.feed.dir, next);
        let mut batch: Vec<Record> = Vec::with_capacity(self.config.batch_max);
        let mut waiting: Option<Record> = None;
        let mut first = true;
        while !stop.load(Ordering::Acquire) {
            let durable = self.feed.durable.get();
            self.writer.progress().note_journaled(durable);
            batch.clear();
            while batch.len() < self.config.batch_max {
                let record = match waiting.take() {
                    Some(record) => record,
                    None => match reader.read_next().map_err(FollowerError::Journal)? {
                        Some(r) => codec::decode(r.payload)
                            .map_err(|error| FollowerError::Decode { seq: r.seq, error })?,
                        None => break,
                    },
                };
                if record.seq > durable {
                    // Whole in the file but not yet fsynced: Postgres must not get ahead.
                    waiting = Some(record);
                    break;
                }
                if first && record.seq != next {
                    return Err(FollowerError::JournalAhead {
                        confirmed: resume,
                        next_in_journal: record.seq,
                    });
                }
                first = false;
                batch.push(record);
            }
            if batch.is_empty() {
                thread::park_timeout(self.config.idle_wait);
                continue;
            }
            let outcome = self.writer.write_blocking(&batch, stop, |error| {
                status.pg_retries.fetch_add(1, Ordering::AcqRel);
                status.pg_connected.store(false, Ordering::Release);
                let message = error.to_string();
                status.note(|e| e.follower_retry = Some(message));
            });
            match outcome {
                Ok(_) => {
                    let progress = self.writer.progress();
                    status.pg_confirmed.store(progress.confirmed(), Ordering::Release);
                    status.pg_connected.store(true, Ordering::Release);
                }
                Err(WriteError::Stopped) => return Ok(()),
                Err(error) => return Err(FollowerError::Write(error)),
            }
        }
        Ok(())
    }

    /// Connects (retrying with the writer's backoff) and returns the seq Postgres holds up to;
    /// `None` when stopped first.
    fn connect(&mut self, stop: &AtomicBool) -> Result<Option<u64>, FollowerError> {
        let status = Arc::clone(&self.feed.status);
        loop {
            if stop.load(Ordering::Acquire) {
                return Ok(None);
            }
            match self.writer.connect() {
                Ok(confirmed) => {
                    status.pg_confirmed.store(confirmed, Ordering::Release);
                    status.pg_connected.store(true, Ordering::Release);
                    return Ok(Some(confirmed));
                }
                Err(WriteError::Backoff { retry_in }) => {
                    thread::park_timeout(retry_in.min(Duration::from_millis(20)));
                }
                Err(error) if error.is_retryable() => {
                    status.pg_retries.fetch_add(1, Ordering::AcqRel);
                    let message = error.to_string();
                    status.note(|e| e.follower_retry = Some(message));
                }
                Err(error) => return Err(FollowerError::Write(error)),
            }
        }
    }
}

impl fmt::Debug for PgFollower {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgFollower")
            .field("dir", &self.feed.dir)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The running follower.
#[derive(Debug)]
pub struct FollowerThread {
    handle: JoinHandle<Result<(), FollowerError>>,
    stop: Arc<AtomicBool>,
    progress: Arc<WriterProgress>,
}

impl FollowerThread {
    pub fn progress(&self) -> Arc<WriterProgress> {
        Arc::clone(&self.progress)
    }

    /// Stops it (a batch being retried is abandoned, not lost: the journal keeps it) and waits.
    pub fn stop_and_join(self) -> Result<(), FollowerError> {
        self.stop.store(true, Ordering::Release);
        self.handle.thread().unpark();
        self.handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// Whether it ended by itself (an error).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}
