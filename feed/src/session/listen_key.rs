//! The futures listen key's life: create, keep alive, re-create when Binance forgets it.
//!
//! Pure: it is told the time and the outcome of each REST call and answers with the next call
//! to make. The I/O thread runs the calls; the hot thread moves the private stream to a new URL
//! when the key changes. It never sees an order or a position.

use crate::rest::ListenKey;

use super::Backoff;

/// The REST call the I/O thread should make next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenKeyCall {
    /// `POST /fapi/v1/listenKey` (on an account with an active key it returns that key).
    Create,
    /// `PUT /fapi/v1/listenKey`: extends the key by 60 minutes.
    KeepAlive,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenKeyConfig {
    /// Binance lets a key lapse 60 minutes after the last keepalive; 30 leaves room for one
    /// failed attempt and its retries before the stream goes quiet.
    pub keepalive_every_ms: u64,
    pub retry: Backoff,
}

impl Default for ListenKeyConfig {
    fn default() -> Self {
        ListenKeyConfig { keepalive_every_ms: 30 * 60_000, retry: Backoff::new(1_000, 60_000) }
    }
}

/// See the module doc. `stream_path` is what the private connection must be attached to.
#[derive(Debug)]
pub struct ListenKeyLifecycle {
    config: ListenKeyConfig,
    key: Option<ListenKey>,
    next: ListenKeyCall,
    due_ms: u64,
    in_flight: bool,
    failures: u32,
}

impl ListenKeyLifecycle {
    /// A lifecycle whose first call, a create, is due at once.
    pub fn new(config: ListenKeyConfig, now_ms: u64) -> Self {
        ListenKeyLifecycle {
            config,
            key: None,
            next: ListenKeyCall::Create,
            due_ms: now_ms,
            in_flight: false,
            failures: 0,
        }
    }

    /// The call to make now, if one is due and none is in flight. The caller must report its
    /// outcome with one of the `on_*` methods before another is handed out.
    pub fn due(&mut self, now_ms: u64) -> Option<ListenKeyCall> {
        if self.in_flight || now_ms < self.due_ms {
            return None;
        }
        self.in_flight = true;
        Some(self.next)
    }

    /// When the next call falls due (for the I/O thread's sleep).
    pub fn next_due_ms(&self) -> Option<u64> {
        (!self.in_flight).then_some(self.due_ms)
    }

    pub fn key(&self) -> Option<&ListenKey> {
        self.key.as_ref()
    }

    /// The private stream's path for the current key, e.g. `/private/ws/<key>`.
    pub fn stream_path(&self) -> Option<String> {
        self.key.as_ref().map(|k| format!("/private/ws/{}", k.expose()))
    }

    /// A create or keepalive answered with a key. Returns true when the key differs from the
    /// one the stream is attached to, so the stream must move to `stream_path`.
    pub fn on_key(&mut self, key: ListenKey, now_ms: u64) -> bool {
        self.in_flight = false;
        self.failures = 0;
        let changed = self.key.as_ref() != Some(&key);
        self.key = Some(key);
        self.next = ListenKeyCall::KeepAlive;
        self.due_ms = now_ms.saturating_add(self.config.keepalive_every_ms);
        changed
    }

    /// A keepalive succeeded without echoing the key (older API versions answer `{}`).
    pub fn on_kept_alive(&mut self, now_ms: u64) {
        self.in_flight = false;
        self.failures = 0;
        self.next = ListenKeyCall::KeepAlive;
        self.due_ms = now_ms.saturating_add(self.config.keepalive_every_ms);
    }

    /// Binance no longer knows the key (-1125 on keepalive) or said so on the stream
    /// (`listenKeyExpired`): no more events arrive until a new key, so create one now.
    pub fn on_key_lost(&mut self, now_ms: u64) {
        self.in_flight = false;
        self.key = None;
        self.next = ListenKeyCall::Create;
        self.due_ms = now_ms;
    }

    /// The call failed for another reason (network, 5xx, rate limit): try the same call again
    /// after a growing delay. The key, if any, is kept: it may well still be valid.
    pub fn on_failure(&mut self, now_ms: u64) {
        self.in_flight = false;
        self.failures = self.failures.saturating_add(1);
        self.due_ms = now_ms.saturating_add(self.config.retry.delay_ms(self.failures));
    }
}
