//! `GET /sapi/v1/margin/myTrades`: the fills robsond derives margin entries from.

use engine::events::{Event, MarginFill};
use engine::types::OrderSide;
use engine::{AccountId, Price, Qty, Symbol};
use feed::rest::BodyError;
use feed::rest::trades::parse_margin_trades;

/// The response example of Binance's "Query Margin Account's Trade List" page, with a second
/// row (a buy) added in front to show the ordering, and a trade id above 2^32.
const BODY: &str = r#"[
  {"commission":"0.00001000","commissionAsset":"BTC","id":4294967301,"isBestMatch":true,
   "isBuyer":true,"isMaker":false,"orderId":39323,"price":"0.01900000","qty":"1.50000000",
   "symbol":"BNBBTC","isIsolated":true,"time":1561973357170},
  {"commission":"0.00006000","commissionAsset":"BTC","id":34,"isBestMatch":true,
   "isBuyer":false,"isMaker":false,"orderId":39324,"price":"0.02000000","qty":"3.00000000",
   "symbol":"BNBBTC","isIsolated":true,"time":1561973357171}
]"#;

fn parse(body: &str) -> Result<Vec<feed::rest::trades::MarginTradeRow>, BodyError> {
    parse_margin_trades(body.as_bytes().to_vec().as_mut_slice())
}

#[test]
fn rows_become_margin_fills_in_trade_id_order() {
    let rows = parse(BODY).unwrap();
    assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), [34, 4_294_967_301]);
    let bnb = Symbol::new(b"BNBBTC").unwrap();
    assert_eq!(
        rows[0].event(AccountId(3)),
        Event::MarginTrade(MarginFill {
            account: AccountId(3),
            symbol: bnb,
            side: OrderSide::Sell,
            qty: Qty::from_units(300_000_000),
            price: Price::from_units(2_000_000),
            trade_id: 34,
            exchange_ms: 1_561_973_357_171,
        })
    );
    let Event::MarginTrade(buy) = rows[1].event(AccountId(3)) else { unreachable!() };
    assert_eq!(
        (buy.side, buy.qty, buy.price),
        (OrderSide::Buy, Qty::from_units(150_000_000), Price::from_units(1_900_000))
    );
    assert_eq!(parse("[]").unwrap(), []);
}

#[test]
fn bad_rows_are_refused_by_field() {
    let cases = [
        (r#"{"id":1}"#, BodyError::Shape("myTrades response")),
        (
            r#"[{"id":1,"orderId":2,"price":"1","qty":"1","symbol":"BNBBTC","time":1}]"#,
            BodyError::Missing("isBuyer"),
        ),
        (
            r#"[{"id":1,"orderId":2,"price":"0","qty":"1","symbol":"BNBBTC","isBuyer":true,"time":1}]"#,
            BodyError::BadValue("price"),
        ),
        (
            r#"[{"id":1,"orderId":2,"price":"1","qty":"-1","symbol":"BNBBTC","isBuyer":true,"time":1}]"#,
            BodyError::BadValue("qty"),
        ),
        (
            r#"[{"id":1,"orderId":2,"price":1.5,"qty":"1","symbol":"BNBBTC","isBuyer":true,"time":1}]"#,
            BodyError::WrongType("price"),
        ),
        (
            r#"[{"id":-1,"orderId":2,"price":"1","qty":"1","symbol":"BNBBTC","isBuyer":true,"time":1}]"#,
            BodyError::BadValue("id"),
        ),
        ("[{", BodyError::NotJson),
    ];
    for (body, want) in cases {
        assert_eq!(parse(body), Err(want), "{body}");
    }
}
