//! Probes name each failing check, and the hot thread's CPU comes from what the process may use.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use robsond::affinity::{Placement, allowed_cpus, pin_current, place};
use robsond::api::Probes;
use robsond::health::Health;
use robsond::metrics::Metrics;

#[test]
fn readiness_names_every_failing_check_until_all_pass() {
    let metrics = Arc::new(Metrics::default());
    let health = Health::new(&["usdm_market", "usdm_user"], Arc::clone(&metrics), true);
    health.beat(Instant::now());
    let (ready, body) = health.readiness(false);
    assert!(!ready);
    for failing in ["stream_usdm_market", "stream_usdm_user", "reconciliation", "lease"] {
        assert_eq!(body[failing]["ok"], false, "{failing} in {body}");
    }
    assert_eq!(body["journal"]["ok"], true);

    for (_, stream) in &health.streams {
        stream.connected.store(true, Relaxed);
        stream.fresh.store(true, Relaxed);
    }
    health.reconciled.store(true, Relaxed);
    // A standby (connected, reconciled, no lease) is ready to take over, not ready to protect.
    assert!(!health.readiness(false).0);
    assert!(health.readiness(true).0, "{}", health.readiness(true).1);
    health.lease.store(true, Relaxed);
    assert!(health.readiness(false).0, "{}", health.readiness(false).1);

    // A stale market stream, or Postgres far behind, takes readiness away again.
    health.stream("usdm_market").unwrap().fresh.store(false, Relaxed);
    let (ready, body) = health.readiness(false);
    assert!(!ready);
    assert_eq!(body["stream_usdm_market"]["fresh"], false);
    health.stream("usdm_market").unwrap().fresh.store(true, Relaxed);
    metrics.engine_seq.store(200_000, Relaxed);
    metrics.journal_seq.store(200_000, Relaxed);
    let (ready, body) = health.readiness(false);
    assert!(!ready);
    assert_eq!(body["postgres"]["lag_records"], 200_000);
}

#[test]
fn liveness_follows_the_hot_loops_heartbeat() {
    let mut health = Health::new(&[], Arc::new(Metrics::default()), false);
    health.heartbeat_limit = Duration::from_millis(50);
    health.beat(Instant::now());
    assert!(health.health().0);
    std::thread::sleep(Duration::from_millis(120));
    let (alive, body) = health.health();
    assert!(!alive, "a stalled hot loop is not healthy: {body}");
    assert!(body["hot_loop"]["heartbeat_age_ms"].as_u64().unwrap() >= 100);
    health.beat(Instant::now());
    assert!(health.health().0);
    health.dead_thread.store(true, Relaxed);
    assert!(!health.health().0);
}

#[test]
fn the_hot_cpu_is_an_allowed_one() {
    assert_eq!(
        place(&[0, 1, 2, 3], None).unwrap(),
        Placement { hot: Some(3), others: vec![0, 1, 2] }
    );
    assert_eq!(place(&[2, 5], Some(2)).unwrap(), Placement { hot: Some(2), others: vec![5] });
    assert_eq!(place(&[4], None).unwrap(), Placement { hot: Some(4), others: vec![4] });
    let err = place(&[0, 1], Some(7)).unwrap_err();
    assert!(err.starts_with("ROBSON_HOT_CPU"), "{err}");
    assert_eq!(place(&[], Some(1)).unwrap().hot, None);

    // On this machine: pin a thread and read its affinity back from the kernel.
    let allowed = allowed_cpus();
    assert!(!allowed.is_empty(), "Linux reports the allowed CPUs");
    let placement = place(&allowed, None).unwrap();
    let cpu = placement.hot.unwrap();
    let seen = std::thread::spawn(move || {
        assert!(pin_current(cpu));
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim().to_owned()
    })
    .join()
    .unwrap();
    assert_eq!(seen, cpu.to_string());
}
