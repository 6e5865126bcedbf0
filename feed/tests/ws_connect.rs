//! Connecting: TLS with the extra CA (by name, through the resolver thread, and by IP literal),
//! plain ws:// to loopback, combined-stream frames parsed in place by `FrameParser`, and the
//! refusals: untrusted certificate, HTTP refusal of the upgrade, a server that never answers,
//! ws:// off loopback, malformed URLs, stream names and configs.

mod ws_common;

use std::time::Duration;

use engine::Event;
use engine::money::Price;
use engine::types::{Symbol, Venue};
use feed::wire::{Connection, EventKind, FrameParser, Parsed};
use feed::ws::{ClientOptions, Reason, TlsFailure, WsClient, WsConfig, WsError, WsEvent};
use ws_common::*;

const GUARD: Duration = Duration::from_secs(10);

#[test]
fn tls_by_name_delivers_combined_frames_that_parse_in_place() {
    let tls = test_tls(&["localhost"]);
    let server = Server::tls(
        &tls,
        Behaviour { tick: Some(Duration::from_millis(10)), ..Default::default() },
    );
    let mut h = Harness::new(Some(tls.ca_path.clone()));
    h.sink.parser = Some(FrameParser::new(Connection::market(Venue::Usdm)));
    let base = format!("wss://localhost:{}", server.port());
    let streams = ["btcusdt@markPrice", "ethusdt@markPrice@1s"];
    let conn =
        h.client.open_streams(&base, &streams, &fast_config(), std::time::Instant::now()).unwrap();

    h.run_until("4 parsed frames", GUARD, |r| r.parsed.len() >= 4);
    server.wait_accepted(1);
    assert_eq!(
        server.accepted(),
        vec![(1, "/stream?streams=btcusdt@markPrice/ethusdt@markPrice@1s".to_string())]
    );
    let first = h.sink.events()[0];
    assert_eq!(first, WsEvent::Connected { conn, gap: None });
    let price = Price::parse(b"11794.15").unwrap();
    let mut symbols = Vec::new();
    for (from, result, events) in &h.sink.parsed {
        assert_eq!(*from, conn);
        let Ok(Parsed::Events { kind: EventKind::MarkPrice, event_ms: Some(ms), count: 1 }) =
            result
        else {
            panic!("unexpected parse: {result:?}");
        };
        assert_eq!(ms / 1_000_000, 1, "from server connection 1");
        let [Event::Mark { market, price: p, .. }] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(*p, price);
        assert_eq!(market.venue, Venue::Usdm);
        symbols.push(market.symbol);
    }
    assert!(symbols.contains(&Symbol::lit("BTCUSDT")) && symbols.contains(&Symbol::lit("ETHUSDT")));
    assert!(h.foreign.is_empty());
}

#[test]
fn tls_by_ip_literal_and_plain_loopback() {
    let tls = test_tls(&["127.0.0.1"]);
    let secure = Server::tls(
        &tls,
        Behaviour { tick: Some(Duration::from_millis(10)), ..Default::default() },
    );
    let plain =
        Server::plain(Behaviour { tick: Some(Duration::from_millis(10)), ..Default::default() });
    let mut h = Harness::new(Some(tls.ca_path.clone()));
    let now = std::time::Instant::now();
    let cfg = fast_config();
    let a = h
        .client
        .open_streams(
            &format!("wss://127.0.0.1:{}/market", secure.port()),
            &["btcusdt@markPrice"],
            &cfg,
            now,
        )
        .unwrap();
    let b = h
        .client
        .open_streams(
            &format!("ws://127.0.0.1:{}", plain.port()),
            &["bnbusdt@markPrice"],
            &cfg,
            now,
        )
        .unwrap();
    h.run_until("frames on both", GUARD, |r| {
        r.got.iter().any(|g| matches!(g, Got::Frame { conn, .. } if *conn == a))
            && r.got.iter().any(|g| matches!(g, Got::Frame { conn, .. } if *conn == b))
    });
    assert_eq!(secure.accepted()[0].1, "/market/stream?streams=btcusdt@markPrice");
    assert_eq!(plain.accepted()[0].1, "/stream?streams=bnbusdt@markPrice");
    for (conn, symbol) in [(a, "BTCUSDT"), (b, "BNBUSDT")] {
        let texts: Vec<&String> = h
            .sink
            .got
            .iter()
            .filter_map(|g| match g {
                Got::Frame { conn: c, text, .. } if *c == conn => Some(text),
                _ => None,
            })
            .collect();
        assert!(texts.iter().all(|t| t.contains(symbol)), "{conn:?}: {texts:?}");
    }
}

#[test]
fn untrusted_certificate_is_a_tls_failure_and_retried() {
    let tls = test_tls(&["localhost"]);
    let server = Server::tls(&tls, Behaviour::default());
    // No extra CA: the self-signed certificate is not trusted.
    let mut h = Harness::new(None);
    let url = format!("wss://localhost:{}/ws-api/v3", server.port());
    let conn = h.client.open_api(&url, &fast_config(), std::time::Instant::now()).unwrap();
    h.run_until("two failed attempts", GUARD, |r| {
        r.count(|e| matches!(e, WsEvent::ConnectFailed { .. })) >= 2
    });
    for event in h.sink.events() {
        match event {
            WsEvent::ConnectFailed { conn: c, reason, .. } => {
                assert_eq!(c, conn);
                assert_eq!(reason, Reason::Tls(TlsFailure::Certificate));
            }
            other => panic!("only failures expected, got {other:?}"),
        }
    }
    assert!(server.accepted().is_empty(), "no upgrade can have happened");
}

#[test]
fn refused_upgrade_then_accepted() {
    let server = Server::plain(Behaviour { reject_next: 1, ..Default::default() });
    let mut h = Harness::new(None);
    let url = format!("ws://localhost:{}/private/ws/abc", server.port());
    let conn = h.client.open(&url, &fast_config(), std::time::Instant::now()).unwrap();
    h.run_until("connected after a refusal", GUARD, connected(conn));
    let events = h.sink.events();
    assert!(
        matches!(events[0], WsEvent::ConnectFailed { reason: Reason::Refused { status: 400 }, .. }),
        "{events:?}"
    );
    assert_eq!(events[1], WsEvent::Connected { conn, gap: None });
    server.wait_accepted(1);
    // Connection 1 was the refused one.
    assert_eq!(server.accepted(), vec![(2, "/private/ws/abc".to_string())]);
}

#[test]
fn a_server_that_never_answers_times_out() {
    // Bound, never accepting: the kernel completes TCP, nobody answers the upgrade.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut h = Harness::new(None);
    let cfg = WsConfig { connect_timeout: Duration::from_millis(150), ..fast_config() };
    let url = format!("ws://127.0.0.1:{port}/ws/btcusdt@markPrice");
    let conn = h.client.open(&url, &cfg, std::time::Instant::now()).unwrap();
    h.run_until("a timeout", GUARD, |r| !r.events().is_empty());
    assert!(
        matches!(h.sink.events()[0], WsEvent::ConnectFailed { conn: c, reason: Reason::Timeout, .. } if c == conn),
        "{:?}",
        h.sink.events()
    );
    drop(listener);
}

#[test]
fn connection_refused_is_reported_with_backoff_within_its_cap() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut h = Harness::new(None);
    let cfg = fast_config();
    let url = format!("ws://127.0.0.1:{port}/");
    h.client.open(&url, &cfg, std::time::Instant::now()).unwrap();
    h.run_until("four failures", GUARD, |r| r.events().len() >= 4);
    for (attempt, event) in h.sink.events().iter().take(4).enumerate() {
        let WsEvent::ConnectFailed { reason, retry_in, .. } = event else {
            panic!("{event:?}");
        };
        assert_eq!(*reason, Reason::Io(std::io::ErrorKind::ConnectionRefused));
        let cap = feed::ws::backoff_cap(cfg.backoff_min, cfg.backoff_max, attempt as u32);
        assert!(*retry_in <= cap, "attempt {attempt}: {retry_in:?} > {cap:?}");
    }
}

#[test]
fn plain_ws_only_to_loopback() {
    let poll = mio::Poll::new().unwrap();
    let options = ClientOptions { max_connections: 8, extra_ca_pem: None };
    let mut client = WsClient::new(poll.registry(), 0, options).unwrap();
    let now = std::time::Instant::now();
    let cfg = WsConfig::spot_market();
    for url in [
        "ws://example.com/ws",
        "ws://10.1.2.3:9443/ws",
        "ws://192.168.0.1/",
        "ws://[2001:db8::1]:80/",
        "ws://localhost.example.com/",
        "WS://stream.binance.com:9443/ws",
    ] {
        assert_eq!(client.open(url, &cfg, now), Err(WsError::PlainNotLoopback), "{url}");
    }
    for url in ["ws://127.0.0.1:1/ws", "ws://127.8.9.10:1/", "ws://[::1]:1/", "ws://LocalHost:1/"] {
        let conn = client.open(url, &cfg, now).unwrap_or_else(|e| panic!("{url}: {e}"));
        client.close(conn);
    }
    assert!(client.open("wss://stream.binance.com:9443/ws", &cfg, now).is_ok());
}

#[test]
fn malformed_input_is_a_typed_error() {
    let poll = mio::Poll::new().unwrap();
    let options = ClientOptions { max_connections: 2, extra_ca_pem: None };
    let mut client = WsClient::new(poll.registry(), 0, options).unwrap();
    let now = std::time::Instant::now();
    let cfg = WsConfig::spot_market();
    for url in [
        "",
        "stream.binance.com",
        "https://stream.binance.com/ws",
        "wss://",
        "wss:///ws",
        "wss://host:0/",
        "wss://host:99999/",
        "wss://host:12a/",
        "wss://user:pw@host/",
        "wss://a..b/",
        "wss://-a.b/",
        "wss://host/pa th",
        "wss://host/ws#frag",
        "wss://host/{x}",
        "wss://[::1/",
        "wss://[zz::1]/",
        "wss://hôst/",
    ] {
        assert!(
            matches!(client.open(url, &cfg, now), Err(WsError::BadUrl(_))),
            "{url:?} gave {:?}",
            client.open(url, &cfg, now)
        );
    }
    let base = "wss://stream.binance.com:9443";
    for (streams, index) in [
        (vec!["btcusdt@markPrice", "a/b"], 1),
        (vec![""], 0),
        (vec!["btc usdt"], 0),
        (vec!["x\"y"], 0),
        (vec!["a&b=c"], 0),
    ] {
        assert_eq!(
            client.open_streams(base, &streams, &cfg, now),
            Err(WsError::BadStreamName { index }),
            "{streams:?}"
        );
    }
    assert!(matches!(
        client.open_streams("wss://host/stream?x=1", &["a@b"], &cfg, now),
        Err(WsError::BadUrl(_))
    ));
    let too_many: Vec<String> = (0..3).map(|i| format!("s{i}@trade")).collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    let small = WsConfig { max_streams: 2, ..cfg.clone() };
    assert_eq!(
        client.open_streams(base, &too_many, &small, now),
        Err(WsError::TooManyStreams { max: 2 })
    );
    for bad in [
        WsConfig { outbound_per_sec: 0, ..cfg.clone() },
        WsConfig { dead_after: cfg.ping_every, ..cfg.clone() },
        WsConfig { backoff_max: Duration::ZERO, ..cfg.clone() },
        WsConfig { max_frame: 10, ..cfg.clone() },
    ] {
        assert!(matches!(client.open(base, &bad, now), Err(WsError::BadConfig(_))));
    }
    // Two slots: the third open is refused, and a closed id is unknown afterwards.
    let a = client.open(base, &cfg, now).unwrap();
    let _b = client.open(base, &cfg, now).unwrap();
    assert_eq!(client.open(base, &cfg, now), Err(WsError::NoFreeSlot));
    client.close(a);
    assert_eq!(client.subscribe(a, &["x@trade"], now), Err(WsError::UnknownConnection));
    assert_eq!(client.send_text(a, "{}", now), Err(WsError::UnknownConnection));
    let c = client.open(base, &cfg, now).unwrap();
    assert_eq!(c.index(), a.index());
    assert_ne!(c, a);
    assert_eq!(client.subscribe(c, &["x@trade"], now), Err(WsError::NotAStreamConnection));
    assert_eq!(client.send_text(c, "{}", now), Err(WsError::NotConnected));
}

#[test]
fn extra_ca_problems_are_typed() {
    let poll = mio::Poll::new().unwrap();
    let missing = temp_path("missing.pem");
    let options = ClientOptions { max_connections: 1, extra_ca_pem: Some(missing) };
    assert!(matches!(
        WsClient::new(poll.registry(), 0, options),
        Err(WsError::ExtraCa(feed::ws::ExtraCaProblem::Read(std::io::ErrorKind::NotFound)))
    ));
    let empty = temp_path("empty.pem");
    std::fs::write(&empty, "no certificate here\n").unwrap();
    let options = ClientOptions { max_connections: 1, extra_ca_pem: Some(empty.clone()) };
    let result = WsClient::new(poll.registry(), 0, options);
    std::fs::remove_file(&empty).unwrap();
    assert!(matches!(result, Err(WsError::ExtraCa(feed::ws::ExtraCaProblem::NoCertificate))));
}

#[test]
fn errors_never_show_the_url() {
    let poll = mio::Poll::new().unwrap();
    let options = ClientOptions { max_connections: 1, extra_ca_pem: None };
    let mut client = WsClient::new(poll.registry(), 0, options).unwrap();
    let secret = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1";
    let now = std::time::Instant::now();
    for url in [
        format!("ws://fstream.binance.com/private/ws/{secret}"),
        format!("wss://fstream.binance.com/private/ws/{secret}#x"),
        format!("wss://fstream.binance.com/private/ws/{secret} "),
    ] {
        let err = client.open(&url, &WsConfig::usdm_user(), now).unwrap_err();
        assert!(!format!("{err} {err:?}").contains(secret));
    }
}
