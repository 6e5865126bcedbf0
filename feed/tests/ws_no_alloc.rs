//! What reading a frame costs in allocations, in steady state (DESIGN.md section 7).
//!
//! The server floods one connection with the documented markPrice frame in the combined
//! envelope, one WebSocket message per write (so one TLS record per message on wss, as a real
//! server pushing events produces), with a ping every 500 frames. The client runs on a real
//! `mio::Poll`; the counting allocator is armed on this thread around every call into the client
//! (`on_ready`, `on_timer`, `next_deadline`) — reading, copying into the connection's buffer,
//! answering pings, the timers — and around the sink, which parses each frame in place with
//! `FrameParser`. Polling itself and the server's threads are not counted.
//!
//! Measured after a warm-up (the first frames size tungstenite's read buffer):
//! - `ws://`: zero allocations per frame, asserted.
//! - `wss://`: rustls 0.23's buffered API copies each received record's plaintext into a new
//!   `Vec` (`take_received_plaintext` → `Payload::into_vec`): one allocation of the record's
//!   plaintext size (249 bytes here: the 4-byte WebSocket header and the 245-byte message) per
//!   record received, one per record sent (our pongs, 33 bytes), and, when a burst of more than
//!   4 KiB arrives at once, a grow and a shrink of rustls's record buffer (`DeframerVecBuffer::
//!   prepare_read` shrinks it back to 4 KiB whenever it empties). Measured: 1.004 to 1.03
//!   allocations per frame under this flood; a trickle of single records stays at 1.00. That is
//!   DESIGN.md's known exemption; the test asserts the figure stays within those bounds.
//!
//! Set `NO_ALLOC_TRACE=1` to print a backtrace for every allocation counted.

mod ws_common;

use std::time::{Duration, Instant};

use engine::types::Venue;
use feed::wire::{Connection, FrameParser, Parsed};
use feed::ws::{ClientOptions, ConnId, WsClient, WsConfig, WsEvent, WsSink};
use mio::{Events, Poll};
use testkit::{CountingAlloc, armed_allocations, set_armed, trace_from_env};
use ws_common::*;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// The armed count is one counter for every armed thread: the two measurements must not
/// overlap.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const WARM: u64 = 2_000;
const MEASURED: u64 = 12_000;
const PING_EVERY: u64 = 500;

struct CountingSink {
    parser: FrameParser,
    frames: u64,
    marks: u64,
    misparsed: u64,
    events: u64,
    last_event: Option<WsEvent>,
    /// The allocation count when the warm-up ended and when the measured frames were read:
    /// taken inside the sink, since one `on_ready` can read thousands of frames.
    start: Option<u64>,
    end: Option<u64>,
}

impl WsSink for CountingSink {
    fn frame(&mut self, _: ConnId, frame: &mut [u8], _: Instant) {
        self.frames += 1;
        match self.parser.parse(frame, |_| {}) {
            Ok(Parsed::Events { count: 1, .. }) => self.marks += 1,
            _ => self.misparsed += 1,
        }
        if self.frames == WARM {
            self.start = Some(armed_allocations());
        }
        if self.frames == WARM + MEASURED {
            self.end = Some(armed_allocations());
        }
    }

    fn event(&mut self, event: WsEvent) {
        self.events += 1;
        self.last_event = Some(event);
    }
}

struct Measured {
    frames: u64,
    allocations: u64,
    pongs: usize,
}

fn measure(tls: Option<&TestTls>) -> Measured {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let server = match tls {
        Some(tls) => Server::tls(tls, Behaviour::default()),
        None => Server::plain(Behaviour::default()),
    };
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(64);
    let options =
        ClientOptions { max_connections: 2, extra_ca_pem: tls.map(|t| t.ca_path.clone()) };
    let mut client = WsClient::new(poll.registry(), 0, options).unwrap();
    let scheme = if tls.is_some() { "wss://localhost" } else { "ws://127.0.0.1" };
    let base = format!("{scheme}:{}", server.port());
    // Staleness and pings armed, as in production, with intervals the flood keeps quiet.
    let cfg = WsConfig { stale_after: Some(Duration::from_secs(5)), ..WsConfig::usdm_market() };
    let stream = "btcusdt@markPrice";
    client.open_streams(&base, &[stream], &cfg, Instant::now()).unwrap();
    let mut sink = CountingSink {
        parser: FrameParser::new(Connection::market(Venue::Usdm)),
        frames: 0,
        marks: 0,
        misparsed: 0,
        events: 0,
        last_event: None,
        start: None,
        end: None,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut flooding = false;
    while sink.end.is_none() {
        assert!(Instant::now() < deadline, "stuck at {} frames", sink.frames);
        if !flooding && matches!(sink.last_event, Some(WsEvent::Connected { .. })) {
            server.command(
                1,
                Command::Flood {
                    stream: stream.into(),
                    frames: WARM + MEASURED + 1_000,
                    ping_every: PING_EVERY,
                },
            );
            flooding = true;
        }
        poll.poll(&mut events, Some(Duration::from_millis(5))).unwrap();
        for event in events.iter() {
            set_armed(true);
            client.on_ready(event, Instant::now(), &mut sink);
            set_armed(false);
        }
        set_armed(true);
        client.on_timer(Instant::now(), &mut sink);
        let next = client.next_deadline();
        set_armed(false);
        assert!(next.is_some());
    }
    let allocations = sink.end.unwrap() - sink.start.unwrap();
    let frames = MEASURED;
    assert_eq!(sink.misparsed, 0, "every frame parsed to one mark price");
    assert_eq!(sink.marks, sink.frames);
    assert_eq!(sink.events, 1, "only Connected: {:?}", sink.last_event);
    assert!(sink.frames >= WARM + MEASURED);
    // The flood's pings were answered (the pong path ran while measured). The server reads
    // them once its flood is written.
    let is_pong = |s: &Seen| matches!(s, Seen::Pong { payload, .. } if payload == b"flood");
    let expected = ((WARM + MEASURED) / PING_EVERY) as usize;
    while server.log().iter().filter(|s| is_pong(s)).count() < expected {
        assert!(Instant::now() < deadline, "pongs missing: {:?}", server.log().len());
        poll.poll(&mut events, Some(Duration::from_millis(5))).unwrap();
        for event in events.iter() {
            client.on_ready(event, Instant::now(), &mut sink);
        }
        client.on_timer(Instant::now(), &mut sink);
    }
    let pongs = MEASURED as usize / PING_EVERY as usize;
    Measured { frames, allocations, pongs }
}

#[test]
fn reading_frames_allocates_nothing_on_plain_ws() {
    trace_from_env();
    // The control: an armed allocation is counted.
    let before = armed_allocations();
    set_armed(true);
    std::hint::black_box(Box::new(1u64));
    set_armed(false);
    assert_eq!(armed_allocations() - before, 1, "the counting allocator does not count");

    let m = measure(None);
    println!(
        "ws://: {} frames, {} pongs, {} allocations ({:.4} per frame)",
        m.frames,
        m.pongs,
        m.allocations,
        m.allocations as f64 / m.frames as f64
    );
    assert_eq!(m.allocations, 0, "NO_ALLOC_TRACE=1 shows where");
}

#[test]
fn reading_frames_over_tls_allocates_once_per_record() {
    trace_from_env();
    let tls = test_tls(&["localhost"]);
    let m = measure(Some(&tls));
    println!(
        "wss://: {} frames (one TLS record each), {} pongs, {} allocations ({:.4} per frame)",
        m.frames,
        m.pongs,
        m.allocations,
        m.allocations as f64 / m.frames as f64
    );
    // rustls: one per record received (each frame, each ping), one per record sent (pongs),
    // and at most a grow and a shrink of its record buffer per 4 KiB read (16 frames).
    let records = m.frames + 2 * m.pongs as u64;
    assert!(m.allocations >= m.frames, "rustls allocates per record: {}", m.allocations);
    assert!(
        m.allocations <= records + m.frames / 8 + 16,
        "more than rustls's per-record figure: {} for {} frames",
        m.allocations,
        m.frames
    );
}
