//! `engine::money::parse_units` and `format_units` on the decimal strings Binance actually sends:
//! prices and quantities in 8-decimal canonical form, short forms, negatives, zero and the range
//! edge. Run: `cargo bench -p benches --bench decimal_parse`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use engine::money::{format_units, parse_units};

/// (label, input): one of each shape seen on the wire.
const SAMPLES: [(&str, &str); 6] = [
    ("price_8dp", "25.35190000"),
    ("qty_short", "0.001"),
    ("negative_8dp", "-0.00100000"),
    ("price_2dp", "104234.10"),
    ("zero", "0"),
    ("max", "92233720368.54775807"),
];

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_units");
    for (label, input) in SAMPLES {
        // Check once outside the timed loop, so a refused input cannot make the bench look fast.
        parse_units(input.as_bytes()).expect("bench inputs are valid");
        group.bench_function(label, |b| b.iter(|| parse_units(black_box(input.as_bytes()))));
    }
    group.throughput(Throughput::Elements(SAMPLES.len() as u64));
    group.bench_function("batch_of_6", |b| {
        b.iter(|| {
            let mut sum = 0i64;
            for (_, input) in SAMPLES {
                sum = sum.wrapping_add(parse_units(black_box(input.as_bytes())).unwrap_or(0));
            }
            sum
        })
    });
    group.finish();
}

fn format(c: &mut Criterion) {
    let units: Vec<(&str, i64)> = SAMPLES
        .iter()
        .map(|&(label, s)| (label, parse_units(s.as_bytes()).expect("valid")))
        .collect();
    let mut group = c.benchmark_group("format_units");
    for &(label, u) in &units {
        group.bench_function(label, |b| b.iter(|| format_units(black_box(u), 8)));
    }
    // At the tick's precision, as an order's price is written (104234.1 at 1 decimal).
    group.bench_function("price_1dp", |b| {
        b.iter(|| format_units(black_box(10_423_410_000_000), black_box(1)))
    });
    group.finish();
}

criterion_group!(benches, parse, format);
criterion_main!(benches);
