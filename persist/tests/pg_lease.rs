//! The lease against a real Postgres: one holder per account, and a holder whose session dies
//! (killed by an operator, or cut off by the network) reports the loss so that a standby can
//! take over.

mod pg_common;

use std::thread;
use std::time::{Duration, Instant};

use engine::AccountId;
use persist::pg::{Lease, LeaseChange};
use pg_common::*;

fn lease(db: &TestDb, name: &str, account: u16) -> Lease {
    Lease::new(db.config(&format!("{name}-{}", db.schema)), AccountId(account))
        .with_check_timeout(Duration::from_secs(2))
}

fn app(db: &TestDb, name: &str) -> String {
    format!("{name}-{}", db.schema)
}

/// Sessions (by application name) holding the advisory lock with these keys.
fn holders(db: &TestDb, keys: (i32, i32)) -> Vec<String> {
    let mut client = connect_plain(&db.url);
    let rows = client
        .query(
            "SELECT a.application_name::text FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
             WHERE l.locktype = 'advisory' AND l.granted \
               AND l.classid::int8 = ($1::int4::int8 & 4294967295) \
               AND l.objid::int8 = ($2::int4::int8 & 4294967295) AND l.objsubid = 2",
            &[&keys.0, &keys.1],
        )
        .expect("pg_locks");
    rows.iter().map(|r| r.get(0)).collect()
}

fn changed(change: Option<LeaseChange>) -> Option<bool> {
    change.map(|c| c.held())
}

#[test]
fn only_one_instance_holds_an_account() {
    let db = TestDb::empty();
    let mut a = lease(&db, "lease-a", 7);
    let mut b = lease(&db, "lease-b", 7);
    assert!(a.try_acquire().expect("a asks"));
    assert!(!b.try_acquire().expect("b asks"));
    assert_eq!(changed(b.check().expect("b checks")), None, "b stays a standby");
    assert_eq!(changed(a.check().expect("a checks")), None, "a keeps it");
    assert!(a.held() && !b.held());
    assert_eq!(holders(&db, a.keys()), [app(&db, "lease-a")]);

    // Another account is another lease.
    let mut other = lease(&db, "lease-c", 8);
    assert!(other.try_acquire().expect("c asks"));
    assert_eq!(holders(&db, a.keys()), [app(&db, "lease-a")]);

    // Stepping down hands it over.
    a.release().expect("release");
    assert!(!a.held());
    assert_eq!(changed(b.check().expect("b checks")), Some(true));
    assert_eq!(holders(&db, b.keys()), [app(&db, "lease-b")]);
    assert!(!a.try_acquire().expect("a asks again"));
}

#[test]
fn a_killed_holder_reports_the_loss_and_the_standby_takes_over() {
    let mut db = TestDb::empty();
    let mut a = lease(&db, "lease-a", 1);
    let mut b = lease(&db, "lease-b", 1);
    assert_eq!(changed(a.check().expect("a checks")), Some(true));
    assert_eq!(changed(b.check().expect("b checks")), None);

    assert_eq!(db.terminate(&app(&db, "lease-a")), 1);
    match a.check().expect("a checks") {
        Some(change @ LeaseChange::Lost(_)) => {
            assert!(change.to_string().starts_with("lease lost"))
        }
        other => panic!("expected Lost, got {other:?}"),
    }
    assert!(!a.held());
    db.wait_gone(&app(&db, "lease-a"));
    assert_eq!(changed(b.check().expect("b checks")), Some(true), "the standby takes over");
    // The old holder reconnects and finds it taken: it stays without.
    assert_eq!(changed(a.check().expect("a checks")), None);
    assert!(!a.held() && b.held());
    assert_eq!(holders(&db, b.keys()), [app(&db, "lease-b")]);
}

#[test]
fn a_holder_whose_session_died_takes_the_lease_back_if_no_one_else_did() {
    let mut db = TestDb::empty();
    let mut a = lease(&db, "lease-a", 2);
    assert!(a.try_acquire().expect("a asks"));
    db.terminate(&app(&db, "lease-a"));
    // The loss is reported first, then the re-acquisition: the engine sees both.
    assert_eq!(changed(a.check().expect("a checks")), Some(false));
    db.wait_gone(&app(&db, "lease-a"));
    assert_eq!(changed(a.check().expect("a checks")), Some(true));
    assert_eq!(holders(&db, a.keys()), [app(&db, "lease-a")]);
}

#[test]
fn a_holder_cut_off_from_postgres_reports_the_loss() {
    let db = TestDb::empty();
    let (upstream, _) = via_port(&db.url, 0);
    let proxy = Proxy::start(upstream);
    let mut config = db.config(&app(&db, "lease-a"));
    config.url = via_port(&db.url, proxy.port).1;
    let mut a = Lease::new(config, AccountId(3)).with_check_timeout(Duration::from_secs(2));
    let mut b = lease(&db, "lease-b", 3);
    assert!(a.try_acquire().expect("a asks"));
    assert!(!b.try_acquire().expect("b asks"));

    proxy.cut();
    assert_eq!(changed(a.check().expect("a checks")), Some(false));
    // While Postgres is out of reach, the holder cannot get it back; it says why.
    let err = a.check().expect_err("unreachable");
    assert!(err.connection_lost, "{err}");
    assert!(!a.held());
    // The server saw the session end and freed the lock: the standby gets it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !b.try_acquire().expect("b asks") {
        assert!(Instant::now() < deadline, "the standby never got the lease");
        thread::sleep(Duration::from_millis(10));
    }
    proxy.restore();
    assert_eq!(changed(a.check().expect("a checks")), None, "back online, but b holds it");
}
