//! Metrics: the Prometheus text is well-formed and carries what the threads counted, and the hot
//! thread's side of the latency histogram neither allocates nor loses a sample.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use robsond::metrics::{Metrics, OrderOutcome, Stream, latency_channel};

#[global_allocator]
static GLOBAL: testkit::CountingAlloc = testkit::CountingAlloc;

#[test]
fn recording_and_publishing_latency_allocates_nothing_and_loses_nothing() {
    let metrics = Arc::new(Metrics::default());
    let (mut recorder, mut collector) = latency_channel(2);
    testkit::set_armed(true);
    for round in 0..50u64 {
        for i in 0..1_000u64 {
            recorder.record(1_000 + i + round);
        }
        recorder.publish();
        testkit::set_armed(false);
        collector.collect(&metrics);
        testkit::set_armed(true);
    }
    testkit::set_armed(false);
    assert_eq!(testkit::armed_allocations(), 0, "the hot side allocated");
    recorder.publish();
    collector.collect(&metrics);
    let text = metrics.render();
    let count = text
        .lines()
        .find_map(|l| l.strip_prefix("robsond_tick_to_intent_seconds_count "))
        .expect("a count line");
    assert_eq!(count, "50000", "every sample arrives once");
    let p50: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("robsond_tick_to_intent_seconds{quantile=\"0.5\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!((1.4e-6..1.6e-6).contains(&p50), "median about 1.5 µs: {p50}");
}

#[test]
fn the_exposition_is_well_formed_and_counts_what_was_counted() {
    let metrics = Metrics::default();
    metrics.stream(Stream::UsdmMarket).messages.fetch_add(7, Relaxed);
    metrics.stream(Stream::MarginUser).malformed.fetch_add(2, Relaxed);
    metrics.order(OrderOutcome::Filled);
    metrics.order(OrderOutcome::Filled);
    metrics.engine_seq.store(100, Relaxed);
    metrics.journal_seq.store(97, Relaxed);
    metrics.positions_safety_net.store(3, Relaxed);
    let text = metrics.render();
    for line in [
        "robsond_stream_messages_total{stream=\"usdm_market\"} 7",
        "robsond_stream_malformed_total{stream=\"margin_user\"} 2",
        "robsond_orders_total{outcome=\"filled\"} 2",
        "robsond_journal_lag_records 3",
        "robsond_postgres_lag_records 100",
        "robsond_positions{modality=\"safety_net\"} 3",
        "robsond_tick_to_intent_seconds_count 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    // Every sample line belongs to a family declared once, before it.
    let mut declared = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(!declared.contains(&name.to_owned()), "{name} declared twice");
            declared.push(name.to_owned());
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name.trim_end_matches("_sum").trim_end_matches("_count");
            assert!(declared.iter().any(|d| d == name || d == family), "undeclared {name}");
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad value in {line:?}");
        }
    }
}
