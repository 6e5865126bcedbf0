//! Engine records per second into the local journal, by fsync batch size: encode with
//! `persist::codec`, append, and fsync once per batch, as the cold thread does.
//! Run: `cargo bench -p benches --bench persist_journal`.
//!
//! The journal lives in a temporary directory on the machine's real disk (`TMPDIR`), so the
//! figures include real fdatasync costs, which vary a lot on shared VMs: compare batch sizes
//! within one run. Segments below the last few thousand records are pruned as the bench goes,
//! as the daemon does once Postgres has them.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use engine::events::{Journal, OrderIntent};
use engine::types::{
    AccountId, ClientOrderId, Modality, OrderPurpose, OrderSide, OrderTag, PositionId, PositionKey,
    Side, Symbol, Venue,
};
use engine::{Nanos, Price, Qty, Record};
use persist::codec::encode;
use persist::journal::{Journal as Log, JournalConfig};

/// The records a busy trailing stop produces: stop moves, a close, its update.
fn sample(seq: u64) -> Record {
    let key = PositionKey {
        account: AccountId(0),
        venue: Venue::Usdm,
        symbol: Symbol::new(b"BTCUSDT").unwrap(),
        side: Side::Long,
    };
    let id = PositionId(seq / 4 + 1);
    let event = match seq % 4 {
        0 | 1 => Journal::StopMoved {
            id,
            from: Price::from_units(9_400_000_000_000),
            to: Price::from_units(9_500_000_000_000 + seq as i64),
            level: (seq % 50) as i64,
        },
        2 => Journal::OrderSent {
            intent: OrderIntent {
                cid: ClientOrderId::new(OrderTag {
                    modality: Modality::Core,
                    purpose: OrderPurpose::Close,
                    position: id,
                    sequence: 1,
                }),
                key,
                order_side: OrderSide::Sell,
                qty: Qty::from_units(1_234_000),
                purpose: OrderPurpose::Close,
                modality: Modality::Core,
            },
            reason: None,
        },
        _ => Journal::PositionUpdated {
            id,
            qty: Qty::from_units(1_234_000),
            entry: Price::from_units(9_512_345_000_000),
        },
    };
    Record { seq, at: Nanos(1_764_000_000_000_000_000 + seq * 1_000), event }
}

fn journal(c: &mut Criterion) {
    let mut group = c.benchmark_group("persist_journal");
    for batch in [1u64, 100, 1_000] {
        let dir = tempfile::tempdir().unwrap();
        let config = JournalConfig { sync_every_records: u32::MAX, ..JournalConfig::default() };
        let (mut log, _) = Log::open(dir.path(), config).unwrap();
        let mut seq = 0u64;
        let mut payload = Vec::with_capacity(128);
        group.throughput(Throughput::Elements(batch));
        group.bench_with_input(
            BenchmarkId::new("append_fsync_per_batch", batch),
            &batch,
            |b, &batch| {
                b.iter(|| {
                    for _ in 0..batch {
                        seq += 1;
                        payload.clear();
                        encode(&sample(seq), &mut payload);
                        log.append(seq, &payload).unwrap();
                    }
                    black_box(log.sync().unwrap());
                    if seq % 100_000 < batch {
                        log.prune(seq.saturating_sub(10_000)).unwrap();
                    }
                })
            },
        );
    }
    group.finish();
}

fn codec(c: &mut Criterion) {
    let record = sample(2);
    let mut payload = Vec::with_capacity(128);
    c.bench_function("persist_encode_order_sent", |b| {
        b.iter(|| {
            payload.clear();
            encode(black_box(&record), &mut payload);
            black_box(payload.len())
        })
    });
}

criterion_group!(benches, journal, codec);
criterion_main!(benches);
