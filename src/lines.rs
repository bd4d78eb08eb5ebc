//! Cuts a watch response body into its newline-terminated events as frames arrive, holding at most one
//! incomplete line (bounded by `max_object_size` plus an envelope), and skipping any longer line up to its end.

/// The bytes received and not yet returned as lines.
pub(crate) struct Lines {
    buf: Vec<u8>,
    /// First byte of the line not yet returned.
    start: usize,
    /// No line end lies in `start..scan_from` (those bytes were scanned already).
    scan_from: usize,
    /// The current line is over `max` and being skipped up to its end.
    skipping: bool,
    max: usize,
}

/// How much of a skipped line is kept for naming its object (its metadata comes first).
const SKIPPED_PREFIX: usize = 256 << 10;

impl Lines {
    pub fn new(max: usize) -> Lines {
        Lines {
            buf: Vec::new(),
            start: 0,
            scan_from: 0,
            skipping: false,
            max,
        }
    }

    /// Appends a frame's bytes. Take every line (`next_line`, then `overflow`) before the next push.
    pub fn push(&mut self, data: &[u8]) {
        // Forget the lines already returned: only the line in progress stays.
        self.buf.drain(..self.start);
        self.scan_from -= self.start;
        self.start = 0;
        self.buf.extend_from_slice(data);
    }

    /// The next complete, non-blank line, without its newline.
    pub fn next_line(&mut self) -> Option<&[u8]> {
        loop {
            let nl = self.buf[self.scan_from..].iter().position(|&b| b == b'\n');
            let Some(nl) = nl else {
                self.scan_from = self.buf.len();
                return None;
            };
            let end = self.scan_from + nl;
            let line = self.start..end;
            self.start = end + 1;
            self.scan_from = self.start;
            if std::mem::take(&mut self.skipping)
                || self.buf[line.clone()].iter().all(u8::is_ascii_whitespace)
            {
                continue;
            }
            return Some(&self.buf[line]);
        }
    }

    /// Once `next_line` returned `None`: a line in progress over the limit is dropped (holding it whole could
    /// exhaust memory) and the rest of it skipped as it arrives. Returns its first bytes when it just crossed the
    /// limit (for naming its object), `None` otherwise.
    pub fn overflow(&mut self) -> Option<Vec<u8>> {
        if self.buf.len() - self.start <= self.max {
            return None;
        }
        let first = !self.skipping;
        let prefix = first.then(|| {
            let end = self.buf.len().min(self.start + SKIPPED_PREFIX);
            self.buf[self.start..end].to_vec()
        });
        self.buf.clear();
        self.start = 0;
        self.scan_from = 0;
        self.skipping = true;
        prefix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(l: &mut Lines) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(line) = l.next_line() {
            out.push(String::from_utf8(line.to_vec()).unwrap());
        }
        out
    }

    #[test]
    fn lines_split_and_merged_across_frames() {
        let mut l = Lines::new(100);
        l.push(b"{\"a\":1}\n{\"b\"");
        assert_eq!(drain(&mut l), ["{\"a\":1}"]);
        assert_eq!(l.overflow(), None);
        l.push(b":2}\n\n  \n{\"c\":3}\n{\"d\":4}\n");
        assert_eq!(drain(&mut l), ["{\"b\":2}", "{\"c\":3}", "{\"d\":4}"]);
        l.push(b"");
        assert_eq!(drain(&mut l), Vec::<String>::new());
    }

    #[test]
    fn an_over_long_line_is_skipped_to_its_end_and_reported_once() {
        let mut l = Lines::new(10);
        l.push(b"{\"ok\":1}\n{\"metadata\":");
        assert_eq!(drain(&mut l), ["{\"ok\":1}"]);
        assert_eq!(l.overflow(), Some(b"{\"metadata\":".to_vec()));
        // Only the line in progress was held, and nothing of it is kept now.
        assert!(l.buf.is_empty());
        l.push(b"\"much more than ten bytes\"");
        assert_eq!(drain(&mut l), Vec::<String>::new());
        assert_eq!(l.overflow(), None, "the same line: not reported again");
        assert!(l.buf.is_empty());
        l.push(b"}}\n{\"next\":2}\n");
        assert_eq!(
            drain(&mut l),
            ["{\"next\":2}"],
            "the rest of the long line is skipped"
        );
        assert_eq!(l.overflow(), None);
        // A line that arrives whole within one frame is returned whatever its length: its object's size is
        // checked when it is parsed.
        l.push(b"0123456789abcdef\n{\"x\":3}\n");
        assert_eq!(drain(&mut l), ["0123456789abcdef", "{\"x\":3}"]);
    }
}
