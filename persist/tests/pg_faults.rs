//! The writer when Postgres misbehaves: sessions killed in the middle of a 100k-record burst,
//! and the server unreachable for a while (through a proxy the test cuts). Every record must
//! arrive exactly once, the projections must not count anything twice, and the lag must drain.

mod pg_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use engine::Record;
use engine::events::Journal;
use persist::pg::{PgWriter, WriteError, WriterProgress};
use pg_common::*;
use postgres::Client;

/// What the records imply for the tables, counted independently of the writer.
fn expected_counts(records: &[Record]) -> [i64; 4] {
    let mut positions = std::collections::HashSet::new();
    let (mut stops, mut queries) = (0, 0);
    for r in records {
        match r.event {
            Journal::Armed { id, .. }
            | Journal::PositionOpened { id, .. }
            | Journal::PositionDetected { id, .. } => {
                positions.insert(id);
            }
            Journal::StopMoved { .. } | Journal::SafetyStopSet { .. } => stops += 1,
            Journal::QuerySent { .. } => queries += 1,
            _ => {}
        }
    }
    [records.len() as i64, positions.len() as i64, stops, queries]
}

/// Every seq 1..=n exactly once, and projections that applied every record once: the query
/// counter adds up per batch, so a record projected twice would show in its sum.
fn assert_exactly_once(client: &mut Client, records: &[Record]) {
    let row = client
        .query_one("SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM events", &[])
        .expect("events");
    let (n, distinct, min, max): (i64, i64, Option<i64>, Option<i64>) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let last = records.len() as i64;
    assert_eq!((n, distinct, min, max), (last, last, Some(1), Some(last)), "seqs 1..={last}");
    let got = [
        n,
        count(client, "positions"),
        count(client, "stop_changes"),
        client
            .query_one("SELECT coalesce(sum(queries), 0)::int8 FROM orders", &[])
            .expect("queries")
            .get(0),
    ];
    assert_eq!(got, expected_counts(records), "[events, positions, stop changes, queries]");
    let payloads: i64 = client
        .query_one("SELECT count(*) FROM events WHERE length(payload) = 0", &[])
        .expect("payloads")
        .get(0);
    assert_eq!(payloads, 0);
}

/// The cold thread's side: hands batches over in order and keeps each until it is committed.
fn spawn_writer(
    mut writer: PgWriter,
    batches: mpsc::Receiver<Vec<Record>>,
) -> thread::JoinHandle<(PgWriter, Vec<String>)> {
    thread::spawn(move || {
        let stop = AtomicBool::new(false);
        let mut errors = Vec::new();
        for batch in batches {
            writer
                .write_blocking(&batch, &stop, |err| errors.push(err.to_string()))
                .expect("every batch commits in the end");
        }
        (writer, errors)
    })
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_burst_survives_its_sessions_being_killed() {
    const N: usize = 100_000;
    let mut db = TestDb::new();
    let records = synthetic(N);
    let app = format!("robsond-burst-{}", db.schema);
    let writer = PgWriter::new(db.config(&app));
    let progress = writer.progress();
    let (tx, rx) = mpsc::channel();
    let handle = spawn_writer(writer, rx);
    for batch in records.chunks(2_000) {
        progress.note_journaled(batch.last().expect("batch").seq);
        tx.send(batch.to_vec()).expect("writer alive");
    }
    drop(tx);

    // Kill the writer's session at several points of the burst, whatever it is doing then.
    let mut kills = 0;
    for at in [10_000, 35_000, 60_000, 85_000] {
        wait_until("the burst to progress", || progress.confirmed() >= at);
        wait_until("a live session", || progress.connected());
        kills += db.terminate(&app);
    }
    let (writer, errors) = handle.join().expect("writer thread");
    assert!(kills >= 3, "sessions killed: {kills}");
    assert!(progress.connects() > 1, "the writer reconnected ({} sessions)", progress.connects());
    assert!(!errors.is_empty() && errors.iter().all(|e| e.starts_with("connection")), "{errors:?}");
    assert_eq!((progress.confirmed(), progress.lag()), (N as u64, 0));
    assert_exactly_once(&mut db.client(), &records);
    drop(writer);
}

#[test]
fn postgres_going_away_and_coming_back_loses_nothing() {
    let db = TestDb::new();
    let (upstream, _) = via_port(&db.url, 0);
    let proxy = Proxy::start(upstream);
    let mut config = db.config("robsond-outage");
    config.url = via_port(&db.url, proxy.port).1;
    let records = synthetic(20_000);
    let writer = PgWriter::new(config);
    let progress = writer.progress();
    let (tx, rx) = mpsc::channel();
    let handle = spawn_writer(writer, rx);

    // The cold thread keeps journaling through the outage: batches pile up, none is dropped.
    let mut batches = records.chunks(1_000);
    let mut send = |n: usize, progress: &WriterProgress| {
        for batch in batches.by_ref().take(n) {
            progress.note_journaled(batch.last().expect("batch").seq);
            tx.send(batch.to_vec()).expect("writer alive");
        }
    };
    send(8, &progress);
    wait_until("the first batches", || progress.confirmed() >= 5_000);
    proxy.cut();
    let failures = progress.failures();
    send(6, &progress);
    wait_until("the writer to notice", || !progress.connected() && progress.failures() > failures);
    // Down for a while: attempts keep failing (and backing off), the lag stays.
    let failing = progress.failures();
    wait_until("a few failed attempts", || progress.failures() >= failing + 3);
    assert!(progress.lag() > 0 && !progress.connected());
    proxy.restore();
    send(usize::MAX, &progress);
    drop(tx);
    let (_writer, errors) = handle.join().expect("writer thread");
    assert!(errors.iter().any(|e| e.starts_with("connection")), "{errors:?}");
    assert_eq!((progress.confirmed(), progress.lag()), (20_000, 0), "the lag drained");
    assert!(progress.connects() >= 2);
    assert_exactly_once(&mut db.client(), &records);
}

#[test]
fn a_writer_started_while_postgres_is_down_waits_for_it() {
    let db = TestDb::new();
    let (upstream, _) = via_port(&db.url, 0);
    let proxy = Proxy::start(upstream);
    proxy.cut();
    let mut config = db.config("robsond-late");
    config.url = via_port(&db.url, proxy.port).1;
    let records = synthetic(500);
    let mut writer = PgWriter::new(config);

    match writer.write(&records) {
        Err(err @ WriteError::Connection(_)) => assert!(err.is_retryable()),
        other => panic!("expected a connection error, got {other:?}"),
    }
    // Within the backoff, nothing is attempted.
    assert!(matches!(writer.write(&records), Err(WriteError::Backoff { .. })));
    assert_eq!(writer.progress().lag(), 500);

    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            thread::sleep(Duration::from_millis(200));
            proxy.restore();
        });
        let written = writer.write_blocking(&records, &stop, |_| {}).expect("commits once back");
        assert_eq!(written.inserted, 500);
    });
    assert!(writer.progress().failures() >= 2);
    assert_eq!(writer.progress().lag(), 0);
    assert_exactly_once(&mut db.client(), &records);

    // A stop request ends a blocking write that cannot succeed, without committing anything.
    proxy.cut();
    let more = synthetic(600);
    let progress = writer.progress();
    let failures = progress.failures();
    thread::scope(|s| {
        s.spawn(|| {
            wait_until("failed attempts", || progress.failures() >= failures + 2);
            stop.store(true, Ordering::Release);
        });
        let outcome = writer.write_blocking(&more[500..], &stop, |_| {});
        assert!(matches!(outcome, Err(WriteError::Stopped)), "{outcome:?}");
    });
    assert_eq!(count(&mut db.client(), "events"), 500);
}
