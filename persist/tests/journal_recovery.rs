//! Start-up recovery on damaged files: torn tails are cut and the journal goes on; damage
//! anywhere else stops start-up, names the file and offset, and changes nothing on disk.
//!
//! The journals live on a memory filesystem where there is one: these tests open hundreds of
//! them, and what they check is the recovery logic, not the disk.

mod journal_common;

use std::fs;
use std::path::Path;

use journal_common::*;
use persist::journal::{
    Corruption, Journal, JournalConfig, JournalError, SEGMENT_HEADER_LEN, segment_file_name,
};

const PAYLOAD_LEN: usize = 24;
const PER_SEGMENT: u64 = 4;

fn payload(seq: u64) -> Vec<u8> {
    fixed_payload(seq, PAYLOAD_LEN)
}

fn config() -> JournalConfig {
    fixed_config(PER_SEGMENT, PAYLOAD_LEN, 3)
}

/// A closed journal of records `1..=last`, four to a segment.
fn build(dir: &Path, last: u64) {
    let (mut journal, _) = Journal::open(dir, config()).expect("open");
    for seq in 1..=last {
        journal.append(seq, &payload(seq)).expect("append");
    }
    journal.close().expect("close");
}

/// Offset of record `seq` within its segment.
fn record_offset(seq: u64) -> u64 {
    SEGMENT_HEADER_LEN as u64 + ((seq - 1) % PER_SEGMENT) * record_len(PAYLOAD_LEN)
}

fn segment_of(dir: &Path, seq: u64) -> std::path::PathBuf {
    dir.join(segment_file_name((seq - 1) / PER_SEGMENT * PER_SEGMENT + 1))
}

/// Opens the damaged journal and asserts it recovers `1..=expected_last`, then that appending
/// the rest works and survives another reopen.
fn assert_recovers_then_appends(dir: &Path, expected_last: u64, total: u64) {
    let (mut journal, recovery) = Journal::open(dir, config()).expect("open after damage");
    assert_eq!(recovery.last_seq, expected_last, "{recovery}");
    assert_eq!(recovery.records, expected_last);
    let records: Vec<_> = journal.reader_from(1).collect::<Result<_, _>>().expect("read");
    assert_records(&records, 1..=expected_last, payload);
    for seq in expected_last + 1..=total {
        journal.append(seq, &payload(seq)).expect("append after recovery");
    }
    journal.close().expect("close");
    let (_, again) = Journal::open(dir, config()).expect("reopen");
    assert!(again.was_clean(), "second recovery had work to do: {again}");
    assert_records(&read_all(dir), 1..=total, payload);
}

fn expect_corrupt(dir: &Path) -> (std::path::PathBuf, u64, Corruption) {
    let before = snapshot(dir);
    let outcome = Journal::open(dir, config());
    assert_eq!(snapshot(dir), before, "a failed open must leave the files untouched");
    match outcome {
        Err(JournalError::Corrupt { file, offset, reason }) => (file, offset, reason),
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok((_, recovery)) => panic!("expected Corrupt, recovered: {recovery}"),
    }
}

#[test]
fn every_cut_inside_the_last_record_leaves_exactly_the_records_before_it() {
    let original = memory_temp_dir();
    let last = 10; // Segments 1, 5, 9: the last one holds records 9 and 10.
    build(original.path(), last);
    let segment = segment_of(original.path(), last);
    let start = record_offset(last);
    let end = start + record_len(PAYLOAD_LEN);
    assert_eq!(file_len(&segment), end);

    for cut in start..end {
        let work = memory_temp_dir();
        copy_journal(original.path(), work.path());
        let segment = work.path().join(segment.file_name().expect("name"));
        truncate_file(&segment, cut);
        {
            let (_, recovery) = Journal::open(work.path(), config()).expect("open");
            if cut == start {
                assert!(recovery.was_clean(), "a cut at a record boundary loses nothing else");
            } else {
                let tail = recovery.torn_tail.clone().expect("torn tail reported");
                assert_eq!(
                    (tail.file, tail.offset, tail.bytes),
                    (segment.clone(), start, cut - start)
                );
                assert_eq!(tail.cause, Corruption::RecordCutShort);
                assert!(recovery.to_string().contains("truncated a torn tail"), "{recovery}");
            }
            assert_eq!(file_len(&segment), start, "cut {cut}");
        }
        assert_recovers_then_appends(work.path(), last - 1, last + 3);
    }
}

#[test]
fn a_cut_inside_the_only_record_of_the_last_segment_removes_the_segment() {
    let original = memory_temp_dir();
    let last = 9; // The last segment, 9, holds only record 9.
    build(original.path(), last);
    let name = segment_file_name(9);
    assert_eq!(segment_bases(original.path()), [1, 5, 9]);
    // Inside the segment header too: what a crash during rotation could leave.
    for cut in 0..=record_offset(9) + record_len(PAYLOAD_LEN) - 1 {
        let work = memory_temp_dir();
        copy_journal(original.path(), work.path());
        truncate_file(&work.path().join(&name), cut);
        {
            let (_, recovery) = Journal::open(work.path(), config()).expect("open");
            assert_eq!(recovery.removed, [work.path().join(&name)], "cut {cut}: {recovery}");
            assert_eq!(segment_bases(work.path()), [1, 5], "cut {cut}");
        }
        assert_recovers_then_appends(work.path(), 8, 14);
        assert_eq!(segment_bases(work.path()), [1, 5, 9, 13]);
    }
}

#[test]
fn zeroes_or_garbage_after_the_last_record_are_cut_off() {
    let original = memory_temp_dir();
    build(original.path(), 7);
    let name = segment_file_name(5);
    let end = file_len(&original.path().join(&name));
    let mut rng = TestRng::new(0x5EED_0001);
    let garbage: Vec<u8> = (0..5000).map(|_| rng.next_u64() as u8).collect();
    for (tail, expected_cause) in [
        (vec![0u8; 1], Corruption::RecordCutShort),
        (vec![0u8; 15], Corruption::RecordCutShort),
        (vec![0u8; 16], Corruption::BadChecksum),
        (vec![0u8; 17], Corruption::BadChecksum),
        (vec![0u8; 4096], Corruption::BadChecksum),
        (vec![0xffu8; 64], Corruption::ImpossibleLength { len: u32::MAX }),
        (garbage[..7].to_vec(), Corruption::RecordCutShort),
        (garbage.clone(), garbage_cause(&garbage)),
    ] {
        let work = memory_temp_dir();
        copy_journal(original.path(), work.path());
        append_bytes(&work.path().join(&name), &tail);
        {
            let (_, recovery) = Journal::open(work.path(), config()).expect("open");
            let torn = recovery.torn_tail.expect("torn tail reported");
            assert_eq!(
                (torn.offset, torn.bytes, torn.cause),
                (end, tail.len() as u64, expected_cause)
            );
        }
        assert_recovers_then_appends(work.path(), 7, 12);
    }
}

/// What recovery must call `bytes` found where a record should start.
fn garbage_cause(bytes: &[u8]) -> Corruption {
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if len > persist::journal::MAX_PAYLOAD_LEN {
        Corruption::ImpossibleLength { len }
    } else if record_len(len as usize) > bytes.len() as u64 {
        Corruption::RecordCutShort
    } else {
        Corruption::BadChecksum
    }
}

#[test]
fn a_bad_record_followed_by_good_ones_stops_start_up_at_its_offset() {
    let original = memory_temp_dir();
    build(original.path(), 12); // Last segment 9 holds 9..=12.
    let last_segment = segment_of(original.path(), 12);
    let name = last_segment.file_name().expect("name");

    // (record, byte within it, mask, expected reason)
    let cases = [
        (10, 20, 0x01, Corruption::BadChecksum), // payload
        (10, 9, 0x80, Corruption::BadChecksum),  // seq
        (10, 4, 0x10, Corruption::BadChecksum),  // stored checksum
        (9, 0, 0x01, Corruption::BadChecksum),   // length, still plausible: 25
        (11, 3, 0x40, Corruption::ImpossibleLength { len: 0x4000_0000 | PAYLOAD_LEN as u32 }),
        (11, 2, 0x10, Corruption::RecordCutShort), // length 0x100018: runs past the file's end
    ];
    for (seq, byte, mask, reason) in cases {
        let work = memory_temp_dir();
        copy_journal(original.path(), work.path());
        let offset = record_offset(seq);
        flip_byte(&work.path().join(name), offset + byte, mask);
        let (file, at, found) = expect_corrupt(work.path());
        assert_eq!(
            (file, at, found),
            (work.path().join(name), offset, reason),
            "seq {seq} byte {byte}"
        );
    }
}

#[test]
fn damage_in_an_earlier_segment_stops_start_up_even_at_its_end() {
    let original = memory_temp_dir();
    build(original.path(), 10);
    let middle = segment_file_name(5);

    let work = memory_temp_dir();
    copy_journal(original.path(), work.path());
    flip_byte(&work.path().join(&middle), record_offset(8) + 17, 0x04);
    assert_eq!(
        expect_corrupt(work.path()),
        (work.path().join(&middle), record_offset(8), Corruption::BadChecksum)
    );

    let work = memory_temp_dir();
    copy_journal(original.path(), work.path());
    truncate_file(&work.path().join(&middle), record_offset(8) + 5);
    assert_eq!(
        expect_corrupt(work.path()),
        (work.path().join(&middle), record_offset(8), Corruption::RecordCutShort)
    );

    let work = memory_temp_dir();
    copy_journal(original.path(), work.path());
    let end = file_len(&work.path().join(&middle));
    append_bytes(&work.path().join(&middle), &[0u8; 100]);
    assert_eq!(
        expect_corrupt(work.path()),
        (work.path().join(&middle), end, Corruption::BadChecksum)
    );

    let work = memory_temp_dir();
    copy_journal(original.path(), work.path());
    flip_byte(&work.path().join(segment_file_name(1)), 3, 0x20);
    assert_eq!(
        expect_corrupt(work.path()),
        (work.path().join(segment_file_name(1)), 0, Corruption::BadSegmentHeader)
    );

    let work = memory_temp_dir();
    copy_journal(original.path(), work.path());
    truncate_file(&work.path().join(&middle), SEGMENT_HEADER_LEN as u64);
    assert_eq!(
        expect_corrupt(work.path()),
        (work.path().join(&middle), SEGMENT_HEADER_LEN as u64, Corruption::EmptySegment)
    );
}

#[test]
fn every_single_byte_flip_is_refused_or_costs_only_the_last_record() {
    let original = memory_temp_dir();
    let last = 10;
    build(original.path(), last);
    let last_record = record_offset(last);
    let work = memory_temp_dir();
    copy_journal(original.path(), work.path());
    let files = segment_files(work.path());
    let mut refused = 0;
    for (index, file) in files.iter().enumerate() {
        let intact = fs::read(file).expect("read segment");
        for offset in 0..intact.len() as u64 {
            flip_byte(file, offset, 0x08);
            let in_last_record = index + 1 == files.len() && offset >= last_record;
            if in_last_record {
                let (_, recovery) = Journal::open(work.path(), config()).expect("open");
                assert_eq!(recovery.last_seq, last - 1, "flip at {offset}");
                assert_eq!(recovery.torn_tail.map(|t| t.offset), Some(last_record));
            } else {
                let (damaged, at, _) = expect_corrupt(work.path());
                let record_start = if offset < SEGMENT_HEADER_LEN as u64 {
                    0
                } else {
                    let size = record_len(PAYLOAD_LEN);
                    (offset - SEGMENT_HEADER_LEN as u64) / size * size + SEGMENT_HEADER_LEN as u64
                };
                assert_eq!((&damaged, at), (file, record_start), "flip at {offset}");
                refused += 1;
            }
            fs::write(file, &intact).expect("restore segment");
        }
    }
    assert_eq!(refused, 3 * SEGMENT_HEADER_LEN as u64 + (4 + 4 + 1) * record_len(PAYLOAD_LEN));
    assert_records(&read_all(work.path()), 1..=last, payload);
}

#[test]
fn a_record_with_a_valid_checksum_but_a_backward_seq_is_corruption() {
    let dir = memory_temp_dir();
    build(dir.path(), 6);
    // Rewrite record 6 as seq 4, with a checksum that matches.
    let segment = segment_of(dir.path(), 6);
    let offset = record_offset(6) as usize;
    let mut bytes = fs::read(&segment).expect("read");
    let body = payload(4);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&(PAYLOAD_LEN as u32).to_le_bytes());
    crc.update(&4u64.to_le_bytes());
    crc.update(&body);
    bytes[offset + 4..offset + 8].copy_from_slice(&crc.finalize().to_le_bytes());
    bytes[offset + 8..offset + 16].copy_from_slice(&4u64.to_le_bytes());
    bytes[offset + 16..offset + 16 + PAYLOAD_LEN].copy_from_slice(&body);
    fs::write(&segment, bytes).expect("write");
    let (file, at, reason) = expect_corrupt(dir.path());
    assert_eq!((file, at), (segment, offset as u64));
    assert_eq!(reason, Corruption::SeqNotIncreasing { seq: 4, previous: 5 });
}

#[test]
fn a_segment_from_a_future_format_is_refused_by_name() {
    let dir = memory_temp_dir();
    build(dir.path(), 3);
    let segment = segment_of(dir.path(), 1);
    let mut bytes = fs::read(&segment).expect("read");
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32fast::hash(&bytes[0..24]);
    bytes[24..28].copy_from_slice(&crc.to_le_bytes());
    fs::write(&segment, bytes).expect("write");
    match Journal::open(dir.path(), config()) {
        Err(e @ JournalError::UnsupportedVersion { .. }) => {
            let message = e.to_string();
            assert!(message.contains(&segment.display().to_string()), "{message}");
            assert!(message.contains("version 2"), "{message}");
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}

#[test]
fn corrupt_errors_name_file_offset_and_reason() {
    let dir = memory_temp_dir();
    build(dir.path(), 8);
    let segment = segment_of(dir.path(), 2);
    flip_byte(&segment, record_offset(2) + 20, 0x01);
    let message = Journal::open(dir.path(), config()).expect_err("corrupt").to_string();
    for part in
        [segment.display().to_string(), format!("offset {}", record_offset(2)), "checksum".into()]
    {
        assert!(message.contains(&part), "{message:?} lacks {part:?}");
    }
}

#[test]
fn leftovers_of_an_unfinished_rotation_are_removed_and_reported() {
    let dir = memory_temp_dir();
    build(dir.path(), 8);
    // A temporary segment that never got its name, and a named one that never got a record.
    let temporary = dir.path().join("00000000000000000009.seg.tmp");
    fs::write(&temporary, [0u8; 10]).expect("write temporary");
    let header_only = segment_of(dir.path(), 9);
    // The header a rotation to seq 9 writes.
    let mut header =
        fs::read(segment_of(dir.path(), 1)).expect("read")[..SEGMENT_HEADER_LEN].to_vec();
    header[16..24].copy_from_slice(&9u64.to_le_bytes());
    let crc = crc32fast::hash(&header[0..24]);
    header[24..28].copy_from_slice(&crc.to_le_bytes());
    fs::write(&header_only, &header).expect("write header");
    let unrelated = dir.path().join("operator-notes.txt");
    fs::write(&unrelated, "kept").expect("write notes");

    let (_, recovery) = Journal::open(dir.path(), config()).expect("open");
    assert_eq!(recovery.removed.len(), 2, "{recovery}");
    assert!(recovery.removed.contains(&temporary) && recovery.removed.contains(&header_only));
    assert!(!temporary.exists() && !header_only.exists() && unrelated.exists());
    assert_eq!(recovery.last_seq, 8);
    assert!(recovery.torn_tail.is_none());
}
