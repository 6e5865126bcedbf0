//! What `/healthz` and `/readyz` report, published by the threads through atomics.
//!
//! Liveness is about the process: the hot loop's heartbeat is fresh and no thread has died.
//! Readiness is about protection: every stream connected and fresh, the start-up
//! reconciliation done, the lease held, and persistence within its lag limit. Each check is
//! named in the JSON body so an operator sees which one failed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::api::Probes;
use crate::metrics::{LatencyCollector, Metrics};

/// One stream's state as the hot thread last saw it.
#[derive(Default)]
pub struct StreamHealth {
    pub connected: AtomicBool,
    pub fresh: AtomicBool,
}

pub struct Health {
    started: Instant,
    /// Milliseconds since `started` at the hot loop's last turn.
    pub heartbeat_ms: AtomicU64,
    pub heartbeat_limit: Duration,
    pub streams: Vec<(&'static str, StreamHealth)>,
    pub reconciled: AtomicBool,
    pub lease: AtomicBool,
    pub dead_thread: AtomicBool,
    /// SIGTERM received: the lease must not be (re)granted any more.
    pub draining: AtomicBool,
    /// Engine records not yet durable in the journal before readiness fails.
    pub journal_lag_limit: u64,
    /// Engine records not yet in Postgres before readiness fails (None: no Postgres).
    pub postgres_lag_limit: Option<u64>,
    pub metrics: Arc<Metrics>,
    /// The HTTP side's end of the hot thread's latency histograms, drained at each scrape.
    pub latency: Mutex<Option<LatencyCollector>>,
    /// The cold thread's journal and Postgres progress, once it runs.
    pub cold: std::sync::OnceLock<Arc<persist::cold::ColdStatus>>,
}

impl Health {
    pub fn new(streams: &[&'static str], metrics: Arc<Metrics>, postgres: bool) -> Health {
        Health {
            started: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
            heartbeat_limit: Duration::from_secs(2),
            streams: streams.iter().map(|&s| (s, StreamHealth::default())).collect(),
            reconciled: AtomicBool::new(false),
            lease: AtomicBool::new(false),
            dead_thread: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            journal_lag_limit: 10_000,
            postgres_lag_limit: postgres.then_some(100_000),
            metrics,
            latency: Mutex::new(None),
            cold: std::sync::OnceLock::new(),
        }
    }

    /// For the hot loop, every turn: a relaxed store, no syscall beyond reading the clock.
    pub fn beat(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.started).as_millis() as u64;
        self.heartbeat_ms.store(ms, Relaxed);
    }

    pub fn stream(&self, name: &str) -> Option<&StreamHealth> {
        self.streams.iter().find(|(n, _)| *n == name).map(|(_, s)| s)
    }

    /// Copies the cold thread's progress into the metrics the probes read.
    fn sync_cold(&self) {
        if let Some(cold) = self.cold.get() {
            self.metrics.journal_seq.store(cold.durable_seq(), Relaxed);
            // Without Postgres there is no lag to show.
            let confirmed =
                if cold.postgres_configured() { cold.pg_confirmed() } else { cold.durable_seq() };
            self.metrics.postgres_seq.store(confirmed, Relaxed);
        }
    }

    fn heartbeat_age(&self) -> Duration {
        let now = self.started.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.heartbeat_ms.load(Relaxed)))
    }
}

impl Probes for Health {
    fn health(&self) -> (bool, Value) {
        let age = self.heartbeat_age();
        let beating = age <= self.heartbeat_limit;
        let cold_dead = self.cold.get().is_some_and(|c| c.is_dead() || c.follower_dead());
        let threads = !self.dead_thread.load(Relaxed) && !cold_dead;
        let body = json!({
            "hot_loop": { "ok": beating, "heartbeat_age_ms": age.as_millis() as u64 },
            "threads": { "ok": threads },
        });
        (beating && threads, body)
    }

    fn readiness(&self, standby_ok: bool) -> (bool, Value) {
        self.sync_cold();
        let mut checks = Map::new();
        let mut ready = true;
        let mut check = |name: &str, ok: bool, detail: Value| {
            ready &= ok;
            let mut entry = json!({ "ok": ok });
            if let (Some(map), Value::Object(extra)) = (entry.as_object_mut(), detail) {
                map.extend(extra);
            }
            checks.insert(name.to_owned(), entry);
        };
        for (name, s) in &self.streams {
            let (connected, fresh) = (s.connected.load(Relaxed), s.fresh.load(Relaxed));
            check(
                &format!("stream_{name}"),
                connected && fresh,
                json!({ "connected": connected, "fresh": fresh }),
            );
        }
        check("reconciliation", self.reconciled.load(Relaxed), json!({}));
        let lease = self.lease.load(Relaxed);
        check("lease", lease || standby_ok, json!({ "held": lease }));
        let engine = self.metrics.engine_seq.load(Relaxed);
        let journal_lag = engine.saturating_sub(self.metrics.journal_seq.load(Relaxed));
        check(
            "journal",
            journal_lag <= self.journal_lag_limit,
            json!({ "lag_records": journal_lag }),
        );
        if let Some(limit) = self.postgres_lag_limit {
            let lag = engine.saturating_sub(self.metrics.postgres_seq.load(Relaxed));
            check("postgres", lag <= limit, json!({ "lag_records": lag }));
        }
        let (alive, _) = self.health();
        check("alive", alive, json!({}));
        (ready, Value::Object(checks))
    }

    fn metrics(&self) -> String {
        self.sync_cold();
        if let Some(collector) = self.latency.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            collector.collect(&self.metrics);
        }
        self.metrics.render()
    }
}
