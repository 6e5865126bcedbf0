//! Appending and reading back: many records over many segments, reading from any sequence
//! number, durability as the reader sees it, and a reader following a writer on another thread.

mod journal_common;

use std::thread;
use std::time::{Duration, Instant};

use journal_common::*;
use persist::journal::{
    Journal, JournalConfig, JournalError, JournalReader, MAX_PAYLOAD_LEN, SeqGap,
};

fn config(segment_bytes: u64, sync_every_records: u32) -> JournalConfig {
    JournalConfig {
        segment_bytes,
        sync_every_records,
        sync_interval: NEVER,
        ..JournalConfig::default()
    }
}

#[test]
fn many_records_over_many_segments_read_back_from_any_seq() {
    let dir = tempfile::tempdir().expect("temp dir");
    let last = 3000u64;
    {
        let (mut journal, recovery) = Journal::open(dir.path(), config(4096, 200)).expect("open");
        assert_eq!(recovery.records, 0);
        assert!(recovery.was_clean());
        for seq in 1..=last {
            journal.append(seq, &payload_for(seq)).expect("append");
        }
        assert_eq!(journal.sync().expect("sync"), last);
        journal.close().expect("close");
    }
    let segments = segment_bases(dir.path());
    assert!(segments.len() > 20, "expected many segments, got {}", segments.len());
    assert_eq!(segments[0], 1);

    let (journal, recovery) = Journal::open(dir.path(), config(4096, 200)).expect("reopen");
    assert!(recovery.was_clean(), "{recovery}");
    assert_eq!((recovery.records, recovery.first_seq, recovery.last_seq), (last, 1, last));
    assert_eq!(recovery.segments, segments.len());
    assert_eq!(recovery.gaps, 0);

    // Segment boundaries with their neighbours, a spread of seqs in between, and the ends.
    let mut starts: Vec<u64> =
        segments.iter().step_by(4).flat_map(|&b| [b - 1, b, b + 1]).collect();
    starts.extend((0..=last + 2).step_by(331));
    starts.extend([0, 1, last, last + 1, u64::MAX]);
    for (index, from) in starts.into_iter().enumerate() {
        let records: Vec<_> =
            journal.reader_from(from).collect::<Result<_, _>>().expect("read from journal");
        assert_records(&records, from.max(1)..=last, payload_for);
        if index % 3 == 0 {
            assert_records(&read_from(dir.path(), from), from.max(1)..=last, payload_for);
        }
    }
}

#[test]
fn appends_continue_after_reopen_and_across_the_old_last_segment() {
    let dir = tempfile::tempdir().expect("temp dir");
    for round in 0..4u64 {
        let (mut journal, recovery) = Journal::open(dir.path(), config(1024, 7)).expect("open");
        assert_eq!(recovery.last_seq, round * 50);
        assert_eq!(journal.last_seq(), round * 50);
        assert_eq!(journal.durable_seq(), round * 50);
        for seq in round * 50 + 1..=(round + 1) * 50 {
            journal.append(seq, &payload_for(seq)).expect("append");
        }
        // Dropped without close: the drop syncs what is buffered.
    }
    assert_records(&read_all(dir.path()), 1..=200, payload_for);
}

#[test]
fn sequence_numbers_must_increase_and_gaps_are_allowed_but_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let seqs = [1u64, 2, 5, 6, 10, 11];
    {
        let (mut journal, _) = Journal::open(dir.path(), config(200, 1)).expect("open");
        for &seq in &seqs {
            journal.append(seq, &payload_for(seq)).expect("append");
        }
        assert!(matches!(journal.append(0, b"x"), Err(JournalError::ZeroSeq)));
        assert!(matches!(
            journal.append(11, b"x"),
            Err(JournalError::SeqNotIncreasing { seq: 11, last: 11 })
        ));
        assert!(matches!(
            journal.append(3, b"x"),
            Err(JournalError::SeqNotIncreasing { seq: 3, last: 11 })
        ));
        let too_large = vec![0u8; MAX_PAYLOAD_LEN as usize + 1];
        assert!(matches!(journal.append(12, &too_large), Err(JournalError::RecordTooLarge { .. })));
        let stats = journal.stats();
        assert_eq!(stats.appended, seqs.len() as u64, "refused appends are not counted");
        assert_eq!(stats.gaps, 2);
        assert_eq!(stats.last_gap, Some(SeqGap { after: 6, next: 10 }));
        // Refusals leave the journal usable.
        journal.append(12, &payload_for(12)).expect("append after refusals");
    }
    let (journal, recovery) = Journal::open(dir.path(), config(200, 1)).expect("reopen");
    assert_eq!(recovery.gaps, 2);
    assert_eq!(recovery.first_gap, Some(SeqGap { after: 2, next: 5 }));
    let all = [1u64, 2, 5, 6, 10, 11, 12];
    let read = |from| journal.reader_from(from).collect::<Result<Vec<_>, _>>().expect("read");
    assert_records(&read(1), all, payload_for);
    assert_records(&read(3), [5, 6, 10, 11, 12], payload_for);
    assert_records(&read(7), [10, 11, 12], payload_for);
    assert_records(&read(13), [], payload_for);
}

#[test]
fn records_become_readable_only_when_durable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut journal, _) = Journal::open(dir.path(), config(1 << 20, 10)).expect("open");
    let watch = journal.durable_watch();
    let mut reader = journal.reader_from(1);
    assert_eq!(journal.sync_deadline(), None);

    for seq in 1..=9 {
        journal.append(seq, &payload_for(seq)).expect("append");
    }
    assert_eq!((journal.durable_seq(), watch.get(), journal.last_seq()), (0, 0, 9));
    assert!(reader.read_next().expect("read").is_none(), "nothing is durable yet");

    journal.append(10, &payload_for(10)).expect("append");
    assert_eq!((journal.durable_seq(), watch.get()), (10, 10), "the tenth record fills the batch");
    let records: Vec<_> = reader.by_ref().collect::<Result<_, _>>().expect("read");
    assert_records(&records, 1..=10, payload_for);

    journal.append(11, &payload_for(11)).expect("append");
    assert!(reader.read_next().expect("read").is_none());
    let deadline = journal.sync_deadline().expect("a record waits");
    assert!(!journal.sync_if_due(deadline - Duration::from_millis(1)).expect("not due"));
    assert_eq!(journal.durable_seq(), 10);
    assert!(journal.sync_if_due(deadline).expect("due"));
    assert_eq!(journal.durable_seq(), 11);
    assert_eq!(journal.sync_deadline(), None);
    let record = reader.read_next().expect("read").expect("seq 11 is durable");
    assert_eq!((record.seq, record.payload), (11, payload_for(11).as_slice()));

    journal.append(12, &payload_for(12)).expect("append");
    assert_eq!(journal.sync().expect("sync"), 12);
    assert_eq!(reader.read_next().expect("read").map(|r| r.seq), Some(12));
    assert_eq!(journal.stats().syncs, 3);
}

#[test]
fn a_reader_on_another_thread_follows_the_writer_through_rotations() {
    let dir = tempfile::tempdir().expect("temp dir");
    let last = 20_000u64;
    let (journal, _) = Journal::open(dir.path(), config(16 * 1024, 64)).expect("open");
    let watch = journal.durable_watch();
    let mut reader = journal.reader_from(1);
    // The writer moves to its own thread, as it does to the cold thread in robsond.
    let writer = thread::spawn(move || {
        let mut journal = journal;
        for seq in 1..=last {
            journal.append(seq, &payload_for(seq)).expect("append");
        }
        journal.sync().expect("sync");
        journal.stats().segments_created
    });
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut next = 1u64;
    while next <= last {
        assert!(Instant::now() < give_up, "reader stuck before seq {next}");
        match reader.read_next().expect("follow") {
            Some(record) => {
                assert_eq!(record.seq, next);
                assert_eq!(record.payload, payload_for(next).as_slice());
                assert!(record.seq <= watch.get(), "seq {next} read before it was durable");
                next += 1;
            }
            None => thread::sleep(Duration::from_micros(200)),
        }
    }
    let segments_created = writer.join().expect("writer thread");
    assert!(reader.read_next().expect("read past the end").is_none());
    assert!(segments_created > 50, "the reader had to cross many rotations");
}

#[test]
fn a_read_only_reader_sees_whole_records_while_the_writer_holds_the_journal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut journal, _) = Journal::open(dir.path(), config(2048, 1000)).expect("open");
    for seq in 1..=300 {
        journal.append(seq, &payload_for(seq)).expect("append");
    }
    journal.sync().expect("sync");
    let mut outside = JournalReader::open_read_only(dir.path(), 250);
    let records: Vec<_> = outside.by_ref().collect::<Result<_, _>>().expect("read");
    assert_records(&records, 250..=300, payload_for);
    for seq in 301..=400 {
        journal.append(seq, &payload_for(seq)).expect("append");
    }
    journal.sync().expect("sync");
    let records: Vec<_> = outside.collect::<Result<_, _>>().expect("read on");
    assert_records(&records, 301..=400, payload_for);
}

#[test]
fn an_empty_or_missing_journal_reads_as_empty_and_bad_config_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let nested = dir.path().join("a/b/journal");
    let (journal, recovery) = Journal::open(&nested, JournalConfig::default()).expect("open");
    assert!(nested.is_dir());
    assert_eq!((recovery.records, recovery.last_seq, journal.first_seq()), (0, 0, 0));
    assert!(journal.reader_from(1).next().is_none());
    drop(journal);

    let bad = JournalConfig { sync_every_records: 0, ..JournalConfig::default() };
    assert!(matches!(Journal::open(&nested, bad), Err(JournalError::InvalidConfig(_))));
    let bad = JournalConfig { segment_bytes: 8, ..JournalConfig::default() };
    assert!(matches!(Journal::open(&nested, bad), Err(JournalError::InvalidConfig(_))));
}

#[test]
fn a_record_larger_than_a_segment_gets_a_segment_of_its_own() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let (mut journal, _) = Journal::open(dir.path(), config(256, 1)).expect("open");
        journal.append(1, &fixed_payload(1, 10)).expect("append");
        journal.append(2, &fixed_payload(2, 5000)).expect("append");
        journal.append(3, &fixed_payload(3, 10)).expect("append");
    }
    assert_eq!(segment_bases(dir.path()), [1, 2, 3]);
    let records = read_all(dir.path());
    assert_records(&records, 1..=3, |seq| fixed_payload(seq, if seq == 2 { 5000 } else { 10 }));
}
