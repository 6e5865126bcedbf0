//! The byte stream under tungstenite: a non-blocking mio `TcpStream`, plain (loopback only) or
//! wrapped in a rustls client connection driven by hand.
//!
//! Driving rustls here rather than through `rustls::StreamOwned` keeps each call to one pass over
//! the socket: `read` returns decrypted bytes or `WouldBlock`, `write` hands bytes to rustls and
//! pushes what the socket takes, and a full rustls buffer is `WouldBlock`, never the `Ok(0)` that
//! tungstenite would take for a reset. Everything rustls queues on its own (handshake records,
//! alerts, key updates) goes out on the next read or write.
//!
//! The TLS trust store is built once per client: Mozilla's roots (webpki-roots) plus the optional
//! extra CA file (a test CA or a corporate proxy's).

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::{Reason, TlsFailure, WsError};

pub(crate) enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

pub(crate) struct TlsStream {
    conn: ClientConnection,
    sock: TcpStream,
}

impl Transport {
    pub(crate) fn tcp(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(sock) => sock,
            Transport::Tls(tls) => &mut tls.sock,
        }
    }

    /// Best effort, before dropping: a TLS close_notify so the server logs a clean close.
    pub(crate) fn close_notify(&mut self) {
        if let Transport::Tls(tls) = self {
            tls.conn.send_close_notify();
            let _ = tls.push();
        }
    }
}

impl TlsStream {
    pub(crate) fn tcp(&mut self) -> &mut TcpStream {
        &mut self.sock
    }

    pub(crate) fn new(
        config: &Arc<ClientConfig>,
        name: ServerName<'static>,
        sock: TcpStream,
    ) -> Result<TlsStream, Reason> {
        let conn = ClientConnection::new(Arc::clone(config), name)
            .map_err(|e| Reason::Tls(tls_failure(&e)))?;
        Ok(TlsStream { conn, sock })
    }

    /// Moves the TLS handshake as far as the socket allows: Ok(true) once it is complete.
    pub(crate) fn handshake(&mut self) -> io::Result<bool> {
        loop {
            self.push()?;
            if !self.conn.is_handshaking() {
                return Ok(true);
            }
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => self.process()?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    fn process(&mut self) -> io::Result<()> {
        if let Err(e) = self.conn.process_new_packets() {
            // The alert describing the failure, if rustls queued one.
            let _ = self.push();
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        Ok(())
    }

    /// Writes what rustls has queued, as far as the socket takes it. A socket that would block
    /// is fine: the rest goes on the next writable event.
    fn push(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(sock) => sock.read(buf),
            Transport::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(sock) => sock.write(buf),
            Transport::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(sock) => sock.flush(),
            Transport::Tls(tls) => tls.flush(),
        }
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                // 0 after the peer's close_notify: a clean end of stream.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match self.conn.read_tls(&mut self.sock) {
                // Also at the end of the TCP stream (0): processing makes the reader say how
                // the stream ended.
                Ok(_) => {
                    self.process()?;
                    self.push()?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let taken = self.conn.writer().write(buf)?;
        self.push()?;
        if taken == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.push()?;
        if self.conn.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    }
}

/// The client's TLS settings: ring, TLS 1.2 and 1.3, webpki roots plus the extra CA file.
pub(crate) fn client_config(extra_ca_pem: Option<&Path>) -> Result<Arc<ClientConfig>, WsError> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = extra_ca_pem {
        let pem = std::fs::read(path).map_err(|e| WsError::ExtraCa(e.kind().into()))?;
        let mut added = 0usize;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|_| WsError::ExtraCa(ExtraCaProblem::BadPem))?;
            roots.add(cert).map_err(|_| WsError::ExtraCa(ExtraCaProblem::BadCertificate))?;
            added += 1;
        }
        if added == 0 {
            return Err(WsError::ExtraCa(ExtraCaProblem::NoCertificate));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| WsError::TlsSetup)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Why the extra CA file could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtraCaProblem {
    Read(io::ErrorKind),
    BadPem,
    BadCertificate,
    NoCertificate,
}

impl From<io::ErrorKind> for ExtraCaProblem {
    fn from(kind: io::ErrorKind) -> Self {
        ExtraCaProblem::Read(kind)
    }
}

pub(crate) fn tls_failure(e: &rustls::Error) -> TlsFailure {
    match e {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            TlsFailure::Certificate
        }
        rustls::Error::AlertReceived(_) => TlsFailure::Alert,
        _ => TlsFailure::Other,
    }
}

/// The rustls error inside an I/O error made by [`TlsStream`], if that is what it is.
pub(crate) fn tls_failure_in(e: &io::Error) -> Option<TlsFailure> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).map(tls_failure)
}
