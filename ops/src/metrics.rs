//! Metrics the threads publish and `/metrics` renders in Prometheus text format.
//!
//! Counters are relaxed atomics: the hot thread increments them without locking or waiting.
//! The tick-to-intent latency histogram is recorded on the hot thread into an hdrhistogram it
//! owns; a full histogram is handed to the HTTP side over an SPSC ring and an empty one comes
//! back over another, so neither side locks and the hot thread never allocates after start-up.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;

/// Where a frame came from, for per-stream counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    UsdmMarket,
    UsdmBook,
    UsdmUser,
    SpotMarket,
    MarginUser,
}

impl Stream {
    pub const ALL: [Stream; 5] = [
        Stream::UsdmMarket,
        Stream::UsdmBook,
        Stream::UsdmUser,
        Stream::SpotMarket,
        Stream::MarginUser,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Stream::UsdmMarket => "usdm_market",
            Stream::UsdmBook => "usdm_book",
            Stream::UsdmUser => "usdm_user",
            Stream::SpotMarket => "spot_market",
            Stream::MarginUser => "margin_user",
        }
    }
}

/// How an order ended, for the orders counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderOutcome {
    Sent,
    Filled,
    Rejected,
    Unknown,
    NotFound,
    Canceled,
}

impl OrderOutcome {
    pub const ALL: [OrderOutcome; 6] = [
        OrderOutcome::Sent,
        OrderOutcome::Filled,
        OrderOutcome::Rejected,
        OrderOutcome::Unknown,
        OrderOutcome::NotFound,
        OrderOutcome::Canceled,
    ];

    pub fn label(self) -> &'static str {
        match self {
            OrderOutcome::Sent => "sent",
            OrderOutcome::Filled => "filled",
            OrderOutcome::Rejected => "rejected",
            OrderOutcome::Unknown => "unknown",
            OrderOutcome::NotFound => "not_found",
            OrderOutcome::Canceled => "canceled",
        }
    }
}

#[derive(Default)]
pub struct PerStream {
    pub messages: AtomicU64,
    pub malformed: AtomicU64,
    pub reconnects: AtomicU64,
}

/// Everything counted, shared by all threads.
#[derive(Default)]
pub struct Metrics {
    pub streams: [PerStream; 5],
    pub orders: [AtomicU64; 6],
    pub intent_ring_full: AtomicU64,
    pub intent_ring_used: AtomicU64,
    pub record_ring_used: AtomicU64,
    pub journal_seq: AtomicU64,
    pub engine_seq: AtomicU64,
    pub postgres_seq: AtomicU64,
    pub positions_core: AtomicI64,
    pub positions_safety_net: AtomicI64,
    pub hot_loop_turns: AtomicU64,
    latency: Mutex<Option<Histogram<u64>>>,
}

impl Metrics {
    pub fn stream(&self, stream: Stream) -> &PerStream {
        &self.streams[Stream::ALL.iter().position(|s| *s == stream).expect("listed")]
    }

    pub fn order(&self, outcome: OrderOutcome) {
        let i = OrderOutcome::ALL.iter().position(|o| *o == outcome).expect("listed");
        self.orders[i].fetch_add(1, Relaxed);
    }

    /// Merges a histogram the hot thread handed over (HTTP side only; the hot thread never
    /// touches this lock).
    pub fn absorb(&self, filled: &Histogram<u64>) {
        let mut total = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        match total.as_mut() {
            Some(h) => {
                // Same bounds on both sides: cannot fail.
                let _ = h.add(filled);
            }
            None => *total = Some(filled.clone()),
        }
    }

    /// Tick-to-intent latency at each quantile, in nanoseconds, and the sample count; None
    /// before the first sample reached this side.
    pub fn latency_quantiles(&self, quantiles: &[f64]) -> Option<(Vec<u64>, u64)> {
        let latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let h = latency.as_ref()?;
        Some((quantiles.iter().map(|&q| h.value_at_quantile(q)).collect(), h.len()))
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let header = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        let per_stream = |out: &mut String,
                          name: &str,
                          help: &str,
                          pick: fn(&PerStream) -> &AtomicU64| {
            header(out, name, "counter", help);
            for (s, c) in Stream::ALL.iter().zip(&self.streams) {
                let _ =
                    writeln!(out, "{name}{{stream=\"{}\"}} {}", s.label(), pick(c).load(Relaxed));
            }
        };
        per_stream(&mut out, "robsond_stream_messages_total", "Frames received per stream.", |c| {
            &c.messages
        });
        per_stream(
            &mut out,
            "robsond_stream_malformed_total",
            "Frames refused by the parser (counted and skipped).",
            |c| &c.malformed,
        );
        per_stream(&mut out, "robsond_stream_reconnects_total", "Reconnections per stream.", |c| {
            &c.reconnects
        });
        header(&mut out, "robsond_orders_total", "counter", "Orders by outcome.");
        for (o, c) in OrderOutcome::ALL.iter().zip(&self.orders) {
            let _ = writeln!(
                out,
                "robsond_orders_total{{outcome=\"{}\"}} {}",
                o.label(),
                c.load(Relaxed)
            );
        }
        let gauges: [(&str, &str, i128); 8] = [
            (
                "robsond_intent_ring_used",
                "Intents waiting for the I/O thread.",
                self.intent_ring_used.load(Relaxed).into(),
            ),
            (
                "robsond_intent_ring_full_total",
                "Times the intent ring was full (the close was kept and retried).",
                self.intent_ring_full.load(Relaxed).into(),
            ),
            (
                "robsond_record_ring_used",
                "Records waiting for the cold thread.",
                self.record_ring_used.load(Relaxed).into(),
            ),
            (
                "robsond_journal_lag_records",
                "Engine records not yet durable in the journal.",
                lag(&self.engine_seq, &self.journal_seq),
            ),
            (
                "robsond_postgres_lag_records",
                "Engine records not yet in Postgres.",
                lag(&self.engine_seq, &self.postgres_seq),
            ),
            (
                "robsond_positions{modality=\"core\"}",
                "Open positions by modality.",
                self.positions_core.load(Relaxed).into(),
            ),
            (
                "robsond_positions{modality=\"safety_net\"}",
                "Open positions by modality.",
                self.positions_safety_net.load(Relaxed).into(),
            ),
            (
                "robsond_hot_loop_turns_total",
                "Turns of the hot loop.",
                self.hot_loop_turns.load(Relaxed).into(),
            ),
        ];
        for (name, help, value) in gauges {
            let base = name.split('{').next().unwrap_or(name);
            if !out.contains(&format!("# TYPE {base} ")) {
                let kind = if base.ends_with("_total") { "counter" } else { "gauge" };
                header(&mut out, base, kind, help);
            }
            let _ = writeln!(out, "{name} {value}");
        }
        let latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        header(
            &mut out,
            "robsond_tick_to_intent_seconds",
            "summary",
            "From a frame's arrival to the order intent it caused.",
        );
        if let Some(h) = latency.as_ref() {
            for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
                let ns = h.value_at_quantile(q);
                let _ = writeln!(
                    out,
                    "robsond_tick_to_intent_seconds{{quantile=\"{q}\"}} {:.9}",
                    ns as f64 / 1e9
                );
            }
            let sum: f64 = h
                .iter_recorded()
                .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
                .sum();
            let _ = writeln!(out, "robsond_tick_to_intent_seconds_sum {:.9}", sum / 1e9);
            let _ = writeln!(out, "robsond_tick_to_intent_seconds_count {}", h.len());
        } else {
            let _ = writeln!(out, "robsond_tick_to_intent_seconds_count 0");
        }
        out
    }
}

fn lag(ahead: &AtomicU64, behind: &AtomicU64) -> i128 {
    i128::from(ahead.load(Relaxed)) - i128::from(behind.load(Relaxed))
}

/// A latency histogram bounded for tick-to-intent times: 1 ns to 10 s, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("static, valid bounds")
}

/// The hot thread's end: records, and trades a full histogram for an empty one now and then.
pub struct LatencyRecorder {
    current: Box<Histogram<u64>>,
    full: rtrb::Producer<Box<Histogram<u64>>>,
    empty: rtrb::Consumer<Box<Histogram<u64>>>,
}

/// The HTTP side's end: takes full histograms, merges them into `Metrics`, returns them empty.
pub struct LatencyCollector {
    full: rtrb::Consumer<Box<Histogram<u64>>>,
    empty: rtrb::Producer<Box<Histogram<u64>>>,
}

/// A recorder/collector pair with `spares` preallocated histograms in circulation.
pub fn latency_channel(spares: usize) -> (LatencyRecorder, LatencyCollector) {
    let (full_tx, full_rx) = rtrb::RingBuffer::new(spares + 1);
    let (mut empty_tx, empty_rx) = rtrb::RingBuffer::new(spares + 1);
    for _ in 0..spares {
        let _ = empty_tx.push(Box::new(latency_histogram()));
    }
    (
        LatencyRecorder { current: Box::new(latency_histogram()), full: full_tx, empty: empty_rx },
        LatencyCollector { full: full_rx, empty: empty_tx },
    )
}

impl LatencyRecorder {
    /// Records one latency; values beyond the bounds are clamped, never dropped.
    pub fn record(&mut self, nanos: u64) {
        self.current.saturating_record(nanos.max(1));
    }

    /// Hands the current histogram over if an empty one is available; otherwise keeps recording
    /// into the same one (the HTTP side is behind, nothing is lost).
    pub fn publish(&mut self) {
        if self.current.is_empty() || self.full.is_full() {
            return;
        }
        if let Ok(fresh) = self.empty.pop() {
            let full = std::mem::replace(&mut self.current, fresh);
            // Checked above: there is room.
            let _ = self.full.push(full);
        }
    }
}

impl LatencyCollector {
    pub fn collect(&mut self, metrics: &Arc<Metrics>) {
        while let Ok(mut h) = self.full.pop() {
            metrics.absorb(&h);
            h.reset();
            let _ = self.empty.push(h);
        }
    }
}
