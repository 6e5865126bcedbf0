//! `robsond decode`: raw Binance frames or REST bodies on stdin, one per line, each printed as
//! one JSON line: the engine events it parses to, or an error naming what was wrong. It never
//! stops on a bad line, so a capture with one broken frame still decodes in full.

use std::io::{BufRead, Write};

use engine::types::{AccountId, Symbol, Venue};
use feed::wire::{Asset, Connection, FrameParser, Parsed};
use serde_json::{Value, json};

use crate::json::event_json;

/// Which connection the frames came from: frames do not say which account or isolated pair
/// they belong to, so the parser has to be told.
pub struct DecodeOptions {
    pub venue: Venue,
    pub margin_symbol: Option<Symbol>,
    pub quote: Asset,
}

/// Decodes every line; returns (lines, errors).
pub fn decode_lines(
    input: impl BufRead,
    mut output: impl Write,
    options: &DecodeOptions,
) -> std::io::Result<(u64, u64)> {
    let market = FrameParser::new(Connection::market(options.venue));
    let user = match (options.venue, options.margin_symbol) {
        (Venue::Usdm, _) => Connection::usdm_user(AccountId(0)),
        (Venue::Margin, symbol) => Connection::isolated_margin_user(
            AccountId(0),
            symbol.unwrap_or_else(|| Symbol::new(b"BTCUSDT").expect("a valid symbol")),
            options.quote,
        ),
    };
    let mut parsers = [FrameParser::new(user), market];
    let (mut lines, mut errors) = (0, 0);
    for (n, line) in input.split(b'\n').enumerate() {
        let mut bytes = line?;
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        lines += 1;
        let value = decode_one(&mut parsers, &bytes, n + 1, options.venue);
        if value.get("error").is_some() {
            errors += 1;
        }
        writeln!(output, "{value}")?;
    }
    Ok((lines, errors))
}

fn decode_one(parsers: &mut [FrameParser; 2], bytes: &[u8], line: usize, venue: Venue) -> Value {
    let mut first_error = None;
    for parser in parsers.iter_mut() {
        let mut copy = bytes.to_vec();
        let mut events = Vec::new();
        match parser.parse(&mut copy, |e| events.push(event_json(&e))) {
            Ok(Parsed::Events { kind, event_ms, .. }) => {
                return json!({"line": line, "kind": format!("{kind:?}"), "event_ms": event_ms, "events": events});
            }
            Ok(Parsed::Control(control)) => {
                return json!({"line": line, "control": format!("{control:?}")});
            }
            Ok(Parsed::Ignored(kind)) => {
                return json!({"line": line, "kind": format!("{kind:?}"), "ignored": true});
            }
            Err(e) => {
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    if let Some(value) = rest_body(bytes, line, venue) {
        return value;
    }
    json!({"line": line, "error": first_error.unwrap_or_else(|| "unrecognised".to_owned())})
}

/// A REST body parser, as one JSON line if the body is its kind.
type BodyDecoder<'a> = dyn Fn(&mut [u8]) -> Option<Value> + 'a;

/// REST bodies: tried after the frame parsers, by shape.
fn rest_body(bytes: &[u8], line: usize, venue: Venue) -> Option<Value> {
    use feed::rest;
    let try_parse = |f: &&BodyDecoder<'_>| f(&mut bytes.to_vec());
    let attempts: [&BodyDecoder<'_>; 5] = [
        &|b| {
            rest::parse_order(b).ok().map(|o| json!({"rest": "order", "detail": format!("{o:?}")}))
        },
        &|b| {
            rest::parse_position_risk(b).ok().map(|p| {
                let events: Vec<Value> =
                    p.snapshots().map(|s| event_json(&s.event(AccountId(0)))).collect();
                json!({"rest": "positionRisk", "events": events, "skipped": p.skipped_symbols})
            })
        },
        &|b| {
            rest::parse_exchange_info(b, venue)
                .ok()
                .map(|i| json!({"rest": "exchangeInfo", "detail": format!("{i:?}")}))
        },
        &|b| rest::parse_server_time(b).ok().map(|t| json!({"rest": "serverTime", "server_ms": t})),
        &|b| {
            rest::parse_isolated_margin_account(b)
                .ok()
                .map(|a| json!({"rest": "isolatedMarginAccount", "detail": format!("{a:?}")}))
        },
    ];
    attempts.iter().find_map(try_parse).map(|mut v| {
        v["line"] = json!(line);
        v
    })
}
