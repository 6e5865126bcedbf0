//! The child process of `persist/tests/journal_process.rs`: a journal writer the test kills
//! with SIGKILL at random moments, or a probe of the journal's lock. A test tool, not part of
//! robsond: it is a binary target only because cargo then builds it for the integration tests
//! and tells them where it is (`CARGO_BIN_EXE_journal-test-child`).

#[path = "../../tests/journal_common/payload.rs"]
mod payload;

use std::env;
use std::path::Path;

use payload::*;
use persist::journal::{Journal, JournalConfig, JournalError};

fn main() {
    let role = env::var(CHILD_ROLE).expect("run only as a child of journal_process's tests");
    let dir = env::var(CHILD_DIR).expect("child journal directory");
    match role.as_str() {
        "writer" => run_writer(Path::new(&dir), writer_config()),
        "big-batch-writer" => run_writer(Path::new(&dir), big_batch_config()),
        "lock-probe" => match Journal::open(&dir, writer_config()) {
            Ok(_) => println!("\n@opened"),
            Err(e @ JournalError::Locked { .. }) => println!("\n@locked {e}"),
            Err(e) => println!("\n@error {e}"),
        },
        other => panic!("unknown child role {other}"),
    }
}

/// Appends records with payloads derived from their seq as fast as it can, printing each new
/// durable seq, until killed.
fn run_writer(dir: &Path, config: JournalConfig) {
    let (mut journal, recovery) = Journal::open(dir, config).expect("child open");
    println!("\n@opened {}", recovery.last_seq);
    let mut reported = journal.durable_seq();
    let first = recovery.last_seq + 1;
    // Bounded so a parent that died cannot leave it running for ever.
    for seq in first..first + 5_000_000 {
        journal.append(seq, &payload_for(seq)).expect("child append");
        let durable = journal.durable_seq();
        if durable != reported {
            println!("\n@durable {durable}");
            reported = durable;
        }
    }
}
