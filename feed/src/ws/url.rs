//! The URLs the client accepts and the stream names it puts in them.
//!
//! Parsing is strict and small on purpose: `ws`/`wss` only, no user info, no fragment, printable
//! ASCII only, and plain `ws://` only towards loopback (DESIGN.md section 8), so a config typo can
//! never send market subscriptions or a listen key in clear text across a network. A URL can hold
//! a listen key (`/private/ws/<listenKey>`), so nothing here ever prints a path: errors say what
//! is wrong, never what the URL was, and `Debug` shows the host and the path's length only.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::WsError;

/// Where a connection goes: scheme, host, port, and the request path (with its query).
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) tls: bool,
    /// As written, without the brackets of an IPv6 literal.
    pub(crate) host: String,
    /// The host when it is an IP literal: no resolution needed.
    pub(crate) ip: Option<IpAddr>,
    pub(crate) port: u16,
    /// Starts with `/`; may carry a query.
    pub(crate) path: String,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "wss" } else { "ws" };
        write!(f, "{scheme}://{}:{}/<{} bytes>", self.host, self.port, self.path.len())
    }
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Target, WsError> {
        if url.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
            return Err(WsError::BadUrl("not printable ASCII without spaces"));
        }
        let (tls, rest) = if let Some(rest) = strip_prefix_ci(url, "wss://") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ci(url, "ws://") {
            (false, rest)
        } else {
            return Err(WsError::BadUrl("scheme must be ws:// or wss://"));
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.contains('@') {
            return Err(WsError::BadUrl("user info is not allowed"));
        }
        let (host, ip, port) = parse_authority(authority)?;
        let port = port.unwrap_or(if tls { 443 } else { 80 });
        if path.contains('#') {
            return Err(WsError::BadUrl("a fragment is not allowed"));
        }
        if path.bytes().any(|b| b"\"<>\\^`{|}".contains(&b)) {
            return Err(WsError::BadUrl("path holds a character that must be escaped"));
        }
        let path = match path.as_bytes().first() {
            None => "/".to_string(),
            Some(b'?') => format!("/{path}"),
            Some(_) => path.to_string(),
        };
        let target = Target { tls, host, ip, port, path };
        if !target.tls && !target.is_loopback_host() {
            return Err(WsError::PlainNotLoopback);
        }
        Ok(target)
    }

    /// 127.0.0.0/8, ::1 (also IPv4-mapped), or the name `localhost`, whose resolved addresses
    /// are checked again before connecting.
    pub(crate) fn is_loopback_host(&self) -> bool {
        match self.ip {
            Some(ip) => ip.to_canonical().is_loopback(),
            None => self.host.eq_ignore_ascii_case("localhost"),
        }
    }

    /// The URL tungstenite builds its upgrade request from (Host header, path).
    pub(crate) fn request_url(&self, path: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        match self.ip {
            Some(IpAddr::V6(_)) => format!("{scheme}://[{}]:{}{path}", self.host, self.port),
            _ => format!("{scheme}://{}:{}{path}", self.host, self.port),
        }
    }

    /// For a combined-stream connection: `<base>/stream?streams=a/b/c` with as many of `streams`
    /// (in order) as fit in `max_len` bytes of path. Returns the path and how many streams it
    /// carries; the rest are to be sent as SUBSCRIBE once connected.
    pub(crate) fn combined_path(&self, streams: &[String], max_len: usize) -> (String, usize) {
        let mut path = self.path.trim_end_matches('/').to_string();
        path.push_str("/stream");
        let mut carried = 0;
        for stream in streams {
            let sep = if carried == 0 { "?streams=" } else { "/" };
            if path.len() + sep.len() + escaped_len(stream) > max_len {
                break;
            }
            path.push_str(sep);
            push_escaped(&mut path, stream);
            carried += 1;
        }
        (path, carried)
    }

    /// A combined-stream base: a path without a query, to which `/stream?…` is appended.
    pub(crate) fn check_stream_base(&self) -> Result<(), WsError> {
        if self.path.contains('?') {
            return Err(WsError::BadUrl("a combined-stream base URL cannot carry a query"));
        }
        Ok(())
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

fn parse_authority(authority: &str) -> Result<(String, Option<IpAddr>, Option<u16>), WsError> {
    let (host, ip, port) = if let Some(rest) = authority.strip_prefix('[') {
        let Some((literal, after)) = rest.split_once(']') else {
            return Err(WsError::BadUrl("unclosed IPv6 literal"));
        };
        let Ok(v6) = literal.parse::<Ipv6Addr>() else {
            return Err(WsError::BadUrl("bad IPv6 literal"));
        };
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(WsError::BadUrl("junk after IPv6 literal"))?),
        };
        (literal.to_string(), Some(IpAddr::V6(v6)), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        let ip = host.parse::<Ipv4Addr>().ok().map(IpAddr::V4);
        if ip.is_none() && !is_domain(host) {
            return Err(WsError::BadUrl("bad host name"));
        }
        (host.to_ascii_lowercase(), ip, port)
    };
    let port = match port {
        None => None,
        Some(digits) => match digits.parse::<u16>() {
            Ok(p) if p != 0 && digits.bytes().all(|b| b.is_ascii_digit()) => Some(p),
            _ => return Err(WsError::BadUrl("bad port")),
        },
    };
    Ok((host, ip, port))
}

fn is_domain(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Binance stream names: `btcusdt@markPrice@1s`, `!markPrice@arr`, `bnbbtc@kline_1m@+08:00`.
/// Anything that would need escaping in JSON, or would break the `/`-joined list in the URL, is
/// refused, so the names can be pasted into both as they are (`+` is percent-encoded in the URL).
pub(crate) fn check_stream_name(name: &str) -> bool {
    const MAX: usize = 128;
    !name.is_empty()
        && name.len() <= MAX
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"@_!.-:+".contains(&b))
}

fn escaped_len(stream: &str) -> usize {
    stream.len() + 2 * stream.bytes().filter(|&b| b == b'+').count()
}

fn push_escaped(out: &mut String, stream: &str) {
    for c in stream.chars() {
        match c {
            '+' => out.push_str("%2B"),
            c => out.push(c),
        }
    }
}
