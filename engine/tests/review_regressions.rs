//! Regressions for the engine review of issue 2: each test failed before its fix, with the
//! minimal event sequence that showed the problem.

mod common;

use common::*;
use engine::events::*;
use engine::types::OrderSide;
use engine::*;

fn queries(h: &Harness) -> usize {
    h.out.intents.iter().filter(|i| matches!(i, Intent::Query { .. })).count()
}

fn eth_margin_rules(h: &mut Harness) {
    let rules = SymbolRules { tick: px("0.01"), step: qty("0.001"), ..SymbolRules::UNRESTRICTED };
    h.rules(Venue::Margin, ETH, rules);
}

#[test]
fn f1a_an_entry_whose_fill_update_is_lost_is_queried() {
    let mut h = Harness::default();
    let (_, entry) = core_long_entering(&mut h, fast_arm("10000", Some("49000")));
    h.order(&entry, OrderStatus::New, "0", "0");
    for _ in 0..10 {
        h.advance_ms(20_000);
        h.send(Event::Tick);
        h.position(usdm_long(BTC), "0.1", "50000"); // ACCOUNT_UPDATE / REST poll
    }
    h.mark(BTC, "30000");
    assert!(
        queries(&h) > 0 || !h.closes().is_empty(),
        "0.1 BTC on the exchange, no stop, no query"
    );
}

#[test]
fn f1b_a_close_whose_final_update_is_lost_is_queried() {
    let mut h = Harness::default();
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.position(usdm_long(BTC), "0.5", "50000");
    h.mark(BTC, "49000");
    let close = h.closes()[0];
    h.order(&close, OrderStatus::New, "0", "0");
    for _ in 0..30 {
        h.advance_ms(20_000);
        h.send(Event::Tick);
        h.position(usdm_long(BTC), "0.5", "50000");
        h.mark(BTC, "40000");
    }
    assert!(queries(&h) > 0, "10 minutes Exiting with a live close, never queried");
}

#[test]
fn f2a_an_intermediate_snapshot_of_the_close_is_not_handed_over() {
    let mut h = Harness::default();
    h.rules(Venue::Usdm, BTC, btc_rules());
    let key = usdm_long(BTC);
    h.position(key, "0.5", "50000");
    h.mark(BTC, "48900");
    let close = h.closes()[0];
    let t = h.exchange_ms + 10; // two maker trades, one transaction time
    let upd = |status, cum: &str| OrderUpdate {
        account: AccountId(0),
        venue: Venue::Usdm,
        symbol: Symbol::lit(BTC),
        cid: close.cid,
        status,
        cum_qty: qty(cum),
        avg_price: px("48900"),
        exchange_ms: t,
    };
    h.send(Event::Order(upd(OrderStatus::PartiallyFilled, "0.3")));
    h.send(Event::Position { key, qty: qty("0.2"), entry: px("50000"), exchange_ms: t });
    h.send(Event::Order(upd(OrderStatus::Filled, "0.5")));
    h.send(Event::Position { key, qty: qty("0"), entry: px("0"), exchange_ms: t });
    assert_eq!(h.closes().len(), 1, "second close {:?} for a flat key", h.closes().get(1));
}

#[test]
fn f2b_an_intermediate_snapshot_of_the_entry_does_not_shrink_core() {
    let mut h = Harness::default();
    let (id, entry) = core_long_entering(&mut h, fast_arm("10000", Some("49000")));
    let (key, t) = (usdm_long(BTC), h.exchange_ms + 5);
    let upd = |status, cum: &str| OrderUpdate {
        account: AccountId(0),
        venue: Venue::Usdm,
        symbol: Symbol::lit(BTC),
        cid: entry.cid,
        status,
        cum_qty: qty(cum),
        avg_price: px("50000"),
        exchange_ms: t,
    };
    h.send(Event::Order(upd(OrderStatus::PartiallyFilled, "0.05")));
    h.send(Event::Order(upd(OrderStatus::Filled, "0.1")));
    h.send(Event::Position { key, qty: qty("0.05"), entry: px("50000"), exchange_ms: t });
    h.send(Event::Position { key, qty: qty("0.1"), entry: px("50000"), exchange_ms: t });
    for p in ["51000", "52000", "53000", "54000", "53000"] {
        h.mark(BTC, p);
    }
    assert_eq!(h.view(id).unwrap().qty, qty("0.1"));
    assert_eq!(h.closes()[0].qty, qty("0.1"), "half exits at 53,000, half gets a 49,000 stop");
}

#[test]
fn f3a_a_manual_add_to_a_dust_core_position_is_protected() {
    let mut h = Harness::default();
    let (_, entry) = core_long_entering(&mut h, fast_arm("10000", Some("49000")));
    h.fill(&entry, "50000");
    h.position(usdm_long(BTC), "0.0005", "50000"); // reduced by hand below minQty
    h.mark(BTC, "49000"); // stop reached: CloseBlocked Dust, Exiting for good
    h.position(usdm_long(BTC), "1.0005", "50000"); // 1 BTC added by hand
    for _ in 0..10 {
        h.advance_ms(20_000);
        h.position(usdm_long(BTC), "1.0005", "50000");
        h.mark(BTC, "20000");
    }
    assert!(!h.closes().is_empty(), "1 BTC at 20,000, still owned by an Exiting dust Core");
}

#[test]
fn f3b_a_dust_exiting_safety_position_does_not_sweep_a_new_one() {
    let mut h = Harness::default();
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.mark(BTC, "50000");
    h.position(usdm_long(BTC), "0.5", "50000");
    h.position(usdm_long(BTC), "0.0005", "50000");
    h.mark(BTC, "48000"); // Dust: Exiting, retry every 10 s
    h.mark(BTC, "60000");
    h.position(usdm_long(BTC), "1.0005", "60000"); // new stop would be 58,800
    h.advance_ms(10_001);
    h.mark(BTC, "60000");
    assert!(h.closes().is_empty(), "closed at 60,000: {:?}", h.closes());
}

#[test]
fn f4_a_margin_core_short_is_blocked_by_a_manual_margin_long() {
    let mut h = Harness::default();
    eth_margin_rules(&mut h);
    h.margin_trade(ETH, OrderSide::Buy, "2", "3000", 1);
    let scope = BalanceScope::MarginIsolated(Symbol::lit(ETH));
    h.send(Event::Balance { account: AccountId(0), scope, available: Amount::lit("100000") });
    h.arm(key(Venue::Margin, ETH, Side::Short), fast_arm("30000", Some("3100")));
    for p in ["3010", "3010", "3010", "3010", "3000"] {
        h.trade(Venue::Margin, ETH, p);
    }
    assert!(h.entries().is_empty(), "SELL {:?} sells the user's base", h.entries());
}

#[test]
fn f5_a_retried_close_uses_the_exchanges_latest_quantity() {
    let mut h = Harness::default();
    eth_margin_rules(&mut h);
    h.margin_trade(ETH, OrderSide::Buy, "0.5", "3000", 1);
    h.trade(Venue::Margin, ETH, "2900");
    let first = h.closes()[0];
    h.margin_trade(ETH, OrderSide::Sell, "0.3", "2900", 2); // 0.3 sold by hand meanwhile
    h.reject(&first, RejectKind::Permanent); // insufficient balance
    h.advance_ms(11_000);
    h.send(Event::Tick);
    assert_eq!(h.closes()[1].qty, qty("0.2"));
}

#[test]
fn f6_a_stale_margin_rebuild_does_not_overwrite_the_fill_book() {
    let mut h = Harness::default();
    eth_margin_rules(&mut h);
    let long = key(Venue::Margin, ETH, Side::Long);
    let t0 = h.exchange_ms;
    h.margin_trade(ETH, OrderSide::Buy, "1", "3000", 1);
    h.margin_trade(ETH, OrderSide::Buy, "0.5", "3000", 2);
    h.send(Event::Position { key: long, qty: qty("1"), entry: px("3000"), exchange_ms: t0 + 1 });
    h.margin_trade(ETH, OrderSide::Sell, "1.5", "3010", 3); // the user sells everything
    h.trade(Venue::Margin, ETH, "3100");
    assert!(h.closes().is_empty(), "phantom short closed: {:?}", h.closes());
}

#[test]
fn f7_a_position_without_entry_adopted_before_any_price_gets_a_stop() {
    let mut h = Harness::default();
    eth_margin_rules(&mut h);
    let long = key(Venue::Margin, ETH, Side::Long);
    h.position(long, "2", "0");
    for p in ["3000", "2000", "1000", "1"] {
        h.trade(Venue::Margin, ETH, p);
    }
    assert!(!h.closes().is_empty(), "{:?}", h.view_of(long));
}

#[test]
fn f9_a_failed_entry_hands_a_known_manual_position_to_the_safety_net() {
    let mut h = Harness::default();
    let (_, entry) = core_long_entering(&mut h, fast_arm("10000", Some("49000")));
    h.position(usdm_long(BTC), "0.3", "50000"); // opened by hand while entering
    h.reject(&entry, RejectKind::Permanent);
    h.mark(BTC, "30000");
    assert_eq!(
        h.closes().len(),
        1,
        "exchange says {:?}",
        h.engine.exchange_position(&usdm_long(BTC))
    );
}

#[test]
fn f10_a_zero_quantity_margin_fill_does_not_panic() {
    let mut h = Harness::default();
    h.margin_trade(ETH, OrderSide::Buy, "0", "3000", 1);
}

#[test]
fn f11_a_fresh_engine_holds_no_lease() {
    let mut h = Harness { engine: Engine::new(Config::default()), ..Harness::default() };
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.position(usdm_long(BTC), "0.5", "50000");
    h.mark(BTC, "48000");
    assert!(h.closes().is_empty(), "sent before any Lease event");
}

#[test]
fn f12_a_rest_fallback_price_does_not_make_the_market_fresh() {
    let mut h = Harness::default();
    h.position(usdm_long(BTC), "0.5", "50000");
    h.mark(BTC, "50000");
    h.advance_ms(6_000);
    let m = market(Venue::Usdm, BTC);
    h.send(Event::Mark { market: m, price: px("50000"), origin: Origin::RestFallback });
    assert_eq!(h.engine.stale_markets(h.now).count(), 1, "stream down, /readyz would pass");
}

#[test]
fn f13_stops_set_before_exchange_info_are_rounded_to_the_tick() {
    let mut h = Harness::default();
    h.position(usdm_long(ETH), "1", "101.37");
    h.rules(Venue::Usdm, ETH, SymbolRules { tick: px("0.01"), ..SymbolRules::UNRESTRICTED });
    assert_eq!(h.view_of(usdm_long(ETH)).unwrap().stop, px("99.34"));
}
