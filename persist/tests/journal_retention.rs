//! Retention: only whole segments at or below the caller's watermark go, oldest first, never
//! the active one, and the configured count and age floors hold.

mod journal_common;

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use journal_common::*;
use persist::journal::{Journal, JournalConfig, Pruned, segment_file_name};

const PAYLOAD_LEN: usize = 30;

fn payload(seq: u64) -> Vec<u8> {
    fixed_payload(seq, PAYLOAD_LEN)
}

/// Records 1..=last, four per segment: segments 1, 5, 9, … and the active one holds the rest.
fn journal_with(dir: &Path, last: u64, config: JournalConfig) -> Journal {
    let (mut journal, _) = Journal::open(dir, config).expect("open");
    for seq in 1..=last {
        journal.append(seq, &payload(seq)).expect("append");
    }
    journal.sync().expect("sync");
    journal
}

fn config() -> JournalConfig {
    fixed_config(4, PAYLOAD_LEN, 1)
}

fn segment_bytes() -> u64 {
    config().segment_bytes
}

#[test]
fn only_whole_segments_at_or_below_the_watermark_go_and_never_the_active_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut journal = journal_with(dir.path(), 18, config());
    assert_eq!(segment_bases(dir.path()), [1, 5, 9, 13, 17]);

    assert_eq!(journal.prune(0).expect("prune"), Pruned { segments: 0, bytes: 0, first_seq: 1 });
    // 5..=8 is not wholly at or below 7, so only segment 1 goes.
    assert_eq!(
        journal.prune(7).expect("prune"),
        Pruned { segments: 1, bytes: segment_bytes(), first_seq: 5 }
    );
    assert_eq!(segment_bases(dir.path()), [5, 9, 13, 17]);
    assert_eq!(journal.prune(8).expect("prune").segments, 1);
    assert_eq!(segment_bases(dir.path()), [9, 13, 17]);

    // Everything is at or below the watermark, but the active segment stays.
    let pruned = journal.prune(u64::MAX).expect("prune");
    assert_eq!((pruned.segments, pruned.first_seq), (2, 17));
    assert_eq!(segment_bases(dir.path()), [17]);
    assert_eq!(journal.first_seq(), 17);
    assert_eq!(journal.stats().segments_removed, 4);

    // The active segment goes on taking records, and the journal reopens from where it starts.
    for seq in 19..=22 {
        journal.append(seq, &payload(seq)).expect("append");
    }
    drop(journal);
    let (journal, recovery) = Journal::open(dir.path(), config()).expect("reopen");
    assert!(recovery.was_clean(), "{recovery}");
    assert_eq!((recovery.first_seq, recovery.last_seq, recovery.records), (17, 22, 6));
    let records: Vec<_> = journal.reader_from(1).collect::<Result<_, _>>().expect("read");
    assert_records(&records, 17..=22, payload);
}

#[test]
fn the_newest_segments_are_kept_when_configured() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut journal = journal_with(dir.path(), 24, JournalConfig { keep_segments: 3, ..config() });
    assert_eq!(segment_bases(dir.path()), [1, 5, 9, 13, 17, 21]);
    assert_eq!(journal.prune(8).expect("prune").segments, 2, "the watermark still binds");
    assert_eq!(journal.prune(u64::MAX).expect("prune").segments, 1);
    assert_eq!(segment_bases(dir.path()), [13, 17, 21]);
    assert_eq!(journal.prune(u64::MAX).expect("prune").segments, 0);
    assert_records(&read_all(dir.path()), 13..=24, payload);
}

#[test]
fn segments_younger_than_the_age_floor_are_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = JournalConfig { keep_age: Duration::from_secs(3600), ..config() };
    let mut journal = journal_with(dir.path(), 20, config);
    assert_eq!(segment_bases(dir.path()), [1, 5, 9, 13, 17]);
    // Segments 1 and 5 were last written two hours ago; segment 13 too, but 9 is recent, and
    // deletion stops at the first segment that must stay.
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    for base in [1, 5, 13] {
        let file = File::options()
            .write(true)
            .open(dir.path().join(segment_file_name(base)))
            .expect("open segment");
        file.set_modified(two_hours_ago).expect("set mtime");
    }
    let pruned = journal.prune(u64::MAX).expect("prune");
    assert_eq!((pruned.segments, pruned.first_seq), (2, 9));
    assert_eq!(segment_bases(dir.path()), [9, 13, 17]);
}

#[test]
fn a_reader_in_a_segment_being_pruned_reads_on_and_a_new_reader_starts_at_the_oldest_left() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut journal = journal_with(dir.path(), 12, config());
    let mut reader = journal.reader_from(2);
    let first = reader.read_next().expect("read").map(|r| r.seq);
    assert_eq!(first, Some(2));
    assert_eq!(journal.prune(8).expect("prune").segments, 2);
    // Its open segment is unlinked, not gone; the next one it needs was deleted too, so it
    // moves to the oldest that is left.
    let rest: Vec<_> = reader.collect::<Result<_, _>>().expect("read on");
    assert_records(&rest, [3, 4, 9, 10, 11, 12], payload);
    let records: Vec<_> = journal.reader_from(1).collect::<Result<_, _>>().expect("read");
    assert_records(&records, 9..=12, payload);
}

#[test]
fn pruning_up_to_what_a_following_reader_confirmed_never_costs_it_a_record() {
    // The Postgres writer's situation: it follows the journal and confirms what it stored, and
    // the cold thread prunes up to that confirmation while appending.
    let dir = tempfile::tempdir().expect("temp dir");
    let last = 20_000u64;
    let config = JournalConfig {
        segment_bytes: 8 * 1024,
        sync_every_records: 100,
        sync_interval: NEVER,
        ..JournalConfig::default()
    };
    let (mut journal, _) = Journal::open(dir.path(), config).expect("open");
    let confirmed = Arc::new(AtomicU64::new(0));
    let mut reader = journal.reader_from(1);
    let follower = {
        let confirmed = Arc::clone(&confirmed);
        thread::spawn(move || {
            let give_up = Instant::now() + Duration::from_secs(60);
            let mut next = 1u64;
            while next <= last {
                assert!(Instant::now() < give_up, "reader stuck before seq {next}");
                match reader.read_next().expect("follow") {
                    Some(record) => {
                        assert_eq!(record.seq, next);
                        assert_eq!(record.payload, payload(next).as_slice());
                        confirmed.store(next, Ordering::Release);
                        next += 1;
                    }
                    None => thread::sleep(Duration::from_micros(200)),
                }
            }
        })
    };
    let mut pruned = 0;
    for seq in 1..=last {
        journal.append(seq, &payload(seq)).expect("append");
        if seq % 500 == 0 {
            let watermark = confirmed.load(Ordering::Acquire);
            let outcome = journal.prune(watermark).expect("prune");
            pruned += outcome.segments;
            assert!(outcome.first_seq <= watermark + 1 || outcome.segments == 0);
        }
    }
    journal.sync().expect("sync");
    follower.join().expect("reader thread");
    assert!(pruned > 0, "nothing was pruned while the reader followed");
    let left = journal.first_seq();
    assert_records(&read_all(dir.path()), left..=last, payload);
}
