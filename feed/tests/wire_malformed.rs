//! Malformed frames are refused with an error value that says what and where, never a panic,
//! and a refused frame emits nothing (`parse_with` checks that on every call).

mod wire_common;

use engine::Event;
use engine::events::Origin;
use engine::money::{DecimalError, Price};
use engine::types::{AccountId, MarketKey, Symbol, SymbolError, Venue};
use feed::wire::{Connection, ErrorKind, EventKind, FrameError, FrameParser, Parsed};
use wire_common::*;

fn usdm() -> Connection {
    Connection::usdm_user(AccountId(1))
}

fn margin() -> Connection {
    Connection { account: AccountId(1), ..Connection::market(Venue::Margin) }
}

fn refused(conn: Connection, frame: &[u8]) -> FrameError {
    match parse(conn, frame) {
        (Err(e), _) => e,
        (Ok(parsed), events) => {
            panic!("accepted {:?} as {parsed:?} with {events:?}", String::from_utf8_lossy(frame))
        }
    }
}

fn error(kind: ErrorKind, field: &'static str, event: Option<EventKind>) -> FrameError {
    FrameError { kind, field, event }
}

const MARK: &str =
    r#"{"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT","p":"11794.15000000"}"#;

fn mark(field_value: &str) -> String {
    MARK.replace(r#""p":"11794.15000000""#, field_value)
}

/// Every WebSocket fixture, cut at every length: refused while the cut is inside the JSON.
#[test]
fn truncated_frames_are_invalid_json() {
    let names = [
        "futures_markPrice.json",
        "futures_bookTicker.json",
        "spot_bookTicker.json",
        "futures_aggTrade.json",
        "spot_trade.json",
        "futures_ACCOUNT_UPDATE.json",
        "futures_ORDER_TRADE_UPDATE.json",
        "spot_wsapi_executionReport.json",
        "spot_wsapi_outboundAccountPosition.json",
        "spot_serverShutdown_combined.json",
        "margin_listenKeyExpired.json",
        "spot_wsapi_error_418_-1003.json",
    ];
    let mut parser = FrameParser::new(usdm());
    for name in names {
        let frame = fixture(name);
        let end = frame.iter().rposition(|&b| b == b'}').unwrap() + 1;
        for cut in 0..end {
            let (result, _) = parse_with(&mut parser, &frame[..cut]);
            let kind = result.map_err(|e| e.kind);
            assert_eq!(kind, Err(ErrorKind::InvalidJson), "{name} cut at {cut}");
        }
        // The parser is none the worse for it.
        assert!(parse_with(&mut parser, &frame).0.is_ok(), "{name}");
    }
}

#[test]
fn invalid_json_of_every_sort() {
    for frame in [
        &b""[..],
        b"   ",
        b"{",
        b"{\"e\":}",
        b"{\"e\":\"trade\",}",
        b"{\"e\":\"trade\"} {}",
        b"{'e':'trade'}",
        b"{\"e\":\"tr\xffade\"}",
        b"{\"e\":\"\\uZZZZ\"}",
        b"[1,2",
        b"nul",
        b"{\"p\":01}",
        b"{\"p\":1e}",
    ] {
        assert_eq!(refused(usdm(), frame).kind, ErrorKind::InvalidJson, "{frame:?}");
    }
}

#[test]
fn nesting_beyond_the_limit_is_refused() {
    let deep = format!(
        "{}{}",
        "[".repeat(FrameParser::MAX_DEPTH + 1),
        "]".repeat(FrameParser::MAX_DEPTH + 1)
    );
    assert_eq!(refused(usdm(), deep.as_bytes()).kind, ErrorKind::InvalidJson);
    let deep = format!("{}1{}", r#"{"a":"#.repeat(1000), "}".repeat(1000));
    assert_eq!(refused(usdm(), deep.as_bytes()).kind, ErrorKind::InvalidJson);
}

#[test]
fn oversize_frames_are_refused_before_parsing() {
    let mut parser = FrameParser::with_max_frame(usdm(), 64);
    let frame = MARK.as_bytes();
    let (result, _) = parse_with(&mut parser, frame);
    assert_eq!(result, Err(error(ErrorKind::Oversize { len: frame.len(), max: 64 }, "", None)));
    let (result, _) = parse_with(&mut parser, br#"{"result":null,"id":1}"#);
    assert!(result.is_ok());
}

#[test]
fn unknown_events_and_shapes() {
    let unknown = |field| error(ErrorKind::UnknownEvent, field, None);
    assert_eq!(refused(usdm(), br#"{"e":"fooBar","E":1}"#), unknown("e"));
    assert_eq!(refused(usdm(), br#"{"E":1,"e":"fooBar"}"#), unknown("e"));
    assert_eq!(refused(usdm(), br#"{"foo":1}"#), unknown(""));
    assert_eq!(refused(usdm(), br#"{}"#), unknown(""));
    assert_eq!(refused(usdm(), br#"[]"#), unknown("[]"));
    for scalar in [&b"42"[..], b"\"markPriceUpdate\"", b"null", b"true"] {
        assert_eq!(refused(usdm(), scalar), unknown(""));
    }
    // A combined stream whose payload has no `e` and is not a book ticker.
    let depth = br#"{"stream":"btcusdt@depth5","data":{"lastUpdateId":1,"bids":[],"asks":[]}}"#;
    assert_eq!(refused(usdm(), depth), unknown("data"));
    assert_eq!(refused(usdm(), br#"{"stream":"x","data":7}"#).kind, ErrorKind::WrongType);
    assert_eq!(refused(usdm(), br#"{"e":7}"#), error(ErrorKind::WrongType, "e", None));
    // A WebSocket API wrapper around nothing recognisable.
    let wrapped = br#"{"subscriptionId":0,"event":{"E":1}}"#;
    assert_eq!(refused(usdm(), wrapped), error(ErrorKind::MissingField, "event.e", None));
    // An array mixing data with something else.
    let mixed = format!("[{MARK},{{\"result\":null,\"id\":1}}]");
    assert_eq!(refused(usdm(), mixed.as_bytes()).kind, ErrorKind::MissingField);
    let mixed = format!(r#"[{MARK},{{"e":"listenKeyExpired","E":1}}]"#);
    assert_eq!(refused(usdm(), mixed.as_bytes()).kind, ErrorKind::UnknownEvent);
}

#[test]
fn decimals_sent_as_json_numbers() {
    // A whole number is exact, whatever its JSON type.
    let (result, events) = parse(usdm(), mark(r#""p":11794"#).as_bytes());
    assert!(result.is_ok());
    assert_eq!(
        events,
        vec![Event::Mark {
            market: MarketKey { venue: Venue::Usdm, symbol: Symbol::lit("BTCUSDT") },
            price: Price::from_int(11794),
            origin: Origin::Stream,
        }]
    );
    // A fraction would have gone through f64: refused, not rounded.
    let kind = Some(EventKind::MarkPrice);
    assert_eq!(
        refused(usdm(), mark(r#""p":11794.15"#).as_bytes()),
        error(ErrorKind::WrongType, "p", kind)
    );
    assert_eq!(
        refused(usdm(), mark(r#""p":1e3"#).as_bytes()),
        error(ErrorKind::WrongType, "p", kind)
    );
    // Integers beyond the fixed-point range.
    let out = ErrorKind::Decimal(DecimalError::OutOfRange);
    assert_eq!(refused(usdm(), mark(r#""p":92233720369"#).as_bytes()), error(out, "p", kind));
    assert_eq!(refused(usdm(), mark(r#""p":-92233720369"#).as_bytes()), error(out, "p", kind));
    assert_eq!(
        refused(usdm(), mark(r#""p":18446744073709551615"#).as_bytes()),
        error(out, "p", kind)
    );
    // Beyond u64: simd-json itself refuses it.
    assert_eq!(
        refused(usdm(), mark(r#""p":18446744073709551616"#).as_bytes()).kind,
        ErrorKind::InvalidJson
    );
}

#[test]
fn wrong_types() {
    let kind = Some(EventKind::MarkPrice);
    for value in [r#""p":null"#, r#""p":true"#, r#""p":{"x":"1"}"#, r#""p":["1"]"#] {
        assert_eq!(
            refused(usdm(), mark(value).as_bytes()),
            error(ErrorKind::WrongType, "p", kind),
            "{value}"
        );
    }
    let frame = MARK.replace(r#""s":"BTCUSDT""#, r#""s":42"#);
    assert_eq!(refused(usdm(), frame.as_bytes()), error(ErrorKind::WrongType, "s", kind));
    let frame = MARK.replace("1562305380000", "1562305380000.5");
    assert_eq!(refused(usdm(), frame.as_bytes()), error(ErrorKind::WrongType, "E", kind));
    let frame = MARK.replace("1562305380000", r#""15623x""#);
    assert_eq!(refused(usdm(), frame.as_bytes()), error(ErrorKind::WrongType, "E", kind));
    let frame = MARK.replace("1562305380000", "-1");
    assert_eq!(refused(usdm(), frame.as_bytes()), error(ErrorKind::OutOfRange, "E", kind));
    let frame = MARK.replace("1562305380000", r#""99999999999999999999""#);
    assert_eq!(refused(usdm(), frame.as_bytes()), error(ErrorKind::OutOfRange, "E", kind));
    let account =
        fixture_str("futures_ACCOUNT_UPDATE.json").replace(r#""P": ["#, r#""P": 5, "X": ["#);
    let e = refused(usdm(), account.as_bytes());
    assert_eq!(e, error(ErrorKind::WrongType, "a.P", Some(EventKind::AccountUpdate)));
}

#[test]
fn bad_decimals() {
    let kind = Some(EventKind::MarkPrice);
    for (value, why) in [
        (r#""p":"92233720369""#, DecimalError::OutOfRange),
        (r#""p":"0.000000001""#, DecimalError::TooPrecise),
        (r#""p":"1e-8""#, DecimalError::InvalidChar),
        (r#""p":"""#, DecimalError::Empty),
        (r#""p":" 1""#, DecimalError::InvalidChar),
        (r#""p":"NaN""#, DecimalError::InvalidChar),
    ] {
        let e = refused(usdm(), mark(value).as_bytes());
        assert_eq!(e, error(ErrorKind::Decimal(why), "p", kind), "{value}");
    }
}

#[test]
fn computed_averages_round_past_eight_decimals_and_nothing_else_does() {
    // Entry price with 10 decimals: rounded half away from zero, not refused.
    let frame = fixture_str("futures_ACCOUNT_UPDATE.json").replace("6563.66500", "6563.6650000051");
    let (_, events) = parse(usdm(), frame.as_bytes());
    let Event::Position { entry, .. } = events[3] else { panic!("{events:?}") };
    assert_eq!(entry, Price::lit("6563.66500001"));
    let frame = fixture_str("futures_ACCOUNT_UPDATE.json").replace("6563.66500", "6563.6650000049");
    let (_, events) = parse(usdm(), frame.as_bytes());
    let Event::Position { entry, .. } = events[3] else { panic!("{events:?}") };
    assert_eq!(entry, Price::lit("6563.665"));
    // Still strict about what is not a decimal, and about the quantity.
    let frame = fixture_str("futures_ACCOUNT_UPDATE.json").replace("6563.66500", "6563.665000005x");
    let e = refused(usdm(), frame.as_bytes());
    assert_eq!(e.kind, ErrorKind::Decimal(DecimalError::InvalidChar));
    assert_eq!(e.field, "a.P.ep");
    let frame = fixture_str("futures_ACCOUNT_UPDATE.json")
        .replace(r#""pa": "20""#, r#""pa": "20.0000000001""#);
    let e = refused(usdm(), frame.as_bytes());
    assert_eq!(
        e,
        error(
            ErrorKind::Decimal(DecimalError::TooPrecise),
            "a.P.pa",
            Some(EventKind::AccountUpdate)
        )
    );
}

#[test]
fn missing_fields() {
    let kind = Some(EventKind::MarkPrice);
    let frame = MARK.replace(r#","p":"11794.15000000""#, "");
    assert_eq!(refused(usdm(), frame.as_bytes()), error(ErrorKind::MissingField, "p", kind));
    let frame = MARK.replace(r#","s":"BTCUSDT""#, "");
    assert_eq!(refused(usdm(), frame.as_bytes()), error(ErrorKind::MissingField, "s", kind));
    let frame = MARK.replace(r#","E":1562305380000"#, "");
    assert_eq!(refused(usdm(), frame.as_bytes()), error(ErrorKind::MissingField, "E", kind));

    let account = fixture_str("futures_ACCOUNT_UPDATE.json");
    let kind = Some(EventKind::AccountUpdate);
    // The last position lacks `ps`: the two good ones before it must not be emitted either.
    let frame = account.replace(r#""ps": "SHORT""#, r#""side": "SHORT""#);
    assert_eq!(refused(usdm(), frame.as_bytes()), error(ErrorKind::MissingField, "a.P.ps", kind));
    let frame = account.replace(r#""T": 1564745798938,"#, "");
    assert_eq!(refused(usdm(), frame.as_bytes()), error(ErrorKind::MissingField, "T", kind));
    let frame = account.replace(r#""cw": "100.12345678","#, "");
    assert_eq!(refused(usdm(), frame.as_bytes()), error(ErrorKind::MissingField, "a.B.cw", kind));

    let order = fixture_str("futures_ORDER_TRADE_UPDATE.json");
    let kind = Some(EventKind::OrderTradeUpdate);
    let frame = order.replace(r#""z": "0","#, "");
    assert_eq!(refused(usdm(), frame.as_bytes()), error(ErrorKind::MissingField, "o.z", kind));

    let report = fixture_str("spot_executionReport.json");
    let kind = Some(EventKind::ExecutionReport);
    // A trade execution without its trade price.
    let frame = report
        .replace(r#""x": "NEW""#, r#""x": "TRADE""#)
        .replace(r#""t": -1"#, r#""t": 5"#)
        .replace(r#""L": "0.00000000","#, "");
    assert_eq!(refused(margin(), frame.as_bytes()), error(ErrorKind::MissingField, "L", kind));
    // A fill without the cumulative quote the average comes from.
    let frame =
        report.replace(r#""z": "0.00000000""#, r#""z": "1""#).replace(r#""Z": "0.00000000","#, "");
    assert_eq!(refused(margin(), frame.as_bytes()), error(ErrorKind::MissingField, "Z", kind));
    // Wrapped events say which one failed.
    let frame = wsapi_event(0, &report.replace(r#""X": "NEW","#, ""));
    assert_eq!(refused(margin(), frame.as_bytes()), error(ErrorKind::MissingField, "X", kind));
    let frame = r#"{"subscriptionId":0,"event":{"e":"eventStreamTerminated"}}"#;
    let kind = Some(EventKind::EventStreamTerminated);
    assert_eq!(refused(margin(), frame.as_bytes()), error(ErrorKind::MissingField, "E", kind));
}

#[test]
fn unknown_enumerated_values() {
    let account =
        fixture_str("futures_ACCOUNT_UPDATE.json").replace(r#""ps": "LONG""#, r#""ps": "MIDDLE""#);
    let e = refused(usdm(), account.as_bytes());
    assert_eq!(e, error(ErrorKind::UnknownValue, "a.P.ps", Some(EventKind::AccountUpdate)));
    let order =
        fixture_str("futures_ORDER_TRADE_UPDATE.json").replace(r#""X": "NEW""#, r#""X": "MAYBE""#);
    let e = refused(usdm(), order.as_bytes());
    assert_eq!(e, error(ErrorKind::UnknownValue, "o.X", Some(EventKind::OrderTradeUpdate)));
    let report = fixture_str("spot_executionReport.json")
        .replace(r#""x": "NEW""#, r#""x": "TRADE""#)
        .replace(r#""S": "BUY""#, r#""S": "HOLD""#);
    let e = refused(margin(), report.as_bytes());
    assert_eq!(e, error(ErrorKind::UnknownValue, "S", Some(EventKind::ExecutionReport)));
}

#[test]
fn out_of_range_integers() {
    let report =
        fixture_str("spot_executionReport.json").replace(r#""x": "NEW""#, r#""x": "TRADE""#);
    // A trade execution must carry a trade id; -1 means none.
    let e = refused(margin(), report.as_bytes());
    assert_eq!(e, error(ErrorKind::OutOfRange, "t", Some(EventKind::ExecutionReport)));
    let frame = report.replace(r#""t": -1"#, r#""t": 9223372036854775808"#);
    let e = refused(margin(), frame.as_bytes());
    assert_eq!(e, error(ErrorKind::OutOfRange, "t", Some(EventKind::ExecutionReport)));
    let frame = br#"{"e":"ACCOUNT_CONFIG_UPDATE","E":1,"T":1,"ac":{"s":"BTCUSDT","l":5000000000}}"#;
    let e = refused(usdm(), frame);
    assert_eq!(e, error(ErrorKind::OutOfRange, "ac.l", Some(EventKind::AccountConfigUpdate)));
    let frame = br#"{"id":1,"status":70000}"#;
    assert_eq!(
        refused(usdm(), frame),
        error(ErrorKind::OutOfRange, "status", Some(EventKind::ApiReply))
    );
    let long_id = format!(r#"{{"id":"{}","status":200}}"#, "x".repeat(37));
    assert_eq!(
        refused(usdm(), long_id.as_bytes()),
        error(ErrorKind::OutOfRange, "id", Some(EventKind::ApiReply))
    );
}

#[test]
fn unrepresentable_symbols_and_client_ids() {
    let kind = Some(EventKind::MarkPrice);
    for (symbol, why) in [
        ("btcusdt", SymbolError::InvalidChar),
        ("币安人生USDT", SymbolError::InvalidChar),
        ("", SymbolError::Empty),
        ("ABCDEFGHIJKLMNOPQRSTUVWXYZ", SymbolError::TooLong),
    ] {
        let frame = MARK.replace("BTCUSDT", symbol);
        assert_eq!(
            refused(usdm(), frame.as_bytes()),
            error(ErrorKind::Symbol(why), "s", kind),
            "{symbol}"
        );
    }
    let order = fixture_str("futures_ORDER_TRADE_UPDATE.json");
    let kind = Some(EventKind::OrderTradeUpdate);
    for cid in ["", &"x".repeat(37)] {
        let frame = order.replace(r#""c": "TEST""#, &format!(r#""c": "{cid}""#));
        assert_eq!(refused(usdm(), frame.as_bytes()), error(ErrorKind::ClientOrderId, "o.c", kind));
    }
}

#[test]
fn errors_display_what_and_where() {
    let e = refused(usdm(), mark(r#""p":"0.000000001""#).as_bytes());
    assert_eq!(e.to_string(), r#"more than 8 fractional digits at "p" in markPriceUpdate"#);
    let e = refused(usdm(), b"{");
    assert_eq!(e.to_string(), "invalid JSON");
    let parsed = parse(usdm(), MARK.as_bytes()).0;
    assert!(matches!(parsed, Ok(Parsed::Events { kind: EventKind::MarkPrice, .. })));
}
