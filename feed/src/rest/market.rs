//! REST price bodies for the stale-stream fallback (DESIGN.md section 6): futures
//! `premiumIndex` (mark price), `ticker/bookTicker` (best bid/ask) and `ticker/price` (last
//! trade), each turned into the engine's event with `Origin::RestFallback`.
//!
//! No fixture of these bodies exists in `fixtures/binance/`; the field names and types follow
//! Binance's documentation pages (futures Mark-Price and Symbol-Order-Book-Ticker, spot
//! rest-api.md): prices as decimal strings, times as integer milliseconds. Spot's bookTicker has
//! no time, futures' has `time`. Only this module reads them; it never decides what a price
//! means for a stop.

use engine::events::{Event, Origin};
use engine::{MarketKey, Price, Symbol, Venue};

use super::json::{self, BodyError, Fields};

/// `GET /fapi/v1/premiumIndex?symbol=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkPrice {
    pub symbol: Symbol,
    pub mark: Price,
    pub index: Option<Price>,
    /// `time`, exchange ms.
    pub exchange_ms: u64,
}

impl MarkPrice {
    pub fn event(&self) -> Event {
        Event::Mark {
            market: MarketKey { venue: Venue::Usdm, symbol: self.symbol },
            price: self.mark,
            origin: Origin::RestFallback,
        }
    }
}

/// `GET /api/v3/ticker/bookTicker?symbol=` or `/fapi/v1/ticker/bookTicker?symbol=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookTicker {
    pub symbol: Symbol,
    pub bid: Price,
    pub ask: Price,
    /// Futures only (`time`).
    pub exchange_ms: Option<u64>,
}

impl BookTicker {
    pub fn event(&self, venue: Venue) -> Event {
        Event::Book {
            market: MarketKey { venue, symbol: self.symbol },
            bid: self.bid,
            ask: self.ask,
            origin: Origin::RestFallback,
        }
    }
}

/// `GET /api/v3/ticker/price?symbol=` or `/fapi/v1/ticker/price?symbol=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastPrice {
    pub symbol: Symbol,
    pub price: Price,
    /// Futures only (`time`).
    pub exchange_ms: Option<u64>,
}

impl LastPrice {
    /// A fallback trade price moves triggers but, being no trade, never feeds the entry signal.
    pub fn event(&self, venue: Venue) -> Event {
        Event::Trade {
            market: MarketKey { venue, symbol: self.symbol },
            price: self.price,
            origin: Origin::RestFallback,
        }
    }
}

/// A price that can trigger a stop must be positive: a zero or negative one is a broken body.
fn positive_price(fields: &Fields<'_, '_>, key: &'static str) -> Result<Price, BodyError> {
    let price = fields.price(key)?;
    if price.is_positive() { Ok(price) } else { Err(BodyError::BadValue(key)) }
}

pub fn parse_mark_price(body: &mut [u8]) -> Result<MarkPrice, BodyError> {
    let root = json::parse(body)?;
    let fields = Fields::of(&root, "premiumIndex")?;
    Ok(MarkPrice {
        symbol: fields.symbol("symbol")?,
        mark: positive_price(&fields, "markPrice")?,
        index: fields.opt_units("indexPrice")?.map(Price::from_units),
        exchange_ms: fields.u64("time")?,
    })
}

pub fn parse_book_ticker(body: &mut [u8]) -> Result<BookTicker, BodyError> {
    let root = json::parse(body)?;
    let fields = Fields::of(&root, "bookTicker")?;
    let bid = positive_price(&fields, "bidPrice")?;
    let ask = positive_price(&fields, "askPrice")?;
    if ask < bid {
        return Err(BodyError::BadValue("askPrice"));
    }
    Ok(BookTicker {
        symbol: fields.symbol("symbol")?,
        bid,
        ask,
        exchange_ms: fields.opt_u64("time")?,
    })
}

pub fn parse_last_price(body: &mut [u8]) -> Result<LastPrice, BodyError> {
    let root = json::parse(body)?;
    let fields = Fields::of(&root, "ticker/price")?;
    Ok(LastPrice {
        symbol: fields.symbol("symbol")?,
        price: positive_price(&fields, "price")?,
        exchange_ms: fields.opt_u64("time")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T>(f: fn(&mut [u8]) -> Result<T, BodyError>, text: &str) -> Result<T, BodyError> {
        f(&mut text.as_bytes().to_vec())
    }

    // Bodies as the documentation pages print them (comments removed).
    const PREMIUM_INDEX: &str = r#"{"symbol":"BTCUSDT","markPrice":"11793.63104562",
        "indexPrice":"11781.80495970","estimatedSettlePrice":"11781.16138815",
        "lastFundingRate":"0.00038246","nextFundingTime":1597392000000,
        "interestRate":"0.00010000","time":1597370495002}"#;
    const FUTURES_BOOK: &str = r#"{"symbol":"BTCUSDT","bidPrice":"4.00000000",
        "bidQty":"431.00000000","askPrice":"4.00000200","askQty":"9.00000000",
        "time":1589437530011}"#;
    const SPOT_BOOK: &str = r#"{"symbol":"LTCBTC","bidPrice":"4.00000000",
        "bidQty":"431.00000000","askPrice":"4.00000200","askQty":"9.00000000"}"#;
    const SPOT_PRICE: &str = r#"{"symbol":"LTCBTC","price":"4.00000200"}"#;

    #[test]
    fn documented_bodies_become_fallback_events() {
        let mark = parse(parse_mark_price, PREMIUM_INDEX).unwrap();
        assert_eq!(mark.mark, Price::lit("11793.63104562"));
        assert_eq!(mark.index, Some(Price::lit("11781.80495970")));
        assert_eq!(mark.exchange_ms, 1597370495002);
        assert_eq!(
            mark.event(),
            Event::Mark {
                market: MarketKey { venue: Venue::Usdm, symbol: Symbol::lit("BTCUSDT") },
                price: Price::lit("11793.63104562"),
                origin: Origin::RestFallback,
            }
        );
        let book = parse(parse_book_ticker, FUTURES_BOOK).unwrap();
        assert_eq!((book.bid, book.ask), (Price::lit("4"), Price::lit("4.000002")));
        assert_eq!(book.exchange_ms, Some(1589437530011));
        let spot = parse(parse_book_ticker, SPOT_BOOK).unwrap();
        assert_eq!(spot.exchange_ms, None);
        assert_eq!(
            spot.event(Venue::Margin),
            Event::Book {
                market: MarketKey { venue: Venue::Margin, symbol: Symbol::lit("LTCBTC") },
                bid: Price::lit("4"),
                ask: Price::lit("4.000002"),
                origin: Origin::RestFallback,
            }
        );
        let last = parse(parse_last_price, SPOT_PRICE).unwrap();
        assert_eq!(last.price, Price::lit("4.000002"));
        assert!(matches!(last.event(Venue::Margin), Event::Trade { .. }));
    }

    #[test]
    fn broken_price_bodies_are_refused_by_field() {
        let cases: [(&str, BodyError); 5] = [
            (r#"{"symbol":"BTCUSDT","markPrice":"0","time":1}"#, BodyError::BadValue("markPrice")),
            (r#"{"symbol":"BTCUSDT","markPrice":1.5,"time":1}"#, BodyError::WrongType("markPrice")),
            (r#"{"symbol":"BTCUSDT","time":1}"#, BodyError::Missing("markPrice")),
            (r#"{"symbol":"btc","markPrice":"1","time":1}"#, BodyError::BadValue("symbol")),
            (r#"[{"symbol":"BTCUSDT"}]"#, BodyError::Shape("premiumIndex")),
        ];
        for (body, error) in cases {
            assert_eq!(parse(parse_mark_price, body), Err(error), "{body}");
        }
        let crossed = r#"{"symbol":"X","bidPrice":"2","bidQty":"1","askPrice":"1","askQty":"1"}"#;
        assert_eq!(parse(parse_book_ticker, crossed), Err(BodyError::BadValue("askPrice")));
        assert_eq!(parse(parse_last_price, "<html>"), Err(BodyError::NotJson));
    }
}
