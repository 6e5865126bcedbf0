//! Isolated-margin user data over the spot WebSocket API: one listen token per isolated symbol
//! (`POST /sapi/v1/userListenToken`), each subscribed on the shared API connection with
//! `userDataStream.subscribe.listenToken`, renewed before it expires without a gap.
//!
//! Pure: told the time, the REST outcomes and the connection's replies, it answers with token
//! requests for the I/O thread and request frames for the hot thread to send. It never reads
//! the events themselves (the frame parser does) and never holds an order or a position.
//!
//! Renewal is make-before-break: the new token is subscribed while the old subscription still
//! delivers, and the old one is unsubscribed once the new one is confirmed (an
//! `eventStreamTerminated` for it afterwards is then unrelated news). Events in the overlap
//! arrive twice; that is harmless because the engine drops a margin fill whose trade id it has
//! seen and order updates carry cumulative quantities. If Binance refuses a second
//! subscription for the account (-2035), the old one is dropped first and the new one follows
//! in the same write, so the gap is one server round trip; the reconciliation poll covers it.

use engine::types::Symbol;

use crate::rest::ListenToken;
use crate::wire::{Control, RequestId};

use super::Backoff;

/// Binance's error for an invalid or expired listen token.
const INVALID_TOKEN: i64 = -1209;
/// "User Data Stream subscription already active."
const ALREADY_SUBSCRIBED: i64 = -2035;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenTokenConfig {
    /// Asked of Binance as `validity` (its maximum and default is 24 h).
    pub validity_ms: u64,
    /// Renew this long before `expirationTime`, leaving room for failed attempts.
    pub renew_before_ms: u64,
    pub retry: Backoff,
}

impl Default for ListenTokenConfig {
    fn default() -> Self {
        ListenTokenConfig {
            validity_ms: 24 * 3_600_000,
            renew_before_ms: 3_600_000,
            retry: Backoff::new(1_000, 60_000),
        }
    }
}

#[derive(Debug)]
enum TokenRequest {
    DueAt(u64),
    InFlight,
    /// Not needed until the current token nears its end.
    Idle,
}

#[derive(Debug)]
struct Pending {
    request: i64,
    token_expires_ms: u64,
}

#[derive(Debug)]
struct Account {
    symbol: Symbol,
    token: Option<ListenToken>,
    active: Option<u64>,
    subscribing: Option<Pending>,
    request: TokenRequest,
    token_failures: u32,
    subscribe_failures: u32,
    resubscribe_at: Option<u64>,
}

impl Account {
    fn token_usable(&self, now_ms: u64, config: &ListenTokenConfig) -> bool {
        self.token
            .as_ref()
            .is_some_and(|t| now_ms < t.expires_ms.saturating_sub(config.renew_before_ms))
    }
}

/// What a reply or event meant for the session, for the journal and `/readyz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionNews {
    Subscribed {
        symbol: Symbol,
        subscription: u64,
    },
    /// The subscription ended (token expired, or refused): no user data for this symbol until
    /// the next one is confirmed.
    Lost {
        symbol: Symbol,
    },
    /// A reply this session did not ask for; not an error.
    Unrelated,
}

/// See the module doc.
#[derive(Debug)]
pub struct MarginUserSession {
    config: ListenTokenConfig,
    accounts: Vec<Account>,
    connected: bool,
    next_request_id: i64,
    /// Request frames waiting for the hot thread to send.
    outbox: Vec<String>,
}

impl MarginUserSession {
    pub fn new(config: ListenTokenConfig, symbols: &[Symbol], now_ms: u64) -> Self {
        let accounts = symbols
            .iter()
            .map(|&symbol| Account {
                symbol,
                token: None,
                active: None,
                subscribing: None,
                request: TokenRequest::DueAt(now_ms),
                token_failures: 0,
                subscribe_failures: 0,
                resubscribe_at: None,
            })
            .collect();
        MarginUserSession {
            config,
            accounts,
            connected: false,
            next_request_id: 1,
            outbox: Vec::new(),
        }
    }

    /// Starts guarding another isolated symbol (a new position on an unwatched symbol).
    pub fn add_symbol(&mut self, symbol: Symbol, now_ms: u64) {
        if self.accounts.iter().any(|a| a.symbol == symbol) {
            return;
        }
        self.accounts.push(Account {
            symbol,
            token: None,
            active: None,
            subscribing: None,
            request: TokenRequest::DueAt(now_ms),
            token_failures: 0,
            subscribe_failures: 0,
            resubscribe_at: None,
        });
    }

    /// The `validity` to ask for with each token request.
    pub fn validity_ms(&self) -> u64 {
        self.config.validity_ms
    }

    /// A symbol whose token the I/O thread should request now (`POST /sapi/v1/userListenToken`
    /// with `isIsolated=true`, `symbol`, `validity`). Call until None.
    pub fn due_token_request(&mut self, now_ms: u64) -> Option<Symbol> {
        let config = self.config;
        for account in &mut self.accounts {
            if matches!(account.request, TokenRequest::Idle)
                && !account.token_usable(now_ms, &config)
            {
                account.request = TokenRequest::DueAt(now_ms);
            }
            if let TokenRequest::DueAt(at) = account.request
                && now_ms >= at
            {
                account.request = TokenRequest::InFlight;
                return Some(account.symbol);
            }
        }
        None
    }

    /// The earliest time anything falls due (a token request, a renewal, a resubscribe).
    pub fn next_due_ms(&self) -> Option<u64> {
        self.accounts
            .iter()
            .flat_map(|a| {
                let request = match a.request {
                    TokenRequest::DueAt(at) => Some(at),
                    TokenRequest::InFlight => None,
                    TokenRequest::Idle => a
                        .token
                        .as_ref()
                        .map(|t| t.expires_ms.saturating_sub(self.config.renew_before_ms)),
                };
                [request, a.resubscribe_at]
            })
            .flatten()
            .min()
    }

    pub fn on_token(&mut self, symbol: Symbol, token: ListenToken, now_ms: u64) {
        let connected = self.connected;
        let Some(i) = self.index(symbol) else { return };
        let account = &mut self.accounts[i];
        account.request = TokenRequest::Idle;
        account.token_failures = 0;
        account.token = Some(token);
        if connected {
            self.subscribe(i, now_ms);
        }
    }

    pub fn on_token_failure(&mut self, symbol: Symbol, now_ms: u64) {
        let retry = self.config.retry;
        let Some(i) = self.index(symbol) else { return };
        let account = &mut self.accounts[i];
        account.token_failures = account.token_failures.saturating_add(1);
        account.request =
            TokenRequest::DueAt(now_ms.saturating_add(retry.delay_ms(account.token_failures)));
    }

    /// The API connection is (re)open: Binance forgets subscriptions with the connection, so
    /// every usable token is subscribed again; the others wait for their new token.
    pub fn on_connected(&mut self, now_ms: u64) {
        self.connected = true;
        self.outbox.clear();
        for i in 0..self.accounts.len() {
            let account = &mut self.accounts[i];
            account.active = None;
            account.subscribing = None;
            account.resubscribe_at = None;
            if account.token_usable(now_ms, &self.config) {
                self.subscribe(i, now_ms);
            }
        }
    }

    pub fn on_disconnected(&mut self) {
        self.connected = false;
        self.outbox.clear();
        for account in &mut self.accounts {
            account.active = None;
            account.subscribing = None;
            account.resubscribe_at = None;
        }
    }

    /// Subscribes again where a refused subscribe's delay has passed.
    pub fn on_timer(&mut self, now_ms: u64) {
        if !self.connected {
            return;
        }
        for i in 0..self.accounts.len() {
            let account = &self.accounts[i];
            if account.resubscribe_at.is_some_and(|at| now_ms >= at)
                && account.subscribing.is_none()
                && account.token_usable(now_ms, &self.config)
            {
                self.accounts[i].resubscribe_at = None;
                self.subscribe(i, now_ms);
            }
        }
    }

    /// A control frame from the API connection (replies and `eventStreamTerminated`).
    pub fn on_control(&mut self, control: Control, now_ms: u64) -> SessionNews {
        match control {
            Control::ApiReply {
                id: RequestId::Int(id),
                status,
                error_code,
                subscription_id,
                ..
            } => self.on_reply(id, status, error_code, subscription_id, now_ms),
            Control::EventStreamTerminated { subscription_id: Some(sub), .. } => {
                self.on_terminated(sub, now_ms)
            }
            _ => SessionNews::Unrelated,
        }
    }

    /// Request frames to send on the API connection, oldest first.
    pub fn drain_outbox(&mut self) -> impl Iterator<Item = String> + '_ {
        self.outbox.drain(..)
    }

    /// Every guarded symbol has a confirmed subscription.
    pub fn ready(&self) -> bool {
        self.connected && self.accounts.iter().all(|a| a.active.is_some())
    }

    pub fn subscription(&self, symbol: Symbol) -> Option<u64> {
        self.index(symbol).and_then(|i| self.accounts[i].active)
    }

    fn index(&self, symbol: Symbol) -> Option<usize> {
        self.accounts.iter().position(|a| a.symbol == symbol)
    }

    fn take_request_id(&mut self) -> i64 {
        let id = self.next_request_id;
        self.next_request_id += 1;
        id
    }

    fn subscribe(&mut self, i: usize, _now_ms: u64) {
        let Some(token) = &self.accounts[i].token else { return };
        let (text, expires) = (token.expose().to_owned(), token.expires_ms);
        if !json_safe(&text) {
            // Binance's tokens are base64; anything else is not sent into a JSON frame.
            self.accounts[i].token = None;
            self.accounts[i].request = TokenRequest::DueAt(0);
            return;
        }
        let id = self.take_request_id();
        self.outbox.push(format!(
            r#"{{"id":{id},"method":"userDataStream.subscribe.listenToken","params":{{"listenToken":"{text}"}}}}"#
        ));
        self.accounts[i].subscribing = Some(Pending { request: id, token_expires_ms: expires });
    }

    fn unsubscribe(&mut self, subscription: u64) {
        let id = self.take_request_id();
        self.outbox.push(format!(
            r#"{{"id":{id},"method":"userDataStream.unsubscribe","params":{{"subscriptionId":{subscription}}}}}"#
        ));
    }

    fn on_reply(
        &mut self,
        id: i64,
        status: u16,
        error_code: Option<i64>,
        subscription_id: Option<u64>,
        now_ms: u64,
    ) -> SessionNews {
        let Some(i) = self
            .accounts
            .iter()
            .position(|a| a.subscribing.as_ref().is_some_and(|p| p.request == id))
        else {
            return SessionNews::Unrelated;
        };
        let pending = self.accounts[i].subscribing.take().expect("matched above");
        let symbol = self.accounts[i].symbol;
        match (status, subscription_id, error_code) {
            (200, Some(subscription), _) => {
                let account = &mut self.accounts[i];
                account.subscribe_failures = 0;
                if let Some(old) = account.active.replace(subscription)
                    && old != subscription
                {
                    self.unsubscribe(old);
                }
                SessionNews::Subscribed { symbol, subscription }
            }
            (_, _, Some(INVALID_TOKEN)) => {
                let account = &mut self.accounts[i];
                if account.token.as_ref().is_some_and(|t| t.expires_ms == pending.token_expires_ms)
                {
                    account.token = None;
                }
                account.request = TokenRequest::DueAt(now_ms);
                if account.active.is_some() {
                    SessionNews::Unrelated
                } else {
                    SessionNews::Lost { symbol }
                }
            }
            (_, _, Some(ALREADY_SUBSCRIBED)) if self.accounts[i].active.is_some() => {
                // One subscription per account per connection: give up the overlap.
                let old = self.accounts[i].active.take().expect("checked");
                self.unsubscribe(old);
                self.subscribe(i, now_ms);
                SessionNews::Lost { symbol }
            }
            _ => {
                let retry = self.config.retry;
                let account = &mut self.accounts[i];
                account.subscribe_failures = account.subscribe_failures.saturating_add(1);
                account.resubscribe_at =
                    Some(now_ms.saturating_add(retry.delay_ms(account.subscribe_failures)));
                if account.active.is_some() {
                    SessionNews::Unrelated
                } else {
                    SessionNews::Lost { symbol }
                }
            }
        }
    }

    fn on_terminated(&mut self, subscription: u64, now_ms: u64) -> SessionNews {
        for account in &mut self.accounts {
            if account.active == Some(subscription) {
                account.active = None;
                // The token behind it is done; a new one is needed whatever its stated expiry.
                account.token = None;
                if !matches!(account.request, TokenRequest::InFlight) {
                    account.request = TokenRequest::DueAt(now_ms);
                }
                return SessionNews::Lost { symbol: account.symbol };
            }
        }
        SessionNews::Unrelated
    }
}

fn json_safe(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}
