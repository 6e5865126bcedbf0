//! Request signing: HMAC-SHA256 and Ed25519 behind one [`Signer`] seam (RSA could join it).
//!
//! REST signs the exact bytes it sends: `k=v&…` with every value percent-encoded, then
//! `recvWindow` and `timestamp`, then `signature` appended last (futures insists on last). The
//! WebSocket API signs something else: all parameters including `apiKey`, sorted by name, raw
//! UTF-8. Key material lives in [`Secret`] or inside a signer, and none of them ever prints.
//! `Secret` and the Ed25519 key are wiped on drop; the HMAC signer's keyed hash state is not
//! (the `hmac` crate is built without `zeroize`). Nothing here reads a clock or a socket.

use core::fmt;
use core::fmt::Write as _;

use base64::Engine as _;
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// A secret key held in memory. It has no `Clone`, prints as `***`, and is overwritten with zeros
/// when dropped.
///
/// The wipe is best effort: safe Rust cannot forbid the optimiser from eliding a store to memory
/// about to be freed, so the zeros are passed through `black_box`, which in practice keeps them.
/// The `zeroize` crate would make it a guarantee (see the issue-3 report).
pub struct Secret(Box<[u8]>);

impl Secret {
    /// Takes the bytes; the caller's vector is wiped after the copy, because `into_boxed_slice`
    /// may reallocate and leave the old buffer behind un-wiped.
    pub fn new(mut bytes: Vec<u8>) -> Secret {
        let secret = Secret(bytes.as_slice().into());
        wipe(&mut bytes);
        secret
    }

    pub fn from_string(text: String) -> Secret {
        Secret::new(text.into_bytes())
    }

    /// The raw key, for a signer to consume. Deliberately named so that every use is visible.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    core::hint::black_box(bytes);
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The public half of a key pair: sent in every `X-MBX-APIKEY` header, so not secret, but it
/// names the account and grants nothing alone; logs show only its first four characters, enough
/// to tell two keys apart.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: String) -> ApiKey {
        ApiKey(key)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.0.char_indices().nth(4).map_or(self.0.as_str(), |(i, _)| &self.0[..i]);
        write!(f, "{shown}***")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A lowercase hex HMAC-SHA256 signature held on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HexSignature([u8; 64]);

impl HexSignature {
    pub fn as_str(&self) -> &str {
        // hex::encode_to_slice writes only [0-9a-f].
        core::str::from_utf8(&self.0).expect("hex is ascii")
    }

    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
}

impl fmt::Display for HexSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// A signature is not the key, but with its query it is a request anyone could replay within
// the recvWindow: it never goes into logs.
impl fmt::Debug for HexSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HexSignature(***)")
    }
}

fn hex_of(mac: Hmac<Sha256>) -> HexSignature {
    let digest = mac.finalize().into_bytes();
    let mut out = [0u8; 64];
    hex::encode_to_slice(digest.as_slice(), &mut out).expect("32 bytes are 64 hex digits");
    HexSignature(out)
}

/// `hex(HMAC_SHA256(secret, payload))`, lowercase, as Binance documents it.
pub fn sign_hmac_sha256(secret: &[u8], payload: &[u8]) -> HexSignature {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(payload);
    hex_of(mac)
}

/// Something that signs a request payload: [`HmacSigner`] (hex) or [`Ed25519Signer`] (base64,
/// which [`Query::sign`] then percent-encodes as REST requires, and the WebSocket API sends as
/// is).
pub trait Signer {
    /// Appends the signature of `payload` in the text form Binance reads, before any URL encoding.
    fn sign_into(&self, payload: &[u8], out: &mut String);
}

/// HMAC-SHA256 with the key schedule computed once: signing a request then costs two SHA-256
/// compressions per block of payload, not a key setup as well.
#[derive(Clone)]
pub struct HmacSigner {
    keyed: Hmac<Sha256>,
}

impl HmacSigner {
    pub fn new(secret: &Secret) -> HmacSigner {
        let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose())
            .expect("HMAC takes keys of any length");
        HmacSigner { keyed }
    }

    pub fn sign(&self, payload: &[u8]) -> HexSignature {
        let mut mac = self.keyed.clone();
        mac.update(payload);
        hex_of(mac)
    }
}

impl Signer for HmacSigner {
    fn sign_into(&self, payload: &[u8], out: &mut String) {
        out.push_str(self.sign(payload).as_str());
    }
}

impl fmt::Debug for HmacSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacSigner(***)")
    }
}

/// Why a private key could not be loaded. Says what was wrong with its form, never anything of
/// its content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// The PEM text is not UTF-8.
    NotUtf8,
    /// Not a PKCS#8 `PRIVATE KEY` holding an Ed25519 key (a wrong label, bad base64, another
    /// algorithm, or a public key that does not match the private one).
    NotEd25519Pkcs8,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyError::NotUtf8 => "private key file is not UTF-8 text",
            KeyError::NotEd25519Pkcs8 => "private key is not a PKCS#8 PEM Ed25519 key",
        })
    }
}

impl std::error::Error for KeyError {}

/// An Ed25519 signature in standard base64 (with padding), held on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Base64Signature([u8; 88]);

impl Base64Signature {
    pub fn as_str(&self) -> &str {
        // The base64 engine writes only its ASCII alphabet.
        core::str::from_utf8(&self.0).expect("base64 is ascii")
    }
}

impl fmt::Display for Base64Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// A signature is not the key, but with its query it is a request anyone could replay within
// the recvWindow: it never goes into logs.
impl fmt::Debug for Base64Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Base64Signature(***)")
    }
}

/// Ed25519 (RFC 8032, pure), the key type Binance recommends and the only one the WebSocket
/// API's `session.logon` accepts. The signature is deterministic: the same key and payload
/// always give the same bytes.
///
/// The key is ed25519-dalek's `SigningKey`, which zeroes itself on drop.
pub struct Ed25519Signer {
    key: ed25519_dalek::SigningKey,
}

impl Ed25519Signer {
    /// Reads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`), the form Binance's key
    /// generator and `openssl genpkey -algorithm ed25519` write.
    pub fn from_pkcs8_pem(pem: &Secret) -> Result<Ed25519Signer, KeyError> {
        let text = core::str::from_utf8(pem.expose()).map_err(|_| KeyError::NotUtf8)?;
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(text.trim())
            .map_err(|_| KeyError::NotEd25519Pkcs8)?;
        Ok(Ed25519Signer { key })
    }

    /// The 32-byte public key, which Binance registers for the API key: safe to print.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    pub fn sign(&self, payload: &[u8]) -> Base64Signature {
        let signature = ed25519_dalek::Signer::sign(&self.key, payload).to_bytes();
        let mut out = [0u8; 88];
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(signature, &mut out)
            .expect("64 bytes are 88 base64 characters");
        debug_assert_eq!(written, 88);
        Base64Signature(out)
    }
}

impl Signer for Ed25519Signer {
    fn sign_into(&self, payload: &[u8], out: &mut String) {
        out.push_str(self.sign(payload).as_str());
    }
}

impl fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ed25519Signer(***)")
    }
}

/// RFC 3986 unreserved characters pass through; every other byte, including each byte of a
/// non-ASCII character, becomes `%XX` in upper case, which is the form Binance's own signing
/// example shows (`１２３４５６` → `%EF%BC%91…`).
pub fn percent_encode_into(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

/// The parameters of one REST request in the order they will be sent.
///
/// The same text serves as query string or as `x-www-form-urlencoded` body: Binance signs the
/// query concatenated with the body, so putting everything in one of them keeps what is signed
/// and what is sent identical.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    text: String,
}

impl Query {
    pub fn new() -> Query {
        Query { text: String::with_capacity(160) }
    }

    /// Appends `key=value`, both percent-encoded.
    pub fn push(&mut self, key: &str, value: &str) -> &mut Query {
        if !self.text.is_empty() {
            self.text.push('&');
        }
        percent_encode_into(key, &mut self.text);
        self.text.push('=');
        percent_encode_into(value, &mut self.text);
        self
    }

    pub fn push_u64(&mut self, key: &str, value: u64) -> &mut Query {
        if !self.text.is_empty() {
            self.text.push('&');
        }
        percent_encode_into(key, &mut self.text);
        // Writing into a String cannot fail.
        let _ = write!(self.text, "={value}");
        self
    }

    /// The unsigned text, for public endpoints.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Adds `recvWindow` and `timestamp`, signs the whole text, and appends `signature` last.
    pub fn sign<S: Signer + ?Sized>(
        mut self,
        signer: &S,
        recv_window_ms: u32,
        timestamp_ms: u64,
    ) -> SignedQuery {
        self.push_u64("recvWindow", u64::from(recv_window_ms));
        self.push_u64("timestamp", timestamp_ms);
        let signed_len = self.text.len();
        let mut signature = String::with_capacity(88);
        signer.sign_into(self.text.as_bytes(), &mut signature);
        self.text.push_str("&signature=");
        percent_encode_into(&signature, &mut self.text);
        SignedQuery { text: self.text, signed_len }
    }
}

/// A signed request's parameters, ready to send.
///
/// Its `Debug` hides the signature: anyone holding it can replay the request until its
/// `recvWindow` lapses.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedQuery {
    text: String,
    signed_len: usize,
}

impl SignedQuery {
    /// The full text to send, signature last.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The bytes the signature covers.
    pub fn payload(&self) -> &str {
        &self.text[..self.signed_len]
    }

    /// The signature as sent (percent-encoded where needed).
    pub fn signature(&self) -> &str {
        &self.text[self.signed_len + "&signature=".len()..]
    }
}

impl fmt::Debug for SignedQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}&signature=***", self.payload())
    }
}

/// The parameters of one signed WebSocket API request.
///
/// The signature covers every parameter but `signature`, `apiKey` included, sorted by name, as
/// raw `k=v` text joined by `&` with no percent-encoding; the request's JSON must then carry
/// exactly these values (numbers for INT parameters, strings for DECIMAL ones).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WsParams {
    pairs: Vec<(String, String)>,
}

impl WsParams {
    pub fn new() -> WsParams {
        WsParams { pairs: Vec::with_capacity(12) }
    }

    pub fn push(&mut self, key: &str, value: &str) -> &mut WsParams {
        self.pairs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Adds `apiKey`, `recvWindow` and `timestamp`, sorts, and signs.
    pub fn sign<S: Signer + ?Sized>(
        mut self,
        signer: &S,
        api_key: &ApiKey,
        recv_window_ms: u32,
        timestamp_ms: u64,
    ) -> SignedWsParams {
        self.push("apiKey", api_key.as_str());
        self.push("recvWindow", &recv_window_ms.to_string());
        self.push("timestamp", &timestamp_ms.to_string());
        self.sign_as_is(signer)
    }

    /// Signs exactly the parameters pushed, for requests (such as `session.logon`) whose
    /// parameter set differs from the order endpoints'.
    pub fn sign_as_is<S: Signer + ?Sized>(mut self, signer: &S) -> SignedWsParams {
        self.pairs.retain(|(key, _)| key != "signature");
        // Stable, so that a repeated key keeps its pushed order (Binance would refuse it anyway).
        self.pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let payload = self.payload();
        let mut signature = String::with_capacity(88);
        signer.sign_into(payload.as_bytes(), &mut signature);
        SignedWsParams { pairs: self.pairs, signature }
    }

    fn payload(&self) -> String {
        let mut out = String::with_capacity(256);
        for (i, (key, value)) in self.pairs.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            out.push_str(key);
            out.push('=');
            out.push_str(value);
        }
        out
    }
}

/// Sorted parameters and their signature, for the WebSocket client to write as JSON.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedWsParams {
    pairs: Vec<(String, String)>,
    signature: String,
}

impl SignedWsParams {
    /// The parameters in signing order, `apiKey` among them, `signature` not.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The exact text that was signed.
    pub fn payload(&self) -> String {
        WsParams { pairs: self.pairs.clone() }.payload()
    }

    pub fn signature(&self) -> &str {
        &self.signature
    }
}

impl fmt::Debug for SignedWsParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedWsParams")
            .field("keys", &self.pairs.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .field("signature", &"***")
            .finish()
    }
}
