//! An incremental parser for `text/event-stream` bodies: bytes in, event data out, however the
//! bytes were split into network chunks.

/// Feed it the body chunk by chunk; it returns the `data` of every event completed so far.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    last_was_cr: bool,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes `chunk`; returns the data of each event that a blank line completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        for &b in chunk {
            if self.last_was_cr {
                self.last_was_cr = false;
                if b == b'\n' {
                    continue; // the \n of a \r\n pair
                }
            }
            match b {
                b'\r' => {
                    self.last_was_cr = true;
                    self.end_line(&mut events);
                }
                b'\n' => self.end_line(&mut events),
                _ => self.line.push(b),
            }
        }
        events
    }

    /// Whether unterminated bytes remain (a stream that ended mid-event).
    pub fn has_partial(&self) -> bool {
        !self.line.is_empty() || self.has_data
    }

    fn end_line(&mut self, events: &mut Vec<String>) {
        if self.line.is_empty() {
            if self.has_data {
                events.push(String::from_utf8_lossy(&self.data).into_owned());
                self.data.clear();
                self.has_data = false;
            }
            return;
        }
        let line = std::mem::take(&mut self.line);
        let (field, value) = match line.iter().position(|&c| c == b':') {
            Some(0) => {
                self.line = line;
                self.line.clear();
                return; // a comment
            }
            Some(i) => {
                let mut v = &line[i + 1..];
                if v.first() == Some(&b' ') {
                    v = &v[1..];
                }
                (&line[..i], v)
            }
            None => (&line[..], &[][..]),
        };
        if field == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
        self.line = line;
        self.line.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_any_split() {
        let body = b"data: {\"a\":1}\n\n: keep-alive\r\n\r\ndata: x\r\ndata: y\r\n\r\nevent: e\ndata: [DONE]\n\n";
        let whole = SseParser::new().feed(body);
        assert_eq!(whole, vec!["{\"a\":1}", "x\ny", "[DONE]"]);
        for split in 0..body.len() {
            let mut p = SseParser::new();
            let mut got = p.feed(&body[..split]);
            got.extend(p.feed(&body[split..]));
            assert_eq!(got, whole, "split at {split}");
            assert!(!p.has_partial());
        }
    }

    #[test]
    fn reports_a_partial_event() {
        let mut p = SseParser::new();
        assert!(p.feed(b"data: {\"a\"").is_empty());
        assert!(p.has_partial());
    }
}
