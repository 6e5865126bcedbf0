//! Random histories of appends, syncs, reopens and cuts of the last segment at random offsets:
//! the journal always comes back as exactly the records that lay wholly before the cut, and
//! takes appends again.

mod journal_common;

use std::path::Path;

use journal_common::*;
use persist::journal::{Journal, JournalConfig, SEGMENT_HEADER_LEN, parse_segment_file_name};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// `count` records, the first `gap` numbers after the last one skipped.
    Append {
        count: u8,
        gap: u8,
        payload_len: u16,
    },
    Sync,
    Reopen,
    /// Close, cut the last segment at `fraction` of its length, reopen.
    CutLastSegment {
        fraction: f64,
    },
    /// Close, append zero bytes to the last segment, reopen.
    ZeroTail {
        bytes: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1u8..40, prop_oneof![4 => Just(0u8), 1 => 1u8..5], 0u16..300)
            .prop_map(|(count, gap, payload_len)| Op::Append { count, gap, payload_len }),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
        2 => (0.0f64..=1.0).prop_map(|fraction| Op::CutLastSegment { fraction }),
        1 => (1u16..600).prop_map(|bytes| Op::ZeroTail { bytes }),
    ]
}

/// The payload of `seq` in a history where it was appended with `len` bytes.
fn payload(seq: u64, len: u16) -> Vec<u8> {
    fixed_payload(seq, usize::from(len))
}

struct Model {
    /// Every record the journal must hold, in order.
    records: Vec<(u64, u16)>,
}

impl Model {
    fn last_seq(&self) -> u64 {
        self.records.last().map_or(0, |&(seq, _)| seq)
    }

    /// Keeps the records that lie wholly before `cut` bytes into the segment starting at
    /// `base` (and everything in earlier segments).
    fn cut(&mut self, base: u64, cut: u64) {
        let mut end = SEGMENT_HEADER_LEN as u64;
        self.records.retain(|&(seq, len)| {
            if seq < base {
                return true;
            }
            end += record_len(usize::from(len));
            end <= cut
        });
    }
}

fn check(dir: &Path, journal: &Journal, model: &Model) -> Result<(), TestCaseError> {
    let read: Vec<_> = journal.reader_from(1).collect::<Result<_, _>>().expect("read back");
    let seqs: Vec<u64> = read.iter().map(|r| r.seq).collect();
    // A reader of the open journal sees the durable records only.
    let durable = journal.durable_seq();
    let expected: Vec<u64> =
        model.records.iter().map(|&(seq, _)| seq).take_while(|&seq| seq <= durable).collect();
    prop_assert_eq!(seqs, expected, "in {}", dir.display());
    for (record, &(seq, len)) in read.iter().zip(&model.records) {
        prop_assert_eq!(&record.payload, &payload(seq, len));
    }
    prop_assert_eq!(journal.last_seq(), model.last_seq());
    prop_assert!(durable <= model.last_seq());
    Ok(())
}

fn run(config: JournalConfig, ops: Vec<Op>) -> Result<(), TestCaseError> {
    // In memory: at several milliseconds per fsync on this disk, the many histories would take
    // minutes.
    let dir = memory_temp_dir();
    let mut model = Model { records: Vec::new() };
    let (mut journal, _) = Journal::open(dir.path(), config.clone()).expect("open");
    for op in ops {
        match op {
            Op::Append { count, gap, payload_len } => {
                let first = model.last_seq() + 1 + u64::from(gap);
                for seq in first..first + u64::from(count) {
                    journal.append(seq, &payload(seq, payload_len)).expect("append");
                    model.records.push((seq, payload_len));
                }
            }
            Op::Sync => {
                prop_assert_eq!(journal.sync().expect("sync"), model.last_seq());
            }
            Op::Reopen => {
                drop(journal);
                let (reopened, recovery) =
                    Journal::open(dir.path(), config.clone()).expect("reopen");
                prop_assert!(recovery.was_clean(), "{}", recovery);
                journal = reopened;
            }
            Op::CutLastSegment { fraction } => {
                journal.close().expect("close");
                if let Some(last) = segment_files(dir.path()).pop() {
                    let len = file_len(&last);
                    let cut = (len as f64 * fraction) as u64;
                    truncate_file(&last, cut);
                    let base =
                        parse_segment_file_name(last.file_name().expect("name")).expect("base");
                    model.cut(base, cut);
                }
                let (reopened, recovery) =
                    Journal::open(dir.path(), config.clone()).expect("reopen after cut");
                prop_assert_eq!(recovery.last_seq, model.last_seq());
                journal = reopened;
            }
            Op::ZeroTail { bytes } => {
                journal.close().expect("close");
                if let Some(last) = segment_files(dir.path()).pop() {
                    append_bytes(&last, &vec![0u8; usize::from(bytes)]);
                }
                let (reopened, recovery) =
                    Journal::open(dir.path(), config.clone()).expect("reopen after zeroes");
                prop_assert_eq!(recovery.last_seq, model.last_seq());
                journal = reopened;
            }
        }
        check(dir.path(), &journal, &model)?;
    }
    journal.close().expect("close");
    let (journal, _) = Journal::open(dir.path(), config).expect("final reopen");
    prop_assert_eq!(journal.durable_seq(), model.last_seq());
    check(dir.path(), &journal, &model)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_history_of_appends_and_cuts_recovers_to_the_records_wholly_before_the_cut(
        segment_bytes in 200u64..3000,
        sync_every_records in 1u32..30,
        ops in prop::collection::vec(op(), 1..25),
    ) {
        let config = JournalConfig {
            segment_bytes,
            sync_every_records,
            sync_interval: NEVER,
            ..JournalConfig::default()
        };
        run(config, ops)?;
    }
}
