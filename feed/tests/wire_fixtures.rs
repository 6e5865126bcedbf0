//! Every WebSocket payload in `shared/fixtures/binance/` (written by Binance's own documentation)
//! parses to the exact engine values it stands for: each number is checked, not just `Ok`.
//!
//! The envelopes (combined stream, WebSocket API user data, `!markPrice@arr`) are built around
//! the documented raw payloads in the documented format; derived variants (a trade execution, a
//! cancel, a one-way short) change named fields of a fixture and say so.

mod wire_common;

use engine::Event;
use engine::events::{BalanceScope, MarginFill, OrderStatus, OrderUpdate, Origin};
use engine::money::{Amount, Price, Qty};
use engine::types::{
    AccountId, ClientOrderId, MarketKey, OrderSide, PositionKey, Side, Symbol, Venue,
};
use feed::wire::{Asset, Connection, Control, EventKind, FrameParser, IdText, Parsed, RequestId};
use wire_common::*;

const ACCOUNT: AccountId = AccountId(7);

fn usdm() -> Connection {
    Connection::market(Venue::Usdm)
}

fn spot() -> Connection {
    Connection::market(Venue::Margin)
}

fn margin() -> Connection {
    Connection { account: ACCOUNT, ..Connection::market(Venue::Margin) }
}

fn market(venue: Venue, symbol: &str) -> MarketKey {
    MarketKey { venue, symbol: Symbol::lit(symbol) }
}

fn events(kind: EventKind, event_ms: Option<u64>, count: u32) -> Parsed {
    Parsed::Events { kind, event_ms, count }
}

fn text_id(s: &str) -> RequestId {
    RequestId::Text(IdText::new(s.as_bytes()).unwrap())
}

// ---- market streams ----

#[test]
fn mark_price_raw_combined_and_1s() {
    let raw = fixture_str("futures_markPrice.json");
    let expected = vec![Event::Mark {
        market: market(Venue::Usdm, "BTCUSDT"),
        price: Price::from_units(1_179_415_000_000),
        origin: Origin::Stream,
    }];
    assert_eq!(
        expected[0],
        Event::Mark {
            market: market(Venue::Usdm, "BTCUSDT"),
            price: Price::lit("11794.15"),
            origin: Origin::Stream,
        }
    );
    let parsed = events(EventKind::MarkPrice, Some(1_562_305_380_000), 1);
    for frame in
        [raw.clone(), combined("btcusdt@markPrice", &raw), combined("btcusdt@markPrice@1s", &raw)]
    {
        let (result, got) = parse(usdm(), frame.as_bytes());
        assert_eq!(result, Ok(parsed), "{frame}");
        assert_eq!(got, expected, "{frame}");
    }
}

#[test]
fn mark_price_array_yields_every_symbol() {
    let btc = fixture_str("futures_markPrice.json");
    let eth = btc.replace("\"BTCUSDT\"", "\"ETHUSDT\"").replace("11794.15000000", "3000.5");
    let array = format!("[{btc},{eth}]");
    let expected = vec![
        Event::Mark {
            market: market(Venue::Usdm, "BTCUSDT"),
            price: Price::lit("11794.15"),
            origin: Origin::Stream,
        },
        Event::Mark {
            market: market(Venue::Usdm, "ETHUSDT"),
            price: Price::lit("3000.5"),
            origin: Origin::Stream,
        },
    ];
    for frame in [array.clone(), combined("!markPrice@arr@1s", &array)] {
        let (result, got) = parse(usdm(), frame.as_bytes());
        assert_eq!(result, Ok(events(EventKind::MarkPrice, Some(1_562_305_380_000), 2)));
        assert_eq!(got, expected);
    }
}

#[test]
fn mark_price_array_beyond_the_staging_capacity() {
    let btc = fixture_str("futures_markPrice.json");
    let array = format!("[{}]", vec![btc.as_str(); 40].join(","));
    let (result, got) = parse(usdm(), array.as_bytes());
    assert_eq!(result, Ok(events(EventKind::MarkPrice, Some(1_562_305_380_000), 40)));
    assert!(got.iter().all(|e| *e
        == Event::Mark {
            market: market(Venue::Usdm, "BTCUSDT"),
            price: Price::lit("11794.15"),
            origin: Origin::Stream,
        }));
    let bad =
        format!("[{},{}]", vec![btc.as_str(); 39].join(","), btc.replace("11794.15000000", "x"));
    let (result, _) = parse(usdm(), bad.as_bytes());
    assert_eq!(result.map_err(|e| e.field), Err("p"));
}

#[test]
fn futures_book_ticker() {
    let raw = fixture_str("futures_bookTicker.json");
    let expected = vec![Event::Book {
        market: market(Venue::Usdm, "BNBUSDT"),
        bid: Price::from_units(2_535_190_000),
        ask: Price::from_units(2_536_520_000),
        origin: Origin::Stream,
    }];
    for frame in [raw.clone(), combined("bnbusdt@bookTicker", &raw)] {
        let (result, got) = parse(usdm(), frame.as_bytes());
        assert_eq!(result, Ok(events(EventKind::BookTicker, Some(1_568_014_460_893), 1)));
        assert_eq!(got, expected);
    }
}

#[test]
fn spot_book_ticker_has_no_e_and_is_found_by_shape_or_stream() {
    let raw = fixture_str("spot_bookTicker.json");
    let expected = vec![Event::Book {
        market: market(Venue::Margin, "BNBUSDT"),
        bid: Price::lit("25.3519"),
        ask: Price::lit("25.3652"),
        origin: Origin::Stream,
    }];
    for frame in [raw.clone(), combined("bnbusdt@bookTicker", &raw)] {
        let (result, got) = parse(spot(), frame.as_bytes());
        assert_eq!(result, Ok(events(EventKind::BookTicker, None, 1)), "{frame}");
        assert_eq!(got, expected);
    }
    // An id beyond 2^32 (BINANCE.md: `u` 600859600576) changes nothing.
    let big_u = raw.replace("400900217", "600859600576");
    assert_eq!(parse(spot(), big_u.as_bytes()).1, expected);
}

#[test]
fn trades_become_last_prices() {
    let cases = [
        (
            "futures_aggTrade.json",
            usdm(),
            EventKind::AggTrade,
            123_456_789,
            "BTCUSDT",
            "btcusdt@aggTrade",
        ),
        (
            "spot_aggTrade.json",
            spot(),
            EventKind::AggTrade,
            1_672_515_782_136,
            "BNBBTC",
            "bnbbtc@aggTrade",
        ),
        ("spot_trade.json", spot(), EventKind::Trade, 1_672_515_782_136, "BNBBTC", "bnbbtc@trade"),
    ];
    for (name, conn, kind, event_ms, symbol, stream) in cases {
        let raw = fixture_str(name);
        let expected = vec![Event::Trade {
            market: market(conn.venue, symbol),
            price: Price::from_units(100_000),
            origin: Origin::Stream,
        }];
        for frame in [raw.clone(), combined(stream, &raw)] {
            let (result, got) = parse(conn, frame.as_bytes());
            assert_eq!(result, Ok(events(kind, Some(event_ms), 1)), "{name}");
            assert_eq!(got, expected, "{name}");
        }
    }
}

#[test]
fn known_but_unused_market_events_are_ignored() {
    for (name, conn, kind) in [
        ("futures_kline.json", usdm(), EventKind::Kline),
        ("spot_kline.json", spot(), EventKind::Kline),
        ("spot_avgPrice.json", spot(), EventKind::AvgPrice),
    ] {
        let raw = fixture_str(name);
        for frame in [raw.clone(), combined("x@kline_1m", &raw)] {
            let (result, got) = parse(conn, frame.as_bytes());
            assert_eq!(result, Ok(Parsed::Ignored(kind)), "{name}");
            assert!(got.is_empty());
        }
    }
}

#[test]
fn server_shutdown_in_every_envelope() {
    let expected =
        Ok(Parsed::Control(Control::ServerShutdown { event_ms: Some(1_770_123_456_789) }));
    for name in [
        "spot_serverShutdown_raw.json",
        "spot_serverShutdown_combined.json",
        "spot_wsapi_serverShutdown.json",
    ] {
        let (result, got) = parse(spot(), &fixture(name));
        assert_eq!(result, expected, "{name}");
        assert!(got.is_empty());
    }
}

#[test]
fn stream_replies() {
    for (name, id) in [
        ("ws_SUBSCRIBE_response.json", 1),
        ("ws_UNSUBSCRIBE_response.json", 312),
        ("ws_LIST_SUBSCRIPTIONS_response.json", 3),
    ] {
        let (result, got) = parse(usdm(), &fixture(name));
        assert_eq!(result, Ok(Parsed::Control(Control::StreamReply { id: RequestId::Int(id) })));
        assert!(got.is_empty());
    }
    // The documented error shape (BINANCE.md section 1), with and without an id.
    let (result, _) =
        parse(usdm(), br#"{"code":2,"msg":"Invalid request: unknown variant","id":9}"#);
    assert_eq!(
        result,
        Ok(Parsed::Control(Control::StreamError { id: RequestId::Int(9), code: 2 }))
    );
    let (result, _) = parse(usdm(), br#"{"code":0,"msg":"Unknown property"}"#);
    assert_eq!(result, Ok(Parsed::Control(Control::StreamError { id: RequestId::Null, code: 0 })));
}

// ---- futures user data ----

#[test]
fn account_update_emits_wallet_and_every_position() {
    let conn = Connection::usdm_user(ACCOUNT);
    let (result, got) = parse(conn, &fixture("futures_ACCOUNT_UPDATE.json"));
    assert_eq!(result, Ok(events(EventKind::AccountUpdate, Some(1_564_745_798_939), 5)));
    let t = 1_564_745_798_938;
    let key = |side| PositionKey {
        account: ACCOUNT,
        venue: Venue::Usdm,
        symbol: Symbol::lit("BTCUSDT"),
        side,
    };
    let expected = vec![
        // USDT's cross wallet; BUSD is not the connection's balance asset.
        Event::Balance {
            account: ACCOUNT,
            scope: BalanceScope::UsdmWallet,
            available: Amount::from_units(10_012_345_678),
        },
        // "ps":"BOTH","pa":"0": one-way and flat, so both sides are flat.
        Event::Position {
            key: key(Side::Short),
            qty: Qty::ZERO,
            entry: Price::ZERO,
            exchange_ms: t,
        },
        Event::Position {
            key: key(Side::Long),
            qty: Qty::ZERO,
            entry: Price::ZERO,
            exchange_ms: t,
        },
        // Hedge mode: the side is `ps`, the quantity is |pa|.
        Event::Position {
            key: key(Side::Long),
            qty: Qty::from_int(20),
            entry: Price::from_units(656_366_500_000),
            exchange_ms: t,
        },
        Event::Position {
            key: key(Side::Short),
            qty: Qty::from_int(10),
            entry: Price::lit("6563.86"),
            exchange_ms: t,
        },
    ];
    assert_eq!(got, expected);
}

#[test]
fn account_update_one_way_short_flattens_the_long_side() {
    // Derived: the BOTH entry holds -0.5 @ 6563.1, as after a long-to-short flip.
    let raw = fixture_str("futures_ACCOUNT_UPDATE.json").replacen(
        r#""pa": "0",
        "ep": "0.00000","#,
        r#""pa": "-0.500",
        "ep": "6563.1","#,
        1,
    );
    assert!(raw.contains("-0.500"), "the fixture's layout changed");
    let (result, got) = parse(Connection::usdm_user(ACCOUNT), raw.as_bytes());
    assert_eq!(result.map(|_| ()), Ok(()));
    let key = |side| PositionKey {
        account: ACCOUNT,
        venue: Venue::Usdm,
        symbol: Symbol::lit("BTCUSDT"),
        side,
    };
    let t = 1_564_745_798_938;
    assert_eq!(
        got[1],
        Event::Position {
            key: key(Side::Long),
            qty: Qty::ZERO,
            entry: Price::ZERO,
            exchange_ms: t
        }
    );
    assert_eq!(
        got[2],
        Event::Position {
            key: key(Side::Short),
            qty: Qty::lit("0.5"),
            entry: Price::lit("6563.1"),
            exchange_ms: t
        }
    );
}

/// More positions than `Staged` holds (16 events): the frame is parsed a second time straight
/// into the sink, with the same result, in the same order.
#[test]
fn account_update_with_many_positions() {
    let raw = fixture_str("futures_ACCOUNT_UPDATE.json");
    let start = raw.find(r#""P": ["#).unwrap() + r#""P": ["#.len();
    let end = raw.rfind(']').unwrap();
    let positions = &raw[start..end];
    // 3 positions (5 events with the balance) × 7 = 21 positions, 29 events.
    let many = [positions; 7].join(",");
    let frame = format!("{}{many}{}", &raw[..start], &raw[end..]);
    let (result, got) = parse(Connection::usdm_user(ACCOUNT), frame.as_bytes());
    assert_eq!(result, Ok(events(EventKind::AccountUpdate, Some(1_564_745_798_939), 29)));
    let (_, once) = parse(Connection::usdm_user(ACCOUNT), raw.as_bytes());
    assert_eq!(got[0], once[0]);
    for chunk in got[1..].chunks(4) {
        assert_eq!(chunk, &once[1..]);
    }
    // And with the last entry bad: nothing at all (`parse` checks that the sink saw nothing).
    let bad = frame.replacen(r#""ps": "SHORT""#, r#""ps": "NEITHER""#, 7);
    assert_eq!(bad.matches("NEITHER").count(), 7);
    let bad = bad.replacen("NEITHER", "SHORT", 6);
    let (result, _) = parse(Connection::usdm_user(ACCOUNT), bad.as_bytes());
    assert_eq!(result.map_err(|e| e.field), Err("a.P.ps"));
}

#[test]
fn account_update_balance_asset_is_the_connections() {
    let conn = Connection {
        balance_asset: Asset::new(b"BUSD").unwrap(),
        ..Connection::usdm_user(ACCOUNT)
    };
    let (_, got) = parse(conn, &fixture("futures_ACCOUNT_UPDATE.json"));
    assert_eq!(
        got[0],
        Event::Balance {
            account: ACCOUNT,
            scope: BalanceScope::UsdmWallet,
            available: Amount::ZERO
        }
    );
    assert_eq!(got.len(), 5);
}

#[test]
fn order_trade_update() {
    let conn = Connection::usdm_user(ACCOUNT);
    let raw = fixture_str("futures_ORDER_TRADE_UPDATE.json");
    let expected = OrderUpdate {
        account: ACCOUNT,
        venue: Venue::Usdm,
        symbol: Symbol::lit("BTCUSDT"),
        cid: ClientOrderId::from_wire(b"TEST").unwrap(),
        status: OrderStatus::New,
        cum_qty: Qty::ZERO,
        avg_price: Price::ZERO,
        exchange_ms: 1_568_879_465_650,
    };
    for frame in [raw.clone(), combined("someListenKey", &raw)] {
        let (result, got) = parse(conn, frame.as_bytes());
        assert_eq!(result, Ok(events(EventKind::OrderTradeUpdate, Some(1_568_879_465_651), 1)));
        assert_eq!(got, vec![Event::Order(expected)]);
    }
    // Derived: a fill, every status Binance documents, and an order id past 2^32.
    let filled = raw
        .replace(r#""z": "0""#, r#""z": "0.001""#)
        .replace(r#""ap": "0""#, r#""ap": "7103.04""#)
        .replace("8886774", "26769564559");
    for (wire, status) in [
        ("PARTIALLY_FILLED", OrderStatus::PartiallyFilled),
        ("FILLED", OrderStatus::Filled),
        ("CANCELED", OrderStatus::Canceled),
        ("EXPIRED", OrderStatus::Expired),
        ("EXPIRED_IN_MATCH", OrderStatus::Expired),
        ("NEW_INSURANCE", OrderStatus::New),
    ] {
        let frame = filled.replace(r#""X": "NEW""#, &format!(r#""X": "{wire}""#));
        let (_, got) = parse(conn, frame.as_bytes());
        let update = OrderUpdate {
            status,
            cum_qty: Qty::lit("0.001"),
            avg_price: Price::lit("7103.04"),
            ..expected
        };
        assert_eq!(got, vec![Event::Order(update)], "{wire}");
    }
}

#[test]
fn futures_events_robsond_does_not_use_are_ignored() {
    for (name, kind) in [
        ("futures_TRADE_LITE.json", EventKind::TradeLite),
        ("futures_ALGO_UPDATE.json", EventKind::AlgoUpdate),
        ("futures_MARGIN_CALL.json", EventKind::MarginCall),
    ] {
        let (result, got) = parse(Connection::usdm_user(ACCOUNT), &fixture(name));
        assert_eq!(result, Ok(Parsed::Ignored(kind)), "{name}");
        assert!(got.is_empty());
    }
}

#[test]
fn leverage_change_reaches_the_engine() {
    // The documented ACCOUNT_CONFIG_UPDATE shapes (no fixture file: BINANCE.md section 2.5).
    let conn = Connection::usdm_user(ACCOUNT);
    let frame = br#"{"e":"ACCOUNT_CONFIG_UPDATE","E":1611646737479,"T":1611646737476,"ac":{"s":"BTCUSDT","l":25}}"#;
    let (result, got) = parse(conn, frame);
    assert_eq!(result, Ok(events(EventKind::AccountConfigUpdate, Some(1_611_646_737_479), 1)));
    assert_eq!(
        got,
        vec![Event::SetLeverage { market: market(Venue::Usdm, "BTCUSDT"), leverage: 25 }]
    );
    let frame =
        br#"{"e":"ACCOUNT_CONFIG_UPDATE","E":1611646737479,"T":1611646737476,"ai":{"j":true}}"#;
    assert_eq!(parse(conn, frame).0, Ok(Parsed::Ignored(EventKind::AccountConfigUpdate)));
}

#[test]
fn listen_key_expired_with_e_as_number_or_string() {
    for (name, event_ms) in [
        ("futures_listenKeyExpired.json", 1_736_996_475_556),
        ("spot_listenKeyExpired.json", 1_699_596_037_418),
        // "E":"1699596037418": a string in this doc example.
        ("margin_listenKeyExpired.json", 1_699_596_037_418),
    ] {
        let (result, got) = parse(Connection::usdm_user(ACCOUNT), &fixture(name));
        assert_eq!(result, Ok(Parsed::Control(Control::ListenKeyExpired { event_ms })), "{name}");
        assert!(got.is_empty());
    }
}

// ---- spot / margin user data ----

fn new_order() -> OrderUpdate {
    OrderUpdate {
        account: ACCOUNT,
        venue: Venue::Margin,
        symbol: Symbol::lit("ETHBTC"),
        cid: ClientOrderId::from_wire(b"mUvoqJxFIILMdfAW5iGSOW").unwrap(),
        status: OrderStatus::New,
        cum_qty: Qty::ZERO,
        avg_price: Price::ZERO,
        exchange_ms: 1_499_405_658_657,
    }
}

#[test]
fn execution_report_new_order_raw_and_wsapi() {
    // `"N": null` (no commission asset yet) and `"t": -1` (no trade) are both in this fixture.
    for name in ["spot_executionReport.json", "spot_wsapi_executionReport.json"] {
        let (result, got) = parse(margin(), &fixture(name));
        assert_eq!(
            result,
            Ok(events(EventKind::ExecutionReport, Some(1_499_405_658_658), 1)),
            "{name}"
        );
        assert_eq!(got, vec![Event::Order(new_order())], "{name}");
    }
}

#[test]
fn execution_report_trade_emits_the_fill_then_the_order() {
    // Derived: the fixture's order half filled by one trade with an id past 2^32.
    let raw = testkit::execution_report_as_trade(
        &fixture_str("spot_wsapi_executionReport.json"),
        "PARTIALLY_FILLED",
        "0.50000000",
        "0.05132205",
    )
    .replace(r#""N": null"#, r#""N": "BNB""#);
    let (result, got) = parse(margin(), raw.as_bytes());
    assert_eq!(result, Ok(events(EventKind::ExecutionReport, Some(1_499_405_658_658), 2)));
    let fill = MarginFill {
        account: ACCOUNT,
        symbol: Symbol::lit("ETHBTC"),
        side: OrderSide::Buy,
        qty: Qty::lit("0.5"),
        price: Price::lit("0.1026441"),
        trade_id: 12_345_678_901,
        exchange_ms: 1_499_405_658_657,
    };
    let update = OrderUpdate {
        status: OrderStatus::PartiallyFilled,
        cum_qty: Qty::lit("0.5"),
        // Z / z = 0.05132205 / 0.5.
        avg_price: Price::lit("0.1026441"),
        ..new_order()
    };
    assert_eq!(got, vec![Event::MarginTrade(fill), Event::Order(update)]);
}

#[test]
fn execution_report_average_rounds_half_away_from_zero() {
    // Derived: 3 filled for a quote of 1 → 0.333333333… → 0.33333333; 2/3 → 0.66666667.
    let base = fixture_str("spot_executionReport.json")
        .replace(r#""X": "NEW""#, r#""X": "FILLED""#)
        .replace(r#""z": "0.00000000""#, r#""z": "3""#);
    for (quote, avg) in [("1", "0.33333333"), ("2", "0.66666667")] {
        let frame = base.replace(r#""Z": "0.00000000""#, &format!(r#""Z": "{quote}""#));
        let (_, got) = parse(margin(), frame.as_bytes());
        let Event::Order(update) = got[0] else { panic!("{got:?}") };
        assert_eq!(update.avg_price, Price::lit(avg));
        assert_eq!(update.status, OrderStatus::Filled);
    }
}

#[test]
fn execution_report_cancel_names_the_original_order() {
    // Derived: a cancel reports the cancel request's id in `c` and the order's in `C`.
    let raw = fixture_str("spot_executionReport.json")
        .replace(r#""x": "NEW""#, r#""x": "CANCELED""#)
        .replace(r#""X": "NEW""#, r#""X": "CANCELED""#)
        .replace(r#""c": "mUvoqJxFIILMdfAW5iGSOW""#, r#""c": "cancelRequest1""#)
        .replace(r#""C": """#, r#""C": "mUvoqJxFIILMdfAW5iGSOW""#);
    let (_, got) = parse(margin(), raw.as_bytes());
    assert_eq!(
        got,
        vec![Event::Order(OrderUpdate { status: OrderStatus::Canceled, ..new_order() })]
    );
}

#[test]
fn outbound_account_position_on_isolated_margin() {
    let eth = Asset::new(b"ETH").unwrap();
    let isolated = Connection::isolated_margin_user(ACCOUNT, Symbol::lit("ETHUSDT"), eth);
    for name in ["spot_outboundAccountPosition.json", "spot_wsapi_outboundAccountPosition.json"] {
        let (result, got) = parse(isolated, &fixture(name));
        assert_eq!(
            result,
            Ok(events(EventKind::OutboundAccountPosition, Some(1_564_034_571_105), 1))
        );
        assert_eq!(
            got,
            vec![Event::Balance {
                account: ACCOUNT,
                scope: BalanceScope::MarginIsolated(Symbol::lit("ETHUSDT")),
                available: Amount::from_int(10_000),
            }]
        );
        // Not an isolated connection, or the quote asset is not in the update: nothing to say.
        let ignored = Ok(Parsed::Ignored(EventKind::OutboundAccountPosition));
        assert_eq!(parse(margin(), &fixture(name)).0, ignored);
        let btc = Connection::isolated_margin_user(
            ACCOUNT,
            Symbol::lit("ETHBTC"),
            Asset::new(b"BTC").unwrap(),
        );
        assert_eq!(parse(btc, &fixture(name)).0, ignored);
    }
}

#[test]
fn spot_events_robsond_does_not_use_are_ignored() {
    for (name, kind) in [
        ("spot_balanceUpdate.json", EventKind::BalanceUpdate),
        ("spot_wsapi_balanceUpdate.json", EventKind::BalanceUpdate),
        ("spot_externalLockUpdate.json", EventKind::ExternalLockUpdate),
        ("spot_listStatus.json", EventKind::ListStatus),
    ] {
        let (result, got) = parse(margin(), &fixture(name));
        assert_eq!(result, Ok(Parsed::Ignored(kind)), "{name}");
        assert!(got.is_empty());
    }
}

#[test]
fn event_stream_terminated() {
    let (result, _) = parse(margin(), &fixture("spot_wsapi_eventStreamTerminated.json"));
    assert_eq!(
        result,
        Ok(Parsed::Control(Control::EventStreamTerminated {
            subscription_id: Some(0),
            event_ms: 1_728_973_001_334,
        }))
    );
    // The subscription id is the wrapper's, whatever it is.
    let raw = r#"{"e":"eventStreamTerminated","E":1728973001334}"#;
    let (result, _) = parse(margin(), wsapi_event(65_534, raw).as_bytes());
    assert_eq!(
        result,
        Ok(Parsed::Control(Control::EventStreamTerminated {
            subscription_id: Some(65_534),
            event_ms: 1_728_973_001_334,
        }))
    );
}

#[test]
fn websocket_api_replies() {
    let reply = |id, status, error_code, subscription_id, retry_after_ms| {
        Ok(Parsed::Control(Control::ApiReply {
            id,
            status,
            error_code,
            subscription_id,
            retry_after_ms,
        }))
    };
    let cases = [
        (
            "spot_wsapi_userDataStream_subscribe_response.json",
            reply(text_id("d3df8a21-98ea-4fe0-8f4e-0fcea5d418b7"), 200, None, Some(0), None),
        ),
        (
            "spot_wsapi_error_-2010.json",
            reply(text_id("e2a85d9f-07a5-4f94-8d5f-789dc3deb097"), 400, Some(-2010), None, None),
        ),
        (
            "spot_wsapi_error_418_-1003.json",
            reply(
                text_id("fc93a61a-a192-4cf4-bb2a-a8f0f0c51e06"),
                418,
                Some(-1003),
                None,
                Some(1_659_146_400_000),
            ),
        ),
        (
            "futures_wsapi_error_-1102.json",
            reply(text_id("5761b939-27b1-4948-ab87-4a372a3f6b72"), 400, Some(-1102), None, None),
        ),
        (
            "spot_wsapi_session_logon_response.json",
            reply(text_id("c174a2b1-3f51-4580-b200-8528bd237cb7"), 200, None, None, None),
        ),
        (
            "spot_wsapi_order_place_response.json",
            reply(text_id("e2a85d9f-07a5-4f94-8d5f-789dc3deb097"), 200, None, None, None),
        ),
        (
            "futures_wsapi_order_place_response.json",
            reply(text_id("43a3843a-2321-4e45-8f79-351e5c354563"), 200, None, None, None),
        ),
        (
            "futures_wsapi_userDataStream_start_response.json",
            reply(text_id("d3df8a61-98ea-4fe0-8f4e-0fcea5d418b0"), 200, None, None, None),
        ),
    ];
    for (name, expected) in cases {
        let (result, got) = parse(margin(), &fixture(name));
        assert_eq!(result, expected, "{name}");
        assert!(got.is_empty());
    }
}

/// Every fixture file is either a frame a WebSocket connection receives (and is parsed above)
/// or something else (a REST body, a request robsond sends, signing vectors), so a fixture added
/// later cannot go untested by accident.
#[test]
fn every_fixture_is_accounted_for() {
    let received = [
        "futures_ACCOUNT_UPDATE.json",
        "futures_ALGO_UPDATE.json",
        "futures_MARGIN_CALL.json",
        "futures_ORDER_TRADE_UPDATE.json",
        "futures_TRADE_LITE.json",
        "futures_aggTrade.json",
        "futures_bookTicker.json",
        "futures_kline.json",
        "futures_listenKeyExpired.json",
        "futures_markPrice.json",
        "futures_wsapi_error_-1102.json",
        "futures_wsapi_order_place_response.json",
        "futures_wsapi_userDataStream_start_response.json",
        "margin_listenKeyExpired.json",
        "spot_aggTrade.json",
        "spot_avgPrice.json",
        "spot_balanceUpdate.json",
        "spot_bookTicker.json",
        "spot_executionReport.json",
        "spot_externalLockUpdate.json",
        "spot_kline.json",
        "spot_listStatus.json",
        "spot_listenKeyExpired.json",
        "spot_outboundAccountPosition.json",
        "spot_serverShutdown_combined.json",
        "spot_serverShutdown_raw.json",
        "spot_trade.json",
        "spot_wsapi_balanceUpdate.json",
        "spot_wsapi_error_-2010.json",
        "spot_wsapi_error_418_-1003.json",
        "spot_wsapi_eventStreamTerminated.json",
        "spot_wsapi_executionReport.json",
        "spot_wsapi_order_place_response.json",
        "spot_wsapi_outboundAccountPosition.json",
        "spot_wsapi_serverShutdown.json",
        "spot_wsapi_session_logon_response.json",
        "spot_wsapi_userDataStream_subscribe_response.json",
        "ws_LIST_SUBSCRIPTIONS_response.json",
        "ws_SUBSCRIBE_response.json",
        "ws_UNSUBSCRIBE_response.json",
    ];
    // REST bodies, requests robsond sends, signing vectors, and the sources list.
    let not_received = [
        "README.md",
        "error_-1008_futures.json",
        "error_-1013_LOT_SIZE.json",
        "error_-1013_NOTIONAL.json",
        "error_-1013_PRICE_FILTER.json",
        "error_-1021.json",
        "error_-1021_ahead.json",
        "error_-1022.json",
        "error_-1100_newClientOrderId.json",
        "error_-1125.json",
        "error_-2010_duplicate_order.json",
        "error_-2010_insufficient_balance.json",
        "error_-2011_cancel_restrictions.json",
        "error_-2011_unknown_order.json",
        "error_-2013.json",
        "error_-2015.json",
        "error_-2019_futures.json",
        "error_-2022_futures.json",
        "error_-4015_futures.json",
        "error_-4116_futures.json",
        "error_-4120_futures.json",
        "error_-4164_futures.json",
        "error_-4531_futures.json",
        "error_-5022_futures.json",
        "error_generic_-1121.json",
        "exchangeInfo_futures_BTCUSDT_excerpt.json",
        "exchangeInfo_spot_BTCUSDT_excerpt.json",
        "futures_cancel_order_response.json",
        "futures_exchangeInfo_doc.json",
        "futures_listenKey_create_response.json",
        "futures_listenKey_keepalive_response.json",
        "futures_order_response.json",
        "futures_positionRisk_v2_hedge.json",
        "futures_positionRisk_v3_hedge.json",
        "futures_positionRisk_v3_oneway.json",
        "futures_query_order_response.json",
        "futures_wsapi_order_place_request.json",
        "margin_isolated_account_response.json",
        "margin_listenKey_create_response.json",
        "margin_order_response_ACK.json",
        "margin_order_response_FULL.json",
        "margin_userListenToken_response.json",
        "margin_wsapi_userDataStream_subscribe_listenToken_request.json",
        "order_response_ACK.json",
        "order_response_FULL.json",
        "order_response_RESULT.json",
        "ping_response.json",
        "server_time_response.json",
        "signing_vectors.json",
        "spot_account_response.json",
        "spot_cancel_order_response.json",
        "spot_exchangeInfo_filters_examples.json",
        "spot_listenKey_create_response.json",
        "spot_open_orders_response.json",
        "spot_query_order_response.json",
        "spot_wsapi_order_place_request.json",
        "spot_wsapi_session_logon_request.json",
        "spot_wsapi_userDataStream_subscribe_request.json",
        "spot_wsapi_userDataStream_subscribe_signature_request.json",
        "ws_LIST_SUBSCRIPTIONS_request.json",
        "ws_SUBSCRIBE_request.json",
        "ws_UNSUBSCRIBE_request.json",
    ];
    let mut parser = FrameParser::new(margin());
    for entry in std::fs::read_dir(FIXTURES).expect("fixture directory") {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if received.contains(&name.as_str()) {
            let (result, _) = parse_with(&mut parser, &fixture(&name));
            assert!(result.is_ok(), "{name}: {result:?}");
        } else {
            assert!(
                not_received.contains(&name.as_str()),
                "fixture {name} is neither parsed nor excluded"
            );
        }
    }
}
