//! One market (venue × symbol): its price, book, mark and the market-stream payloads it emits on
//! each step, in Binance's documented shapes (fixtures `futures_*`, `spot_*`).
//!
//! Owns prices and stream payloads only: accounts, orders and sockets live elsewhere. The book
//! has no depth: the best bid and ask sit `half_spread_ticks` either side of the price, and a
//! market order of any size fills there.

use std::collections::{BTreeMap, VecDeque};

use engine::types::{Symbol, Venue};

use crate::config::VenueRules;
use crate::json::{Obj, on_grid};

/// Every kline interval Binance accepts (spot also has `1s`).
pub(crate) const INTERVALS: [&str; 16] = [
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w",
    "1M",
];

/// A kline interval Binance accepts, in milliseconds.
pub(crate) fn interval_ms(interval: &str) -> Option<u64> {
    const MIN: u64 = 60_000;
    Some(match interval {
        "1s" => 1_000,
        "1m" => MIN,
        "3m" => 3 * MIN,
        "5m" => 5 * MIN,
        "15m" => 15 * MIN,
        "30m" => 30 * MIN,
        "1h" => 60 * MIN,
        "2h" => 120 * MIN,
        "4h" => 240 * MIN,
        "6h" => 360 * MIN,
        "8h" => 480 * MIN,
        "12h" => 720 * MIN,
        "1d" => 1_440 * MIN,
        "3d" => 3 * 1_440 * MIN,
        "1w" => 7 * 1_440 * MIN,
        "1M" => 30 * 1_440 * MIN,
        _ => return None,
    })
}

struct Kline {
    start_ms: u64,
    first_trade: u64,
    last_trade: u64,
    open: i64,
    high: i64,
    low: i64,
    close: i64,
    volume: i64,
    quote_volume: i64,
    trades: u64,
}

pub(crate) struct Market {
    pub(crate) venue: Venue,
    pub(crate) symbol: Symbol,
    pub(crate) rules: VenueRules,
    pub(crate) base: String,
    pub(crate) quote: String,
    /// Last trade price, on the tick grid.
    pub(crate) last: i64,
    /// Futures mark price: `last` some steps ago (see `SimConfig::mark_lag_steps`).
    pub(crate) mark: i64,
    history: VecDeque<i64>,
    pub(crate) update_id: u64,
    agg_id: u64,
    trade_id: u64,
    klines: BTreeMap<String, Kline>,
}

impl Market {
    pub(crate) fn new(
        venue: Venue,
        symbol: Symbol,
        rules: VenueRules,
        base: &str,
        quote: &str,
        price: i64,
        seed_ids: u64,
    ) -> Market {
        let mut market = Market {
            venue,
            symbol,
            rules,
            base: base.to_owned(),
            quote: quote.to_owned(),
            last: 0,
            mark: 0,
            history: VecDeque::new(),
            update_id: 400_900_000_000 + seed_ids * 1_000_000,
            agg_id: 5_933_014_000 + seed_ids * 1_000_000,
            trade_id: 3_570_680_000 + seed_ids * 1_000_000,
            klines: BTreeMap::new(),
        };
        market.set_last(price, 0);
        market.history.push_back(market.last);
        market
    }

    fn tick(&self) -> i64 {
        self.rules.tick.units().max(1)
    }

    /// Rounds to the nearest tick, never below one tick.
    pub(crate) fn round_price(&self, price: i64) -> i64 {
        let tick = self.tick();
        let k = (i128::from(price) + i128::from(tick) / 2).div_euclid(i128::from(tick));
        (k.max(1) * i128::from(tick)) as i64
    }

    /// A new trade price. Without a lag the mark follows at once; with one, only steps move it.
    pub(crate) fn set_last(&mut self, price: i64, mark_lag: u32) {
        self.last = self.round_price(price);
        if mark_lag == 0 {
            self.mark = self.last;
        }
    }

    /// A step published `last`: the mark becomes the price published `mark_lag` steps ago.
    pub(crate) fn publish_step(&mut self, mark_lag: u32) {
        if mark_lag == 0 {
            self.mark = self.last;
            return;
        }
        self.history.push_back(self.last);
        while self.history.len() > mark_lag as usize + 1 {
            self.history.pop_front();
        }
        self.mark = *self.history.front().unwrap_or(&self.last);
    }

    pub(crate) fn bid(&self, half_spread_ticks: u32) -> i64 {
        (self.last - i64::from(half_spread_ticks) * self.tick()).max(self.tick())
    }

    pub(crate) fn ask(&self, half_spread_ticks: u32) -> i64 {
        self.last + i64::from(half_spread_ticks) * self.tick()
    }

    /// Quantity shown at the best bid and ask: the book has no depth, so this is decorative.
    pub(crate) fn book_qty(&self) -> i64 {
        self.rules.min_qty.units().max(self.rules.step.units()).max(1) * 1000
    }

    pub(crate) fn price_text(&self, units: i64) -> String {
        on_grid(units, self.tick())
    }

    pub(crate) fn qty_text(&self, units: i64) -> String {
        on_grid(units, self.rules.step.units().max(1))
    }

    pub(crate) fn next_trade_id(&mut self) -> u64 {
        self.trade_id += 1;
        self.trade_id
    }

    /// Lower-case stream prefix: `btcusdt`.
    pub(crate) fn stream_symbol(&self) -> String {
        self.symbol.as_str().to_ascii_lowercase()
    }

    /// `<symbol>@bookTicker`: futures with `e`, `E`, `T`; spot without (BINANCE.md §1.1).
    pub(crate) fn book_ticker(&mut self, now_ms: u64, half_spread: u32) -> String {
        self.update_id += 1;
        let qty = self.qty_text(self.book_qty());
        let (bid, ask) =
            (self.price_text(self.bid(half_spread)), self.price_text(self.ask(half_spread)));
        let obj = match self.venue {
            Venue::Usdm => Obj::new().str("e", "bookTicker").uint("u", self.update_id),
            Venue::Margin => Obj::new().uint("u", self.update_id),
        };
        let obj = match self.venue {
            Venue::Usdm => obj.uint("E", now_ms).uint("T", now_ms.saturating_sub(1)),
            Venue::Margin => obj,
        };
        obj.str("s", self.symbol.as_str())
            .str("b", &bid)
            .str("B", &qty)
            .str("a", &ask)
            .str("A", &qty)
            .end()
    }

    /// The quantity of the simulated trade of this step: a few lots, varying so that a tape
    /// does not look frozen.
    fn tape_qty(&self) -> i64 {
        let lot = self.rules.min_qty.units().max(self.rules.step.units()).max(1);
        lot * (1 + (self.agg_id % 7) as i64)
    }

    /// `<symbol>@aggTrade` and, on spot, `<symbol>@trade`, for one trade at `last`. The buyer is
    /// the maker when the price fell (a seller hit the bid).
    pub(crate) fn trades(&mut self, now_ms: u64, fell: bool) -> (String, Option<String>) {
        self.agg_id += 1;
        let trade_id = self.next_trade_id();
        let qty = self.tape_qty();
        let (p, q) = (self.price_text(self.last), self.qty_text(qty));
        let agg = Obj::new()
            .str("e", "aggTrade")
            .uint("E", now_ms)
            .str("s", self.symbol.as_str())
            .uint("a", self.agg_id)
            .str("p", &p)
            .str("q", &q);
        let agg = match self.venue {
            Venue::Usdm => agg
                .str("nq", &q)
                .uint("f", trade_id)
                .uint("l", trade_id)
                .uint("T", now_ms)
                .bool("m", fell)
                .end(),
            Venue::Margin => agg
                .uint("f", trade_id)
                .uint("l", trade_id)
                .uint("T", now_ms)
                .bool("m", fell)
                .bool("M", true)
                .end(),
        };
        let trade = (self.venue == Venue::Margin).then(|| {
            Obj::new()
                .str("e", "trade")
                .uint("E", now_ms)
                .str("s", self.symbol.as_str())
                .uint("t", trade_id)
                .str("p", &p)
                .str("q", &q)
                .uint("T", now_ms)
                .bool("m", fell)
                .bool("M", true)
                .end()
        });
        self.record_kline_trade(now_ms, trade_id, qty);
        (agg, trade)
    }

    /// `markPriceUpdate` (the same payload for `@markPrice` and `@markPrice@1s`). The index is
    /// the trade price, the funding rate a constant 0.01 %, the next funding the next 8 h mark.
    pub(crate) fn mark_price(&self, now_ms: u64) -> String {
        const EIGHT_HOURS: u64 = 8 * 3_600_000;
        let mark = crate::json::dec8(self.mark);
        Obj::new()
            .str("e", "markPriceUpdate")
            .uint("E", now_ms)
            .str("s", self.symbol.as_str())
            .str("p", &mark)
            .str("ap", &mark)
            .str("i", &crate::json::dec8(self.last))
            .str("P", &mark)
            .str("r", "0.00010000")
            .uint("T", (now_ms / EIGHT_HOURS + 1) * EIGHT_HOURS)
            .end()
    }

    fn record_kline_trade(&mut self, now_ms: u64, trade_id: u64, qty: i64) {
        let price = self.last;
        let quote = crate::json::mul(qty, price);
        for (interval, k) in self.klines.iter_mut() {
            let Some(len) = interval_ms(interval) else { continue };
            let start = now_ms - now_ms % len;
            if start != k.start_ms {
                *k = Kline::opening(start, trade_id, price);
            }
            k.high = k.high.max(price);
            k.low = k.low.min(price);
            k.close = price;
            k.volume += qty;
            k.quote_volume += quote;
            k.trades += 1;
            k.last_trade = trade_id;
        }
    }

    /// `<symbol>@kline_<interval>`: starts tracking the interval on first use.
    pub(crate) fn kline(&mut self, now_ms: u64, interval: &str) -> Option<String> {
        let len = interval_ms(interval)?;
        let start = now_ms - now_ms % len;
        let last = self.last;
        let k = self
            .klines
            .entry(interval.to_owned())
            .or_insert_with(|| Kline::opening(start, 0, last));
        let p = |u: i64| on_grid(u, self.rules.tick.units().max(1));
        let step = self.rules.step.units().max(1);
        let q = |u: i64| on_grid(u, step);
        let body = Obj::new()
            .uint("t", k.start_ms)
            .uint("T", k.start_ms + len - 1)
            .str("s", self.symbol.as_str())
            .str("i", interval)
            .uint("f", k.first_trade)
            .uint("L", k.last_trade)
            .str("o", &p(k.open))
            .str("c", &p(k.close))
            .str("h", &p(k.high))
            .str("l", &p(k.low))
            .str("v", &q(k.volume))
            .uint("n", k.trades)
            .bool("x", now_ms + 1 >= k.start_ms + len)
            .str("q", &crate::json::dec8(k.quote_volume))
            .str("V", &q(k.volume / 2))
            .str("Q", &crate::json::dec8(k.quote_volume / 2))
            .str("B", "0")
            .end();
        Some(
            Obj::new()
                .str("e", "kline")
                .uint("E", now_ms)
                .str("s", self.symbol.as_str())
                .raw("k", &body)
                .end(),
        )
    }
}

impl Kline {
    fn opening(start_ms: u64, trade_id: u64, price: i64) -> Kline {
        Kline {
            start_ms,
            first_trade: trade_id,
            last_trade: trade_id,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: 0,
            quote_volume: 0,
            trades: 0,
        }
    }
}

/// `price × bps / 10 000`, the random walk's move, in 1e-8 units.
pub(crate) fn bps_of(price: i64, bps: i64) -> i64 {
    (i128::from(price) * i128::from(bps) / 10_000) as i64
}
