//! The cold thread as the daemon runs it today: engine records from the hot thread's ring into
//! the local journal, fsynced in batches, with the durable sequence number published for
//! `/readyz` and `/metrics`. Start-up reads the journal back into a `JournalFold` for
//! `Engine::restore`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use engine::{JournalFold, Record};
use persist::codec;
use persist::journal::{Journal, JournalConfig, JournalReader};

use crate::metrics::Metrics;

/// Opens (and locks) the journal and folds what it holds.
pub fn open(dir: &Path) -> Result<(Journal, JournalFold), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("ROBSON_JOURNAL_DIR: cannot create {}: {e}", dir.display()))?;
    let (journal, _recovery) = Journal::open(dir, JournalConfig::default())
        .map_err(|e| format!("ROBSON_JOURNAL_DIR: {e}"))?;
    let mut fold = JournalFold::new();
    for record in JournalReader::open_read_only(dir, 1) {
        let record = record.map_err(|e| format!("journal: {e}"))?;
        let decoded = codec::decode(&record.payload)
            .map_err(|e| format!("journal record {}: {e}", record.seq))?;
        fold.apply(&decoded).map_err(|e| format!("journal: {e}"))?;
    }
    Ok((journal, fold))
}

pub fn run(
    mut journal: Journal,
    mut records: rtrb::Consumer<Record>,
    stop: &AtomicBool,
    metrics: &Metrics,
) -> Result<(), String> {
    let mut payload = Vec::with_capacity(256);
    loop {
        let stopping = stop.load(Relaxed);
        let mut appended = 0;
        while let Ok(record) = records.pop() {
            payload.clear();
            codec::encode(&record, &mut payload);
            journal.append(record.seq, &payload).map_err(|e| format!("journal append: {e}"))?;
            appended += 1;
        }
        journal.sync_if_due(Instant::now()).map_err(|e| format!("journal sync: {e}"))?;
        metrics.journal_seq.store(journal.durable_seq(), Relaxed);
        if stopping {
            journal.sync().map_err(|e| format!("journal sync: {e}"))?;
            metrics.journal_seq.store(journal.durable_seq(), Relaxed);
            return journal.close().map_err(|e| format!("journal close: {e}"));
        }
        if appended == 0 {
            let wait = journal
                .sync_deadline()
                .map_or(Duration::from_millis(2), |d| d.saturating_duration_since(Instant::now()))
                .min(Duration::from_millis(2));
            std::thread::sleep(wait);
        }
    }
}
