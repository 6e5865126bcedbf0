//! The cold thread's journal side: records pushed through a real rtrb ring by a producer thread
//! are journaled in ring order and made durable, a stop or the producer's end drains the ring,
//! a refused append kills the thread visibly, and pruning never takes what a restart needs.

mod pg_common;

mod cold_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use cold_common::*;
use engine::Record;
use persist::cold::{ColdConfig, ColdError, ColdWriter};
use persist::journal::{Journal, JournalError};
use persist::recover::{self, RestartFold, Source, load_state};
use rtrb::RingBuffer;

const HOUR: Duration = Duration::from_secs(3600);

fn quiet_config() -> ColdConfig {
    ColdConfig { prune_interval: HOUR, ..ColdConfig::default() }
}

#[test]
fn every_record_from_the_ring_is_journaled_in_order_and_made_durable() {
    const N: usize = 100_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = waves(N, Some(N / 2));
    let (journal, _) = Journal::open(dir.path(), small_segments()).expect("open");
    let (producer, consumer) = RingBuffer::new(4096);
    let cold = ColdWriter::new(journal, consumer, RestartFold::new(), quiet_config())
        .expect("an empty journal and an empty fold")
        .spawn()
        .expect("spawn");
    let status = cold.status();

    // Watch what the status publishes while the burst runs: durable never passes appended and
    // never goes back.
    let watching = Arc::new(AtomicBool::new(true));
    let violations = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (status, watching, violations) =
            (Arc::clone(&status), Arc::clone(&watching), Arc::clone(&violations));
        thread::spawn(move || {
            let mut last = 0;
            let mut samples = 0u64;
            while watching.load(Ordering::Acquire) {
                let durable = status.durable_seq();
                let appended = status.appended_seq();
                if durable < last || durable > appended {
                    violations.fetch_add(1, Ordering::AcqRel);
                }
                last = durable;
                samples += 1;
                thread::yield_now();
            }
            samples
        })
    };
    let producer = produce(stream.records.clone(), producer).join().expect("producer");
    // Durable through the idle fsync deadline, while the producer is still there.
    wait_until("every record durable", || status.durable_seq() == N as u64);
    assert_eq!(status.appended_seq(), N as u64);
    assert!(!status.is_dead() && !status.is_finished());
    drop(producer);
    let summary = cold.join().expect("a clean end once the producer is gone");
    watching.store(false, Ordering::Release);
    let samples = watcher.join().expect("watcher");
    assert!(samples > 0);
    assert_eq!(violations.load(Ordering::Acquire), 0, "durable went back or passed appended");
    assert_eq!((summary.appended, summary.durable_seq), (N as u64, N as u64));
    assert!(status.is_finished() && !status.is_dead());

    assert_eq!(read_journal(dir.path(), 1), stream.records, "read back in ring order");
    let (journal, recovery) = Journal::open(dir.path(), small_segments()).expect("reopen");
    assert!(recovery.was_clean(), "{recovery:?}");
    assert_eq!((journal.first_seq(), journal.last_seq()), (1, N as u64));
    assert!(journal.stats().segments > 10, "small segments rotated");
}

#[test]
fn a_stop_drains_the_ring_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = waves(5_000, None);
    let (journal, _) = Journal::open(dir.path(), small_segments()).expect("open");
    let (producer, consumer) = RingBuffer::new(8192);
    let config = ColdConfig { idle_wait: Duration::from_millis(50), ..quiet_config() };
    let cold = ColdWriter::new(journal, consumer, RestartFold::new(), config)
        .expect("writer")
        .spawn()
        .expect("spawn");
    // The producer stays alive: only the stop ends the thread, and only after the ring is empty.
    let producer = produce(stream.records.clone(), producer).join().expect("producer");
    let summary = cold.stop_and_join().expect("clean stop");
    assert_eq!(summary.appended, 5_000);
    assert_eq!(summary.durable_seq, 5_000, "closing syncs what was waiting");
    assert_eq!(read_journal(dir.path(), 1), stream.records);
    drop(producer);
}

#[test]
fn a_refused_append_kills_the_thread_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut records = waves(100, None).records;
    // The hot thread handing the same seq twice is a bug the journal refuses.
    records.insert(50, records[49]);
    let (journal, _) = Journal::open(dir.path(), small_segments()).expect("open");
    let (producer, consumer) = RingBuffer::new(256);
    let cold = ColdWriter::new(journal, consumer, RestartFold::new(), quiet_config())
        .expect("writer")
        .spawn()
        .expect("spawn");
    let status = cold.status();
    let producer = produce(records, producer).join().expect("producer");
    let outcome = cold.join();
    match outcome {
        Err(ColdError::Journal {
            seq: 50,
            error: JournalError::SeqNotIncreasing { seq: 50, last: 50 },
        }) => {}
        other => panic!("expected the append of seq 50 to fail, got {other:?}"),
    }
    assert!(status.is_dead() && status.is_finished());
    let message = status.journal_error().expect("the error is published");
    assert!(message.contains("record 50"), "{message}");
    drop(producer);
}

#[test]
fn a_writer_refuses_a_fold_that_is_not_its_journals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = waves(10, None).records;
    let (mut journal, _) = Journal::open(dir.path(), small_segments()).expect("open");
    let mut buf = Vec::new();
    for r in &records {
        buf.clear();
        persist::codec::encode(r, &mut buf);
        journal.append(r.seq, &buf).expect("append");
    }
    let (_producer, consumer) = RingBuffer::new(16);
    match ColdWriter::new(journal, consumer, RestartFold::new(), quiet_config()) {
        Err(ColdError::NotLoaded { fold_last: 0, journal_last: 10 }) => {}
        other => panic!("expected NotLoaded, got {other:?}"),
    }
}

/// A record the fold refuses (an engine bug) is still journaled; only pruning stops, and says
/// why.
#[test]
fn a_record_that_does_not_fold_stops_pruning_not_journaling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut records = waves(3_000, None).records;
    let bad = records[100].seq;
    records[100].event = engine::events::Journal::Disarmed { id: engine::PositionId(999_999) };
    let (journal, _) = Journal::open(dir.path(), small_segments()).expect("open");
    let (producer, consumer) = RingBuffer::new(4096);
    let config = ColdConfig { prune_interval: Duration::ZERO, ..ColdConfig::default() };
    let cold = ColdWriter::new(journal, consumer, RestartFold::new(), config)
        .expect("writer")
        .spawn()
        .expect("spawn");
    let status = cold.status();
    let producer = produce(records.clone(), producer).join().expect("producer");
    wait_until("durable", || status.durable_seq() == 3_000);
    drop(producer);
    cold.join().expect("journaling went on");
    let message = status.restart_error().expect("the fold error is published");
    assert!(message.contains(&format!("record {bad}")), "{message}");
    assert!(status.restart_cut() < bad, "no cut past the refused record");
    assert!(!status.is_dead());
    assert_eq!(
        read_journal(dir.path(), status.journal_first_seq()).len() as u64,
        3_001 - status.journal_first_seq()
    );
}

/// Phase one journals a history of waves and prunes as it goes; the daemon restarts (load,
/// new writer); phase two adds a position that never closes and keeps pruning. Each time the
/// journal alone must restore exactly what the whole history does, and the long-lived
/// position's first record must survive.
#[test]
fn pruning_keeps_exactly_what_a_restart_needs() {
    const N: usize = 30_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = waves(N, Some(20_000));
    let (long_id, long_first) = stream.long_lived.expect("a long-lived position");
    let config = ColdConfig { prune_interval: Duration::ZERO, ..ColdConfig::default() };
    let (phase_one, phase_two) = stream.records.split_at(12_000);

    let run = |records: &[Record]| {
        let (mut journal, _) = Journal::open(dir.path(), small_segments()).expect("open");
        let loaded = load_state(&mut journal, None).expect("loads");
        let (producer, consumer) = RingBuffer::new(4096);
        let cold = ColdWriter::new(journal, consumer, loaded.restart, config.clone())
            .expect("the loaded fold is the journal's")
            .spawn()
            .expect("spawn");
        let status = cold.status();
        let producer = produce(records.to_vec(), producer).join().expect("producer");
        let last = records.last().expect("records").seq;
        wait_until("durable", || status.durable_seq() == last);
        // Pruning runs when idle: wait until it has moved as far as this history allows.
        let expected_cut = {
            let mut restart = RestartFold::new();
            for r in &stream.records[..last as usize] {
                restart.observe(r).expect("folds");
            }
            restart.cut_within(last).expect("a cut")
        };
        wait_until("the cut", || status.restart_cut() == expected_cut);
        wait_until("the prune", || status.journal_first_seq() > 1);
        drop(producer);
        cold.join().expect("clean end");
        (status, expected_cut, last)
    };

    let (status, cut, last) = run(phase_one);
    assert!(status.segments_pruned() > 0 && status.prune_failures() == 0);
    assert!(cut > 10_000, "phase one ends in quiet waves: the cut is near its end ({cut})");
    check_restart(dir.path(), &stream.records[..last as usize], cut);

    let (status, cut, last) = run(phase_two);
    assert_eq!(last, N as u64);
    assert!(status.segments_pruned() > 0);
    assert!(cut <= long_first, "cut {cut} passed the long-lived position's start {long_first}");
    assert!(cut + 200 > long_first, "nothing quiet after it, but all before it goes: {cut}");
    let kept = read_journal(dir.path(), 1);
    assert!(kept.first().expect("records").seq > 1, "pruned");
    assert!(
        kept.iter().any(|r| r.seq == long_first),
        "the long-lived position {long_id:?}'s first record {long_first} was pruned"
    );
    check_restart(dir.path(), &stream.records, cut);
}

/// The journal in `dir`, reopened and loaded alone, restores what the whole history does; it
/// starts at or below `cut` and skips what lies below the cut.
fn check_restart(dir: &std::path::Path, history: &[Record], cut: u64) {
    let (mut journal, _) = Journal::open(dir, small_segments()).expect("reopen");
    assert_eq!(recover::read_cut(dir).expect("cut file"), Some(cut));
    let first = journal.first_seq();
    assert!(first > 1 && first <= cut, "journal starts at {first}, cut {cut}");
    let loaded = load_state(&mut journal, None).expect("a pruned journal loads alone");
    assert_eq!(loaded.source, Source::Journal);
    assert_eq!(loaded.restart.start(), cut);
    assert_eq!(loaded.last_seq, history.last().expect("history").seq);
    assert_eq!(loaded.folded, loaded.last_seq - cut + 1);
    assert_eq!(restored(loaded.fold()), restored(&fold_all(history)));
}
