//! Shared by the cold-thread tests: a record stream with quiet stretches (moments with no live
//! position, where a restart may start) and one long-lived position, the journal read back, and
//! the comparison of two folds through the engines they restore to.
//! Test files declare `mod pg_common;` before `mod cold_common;`.
#![allow(dead_code)]

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use engine::events::{ArmParams, Journal};
use engine::*;
use persist::codec;
use persist::journal::{JournalConfig, JournalReader};
use rtrb::Producer;

use crate::pg_common::{lifecycle_with, qty, usdm};

/// Small segments (a few hundred records each), fsync every 256 records or 2 ms.
pub fn small_segments() -> JournalConfig {
    JournalConfig {
        segment_bytes: 16 * 1024,
        sync_every_records: 256,
        sync_interval: Duration::from_millis(2),
        ..JournalConfig::default()
    }
}

/// Pushes every record, retrying while the ring is full (the hot thread would count a drop
/// instead; here nothing may be lost). Hands the producer back at the end.
pub fn produce(
    records: Vec<Record>,
    mut producer: Producer<Record>,
) -> thread::JoinHandle<Producer<Record>> {
    thread::spawn(move || {
        for record in records {
            let mut record = record;
            loop {
                match producer.push(record) {
                    Ok(()) => break,
                    Err(rtrb::PushError::Full(back)) => {
                        record = back;
                        thread::yield_now();
                    }
                }
            }
        }
        producer
    })
}

/// Polls `done` until it holds; the 60 s limit only turns a hang into a failure.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// The restart cut the whole of `history` offers at or below `limit`.
pub fn expected_cut(history: &[Record], limit: u64) -> u64 {
    let mut restart = persist::recover::RestartFold::new();
    for r in history {
        restart.observe(r).expect("folds");
    }
    restart.cut_within(limit).expect("a cut")
}

/// A generated history and what the tests need to know about it.
pub struct Stream {
    pub records: Vec<Record>,
    /// The Safety Net position that never closes, with the seq of its first record.
    pub long_lived: Option<(PositionId, u64)>,
}

/// `n` records (seq 1..=n) in waves: one to three positions whose lives interleave (so a
/// position is live across most seqs of a wave) and all end, then a quiet stretch of market
/// records with no position live; every fourth stretch starts a halt that ends after the first
/// records of the next wave (positions may be armed while halted). From record
/// `long_lived_at` on, a Safety Net position that never closes is re-stopped in every wave, so
/// no later seq is quiet. Ids grow with seq, as the engine allocates them.
pub fn waves(n: usize, long_lived_at: Option<usize>) -> Stream {
    let symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT"];
    let mut events: Vec<Journal> = Vec::with_capacity(n + 64);
    let mut next_id = 1u64;
    let mut long_lived: Option<(PositionId, u64)> = None;
    let mut wave = 0usize;
    while events.len() < n {
        if long_lived.is_none() && long_lived_at.is_some_and(|at| events.len() >= at) {
            let id = PositionId(next_id);
            next_id += 1;
            let key = usdm("ADAUSDT", Side::Long);
            long_lived = Some((id, events.len() as u64 + 1));
            events.push(Journal::PositionDetected {
                id,
                key,
                qty: qty("100"),
                entry: Price::from_int(1),
                from: None,
            });
            let pct = Ratio::percent(2);
            events.push(Journal::SafetyStopSet { id, stop: Price::lit("0.98"), pct });
        }
        let mut lives: Vec<std::vec::IntoIter<Journal>> = (0..1 + wave % 3)
            .map(|i| {
                let id = next_id;
                next_id += 1;
                lifecycle(id, symbols[(wave + i) % symbols.len()]).into_iter()
            })
            .collect();
        // Round robin: every life's first record (its allocation) comes in id order.
        for round in 0.. {
            let mut emitted = false;
            for life in &mut lives {
                if let Some(event) = life.next() {
                    events.push(event);
                    emitted = true;
                }
            }
            if round == 0 && wave.is_multiple_of(4) && wave > 0 {
                // The halt of the previous quiet stretch ends only after these allocations.
                events.push(Journal::Resumed);
            }
            if !emitted {
                break;
            }
        }
        if let Some((id, _)) = long_lived {
            let stop = Price::from_units(98_000_000 + wave as i64);
            events.push(Journal::SafetyStopSet { id, stop, pct: Ratio::percent(2) });
        }
        let market = MarketKey { venue: Venue::Usdm, symbol: Symbol::lit("BTCUSDT") };
        for i in 0..30 {
            events.push(match i {
                10 if wave % 4 == 3 => Journal::Halted { flatten: false },
                _ if i % 2 == 0 => Journal::PriceStale { market },
                _ => Journal::PriceFresh { market },
            });
        }
        wave += 1;
    }
    events.truncate(n);
    let records = events
        .into_iter()
        .enumerate()
        .map(|(i, event)| Record {
            seq: i as u64 + 1,
            at: Nanos(1_700_000_000_000_000_000 + i as u64 * 1_000),
            event,
        })
        .collect();
    Stream { records, long_lived }
}

/// Lives that always end, without staleness noise: the waves' positions all close.
fn lifecycle(id: u64, symbol: &str) -> Vec<Journal> {
    lifecycle_with(id, symbol, false, true)
}

/// Every record the journal in `dir` holds from `from` on, decoded, checking that each decodes
/// under the seq it is stored as.
pub fn read_journal(dir: &Path, from: u64) -> Vec<Record> {
    JournalReader::open_read_only(dir, from)
        .map(|r| {
            let r = r.expect("journal reads");
            let record = codec::decode(&r.payload).expect("journal record decodes");
            assert_eq!(record.seq, r.seq, "record stored under its own seq");
            record
        })
        .collect()
}

pub fn fold_all(records: &[Record]) -> JournalFold {
    let mut fold = JournalFold::new();
    for r in records {
        fold.apply(r).unwrap_or_else(|e| panic!("the full history folds: {e}"));
    }
    fold
}

/// What a restored engine shows: its positions (the trigger masked: a restored engine knows no
/// price yet), each key's owner, whether it is halted, and what it answers and journals when asked to arm on a new
/// key (which shows the next position id and the next seq).
#[derive(Debug, PartialEq)]
pub struct Restored {
    pub positions: Vec<PositionView>,
    pub owners: Vec<Option<(Modality, PositionId)>>,
    pub halted: bool,
    pub probe: String,
}

pub fn restored(fold: &JournalFold) -> Restored {
    let mut engine = Engine::restore(Config::default(), fold);
    let mut positions: Vec<PositionView> = engine.positions().collect();
    for v in &mut positions {
        v.trigger = None;
    }
    positions.sort_by_key(|v| v.id.0);
    let owners = positions.iter().map(|v| engine.owner(&v.key)).collect();
    let halted = engine.is_halted();
    let mut sink = VecSink::default();
    let reply = engine.on_event(
        Event::Arm { key: usdm("ZZZUSDT", Side::Long), params: ArmParams::default() },
        Nanos(1),
        &mut sink,
    );
    let probe = format!("{reply:?} {:?}", sink.records);
    Restored { positions, owners, halted, probe }
}
