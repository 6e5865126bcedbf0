//! Signing against every published vector, through the raw function, the keyed signer, and the
//! REST and WebSocket API builders that must reproduce each vector's payload byte for byte.

use feed::rest::{
    ApiKey, HmacSigner, Query, Secret, Signer, WsParams, percent_encode_into, sign_hmac_sha256,
};
use simd_json::OwnedValue;
use simd_json::prelude::{ValueAsArray, ValueAsScalar, ValueObjectAccess};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../../shared/fixtures/binance/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

struct Vector {
    name: String,
    secret: String,
    payload: String,
    signature: String,
}

fn vectors() -> Vec<Vector> {
    let mut bytes = fixture("signing_vectors.json");
    let root: OwnedValue = simd_json::to_owned_value(&mut bytes).unwrap();
    let text = |v: &OwnedValue, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    root.get("vectors")
        .and_then(|v| v.as_array())
        .unwrap()
        .iter()
        .map(|v| Vector {
            name: text(v, "name").unwrap(),
            secret: text(v, "secretKey").unwrap(),
            payload: text(v, "payload").unwrap(),
            signature: text(v, "signature").unwrap(),
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn pairs(payload: &str) -> Vec<(String, String)> {
    payload
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn every_vector_signs_to_its_published_signature() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 5, "the fixture has five vectors; a new one needs a look here");
    for v in &vectors {
        let raw = sign_hmac_sha256(v.secret.as_bytes(), v.payload.as_bytes());
        assert_eq!(raw.as_str(), v.signature, "{}", v.name);
        let signer = HmacSigner::new(&Secret::from_string(v.secret.clone()));
        assert_eq!(signer.sign(v.payload.as_bytes()).as_str(), v.signature, "{}", v.name);
        let mut via_trait = String::new();
        signer.sign_into(v.payload.as_bytes(), &mut via_trait);
        assert_eq!(via_trait, v.signature, "{}", v.name);
    }
}

#[test]
fn rest_builder_reproduces_every_rest_vector() {
    let mut seen = 0;
    for v in vectors().iter().filter(|v| v.name.contains("REST")) {
        seen += 1;
        let mut params = pairs(&v.payload);
        // The builder appends these two itself, last, as every REST vector has them.
        let (k_ts, ts) = params.pop().unwrap();
        let (k_rw, rw) = params.pop().unwrap();
        assert_eq!((k_rw.as_str(), k_ts.as_str()), ("recvWindow", "timestamp"), "{}", v.name);
        let mut query = Query::new();
        for (k, value) in &params {
            // Feed the builder the decoded text: it must do the encoding itself.
            query.push(k, &percent_decode(value));
        }
        let signer = HmacSigner::new(&Secret::from_string(v.secret.clone()));
        let signed = query.sign(&signer, rw.parse().unwrap(), ts.parse().unwrap());
        assert_eq!(signed.payload(), v.payload, "{}", v.name);
        assert_eq!(signed.signature(), v.signature, "{}", v.name);
        assert_eq!(signed.as_str(), format!("{}&signature={}", v.payload, v.signature));
        assert!(signed.as_str().ends_with(&format!("&signature={}", v.signature)));
    }
    assert_eq!(seen, 3);
}

#[test]
fn ws_builder_reproduces_every_websocket_vector() {
    let mut seen = 0;
    for v in vectors().iter().filter(|v| v.name.contains("WebSocket API")) {
        seen += 1;
        let all = pairs(&v.payload);
        let get = |key: &str| all.iter().find(|(k, _)| k == key).unwrap().1.clone();
        let mut params = WsParams::new();
        // Pushed in reverse: the builder must sort.
        for (k, value) in all.iter().rev() {
            if !matches!(k.as_str(), "apiKey" | "recvWindow" | "timestamp") {
                params.push(k, value);
            }
        }
        let signer = HmacSigner::new(&Secret::from_string(v.secret.clone()));
        let api_key = ApiKey::new(get("apiKey"));
        let signed = params.sign(
            &signer,
            &api_key,
            get("recvWindow").parse().unwrap(),
            get("timestamp").parse().unwrap(),
        );
        assert_eq!(signed.payload(), v.payload, "{}", v.name);
        assert_eq!(signed.signature(), v.signature, "{}", v.name);
        let keys: Vec<&str> = signed.pairs().map(|(k, _)| k).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted);
    }
    assert_eq!(seen, 2);
}

#[test]
fn ws_sign_as_is_drops_a_stray_signature_and_sorts() {
    let vector = &vectors()[2];
    let mut params = WsParams::new();
    params.push("signature", "stale");
    for (k, value) in pairs(&vector.payload).iter().rev() {
        params.push(k, value);
    }
    let signer = HmacSigner::new(&Secret::from_string(vector.secret.clone()));
    let signed = params.sign_as_is(&signer);
    assert_eq!(signed.payload(), vector.payload);
    assert_eq!(signed.signature(), vector.signature);
}

#[test]
fn percent_encoding_covers_reserved_and_non_ascii() {
    let mut out = String::new();
    percent_encode_into(r#"["BTCUSDT","BNBBTC"]"#, &mut out);
    assert_eq!(out, "%5B%22BTCUSDT%22%2C%22BNBBTC%22%5D");
    out.clear();
    percent_encode_into("a-b_c.d~e f+g/h=i&j１", &mut out);
    assert_eq!(out, "a-b_c.d~e%20f%2Bg%2Fh%3Di%26j%EF%BC%91");
    let mut query = Query::new();
    query.push("symbol", "BTCUSDT").push_u64("orderId", 26_769_564_559);
    assert_eq!(query.as_str(), "symbol=BTCUSDT&orderId=26769564559");
}

/// A base64 signer, as Ed25519 will be: REST must percent-encode its `+`, `/` and `=`.
struct FakeBase64;

impl Signer for FakeBase64 {
    fn sign_into(&self, _payload: &[u8], out: &mut String) {
        out.push_str("ab+/cd==");
    }
}

#[test]
fn a_base64_signature_is_url_encoded_on_rest_and_raw_on_ws() {
    let mut query = Query::new();
    query.push("symbol", "BTCUSDT");
    let signed = query.sign(&FakeBase64, 5000, 1);
    assert_eq!(
        signed.as_str(),
        "symbol=BTCUSDT&recvWindow=5000&timestamp=1&signature=ab%2B%2Fcd%3D%3D"
    );
    let ws = WsParams::new().sign(&FakeBase64, &ApiKey::new("k".into()), 5000, 1);
    assert_eq!(ws.signature(), "ab+/cd==");
    assert_eq!(ws.payload(), "apiKey=k&recvWindow=5000&timestamp=1");
}

#[test]
fn nothing_secret_prints() {
    let text = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
    let secret = Secret::from_string(text.to_owned());
    assert_eq!(format!("{secret:?}"), "***");
    assert_eq!(format!("{secret}"), "***");
    assert_eq!(secret.expose(), text.as_bytes());
    let signer = HmacSigner::new(&secret);
    assert!(!format!("{signer:?}").contains("Nhq"));
    let key =
        ApiKey::new("vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A".into());
    assert_eq!(format!("{key:?}"), "vmPU***");
    assert_eq!(format!("{key}"), "vmPU***");
    let mut query = Query::new();
    query.push("symbol", "LTCBTC");
    let signed = query.sign(&signer, 5000, 1_499_827_319_559);
    let shown = format!("{signed:?}");
    assert!(!shown.contains(signed.signature()), "{shown}");
    assert!(shown.ends_with("&signature=***"));
    let ws = WsParams::new().sign(&signer, &key, 5000, 1);
    let shown = format!("{ws:?}");
    assert!(!shown.contains(ws.signature()) && !shown.contains(key.as_str()), "{shown}");
}
