//! Talking to the server: run-time SUBSCRIBE/UNSUBSCRIBE with their replies tracked by id, pings
//! both ways, outbound pacing as the server counts it, and the frame size limit.

mod ws_common;

use std::time::{Duration, Instant};

use feed::ws::{Method, Reason, WsConfig, WsEvent};
use ws_common::*;

const GUARD: Duration = Duration::from_secs(10);

#[test]
fn runtime_subscribe_acked_refused_and_unsubscribe() {
    let server = Server::plain(Behaviour {
        tick: Some(Duration::from_millis(10)),
        refuse_streams: vec!["nosuch@markPrice".into()],
        ..Default::default()
    });
    let mut h = Harness::new(None);
    let base = format!("ws://127.0.0.1:{}", server.port());
    let conn = h
        .client
        .open_streams(&base, &["btcusdt@markPrice"], &fast_config(), Instant::now())
        .unwrap();
    h.run_until("connected", GUARD, connected(conn));

    let ok = h.client.subscribe(conn, &["ethusdt@markPrice"], Instant::now()).unwrap().unwrap();
    let bad = h
        .client
        .subscribe(conn, &["nosuch@markPrice", "ethusdt@markPrice"], Instant::now())
        .unwrap()
        .unwrap();
    assert_ne!(ok, bad);
    // Already wanted: nothing to send.
    assert_eq!(h.client.subscribe(conn, &["btcusdt@markPrice"], Instant::now()), Ok(None));
    h.run_until("both replies", GUARD, |r| {
        r.count(|e| matches!(e, WsEvent::RequestAcked { .. } | WsEvent::RequestFailed { .. })) >= 2
    });
    let events = h.sink.events();
    assert!(events.contains(&WsEvent::RequestAcked { conn, id: ok, method: Method::Subscribe }));
    assert!(events.contains(&WsEvent::RequestFailed {
        conn,
        id: bad,
        method: Method::Subscribe,
        code: Some(2)
    }));
    // The refused stream left the set; the accepted one is in it.
    let wanted = h.client.streams(conn).unwrap().to_vec();
    assert_eq!(wanted, vec!["btcusdt@markPrice".to_string(), "ethusdt@markPrice".to_string()]);
    let texts: Vec<String> = server
        .log()
        .into_iter()
        .filter_map(|s| match s {
            Seen::Text { text, .. } => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(
        texts,
        vec![
            format!(r#"{{"method":"SUBSCRIBE","params":["ethusdt@markPrice"],"id":{ok}}}"#),
            format!(r#"{{"method":"SUBSCRIBE","params":["nosuch@markPrice"],"id":{bad}}}"#),
        ]
    );
    h.run_until("an ETH frame", GUARD, |r| r.frames().iter().any(|f| f.contains("ETHUSDT")));
    // Replies are frames too (the caller's parser sees them as Control).
    assert!(h.sink.frames().iter().any(|f| f == &format!(r#"{{"result":null,"id":{ok}}}"#)));

    let unsub = h.client.unsubscribe(conn, &["ethusdt@markPrice"], Instant::now()).unwrap();
    let unsub = unsub.expect("an UNSUBSCRIBE was sent");
    h.run_until("unsubscribe acked", GUARD, |r| {
        r.events().contains(&WsEvent::RequestAcked { conn, id: unsub, method: Method::Unsubscribe })
    });
    assert_eq!(h.client.streams(conn).unwrap(), ["btcusdt@markPrice".to_string()]);
    assert!(server.wait_for(GUARD, |log| log.iter().any(|s| matches!(
        s,
        Seen::Text { text, .. } if text.contains("UNSUBSCRIBE") && text.contains("ethusdt@markPrice")
    ))));
    assert!(
        !h.sink.events().iter().any(|e| matches!(e, WsEvent::Disconnected { .. })),
        "{:?}",
        h.sink.events()
    );
}

#[test]
fn an_unanswered_subscribe_fails_and_its_stream_rides_the_next_url() {
    let server = Server::plain(Behaviour { mute: true, ..Default::default() });
    let mut h = Harness::new(None);
    let base = format!("ws://127.0.0.1:{}", server.port());
    let cfg = WsConfig { reply_timeout: Duration::from_millis(150), ..fast_config() };
    let conn = h.client.open_streams(&base, &["btcusdt@markPrice"], &cfg, Instant::now()).unwrap();
    h.run_until("connected", GUARD, connected(conn));
    let id = h.client.subscribe(conn, &["ethusdt@markPrice"], Instant::now()).unwrap().unwrap();
    h.run_until("reconnected", GUARD, connected_times(conn, 2));
    let events = h.sink.events();
    assert_eq!(
        events[1],
        WsEvent::RequestFailed { conn, id, method: Method::Subscribe, code: None }
    );
    assert!(matches!(events[2], WsEvent::Disconnected { reason: Reason::ReplyTimeout, .. }));
    // Unanswered is not refused: the stream stays wanted and the next URL carries it.
    assert_eq!(h.client.streams(conn).unwrap().len(), 2);
    server.wait_accepted(2);
    assert_eq!(
        streams_in_path(&server.accepted()[1].1),
        vec!["btcusdt@markPrice", "ethusdt@markPrice"]
    );
}

#[test]
fn the_client_can_move_to_the_hot_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<feed::ws::WsClient>();
    assert_send::<WsEvent>();
}

#[test]
fn server_ping_is_answered_with_its_payload() {
    let server = Server::plain(Behaviour::default());
    let mut h = Harness::new(None);
    let url = format!("ws://127.0.0.1:{}/ws-api/v3", server.port());
    let cfg = WsConfig {
        ping_every: Duration::from_secs(5),
        dead_after: Duration::from_secs(10),
        ..fast_config()
    };
    let conn = h.client.open_api(&url, &cfg, Instant::now()).unwrap();
    h.run_until("connected", GUARD, connected(conn));
    for payload in [b"abc123".to_vec(), b"1700000000000".to_vec(), Vec::new()] {
        server.command(1, Command::Ping(payload.clone()));
        let expected = Seen::Pong { conn: 1, payload };
        let deadline = Instant::now() + GUARD;
        while !server.log().contains(&expected) {
            assert!(Instant::now() < deadline, "no pong {expected:?}: {:?}", server.log());
            h.step(Duration::from_millis(5));
        }
    }
}

#[test]
fn own_pings_keep_a_quiet_connection_alive() {
    let server = Server::plain(Behaviour::default());
    let mut h = Harness::new(None);
    let url = format!("ws://127.0.0.1:{}/private/ws/key", server.port());
    let cfg = WsConfig {
        ping_every: Duration::from_millis(30),
        dead_after: Duration::from_millis(200),
        ..fast_config()
    };
    let conn = h.client.open(&url, &cfg, Instant::now()).unwrap();
    h.run_until("connected", GUARD, connected(conn));
    // No data at all: only our pings and the server's pongs for five dead_after periods.
    h.run_for(Duration::from_secs(1));
    let pings = server
        .log()
        .iter()
        .filter(|s| matches!(s, Seen::Ping { conn: 1, payload } if payload == b"robsond"))
        .count();
    assert!(pings >= 5, "{pings} pings");
    assert_eq!(h.sink.events(), vec![WsEvent::Connected { conn, gap: None }]);
    assert_eq!(server.accepted().len(), 1);
}

#[test]
fn a_burst_of_subscribes_is_paced_under_the_budget() {
    const BUDGET: usize = 20;
    let server = Server::plain(Behaviour::default());
    let mut h = Harness::new(None);
    let base = format!("ws://127.0.0.1:{}", server.port());
    let cfg = WsConfig { outbound_per_sec: BUDGET as u32, ..fast_config() };
    let conn = h.client.open_streams(&base, &["btcusdt@markPrice"], &cfg, Instant::now()).unwrap();
    h.run_until("connected", GUARD, connected(conn));
    let mut ids = Vec::new();
    for i in 0..50 {
        let stream = format!("s{i}usdt@markPrice");
        ids.push(h.client.subscribe(conn, &[stream.as_str()], Instant::now()).unwrap().unwrap());
    }
    h.run_until("50 acks", GUARD, |r| r.count(|e| matches!(e, WsEvent::RequestAcked { .. })) >= 50);
    let log = server.timed_log();
    let arrivals: Vec<Instant> =
        log.iter().filter(|(_, s)| s.is_incoming_message()).map(|(t, _)| *t).collect();
    assert!(arrivals.len() >= 50);
    // Every window of one second as the server sees it, with one message of margin for
    // scheduling noise on the server thread.
    let worst = arrivals
        .iter()
        .map(|start| {
            arrivals
                .iter()
                .filter(|t| **t >= *start && **t < *start + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    assert!(worst <= BUDGET + 1, "{worst} messages in one second");
    // The pacing held messages back rather than the server being slow: the first window is full.
    assert!(worst >= BUDGET - 1, "{worst}");
    let acked: Vec<u64> = h
        .sink
        .events()
        .iter()
        .filter_map(|e| match e {
            WsEvent::RequestAcked { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(acked, ids, "replies in request order, every one");
    assert_eq!(h.client.streams(conn).unwrap().len(), 51);
}

#[test]
fn an_oversize_frame_is_refused_and_the_connection_replaced() {
    let server =
        Server::plain(Behaviour { tick: Some(Duration::from_millis(10)), ..Default::default() });
    let mut h = Harness::new(None);
    let base = format!("ws://127.0.0.1:{}", server.port());
    let cfg = WsConfig { max_frame: 4096, ..fast_config() };
    let conn = h.client.open_streams(&base, &["btcusdt@markPrice"], &cfg, Instant::now()).unwrap();
    h.run_until("connected", GUARD, connected(conn));
    server.command(1, Command::Send("x".repeat(10_000)));
    h.run_until("reconnected", GUARD, connected_times(conn, 2));
    let events = h.sink.events();
    let at = events.iter().position(|e| matches!(e, WsEvent::FrameTooLarge { .. })).unwrap();
    assert_eq!(events[at], WsEvent::FrameTooLarge { conn, len: 10_000, max: 4096 });
    assert!(matches!(events[at + 1], WsEvent::Disconnected { reason: Reason::FrameTooLarge, .. }));
    assert!(h.sink.frames().iter().all(|f| f.len() < 4096));
    assert_eq!(h.client.status(conn).unwrap().frames_too_large, 1);
    // Frames flow again on the new connection.
    h.run_until("frames from connection 2", GUARD, |r| {
        r.frames().iter().any(|f| f.contains(r#""E": 2000"#))
    });
}

/// The process's peak virtual size, in KiB (Linux).
fn vm_peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmPeak:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_frame_header_claiming_a_terabyte_costs_nothing() {
    let server = Server::plain(Behaviour::default());
    let mut h = Harness::new(None);
    let url = format!("ws://127.0.0.1:{}/ws/btcusdt@markPrice", server.port());
    let conn = h.client.open(&url, &fast_config(), Instant::now()).unwrap();
    h.run_until("connected", GUARD, connected(conn));
    let before = vm_peak_kib();
    // FIN + text, 64-bit length 2^40, then a few bytes of "payload".
    let mut raw = vec![0x81, 127];
    raw.extend_from_slice(&(1u64 << 40).to_be_bytes());
    raw.extend_from_slice(b"{\"e\":");
    server.command(1, Command::Raw(raw));
    h.run_until("refused", GUARD, |r| r.count(|e| matches!(e, WsEvent::FrameTooLarge { .. })) == 1);
    assert!(h.sink.events().contains(&WsEvent::FrameTooLarge {
        conn,
        len: 1 << 40,
        max: fast_config().max_frame
    }));
    let grown = vm_peak_kib().saturating_sub(before);
    assert!(grown < 256 * 1024, "peak virtual size grew by {grown} KiB");
}

#[test]
fn a_burst_larger_than_one_turn_is_delivered_without_further_readiness() {
    // One read call stops after a few hundred messages so that other sockets get their turn;
    // the rest must come from the timer path, since no new readiness edge announces it.
    let server = Server::plain(Behaviour::default());
    let mut h = Harness::new(None);
    let base = format!("ws://127.0.0.1:{}", server.port());
    let cfg = WsConfig {
        ping_every: Duration::from_secs(30),
        dead_after: Duration::from_secs(60),
        ..fast_config()
    };
    let conn = h.client.open_streams(&base, &["btcusdt@markPrice"], &cfg, Instant::now()).unwrap();
    h.run_until("connected", GUARD, connected(conn));
    server.command(
        1,
        Command::Flood { stream: "btcusdt@markPrice".into(), frames: 3000, ping_every: u64::MAX },
    );
    h.run_until("3000 frames", GUARD, |r| r.frames().len() == 3000);
    let seqs: Vec<u64> = h
        .sink
        .frames()
        .iter()
        .map(|f| {
            let at = f.find(r#""E": "#).unwrap() + 5;
            f[at..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap()
        })
        .collect();
    let expected: Vec<u64> = (1..=3000).map(|i| 1_000_000 + i).collect();
    assert_eq!(seqs, expected, "every frame once, in order");
}
