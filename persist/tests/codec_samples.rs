//! The event log's encoding: every variant round-trips, old versions keep decoding, and bad
//! bytes are refused by name.
//!
//! `samples/v1.records` holds one record of every variant as version 1 first wrote it (a u32
//! little-endian length, then the record). It is checked in and never regenerated: if this test
//! fails after a change to the codec, the change broke the reading of existing journals. Only a
//! new variant is appended to it (run with `PERSIST_APPEND_SAMPLES=1` to append the variants
//! the file lacks, then commit the longer file).

use engine::events::{
    ArmParams, ArmRejection, CloseProblem, CloseReason, ClosedBy, EntryRejection, FeedKind,
    FeedState, FeedStream, Journal, OrderIntent, OrderStatus, OrderUpdate, RejectKind,
};
use engine::signal::Cross;
use engine::types::{
    AccountId, ClientOrderId, MarketKey, Modality, OrderPurpose, OrderSide, OrderTag, PositionId,
    PositionKey, Side, Symbol, Venue,
};
use engine::{Amount, Nanos, Price, Qty, Ratio, Record};
use persist::codec::{DecodeError, decode, encode, kind};
use proptest::prelude::*;

const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/samples/v1.records");

fn key(symbol: &str, venue: Venue, side: Side) -> PositionKey {
    PositionKey {
        account: AccountId(7),
        venue,
        symbol: Symbol::new(symbol.as_bytes()).unwrap(),
        side,
    }
}

fn cid(position: u64, purpose: OrderPurpose) -> ClientOrderId {
    ClientOrderId::new(OrderTag {
        modality: Modality::Core,
        purpose,
        position: PositionId(position),
        sequence: 3,
    })
}

fn update(status: OrderStatus) -> OrderUpdate {
    OrderUpdate {
        account: AccountId(7),
        venue: Venue::Margin,
        symbol: Symbol::new(b"ETHUSDT").unwrap(),
        cid: ClientOrderId::from_wire(b"web_8f3c2a11d0e94b6f").unwrap(),
        status,
        cum_qty: Qty::from_units(123_456_789),
        avg_price: Price::from_units(312_345_000_000),
        exchange_ms: 1_764_000_000_123,
    }
}

/// One of every variant (and of every status), with values that exercise signs, big numbers
/// and options both ways.
fn every_variant() -> Vec<Journal> {
    let btc_long = key("BTCUSDT", Venue::Usdm, Side::Long);
    let eth_short = key("ETHUSDT", Venue::Margin, Side::Short);
    let mut all = vec![
        Journal::Armed {
            id: PositionId(1),
            key: btc_long,
            params: ArmParams {
                capital: Some(Amount::from_units(1_000_000_000_000)),
                risk: Some(Ratio::from_units(1_000_000)),
                technical_stop: None,
                ma_fast: Some(9),
                ma_slow: Some(21),
            },
        },
        Journal::Armed { id: PositionId(2), key: eth_short, params: ArmParams::default() },
        Journal::ArmRejected { key: btc_long, reason: ArmRejection::AlreadyArmed },
        Journal::ArmRejected { key: eth_short, reason: ArmRejection::BadTechnicalStop },
        Journal::Disarmed { id: PositionId(2) },
        Journal::EntrySignal {
            id: PositionId(1),
            cross: Cross::Up,
            price: Price::from_units(9_512_345_678_901),
        },
        Journal::EntrySignal { id: PositionId(1), cross: Cross::Down, price: Price::from_units(1) },
        Journal::EntryBlocked { id: PositionId(1), holder: Some(Modality::SafetyNet) },
        Journal::EntryBlocked { id: PositionId(1), holder: None },
        Journal::EntrySuppressed { id: PositionId(1) },
        Journal::EntryRejected { id: PositionId(1), reason: EntryRejection::BelowMinNotional },
        Journal::OrderSent {
            intent: OrderIntent {
                cid: cid(1, OrderPurpose::Entry),
                key: btc_long,
                order_side: OrderSide::Buy,
                qty: Qty::from_units(1_000_000),
                purpose: OrderPurpose::Entry,
                modality: Modality::Core,
            },
            reason: None,
        },
        Journal::OrderSent {
            intent: OrderIntent {
                cid: cid(1, OrderPurpose::Close),
                key: btc_long,
                order_side: OrderSide::Sell,
                qty: Qty::from_units(1_000_000),
                purpose: OrderPurpose::Close,
                modality: Modality::SafetyNet,
            },
            reason: Some(CloseReason::Retry),
        },
        Journal::QuerySent { id: PositionId(1), cid: cid(1, OrderPurpose::Close) },
        Journal::OrderIgnored { update: update(OrderStatus::Filled) },
        Journal::PositionOpened {
            id: PositionId(1),
            key: btc_long,
            qty: Qty::from_units(1_000_000),
            entry: Price::from_units(9_500_000_000_000),
            stop: Price::from_units(9_400_000_000_000),
            span: Price::from_units(100_000_000_000),
        },
        Journal::PositionDetected {
            id: PositionId(u64::MAX),
            key: eth_short,
            qty: Qty::from_units(i64::MAX),
            entry: Price::from_units(312_345_000_000),
            from: Some(PositionId(1)),
        },
        Journal::PositionDetected {
            id: PositionId(3),
            key: eth_short,
            qty: Qty::from_units(5),
            entry: Price::from_units(1),
            from: None,
        },
        Journal::PositionUpdated {
            id: PositionId(3),
            qty: Qty::from_units(4),
            entry: Price::from_units(2),
        },
        Journal::SafetyStopSet {
            id: PositionId(3),
            stop: Price::from_units(318_591_900_000),
            pct: Ratio::from_units(2_000_000),
        },
        Journal::StopMoved {
            id: PositionId(1),
            from: Price::from_units(9_400_000_000_000),
            to: Price::from_units(9_500_000_000_000),
            level: -2,
        },
        Journal::StopTriggered {
            id: PositionId(1),
            trigger: Price::from_units(9_499_900_000_000),
            stop: Price::from_units(9_500_000_000_000),
        },
        Journal::CloseBlocked { id: PositionId(3), problem: CloseProblem::Dust },
        Journal::CloseBlocked { id: PositionId(3), problem: CloseProblem::Refused },
        Journal::CloseDeferred { id: PositionId(3), reason: CloseReason::Flatten },
        Journal::PositionClosed { id: PositionId(1), by: ClosedBy::OwnOrder },
        Journal::PositionClosed { id: PositionId(3), by: ClosedBy::Dust },
        Journal::DustIgnored { key: eth_short, qty: Qty::from_units(3) },
        Journal::SnapshotIgnored { key: btc_long, exchange_ms: 1_764_000_000_000 },
        Journal::Halted { flatten: true },
        Journal::Halted { flatten: false },
        Journal::Resumed,
        Journal::LeaseChanged { held: true },
        Journal::PriceStale {
            market: MarketKey { venue: Venue::Usdm, symbol: Symbol::new(b"1000SATSUSDT").unwrap() },
        },
        Journal::PriceFresh {
            market: MarketKey { venue: Venue::Margin, symbol: Symbol::new(b"BTCUSDT").unwrap() },
        },
    ];
    let statuses = [
        OrderStatus::New,
        OrderStatus::PartiallyFilled,
        OrderStatus::Filled,
        OrderStatus::Canceled,
        OrderStatus::Expired,
        OrderStatus::Rejected(RejectKind::Transient),
        OrderStatus::Rejected(RejectKind::Permanent),
        OrderStatus::Rejected(RejectKind::NothingToClose),
        OrderStatus::Unknown,
        OrderStatus::NotFound,
    ];
    all.extend(statuses.map(|s| Journal::OrderUpdated { id: PositionId(1), update: update(s) }));
    // Added after the first samples were written: appended, as the codec's rule says.
    let feed =
        |venue, kind, state| Journal::FeedChanged { stream: FeedStream { venue, kind }, state };
    all.extend([
        feed(Venue::Usdm, FeedKind::Market, FeedState::Connected),
        feed(Venue::Usdm, FeedKind::Book, FeedState::Disconnected),
        feed(Venue::Margin, FeedKind::User, FeedState::Reconnected { gap_ms: 10_250 }),
        feed(Venue::Usdm, FeedKind::Market, FeedState::Stale),
        feed(Venue::Margin, FeedKind::Market, FeedState::Fresh),
    ]);
    all
}

fn records(events: Vec<Journal>) -> Vec<Record> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| Record {
            seq: 1 + i as u64 * 1_000_003,
            at: Nanos(1_764_000_000_000_000_000 + i as u64),
            event,
        })
        .collect()
}

fn read_samples() -> Vec<Vec<u8>> {
    let bytes = std::fs::read(SAMPLES).expect("the checked-in samples");
    let mut rest = bytes.as_slice();
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<4>().expect("length prefix");
        let len = u32::from_le_bytes(*len) as usize;
        out.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    out
}

#[test]
fn every_variant_as_first_written_still_decodes() {
    let expected = records(every_variant());
    if std::env::var_os("PERSIST_APPEND_SAMPLES").is_some() {
        let have = std::fs::read(SAMPLES).map(|_| read_samples().len()).unwrap_or(0);
        let mut file = std::fs::read(SAMPLES).unwrap_or_default();
        for record in &expected[have..] {
            let mut payload = Vec::new();
            encode(record, &mut payload);
            file.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            file.extend_from_slice(&payload);
        }
        std::fs::write(SAMPLES, file).unwrap();
    }
    let samples = read_samples();
    assert_eq!(samples.len(), expected.len(), "one sample per constructed record");
    let mut kinds = std::collections::BTreeSet::new();
    for (bytes, want) in samples.iter().zip(&expected) {
        assert_eq!(decode(bytes).as_ref(), Ok(want));
        // Version 1 is still what is written: its bytes have not drifted.
        let mut again = Vec::new();
        encode(want, &mut again);
        assert_eq!(&again, bytes, "{want:?}");
        kinds.insert(kind(&want.event));
    }
    assert_eq!(kinds.len(), 28, "every variant has a sample");
}

#[test]
fn bad_bytes_are_refused_by_name() {
    let record = &records(every_variant())[0];
    let mut good = Vec::new();
    encode(record, &mut good);
    assert_eq!(decode(&[]), Err(DecodeError::Empty));
    assert_eq!(decode(&[2]), Err(DecodeError::UnknownVersion(2)));
    for cut in 1..good.len() {
        assert!(matches!(decode(&good[..cut]), Err(DecodeError::Truncated(_))), "cut at {cut}");
    }
    let mut long = good.clone();
    long.push(0);
    assert_eq!(decode(&long), Err(DecodeError::TrailingBytes(1)));
    // version, seq 1, at 1, tag 200
    assert_eq!(decode(&[1, 1, 1, 200]), Err(DecodeError::UnknownTag(200)));
    // An eleven-byte varint cannot be a u64.
    let mut overlong = vec![1];
    overlong.extend([0xff; 10]);
    overlong.push(0);
    assert_eq!(decode(&overlong), Err(DecodeError::BadValue("seq")));
    // Resumed with a bad bool where a Halted flag is expected.
    assert_eq!(decode(&[1, 1, 1, 23, 2]), Err(DecodeError::BadValue("flatten")));
    assert!(DecodeError::UnknownVersion(9).to_string().contains("newer"));
}

fn price() -> impl Strategy<Value = Price> {
    any::<i64>().prop_map(Price::from_units)
}

fn any_key() -> impl Strategy<Value = PositionKey> {
    (any::<u16>(), prop::bool::ANY, "[A-Z0-9]{1,23}", prop::bool::ANY).prop_map(
        |(a, margin, s, short)| PositionKey {
            account: AccountId(a),
            venue: if margin { Venue::Margin } else { Venue::Usdm },
            symbol: Symbol::new(s.as_bytes()).unwrap(),
            side: if short { Side::Short } else { Side::Long },
        },
    )
}

fn any_event() -> impl Strategy<Value = Journal> {
    let base = prop::sample::select(every_variant());
    // Take each variant's shape from the samples and randomise its numbers and key.
    (base, any::<u64>(), any_key(), price(), price(), any::<i64>(), "[a-zA-Z0-9_-]{1,36}").prop_map(
        |(event, id, key, p1, p2, level, wire)| {
            let id = PositionId(id);
            match event {
                Journal::Armed { params, .. } => Journal::Armed {
                    id,
                    key,
                    params: ArmParams { technical_stop: Some(p1), ..params },
                },
                Journal::StopMoved { .. } => Journal::StopMoved { id, from: p1, to: p2, level },
                Journal::PositionDetected { from, .. } => Journal::PositionDetected {
                    id,
                    key,
                    qty: Qty::from_units(p1.units()),
                    entry: p2,
                    from,
                },
                Journal::OrderIgnored { update } => Journal::OrderIgnored {
                    update: OrderUpdate {
                        cid: ClientOrderId::from_wire(wire.as_bytes()).unwrap(),
                        cum_qty: Qty::from_units(level),
                        avg_price: p1,
                        ..update
                    },
                },
                Journal::SnapshotIgnored { .. } => {
                    Journal::SnapshotIgnored { key, exchange_ms: id.0 }
                }
                other => other,
            }
        },
    )
}

proptest! {
    #[test]
    fn records_round_trip(event in any_event(), seq in any::<u64>(), at in any::<u64>()) {
        let record = Record { seq, at: Nanos(at), event };
        let mut bytes = Vec::new();
        encode(&record, &mut bytes);
        prop_assert_eq!(decode(&bytes), Ok(record));
    }
}
