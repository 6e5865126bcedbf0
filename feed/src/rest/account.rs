//! Account snapshots: futures `positionRisk` (v2 and v3, one-way and hedge mode) and the
//! isolated-margin account, turned into per-(symbol, side) positions and per-symbol balances.
//!
//! Rows whose symbol robsond cannot name (Binance lists symbols in non-ASCII scripts) are set
//! aside by name instead of failing the whole snapshot: robsond cannot guard them anyway, and
//! losing every guarded position's reconciliation over one foreign row would be worse.

use engine::events::{BalanceScope, Event};
use engine::{AccountId, Amount, PositionKey, Price, Qty, Side, Symbol, Venue};
use simd_json::BorrowedValue as Value;

use super::json::{self, BodyError, Fields};
use super::order::PositionSide;

/// One `positionRisk` row as Binance reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PositionRisk {
    pub symbol: Symbol,
    /// v2 and v3 both send it; `Both` when absent (one-way accounts on older responses).
    pub position_side: PositionSide,
    /// Signed: negative is short in one-way mode, and always for a hedge-mode SHORT row.
    pub amount: Qty,
    pub entry: Price,
    /// Zero on rows that never held a position.
    pub update_ms: u64,
}

/// The engine's view of one (symbol, side): a non-negative quantity and its entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PositionSnapshot {
    pub symbol: Symbol,
    pub side: Side,
    /// Zero: flat.
    pub qty: Qty,
    /// Zero when flat.
    pub entry: Price,
    pub update_ms: u64,
}

impl PositionSnapshot {
    pub fn event(&self, account: AccountId) -> Event {
        Event::Position {
            key: PositionKey { account, venue: Venue::Usdm, symbol: self.symbol, side: self.side },
            qty: self.qty,
            entry: self.entry,
            exchange_ms: self.update_ms,
        }
    }
}

impl PositionRisk {
    /// What this row says about each side it covers. A hedge row covers its own side; a one-way
    /// row covers both, since holding one side means the other is flat.
    pub fn snapshots(&self) -> impl Iterator<Item = PositionSnapshot> + use<> {
        let snap = |side, qty: Qty, entry| PositionSnapshot {
            symbol: self.symbol,
            side,
            qty,
            entry,
            update_ms: self.update_ms,
        };
        let qty = self.amount.abs();
        let flat = |side| snap(side, Qty::ZERO, Price::ZERO);
        let held = |side| if qty.is_zero() { flat(side) } else { snap(side, qty, self.entry) };
        let pair = match self.position_side {
            PositionSide::Long => [Some(held(Side::Long)), None],
            PositionSide::Short => [Some(held(Side::Short)), None],
            PositionSide::Both if self.amount.is_positive() => {
                [Some(held(Side::Long)), Some(flat(Side::Short))]
            }
            PositionSide::Both if self.amount.units() < 0 => {
                [Some(held(Side::Short)), Some(flat(Side::Long))]
            }
            PositionSide::Both => [Some(flat(Side::Long)), Some(flat(Side::Short))],
        };
        pair.into_iter().flatten()
    }
}

/// A `positionRisk` response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PositionRisks {
    pub rows: Vec<PositionRisk>,
    /// Names (shortened) of rows whose symbol robsond cannot represent.
    pub skipped_symbols: Vec<String>,
}

impl PositionRisks {
    pub fn snapshots(&self) -> impl Iterator<Item = PositionSnapshot> + '_ {
        self.rows.iter().flat_map(PositionRisk::snapshots)
    }
}

fn position_of(fields: &Fields<'_, '_>, symbol: Symbol) -> Result<PositionRisk, BodyError> {
    let position_side = match fields.opt_str("positionSide")? {
        Some(text) => PositionSide::parse(text, "positionSide")?,
        None => PositionSide::Both,
    };
    let amount = fields.qty("positionAmt")?;
    // A hedge row with the wrong sign is a misread, not a position: refusing it keeps a short
    // from being booked as a long.
    let sign_ok = match position_side {
        PositionSide::Long => amount.units() >= 0,
        PositionSide::Short => amount.units() <= 0,
        PositionSide::Both => true,
    };
    if !sign_ok {
        return Err(BodyError::BadValue("positionAmt"));
    }
    let entry = fields.price("entryPrice")?;
    if entry.units() < 0 {
        return Err(BodyError::BadValue("entryPrice"));
    }
    let update_ms = fields.opt_u64("updateTime")?.unwrap_or(0);
    Ok(PositionRisk { symbol, position_side, amount, entry, update_ms })
}

/// Splits rows into those robsond can name and those it cannot; any other defect fails all.
fn named_rows<'a, 'v, T>(
    rows: &'a [Value<'v>],
    what: &'static str,
    symbol_key: &'static str,
    mut read: impl FnMut(&Fields<'a, 'v>, Symbol) -> Result<T, BodyError>,
) -> Result<(Vec<T>, Vec<String>), BodyError> {
    let mut out = Vec::with_capacity(rows.len());
    let mut skipped = Vec::new();
    for row in rows {
        let fields = Fields::of(row, what)?;
        let name = fields.str(symbol_key)?;
        match Symbol::new(name.as_bytes()) {
            Ok(symbol) => out.push(read(&fields, symbol)?),
            Err(_) => skipped.push(json::short_name(Some(name))),
        }
    }
    Ok((out, skipped))
}

/// `GET /fapi/v3/positionRisk` or `/fapi/v2/positionRisk`.
pub fn parse_position_risk(body: &mut [u8]) -> Result<PositionRisks, BodyError> {
    let root = json::parse(body)?;
    let rows = json::array(&root, "positionRisk")?;
    let (rows, skipped_symbols) = named_rows(rows, "positionRisk[]", "symbol", position_of)?;
    Ok(PositionRisks { rows, skipped_symbols })
}

/// One isolated-margin pair: the base asset's position and the quote asset's funds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsolatedMarginPair {
    pub symbol: Symbol,
    /// `netAsset` = free + locked − borrowed − interest: positive long, negative short.
    pub base_net: Qty,
    pub base_free: Qty,
    pub base_borrowed: Qty,
    pub quote_net: Amount,
    pub quote_free: Amount,
    pub quote_borrowed: Amount,
    pub trade_enabled: bool,
}

impl IsolatedMarginPair {
    /// The quote funds an entry on this pair can use.
    pub fn balance_event(&self, account: AccountId) -> Event {
        Event::Balance {
            account,
            scope: BalanceScope::MarginIsolated(self.symbol),
            available: self.quote_free,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsolatedMarginAccount {
    pub pairs: Vec<IsolatedMarginPair>,
    pub skipped_symbols: Vec<String>,
}

fn pair_of(fields: &Fields<'_, '_>, symbol: Symbol) -> Result<IsolatedMarginPair, BodyError> {
    let base = fields.object("baseAsset")?;
    let quote = fields.object("quoteAsset")?;
    Ok(IsolatedMarginPair {
        symbol,
        base_net: base.qty("netAsset")?,
        base_free: base.qty("free")?,
        base_borrowed: base.qty("borrowed")?,
        quote_net: quote.amount("netAsset")?,
        quote_free: quote.amount("free")?,
        quote_borrowed: quote.amount("borrowed")?,
        // Absent means the old response shape, from before trading could be disabled per pair.
        trade_enabled: fields.opt_bool("tradeEnabled")?.unwrap_or(true),
    })
}

/// `GET /sapi/v1/margin/isolated/account`.
pub fn parse_isolated_margin_account(body: &mut [u8]) -> Result<IsolatedMarginAccount, BodyError> {
    let root = json::parse(body)?;
    let top = Fields::of(&root, "isolated margin account")?;
    let (pairs, skipped_symbols) = named_rows(top.array("assets")?, "assets[]", "symbol", pair_of)?;
    Ok(IsolatedMarginAccount { pairs, skipped_symbols })
}
