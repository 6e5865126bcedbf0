//! Parsing allocates nothing in steady state (DESIGN.md section 7).
//!
//! This binary holds one test and a counting global allocator. The allocator counts `alloc`,
//! `alloc_zeroed` and `realloc` only while a thread-local "armed" flag is set, and the test arms
//! it on its own thread only around `FrameParser::parse` (including the sink it calls): the
//! harness's threads and the test's own bookkeeping may allocate as they like, the parser may not.
//!
//! The frames: every WebSocket fixture, in every envelope it travels in (raw, combined stream,
//! WebSocket API wrapper, `!markPrice@arr`), derived variants that take the other code paths (a
//! trade execution, a cancel, fills with averages to compute), and refused frames of every error
//! kind, since a garbled frame must not cost an allocation either. After one unmeasured pass, every
//! frame is parsed `ROUNDS` times with the allocator armed, and each result and event is compared
//! with the unmeasured pass's (without allocating), so a zero means "parsed right, allocated
//! nothing". Then the largest frames a parser accepts, never seen before, are parsed armed: the
//! buffers are sized at construction, so even those must not allocate.
//!
//! Set `NO_ALLOC_TRACE=1` to print a backtrace for every allocation made while armed.

mod wire_common;

use testkit::{CountingAlloc, armed_allocations, set_armed, trace_from_env};

use engine::Event;
use engine::types::{AccountId, Symbol, Venue};
use feed::wire::{Asset, Connection, ErrorKind, FrameError, FrameParser, Parsed};
use wire_common::*;

// ---- the counting allocator ----

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

// ---- the frames ----

const ROUNDS: usize = 2_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Conn {
    UsdmMarket,
    SpotMarket,
    UsdmUser,
    MarginUser,
}

struct Case {
    label: String,
    conn: Conn,
    /// Pristine bytes; parsing is in place, so each parse works on a fresh copy of these.
    frame: Vec<u8>,
    expected: Result<Parsed, FrameError>,
    events: Vec<Event>,
}

fn frames() -> Vec<(String, Conn, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add =
        |label: &str, conn, frame: String| out.push((label.to_string(), conn, frame.into_bytes()));
    let f = fixture_str;

    let mark = f("futures_markPrice.json");
    add("markPrice raw", Conn::UsdmMarket, mark.clone());
    add("markPrice@1s combined", Conn::UsdmMarket, combined("btcusdt@markPrice@1s", &mark));
    let eth = mark.replace("BTCUSDT", "ETHUSDT");
    add("!markPrice@arr", Conn::UsdmMarket, format!("[{mark},{eth},{mark}]"));
    add(
        "!markPrice@arr combined",
        Conn::UsdmMarket,
        combined("!markPrice@arr", &format!("[{mark},{eth}]")),
    );
    let book = f("futures_bookTicker.json");
    add("bookTicker futures raw", Conn::UsdmMarket, book.clone());
    add("bookTicker futures combined", Conn::UsdmMarket, combined("bnbusdt@bookTicker", &book));
    let spot_book = f("spot_bookTicker.json");
    add("bookTicker spot raw", Conn::SpotMarket, spot_book.clone());
    add("bookTicker spot combined", Conn::SpotMarket, combined("bnbusdt@bookTicker", &spot_book));
    add("aggTrade futures", Conn::UsdmMarket, f("futures_aggTrade.json"));
    add(
        "aggTrade spot combined",
        Conn::SpotMarket,
        combined("bnbbtc@aggTrade", &f("spot_aggTrade.json")),
    );
    add("trade spot", Conn::SpotMarket, f("spot_trade.json"));
    add("kline futures", Conn::UsdmMarket, f("futures_kline.json"));
    add(
        "kline spot combined",
        Conn::SpotMarket,
        combined("bnbbtc@kline_1m", &f("spot_kline.json")),
    );
    add("avgPrice", Conn::SpotMarket, f("spot_avgPrice.json"));
    add("serverShutdown raw", Conn::SpotMarket, f("spot_serverShutdown_raw.json"));
    add("serverShutdown combined", Conn::SpotMarket, f("spot_serverShutdown_combined.json"));
    add("SUBSCRIBE reply", Conn::UsdmMarket, f("ws_SUBSCRIBE_response.json"));
    add("LIST_SUBSCRIPTIONS reply", Conn::UsdmMarket, f("ws_LIST_SUBSCRIPTIONS_response.json"));
    add(
        "stream error",
        Conn::UsdmMarket,
        r#"{"code":2,"msg":"Invalid request","id":7}"#.to_string(),
    );

    let account = f("futures_ACCOUNT_UPDATE.json");
    add("ACCOUNT_UPDATE", Conn::UsdmUser, account.clone());
    add("ACCOUNT_UPDATE combined", Conn::UsdmUser, combined("listenKey", &account));
    add(
        "ACCOUNT_UPDATE one-way short, long entry",
        Conn::UsdmUser,
        account
            .replacen(r#""pa": "0""#, r#""pa": "-0.5""#, 1)
            .replace("6563.66500", "6563.6650000051"),
    );
    let start = account.find(r#""P": ["#).unwrap() + r#""P": ["#.len();
    let end = account.rfind(']').unwrap();
    let many = [&account[start..end]; 7].join(",");
    add(
        "ACCOUNT_UPDATE, 21 positions (past the staging capacity)",
        Conn::UsdmUser,
        format!("{}{many}{}", &account[..start], &account[end..]),
    );
    let order = f("futures_ORDER_TRADE_UPDATE.json");
    add("ORDER_TRADE_UPDATE", Conn::UsdmUser, order.clone());
    add(
        "ORDER_TRADE_UPDATE filled",
        Conn::UsdmUser,
        order
            .replace(r#""X": "NEW""#, r#""X": "FILLED""#)
            .replace(r#""z": "0""#, r#""z": "0.001""#),
    );
    add("TRADE_LITE", Conn::UsdmUser, f("futures_TRADE_LITE.json"));
    add("ALGO_UPDATE", Conn::UsdmUser, f("futures_ALGO_UPDATE.json"));
    add("MARGIN_CALL", Conn::UsdmUser, f("futures_MARGIN_CALL.json"));
    add(
        "ACCOUNT_CONFIG_UPDATE",
        Conn::UsdmUser,
        r#"{"e":"ACCOUNT_CONFIG_UPDATE","E":1611646737479,"T":1611646737476,"ac":{"s":"BTCUSDT","l":25}}"#
            .to_string(),
    );
    add("listenKeyExpired futures", Conn::UsdmUser, f("futures_listenKeyExpired.json"));
    add("listenKeyExpired margin (E string)", Conn::MarginUser, f("margin_listenKeyExpired.json"));

    let report = f("spot_executionReport.json");
    add("executionReport raw", Conn::MarginUser, report.clone());
    add("executionReport wsapi", Conn::MarginUser, f("spot_wsapi_executionReport.json"));
    let trade = testkit::execution_report_as_trade(&report, "FILLED", "3.00000000", "1.00000000");
    add("executionReport trade wsapi", Conn::MarginUser, wsapi_event(3, &trade));
    add(
        "executionReport cancel",
        Conn::MarginUser,
        report
            .replace(r#""X": "NEW""#, r#""X": "CANCELED""#)
            .replace(r#""C": """#, r#""C": "mUvoqJxFIILMdfAW5iGSOW""#),
    );
    add("outboundAccountPosition raw", Conn::MarginUser, f("spot_outboundAccountPosition.json"));
    add(
        "outboundAccountPosition wsapi",
        Conn::MarginUser,
        f("spot_wsapi_outboundAccountPosition.json"),
    );
    add("balanceUpdate wsapi", Conn::MarginUser, f("spot_wsapi_balanceUpdate.json"));
    add("listStatus", Conn::MarginUser, f("spot_listStatus.json"));
    add("eventStreamTerminated", Conn::MarginUser, f("spot_wsapi_eventStreamTerminated.json"));
    add("serverShutdown wsapi", Conn::MarginUser, f("spot_wsapi_serverShutdown.json"));
    add(
        "subscribe reply",
        Conn::MarginUser,
        f("spot_wsapi_userDataStream_subscribe_response.json"),
    );
    add("418 reply", Conn::MarginUser, f("spot_wsapi_error_418_-1003.json"));
    add("order.place reply", Conn::MarginUser, f("spot_wsapi_order_place_response.json"));

    // Refused frames, one per error kind.
    add("truncated", Conn::UsdmUser, account[..account.len() / 2].to_string());
    add("bad UTF-8 escape", Conn::UsdmMarket, r#"{"e":"\uZZZZ"}"#.to_string());
    add("unknown event", Conn::UsdmUser, r#"{"e":"SOMETHING_NEW","E":1}"#.to_string());
    add("unknown shape", Conn::UsdmMarket, r#"{"lastUpdateId":1,"bids":[],"asks":[]}"#.to_string());
    add("missing field", Conn::UsdmUser, account.replace(r#""ps": "SHORT""#, r#""side": "SHORT""#));
    add("float price", Conn::UsdmMarket, mark.replace(r#""11794.15000000""#, "11794.15"));
    add("too precise", Conn::UsdmMarket, mark.replace("11794.15000000", "11794.150000001"));
    add("out of range", Conn::UsdmMarket, mark.replace("11794.15000000", "92233720369"));
    add("unknown status", Conn::UsdmUser, order.replace(r#""X": "NEW""#, r#""X": "MAYBE""#));
    add("lower-case symbol", Conn::UsdmMarket, mark.replace("BTCUSDT", "btcusdt"));
    add(
        "long client id",
        Conn::UsdmUser,
        order.replace(r#""c": "TEST""#, &format!(r#""c": "{}""#, "x".repeat(40))),
    );
    add("negative time", Conn::UsdmMarket, mark.replace("1562305380000", "-1"));
    out
}

fn connection(conn: Conn) -> Connection {
    match conn {
        Conn::UsdmMarket => Connection::market(Venue::Usdm),
        Conn::SpotMarket => Connection::market(Venue::Margin),
        Conn::UsdmUser => Connection::usdm_user(AccountId(1)),
        Conn::MarginUser => Connection::isolated_margin_user(
            AccountId(2),
            Symbol::lit("ETHUSDT"),
            Asset::new(b"ETH").unwrap(),
        ),
    }
}

fn parser_index(conn: Conn) -> usize {
    conn as usize
}

/// Parses `case` on `work` (a buffer reserved for the largest frame) with the allocator armed,
/// checking the outcome against the expected one without allocating. Returns false on a mismatch.
fn measured_parse(parser: &mut FrameParser, case: &Case, work: &mut Vec<u8>) -> bool {
    work.clear();
    work.extend_from_slice(&case.frame);
    let mut seen = 0usize;
    let mut matches = true;
    let sink = |event: Event| {
        matches &= case.events.get(seen) == Some(&event);
        seen += 1;
    };
    set_armed(true);
    let result = parser.parse(&mut work[..], sink);
    set_armed(false);
    matches && seen == case.events.len() && result == case.expected
}

#[test]
fn steady_state_allocates_nothing() {
    trace_from_env();
    // The control: an allocation made while armed is counted, so the zeros below mean something.
    let before = armed_allocations();
    set_armed(true);
    std::hint::black_box(Box::new(1u64));
    set_armed(false);
    assert_eq!(armed_allocations() - before, 1, "the counting allocator does not count");
    let mut parsers: Vec<FrameParser> =
        [Conn::UsdmMarket, Conn::SpotMarket, Conn::UsdmUser, Conn::MarginUser]
            .into_iter()
            .map(|c| FrameParser::new(connection(c)))
            .collect();

    // The unmeasured pass: what each frame gives, to compare the measured ones against.
    let mut cases = Vec::new();
    for (label, conn, frame) in frames() {
        let (expected, events) = parse_with(&mut parsers[parser_index(conn)], &frame);
        cases.push(Case { label, conn, frame, expected, events });
    }
    let events_per_round: usize = cases.iter().map(|c| c.events.len()).sum();
    let refused = cases.iter().filter(|c| c.expected.is_err()).count();
    let mut kinds: Vec<ErrorKind> = Vec::new();
    for kind in cases.iter().filter_map(|c| c.expected.err().map(|e| e.kind)) {
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    println!(
        "{} frames per round ({refused} refused: {kinds:?}), {events_per_round} events per round",
        cases.len()
    );
    let mut work = Vec::with_capacity(FrameParser::DEFAULT_MAX_FRAME);

    let before = armed_allocations();
    let mut mismatches = Vec::new();
    for _ in 0..ROUNDS {
        for case in &cases {
            if !measured_parse(&mut parsers[parser_index(case.conn)], case, &mut work) {
                mismatches.push(case.label.clone());
            }
        }
    }
    let allocations = armed_allocations() - before;
    let parses = ROUNDS * cases.len();
    println!(
        "{parses} frames parsed ({} events), {allocations} allocations",
        ROUNDS * events_per_round
    );
    assert!(mismatches.is_empty(), "results differed from the unmeasured pass: {mismatches:?}");
    assert_eq!(
        allocations, 0,
        "the parser allocated {allocations} times (NO_ALLOC_TRACE=1 shows where)"
    );
    assert!(
        events_per_round >= 40,
        "the frames did real work: {events_per_round} events per round"
    );

    // The largest frames a parser accepts, first seen armed: the buffers were sized for them at
    // construction. Densest structure (every byte a node), and the longest string.
    let max = FrameParser::DEFAULT_MAX_FRAME;
    let mut dense = b"[0".to_vec();
    while dense.len() + 3 <= max {
        dense.extend_from_slice(b",0");
    }
    dense.push(b']');
    let mut long_string = br#"{"e":"bookTicker","s":""#.to_vec();
    long_string.resize(max - 2, b'A');
    long_string.extend_from_slice(b"\"}");
    let array: String = {
        let mut items = vec![mark_item()];
        while items.len() * (mark_item().len() + 1) + mark_item().len() + 2 < max {
            items.push(mark_item());
        }
        format!("[{}]", items.join(","))
    };
    let mut market = FrameParser::new(connection(Conn::UsdmMarket));
    let (expected_array, array_events) =
        parse_with(&mut FrameParser::new(connection(Conn::UsdmMarket)), array.as_bytes());
    assert!(matches!(expected_array, Ok(Parsed::Events { .. })), "{expected_array:?}");
    // Warm only the code paths, on a small frame.
    let _ = parse_with(&mut market, &fixture("futures_markPrice.json"));
    let big = [
        ("dense", dense, None),
        ("long string", long_string, None),
        ("array", array.into_bytes(), Some(array_events.len())),
    ];
    let before = armed_allocations();
    for (label, mut frame, events) in big {
        assert!(frame.len() <= max && frame.len() > max - 300, "{label}: {}", frame.len());
        let mut seen = 0usize;
        set_armed(true);
        let result = market.parse(&mut frame, |_| seen += 1);
        set_armed(false);
        match events {
            Some(n) => assert_eq!(seen, n, "{label}: {result:?}"),
            None => assert!(result.is_err(), "{label}: {result:?}"),
        }
    }
    let allocations = armed_allocations() - before;
    println!("largest frames ({max} bytes) first seen: {allocations} allocations");
    assert_eq!(allocations, 0, "a frame up to max_frame allocated");
}

fn mark_item() -> String {
    r#"{"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT","p":"11794.15000000","i":"11784.62659091","P":"11784.25641265","r":"0.00038167","T":1562306400000}"#.to_string()
}
