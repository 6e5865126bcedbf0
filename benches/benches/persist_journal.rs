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
use persist::codec::encode;
use persist::journal::{Journal as Log, JournalConfig};

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
                        encode(&benches::record_stream(seq, 1)[0], &mut payload);
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
    let record = benches::record_stream(2, 1)[0];
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
