//! exchangeInfo fixtures to the exact `SymbolRules` and rate limits, in any filter order, with
//! type drift, and with the venue differences of BINANCE.md §4.

use engine::{Amount, Price, Qty, Symbol, SymbolRules, Venue};
use feed::rest::{
    BodyError, ExchangeInfo, Limit, LimitKind, SymbolInfo, parse_exchange_info, parse_filters,
};
use simd_json::OwnedValue;
use simd_json::prelude::{MutableObject, ValueAsMutArray, Writable};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../../shared/fixtures/binance/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn rules(
    tick: &str,
    min_price: &str,
    step: &str,
    min_qty: &str,
    max_qty: &str,
    notional: &str,
) -> SymbolRules {
    SymbolRules {
        tick: Price::lit(tick),
        min_price: Price::lit(min_price),
        step: Qty::lit(step),
        min_qty: Qty::lit(min_qty),
        max_qty: Qty::lit(max_qty),
        min_notional: Amount::lit(notional),
    }
}

const MIN: u64 = 60_000;

fn limit(kind: LimitKind, window_ms: u64, max: u32) -> Limit {
    Limit { kind, window_ms, max }
}

/// The same document with every symbol's filter array reversed: filters are keyed, not ordered.
fn reversed_filters(name: &str) -> Vec<u8> {
    let mut bytes = fixture(name);
    let mut root: OwnedValue = simd_json::to_owned_value(&mut bytes).unwrap();
    let symbols = root.get_mut("symbols").and_then(|s| s.as_array_mut()).unwrap();
    for symbol in symbols.iter_mut() {
        symbol.get_mut("filters").and_then(|f| f.as_array_mut()).unwrap().reverse();
    }
    root.encode().into_bytes()
}

fn check(name: &str, venue: Venue, expected: &ExchangeInfo) {
    let info = parse_exchange_info(&mut fixture(name), venue).unwrap();
    assert_eq!(&info, expected, "{name}");
    let info = parse_exchange_info(&mut reversed_filters(name), venue).unwrap();
    assert_eq!(info.symbols, expected.symbols, "{name}, filters reversed");
}

#[test]
fn spot_btcusdt_real_response() {
    check(
        "exchangeInfo_spot_BTCUSDT_excerpt.json",
        Venue::Margin,
        &ExchangeInfo {
            server_time_ms: Some(1_633_998_511_098),
            rate_limits: vec![
                limit(LimitKind::RequestWeight, MIN, 1200),
                limit(LimitKind::Orders, 10_000, 50),
                limit(LimitKind::Orders, 86_400_000, 160_000),
                limit(LimitKind::RawRequests, 5 * MIN, 6100),
            ],
            symbols: vec![SymbolInfo {
                symbol: Symbol::lit("BTCUSDT"),
                trading: true,
                // MARKET_LOT_SIZE has step and min disabled ("0.00000000"): LOT_SIZE's apply, but
                // its maxQty 100.05381873 is set and stricter than LOT_SIZE's 9000. MIN_NOTIONAL
                // applies to market orders (applyToMarket true).
                rules: rules("0.01", "0.01", "0.00001", "0.00001", "100.05381873", "10"),
            }],
            skipped: vec![],
        },
    );
}

#[test]
fn futures_btcusdt_real_response() {
    check(
        "exchangeInfo_futures_BTCUSDT_excerpt.json",
        Venue::Usdm,
        &ExchangeInfo {
            server_time_ms: Some(1_626_858_243_909),
            rate_limits: vec![
                limit(LimitKind::RequestWeight, MIN, 2400),
                limit(LimitKind::Orders, MIN, 1200),
                limit(LimitKind::Orders, 10_000, 300),
            ],
            symbols: vec![SymbolInfo {
                symbol: Symbol::lit("BTCUSDT"),
                trading: true,
                // Futures grids start at minPrice (556.72), kept as is; MIN_NOTIONAL's key is
                // `notional`.
                rules: rules("0.01", "556.72", "0.001", "0.001", "1000", "5"),
            }],
            skipped: vec![],
        },
    );
}

#[test]
fn futures_doc_example() {
    check(
        "futures_exchangeInfo_doc.json",
        Venue::Usdm,
        &ExchangeInfo {
            server_time_ms: Some(1_565_613_908_500),
            rate_limits: vec![
                limit(LimitKind::RequestWeight, MIN, 2400),
                limit(LimitKind::Orders, MIN, 1200),
            ],
            symbols: vec![SymbolInfo {
                symbol: Symbol::lit("BLZUSDT"),
                trading: true,
                // MARKET_LOT_SIZE's maxQty 590119 is stricter than LOT_SIZE's 10000000.
                rules: rules("0.0001", "0.0001", "1", "1", "590119", "5.0"),
            }],
            skipped: vec![],
        },
    );
}

#[test]
fn spot_filter_examples_from_filters_md() {
    let rules_found =
        parse_filters(&mut fixture("spot_exchangeInfo_filters_examples.json"), Venue::Margin)
            .unwrap();
    // MIN_NOTIONAL 0.001 applies to market orders; NOTIONAL 10 has applyMinToMarket false.
    assert_eq!(rules_found, rules("0.000001", "0.000001", "0.001", "0.001", "100000", "0.001"));
}

fn filters_body(filters: &str) -> Vec<u8> {
    format!("[{filters}]").into_bytes()
}

const PRICE: &str =
    r#"{"filterType":"PRICE_FILTER","minPrice":"0.015","maxPrice":"0","tickSize":"0.01"}"#;
const LOT: &str = r#"{"filterType":"LOT_SIZE","minQty":"0.0015","maxQty":"0","stepSize":"0.001"}"#;

#[test]
fn spot_lifts_an_off_grid_minimum_onto_the_zero_based_grid() {
    let margin =
        parse_filters(&mut filters_body(&format!("{PRICE},{LOT}")), Venue::Margin).unwrap();
    assert_eq!(margin, rules("0.01", "0.02", "0.001", "0.002", "0", "0"));
    // Futures grids are anchored at the minimum itself.
    let usdm = parse_filters(&mut filters_body(&format!("{PRICE},{LOT}")), Venue::Usdm).unwrap();
    assert_eq!(usdm, rules("0.01", "0.015", "0.001", "0.0015", "0", "0"));
}

#[test]
fn market_lot_size_combines_field_by_field() {
    // MARKET_LOT_SIZE with a coarser step and a larger minimum wins on both; its zero maxQty is
    // disabled, so LOT_SIZE's maximum stays.
    let market =
        r#"{"filterType":"MARKET_LOT_SIZE","minQty":"0.01","maxQty":"0","stepSize":"0.01"}"#;
    let lot = r#"{"filterType":"LOT_SIZE","minQty":"0.001","maxQty":"50","stepSize":"0.001"}"#;
    let found =
        parse_filters(&mut filters_body(&format!("{market},{PRICE},{lot}")), Venue::Usdm).unwrap();
    assert_eq!(found, rules("0.01", "0.015", "0.01", "0.01", "50", "0"));
}

#[test]
fn notional_filters_count_only_where_they_apply_to_market_orders() {
    let body = |filters: &str| filters_body(&format!("{PRICE},{LOT},{filters}"));
    let found =
        |filters: &str| parse_filters(&mut body(filters), Venue::Margin).unwrap().min_notional;
    let notional = r#"{"filterType":"NOTIONAL","minNotional":"7","applyMinToMarket":true,"maxNotional":"9000000","applyMaxToMarket":false}"#;
    assert_eq!(found(notional), Amount::lit("7"));
    // Type drift: a boolean as a string, a decimal as a number.
    let drift = r#"{"filterType":"NOTIONAL","minNotional":7,"applyMinToMarket":"false"}"#;
    assert_eq!(found(drift), Amount::ZERO);
    let old = r#"{"filterType":"MIN_NOTIONAL","minNotional":"3","applyToMarket":false}"#;
    assert_eq!(found(old), Amount::ZERO);
    // Both apply: the larger binds.
    let both = format!(
        r#"{notional},{{"filterType":"MIN_NOTIONAL","minNotional":"12","applyToMarket":true}}"#
    );
    assert_eq!(found(&both), Amount::lit("12"));
}

#[test]
fn disabled_and_drifted_values() {
    let price =
        r#"{"filterType":"PRICE_FILTER","minPrice":0,"maxPrice":0,"tickSize":"0.00000000"}"#;
    let lot =
        r#"{"filterType":"LOT_SIZE","minQty":"0","maxQty":"0","stepSize":0,"extra":"ignored"}"#;
    let unknown = r#"{"filterType":"SOMETHING_NEW","x":1}"#;
    let found =
        parse_filters(&mut filters_body(&format!("{unknown},{price},{lot}")), Venue::Margin)
            .unwrap();
    // A disabled tick or step means every 1e-8, the engine's unrestricted grid.
    assert_eq!(found, SymbolRules::UNRESTRICTED);
}

#[test]
fn a_symbol_that_cannot_be_used_is_skipped_not_fatal() {
    let good = format!(r#"{{"symbol":"ETHUSDT","status":"BREAK","filters":[{PRICE},{LOT}]}}"#);
    let no_lot = format!(r#"{{"symbol":"XRPUSDT","status":"TRADING","filters":[{PRICE}]}}"#);
    let foreign =
        format!(r#"{{"symbol":"币安人生USDT","status":"TRADING","filters":[{PRICE},{LOT}]}}"#);
    let negative = r#"{"symbol":"NEGUSDT","filters":[{"filterType":"PRICE_FILTER","tickSize":"-0.01"},{"filterType":"LOT_SIZE","stepSize":"1"}]}"#;
    let body = format!(
        r#"{{"rateLimits":[{{"rateLimitType":"NEW_KIND","interval":"MINUTE","intervalNum":1,"limit":5}}],"symbols":[{good},{no_lot},{foreign},{negative}]}}"#
    );
    let info = parse_exchange_info(&mut body.into_bytes(), Venue::Margin).unwrap();
    assert_eq!(info.server_time_ms, None);
    assert!(info.rate_limits.is_empty(), "unknown limit types are left out");
    assert_eq!(info.symbols.len(), 1);
    assert_eq!(info.symbols[0].symbol, Symbol::lit("ETHUSDT"));
    assert!(!info.symbols[0].trading);
    let skipped: Vec<(&str, BodyError)> =
        info.skipped.iter().map(|s| (s.name.as_str(), s.error)).collect();
    assert_eq!(
        skipped,
        vec![
            ("XRPUSDT", BodyError::Missing("LOT_SIZE")),
            ("币安人生USDT", BodyError::BadValue("symbol")),
            ("NEGUSDT", BodyError::BadValue("tickSize")),
        ]
    );
}

#[test]
fn malformed_documents_are_errors() {
    assert_eq!(parse_exchange_info(&mut b"".to_vec(), Venue::Usdm), Err(BodyError::NotJson));
    assert_eq!(
        parse_exchange_info(&mut b"[]".to_vec(), Venue::Usdm),
        Err(BodyError::Shape("exchangeInfo"))
    );
    assert_eq!(
        parse_exchange_info(&mut b"{}".to_vec(), Venue::Usdm),
        Err(BodyError::Missing("symbols"))
    );
    assert_eq!(parse_filters(&mut b"{}".to_vec(), Venue::Usdm), Err(BodyError::Shape("filters")));
    assert_eq!(
        parse_filters(&mut b"[1]".to_vec(), Venue::Usdm),
        Err(BodyError::Shape("filters[]"))
    );
    assert_eq!(
        parse_filters(&mut b"[]".to_vec(), Venue::Usdm),
        Err(BodyError::Missing("PRICE_FILTER"))
    );
}
