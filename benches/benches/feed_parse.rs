//! Nanoseconds per WebSocket frame, from bytes to engine events: robsond's `feed::wire`
//! parser (simd-json tape, reused buffers, in place) against sonic-rs on the same frames, as a
//! reference. Run: `cargo bench -p benches --bench feed_parse`.
//!
//! The frames are the Binance documentation's own payloads from `shared/fixtures/binance/`,
//! minified as Binance sends them: markPrice (raw and in its combined-stream envelope), futures
//! bookTicker, futures aggTrade, ACCOUNT_UPDATE (two balances, three positions), and a margin
//! `executionReport` in the WebSocket API envelope, carrying a trade (derived from the fixture:
//! `x` TRADE with a fill), so both of its events are produced.
//!
//! - `wire`: `FrameParser::parse`, bytes to engine events.
//! - `tape_only`: simd-json's `fill_tape` alone on the same frame, with reused buffers: the floor
//!   under `wire`, so that `wire - tape_only` is what reading the tape into events costs.
//! - `sonic_serde`: sonic-rs deserialising into borrowed `&str` structs with serde derive (the
//!   usual way to use it), then the same `engine::money` conversions into the same events. Its
//!   arrays are `Vec`s, so ACCOUNT_UPDATE allocates there; the rest borrow.
//!
//! `sonic_serde` is checked once, outside the timing, to produce exactly the events `wire` does.
//! `wire` parses in place, but simd-json only writes into the frame to unescape strings, and
//! these frames have no escapes (checked too), so each iteration meets the same bytes.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use engine::Event;
use engine::events::{BalanceScope, MarginFill, OrderStatus, OrderUpdate, Origin};
use engine::money::{Amount, Price, Qty, SCALE};
use engine::types::Venue;
use engine::types::{AccountId, ClientOrderId, MarketKey, OrderSide, PositionKey, Side, Symbol};
use feed::wire::{Asset, Connection, FrameParser};
use serde::Deserialize;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/binance/");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}{name}")).expect("fixture")
}

/// Drops the whitespace outside strings: the fixtures are pretty-printed, Binance's frames are not.
fn minify(json: &str) -> Vec<u8> {
    let (mut out, mut in_string, mut escaped) = (Vec::new(), false, false);
    for b in json.bytes() {
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if !b.is_ascii_whitespace() {
            in_string = b == b'"';
            out.push(b);
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Kind {
    Mark,
    MarkCombined,
    Book,
    AggTrade,
    Account,
    Execution,
}

fn frames() -> Vec<(&'static str, Kind, Connection, Vec<u8>)> {
    let usdm = Connection::market(Venue::Usdm);
    let user = Connection::usdm_user(AccountId(1));
    let margin = Connection::isolated_margin_user(
        AccountId(2),
        Symbol::lit("ETHBTC"),
        Asset::new(b"BTC").unwrap(),
    );
    let mark = fixture("futures_markPrice.json");
    let report = testkit::execution_report_as_trade(
        &fixture("spot_wsapi_executionReport.json"),
        "PARTIALLY_FILLED",
        "0.50000000",
        "0.05132205",
    );
    vec![
        ("markPrice", Kind::Mark, usdm, minify(&mark)),
        (
            "markPrice_combined",
            Kind::MarkCombined,
            usdm,
            minify(&format!(r#"{{"stream":"btcusdt@markPrice@1s","data":{mark}}}"#)),
        ),
        ("bookTicker", Kind::Book, usdm, minify(&fixture("futures_bookTicker.json"))),
        ("aggTrade", Kind::AggTrade, usdm, minify(&fixture("futures_aggTrade.json"))),
        ("ACCOUNT_UPDATE", Kind::Account, user, minify(&fixture("futures_ACCOUNT_UPDATE.json"))),
        ("executionReport", Kind::Execution, margin, minify(&report)),
    ]
}

// ---- the sonic-rs reference: serde structs borrowing from the frame ----

#[derive(Deserialize)]
struct PriceEvent<'a> {
    #[serde(rename = "E")]
    _event_ms: u64,
    s: &'a str,
    p: &'a str,
}

#[derive(Deserialize)]
struct Combined<'a> {
    #[serde(rename = "stream")]
    _stream: &'a str,
    #[serde(borrow)]
    data: PriceEvent<'a>,
}

#[derive(Deserialize)]
struct BookEvent<'a> {
    #[serde(rename = "E")]
    _event_ms: u64,
    s: &'a str,
    b: &'a str,
    a: &'a str,
}

#[derive(Deserialize)]
struct AccountEvent<'a> {
    #[serde(rename = "E")]
    _event_ms: u64,
    #[serde(rename = "T")]
    t: u64,
    #[serde(borrow)]
    a: AccountData<'a>,
}

#[derive(Deserialize)]
struct AccountData<'a> {
    #[serde(rename = "B", borrow, default)]
    balances: Vec<Balance<'a>>,
    #[serde(rename = "P", borrow, default)]
    positions: Vec<Position<'a>>,
}

#[derive(Deserialize)]
struct Balance<'a> {
    a: &'a str,
    cw: &'a str,
}

#[derive(Deserialize)]
struct Position<'a> {
    s: &'a str,
    pa: &'a str,
    ep: &'a str,
    ps: &'a str,
}

#[derive(Deserialize)]
struct Wrapped<'a> {
    #[serde(rename = "subscriptionId")]
    _subscription: u64,
    #[serde(borrow)]
    event: Execution<'a>,
}

#[derive(Deserialize)]
struct Execution<'a> {
    #[serde(rename = "E")]
    _event_ms: u64,
    s: &'a str,
    c: &'a str,
    #[serde(rename = "C")]
    original: &'a str,
    #[serde(rename = "S")]
    side: &'a str,
    x: &'a str,
    #[serde(rename = "X")]
    status: &'a str,
    z: &'a str,
    #[serde(rename = "Z")]
    quote: &'a str,
    #[serde(rename = "T")]
    time: u64,
    t: i64,
    l: &'a str,
    #[serde(rename = "L")]
    last_price: &'a str,
}

fn sym(s: &str) -> Option<Symbol> {
    Symbol::new(s.as_bytes()).ok()
}

fn units(s: &str) -> Option<i64> {
    engine::money::parse_units(s.as_bytes()).ok()
}

/// The same frames to the same events, through sonic-rs; None on any refusal.
fn sonic(kind: Kind, conn: &Connection, frame: &[u8], mut sink: impl FnMut(Event)) -> Option<()> {
    let stream = Origin::Stream;
    match kind {
        Kind::Mark | Kind::MarkCombined | Kind::AggTrade => {
            let e: PriceEvent = match kind {
                Kind::MarkCombined => sonic_rs::from_slice::<Combined>(frame).ok()?.data,
                _ => sonic_rs::from_slice(frame).ok()?,
            };
            let market = MarketKey { venue: conn.venue, symbol: sym(e.s)? };
            let price = Price::from_units(units(e.p)?);
            sink(match kind {
                Kind::AggTrade => Event::Trade { market, price, origin: stream },
                _ => Event::Mark { market, price, origin: stream },
            });
        }
        Kind::Book => {
            let e: BookEvent = sonic_rs::from_slice(frame).ok()?;
            let market = MarketKey { venue: conn.venue, symbol: sym(e.s)? };
            let (bid, ask) = (Price::from_units(units(e.b)?), Price::from_units(units(e.a)?));
            sink(Event::Book { market, bid, ask, origin: stream });
        }
        Kind::Account => {
            let e: AccountEvent = sonic_rs::from_slice(frame).ok()?;
            for b in &e.a.balances {
                if b.a.as_bytes() == conn.balance_asset.as_bytes() {
                    let available = Amount::from_units(units(b.cw)?);
                    let scope = BalanceScope::UsdmWallet;
                    sink(Event::Balance { account: conn.account, scope, available });
                }
            }
            for p in &e.a.positions {
                let symbol = sym(p.s)?;
                let amount = units(p.pa)?;
                let qty = Qty::from_units(amount.abs());
                let entry = Price::from_units(units(p.ep)?);
                let key =
                    |side| PositionKey { account: conn.account, venue: conn.venue, symbol, side };
                let exchange_ms = e.t;
                match p.ps {
                    "LONG" => {
                        sink(Event::Position { key: key(Side::Long), qty, entry, exchange_ms })
                    }
                    "SHORT" => {
                        sink(Event::Position { key: key(Side::Short), qty, entry, exchange_ms })
                    }
                    "BOTH" => {
                        let (flat, held) = if amount < 0 {
                            (Side::Long, Side::Short)
                        } else {
                            (Side::Short, Side::Long)
                        };
                        let zero = (Qty::ZERO, Price::ZERO);
                        sink(Event::Position {
                            key: key(flat),
                            qty: zero.0,
                            entry: zero.1,
                            exchange_ms,
                        });
                        sink(Event::Position { key: key(held), qty, entry, exchange_ms });
                    }
                    _ => return None,
                }
            }
        }
        Kind::Execution => {
            let e = sonic_rs::from_slice::<Wrapped>(frame).ok()?.event;
            let symbol = sym(e.s)?;
            let cid = if e.original.is_empty() { e.c } else { e.original };
            let cum = units(e.z)?;
            let avg = if cum > 0 {
                let scaled = i128::from(units(e.quote)?) * i128::from(SCALE);
                i64::try_from((scaled + i128::from(cum) / 2) / i128::from(cum)).ok()?
            } else {
                0
            };
            let status = match e.status {
                "NEW" => OrderStatus::New,
                "PARTIALLY_FILLED" => OrderStatus::PartiallyFilled,
                "FILLED" => OrderStatus::Filled,
                "CANCELED" => OrderStatus::Canceled,
                "EXPIRED" | "EXPIRED_IN_MATCH" => OrderStatus::Expired,
                _ => return None,
            };
            if e.x == "TRADE" {
                let side = if e.side == "BUY" { OrderSide::Buy } else { OrderSide::Sell };
                sink(Event::MarginTrade(MarginFill {
                    account: conn.account,
                    symbol,
                    side,
                    qty: Qty::from_units(units(e.l)?),
                    price: Price::from_units(units(e.last_price)?),
                    trade_id: u64::try_from(e.t).ok()?,
                    exchange_ms: e.time,
                }));
            }
            sink(Event::Order(OrderUpdate {
                account: conn.account,
                venue: conn.venue,
                symbol,
                cid: ClientOrderId::from_wire(cid.as_bytes())?,
                status,
                cum_qty: Qty::from_units(cum),
                avg_price: Price::from_units(avg),
                exchange_ms: e.time,
            }));
        }
    }
    Some(())
}

fn feed_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("feed_parse");
    group.throughput(Throughput::Elements(1));
    for (label, kind, conn, frame) in frames() {
        let mut parser = FrameParser::new(conn);
        let mut buf = frame.clone();
        let mut wire_events = Vec::new();
        parser.parse(&mut buf, |e| wire_events.push(e)).expect("bench frames parse");
        assert_eq!(buf, frame, "{label}: the frame was rewritten in place");
        let mut sonic_events = Vec::new();
        sonic(kind, &conn, &frame, |e| sonic_events.push(e)).expect("sonic-rs parses it");
        assert_eq!(sonic_events, wire_events, "{label}: sonic-rs and wire disagree");

        group.bench_function(BenchmarkId::new("wire", label), |b| {
            b.iter(|| {
                parser.parse(black_box(&mut buf), |e| {
                    black_box(e);
                })
            })
        });
        group.bench_function(BenchmarkId::new("tape_only", label), |b| {
            let mut buffers = simd_json::Buffers::with_max_depth(
                FrameParser::DEFAULT_MAX_FRAME,
                FrameParser::MAX_DEPTH,
            );
            let mut tape = simd_json::Tape(Vec::with_capacity(4096));
            let mut copy = frame.clone();
            b.iter(|| {
                let mut t = std::mem::replace(&mut tape, simd_json::Tape(Vec::new())).reset();
                let ok = simd_json::fill_tape(black_box(&mut copy), &mut buffers, &mut t).is_ok();
                black_box(t.0.len());
                tape = t.reset();
                ok
            })
        });
        group.bench_function(BenchmarkId::new("sonic_serde", label), |b| {
            b.iter(|| {
                sonic(kind, &conn, black_box(&frame), |e| {
                    black_box(e);
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, feed_parse);
criterion_main!(benches);
