//! The Postgres writer: batches of journal records, each batch one transaction that inserts the
//! `events` rows it does not already have and folds exactly those rows into the projections.
//!
//! A batch is either committed whole or not at all, and a committed row is never inserted
//! again (`ON CONFLICT (seq) DO NOTHING`, projections only from `RETURNING`), so the caller may
//! hand the same records over any number of times: after a lost connection, an unanswered
//! COMMIT, a restart. The writer keeps nothing between calls but its session: the caller keeps
//! the records until `write` says they are committed, which is what makes a failure lose
//! nothing. It never reads the journal and never blocks anyone but its own caller.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use core::fmt;

use engine::Record;
use postgres::{Client, Statement};

use super::rows::{EventRows, OutOfRange, Projection};
use super::{PgConfig, PgError, backoff};
use crate::codec;

/// The writer's progress, shared with `/readyz` and `/metrics` without a lock.
#[derive(Debug, Default)]
pub struct WriterProgress {
    confirmed: AtomicU64,
    journaled: AtomicU64,
    connected: AtomicBool,
    connects: AtomicU64,
    failures: AtomicU64,
    events_written: AtomicU64,
    batches_committed: AtomicU64,
}

impl WriterProgress {
    /// The highest seq known to be in Postgres: after a (re)connect, what the table holds;
    /// after a commit, at least the batch's last seq.
    pub fn confirmed(&self) -> u64 {
        self.confirmed.load(Ordering::Acquire)
    }

    /// The highest seq the local journal holds, as far as the writer has been told.
    pub fn journaled(&self) -> u64 {
        self.journaled.load(Ordering::Acquire)
    }

    /// The cold thread calls this as records become durable, so that the lag counts the records
    /// still waiting in its hands, not only those handed to `write`.
    pub fn note_journaled(&self, seq: u64) {
        self.journaled.fetch_max(seq, Ordering::AcqRel);
    }

    /// Records durable locally but not yet confirmed in Postgres.
    pub fn lag(&self) -> u64 {
        self.journaled().saturating_sub(self.confirmed())
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Sessions opened so far; more than one means the writer reconnected.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Acquire)
    }

    /// Attempts that failed (connect or batch), each followed by a backoff.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Acquire)
    }

    /// `events` rows this writer inserted (replayed duplicates not counted).
    pub fn events_written(&self) -> u64 {
        self.events_written.load(Ordering::Acquire)
    }

    pub fn batches_committed(&self) -> u64 {
        self.batches_committed.load(Ordering::Acquire)
    }
}

/// What a committed batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Rows inserted into `events` (and folded into the projections).
    pub inserted: usize,
    /// Records Postgres already had, byte for byte: a replay.
    pub skipped: usize,
}

#[derive(Debug)]
pub enum WriteError {
    /// Seqs do not strictly increase at `seq`: the projections depend on order, so the batch is
    /// refused whole. A caller bug; retrying cannot help.
    Unordered { seq: u64 },
    /// A value of this record does not fit Postgres' bigint. Retrying cannot help.
    OutOfRange { seq: u64 },
    /// Postgres holds a different record under this seq: another history was written here (a
    /// second instance writing the same schema, a journal restored from elsewhere). Nothing of
    /// the batch was committed; an operator must look.
    Diverged { seq: u64 },
    /// Waiting after a failure; nothing was attempted.
    Backoff { retry_in: Duration },
    /// Postgres could not be reached, or the session broke; the next attempt reconnects.
    Connection(PgError),
    /// The server refused the batch (SQLSTATE in the error) and rolled it back.
    Server(PgError),
    /// `write_blocking` was asked to stop before the batch was committed.
    Stopped,
}

impl WriteError {
    /// Whether the same batch may succeed later without anyone changing it.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            WriteError::Backoff { .. } | WriteError::Connection(_) | WriteError::Server(_)
        )
    }
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Unordered { seq } => write!(f, "batch not in seq order at {seq}"),
            WriteError::OutOfRange { seq } => write!(f, "record {seq} has a value beyond bigint"),
            WriteError::Diverged { seq } => write!(
                f,
                "postgres already holds a different record {seq}: another history wrote here"
            ),
            WriteError::Backoff { retry_in } => write!(f, "retrying in {retry_in:?}"),
            WriteError::Connection(err) => write!(f, "connection: {err}"),
            WriteError::Server(err) => write!(f, "batch refused: {err}"),
            WriteError::Stopped => f.write_str("stopped before the batch was committed"),
        }
    }
}

impl std::error::Error for WriteError {}

impl From<OutOfRange> for WriteError {
    fn from(err: OutOfRange) -> WriteError {
        WriteError::OutOfRange { seq: err.seq }
    }
}

/// Writes batches of records to Postgres; see the module doc for the guarantees.
pub struct PgWriter {
    config: PgConfig,
    session: Option<Session>,
    progress: Arc<WriterProgress>,
    failures_in_a_row: u32,
    retry_at: Option<Instant>,
}

struct Session {
    client: Client,
    insert_events: Statement,
    existing: Statement,
    insert_stops: Statement,
    upsert_positions: Statement,
    upsert_orders: Statement,
}

impl PgWriter {
    /// A writer that connects on first use; no I/O here.
    pub fn new(config: PgConfig) -> PgWriter {
        PgWriter {
            config,
            session: None,
            progress: Arc::default(),
            failures_in_a_row: 0,
            retry_at: None,
        }
    }

    pub fn progress(&self) -> Arc<WriterProgress> {
        Arc::clone(&self.progress)
    }

    /// Opens the session now, if there is none, and returns the seq to resume after: the
    /// highest one Postgres holds. The caller hands over the journal from the next one.
    pub fn connect(&mut self) -> Result<u64, WriteError> {
        if self.session.is_none() {
            self.backoff_gate()?;
        }
        self.session()?;
        Ok(self.progress.confirmed())
    }

    /// Writes one batch (strictly increasing seqs) in one transaction, once: on `Err` nothing of
    /// it was committed (except possibly when the connection broke during COMMIT, which a retry
    /// of the same batch then finds and skips) and the caller keeps it for a later call. After a
    /// retryable failure, calls within the backoff return `Backoff` at once.
    pub fn write(&mut self, batch: &[Record]) -> Result<Written, WriteError> {
        let Some(last) = batch.last() else {
            return Ok(Written::default());
        };
        if let Some(pair) = batch.windows(2).find(|w| w[1].seq <= w[0].seq) {
            return Err(WriteError::Unordered { seq: pair[1].seq });
        }
        self.progress.note_journaled(last.seq);
        let rows = EventRows::new(batch)?;
        self.backoff_gate()?;
        let session = self.session()?;
        match write_batch(session, batch, &rows) {
            Ok(written) => {
                self.failures_in_a_row = 0;
                self.retry_at = None;
                self.progress.confirmed.fetch_max(last.seq, Ordering::AcqRel);
                self.progress.events_written.fetch_add(written.inserted as u64, Ordering::AcqRel);
                self.progress.batches_committed.fetch_add(1, Ordering::AcqRel);
                Ok(written)
            }
            Err(BatchError::Pg(err)) => Err(self.failed(err)),
            Err(BatchError::Diverged(seq)) => {
                self.schedule_retry();
                Err(WriteError::Diverged { seq })
            }
            Err(BatchError::OutOfRange(err)) => Err(err.into()),
        }
    }

    /// `write` until the batch is committed, sleeping out the backoff between attempts and
    /// showing each retryable failure to `on_error` (for the log). Returns early with the error
    /// that retrying cannot fix, or `Stopped` once `stop` is set.
    pub fn write_blocking(
        &mut self,
        batch: &[Record],
        stop: &AtomicBool,
        mut on_error: impl FnMut(&WriteError),
    ) -> Result<Written, WriteError> {
        loop {
            if stop.load(Ordering::Acquire) {
                return Err(WriteError::Stopped);
            }
            match self.write(batch) {
                Ok(written) => return Ok(written),
                Err(WriteError::Backoff { retry_in }) => {
                    // Sliced so that a stop request is seen within a few milliseconds.
                    let until = Instant::now() + retry_in;
                    while !stop.load(Ordering::Acquire) {
                        let left = until.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        std::thread::sleep(left.min(Duration::from_millis(20)));
                    }
                }
                Err(err) if err.is_retryable() => on_error(&err),
                Err(err) => return Err(err),
            }
        }
    }

    /// After a failure of any kind, nothing is attempted until the backoff has passed: a server
    /// that refuses every batch (a full disk, a lock held for minutes) is not hammered either.
    fn backoff_gate(&self) -> Result<(), WriteError> {
        match self.retry_at.map(|at| at.saturating_duration_since(Instant::now())) {
            Some(retry_in) if !retry_in.is_zero() => Err(WriteError::Backoff { retry_in }),
            _ => Ok(()),
        }
    }

    fn session(&mut self) -> Result<&mut Session, WriteError> {
        if self.session.is_none() {
            match Session::open(&self.config) {
                Ok((session, confirmed)) => {
                    // What Postgres holds is the truth, even below what this writer confirmed
                    // before (a database restored from a backup): the caller resumes from it.
                    self.progress.confirmed.store(confirmed, Ordering::Release);
                    self.progress.connected.store(true, Ordering::Release);
                    self.progress.connects.fetch_add(1, Ordering::AcqRel);
                    self.session = Some(session);
                }
                Err(err) => return Err(self.failed(err)),
            }
        }
        Ok(self.session.as_mut().expect("opened above"))
    }

    fn failed(&mut self, err: PgError) -> WriteError {
        let lost =
            err.connection_lost || self.session.as_ref().is_some_and(|s| s.client.is_closed());
        self.schedule_retry();
        if lost {
            self.session = None;
            self.progress.connected.store(false, Ordering::Release);
            WriteError::Connection(err)
        } else {
            WriteError::Server(err)
        }
    }

    fn schedule_retry(&mut self) {
        self.progress.failures.fetch_add(1, Ordering::AcqRel);
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        self.retry_at = Some(Instant::now() + backoff(&self.config, self.failures_in_a_row));
    }
}

impl Session {
    /// Opens a session, prepares the statements and reads where the table ends.
    fn open(config: &PgConfig) -> Result<(Session, u64), PgError> {
        let mut client = config.connect()?;
        let max: Option<i64> = client.query_one("SELECT max(seq) FROM events", &[])?.get(0);
        let session = Session {
            insert_events: client.prepare(INSERT_EVENTS)?,
            existing: client.prepare(EXISTING)?,
            insert_stops: client.prepare(INSERT_STOPS)?,
            upsert_positions: client.prepare(UPSERT_POSITIONS)?,
            upsert_orders: client.prepare(UPSERT_ORDERS)?,
            client,
        };
        Ok((session, max.map_or(0, |m| m as u64)))
    }
}

enum BatchError {
    Pg(PgError),
    Diverged(u64),
    OutOfRange(OutOfRange),
}

impl From<postgres::Error> for BatchError {
    fn from(err: postgres::Error) -> BatchError {
        BatchError::Pg(err.into())
    }
}

fn write_batch(
    session: &mut Session,
    batch: &[Record],
    rows: &EventRows<'_>,
) -> Result<Written, BatchError> {
    let Session { client, insert_events, existing, insert_stops, upsert_positions, upsert_orders } =
        session;
    // Dropping `tx` on any early return rolls the whole batch back.
    let mut tx = client.transaction()?;
    let payloads = rows.payloads();
    let inserted: Vec<i64> = tx
        .query_one(
            &*insert_events,
            &[
                &rows.seq,
                &rows.at_ns,
                &rows.kind,
                &payloads,
                &rows.position_id,
                &rows.account,
                &rows.venue,
                &rows.symbol,
                &rows.side,
                &rows.cid,
            ],
        )?
        .get(0);
    let projection = if inserted.len() == batch.len() {
        Projection::fold(batch)
    } else {
        // A replay: what Postgres already has must be this very history, or the projections
        // (and the log) would mix two. Compared decoded, not as bytes: a robsond with a newer
        // codec version re-encodes the same record differently.
        let new: HashSet<i64> = inserted.iter().copied().collect();
        let old: Vec<i64> = rows.seq.iter().copied().filter(|seq| !new.contains(seq)).collect();
        for row in tx.query(&*existing, &[&old])? {
            let seq = row.get::<_, i64>(0) as u64;
            let same = batch
                .binary_search_by_key(&seq, |r| r.seq)
                .is_ok_and(|i| codec::decode(row.get::<_, &[u8]>(1)) == Ok(batch[i]));
            if !same {
                return Err(BatchError::Diverged(seq));
            }
        }
        Projection::fold(batch.iter().filter(|r| new.contains(&(r.seq as i64))))
    }
    .map_err(BatchError::OutOfRange)?;
    if !projection.is_empty() {
        apply(&mut tx, &projection, (insert_stops, upsert_positions, upsert_orders))?;
    }
    tx.commit()?;
    Ok(Written { inserted: inserted.len(), skipped: batch.len() - inserted.len() })
}

fn apply(
    tx: &mut postgres::Transaction<'_>,
    p: &Projection,
    (insert_stops, upsert_positions, upsert_orders): (&Statement, &Statement, &Statement),
) -> Result<(), postgres::Error> {
    // Stop history first: a change whose previous stop predates the batch reads it from the
    // position row before this batch updates it.
    if !p.stops.is_empty() {
        let s = &p.stops;
        tx.execute(
            insert_stops,
            &[
                &col(s, |c| c.seq),
                &col(s, |c| c.position_id),
                &col(s, |c| c.at_ns),
                &col(s, |c| c.kind),
                &col(s, |c| c.from_stop),
                &col(s, |c| c.from_known),
                &col(s, |c| c.to_stop),
                &col(s, |c| c.level),
                &col(s, |c| c.pct_ratio),
            ],
        )?;
    }
    if !p.positions.is_empty() {
        let s = &p.positions;
        tx.execute(
            upsert_positions,
            &[
                &col(s, |c| c.id),
                &col(s, |c| c.key.map(|k| i32::from(k.account.0))),
                &col(s, |c| c.key.map(|k| k.venue.as_str())),
                &col(s, |c| c.key.as_ref().map(|k| k.symbol.as_str())),
                &col(s, |c| c.key.map(|k| k.side.as_str())),
                &col(s, |c| c.modality),
                &col(s, |c| c.state),
                &col(s, |c| c.qty),
                &col(s, |c| c.entry),
                &col(s, |c| c.stop),
                &col(s, |c| c.span),
                &col(s, |c| c.trail_level),
                &col(s, |c| c.safety_ratio),
                &col(s, |c| c.from_position),
                &col(s, |c| c.technical_stop),
                &col(s, |c| c.capital),
                &col(s, |c| c.risk_ratio),
                &col(s, |c| c.ma_fast),
                &col(s, |c| c.ma_slow),
                &col(s, |c| c.signal_price),
                &col(s, |c| c.trigger_price),
                &col(s, |c| c.triggered_at_ns),
                &col(s, |c| c.close_reason),
                &col(s, |c| c.close_deferred),
                &col(s, |c| c.close_problem),
                &col(s, |c| c.closed_by),
                &col(s, |c| c.armed_at_ns),
                &col(s, |c| c.opened_at_ns),
                &col(s, |c| c.closed_at_ns),
                &col(s, |c| c.updated_at_ns),
                &col(s, |c| c.last_seq),
            ],
        )?;
    }
    if !p.orders.is_empty() {
        let s = &p.orders;
        tx.execute(
            upsert_orders,
            &[
                &col(s, |c| c.cid.as_str()),
                &col(s, |c| c.position_id),
                &col(s, |c| c.account),
                &col(s, |c| c.venue),
                &col(s, |c| c.symbol.as_ref().map(|v| v.as_str())),
                &col(s, |c| c.side),
                &col(s, |c| c.qty),
                &col(s, |c| c.purpose),
                &col(s, |c| c.modality),
                &col(s, |c| c.close_reason),
                &col(s, |c| c.status),
                &col(s, |c| c.reject_kind),
                &col(s, |c| c.cum_qty),
                &col(s, |c| c.avg_price),
                &col(s, |c| c.exchange_ms),
                &col(s, |c| c.queries),
                &col(s, |c| c.sent_at_ns),
                &col(s, |c| c.queried_at_ns),
                &col(s, |c| c.updated_at_ns),
                &col(s, |c| c.last_seq),
            ],
        )?;
    }
    Ok(())
}

/// One column of a set of changes, as the array parameter `unnest` reads back into rows.
fn col<'a, T, V>(items: &'a [T], field: impl Fn(&'a T) -> V) -> Vec<V> {
    items.iter().map(field).collect()
}

const INSERT_EVENTS: &str = "
WITH inserted AS (
    INSERT INTO events (seq, at_ns, kind, payload, position_id, account, venue, symbol, side, cid)
    SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::bytea[], $5::int8[],
                         $6::int4[], $7::text[], $8::text[], $9::text[], $10::text[])
    ON CONFLICT (seq) DO NOTHING
    RETURNING seq
)
SELECT coalesce(array_agg(seq), '{}') FROM inserted";

const EXISTING: &str = "SELECT seq, payload FROM events WHERE seq = ANY($1) ORDER BY seq";

// Money arrives as i64 units of 1e-8 and ratios as units of 1e-8 of one; `* 0.00000001` and
// `* 0.000001` (to percent) are exact numeric products (see migrations/0002_projections.sql).
const INSERT_STOPS: &str = "
INSERT INTO stop_changes (seq, position_id, at_ns, kind, from_stop, to_stop, level, pct)
SELECT u.seq, u.position_id, u.at_ns, u.kind,
       CASE WHEN u.from_known THEN u.from_stop * 0.00000001
            ELSE (SELECT p.stop FROM positions p WHERE p.id = u.position_id) END,
       u.to_stop * 0.00000001, u.level, u.pct * 0.000001
FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::text[], $5::int8[], $6::bool[],
            $7::int8[], $8::int8[], $9::int8[])
     AS u(seq, position_id, at_ns, kind, from_stop, from_known, to_stop, level, pct)";

// Update the rows that exist, then insert the changes that carry a key (only records that
// create a position do); a change that only updates a position this database never saw
// created touches nothing: its record is still in `events`.
const UPSERT_POSITIONS: &str = "
WITH u AS (
    SELECT * FROM unnest($1::int8[], $2::int4[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::int8[], $9::int8[], $10::int8[],
                         $11::int8[], $12::int8[], $13::int8[], $14::int8[], $15::int8[],
                         $16::int8[], $17::int8[], $18::int8[], $19::int8[], $20::int8[],
                         $21::int8[], $22::int8[], $23::text[], $24::bool[], $25::text[],
                         $26::text[], $27::int8[], $28::int8[], $29::int8[], $30::int8[],
                         $31::int8[])
        AS u(id, account, venue, symbol, side, modality, state, qty, entry, stop, span,
             trail_level, safety_ratio, from_position, technical_stop, capital, risk_ratio,
             ma_fast, ma_slow, signal_price, trigger_price, triggered_at_ns, close_reason,
             close_deferred, close_problem, closed_by, armed_at_ns, opened_at_ns, closed_at_ns,
             updated_at_ns, last_seq)
),
updated AS (
    UPDATE positions p SET
        account         = coalesce(u.account, p.account),
        venue           = coalesce(u.venue, p.venue),
        symbol          = coalesce(u.symbol, p.symbol),
        side            = coalesce(u.side, p.side),
        modality        = coalesce(u.modality, p.modality),
        state           = coalesce(u.state, p.state),
        qty             = coalesce(u.qty * 0.00000001, p.qty),
        entry           = coalesce(u.entry * 0.00000001, p.entry),
        stop            = coalesce(u.stop * 0.00000001, p.stop),
        span            = coalesce(u.span * 0.00000001, p.span),
        trail_level     = coalesce(u.trail_level, p.trail_level),
        safety_pct      = coalesce(u.safety_ratio * 0.000001, p.safety_pct),
        from_position   = coalesce(u.from_position, p.from_position),
        technical_stop  = coalesce(u.technical_stop * 0.00000001, p.technical_stop),
        capital         = coalesce(u.capital * 0.00000001, p.capital),
        risk_pct        = coalesce(u.risk_ratio * 0.000001, p.risk_pct),
        ma_fast         = coalesce(u.ma_fast, p.ma_fast),
        ma_slow         = coalesce(u.ma_slow, p.ma_slow),
        signal_price    = coalesce(u.signal_price * 0.00000001, p.signal_price),
        trigger_price   = coalesce(u.trigger_price * 0.00000001, p.trigger_price),
        triggered_at_ns = coalesce(u.triggered_at_ns, p.triggered_at_ns),
        close_reason    = coalesce(u.close_reason, p.close_reason),
        close_deferred  = coalesce(u.close_deferred, p.close_deferred),
        close_problem   = coalesce(u.close_problem, p.close_problem),
        closed_by       = coalesce(u.closed_by, p.closed_by),
        armed_at_ns     = coalesce(u.armed_at_ns, p.armed_at_ns),
        opened_at_ns    = coalesce(u.opened_at_ns, p.opened_at_ns),
        closed_at_ns    = coalesce(u.closed_at_ns, p.closed_at_ns),
        updated_at_ns   = u.updated_at_ns,
        last_seq        = u.last_seq
    FROM u
    WHERE p.id = u.id
    RETURNING p.id
)
INSERT INTO positions (id, account, venue, symbol, side, modality, state, qty, entry, stop, span,
                       trail_level, safety_pct, from_position, technical_stop, capital, risk_pct,
                       ma_fast, ma_slow, signal_price, trigger_price, triggered_at_ns,
                       close_reason, close_deferred, close_problem, closed_by, armed_at_ns,
                       opened_at_ns, closed_at_ns, updated_at_ns, last_seq)
SELECT u.id, u.account, u.venue, u.symbol, u.side, u.modality, u.state,
       u.qty * 0.00000001, u.entry * 0.00000001, u.stop * 0.00000001, u.span * 0.00000001,
       u.trail_level, u.safety_ratio * 0.000001, u.from_position,
       u.technical_stop * 0.00000001, u.capital * 0.00000001, u.risk_ratio * 0.000001,
       u.ma_fast, u.ma_slow, u.signal_price * 0.00000001, u.trigger_price * 0.00000001,
       u.triggered_at_ns, u.close_reason, u.close_deferred, u.close_problem, u.closed_by,
       u.armed_at_ns, u.opened_at_ns, u.closed_at_ns, u.updated_at_ns, u.last_seq
FROM u
WHERE u.account IS NOT NULL AND u.id NOT IN (SELECT id FROM updated)";

// As for positions: only a change from `order_sent` or `order_updated` (which carry the
// market and a status) may insert a row; query counts add up.
const UPSERT_ORDERS: &str = "
WITH u AS (
    SELECT * FROM unnest($1::text[], $2::int8[], $3::int4[], $4::text[], $5::text[],
                         $6::text[], $7::int8[], $8::text[], $9::text[], $10::text[],
                         $11::text[], $12::text[], $13::int8[], $14::int8[], $15::int8[],
                         $16::int4[], $17::int8[], $18::int8[], $19::int8[], $20::int8[])
        AS u(cid, position_id, account, venue, symbol, side, qty, purpose, modality,
             close_reason, status, reject_kind, cum_qty, avg_price, exchange_ms, queries,
             sent_at_ns, queried_at_ns, updated_at_ns, last_seq)
),
updated AS (
    UPDATE orders o SET
        position_id   = coalesce(u.position_id, o.position_id),
        account       = coalesce(u.account, o.account),
        venue         = coalesce(u.venue, o.venue),
        symbol        = coalesce(u.symbol, o.symbol),
        side          = coalesce(u.side, o.side),
        qty           = coalesce(u.qty * 0.00000001, o.qty),
        purpose       = coalesce(u.purpose, o.purpose),
        modality      = coalesce(u.modality, o.modality),
        close_reason  = coalesce(u.close_reason, o.close_reason),
        status        = coalesce(u.status, o.status),
        reject_kind   = coalesce(u.reject_kind, o.reject_kind),
        cum_qty       = coalesce(u.cum_qty * 0.00000001, o.cum_qty),
        avg_price     = coalesce(u.avg_price * 0.00000001, o.avg_price),
        exchange_ms   = coalesce(u.exchange_ms, o.exchange_ms),
        queries       = o.queries + u.queries,
        sent_at_ns    = coalesce(u.sent_at_ns, o.sent_at_ns),
        queried_at_ns = coalesce(u.queried_at_ns, o.queried_at_ns),
        updated_at_ns = u.updated_at_ns,
        last_seq      = u.last_seq
    FROM u
    WHERE o.cid = u.cid
    RETURNING o.cid
)
INSERT INTO orders (cid, position_id, account, venue, symbol, side, qty, purpose, modality,
                    close_reason, status, reject_kind, cum_qty, avg_price, exchange_ms, queries,
                    sent_at_ns, queried_at_ns, updated_at_ns, last_seq)
SELECT u.cid, u.position_id, u.account, u.venue, u.symbol, u.side, u.qty * 0.00000001,
       u.purpose, u.modality, u.close_reason, u.status, u.reject_kind,
       u.cum_qty * 0.00000001, u.avg_price * 0.00000001, u.exchange_ms, u.queries,
       u.sent_at_ns, u.queried_at_ns, u.updated_at_ns, u.last_seq
FROM u
WHERE u.status IS NOT NULL AND u.account IS NOT NULL AND u.cid NOT IN (SELECT cid FROM updated)";
