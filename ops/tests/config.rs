//! Configuration: environment over file over defaults, every bad value named by its key, and
//! secrets never printed.

use std::collections::BTreeMap;
use std::io::Write;

use robsond::config::{Config, ConfigError, KEYS, Signing, Sources};

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::load(&Sources::new(env(pairs), None)?)
}

fn load_err(pairs: &[(&str, &str)]) -> ConfigError {
    load(pairs).expect_err("a bad configuration")
}

#[test]
fn defaults_are_binance_production_and_no_credentials() {
    let config = load(&[]).unwrap();
    assert!(config.credentials.is_none());
    assert!(config.venues.usdm && !config.venues.margin);
    assert_eq!(config.endpoints.usdm_rest, "https://fapi.binance.com");
    assert_eq!(config.endpoints.usdm_ws, "wss://fstream.binance.com");
    assert_eq!(config.endpoints.spot_wsapi, "wss://ws-api.binance.com:443/ws-api/v3");
    assert_eq!(config.safety_net_pct, engine::Ratio::percent(2));
    assert_eq!(config.http_addr.to_string(), "127.0.0.1:8080");
    assert_eq!(config.reconcile_every.as_secs(), 20);
    assert!(config.api_token.is_none() && config.database_url.is_none());
}

#[test]
fn every_bad_value_names_its_key() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("ROBSON_VENUES", "spot")], "ROBSON_VENUES"),
        (&[("ROBSON_VENUES", "")], "ROBSON_VENUES"),
        (&[("ROBSON_USDM_REST_URL", "fapi.binance.com")], "ROBSON_USDM_REST_URL"),
        (&[("ROBSON_USDM_REST_URL", "http://fapi.binance.com")], "ROBSON_USDM_REST_URL"),
        (&[("ROBSON_USDM_WS_URL", "https://127.0.0.1:1")], "ROBSON_USDM_WS_URL"),
        (&[("ROBSON_SPOT_WS_URL", "ws://10.0.0.1:9443")], "ROBSON_SPOT_WS_URL"),
        (&[("ROBSON_HTTP_ADDR", "8080")], "ROBSON_HTTP_ADDR"),
        (&[("ROBSON_SAFETY_NET_PCT", "two")], "ROBSON_SAFETY_NET_PCT"),
        (&[("ROBSON_SAFETY_NET_PCT", "0")], "ROBSON_SAFETY_NET_PCT"),
        (&[("ROBSON_SAFETY_NET_PCT", "75")], "ROBSON_SAFETY_NET_PCT"),
        (&[("ROBSON_SAFETY_NET_PCT", "1.123456789")], "ROBSON_SAFETY_NET_PCT"),
        (&[("ROBSON_SYMBOLS", "BTC-USDT")], "ROBSON_SYMBOLS"),
        (&[("ROBSON_MARGIN_SYMBOLS", "BTCUSDT")], "ROBSON_MARGIN_SYMBOLS"),
        (&[("ROBSON_RECONCILE_SECS", "0")], "ROBSON_RECONCILE_SECS"),
        (&[("ROBSON_HOT_SPIN", "maybe")], "ROBSON_HOT_SPIN"),
        (&[("ROBSON_CA_FILE", "/nonexistent/ca.pem")], "ROBSON_CA_FILE"),
        (&[("ROBSON_SAFTY_NET_PCT", "2")], "ROBSON_SAFTY_NET_PCT"),
        (&[("ROBSON_VENUES_FILE", "/etc/hostname")], "ROBSON_VENUES_FILE"),
        (&[("ROBSON_CA_FILE", "/nonexistent")], "ROBSON_CA_FILE"),
        (&[("ROBSON_BINANCE_API_KEY", "abc")], "ROBSON_BINANCE_API_SECRET"),
        (&[("ROBSON_BINANCE_API_SECRET", "s3cr3t")], "ROBSON_BINANCE_API_KEY"),
        (
            &[("ROBSON_BINANCE_API_KEY", "ab c"), ("ROBSON_BINANCE_API_SECRET", "x")],
            "ROBSON_BINANCE_API_KEY",
        ),
        (
            &[("ROBSON_API_TOKEN", "t"), ("ROBSON_API_TOKEN_FILE", "/etc/hostname")],
            "ROBSON_API_TOKEN",
        ),
        (&[("ROBSON_API_TOKEN_FILE", "/nonexistent/token")], "ROBSON_API_TOKEN_FILE"),
    ];
    for (pairs, key) in cases {
        let err = load_err(pairs);
        assert_eq!(err.key, *key, "{pairs:?} → {err}");
        assert!(err.to_string().starts_with(key), "{err}");
    }
}

#[test]
fn loopback_plain_text_is_allowed_for_a_simulator() {
    let config = load(&[
        ("ROBSON_USDM_REST_URL", "http://127.0.0.1:9000/"),
        ("ROBSON_USDM_WS_URL", "ws://localhost:9001"),
        ("ROBSON_SPOT_WSAPI_URL", "ws://[::1]:9002/ws-api/v3"),
        ("ROBSON_VENUES", "both"),
        ("ROBSON_MARGIN_SYMBOLS", "btcusdt, ETHUSDT,btcusdt"),
        ("ROBSON_SAFETY_NET_PCT", "1.5"),
    ])
    .unwrap();
    assert_eq!(config.endpoints.usdm_rest, "http://127.0.0.1:9000");
    assert_eq!(config.endpoints.spot_wsapi, "ws://[::1]:9002/ws-api/v3");
    let margin: Vec<&str> = config.margin_symbols.iter().map(|s| s.as_str()).collect();
    assert_eq!(margin, ["BTCUSDT", "ETHUSDT"]);
    assert_eq!(config.safety_net_pct, engine::Ratio::from_units(1_500_000));
}

#[test]
fn the_environment_wins_over_the_file_and_the_file_over_defaults() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        file,
        "safety_net_pct = \"3\"\nsymbols = [\"BTCUSDT\", \"ETHUSDT\"]\nreconcile_secs = 30"
    )
    .unwrap();
    let sources = Sources::new(env(&[("ROBSON_SAFETY_NET_PCT", "4")]), Some(file.path())).unwrap();
    let config = Config::load(&sources).unwrap();
    assert_eq!(config.safety_net_pct, engine::Ratio::percent(4));
    assert_eq!(config.symbols.len(), 2);
    assert_eq!(config.reconcile_every.as_secs(), 30);

    let mut bad = tempfile::NamedTempFile::new().unwrap();
    writeln!(bad, "binance_api_secret = \"oops\"").unwrap();
    let err = Sources::new(env(&[]), Some(bad.path())).err().unwrap();
    assert_eq!(err.key, "binance_api_secret");
    assert!(!err.to_string().contains("oops"));

    let mut typo = tempfile::NamedTempFile::new().unwrap();
    writeln!(typo, "safetynet = \"2\"").unwrap();
    assert_eq!(Sources::new(env(&[]), Some(typo.path())).err().unwrap().key, "safetynet");
}

#[test]
fn secrets_come_from_files_and_never_print() {
    let dir = tempfile::tempdir().unwrap();
    let secret_path = dir.path().join("secret");
    std::fs::write(&secret_path, "hmacSECRETvalue123\n").unwrap();
    let config = load(&[
        ("ROBSON_BINANCE_API_KEY", "KeyABC123xyz"),
        ("ROBSON_BINANCE_API_SECRET_FILE", secret_path.to_str().unwrap()),
        ("ROBSON_API_TOKEN", "tokenTOKENtoken"),
        ("ROBSON_DATABASE_URL", "postgres://robson:pgPASSWORD@db/robson"),
    ])
    .unwrap();
    let credentials = config.credentials.as_ref().unwrap();
    let Signing::Hmac(secret) = &credentials.signing else { panic!("HMAC expected") };
    assert_eq!(secret.expose(), b"hmacSECRETvalue123", "the file's newline is not part of it");
    let printed = format!("{config:?}");
    for leaked in ["KeyABC123xyz", "hmacSECRETvalue123", "tokenTOKENtoken", "pgPASSWORD"] {
        assert!(!printed.contains(leaked), "{leaked} printed in {printed}");
    }
    // A bad secret file's error names the key and the path, never the content.
    std::fs::write(&secret_path, "").unwrap();
    let err = load_err(&[
        ("ROBSON_BINANCE_API_KEY", "KeyABC123xyz"),
        ("ROBSON_BINANCE_API_SECRET_FILE", secret_path.to_str().unwrap()),
    ]);
    assert_eq!(err.key, "ROBSON_BINANCE_API_SECRET_FILE");
}

#[test]
fn every_key_is_documented_in_the_readme() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let missing: Vec<&str> =
        KEYS.iter().map(|k| k.name).filter(|name| !readme.contains(&format!("`{name}`"))).collect();
    assert!(missing.is_empty(), "README lacks {missing:?}");
}
