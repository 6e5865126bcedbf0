//! The single-instance lease: a session-level Postgres advisory lock per account, held on a
//! connection of its own, so that only one robsond acts on an account (DESIGN.md section 5).
//!
//! Postgres releases a session lock when the session ends, whatever the reason, so the lease is
//! exactly "my session is alive and took the lock". `check` proves the session alive with a
//! round trip bounded by a timeout; any doubt counts as lost, because acting without the lease
//! (two instances closing one position) is worse than pausing. Changes come back as values for
//! the daemon to feed the engine (`Event::Lease { held }`). This module holds no other state and
//! never touches the tables.

use core::fmt;
use std::time::Duration;

use engine::AccountId;
use postgres::Client;

use super::{PgConfig, PgError, lock_key};

/// A change of the lease, for `Event::Lease { held }`.
#[derive(Debug)]
pub enum LeaseChange {
    Acquired,
    /// The session that held the lock ended or stopped answering; Postgres has released the
    /// lock (or will, once it notices), and another instance may hold it now.
    Lost(PgError),
}

impl LeaseChange {
    pub fn held(&self) -> bool {
        matches!(self, LeaseChange::Acquired)
    }
}

impl fmt::Display for LeaseChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseChange::Acquired => f.write_str("lease acquired"),
            LeaseChange::Lost(cause) => write!(f, "lease lost: {cause}"),
        }
    }
}

pub struct Lease {
    config: PgConfig,
    namespace: i32,
    account: i32,
    check_timeout: Duration,
    client: Option<Client>,
    held: bool,
}

impl Lease {
    /// A lease on `account`, in a namespace derived from the schema (advisory locks are per
    /// database, and one deployment is one schema). No I/O here.
    pub fn new(config: PgConfig, account: AccountId) -> Lease {
        let namespace = lock_key(&format!("robsond.lease/{}", config.schema));
        Lease {
            check_timeout: config.io_timeout.min(Duration::from_secs(5)),
            config,
            namespace,
            account: i32::from(account.0),
            client: None,
            held: false,
        }
    }

    /// Another namespace, for deployments that share a schema name across databases on purpose
    /// and want distinct leases anyway.
    pub fn with_namespace(mut self, namespace: i32) -> Lease {
        self.namespace = namespace;
        self
    }

    /// How long `check` waits for the server before counting the lease lost.
    pub fn with_check_timeout(mut self, timeout: Duration) -> Lease {
        self.check_timeout = timeout;
        self
    }

    /// The lock's two keys, as `pg_locks` shows them (classid, objid).
    pub fn keys(&self) -> (i32, i32) {
        (self.namespace, self.account)
    }

    pub fn held(&self) -> bool {
        self.held
    }

    /// Takes the lock if it is free; true if this instance holds it now. Connects if needed.
    pub fn try_acquire(&mut self) -> Result<bool, PgError> {
        if self.held {
            return Ok(true);
        }
        let client = match &mut self.client {
            Some(client) => client,
            None => self.client.insert(open(&self.config)?),
        };
        let taken = client
            .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&self.namespace, &self.account])
            .and_then(|row| row.try_get::<_, bool>(0));
        match taken {
            Ok(taken) => {
                self.held = taken;
                Ok(taken)
            }
            Err(err) => {
                let err = PgError::from(err);
                if err.connection_lost {
                    self.client = None;
                }
                Err(err)
            }
        }
    }

    /// One step of the lease's life, to call every second or so: while held, proves the
    /// session alive (or reports it lost and drops it); while not held, tries to take the lock,
    /// reconnecting as needed. At most one change per call, so a loss is always reported before
    /// a re-acquisition. `Err`: not held, and Postgres could not be asked.
    pub fn check(&mut self) -> Result<Option<LeaseChange>, PgError> {
        if !self.held {
            return Ok(self.try_acquire()?.then_some(LeaseChange::Acquired));
        }
        let alive = match self.client.as_mut() {
            Some(client) => client.is_valid(self.check_timeout).map_err(PgError::from),
            None => Err(PgError {
                code: None,
                message: "lease session missing".to_owned(),
                connection_lost: true,
            }),
        };
        match alive {
            Ok(()) => Ok(None),
            Err(err) => {
                // Dropping the client closes the socket: if the server still has the session,
                // it ends it and releases the lock rather than keep a lock no one uses.
                self.client = None;
                self.held = false;
                Ok(Some(LeaseChange::Lost(err)))
            }
        }
    }

    /// Gives the lock up (shutdown, or stepping down on purpose).
    pub fn release(&mut self) -> Result<(), PgError> {
        let was_held = std::mem::replace(&mut self.held, false);
        if let (true, Some(client)) = (was_held, self.client.as_mut()) {
            let released = client
                .query_one("SELECT pg_advisory_unlock($1, $2)", &[&self.namespace, &self.account]);
            if released.is_err() {
                // Unknown whether the unlock ran: ending the session releases the lock for sure.
                self.client = None;
            }
            released?;
        }
        Ok(())
    }
}

/// The lease's session. Server-side keepalives are shortened so that when this machine vanishes
/// (power, network) the server notices within seconds and frees the lock for the standby,
/// instead of after the kernel's default two hours; and an idle-session limit, if the server
/// sets one, must not end the session that holds the lock.
fn open(config: &PgConfig) -> Result<Client, PgError> {
    let mut client = config.connect()?;
    let idle = config.io_timeout.as_secs().clamp(1, 60) / 3 + 1;
    let settings = [
        ("tcp_keepalives_idle", idle.to_string()),
        ("tcp_keepalives_interval", idle.to_string()),
        ("tcp_keepalives_count", "3".to_owned()),
        ("idle_session_timeout", "0".to_owned()),
        ("idle_in_transaction_session_timeout", "0".to_owned()),
    ];
    for (name, value) in settings {
        // Only what this server knows: idle_session_timeout came in Postgres 14.
        client.execute(
            "SELECT set_config(name, $2, false) FROM pg_settings WHERE name = $1",
            &[&name, &value],
        )?;
    }
    Ok(client)
}
