//! The Postgres lease as the daemon holds it: one advisory lock per account on its own session
//! (`persist::pg::Lease`). It is acquired before anything starts, so a standby never loads a
//! state the holder is still changing; it is granted to the engine only after the first
//! reconciliation round and a pause longer than one check, so a holder whose session just died
//! has noticed before this instance sends anything. Losing it revokes it from the engine at
//! once and fails `/healthz`: the process must restart and wait for the lease again, reloading
//! what the other holder wrote.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::Duration;

use engine::Event;
use engine::types::AccountId;
use persist::pg::{Lease, PgConfig};

use crate::api::{Command, Envelope};
use crate::health::Health;

const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Longer than one check plus its time-out: a holder whose session died has seen it by then.
const GRANT_AFTER: Duration = Duration::from_secs(3);

/// Blocks until this instance holds the account's lease (or `stop` is set).
pub fn acquire(pg: &PgConfig, account: AccountId, stop: &AtomicBool) -> Result<Lease, String> {
    let mut lease = Lease::new(pg.clone(), account);
    let mut said = false;
    loop {
        match lease.try_acquire() {
            Ok(true) => return Ok(lease),
            Ok(false) if !said => {
                eprintln!("robsond: another instance holds the lease; waiting for it");
                said = true;
            }
            Ok(false) => {}
            Err(e) => eprintln!("robsond: lease: {e}"),
        }
        if stop.load(Relaxed) {
            return Err("stopped while waiting for the lease".into());
        }
        std::thread::sleep(CHECK_EVERY);
    }
}

fn send(commands: &crossbeam_channel::Sender<Envelope>, held: bool) {
    let (reply, _answer) = crossbeam_channel::bounded(1);
    let _ = commands.send(Envelope { command: Command::Engine(Event::Lease { held }), reply });
}

pub fn spawn(
    mut lease: Lease,
    health: Arc<Health>,
    commands: crossbeam_channel::Sender<Envelope>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name("robsond-lease".into())
        .spawn(move || {
            let mut granted = false;
            while !stop.load(Relaxed) {
                std::thread::sleep(CHECK_EVERY);
                match lease.check() {
                    Ok(Some(change)) if !change.held() => {
                        send(&commands, false);
                        health.lease.store(false, Relaxed);
                        health.dead_thread.store(true, Relaxed);
                        eprintln!("robsond: the lease was lost; nothing more is sent");
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("robsond: lease check: {e}"),
                }
                if !granted && health.reconciled.load(Relaxed) && !health.draining.load(Relaxed) {
                    std::thread::sleep(GRANT_AFTER);
                    if matches!(lease.check(), Ok(Some(c)) if !c.held()) {
                        continue;
                    }
                    send(&commands, true);
                    health.lease.store(true, Relaxed);
                    granted = true;
                }
            }
            let _ = lease.release();
        })
        .map_err(|e| e.to_string())
}
