//! Isolated-margin user data end to end over TLS: a listen token from `RestClient` (spot API),
//! `MarginUserSession` deciding what to send on the spot WebSocket API connection that
//! `WsClient` keeps, the replies parsed and fed back to it until it is ready; then an order
//! "from the app" arrives as `executionReport`s parsed into a `MarginTrade` and `Order` events
//! with the simulator's fill price and quantity. When the simulator ends every token
//! subscription, the session asks for a new token and subscribes again, and data flows again.

mod e2e_common;

use std::time::Instant;

use e2e_common::{
    ACCOUNT, Driver, Item, T, btc, fast, now_ms, order_updates, rest_client, start_sim,
};
use engine::events::{BalanceScope, MarginFill, OrderStatus};
use engine::types::OrderSide;
use engine::{ClientOrderId, Event, Qty, Venue};
use feed::rest::{Api, RestClient};
use feed::session::{Backoff, ListenTokenConfig, MarginUserSession, SessionNews};
use feed::wire::{Asset, Connection, FrameParser, Parsed};
use feed::ws::{ConnId, WsConfig, WsEvent};
use sim::{Fault, Sim};

/// The hot thread's and the I/O thread's share of margin user data, as one loop.
struct Margin {
    session: MarginUserSession,
    rest: RestClient,
    conn: ConnId,
    cursor: usize,
    news: Vec<SessionNews>,
    tokens: Vec<String>,
}

impl Margin {
    /// Token requests due, connection news and control frames to the session, its requests out.
    fn service(&mut self, d: &mut Driver) {
        let now = now_ms();
        while let Some(symbol) = self.session.due_token_request(now) {
            let token = self
                .rest
                .create_listen_token(symbol, Some(self.session.validity_ms()))
                .expect("listen token");
            self.tokens.push(token.expose().to_owned());
            self.session.on_token(symbol, token, now);
        }
        for item in &d.got.log[self.cursor..] {
            match item {
                Item::Ws(WsEvent::Connected { conn, .. }) if *conn == self.conn => {
                    self.session.on_connected(now);
                }
                Item::Ws(WsEvent::Disconnected { conn, .. }) if *conn == self.conn => {
                    self.session.on_disconnected();
                }
                Item::Frame(f) if f.conn == self.conn => {
                    if let Ok(Parsed::Control(control)) = f.parsed {
                        self.news.push(self.session.on_control(control, now));
                    }
                }
                _ => {}
            }
        }
        self.cursor = d.got.len();
        self.session.on_timer(now);
        let requests: Vec<String> = self.session.drain_outbox().collect();
        for text in requests {
            d.client.send_text(self.conn, &text, Instant::now()).expect("send");
        }
    }

    fn run_until(&mut self, d: &mut Driver, what: &str, cond: impl Fn(&Margin) -> bool) {
        let deadline = Instant::now() + T;
        let start = d.got.len();
        loop {
            self.service(d);
            if cond(self) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; news {:?}; since the wait began:\n{}",
                self.news,
                d.got.summary(start)
            );
            d.turn(std::time::Duration::from_millis(10));
        }
    }
}

fn start(sim: &Sim, d: &mut Driver) -> Margin {
    let config = ListenTokenConfig {
        validity_ms: 60_000,
        renew_before_ms: 10_000,
        retry: Backoff::new(50, 500),
    };
    let session = MarginUserSession::new(config, &[btc()], now_ms());
    let usdt = Asset::new(b"USDT").unwrap();
    let conn = d.open_api(
        &sim.urls().spot_wsapi,
        &fast(WsConfig::spot_api()),
        FrameParser::new(Connection::isolated_margin_user(ACCOUNT, btc(), usdt)),
    );
    Margin {
        session,
        rest: rest_client(sim, Api::Spot),
        conn,
        cursor: 0,
        news: Vec::new(),
        tokens: Vec::new(),
    }
}

/// Waits for one manual order's frames (up to `outboundAccountPosition`) and returns their
/// engine events.
fn order_events(d: &mut Driver, m: &mut Margin, from: usize) -> Vec<Event> {
    let conn = m.conn;
    d.run_until("the order's balance", |g| {
        let events = g.events(from, conn);
        events.iter().any(|e| matches!(e, Event::Balance { .. })).then_some(())
    });
    // Whatever else arrived meanwhile is the session's business.
    m.service(d);
    d.got.events(from, conn)
}

fn margin_trades(events: &[Event]) -> Vec<MarginFill> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::MarginTrade(f) => Some(*f),
            _ => None,
        })
        .collect()
}

#[test]
fn margin_fills_arrive_over_the_listen_token_session_and_survive_its_termination() {
    let sim = start_sim(true, None);
    assert!(sim.urls().spot_wsapi.starts_with("wss://"));
    let mut d = Driver::new(sim.ca_file());
    let mut m = start(&sim, &mut d);
    m.run_until(&mut d, "the session ready", |m| m.session.ready());
    let first_sub = m.session.subscription(btc()).expect("subscribed");
    assert_eq!(m.news, [SessionNews::Subscribed { symbol: btc(), subscription: first_sub }]);
    assert_eq!(m.tokens.len(), 1);

    // A buy in the app: auto-borrow, filled whole at the ask.
    let (bid, ask) = sim.book(Venue::Margin, btc()).unwrap();
    let from = d.got.len();
    let fill = sim.manual_order(Venue::Margin, btc(), OrderSide::Buy, Qty::lit("0.01")).unwrap();
    assert_eq!((fill.price, fill.qty), (ask, Qty::lit("0.01")));
    let events = order_events(&mut d, &mut m, from);
    let trades = margin_trades(&events);
    assert_eq!(trades.len(), 1, "{events:?}");
    let t = trades[0];
    assert_eq!(
        (t.account, t.symbol, t.side, t.qty, t.price),
        (ACCOUNT, btc(), OrderSide::Buy, Qty::lit("0.01"), ask)
    );
    let cid = ClientOrderId::from_wire(fill.client_order_id.as_bytes()).unwrap();
    let updates: Vec<_> = order_updates(&events)
        .iter()
        .map(|u| (u.venue, u.symbol, u.cid, u.status, u.cum_qty, u.avg_price))
        .collect();
    assert_eq!(
        updates,
        [
            (Venue::Margin, btc(), cid, OrderStatus::New, Qty::ZERO, engine::Price::ZERO),
            (Venue::Margin, btc(), cid, OrderStatus::Filled, Qty::lit("0.01"), ask),
        ]
    );
    // The trade comes before the order update in the same frame (the position fact first).
    let trade_at = events.iter().position(|e| matches!(e, Event::MarginTrade(_))).unwrap();
    let filled_at = events
        .iter()
        .position(|e| matches!(e, Event::Order(u) if u.status == OrderStatus::Filled))
        .unwrap();
    assert_eq!(filled_at, trade_at + 1);
    let pair = sim.isolated(btc()).unwrap();
    let balances: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Balance { scope: BalanceScope::MarginIsolated(s), available, .. } => {
                Some((*s, *available))
            }
            _ => None,
        })
        .collect();
    assert_eq!(balances, [(btc(), pair.quote_free)]);

    // Binance ends the subscription: the session loses it, fetches a new token, subscribes.
    let from = d.got.len();
    sim.fault(Fault::TerminateListenTokens);
    m.run_until(&mut d, "the session ready again", |m| m.news.len() >= 3 && m.session.ready());
    let second_sub = m.session.subscription(btc()).unwrap();
    assert_ne!(second_sub, first_sub);
    assert_eq!(
        m.news,
        [
            SessionNews::Subscribed { symbol: btc(), subscription: first_sub },
            SessionNews::Lost { symbol: btc() },
            SessionNews::Subscribed { symbol: btc(), subscription: second_sub },
        ]
    );
    assert_eq!(m.tokens.len(), 2);
    // Compared, never printed: tokens are semi-secret.
    assert!(m.tokens[0] != m.tokens[1], "a new token, not the ended one");
    let terminated = d.got.controls(from, m.conn);
    assert!(
        matches!(
            terminated[0],
            feed::wire::Control::EventStreamTerminated { subscription_id: Some(s), .. } if s == first_sub
        ),
        "{terminated:?}"
    );

    let from = d.got.len();
    let fill = sim.manual_order(Venue::Margin, btc(), OrderSide::Sell, Qty::lit("0.01")).unwrap();
    assert_eq!(fill.price, bid);
    let events = order_events(&mut d, &mut m, from);
    let trades = margin_trades(&events);
    assert_eq!(trades.len(), 1, "{events:?}");
    assert_eq!(
        (trades[0].side, trades[0].qty, trades[0].price),
        (OrderSide::Sell, Qty::lit("0.01"), bid)
    );
    assert!(trades[0].trade_id > t.trade_id, "trade ids increase per symbol");
    assert_eq!(sim.orders().len(), 2);
    assert!(d.got.errors(0, m.conn).is_empty(), "{}", d.got.summary(0));
    let reconnects =
        d.got.ws_events(0).iter().filter(|e| matches!(e, WsEvent::Disconnected { .. })).count();
    assert_eq!(reconnects, 0, "one API connection throughout");
}
