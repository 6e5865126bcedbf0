//! The daemon's configuration: environment first, then an optional TOML file, then defaults.
//!
//! Every key is listed once in [`KEYS`] with its default and meaning; the README's table is
//! generated from the same list by `robsond config --keys` so the two cannot drift. A value that
//! does not parse stops start-up with a message that names the key and says what was expected,
//! without echoing the value when the key is a secret.
//!
//! In the TOML file a key is written without the `ROBSON_` prefix, in lower case
//! (`safety_net_pct = "2"`); secrets may only come from the environment or a `_FILE`, never from
//! the TOML file, so that a config file can be committed or mounted as a ConfigMap.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use engine::Ratio;
use engine::types::Symbol;
use feed::rest::{ApiKey, Secret};

/// One configuration key: its name, default (None: unset) and what it means.
pub struct Key {
    pub name: &'static str,
    pub default: Option<&'static str>,
    pub secret: bool,
    pub help: &'static str,
}

const fn key(name: &'static str, default: Option<&'static str>, help: &'static str) -> Key {
    Key { name, default, secret: false, help }
}

const fn secret(name: &'static str, help: &'static str) -> Key {
    Key { name, default: None, secret: true, help }
}

pub const KEYS: &[Key] = &[
    secret("ROBSON_BINANCE_API_KEY", "Binance API key (or ROBSON_BINANCE_API_KEY_FILE)."),
    secret(
        "ROBSON_BINANCE_API_SECRET",
        "HMAC secret of the API key (or ROBSON_BINANCE_API_SECRET_FILE).",
    ),
    secret(
        "ROBSON_BINANCE_PRIVATE_KEY",
        "Ed25519 private key, PKCS#8 PEM, instead of an HMAC secret (or ..._FILE).",
    ),
    key("ROBSON_VENUES", Some("usdm"), "Venues to guard: usdm, margin, or usdm,margin."),
    key("ROBSON_USDM_REST_URL", Some("https://fapi.binance.com"), "USD-M futures REST base URL."),
    key(
        "ROBSON_USDM_WS_URL",
        Some("wss://fstream.binance.com"),
        "USD-M futures WebSocket base; /public, /market and /private are appended.",
    ),
    key("ROBSON_SPOT_REST_URL", Some("https://api.binance.com"), "Spot and margin REST base URL."),
    key("ROBSON_SPOT_WS_URL", Some("wss://stream.binance.com:9443"), "Spot market streams base."),
    key(
        "ROBSON_SPOT_WSAPI_URL",
        Some("wss://ws-api.binance.com:443/ws-api/v3"),
        "Spot WebSocket API (margin user data).",
    ),
    key("ROBSON_CA_FILE", None, "Extra CA certificate (PEM) to trust, e.g. a simulator's."),
    secret("ROBSON_DATABASE_URL", "Postgres URL (or ..._FILE); unset: the local journal only."),
    key("ROBSON_JOURNAL_DIR", Some("./robsond-journal"), "Directory of the local event journal."),
    key("ROBSON_HTTP_ADDR", Some("127.0.0.1:8080"), "Probes, metrics and control API."),
    secret("ROBSON_API_TOKEN", "Bearer token of the control API (or ..._FILE); unset: API off."),
    key("ROBSON_SAFETY_NET_PCT", Some("2"), "Safety stop distance from entry, percent."),
    key("ROBSON_SYMBOLS", Some(""), "Symbols subscribed at start (comma-separated)."),
    key("ROBSON_MARGIN_SYMBOLS", Some(""), "Isolated-margin pairs to guard (comma-separated)."),
    key("ROBSON_RECONCILE_SECS", Some("20"), "REST reconciliation period, seconds."),
    key("ROBSON_STALE_MS", Some("5000"), "A trigger price older than this is stale."),
    key("ROBSON_HOT_CPU", None, "CPU for the hot thread; default: the last allowed CPU."),
    key("ROBSON_HOT_SPIN", Some("false"), "Busy-poll the hot loop instead of blocking."),
];

/// A configuration error: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

impl std::error::Error for ConfigError {}

fn error(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError { key: key.to_owned(), reason: reason.into() }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Venues {
    pub usdm: bool,
    pub margin: bool,
}

/// How robsond signs: Binance accepts HMAC and Ed25519 keys (BINANCE.md section 6).
pub enum Signing {
    Hmac(Secret),
    Ed25519(Secret),
}

impl fmt::Debug for Signing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signing::Hmac(_) => "Hmac(***)",
            Signing::Ed25519(_) => "Ed25519(***)",
        })
    }
}

pub struct Credentials {
    pub api_key: ApiKey,
    pub signing: Signing,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials {{ api_key: ***, signing: {:?} }}", self.signing)
    }
}

/// Base URLs, validated: TLS, or plain text to loopback only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub usdm_rest: String,
    pub usdm_ws: String,
    pub spot_rest: String,
    pub spot_ws: String,
    pub spot_wsapi: String,
}

#[derive(Debug)]
pub struct Config {
    pub credentials: Option<Credentials>,
    pub venues: Venues,
    pub endpoints: Endpoints,
    pub ca_file: Option<PathBuf>,
    pub database_url: Option<Secret>,
    pub journal_dir: PathBuf,
    pub http_addr: SocketAddr,
    pub api_token: Option<Secret>,
    pub safety_net_pct: Ratio,
    pub symbols: Vec<Symbol>,
    pub margin_symbols: Vec<Symbol>,
    pub reconcile_every: Duration,
    pub stale_after_ms: u64,
    pub hot_cpu: Option<usize>,
    pub hot_spin: bool,
}

/// Where values come from: the environment (as a map, so tests need not touch the process's),
/// then the file's table.
pub struct Sources {
    env: BTreeMap<String, String>,
    file: BTreeMap<String, String>,
    file_name: Option<PathBuf>,
}

impl Sources {
    pub fn from_process_env(file: Option<&Path>) -> Result<Sources, ConfigError> {
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("ROBSON_"))
            .collect();
        Sources::new(env, file)
    }

    pub fn new(env: BTreeMap<String, String>, file: Option<&Path>) -> Result<Sources, ConfigError> {
        let mut table = BTreeMap::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| error("--config", format!("cannot read {}: {e}", path.display())))?;
            let parsed: toml::Table = text
                .parse()
                .map_err(|e| error("--config", format!("{} is not TOML: {e}", path.display())))?;
            for (name, value) in parsed {
                let env_name = format!("ROBSON_{}", name.to_ascii_uppercase());
                let Some(known) = KEYS.iter().find(|k| k.name == env_name) else {
                    return Err(error(&name, format!("unknown key in {}", path.display())));
                };
                if known.secret {
                    return Err(error(
                        &name,
                        "secrets come from the environment or a _FILE, not the config file",
                    ));
                }
                let text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Array(items) => items
                        .iter()
                        .map(|v| v.as_str().map(str::to_owned).ok_or(()))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|()| error(&name, "a list must hold strings"))?
                        .join(","),
                    other => {
                        return Err(error(
                            &name,
                            format!("unsupported value type {}", other.type_str()),
                        ));
                    }
                };
                table.insert(env_name, text);
            }
        }
        for name in env.keys() {
            let known = |n: &str| KEYS.iter().any(|k| k.name == n);
            let secret_file = name
                .strip_suffix("_FILE")
                .is_some_and(|base| KEYS.iter().any(|k| k.name == base && k.secret));
            if !known(name) && !secret_file {
                return Err(error(
                    name,
                    "unknown setting (typo?); see README's configuration table",
                ));
            }
        }
        Ok(Sources { env, file: table, file_name: file.map(Path::to_owned) })
    }

    fn get(&self, name: &str) -> Option<&str> {
        let value = self.env.get(name).or_else(|| self.file.get(name)).map(String::as_str);
        value.or_else(|| KEYS.iter().find(|k| k.name == name).and_then(|k| k.default))
    }

    /// A secret from `NAME` or the file named by `NAME_FILE` (trailing newline dropped), not both.
    fn secret(&self, name: &str) -> Result<Option<Secret>, ConfigError> {
        let file_key = format!("{name}_FILE");
        match (self.env.get(name), self.env.get(&file_key)) {
            (Some(_), Some(_)) => {
                Err(error(name, format!("set either {name} or {file_key}, not both")))
            }
            (Some(value), None) if value.is_empty() => Ok(None),
            (Some(value), None) => Ok(Some(Secret::from_string(value.clone()))),
            (None, Some(path)) => {
                let mut bytes = std::fs::read(path)
                    .map_err(|e| error(&file_key, format!("cannot read {path}: {}", e.kind())))?;
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                if bytes.is_empty() {
                    return Err(error(&file_key, format!("{path} is empty")));
                }
                Ok(Some(Secret::new(bytes)))
            }
            (None, None) => Ok(None),
        }
    }

    pub fn file_name(&self) -> Option<&Path> {
        self.file_name.as_deref()
    }
}

impl Config {
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        let get = |name: &str| sources.get(name).unwrap_or("");
        let api_key = sources.secret("ROBSON_BINANCE_API_KEY")?;
        let hmac = sources.secret("ROBSON_BINANCE_API_SECRET")?;
        let ed25519 = sources.secret("ROBSON_BINANCE_PRIVATE_KEY")?;
        let credentials = match (api_key, hmac, ed25519) {
            (None, None, None) => None,
            (Some(_), Some(_), Some(_)) => {
                return Err(error(
                    "ROBSON_BINANCE_API_SECRET",
                    "give an HMAC secret or an Ed25519 private key, not both",
                ));
            }
            (Some(key), Some(secret), None) => {
                Some(Credentials { api_key: api_key_of(key)?, signing: Signing::Hmac(secret) })
            }
            (Some(key), None, Some(pem)) => {
                Some(Credentials { api_key: api_key_of(key)?, signing: Signing::Ed25519(pem) })
            }
            (Some(_), None, None) => {
                return Err(error(
                    "ROBSON_BINANCE_API_SECRET",
                    "an API key needs its HMAC secret or ROBSON_BINANCE_PRIVATE_KEY",
                ));
            }
            (None, _, _) => {
                return Err(error(
                    "ROBSON_BINANCE_API_KEY",
                    "a secret was given without its API key",
                ));
            }
        };
        let venues = parse_venues(get("ROBSON_VENUES"))?;
        let endpoints = Endpoints {
            usdm_rest: base_url(
                "ROBSON_USDM_REST_URL",
                get("ROBSON_USDM_REST_URL"),
                &["https", "http"],
            )?,
            usdm_ws: base_url("ROBSON_USDM_WS_URL", get("ROBSON_USDM_WS_URL"), &["wss", "ws"])?,
            spot_rest: base_url(
                "ROBSON_SPOT_REST_URL",
                get("ROBSON_SPOT_REST_URL"),
                &["https", "http"],
            )?,
            spot_ws: base_url("ROBSON_SPOT_WS_URL", get("ROBSON_SPOT_WS_URL"), &["wss", "ws"])?,
            spot_wsapi: base_url(
                "ROBSON_SPOT_WSAPI_URL",
                get("ROBSON_SPOT_WSAPI_URL"),
                &["wss", "ws"],
            )?,
        };
        let ca_file = match get("ROBSON_CA_FILE") {
            "" => None,
            path => {
                let path = PathBuf::from(path);
                if !path.is_file() {
                    return Err(error(
                        "ROBSON_CA_FILE",
                        format!("{} is not a readable file", path.display()),
                    ));
                }
                Some(path)
            }
        };
        let journal_dir = match get("ROBSON_JOURNAL_DIR") {
            "" => return Err(error("ROBSON_JOURNAL_DIR", "must name a directory")),
            dir => PathBuf::from(dir),
        };
        let http_addr = get("ROBSON_HTTP_ADDR").parse().map_err(|_| {
            error("ROBSON_HTTP_ADDR", "expected an address and port such as 127.0.0.1:8080")
        })?;
        let safety_net_pct = percent("ROBSON_SAFETY_NET_PCT", get("ROBSON_SAFETY_NET_PCT"))?;
        let symbols = symbol_list("ROBSON_SYMBOLS", get("ROBSON_SYMBOLS"))?;
        let margin_symbols = symbol_list("ROBSON_MARGIN_SYMBOLS", get("ROBSON_MARGIN_SYMBOLS"))?;
        if !margin_symbols.is_empty() && !venues.margin {
            return Err(error(
                "ROBSON_MARGIN_SYMBOLS",
                "set, but ROBSON_VENUES does not include margin",
            ));
        }
        let reconcile_secs =
            number("ROBSON_RECONCILE_SECS", get("ROBSON_RECONCILE_SECS"), 1, 3600)?;
        let stale_after_ms = number("ROBSON_STALE_MS", get("ROBSON_STALE_MS"), 100, 600_000)?;
        let hot_cpu = match get("ROBSON_HOT_CPU") {
            "" => None,
            cpu => Some(number("ROBSON_HOT_CPU", cpu, 0, 4095)? as usize),
        };
        let hot_spin = boolean("ROBSON_HOT_SPIN", get("ROBSON_HOT_SPIN"))?;
        Ok(Config {
            credentials,
            venues,
            endpoints,
            ca_file,
            database_url: sources.secret("ROBSON_DATABASE_URL")?,
            journal_dir,
            http_addr,
            api_token: sources.secret("ROBSON_API_TOKEN")?,
            safety_net_pct,
            symbols,
            margin_symbols,
            reconcile_every: Duration::from_secs(reconcile_secs),
            stale_after_ms,
            hot_cpu,
            hot_spin,
        })
    }
}

fn api_key_of(secret: Secret) -> Result<ApiKey, ConfigError> {
    let text = std::str::from_utf8(secret.expose())
        .map_err(|_| error("ROBSON_BINANCE_API_KEY", "not text"))?;
    // Binance's keys are letters and digits; a simulator's may carry dashes. Anything that
    // could not travel in an HTTP header is refused.
    let header_safe = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if text.is_empty() || !text.bytes().all(header_safe) {
        return Err(error("ROBSON_BINANCE_API_KEY", "expected letters, digits, - or _ only"));
    }
    Ok(ApiKey::new(text.to_owned()))
}

fn parse_venues(text: &str) -> Result<Venues, ConfigError> {
    let mut venues = Venues { usdm: false, margin: false };
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "usdm" => venues.usdm = true,
            "margin" => venues.margin = true,
            "both" => {
                venues.usdm = true;
                venues.margin = true;
            }
            other => {
                return Err(error(
                    "ROBSON_VENUES",
                    format!("unknown venue {other:?}: expected usdm, margin or both"),
                ));
            }
        }
    }
    if !venues.usdm && !venues.margin {
        return Err(error("ROBSON_VENUES", "name at least one venue: usdm, margin or both"));
    }
    Ok(venues)
}

/// `scheme://host[:port][/path]`, without a trailing slash; plain-text schemes only to loopback.
pub fn base_url(key: &str, text: &str, schemes: &[&str; 2]) -> Result<String, ConfigError> {
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| error(key, format!("expected a URL such as {}://host", schemes[0])))?;
    let host_port = rest.split('/').next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    if host.is_empty() {
        return Err(error(key, "the URL has no host"));
    }
    if scheme == schemes[1] {
        if !is_loopback(host) {
            return Err(error(
                key,
                format!("{scheme}:// is only allowed to a loopback address; use {}://", schemes[0]),
            ));
        }
    } else if scheme != schemes[0] {
        return Err(error(key, format!("unsupported scheme {scheme:?}: expected {}", schemes[0])));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

pub fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn percent(key: &str, text: &str) -> Result<Ratio, ConfigError> {
    let units = engine::money::parse_units(text.trim().as_bytes()).map_err(|_| {
        error(key, format!("expected a decimal percent such as 2 or 1.5, got {text:?}"))
    })?;
    // A percent has two more decimals than the ratio it stands for.
    if units <= 0 || units > 50 * engine::money::SCALE {
        return Err(error(key, "must be above 0 and at most 50 (percent)"));
    }
    if units % 100 != 0 {
        return Err(error(key, "at most 6 decimals: the ratio is held to 1e-8"));
    }
    Ok(Ratio::from_units(units / 100))
}

fn number(key: &str, text: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    let value: u64 = text
        .trim()
        .parse()
        .map_err(|_| error(key, format!("expected a whole number, got {text:?}")))?;
    if !(min..=max).contains(&value) {
        return Err(error(key, format!("must be between {min} and {max}")));
    }
    Ok(value)
}

fn boolean(key: &str, text: &str) -> Result<bool, ConfigError> {
    match text.trim() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" | "" => Ok(false),
        other => Err(error(key, format!("expected true or false, got {other:?}"))),
    }
}

fn symbol_list(key: &str, text: &str) -> Result<Vec<Symbol>, ConfigError> {
    let mut symbols = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let upper = part.to_ascii_uppercase();
        let symbol = Symbol::new(upper.as_bytes())
            .map_err(|_| error(key, format!("{part:?} is not a Binance symbol")))?;
        if !symbols.contains(&symbol) {
            symbols.push(symbol);
        }
    }
    Ok(symbols)
}
