//! Schema migrations: the numbered SQL files of `migrations/`, compiled into the binary and
//! applied in order, each in its own transaction, under an advisory lock so that two instances
//! starting together apply each file once. `schema_migrations` records what was applied with the
//! file's checksum: a file edited after it was applied is refused by name, because the database
//! no longer matches what the file says.
//!
//! This module only creates and alters tables; it never reads or writes their rows.

use core::fmt;

use postgres::Client;

use super::{PgError, Schema, lock_key};

/// One embedded migration file.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    pub version: i32,
    /// The file name, as an operator finds it in `migrations/`.
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    pub fn checksum(&self) -> String {
        format!("crc32:{:08x}", crc32fast::hash(self.sql.as_bytes()))
    }
}

/// Every migration, in the order they apply. Append only: an applied file is never edited, a
/// change is a new file.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_events.sql",
        sql: include_str!("../../../migrations/0001_events.sql"),
    },
    Migration {
        version: 2,
        name: "0002_projections.sql",
        sql: include_str!("../../../migrations/0002_projections.sql"),
    },
];

/// A migration this call applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub version: i32,
    pub name: String,
}

#[derive(Debug)]
pub enum MigrateError {
    Pg(PgError),
    /// The file was applied with other contents: someone edited an applied migration.
    ChecksumChanged {
        version: i32,
        name: String,
        recorded: String,
        embedded: String,
    },
    /// The database holds a migration this robsond does not have: a newer robsond migrated it.
    Unknown {
        version: i32,
        name: String,
    },
    /// A statement of this migration failed; none of its statements took effect.
    Failed {
        version: i32,
        name: String,
        error: PgError,
    },
    /// The embedded list is not numbered 1, 2, 3… in order (a build mistake).
    BadList,
}

impl fmt::Display for MigrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrateError::Pg(err) => write!(f, "migration: {err}"),
            MigrateError::ChecksumChanged { name, recorded, embedded, .. } => write!(
                f,
                "migration {name} was changed after it was applied (applied {recorded}, now \
                 {embedded}): restore the file and add the change as a new migration"
            ),
            MigrateError::Unknown { version, name } => write!(
                f,
                "the database has migration {version} ({name}) that this robsond does not know: \
                 a newer robsond migrated it"
            ),
            MigrateError::Failed { name, error, .. } => {
                write!(f, "migration {name} failed and was rolled back: {error}")
            }
            MigrateError::BadList => f.write_str("embedded migrations are not numbered in order"),
        }
    }
}

impl std::error::Error for MigrateError {}

impl From<postgres::Error> for MigrateError {
    fn from(err: postgres::Error) -> MigrateError {
        MigrateError::Pg(err.into())
    }
}

/// Brings `schema` (created if missing) up to the embedded migrations; returns what it applied,
/// nothing when the schema was current. The client's own `search_path` is left as it was.
pub fn migrate(client: &mut Client, schema: &Schema) -> Result<Vec<Applied>, MigrateError> {
    migrate_with(client, schema, MIGRATIONS)
}

/// `migrate` with another list: for tests and tools that check the procedure itself.
pub fn migrate_with(
    client: &mut Client,
    schema: &Schema,
    migrations: &[Migration],
) -> Result<Vec<Applied>, MigrateError> {
    if migrations.iter().enumerate().any(|(i, m)| usize::try_from(m.version) != Ok(i + 1)) {
        return Err(MigrateError::BadList);
    }
    let key = lock_key(&format!("robsond.migrate/{schema}"));
    // Session-level, not per transaction: it must span every migration's transaction. If this
    // connection dies the server drops the lock with it.
    client.execute("SELECT pg_advisory_lock($1, $2)", &[&MIGRATE_NAMESPACE, &key])?;
    let outcome = apply_pending(client, schema, migrations);
    let unlocked = client.execute("SELECT pg_advisory_unlock($1, $2)", &[&MIGRATE_NAMESPACE, &key]);
    let applied = outcome?;
    unlocked?;
    Ok(applied)
}

/// The first key of the migration lock; the lease uses others.
const MIGRATE_NAMESPACE: i32 = 0x5262_4d67; // "RbMg"

fn apply_pending(
    client: &mut Client,
    schema: &Schema,
    migrations: &[Migration],
) -> Result<Vec<Applied>, MigrateError> {
    // Checked before creating: `CREATE SCHEMA IF NOT EXISTS` demands the database's CREATE
    // privilege even when the schema exists, which a locked-down role lacks.
    let exists =
        client.query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema.as_str()])?;
    if exists.is_none() {
        client.batch_execute(&format!("CREATE SCHEMA {schema}"))?;
    }
    client.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             checksum   text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )"
    ))?;
    let recorded = client.query(
        &format!("SELECT version, name, checksum FROM {schema}.schema_migrations ORDER BY version"),
        &[],
    )?;
    for row in &recorded {
        let (version, name, checksum): (i32, String, String) = (row.get(0), row.get(1), row.get(2));
        let Some(known) = migrations.iter().find(|m| m.version == version) else {
            return Err(MigrateError::Unknown { version, name });
        };
        if known.checksum() != checksum {
            return Err(MigrateError::ChecksumChanged {
                version,
                name: known.name.to_owned(),
                recorded: checksum,
                embedded: known.checksum(),
            });
        }
    }
    let mut applied = Vec::new();
    for m in migrations.iter().filter(|m| !recorded.iter().any(|r| r.get::<_, i32>(0) == m.version))
    {
        let failed = |error: postgres::Error| MigrateError::Failed {
            version: m.version,
            name: m.name.to_owned(),
            error: error.into(),
        };
        let mut tx = client.transaction()?;
        tx.batch_execute(&format!("SET LOCAL search_path TO {schema}")).map_err(failed)?;
        tx.batch_execute(m.sql).map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &m.checksum()],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
        applied.push(Applied { version: m.version, name: m.name.to_owned() });
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_migrations_are_numbered_like_their_files() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(usize::try_from(m.version), Ok(i + 1));
            assert!(m.name.starts_with(&format!("{:04}_", m.version)), "{}", m.name);
            assert!(m.name.ends_with(".sql") && !m.sql.trim().is_empty());
        }
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("migrations/")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let embedded: Vec<&str> = MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(files, embedded, "every file in migrations/ is embedded, in order");
    }
}
