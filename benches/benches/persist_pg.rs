//! Engine records per second through the Postgres writer (events plus projections, one
//! transaction per batch), by batch size. Run with a server: `source scripts/pg-env && cargo
//! bench -p benches --bench persist_pg`. Without `DATABASE_URL` it says so and measures nothing.
//!
//! Each run writes into a fresh schema that it drops at the end. The records are whole Core
//! position lives (`benches::record_stream`), so the projections see real inserts and updates.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use persist::pg::{PgConfig, PgWriter, Schema, migrate};
use postgres::{Client, NoTls};

fn pg(c: &mut Criterion) {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("persist_pg: DATABASE_URL is not set; `source scripts/pg-env` first");
        return;
    };
    let schema = Schema::new(&format!("bench_{}", std::process::id())).unwrap();
    let mut admin = Client::connect(&url, NoTls).expect("connect to DATABASE_URL");
    migrate(&mut admin, &schema).expect("migrations");
    let mut writer = PgWriter::new(PgConfig::new(url.clone()).with_schema(schema.clone()));
    let mut next_seq = writer.connect().expect("writer connects") + 1;
    let mut group = c.benchmark_group("persist_pg");
    group.sample_size(20);
    for batch in [100usize, 1_000, 5_000] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("write_batch", batch), &batch, |b, &batch| {
            b.iter_batched(
                || {
                    let records = benches::record_stream(next_seq, batch);
                    next_seq += batch as u64;
                    records
                },
                |records| writer.write(&records).expect("batch committed"),
                criterion::BatchSize::PerIteration,
            )
        });
    }
    group.finish();
    let _ = admin.batch_execute(&format!("DROP SCHEMA {} CASCADE", schema.as_str()));
}

criterion_group!(benches, pg);
criterion_main!(benches);
