//! Ed25519 signing against vectors computed outside this code: RFC 8032's first test key
//! (wrapped by hand in PKCS#8 per RFC 8410, so the PEM is not dalek's own output), its published
//! signature of the empty message, and signatures of a Binance order payload made with
//! `openssl pkeyutl -sign -rawin` from the same PEM. Then a signed request end to end: the mock
//! verifies the percent-encoded base64 signature with the public key alone.

mod http_common;

use std::sync::Arc;

use base64::Engine as _;
use feed::rest::{
    Api, ApiKey, Credentials, Ed25519Signer, KeyError, ManualClock, Priority, Query, RestClient,
    RestConfig, Secret, Signer, WsParams,
};
use http_common::{KeyCheck, Mock, Reply, T0, fast_http};

/// RFC 8032 §7.1 TEST 1.
const RFC_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const RFC_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const RFC_EMPTY_SIGNATURE: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065\
224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

/// The same key as `openssl pkey` prints it.
const PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n\
-----END PRIVATE KEY-----\n";

/// A futures close as robsond sends it; signed with `openssl pkeyutl -sign -rawin -inkey` PEM.
const BINANCE_PAYLOAD: &str = "symbol=BTCUSDT&side=SELL&type=MARKET&quantity=0.00100000\
&newClientOrderId=rbd-SX-2n9c-2&reduceOnly=true&newOrderRespType=RESULT&recvWindow=5000\
&timestamp=1499827319559";
const BINANCE_SIGNATURE: &str =
    "P70GgkDrTlJ5Wvv/jdA4o5cZkfXNJwJXp7ewh7FMFXv67LT7lJgmNetzc6E/nw+dpe57q9j2l8RcqwHjrxizBQ==";

/// The PKCS#8 wrapping of RFC 8410 §7, built by hand: version 0, id-Ed25519, the 32-byte seed.
fn pem_of_seed(seed_hex: &str) -> String {
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
    der.extend(hex::decode(seed_hex).unwrap());
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")
}

fn signer() -> Ed25519Signer {
    Ed25519Signer::from_pkcs8_pem(&Secret::from_string(PEM.to_owned())).unwrap()
}

#[test]
fn the_rfc_8032_key_signs_the_empty_message_as_published() {
    assert_eq!(pem_of_seed(RFC_SEED), PEM, "the hand-built PKCS#8 is openssl's");
    let signer = signer();
    assert_eq!(hex::encode(signer.public_key()), RFC_PUBLIC);
    let expected =
        base64::engine::general_purpose::STANDARD.encode(hex::decode(RFC_EMPTY_SIGNATURE).unwrap());
    assert_eq!(signer.sign(b"").as_str(), expected);
    let mut via_trait = String::new();
    signer.sign_into(b"", &mut via_trait);
    assert_eq!(via_trait, expected);
}

#[test]
fn a_binance_payload_signs_as_openssl_does_and_verifies_with_the_public_key() {
    let signer = signer();
    let signature = signer.sign(BINANCE_PAYLOAD.as_bytes());
    assert_eq!(signature.as_str(), BINANCE_SIGNATURE);
    let public = ed25519_dalek::VerifyingKey::from_bytes(
        &hex::decode(RFC_PUBLIC).unwrap().try_into().unwrap(),
    )
    .unwrap();
    let bytes = base64::engine::general_purpose::STANDARD.decode(signature.as_str()).unwrap();
    let parsed = ed25519_dalek::Signature::from_slice(&bytes).unwrap();
    ed25519_dalek::Verifier::verify(&public, BINANCE_PAYLOAD.as_bytes(), &parsed).unwrap();
    assert!(
        ed25519_dalek::Verifier::verify(&public, b"symbol=BTCUSDT&side=BUY", &parsed).is_err(),
        "a different payload must not verify"
    );
}

#[test]
fn rest_percent_encodes_the_base64_and_the_websocket_api_sends_it_raw() {
    let mut query = Query::new();
    for (k, v) in [
        ("symbol", "BTCUSDT"),
        ("side", "SELL"),
        ("type", "MARKET"),
        ("quantity", "0.00100000"),
        ("newClientOrderId", "rbd-SX-2n9c-2"),
        ("reduceOnly", "true"),
        ("newOrderRespType", "RESULT"),
    ] {
        query.push(k, v);
    }
    let signed = query.sign(&signer(), 5000, 1499827319559);
    assert_eq!(signed.payload(), BINANCE_PAYLOAD);
    // `+`, `/` and `=` are not URL-safe: Binance wants them %XX-encoded (BINANCE.md §6).
    let encoded = BINANCE_SIGNATURE.replace('/', "%2F").replace('+', "%2B").replace('=', "%3D");
    assert_eq!(signed.signature(), encoded);
    assert_eq!(signed.as_str(), format!("{BINANCE_PAYLOAD}&signature={encoded}"));

    let mut ws = WsParams::new();
    ws.push("symbol", "BTCUSDT");
    let ws_signed = ws.sign(&signer(), &ApiKey::new("key".to_owned()), 5000, 1);
    let expected = signer().sign(ws_signed.payload().as_bytes());
    assert_eq!(ws_signed.signature(), expected.as_str(), "JSON carries the raw base64");
}

#[test]
fn keys_that_are_not_pkcs8_ed25519_are_refused_with_a_typed_error() {
    let rsa_like = PEM.replace("PRIVATE KEY", "RSA PRIVATE KEY");
    let truncated = PEM.replace("rn9g", "");
    // An EC P-256 key in PKCS#8 (generated with openssl): right container, wrong algorithm.
    let p256 = "-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg43wIW8IBZ9fOqvZ5\n\
ctoiK+IxhfGH90HQomZ0WObOS56hRANCAAQs6MxPX8Bv29RyjJHRXjgqydXdTMG+\n\
nk89vUWr2SO7re2a3j13q/adqZ0CRrCBemeuKQE6mfeQvK1a/CMus5ig\n\
-----END PRIVATE KEY-----\n";
    for bad in [rsa_like.as_str(), truncated.as_str(), p256, "", "hello"] {
        let result = Ed25519Signer::from_pkcs8_pem(&Secret::from_string(bad.to_owned()));
        assert_eq!(result.err(), Some(KeyError::NotEd25519Pkcs8), "{bad:?}");
    }
    let not_utf8 = Ed25519Signer::from_pkcs8_pem(&Secret::new(vec![0xff, 0xfe, 0x00]));
    assert_eq!(not_utf8.err(), Some(KeyError::NotUtf8));
    assert_eq!(
        KeyError::NotEd25519Pkcs8.to_string(),
        "private key is not a PKCS#8 PEM Ed25519 key"
    );
}

#[test]
fn an_ed25519_signed_request_passes_the_servers_verification() {
    let clock = ManualClock::new(T0);
    let mock = Mock::start(clock.clone());
    mock.set_key(KeyCheck::Ed25519(signer().public_key()));
    let credentials = Credentials::ed25519(
        ApiKey::new("ed25519-api-key".to_owned()),
        &Secret::from_string(PEM.to_owned()),
    )
    .unwrap();
    let mut rest = RestClient::new(
        Api::Futures,
        &mock.url(),
        &fast_http(),
        &RestConfig::default(),
        Some(credentials),
        Arc::new(clock.clone()),
    )
    .unwrap();
    mock.script("GET", "/fapi/v3/positionRisk", Reply::ok("[]"));
    mock.script("GET", "/fapi/v3/positionRisk", Reply::ok("[]"));
    for _ in 0..2 {
        assert!(rest.position_risk(None).unwrap().rows.is_empty());
    }
    let requests = mock.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[1].signature_ok, Some(true));
    assert_eq!(requests[2].signature_ok, Some(true));
    assert_eq!(requests[1].api_key.as_deref(), Some("ed25519-api-key"));

    // The same request signed with another key is refused by the server as -1022.
    let other = pem_of_seed("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb");
    let wrong =
        Credentials::ed25519(ApiKey::new("x".to_owned()), &Secret::from_string(other)).unwrap();
    let mut impostor = RestClient::new(
        Api::Futures,
        &mock.url(),
        &fast_http(),
        &RestConfig::default(),
        Some(wrong),
        Arc::new(clock.clone()),
    )
    .unwrap();
    impostor.sync_time(Priority::Normal).unwrap();
    let error = impostor.position_risk(None).unwrap_err();
    assert_eq!(
        error.api(),
        Some(&feed::rest::ApiError::BadCredentials { code: -1022 }),
        "{error:?}"
    );
}
