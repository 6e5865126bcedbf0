//! `robsond demo`: the whole daemon against the built-in simulator, over real loopback sockets
//! with TLS, no credentials and no Postgres. A scripted market makes both modalities act:
//!
//! 1. a manual BTCUSDT long ("a user in the Binance app") is detected from the user-data stream
//!    and protected by the Safety Net, 2% below its entry;
//! 2. Core is armed on ETHUSDT; a dip then a rise makes its moving averages cross, it enters,
//!    trails its stop up by the hand-span rule as the price climbs, and exits when the price
//!    falls back through the stop;
//! 3. BTC falls through the safety stop and the manual long is closed, once;
//! 4. a manual isolated-margin BTCUSDT short (borrowed and sold in the app) is protected 2% above
//!    its entry from the margin user data (listen token on the WebSocket API) and closed when
//!    the margin market rallies through that stop.
//!
//! A status line per second shows prices, positions, stops and orders; the end prints what the
//! exchange saw and the tick-to-intent latency percentiles. `--forever` then keeps the daemon
//! and a random walk running as a playground for the CLI.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use engine::events::{ArmParams, Event};
use engine::types::{AccountId, OrderSide, PositionKey, Side, Symbol, Venue};
use engine::{Amount, Price, Qty, State};
use sim::{OrderSource, PricePath, Sim, SimConfig};

use crate::api::{Answer, Command, Envelope, Probes};
use crate::config::{Config, Sources};
use crate::daemon::{Daemon, Options};

pub struct DemoOptions {
    pub duration: Duration,
    pub seed: u64,
    pub forever: bool,
}

fn btc() -> Symbol {
    Symbol::new(b"BTCUSDT").expect("valid")
}

fn eth() -> Symbol {
    Symbol::new(b"ETHUSDT").expect("valid")
}

/// One scripted step: at `at` seconds, these prices.
struct Step {
    at: f64,
    btc: &'static str,
    eth: &'static str,
    /// BTCUSDT on the spot/margin market.
    margin: &'static str,
    say: &'static str,
}

const SCRIPT: &[Step] = &[
    Step { at: 0.0, btc: "50000", eth: "3000", margin: "50000", say: "" },
    Step {
        at: 3.0,
        btc: "50050",
        eth: "2990",
        margin: "50020",
        say: "ETH dips: Core's averages settle",
    },
    Step {
        at: 6.0,
        btc: "49800",
        eth: "3012",
        margin: "50100",
        say: "ETH turns up: the fast average crosses",
    },
    Step { at: 8.0, btc: "49600", eth: "3045", margin: "50200", say: "" },
    Step {
        at: 10.0,
        btc: "49500",
        eth: "3080",
        margin: "50400",
        say: "ETH climbs: Core trails its stop",
    },
    Step { at: 12.0, btc: "49300", eth: "3120", margin: "50700", say: "" },
    Step {
        at: 14.0,
        btc: "49100",
        eth: "3160",
        margin: "51150",
        say: "BTC margin rallies through the short's safety stop",
    },
    Step {
        at: 16.0,
        btc: "48950",
        eth: "3150",
        margin: "51200",
        say: "BTC crosses the safety stop",
    },
    Step {
        at: 18.0,
        btc: "48900",
        eth: "3070",
        margin: "51200",
        say: "ETH falls back through Core's stop",
    },
    Step { at: 20.0, btc: "48900", eth: "3060", margin: "51200", say: "" },
];

pub fn run(options: DemoOptions) -> Result<(), String> {
    println!("robsond demo: starting the simulator (TLS on loopback) and the daemon");
    let sim = Sim::start(SimConfig {
        seed: options.seed,
        tls: true,
        path: PricePath::Manual,
        tick: Some(Duration::from_millis(100)),
        ..SimConfig::default()
    })
    .map_err(|e| format!("simulator: {e}"))?;
    let journal = std::env::temp_dir().join(format!("robsond-demo-{}", std::process::id()));
    // A fresh token per run, printed for --forever's playground: the control API is on.
    let token =
        format!("demo-{:016x}", options.seed ^ u64::from(std::process::id()).rotate_left(17));
    let urls = sim.urls();
    let ca = sim.ca_file().ok_or("the simulator has no CA file")?.to_string_lossy().into_owned();
    let env: BTreeMap<String, String> = [
        ("ROBSON_BINANCE_API_KEY", SimConfig::DEMO_API_KEY),
        ("ROBSON_BINANCE_API_SECRET", SimConfig::DEMO_SECRET),
        ("ROBSON_USDM_REST_URL", urls.usdm_rest.as_str()),
        ("ROBSON_USDM_WS_URL", urls.usdm_ws.as_str()),
        ("ROBSON_CA_FILE", ca.as_str()),
        ("ROBSON_JOURNAL_DIR", journal.to_str().unwrap_or("robsond-demo-journal")),
        ("ROBSON_HTTP_ADDR", "127.0.0.1:0"),
        ("ROBSON_SYMBOLS", "BTCUSDT,ETHUSDT"),
        ("ROBSON_VENUES", "usdm,margin"),
        ("ROBSON_MARGIN_SYMBOLS", "BTCUSDT"),
        ("ROBSON_SPOT_REST_URL", urls.spot_rest.as_str()),
        ("ROBSON_SPOT_WS_URL", urls.spot_ws.as_str()),
        ("ROBSON_SPOT_WSAPI_URL", urls.spot_wsapi.as_str()),
        ("ROBSON_RECONCILE_SECS", "5"),
        ("ROBSON_API_TOKEN", token.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = Config::load(&Sources::new(env, None).map_err(|e| e.to_string())?)
        .map_err(|e| format!("demo configuration: {e}"))?;
    let daemon = Daemon::start(config, Options::default())?;
    println!("robsond demo: probes and metrics on http://{}", daemon.http_addr);
    if options.forever {
        println!(
            "robsond demo: control API: ROBSON_HTTP_ADDR={} ROBSON_API_TOKEN={token} robsond positions",
            daemon.http_addr
        );
    }

    let ready_by = Instant::now() + Duration::from_secs(15);
    while !(daemon.health.readiness(false).0) {
        if Instant::now() > ready_by {
            let (_, body) = daemon.health.readiness(false);
            return Err(format!("the daemon did not become ready: {body}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("robsond demo: ready (streams connected, reconciled, lease held)\n");

    sim.manual_order(Venue::Usdm, btc(), OrderSide::Buy, Qty::lit("0.05"))
        .map_err(|e| format!("manual order: {e:?}"))?;
    println!("  [app]   a user buys 0.05 BTCUSDT by hand at about 50,000");
    sim.manual_order(Venue::Margin, btc(), OrderSide::Sell, Qty::lit("0.02"))
        .map_err(|e| format!("manual margin order: {e:?}"))?;
    println!("  [app]   and shorts 0.02 BTCUSDT on isolated margin (borrowed, sold)");
    std::thread::sleep(Duration::from_millis(300));
    let arm = Event::Arm {
        key: PositionKey {
            account: AccountId(0),
            venue: Venue::Usdm,
            symbol: eth(),
            side: Side::Long,
        },
        params: ArmParams {
            capital: Some(Amount::lit("5000")),
            risk: None,
            technical_stop: Some(Price::lit("2950")),
            ma_fast: Some(3),
            ma_slow: Some(8),
        },
    };
    match ask(&daemon, Command::Engine(arm)) {
        Some(Answer::Engine(reply)) => {
            println!("  [cli]   arm ETHUSDT long, technical stop 2,950: {reply:?}")
        }
        other => return Err(format!("arm: {other:?}")),
    }

    let started = Instant::now();
    let mut next_step = 0;
    let mut next_status = Instant::now();
    let end = started
        + options
            .duration
            .min(Duration::from_secs(SCRIPT.last().map_or(20.0, |s| s.at) as u64 + 4));
    while Instant::now() < end {
        let t = started.elapsed().as_secs_f64();
        while next_step < SCRIPT.len() && SCRIPT[next_step].at <= t {
            let step = &SCRIPT[next_step];
            let _ = sim.set_price(Venue::Usdm, btc(), Price::lit(step.btc));
            let _ = sim.set_price(Venue::Usdm, eth(), Price::lit(step.eth));
            let _ = sim.set_price(Venue::Margin, btc(), Price::lit(step.margin));
            if !step.say.is_empty() {
                println!("  [market] {}", step.say);
            }
            next_step += 1;
        }
        if Instant::now() >= next_status {
            next_status += Duration::from_secs(1);
            status_line(&daemon, &sim, t);
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    summary(&daemon, &sim);
    if options.forever {
        println!(
            "\nrobsond demo: --forever: a random walk keeps the market moving; Ctrl-C to stop"
        );
        loop {
            for symbol in [btc(), eth()] {
                if let Some(price) = sim.price(Venue::Usdm, symbol) {
                    let step =
                        (fastrand_step(options.seed) * price.units() as f64 / 10_000.0) as i64;
                    let _ =
                        sim.set_price(Venue::Usdm, symbol, Price::from_units(price.units() + step));
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    daemon.shutdown().map(|_| ())?;
    let _ = std::fs::remove_dir_all(&journal);
    Ok(())
}

fn fastrand_step(seed: u64) -> f64 {
    use std::sync::atomic::AtomicU64;
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Relaxed) ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Relaxed);
    (x % 11) as f64 - 5.0
}

fn ask(daemon: &Daemon, command: Command) -> Option<Answer> {
    let (reply, answer) = crossbeam_channel::bounded(1);
    daemon.commands.send(Envelope { command, reply }).ok()?;
    answer.recv_timeout(Duration::from_secs(5)).ok()
}

fn status_line(daemon: &Daemon, sim: &Sim, t: f64) {
    let mark = |s| sim.mark_price(s).map_or("-".to_owned(), |p: Price| p.to_string());
    let positions = match ask(daemon, Command::Positions) {
        Some(Answer::Positions(views, _)) => views
            .iter()
            .filter(|v| !matches!(v.state, State::Core(engine::CoreState::Armed)))
            .map(|v| {
                let state = match v.state {
                    State::Core(s) => format!("core {s:?}"),
                    State::Safety(s) => format!("safety {s:?}"),
                };
                let venue = if v.key.venue == Venue::Margin { " margin" } else { "" };
                format!(
                    "{}{venue} {} {} @ {} stop {}",
                    v.key.symbol.as_str(),
                    state,
                    v.qty,
                    v.entry,
                    v.stop
                )
            })
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "?".to_owned(),
    };
    let ours = sim.orders().iter().filter(|o| matches!(o.source, OrderSource::Api { .. })).count();
    println!(
        "  {t:5.1}s  BTC {}  ETH {}  BTC margin {}  orders {ours}  {}",
        mark(btc()),
        mark(eth()),
        sim.price(Venue::Margin, btc()).map_or("-".to_owned(), |p| p.to_string()),
        if positions.is_empty() { "no positions".to_owned() } else { positions }
    );
}

fn summary(daemon: &Daemon, sim: &Sim) {
    println!("\nrobsond demo: what the exchange saw");
    for order in sim.orders() {
        let who = match order.source {
            OrderSource::Api { .. } => "robsond",
            OrderSource::Manual => "by hand",
        };
        let venue = if order.venue == Venue::Margin { "margin" } else { "usdm" };
        println!(
            "  {who:8} {venue:6} {:8} {:?} {:>10} {} reduce_only={} {:?} at {}",
            order.symbol.as_str(),
            order.side,
            order.executed_qty.to_string(),
            order.client_order_id,
            order.reduce_only,
            order.outcome,
            order.avg_price
        );
    }
    let _ = daemon.health.metrics();
    match daemon.metrics.latency_quantiles(&[0.5, 0.9, 0.99, 1.0]) {
        Some((q, n)) => println!(
            "\nrobsond demo: tick-to-intent latency over {n} intents: p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
            q[0] as f64 / 1e3,
            q[1] as f64 / 1e3,
            q[2] as f64 / 1e3,
            q[3] as f64 / 1e3
        ),
        None => println!("\nrobsond demo: no intent was emitted from a frame"),
    }
    let _ = daemon.metrics.hot_loop_turns.load(Relaxed);
}
