//! Name resolution off the hot thread.
//!
//! `getaddrinfo` blocks for as long as the DNS server takes (seconds when it is down), so it runs
//! on a small thread of its own. The hot thread hands it a host name and goes back to its loop; the
//! answer comes back on a channel, and a byte written to a socket pair registered in the caller's
//! `mio::Poll` wakes the loop. A socket pair rather than `mio::Waker`, because a `Poll` can only
//! have one `Waker` and that one belongs to the hot loop's owner. Pre-resolved addresses were the
//! alternative, but Binance's endpoints sit behind changing load-balancer addresses: every
//! reconnect has to resolve again, and a caller-side resolver would only move this thread.
//! IP literals skip all this.
//!
//! The thread never touches trading state; it ends when the client is dropped.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::mpsc;

use mio::net::UnixStream;
use mio::{Interest, Registry, Token};

struct Lookup {
    slot: usize,
    seq: u64,
    host: String,
    port: u16,
}

pub(crate) struct Resolved {
    pub(crate) slot: usize,
    /// The attempt this answers; an answer for an abandoned attempt is dropped.
    pub(crate) seq: u64,
    pub(crate) addrs: Result<Vec<SocketAddr>, io::ErrorKind>,
}

pub(crate) struct Resolver {
    requests: mpsc::Sender<Lookup>,
    answers: mpsc::Receiver<Resolved>,
    wake: UnixStream,
}

impl Resolver {
    pub(crate) fn start(registry: &Registry, token: Token) -> io::Result<Resolver> {
        let (ours, theirs) = StdUnixStream::pair()?;
        ours.set_nonblocking(true)?;
        theirs.set_nonblocking(true)?;
        let mut wake = UnixStream::from_std(ours);
        registry.register(&mut wake, token, Interest::READABLE)?;
        let (requests, lookups) = mpsc::channel::<Lookup>();
        let (answer, answers) = mpsc::channel();
        std::thread::Builder::new().name("ws-resolver".into()).spawn(move || {
            let mut theirs = theirs;
            while let Ok(lookup) = lookups.recv() {
                let addrs = (lookup.host.as_str(), lookup.port)
                    .to_socket_addrs()
                    .map(|it| it.collect::<Vec<_>>())
                    .map_err(|e| e.kind());
                let resolved = Resolved { slot: lookup.slot, seq: lookup.seq, addrs };
                if answer.send(resolved).is_err() {
                    return;
                }
                // A full pipe already holds a wake-up: nothing is lost by ignoring the error.
                let _ = theirs.write(&[1]);
            }
        })?;
        Ok(Resolver { requests, answers, wake })
    }

    pub(crate) fn request(&self, slot: usize, seq: u64, host: &str, port: u16) {
        // The thread only goes away with the client, and then nobody waits for the answer.
        let _ = self.requests.send(Lookup { slot, seq, host: host.to_string(), port });
    }

    /// Empties the wake-up pipe (edge-triggered: it must be read until it would block).
    pub(crate) fn drain_wake(&mut self) {
        let mut sink = [0u8; 64];
        while let Ok(n) = self.wake.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
    }

    pub(crate) fn try_next(&self) -> Option<Resolved> {
        self.answers.try_recv().ok()
    }
}
