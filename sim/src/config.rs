//! What a simulator is started with: symbols and their exchange rules, the price path, API keys,
//! connection timings, limits and the starting balances. `SimConfig::default()` is a sane demo
//! set-up (BTCUSDT, ETHUSDT, SOLUSDT on both venues, one HMAC key, a seeded random walk).
//!
//! Plain data only: nothing here opens a socket or starts a thread.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use engine::money::{Amount, Price, Qty, Ratio};
use engine::types::Symbol;

/// One venue's filters for a symbol, as exchangeInfo publishes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VenueRules {
    /// PRICE_FILTER.
    pub tick: Price,
    pub min_price: Price,
    pub max_price: Price,
    /// LOT_SIZE.
    pub step: Qty,
    pub min_qty: Qty,
    pub max_qty: Qty,
    /// MARKET_LOT_SIZE's maxQty (its step and minimum equal LOT_SIZE's, as on Binance's majors).
    pub market_max_qty: Qty,
    /// Futures `MIN_NOTIONAL.notional` (MARKET at the mark price); spot `NOTIONAL.minNotional`.
    pub min_notional: Amount,
}

/// A symbol listed on one or both venues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolSpec {
    pub symbol: Symbol,
    pub base: String,
    pub quote: String,
    /// The first price, before the path moves it.
    pub price: Price,
    /// Listed on USD-M futures with these rules, or not at all.
    pub usdm: Option<VenueRules>,
    /// Listed on spot / isolated margin with these rules, or not at all.
    pub margin: Option<VenueRules>,
}

impl SymbolSpec {
    /// BTCUSDT at `price`, with Binance's real grids (futures tick 0.10, step 0.001, minimum
    /// notional 100; spot tick 0.01, step 0.00001, notional 5).
    pub fn btcusdt(price: Price) -> SymbolSpec {
        SymbolSpec {
            symbol: Symbol::lit("BTCUSDT"),
            base: "BTC".into(),
            quote: "USDT".into(),
            price,
            usdm: Some(VenueRules {
                tick: Price::lit("0.10"),
                min_price: Price::lit("556.80"),
                max_price: Price::lit("4529764"),
                step: Qty::lit("0.001"),
                min_qty: Qty::lit("0.001"),
                max_qty: Qty::lit("1000"),
                market_max_qty: Qty::lit("120"),
                min_notional: Amount::lit("100"),
            }),
            margin: Some(VenueRules {
                tick: Price::lit("0.01"),
                min_price: Price::lit("0.01"),
                max_price: Price::lit("1000000"),
                step: Qty::lit("0.00001"),
                min_qty: Qty::lit("0.00001"),
                max_qty: Qty::lit("9000"),
                market_max_qty: Qty::lit("100"),
                min_notional: Amount::lit("5"),
            }),
        }
    }

    /// ETHUSDT at `price` (futures tick 0.01, step 0.001, notional 20; spot tick 0.01, step
    /// 0.0001, notional 5).
    pub fn ethusdt(price: Price) -> SymbolSpec {
        SymbolSpec {
            symbol: Symbol::lit("ETHUSDT"),
            base: "ETH".into(),
            quote: "USDT".into(),
            price,
            usdm: Some(VenueRules {
                tick: Price::lit("0.01"),
                min_price: Price::lit("39.86"),
                max_price: Price::lit("306177"),
                step: Qty::lit("0.001"),
                min_qty: Qty::lit("0.001"),
                max_qty: Qty::lit("10000"),
                market_max_qty: Qty::lit("2000"),
                min_notional: Amount::lit("20"),
            }),
            margin: Some(VenueRules {
                tick: Price::lit("0.01"),
                min_price: Price::lit("0.01"),
                max_price: Price::lit("1000000"),
                step: Qty::lit("0.0001"),
                min_qty: Qty::lit("0.0001"),
                max_qty: Qty::lit("9000"),
                market_max_qty: Qty::lit("1000"),
                min_notional: Amount::lit("5"),
            }),
        }
    }

    /// SOLUSDT at `price` (futures tick 0.01, step 0.01, notional 5; spot tick 0.01, step 0.001).
    pub fn solusdt(price: Price) -> SymbolSpec {
        SymbolSpec {
            symbol: Symbol::lit("SOLUSDT"),
            base: "SOL".into(),
            quote: "USDT".into(),
            price,
            usdm: Some(VenueRules {
                tick: Price::lit("0.01"),
                min_price: Price::lit("0.42"),
                max_price: Price::lit("6857"),
                step: Qty::lit("0.01"),
                min_qty: Qty::lit("0.01"),
                max_qty: Qty::lit("1000000"),
                market_max_qty: Qty::lit("5000"),
                min_notional: Amount::lit("5"),
            }),
            margin: Some(VenueRules {
                tick: Price::lit("0.01"),
                min_price: Price::lit("0.01"),
                max_price: Price::lit("10000"),
                step: Qty::lit("0.001"),
                min_qty: Qty::lit("0.001"),
                max_qty: Qty::lit("9000000"),
                market_max_qty: Qty::lit("40000"),
                min_notional: Amount::lit("5"),
            }),
        }
    }
}

/// How an API key proves a request. Binance fixes the type per key.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyAuth {
    /// `signature` = hex(HMAC-SHA256(secret, totalParams)).
    Hmac { secret: String },
    /// `signature` = base64(Ed25519(totalParams)), URL-encoded.
    Ed25519 { public_key: [u8; 32] },
}

impl fmt::Debug for KeyAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyAuth::Hmac { .. } => f.write_str("Hmac { secret: *** }"),
            KeyAuth::Ed25519 { .. } => f.write_str("Ed25519 { .. }"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeySpec {
    /// Sent in `X-MBX-APIKEY`; public, so printable.
    pub api_key: String,
    pub auth: KeyAuth,
}

impl ApiKeySpec {
    pub fn hmac(api_key: &str, secret: &str) -> ApiKeySpec {
        ApiKeySpec { api_key: api_key.into(), auth: KeyAuth::Hmac { secret: secret.into() } }
    }

    pub fn ed25519(api_key: &str, public_key: [u8; 32]) -> ApiKeySpec {
        ApiKeySpec { api_key: api_key.into(), auth: KeyAuth::Ed25519 { public_key } }
    }
}

/// Where prices come from. Every price is rounded to its market's tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PricePath {
    /// Prices move only by `Sim::set_price`; ticks still emit trades, books and marks.
    Manual,
    /// Each step moves every symbol by a uniform random whole number of basis points in
    /// `[-max_step_bps, +max_step_bps]`, from a ChaCha8 stream seeded with `SimConfig::seed` and
    /// the symbol's position in `SimConfig::symbols`: the same seed and symbols give the same
    /// prices. One walk per symbol drives both venues (it steps from the futures price, or
    /// spot's for a spot-only symbol), so spot and futures stay within a tick of each other.
    RandomWalk { max_step_bps: u32 },
    /// A text file, one step per line. A line is either one price (`50000.5`: every market moves
    /// to it) or `SYMBOL PRICE` pairs (`BTCUSDT 50000.5 ETHUSDT 3000`: only those move); a symbol
    /// may be prefixed `usdm:` or `margin:` to move one venue only. `#` starts a comment; blank
    /// lines are skipped. At the end the prices hold, or the file starts over when `looped`.
    File { path: PathBuf, looped: bool },
}

/// Everything a simulator is started with. See `Default` for the demo values.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seeds the random walk, generated ids and listen keys: the same seed replays the same run.
    pub seed: u64,
    /// Serve `https://`/`wss://` with a CA generated at start (see `Sim::ca_file`).
    pub tls: bool,
    /// Address to bind; loopback unless a test says otherwise.
    pub bind: IpAddr,
    pub symbols: Vec<SymbolSpec>,
    pub path: PricePath,
    /// The simulator's own clock thread steps the path this often; `None`: only `Sim::step`.
    pub tick: Option<Duration>,
    /// Best bid and ask sit this many ticks either side of the price (rounded to the tick).
    pub half_spread_ticks: u32,
    /// The mark price is the trade price this many steps ago (0: the same step).
    pub mark_lag_steps: u32,
    pub api_keys: Vec<ApiKeySpec>,
    /// Server pings on every WebSocket this often; no matching pong within `pong_timeout` closes
    /// the connection (Binance: 20 s / 1 min spot, 3 min / 10 min futures).
    pub ping_every: Duration,
    pub pong_timeout: Duration,
    /// Binance's 24 h connection lifetime.
    pub max_conn_age: Duration,
    /// Futures listen keys live this long without a keepalive (Binance: 60 min).
    pub listen_key_validity: Duration,
    /// Margin listen tokens: the default and maximum `validity` (Binance: 24 h).
    pub listen_token_max_validity: Duration,
    /// Request weight per window and IP, per venue (Binance: futures 2400, spot 6000 per minute).
    pub usdm_weight_limit: u32,
    pub spot_weight_limit: u32,
    /// The weight window (Binance: one minute). Shorter in tests so that a 429 clears quickly.
    pub weight_window: Duration,
    /// Requests answered 429 within one window before the IP is banned (418).
    pub ban_after_429s: u32,
    /// How long a 418 ban lasts (Binance's shortest: 2 minutes).
    pub ban_duration: Duration,
    /// USDT wallet of the futures account at start.
    pub usdm_wallet: Amount,
    pub usdm_leverage: u32,
    /// Taker fees charged on every fill (futures in USDT; margin in the asset received).
    pub usdm_fee: Ratio,
    pub margin_fee: Ratio,
    /// Free quote asset of each isolated-margin pair at start.
    pub margin_quote_balance: Amount,
    /// Isolated-margin borrowing stops where debt would exceed (leverage − 1) × equity.
    pub margin_max_leverage: u32,
}

impl SimConfig {
    /// The HMAC key `SimConfig::default()` accepts: a simulator needs no real credentials.
    pub const DEMO_API_KEY: &'static str = "sim-demo-api-key";
    pub const DEMO_SECRET: &'static str = "sim-demo-secret";

    /// No clock thread and a manual path: a test steps every price itself.
    pub fn manual() -> SimConfig {
        SimConfig { path: PricePath::Manual, tick: None, ..SimConfig::default() }
    }
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            seed: 1,
            tls: false,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            symbols: vec![
                SymbolSpec::btcusdt(Price::lit("50000")),
                SymbolSpec::ethusdt(Price::lit("3000")),
                SymbolSpec::solusdt(Price::lit("150")),
            ],
            path: PricePath::RandomWalk { max_step_bps: 5 },
            tick: Some(Duration::from_millis(250)),
            half_spread_ticks: 1,
            mark_lag_steps: 0,
            api_keys: vec![ApiKeySpec::hmac(SimConfig::DEMO_API_KEY, SimConfig::DEMO_SECRET)],
            ping_every: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(60),
            max_conn_age: Duration::from_secs(24 * 3600),
            listen_key_validity: Duration::from_secs(60 * 60),
            listen_token_max_validity: Duration::from_secs(24 * 3600),
            usdm_weight_limit: 2400,
            spot_weight_limit: 6000,
            weight_window: Duration::from_secs(60),
            ban_after_429s: 5,
            ban_duration: Duration::from_secs(120),
            usdm_wallet: Amount::lit("10000"),
            usdm_leverage: 20,
            usdm_fee: Ratio::lit("0.0005"),
            margin_fee: Ratio::lit("0.001"),
            margin_quote_balance: Amount::lit("10000"),
            margin_max_leverage: 5,
        }
    }
}
