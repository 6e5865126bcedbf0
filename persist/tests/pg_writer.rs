//! The writer against a real Postgres: records round-trip through `events`, the projections say
//! what the records say (checked against the engine that wrote them), and replays of any shape
//! write nothing twice.

mod pg_common;

use engine::events::Journal;
use engine::{CoreState, Record, SafetyState, State};
use persist::codec;
use persist::pg::{PgWriter, WriteError};
use pg_common::*;
use postgres::Client;

fn write_in(db: &TestDb, records: &[Record], batch: usize) -> PgWriter {
    let mut writer = PgWriter::new(db.config("robsond-test-writer"));
    for chunk in records.chunks(batch) {
        writer.write(chunk).expect("batch commits");
    }
    writer
}

fn text(client: &mut Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let rows = client.query(sql, &[]).expect(sql);
    rows.iter().map(|r| (0..r.len()).map(|i| r.get::<_, Option<String>>(i)).collect()).collect()
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Core(CoreState::Armed) => "armed",
        State::Core(CoreState::Entering) => "entering",
        State::Core(CoreState::Active) => "active",
        State::Core(CoreState::Exiting) | State::Safety(SafetyState::Exiting) => "exiting",
        State::Core(CoreState::Closed) | State::Safety(SafetyState::Closed) => "closed",
        State::Core(CoreState::EntryFailed) => "entry_failed",
        State::Core(CoreState::Disarmed) => "disarmed",
        State::Safety(SafetyState::Protected) => "protected",
    }
}

#[test]
fn an_engine_day_round_trips_and_projects() {
    let db = TestDb::new();
    let scenario = Scenario::run();
    let records = &scenario.records;
    let mut writer = PgWriter::new(db.config("robsond-test-writer"));
    let (first, second) = records.split_at(records.len() / 2);
    assert_eq!(writer.write(first).expect("first half").inserted, first.len());
    assert_eq!(writer.write(second).expect("second half").inserted, second.len());
    assert_eq!(writer.progress().confirmed(), records.last().expect("records").seq);

    let mut client = db.client();
    // The log: every record, decoding back to itself, with its readable columns.
    let rows = client
        .query(
            "SELECT seq, at_ns, kind, payload, position_id, symbol FROM events ORDER BY seq",
            &[],
        )
        .expect("events");
    assert_eq!(rows.len(), records.len());
    for (row, record) in rows.iter().zip(records) {
        let payload: Vec<u8> = row.get(3);
        assert_eq!(codec::decode(&payload), Ok(*record));
        assert_eq!(row.get::<_, i64>(0) as u64, record.seq);
        assert_eq!(row.get::<_, i64>(1) as u64, record.at.0);
        assert_eq!(row.get::<_, String>(2), codec::kind(&record.event));
        if let Journal::PositionOpened { id, key, .. } = record.event {
            assert_eq!(row.get::<_, Option<i64>>(4), Some(id.0 as i64));
            assert_eq!(row.get::<_, Option<String>>(5).as_deref(), Some(key.symbol.as_str()));
        }
    }

    // Positions the engine still has: the projection says the same.
    let live: Vec<_> = scenario.engine.positions().collect();
    assert!(!live.is_empty(), "the scenario leaves the Safety Net's ETH position open");
    for view in &live {
        let row = &text(
            &mut client,
            &format!(
                "SELECT state, qty::text, entry::text, stop::text, symbol, side, modality \
                 FROM positions WHERE id = {}",
                view.id.0
            ),
        )[0];
        let modality = match view.modality {
            engine::Modality::Core => "core",
            engine::Modality::SafetyNet => "safety_net",
        };
        let expected = [
            state_name(view.state),
            &view.qty.to_string(),
            &view.entry.to_string(),
            &view.stop.to_string(),
            view.key.symbol.as_str(),
            view.key.side.as_str(),
            modality,
        ];
        let got: Vec<&str> = row.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect();
        assert_eq!(got, expected, "position {}", view.id.0);
    }

    // The ones the engine retired, as their records tell.
    let retired = text(
        &mut client,
        "SELECT id::text, state, closed_by, qty::text, entry::text, stop::text, span::text, \
                trail_level::text, trigger_price::text, technical_stop::text, capital::text, \
                risk_pct::text, ma_fast::text, signal_price::text, close_reason, \
                (closed_at_ns IS NOT NULL)::text \
         FROM positions WHERE state IN ('closed', 'disarmed') ORDER BY id",
    );
    let expect = |v: &[&str]| v.iter().map(|s| (*s != "NULL").then(|| s.to_string())).collect();
    let btc: Vec<Option<String>> = expect(&[
        "1",
        "closed",
        "own_order",
        "0.10000000",
        "50000.00000000",
        "51000.00000000",
        "1000.00000000",
        "2",
        "50500.00000000",
        "49000.00000000",
        "10000.00000000",
        "1.00000000",
        "2",
        "50000.00000000",
        "stop_hit",
        "true",
    ]);
    let sol: Vec<Option<String>> = expect(&[
        "2",
        "disarmed",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "1.00000000",
        "2",
        "NULL",
        "NULL",
        "true",
    ]);
    assert_eq!(retired, vec![btc, sol]);

    let orders = text(
        &mut client,
        "SELECT cid, position_id::text, side, qty::text, purpose, modality, status, \
                cum_qty::text, avg_price::text, queries::text, close_reason \
         FROM orders ORDER BY sent_at_ns",
    );
    let orders: Vec<Vec<&str>> =
        orders.iter().map(|r| r.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect()).collect();
    assert_eq!(
        orders,
        [
            [
                "rbd-CE-1-1",
                "1",
                "BUY",
                "0.10000000",
                "entry",
                "core",
                "filled",
                "0.10000000",
                "50000.00000000",
                "0",
                "NULL"
            ],
            [
                "rbd-CX-1-2",
                "1",
                "SELL",
                "0.10000000",
                "close",
                "core",
                "filled",
                "0.10000000",
                "50500.00000000",
                "1",
                "stop_hit"
            ],
        ]
    );

    let stops = text(
        &mut client,
        "SELECT position_id::text, kind, from_stop::text, to_stop::text, level::text, pct::text \
         FROM stop_changes ORDER BY seq",
    );
    let stops: Vec<Vec<&str>> =
        stops.iter().map(|r| r.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect()).collect();
    assert_eq!(
        stops,
        [
            ["1", "trailing", "49000.00000000", "50075.00000000", "1", "NULL"],
            ["1", "trailing", "50075.00000000", "51000.00000000", "2", "NULL"],
            ["3", "safety", "NULL", "2940.00000000", "NULL", "2.00000000"],
            ["3", "safety", "2940.00000000", "3038.00000000", "NULL", "2.00000000"],
        ]
    );
}

#[test]
fn a_stop_change_finds_its_previous_stop_in_an_earlier_batch() {
    let db = TestDb::new();
    let records = Scenario::run().records;
    // One record per batch: every stop change's predecessor was written by another transaction.
    write_in(&db, &records, 1);
    let mut client = db.client();
    let from: Vec<Option<String>> =
        text(&mut client, "SELECT from_stop::text FROM stop_changes ORDER BY seq")
            .into_iter()
            .map(|mut r| r.remove(0))
            .collect();
    let expected = [Some("49000.00000000"), Some("50075.00000000"), None, Some("2940.00000000")];
    assert_eq!(from, expected.map(|v| v.map(str::to_owned)));
}

#[test]
fn projections_do_not_depend_on_how_records_were_batched() {
    let records = synthetic(300);
    let reference_db = TestDb::new();
    write_in(&reference_db, &records, records.len());
    let reference = tables(&mut reference_db.client());
    assert_eq!(reference.events.len(), 300);
    assert!(reference.positions.len() > 20 && reference.orders.len() > 20);
    assert!(!reference.stop_changes.is_empty());
    for batch in [1, 7, 64] {
        let db = TestDb::new();
        write_in(&db, &records, batch);
        assert!(tables(&mut db.client()) == reference, "batches of {batch} differ");
    }
}

#[test]
fn replays_of_any_shape_write_nothing_twice() {
    let records = synthetic(1_500);
    let db = TestDb::new();
    let mut writer = write_in(&db, &records, 500);
    let mut client = db.client();
    let once = tables(&mut client);
    assert_eq!(once.events.len(), 1_500);

    // The same batches again: nothing inserted.
    for chunk in records.chunks(500) {
        let written = writer.write(chunk).expect("replay commits");
        assert_eq!((written.inserted, written.skipped), (0, chunk.len()));
    }
    // Overlapping windows, and a fresh writer (a restart) replaying from the start.
    for (from, to) in [(250, 750), (1_499, 1_500), (0, 1_500)] {
        let written = writer.write(&records[from..to]).expect("overlap commits");
        assert_eq!(written.inserted, 0);
    }
    let mut restarted = PgWriter::new(db.config("robsond-test-writer-2"));
    assert_eq!(restarted.connect().expect("connects"), 1_500, "resumes after the last seq");
    restarted.write(&records[..1_000]).expect("replay after restart");
    assert!(tables(&mut client) == once, "replays changed the tables");

    // An overlap that also carries new records: only the new ones land, projected once.
    let more = synthetic(1_800);
    let written = restarted.write(&more[1_200..]).expect("overlap with new records");
    assert_eq!((written.inserted, written.skipped), (300, 300));
    let fresh = TestDb::new();
    write_in(&fresh, &more, 1_800);
    assert!(tables(&mut client) == tables(&mut fresh.client()), "overlap projected differently");
    assert_eq!(restarted.progress().events_written(), 300);
}

#[test]
fn another_history_under_the_same_seqs_is_refused_whole() {
    let db = TestDb::new();
    let records = synthetic(200);
    let mut writer = write_in(&db, &records[..100], 100);
    let mut client = db.client();
    let before = tables(&mut client);

    // Records 91..=110 where 95 is not what was written: a second writer's history.
    let mut other: Vec<Record> = records[90..110].to_vec();
    other[4].event = Journal::Resumed;
    match writer.write(&other) {
        Err(WriteError::Diverged { seq }) => assert_eq!(seq, 95),
        other => panic!("expected Diverged at 95, got {other:?}"),
    }
    assert!(!WriteError::Diverged { seq: 95 }.is_retryable());
    assert!(tables(&mut client) == before, "nothing of the refused batch landed");
    assert_eq!(writer.progress().confirmed(), 100);
}

#[test]
fn bad_batches_are_refused_before_anything_is_sent() {
    let db = TestDb::new();
    let records = synthetic(10);
    let mut writer = PgWriter::new(db.config("robsond-test-writer"));
    let mut shuffled = records.clone();
    shuffled.swap(3, 4);
    assert!(matches!(writer.write(&shuffled), Err(WriteError::Unordered { seq: 4 })));
    let mut twice = records.clone();
    twice[5].seq = twice[4].seq;
    assert!(matches!(writer.write(&twice), Err(WriteError::Unordered { .. })));
    let mut huge = records[..1].to_vec();
    huge[0].seq = u64::MAX;
    assert!(matches!(writer.write(&huge), Err(WriteError::OutOfRange { seq: u64::MAX })));
    assert_eq!(writer.progress().connects(), 0, "refused without a session");
    assert!(writer.write(&[]).is_ok());
    assert_eq!(count(&mut db.client(), "events"), 0);
}

#[test]
fn progress_reports_resume_point_and_lag() {
    let db = TestDb::new();
    let records = synthetic(300);
    let mut writer = PgWriter::new(db.config("robsond-test-writer"));
    let progress = writer.progress();
    assert_eq!(writer.connect().expect("connects"), 0, "an empty table resumes from the start");
    assert!(progress.connected());
    progress.note_journaled(300);
    assert_eq!(progress.lag(), 300);
    writer.write(&records[..120]).expect("commits");
    assert_eq!((progress.confirmed(), progress.lag()), (120, 180));
    writer.write(&records[120..]).expect("commits");
    assert_eq!((progress.confirmed(), progress.lag(), progress.batches_committed()), (300, 0, 2));

    let restarted = PgWriter::new(db.config("robsond-test-writer")).connect();
    assert_eq!(restarted.expect("connects"), 300);
}

#[test]
fn events_are_append_only() {
    let db = TestDb::new();
    write_in(&db, &synthetic(5), 5);
    let mut client = db.client();
    let err =
        client.execute("UPDATE events SET kind = 'x' WHERE seq = 1", &[]).expect_err("refused");
    assert!(err.to_string().contains("db error"), "{err}");
    let pg = persist::pg::PgError::from(err);
    assert_eq!(pg.code.as_deref(), Some("23001"), "{pg}");
    assert!(pg.message.contains("append-only"), "{pg}");
}

#[test]
fn an_unmigrated_schema_is_a_server_error_until_migrated() {
    let db = TestDb::empty();
    let records = synthetic(50);
    let mut writer = PgWriter::new(db.config("robsond-test-writer"));
    match writer.write(&records) {
        Err(WriteError::Server(err)) => assert_eq!(err.code.as_deref(), Some("42P01"), "{err}"),
        other => panic!("expected a server error, got {other:?}"),
    }
    assert!(matches!(writer.write(&records), Err(WriteError::Backoff { .. })), "not hammered");
    persist::pg::migrate(&mut db.client(), &db.schema).expect("migrates");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let written = writer.write_blocking(&records, &stop, |_| {}).expect("commits once migrated");
    assert_eq!(written.inserted, 50);
}
