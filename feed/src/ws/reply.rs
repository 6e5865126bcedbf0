//! Recognises the replies to the client's own SUBSCRIBE/UNSUBSCRIBE requests on a combined-stream
//! connection, without parsing data frames: those start with `{"stream":` and are passed over at
//! the first key. The caller's `FrameParser` sees every frame anyway; this only lets the client
//! match a reply to its request id so that a refused subscription becomes an event.

/// `{"result":…,"id":N}` (success) or `{"code":C,"msg":…,"id":N}` (failure; `id` may be absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) id: Option<i64>,
    /// Set for an error reply.
    pub(crate) code: Option<i64>,
}

/// The reply this frame is, or None for anything else (data, or JSON this scanner does not
/// follow, which the caller's parser will judge).
pub(crate) fn scan(frame: &[u8]) -> Option<Reply> {
    let mut s = Scanner { b: frame, i: 0 };
    s.ws();
    s.eat(b'{')?;
    let (mut id, mut code, mut result) = (None, None, false);
    let mut first = true;
    loop {
        s.ws();
        if s.eat(b'}').is_some() {
            break;
        }
        if !first {
            s.eat(b',')?;
            s.ws();
        }
        let key = s.string()?;
        if first && key == b"stream" {
            return None;
        }
        first = false;
        s.ws();
        s.eat(b':')?;
        s.ws();
        match key {
            b"id" => id = s.int_or_null()?,
            b"code" => code = Some(s.int_or_null()??),
            b"result" => {
                result = true;
                s.skip_value()?;
            }
            _ => s.skip_value()?,
        }
    }
    (result || code.is_some()).then_some(Reply { id, code })
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// A string's raw bytes (escapes left as they are: the keys that matter have none).
    fn string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' => self.i += 2,
                _ => self.i += 1,
            }
        }
        let s = self.b.get(start..self.i)?;
        self.i += 1;
        Some(s)
    }

    fn int_or_null(&mut self) -> Option<Option<i64>> {
        if self.b.get(self.i..)?.starts_with(b"null") {
            self.i += 4;
            return Some(None);
        }
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        let text = std::str::from_utf8(self.b.get(start..self.i)?).ok()?;
        text.parse().ok().map(Some)
    }

    fn skip_value(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            self.ws();
            match self.peek()? {
                b'"' => {
                    self.string()?;
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.i += 1;
                    continue;
                }
                b'}' | b']' => {
                    depth = depth.checked_sub(1)?;
                    self.i += 1;
                }
                b',' | b':' if depth > 0 => {
                    self.i += 1;
                    continue;
                }
                _ => {
                    // A number, true, false or null.
                    let start = self.i;
                    while matches!(
                        self.peek(),
                        Some(b'0'..=b'9' | b'a'..=b'z' | b'-' | b'+' | b'.' | b'E')
                    ) {
                        self.i += 1;
                    }
                    if self.i == start {
                        return None;
                    }
                }
            }
            if depth == 0 {
                return Some(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_and_data() {
        let ok = scan(br#"{"result":null,"id":1}"#);
        assert_eq!(ok, Some(Reply { id: Some(1), code: None }));
        let list = scan(br#"{"result":["btcusdt@aggTrade"],"id":3}"#);
        assert_eq!(list, Some(Reply { id: Some(3), code: None }));
        let err = scan(br#"{ "code": 2, "msg": "Invalid request: \"id\" x", "id": 77 }"#);
        assert_eq!(err, Some(Reply { id: Some(77), code: Some(2) }));
        let no_id = scan(br#"{"code":3,"msg":"Invalid JSON"}"#);
        assert_eq!(no_id, Some(Reply { id: None, code: Some(3) }));
        let nested = scan(br#"{"id":9,"result":{"a":[1,{"b":"}"}],"c":true}}"#);
        assert_eq!(nested, Some(Reply { id: Some(9), code: None }));
        assert_eq!(scan(br#"{"stream":"btcusdt@markPrice","data":{"e":"x"}}"#), None);
        assert_eq!(scan(br#"{"e":"markPriceUpdate","E":1}"#), None);
        assert_eq!(scan(br#"{"result":null,"id":1"#), None);
        assert_eq!(scan(b"[1,2]"), None);
        assert_eq!(scan(b""), None);
    }
}
