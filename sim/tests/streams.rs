//! Market streams over real WebSockets: raw and combined forms, SUBSCRIBE and friends with
//! Binance's exact replies, the futures routes (`/public`, `/market`, unrouted), server pings
//! with the pong deadline, the maximum connection age, and the connection faults. Every frame
//! goes through `feed`'s parser and must carry the simulator's prices.

mod support;

use std::time::Duration;

use engine::Event;
use engine::money::Price;
use engine::types::{Symbol, Venue};
use feed::wire::{Connection, Control, EventKind, Parsed, RequestId};
use sim::{CloseReason, ConnKind, Fault, Sim, SimConfig};
use support::{Got, T, Ws, eventually, parse_frame, parser};

fn btc() -> Symbol {
    Symbol::lit("BTCUSDT")
}

fn manual() -> Sim {
    Sim::start(SimConfig::manual()).unwrap()
}

/// Steps until `ws` gets a frame (a new subscription may miss the step it raced with).
fn step_until_frame(sim: &Sim, ws: &mut Ws) -> String {
    for _ in 0..50 {
        sim.step();
        if let Some(t) = ws.next_text(Duration::from_millis(100)) {
            return t;
        }
    }
    panic!("no frame")
}

fn quiet(sim: &Sim, ws: &mut Ws) -> Vec<String> {
    sim.step();
    sim.step();
    ws.drain(Duration::from_millis(150))
}

#[test]
fn spot_raw_and_combined_streams_carry_the_simulated_prices() {
    let sim = manual();
    let spot = Connection::market(Venue::Margin);
    let mut p = parser(spot);
    let mut book =
        Ws::connect(&format!("{}/ws/btcusdt@bookTicker", sim.urls().spot_ws), None).unwrap();
    let text = step_until_frame(&sim, &mut book);
    // Spot's book ticker has no event type or time at all.
    assert!(!text.contains("\"e\"") && !text.contains("\"E\""), "{text}");
    let (parsed, events) = parse_frame(&mut p, &text);
    assert!(matches!(parsed, Parsed::Events { kind: EventKind::BookTicker, event_ms: None, .. }));
    let (bid, ask) = sim.book(Venue::Margin, btc()).unwrap();
    assert!(
        matches!(events[..], [Event::Book { bid: b, ask: a, .. }] if b == bid && a == ask),
        "{events:?}"
    );

    let url = format!(
        "{}/stream?streams=btcusdt@trade/btcusdt@aggTrade/ethusdt@kline_1s",
        sim.urls().spot_ws
    );
    let mut combined = Ws::connect(&url, None).unwrap();
    sim.set_price(Venue::Margin, btc(), Price::lit("51234.56")).unwrap();
    let first = step_until_frame(&sim, &mut combined);
    let mut frames = vec![first];
    frames.extend(combined.drain(Duration::from_millis(100)));
    let mut seen = Vec::new();
    for f in &frames {
        let v: serde_json::Value = serde_json::from_str(f).unwrap();
        let stream = v["stream"].as_str().unwrap().to_owned();
        let (parsed, events) = parse_frame(&mut p, f);
        match parsed {
            Parsed::Events { kind: EventKind::Trade | EventKind::AggTrade, .. } => {
                assert!(
                    matches!(events[..], [Event::Trade { price, .. }] if price == Price::lit("51234.56"))
                );
            }
            Parsed::Ignored(EventKind::Kline) => assert_eq!(v["data"]["k"]["i"], "1s"),
            other => panic!("{other:?}: {f}"),
        }
        seen.push(stream);
    }
    for s in ["btcusdt@trade", "btcusdt@aggTrade", "ethusdt@kline_1s"] {
        assert!(seen.iter().any(|x| x == s), "{s} missing from {seen:?}");
    }
}

#[test]
fn subscribe_unsubscribe_list_and_properties_reply_as_binance_does() {
    let sim = manual();
    let mut p = parser(Connection::market(Venue::Margin));
    let mut ws = Ws::connect(&format!("{}/ws", sim.urls().spot_ws), None).unwrap();
    assert!(quiet(&sim, &mut ws).is_empty(), "nothing before a subscription");
    ws.send(r#"{"method":"SUBSCRIBE","params":["ethusdt@aggTrade","btcusdt@depth"],"id":1}"#);
    let reply = ws.next_text(T).unwrap();
    assert_eq!(reply, r#"{"result":null,"id":1}"#);
    let (parsed, _) = parse_frame(&mut p, &reply);
    assert_eq!(parsed, Parsed::Control(Control::StreamReply { id: RequestId::Int(1) }));
    let trade = step_until_frame(&sim, &mut ws);
    assert!(trade.contains("\"s\":\"ETHUSDT\""), "{trade}");
    ws.drain(Duration::from_millis(50));
    ws.send(r#"{"method":"LIST_SUBSCRIPTIONS","id":3}"#);
    assert_eq!(
        ws.next_text(T).unwrap(),
        r#"{"result":["ethusdt@aggTrade","btcusdt@depth"],"id":3}"#
    );
    ws.send(r#"{"method":"SET_PROPERTY","params":["combined",true],"id":"x-5"}"#);
    assert_eq!(ws.next_text(T).unwrap(), r#"{"result":null,"id":"x-5"}"#);
    ws.send(r#"{"method":"GET_PROPERTY","params":["combined"],"id":6}"#);
    assert_eq!(ws.next_text(T).unwrap(), r#"{"result":true,"id":6}"#);
    let wrapped = step_until_frame(&sim, &mut ws);
    assert!(
        wrapped.starts_with(r#"{"stream":"ethusdt@aggTrade","data":{"e":"aggTrade""#),
        "{wrapped}"
    );
    ws.drain(Duration::from_millis(50));
    ws.send(r#"{"method":"UNSUBSCRIBE","params":["ethusdt@aggTrade"],"id":312}"#);
    assert_eq!(ws.next_text(T).unwrap(), r#"{"result":null,"id":312}"#);
    assert!(quiet(&sim, &mut ws).is_empty());
    // Errors carry non-negative codes.
    for (request, code) in [
        ("{not json", 3),
        (r#"{"method":"FROB","id":9}"#, 2),
        (r#"{"method":"SUBSCRIBE","params":"btcusdt@trade","id":10}"#, 2),
        (r#"{"method":"SET_PROPERTY","params":["colour",true],"id":11}"#, 0),
    ] {
        ws.send(request);
        let reply = ws.next_text(T).unwrap();
        let (parsed, _) = parse_frame(&mut p, &reply);
        assert!(
            matches!(parsed, Parsed::Control(Control::StreamError { code: c, .. }) if c == code),
            "{request} → {reply}"
        );
    }
}

#[test]
fn futures_streams_arrive_only_on_their_route() {
    let sim = manual();
    let base = &sim.urls().usdm_ws;
    let mut p = parser(Connection::market(Venue::Usdm));
    let mut public = Ws::connect(&format!("{base}/public/ws/btcusdt@bookTicker"), None).unwrap();
    let mut wrong_public =
        Ws::connect(&format!("{base}/public/ws/btcusdt@markPrice"), None).unwrap();
    let mut wrong_market =
        Ws::connect(&format!("{base}/market/ws/btcusdt@bookTicker"), None).unwrap();
    let mut unrouted_mark = Ws::connect(&format!("{base}/ws/btcusdt@markPrice"), None).unwrap();
    let mut unrouted_book =
        Ws::connect(&format!("{base}/stream?streams=btcusdt@bookTicker"), None).unwrap();
    let url = format!(
        "{base}/market/stream?streams=btcusdt@markPrice/btcusdt@markPrice@1s/btcusdt@aggTrade/btcusdt@kline_1m/!markPrice@arr"
    );
    let mut market = Ws::connect(&url, None).unwrap();
    sim.set_price(Venue::Usdm, btc(), Price::lit("50500.3")).unwrap();

    let book = step_until_frame(&sim, &mut public);
    let (parsed, events) = parse_frame(&mut p, &book);
    assert!(
        matches!(parsed, Parsed::Events { kind: EventKind::BookTicker, event_ms: Some(_), .. }),
        "{book}"
    );
    assert!(book.starts_with(r#"{"e":"bookTicker""#), "{book}");
    assert!(
        matches!(events[..], [Event::Book { bid, ask, .. }] if (bid, ask) == sim.book(Venue::Usdm, btc()).unwrap())
    );
    let got_book = step_until_frame(&sim, &mut unrouted_book);
    assert!(got_book.contains("bookTicker"), "{got_book}");

    let first = step_until_frame(&sim, &mut market);
    let mut frames = vec![first];
    frames.extend(market.drain(Duration::from_millis(100)));
    let mut streams = Vec::new();
    for f in &frames {
        let v: serde_json::Value = serde_json::from_str(f).unwrap();
        streams.push(v["stream"].as_str().unwrap().to_owned());
        let (parsed, events) = parse_frame(&mut p, f);
        match parsed {
            Parsed::Events { kind: EventKind::MarkPrice, count, .. } => {
                let marks: Vec<Price> = events
                    .iter()
                    .map(|e| match e {
                        Event::Mark { price, .. } => *price,
                        other => panic!("{other:?}"),
                    })
                    .collect();
                assert_eq!(marks.len() as u32, count);
                assert!(marks.contains(&Price::lit("50500.3")), "{f}");
            }
            Parsed::Events { kind: EventKind::AggTrade, .. } => {
                assert!(
                    matches!(events[..], [Event::Trade { price, .. }] if price == Price::lit("50500.3"))
                );
            }
            Parsed::Ignored(EventKind::Kline) => {}
            other => panic!("{other:?}: {f}"),
        }
    }
    for s in [
        "btcusdt@markPrice",
        "btcusdt@markPrice@1s",
        "btcusdt@aggTrade",
        "btcusdt@kline_1m",
        "!markPrice@arr",
    ] {
        assert!(streams.iter().any(|x| x == s), "{s} missing from {streams:?}");
    }
    // The array carries every futures symbol.
    let arr = frames.iter().find(|f| f.contains("!markPrice@arr")).unwrap();
    let (_, events) = parse_frame(&mut p, arr);
    assert_eq!(events.len(), 3);

    // Wrongly routed subscriptions are accepted and silently get nothing.
    for ws in [&mut wrong_public, &mut wrong_market, &mut unrouted_mark] {
        assert!(quiet(&sim, ws).is_empty());
        ws.send(r#"{"method":"LIST_SUBSCRIPTIONS","id":1}"#);
        assert!(ws.next_text(T).unwrap().contains("btcusdt@"));
    }
}

#[test]
fn the_mark_can_lag_the_trade_price() {
    let sim = Sim::start(SimConfig { mark_lag_steps: 1, ..SimConfig::manual() }).unwrap();
    sim.set_price(Venue::Usdm, btc(), Price::lit("51000")).unwrap();
    assert_eq!(sim.mark_price(btc()), Some(Price::lit("50000")));
    // The first step publishes 51000 as the trade; the mark is the previous step's price.
    sim.step();
    assert_eq!(sim.mark_price(btc()), Some(Price::lit("50000")));
    sim.step();
    assert_eq!(sim.mark_price(btc()), Some(Price::lit("51000")));
    assert_eq!(sim.price(Venue::Usdm, btc()), Some(Price::lit("51000")));
}

#[test]
fn server_pings_and_closes_connections_that_do_not_answer() {
    let cfg = SimConfig {
        ping_every: Duration::from_millis(100),
        pong_timeout: Duration::from_millis(600),
        ..SimConfig::manual()
    };
    let sim = Sim::start(cfg).unwrap();
    let url = format!("{}/ws/btcusdt@trade", sim.urls().spot_ws);
    let mut answering = Ws::connect(&url, None).unwrap();
    let silent = Ws::connect(&url, None).unwrap();
    let mut unsolicited = Ws::connect(&url, None).unwrap();
    // The answering client reads (tungstenite echoes each ping) and stays connected.
    let mut pings = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_millis(1000);
    while std::time::Instant::now() < deadline {
        if let Got::Ping(p) = answering.poll() {
            pings.push(p);
        }
        // Pongs that echo nothing do not count.
        let _ = unsolicited.ws.write(tungstenite::Message::Pong(b"nope".to_vec().into()));
        let _ = unsolicited.ws.flush();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(pings.len() >= 2, "{pings:?}");
    let closed = |sim: &Sim, n: usize| sim.connections().get(n).and_then(|c| c.closed);
    assert!(eventually(T, || closed(&sim, 1) == Some(CloseReason::PongTimeout)));
    assert!(eventually(T, || closed(&sim, 2) == Some(CloseReason::PongTimeout)));
    assert_eq!(closed(&sim, 0), None, "{:?}", sim.connections());
    sim.step();
    assert!(answering.wait_for("\"e\":\"trade\"", T).is_some());
    drop(silent);
}

#[test]
fn connections_end_at_the_maximum_age() {
    let cfg = SimConfig { max_conn_age: Duration::from_millis(200), ..SimConfig::manual() };
    let sim = Sim::start(cfg).unwrap();
    let mut ws =
        Ws::connect(&format!("{}/market/ws/btcusdt@aggTrade", sim.urls().usdm_ws), None).unwrap();
    assert!(ws.closes_within(T));
    assert!(eventually(T, || sim.connections()[0].closed == Some(CloseReason::MaxAge)));
    assert_eq!(sim.connections()[0].kind, ConnKind::UsdmMarket);
}

#[test]
fn connection_faults_drop_freeze_stall_and_garble() {
    let sim = manual();
    let mut p = parser(Connection::market(Venue::Margin));
    let spot = |path: &str| Ws::connect(&format!("{}{path}", sim.urls().spot_ws), None).unwrap();
    let mut dropped = spot("/ws/btcusdt@trade");
    let mut futures =
        Ws::connect(&format!("{}/market/ws/btcusdt@aggTrade", sim.urls().usdm_ws), None).unwrap();
    step_until_frame(&sim, &mut dropped);
    step_until_frame(&sim, &mut futures);
    sim.fault(Fault::DropConnections { kind: Some(ConnKind::SpotMarket) });
    assert!(dropped.closes_within(T));
    assert!(eventually(T, || sim.connections()[0].closed == Some(CloseReason::Dropped)));
    // Other kinds are untouched.
    futures.drain(Duration::from_millis(20));
    assert!(step_until_frame(&sim, &mut futures).contains("aggTrade"));

    // Half-close: open, silent, deaf: a client ping goes unanswered.
    let mut frozen = spot("/ws/btcusdt@trade");
    step_until_frame(&sim, &mut frozen);
    sim.fault(Fault::HalfClose { kind: Some(ConnKind::SpotMarket) });
    frozen.ws.send(tungstenite::Message::Ping(b"are-you-there".to_vec().into())).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_millis(400);
    while std::time::Instant::now() < deadline {
        sim.step();
        assert_eq!(frozen.poll(), Got::Nothing, "a half-closed connection says nothing");
    }
    sim.fault(Fault::DropConnections { kind: Some(ConnKind::SpotMarket) });
    assert!(frozen.closes_within(T));

    // Stall: no data for a while, then data again.
    let mut stalled = spot("/ws/btcusdt@trade");
    step_until_frame(&sim, &mut stalled);
    stalled.drain(Duration::from_millis(20));
    sim.fault(Fault::Stall { kind: None, duration: Duration::from_millis(1000) });
    assert!(quiet(&sim, &mut stalled).is_empty());
    stalled.send(r#"{"method":"LIST_SUBSCRIPTIONS","id":1}"#);
    assert!(stalled.next_text(T).unwrap().contains("\"result\""), "replies still flow");
    assert!(step_until_frame(&sim, &mut stalled).contains("\"e\":\"trade\""));

    // Malformed: the next frame is refused by the parser, the one after parses.
    stalled.drain(Duration::from_millis(20));
    sim.fault(Fault::MalformedFrames { kind: Some(ConnKind::SpotMarket), count: 1 });
    let bad = step_until_frame(&sim, &mut stalled);
    let mut bytes = bad.clone().into_bytes();
    assert!(p.parse(&mut bytes, |_| {}).is_err(), "{bad}");
    let good = step_until_frame(&sim, &mut stalled);
    let (parsed, _) = parse_frame(&mut p, &good);
    assert!(matches!(parsed, Parsed::Events { kind: EventKind::Trade, .. }));

    // serverShutdown, raw and combined.
    let mut combined = spot("/stream?streams=btcusdt@trade");
    step_until_frame(&sim, &mut combined);
    sim.fault(Fault::ServerShutdown);
    for ws in [&mut stalled, &mut combined] {
        let text = ws.wait_for("serverShutdown", T).unwrap();
        let (parsed, _) = parse_frame(&mut p, &text);
        assert!(
            matches!(parsed, Parsed::Control(Control::ServerShutdown { event_ms: Some(_) })),
            "{text}"
        );
    }
}
