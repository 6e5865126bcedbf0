//! No key material in any `Debug`, `Display` or error string: clients, credentials, signers,
//! every error the client and the executor produced while a mock refused signatures and
//! timestamps, and every note. The strings are gathered from real runs and grepped for the HMAC
//! secret, the Ed25519 private key (PEM body, seed in hex and base64), the full API key, the
//! signatures the server received, and the listen key and token.

mod http_common;

use std::sync::Arc;

use base64::Engine as _;
use engine::Venue;
use engine::events::Intent;
use engine::types::OrderPurpose::Close;
use feed::rest::{
    Api, ApiKey, Credentials, Ed25519Signer, ExecutorConfig, HmacSigner, KeyError, ManualClock,
    OrderExecutor, PositionMode, Priority, Query, RestClient, RestConfig, Secret,
};
use http_common::{API_KEY, Collect, KeyCheck, Mock, Reply, SECRET, T0, client, fast_http, intent};

const PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n\
-----END PRIVATE KEY-----\n";
const SEED_HEX: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

fn forbidden(mock: &Mock) -> Vec<String> {
    let seed = hex::decode(SEED_HEX).unwrap();
    let mut needles = vec![
        SECRET.to_owned(),
        API_KEY.to_owned(),
        "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v".to_owned(),
        SEED_HEX.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(&seed)[..40].to_owned(),
        "pqia91ma19a5s61cv6a81va65sdf19v8".to_owned(),
        "6xXxePXwZRjVSHKhzUCCGnmN3fkvMTXru".to_owned(),
    ];
    for r in mock.requests() {
        if let Some(signature) = r.param("signature") {
            needles.push(signature.to_owned());
        }
    }
    needles
}

#[test]
fn nothing_secret_is_ever_printed() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    let mut printed: Vec<String> = Vec::new();
    let mut show = |label: &str, debug: String, display: Option<String>| {
        printed.push(format!("{label}: {debug}"));
        if let Some(text) = display {
            printed.push(format!("{label}: {text}"));
        }
    };

    // Holders of key material.
    let hmac = Credentials::hmac(ApiKey::new(API_KEY.into()), &Secret::from_string(SECRET.into()));
    show("hmac credentials", format!("{hmac:?}"), None);
    let ed = Credentials::ed25519(ApiKey::new(API_KEY.into()), &Secret::from_string(PEM.into()))
        .unwrap();
    show("ed25519 credentials", format!("{ed:?}"), None);
    let signer = Ed25519Signer::from_pkcs8_pem(&Secret::from_string(PEM.into())).unwrap();
    show("ed25519 signer", format!("{signer:?}"), None);
    show(
        "hmac signer",
        format!("{:?}", HmacSigner::new(&Secret::from_string(SECRET.into()))),
        None,
    );
    let signed = Query::new().sign(&signer, 5000, 1);
    show("signed query", format!("{signed:?}"), None);
    let bad_key = Ed25519Signer::from_pkcs8_pem(&Secret::from_string(PEM.replace("rn9g", "")));
    let key_error: KeyError = bad_key.unwrap_err();
    show("key error", format!("{key_error:?}"), Some(key_error.to_string()));

    // A client whose signatures the server refuses (-1022), then a clock it refuses (-1021),
    // then listen key and token bodies.
    let mut rest = client(Api::Futures, &mock, &clock);
    show("rest client", format!("{rest:?}"), None);
    show("http client", format!("{:?}", rest.http()), None);
    mock.set_key(KeyCheck::Hmac(b"another secret".to_vec()));
    let refused = rest.position_risk(None).unwrap_err();
    assert!(matches!(refused.api(), Some(feed::rest::ApiError::BadCredentials { code: -1022 })));
    show("-1022", format!("{refused:?}"), Some(refused.to_string()));
    mock.set_key(KeyCheck::Hmac(SECRET.as_bytes().to_vec()));
    mock.set_skew(600_000);
    mock.script("GET", "/fapi/v1/time", Reply::json(500, "oops"));
    let clock_error = rest.position_risk(None).unwrap_err();
    assert!(matches!(clock_error, feed::rest::CallError::ClockSync(_)), "{clock_error:?}");
    show("clock sync", format!("{clock_error:?}"), Some(clock_error.to_string()));
    mock.set_skew(0);
    mock.script(
        "POST",
        "/fapi/v1/listenKey",
        Reply::fixture(200, "futures_listenKey_create_response.json"),
    );
    let listen_key = rest.create_listen_key().unwrap();
    show("listen key", format!("{listen_key:?}"), None);
    let mut spot = client(Api::Spot, &mock, &clock);
    mock.script(
        "POST",
        "/sapi/v1/userListenToken",
        Reply::fixture(200, "margin_userListenToken_response.json"),
    );
    let token = spot.create_listen_token(engine::Symbol::lit("BTCUSDT"), None).unwrap();
    show("listen token", format!("{token:?}"), None);
    show("spot client", format!("{spot:?}"), None);

    // An executor run through refusals, an unknown outcome and a ban; every note printed.
    let mut exec = OrderExecutor::new(ExecutorConfig::default());
    exec.add_venue(engine::AccountId(0), Venue::Usdm, rest, PositionMode::OneWay);
    mock.script(
        "POST",
        "/fapi/v1/order",
        Reply::fixture(400, "error_-2010_insufficient_balance.json"),
    );
    mock.script("POST", "/fapi/v1/order", Reply::json(500, ""));
    mock.script("GET", "/fapi/v1/order", Reply::json(418, "").header("Retry-After", "5"));
    exec.submit(Intent::Place(intent(Venue::Usdm, "BTCUSDT", Close, 1, "0.004")), T0);
    exec.submit(Intent::Place(intent(Venue::Usdm, "ETHUSDT", Close, 2, "0.004")), T0);
    let mut sink = Collect::default();
    exec.poll(T0, &mut sink);
    clock.set(T0 + 600);
    exec.poll(T0 + 600, &mut sink);
    assert!(sink.notes.len() >= 4, "{:?}", sink.notes);
    for note in &sink.notes {
        show("note", format!("{note:?}"), None);
    }
    for event in &sink.events {
        show("event", format!("{event:?}"), None);
    }
    show("executor", format!("{exec:?}"), None);

    // An anonymous client's refusal too.
    let anonymous = RestClient::new(
        Api::Futures,
        &mock.url(),
        &fast_http(),
        &RestConfig::default(),
        None,
        Arc::new(clock.clone()),
    )
    .unwrap();
    show("anonymous", format!("{anonymous:?}"), None);
    let _ = Priority::Close;

    let needles = forbidden(&mock);
    assert!(needles.len() > 7, "the server saw signed requests whose signatures are checked too");
    for text in &printed {
        for needle in &needles {
            assert!(!text.contains(needle.as_str()), "{needle:?} printed in {text:?}");
        }
    }
    // The strings are the real ones: they say what they are about.
    let all = printed.join("\n");
    for expected in [
        "Credentials",
        "vmPU***",
        "Ed25519Signer(***)",
        "ListenKey(***",
        "BadCredentials",
        "Failed",
        "Held",
    ] {
        assert!(all.contains(expected), "{expected} missing from:\n{all}");
    }
}
