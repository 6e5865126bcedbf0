//! User-data stream credentials: futures/margin listen keys and the margin listen token.
//!
//! Either one lets its holder read the account's orders and balances for as long as it lives,
//! so both print as `***`, like the API secret.

use core::fmt;

use super::json::{self, BodyError, Fields};

/// A listen key (`POST`/`PUT /fapi/v1/listenKey`, `/sapi/v1/userDataStream[/isolated]`).
#[derive(Clone, PartialEq, Eq)]
pub struct ListenKey(String);

impl ListenKey {
    /// The key itself, for the stream URL or the keepalive call.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ListenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ListenKey(***)")
    }
}

/// `{"listenKey": …}`, also inside a WebSocket API `result` (futures `userDataStream.start`).
pub fn parse_listen_key(body: &mut [u8]) -> Result<ListenKey, BodyError> {
    let root = json::parse(body)?;
    let top = Fields::of(&root, "listenKey response")?;
    let fields = match top.get("result") {
        Some(result) => Fields::of(result, "result")?,
        None => top,
    };
    let key = fields.str("listenKey")?;
    if key.is_empty() {
        return Err(BodyError::BadValue("listenKey"));
    }
    Ok(ListenKey(key.to_owned()))
}

/// The margin listen token (`POST /sapi/v1/userListenToken`), valid until `expires_ms`.
#[derive(Clone, PartialEq, Eq)]
pub struct ListenToken {
    token: String,
    pub expires_ms: u64,
}

impl ListenToken {
    pub fn expose(&self) -> &str {
        &self.token
    }
}

impl fmt::Debug for ListenToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ListenToken(***, expires_ms: {})", self.expires_ms)
    }
}

pub fn parse_listen_token(body: &mut [u8]) -> Result<ListenToken, BodyError> {
    let root = json::parse(body)?;
    let fields = Fields::of(&root, "userListenToken response")?;
    let token = fields.str("token")?;
    if token.is_empty() {
        return Err(BodyError::BadValue("token"));
    }
    Ok(ListenToken { token: token.to_owned(), expires_ms: fields.u64("expirationTime")? })
}
