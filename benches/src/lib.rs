//! Criterion benchmarks for robsond's hot path live in `benches/benches/`; this library only holds
//! shared fixtures for them. Nothing here ships in the daemon.

use std::hint::black_box;

use engine::events::{ArmParams, BalanceScope, OrderStatus, OrderUpdate, Origin};
use engine::types::{OrderPurpose, OrderTag};
use engine::*;

/// A sink that discards everything, but through `black_box`, so the compiler cannot drop the work
/// of building the outputs (the hot thread's real sink pushes them into rings).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopSink;

impl Sink for NoopSink {
    #[inline]
    fn intent(&mut self, intent: Intent) {
        black_box(intent);
    }

    #[inline]
    fn record(&mut self, record: Record) {
        black_box(record);
    }
}

/// A sink that counts, for a fixture to check itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountSink {
    pub intents: u64,
    pub records: u64,
    pub closes: u64,
    pub stop_moves: u64,
}

impl Sink for CountSink {
    fn intent(&mut self, _: Intent) {
        self.intents += 1;
    }

    fn record(&mut self, record: Record) {
        self.records += 1;
        match record.event {
            Journal::OrderSent { intent, .. } if intent.purpose == OrderPurpose::Close => {
                self.closes += 1
            }
            Journal::StopMoved { .. } => self.stop_moves += 1,
            _ => {}
        }
    }
}

/// BTCUSDT-like futures rules: tick 0.10, step 0.001, min notional 5.
pub fn btc_rules() -> SymbolRules {
    SymbolRules {
        tick: Price::lit("0.1"),
        min_price: Price::lit("0.1"),
        step: Qty::lit("0.001"),
        min_qty: Qty::lit("0.001"),
        max_qty: Qty::lit("120"),
        min_notional: Amount::lit("5"),
    }
}

pub fn usdm(symbol: &str) -> MarketKey {
    MarketKey { venue: Venue::Usdm, symbol: Symbol::lit(symbol) }
}

/// Symbols the "elsewhere" positions sit on; they share nothing with BTCUSDT but the engine.
pub const OTHER_SYMBOLS: usize = 50;

/// Two prices inside BTCUSDT's wake band (nothing can fire or trail there), alternated.
pub const QUIET: [&str; 2] = ["50000.0", "50010.0"];
/// At or below the tightest long stop (49,000: the target's), above every other stop and trailing
/// level on the market: it fires the target's stop and nothing else.
pub const CROSS: &str = "48999.0";

/// An engine holding `on_symbol` positions on BTCUSDT (usdm, mark-triggered) and `elsewhere`
/// positions spread over [`OTHER_SYMBOLS`] other futures symbols, ready for mark-price ticks.
///
/// BTCUSDT's positions sit on accounts `0..on_symbol` (a key is (account, venue, symbol, side)),
/// alternately long and short:
/// - account 0: the *target*, a Safety Net long from 50,000 (stop 49,000, the market's tightest
///   long stop);
/// - every fifth account (4, 9, 14, …): a Core position, armed with 1/2 MA periods, entered on a
///   trade cross and filled at 50,000, technical stop 48,000 (long) or 52,000 (short), so a
///   2,000 span and trailing levels at 52,000 / 48,000;
/// - the rest: Safety Net positions, longs from 49,500 or lower (stops at most 48,510), shorts
///   from 50,000 or higher (stops at least 51,000).
///
/// So BTCUSDT's wake band is (49,000, 51,000): a mark in it is the common, quiet tick; a mark at
/// [`CROSS`] fires the target and scans the market. [`TickFixture::restore`] puts the target back
/// (its close fills, and the exchange's snapshot, which still shows the position, hands the key
/// to a fresh Safety Net position with the same entry and stop), so every crossing tick meets the
/// same state.
pub struct TickFixture {
    pub engine: Engine,
    pub market: MarketKey,
    pub on_symbol: usize,
    pub elsewhere: usize,
    target: PositionKey,
    target_qty: Qty,
    /// Exchange time of the target's latest snapshot: each restore fills its close one
    /// millisecond later and reports the position re-opened one after that.
    target_ms: u64,
    quiet: [Price; 2],
    cross: Price,
    flip: usize,
    now: Nanos,
    sink: NoopSink,
}

impl TickFixture {
    pub fn new(on_symbol: usize, elsewhere: usize) -> TickFixture {
        assert!(on_symbol >= 1, "the target needs a place");
        assert!(on_symbol <= usize::from(u16::MAX), "one account per BTCUSDT position");
        let mut engine = Engine::new(Config::default());
        engine.on_event(Event::Lease { held: true }, Nanos(0), &mut VecSink::default());
        engine.reserve(OTHER_SYMBOLS + 1, on_symbol + elsewhere + 16);
        let market = usdm("BTCUSDT");
        let mut now = Nanos::from_millis(1_000);
        let mut exchange_ms = 1_700_000_000_000u64;
        let mut out = VecSink::default();
        let mut send = |engine: &mut Engine, event: Event, out: &mut VecSink| {
            now = now.saturating_add_millis(1);
            engine.on_event(event, now, out)
        };
        let stream = Origin::Stream;

        send(&mut engine, Event::Rules { market, rules: btc_rules() }, &mut out);
        let center = Price::lit("50000");
        send(&mut engine, Event::Mark { market, price: center, origin: stream }, &mut out);

        let target = PositionKey {
            account: AccountId(0),
            venue: Venue::Usdm,
            symbol: market.symbol,
            side: Side::Long,
        };
        let target_qty = Qty::lit("0.5");
        let tick = btc_rules().tick.units();
        let mut core_accounts = 0usize;
        let mut target_ms = 0;
        for i in 0..on_symbol {
            let account = AccountId(i as u16);
            let side = if i.is_multiple_of(2) { Side::Long } else { Side::Short };
            let key = PositionKey { account, venue: Venue::Usdm, symbol: market.symbol, side };
            if i % 5 == 4 {
                let available = Amount::lit("10000");
                let scope = BalanceScope::UsdmWallet;
                send(&mut engine, Event::Balance { account, scope, available }, &mut out);
                let technical = Price::lit(if side == Side::Long { "48000" } else { "52000" });
                let params = ArmParams {
                    technical_stop: Some(technical),
                    ma_fast: Some(1),
                    ma_slow: Some(2),
                    ..ArmParams::default()
                };
                let reply = send(&mut engine, Event::Arm { key, params }, &mut out);
                assert!(matches!(reply, Reply::Armed(_)), "arm refused: {reply:?}");
                core_accounts += 1;
                continue;
            }
            let offset = (i % 1000) as i64 * tick;
            let entry = match (i, side) {
                (0, _) => center,
                (_, Side::Long) => Price::from_units(Price::lit("49500").units() - offset),
                (_, Side::Short) => Price::from_units(center.units() + offset),
            };
            let qty = if i == 0 { target_qty } else { Qty::lit("0.01") };
            exchange_ms += 1;
            if i == 0 {
                target_ms = exchange_ms;
            }
            let event = Event::Position { key, qty, entry, exchange_ms };
            send(&mut engine, event, &mut out);
        }

        // Core entries: equal trades fill the 2-trade window, a tick up crosses the longs in, and
        // back down crosses the shorts in. Every entry fills at 50,000.
        for price in ["50000", "50000", "50000.1", "50000"] {
            let price = Price::lit(price);
            send(&mut engine, Event::Trade { market, price, origin: stream }, &mut out);
        }
        let entries: Vec<_> = out.orders().copied().collect();
        assert_eq!(entries.len(), core_accounts, "every Core arm entered");
        for intent in entries {
            exchange_ms += 1;
            let update = OrderUpdate {
                account: intent.key.account,
                venue: intent.key.venue,
                symbol: intent.key.symbol,
                cid: intent.cid,
                status: OrderStatus::Filled,
                cum_qty: intent.qty,
                avg_price: center,
                exchange_ms,
            };
            send(&mut engine, Event::Order(update), &mut out);
        }

        // Elsewhere: Safety Net positions, alternately long and short, on other symbols.
        for s in 0..OTHER_SYMBOLS {
            let symbol = Symbol::new(format!("OTHER{s:02}USDT").as_bytes()).expect("valid");
            let other = MarketKey { venue: Venue::Usdm, symbol };
            send(&mut engine, Event::Rules { market: other, rules: btc_rules() }, &mut out);
            send(
                &mut engine,
                Event::Mark { market: other, price: center, origin: stream },
                &mut out,
            );
        }
        for j in 0..elsewhere {
            let s = j % OTHER_SYMBOLS;
            let symbol = Symbol::new(format!("OTHER{s:02}USDT").as_bytes()).expect("valid");
            let account = AccountId((j / OTHER_SYMBOLS) as u16);
            let side = if (j / OTHER_SYMBOLS).is_multiple_of(2) { Side::Long } else { Side::Short };
            let key = PositionKey { account, venue: Venue::Usdm, symbol, side };
            exchange_ms += 1;
            let event = Event::Position { key, qty: Qty::lit("0.01"), entry: center, exchange_ms };
            send(&mut engine, event, &mut out);
        }
        send(&mut engine, Event::Mark { market, price: center, origin: stream }, &mut out);

        let on_btc = engine.positions().filter(|p| p.key.symbol == market.symbol).count();
        assert_eq!(on_btc, on_symbol, "positions on BTCUSDT");
        let active_core = engine
            .positions()
            .filter(|p| p.key.symbol == market.symbol && p.state == State::Core(CoreState::Active))
            .count();
        assert_eq!(active_core, core_accounts, "every Core entry is active");
        assert_eq!(engine.positions().count(), on_symbol + elsewhere, "positions in all");

        let mut fixture = TickFixture {
            engine,
            market,
            on_symbol,
            elsewhere,
            target,
            target_qty,
            target_ms,
            quiet: QUIET.map(Price::lit),
            cross: Price::lit(CROSS),
            flip: 0,
            now,
            sink: NoopSink,
        };
        fixture.self_check();
        fixture
    }

    fn next_now(&mut self) -> Nanos {
        self.now = Nanos(self.now.0 + 1_000);
        self.now
    }

    fn mark<S: Sink>(&mut self, price: Price, sink: &mut S) -> Reply {
        let now = self.next_now();
        let event = Event::Mark { market: self.market, price, origin: Origin::Stream };
        self.engine.on_event(black_box(event), now, sink)
    }

    /// A mark inside the wake band, alternating between two prices: nothing can fire or trail.
    #[inline]
    pub fn quiet_tick(&mut self) -> Reply {
        self.flip ^= 1;
        let (price, mut sink) = (self.quiet[self.flip], self.sink);
        self.mark(price, &mut sink)
    }

    /// A mark that fires the target's stop: the market's positions are all evaluated and its
    /// wake band recomputed. Call [`TickFixture::restore`] before the next one.
    #[inline]
    pub fn cross_tick(&mut self) -> Reply {
        let (price, mut sink) = (self.cross, self.sink);
        self.mark(price, &mut sink)
    }

    /// Undoes a [`TickFixture::cross_tick`]: a quiet mark, then the target's close fills and the
    /// key goes back to a fresh Safety Net position with the same entry and stop.
    pub fn restore(&mut self) {
        let mut sink = self.sink;
        self.restore_into(&mut sink);
    }

    fn restore_into<S: Sink>(&mut self, sink: &mut S) {
        let quiet = self.quiet[0];
        self.mark(quiet, sink);
        let (_, id) = self.engine.owner(&self.target).expect("the target's key is owned");
        let cid = ClientOrderId::new(OrderTag {
            modality: Modality::SafetyNet,
            purpose: OrderPurpose::Close,
            position: id,
            sequence: 1,
        });
        let update = OrderUpdate {
            account: self.target.account,
            venue: self.target.venue,
            symbol: self.target.symbol,
            cid,
            status: OrderStatus::Filled,
            cum_qty: self.target_qty,
            avg_price: self.cross,
            exchange_ms: self.target_ms + 1,
        };
        let now = self.next_now();
        self.engine.on_event(Event::Order(update), now, sink);
        // The user opens the same position again: a snapshot after the fill hands the key to a
        // fresh Safety Net position with the same entry and stop.
        self.target_ms += 2;
        let (key, qty, exchange_ms) = (self.target, self.target_qty, self.target_ms);
        let event = Event::Position { key, qty, entry: Price::lit("50000"), exchange_ms };
        let now = self.next_now();
        self.engine.on_event(event, now, sink);
    }

    /// Quiet ticks do nothing; a crossing tick sends exactly the target's close; a restore puts
    /// the target back with its stop; and the cycle repeats identically.
    fn self_check(&mut self) {
        for _ in 0..3 {
            let mut quiet = CountSink::default();
            for price in self.quiet {
                self.mark(price, &mut quiet);
            }
            assert_eq!(quiet, CountSink::default(), "a quiet tick did something");
            let mut cross = CountSink::default();
            self.mark(self.cross, &mut cross);
            // StopTriggered and OrderSent, one close intent, nothing else.
            assert_eq!(
                cross,
                CountSink { intents: 1, records: 2, closes: 1, stop_moves: 0 },
                "the crossing tick"
            );
            let mut restore = CountSink::default();
            self.restore_into(&mut restore);
            let view =
                self.engine.positions().find(|p| p.key == self.target).expect("the target is back");
            assert_eq!(view.state, State::Safety(SafetyState::Protected));
            assert_eq!(view.stop, Price::lit("49000"));
        }
        assert_eq!(self.engine.positions().count(), self.on_symbol + self.elsewhere);
    }
}

/// A realistic stream of journal records for the persistence benches: positions going through
/// their whole Core life (armed, entry sent and filled, opened, a few trailing moves, close sent
/// and filled, closed), several interleaved, numbered from `first_seq`.
pub fn record_stream(first_seq: u64, n: usize) -> Vec<Record> {
    use engine::events::{ClosedBy, Journal, OrderIntent};
    use engine::types::OrderSide;
    let life = |id: u64| -> Vec<Journal> {
        let key = PositionKey {
            account: AccountId(0),
            venue: Venue::Usdm,
            symbol: Symbol::new(if id.is_multiple_of(2) { b"BTCUSDT" } else { b"ETHUSDT" })
                .unwrap(),
            side: Side::Long,
        };
        let position = PositionId(id);
        let order = |purpose, sequence| OrderIntent {
            cid: ClientOrderId::new(OrderTag {
                modality: Modality::Core,
                purpose,
                position,
                sequence,
            }),
            key,
            order_side: if purpose == OrderPurpose::Entry {
                OrderSide::Buy
            } else {
                OrderSide::Sell
            },
            qty: Qty::from_units(1_234_000),
            purpose,
            modality: Modality::Core,
        };
        let update = |intent: &OrderIntent| OrderUpdate {
            account: key.account,
            venue: key.venue,
            symbol: key.symbol,
            cid: intent.cid,
            status: OrderStatus::Filled,
            cum_qty: intent.qty,
            avg_price: Price::from_units(9_500_000_000_000),
            exchange_ms: 1_764_000_000_000 + id,
        };
        let (entry, close) = (order(OrderPurpose::Entry, 1), order(OrderPurpose::Close, 2));
        let mut events = vec![
            Journal::Armed { id: position, key, params: ArmParams::default() },
            Journal::OrderSent { intent: entry, reason: None },
            Journal::OrderUpdated { id: position, update: update(&entry) },
            Journal::PositionOpened {
                id: position,
                key,
                qty: entry.qty,
                entry: Price::from_units(9_500_000_000_000),
                stop: Price::from_units(9_400_000_000_000),
                span: Price::from_units(100_000_000_000),
            },
        ];
        for level in 1..=4 {
            events.push(Journal::StopMoved {
                id: position,
                from: Price::from_units(9_400_000_000_000 + (level - 1) * 50_000_000_000),
                to: Price::from_units(9_400_000_000_000 + level * 50_000_000_000),
                level,
            });
        }
        events.push(Journal::OrderSent { intent: close, reason: None });
        events.push(Journal::OrderUpdated { id: position, update: update(&close) });
        events.push(Journal::PositionClosed { id: position, by: ClosedBy::OwnOrder });
        events
    };
    let per_life = life(1).len() as u64;
    (0..n as u64)
        .map(|i| {
            let seq = first_seq + i;
            let id = seq / per_life + 1;
            let event = life(id)[(seq % per_life) as usize];
            Record { seq, at: Nanos(1_764_000_000_000_000_000 + seq * 1_000), event }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::TickFixture;

    /// CI compiles the benches but does not run them: building a small fixture runs its
    /// self-check, so an engine change that breaks what the bench measures fails the suite.
    #[test]
    fn the_tick_fixture_measures_what_it_says() {
        let fixture = TickFixture::new(5, 40);
        assert_eq!(fixture.engine.positions().count(), 45);
    }
}
