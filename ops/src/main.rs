//! The `robsond` command line: the daemon, its tools, and clients of its control API.

use std::io::{self, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use engine::types::{Symbol, Venue};
use feed::wire::Asset;
use robsond::client::{ApiClient, Output};
use robsond::config::{Config, Sources};
use robsond::decode::{DecodeOptions, decode_lines};

#[derive(Parser)]
#[command(name = "robsond", version, about = "Stop-loss and risk guard daemon for Binance")]
struct Cli {
    /// Optional TOML file; the environment overrides it (see README, Configuration).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum VenueArg {
    Usdm,
    Margin,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon against the configured Binance endpoints.
    Run {
        /// Capture every raw frame and REST answer with its receive time.
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// Run the daemon against the built-in simulator: no credentials, no Postgres.
    Demo {
        #[arg(long, default_value = "60")]
        duration: u64,
        #[arg(long, default_value = "7")]
        seed: u64,
        #[arg(long)]
        forever: bool,
    },
    /// Apply the Postgres migrations and exit.
    Migrate,
    /// Run a capture through the engine and print its decisions as JSON lines.
    Replay { file: PathBuf },
    /// Decode Binance frames or REST bodies from stdin, one per line, as JSON lines.
    Decode {
        #[arg(long, value_enum, default_value = "usdm")]
        venue: VenueArg,
        /// The isolated pair a margin user-data capture belongs to.
        #[arg(long)]
        symbol: Option<String>,
        #[arg(long, default_value = "USDT")]
        quote: String,
    },
    /// Health and readiness of a running daemon.
    Status(ClientArgs),
    /// Every position of a running daemon.
    Positions(ClientArgs),
    /// Arm a Core entry.
    Arm {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(value_enum)]
        venue: VenueArg,
        symbol: String,
        /// long or short
        side: String,
        #[arg(long)]
        capital: Option<String>,
        #[arg(long)]
        risk_pct: Option<String>,
        #[arg(long)]
        technical_stop: Option<String>,
        #[arg(long)]
        ma_fast: Option<u32>,
        #[arg(long)]
        ma_slow: Option<u32>,
    },
    /// Disarm an armed entry by id.
    Disarm {
        #[command(flatten)]
        client: ClientArgs,
        id: u64,
    },
    /// Stop new entries; with --flatten, close every position.
    Halt {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        flatten: bool,
    },
    /// Allow entries again.
    Resume(ClientArgs),
}

#[derive(clap::Args)]
struct ClientArgs {
    /// The daemon's HTTP address.
    #[arg(long, env = "ROBSON_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    addr: String,
    /// Print the daemon's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("robsond: {message}");
            ExitCode::from(2)
        }
    }
}

fn load_config(file: Option<&PathBuf>) -> Result<Config, String> {
    let sources =
        Sources::from_process_env(file.map(PathBuf::as_path)).map_err(|e| e.to_string())?;
    Config::load(&sources).map_err(|e| format!("configuration: {e}"))
}

fn client(args: &ClientArgs) -> Result<ApiClient, String> {
    let token = std::env::var("ROBSON_API_TOKEN").ok().or_else(|| {
        let path = std::env::var("ROBSON_API_TOKEN_FILE").ok()?;
        std::fs::read_to_string(path).ok().map(|t| t.trim_end().to_owned())
    });
    let output = if args.json { Output::Json } else { Output::Table };
    Ok(ApiClient::new(&args.addr, token, output))
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Demo { duration, seed, forever } => {
            robsond::demo::run(robsond::demo::DemoOptions {
                duration: std::time::Duration::from_secs(duration),
                seed,
                forever,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { record: Some(_) } | Command::Replay { .. } => {
            // Validate the configuration now, so a bad one is reported even before these exist.
            load_config(cli.config.as_ref())?;
            Err("captures (--record, replay) are not built yet (issue 5); see README.md".to_owned())
        }
        Command::Run { record: None } => {
            let config = load_config(cli.config.as_ref())?;
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
                signal_hook::flag::register(signal, std::sync::Arc::clone(&stop))
                    .map_err(|e| format!("signal handler: {e}"))?;
            }
            let options = robsond::daemon::Options {
                stop: std::sync::Arc::clone(&stop),
                ..robsond::daemon::Options::default()
            };
            let daemon = robsond::daemon::Daemon::start(config, options)?;
            eprintln!(
                "robsond: running; probes, metrics and control API on http://{}",
                daemon.http_addr
            );
            let mut failed = false;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(50));
                if daemon.health.dead_thread.load(std::sync::atomic::Ordering::Relaxed) {
                    // A thread died or the lease was lost: restart to re-sync, never limp on.
                    failed = true;
                    break;
                }
            }
            eprintln!("robsond: stopping: lease released, waiting for orders in flight");
            daemon.drain_and_stop(std::time::Duration::from_secs(10))?;
            eprintln!("robsond: stopped; journal flushed");
            Ok(if failed { ExitCode::from(3) } else { ExitCode::SUCCESS })
        }
        Command::Migrate => {
            let config = load_config(cli.config.as_ref())?;
            let url = config.database_url.ok_or("ROBSON_DATABASE_URL: migrate needs a database")?;
            let url = std::str::from_utf8(url.expose())
                .map_err(|_| "ROBSON_DATABASE_URL: not text".to_owned())?
                .to_owned();
            let mut client = postgres::Client::connect(&url, postgres::NoTls).map_err(|e| {
                format!(
                    "ROBSON_DATABASE_URL: cannot connect: {}",
                    e.as_db_error()
                        .map_or("connection failed".to_owned(), |d| d.message().to_owned())
                )
            })?;
            let applied = persist::pg::migrate(&mut client, &persist::pg::Schema::public())
                .map_err(|e| format!("migrate: {e}"))?;
            eprintln!("robsond: {} migration(s) applied", applied.len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Decode { venue, symbol, quote } => {
            let symbol = symbol
                .map(|s| Symbol::new(s.to_ascii_uppercase().as_bytes()))
                .transpose()
                .map_err(|_| "--symbol: not a Binance symbol".to_owned())?;
            let quote = Asset::new(quote.to_ascii_uppercase().as_bytes())
                .ok_or("--quote: not an asset code")?;
            let venue = match venue {
                VenueArg::Usdm => Venue::Usdm,
                VenueArg::Margin => Venue::Margin,
            };
            let options = DecodeOptions { venue, margin_symbol: symbol, quote };
            let stdin = BufReader::new(io::stdin().lock());
            let (lines, errors) =
                decode_lines(stdin, io::stdout().lock(), &options).map_err(|e| e.to_string())?;
            eprintln!("robsond decode: {lines} lines, {errors} not decoded");
            Ok(if errors == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Status(args) => client(&args)?.status(),
        Command::Positions(args) => client(&args)?.positions(),
        Command::Arm {
            client: args,
            venue,
            symbol,
            side,
            capital,
            risk_pct,
            technical_stop,
            ma_fast,
            ma_slow,
        } => {
            let mut body = serde_json::json!({
                "venue": match venue { VenueArg::Usdm => "usdm", VenueArg::Margin => "margin" },
                "symbol": symbol,
                "side": side,
            });
            for (name, value) in
                [("capital", capital), ("risk_pct", risk_pct), ("technical_stop", technical_stop)]
            {
                if let Some(v) = value {
                    body[name] = serde_json::Value::String(v);
                }
            }
            for (name, value) in [("ma_fast", ma_fast), ("ma_slow", ma_slow)] {
                if let Some(v) = value {
                    body[name] = serde_json::json!(v);
                }
            }
            client(&args)?.send("POST", "/v1/arm", Some(body))
        }
        Command::Disarm { client: args, id } => {
            client(&args)?.send("DELETE", &format!("/v1/arm/{id}"), None)
        }
        Command::Halt { client: args, flatten } => {
            client(&args)?.send("POST", "/v1/halt", Some(serde_json::json!({ "flatten": flatten })))
        }
        Command::Resume(args) => client(&args)?.send("POST", "/v1/resume", None),
    }
}
