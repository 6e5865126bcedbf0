//! Price paths (the seeded random walk replays per seed, the file format is read as documented,
//! the clock thread advances prices by itself) and TLS (REST and WebSockets trusted through the
//! CA the simulator generates and exposes, and refused without it).

mod support;

use std::time::Duration;

use engine::Event;
use engine::money::Price;
use engine::types::{AccountId, Symbol, Venue};
use feed::wire::{Connection, EventKind, Parsed};
use sim::{PricePath, Sim, SimConfig};
use support::{Rest, T, Ws, eventually, parse_frame, parser};

fn btc() -> Symbol {
    Symbol::lit("BTCUSDT")
}

fn eth() -> Symbol {
    Symbol::lit("ETHUSDT")
}

fn walk(seed: u64) -> Vec<(Price, Price, Price)> {
    let cfg = SimConfig {
        seed,
        path: PricePath::RandomWalk { max_step_bps: 20 },
        tick: None,
        ..SimConfig::default()
    };
    let sim = Sim::start(cfg).unwrap();
    (0..30)
        .map(|_| {
            sim.step();
            let usdm = sim.price(Venue::Usdm, btc()).unwrap();
            let spot = sim.price(Venue::Margin, btc()).unwrap();
            (usdm, spot, sim.price(Venue::Usdm, eth()).unwrap())
        })
        .collect()
}

#[test]
fn the_random_walk_replays_per_seed() {
    let a = walk(42);
    let b = walk(42);
    let c = walk(43);
    assert_eq!(a, b);
    assert_ne!(a, c);
    let distinct: std::collections::BTreeSet<_> = a.iter().map(|p| p.0).collect();
    assert!(distinct.len() > 5, "the walk moves: {distinct:?}");
    for (usdm, spot, eth) in &a {
        // Each price is on its market's tick (futures BTC 0.10, spot BTC 0.01, ETH 0.01).
        assert_eq!(usdm.units() % Price::lit("0.1").units(), 0);
        assert_eq!(spot.units() % Price::lit("0.01").units(), 0);
        assert_eq!(eth.units() % Price::lit("0.01").units(), 0);
        // One walk per symbol drives both venues.
        assert!(
            (usdm.units() - spot.units()).abs() <= Price::lit("0.05").units(),
            "{usdm} vs {spot}"
        );
        // 30 steps of at most 0.2 % stay within ±6 %.
        assert!(
            usdm.units() > Price::lit("47000").units()
                && usdm.units() < Price::lit("53000").units()
        );
    }
}

#[test]
fn a_price_file_is_read_line_by_line() {
    let dir = std::env::temp_dir().join(format!("sim-path-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("prices.txt");
    std::fs::write(
        &file,
        "# one price moves every market\n50100\n\nBTCUSDT 50200.05 ETHUSDT 3100  # pairs move only those\nusdm:BTCUSDT 50300\n",
    )
    .unwrap();
    let cfg = |looped| SimConfig {
        path: PricePath::File { path: file.clone(), looped },
        tick: None,
        ..SimConfig::default()
    };
    let sim = Sim::start(cfg(false)).unwrap();
    let prices = |sim: &Sim| {
        (
            sim.price(Venue::Usdm, btc()).unwrap(),
            sim.price(Venue::Margin, btc()).unwrap(),
            sim.price(Venue::Usdm, eth()).unwrap(),
            sim.price(Venue::Usdm, Symbol::lit("SOLUSDT")).unwrap(),
        )
    };
    let p = |s: &str| Price::lit(s);
    sim.step();
    assert_eq!(prices(&sim), (p("50100"), p("50100"), p("50100"), p("50100")));
    sim.step();
    // 50200.05 rounds to the futures tick (0.10) and stays exact on spot's (0.01).
    assert_eq!(prices(&sim), (p("50200.1"), p("50200.05"), p("3100"), p("50100")));
    sim.step();
    assert_eq!(prices(&sim), (p("50300"), p("50200.05"), p("3100"), p("50100")));
    sim.step();
    assert_eq!(prices(&sim).0, p("50300"), "the end of the file holds");
    let looped = Sim::start(cfg(true)).unwrap();
    for _ in 0..4 {
        looped.step();
    }
    assert_eq!(prices(&looped).0, p("50100"), "a looped file starts over");

    std::fs::write(&file, "50000\nBTCUSDT\n").unwrap();
    let err = Sim::start(cfg(false)).err().unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("line 2"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_clock_thread_steps_by_itself() {
    let cfg = SimConfig {
        path: PricePath::RandomWalk { max_step_bps: 50 },
        tick: Some(Duration::from_millis(10)),
        ..SimConfig::default()
    };
    let sim = Sim::start(cfg).unwrap();
    let first = sim.price(Venue::Usdm, btc()).unwrap();
    assert!(eventually(T, || sim.price(Venue::Usdm, btc()).unwrap() != first));
    let mut ws =
        Ws::connect(&format!("{}/market/ws/btcusdt@markPrice@1s", sim.urls().usdm_ws), None)
            .unwrap();
    let text = ws.next_text(T).expect("the clock publishes marks");
    let (parsed, _) = parse_frame(&mut parser(Connection::market(Venue::Usdm)), &text);
    assert!(matches!(parsed, Parsed::Events { kind: EventKind::MarkPrice, .. }));
}

#[test]
fn tls_serves_rest_and_websockets_trusted_through_the_exposed_ca() {
    let sim = Sim::start(SimConfig { tls: true, ..SimConfig::manual() }).unwrap();
    assert!(sim.urls().usdm_rest.starts_with("https://127.0.0.1:"));
    assert!(sim.urls().spot_wsapi.starts_with("wss://127.0.0.1:"));
    let ca = sim.ca_file().unwrap().to_path_buf();
    let pem = std::fs::read_to_string(&ca).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");

    let rest = Rest::new(&sim.urls().usdm_rest, Some(&ca));
    let t = feed::rest::parse_server_time(&mut rest.public("/fapi/v1/time").ok()).unwrap();
    assert!(t > 0);
    // Signed requests and listen keys work the same over TLS.
    let key = feed::rest::parse_listen_key(&mut rest.key_only("POST", "/fapi/v1/listenKey").ok())
        .unwrap();
    let spot = Rest::new(&sim.urls().spot_rest, Some(&ca));
    assert_eq!(spot.signed("GET", "/sapi/v1/margin/isolated/account", "").status, 200);

    // Without the CA, the certificate is not trusted.
    let untrusted = ureq::Agent::new_with_defaults();
    assert!(untrusted.get(&format!("{}/fapi/v1/ping", sim.urls().usdm_rest)).call().is_err());

    let mut book =
        Ws::connect(&format!("{}/public/ws/btcusdt@bookTicker", sim.urls().usdm_ws), Some(&ca))
            .unwrap();
    let mut private =
        Ws::connect(&format!("{}/private/ws/{}", sim.urls().usdm_ws, key.expose()), Some(&ca))
            .unwrap();
    sim.step();
    let text = book.next_text(T).unwrap();
    let (_, events) = parse_frame(&mut parser(Connection::market(Venue::Usdm)), &text);
    assert!(matches!(events[..], [Event::Book { .. }]), "{text}");
    sim.manual_order(
        Venue::Usdm,
        btc(),
        engine::types::OrderSide::Buy,
        engine::money::Qty::lit("0.003"),
    )
    .unwrap();
    let account = private.wait_for("ACCOUNT_UPDATE", T).unwrap();
    let (_, events) = parse_frame(&mut parser(Connection::usdm_user(AccountId(0))), &account);
    assert!(events.iter().any(|e| matches!(e, Event::Position { qty, .. } if !qty.is_zero())));
    // Another simulator's CA does not vouch for this one's certificate.
    let other = Sim::start(SimConfig { tls: true, ..SimConfig::manual() }).unwrap();
    let url = format!("{}/public/ws/btcusdt@bookTicker", sim.urls().usdm_ws);
    assert!(Ws::connect(&url, other.ca_file()).is_err());
    assert!(Ws::connect(&url, Some(&ca)).is_ok());

    sim.shutdown();
    assert!(!ca.exists(), "the CA file goes with the simulator");
}
