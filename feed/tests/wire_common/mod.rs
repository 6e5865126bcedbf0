//! Shared by the `wire_*` test binaries: fixture loading and a parse that collects events.

#![allow(dead_code)]

use engine::Event;
use feed::wire::{Connection, FrameError, FrameParser, Parsed};

/// The fixture directory: `shared/` sits beside the repository, here and in CI.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/binance/");

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{FIXTURES}{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading fixture {path}: {e}"))
}

pub fn fixture_str(name: &str) -> String {
    String::from_utf8(fixture(name)).expect("fixtures are UTF-8")
}

/// Parses a copy of `frame` (parsing happens in place) and returns what came out.
pub fn parse_with(
    parser: &mut FrameParser,
    frame: &[u8],
) -> (Result<Parsed, FrameError>, Vec<Event>) {
    let mut buf = frame.to_vec();
    let mut events = Vec::new();
    let result = parser.parse(&mut buf, |e| events.push(e));
    // All or nothing, and the count tells the truth.
    match result {
        Ok(Parsed::Events { count, .. }) => assert_eq!(count as usize, events.len()),
        _ => assert!(events.is_empty(), "{result:?} came with events {events:?}"),
    }
    (result, events)
}

pub fn parse(conn: Connection, frame: &[u8]) -> (Result<Parsed, FrameError>, Vec<Event>) {
    parse_with(&mut FrameParser::new(conn), frame)
}

/// The documented combined-stream envelope around a raw payload.
pub fn combined(stream: &str, payload: &str) -> String {
    format!(r#"{{"stream":"{stream}","data":{payload}}}"#)
}

/// The spot WebSocket API's user-data envelope around a raw event.
pub fn wsapi_event(subscription: u64, payload: &str) -> String {
    format!(r#"{{"subscriptionId":{subscription},"event":{payload}}}"#)
}
