//! Shared by the Postgres tests: a private, migrated schema per test on the server that
//! `DATABASE_URL` names (scripts/pg-env finds or starts one), a TCP proxy that can cut the
//! writer off from the server, and record streams (a real engine's, and a synthetic bulk one).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use engine::events::{
    ArmParams, BalanceScope, CloseReason, ClosedBy, Journal, OrderIntent, OrderStatus, OrderUpdate,
    Origin,
};
use engine::types::{OrderPurpose, OrderSide, OrderTag};
use engine::*;
use persist::pg::{PgConfig, Schema, migrate};
use postgres::{Client, NoTls};

pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set: run the suite with scripts/test, or `source scripts/pg-env` \
             first (it finds or starts a PostgreSQL and exports DATABASE_URL)"
        )
    })
}

pub fn connect_plain(url: &str) -> Client {
    Client::connect(url, NoTls).unwrap_or_else(|e| panic!("cannot connect to DATABASE_URL: {e}"))
}

/// A migrated schema of its own, dropped when the test ends (also when it fails).
pub struct TestDb {
    pub schema: Schema,
    pub url: String,
    admin: Client,
}

static SWEEP: Once = Once::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn epoch_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

impl TestDb {
    pub fn new() -> TestDb {
        let db = TestDb::empty();
        let mut client = db.client();
        migrate(&mut client, &db.schema).expect("migrations apply to an empty schema");
        db
    }

    /// The schema's name reserved, nothing created.
    pub fn empty() -> TestDb {
        let url = database_url();
        let mut admin = connect_plain(&url);
        SWEEP.call_once(|| sweep_stale_schemas(&mut admin));
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("robson_t_{}_{}_{n}", epoch_secs(), std::process::id());
        TestDb { schema: Schema::new(&name).expect("valid name"), url, admin }
    }

    /// A config for this schema with test-sized timeouts and backoff.
    pub fn config(&self, application_name: &str) -> PgConfig {
        let mut config = PgConfig::new(&self.url)
            .with_schema(self.schema.clone())
            .with_application_name(application_name)
            .with_backoff(Duration::from_millis(5), Duration::from_millis(100));
        config.connect_timeout = Duration::from_secs(5);
        config.io_timeout = Duration::from_secs(10);
        config
    }

    /// A session with `search_path` on this schema.
    pub fn client(&self) -> Client {
        let mut client = connect_plain(&self.url);
        client.batch_execute(&format!("SET search_path TO {}", self.schema)).expect("search_path");
        client
    }

    /// Ends every session that announced itself with `application_name`; how many it ended.
    pub fn terminate(&mut self, application_name: &str) -> usize {
        let rows = self
            .admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = $1 AND pid <> pg_backend_pid()",
                &[&application_name],
            )
            .expect("pg_terminate_backend");
        rows.iter().filter(|r| r.get::<_, bool>(0)).count()
    }

    /// Waits (up to 10 s) until no session uses `application_name`: a terminated backend takes a
    /// moment to leave `pg_stat_activity` and to release its locks.
    pub fn wait_gone(&mut self, application_name: &str) {
        for _ in 0..1_000 {
            let left: i64 = self
                .admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                    &[&application_name],
                )
                .expect("pg_stat_activity")
                .get(0);
            if left == 0 {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!("sessions of {application_name} still alive after 10 s");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = self.admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
    }
}

/// Schemas left by runs that were killed before their drop ran: older than an hour.
fn sweep_stale_schemas(admin: &mut Client) {
    let rows = admin
        .query("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'robson\\_t\\_%'", &[])
        .expect("list schemas");
    let cutoff = epoch_secs().saturating_sub(3_600);
    for row in rows {
        let name: String = row.get(0);
        let created = name.split('_').nth(2).and_then(|s| s.parse::<u64>().ok());
        if created.is_some_and(|t| t < cutoff) {
            let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"));
        }
    }
}

// ---- table contents, for comparisons ----

/// Every row of the four tables as text, in key order; `written_at` (wall clock) left out.
#[derive(Debug, PartialEq, Eq)]
pub struct Tables {
    pub events: Vec<String>,
    pub positions: Vec<String>,
    pub orders: Vec<String>,
    pub stop_changes: Vec<String>,
}

pub fn tables(client: &mut Client) -> Tables {
    let mut dump = |sql: &str| -> Vec<String> {
        client.query(sql, &[]).expect(sql).iter().map(|r| r.get::<_, String>(0)).collect()
    };
    Tables {
        events: dump(
            "SELECT row(seq, at_ns, kind, payload, position_id, account, venue, symbol, side, \
             cid)::text FROM events ORDER BY seq",
        ),
        positions: dump("SELECT p::text FROM positions p ORDER BY id"),
        orders: dump("SELECT o::text FROM orders o ORDER BY cid"),
        stop_changes: dump("SELECT s::text FROM stop_changes s ORDER BY seq"),
    }
}

pub fn count(client: &mut Client, table: &str) -> i64 {
    client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).expect("count").get(0)
}

// ---- a proxy that can cut the writer off ----

/// Forwards TCP to the Postgres server of `DATABASE_URL`. While `down`, it cuts every open
/// connection and closes each new one at once: to the client, the server is gone.
pub struct Proxy {
    pub port: u16,
    down: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn start(upstream: (String, u16)) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let down = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (down2, live2) = (Arc::clone(&down), Arc::clone(&live));
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if down2.load(Ordering::Acquire) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect((upstream.0.as_str(), upstream.1)) else {
                    continue;
                };
                let mut live = live2.lock().expect("lock");
                for s in [&client, &server] {
                    live.push(s.try_clone().expect("clone"));
                }
                pump(client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                pump(server, client);
            }
        });
        Proxy { port, down, live }
    }

    /// The server "goes away": open connections are cut, new ones refused.
    pub fn cut(&self) {
        self.down.store(true, Ordering::Release);
        for s in self.live.lock().expect("lock").drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.down.store(false, Ordering::Release);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// `DATABASE_URL`'s TCP host and port, and a conninfo string for the same database through
/// another port on 127.0.0.1.
pub fn via_port(url: &str, port: u16) -> ((String, u16), String) {
    let config = postgres::Config::from_str(url).expect("DATABASE_URL parses");
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        other => panic!("the proxy needs a TCP DATABASE_URL, not {other:?}"),
    };
    let upstream_port = config.get_ports().first().copied().unwrap_or(5432);
    let mut conninfo = format!("host=127.0.0.1 port={port}");
    if let Some(user) = config.get_user() {
        conninfo.push_str(&format!(" user='{}'", quote(user)));
    }
    if let Some(db) = config.get_dbname() {
        conninfo.push_str(&format!(" dbname='{}'", quote(db)));
    }
    if let Some(password) = config.get_password() {
        let password = String::from_utf8_lossy(password);
        conninfo.push_str(&format!(" password='{}'", quote(&password)));
    }
    ((host, upstream_port), conninfo)
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

// ---- record streams ----

pub fn px(s: &str) -> Price {
    Price::lit(s)
}

pub fn qty(s: &str) -> Qty {
    Qty::lit(s)
}

pub fn usdm(symbol: &str, side: Side) -> PositionKey {
    PositionKey { account: AccountId(0), venue: Venue::Usdm, symbol: Symbol::lit(symbol), side }
}

/// A real engine driven through a day in miniature: a Core long that enters, trails twice and
/// is stopped out; a manual ETH position the Safety Net protects, re-stops when it grows, and
/// keeps; a Core short armed and then disarmed; a close whose answer is lost and queried.
pub struct Scenario {
    pub engine: Engine,
    pub records: Vec<Record>,
    now: Nanos,
    exchange_ms: u64,
}

impl Scenario {
    fn send(&mut self, event: Event) -> Reply {
        self.now = self.now.saturating_add_millis(1);
        self.exchange_ms += 1;
        let mut sink = VecSink::default();
        let reply = self.engine.on_event(event, self.now, &mut sink);
        self.records.extend(sink.records);
        reply
    }

    fn placed(&self, from: usize) -> Vec<OrderIntent> {
        self.records[from..]
            .iter()
            .filter_map(|r| match r.event {
                Journal::OrderSent { intent, .. } => Some(intent),
                _ => None,
            })
            .collect()
    }

    fn answer(&mut self, intent: &OrderIntent, status: OrderStatus, avg: &str) {
        let update = OrderUpdate {
            account: intent.key.account,
            venue: intent.key.venue,
            symbol: intent.key.symbol,
            cid: intent.cid,
            status,
            cum_qty: if status == OrderStatus::Filled { intent.qty } else { Qty::ZERO },
            avg_price: px(avg),
            exchange_ms: self.exchange_ms + 1,
        };
        self.send(Event::Order(update));
    }

    fn price(&mut self, symbol: &str, price: &str) {
        let market = MarketKey { venue: Venue::Usdm, symbol: Symbol::lit(symbol) };
        self.send(Event::Mark { market, price: px(price), origin: Origin::Stream });
        self.send(Event::Trade { market, price: px(price), origin: Origin::Stream });
    }

    pub fn run() -> Scenario {
        let mut s = Scenario {
            engine: Engine::new(Config::default()),
            records: Vec::new(),
            now: Nanos::from_millis(1_000),
            exchange_ms: 1_700_000_000_000,
        };
        s.send(Event::Lease { held: true });
        let rules = SymbolRules {
            tick: px("0.10"),
            min_price: px("0.10"),
            step: qty("0.001"),
            min_qty: qty("0.001"),
            max_qty: qty("120"),
            min_notional: Amount::lit("5"),
        };
        for symbol in ["BTCUSDT", "ETHUSDT", "SOLUSDT"] {
            let market = MarketKey { venue: Venue::Usdm, symbol: Symbol::lit(symbol) };
            s.send(Event::Rules { market, rules });
        }
        s.send(Event::Balance {
            account: AccountId(0),
            scope: BalanceScope::UsdmWallet,
            available: Amount::lit("100000"),
        });

        // Core long on BTC: MA 2/4, technical stop 49,000 (a 1,000 span from a 50,000 entry).
        let params = ArmParams {
            capital: Some(Amount::lit("10000")),
            technical_stop: Some(px("49000")),
            ma_fast: Some(2),
            ma_slow: Some(4),
            ..ArmParams::default()
        };
        let Reply::Armed(_) = s.send(Event::Arm { key: usdm("BTCUSDT", Side::Long), params })
        else {
            panic!("arm refused");
        };
        // A short armed and disarmed before any signal.
        let Reply::Armed(short) = s.send(Event::Arm {
            key: usdm("SOLUSDT", Side::Short),
            params: ArmParams { ma_fast: Some(2), ma_slow: Some(4), ..ArmParams::default() },
        }) else {
            panic!("arm refused");
        };
        s.send(Event::Disarm { id: short });
        let mark = s.records.len();
        for _ in 0..4 {
            s.price("BTCUSDT", "49900");
        }
        s.price("BTCUSDT", "50000");
        let entry = s.placed(mark);
        assert_eq!(entry.len(), 1, "the cross sends one entry");
        s.answer(&entry[0], OrderStatus::Filled, "50000");
        s.send(Event::Position {
            key: usdm("BTCUSDT", Side::Long),
            qty: entry[0].qty,
            entry: px("50000"),
            exchange_ms: s.exchange_ms + 1,
        });
        // Two spans of profit, then back down through the raised stop.
        s.price("BTCUSDT", "51000");
        s.price("BTCUSDT", "52000");
        let mark = s.records.len();
        s.price("BTCUSDT", "50500");
        let close = s.placed(mark);
        assert_eq!(close.len(), 1, "the stop sends one close");
        // The close's answer is lost: the engine queries it, then learns it filled.
        s.now = s.now.saturating_add_millis(Config::default().query_after_ms + 1);
        s.send(Event::Tick);
        s.answer(&close[0], OrderStatus::Filled, "50500");
        s.send(Event::Position {
            key: usdm("BTCUSDT", Side::Long),
            qty: Qty::ZERO,
            entry: Price::ZERO,
            exchange_ms: s.exchange_ms + 1,
        });

        // A manual ETH long: the Safety Net takes it, then it grows and is re-stopped.
        for (amount, entry) in [("2", "3000"), ("3", "3100")] {
            s.price("ETHUSDT", "3150");
            s.send(Event::Position {
                key: usdm("ETHUSDT", Side::Long),
                qty: qty(amount),
                entry: px(entry),
                exchange_ms: s.exchange_ms + 1,
            });
        }
        s.send(Event::Halt { flatten: false });
        s.send(Event::Resume);
        s
    }
}

/// `n` records (seq 1..=n) of lifecycles interleaved four at a time: Core positions that enter,
/// trail, get stopped, query and close, and Safety Net positions that are found and re-stopped,
/// with market noise between. Not an engine's output, but every record is well-formed and in the
/// order an engine would write it, so the projections mean something.
pub fn synthetic(n: usize) -> Vec<Record> {
    let symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT"];
    let mut lives: Vec<Vec<Journal>> = Vec::new();
    let mut out = Vec::with_capacity(n);
    let mut next_id = 1u64;
    let mut cursor = 0usize;
    while out.len() < n {
        while lives.len() < 4 {
            lives.push(lifecycle(next_id, symbols[next_id as usize % symbols.len()]));
            lives.last_mut().expect("pushed").reverse();
            next_id += 1;
        }
        cursor = (cursor + 1) % lives.len();
        match lives[cursor].pop() {
            Some(event) => out.push(event),
            None => {
                lives.swap_remove(cursor);
            }
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, event)| Record {
            seq: i as u64 + 1,
            at: Nanos(1_700_000_000_000_000_000 + i as u64 * 1_000),
            event,
        })
        .collect()
}

fn lifecycle(id: u64, symbol: &str) -> Vec<Journal> {
    lifecycle_with(id, symbol, true, false)
}

/// One position's records: every third a Safety Net position (with price staleness noise if
/// `noise`, closed if `close_all` or its id is even), the others a Core life from arm to exit.
pub fn lifecycle_with(id: u64, symbol: &str, noise: bool, close_all: bool) -> Vec<Journal> {
    let position = PositionId(id);
    let base = 1_000 + (id % 97) as i64 * 10;
    let p = |whole: i64| Price::from_int(whole);
    if id.is_multiple_of(3) {
        let key = usdm(symbol, Side::Short);
        let pct = Ratio::percent(2);
        let mut events = vec![
            Journal::PositionDetected {
                id: position,
                key,
                qty: qty("1.5"),
                entry: p(base),
                from: None,
            },
            Journal::SafetyStopSet { id: position, stop: p(base + 20), pct },
        ];
        if noise {
            events.push(Journal::PriceStale { market: key.market() });
            events.push(Journal::PriceFresh { market: key.market() });
        }
        events.push(Journal::PositionUpdated {
            id: position,
            qty: qty("2.5"),
            entry: p(base - 10),
        });
        events.push(Journal::SafetyStopSet { id: position, stop: p(base + 10), pct });
        if close_all || id.is_multiple_of(2) {
            events.push(Journal::PositionClosed { id: position, by: ClosedBy::External });
        }
        return events;
    }
    let key = usdm(symbol, Side::Long);
    let tag = |purpose, sequence| {
        ClientOrderId::new(OrderTag { modality: Modality::Core, purpose, position, sequence })
    };
    let entry_order = OrderIntent {
        cid: tag(OrderPurpose::Entry, 1),
        key,
        order_side: OrderSide::Buy,
        qty: qty("0.250"),
        purpose: OrderPurpose::Entry,
        modality: Modality::Core,
    };
    let close_order = OrderIntent {
        cid: tag(OrderPurpose::Close, 2),
        order_side: OrderSide::Sell,
        purpose: OrderPurpose::Close,
        ..entry_order
    };
    let update = |intent: &OrderIntent, status, avg: Price| OrderUpdate {
        account: key.account,
        venue: key.venue,
        symbol: key.symbol,
        cid: intent.cid,
        status,
        cum_qty: intent.qty,
        avg_price: avg,
        exchange_ms: 1_700_000_000_000 + id,
    };
    vec![
        Journal::Armed { id: position, key, params: ArmParams::default() },
        Journal::EntrySignal { id: position, cross: signal::Cross::Up, price: p(base) },
        Journal::OrderSent { intent: entry_order, reason: None },
        Journal::OrderUpdated {
            id: position,
            update: update(&entry_order, OrderStatus::Filled, p(base)),
        },
        Journal::PositionOpened {
            id: position,
            key,
            qty: qty("0.250"),
            entry: p(base),
            stop: p(base - 20),
            span: p(20),
        },
        Journal::StopMoved { id: position, from: p(base - 20), to: p(base), level: 1 },
        Journal::StopMoved { id: position, from: p(base), to: p(base + 20), level: 2 },
        Journal::StopTriggered { id: position, trigger: p(base + 19), stop: p(base + 20) },
        Journal::OrderSent { intent: close_order, reason: Some(CloseReason::StopHit) },
        Journal::QuerySent { id: position, cid: close_order.cid },
        Journal::OrderUpdated {
            id: position,
            update: update(&close_order, OrderStatus::Filled, p(base + 19)),
        },
        Journal::PositionClosed { id: position, by: ClosedBy::OwnOrder },
    ]
}
