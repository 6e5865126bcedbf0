//! Helpers shared by the journal's integration tests: known payloads, directory snapshots and
//! a way to read everything a journal holds.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use persist::journal::{
    JournalConfig, JournalReader, LOCK_FILE_NAME, OwnedRecord, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN, parse_segment_file_name,
};

/// An interval no test run reaches, so only record counts and explicit syncs trigger fsyncs.
pub const NEVER: Duration = Duration::from_secs(3600);

mod payload;
pub use payload::*;

/// A small deterministic generator for test choices (seeded, printed on failure by callers).
pub struct TestRng(u64);

impl TestRng {
    pub fn new(seed: u64) -> TestRng {
        TestRng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        splitmix(state_step(&mut self.0))
    }
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// Bytes one record of `payload_len` bytes takes on disk.
pub fn record_len(payload_len: usize) -> u64 {
    (RECORD_HEADER_LEN + payload_len) as u64
}

/// A configuration whose segments hold exactly `per_segment` records of `payload_len` bytes,
/// fsyncing every `sync_every` records and never on a timer.
pub fn fixed_config(per_segment: u64, payload_len: usize, sync_every: u32) -> JournalConfig {
    JournalConfig {
        segment_bytes: SEGMENT_HEADER_LEN as u64 + per_segment * record_len(payload_len),
        sync_every_records: sync_every,
        sync_interval: NEVER,
        ..JournalConfig::default()
    }
}

/// A temporary directory on a memory filesystem where there is one, for tests that make
/// hundreds of journals and check recovery logic rather than the disk: fsync there costs
/// microseconds instead of milliseconds. The crash, round-trip and retention tests use the real
/// disk.
pub fn memory_temp_dir() -> tempfile::TempDir {
    let memory = Path::new("/dev/shm");
    if memory.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(memory)
    {
        return dir;
    }
    tempfile::tempdir().expect("temp dir")
}

/// Every record a journal directory holds, read without its writer.
pub fn read_all(dir: &Path) -> Vec<OwnedRecord> {
    read_from(dir, 1)
}

pub fn read_from(dir: &Path, from_seq: u64) -> Vec<OwnedRecord> {
    JournalReader::open_read_only(dir, from_seq)
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
}

/// Asserts `records` are exactly `expected_seqs`, each with the payload `payload` gives it.
pub fn assert_records(
    records: &[OwnedRecord],
    expected_seqs: impl IntoIterator<Item = u64>,
    payload: impl Fn(u64) -> Vec<u8>,
) {
    let expected: Vec<u64> = expected_seqs.into_iter().collect();
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, expected, "sequence numbers read back");
    for record in records {
        assert_eq!(record.payload, payload(record.seq), "payload of seq {}", record.seq);
    }
}

/// Segment files of a journal directory, oldest first.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut segments: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .expect("list journal directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter_map(|path| Some((parse_segment_file_name(path.file_name()?)?, path)))
        .collect();
    segments.sort();
    segments.into_iter().map(|(_, path)| path).collect()
}

pub fn segment_bases(dir: &Path) -> Vec<u64> {
    segment_files(dir)
        .iter()
        .map(|p| parse_segment_file_name(p.file_name().expect("file name")).expect("segment name"))
        .collect()
}

/// Every file in the directory with its bytes, to prove a failed open changed nothing.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .expect("list journal directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.file_name().is_some_and(|n| n != LOCK_FILE_NAME))
        .map(|path| {
            let name = path.file_name().expect("file name").to_string_lossy().into_owned();
            (name, fs::read(&path).expect("read journal file"))
        })
        .collect()
}

/// Copies a journal directory's segments (not its lock file) into `to`.
pub fn copy_journal(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create copy directory");
    for (name, bytes) in snapshot(from) {
        fs::write(to.join(name), bytes).expect("write copy");
    }
}

pub fn file_len(path: &Path) -> u64 {
    fs::metadata(path).expect("stat").len()
}

pub fn truncate_file(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open for truncation")
        .set_len(len)
        .expect("truncate");
}

pub fn append_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = fs::OpenOptions::new().append(true).open(path).expect("open for append");
    file.write_all(bytes).expect("append bytes");
}

pub fn flip_byte(path: &Path, offset: u64, mask: u8) {
    let mut bytes = fs::read(path).expect("read file");
    bytes[offset as usize] ^= mask;
    fs::write(path, bytes).expect("write file");
}
