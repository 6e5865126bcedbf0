//! From the bytes of a Binance `markPrice` frame to the close intent it causes: the frame parsed
//! in place by `feed::wire::FrameParser`, its `Event::Mark` handed to the engine, the stop found
//! crossed and the reduce-only close emitted, all in one call chain as on the hot thread (no
//! socket, no ring). Run: `cargo bench -p benches --bench tick_to_intent`.
//!
//! - `quiet`: a frame whose price stays above the Safety Net stop: parse plus a no-op tick.
//! - `fires`: a frame whose price crosses the stop. Each iteration gets a fresh engine holding
//!   one protected long (built untimed by criterion's batched setup), so every timed call
//!   really sends a close; the bench asserts it did.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use engine::events::{Event, Intent, VecSink};
use engine::types::{AccountId, PositionKey, Side, Symbol, Venue};
use engine::{Config, Engine, Nanos, Price, Qty};
use feed::wire::{Connection, FrameParser};

fn frame(price: &str) -> Vec<u8> {
    format!(
        r#"{{"stream":"btcusdt@markPrice@1s","data":{{"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT","p":"{price}","ap":"{price}","i":"{price}","P":"{price}","r":"0.00038167","T":1562306400000}}}}"#
    )
    .into_bytes()
}

/// An engine with the lease and one manual BTCUSDT long of 0.5 at 50,000 (stop 49,000).
fn protected() -> (Engine, VecSink) {
    let mut engine = Engine::new(Config::default());
    let mut sink = VecSink::default();
    engine.on_event(Event::Lease { held: true }, Nanos(1), &mut sink);
    engine.on_event(
        Event::Rules { market: benches::usdm("BTCUSDT"), rules: benches::btc_rules() },
        Nanos(2),
        &mut sink,
    );
    let key = PositionKey {
        account: AccountId(0),
        venue: Venue::Usdm,
        symbol: Symbol::new(b"BTCUSDT").unwrap(),
        side: Side::Long,
    };
    let position =
        Event::Position { key, qty: Qty::lit("0.5"), entry: Price::lit("50000"), exchange_ms: 1 };
    engine.on_event(position, Nanos(3), &mut sink);
    sink.clear();
    (engine, sink)
}

fn tick_to_intent(c: &mut Criterion) {
    let mut parser = FrameParser::new(Connection::market(Venue::Usdm));
    let mut group = c.benchmark_group("tick_to_intent");
    let (mut engine, mut sink) = protected();
    let quiet = frame("49500.10");
    let mut buf = quiet.clone();
    group.bench_function("quiet", |b| {
        b.iter(|| {
            buf.copy_from_slice(&quiet);
            let _ = parser.parse(black_box(&mut buf), |e| {
                engine.on_event(e, Nanos(10), &mut sink);
            });
            sink.clear();
        })
    });
    let fires = frame("48999.90");
    group.bench_function("fires", |b| {
        b.iter_batched(
            || (protected(), fires.clone()),
            |((mut engine, mut sink), mut buf)| {
                let _ = parser.parse(black_box(&mut buf), |e| {
                    engine.on_event(e, Nanos(10), &mut sink);
                });
                assert!(matches!(sink.intents.first(), Some(Intent::Place(_))), "a close was sent");
                (engine, sink)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, tick_to_intent);
criterion_main!(benches);
