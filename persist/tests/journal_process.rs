//! The journal across processes: a writer killed with SIGKILL at random moments always leaves
//! a prefix of what it appended, at least up to what it reported durable; and the lock keeps a
//! second writer out, in this process or another.
//!
//! The child processes are the `journal-test-child` binary of this crate, told by an
//! environment variable what to do.

mod journal_common;

use std::env;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use journal_common::*;
use persist::journal::{Journal, JournalConfig, JournalError};

/// Records a writer child makes durable before the parent starts its random countdown.
const PROGRESS_BEFORE_KILL: u64 = 100;
/// A guard against a hung child, never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(60);

/// Between fork and exec a child holds copies of every descriptor of this process, the
/// journal lock's included, until exec closes them (O_CLOEXEC): a test that reopens a journal in
/// this process must not race a spawn in another test, or it sees its own lock still held.
static SPAWNING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn spawn_child(role: &str, dir: &Path) -> Child {
    let _spawning = SPAWNING.lock().unwrap_or_else(|p| p.into_inner());
    Command::new(env!("CARGO_BIN_EXE_journal-test-child"))
        .env(CHILD_ROLE, role)
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child test process")
}

/// Lines the child prints that start with `@`, delivered as they arrive.
fn child_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("child stdout");
    let (lines, receiver) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with('@') && lines.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

fn parse_line(line: &str, prefix: &str) -> Option<u64> {
    line.strip_prefix(prefix)?.parse().ok()
}

#[test]
fn a_writer_killed_at_random_moments_leaves_a_prefix_covering_all_it_called_durable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let seed = 0x4B49_4C4C_0009u64;
    let mut rng = TestRng::new(seed);
    let rounds = 20;
    let mut recovered = 0u64;
    let mut torn_tails = 0;
    let mut reports = 0;
    let mut removed = 0;
    for round in 0..rounds {
        let context = format!("seed {seed:#x}, round {round}");
        let role = if round % 3 == 2 { "big-batch-writer" } else { "writer" };
        let mut child = spawn_child(role, dir.path());
        let lines = child_lines(&mut child);
        let mut opened_at = None;
        let mut durable_claimed = recovered;
        if round % 5 == 4 {
            // Somewhere in start-up, recovery included.
            thread::sleep(Duration::from_micros(rng.below(15_000)));
        } else {
            // Let it get some way first, so every such round has durable records at stake.
            let opened = lines
                .recv_timeout(PATIENCE)
                .unwrap_or_else(|e| panic!("{context}: child silent: {e}"));
            opened_at = Some(
                parse_line(&opened, "@opened ").unwrap_or_else(|| panic!("{context}: {opened:?}")),
            );
            loop {
                let line = lines
                    .recv_timeout(PATIENCE)
                    .unwrap_or_else(|e| panic!("{context}: child stuck: {e}"));
                let seq =
                    parse_line(&line, "@durable ").unwrap_or_else(|| panic!("{context}: {line:?}"));
                assert!(
                    seq > durable_claimed,
                    "{context}: durable went from {durable_claimed} to {seq}"
                );
                durable_claimed = seq;
                reports += 1;
                if seq >= recovered + PROGRESS_BEFORE_KILL {
                    break;
                }
            }
            thread::sleep(Duration::from_micros(rng.below(30_000)));
        }
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap the child");

        // Every line the child printed before it died; the pipe closes with it.
        let give_up = Instant::now() + PATIENCE;
        while let Ok(line) = lines.recv_timeout(give_up.saturating_duration_since(Instant::now())) {
            if let Some(seq) = parse_line(&line, "@opened ") {
                opened_at = Some(seq);
            } else if let Some(seq) = parse_line(&line, "@durable ") {
                assert!(
                    seq > durable_claimed,
                    "{context}: durable went from {durable_claimed} to {seq}"
                );
                durable_claimed = seq;
                reports += 1;
            }
        }
        if let Some(opened_at) = opened_at {
            assert_eq!(opened_at, recovered, "{context}: the child saw what the parent recovered");
        }

        let (journal, recovery) = Journal::open(dir.path(), writer_config())
            .unwrap_or_else(|e| panic!("{context}: reopen after SIGKILL: {e}"));
        torn_tails += usize::from(recovery.torn_tail.is_some());
        removed += recovery.removed.len();
        if !recovery.was_clean() {
            eprintln!("{context}: {recovery}");
        }
        // Open verified every checksum; the payloads before `recovered` were checked last round.
        let records: Vec<_> = journal
            .reader_from(recovered.saturating_sub(10).max(1))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{context}: read back: {e}"));
        let last = records.last().map_or(recovered, |r| r.seq);
        assert_records(&records, recovered.saturating_sub(10).max(1)..=last, payload_for);
        assert!(
            last >= durable_claimed,
            "{context}: recovered up to {last} but the child had called {durable_claimed} durable"
        );
        assert!(last >= recovered, "{context}: lost records recovered in an earlier round");
        assert_eq!(recovery.last_seq, last);
        recovered = last;
    }
    assert_records(&read_all(dir.path()), 1..=recovered, payload_for);
    eprintln!(
        "{rounds} kills: {recovered} records, {reports} durable reports, {torn_tails} torn tails, \
         {removed} files removed, {} segments",
        segment_files(dir.path()).len()
    );
    assert!(recovered >= 12 * PROGRESS_BEFORE_KILL);
    assert!(segment_files(dir.path()).len() > 3, "the children rarely rotated a segment");
}

#[test]
fn a_second_open_in_this_process_is_locked_out_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut first, _) = Journal::open(dir.path(), JournalConfig::default()).expect("first open");
    first.append(1, b"one").expect("append");
    match Journal::open(dir.path(), JournalConfig::default()) {
        Err(e @ JournalError::Locked { .. }) => {
            let message = e.to_string();
            assert!(message.contains(&dir.path().display().to_string()), "{message}");
            assert!(message.contains(&format!("process {}", std::process::id())), "{message}");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    // The refused open touched nothing: the first handle goes on.
    first.append(2, b"two").expect("append after a refused open");
    let _no_spawn = SPAWNING.lock().unwrap_or_else(|p| p.into_inner());
    drop(first);
    let (second, recovery) = Journal::open(dir.path(), JournalConfig::default()).expect("reopen");
    assert_eq!(recovery.last_seq, 2);
    assert_eq!(second.last_seq(), 2);
}

#[test]
fn another_process_is_locked_out_while_the_journal_is_open_and_let_in_after() {
    let dir = tempfile::tempdir().expect("temp dir");
    let probe = |expected: &str| {
        let mut child = spawn_child("lock-probe", dir.path());
        let lines = child_lines(&mut child);
        let line = lines.recv_timeout(PATIENCE).expect("probe answer");
        assert!(child.wait().expect("probe exit").success(), "probe failed: {line}");
        assert!(line.starts_with(expected), "expected {expected}, got {line:?}");
        line
    };
    let (journal, _) = Journal::open(dir.path(), JournalConfig::default()).expect("open");
    let refusal = probe("@locked");
    assert!(refusal.contains(&dir.path().display().to_string()), "{refusal}");
    assert!(refusal.contains(&format!("process {}", std::process::id())), "{refusal}");
    drop(journal);
    probe("@opened");
}
