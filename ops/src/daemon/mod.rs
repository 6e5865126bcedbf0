//! The daemon's threads (DESIGN.md section 7) and how they are wired: the pinned hot loop, the
//! I/O thread, the cold thread and the HTTP thread, joined by rtrb rings (hot ↔ I/O, hot → cold)
//! and a crossbeam channel (HTTP → hot).
//!
//! Scope today: USD-M futures (market, book and user-data streams, orders, listen key,
//! reconciliation, REST price fallback) and isolated margin (spot market streams, user data by
//! listen token on the WebSocket API, one connection per pair, orders, reconciliation by
//! `myTrades`), with the local journal; without Postgres the single-instance guard is the
//! journal's file lock, and the lease is granted once the first reconciliation round is in.
//! The Postgres writer and lease join here next.

mod cold;
mod hot;
mod io;
mod lease;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::Duration;

use engine::events::Intent;
use engine::types::{AccountId, MarketKey, TriggerSource};
use engine::{Engine, Event};
use feed::rest::{
    Api, Credentials, ExecutorConfig, HttpConfig, OrderExecutor, PositionMode, RestClient,
    RestConfig, SystemClock,
};
use feed::ws::WsConfig;

use crate::affinity;
use crate::api::{self, ApiConfig, Envelope, Probes};
use crate::config::{Config, Signing};
use crate::health::Health;
use crate::metrics::{Metrics, latency_channel};
use persist::pg::PgConfig;

pub use hot::Role;

/// Marks the daemon unhealthy when a thread ends (returns, fails or panics) while the daemon
/// is not stopping: `/healthz` then fails and an orchestrator restarts the process.
struct DeathWatch {
    name: &'static str,
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
}

impl DeathWatch {
    fn new(name: &'static str, health: &Arc<Health>, stop: &Arc<AtomicBool>) -> DeathWatch {
        DeathWatch { name, health: Arc::clone(health), stop: Arc::clone(stop) }
    }
}

impl Drop for DeathWatch {
    fn drop(&mut self) {
        if !self.stop.load(Relaxed) {
            self.health.dead_thread.store(true, Relaxed);
            eprintln!("robsond: the {} thread ended unexpectedly", self.name);
        }
    }
}

/// Hot thread → I/O thread.
pub enum ToIo {
    Intent(Intent),
    /// The markets whose stream is stale now (the whole set, sent when it changes).
    Stale(Vec<(MarketKey, TriggerSource)>),
    ListenKeyLost,
    /// A margin pair needs a listen token (`POST /sapi/v1/userListenToken`).
    TokenRequest {
        symbol: engine::types::Symbol,
        validity_ms: u64,
    },
    /// A user-data stream came back after a gap (or a margin subscription was lost): what it
    /// missed is fetched now rather than at the next periodic round.
    ReconcileNow,
}

/// I/O thread → hot thread.
pub enum ToHot {
    Engine(Event),
    /// The futures user-data stream's path for the current listen key.
    UserStream(String),
    Token {
        symbol: engine::types::Symbol,
        token: feed::rest::ListenToken,
    },
    TokenFailed(engine::types::Symbol),
    /// The first reconciliation round has been applied.
    Reconciled,
    Lease(bool),
}

/// Knobs the CLI and the demo set beyond the configuration file.
pub struct Options {
    pub engine: engine::Config,
    pub market_ws: WsConfig,
    pub user_ws: WsConfig,
    pub spot_ws: WsConfig,
    pub api_ws: WsConfig,
    /// Set by a signal: ends a wait for the Postgres lease before anything started.
    pub stop: Arc<AtomicBool>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            engine: engine::Config::default(),
            market_ws: WsConfig::usdm_market(),
            user_ws: WsConfig::usdm_user(),
            spot_ws: WsConfig::spot_market(),
            // The API connection is not rotated ahead of Binance's 24 h cut: the listen-token
            // subscription lives on the socket, and a make-before-break switch would leave it
            // on the old one. At the cut the session reconnects and subscribes again, and the
            // reconciliation round fetches the fills of that second (by trade id, no doubles).
            api_ws: WsConfig { rotate_after: None, ..WsConfig::spot_api() },
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

pub struct Daemon {
    pub stop: Arc<AtomicBool>,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    pub http_addr: std::net::SocketAddr,
    pub commands: crossbeam_channel::Sender<Envelope>,
    hot: Option<JoinHandle<Engine>>,
    io: Option<JoinHandle<()>>,
    cold: Option<cold::Cold>,
    lease: Option<JoinHandle<()>>,
    http: Option<JoinHandle<()>>,
    server: Arc<tiny_http::Server>,
}

impl Daemon {
    pub fn start(config: Config, options: Options) -> Result<Daemon, String> {
        if !config.venues.usdm {
            return Err("ROBSON_VENUES: this version of the daemon needs usdm".into());
        }
        if config.venues.margin && config.margin_symbols.is_empty() {
            return Err("ROBSON_MARGIN_SYMBOLS: name the isolated pairs to guard".into());
        }
        let margin = config.venues.margin;
        let account = AccountId(0);
        let placement = affinity::place(&affinity::allowed_cpus(), config.hot_cpu)?;
        let metrics = Arc::new(Metrics::default());
        let mut roles = vec![Role::UsdmMarket, Role::UsdmBook, Role::UsdmUser];
        if margin {
            roles.extend([Role::SpotMarket, Role::MarginUser(0)]);
        }
        let names: Vec<&'static str> = roles.iter().map(|r| r.health_name()).collect();
        let health =
            Arc::new(Health::new(&names, Arc::clone(&metrics), config.database_url.is_some()));
        let stop = Arc::new(AtomicBool::new(false));

        // With Postgres, the account's lease comes first: a standby waits here, so it never
        // loads a state the holder is still changing. Then the journal (its lock keeps a second
        // instance on this directory out) and the state a restart continues from.
        let pg = match &config.database_url {
            Some(url) => Some(
                PgConfig::new(
                    std::str::from_utf8(url.expose())
                        .map_err(|_| "ROBSON_DATABASE_URL: not text".to_owned())?,
                )
                .with_application_name("robsond"),
            ),
            None => None,
        };
        let lease = match &pg {
            Some(pg) => Some(lease::acquire(pg, account, &options.stop)?),
            None => None,
        };
        let (journal, loaded) = cold::open(&config.journal_dir, pg.as_ref())?;
        let mut engine_config = options.engine;
        engine_config.safety_pct = config.safety_net_pct;
        engine_config.stale_after_ms = config.stale_after_ms;
        let engine = Engine::restore(engine_config, loaded.fold());

        let credentials = || match &config.credentials {
            None => Err("ROBSON_BINANCE_API_KEY: credentials are needed to run".to_owned()),
            Some(c) => match &c.signing {
                Signing::Hmac(secret) => Ok(Credentials::hmac(c.api_key.clone(), secret)),
                Signing::Ed25519(pem) => Credentials::ed25519(c.api_key.clone(), pem)
                    .map_err(|e| format!("ROBSON_BINANCE_PRIVATE_KEY: {e:?}")),
            },
        };
        let http = HttpConfig { extra_ca_pem: config.ca_file.clone(), ..HttpConfig::default() };
        let client = RestClient::new(
            Api::Futures,
            &config.endpoints.usdm_rest,
            &http,
            &RestConfig::default(),
            Some(credentials()?),
            Arc::new(SystemClock),
        )
        .map_err(|e| format!("ROBSON_USDM_REST_URL: {e:?}"))?;
        let mut executor = OrderExecutor::new(ExecutorConfig::default());
        executor.add_venue(account, engine::types::Venue::Usdm, client, PositionMode::OneWay);
        if margin {
            let spot = RestClient::new(
                Api::Spot,
                &config.endpoints.spot_rest,
                &http,
                &RestConfig::default(),
                Some(credentials()?),
                Arc::new(SystemClock),
            )
            .map_err(|e| format!("ROBSON_SPOT_REST_URL: {e:?}"))?;
            executor.add_venue(account, engine::types::Venue::Margin, spot, PositionMode::OneWay);
        }

        let (to_io, from_hot) = rtrb::RingBuffer::new(4096);
        let (to_hot, from_io) = rtrb::RingBuffer::new(4096);
        let (records_tx, records_rx) = rtrb::RingBuffer::new(65_536);
        let (commands_tx, commands_rx) = crossbeam_channel::bounded(256);
        let (latency, collector) = latency_channel(4);
        *health.latency.lock().unwrap_or_else(|p| p.into_inner()) = Some(collector);

        let mut io = io::IoThread::new(
            executor,
            io::IoConfig {
                account,
                symbols: config.symbols.clone(),
                margin_symbols: config.margin_symbols.clone(),
                reconcile_every: config.reconcile_every,
                fallback_every: Duration::from_secs(1),
            },
            from_hot,
            to_hot,
            Arc::clone(&stop),
        );
        io.load_rules().map_err(|e| format!("exchangeInfo: {e:?}"))?;

        let hot_config = hot::HotConfig {
            usdm_ws: config.endpoints.usdm_ws.clone(),
            symbols: config.symbols.clone(),
            spot_ws: config.endpoints.spot_ws.clone(),
            spot_wsapi: config.endpoints.spot_wsapi.clone(),
            margin_symbols: config.margin_symbols.clone(),
            extra_ca: config.ca_file.clone(),
            spin: config.hot_spin,
            account,
            local_lease: pg.is_none(),
            market_ws: options.market_ws,
            user_ws: options.user_ws,
            spot_ws_config: options.spot_ws,
            api_ws: options.api_ws,
        };
        let mut hot = hot::HotLoop::new(
            engine,
            hot_config,
            to_io,
            from_io,
            records_tx,
            commands_rx,
            Arc::clone(&health),
            Arc::clone(&metrics),
            latency,
            Arc::clone(&stop),
        )?;
        hot.open_markets()?;

        let server = Arc::new(tiny_http::Server::http(config.http_addr).map_err(|e| {
            format!("ROBSON_HTTP_ADDR: cannot listen on {}: {e}", config.http_addr)
        })?);
        let http_addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| "ROBSON_HTTP_ADDR: not an IP address".to_owned())?;
        let api_config = ApiConfig {
            token: config.api_token.as_ref().map(|t| t.expose().to_vec()),
            account,
            command_timeout: Duration::from_secs(5),
        };

        let hot_cpu = placement.hot;
        let others = placement.others.clone();
        let hot_handle = std::thread::Builder::new()
            .name("robsond-hot".into())
            .spawn({
                let watch = DeathWatch::new("hot", &health, &stop);
                move || {
                    let _watch = watch;
                    hot::pin(hot_cpu);
                    hot.run()
                }
            })
            .map_err(|e| e.to_string())?;
        let pin_other = move |i: usize| {
            if let Some(&cpu) = others.get(i % others.len().max(1)) {
                affinity::pin_current(cpu);
            }
        };
        let io_handle = {
            let pin_other = pin_other.clone();
            std::thread::Builder::new()
                .name("robsond-io".into())
                .spawn({
                    let watch = DeathWatch::new("I/O", &health, &stop);
                    move || {
                        let _watch = watch;
                        pin_other(0);
                        io.run()
                    }
                })
                .map_err(|e| e.to_string())?
        };
        let cold = cold::start(journal, records_rx, loaded, pg.clone())?;
        let _ = health.cold.set(Arc::clone(&cold.status));
        let lease_handle = match lease {
            Some(lease) => Some(lease::spawn(
                lease,
                Arc::clone(&health),
                commands_tx.clone(),
                Arc::clone(&stop),
            )?),
            None => None,
        };
        let http_handle = {
            let (server, probes): (_, Arc<dyn Probes>) = (Arc::clone(&server), health.clone());
            let commands = commands_tx.clone();
            std::thread::Builder::new()
                .name("robsond-http".into())
                .spawn(move || {
                    pin_other(2);
                    api::serve(server, api_config, commands, probes)
                })
                .map_err(|e| e.to_string())?
        };
        Ok(Daemon {
            stop,
            health,
            metrics,
            http_addr,
            commands: commands_tx,
            hot: Some(hot_handle),
            io: Some(io_handle),
            cold: Some(cold),
            lease: lease_handle,
            http: Some(http_handle),
            server,
        })
    }

    /// SIGTERM's path: no new entries (`Event::Drain`, not journaled, so the next instance does
    /// not inherit it) while the lease is kept, so a stop crossed now is still closed; orders in
    /// flight resolve for up to `grace`; then the lease goes and every thread stops with the
    /// journal flushed.
    pub fn drain_and_stop(self, grace: Duration) -> Result<Engine, String> {
        let ask = |command| {
            let (reply, answer) = crossbeam_channel::bounded(1);
            self.commands.send(Envelope { command, reply }).ok()?;
            answer.recv_timeout(Duration::from_secs(2)).ok()
        };
        self.health.draining.store(true, Relaxed);
        let _ = ask(api::Command::Engine(Event::Drain));
        let until = std::time::Instant::now() + grace;
        while std::time::Instant::now() < until {
            let in_flight = match ask(api::Command::Positions) {
                Some(api::Answer::Positions(views, _)) => {
                    views.iter().filter(|v| v.live_order.is_some()).count()
                }
                _ => 0,
            };
            if in_flight == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = ask(api::Command::Engine(Event::Lease { held: false }));
        self.health.lease.store(false, Relaxed);
        self.shutdown()
    }

    /// Stops every thread and flushes the journal, whatever else failed, then reports the first
    /// failure or returns the final engine.
    pub fn shutdown(mut self) -> Result<Engine, String> {
        self.stop.store(true, Relaxed);
        self.server.unblock();
        let mut failure: Option<String> = None;
        let engine = match self.hot.take().map(|h| h.join()) {
            Some(Ok(engine)) => Some(engine),
            Some(Err(_)) => {
                failure.get_or_insert("hot thread panicked".into());
                None
            }
            None => None,
        };
        if let Some(h) = self.io.take()
            && h.join().is_err()
        {
            failure.get_or_insert("I/O thread panicked".into());
        }
        if let Some(cold) = self.cold.take()
            && let Err(e) = cold.stop()
        {
            failure.get_or_insert(e);
        }
        if let Some(h) = self.lease.take() {
            let _ = h.join();
        }
        if let Some(h) = self.http.take() {
            let _ = h.join();
        }
        match failure {
            Some(failure) => Err(failure),
            None => engine.ok_or_else(|| "no engine".to_owned()),
        }
    }
}
