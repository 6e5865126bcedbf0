//! Order bodies: new-order responses (ACK, RESULT, FULL), queries, cancels and open-order lists,
//! for spot/margin and USD-M futures, reduced to what the engine's `OrderUpdate` needs.
//!
//! Spot reports no average price; it is derived exactly from `cummulativeQuoteQty / executedQty`
//! (or, lacking that, from the fills) and rounded once to the nearest 1e-8 on the engine's grid.

use engine::events::{OrderStatus, OrderUpdate, RejectKind};
use engine::filters::{Grid, RoundMode};
use engine::money::SCALE;
use engine::types::OrderSide;
use engine::{AccountId, ClientOrderId, Price, Qty, Symbol, Venue};
use simd_json::BorrowedValue as Value;

use super::json::{self, BodyError, Fields};

/// Futures position side; spot and margin orders have none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PositionSide {
    /// One-way mode.
    Both,
    Long,
    Short,
}

impl PositionSide {
    pub(crate) fn parse(text: &str, field: &'static str) -> Result<PositionSide, BodyError> {
        match text {
            "BOTH" => Ok(PositionSide::Both),
            "LONG" => Ok(PositionSide::Long),
            "SHORT" => Ok(PositionSide::Short),
            _ => Err(BodyError::BadValue(field)),
        }
    }
}

/// An order as a REST response describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderReport {
    pub symbol: Symbol,
    /// Above 2^32 in practice (26769564559): always u64.
    pub order_id: u64,
    /// The order's own client id; for a spot cancel, `origClientOrderId`, not the cancel's id.
    pub cid: ClientOrderId,
    /// `None` for an ACK response: accepted, and the rest arrives on the user-data stream.
    pub status: Option<OrderStatus>,
    pub side: Option<OrderSide>,
    pub position_side: Option<PositionSide>,
    pub orig_qty: Option<Qty>,
    /// Cumulative filled quantity (zero for an ACK, which does not say).
    pub executed_qty: Qty,
    /// Average fill price of `executed_qty`; zero when nothing filled.
    pub avg_price: Price,
    /// `transactTime`, else `updateTime`, else `time` (ms).
    pub exchange_ms: u64,
}

impl OrderReport {
    /// The engine event this report stands for; `None` for an ACK, which carries no status.
    pub fn update(&self, account: AccountId, venue: Venue) -> Option<OrderUpdate> {
        Some(OrderUpdate {
            account,
            venue,
            symbol: self.symbol,
            cid: self.cid,
            status: self.status?,
            cum_qty: self.executed_qty,
            avg_price: self.avg_price,
            exchange_ms: self.exchange_ms,
        })
    }
}

fn status_of(text: &str) -> Result<OrderStatus, BodyError> {
    Ok(match text {
        // PENDING_NEW is an order-list leg not yet working; NEW_INSURANCE/NEW_ADL are futures
        // liquidation orders: all live, nothing filled as far as the response says.
        "NEW" | "PENDING_NEW" | "NEW_INSURANCE" | "NEW_ADL" => OrderStatus::New,
        "PARTIALLY_FILLED" => OrderStatus::PartiallyFilled,
        "FILLED" => OrderStatus::Filled,
        "CANCELED" | "PENDING_CANCEL" => OrderStatus::Canceled,
        // EXPIRED_IN_MATCH is self-trade prevention expiring the order.
        "EXPIRED" | "EXPIRED_IN_MATCH" => OrderStatus::Expired,
        "REJECTED" => OrderStatus::Rejected(RejectKind::Permanent),
        _ => return Err(BodyError::BadValue("status")),
    })
}

fn side_of(text: &str) -> Result<OrderSide, BodyError> {
    match text {
        "BUY" => Ok(OrderSide::Buy),
        "SELL" => Ok(OrderSide::Sell),
        _ => Err(BodyError::BadValue("side")),
    }
}

/// `quote / qty` as a price, rounded to the nearest 1e-8 (an exact half rounds up).
fn average(quote_scaled: i128, qty_units: i64) -> Price {
    // quote_scaled is quote units × 1e8, so the quotient is already in price units.
    Price::from_units(Grid::new(0, 1).round_ratio(
        quote_scaled,
        i128::from(qty_units),
        RoundMode::Nearest,
    ))
}

/// Σ price × qty and Σ qty over FULL fills, exactly.
fn fills_totals(fills: &[Value<'_>]) -> Result<(i128, i64), BodyError> {
    let mut quote: i128 = 0;
    let mut qty: i64 = 0;
    for fill in fills {
        let fill = Fields::of(fill, "fills[]")?;
        let price = fill.units("price")?;
        let q = fill.units("qty")?;
        quote = quote
            .checked_add(i128::from(price) * i128::from(q))
            .ok_or(BodyError::BadValue("fills"))?;
        qty = qty.checked_add(q).ok_or(BodyError::BadValue("fills"))?;
    }
    Ok((quote, qty))
}

fn avg_price(fields: &Fields<'_, '_>, executed: Qty) -> Result<Price, BodyError> {
    if !executed.is_positive() {
        return Ok(Price::ZERO);
    }
    // Futures states it; taken as given.
    if let Some(avg) = fields.opt_units("avgPrice")? {
        return Ok(Price::from_units(avg));
    }
    // Spot's misspelt cumulative quote is the exact total of every fill. A negative value is
    // what Binance reported for orders before 2018: unusable, so fall through to the fills.
    if let Some(quote) = fields.opt_units("cummulativeQuoteQty")?
        && quote >= 0
    {
        return Ok(average(i128::from(quote) * i128::from(SCALE), executed.units()));
    }
    if let Some(fills) = fields.opt_array("fills")? {
        let (quote, qty) = fills_totals(fills)?;
        if qty > 0 {
            return Ok(average(quote, qty));
        }
    }
    Err(BodyError::Missing("cummulativeQuoteQty"))
}

fn report_of(value: &Value<'_>) -> Result<OrderReport, BodyError> {
    let fields = Fields::of(value, "order")?;
    let symbol = fields.symbol("symbol")?;
    let order_id = fields.u64("orderId")?;
    let cid = if fields.has("origClientOrderId") {
        fields.client_order_id("origClientOrderId")?
    } else {
        fields.client_order_id("clientOrderId")?
    };
    let status = fields.opt_str("status")?.map(status_of).transpose()?;
    let side = fields.opt_str("side")?.map(side_of).transpose()?;
    let position_side = fields
        .opt_str("positionSide")?
        .map(|s| PositionSide::parse(s, "positionSide"))
        .transpose()?;
    let orig_qty = fields.opt_units("origQty")?.map(Qty::from_units);
    let executed = match fields.opt_units("executedQty")? {
        Some(units) => Some(units),
        None => fields.opt_units("cumQty")?,
    };
    let executed_qty = match (executed, status) {
        (Some(units), _) if units >= 0 => Qty::from_units(units),
        (Some(_), _) => return Err(BodyError::BadValue("executedQty")),
        // An ACK does not say what filled; anything fuller must.
        (None, None) => Qty::ZERO,
        (None, Some(_)) => return Err(BodyError::Missing("executedQty")),
    };
    let avg_price = avg_price(&fields, executed_qty)?;
    let exchange_ms = match fields.opt_u64("transactTime")? {
        Some(ms) => ms,
        None => match fields.opt_u64("updateTime")? {
            Some(ms) => ms,
            None => fields.opt_u64("time")?.ok_or(BodyError::Missing("transactTime"))?,
        },
    };
    Ok(OrderReport {
        symbol,
        order_id,
        cid,
        status,
        side,
        position_side,
        orig_qty,
        executed_qty,
        avg_price,
        exchange_ms,
    })
}

/// One order: `POST`/`GET`/`DELETE` on `/api/v3/order`, `/sapi/v1/margin/order`,
/// `/fapi/v1/order`.
pub fn parse_order(body: &mut [u8]) -> Result<OrderReport, BodyError> {
    let root = json::parse(body)?;
    report_of(&root)
}

/// An open-orders list. One unreadable order fails the list: a reconciler that silently missed
/// a live order would treat it as gone.
pub fn parse_orders(body: &mut [u8]) -> Result<Vec<OrderReport>, BodyError> {
    let root = json::parse(body)?;
    json::array(&root, "orders")?.iter().map(report_of).collect()
}
