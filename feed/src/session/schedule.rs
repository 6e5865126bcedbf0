//! The I/O thread's periodic REST work: the reconciliation poll that catches what the
//! user-data stream missed (DESIGN.md section 3, every 20 s by default) and the price poll that
//! keeps stops alive while a market stream is stale (section 6).
//!
//! Pure schedules: they hand out calls when due and are told when each call ended. They never
//! interpret a snapshot or a price; the engine does.

use engine::types::{MarketKey, Symbol, TriggerSource};

/// One reconciliation call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReconcileCall {
    /// `GET /fapi/v3/positionRisk`: every futures position, as snapshots.
    UsdmPositions,
    /// `GET /sapi/v1/margin/isolated/account`: balances and net base per isolated symbol.
    MarginAccount,
    /// `GET /sapi/v1/margin/myTrades` for one isolated symbol, from `from_id` (None: the most
    /// recent page). The engine derives margin entries from fills and drops a trade id it has
    /// seen, so replaying the stream's fills is harmless and a missed one is caught.
    MarginTrades { symbol: Symbol, from_id: Option<u64> },
}

/// Hands out one round of reconciliation calls per period; a round starts only when the
/// previous one has ended, so a slow exchange is never asked twice at once.
#[derive(Debug)]
pub struct Reconciler {
    every_ms: u64,
    usdm: bool,
    margin: Vec<(Symbol, Option<u64>)>,
    next_round_ms: u64,
    round: Vec<ReconcileCall>,
    in_flight: usize,
    rounds_done: u64,
    round_failed: bool,
    rounds_succeeded: u64,
}

impl Reconciler {
    /// The first round is due at once: start-up reconciles before any stop is armed.
    pub fn new(every_ms: u64, usdm: bool, margin_symbols: &[Symbol], now_ms: u64) -> Self {
        Reconciler {
            every_ms,
            usdm,
            margin: margin_symbols.iter().map(|&s| (s, None)).collect(),
            next_round_ms: now_ms,
            round: Vec::new(),
            in_flight: 0,
            rounds_done: 0,
            round_failed: false,
            rounds_succeeded: 0,
        }
    }

    pub fn add_margin_symbol(&mut self, symbol: Symbol) {
        if !self.margin.iter().any(|(s, _)| *s == symbol) {
            self.margin.push((symbol, None));
        }
    }

    /// The next call to make now, if any. Call until None; report each with `done`.
    pub fn due(&mut self, now_ms: u64) -> Option<ReconcileCall> {
        if self.round.is_empty() && self.in_flight == 0 && now_ms >= self.next_round_ms {
            if self.usdm {
                self.round.push(ReconcileCall::UsdmPositions);
            }
            if !self.margin.is_empty() {
                self.round.push(ReconcileCall::MarginAccount);
            }
            for &(symbol, last) in &self.margin {
                let from_id = last.map(|id| id.saturating_add(1));
                self.round.push(ReconcileCall::MarginTrades { symbol, from_id });
            }
            // Reverse so that `pop` hands the calls out in the order above.
            self.round.reverse();
            self.round_failed = false;
            self.next_round_ms = now_ms.saturating_add(self.every_ms);
        }
        let call = self.round.pop()?;
        self.in_flight += 1;
        Some(call)
    }

    /// A call ended (`ok` false: it failed and the next round will try again). For margin
    /// trades, `last_trade_id` is the highest id the reply held.
    pub fn done(&mut self, call: ReconcileCall, ok: bool, last_trade_id: Option<u64>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.round_failed |= !ok;
        if let (ReconcileCall::MarginTrades { symbol, .. }, true, Some(id)) =
            (call, ok, last_trade_id)
            && let Some(entry) = self.margin.iter_mut().find(|(s, _)| *s == symbol)
        {
            entry.1 = Some(entry.1.map_or(id, |seen| seen.max(id)));
        }
        if self.round.is_empty() && self.in_flight == 0 {
            self.rounds_done += 1;
            if !self.round_failed {
                self.rounds_succeeded += 1;
            }
        }
    }

    /// Rounds in which every call succeeded: start-up is reconciled after the first one (a round
    /// with a failed call says nothing about what that call would have shown).
    pub fn rounds_succeeded(&self) -> u64 {
        self.rounds_succeeded
    }

    /// Starts the next round at once (after a user-data stream gap), unless one is under way.
    pub fn hurry(&mut self, now_ms: u64) {
        self.next_round_ms = self.next_round_ms.min(now_ms);
    }

    /// Rounds completed (failed calls included): `/readyz` wants at least one after start-up.
    pub fn rounds_done(&self) -> u64 {
        self.rounds_done
    }

    pub fn next_due_ms(&self) -> u64 {
        if self.round.is_empty() { self.next_round_ms } else { 0 }
    }
}

/// Polls the REST price of every market whose stream is stale, each at most once per period.
/// The hot thread says which markets are stale (`Engine::stale_markets`) and with which trigger
/// source; a market that is fresh again simply drops out of the set.
#[derive(Debug)]
pub struct PriceFallback {
    every_ms: u64,
    stale: Vec<(MarketKey, TriggerSource, u64)>,
}

impl PriceFallback {
    pub fn new(every_ms: u64) -> Self {
        PriceFallback { every_ms, stale: Vec::new() }
    }

    /// Replaces the stale set. A market already in it keeps its schedule, so a hot thread that
    /// repeats the set every turn does not make it poll faster.
    pub fn set_stale(
        &mut self,
        markets: impl IntoIterator<Item = (MarketKey, TriggerSource)>,
        now_ms: u64,
    ) {
        let mut next = Vec::with_capacity(self.stale.len());
        for (market, source) in markets {
            let due = self
                .stale
                .iter()
                .find(|(m, s, _)| *m == market && *s == source)
                .map_or(now_ms, |&(_, _, due)| due);
            if !next.iter().any(|(m, s, _)| *m == market && *s == source) {
                next.push((market, source, due));
            }
        }
        self.stale = next;
    }

    /// A market to poll now. Call until None.
    pub fn due(&mut self, now_ms: u64) -> Option<(MarketKey, TriggerSource)> {
        let every = self.every_ms;
        let (market, source, due) = self
            .stale
            .iter_mut()
            .filter(|(_, _, due)| now_ms >= *due)
            .min_by_key(|(_, _, due)| *due)?;
        *due = now_ms.saturating_add(every);
        Some((*market, *source))
    }

    pub fn is_polling(&self) -> bool {
        !self.stale.is_empty()
    }

    pub fn next_due_ms(&self) -> Option<u64> {
        self.stale.iter().map(|&(_, _, due)| due).min()
    }
}
