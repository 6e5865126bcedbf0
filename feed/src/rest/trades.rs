//! Isolated-margin fills from REST (`GET /sapi/v1/margin/myTrades`): how robsond learns, at
//! start-up and in each reconciliation round, the fills that built a margin position, since the
//! exchange reports balances but no entry price (DESIGN.md section 1).
//!
//! Each row becomes the same `Event::MarginTrade` the stream's `executionReport` produces; the
//! engine drops a trade id it has already seen, so the overlap with the stream is harmless.

use engine::events::{Event, MarginFill};
use engine::types::OrderSide;
use engine::{AccountId, Price, Qty, Symbol};

use super::json::{self, BodyError, Fields};

/// One row of `myTrades`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarginTradeRow {
    pub symbol: Symbol,
    /// Binance's per-symbol trade id.
    pub id: u64,
    pub order_id: u64,
    pub price: Price,
    pub qty: Qty,
    /// `isBuyer`: this account bought.
    pub buyer: bool,
    pub time_ms: u64,
}

impl MarginTradeRow {
    pub fn event(&self, account: AccountId) -> Event {
        Event::MarginTrade(MarginFill {
            account,
            symbol: self.symbol,
            side: if self.buyer { OrderSide::Buy } else { OrderSide::Sell },
            qty: self.qty,
            price: self.price,
            trade_id: self.id,
            exchange_ms: self.time_ms,
        })
    }
}

/// A `myTrades` response, oldest first as Binance sends it (sorted here anyway, since the
/// engine takes fills in trade-id order).
pub fn parse_margin_trades(body: &mut [u8]) -> Result<Vec<MarginTradeRow>, BodyError> {
    let root = json::parse(body)?;
    let rows = json::array(&root, "myTrades response")?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let f = Fields::of(row, "myTrades row")?;
        let symbol = f.symbol("symbol")?;
        let price = f.price("price")?;
        let qty = f.qty("qty")?;
        if !price.is_positive() {
            return Err(BodyError::BadValue("price"));
        }
        if !qty.is_positive() {
            return Err(BodyError::BadValue("qty"));
        }
        out.push(MarginTradeRow {
            symbol,
            id: f.u64("id")?,
            order_id: f.u64("orderId")?,
            price,
            qty,
            buyer: f.opt_bool("isBuyer")?.ok_or(BodyError::Missing("isBuyer"))?,
            time_ms: f.u64("time")?,
        });
    }
    out.sort_by_key(|row| row.id);
    Ok(out)
}
