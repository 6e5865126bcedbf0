//! `robsond decode`, the real binary: Binance's documented payloads in, one JSON line each out,
//! money as decimal strings, and a bad line reported without stopping the rest.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/binance");

/// A fixture file as one line (the files are pretty-printed).
fn fixture_line(name: &str) -> String {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect(name);
    let value: Value = serde_json::from_str(&text).expect(name);
    value.to_string()
}

fn decode(args: &[&str], input: &str) -> (Vec<Value>, bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_robsond"))
        .arg("decode")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every output line is JSON"))
        .collect();
    (lines, out.status.success(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn futures_frames_and_rest_bodies_decode_and_a_bad_line_does_not_stop_the_rest() {
    let input = [
        fixture_line("futures_markPrice.json"),
        "{\"e\":\"markPriceUpdate\",\"E\":1,\"s\":\"BTCUSDT\",\"p\":12.5}".to_owned(),
        fixture_line("futures_ACCOUNT_UPDATE.json"),
        "not json at all".to_owned(),
        fixture_line("futures_positionRisk_v3_oneway.json"),
        fixture_line("futures_ORDER_TRADE_UPDATE.json"),
    ]
    .join("\n");
    let (lines, ok, stderr) = decode(&[], &input);
    assert!(!ok, "two lines could not be decoded: the exit status says so");
    assert!(stderr.contains("6 lines, 2 not decoded"), "{stderr}");
    assert_eq!(lines.len(), 6);

    let mark = &lines[0]["events"][0];
    assert_eq!(mark["event"], "mark");
    assert_eq!(mark["symbol"], "BTCUSDT");
    assert!(mark["price"].as_str().unwrap().contains('.'), "a decimal string: {mark}");

    assert_eq!(lines[1]["line"], 2);
    assert!(lines[1]["error"].as_str().unwrap().contains('p'), "names the field: {}", lines[1]);

    let account = lines[2]["events"].as_array().unwrap();
    assert!(account.iter().any(|e| e["event"] == "position"), "{account:?}");
    assert!(lines[3]["error"].is_string());
    assert_eq!(lines[4]["rest"], "positionRisk");
    assert_eq!(lines[5]["events"][0]["event"], "order");
}

#[test]
fn margin_user_data_needs_its_pair_and_decodes() {
    let input = fixture_line("spot_executionReport.json");
    let (lines, ok, _) =
        decode(&["--venue", "margin", "--symbol", "ethbtc", "--quote", "btc"], &input);
    assert!(ok, "{lines:?}");
    let events = lines[0]["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["event"] == "order"), "{events:?}");
}
