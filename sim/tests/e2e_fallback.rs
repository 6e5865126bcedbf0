//! The REST price fallback end to end over TLS (DESIGN.md section 6): `RestClient`'s mark, book
//! and last-price calls turn into `Event::Mark`/`Book`/`Trade` with `Origin::RestFallback`,
//! equal to the simulator's prices in fixed point; and a stalled stream is bridged by
//! `PriceFallback`'s schedule from Stale until Fresh.

mod e2e_common;

use std::time::Duration;

use e2e_common::{Driver, btc, fast, market, marks, now_ms, rest_client, start_sim};
use engine::events::Origin;
use engine::types::TriggerSource;
use engine::{Event, MarketKey, Price, Venue};
use feed::rest::{Api, RestClient};
use feed::session::PriceFallback;
use feed::wire::{Connection, FrameParser};
use feed::ws::{WsConfig, WsEvent};
use sim::{ConnKind, Fault, Sim};

/// What the I/O thread polls for a stale market, by its trigger source.
fn fallback_event(rest: &mut RestClient, m: MarketKey, source: TriggerSource) -> Event {
    match source {
        TriggerSource::Mark => rest.mark_price(m.symbol).unwrap().event(),
        TriggerSource::Book => rest.book_ticker(m.symbol).unwrap().event(m.venue),
        TriggerSource::Last => rest.last_price(m.symbol).unwrap().event(m.venue),
    }
}

fn moved_sim() -> Sim {
    let sim = start_sim(true, None);
    sim.set_price(Venue::Usdm, btc(), Price::lit("50321.7")).unwrap();
    sim.set_price(Venue::Margin, btc(), Price::lit("50321.66")).unwrap();
    sim.step();
    sim
}

#[test]
fn mark_and_book_fallback_prices_equal_the_simulators() {
    let sim = moved_sim();
    let mut futures = rest_client(&sim, Api::Futures);
    let mut spot = rest_client(&sim, Api::Spot);
    let usdm = market(Venue::Usdm, btc());
    let margin = market(Venue::Margin, btc());

    let mark = sim.mark_price(btc()).unwrap();
    assert_eq!(mark, Price::lit("50321.7"));
    assert_eq!(
        fallback_event(&mut futures, usdm, TriggerSource::Mark),
        Event::Mark { market: usdm, price: mark, origin: Origin::RestFallback }
    );
    let (bid, ask) = sim.book(Venue::Usdm, btc()).unwrap();
    assert_eq!((bid, ask), (Price::lit("50321.6"), Price::lit("50321.8")));
    assert_eq!(
        fallback_event(&mut futures, usdm, TriggerSource::Book),
        Event::Book { market: usdm, bid, ask, origin: Origin::RestFallback }
    );
    let (bid, ask) = sim.book(Venue::Margin, btc()).unwrap();
    assert_eq!((bid, ask), (Price::lit("50321.65"), Price::lit("50321.67")));
    assert_eq!(
        fallback_event(&mut spot, margin, TriggerSource::Book),
        Event::Book { market: margin, bid, ask, origin: Origin::RestFallback }
    );
}

/// Fails today: the simulator serves no `/fapi/v1/ticker/price` (see the report).
#[test]
fn futures_last_price_fallback_equals_the_simulators_last_trade() {
    let sim = moved_sim();
    let mut futures = rest_client(&sim, Api::Futures);
    let usdm = market(Venue::Usdm, btc());
    let last = sim.price(Venue::Usdm, btc()).unwrap();
    assert_eq!(
        fallback_event(&mut futures, usdm, TriggerSource::Last),
        Event::Trade { market: usdm, price: last, origin: Origin::RestFallback }
    );
}

/// Fails today: the simulator serves no `/api/v3/ticker/price`, and `last` is margin's default
/// trigger source (see the report).
#[test]
fn spot_last_price_fallback_equals_the_simulators_last_trade() {
    let sim = moved_sim();
    let mut spot = rest_client(&sim, Api::Spot);
    let margin = market(Venue::Margin, btc());
    let last = sim.price(Venue::Margin, btc()).unwrap();
    assert_eq!(last, Price::lit("50321.66"));
    assert_eq!(
        fallback_event(&mut spot, margin, TriggerSource::Last),
        Event::Trade { market: margin, price: last, origin: Origin::RestFallback }
    );
}

#[test]
fn a_stalled_stream_is_bridged_by_the_rest_fallback_until_it_is_fresh_again() {
    let sim = start_sim(true, Some(Duration::from_millis(30)));
    let mut rest = rest_client(&sim, Api::Futures);
    let mut d = Driver::new(sim.ca_file());
    let cfg =
        WsConfig { stale_after: Some(Duration::from_millis(200)), ..fast(WsConfig::usdm_market()) };
    let conn = d.open_streams(
        &format!("{}/market", sim.urls().usdm_ws),
        &["btcusdt@markPrice@1s"],
        &cfg,
        FrameParser::new(Connection::market(Venue::Usdm)),
    );
    d.run_until("a first mark", |g| (!marks(&g.events(0, conn), btc()).is_empty()).then_some(()));

    let from = d.got.len();
    sim.fault(Fault::Stall {
        kind: Some(ConnKind::UsdmMarket),
        duration: Duration::from_millis(700),
    });
    let moved = Price::lit("48888.8");
    sim.set_price(Venue::Usdm, btc(), moved).unwrap();
    d.run_until("Stale", |g| {
        g.ws_events(from).iter().any(|e| matches!(e, WsEvent::Stale { .. })).then_some(())
    });

    // The hot thread reports the stale market; the I/O thread polls what is due.
    let usdm = market(Venue::Usdm, btc());
    let mut fallback = PriceFallback::new(100);
    let now = now_ms();
    fallback.set_stale([(usdm, TriggerSource::Mark), (usdm, TriggerSource::Book)], now);
    assert!(fallback.is_polling());
    let mut polled = Vec::new();
    while let Some((m, source)) = fallback.due(now) {
        polled.push(fallback_event(&mut rest, m, source));
    }
    assert_eq!(fallback.due(now), None, "each market once per period");
    assert_eq!(fallback.next_due_ms(), Some(now + 100));
    // The tick after `set_price` published the new price; the stream did not carry it.
    let (bid, ask) = sim.book(Venue::Usdm, btc()).unwrap();
    assert_eq!(
        polled,
        [
            Event::Mark { market: usdm, price: moved, origin: Origin::RestFallback },
            Event::Book { market: usdm, bid, ask, origin: Origin::RestFallback },
        ]
    );
    assert!(marks(&d.got.events(from, conn), btc()).iter().all(|p| *p != moved));

    d.run_until("Fresh", |g| {
        g.ws_events(from).iter().any(|e| matches!(e, WsEvent::Fresh { .. })).then_some(())
    });
    fallback.set_stale([], now_ms());
    assert!(!fallback.is_polling());
    assert_eq!(fallback.due(now_ms() + 1_000), None);
    let after = d.run_until("a streamed mark after Fresh", |g| {
        let fresh =
            g.position(from, |i| matches!(i, e2e_common::Item::Ws(WsEvent::Fresh { .. })))?;
        marks(&g.events(fresh, conn), btc()).first().copied()
    });
    assert_eq!(after, moved);
}
