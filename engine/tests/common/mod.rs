//! A small driver for engine tests: it owns an engine, a collecting sink and the clocks, and
//! speaks in Binance-shaped facts (a mark price, a position snapshot, an order fill).
#![allow(dead_code)]

use engine::events::{
    ArmParams, BalanceScope, MarginFill, OrderStatus, OrderUpdate, Origin, RejectKind,
};
use engine::types::{OrderPurpose, OrderSide};
use engine::*;

pub const BTC: &str = "BTCUSDT";
pub const ETH: &str = "ETHUSDT";

pub fn market(venue: Venue, symbol: &str) -> MarketKey {
    MarketKey { venue, symbol: Symbol::lit(symbol) }
}

pub fn key(venue: Venue, symbol: &str, side: Side) -> PositionKey {
    PositionKey { account: AccountId(0), venue, symbol: Symbol::lit(symbol), side }
}

pub fn usdm_long(symbol: &str) -> PositionKey {
    key(Venue::Usdm, symbol, Side::Long)
}

pub fn usdm_short(symbol: &str) -> PositionKey {
    key(Venue::Usdm, symbol, Side::Short)
}

pub fn px(s: &str) -> Price {
    Price::lit(s)
}

pub fn qty(s: &str) -> Qty {
    Qty::lit(s)
}

/// BTCUSDT-like futures rules: tick 0.10, step 0.001, min notional 5.
pub fn btc_rules() -> SymbolRules {
    SymbolRules {
        tick: px("0.10"),
        min_price: px("0.10"),
        step: qty("0.001"),
        min_qty: qty("0.001"),
        max_qty: qty("120"),
        min_notional: Amount::lit("5"),
    }
}

pub struct Harness {
    pub engine: Engine,
    pub out: VecSink,
    pub now: Nanos,
    pub exchange_ms: u64,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new(Config::default())
    }
}

/// An engine that holds the account lease, as the one running instance does; granted at time
/// zero into a throwaway sink, so outputs start clean.
pub fn leased_engine(config: Config) -> Engine {
    let mut engine = Engine::new(config);
    engine.on_event(Event::Lease { held: true }, Nanos(0), &mut VecSink::default());
    engine
}

impl Harness {
    pub fn new(config: Config) -> Harness {
        Harness {
            engine: leased_engine(config),
            out: VecSink::default(),
            now: Nanos::from_millis(1_000),
            exchange_ms: 1_700_000_000_000,
        }
    }

    /// Each event happens one millisecond after the previous one, on both clocks.
    pub fn send(&mut self, event: Event) -> Reply {
        self.now = self.now.saturating_add_millis(1);
        self.exchange_ms += 1;
        self.engine.on_event(event, self.now, &mut self.out)
    }

    pub fn advance_ms(&mut self, ms: u64) {
        self.now = self.now.saturating_add_millis(ms);
        self.exchange_ms += ms;
    }

    pub fn rules(&mut self, venue: Venue, symbol: &str, rules: SymbolRules) {
        self.send(Event::Rules { market: market(venue, symbol), rules });
    }

    pub fn mark(&mut self, symbol: &str, price: &str) {
        let market = market(Venue::Usdm, symbol);
        self.send(Event::Mark { market, price: px(price), origin: Origin::Stream });
    }

    pub fn trade(&mut self, venue: Venue, symbol: &str, price: &str) {
        let market = market(venue, symbol);
        self.send(Event::Trade { market, price: px(price), origin: Origin::Stream });
    }

    pub fn book(&mut self, venue: Venue, symbol: &str, bid: &str, ask: &str) {
        let market = market(venue, symbol);
        self.send(Event::Book { market, bid: px(bid), ask: px(ask), origin: Origin::Stream });
    }

    /// An exchange position snapshot, stamped with the exchange clock.
    pub fn position(&mut self, key: PositionKey, amount: &str, entry: &str) {
        let exchange_ms = self.exchange_ms + 1;
        self.send(Event::Position { key, qty: qty(amount), entry: px(entry), exchange_ms });
    }

    /// One isolated-margin fill on the user-data stream, stamped with the exchange clock.
    pub fn margin_trade(
        &mut self,
        symbol: &str,
        side: OrderSide,
        amount: &str,
        price: &str,
        trade_id: u64,
    ) {
        let fill = MarginFill {
            account: AccountId(0),
            symbol: Symbol::lit(symbol),
            side,
            qty: qty(amount),
            price: px(price),
            trade_id,
            exchange_ms: self.exchange_ms + 1,
        };
        self.send(Event::MarginTrade(fill));
    }

    pub fn balance_usdm(&mut self, amount: &str) {
        let available = Amount::lit(amount);
        self.send(Event::Balance {
            account: AccountId(0),
            scope: BalanceScope::UsdmWallet,
            available,
        });
    }

    pub fn arm(&mut self, key: PositionKey, params: ArmParams) -> PositionId {
        match self.send(Event::Arm { key, params }) {
            Reply::Armed(id) => id,
            other => panic!("arm refused: {other:?}"),
        }
    }

    pub fn order(
        &mut self,
        intent: &events::OrderIntent,
        status: OrderStatus,
        cum: &str,
        avg: &str,
    ) {
        let update = OrderUpdate {
            account: intent.key.account,
            venue: intent.key.venue,
            symbol: intent.key.symbol,
            cid: intent.cid,
            status,
            cum_qty: qty(cum),
            avg_price: px(avg),
            exchange_ms: self.exchange_ms + 1,
        };
        self.send(Event::Order(update));
    }

    pub fn fill(&mut self, intent: &events::OrderIntent, avg: &str) {
        let cum = intent.qty.to_string();
        self.order(intent, OrderStatus::Filled, &cum, avg);
    }

    pub fn reject(&mut self, intent: &events::OrderIntent, kind: RejectKind) {
        self.order(intent, OrderStatus::Rejected(kind), "0", "0");
    }

    /// Orders placed since the last `take`.
    pub fn placed(&self) -> Vec<events::OrderIntent> {
        self.out.orders().copied().collect()
    }

    pub fn closes(&self) -> Vec<events::OrderIntent> {
        self.placed().into_iter().filter(|o| o.purpose == OrderPurpose::Close).collect()
    }

    pub fn entries(&self) -> Vec<events::OrderIntent> {
        self.placed().into_iter().filter(|o| o.purpose == OrderPurpose::Entry).collect()
    }

    pub fn journal(&self) -> Vec<Journal> {
        self.out.journal().copied().collect()
    }

    /// Forgets the outputs so far: the next assertions see only what follows.
    pub fn take(&mut self) -> VecSink {
        std::mem::take(&mut self.out)
    }

    pub fn view(&self, id: PositionId) -> Option<PositionView> {
        self.engine.positions().find(|p| p.id == id)
    }

    pub fn view_of(&self, key: PositionKey) -> Option<PositionView> {
        self.engine
            .positions()
            .find(|p| p.key == key && !matches!(p.state, State::Core(CoreState::Armed)))
    }
}

// ---- Core set-ups shared by the rule and regression tests ----

/// MA 2/4 (so a handful of trades makes a signal), a capital, and optionally a technical stop.
pub fn fast_arm(capital: &str, technical_stop: Option<&str>) -> ArmParams {
    ArmParams {
        capital: Some(Amount::lit(capital)),
        technical_stop: technical_stop.map(px),
        ma_fast: Some(2),
        ma_slow: Some(4),
        ..Default::default()
    }
}

/// Four trades at `base` fill the slow window; a fifth at `cross` crosses the fast SMA over it
/// (for `cross` > `base`; below it for a short).
pub fn cross(h: &mut Harness, symbol: &str, base: &str, cross: &str) {
    for _ in 0..4 {
        h.trade(Venue::Usdm, symbol, base);
    }
    h.trade(Venue::Usdm, symbol, cross);
}

/// Arms a BTC long (with MA 2/4 from `fast_arm`) and drives trades until it crosses up at
/// 50,000.
pub fn core_long_entering(h: &mut Harness, params: ArmParams) -> (PositionId, events::OrderIntent) {
    h.rules(Venue::Usdm, BTC, btc_rules());
    h.balance_usdm("100000");
    let id = h.arm(usdm_long(BTC), params);
    for _ in 0..4 {
        h.trade(Venue::Usdm, BTC, "49900");
    }
    assert!(h.entries().is_empty(), "no signal until the slow window is full and crossed");
    // fast (49,900 + 50,000) / 2 = 49,950 > slow (3 × 49,900 + 50,000) / 4 = 49,925.
    h.trade(Venue::Usdm, BTC, "50000");
    let entries = h.entries();
    assert_eq!(entries.len(), 1);
    (id, entries[0])
}
