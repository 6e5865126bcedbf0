//! Postgres, the operators' copy of the journal: the migrations (`migrate`), the batched
//! idempotent writer that fills `events` and the projections (`PgWriter`), and the
//! single-instance lease (`Lease`).
//!
//! Postgres is never the source of truth: every record reaches it only after the local journal
//! made it durable, so an unreachable database delays the copy, never the daemon. This module
//! never touches the journal's files and never runs on the hot thread; it only reads the
//! records it is handed.

mod lease;
mod migrate;
mod rows;
mod writer;

use core::fmt;
use std::str::FromStr;
use std::time::Duration;

use postgres::{Client, NoTls};

pub use lease::{Lease, LeaseChange};
pub use migrate::{Applied, MIGRATIONS, MigrateError, Migration, migrate, migrate_with};
pub use writer::{PgWriter, WriteError, WriterProgress, Written};

/// A Postgres schema name, checked so that it can be spliced into SQL as an identifier:
/// lower-case ASCII letters, digits and `_`, not starting with a digit, at most 63 bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Schema(String);

impl Schema {
    pub fn new(name: &str) -> Result<Schema, BadSchema> {
        let valid_start = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
        let valid_rest =
            name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if name.len() > 63 || !valid_start || !valid_rest {
            return Err(BadSchema);
        }
        Ok(Schema(name.to_owned()))
    }

    pub fn public() -> Schema {
        Schema("public".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Schema {
    fn default() -> Schema {
        Schema::public()
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadSchema;

impl fmt::Display for BadSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("schema name must be 1-63 of [a-z0-9_], not starting with a digit")
    }
}

impl std::error::Error for BadSchema {}

/// Where and how robsond reaches Postgres. The URL may hold a password: `Debug` never shows it.
#[derive(Clone)]
pub struct PgConfig {
    /// A libpq-style URL or key=value string (`postgres://user@host:5432/db`).
    pub url: String,
    pub schema: Schema,
    /// Shown in `pg_stat_activity`, so an operator can tell robsond's sessions apart.
    pub application_name: String,
    pub connect_timeout: Duration,
    /// Bounds how long an unanswered write or check can hang on a dead network path.
    pub io_timeout: Duration,
    /// Server-side bound on one statement (a batch insert), so a blocked table shows up as an
    /// error and a retry rather than a writer stuck forever.
    pub statement_timeout: Duration,
    /// Wait after the first failure; doubles on each further failure up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl PgConfig {
    pub fn new(url: impl Into<String>) -> PgConfig {
        PgConfig {
            url: url.into(),
            schema: Schema::public(),
            application_name: "robsond".to_owned(),
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(30),
            statement_timeout: Duration::from_secs(60),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
        }
    }

    pub fn with_schema(mut self, schema: Schema) -> PgConfig {
        self.schema = schema;
        self
    }

    pub fn with_application_name(mut self, name: impl Into<String>) -> PgConfig {
        self.application_name = name.into();
        self
    }

    pub fn with_backoff(mut self, min: Duration, max: Duration) -> PgConfig {
        self.backoff_min = min;
        self.backoff_max = max.max(min);
        self
    }

    /// Opens a session with the timeouts applied and `search_path` set to the schema, so that
    /// the migrations and every statement of this module name tables unqualified.
    pub fn connect(&self) -> Result<Client, PgError> {
        let mut config = postgres::Config::from_str(&self.url).map_err(PgError::config)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(self.connect_timeout);
        }
        config
            .application_name(&self.application_name)
            .keepalives(true)
            // Kernel keepalive settings are whole seconds: anything shorter would be refused.
            .keepalives_idle((self.io_timeout / 3).max(Duration::from_secs(1)))
            .keepalives_interval(Duration::from_secs(1))
            .keepalives_retries(3)
            .tcp_user_timeout(self.io_timeout);
        let mut client = config.connect(NoTls).map_err(PgError::from)?;
        client.batch_execute(&format!(
            "SET search_path TO {}; SET statement_timeout = {}",
            self.schema,
            self.statement_timeout.as_millis()
        ))?;
        Ok(client)
    }
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &"<redacted>")
            .field("schema", &self.schema)
            .field("application_name", &self.application_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .finish()
    }
}

/// A Postgres failure, with the server's SQLSTATE and message when the server answered.
/// `postgres::Error` alone prints "db error"; this prints what an operator needs, and never the
/// connection string.
#[derive(Debug)]
pub struct PgError {
    /// The SQLSTATE, or None when no server answered (network, configuration).
    pub code: Option<String>,
    pub message: String,
    /// The session is unusable: the caller must reconnect.
    pub connection_lost: bool,
}

impl PgError {
    fn config(err: postgres::Error) -> PgError {
        // The parse error names the offending key, never echoes its value (a password).
        let PgError { message, .. } = PgError::from(err);
        PgError {
            code: None,
            message: format!("bad Postgres URL: {message}"),
            connection_lost: true,
        }
    }
}

impl From<postgres::Error> for PgError {
    fn from(err: postgres::Error) -> PgError {
        match err.as_db_error() {
            Some(db) => {
                let code = db.code().code().to_owned();
                // Class 08 is connection trouble, 57 an operator or shutdown ending the session
                // (pg_terminate_backend is 57P01): the session is gone either way.
                let connection_lost =
                    err.is_closed() || code.starts_with("08") || code.starts_with("57");
                PgError { message: db.to_string(), code: Some(code), connection_lost }
            }
            None => {
                let mut message = err.to_string();
                let mut source = std::error::Error::source(&err);
                while let Some(cause) = source {
                    message.push_str(": ");
                    message.push_str(&cause.to_string());
                    source = cause.source();
                }
                PgError { code: None, message, connection_lost: true }
            }
        }
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "postgres [{code}] {}", self.message),
            None => write!(f, "postgres: {}", self.message),
        }
    }
}

impl std::error::Error for PgError {}

/// A stable 32-bit key for an advisory lock, from a name: advisory locks are per database, so
/// the schema goes into the name to keep two deployments in two schemas apart.
fn lock_key(name: &str) -> i32 {
    crc32fast::hash(name.as_bytes()) as i32
}

/// Capped exponential backoff: the wait before the next attempt after `failures` in a row.
fn backoff(config: &PgConfig, failures: u32) -> Duration {
    let doubled = config.backoff_min.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    doubled.min(config.backoff_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_identifiers_only() {
        for good in ["public", "robson", "_x", "t_1700000000_42_7", &"a".repeat(63)] {
            assert_eq!(Schema::new(good).map(|s| s.to_string()), Ok(good.to_owned()));
        }
        for bad in ["", "Public", "1abc", "a-b", "a;drop", "a b", "\"x\"", &"a".repeat(64)] {
            assert_eq!(Schema::new(bad), Err(BadSchema), "{bad:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_url() {
        let config = PgConfig::new("postgres://robsond:hunter2@db.example/robsond");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("db.example"), "{shown}");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let config = PgConfig::new("")
            .with_backoff(Duration::from_millis(100), Duration::from_millis(1_000));
        let waits: Vec<u128> = (1..=7).map(|n| backoff(&config, n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1_000, 1_000, 1_000]);
        assert_eq!(backoff(&config, u32::MAX), Duration::from_millis(1_000));
    }

    #[test]
    fn a_bad_url_is_an_error_without_the_url() {
        let config = PgConfig::new("postgres://u:s3cret@host:notaport/db");
        let Err(err) = config.connect() else { panic!("an unparsable port connected") };
        assert!(err.connection_lost);
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
