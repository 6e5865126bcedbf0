//! The HTTP layer over real loopback sockets: keep-alive (requests counted per TCP connection on
//! the server side), TLS through a rustls server whose rcgen CA is trusted only via the
//! extra-CA file, plain `http://` refused off loopback, and transport failures classified by
//! whether the request can have been sent.

mod http_common;

use std::time::Duration;

use feed::rest::{
    Api, CallError, ClientError, HttpConfig, ManualClock, RestConfig, RestError, TransportError,
    TransportKind,
};
use http_common::{Mock, Reply, T0, TlsFront, client, client_with, fast_http, test_pki};

#[test]
fn several_requests_share_one_kept_alive_connection() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let mut rest = client(Api::Futures, &mock, &clock);
    for _ in 0..5 {
        rest.ping().expect("ping");
    }
    rest.server_time().expect("time");
    assert_eq!(mock.count(), 6);
    assert_eq!(mock.connections(), 1, "every request should reuse the first connection");
}

#[test]
fn tls_to_a_server_whose_ca_comes_from_the_extra_ca_file() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let pki = test_pki("tls");
    let front = TlsFront::start(mock.addr, pki.server_config.clone());
    let http = HttpConfig { extra_ca_pem: Some(pki.ca_pem_path.clone()), ..fast_http() };
    let mut rest = client_with(Api::Futures, &front.url(), &http, &RestConfig::default(), &clock);
    for _ in 0..3 {
        rest.ping().expect("ping over TLS");
    }
    let _ = rest.sync_time(feed::rest::Priority::Normal).expect("time over TLS");
    assert_eq!(mock.count(), 4);
    assert_eq!(front.handshakes.load(std::sync::atomic::Ordering::SeqCst), 1, "one TLS session");
    assert_eq!(mock.connections(), 1);

    // Without the extra CA the certificate is unknown: refused during the handshake, so the
    // request is known not to have been sent.
    let mut untrusting =
        client_with(Api::Futures, &front.url(), &fast_http(), &RestConfig::default(), &clock);
    let error = untrusting.ping().unwrap_err();
    assert_eq!(error, CallError::Transport(TransportError::NotSent(TransportKind::Tls)));
    assert!(!error.outcome_unknown());
    assert_eq!(mock.count(), 4, "nothing reached the server");
    let _ = std::fs::remove_file(&pki.ca_pem_path);
}

#[test]
fn plain_http_is_refused_unless_the_host_is_loopback() {
    let clock = ManualClock::new(T0);
    for url in ["http://fapi.binance.com", "http://192.168.1.10:8080", "http://[2001:db8::2]:80"] {
        let built = feed::rest::RestClient::new(
            Api::Futures,
            url,
            &fast_http(),
            &RestConfig::default(),
            None,
            std::sync::Arc::new(clock.clone()),
        );
        assert_eq!(built.err(), Some(ClientError::PlainHttpNotLoopback), "{url}");
    }
    let loopback = feed::rest::HttpClient::new("http://127.0.0.1:1", &fast_http());
    assert!(loopback.is_ok());
    let tls = feed::rest::HttpClient::new("https://fapi.binance.com", &fast_http());
    assert_eq!(tls.unwrap().base_url(), "https://fapi.binance.com");
}

#[test]
fn an_unreadable_extra_ca_file_is_a_typed_error() {
    let missing =
        HttpConfig { extra_ca_pem: Some("/nonexistent/robsond-ca.pem".into()), ..fast_http() };
    assert_eq!(
        feed::rest::HttpClient::new("https://localhost:1", &missing).err(),
        Some(ClientError::CaFile(std::io::ErrorKind::NotFound))
    );
    let garbage = std::env::temp_dir().join(format!("robsond-garbage-{}.pem", std::process::id()));
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let bad = HttpConfig { extra_ca_pem: Some(garbage.clone()), ..fast_http() };
    assert_eq!(
        feed::rest::HttpClient::new("https://localhost:1", &bad).err(),
        Some(ClientError::CaPem)
    );
    let _ = std::fs::remove_file(garbage);
}

#[test]
fn a_refused_connection_is_known_not_sent() {
    let clock = ManualClock::new(T0);
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let mut rest = client_with(Api::Futures, &url, &fast_http(), &RestConfig::default(), &clock);
    let error = rest.ping().unwrap_err();
    assert_eq!(error, CallError::Transport(TransportError::NotSent(TransportKind::Connect)));
    assert!(!error.outcome_unknown());
}

#[test]
fn a_request_timed_out_after_sending_may_have_executed() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    mock.script("GET", "/fapi/v1/ping", Reply::ok("{}").delayed(Duration::from_millis(1500)));
    let http = HttpConfig { request_timeout: Duration::from_millis(300), ..fast_http() };
    let mut rest = client_with(Api::Futures, &mock.url(), &http, &RestConfig::default(), &clock);
    let error = rest.ping().unwrap_err();
    assert_eq!(error, CallError::Transport(TransportError::MaybeSent(TransportKind::Timeout)));
    assert!(error.outcome_unknown());
    // The timed-out connection is not reused; a fresh one serves the next request.
    rest.ping().expect("next request");
    assert_eq!(mock.count(), 2);
    assert_eq!(mock.connections(), 2);
}

#[test]
fn redirects_are_reported_not_followed() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    mock.script(
        "GET",
        "/fapi/v1/ping",
        Reply::json(302, "").header("Location", "http://127.0.0.1:1/elsewhere"),
    );
    let mut rest = client(Api::Futures, &mock, &clock);
    let error = rest.ping().unwrap_err();
    assert_eq!(error, CallError::Rest(RestError::Unexpected { status: 302 }));
    assert_eq!(mock.count(), 1);
}
