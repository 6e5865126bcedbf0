//! Market data end to end: `feed`'s WsClient on a real `mio::Poll` opens the simulator's
//! futures `/market` and `/public` routes and spot's combined stream over wss (trusted through
//! the simulator's CA), each frame goes through the connection's own `FrameParser`, and the
//! engine events carry exactly the prices the simulator was set to, in fixed point. A SUBSCRIBE
//! sent at run time is acknowledged and its stream's prices follow.

mod e2e_common;

use e2e_common::{Driver, books, btc, eth, fast, marks, start_sim, trades};
use engine::{Price, Venue};
use feed::wire::{Connection, Control, FrameParser, RequestId};
use feed::ws::{Method, WsConfig, WsEvent};
use sim::ConnKind;

#[test]
fn futures_market_and_public_routes_deliver_exactly_the_prices_set() {
    let sim = start_sim(true, None);
    let ws = &sim.urls().usdm_ws;
    assert!(ws.starts_with("wss://"), "the simulator serves TLS");
    let mut d = Driver::new(sim.ca_file());
    let cfg = fast(WsConfig::usdm_market());
    let market = d.open_streams(
        &format!("{ws}/market"),
        &["btcusdt@markPrice@1s", "btcusdt@aggTrade"],
        &cfg,
        FrameParser::new(Connection::market(Venue::Usdm)),
    );
    let public = d.open_streams(
        &format!("{ws}/public"),
        &["btcusdt@bookTicker"],
        &cfg,
        FrameParser::new(Connection::market(Venue::Usdm)),
    );
    d.until_connected(market, 1);
    d.until_connected(public, 1);

    for text in ["50123.4", "49876.5", "51000"] {
        let price = Price::lit(text);
        let from = d.got.len();
        sim.set_price(Venue::Usdm, btc(), price).unwrap();
        sim.step();
        let (m, t, b) = d.run_until(&format!("BTC at {text}"), |g| {
            let (ev_m, ev_p) = (g.events(from, market), g.events(from, public));
            let (m, t, b) = (marks(&ev_m, btc()), trades(&ev_m, btc()), books(&ev_p, btc()));
            (!m.is_empty() && !t.is_empty() && !b.is_empty()).then_some((m, t, b))
        });
        // One step publishes one frame per stream: exactly one of each, at exactly that price.
        assert_eq!(m, [price], "mark");
        assert_eq!(t, [price], "aggTrade");
        let half_spread = Price::lit("0.1");
        let expected_book = (
            Price::from_units(price.units() - half_spread.units()),
            Price::from_units(price.units() + half_spread.units()),
        );
        assert_eq!(b, [expected_book], "bookTicker is the price one tick either side");
        assert_eq!(Some(expected_book), sim.book(Venue::Usdm, btc()));
        assert_eq!(sim.mark_price(btc()), Some(price));
    }

    // A stream added at run time: SUBSCRIBE, acknowledged, and its prices flow on the same
    // connection alongside the URL's streams.
    let from = d.got.len();
    let id = d
        .client
        .subscribe(market, &["ethusdt@markPrice"], std::time::Instant::now())
        .unwrap()
        .expect("the connection is up, so a SUBSCRIBE goes out");
    d.run_until("the SUBSCRIBE's ack", |g| {
        g.ws_events(from)
            .contains(&WsEvent::RequestAcked { conn: market, id, method: Method::Subscribe })
            .then_some(())
    });
    assert_eq!(
        d.got.controls(from, market),
        [Control::StreamReply { id: RequestId::Int(id as i64) }],
        "the reply reaches the parser too"
    );
    assert_eq!(d.client.streams(market).unwrap().len(), 3);
    let eth_price = Price::lit("3210.55");
    let from = d.got.len();
    sim.set_price(Venue::Usdm, eth(), eth_price).unwrap();
    sim.step();
    let (eth_marks, btc_marks) = d.run_until("ETH's mark", |g| {
        let ev = g.events(from, market);
        let (e, b) = (marks(&ev, eth()), marks(&ev, btc()));
        (!e.is_empty() && !b.is_empty()).then_some((e, b))
    });
    assert_eq!(eth_marks, [eth_price]);
    assert_eq!(btc_marks, [Price::lit("51000")], "BTC unchanged, still published");

    for conn in [market, public] {
        assert!(d.got.errors(0, conn).is_empty(), "{}", d.got.summary(0));
    }
    // One connection per route, never replaced.
    let conns = sim.connections();
    let count = |kind: ConnKind| conns.iter().filter(|c| c.kind == kind).count();
    assert_eq!((count(ConnKind::UsdmMarket), count(ConnKind::UsdmPublic)), (1, 1), "{conns:?}");
    assert_eq!(conns.iter().filter(|c| c.kind.is_websocket()).count(), 2, "{conns:?}");
    assert!(conns.iter().all(|c| c.closed.is_none()), "{conns:?}");
    let reconnects: Vec<_> = d
        .got
        .ws_events(0)
        .into_iter()
        .filter(|e| matches!(e, WsEvent::Disconnected { .. } | WsEvent::ConnectFailed { .. }))
        .collect();
    assert!(reconnects.is_empty(), "{reconnects:?}");
}

#[test]
fn spot_combined_stream_delivers_trades_and_the_book_without_an_event_name() {
    let sim = start_sim(true, None);
    let mut d = Driver::new(sim.ca_file());
    let conn = d.open_streams(
        &sim.urls().spot_ws,
        &["btcusdt@trade", "btcusdt@bookTicker"],
        &fast(WsConfig::spot_market()),
        FrameParser::new(Connection::market(Venue::Margin)),
    );
    d.until_connected(conn, 1);
    for text in ["50000.12", "49999.99"] {
        let price = Price::lit(text);
        let from = d.got.len();
        sim.set_price(Venue::Margin, btc(), price).unwrap();
        sim.step();
        let (t, b) = d.run_until(&format!("spot BTC at {text}"), |g| {
            let ev = g.events(from, conn);
            let (t, b) = (trades(&ev, btc()), books(&ev, btc()));
            (!t.is_empty() && !b.is_empty()).then_some((t, b))
        });
        assert_eq!(t, [price]);
        let tick = Price::lit("0.01").units();
        let expected =
            (Price::from_units(price.units() - tick), Price::from_units(price.units() + tick));
        assert_eq!(b, [expected]);
        assert_eq!(sim.book(Venue::Margin, btc()), Some(expected));
        // Spot streams feed the margin venue's markets.
        let venues: Vec<Venue> = d
            .got
            .events(from, conn)
            .iter()
            .filter_map(|e| match e {
                engine::Event::Trade { market, .. } | engine::Event::Book { market, .. } => {
                    Some(market.venue)
                }
                _ => None,
            })
            .collect();
        assert_eq!(venues, [Venue::Margin, Venue::Margin]);
    }
    assert!(d.got.errors(0, conn).is_empty(), "{}", d.got.summary(0));
}
