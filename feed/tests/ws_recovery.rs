//! Losing and replacing connections: a dead peer found by our pings, a dropped connection
//! reconnected with backoff and its streams restored, staleness and freshness, make-before-break
//! rotation with no gap, retargeting to a new listen key, and the WebSocket API's reconnect and
//! rotation hand-over.

mod ws_common;

use std::time::{Duration, Instant};

use feed::ws::{ConnId, Reason, Rotation, WsConfig, WsEvent};
use ws_common::*;

const GUARD: Duration = Duration::from_secs(10);

/// The server connection a data frame came from (its `E` is `conn * 1_000_000 + seq`); None
/// for a reply.
fn server_conn_of(frame: &str) -> Option<u64> {
    let at = frame.find(r#""E": "#)? + 5;
    let digits: String = frame[at..].chars().take_while(|c| c.is_ascii_digit()).collect();
    Some(digits.parse::<u64>().unwrap() / 1_000_000)
}

fn position(log: &[Seen], seen: &Seen) -> usize {
    log.iter().position(|s| s == seen).unwrap_or_else(|| panic!("{seen:?} not in {log:?}"))
}

#[test]
fn a_silent_peer_is_found_dead_by_our_pings_and_replaced() {
    let server = Server::plain(Behaviour::default());
    let mut h = Harness::new(None);
    let url = format!("ws://127.0.0.1:{}/private/ws/key", server.port());
    let cfg = WsConfig {
        ping_every: Duration::from_millis(40),
        dead_after: Duration::from_millis(200),
        ..fast_config()
    };
    let conn = h.client.open(&url, &cfg, Instant::now()).unwrap();
    h.run_until("connected", GUARD, connected(conn));
    // Alive while the server answers: our pings get pongs.
    h.run_for(Duration::from_millis(300));
    assert_eq!(h.sink.events().len(), 1, "{:?}", h.sink.events());
    server.command(1, Command::Silence);
    h.run_until("reconnected", GUARD, connected_times(conn, 2));
    let events = h.sink.events();
    assert!(
        matches!(events[1], WsEvent::Disconnected { conn: c, reason: Reason::DeadPeer, .. } if c == conn),
        "{events:?}"
    );
    assert!(matches!(events[2], WsEvent::Connected { gap: Some(_), .. }));
    server.wait_accepted(2);
    assert_eq!(server.accepted().len(), 2);
    // The silent connection got our pings and never answered; TCP stayed open until we left.
    let log = server.log();
    assert!(log.iter().any(|s| matches!(s, Seen::Ping { conn: 1, .. })));
}

#[test]
fn a_dropped_connection_is_restored_with_backoff_and_its_streams() {
    let server =
        Server::plain(Behaviour { tick: Some(Duration::from_millis(10)), ..Default::default() });
    let mut h = Harness::new(None);
    let base = format!("ws://127.0.0.1:{}/market", server.port());
    let cfg = fast_config();
    let conn = h.client.open_streams(&base, &["btcusdt@markPrice"], &cfg, Instant::now()).unwrap();
    h.run_until("connected", GUARD, connected(conn));
    let id = h.client.subscribe(conn, &["ethusdt@markPrice@1s"], Instant::now()).unwrap().unwrap();
    h.run_until("ack", GUARD, |r| r.count(|e| matches!(e, WsEvent::RequestAcked { .. })) == 1);
    assert!(h.sink.events().contains(&WsEvent::RequestAcked {
        conn,
        id,
        method: feed::ws::Method::Subscribe
    }));
    // The next two attempts are dropped by the server before the upgrade.
    server.set_behaviour(|b| b.drop_next = 2);
    let dropped_at = Instant::now();
    server.command(1, Command::Drop);
    h.run_until("reconnected", GUARD, connected_times(conn, 2));
    let elapsed = dropped_at.elapsed();

    let events = h.sink.events();
    let lost = events.iter().position(|e| matches!(e, WsEvent::Disconnected { .. })).unwrap();
    let WsEvent::Disconnected { reason, retry_in: Some(first_wait), .. } = events[lost] else {
        panic!("{:?}", events[lost]);
    };
    assert!(matches!(reason, Reason::Eof | Reason::Io(_)), "{reason:?}");
    assert!(first_wait <= feed::ws::backoff_cap(cfg.backoff_min, cfg.backoff_max, 0));
    let failures: Vec<_> = events[lost + 1..]
        .iter()
        .take_while(|e| matches!(e, WsEvent::ConnectFailed { .. }))
        .collect();
    assert_eq!(failures.len(), 2, "{events:?}");
    for (i, failure) in failures.iter().enumerate() {
        let WsEvent::ConnectFailed { retry_in, .. } = failure else { unreachable!() };
        let cap = feed::ws::backoff_cap(cfg.backoff_min, cfg.backoff_max, i as u32 + 1);
        assert!(*retry_in <= cap, "attempt {}: {retry_in:?} > {cap:?}", i + 1);
    }
    let WsEvent::Connected { gap: Some(gap), .. } = events[lost + 3] else {
        panic!("{events:?}");
    };
    assert!(gap > Duration::ZERO && gap <= elapsed, "gap {gap:?}, elapsed {elapsed:?}");
    // The second connection carries both streams in its URL: nothing to subscribe again.
    server.wait_accepted(2);
    let accepted = server.accepted();
    assert_eq!(accepted.len(), 2);
    assert_eq!(
        streams_in_path(&accepted[1].1),
        vec!["btcusdt@markPrice".to_string(), "ethusdt@markPrice@1s".to_string()]
    );
    assert!(accepted[1].1.starts_with("/market/stream?streams="));
    h.run_until("ETH from connection 2", GUARD, |r| {
        r.frames().iter().any(|f| f.contains("ETHUSDT") && server_conn_of(f) == Some(2))
    });
    assert_eq!(h.client.status(conn).unwrap().reconnects, 1);
}

#[test]
fn streams_past_the_url_limit_are_subscribed_after_connecting() {
    let server = Server::plain(Behaviour::default());
    let mut h = Harness::new(None);
    let base = format!("ws://127.0.0.1:{}", server.port());
    let cfg = WsConfig { max_url_len: 80, subscribe_batch: 2, ..fast_config() };
    let names: Vec<String> = (0..7).map(|i| format!("sym{i}usdt@markPrice")).collect();
    let streams: Vec<&str> = names.iter().map(String::as_str).collect();
    let conn = h.client.open_streams(&base, &streams, &cfg, Instant::now()).unwrap();
    h.run_until("acks", GUARD, |r| r.count(|e| matches!(e, WsEvent::RequestAcked { .. })) >= 2);
    let (_, path) = server.accepted()[0].clone();
    assert!(path.len() <= 80, "{path}");
    let in_url = streams_in_path(&path);
    assert!(!in_url.is_empty() && in_url.len() < 7);
    let mut seen = in_url.clone();
    for s in server.log() {
        if let Seen::Text { text, .. } = s {
            for name in &names {
                if text.contains(&format!("\"{name}\"")) {
                    seen.push(name.clone());
                }
            }
        }
    }
    seen.sort();
    assert_eq!(seen, names, "every stream exactly once, in the URL or a SUBSCRIBE");
    assert_eq!(h.client.streams(conn).unwrap(), names.as_slice());
}

#[test]
fn staleness_is_reported_and_cleared_without_a_reconnect() {
    let server =
        Server::plain(Behaviour { tick: Some(Duration::from_millis(10)), ..Default::default() });
    let mut h = Harness::new(None);
    let base = format!("ws://127.0.0.1:{}", server.port());
    let cfg = WsConfig { stale_after: Some(Duration::from_millis(150)), ..fast_config() };
    let conn = h.client.open_streams(&base, &["btcusdt@markPrice"], &cfg, Instant::now()).unwrap();
    h.run_until("frames", GUARD, |r| r.frames().len() >= 3);
    assert!(!h.client.status(conn).unwrap().stale);
    server.command(1, Command::Pause(true));
    h.run_until("stale", GUARD, |r| r.count(|e| matches!(e, WsEvent::Stale { .. })) == 1);
    assert!(h.client.status(conn).unwrap().stale);
    server.command(1, Command::Pause(false));
    h.run_until("fresh", GUARD, |r| r.count(|e| matches!(e, WsEvent::Fresh { .. })) == 1);
    let events = h.sink.events();
    let WsEvent::Stale { silent_for, .. } = events[1] else { panic!("{events:?}") };
    let WsEvent::Fresh { stale_for, .. } = events[2] else { panic!("{events:?}") };
    assert!(silent_for >= Duration::from_millis(150));
    assert!(stale_for >= silent_for);
    assert_eq!(events.len(), 3, "no reconnect: pings kept it alive: {events:?}");
    assert!(!h.client.status(conn).unwrap().stale);
    // The event order in the sink: Fresh comes before the frame that made it fresh.
    let fresh_at = h
        .sink
        .got
        .iter()
        .position(|g| matches!(g, Got::Event { event: WsEvent::Fresh { .. }, .. }))
        .unwrap();
    assert!(matches!(h.sink.got[fresh_at + 1], Got::Frame { .. }));
}

#[test]
fn a_connection_that_never_comes_up_goes_stale() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut h = Harness::new(None);
    let cfg = WsConfig { stale_after: Some(Duration::from_millis(100)), ..fast_config() };
    let base = format!("ws://127.0.0.1:{port}");
    h.client.open_streams(&base, &["btcusdt@markPrice"], &cfg, Instant::now()).unwrap();
    h.run_until("stale", GUARD, |r| r.count(|e| matches!(e, WsEvent::Stale { .. })) == 1);
}

/// Checks a make-before-break switch from server connection `old` to `new`: the server saw the
/// new one before the old one closed, and the sink got the old one's frames before `Rotated`
/// and only the new one's after it.
fn assert_seamless(
    server: &Server,
    h: &Harness,
    conn: ConnId,
    rotation: usize,
    old: u64,
    new: u64,
) {
    assert!(server.wait_for(GUARD, |log| log.contains(&Seen::Closed { conn: old as usize })));
    let log = server.log();
    assert!(log.iter().any(|s| matches!(s, Seen::Accepted { conn, .. } if *conn == new as usize)));
    let opened = position(&log, &Seen::Opened { conn: new as usize });
    let closed = position(&log, &Seen::Closed { conn: old as usize });
    assert!(opened < closed, "connection {new} opened after {old} closed: {log:?}");
    let rotated = h
        .sink
        .got
        .iter()
        .enumerate()
        .filter(|(_, g)| matches!(g, Got::Event { event: WsEvent::Rotated { conn: c, .. }, .. } if *c == conn))
        .nth(rotation)
        .map(|(i, _)| i)
        .expect("rotated");
    let from = |range: &[Got]| -> Vec<u64> {
        range
            .iter()
            .filter_map(|g| match g {
                Got::Frame { text, .. } => server_conn_of(text),
                _ => None,
            })
            .collect()
    };
    let before = from(&h.sink.got[..rotated]);
    let after = from(&h.sink.got[rotated + 1..]);
    assert_eq!(before.last(), Some(&old), "{before:?}");
    assert!(!after.is_empty() && after.iter().take_while(|c| **c == new).count() >= 1);
    // Nothing from the old connection once switched (until the next rotation, if any).
    let until_next = after.iter().position(|c| *c != new).unwrap_or(after.len());
    assert!(after[until_next..].iter().all(|c| *c > new), "{after:?}");
}

#[test]
fn scheduled_rotation_is_make_before_break() {
    let server =
        Server::plain(Behaviour { tick: Some(Duration::from_millis(5)), ..Default::default() });
    let mut h = Harness::new(None);
    let base = format!("ws://127.0.0.1:{}", server.port());
    let cfg = WsConfig {
        rotate_after: Some(Duration::from_millis(250)),
        stale_after: Some(Duration::from_millis(200)),
        ..fast_config()
    };
    let conn = h
        .client
        .open_streams(&base, &["btcusdt@markPrice", "ethusdt@markPrice"], &cfg, Instant::now())
        .unwrap();
    h.run_until("two rotations", GUARD, |r| r.count(|e| matches!(e, WsEvent::Rotated { .. })) >= 2);
    h.run_for(Duration::from_millis(50));
    let events = h.sink.events();
    let kinds: Vec<WsEvent> = events.clone();
    assert_eq!(kinds[0], WsEvent::Connected { conn, gap: None });
    assert!(
        events.iter().all(|e| matches!(
            e,
            WsEvent::Connected { gap: None, .. }
                | WsEvent::Rotated { cause: Rotation::Scheduled, .. }
        )),
        "no disconnect, no staleness, no other event: {events:?}"
    );
    // Every new connection has the same streams.
    for (_, path) in server.accepted() {
        assert_eq!(streams_in_path(&path), vec!["btcusdt@markPrice", "ethusdt@markPrice"]);
    }
    assert_seamless(&server, &h, conn, 0, 1, 2);
    assert_seamless(&server, &h, conn, 1, 2, 3);
    assert_eq!(h.client.status(conn).unwrap().rotations, 2);
    assert!(h.client.status(conn).unwrap().up);
}

#[test]
fn runtime_streams_follow_a_rotation() {
    let server =
        Server::plain(Behaviour { tick: Some(Duration::from_millis(5)), ..Default::default() });
    let mut h = Harness::new(None);
    let base = format!("ws://127.0.0.1:{}", server.port());
    let conn = h
        .client
        .open_streams(&base, &["btcusdt@markPrice"], &fast_config(), Instant::now())
        .unwrap();
    h.run_until("connected", GUARD, connected(conn));
    h.client.subscribe(conn, &["ethusdt@markPrice"], Instant::now()).unwrap();
    h.run_until("ack", GUARD, |r| r.count(|e| matches!(e, WsEvent::RequestAcked { .. })) == 1);
    h.client.rotate_now(conn, Instant::now()).unwrap();
    h.run_until("rotated", GUARD, |r| r.count(|e| matches!(e, WsEvent::Rotated { .. })) == 1);
    assert!(h.sink.events().contains(&WsEvent::Rotated { conn, cause: Rotation::Requested }));
    assert_eq!(
        streams_in_path(&server.accepted()[1].1),
        vec!["btcusdt@markPrice", "ethusdt@markPrice"]
    );
    assert_seamless(&server, &h, conn, 0, 1, 2);
    h.run_until("ETH from 2", GUARD, |r| {
        r.frames().iter().any(|f| f.contains("ETHUSDT") && server_conn_of(f) == Some(2))
    });
}

#[test]
fn a_failed_rotation_keeps_the_current_connection() {
    let server =
        Server::plain(Behaviour { tick: Some(Duration::from_millis(5)), ..Default::default() });
    let mut h = Harness::new(None);
    let base = format!("ws://127.0.0.1:{}", server.port());
    let conn = h
        .client
        .open_streams(&base, &["btcusdt@markPrice"], &fast_config(), Instant::now())
        .unwrap();
    h.run_until("connected", GUARD, connected(conn));
    server.set_behaviour(|b| b.drop_next = 1);
    h.client.rotate_now(conn, Instant::now()).unwrap();
    h.run_until("rotated after a failure", GUARD, |r| {
        r.count(|e| matches!(e, WsEvent::Rotated { .. })) == 1
    });
    let events = h.sink.events();
    assert!(
        matches!(events[1], WsEvent::RotationFailed { conn: c, .. } if c == conn),
        "{events:?}"
    );
    assert!(matches!(events[2], WsEvent::Rotated { cause: Rotation::Requested, .. }), "{events:?}");
    assert_eq!(events.len(), 3);
}

#[test]
fn losing_the_current_connection_mid_rotation_hands_over_at_once() {
    let server =
        Server::plain(Behaviour { tick: Some(Duration::from_millis(5)), ..Default::default() });
    let mut h = Harness::new(None);
    let url = format!("ws://127.0.0.1:{}/private/ws/k1", server.port());
    let cfg = WsConfig { rotate_grace: Duration::from_secs(60), ..fast_config() };
    let conn = h.client.open(&url, &cfg, Instant::now()).unwrap();
    h.run_until("connected", GUARD, connected(conn));
    // Raw user-data stream without data: the candidate waits for a first frame that never comes.
    h.client.rotate_now(conn, Instant::now()).unwrap();
    h.run_until_server(&server, "the candidate", GUARD, |log| {
        log.iter().any(|s| matches!(s, Seen::Accepted { conn: 2, .. }))
    });
    h.run_for(Duration::from_millis(50));
    server.command(1, Command::Close);
    h.run_until("rotated", GUARD, |r| r.count(|e| matches!(e, WsEvent::Rotated { .. })) == 1);
    let events = h.sink.events();
    assert_eq!(
        events[1],
        WsEvent::Rotated { conn, cause: Rotation::PrimaryLost(Reason::PeerClosed { code: 1001 }) }
    );
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(h.client.status(conn).unwrap().up);
}

#[test]
fn retarget_moves_to_the_new_listen_key_before_leaving_the_old() {
    let server = Server::plain(Behaviour::default());
    let mut h = Harness::new(None);
    let port = server.port();
    let conn = h
        .client
        .open(
            &format!("ws://127.0.0.1:{port}/private/ws/key1"),
            &WsConfig::usdm_user(),
            Instant::now(),
        )
        .unwrap();
    h.run_until("connected", GUARD, connected(conn));
    h.client
        .retarget(conn, &format!("ws://127.0.0.1:{port}/private/ws/key2"), Instant::now())
        .unwrap();
    h.run_until("retargeted", GUARD, |r| r.count(|e| matches!(e, WsEvent::Rotated { .. })) == 1);
    assert_eq!(h.sink.events()[1], WsEvent::Rotated { conn, cause: Rotation::Retarget });
    assert!(server.wait_for(GUARD, |log| log.contains(&Seen::Closed { conn: 1 })));
    assert!(
        server
            .wait_for(GUARD, |log| log.iter().any(|s| matches!(s, Seen::Accepted { conn: 2, .. })))
    );
    let log = server.log();
    assert!(log.contains(&Seen::Accepted { conn: 2, path: "/private/ws/key2".into() }));
    assert!(position(&log, &Seen::Opened { conn: 2 }) < position(&log, &Seen::Closed { conn: 1 }));
    // Later reconnects use the new key.
    server.command(2, Command::Drop);
    h.run_until("reconnected", GUARD, connected_times(conn, 2));
    assert!(
        server
            .wait_for(GUARD, |log| log.iter().any(|s| matches!(s, Seen::Accepted { conn: 3, .. })))
    );
    assert_eq!(server.accepted()[2], (3, "/private/ws/key2".to_string()));
}

#[test]
fn retarget_while_down_connects_the_new_url_at_once() {
    let server = Server::plain(Behaviour::default());
    let mut h = Harness::new(None);
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = WsConfig {
        backoff_min: Duration::from_secs(5),
        backoff_max: Duration::from_secs(5),
        ..fast_config()
    };
    let conn = h
        .client
        .open(&format!("ws://127.0.0.1:{dead_port}/private/ws/old"), &cfg, Instant::now())
        .unwrap();
    h.run_until("a failure", GUARD, |r| !r.events().is_empty());
    h.client
        .retarget(conn, &format!("ws://127.0.0.1:{}/private/ws/new", server.port()), Instant::now())
        .unwrap();
    // Well before the backoff (up to 5 s) would have allowed another attempt.
    h.run_until("connected", Duration::from_secs(3), connected(conn));
    server.wait_accepted(1);
    assert_eq!(server.accepted(), vec![(1, "/private/ws/new".to_string())]);
}

#[test]
fn api_connection_reconnects_and_hands_over_a_rotation() {
    let server = Server::plain(Behaviour::default());
    let mut h = Harness::new(None);
    let url = format!("ws://127.0.0.1:{}/ws-api/v3", server.port());
    let conn = h
        .client
        .open_api(&url, &WsConfig { stale_after: None, ..fast_config() }, Instant::now())
        .unwrap();
    h.run_until("connected", GUARD, connected(conn));
    h.client.send_text(conn, r#"{"id":"a1","method":"session.status"}"#, Instant::now()).unwrap();
    h.run_until("reply", GUARD, |r| r.frames().iter().any(|f| f.contains(r#""id":"a1""#)));

    // Lost: the caller gets Connected again (with the gap) and sets its session up again.
    server.command(1, Command::Drop);
    h.run_until("reconnected", GUARD, connected_times(conn, 2));
    assert!(matches!(h.sink.events()[1], WsEvent::Disconnected { .. }));
    h.client.send_text(conn, r#"{"id":"a2","method":"session.logon"}"#, Instant::now()).unwrap();
    assert!(server.wait_for(GUARD, |log| log.iter().any(|s| matches!(
        s,
        Seen::Text { conn: 2, text } if text.contains("a2")
    ))));

    // Rotation: the new connection is handed to the caller before the switch.
    h.client.rotate_now(conn, Instant::now()).unwrap();
    h.run_until("rotation ready", GUARD, |r| r.events().contains(&WsEvent::RotationReady { conn }));
    h.client
        .send_text(conn, r#"{"id":"a3","method":"userDataStream.subscribe"}"#, Instant::now())
        .unwrap();
    h.run_until("reply on the candidate", GUARD, |r| {
        r.frames().iter().any(|f| f.contains(r#""id":"a3""#))
    });
    assert!(
        server
            .log()
            .iter()
            .any(|s| matches!(s, Seen::Text { conn: 3, text } if text.contains("a3")))
    );
    assert!(!server.log().contains(&Seen::Closed { conn: 2 }), "the old one is still open");
    h.client.finish_rotation(conn, Instant::now(), &mut h.sink).unwrap();
    assert_eq!(
        *h.sink.events().last().unwrap(),
        WsEvent::Rotated { conn, cause: Rotation::Requested }
    );
    assert!(server.wait_for(GUARD, |log| log.contains(&Seen::Closed { conn: 2 })));
    h.client.send_text(conn, r#"{"id":"a4","method":"ping"}"#, Instant::now()).unwrap();
    assert!(server.wait_for(GUARD, |log| log.iter().any(|s| matches!(
        s,
        Seen::Text { conn: 3, text } if text.contains("a4")
    ))));
}

/// The connection handed over to when the current one is lost mid-rotation must stay open and
/// keep delivering (a review found `switch` closing it and leaving the stream silent while
/// reporting itself up).
#[test]
fn the_connection_handed_over_to_keeps_delivering() {
    let server = Server::plain(Behaviour::default());
    let mut h = Harness::new(None);
    let url = format!("ws://127.0.0.1:{}/private/ws/k1", server.port());
    let cfg = WsConfig { rotate_grace: Duration::from_secs(60), ..fast_config() };
    let conn = h.client.open(&url, &cfg, Instant::now()).unwrap();
    h.run_until("connected", GUARD, connected(conn));
    h.client.rotate_now(conn, Instant::now()).unwrap();
    h.run_until_server(&server, "the candidate", GUARD, |log| {
        log.iter().any(|s| matches!(s, Seen::Accepted { conn: 2, .. }))
    });
    h.run_for(Duration::from_millis(50));
    server.command(1, Command::Close);
    h.run_until("rotated", GUARD, |r| r.count(|e| matches!(e, WsEvent::Rotated { .. })) == 1);
    h.run_for(Duration::from_millis(300));
    assert!(
        !server.log().contains(&Seen::Closed { conn: 2 }),
        "the client closed the connection it had just handed over to"
    );
    server.command(2, Command::Send(mark_frame("btcusdt@markPrice", 2_000_001)));
    h.run_until("a frame after the hand-over", GUARD, |r| {
        r.frames().iter().any(|f| f.contains("2000001"))
    });
    assert!(h.client.status(conn).is_some_and(|s| s.up));
}
