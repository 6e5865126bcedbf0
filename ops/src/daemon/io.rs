//! The I/O thread: every REST call. It sends the engine's orders through the executor (which
//! settles unknown outcomes by client order id before anything else goes out for a position),
//! keeps the futures listen key alive, runs the reconciliation round and the REST price fallback
//! of stale markets, and hands every answer back to the hot thread as an engine event.
//!
//! Blocking calls are fine here: the hot thread never waits for this one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use engine::Event;
use engine::types::{AccountId, MarketKey, Symbol, TriggerSource, Venue};
use feed::rest::{CallError, EventSink, Note, OrderExecutor, RestClient};
use feed::session::{
    ListenKeyCall, ListenKeyConfig, ListenKeyLifecycle, PriceFallback, ReconcileCall, Reconciler,
};

use super::{ToHot, ToIo};

pub struct IoConfig {
    pub account: AccountId,
    pub symbols: Vec<Symbol>,
    pub margin_symbols: Vec<Symbol>,
    pub reconcile_every: Duration,
    pub fallback_every: Duration,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

struct ToHotSink<'a> {
    to_hot: &'a mut rtrb::Producer<ToHot>,
    overflow: &'a mut Vec<ToHot>,
}

impl ToHotSink<'_> {
    fn send(&mut self, message: ToHot) {
        if !self.overflow.is_empty() {
            self.overflow.push(message);
            return;
        }
        if let Err(rtrb::PushError::Full(message)) = self.to_hot.push(message) {
            self.overflow.push(message);
        }
    }
}

impl EventSink for ToHotSink<'_> {
    fn event(&mut self, event: Event) {
        self.send(ToHot::Engine(event));
    }

    fn note(&mut self, note: Note) {
        if let Note::Failed { cid, error } = &note {
            eprintln!("robsond: order {}: {error:?}", cid.as_str());
        }
    }
}

pub struct IoThread {
    executor: OrderExecutor,
    config: IoConfig,
    from_hot: rtrb::Consumer<ToIo>,
    to_hot: rtrb::Producer<ToHot>,
    overflow: Vec<ToHot>,
    /// Messages `orders_first` took off the ring ahead of their turn.
    deferred: Vec<ToIo>,
    listen_key: ListenKeyLifecycle,
    reconciler: Reconciler,
    fallback: PriceFallback,
    stop: Arc<AtomicBool>,
}

impl IoThread {
    pub fn new(
        executor: OrderExecutor,
        config: IoConfig,
        from_hot: rtrb::Consumer<ToIo>,
        to_hot: rtrb::Producer<ToHot>,
        stop: Arc<AtomicBool>,
    ) -> IoThread {
        let now = now_ms();
        IoThread {
            executor,
            listen_key: ListenKeyLifecycle::new(ListenKeyConfig::default(), now),
            reconciler: Reconciler::new(
                config.reconcile_every.as_millis() as u64,
                true,
                &config.margin_symbols,
                now,
            ),
            fallback: PriceFallback::new(config.fallback_every.as_millis() as u64),
            config,
            from_hot,
            to_hot,
            overflow: Vec::new(),
            deferred: Vec::new(),
            stop,
        }
    }

    /// Loads the symbols' filters and hands them to the engine; the first thing done.
    pub fn load_rules(&mut self) -> Result<(), CallError> {
        let account = self.config.account;
        let venues = [
            (Venue::Usdm, self.config.symbols.clone()),
            (Venue::Margin, self.config.margin_symbols.clone()),
        ];
        for (venue, symbols) in venues {
            if symbols.is_empty() {
                continue;
            }
            self.executor.load_rules(account, venue, &symbols)?;
            for symbol in symbols {
                let market = MarketKey { venue, symbol };
                if let Some(rules) = self.executor.rules(market) {
                    let rules = *rules;
                    self.sink().send(ToHot::Engine(Event::Rules { market, rules }));
                }
            }
        }
        Ok(())
    }

    fn margin_client(&mut self) -> Option<&mut RestClient> {
        self.executor.client_mut(self.config.account, Venue::Margin)
    }

    fn sink(&mut self) -> ToHotSink<'_> {
        ToHotSink { to_hot: &mut self.to_hot, overflow: &mut self.overflow }
    }

    fn client(&mut self) -> &mut RestClient {
        self.executor
            .client_mut(self.config.account, Venue::Usdm)
            .expect("the usdm client was added")
    }

    pub fn run(mut self) {
        while !self.stop.load(Relaxed) {
            let now = now_ms();
            // Messages set aside by `orders_first` come first: they are older.
            for message in std::mem::take(&mut self.deferred) {
                self.handle(message, now);
            }
            while let Ok(message) = self.from_hot.pop() {
                self.handle(message, now);
            }
            let mut sink = ToHotSink { to_hot: &mut self.to_hot, overflow: &mut self.overflow };
            let polled = self.executor.poll(now, &mut sink);
            self.keep_listen_key(now);
            self.orders_first();
            self.reconcile(now);
            self.price_fallback(now);
            // Whatever the ring could not take is retried here, in order.
            let pending = std::mem::take(&mut self.overflow);
            for message in pending {
                self.sink().send(message);
            }
            let busy = polled.requests > 0;
            if !busy {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }

    fn handle(&mut self, message: ToIo, now: u64) {
        match message {
            ToIo::Intent(intent) => self.executor.submit(intent, now),
            ToIo::Stale(markets) => self.fallback.set_stale(markets, now),
            ToIo::ListenKeyLost => self.listen_key.on_key_lost(now),
            ToIo::ReconcileNow => self.reconciler.hurry(now),
            ToIo::TokenRequest { symbol, validity_ms } => {
                self.orders_first();
                let token =
                    self.margin_client().map(|c| c.create_listen_token(symbol, Some(validity_ms)));
                let reply = match token {
                    Some(Ok(token)) => ToHot::Token { symbol, token },
                    _ => ToHot::TokenFailed(symbol),
                };
                self.sink().send(reply);
            }
        }
    }

    /// Sends whatever orders are waiting before the next periodic REST call: that call may take
    /// up to its time-out, and a close must not wait behind it.
    fn orders_first(&mut self) {
        let now = now_ms();
        let mut later = Vec::new();
        while let Ok(message) = self.from_hot.pop() {
            match message {
                ToIo::Intent(intent) => self.executor.submit(intent, now),
                other => later.push(other),
            }
        }
        let mut sink = ToHotSink { to_hot: &mut self.to_hot, overflow: &mut self.overflow };
        self.executor.poll(now, &mut sink);
        self.deferred.extend(later);
    }

    fn keep_listen_key(&mut self, now: u64) {
        let Some(call) = self.listen_key.due(now) else { return };
        let result = match call {
            ListenKeyCall::Create => self.client().create_listen_key().map(Some),
            ListenKeyCall::KeepAlive => self.client().keepalive_listen_key().map(|()| None),
        };
        match result {
            Ok(Some(key)) => {
                if self.listen_key.on_key(key, now) {
                    let path = self.listen_key.stream_path().expect("a key was just set");
                    self.sink().send(ToHot::UserStream(path));
                }
            }
            Ok(None) => self.listen_key.on_kept_alive(now),
            Err(error) if matches!(error.api(), Some(feed::rest::ApiError::ListenKeyMissing)) => {
                self.listen_key.on_key_lost(now)
            }
            Err(_) => self.listen_key.on_failure(now),
        }
    }

    fn reconcile(&mut self, now: u64) {
        while let Some(call) = self.reconciler.due(now) {
            let mut last_trade_id = None;
            let ok = match call {
                ReconcileCall::UsdmPositions => match self.client().position_risk(None) {
                    Ok(risks) => {
                        let account = self.config.account;
                        let events: Vec<Event> =
                            risks.snapshots().map(|s| s.event(account)).collect();
                        for event in events {
                            self.sink().send(ToHot::Engine(event));
                        }
                        true
                    }
                    Err(_) => false,
                },
                ReconcileCall::MarginAccount => {
                    let (account, symbols) =
                        (self.config.account, self.config.margin_symbols.clone());
                    match self.margin_client().map(|c| c.isolated_margin_account(&symbols)) {
                        Some(Ok(isolated)) => {
                            for pair in &isolated.pairs {
                                self.sink().send(ToHot::Engine(pair.balance_event(account)));
                            }
                            true
                        }
                        _ => false,
                    }
                }
                ReconcileCall::MarginTrades { symbol, from_id } => {
                    let account = self.config.account;
                    match self.margin_client().map(|c| c.margin_trades(symbol, from_id)) {
                        Some(Ok(rows)) => {
                            last_trade_id = rows.last().map(|r| r.id);
                            for row in rows {
                                self.sink().send(ToHot::Engine(row.event(account)));
                            }
                            true
                        }
                        _ => false,
                    }
                }
            };
            let (succeeded, done) =
                (self.reconciler.rounds_succeeded(), self.reconciler.rounds_done());
            self.reconciler.done(call, ok, last_trade_id);
            if succeeded == 0 && self.reconciler.rounds_succeeded() == 1 {
                self.sink().send(ToHot::Reconciled);
            } else if succeeded == 0 && self.reconciler.rounds_done() > done {
                // Nothing is protected until start-up has reconciled: retry soon, not in 20 s.
                self.reconciler.hurry(now + 1_000);
            }
            // An order must never wait behind the periodic work.
            self.orders_first();
        }
    }

    fn price_fallback(&mut self, now: u64) {
        while let Some((market, source)) = self.fallback.due(now) {
            self.orders_first();
            let venue = market.venue;
            let client = match venue {
                Venue::Usdm => self.client(),
                Venue::Margin => match self.margin_client() {
                    Some(client) => client,
                    None => continue,
                },
            };
            let event = match source {
                TriggerSource::Mark if venue == Venue::Usdm => {
                    client.mark_price(market.symbol).map(|m| m.event())
                }
                // Margin has no mark price: its last trade price stands in.
                TriggerSource::Mark => client.last_price(market.symbol).map(|l| l.event(venue)),
                TriggerSource::Book => client.book_ticker(market.symbol).map(|b| b.event(venue)),
                TriggerSource::Last => client.last_price(market.symbol).map(|l| l.event(venue)),
            };
            if let Ok(event) = event {
                self.sink().send(ToHot::Engine(event));
            }
        }
    }
}
