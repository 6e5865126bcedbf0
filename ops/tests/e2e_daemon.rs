//! The real `robsond run` binary against the simulator over TLS on loopback (issue 5's
//! end-to-end list, USD-M futures): a manual long closed exactly once at its safety stop and not
//! a tick before; a Core position that arms, enters on the crossover, trails and exits while the
//! Safety Net never touches it; a market stream silent for 10 s during which the REST fallback
//! keeps the stop alive and `/readyz` says so; SIGTERM exits 0; and no secret in any output.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use engine::types::{OrderSide, Symbol, Venue};
use engine::{Price, Qty};
use serde_json::Value;
use sim::{ConnKind, Fault, OrderSource, PricePath, Sim, SimConfig};

const TOKEN: &str = "e2e-token-7f3a9c";
const GUARD: Duration = Duration::from_secs(20);

struct Robsond {
    child: Child,
    base: String,
    _journal: tempfile::TempDir,
}

impl Robsond {
    fn start(sim: &Sim, stale_ms: &str) -> Robsond {
        Robsond::start_with(sim, stale_ms, &[])
    }

    fn start_with(sim: &Sim, stale_ms: &str, extra: &[(&str, &str)]) -> Robsond {
        let robsond = Robsond::spawn(sim.urls(), sim.ca_file().unwrap(), stale_ms, extra);
        robsond.wait_for("ready", |r| r.get("/readyz").0 == 200);
        robsond
    }

    /// Started, but not waited for: a standby does not answer until it holds the lease.
    fn start_detached(
        urls: &sim::SimUrls,
        ca: &std::path::Path,
        extra: &[(&str, &str)],
    ) -> Robsond {
        Robsond::spawn(urls, ca, "5000", extra)
    }

    fn spawn(
        urls: &sim::SimUrls,
        ca: &std::path::Path,
        stale_ms: &str,
        extra: &[(&str, &str)],
    ) -> Robsond {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let journal = tempfile::tempdir().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_robsond"))
            .arg("run")
            .env_clear()
            .env("ROBSON_BINANCE_API_KEY", SimConfig::DEMO_API_KEY)
            .env("ROBSON_BINANCE_API_SECRET", SimConfig::DEMO_SECRET)
            .env("ROBSON_USDM_REST_URL", &urls.usdm_rest)
            .env("ROBSON_USDM_WS_URL", &urls.usdm_ws)
            .env("ROBSON_CA_FILE", ca)
            .env("ROBSON_JOURNAL_DIR", journal.path())
            .env("ROBSON_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("ROBSON_API_TOKEN", TOKEN)
            .env("ROBSON_SYMBOLS", "BTCUSDT,ETHUSDT")
            .env("ROBSON_STALE_MS", stale_ms)
            // Long enough that detection in these tests can only come from the user-data
            // streams, not from a periodic REST round (the one at start-up aside).
            .env("ROBSON_RECONCILE_SECS", "600")
            .envs(extra.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start robsond");
        Robsond { child, base: format!("http://127.0.0.1:{port}"), _journal: journal }
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into()
    }

    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .body(body.unwrap_or("").to_owned())
            .unwrap();
        match Robsond::agent().run(request) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let text = response.body_mut().read_to_string().unwrap_or_default();
                (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
            }
            Err(_) => (0, Value::Null),
        }
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None)
    }

    fn wait_for(&self, what: &str, mut done: impl FnMut(&Robsond) -> bool) {
        let until = Instant::now() + GUARD;
        while !done(self) {
            assert!(
                Instant::now() < until,
                "timed out waiting for {what}: readyz {:?}",
                self.get("/readyz")
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn positions(&self) -> Vec<Value> {
        self.get("/v1/positions").1["positions"].as_array().cloned().unwrap_or_default()
    }

    /// SIGTERM, then everything the process printed.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let status = self.child.wait().unwrap();
        let mut output = String::new();
        self.child.stdout.take().unwrap().read_to_string(&mut output).unwrap();
        self.child.stderr.take().unwrap().read_to_string(&mut output).unwrap();
        (status, output)
    }
}

fn simulator() -> Sim {
    Sim::start(SimConfig {
        tls: true,
        path: PricePath::Manual,
        tick: Some(Duration::from_millis(50)),
        ..SimConfig::default()
    })
    .unwrap()
}

fn btc() -> Symbol {
    Symbol::new(b"BTCUSDT").unwrap()
}

fn eth() -> Symbol {
    Symbol::new(b"ETHUSDT").unwrap()
}

fn robsond_orders(sim: &Sim, symbol: Symbol) -> Vec<sim::OrderRecord> {
    sim.orders()
        .into_iter()
        .filter(|o| o.symbol == symbol && matches!(o.source, OrderSource::Api { .. }))
        .collect()
}

#[test]
fn a_manual_long_is_closed_exactly_once_at_its_stop_and_core_trades_beside_it() {
    let sim = simulator();
    let robsond = Robsond::start(&sim, "5000");

    // The user opens a long by hand: protected 2% below its entry.
    let fill = sim.manual_order(Venue::Usdm, btc(), OrderSide::Buy, Qty::lit("0.05")).unwrap();
    robsond.wait_for("the Safety Net", |r| {
        r.positions().iter().any(|p| p["symbol"] == "BTCUSDT" && p["modality"] == "safety_net")
    });
    let safety = robsond.positions().into_iter().find(|p| p["symbol"] == "BTCUSDT").unwrap();
    let stop = Price::lit(safety["stop"].as_str().unwrap());
    assert_eq!(Price::lit(safety["entry"].as_str().unwrap()), fill.price);

    // Core on ETH: armed, then a dip and a rise cross its averages.
    let (status, armed) = robsond.call(
        "POST",
        "/v1/arm",
        Some(r#"{"venue":"usdm","symbol":"ETHUSDT","side":"long","capital":"5000","technical_stop":"2950","ma_fast":3,"ma_slow":8}"#),
    );
    assert_eq!(status, 201, "{armed}");
    sim.set_price(Venue::Usdm, eth(), Price::lit("2990")).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    sim.set_price(Venue::Usdm, eth(), Price::lit("3012")).unwrap();
    robsond.wait_for("Core's entry", |r| {
        r.positions().iter().any(|p| p["symbol"] == "ETHUSDT" && p["state"] == "active")
    });
    // It climbs two spans: the stop trails up.
    let stop_of = |r: &Robsond| {
        r.positions()
            .into_iter()
            .find(|p| p["symbol"] == "ETHUSDT")
            .map(|p| Price::lit(p["stop"].as_str().unwrap()))
    };
    let first_stop = stop_of(&robsond).unwrap();
    sim.set_price(Venue::Usdm, eth(), Price::lit("3160")).unwrap();
    robsond.wait_for("the trailing stop", |r| stop_of(r).is_some_and(|s| s > first_stop));
    let trailed = stop_of(&robsond).unwrap();
    // The CLI's clients of the control API, as an operator runs them.
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_robsond"))
            .args(args)
            .env_clear()
            .env("ROBSON_HTTP_ADDR", robsond.base.trim_start_matches("http://"))
            .env("ROBSON_API_TOKEN", TOKEN)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, status) = cli(&["status"]);
    assert!(ok && status.contains("healthz  ok") && status.contains("readyz   ok"), "{status}");
    let (ok, table) = cli(&["positions"]);
    assert!(ok, "{table}");
    assert!(table.lines().next().unwrap().starts_with("id"), "a table with a header:\n{table}");
    assert!(table.contains("ETHUSDT") && table.contains("BTCUSDT"), "{table}");
    let (ok, json) = cli(&["positions", "--json"]);
    assert!(ok && serde_json::from_str::<Value>(&json).is_ok(), "{json}");

    // BTC one tick above the stop: nothing. At the stop: one close for the whole position.
    let tick = Price::lit("0.1");
    sim.set_price(Venue::Usdm, btc(), Price::from_units(stop.units() + tick.units())).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert!(robsond_orders(&sim, btc()).is_empty(), "a close before the stop was reached");
    sim.set_price(Venue::Usdm, btc(), stop.saturating_sub(tick)).unwrap();
    robsond.wait_for("the safety close", |_| !robsond_orders(&sim, btc()).is_empty());
    // ETH falls through Core's trailed stop: Core exits.
    sim.set_price(Venue::Usdm, eth(), trailed.saturating_sub(Price::lit("1"))).unwrap();
    robsond.wait_for("Core's exit", |_| robsond_orders(&sim, eth()).len() == 2);
    std::thread::sleep(Duration::from_millis(1_000));

    let btc_orders = robsond_orders(&sim, btc());
    assert_eq!(btc_orders.len(), 1, "closed exactly once: {btc_orders:?}");
    assert_eq!(btc_orders[0].executed_qty, Qty::lit("0.05"));
    assert!(btc_orders[0].reduce_only && btc_orders[0].side == OrderSide::Sell);
    assert!(btc_orders[0].client_order_id.starts_with("rbd-SX-"));
    let eth_orders = robsond_orders(&sim, eth());
    let ids: Vec<&str> = eth_orders.iter().map(|o| o.client_order_id.as_str()).collect();
    assert!(ids[0].starts_with("rbd-CE-") && ids[1].starts_with("rbd-CX-"), "{ids:?}");
    assert!(!ids.iter().any(|id| id.starts_with("rbd-S")), "the Safety Net acted on Core's key");
    assert!(sim.position(btc()).amount.is_zero() && sim.position(eth()).amount.is_zero());

    let (_, metrics) = robsond.get("/metrics");
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(metrics.contains("robsond_orders_total{outcome=\"filled\"}"), "{metrics}");
    let (status, output) = robsond.stop();
    assert!(status.success(), "SIGTERM exits 0: {status:?}\n{output}");
    for secret in [SimConfig::DEMO_SECRET, TOKEN] {
        assert!(!output.contains(secret), "a secret in the output:\n{output}");
        assert!(!metrics.contains(secret));
    }
}

#[test]
fn a_silent_market_stream_is_bridged_by_the_rest_fallback() {
    let sim = simulator();
    let robsond = Robsond::start(&sim, "1000");
    sim.manual_order(Venue::Usdm, btc(), OrderSide::Buy, Qty::lit("0.02")).unwrap();
    robsond.wait_for("the Safety Net", |r| {
        r.positions().iter().any(|p| p["symbol"] == "BTCUSDT" && p["modality"] == "safety_net")
    });
    let stop = robsond
        .positions()
        .into_iter()
        .find(|p| p["symbol"] == "BTCUSDT")
        .map(|p| Price::lit(p["stop"].as_str().unwrap()))
        .unwrap();

    // The mark-price stream goes silent for 10 s; the connection stays up.
    sim.fault(Fault::Stall { kind: Some(ConnKind::UsdmMarket), duration: Duration::from_secs(10) });
    robsond.wait_for("readyz to report the stale stream", |r| {
        let (status, body) = r.get("/readyz");
        status == 503 && body["stream_usdm_market"]["fresh"] == false
    });
    // The price crosses the stop while the stream is silent: the REST fallback sees it.
    sim.set_price(Venue::Usdm, btc(), stop.saturating_sub(Price::lit("5"))).unwrap();
    robsond.wait_for("the close through the fallback", |_| !robsond_orders(&sim, btc()).is_empty());
    assert_eq!(robsond_orders(&sim, btc()).len(), 1);
    // The stream comes back and readiness with it.
    robsond.wait_for("the stream back", |r| r.get("/readyz").0 == 200);
    let (status, _) = robsond.stop();
    assert!(status.success());
}

#[test]
fn a_manual_margin_short_is_closed_exactly_once_at_its_stop() {
    let sim = simulator();
    let urls = sim.urls().clone();
    let robsond = Robsond::start_with(
        &sim,
        "5000",
        &[
            ("ROBSON_VENUES", "usdm,margin"),
            ("ROBSON_MARGIN_SYMBOLS", "BTCUSDT"),
            ("ROBSON_SPOT_REST_URL", &urls.spot_rest),
            ("ROBSON_SPOT_WS_URL", &urls.spot_ws),
            ("ROBSON_SPOT_WSAPI_URL", &urls.spot_wsapi),
        ],
    );
    // Borrowed and sold by hand in the app: the margin user data (listen token on the WebSocket
    // API) tells the Safety Net, which protects it 2% above the fill.
    let fill = sim.manual_order(Venue::Margin, btc(), OrderSide::Sell, Qty::lit("0.02")).unwrap();
    let margin_position = |r: &Robsond| {
        r.positions().into_iter().find(|p| p["venue"] == "margin" && p["symbol"] == "BTCUSDT")
    };
    robsond.wait_for("the Safety Net on margin", |r| margin_position(r).is_some());
    let position = margin_position(&robsond).unwrap();
    assert_eq!(position["side"], "SHORT");
    assert_eq!(Price::lit(position["entry"].as_str().unwrap()), fill.price);
    let stop = Price::lit(position["stop"].as_str().unwrap());
    assert!(stop > fill.price);

    let margin_orders = || -> Vec<sim::OrderRecord> {
        sim.orders()
            .into_iter()
            .filter(|o| o.venue == Venue::Margin && matches!(o.source, OrderSource::Api { .. }))
            .collect()
    };
    let tick = Price::lit("0.01");
    sim.set_price(Venue::Margin, btc(), Price::from_units(stop.units() - tick.units())).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert!(margin_orders().is_empty(), "a close before the stop was reached");
    sim.set_price(Venue::Margin, btc(), stop).unwrap();
    robsond.wait_for("the margin close", |_| !margin_orders().is_empty());
    std::thread::sleep(Duration::from_millis(1_000));
    let closes = margin_orders();
    assert_eq!(closes.len(), 1, "closed exactly once: {closes:?}");
    assert_eq!((closes[0].side, closes[0].executed_qty), (OrderSide::Buy, Qty::lit("0.02")));
    assert!(closes[0].client_order_id.starts_with("rbd-SX-"));
    let (status, _) = robsond.stop();
    assert!(status.success());
}

/// A database of its own on the test server, dropped at the end.
struct Database {
    url: String,
    admin: String,
    name: String,
}

impl Database {
    fn new() -> Database {
        let admin = std::env::var("DATABASE_URL")
            .expect("DATABASE_URL: run through scripts/test, or `source scripts/pg-env` first");
        let name = format!("robsond_e2e_{}", std::process::id());
        let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
        client.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let (base, _) = admin.rsplit_once('/').expect("a URL with a database name");
        Database { url: format!("{base}/{name}"), admin, name }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// Issues 4 and 5: a second instance waits for the account's Postgres lease, takes over when the
/// first stops, rebuilds its state from Postgres (its own journal is empty), and protects the
/// position the first one was protecting: one close, sent by the second, none by the first.
#[test]
fn a_standby_takes_the_lease_rebuilds_from_postgres_and_closes_once() {
    let db = Database::new();
    let sim = simulator();
    let pg = [("ROBSON_DATABASE_URL", db.url.as_str())];
    let first = Robsond::start_with(&sim, "5000", &pg);
    sim.manual_order(Venue::Usdm, btc(), OrderSide::Buy, Qty::lit("0.03")).unwrap();
    first.wait_for("the Safety Net", |r| {
        r.positions().iter().any(|p| p["symbol"] == "BTCUSDT" && p["modality"] == "safety_net")
    });
    let protected = first.positions().into_iter().find(|p| p["symbol"] == "BTCUSDT").unwrap();

    // The second instance starts while the first holds the lease: it waits, serving nothing.
    let second = std::thread::spawn({
        let sim_urls = sim.urls().clone();
        let ca = sim.ca_file().unwrap().to_owned();
        let url = db.url.clone();
        move || Robsond::start_detached(&sim_urls, &ca, &[("ROBSON_DATABASE_URL", url.as_str())])
    });
    std::thread::sleep(Duration::from_millis(1_500));
    let (status, output) = first.stop();
    assert!(status.success(), "{output}");

    let second = second.join().unwrap();
    second.wait_for("the standby to take over", |r| r.get("/readyz").0 == 200);
    let taken = second.positions().into_iter().find(|p| p["symbol"] == "BTCUSDT");
    let taken = taken.expect("the position is protected after the hand-over");
    assert_eq!(taken["id"], protected["id"], "the same position, rebuilt from Postgres");
    assert_eq!(taken["stop"], protected["stop"]);

    let stop = Price::lit(taken["stop"].as_str().unwrap());
    sim.set_price(Venue::Usdm, btc(), Price::from_units(stop.units() - 1_000_000)).unwrap();
    second.wait_for("the close", |_| !robsond_orders(&sim, btc()).is_empty());
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(robsond_orders(&sim, btc()).len(), 1, "closed exactly once across the hand-over");
    let (status, output) = second.stop();
    assert!(status.success(), "{output}");
}

/// SIGTERM stops new entries but not protection: while a close is still in flight, a stop
/// crossed during the drain is closed too, and the process exits 0 once both are settled.
#[test]
fn a_stop_crossed_during_the_sigterm_drain_is_still_closed() {
    let sim = simulator();
    let mut robsond = Robsond::start(&sim, "5000");
    sim.manual_order(Venue::Usdm, btc(), OrderSide::Buy, Qty::lit("0.02")).unwrap();
    sim.manual_order(Venue::Usdm, eth(), OrderSide::Buy, Qty::lit("1")).unwrap();
    robsond.wait_for("both protected", |r| r.positions().len() == 2);
    let stop_of = |r: &Robsond, symbol: &str| {
        let p = r.positions().into_iter().find(|p| p["symbol"] == symbol).unwrap();
        Price::lit(p["stop"].as_str().unwrap())
    };
    let (btc_stop, eth_stop) = (stop_of(&robsond, "BTCUSDT"), stop_of(&robsond, "ETHUSDT"));

    // BTC's close stays open (NEW) for 3 s at the exchange.
    sim.fault(Fault::DelayFills { delay: Duration::from_secs(3), orders: 1 });
    sim.set_price(Venue::Usdm, btc(), Price::from_units(btc_stop.units() - 1_000_000)).unwrap();
    robsond.wait_for("BTC's close sent", |_| !robsond_orders(&sim, btc()).is_empty());
    let pid = robsond.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    std::thread::sleep(Duration::from_millis(300));
    sim.set_price(Venue::Usdm, eth(), Price::from_units(eth_stop.units() - 1_000_000)).unwrap();
    let status = robsond.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        robsond_orders(&sim, eth()).len(),
        1,
        "ETH's stop, crossed during the drain, closed"
    );
    assert!(sim.position(btc()).amount.is_zero() && sim.position(eth()).amount.is_zero());
}

/// Nothing is protected before start-up has reconciled; a failed first round is retried soon
/// (not a period later), and the daemon becomes ready.
#[test]
fn a_failed_first_reconciliation_is_retried_and_the_daemon_becomes_ready() {
    let sim = simulator();
    sim.fault(Fault::FailRest {
        path_prefix: "/fapi/v3/positionRisk".into(),
        count: 1,
        failure: sim::RestFailure::RejectBefore { status: 503 },
    });
    // `start` waits for /readyz, which needs the reconciliation.
    let robsond = Robsond::start(&sim, "5000");
    let failed_first =
        sim.requests().iter().filter(|r| r.path.starts_with("/fapi/v3/positionRisk")).count();
    assert!(failed_first >= 2, "the failed round was tried again ({failed_first} calls)");
    let (status, _) = robsond.stop();
    assert!(status.success());
}
