//! The start-up loader against real journal files and a real Postgres: a real engine's state
//! comes back from either copy, the longer of two agreeing copies wins (and the journal ends up
//! holding it), copies that disagree or a history cut inside a live position are refused with
//! the seq named, and restart cuts are exact at every point of a history.

mod pg_common;

mod cold_common;

use std::net::TcpListener;
use std::path::Path;

use cold_common::*;
use engine::{Nanos, Record, RestoreError};
use persist::codec;
use persist::journal::Journal;
use persist::pg::{PgConfig, PgWriter};
use persist::recover::{
    Divergence, Origin, PostgresCheck, RecoverError, RestartFold, Source, load_state,
};
use pg_common::{Scenario, TestDb};

fn open(dir: &Path) -> Journal {
    Journal::open(dir, small_segments()).expect("open journal").0
}

fn journal_with(dir: &Path, records: &[Record]) -> Journal {
    let mut journal = open(dir);
    let mut buf = Vec::new();
    for r in records {
        buf.clear();
        codec::encode(r, &mut buf);
        journal.append(r.seq, &buf).expect("append");
    }
    journal.sync().expect("sync");
    journal
}

fn postgres_with(db: &TestDb, records: &[Record]) {
    let mut writer = PgWriter::new(db.config("robsond-recover-seed"));
    for batch in records.chunks(1_000) {
        writer.write(batch).expect("seed postgres");
    }
}

fn load(journal: &mut Journal, pg: Option<&PgConfig>) -> persist::recover::Loaded {
    load_state(journal, pg).unwrap_or_else(|e| panic!("loads: {e}"))
}

#[test]
fn a_real_engine_comes_back_from_the_journal_and_from_postgres() {
    let scenario = Scenario::run();
    let records = &scenario.records;
    let mut live: Vec<_> = scenario.engine.positions().collect();
    for v in &mut live {
        v.trigger = None;
    }
    live.sort_by_key(|v| v.id.0);
    assert!(!live.is_empty(), "the scenario leaves a position live");

    // From the journal alone.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut journal = journal_with(dir.path(), records);
    let loaded = load(&mut journal, None);
    assert_eq!(loaded.source, Source::Journal);
    assert!(matches!(loaded.postgres, PostgresCheck::NotConfigured));
    assert_eq!(loaded.last_seq, records.len() as u64);
    let from_journal = restored(loaded.fold());
    assert_eq!(from_journal.positions, live, "the live engine's positions");
    let owners: Vec<_> = live.iter().map(|v| scenario.engine.owner(&v.key)).collect();
    assert_eq!(from_journal.owners, owners);
    assert_eq!(from_journal, restored(&fold_all(records)));

    // A new pod: empty journal, the history in Postgres. The journal takes all of it.
    let db = TestDb::new();
    postgres_with(&db, records);
    let empty = tempfile::tempdir().expect("tempdir");
    let mut journal = open(empty.path());
    let loaded = load(&mut journal, Some(&db.config("robsond-recover")));
    assert_eq!(loaded.source, Source::Postgres);
    assert_eq!(loaded.reseeded, records.len() as u64);
    assert!(
        matches!(loaded.postgres, PostgresCheck::Read { rows: Some((1, last)) } if last == records.len() as u64)
    );
    assert_eq!(restored(loaded.fold()), from_journal);
    drop(journal);
    assert_eq!(&read_journal(empty.path(), 1), records, "reseeded record for record");

    // Both now agree: the next start compares them and adds nothing.
    let mut journal = open(empty.path());
    let loaded = load(&mut journal, Some(&db.config("robsond-recover")));
    assert_eq!(
        (loaded.source, loaded.compared, loaded.reseeded),
        (Source::Journal, records.len() as u64, 0)
    );
}

#[test]
fn the_longer_of_two_agreeing_copies_wins() {
    let records = waves(3_000, Some(1_500)).records;
    let full = restored(&fold_all(&records));
    let db = TestDb::new();
    let config = db.config("robsond-recover");

    // Postgres lags the journal: the journal wins, Postgres is left for the follower.
    postgres_with(&db, &records[..2_000]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut journal = journal_with(dir.path(), &records);
    let loaded = load(&mut journal, Some(&config));
    assert_eq!((loaded.source, loaded.compared, loaded.reseeded), (Source::Journal, 2_000, 0));
    assert_eq!(loaded.last_seq, 3_000);
    assert_eq!(restored(loaded.fold()), full);

    // The journal is a prefix of Postgres: Postgres' tail is folded and appended.
    let db = TestDb::new();
    postgres_with(&db, &records);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut journal = journal_with(dir.path(), &records[..2_000]);
    let loaded = load(&mut journal, Some(&db.config("robsond-recover")));
    assert_eq!((loaded.source, loaded.compared, loaded.reseeded), (Source::Both, 2_000, 1_000));
    assert_eq!(loaded.last_seq, 3_000);
    assert_eq!(restored(loaded.fold()), full);
    assert_eq!(journal.last_seq(), 3_000);
    drop(journal);
    assert_eq!(read_journal(dir.path(), 1), records);
}

#[test]
fn copies_that_disagree_are_refused_naming_the_seq() {
    let records = waves(1_000, None).records;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut journal = journal_with(dir.path(), &records);

    // The same seq, another record.
    let db = TestDb::new();
    let mut other = records.clone();
    other[599].at = Nanos(other[599].at.0 + 1);
    postgres_with(&db, &other);
    let err = load_state(&mut journal, Some(&db.config("robsond-recover"))).expect_err("refused");
    assert!(
        matches!(err, RecoverError::Diverged { seq: 600, how: Divergence::Different }),
        "{err:?}"
    );
    assert!(err.to_string().contains("seq 600"), "{err}");

    // Postgres lacks a record inside its range.
    let db = TestDb::new();
    postgres_with(&db, &records[..699]);
    postgres_with(&db, &records[700..]);
    let err = load_state(&mut journal, Some(&db.config("robsond-recover"))).expect_err("refused");
    assert!(
        matches!(err, RecoverError::Diverged { seq: 700, how: Divergence::MissingInPostgres }),
        "{err:?}"
    );

    // The journal lacks one Postgres has.
    let holey = tempfile::tempdir().expect("tempdir");
    let mut holey_journal = journal_with(
        holey.path(),
        &records[..299].iter().chain(&records[300..]).copied().collect::<Vec<_>>(),
    );
    let db = TestDb::new();
    postgres_with(&db, &records);
    let err =
        load_state(&mut holey_journal, Some(&db.config("robsond-recover"))).expect_err("refused");
    assert!(
        matches!(err, RecoverError::Diverged { seq: 300, how: Divergence::MissingInJournal }),
        "{err:?}"
    );

    // Postgres continues only after a hole past the journal's end.
    let short = tempfile::tempdir().expect("tempdir");
    let mut short_journal = journal_with(short.path(), &records[..500]);
    let db = TestDb::new();
    postgres_with(&db, &records[800..]);
    let err =
        load_state(&mut short_journal, Some(&db.config("robsond-recover"))).expect_err("refused");
    assert!(
        matches!(err, RecoverError::Disjoint { journal_last: 500, postgres_first: 801 }),
        "{err:?}"
    );
    assert_eq!(short_journal.last_seq(), 500, "nothing appended to a refused journal");
}

#[test]
fn a_history_cut_inside_a_live_position_is_refused() {
    let stream = waves(3_000, Some(1_000));
    let (long_id, long_first) = stream.long_lived.expect("long-lived");
    let dir = tempfile::tempdir().expect("tempdir");
    // A journal whose start was pruned away past the long-lived position's first record, to
    // the start of a later quiet stretch: every other position there begins in the journal.
    let start = stream.records[long_first as usize + 50..]
        .iter()
        .position(|r| matches!(r.event, engine::events::Journal::PriceStale { .. }))
        .expect("a quiet stretch")
        + long_first as usize
        + 50;
    let mut journal = journal_with(dir.path(), &stream.records[start..]);
    let err = load_state(&mut journal, None).expect_err("refused");
    match err {
        RecoverError::Fold {
            origin: Origin::Journal,
            error: RestoreError::UnknownPosition { id, seq },
        } => {
            assert_eq!(id, long_id, "the live position whose start is gone");
            assert!(seq > long_first + 50);
        }
        other => panic!("expected UnknownPosition, got {other:?}"),
    }
}

/// At every point of a history, a fold started at the cut `RestartFold` offers restores what
/// the whole prefix restores; a fold started at `oldest_needed_seq` does not always even fold.
#[test]
fn restart_cuts_are_exact_where_oldest_needed_seq_is_not() {
    let records = waves(2_500, Some(2_000)).records;
    let mut restart = RestartFold::new();
    let mut oldest_needed_fails = 0;
    let mut checked = 0;
    for (i, record) in records.iter().enumerate() {
        restart.observe(record).expect("folds");
        let prefix = &records[..=i];
        let cut = restart.cut_within(record.seq).expect("a history starting quiet has a cut");
        let from_cut = fold_all(&prefix[cut as usize - 1..]);
        assert_eq!(restored(&from_cut), restored(restart.fold()), "prefix ..={}, cut {cut}", i + 1);
        checked += 1;

        let oldest = restart.fold().oldest_needed_seq() as usize;
        let mut fold = engine::JournalFold::new();
        if prefix
            .get(oldest.saturating_sub(1)..)
            .unwrap_or(&[])
            .iter()
            .any(|r| fold.apply(r).is_err())
        {
            oldest_needed_fails += 1;
        }
    }
    assert_eq!(checked, records.len());
    assert!(oldest_needed_fails > 0, "the waves make oldest_needed_seq fail somewhere");
}

#[test]
fn an_unreachable_postgres_is_tolerated_only_with_a_journal() {
    let closed_port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let mut config = PgConfig::new(format!("host=127.0.0.1 port={closed_port} user=nobody"));
    config.connect_timeout = std::time::Duration::from_secs(2);
    let records = waves(200, None).records;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut journal = journal_with(dir.path(), &records);
    let loaded = load(&mut journal, Some(&config));
    assert_eq!((loaded.source, loaded.last_seq), (Source::Journal, 200));
    assert!(matches!(loaded.postgres, PostgresCheck::Unreachable(_)), "{:?}", loaded.postgres);

    let empty = tempfile::tempdir().expect("tempdir");
    let mut journal = open(empty.path());
    let err = load_state(&mut journal, Some(&config)).expect_err("refused");
    assert!(matches!(err, RecoverError::PostgresUnavailable(_)), "{err:?}");
}

#[test]
fn undecodable_records_are_named_with_their_source_and_seq() {
    let records = waves(20, None).records;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut journal = journal_with(dir.path(), &records[..4]);
    journal.append(5, &[1, 5, 0, 250]).expect("append");
    let err = load_state(&mut journal, None).expect_err("refused");
    assert!(matches!(err, RecoverError::Decode { origin: Origin::Journal, seq: 5, .. }), "{err:?}");
    assert!(err.to_string().contains("journal record 5"), "{err}");

    // A record stored under another seq than its own.
    let moved = tempfile::tempdir().expect("tempdir");
    let mut journal = journal_with(moved.path(), &records[..4]);
    let mut buf = Vec::new();
    codec::encode(&records[10], &mut buf);
    journal.append(5, &buf).expect("append");
    let err = load_state(&mut journal, None).expect_err("refused");
    assert!(
        matches!(err, RecoverError::SeqMismatch { origin: Origin::Journal, seq: 5, decoded: 11 }),
        "{err:?}"
    );

    let db = TestDb::new();
    postgres_with(&db, &records[..2]);
    db.client()
        .execute(
            "INSERT INTO events (seq, at_ns, kind, payload) VALUES (3, 0, 'resumed', '\\x0103')",
            &[],
        )
        .expect("insert");
    let empty = tempfile::tempdir().expect("tempdir");
    let mut journal = open(empty.path());
    let err = load_state(&mut journal, Some(&db.config("robsond-recover"))).expect_err("refused");
    assert!(
        matches!(err, RecoverError::Decode { origin: Origin::Postgres, seq: 3, .. }),
        "{err:?}"
    );
}
