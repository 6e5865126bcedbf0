//! Every trading rule of DESIGN.md sections 2 to 6, with the worked numbers, through the public
//! `on_event` interface: what goes in is what the feed will send, what is checked is what the I/O
//! and cold threads will receive.

mod common;

use common::*;
use engine::events::*;
use engine::types::{OrderPurpose, OrderSide, TriggerSource};
use engine::*;

fn closed(h: &Harness, id: PositionId) -> Option<ClosedBy> {
    h.journal().iter().find_map(|j| match j {
        Journal::PositionClosed { id: closed, by } if *closed == id => Some(*by),
        _ => None,
    })
}

fn stop_moves(h: &Harness) -> Vec<Price> {
    h.journal()
        .iter()
        .filter_map(|j| match j {
            Journal::StopMoved { to, .. } => Some(*to),
            _ => None,
        })
        .collect()
}

// ---- Safety Net (DESIGN.md section 3) ----

#[test]
fn a_manual_long_gets_a_two_percent_stop_and_closes_exactly_at_it() {
    let mut h = Harness::default();
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.mark(BTC, "50100");
    h.position(usdm_long(BTC), "0.5", "50000");
    let view = h.view_of(usdm_long(BTC)).expect("protected");
    assert_eq!(view.modality, Modality::SafetyNet);
    assert_eq!(view.state, State::Safety(SafetyState::Protected));
    // 50,000 × 0.98 = 49,000.0 exactly on the 0.10 tick.
    assert_eq!(view.stop, px("49000.0"));

    h.mark(BTC, "49000.1");
    assert!(h.closes().is_empty(), "a tick above the stop must not fire");
    h.mark(BTC, "49000.0");
    let closes = h.closes();
    assert_eq!(closes.len(), 1);
    let close = closes[0];
    assert_eq!(
        (close.order_side, close.qty, close.modality),
        (OrderSide::Sell, qty("0.5"), Modality::SafetyNet)
    );
    assert!(close.cid.as_str().starts_with("rbd-SX-"), "{}", close.cid);
    assert_eq!(h.view_of(usdm_long(BTC)).unwrap().state, State::Safety(SafetyState::Exiting));
}

#[test]
fn a_manual_short_stop_sits_above_and_fires_inclusively() {
    let mut h = Harness::default();
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.position(usdm_short(BTC), "0.25", "50000");
    assert_eq!(h.view_of(usdm_short(BTC)).unwrap().stop, px("51000.0"));
    h.mark(BTC, "50999.9");
    assert!(h.closes().is_empty());
    h.mark(BTC, "51000.0");
    let close = h.closes()[0];
    assert_eq!((close.order_side, close.qty), (OrderSide::Buy, qty("0.25")));
}

#[test]
fn safety_stops_round_on_the_loose_side_of_the_tick() {
    let mut h = Harness::default();
    let rules = SymbolRules { tick: px("0.01"), ..SymbolRules::UNRESTRICTED };
    h.rules(Venue::Usdm, ETH, rules);
    // 101.37 × 0.98 = 99.3426 → a long's stop rounds down to 99.34;
    // 101.37 × 1.02 = 103.3974 → a short's rounds up to 103.40.
    h.position(usdm_long(ETH), "1", "101.37");
    h.position(usdm_short(ETH), "1", "101.37");
    assert_eq!(h.view_of(usdm_long(ETH)).unwrap().stop, px("99.34"));
    assert_eq!(h.view_of(usdm_short(ETH)).unwrap().stop, px("103.40"));
}

#[test]
fn the_close_quantity_rounds_down_to_the_step() {
    let mut h = Harness::default();
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.position(usdm_long(BTC), "0.5009", "50000");
    h.mark(BTC, "48000");
    assert_eq!(h.closes()[0].qty, qty("0.500"));
}

#[test]
fn a_per_symbol_override_replaces_the_default_percent() {
    let mut h = Harness::default();
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.position(usdm_long(BTC), "0.5", "50000");
    let pct = Some(Ratio::percent(5));
    h.send(Event::SetSafetyPct { market: market(Venue::Usdm, BTC), pct });
    assert_eq!(h.view_of(usdm_long(BTC)).unwrap().stop, px("47500.0"));
    // A new position on the symbol takes the override too.
    h.position(usdm_short(BTC), "0.5", "50000");
    assert_eq!(h.view_of(usdm_short(BTC)).unwrap().stop, px("52500.0"));
}

#[test]
fn the_stop_is_recomputed_when_the_user_adds_or_reduces_by_hand() {
    let mut h = Harness::default();
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.position(usdm_long(BTC), "0.5", "50000");
    let id = h.view_of(usdm_long(BTC)).unwrap().id;
    // The user adds at 51,000: the exchange's new entry is 50,500.
    h.position(usdm_long(BTC), "1.0", "50500");
    let view = h.view_of(usdm_long(BTC)).unwrap();
    assert_eq!((view.id, view.qty, view.stop), (id, qty("1.0"), px("49490.0")));
    // The user closes part: same entry, the stop stays, the close covers what is left.
    h.position(usdm_long(BTC), "0.3", "50500");
    h.mark(BTC, "49490");
    assert_eq!(h.closes()[0].qty, qty("0.3"));
}

#[test]
fn a_filled_close_ends_the_position_and_nothing_fires_again() {
    let mut h = Harness::default();
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.position(usdm_long(BTC), "0.5", "50000");
    let id = h.view_of(usdm_long(BTC)).unwrap().id;
    h.mark(BTC, "48900");
    let close = h.closes()[0];
    h.mark(BTC, "48000");
    h.mark(BTC, "47000");
    assert_eq!(h.closes().len(), 1, "exiting emits nothing more");
    h.fill(&close, "48900");
    assert_eq!(closed(&h, id), Some(ClosedBy::OwnOrder));
    // The exchange confirms flat; a snapshot from before the fill must not resurrect it.
    h.take();
    let stale_ms = h.exchange_ms - 10;
    let key = usdm_long(BTC);
    h.send(Event::Position { key, qty: qty("0.5"), entry: px("50000"), exchange_ms: stale_ms });
    h.position(usdm_long(BTC), "0", "0");
    h.mark(BTC, "46000");
    assert!(h.closes().is_empty());
    assert!(h.view_of(usdm_long(BTC)).is_none());
}

#[test]
fn a_position_closed_by_hand_is_closed_externally() {
    let mut h = Harness::default();
    h.position(usdm_long(BTC), "0.5", "50000");
    let id = h.view_of(usdm_long(BTC)).unwrap().id;
    h.position(usdm_long(BTC), "0", "0");
    assert_eq!(closed(&h, id), Some(ClosedBy::External));
}

#[test]
fn margin_positions_are_derived_from_fills_with_a_volume_weighted_entry() {
    let mut h = Harness::default();
    let rules = SymbolRules { tick: px("0.01"), step: qty("0.001"), ..SymbolRules::UNRESTRICTED };
    h.rules(Venue::Margin, ETH, rules);
    h.margin_trade(ETH, OrderSide::Buy, "0.1", "100", 1);
    h.margin_trade(ETH, OrderSide::Buy, "0.3", "110", 2);
    // A replayed fill (same trade id) changes nothing.
    h.margin_trade(ETH, OrderSide::Buy, "0.3", "110", 2);
    let long = key(Venue::Margin, ETH, Side::Long);
    let view = h.view_of(long).unwrap();
    // (0.1 × 100 + 0.3 × 110) / 0.4 = 107.5; stop 107.5 × 0.98 = 105.35.
    assert_eq!((view.qty, view.entry, view.stop), (qty("0.4"), px("107.5"), px("105.35")));
    // Margin triggers on the last trade price, not a mark.
    h.mark(ETH, "1");
    h.send(Event::Mark {
        market: market(Venue::Margin, ETH),
        price: px("1"),
        origin: Origin::Stream,
    });
    assert!(h.closes().is_empty(), "margin ignores mark prices by default");
    h.trade(Venue::Margin, ETH, "105.35");
    let close = h.closes()[0];
    assert_eq!((close.key, close.order_side, close.qty), (long, OrderSide::Sell, qty("0.4")));
}

#[test]
fn a_margin_short_is_borrowed_base_sold_and_closes_with_a_buy() {
    let mut h = Harness::default();
    h.margin_trade(ETH, OrderSide::Sell, "2", "3000", 7);
    let short = key(Venue::Margin, ETH, Side::Short);
    assert_eq!(h.view_of(short).unwrap().stop, px("3060"));
    h.trade(Venue::Margin, ETH, "3060");
    let close = h.closes()[0];
    assert_eq!((close.order_side, close.qty), (OrderSide::Buy, qty("2")));
}

#[test]
fn dust_below_the_minimum_quantity_is_reported_once_and_not_protected() {
    let mut h = Harness::default();
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.position(usdm_long(BTC), "0.0004", "50000");
    h.position(usdm_long(BTC), "0.0004", "50000");
    let dust = h.journal().iter().filter(|j| matches!(j, Journal::DustIgnored { .. })).count();
    assert_eq!(dust, 1);
    assert!(h.view_of(usdm_long(BTC)).is_none());
}

// ---- Core Trading (DESIGN.md section 4) ----

#[test]
fn worked_example_long_from_signal_to_exit() {
    let mut h = Harness::default();
    let params = fast_arm("10000", Some("49000"));
    let (id, entry) = core_long_entering(&mut h, params);
    // qty = capital × risk / span = 10,000 × 1% / 1,000 = 0.1.
    assert_eq!(
        (entry.order_side, entry.qty, entry.modality),
        (OrderSide::Buy, qty("0.1"), Modality::Core)
    );
    assert!(entry.cid.as_str().starts_with("rbd-CE-"));
    assert!(
        h.journal().iter().any(|j| matches!(j, Journal::EntrySignal { id: i, .. } if *i == id))
    );
    h.fill(&entry, "50000");
    let view = h.view(id).unwrap();
    assert_eq!(
        (view.state, view.entry, view.stop),
        (State::Core(CoreState::Active), px("50000"), px("49000"))
    );

    let steps = [
        ("50500", "49000"),
        ("51000", "50075.0"),
        ("51500", "50075.0"),
        ("52000", "51000"),
        ("53000", "52000"),
        ("54000", "53000"),
        ("53100", "53000"),
    ];
    for (price, stop) in steps {
        h.mark(BTC, price);
        assert_eq!(h.view(id).unwrap().stop, px(stop), "after mark {price}");
        assert!(h.closes().is_empty(), "no exit at {price}");
    }
    assert_eq!(stop_moves(&h), [px("50075.0"), px("51000"), px("52000"), px("53000")]);
    h.mark(BTC, "53000");
    let close = h.closes()[0];
    assert_eq!(
        (close.order_side, close.qty, close.modality),
        (OrderSide::Sell, qty("0.1"), Modality::Core)
    );
    assert_eq!(close.cid.tag().unwrap().sequence, 2, "entry was action 1, the exit action 2");
    h.fill(&close, "53000");
    assert_eq!(closed(&h, id), Some(ClosedBy::OwnOrder));
}

#[test]
fn worked_example_short() {
    let mut h = Harness::default();
    let rules = SymbolRules { tick: px("0.01"), step: qty("0.001"), ..SymbolRules::UNRESTRICTED };
    h.rules(Venue::Usdm, ETH, rules);
    h.balance_usdm("100000");
    let id = h.arm(usdm_short(ETH), fast_arm("30000", Some("3100")));
    cross(&mut h, ETH, "3010", "3000");
    let entry = h.entries()[0];
    // 30,000 × 1% / 100 = 3.
    assert_eq!((entry.order_side, entry.qty), (OrderSide::Sell, qty("3")));
    h.fill(&entry, "3000");
    for (price, stop) in [("2950", "3100"), ("2900", "2995.51"), ("2800", "2900"), ("2700", "2800")]
    {
        h.mark(ETH, price);
        assert_eq!(h.view(id).unwrap().stop, px(stop), "after mark {price}");
    }
    assert!(h.closes().is_empty());
    h.mark(ETH, "2800");
    assert_eq!(h.closes()[0].order_side, OrderSide::Buy);
}

#[test]
fn without_a_technical_stop_the_default_is_two_percent_from_the_fill() {
    let mut h = Harness::default();
    let params = fast_arm("10000", None);
    let (id, entry) = core_long_entering(&mut h, params);
    // Sized from the signal price: span 50,000 × 2% = 1,000 → 0.1.
    assert_eq!(entry.qty, qty("0.1"));
    // Filled higher than the signal: the technical stop and span follow the real entry.
    h.fill(&entry, "50100");
    let view = h.view(id).unwrap();
    assert_eq!(view.stop, px("49098.0"));
    let span = h.journal().iter().find_map(|j| match j {
        Journal::PositionOpened { span, .. } => Some(*span),
        _ => None,
    });
    assert_eq!(span, Some(px("1002")));
}

/// Arms a BTC long on `rules` with `balance` (none if empty), crosses at 50,000, and returns
/// the entry quantity or the rejection.
fn size_at_50000(
    rules: SymbolRules,
    balance: &str,
    params: ArmParams,
) -> Result<Qty, EntryRejection> {
    let mut h = Harness::default();
    h.rules(Venue::Usdm, BTC, rules);
    if !balance.is_empty() {
        h.balance_usdm(balance);
    }
    h.arm(usdm_long(BTC), params);
    cross(&mut h, BTC, "49900", "50000");
    let rejected = h.journal().iter().find_map(|j| match j {
        Journal::EntryRejected { reason, .. } => Some(*reason),
        _ => None,
    });
    match (h.entries().as_slice(), rejected) {
        ([entry], None) => Ok(entry.qty),
        ([], Some(reason)) => Err(reason),
        other => panic!("neither one entry nor one rejection: {other:?}"),
    }
}

#[test]
fn sizing_is_capped_by_balance_and_refused_below_the_minimums() {
    let rules = btc_rules();
    // 10,000 × 1% / 1,000 = 0.1.
    assert_eq!(size_at_50000(rules, "100000", fast_arm("10000", Some("49000"))), Ok(qty("0.1")));
    // A budget of 1,000,000 asks for 10, but a balance of 1,000 buys 0.02 at 50,000.
    assert_eq!(size_at_50000(rules, "1000", fast_arm("1000000", Some("49000"))), Ok(qty("0.02")));
    // 50 × 1% / 1,000 = 0.0005 < minQty 0.001.
    let small = fast_arm("50", Some("49000"));
    assert_eq!(size_at_50000(rules, "100000", small), Err(EntryRejection::BelowMinQty));
    let params = fast_arm("10000", Some("49000"));
    assert_eq!(size_at_50000(rules, "", params), Err(EntryRejection::NoBalance));
    // A long's technical stop above the price leaves no span to size from.
    let above = fast_arm("10000", Some("50500"));
    assert_eq!(size_at_50000(rules, "100000", above), Err(EntryRejection::NoSpan));
    // With minNotional 100: 1,000 × 1% / 1,000 = 0.01 × 50,000 = 500 passes; 150 gives
    // 0.0015 → 0.001 × 50,000 = 50, refused.
    let rules = SymbolRules { min_notional: Amount::lit("100"), ..btc_rules() };
    assert_eq!(size_at_50000(rules, "100000", fast_arm("1000", Some("49000"))), Ok(qty("0.01")));
    let thin = fast_arm("150", Some("49000"));
    assert_eq!(size_at_50000(rules, "100000", thin), Err(EntryRejection::BelowMinNotional));
}

// ---- Exclusion (DESIGN.md section 2) ----

#[test]
fn core_never_merges_into_a_manual_position() {
    let mut h = Harness::default();
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.position(usdm_long(BTC), "0.3", "49000");
    h.balance_usdm("100000");
    let id = h.arm(usdm_long(BTC), fast_arm("10000", None));
    cross(&mut h, BTC, "49900", "50000");
    assert!(h.entries().is_empty());
    let blocked = h.journal().into_iter().find(|j| matches!(j, Journal::EntryBlocked { .. }));
    assert_eq!(blocked, Some(Journal::EntryBlocked { id, holder: Some(Modality::SafetyNet) }));
    // The arm waits: once the manual position is gone, the next signal enters.
    h.position(usdm_long(BTC), "0", "0");
    cross(&mut h, BTC, "49000", "49500");
    assert_eq!(h.entries().len(), 1);
}

#[test]
fn the_safety_net_never_acts_on_a_core_key() {
    let mut h = Harness::default();
    let params = fast_arm("10000", None);
    let (id, entry) = core_long_entering(&mut h, params);
    // The exchange reports the key before the order update does: Core already owns it.
    h.position(usdm_long(BTC), "0.1", "50000");
    h.fill(&entry, "50000");
    h.position(usdm_long(BTC), "0.1", "50000");
    assert_eq!(h.engine.owner(&usdm_long(BTC)), Some((Modality::Core, id)));
    assert!(!h.journal().iter().any(|j| matches!(j, Journal::PositionDetected { .. })));
    h.mark(BTC, "45000");
    let closes = h.closes();
    assert_eq!(closes.len(), 1);
    assert_eq!(closes[0].modality, Modality::Core);
}

#[test]
fn a_remainder_added_by_hand_is_handed_to_the_safety_net_after_cores_exit() {
    let mut h = Harness::default();
    let params = fast_arm("10000", None);
    let (core, entry) = core_long_entering(&mut h, params);
    h.fill(&entry, "50000");
    // The user adds 0.05 by hand at 51,000; Core keeps managing its 0.1 only.
    h.position(usdm_long(BTC), "0.15", "50333.3");
    h.mark(BTC, "49000");
    let close = h.closes()[0];
    assert_eq!(close.qty, qty("0.1"));
    // Binance stamps the position change and the fill with the same transaction time, and
    // sends the ACCOUNT_UPDATE first.
    let fill_ms = h.exchange_ms + 100;
    let (key, remainder, entry) = (usdm_long(BTC), qty("0.05"), px("50333.3"));
    h.send(Event::Position { key, qty: remainder, entry, exchange_ms: fill_ms });
    h.take();
    let update = OrderUpdate {
        account: close.key.account,
        venue: close.key.venue,
        symbol: close.key.symbol,
        cid: close.cid,
        status: OrderStatus::Filled,
        cum_qty: close.qty,
        avg_price: px("49000"),
        exchange_ms: fill_ms,
    };
    h.send(Event::Order(update));
    assert_eq!(closed(&h, core), Some(ClosedBy::OwnOrder));
    let detected = h.journal().into_iter().find_map(|j| match j {
        Journal::PositionDetected { qty, entry, from, .. } => Some((qty, entry, from)),
        _ => None,
    });
    assert_eq!(detected, Some((qty("0.05"), px("50333.3"), Some(core))));
    let view = h.view_of(usdm_long(BTC)).unwrap();
    // 50,333.3 × 0.98 = 49,326.634 → 49,326.6; the price (49,000) is already below it.
    assert_eq!((view.modality, view.stop), (Modality::SafetyNet, px("49326.6")));
    assert_eq!(h.closes().len(), 1, "the remainder is below its stop: closed at once");
    assert_eq!(h.closes()[0].qty, qty("0.05"));
}

#[test]
fn a_remainder_reported_after_the_exit_fill_is_handed_over_then() {
    let mut h = Harness::default();
    let params = fast_arm("10000", None);
    let (core, entry) = core_long_entering(&mut h, params);
    h.fill(&entry, "50000");
    h.position(usdm_long(BTC), "0.12", "50100");
    h.mark(BTC, "49500");
    assert!(h.closes().is_empty());
    h.mark(BTC, "49000");
    let close = h.closes()[0];
    assert_eq!(close.qty, qty("0.1"));
    h.fill(&close, "49000");
    assert_eq!(h.engine.owner(&usdm_long(BTC)), None, "nothing known after the fill yet");
    h.position(usdm_long(BTC), "0.02", "50100");
    let (modality, _) = h.engine.owner(&usdm_long(BTC)).expect("handed over");
    assert_eq!(modality, Modality::SafetyNet);
    assert_ne!(h.engine.owner(&usdm_long(BTC)).unwrap().1, core);
    // 50,100 × 0.98 = 49,098.0, above the price: the remainder closes at once, once.
    let closes = h.closes();
    assert_eq!(closes.len(), 2);
    assert_eq!((closes[1].qty, closes[1].modality), (qty("0.02"), Modality::SafetyNet));
}

#[test]
fn a_safety_close_reported_by_the_position_stream_first_is_not_counted_twice() {
    let mut h = Harness::default();
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.position(usdm_long(BTC), "0.5", "50000");
    h.mark(BTC, "48000");
    let first = h.closes()[0];
    // The book was thin: 0.3 filled, and the position stream says so before the order does.
    h.position(usdm_long(BTC), "0.2", "50000");
    h.order(&first, OrderStatus::Expired, "0.3", "48000");
    let closes = h.closes();
    assert_eq!(closes.len(), 2);
    assert_eq!(closes[1].qty, qty("0.2"), "the rest, exactly once");
}

#[test]
fn a_snapshot_older_than_cores_exit_fill_does_not_hand_over() {
    let mut h = Harness::default();
    let params = fast_arm("10000", None);
    let (_, entry) = core_long_entering(&mut h, params);
    h.fill(&entry, "50000");
    h.position(usdm_long(BTC), "0.1", "50000");
    h.mark(BTC, "49000");
    let close = h.closes()[0];
    h.fill(&close, "49000");
    h.take();
    // Delivered late: from before the fill, it still shows the closed 0.1.
    let (key, exchange_ms) = (usdm_long(BTC), h.exchange_ms - 5);
    h.send(Event::Position { key, qty: qty("0.1"), entry: px("50000"), exchange_ms });
    assert!(h.view_of(key).is_none());
    assert!(h.closes().is_empty());
}

// ---- Exactly one close (DESIGN.md section 5) ----

#[test]
fn a_rejected_close_is_retried_with_a_new_sequence_after_a_back_off() {
    let mut h = Harness::default();
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.position(usdm_long(BTC), "0.5", "50000");
    h.mark(BTC, "48000");
    let first = h.closes()[0];
    h.reject(&first, RejectKind::Transient);
    h.mark(BTC, "47000");
    assert_eq!(h.closes().len(), 1, "no retry before the back-off");
    h.advance_ms(300);
    h.send(Event::Tick);
    let closes = h.closes();
    assert_eq!(closes.len(), 2);
    let (a, b) = (first.cid.tag().unwrap(), closes[1].cid.tag().unwrap());
    assert_eq!((a.position, b.sequence), (b.position, a.sequence + 1));
    assert_ne!(first.cid, closes[1].cid);
}

#[test]
fn an_unknown_close_is_queried_never_resent_until_its_fate_is_known() {
    let mut h = Harness::default();
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.position(usdm_long(BTC), "0.5", "50000");
    h.mark(BTC, "48000");
    let first = h.closes()[0];
    h.order(&first, OrderStatus::Unknown, "0", "0");
    let queries: Vec<_> =
        h.out.intents.iter().filter(|i| matches!(i, Intent::Query { .. })).collect();
    assert_eq!(queries.len(), 1);
    h.advance_ms(60_000);
    h.send(Event::Tick);
    h.mark(BTC, "40000");
    assert_eq!(h.closes().len(), 1, "a close that may be live is never sent again");
    // The query finds nothing: it never arrived, so the same decision goes out anew.
    h.order(&first, OrderStatus::NotFound, "0", "0");
    let closes = h.closes();
    assert_eq!(closes.len(), 2);
    assert_eq!(closes[1].cid.tag().unwrap().sequence, 2);
}

#[test]
fn a_partly_filled_close_that_expires_closes_the_rest() {
    let mut h = Harness::default();
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.position(usdm_long(BTC), "0.5", "50000");
    h.mark(BTC, "48000");
    let first = h.closes()[0];
    h.order(&first, OrderStatus::Expired, "0.3", "48000");
    let closes = h.closes();
    assert_eq!(closes.len(), 2);
    assert_eq!(closes[1].qty, qty("0.2"));
}

#[test]
fn a_core_position_reduced_by_hand_never_closes_more_than_is_there() {
    let mut h = Harness::default();
    let params = fast_arm("10000", None);
    let (_, entry) = core_long_entering(&mut h, params);
    h.fill(&entry, "50000");
    h.position(usdm_long(BTC), "0.04", "50000");
    h.mark(BTC, "48000");
    assert_eq!(h.closes()[0].qty, qty("0.04"));
}

#[test]
fn a_rejected_entry_releases_the_key() {
    let mut h = Harness::default();
    let params = fast_arm("10000", None);
    let (id, entry) = core_long_entering(&mut h, params);
    h.reject(&entry, RejectKind::Permanent);
    assert_eq!(closed(&h, id), Some(ClosedBy::EntryFailed));
    assert_eq!(h.engine.owner(&usdm_long(BTC)), None);
    h.position(usdm_long(BTC), "0.2", "50000");
    assert_eq!(h.engine.owner(&usdm_long(BTC)).unwrap().0, Modality::SafetyNet);
}

#[test]
fn identical_inputs_give_identical_client_order_ids() {
    let run = || {
        let mut h = Harness::default();
        let params = fast_arm("10000", None);
        let (_, entry) = core_long_entering(&mut h, params);
        h.fill(&entry, "50000");
        h.mark(BTC, "48000");
        h.placed().iter().map(|o| o.cid.to_string()).collect::<Vec<_>>()
    };
    let ids = run();
    assert_eq!(ids, run());
    assert_eq!(ids.len(), 2);
    for id in &ids {
        assert!(
            id.len() <= 36
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }
}

// ---- Kill switch, lease, staleness, trigger sources (DESIGN.md sections 1, 5, 6) ----

#[test]
fn halt_suppresses_entries_until_resume() {
    let mut h = Harness::default();
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.balance_usdm("100000");
    h.arm(usdm_long(BTC), fast_arm("10000", None));
    h.send(Event::Halt { flatten: false });
    cross(&mut h, BTC, "49900", "50000");
    assert!(h.entries().is_empty());
    assert!(h.journal().iter().any(|j| matches!(j, Journal::EntrySuppressed { .. })));
    h.send(Event::Resume);
    cross(&mut h, BTC, "49000", "49500");
    assert_eq!(h.entries().len(), 1);
    let kinds: Vec<_> = h
        .journal()
        .into_iter()
        .filter(|j| matches!(j, Journal::Halted { .. } | Journal::Resumed))
        .collect();
    assert_eq!(kinds, [Journal::Halted { flatten: false }, Journal::Resumed]);
}

#[test]
fn halt_flatten_closes_every_open_position_and_entries_once_they_fill() {
    let mut h = Harness::default();
    let params = fast_arm("10000", None);
    let (core, entry) = core_long_entering(&mut h, params);
    h.rules(Venue::Usdm, ETH, SymbolRules::UNRESTRICTED);
    h.position(usdm_short(ETH), "3", "3000");
    h.take();
    h.send(Event::Halt { flatten: true });
    let closes = h.closes();
    assert_eq!(closes.len(), 1, "the manual short closes now; the entry is still in flight");
    assert_eq!((closes[0].key, closes[0].order_side), (usdm_short(ETH), OrderSide::Buy));
    h.fill(&entry, "50000");
    let closes = h.closes();
    assert_eq!(closes.len(), 2);
    assert_eq!((closes[1].modality, closes[1].cid.tag().unwrap().position), (Modality::Core, core));
}

#[test]
fn without_the_lease_nothing_is_sent_and_stops_fire_once_it_is_regained() {
    let mut h = Harness::default();
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.send(Event::Lease { held: false });
    h.position(usdm_long(BTC), "0.5", "50000");
    h.mark(BTC, "48000");
    assert!(h.placed().is_empty());
    h.send(Event::Lease { held: true });
    assert_eq!(h.closes().len(), 1);
}

#[test]
fn stale_trigger_prices_are_reported_and_journaled_once_per_change() {
    let mut h = Harness::default();
    h.position(usdm_long(BTC), "0.5", "50000");
    assert_eq!(h.engine.stale_markets(h.now).collect::<Vec<_>>(), [market(Venue::Usdm, BTC)]);
    h.mark(BTC, "50000");
    assert_eq!(h.engine.stale_markets(h.now).count(), 0);
    h.advance_ms(5_000);
    assert_eq!(h.engine.stale_markets(h.now).count(), 0, "exactly the limit is still fresh");
    h.advance_ms(2);
    assert_eq!(h.engine.stale_markets(h.now).count(), 1);
    h.send(Event::Tick);
    h.send(Event::Tick);
    // A REST fallback price keeps the stop alive, but the stream is still down: still stale.
    let m = market(Venue::Usdm, BTC);
    h.send(Event::Mark { market: m, price: px("48000"), origin: Origin::RestFallback });
    assert_eq!(h.closes().len(), 1, "a fallback price fires the stop");
    assert_eq!(h.engine.stale_markets(h.now).count(), 1, "a fallback price is not the stream");
    h.send(Event::Tick);
    // The stream comes back.
    h.mark(BTC, "48100");
    h.send(Event::Tick);
    assert_eq!(h.engine.stale_markets(h.now).count(), 0);
    let changes: Vec<_> = h
        .journal()
        .into_iter()
        .filter(|j| matches!(j, Journal::PriceStale { .. } | Journal::PriceFresh { .. }))
        .collect();
    assert_eq!(changes, [Journal::PriceStale { market: m }, Journal::PriceFresh { market: m }]);
}

#[test]
fn book_triggers_use_the_bid_for_longs_and_the_ask_for_shorts() {
    let mut h = Harness::default();
    let m = market(Venue::Usdm, BTC);
    h.send(Event::SetTriggerSource { market: m, source: TriggerSource::Book });
    h.position(usdm_long(BTC), "1", "50000");
    h.position(usdm_short(BTC), "1", "50000");
    // Mark prices no longer matter.
    h.mark(BTC, "40000");
    assert!(h.closes().is_empty());
    // The ask reaches the short's stop (51,000) while the bid stays above the long's (49,000).
    h.book(Venue::Usdm, BTC, "50990", "51000");
    let closes = h.closes();
    assert_eq!(closes.len(), 1);
    assert_eq!(closes[0].key.side, Side::Short);
    h.book(Venue::Usdm, BTC, "49000", "49010");
    assert_eq!(h.closes().len(), 2);
}

#[test]
fn arm_and_disarm_are_validated() {
    let mut h = Harness::default();
    let params = ArmParams { ma_fast: Some(21), ma_slow: Some(9), ..Default::default() };
    let reply = h.send(Event::Arm { key: usdm_long(BTC), params });
    assert_eq!(reply, Reply::ArmRejected(ArmRejection::BadPeriods));
    let params = ArmParams { risk: Some(Ratio::lit("1.5")), ..Default::default() };
    let reply = h.send(Event::Arm { key: usdm_long(BTC), params });
    assert_eq!(reply, Reply::ArmRejected(ArmRejection::BadRisk));
    let id = h.arm(usdm_long(BTC), ArmParams::default());
    let reply = h.send(Event::Arm { key: usdm_long(BTC), params: ArmParams::default() });
    assert_eq!(reply, Reply::ArmRejected(ArmRejection::AlreadyArmed));
    assert_eq!(
        h.send(Event::Disarm { id: PositionId(999) }),
        Reply::DisarmRejected(DisarmRejection::UnknownId)
    );
    assert_eq!(h.send(Event::Disarm { id }), Reply::Done);
    assert!(h.view(id).is_none());
    // Once entering, disarm is refused: closing is flatten's job.
    let params = fast_arm("10000", None);
    let (id, _) = core_long_entering(&mut h, params);
    assert_eq!(h.send(Event::Disarm { id }), Reply::DisarmRejected(DisarmRejection::NotArmed));
    assert_eq!(h.view(id).unwrap().state, State::Core(CoreState::Entering));
    assert_eq!(h.entries()[0].key.side, Side::Long);
    assert_eq!(h.entries()[0].purpose, OrderPurpose::Entry);
}

/// DESIGN.md section 7: the log explains every gap. A feed connection's changes are journaled
/// with the engine's sequence and time, and change nothing else.
#[test]
fn feed_connection_changes_are_journaled_and_nothing_else() {
    use engine::events::{FeedKind, FeedState, FeedStream};
    let mut h = Harness::default();
    let stream = FeedStream { venue: Venue::Usdm, kind: FeedKind::Market };
    for state in [FeedState::Disconnected, FeedState::Reconnected { gap_ms: 10_000 }] {
        h.send(Event::Feed { stream, state });
    }
    assert_eq!(
        h.journal(),
        [
            Journal::FeedChanged { stream, state: FeedState::Disconnected },
            Journal::FeedChanged { stream, state: FeedState::Reconnected { gap_ms: 10_000 } },
        ]
    );
    assert!(h.out.intents.is_empty());
    assert_eq!(h.engine.positions().count(), 0);
}
