//! What the journal tests write, and how the process tests' child writes it: shared by the
//! tests (through `journal_common`) and the `journal-test-child` binary, which includes this
//! file alone because a binary cannot use the tests' dev-dependencies.

use std::time::Duration;

use persist::journal::JournalConfig;

/// The payload the tests write for `seq`: its length and bytes both derive from `seq`, so a
/// record read back under the wrong number, or with any byte changed, is caught.
pub fn payload_for(seq: u64) -> Vec<u8> {
    let len = (splitmix(seq) % 120) as usize + 1;
    fixed_payload(seq, len)
}

/// A payload of a chosen length whose bytes derive from `seq`.
pub fn fixed_payload(seq: u64, len: usize) -> Vec<u8> {
    let mut state = seq;
    (0..len).map(|_| (splitmix(state_step(&mut state)) >> 24) as u8).collect()
}

pub fn state_step(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    *state
}

pub fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The process tests' writer child: small segments and batches, so kills land everywhere.
pub const CHILD_ROLE: &str = "PERSIST_JOURNAL_TEST_CHILD_ROLE";
pub const CHILD_DIR: &str = "PERSIST_JOURNAL_TEST_CHILD_DIR";

pub fn writer_config() -> JournalConfig {
    JournalConfig {
        segment_bytes: 16 * 1024,
        sync_every_records: 50,
        sync_interval: Duration::from_millis(2),
        ..JournalConfig::default()
    }
}

/// Big batches, so a kill can land inside a multi-page write.
pub fn big_batch_config() -> JournalConfig {
    JournalConfig {
        segment_bytes: 256 * 1024,
        sync_every_records: 5000,
        sync_interval: Duration::from_millis(20),
        write_buffer_bytes: 128 * 1024,
        ..JournalConfig::default()
    }
}
