//! USD-M futures orders end to end over TLS: the listen key comes from `ListenKeyLifecycle`'s
//! schedule through the executor's own `RestClient`, the private stream runs on `WsClient`, an
//! engine `Intent` goes through `OrderExecutor` (rules from exchangeInfo), and four witnesses
//! must agree to the unit: the executor's returned update, the user stream's parsed events,
//! `positionRisk`, and the simulator's own order book-keeping. A position opened "in the app"
//! reaches the same stream as the Safety Net's input.

mod e2e_common;

use e2e_common::{
    ACCOUNT, Driver, ExecOut, btc, fast, intent, key, market, now_ms, order_updates, positions,
    rest_client, start_sim,
};
use engine::events::{BalanceScope, Intent, OrderStatus, OrderUpdate};
use engine::types::{Modality, OrderPurpose, OrderSide};
use engine::{Amount, ClientOrderId, Event, Price, Qty, Side, Venue};
use feed::rest::{Api, ExecutorConfig, OrderExecutor, PositionMode};
use feed::session::{ListenKeyCall, ListenKeyConfig, ListenKeyLifecycle};
use feed::wire::{Connection, EventKind, FrameParser, Parsed};
use feed::ws::{ConnId, WsConfig};
use sim::{OrderOutcome, OrderSource, Sim, SimConfig};

/// An executor on the simulator's futures REST, with the rules exchangeInfo gives.
fn executor(sim: &Sim) -> OrderExecutor {
    let mut exec = OrderExecutor::new(ExecutorConfig::default());
    exec.add_venue(ACCOUNT, Venue::Usdm, rest_client(sim, Api::Futures), PositionMode::OneWay);
    assert_eq!(exec.load_rules(ACCOUNT, Venue::Usdm, &[]).unwrap(), 3, "BTC, ETH, SOL listed");
    let rules = exec.rules(market(Venue::Usdm, btc())).expect("BTCUSDT rules");
    assert_eq!((rules.step, rules.min_qty), (Qty::lit("0.001"), Qty::lit("0.001")));
    exec
}

/// The private stream on the key the lifecycle schedule asked for, created on the executor's
/// client (the I/O thread shares one client per venue).
fn private_stream(sim: &Sim, exec: &mut OrderExecutor, d: &mut Driver) -> ConnId {
    let mut life = ListenKeyLifecycle::new(ListenKeyConfig::default(), now_ms());
    assert_eq!(life.due(now_ms()), Some(ListenKeyCall::Create));
    let client = exec.client_mut(ACCOUNT, Venue::Usdm).unwrap();
    let listen_key = client.create_listen_key().unwrap();
    assert!(life.on_key(listen_key, now_ms()), "a first key is a change");
    assert_eq!(life.due(now_ms()), None, "the keepalive is half an hour away");
    let url = format!("{}{}", sim.urls().usdm_ws, life.stream_path().unwrap());
    let conn = d.open(
        &url,
        &fast(WsConfig::usdm_user()),
        FrameParser::new(Connection::usdm_user(ACCOUNT)),
    );
    d.until_connected(conn, 1);
    conn
}

fn kind(parsed: &Result<Parsed, feed::wire::FrameError>) -> Option<EventKind> {
    match parsed {
        Ok(Parsed::Events { kind, .. }) | Ok(Parsed::Ignored(kind)) => Some(*kind),
        _ => None,
    }
}

/// Waits for one fill's four frames and checks their kinds; returns their engine events.
fn fill_frames(d: &mut Driver, conn: ConnId, from: usize) -> Vec<Event> {
    let kinds = d.run_until("an order's ACCOUNT_UPDATE", |g| {
        let kinds: Vec<Option<EventKind>> =
            g.frames(from, conn).iter().map(|f| kind(&f.parsed)).collect();
        kinds.contains(&Some(EventKind::AccountUpdate)).then_some(kinds)
    });
    assert_eq!(
        kinds,
        [
            Some(EventKind::OrderTradeUpdate),
            Some(EventKind::TradeLite),
            Some(EventKind::OrderTradeUpdate),
            Some(EventKind::AccountUpdate),
        ],
        "NEW, TRADE_LITE, TRADE, ACCOUNT_UPDATE"
    );
    d.got.events(from, conn)
}

fn order(cid: ClientOrderId, status: OrderStatus, cum: Qty, avg: Price, ms: u64) -> OrderUpdate {
    OrderUpdate {
        account: ACCOUNT,
        venue: Venue::Usdm,
        symbol: btc(),
        cid,
        status,
        cum_qty: cum,
        avg_price: avg,
        exchange_ms: ms,
    }
}

#[test]
fn an_engine_entry_fills_and_executor_stream_position_risk_and_simulator_agree() {
    let sim = start_sim(true, None);
    let mut exec = executor(&sim);
    let mut d = Driver::new(sim.ca_file());
    let user = private_stream(&sim, &mut exec, &mut d);
    let (bid, ask) = sim.book(Venue::Usdm, btc()).unwrap();
    assert_eq!((bid, ask), (Price::lit("49999.9"), Price::lit("50000.1")));

    let long = key(Venue::Usdm, btc(), Side::Long);
    let entry = intent(long, OrderPurpose::Entry, Modality::Core, 1, 1, Qty::lit("0.01"));
    assert_eq!(entry.cid.as_str(), "rbd-CE-1-1");
    let from = d.got.len();
    exec.submit(Intent::Place(entry), now_ms());
    let mut out = ExecOut::default();
    let outcome = exec.poll(now_ms(), &mut out);
    assert_eq!((outcome.requests, outcome.queued, outcome.unresolved), (1, 0, 0));
    assert!(out.notes.is_empty(), "{:?}", out.notes);
    let [reported] = out.orders()[..] else { panic!("one update: {out:?}") };
    assert_eq!(
        (reported.cid, reported.status, reported.cum_qty, reported.avg_price),
        (entry.cid, OrderStatus::Filled, Qty::lit("0.01"), ask),
        "a buy fills whole at the ask"
    );

    let events = fill_frames(&mut d, user, from);
    let updates = order_updates(&events);
    assert_eq!(
        updates,
        [
            order(entry.cid, OrderStatus::New, Qty::ZERO, Price::ZERO, updates[0].exchange_ms),
            reported,
        ],
        "the stream's fill is the executor's, transaction time included"
    );
    let short = key(Venue::Usdm, btc(), Side::Short);
    let mut stream_positions = positions(&events);
    stream_positions.sort();
    assert_eq!(
        stream_positions,
        [(long, Qty::lit("0.01"), ask), (short, Qty::ZERO, Price::ZERO)],
        "one-way: the long held, the short flat"
    );
    let balances: Vec<Amount> = events
        .iter()
        .filter_map(|e| match e {
            Event::Balance { account, scope: BalanceScope::UsdmWallet, available }
                if *account == ACCOUNT =>
            {
                Some(*available)
            }
            _ => None,
        })
        .collect();
    // 10 000 USDT less the 0.05 % taker fee on 0.01 × 50 000.1.
    assert_eq!(balances, [Amount::lit("9999.7499995")]);
    assert_eq!(sim.usdm_wallet(), Amount::lit("9999.7499995"));

    // positionRisk, on the executor's client, says the same.
    let client = exec.client_mut(ACCOUNT, Venue::Usdm).unwrap();
    let risks = client.position_risk(Some(btc())).unwrap();
    let mut rest_positions: Vec<_> = risks
        .snapshots()
        .map(|s| match s.event(ACCOUNT) {
            Event::Position { key, qty, entry, .. } => (key, qty, entry),
            other => panic!("{other:?}"),
        })
        .collect();
    rest_positions.sort();
    assert_eq!(rest_positions, stream_positions);

    // The simulator saw exactly one order, with that client id, filled once.
    let orders = sim.orders();
    assert_eq!(orders.len(), 1, "{orders:?}");
    let o = &orders[0];
    assert_eq!(o.client_order_id, "rbd-CE-1-1");
    assert_eq!((o.side, o.order_type, o.reduce_only), (OrderSide::Buy, "MARKET", false));
    assert_eq!(
        (o.outcome, o.executed_qty, o.avg_price),
        (OrderOutcome::Filled, Qty::lit("0.01"), ask)
    );
    assert_eq!(o.source, OrderSource::Api { api_key: SimConfig::DEMO_API_KEY.into() });
    let pos = sim.position(btc());
    assert_eq!((pos.amount, pos.entry), (Qty::lit("0.01"), ask));

    // The Core close: reduce-only, fills at the bid, and the stream shows both sides flat.
    let close = intent(long, OrderPurpose::Close, Modality::Core, 1, 2, Qty::lit("0.01"));
    let from = d.got.len();
    exec.submit(Intent::Place(close), now_ms());
    let mut out = ExecOut::default();
    exec.poll(now_ms(), &mut out);
    let [closed] = out.orders()[..] else { panic!("one update: {out:?}") };
    assert_eq!(
        (closed.cid, closed.status, closed.cum_qty, closed.avg_price),
        (close.cid, OrderStatus::Filled, Qty::lit("0.01"), bid)
    );
    let events = fill_frames(&mut d, user, from);
    assert_eq!(order_updates(&events)[1], closed);
    let mut flat = positions(&events);
    flat.sort();
    assert_eq!(flat, [(long, Qty::ZERO, Price::ZERO), (short, Qty::ZERO, Price::ZERO)]);
    let orders = sim.orders();
    assert_eq!(orders.len(), 2);
    assert_eq!(orders[1].client_order_id, "rbd-CX-1-2");
    assert!(orders[1].reduce_only, "a one-way close is reduce-only");
    assert_eq!(sim.position(btc()).amount, Qty::ZERO);
    let posts =
        sim.requests().iter().filter(|r| r.method == "POST" && r.path == "/fapi/v1/order").count();
    assert_eq!(posts, 2, "one request per intent");
    assert!(d.got.errors(0, user).is_empty(), "{}", d.got.summary(0));
}

#[test]
fn a_position_opened_in_the_app_reaches_the_stream_as_a_short_the_safety_net_can_adopt() {
    let sim = start_sim(true, None);
    let mut exec = executor(&sim);
    let mut d = Driver::new(sim.ca_file());
    let user = private_stream(&sim, &mut exec, &mut d);
    let (bid, _) = sim.book(Venue::Usdm, btc()).unwrap();

    let from = d.got.len();
    let fill = sim.manual_order(Venue::Usdm, btc(), OrderSide::Sell, Qty::lit("0.02")).unwrap();
    assert_eq!((fill.price, fill.qty), (bid, Qty::lit("0.02")), "a sell fills at the bid");
    let events = fill_frames(&mut d, user, from);

    let cid = ClientOrderId::from_wire(fill.client_order_id.as_bytes()).unwrap();
    assert!(fill.client_order_id.starts_with("web_"));
    assert_eq!(cid.tag(), None, "not robsond's order: a Safety Net matter");
    let updates = order_updates(&events);
    assert_eq!(updates.len(), 2);
    assert_eq!(
        updates[1],
        order(cid, OrderStatus::Filled, Qty::lit("0.02"), bid, updates[1].exchange_ms)
    );
    let (long, short) = (key(Venue::Usdm, btc(), Side::Long), key(Venue::Usdm, btc(), Side::Short));
    let mut stream_positions = positions(&events);
    stream_positions.sort();
    assert_eq!(stream_positions, [(long, Qty::ZERO, Price::ZERO), (short, Qty::lit("0.02"), bid)]);
    let exchange_ms: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Position { exchange_ms, .. } => Some(*exchange_ms),
            _ => None,
        })
        .collect();
    assert!(exchange_ms.iter().all(|&t| t == updates[1].exchange_ms), "one transaction time");

    let risks = exec.client_mut(ACCOUNT, Venue::Usdm).unwrap().position_risk(Some(btc())).unwrap();
    let mut rest_positions: Vec<_> = risks.snapshots().map(|s| (s.side, s.qty, s.entry)).collect();
    rest_positions.sort();
    assert_eq!(
        rest_positions,
        [(Side::Long, Qty::ZERO, Price::ZERO), (Side::Short, Qty::lit("0.02"), bid)]
    );
    let pos = sim.position(btc());
    assert_eq!((pos.amount, pos.entry), (Qty::lit("-0.02"), bid));
    let orders = sim.orders();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].source, OrderSource::Manual);
    assert!(d.got.errors(0, user).is_empty(), "{}", d.got.summary(0));
}
