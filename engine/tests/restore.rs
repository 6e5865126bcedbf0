//! Restart recovery (issue 4): an engine rebuilt from its journal resolves what was in flight
//! by client order id instead of sending it again, keeps halts and numbering, and refuses a
//! journal that does not reach back far enough. The property that the rebuilt state equals the
//! live one after every event is in `props.rs` (`state_rebuilt_from_the_journal_equals_the_live_state`).

mod common;

use common::*;
use engine::events::{ClosedBy, Intent, OrderStatus};
use engine::types::OrderPurpose;
use engine::*;

/// A harness around an engine restored from `records`, without the lease, at a later time.
fn restarted(records: &[Record]) -> Harness {
    let mut fold = JournalFold::new();
    for record in records {
        fold.apply(record).expect("a whole journal");
    }
    let mut h = Harness::new(Config::default());
    h.engine = Engine::restore(Config::default(), &fold);
    h.now = Nanos::from_millis(3_600_000);
    h.exchange_ms += 3_600_000;
    h
}

fn queries(out: &VecSink) -> Vec<engine::types::ClientOrderId> {
    out.intents
        .iter()
        .filter_map(|i| match i {
            Intent::Query { cid, .. } => Some(*cid),
            Intent::Place(_) => None,
        })
        .collect()
}

#[test]
fn a_close_in_flight_at_the_crash_is_queried_not_sent_again() {
    let mut h = Harness::default();
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.position(usdm_long(BTC), "0.5", "50000");
    h.mark(BTC, "48900");
    let closes = h.closes();
    assert_eq!(closes.len(), 1, "the safety stop at 49,000 fired");
    let close = closes[0];

    // The process dies here; the journal is all that is left.
    let mut h = restarted(&h.out.records);
    let view = h.view_of(usdm_long(BTC)).expect("the position is back");
    assert_eq!(view.state, State::Safety(SafetyState::Exiting));
    assert_eq!(view.live_order, Some(close.cid));
    assert_eq!(h.engine.owner(&usdm_long(BTC)).map(|(m, _)| m), Some(Modality::SafetyNet));

    // Reconciliation feeds the world back before the lease: nothing goes out without it.
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.mark(BTC, "48800");
    h.send(Event::Tick);
    assert!(h.out.intents.is_empty(), "no lease, nothing sent: {:?}", h.out.intents);

    h.send(Event::Lease { held: true });
    h.send(Event::Tick);
    assert_eq!(queries(&h.out), [close.cid], "the open close is asked about");
    assert!(h.placed().is_empty(), "and not sent again");

    // It had filled before the crash.
    h.take();
    h.fill(&close, "48950");
    assert!(h.placed().is_empty());
    assert!(h.journal().contains(&Journal::PositionClosed { id: view.id, by: ClosedBy::OwnOrder }));
    assert_eq!(h.engine.owner(&usdm_long(BTC)), None);
}

#[test]
fn an_entry_in_flight_that_never_arrived_fails_cleanly() {
    let mut h = Harness::default();
    let (id, entry) = core_long_entering(&mut h, fast_arm("1000", Some("49000")));
    let mut h = restarted(&h.out.records);
    assert_eq!(h.view(id).unwrap().state, State::Core(CoreState::Entering));
    h.send(Event::Lease { held: true });
    h.send(Event::Tick);
    assert_eq!(queries(&h.out), [entry.cid]);
    h.order(&entry, OrderStatus::NotFound, "0", "0");
    assert!(h.placed().is_empty(), "an entry is never re-sent after a restart");
    assert!(h.journal().contains(&Journal::PositionClosed { id, by: ClosedBy::EntryFailed }));
}

#[test]
fn a_position_closed_while_down_is_closed_in_the_log_and_a_new_one_is_protected() {
    let mut h = Harness::default();
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.position(usdm_long(BTC), "0.5", "50000");
    let id = h.view_of(usdm_long(BTC)).unwrap().id;
    let mut h = restarted(&h.out.records);
    h.rules(Venue::Usdm, BTC, btc_rules());
    // The start-up reconciliation: the long is gone, a short was opened by hand meanwhile.
    h.position(usdm_long(BTC), "0", "0");
    h.position(usdm_short(BTC), "0.2", "51000");
    let journal = h.journal();
    assert!(journal.contains(&Journal::PositionClosed { id, by: ClosedBy::External }));
    let short = h.view_of(usdm_short(BTC)).expect("the manual short is protected");
    assert_eq!(short.modality, Modality::SafetyNet);
    assert!(short.id.0 > id.0, "ids continue after the journal's: {short:?}");
    assert!(h.placed().is_empty());
}

#[test]
fn halts_armed_entries_and_numbering_survive_a_restart() {
    let mut h = Harness::default();
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.balance_usdm("100000");
    let armed = h.arm(usdm_long(BTC), fast_arm("1000", Some("49000")));
    h.send(Event::Halt { flatten: false });
    let last_seq = h.out.records.last().unwrap().seq;

    let mut h = restarted(&h.out.records);
    assert!(h.engine.is_halted());
    assert_eq!(h.view(armed).unwrap().state, State::Core(CoreState::Armed));
    h.send(Event::Lease { held: true });
    assert_eq!(h.out.records[0].seq, last_seq + 1, "journal numbering continues");

    // The arm works again once resumed: its averages start afresh.
    h.send(Event::Resume);
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.balance_usdm("100000");
    cross(&mut h, BTC, "49900", "50000");
    let entries = h.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].cid.tag().unwrap().position, armed);
    assert_eq!(entries[0].purpose, OrderPurpose::Entry);
}

#[test]
fn a_journal_that_does_not_reach_back_is_refused() {
    let mut h = Harness::default();
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.position(usdm_long(BTC), "0.5", "50000");
    h.mark(BTC, "48900");
    let records = h.out.records.clone();
    assert!(records.len() >= 3);

    // Retention cut the detection away: the close names a position the fold never saw.
    let mut fold = JournalFold::new();
    let cut = records.iter().position(|r| matches!(r.event, Journal::OrderSent { .. })).unwrap();
    let err = records[cut..].iter().try_for_each(|r| fold.apply(r)).unwrap_err();
    assert!(matches!(err, RestoreError::UnknownPosition { .. }), "{err}");

    let mut fold = JournalFold::new();
    fold.apply(&records[0]).unwrap();
    assert_eq!(
        fold.apply(&records[0]),
        Err(RestoreError::OutOfOrder { seq: records[0].seq, after: records[0].seq })
    );

    // What a restart needs goes back to the detection, not further.
    let mut fold = JournalFold::new();
    records.iter().for_each(|r| fold.apply(r).unwrap());
    let detected = records.iter().find(|r| matches!(r.event, Journal::PositionDetected { .. }));
    assert_eq!(fold.oldest_needed_seq(), detected.unwrap().seq);
}
