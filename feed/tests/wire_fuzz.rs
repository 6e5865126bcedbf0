//! Property tests: no input makes the parser panic, a refused frame emits nothing, an accepted
//! one emits exactly the events it counts, and a parser that has seen garbage still parses the
//! next good frame exactly. Case counts are bounded so the whole file runs in seconds in CI.

mod wire_common;

use std::cell::RefCell;
use std::collections::BTreeMap;

use engine::types::{AccountId, Symbol, Venue};
use feed::wire::{Asset, Connection, FrameParser, Parsed};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use simd_json::OwnedValue;
use simd_json::prelude::*;
use wire_common::*;

/// The frames robsond's connections receive, as fixtures.
const FRAMES: [&str; 24] = [
    "futures_markPrice.json",
    "futures_bookTicker.json",
    "futures_aggTrade.json",
    "futures_kline.json",
    "futures_ACCOUNT_UPDATE.json",
    "futures_ORDER_TRADE_UPDATE.json",
    "futures_TRADE_LITE.json",
    "futures_ALGO_UPDATE.json",
    "futures_MARGIN_CALL.json",
    "futures_listenKeyExpired.json",
    "margin_listenKeyExpired.json",
    "spot_bookTicker.json",
    "spot_trade.json",
    "spot_aggTrade.json",
    "spot_executionReport.json",
    "spot_wsapi_executionReport.json",
    "spot_wsapi_outboundAccountPosition.json",
    "spot_wsapi_balanceUpdate.json",
    "spot_wsapi_eventStreamTerminated.json",
    "spot_serverShutdown_combined.json",
    "spot_wsapi_error_418_-1003.json",
    "spot_wsapi_userDataStream_subscribe_response.json",
    "ws_SUBSCRIBE_response.json",
    "ws_LIST_SUBSCRIPTIONS_response.json",
];

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() })
}

fn parsers() -> [FrameParser; 2] {
    let quote = Asset::new(b"ETH").unwrap();
    [
        FrameParser::with_max_frame(Connection::usdm_user(AccountId(1)), 4096),
        FrameParser::with_max_frame(
            Connection::isolated_margin_user(AccountId(2), Symbol::lit("ETHBTC"), quote),
            4096,
        ),
    ]
}

/// How often each outcome came up, so a run can show (and assert) that it reached the event
/// parsers rather than stopping at the JSON syntax check.
#[derive(Default)]
struct Outcomes(RefCell<BTreeMap<String, u32>>);

impl Outcomes {
    fn get(&self, outcome: &str) -> u32 {
        self.0.borrow().get(outcome).copied().unwrap_or(0)
    }

    fn report(&self, test: &str) {
        println!("{test}: {:?}", self.0.borrow());
    }
}

/// Parses `frame` with every parser (the checks live in `parse_with`) and counts the outcomes.
fn parse_all(parsers: &RefCell<[FrameParser; 2]>, frame: &[u8], outcomes: &Outcomes) {
    for parser in parsers.borrow_mut().iter_mut() {
        let outcome = match parse_with(parser, frame).0 {
            Ok(Parsed::Events { .. }) => "events".to_string(),
            Ok(Parsed::Control(_)) => "control".to_string(),
            Ok(Parsed::Ignored(_)) => "ignored".to_string(),
            Err(e) => format!("{:?}", e.kind).split(['(', ' ']).next().unwrap().to_string(),
        };
        *outcomes.0.borrow_mut().entry(outcome).or_default() += 1;
    }
}

/// After the run: each parser still gives a good frame's exact result.
fn still_exact(parsers: &RefCell<[FrameParser; 2]>) {
    for name in FRAMES {
        let frame = fixture(name);
        for parser in parsers.borrow_mut().iter_mut() {
            let conn = *parser.connection();
            assert_eq!(parse_with(parser, &frame), parse(conn, &frame), "{name}");
        }
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let parsers = RefCell::new(parsers());
    let outcomes = Outcomes::default();
    let bytes = proptest::collection::vec(any::<u8>(), 0..600);
    runner(3000)
        .run(&bytes, |frame| {
            parse_all(&parsers, &frame, &outcomes);
            Ok(())
        })
        .unwrap();
    still_exact(&parsers);
    outcomes.report("arbitrary_bytes");
}

#[derive(Clone, Debug)]
enum Mutation {
    Set(usize, u8),
    Delete(usize),
    Insert(usize, u8),
    /// Copy `len` bytes from one place to another: splices keys, values and brackets around.
    Splice {
        from: usize,
        len: usize,
        to: usize,
    },
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Bytes that matter to JSON and to Binance's payloads, and some that never appear.
    let byte = prop_oneof![
        prop::sample::select(
            b"{}[]\":,-.0123456789eE+ \\nulltruefalseXsSpPaAbBzZ\xff\x00".to_vec()
        ),
        any::<u8>(),
    ];
    let at = 0..2048usize;
    prop_oneof![
        (at.clone(), byte.clone()).prop_map(|(i, b)| Mutation::Set(i, b)),
        at.clone().prop_map(Mutation::Delete),
        (at.clone(), byte).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (at.clone(), 1..40usize, at.clone()).prop_map(|(from, len, to)| Mutation::Splice {
            from,
            len,
            to
        }),
        at.prop_map(Mutation::Truncate),
    ]
}

fn apply(frame: &mut Vec<u8>, m: &Mutation) {
    if frame.is_empty() {
        return;
    }
    let n = frame.len();
    match *m {
        Mutation::Set(i, b) => frame[i % n] = b,
        Mutation::Delete(i) => {
            frame.remove(i % n);
        }
        Mutation::Insert(i, b) => frame.insert(i % (n + 1), b),
        Mutation::Splice { from, len, to } => {
            let from = from % n;
            let piece = frame[from..(from + len).min(n)].to_vec();
            let to = to % (n + 1);
            frame.splice(to..to, piece);
        }
        Mutation::Truncate(i) => frame.truncate(i % n),
    }
}

#[test]
fn mutated_fixtures_never_panic() {
    let parsers = RefCell::new(parsers());
    let outcomes = Outcomes::default();
    let fixtures: Vec<Vec<u8>> = FRAMES.iter().map(|name| fixture(name)).collect();
    let strategy = (0..fixtures.len(), proptest::collection::vec(mutation(), 1..6));
    runner(6000)
        .run(&strategy, |(which, mutations)| {
            let mut frame = fixtures[which].clone();
            for m in &mutations {
                apply(&mut frame, m);
            }
            parse_all(&parsers, &frame, &outcomes);
            Ok(())
        })
        .unwrap();
    still_exact(&parsers);
    outcomes.report("mutated_fixtures");
    assert!(outcomes.get("events") > 0 && outcomes.get("InvalidJson") > 0);
}

const STRINGS: [&str; 34] = [
    "markPriceUpdate",
    "bookTicker",
    "aggTrade",
    "trade",
    "kline",
    "ACCOUNT_UPDATE",
    "ORDER_TRADE_UPDATE",
    "executionReport",
    "outboundAccountPosition",
    "listenKeyExpired",
    "eventStreamTerminated",
    "serverShutdown",
    "ACCOUNT_CONFIG_UPDATE",
    "BTCUSDT",
    "ETH",
    "USDT",
    "BOTH",
    "LONG",
    "SHORT",
    "NEW",
    "FILLED",
    "TRADE",
    "BUY",
    "SELL",
    "",
    "0",
    "-0.5",
    "25.35190000",
    "1.000000001",
    "1.0000000051",
    "92233720368.54775808",
    "1e5",
    "-1",
    "x@bookTicker",
];

/// A scalar of any JSON type, drawn towards the values Binance's fields hold.
fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(STRINGS.to_vec()).prop_map(|s| format!("\"{s}\"")),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        (-1e12f64..1e12).prop_map(|f| format!("{f:?}")),
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("{}".to_string()),
        Just("[]".to_string()),
    ]
}

/// Well-formed JSON built from Binance's own keys and values, so that the generator reaches the
/// event parsers (known `e`, fields of every type in every place) instead of stopping at the
/// JSON syntax check.
fn binance_like() -> impl Strategy<Value = String> {
    let keys = prop::sample::select(vec![
        "e",
        "E",
        "T",
        "s",
        "p",
        "b",
        "a",
        "u",
        "B",
        "A",
        "P",
        "pa",
        "ep",
        "ps",
        "cw",
        "o",
        "c",
        "C",
        "X",
        "x",
        "z",
        "Z",
        "ap",
        "l",
        "L",
        "t",
        "S",
        "f",
        "ac",
        "stream",
        "data",
        "event",
        "subscriptionId",
        "id",
        "status",
        "result",
        "error",
        "code",
        "retryAfter",
    ]);
    let value = leaf().prop_recursive(4, 48, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6)
                .prop_map(|items| format!("[{}]", items.join(","))),
            proptest::collection::vec((keys.clone(), inner), 0..10).prop_map(|fields| {
                let body: Vec<String> =
                    fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    });
    // Half the time an event with a known `e` first, as Binance writes it.
    let event = (prop::sample::select(STRINGS[..13].to_vec()), value.clone()).prop_map(|(e, v)| {
        match v.strip_prefix('{') {
            Some(rest) if rest != "}" => format!("{{\"e\":\"{e}\",{rest}"),
            _ => format!("{{\"e\":\"{e}\"}}"),
        }
    });
    prop_oneof![value, event]
}

#[test]
fn binance_shaped_json_never_panics() {
    let parsers = RefCell::new(parsers());
    let outcomes = Outcomes::default();
    runner(4000)
        .run(&binance_like(), |frame| {
            parse_all(&parsers, frame.as_bytes(), &outcomes);
            Ok(())
        })
        .unwrap();
    still_exact(&parsers);
    outcomes.report("binance_shaped");
    assert!(outcomes.get("MissingField") > 0 && outcomes.get("WrongType") > 0);
}

/// A fixture with one value replaced (by any JSON type) or removed, at any depth: the frame
/// stays valid JSON and close to real, so every field of every event meets every wrong type
/// and every absence.
#[derive(Clone, Debug)]
enum Edit {
    Replace(usize, String),
    Remove(usize),
}

fn count(v: &OwnedValue) -> usize {
    1 + match v {
        OwnedValue::Array(items) => items.iter().map(count).sum(),
        OwnedValue::Object(obj) => obj.values().map(count).sum(),
        _ => 0,
    }
}

fn replace_nth(v: &mut OwnedValue, n: &mut usize, with: &OwnedValue) -> bool {
    if *n == 0 {
        *v = with.clone();
        return true;
    }
    *n -= 1;
    match v {
        OwnedValue::Array(items) => items.iter_mut().any(|item| replace_nth(item, n, with)),
        OwnedValue::Object(obj) => obj.values_mut().any(|item| replace_nth(item, n, with)),
        _ => false,
    }
}

fn remove_nth(v: &mut OwnedValue, n: &mut usize) -> bool {
    match v {
        OwnedValue::Array(items) => {
            for i in 0..items.len() {
                if *n == 0 {
                    items.remove(i);
                    return true;
                }
                *n -= 1;
                if remove_nth(&mut items[i], n) {
                    return true;
                }
            }
            false
        }
        OwnedValue::Object(obj) => {
            let keys: Vec<String> = obj.keys().cloned().collect();
            for key in keys {
                if *n == 0 {
                    obj.remove(&key);
                    return true;
                }
                *n -= 1;
                if remove_nth(obj.get_mut(&key).unwrap(), n) {
                    return true;
                }
            }
            false
        }
        _ => false,
    }
}

#[test]
fn fixtures_with_values_replaced_or_removed_never_panic() {
    let parsers = RefCell::new(parsers());
    let outcomes = Outcomes::default();
    let values: Vec<OwnedValue> = FRAMES
        .iter()
        .map(|name| simd_json::to_owned_value(&mut fixture(name)).expect("fixtures are JSON"))
        .collect();
    let edit = prop_oneof![
        (any::<usize>(), leaf()).prop_map(|(n, v)| Edit::Replace(n, v)),
        any::<usize>().prop_map(Edit::Remove),
    ];
    let strategy = (0..values.len(), proptest::collection::vec(edit, 1..4));
    runner(6000)
        .run(&strategy, |(which, edits)| {
            let mut value = values[which].clone();
            for edit in &edits {
                let nodes = count(&value);
                match edit {
                    Edit::Replace(n, with) => {
                        let with = simd_json::to_owned_value(&mut with.clone().into_bytes())
                            .expect("leaves are JSON");
                        replace_nth(&mut value, &mut (n % nodes), &with);
                    }
                    Edit::Remove(n) => {
                        remove_nth(&mut value, &mut (n % nodes));
                    }
                }
            }
            parse_all(&parsers, value.encode().as_bytes(), &outcomes);
            Ok(())
        })
        .unwrap();
    still_exact(&parsers);
    outcomes.report("edited_fixtures");
    for outcome in ["events", "MissingField", "WrongType", "Decimal", "UnknownEvent"] {
        assert!(outcomes.get(outcome) > 0, "no {outcome} in the run");
    }
}

#[test]
fn venue_of_the_connection_is_used() {
    // A sanity check that the parsers above differ where they should.
    let [usdm, margin] = parsers();
    assert_eq!(usdm.connection().venue, Venue::Usdm);
    assert_eq!(margin.connection().venue, Venue::Margin);
}
