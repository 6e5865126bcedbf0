//! Start-up: the engine's state rebuilt from the local journal, or from Postgres when the
//! journal is empty (a new pod), and the bookkeeping that says how far the journal may be pruned
//! without a restart losing anything.
//!
//! Owns the loader ([`load_state`]), [`RestartFold`] and the journal directory's
//! `restart.cut` file. It never runs on the hot thread, never deletes a journal segment (the
//! cold thread prunes) and never writes Postgres.
//!
//! # Where a restart may start
//!
//! `JournalFold` needs every record of a position from the position's first one, so folding a
//! journal whose head was pruned works only from a seq before which no position was live, no
//! halt was in force and at or below the record that allocated the newest position id (else a
//! restart would number new positions, and so client order ids, from an old id). Such a seq is
//! a *cut*. [`RestartFold`] notes the cuts as records pass; the cold thread writes the newest
//! usable one to `restart.cut` (durably) before deleting segments below it, and [`load_state`]
//! folds from it, skipping the older records a partly pruned segment still holds. A fold from a
//! cut equals the fold of the whole history except for one thing: the exchange time of old
//! closes per key (`KeySlot::settle_ms`), which only filters exchange snapshots older than
//! those fills, and the snapshots a restarted daemon reads are newer.
//!
//! (`JournalFold::oldest_needed_seq` alone is not a cut: a position that started before it and
//! closed after it would be unknown to a fold started there.)
//!
//! # Journal and Postgres
//!
//! Postgres holds what the journal made durable, from seq 1 or from a cut (a follower that
//! started on an empty database writes from the journal's cut), without holes. At start-up:
//!
//! - journal empty, Postgres has rows: state comes from Postgres, and every row is appended to
//!   the journal (same payload bytes), so the two agree and the next restart needs neither
//!   the network nor a second source;
//! - both have rows: read together from the journal's cut; where both hold a seq, the records
//!   must decode equal; once Postgres has yielded a row it may not lack one the journal has, nor
//!   the reverse (Postgres may start later, having been created later). The longer wins: rows
//!   Postgres holds beyond the journal's end are appended to the journal. Anything else is
//!   refused, naming the first seq where they differ;
//! - Postgres configured but unreachable: the journal alone if it has records (it is the source
//!   of truth; [`Loaded::postgres`] says Postgres was not consulted), an error if it is empty;
//! - a decode or fold error names the source and the seq.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use engine::events::Journal as Event;
use engine::{JournalFold, Record, RestoreError};
use postgres::{Client, Transaction};

use crate::codec::{self, DecodeError};
use crate::journal::{Journal, JournalError};
use crate::pg::{MigrateError, PgConfig, PgError, migrate};

/// The file in the journal directory holding the seq a restart folds from.
pub const CUT_FILE_NAME: &str = "restart.cut";
const CUT_MAGIC: &[u8; 8] = b"RBSNCUT1";
const CUT_FILE_LEN: usize = 20;
/// Quiet stretches remembered while pruning waits (on Postgres, usually); beyond this the
/// oldest are forgotten, which only delays pruning until a newer cut is usable.
const MAX_QUIET_RANGES: usize = 4096;
/// Rows fetched from Postgres per round trip while loading.
const FETCH_ROWS: i32 = 5_000;

/// A `JournalFold` that also knows where a restart may start (see the module doc).
#[derive(Clone, Debug, Default)]
pub struct RestartFold {
    fold: JournalFold,
    /// Seq of the first record folded: where this history starts (0: none yet).
    start: u64,
    halted: bool,
    max_id: u64,
    /// Seq of the record that allocated `max_id`.
    max_id_seq: u64,
    /// Inclusive seq ranges of records before each of which the fold was empty and not halted.
    quiet: VecDeque<(u64, u64)>,
    last_quiet: bool,
    broken: Option<RestoreError>,
}

impl RestartFold {
    /// The fold of an empty history.
    pub fn new() -> RestartFold {
        RestartFold::default()
    }

    /// Folds the next record. After an error the fold is broken for good: every later call
    /// returns the same error and [`RestartFold::cut_within`] offers nothing.
    pub fn observe(&mut self, record: &Record) -> Result<(), RestoreError> {
        if let Some(error) = self.broken {
            return Err(error);
        }
        let quiet = !self.halted && self.fold.oldest_needed_seq() > self.fold.last_seq();
        if let Err(error) = self.fold.apply(record) {
            self.broken = Some(error);
            return Err(error);
        }
        let seq = record.seq;
        if self.start == 0 {
            self.start = seq;
        }
        if quiet {
            match self.quiet.back_mut() {
                Some(range) if self.last_quiet => range.1 = seq,
                _ => {
                    if self.quiet.len() == MAX_QUIET_RANGES {
                        self.quiet.pop_front();
                    }
                    self.quiet.push_back((seq, seq));
                }
            }
        }
        self.last_quiet = quiet;
        match record.event {
            Event::Halted { .. } => self.halted = true,
            Event::Resumed => self.halted = false,
            Event::Armed { id, .. } | Event::PositionDetected { id, .. } if id.0 >= self.max_id => {
                self.max_id = id.0;
                self.max_id_seq = seq;
            }
            _ => {}
        }
        Ok(())
    }

    /// What `Engine::restore` takes.
    pub fn fold(&self) -> &JournalFold {
        &self.fold
    }

    pub fn into_fold(self) -> JournalFold {
        self.fold
    }

    /// Seq of the first record of the history folded here (0: none).
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Seq of the last record folded (0: none).
    pub fn last_seq(&self) -> u64 {
        self.fold.last_seq()
    }

    /// The error that broke the fold, if one did.
    pub fn broken(&self) -> Option<RestoreError> {
        self.broken
    }

    /// The newest cut at or below `limit`: a seq a fold may start from and end up where this
    /// one is. `None` when there is none (or the fold is broken).
    pub fn cut_within(&self, limit: u64) -> Option<u64> {
        if self.broken.is_some() {
            return None;
        }
        // Numbering: the record that allocated the newest id must stay.
        let cap = if self.max_id_seq > 0 { limit.min(self.max_id_seq) } else { limit };
        self.quiet.iter().rev().find(|&&(from, _)| from <= cap).map(|&(_, to)| to.min(cap))
    }

    /// Forgets cuts below `cut`, which the history now starts at.
    pub(crate) fn forget_before(&mut self, cut: u64) {
        while self.quiet.front().is_some_and(|&(_, to)| to < cut) {
            self.quiet.pop_front();
        }
    }
}

/// Which copy a record came from, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Journal,
    Postgres,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Journal => "journal",
            Origin::Postgres => "postgres",
        })
    }
}

/// How the journal and Postgres disagree at a seq.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Divergence {
    /// Both hold the seq, with different records.
    Different,
    /// Postgres holds the seq inside the journal's range; the journal does not.
    MissingInJournal,
    /// The journal holds the seq inside Postgres' range; Postgres does not.
    MissingInPostgres,
}

/// Where the state came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Neither copy holds a record: a first start.
    Nothing,
    /// The journal (checked against Postgres where both hold a record: `Loaded::compared`).
    Journal,
    /// The journal was empty; it now holds what Postgres had.
    Postgres,
    /// The journal, extended with records only Postgres held (now appended to the journal).
    Both,
}

/// What was learnt of Postgres while loading.
#[derive(Debug)]
pub enum PostgresCheck {
    NotConfigured,
    /// Could not be reached; the journal alone was used.
    Unreachable(PgError),
    /// Consulted: its rows from the fold's start, as (first, last) seq, `None` if it had none.
    Read {
        rows: Option<(u64, u64)>,
    },
}

/// The state rebuilt at start-up.
#[derive(Debug)]
pub struct Loaded {
    /// `restart.fold()` goes to `Engine::restore`; the whole goes to `ColdWriter::new`.
    pub restart: RestartFold,
    /// The last seq of the history (0: none); the engine numbers on from the next.
    pub last_seq: u64,
    pub source: Source,
    /// Records folded, and how many of them both copies held.
    pub folded: u64,
    pub compared: u64,
    /// Records copied from Postgres into the journal.
    pub reseeded: u64,
    /// Places where a seq was not its predecessor's plus one (records the engine numbered but
    /// the history lacks): the daemon should flag them.
    pub gaps: u64,
    pub postgres: PostgresCheck,
}

impl Loaded {
    pub fn fold(&self) -> &JournalFold {
        self.restart.fold()
    }
}

#[derive(Debug)]
pub enum RecoverError {
    Journal(JournalError),
    /// Postgres failed while being read (not while connecting).
    Postgres(PgError),
    Migrate(MigrateError),
    /// The journal is empty, Postgres is configured and could not be reached: starting empty
    /// could forget live positions.
    PostgresUnavailable(PgError),
    /// A record's bytes do not decode.
    Decode {
        origin: Origin,
        seq: u64,
        error: DecodeError,
    },
    /// A record decodes with another seq than the one it is stored under.
    SeqMismatch {
        origin: Origin,
        seq: u64,
        decoded: u64,
    },
    /// The fold refused a record: `RestoreError::UnknownPosition` when the history lacks the
    /// position's beginning (pruned too far, a lost segment).
    Fold {
        origin: Origin,
        error: RestoreError,
    },
    Diverged {
        seq: u64,
        how: Divergence,
    },
    /// Postgres continues after a hole past the journal's end: no history joins them.
    Disjoint {
        journal_last: u64,
        postgres_first: u64,
    },
    /// `restart.cut` does not point inside the journal.
    CutOutsideJournal {
        cut: u64,
        first: u64,
        last: u64,
    },
    /// `restart.cut` is not a cut file (or is damaged).
    BadCutFile {
        path: PathBuf,
    },
}

impl fmt::Display for RecoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoverError::Journal(e) => write!(f, "start-up: {e}"),
            RecoverError::Postgres(e) => write!(f, "start-up: reading postgres: {e}"),
            RecoverError::Migrate(e) => write!(f, "start-up: {e}"),
            RecoverError::PostgresUnavailable(e) => write!(
                f,
                "start-up: the journal is empty and postgres, which may hold the history, is \
                 unreachable: {e}"
            ),
            RecoverError::Decode { origin, seq, error } => {
                write!(f, "start-up: {origin} record {seq} does not decode: {error}")
            }
            RecoverError::SeqMismatch { origin, seq, decoded } => {
                write!(f, "start-up: {origin} record stored as seq {seq} decodes as seq {decoded}")
            }
            RecoverError::Fold { origin, error } => {
                write!(f, "start-up: {origin} history cannot be folded: {error}")
            }
            RecoverError::Diverged { seq, how } => {
                let how = match how {
                    Divergence::Different => "hold different records",
                    Divergence::MissingInJournal => "differ: only postgres holds it",
                    Divergence::MissingInPostgres => "differ: only the journal holds it",
                };
                write!(
                    f,
                    "start-up: journal and postgres diverge at seq {seq} (they {how}); an \
                     operator must decide which history is robsond's"
                )
            }
            RecoverError::Disjoint { journal_last, postgres_first } => write!(
                f,
                "start-up: the journal ends at seq {journal_last} but postgres continues only \
                 from seq {postgres_first}: the records between are in neither"
            ),
            RecoverError::CutOutsideJournal { cut, first, last } => write!(
                f,
                "start-up: {CUT_FILE_NAME} says to start at seq {cut} but the journal holds \
                 seqs {first}..={last}"
            ),
            RecoverError::BadCutFile { path } => {
                write!(f, "start-up: {} is not a valid cut file", path.display())
            }
        }
    }
}

impl std::error::Error for RecoverError {}

impl From<JournalError> for RecoverError {
    fn from(e: JournalError) -> RecoverError {
        RecoverError::Journal(e)
    }
}

/// Rebuilds the state from the open `journal` and, when configured, Postgres (see the module
/// doc); may append to the journal (rows only Postgres had) and syncs it before returning.
/// Runs the migrations first when Postgres is reachable.
pub fn load_state(journal: &mut Journal, pg: Option<&PgConfig>) -> Result<Loaded, RecoverError> {
    // The reader below returns durable records only.
    journal.sync()?;
    let dir = journal.dir().to_path_buf();
    let cut = read_cut(&dir)?;
    let (first, last) = (journal.first_seq(), journal.last_seq());
    let start = if last == 0 {
        if cut.is_some() {
            // Left by a journal whose segments are gone; whatever is reseeded starts afresh.
            remove_cut(&dir).map_err(RecoverError::Journal)?;
        }
        None
    } else {
        let start = cut.unwrap_or(first);
        if start < first || start > last {
            return Err(RecoverError::CutOutsideJournal { cut: start, first, last });
        }
        Some(start)
    };

    let mut client = None;
    let mut check = PostgresCheck::NotConfigured;
    if let Some(config) = pg {
        match open_postgres(config) {
            Ok(c) => client = Some(c),
            Err(Opened::Unreachable(e)) if start.is_some() => check = PostgresCheck::Unreachable(e),
            Err(Opened::Unreachable(e)) => return Err(RecoverError::PostgresUnavailable(e)),
            Err(Opened::Failed(e)) => return Err(e),
        }
    }

    let mut walk = Walk {
        journal,
        restart: RestartFold::new(),
        journal_was_empty: start.is_none(),
        folded: 0,
        compared: 0,
        reseeded: 0,
        gaps: 0,
        postgres_rows: None,
        from_postgres: false,
        from_journal: false,
    };
    match client.as_mut() {
        Some(client) => {
            let mut tx = client.build_transaction().read_only(true).start().map_err(pg_err)?;
            let mut rows = PgRows::open(&mut tx, start.unwrap_or(1))?;
            walk.run(start, Some(&mut rows))?;
            drop(rows);
            tx.commit().map_err(pg_err)?;
        }
        None => walk.run(start, None)?,
    }
    if walk.reseeded > 0 {
        walk.journal.sync()?;
    }
    if let Some(client) = client {
        drop(client);
        check = PostgresCheck::Read { rows: walk.postgres_rows };
    }
    let source = match (walk.from_journal, walk.from_postgres) {
        (false, false) => Source::Nothing,
        (true, false) => Source::Journal,
        (false, true) => Source::Postgres,
        (true, true) => Source::Both,
    };
    Ok(Loaded {
        last_seq: walk.restart.last_seq(),
        restart: walk.restart,
        source,
        folded: walk.folded,
        compared: walk.compared,
        reseeded: walk.reseeded,
        gaps: walk.gaps,
        postgres: check,
    })
}

struct Walk<'j> {
    journal: &'j mut Journal,
    restart: RestartFold,
    journal_was_empty: bool,
    folded: u64,
    compared: u64,
    reseeded: u64,
    gaps: u64,
    postgres_rows: Option<(u64, u64)>,
    from_postgres: bool,
    from_journal: bool,
}

impl Walk<'_> {
    /// Both copies in seq order from `start` (the journal's cut; `None`: the journal is
    /// empty), merged as the module doc says.
    fn run(
        &mut self,
        start: Option<u64>,
        mut rows: Option<&mut PgRows<'_, '_>>,
    ) -> Result<(), RecoverError> {
        let mut reader = start.map(|s| self.journal.reader_from(s));
        let mut next_journal = || -> Result<Option<Record>, RecoverError> {
            let Some(reader) = reader.as_mut() else { return Ok(None) };
            match reader.read_next()? {
                Some(r) => decoded(Origin::Journal, r.seq, r.payload).map(Some),
                None => Ok(None),
            }
        };
        let mut next_postgres =
            |walk: &mut Self| -> Result<Option<(Record, Vec<u8>)>, RecoverError> {
                let Some(rows) = rows.as_mut() else { return Ok(None) };
                let Some((seq, payload)) = rows.next()? else { return Ok(None) };
                let record = decoded(Origin::Postgres, seq, &payload)?;
                walk.postgres_rows = Some(match walk.postgres_rows {
                    None => (seq, seq),
                    Some((first, _)) => (first, seq),
                });
                Ok(Some((record, payload)))
            };

        let journal_last = self.journal.last_seq();
        let mut j = next_journal()?;
        let mut p = next_postgres(self)?;
        let mut postgres_started = false;
        loop {
            match (j, p.as_ref()) {
                (None, None) => return Ok(()),
                (Some(jr), Some((pr, _))) if jr.seq == pr.seq => {
                    if jr != *pr {
                        return Err(RecoverError::Diverged {
                            seq: jr.seq,
                            how: Divergence::Different,
                        });
                    }
                    self.compared += 1;
                    postgres_started = true;
                    self.apply(&jr, Origin::Journal)?;
                    j = next_journal()?;
                    p = next_postgres(self)?;
                }
                (Some(jr), Some((pr, _))) if jr.seq < pr.seq => {
                    if postgres_started {
                        let how = Divergence::MissingInPostgres;
                        return Err(RecoverError::Diverged { seq: jr.seq, how });
                    }
                    self.apply(&jr, Origin::Journal)?;
                    j = next_journal()?;
                }
                (Some(_), Some((pr, _))) => {
                    let how = Divergence::MissingInJournal;
                    return Err(RecoverError::Diverged { seq: pr.seq, how });
                }
                (Some(jr), None) => {
                    self.apply(&jr, Origin::Journal)?;
                    j = next_journal()?;
                }
                (None, Some((pr, payload))) => {
                    let seq = pr.seq;
                    if !self.journal_was_empty && !postgres_started && seq != journal_last + 1 {
                        return Err(RecoverError::Disjoint { journal_last, postgres_first: seq });
                    }
                    postgres_started = true;
                    self.apply(pr, Origin::Postgres)?;
                    // The journal takes the bytes Postgres has, so both hold the same history.
                    self.journal.append(seq, payload)?;
                    self.reseeded += 1;
                    p = next_postgres(self)?;
                }
            }
        }
    }

    fn apply(&mut self, record: &Record, origin: Origin) -> Result<(), RecoverError> {
        let previous = self.restart.last_seq();
        self.restart.observe(record).map_err(|error| RecoverError::Fold { origin, error })?;
        if previous != 0 && record.seq != previous + 1 {
            self.gaps += 1;
        }
        self.folded += 1;
        match origin {
            Origin::Journal => self.from_journal = true,
            Origin::Postgres => self.from_postgres = true,
        }
        Ok(())
    }
}

fn decoded(origin: Origin, seq: u64, payload: &[u8]) -> Result<Record, RecoverError> {
    let record =
        codec::decode(payload).map_err(|error| RecoverError::Decode { origin, seq, error })?;
    if record.seq != seq {
        return Err(RecoverError::SeqMismatch { origin, seq, decoded: record.seq });
    }
    Ok(record)
}

fn pg_err(e: postgres::Error) -> RecoverError {
    RecoverError::Postgres(e.into())
}

enum Opened {
    Unreachable(PgError),
    Failed(RecoverError),
}

fn open_postgres(config: &PgConfig) -> Result<Client, Opened> {
    let mut client = config.connect().map_err(|e| {
        if e.connection_lost {
            Opened::Unreachable(e)
        } else {
            Opened::Failed(RecoverError::Postgres(e))
        }
    })?;
    match migrate(&mut client, &config.schema) {
        Ok(_) => Ok(client),
        Err(MigrateError::Pg(e)) if e.connection_lost => Err(Opened::Unreachable(e)),
        Err(e) => Err(Opened::Failed(RecoverError::Migrate(e))),
    }
}

/// `events` rows from a seq on, in order, a page at a time.
struct PgRows<'t, 'c> {
    tx: &'t mut Transaction<'c>,
    portal: postgres::Portal,
    page: VecDeque<(u64, Vec<u8>)>,
    done: bool,
}

impl<'t, 'c> PgRows<'t, 'c> {
    fn open(tx: &'t mut Transaction<'c>, from: u64) -> Result<PgRows<'t, 'c>, RecoverError> {
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let portal = tx
            .bind("SELECT seq, payload FROM events WHERE seq >= $1 ORDER BY seq", &[&from])
            .map_err(pg_err)?;
        Ok(PgRows { tx, portal, page: VecDeque::new(), done: false })
    }

    fn next(&mut self) -> Result<Option<(u64, Vec<u8>)>, RecoverError> {
        if self.page.is_empty() && !self.done {
            let rows = self.tx.query_portal(&self.portal, FETCH_ROWS).map_err(pg_err)?;
            self.done = rows.len() < FETCH_ROWS as usize;
            self.page.extend(rows.iter().map(|row| (row.get::<_, i64>(0) as u64, row.get(1))));
        }
        Ok(self.page.pop_front())
    }
}

// ---- restart.cut ----

/// The cut recorded in `dir`, if any.
pub fn read_cut(dir: &Path) -> Result<Option<u64>, RecoverError> {
    let path = dir.join(CUT_FILE_NAME);
    let mut bytes = Vec::with_capacity(CUT_FILE_LEN);
    match File::open(&path) {
        Ok(mut file) => {
            file.read_to_end(&mut bytes).map_err(io_err("read", &path))?;
        }
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("open", &path)(e).into()),
    }
    let bad = || RecoverError::BadCutFile { path: path.clone() };
    let (body, crc) = bytes.split_at_checked(16).ok_or_else(bad)?;
    if bytes.len() != CUT_FILE_LEN
        || &body[..8] != CUT_MAGIC
        || crc != crc32fast::hash(body).to_le_bytes()
    {
        return Err(bad());
    }
    let seq = u64::from_le_bytes(body[8..16].try_into().map_err(|_| bad())?);
    if seq == 0 {
        return Err(bad());
    }
    Ok(Some(seq))
}

/// Records `seq` as the cut, durably (written aside, fsynced, renamed, directory fsynced): only
/// then may segments below it go.
pub(crate) fn write_cut(dir: &Path, seq: u64) -> Result<(), JournalError> {
    let path = dir.join(CUT_FILE_NAME);
    let temporary = dir.join(format!("{CUT_FILE_NAME}.tmp"));
    let mut bytes = [0u8; CUT_FILE_LEN];
    bytes[..8].copy_from_slice(CUT_MAGIC);
    bytes[8..16].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..16]);
    bytes[16..].copy_from_slice(&crc.to_le_bytes());
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)
        .map_err(io_err("create", &temporary))?;
    file.write_all(&bytes).map_err(io_err("write", &temporary))?;
    file.sync_all().map_err(io_err("fsync", &temporary))?;
    fs::rename(&temporary, &path).map_err(io_err("rename", &temporary))?;
    sync_dir(dir)
}

fn remove_cut(dir: &Path) -> Result<(), JournalError> {
    let path = dir.join(CUT_FILE_NAME);
    match fs::remove_file(&path) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", &path)(e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("fsync directory", dir))
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> JournalError + 'a {
    move |source| JournalError::Io { op, path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::events::ArmParams;
    use engine::types::{AccountId, MarketKey, PositionId, PositionKey, Side, Symbol, Venue};
    use engine::{Nanos, Price, Qty};

    fn key() -> PositionKey {
        PositionKey {
            account: AccountId(0),
            venue: Venue::Usdm,
            symbol: Symbol::lit("BTCUSDT"),
            side: Side::Long,
        }
    }

    fn rec(seq: u64, event: Event) -> Record {
        Record { seq, at: Nanos(seq), event }
    }

    fn armed(seq: u64, id: u64) -> Record {
        rec(seq, Event::Armed { id: PositionId(id), key: key(), params: ArmParams::default() })
    }

    fn noise(seq: u64) -> Record {
        let market = MarketKey { venue: Venue::Usdm, symbol: Symbol::lit("BTCUSDT") };
        rec(seq, Event::PriceStale { market })
    }

    #[test]
    fn cuts_are_quiet_unhalted_and_keep_the_newest_allocation() {
        let mut r = RestartFold::new();
        let records = [
            noise(1),
            armed(2, 1),
            rec(
                3,
                Event::PositionUpdated { id: PositionId(1), qty: Qty::ZERO, entry: Price::ZERO },
            ),
            rec(4, Event::Disarmed { id: PositionId(1) }),
            noise(5),
            rec(6, Event::Halted { flatten: false }),
            noise(7),
            rec(8, Event::Resumed),
            noise(9),
            armed(10, 2),
            noise(11),
        ];
        for record in &records {
            r.observe(record).expect("folds");
        }
        // Quiet before: 1, 2 (empty), 5, 6 (after the disarm), 10 (after the resume); 3 and 4
        // have a live position, 7 and 8 a halt, 11 a live position.
        assert_eq!(r.cut_within(1), Some(1));
        assert_eq!(r.cut_within(4), Some(2));
        assert_eq!(r.cut_within(8), Some(6));
        assert_eq!(r.cut_within(9), Some(9));
        assert_eq!(r.cut_within(100), Some(10), "not past the newest allocation");
        r.forget_before(9);
        assert_eq!(r.cut_within(8), None);
        assert_eq!(r.start(), 1);
    }

    #[test]
    fn a_broken_fold_offers_no_cut() {
        let mut r = RestartFold::new();
        r.observe(&noise(1)).expect("folds");
        let err = r.observe(&rec(2, Event::Disarmed { id: PositionId(9) })).expect_err("unknown");
        assert!(matches!(err, RestoreError::UnknownPosition { seq: 2, .. }));
        assert_eq!(r.observe(&noise(3)), Err(err));
        assert_eq!(r.cut_within(10), None);
    }

    #[test]
    fn the_cut_file_round_trips_and_damage_is_refused() {
        let dir = std::env::temp_dir().join(format!("robson-cut-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        assert_eq!(read_cut(&dir).expect("none"), None);
        write_cut(&dir, 12_345).expect("write");
        assert_eq!(read_cut(&dir).expect("read"), Some(12_345));
        let path = dir.join(CUT_FILE_NAME);
        let mut bytes = fs::read(&path).expect("bytes");
        bytes[9] ^= 1;
        fs::write(&path, &bytes).expect("damage");
        assert!(matches!(read_cut(&dir), Err(RecoverError::BadCutFile { .. })));
        remove_cut(&dir).expect("remove");
        assert_eq!(read_cut(&dir).expect("gone"), None);
        fs::remove_dir_all(&dir).expect("clean");
    }
}
