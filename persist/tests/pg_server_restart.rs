//! Issue 4: stop and restart the PostgreSQL server itself while records flow. The test runs its
//! own throw-away cluster (initdb + pg_ctl in a temporary directory) so that stopping it touches
//! nothing else; a machine without the server binaries fails here with how to install them.

mod pg_common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use persist::pg::{PgConfig, PgWriter, Schema, migrate};
use postgres::{Client, NoTls};

/// A private cluster; stopped and removed on drop.
struct Cluster {
    bindir: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    owner: Option<&'static str>,
}

fn bindir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.into_iter().rev().find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists()).expect(
        "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql: \
         install them with `apt-get install postgresql`",
    )
}

impl Cluster {
    fn start() -> Cluster {
        let bindir = bindir();
        let dir = tempfile::tempdir().unwrap();
        // initdb and postgres refuse to run as root.
        let owner = (effective_uid() == 0).then_some("postgres");
        if let Some(user) = owner {
            let status = Command::new("chown").args([user, dir.path().to_str().unwrap()]).status();
            assert!(status.is_ok_and(|s| s.success()), "chown the cluster dir to {user}");
        }
        let port = free_port();
        let cluster = Cluster { bindir, dir, port, owner };
        let data = cluster.data();
        cluster.run("initdb", &["-D", &data, "-U", "postgres", "-A", "trust", "--no-sync"]);
        cluster.pg_ctl_start();
        cluster
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_str().unwrap().to_owned()
    }

    /// A server tool, run as the cluster's owner.
    fn command(&self, tool: &str) -> Command {
        let exe = self.bindir.join(tool);
        match self.owner {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.command(tool).args(args).output().expect("run a PostgreSQL tool");
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl_start(&self) {
        let data = self.data();
        let log = self.dir.path().join("server.log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c fsync=off -k {}",
            self.port,
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &["-D", &data, "-l", log.to_str().unwrap(), "-o", &options, "-w", "-t", "30", "start"],
        );
    }

    fn pg_ctl_stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "-t", "30", "stop"]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ =
            self.command("pg_ctl").args(["-D", &self.data(), "-m", "immediate", "stop"]).output();
    }
}

fn effective_uid() -> u32 {
    // The effective uid, from procfs, without libc.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|uid| uid.parse().ok())
        .unwrap_or(u32::MAX)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn count(url: &str, schema: &Schema) -> (i64, i64, i64) {
    let mut c = Client::connect(url, NoTls).unwrap();
    let row = c
        .query_one(
            &format!(
                "SELECT count(*), count(DISTINCT seq), coalesce(max(seq), 0) FROM {}.events",
                schema.as_str()
            ),
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[test]
fn a_server_stopped_and_restarted_mid_stream_loses_and_duplicates_nothing() {
    let cluster = Cluster::start();
    let schema = Schema::new("restart_test").unwrap();
    migrate(&mut Client::connect(&cluster.url(), NoTls).unwrap(), &schema).unwrap();

    const N: usize = 30_000;
    const BATCH: usize = 500;
    let records = pg_common::synthetic(N);
    let config = PgConfig::new(cluster.url())
        .with_schema(schema.clone())
        .with_backoff(Duration::from_millis(20), Duration::from_millis(300));
    let mut writer = PgWriter::new(config);
    let progress = writer.progress();
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let (stop_w, errors_w) = (Arc::clone(&stop), Arc::clone(&errors));
    let flow = thread::spawn(move || {
        for batch in records.chunks(BATCH) {
            // Pace the flow so the restart lands in the middle of it.
            thread::sleep(Duration::from_millis(5));
            writer
                .write_blocking(batch, &stop_w, |_| {
                    errors_w.fetch_add(1, Ordering::Relaxed);
                })
                .expect("every batch is committed eventually");
        }
    });

    // Wait until some records are in, then take the server away and bring it back.
    let guard = Instant::now() + Duration::from_secs(60);
    while progress.confirmed() < (N / 5) as u64 {
        assert!(Instant::now() < guard, "no progress before the restart");
        thread::sleep(Duration::from_millis(5));
    }
    cluster.pg_ctl_stop();
    let at_stop = progress.confirmed();
    thread::sleep(Duration::from_millis(500));
    assert_eq!(progress.confirmed(), at_stop, "nothing can commit while the server is down");
    cluster.pg_ctl_start();
    flow.join().expect("the writer thread finished");

    assert!(at_stop < N as u64, "the restart happened mid-stream ({at_stop} of {N})");
    assert!(errors.load(Ordering::Relaxed) > 0, "the writer saw the server go away");
    assert_eq!(progress.confirmed(), N as u64);
    assert_eq!(count(&cluster.url(), &schema), (N as i64, N as i64, N as i64), "each record once");
}
