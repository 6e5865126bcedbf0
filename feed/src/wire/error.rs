//! Why a frame was refused: a small `Copy` value, never a panic and never a heap string, so a
//! garbled or hostile frame costs the hot thread a counter increment and a log line, nothing more.

use core::fmt;

use engine::money::DecimalError;
use engine::types::SymbolError;

use super::EventKind;

/// What was wrong with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Longer than the parser's `max_frame`: refused before parsing, so that the buffers sized
    /// at construction never grow (and never allocate) on the hot path.
    Oversize { len: usize, max: usize },
    /// simd-json refused it: bad syntax, bad UTF-8, trailing data, or nesting deeper than
    /// `MAX_DEPTH`.
    InvalidJson,
    /// A field the event needs is absent.
    MissingField,
    /// A field has a JSON type the parser cannot take exactly: an object where a string belongs,
    /// or a price sent as a JSON float (it would have gone through f64).
    WrongType,
    /// Not an event or reply this parser knows (`e` unknown, or an object of unknown shape).
    UnknownEvent,
    /// An enumerated string the parser does not know (`X` status, `S` side, `ps`).
    UnknownValue,
    /// A decimal string `engine::money` refused (too precise, out of range, not a decimal).
    Decimal(DecimalError),
    /// An integer (time, id, leverage) outside its type's range, or negative where it cannot be.
    OutOfRange,
    /// A symbol `engine::types::Symbol` cannot hold (only `[A-Z0-9_]`, at most 23 bytes).
    Symbol(SymbolError),
    /// A client order id that is empty or longer than Binance's 36-character limit.
    ClientOrderId,
}

/// A refused frame: what was wrong, where, and in which event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameError {
    pub kind: ErrorKind,
    /// The offending field as Binance spells it, with its path (`"a.P.pa"`); `""` when the
    /// frame as a whole is at fault.
    pub field: &'static str,
    /// The event the frame was recognised as, when it got that far.
    pub event: Option<EventKind>,
}

impl FrameError {
    #[cold]
    pub(crate) fn new(kind: ErrorKind, field: &'static str) -> FrameError {
        FrameError { kind, field, event: None }
    }

    /// Tags an error with the event being parsed; an inner tag (a wrapped event) wins.
    #[cold]
    pub(crate) fn in_event(mut self, event: EventKind) -> FrameError {
        self.event.get_or_insert(event);
        self
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::Oversize { len, max } => write!(f, "frame of {len} bytes exceeds {max}")?,
            ErrorKind::InvalidJson => f.write_str("invalid JSON")?,
            ErrorKind::MissingField => f.write_str("missing field")?,
            ErrorKind::WrongType => f.write_str("wrong JSON type")?,
            ErrorKind::UnknownEvent => f.write_str("unknown event")?,
            ErrorKind::UnknownValue => f.write_str("unknown enumerated value")?,
            ErrorKind::Decimal(e) => write!(f, "{e}")?,
            ErrorKind::OutOfRange => f.write_str("integer out of range")?,
            ErrorKind::Symbol(e) => write!(f, "unrepresentable symbol ({e:?})")?,
            ErrorKind::ClientOrderId => f.write_str("client order id empty or over 36 bytes")?,
        }
        if !self.field.is_empty() {
            write!(f, " at {:?}", self.field)?;
        }
        if let Some(event) = self.event {
            write!(f, " in {}", event.as_str())?;
        }
        Ok(())
    }
}

impl std::error::Error for FrameError {}
