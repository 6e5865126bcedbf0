//! The Postgres follower against a real server: every journaled record reaches `events` exactly
//! once through killed sessions and a follower restart, pruning waits for Postgres and still
//! keeps what a restart needs, a database unreachable from the start only delays the copy, an
//! empty database is filled from the journal's cut (and then restores the state alone), and a
//! database left behind a pruned journal stops the follower with a clear error.

mod pg_common;

mod cold_common;

use std::net::TcpListener;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use cold_common::*;
use engine::Record;
use persist::codec;
use persist::cold::{
    ColdConfig, ColdStatus, ColdWriter, FollowerConfig, FollowerError, PgFollower,
};
use persist::journal::Journal;
use persist::pg::{PgConfig, PgWriter};
use persist::recover::{RestartFold, Source, load_state};
use pg_common::TestDb;
use postgres::Client;
use rtrb::RingBuffer;

fn follower_config() -> FollowerConfig {
    FollowerConfig { batch_max: 1_000, idle_wait: Duration::from_millis(2) }
}

fn cold_config(postgres: bool) -> ColdConfig {
    ColdConfig { prune_interval: Duration::from_millis(1), postgres, ..ColdConfig::default() }
}

/// `events` holds exactly `expected`, each once, with the payload of that very record.
fn assert_events(client: &mut Client, expected: &[Record]) {
    let row = client
        .query_one("SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM events", &[])
        .expect("events");
    let (n, distinct, min, max): (i64, i64, Option<i64>, Option<i64>) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let (first, last) = (expected[0].seq as i64, expected[expected.len() - 1].seq as i64);
    let len = expected.len() as i64;
    assert_eq!((n, distinct, min, max), (len, len, Some(first), Some(last)));
    let stored: Vec<Record> = client
        .query("SELECT seq, payload FROM events ORDER BY seq", &[])
        .expect("rows")
        .iter()
        .map(|row| {
            let record = codec::decode(row.get(1)).expect("payload decodes");
            assert_eq!(record.seq as i64, row.get::<_, i64>(0));
            record
        })
        .collect();
    assert!(stored == expected, "events differ from the journaled records");
}

/// Waits until Postgres confirmed `at`, failing at once if the follower died.
fn wait_confirmed(status: &ColdStatus, at: u64) {
    wait_until("the copy to progress", || {
        assert!(!status.follower_dead(), "follower died: {:?}", status.follower_error());
        status.pg_confirmed() >= at
    });
}

fn closed_port_config() -> PgConfig {
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    PgConfig::new(format!("host=127.0.0.1 port={port} user=nobody connect_timeout=2"))
        .with_backoff(Duration::from_millis(5), Duration::from_millis(50))
}

#[test]
fn every_record_reaches_postgres_once_through_killed_sessions_and_a_follower_restart() {
    const N: usize = 40_000;
    let mut db = TestDb::new();
    let stream = waves(N, Some(30_000));
    let (_, long_first) = stream.long_lived.expect("long-lived");
    let dir = tempfile::tempdir().expect("tempdir");
    let (journal, _) = Journal::open(dir.path(), small_segments()).expect("open");
    let (producer, consumer) = RingBuffer::new(4096);
    let writer =
        ColdWriter::new(journal, consumer, RestartFold::new(), cold_config(true)).expect("writer");
    let feed = writer.feed();
    let cold = writer.spawn().expect("spawn");
    let status = cold.status();
    let app = format!("robsond-follow-{}", db.schema);
    let first = PgFollower::new(db.config(&app), feed.clone(), follower_config())
        .spawn()
        .expect("spawn follower");
    let producing = produce(stream.records.clone(), producer);

    let first_progress = first.progress();
    let mut kills = 0;
    for at in [6_000, 12_000] {
        wait_confirmed(&status, at);
        wait_until("a live session", || first_progress.connected());
        kills += db.terminate(&app);
    }
    wait_confirmed(&status, 18_000);
    first.stop_and_join().expect("a clean stop");
    let stopped_at = status.pg_confirmed();
    assert!(stopped_at < N as u64, "stopped midway ({stopped_at})");

    // A new follower resumes from what Postgres holds.
    let second =
        PgFollower::new(db.config(&app), feed, follower_config()).spawn().expect("spawn follower");
    let second_progress = second.progress();
    wait_confirmed(&status, 26_000);
    wait_until("a live session", || second_progress.connected());
    kills += db.terminate(&app);
    let producer = producing.join().expect("producer");
    wait_until("everything durable", || status.durable_seq() == N as u64);
    wait_confirmed(&status, N as u64);
    assert_eq!(status.pg_lag(), 0);
    assert!(kills >= 2, "sessions killed: {kills}");
    assert!(first_progress.connects() >= 2 && second_progress.connects() >= 2, "reconnected");
    assert!(status.pg_retries() >= 2);
    // Exactly once: the rows each follower inserted add up to the records, none twice.
    assert_eq!(first_progress.events_written() + second_progress.events_written(), N as u64);
    assert_events(&mut db.client(), &stream.records);

    // Pruned below what Postgres confirmed, never below the long-lived position's start.
    let expected = expected_cut(&stream.records, N as u64);
    assert!(expected <= long_first);
    wait_until("the cut", || status.restart_cut() == expected);
    wait_until("the prune", || status.journal_first_seq() > 1);
    drop(producer);
    second.stop_and_join().expect("a clean stop");
    cold.join().expect("a clean end");
    let first_kept = status.journal_first_seq();
    assert!(first_kept <= expected && first_kept > 1, "journal starts at {first_kept}");
    assert!(read_journal(dir.path(), 1).iter().any(|r| r.seq == long_first));

    // The pruned journal restores the whole history's state, alone or checked against Postgres.
    let (mut journal, _) = Journal::open(dir.path(), small_segments()).expect("reopen");
    let full = restored(&fold_all(&stream.records));
    let loaded = load_state(&mut journal, None).expect("loads");
    assert_eq!(restored(loaded.fold()), full);
    let loaded = load_state(&mut journal, Some(&db.config("robsond-load"))).expect("loads");
    assert_eq!((loaded.source, loaded.compared), (Source::Journal, N as u64 - expected + 1));
    assert_eq!(restored(loaded.fold()), full);
}

#[test]
fn postgres_unreachable_from_the_start_only_delays_the_copy() {
    const N: usize = 6_000;
    let db = TestDb::new();
    let records = waves(N, None).records;
    let dir = tempfile::tempdir().expect("tempdir");
    let (journal, _) = Journal::open(dir.path(), small_segments()).expect("open");
    let (producer, consumer) = RingBuffer::new(4096);
    let writer =
        ColdWriter::new(journal, consumer, RestartFold::new(), cold_config(true)).expect("writer");
    let feed = writer.feed();
    let cold = writer.spawn().expect("spawn");
    let status = cold.status();
    let unreachable = PgFollower::new(closed_port_config(), feed.clone(), follower_config())
        .spawn()
        .expect("spawn follower");

    let producer = produce(records[..N / 2].to_vec(), producer).join().expect("producer");
    wait_until("the first half durable", || status.durable_seq() == N as u64 / 2);
    wait_until("failed attempts", || status.pg_retries() >= 3);
    // The journal took everything; readiness sees the lag; nothing Postgres lacks is pruned.
    assert_eq!((status.pg_confirmed(), status.pg_lag()), (0, N as u64 / 2));
    assert!(!status.pg_connected() && !status.follower_dead() && !status.is_dead());
    assert!(status.pg_last_retry_error().is_some_and(|e| e.contains("connection")));
    assert_eq!(
        (status.journal_first_seq(), status.segments_pruned(), status.restart_cut()),
        (1, 0, 1)
    );
    unreachable.stop_and_join().expect("stops while retrying");

    // Postgres reachable: a follower with a good address catches up while records keep coming.
    let reachable = PgFollower::new(db.config("robsond-late"), feed, follower_config())
        .spawn()
        .expect("spawn follower");
    let producer = produce(records[N / 2..].to_vec(), producer).join().expect("producer");
    wait_confirmed(&status, N as u64);
    assert_eq!(status.pg_lag(), 0);
    assert!(status.pg_connected());
    assert_events(&mut db.client(), &records);
    wait_until("pruning once confirmed", || status.journal_first_seq() > 1);
    drop(producer);
    reachable.stop_and_join().expect("clean stop");
    cold.join().expect("clean end");
}

/// Run without Postgres, the journal was pruned; Postgres is added later, empty. It is filled
/// from the journal's cut, without the head the journal no longer has, and can then restore the
/// state on its own (a new pod with an empty journal).
#[test]
fn an_empty_database_is_filled_from_the_cut_and_restores_alone() {
    const N: usize = 5_000;
    let db = TestDb::new();
    let stream = waves(N, Some(4_000));
    let dir = tempfile::tempdir().expect("tempdir");
    let (journal, _) = Journal::open(dir.path(), small_segments()).expect("open");
    let (producer, consumer) = RingBuffer::new(4096);
    let writer =
        ColdWriter::new(journal, consumer, RestartFold::new(), cold_config(false)).expect("writer");
    let feed = writer.feed();
    let cold = writer.spawn().expect("spawn");
    let status = cold.status();
    let producer = produce(stream.records.clone(), producer).join().expect("producer");
    let cut = expected_cut(&stream.records, N as u64);
    wait_until("the cut", || status.restart_cut() == cut);
    wait_until("the prune", || status.journal_first_seq() > 1);

    let follower = PgFollower::new(db.config("robsond-fill"), feed, follower_config())
        .spawn()
        .expect("spawn follower");
    wait_confirmed(&status, N as u64);
    follower.stop_and_join().expect("clean stop");
    drop(producer);
    cold.join().expect("clean end");
    assert_events(&mut db.client(), &stream.records[cut as usize - 1..]);

    let empty = tempfile::tempdir().expect("tempdir");
    let (mut journal, _) = Journal::open(empty.path(), small_segments()).expect("open");
    let loaded = load_state(&mut journal, Some(&db.config("robsond-load"))).expect("loads");
    assert_eq!((loaded.source, loaded.restart.start()), (Source::Postgres, cut));
    assert_eq!(restored(loaded.fold()), restored(&fold_all(&stream.records)));
}

#[test]
fn a_database_behind_a_pruned_journal_stops_the_follower() {
    let db = TestDb::new();
    let records = waves(3_000, None).records;
    let mut seed = PgWriter::new(db.config("robsond-seed"));
    seed.write(&records[..100]).expect("seed");

    let dir = tempfile::tempdir().expect("tempdir");
    let (journal, _) = Journal::open(dir.path(), small_segments()).expect("open");
    let (producer, consumer) = RingBuffer::new(4096);
    let writer =
        ColdWriter::new(journal, consumer, RestartFold::new(), cold_config(false)).expect("writer");
    let feed = writer.feed();
    let cold = writer.spawn().expect("spawn");
    let status = cold.status();
    let producer = produce(records.clone(), producer).join().expect("producer");
    wait_until("the prune", || status.journal_first_seq() > 101);
    drop(producer);
    cold.join().expect("clean end");

    let stop = AtomicBool::new(false);
    let err = PgFollower::new(db.config("robsond-behind"), feed, follower_config())
        .run(&stop)
        .expect_err("cannot continue");
    let first = status.journal_first_seq();
    assert!(
        matches!(err, FollowerError::JournalAhead { confirmed: 100, next_in_journal } if next_in_journal == first),
        "{err:?}"
    );
    assert!(status.follower_dead());
    assert!(status.follower_error().is_some_and(|e| e.contains("seq 100")));
    assert_events(&mut db.client(), &records[..100]);
}
