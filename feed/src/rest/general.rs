//! General endpoints: ping, server time, and exchangeInfo resolved into the engine's
//! `SymbolRules` and the limiter's `Limit`s.
//!
//! Filters are keyed by `filterType` in no fixed order, with fields that differ per venue
//! (BINANCE.md §4). What the engine needs is what a MARKET order must satisfy, so the lot rules
//! are the stricter of LOT_SIZE and MARKET_LOT_SIZE field by field (a zero field is disabled),
//! and the minimum notional counts only the filters that apply to market orders.

use engine::filters::{Grid, RoundMode};
use engine::{Amount, Price, Qty, Symbol, SymbolRules, Venue};
use simd_json::BorrowedValue as Value;

use super::json::{self, BodyError, Fields};
use super::limits::{Limit, LimitKind};

/// `GET /api/v3/ping`, `/fapi/v1/ping`: `{}`.
pub fn parse_ping(body: &mut [u8]) -> Result<(), BodyError> {
    let root = json::parse(body)?;
    Fields::of(&root, "ping").map(|_| ())
}

/// `GET /api/v3/time`, `/fapi/v1/time` → epoch ms.
pub fn parse_server_time(body: &mut [u8]) -> Result<u64, BodyError> {
    let root = json::parse(body)?;
    Fields::of(&root, "time")?.u64("serverTime")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SymbolInfo {
    pub symbol: Symbol,
    /// `status == "TRADING"`; anything else (BREAK, HALT, SETTLING…) takes no orders.
    pub trading: bool,
    pub rules: SymbolRules,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedSymbol {
    /// Shortened.
    pub name: String,
    pub error: BodyError,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeInfo {
    pub server_time_ms: Option<u64>,
    /// The authoritative limits, for the rate limiter; unknown types are left out.
    pub rate_limits: Vec<Limit>,
    pub symbols: Vec<SymbolInfo>,
    /// Symbols whose name or filters robsond cannot use. One odd listing must not cost the
    /// rules of every other symbol.
    pub skipped: Vec<SkippedSymbol>,
}

/// `GET /api/v3/exchangeInfo` (venue `Margin`) or `/fapi/v1/exchangeInfo` (venue `Usdm`).
pub fn parse_exchange_info(body: &mut [u8], venue: Venue) -> Result<ExchangeInfo, BodyError> {
    let root = json::parse(body)?;
    let top = Fields::of(&root, "exchangeInfo")?;
    let server_time_ms = top.opt_u64("serverTime")?;
    let mut rate_limits = Vec::new();
    for rule in top.opt_array("rateLimits")?.unwrap_or_default() {
        if let Some(limit) = limit_of(&Fields::of(rule, "rateLimits[]")?)? {
            rate_limits.push(limit);
        }
    }
    let mut symbols = Vec::new();
    let mut skipped = Vec::new();
    for entry in top.array("symbols")? {
        let fields = Fields::of(entry, "symbols[]")?;
        let name = fields.opt_str("symbol")?;
        match symbol_info(&fields, venue) {
            Ok(info) => symbols.push(info),
            Err(error) => skipped.push(SkippedSymbol { name: json::short_name(name), error }),
        }
    }
    Ok(ExchangeInfo { server_time_ms, rate_limits, symbols, skipped })
}

/// A bare `filters` array, as one symbol of exchangeInfo carries it.
pub fn parse_filters(body: &mut [u8], venue: Venue) -> Result<SymbolRules, BodyError> {
    let root = json::parse(body)?;
    rules_from_filters(json::array(&root, "filters")?, venue)
}

fn symbol_info(fields: &Fields<'_, '_>, venue: Venue) -> Result<SymbolInfo, BodyError> {
    let symbol = fields.symbol("symbol")?;
    let trading = fields.opt_str("status")? == Some("TRADING");
    let rules = rules_from_filters(fields.array("filters")?, venue)?;
    Ok(SymbolInfo { symbol, trading, rules })
}

fn limit_of(fields: &Fields<'_, '_>) -> Result<Option<Limit>, BodyError> {
    let kind = match fields.str("rateLimitType")? {
        "REQUEST_WEIGHT" => LimitKind::RequestWeight,
        "ORDERS" => LimitKind::Orders,
        "RAW_REQUESTS" => LimitKind::RawRequests,
        _ => return Ok(None),
    };
    let unit_ms: u64 = match fields.str("interval")? {
        "SECOND" => 1_000,
        "MINUTE" => 60_000,
        "HOUR" => 3_600_000,
        "DAY" => 86_400_000,
        _ => return Ok(None),
    };
    let num = fields.u64("intervalNum")?;
    let max = u32::try_from(fields.u64("limit")?).map_err(|_| BodyError::BadValue("limit"))?;
    let window_ms = num.checked_mul(unit_ms).filter(|&w| w > 0);
    Ok(window_ms.map(|window_ms| Limit { kind, window_ms, max }))
}

/// `(min, max, step)` of a LOT_SIZE-like filter, in 1e-8 units.
#[derive(Clone, Copy)]
struct Lot {
    min: i64,
    max: i64,
    step: i64,
}

fn non_negative(units: i64, field: &'static str) -> Result<i64, BodyError> {
    if units < 0 { Err(BodyError::BadValue(field)) } else { Ok(units) }
}

fn lot_of(fields: &Fields<'_, '_>) -> Result<Lot, BodyError> {
    Ok(Lot {
        min: non_negative(fields.opt_units("minQty")?.unwrap_or(0), "minQty")?,
        max: non_negative(fields.opt_units("maxQty")?.unwrap_or(0), "maxQty")?,
        step: non_negative(fields.opt_units("stepSize")?.unwrap_or(0), "stepSize")?,
    })
}

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A step both grids accept: the coarser one when one divides the other, as it always does in
/// Binance's data, else their least common multiple.
fn common_step(a: i64, b: i64) -> Result<i64, BodyError> {
    (a / gcd(a, b)).checked_mul(b).ok_or(BodyError::BadValue("stepSize"))
}

/// The smaller enabled maximum; zero (no maximum) only when neither sets one.
fn stricter_max(a: i64, b: i64) -> i64 {
    match (a, b) {
        (0, m) | (m, 0) => m,
        (a, b) => a.min(b),
    }
}

/// Resolves one symbol's filters into what a MARKET order on `venue` must satisfy.
pub fn rules_from_filters(filters: &[Value<'_>], venue: Venue) -> Result<SymbolRules, BodyError> {
    let mut price: Option<(i64, i64)> = None;
    let mut lot: Option<Lot> = None;
    let mut market_lot: Option<Lot> = None;
    let mut min_notional: i64 = 0;
    for filter in filters {
        let fields = Fields::of(filter, "filters[]")?;
        match fields.str("filterType")? {
            "PRICE_FILTER" => {
                let tick = non_negative(fields.opt_units("tickSize")?.unwrap_or(0), "tickSize")?;
                let min = non_negative(fields.opt_units("minPrice")?.unwrap_or(0), "minPrice")?;
                price = Some((tick, min));
            }
            "LOT_SIZE" => lot = Some(lot_of(&fields)?),
            "MARKET_LOT_SIZE" => market_lot = Some(lot_of(&fields)?),
            "MIN_NOTIONAL" => {
                // Futures spell it `notional` and apply it to every order (MARKET at the mark
                // price); spot's retired form says `minNotional` + `applyToMarket`.
                let (value, applies) = match fields.opt_units("notional")? {
                    Some(value) => (value, true),
                    None => (
                        fields.units("minNotional")?,
                        fields.opt_bool("applyToMarket")?.unwrap_or(true),
                    ),
                };
                if applies {
                    min_notional = min_notional.max(non_negative(value, "minNotional")?);
                }
            }
            "NOTIONAL" => {
                let value = non_negative(fields.units("minNotional")?, "minNotional")?;
                if fields.opt_bool("applyMinToMarket")?.unwrap_or(true) {
                    min_notional = min_notional.max(value);
                }
            }
            _ => {}
        }
    }
    // Every Binance symbol has both; without them robsond would round to the wrong grid and
    // only learn it from a rejection while closing.
    let (tick, mut min_price) = price.ok_or(BodyError::Missing("PRICE_FILTER"))?;
    let lot = lot.ok_or(BodyError::Missing("LOT_SIZE"))?;
    // A zero tick or step disables the rule: every 1e-8 is allowed.
    let tick = tick.max(1);
    let mut step = lot.step.max(1);
    let mut min_qty = lot.min;
    let mut max_qty = lot.max;
    if let Some(market) = market_lot {
        if market.step > 0 {
            step = common_step(step, market.step)?;
        }
        min_qty = min_qty.max(market.min);
        max_qty = stricter_max(max_qty, market.max);
    }
    if venue == Venue::Margin {
        // Spot checks `price % tickSize` and `qty % stepSize` from zero, while the engine's grid
        // starts at the minimum; lifting an off-grid minimum onto the zero-based grid makes the
        // two agree without weakening the minimum.
        min_price = Grid::new(0, tick).round(min_price, RoundMode::Up);
        min_qty = Grid::new(0, step).round(min_qty, RoundMode::Up);
    }
    Ok(SymbolRules {
        tick: Price::from_units(tick),
        min_price: Price::from_units(min_price),
        step: Qty::from_units(step),
        min_qty: Qty::from_units(min_qty),
        max_qty: Qty::from_units(max_qty),
        min_notional: Amount::from_units(min_notional),
    })
}
