//! The cost of one trigger-price event (`Event::Mark` on a usdm symbol) as the number of
//! positions on that symbol grows (1, 100, 10,000), with 10,000 positions on other symbols in the
//! same engine. Run: `cargo bench -p benches --bench engine_tick`.
//!
//! - `quiet/N`: the mark moves inside the market's wake band, so nothing can fire or trail: the
//!   common case, which should cost the same at every N.
//! - `scan/N`: the mark reaches the tightest long stop, so every position on the symbol is
//!   evaluated, the wake band is recomputed, and one close is sent. Only that event is timed; the
//!   state is restored between iterations, untimed (see `benches::TickFixture`), so each
//!   iteration meets the same state. Each timed iteration carries one `Instant` pair, whose own
//!   cost is `timer_overhead`.
//!
//! Positions on BTCUSDT mix Safety Net longs and shorts with Core positions (every fifth) that
//! trail with a hand span; the fixture's layout is documented on `TickFixture`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use benches::TickFixture;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const SIZES: [usize; 3] = [1, 100, 10_000];
const ELSEWHERE: usize = 10_000;

fn mark_tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_tick");
    group.bench_function("timer_overhead", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                black_box(());
                total += start.elapsed();
            }
            total
        })
    });
    for n in SIZES {
        let mut fixture = TickFixture::new(n, ELSEWHERE);
        group.bench_with_input(BenchmarkId::new("quiet", n), &n, |b, _| {
            b.iter(|| fixture.quiet_tick())
        });
        group.bench_with_input(BenchmarkId::new("scan", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    fixture.restore();
                    let start = Instant::now();
                    black_box(fixture.cross_tick());
                    total += start.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, mark_tick);
criterion_main!(benches);
