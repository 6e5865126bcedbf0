//! The cold side as the daemon runs it: start-up state from the journal (and Postgres when
//! configured), then `persist::cold`'s journal thread and, with Postgres, its follower. This
//! module only wires them; what they guarantee is documented in `persist`.

use std::path::Path;
use std::sync::Arc;

use persist::cold::{
    ColdConfig, ColdStatus, ColdThread, ColdWriter, FollowerConfig, FollowerThread, PgFollower,
};
use persist::journal::{Journal, JournalConfig};
use persist::pg::PgConfig;
use persist::recover::{Loaded, load_state};

/// Opens (and locks) the journal and loads the state a restart continues from.
pub fn open(dir: &Path, pg: Option<&PgConfig>) -> Result<(Journal, Loaded), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("ROBSON_JOURNAL_DIR: cannot create {}: {e}", dir.display()))?;
    let (mut journal, _recovery) = Journal::open(dir, JournalConfig::default())
        .map_err(|e| format!("ROBSON_JOURNAL_DIR: {e}"))?;
    let loaded = load_state(&mut journal, pg).map_err(|e| format!("start-up state: {e}"))?;
    Ok((journal, loaded))
}

pub struct Cold {
    thread: ColdThread,
    follower: Option<FollowerThread>,
    pub status: Arc<ColdStatus>,
}

pub fn start(
    journal: Journal,
    records: rtrb::Consumer<engine::Record>,
    loaded: Loaded,
    pg: Option<PgConfig>,
) -> Result<Cold, String> {
    let config = ColdConfig { postgres: pg.is_some(), ..ColdConfig::default() };
    let writer = ColdWriter::new(journal, records, loaded.restart, config)
        .map_err(|e| format!("cold thread: {e}"))?;
    let status = writer.status();
    let feed = writer.feed();
    let thread = writer.spawn().map_err(|e| format!("cold thread: {e}"))?;
    let follower = match pg {
        Some(pg) => Some(
            PgFollower::new(pg, feed, FollowerConfig::default())
                .spawn()
                .map_err(|e| format!("Postgres follower: {e}"))?,
        ),
        None => None,
    };
    Ok(Cold { thread, follower, status })
}

impl Cold {
    /// Drains the ring (the hot thread has stopped), syncs and closes the journal, then lets
    /// the follower catch up to what is durable and stops it.
    pub fn stop(self) -> Result<(), String> {
        self.thread.stop_and_join().map_err(|e| format!("journal: {e}"))?;
        if let Some(follower) = self.follower {
            follower.stop_and_join().map_err(|e| format!("Postgres follower: {e}"))?;
        }
        Ok(())
    }
}
