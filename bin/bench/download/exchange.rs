//! One request's response on a connection, without IO: the bytes of each read go in, the
//! head is parsed and checked against what was asked for, the body is counted (and compared
//! with make-file's pattern) until exactly `Content-Length` bytes have come.

use super::pattern::{self, Check};
use super::response::{MAX_HEAD, ResponseHead};

/// What every response of a run must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// `--range FIRST-LAST`: a 206 carrying exactly that range; without it a 200.
    pub range: Option<(u64, u64)>,
    /// `--expect-size`: the file's size (a 200's `Content-Length`, a 206's complete length).
    pub size: Option<u64>,
    /// Compare bodies with make-file's pattern.
    pub check: Option<Check>,
}

impl Expect {
    /// Where the body starts in the file and its length, or what is wrong with `head`.
    fn body_of(&self, head: &ResponseHead) -> Result<(u64, u64), String> {
        let Some((first, last)) = self.range else {
            if head.status != 200 {
                return Err(format!("status {} (expected 200)", head.status));
            }
            if let Some(size) = self.size.filter(|&size| size != head.content_length) {
                return Err(format!(
                    "Content-Length {} (expected {size})",
                    head.content_length
                ));
            }
            return Ok((0, head.content_length));
        };
        if head.status != 206 {
            return Err(format!(
                "status {} (expected 206 to Range: bytes={first}-{last})",
                head.status
            ));
        }
        let range = head
            .content_range
            .ok_or_else(|| "206 without Content-Range".to_owned())?;
        if (range.first, range.last) != (first, last) {
            return Err(format!(
                "Content-Range bytes {}-{} (expected {first}-{last})",
                range.first, range.last
            ));
        }
        if head.content_length != range.len() {
            return Err(format!(
                "Content-Length {} for a range of {} bytes",
                head.content_length,
                range.len()
            ));
        }
        if let Some(size) = self.size.filter(|&size| range.complete != Some(size)) {
            return Err(format!(
                "Content-Range complete length {:?} (expected {size})",
                range.complete
            ));
        }
        Ok((first, range.len()))
    }
}

/// Where the current response is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No request outstanding: nothing may arrive.
    Idle,
    /// Reading the head.
    Head,
    /// `left` body bytes to come, the next at file offset `offset`.
    Body {
        offset: u64,
        left: u64,
        keep_alive: bool,
    },
}

/// What one read brought.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fed {
    /// Body bytes in it.
    pub body: u64,
    /// The head completed with it.
    pub head: bool,
    /// The body completed with it; whether the connection stays open.
    pub done: Option<bool>,
}

/// The responses of one connection, one at a time.
#[derive(Debug)]
pub struct Exchange {
    expect: Expect,
    /// The start of a head that came in more than one read.
    partial: Vec<u8>,
    state: State,
}

impl Exchange {
    /// No request sent yet.
    pub fn new(expect: Expect) -> Self {
        Self {
            expect,
            partial: Vec::new(),
            state: State::Idle,
        }
    }

    /// A request was sent: a response may come.
    pub fn begin(&mut self) {
        self.state = State::Head;
        self.partial.clear();
    }

    /// Takes the bytes of one read; an error when the response is not what was asked for,
    /// or when bytes come that belong to no response.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<Fed, String> {
        let mut fed = Fed::default();
        if self.state == State::Head {
            match self.take_head(data)? {
                Some(rest) => data = rest,
                None => return Ok(fed),
            }
            fed.head = true;
        }
        match &mut self.state {
            State::Body {
                offset,
                left,
                keep_alive,
            } => {
                let n = (data.len() as u64).min(*left);
                let body = &data[..n as usize];
                if let Some(how) = self.expect.check {
                    pattern::check(*offset, body, how).map_err(|m| m.to_string())?;
                }
                (*offset, *left, fed.body) = (*offset + n, *left - n, n);
                if data.len() as u64 > n {
                    return Err(format!(
                        "{} bytes after the end of the body",
                        data.len() as u64 - n
                    ));
                }
                if *left == 0 {
                    fed.done = Some(*keep_alive);
                    self.state = State::Idle;
                }
                Ok(fed)
            }
            State::Idle if data.is_empty() => Ok(fed),
            State::Idle | State::Head => Err(format!(
                "{} bytes from the server with no request outstanding",
                data.len()
            )),
        }
    }

    /// What was missing when the server closed the connection.
    pub fn describe_close(&self) -> String {
        match self.state {
            State::Idle => "the server closed the connection between responses".into(),
            State::Head => "the server closed the connection before a whole response head".into(),
            State::Body { left, .. } => {
                format!("the server closed the connection with {left} body bytes to come")
            }
        }
    }

    /// Adds `data` to the head; once it is complete and as expected, the body starts and the
    /// part of `data` after the head is returned.
    fn take_head<'a>(&mut self, data: &'a [u8]) -> Result<Option<&'a [u8]>, String> {
        let before = self.partial.len();
        let parsed = if before == 0 {
            ResponseHead::parse(data)
        } else {
            // `before < MAX_HEAD`, or the last parse would have refused the head.
            let take = data.len().min(MAX_HEAD - before);
            self.partial.extend_from_slice(&data[..take]);
            ResponseHead::parse(&self.partial)
        };
        let Some((head, len)) = parsed.map_err(|e| e.to_string())? else {
            if before == 0 {
                self.partial.extend_from_slice(data);
            }
            return Ok(None);
        };
        self.partial.clear();
        let (offset, left) = self.expect.body_of(&head)?;
        self.state = State::Body {
            offset,
            left,
            keep_alive: head.keep_alive,
        };
        Ok(Some(&data[len - before..]))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    const FILE: u64 = 100_000;

    fn response(status: &str, first: u64, len: u64, extra: &str) -> Vec<u8> {
        let mut bytes = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {len}\r\n{extra}Accept-Ranges: bytes\r\n\r\n"
        )
        .into_bytes();
        let start = bytes.len();
        bytes.resize(start + len as usize, 0);
        pattern::fill(first, &mut bytes[start..]);
        bytes
    }

    fn expect(range: Option<(u64, u64)>) -> Expect {
        Expect {
            range,
            size: Some(FILE),
            check: Some(Check::Words),
        }
    }

    /// Feeds `reads` in turn; the body bytes counted and the completion.
    fn feed_all(exchange: &mut Exchange, reads: &[&[u8]]) -> Result<(u64, Option<bool>), String> {
        let (mut body, mut done) = (0, None);
        for read in reads {
            assert_eq!(done, None, "bytes after completion");
            let fed = exchange.feed(read)?;
            body += fed.body;
            done = fed.done;
        }
        Ok((body, done))
    }

    #[test]
    fn a_whole_200_at_every_split_point() {
        let bytes = response("200 OK", 0, FILE, "");
        for split in 0..=bytes.len() {
            if split % 97 != 0 && split > 300 {
                continue; // every split in and near the head, a sample of the body
            }
            let mut exchange = Exchange::new(expect(None));
            exchange.begin();
            let (a, b) = bytes.split_at(split);
            assert_eq!(
                feed_all(&mut exchange, &[a, b]),
                Ok((FILE, Some(true))),
                "split at {split}"
            );
        }
    }

    #[test]
    fn a_206_of_an_unaligned_range_one_byte_at_a_time() {
        let range = "Content-Range: bytes 4093-5000/100000\r\n";
        let bytes = response("206 Partial Content", 4093, 908, range);
        let mut exchange = Exchange::new(expect(Some((4093, 5000))));
        exchange.begin();
        let reads: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(feed_all(&mut exchange, &reads), Ok((908, Some(true))));
    }

    #[test]
    fn keep_alive_and_close_are_reported_at_the_end_of_the_body() {
        let bytes = response("200 OK", 0, FILE, "Connection: close\r\n");
        let mut exchange = Exchange::new(expect(None));
        exchange.begin();
        assert_eq!(feed_all(&mut exchange, &[&bytes]), Ok((FILE, Some(false))));
        // The next response on the same connection needs a request first.
        assert!(exchange.feed(b"H").is_err());
        exchange.begin();
        let again = response("200 OK", 0, FILE, "");
        assert_eq!(feed_all(&mut exchange, &[&again]), Ok((FILE, Some(true))));
    }

    #[test]
    fn wrong_responses_are_errors() {
        let check = |expected: Expect, bytes: Vec<u8>| {
            let mut exchange = Exchange::new(expected);
            exchange.begin();
            feed_all(&mut exchange, &[&bytes]).unwrap_err()
        };
        let e = check(expect(None), response("404 Not Found", 0, 10, ""));
        assert!(e.contains("status 404"), "{e}");
        let e = check(expect(None), response("200 OK", 0, 10, ""));
        assert!(e.contains("Content-Length 10 (expected 100000)"), "{e}");
        let e = check(expect(Some((0, 9))), response("200 OK", 0, FILE, ""));
        assert!(e.contains("expected 206"), "{e}");
        let range = "Content-Range: bytes 1-10/100000\r\n";
        let e = check(expect(Some((0, 9))), response("206 P", 1, 10, range));
        assert!(e.contains("expected 0-9"), "{e}");
        let e = check(expect(Some((1, 10))), response("206 P", 1, 9, range));
        assert!(e.contains("Content-Length 9 for a range of 10"), "{e}");
        let mut bytes = response("200 OK", 0, FILE, "");
        bytes.extend_from_slice(b"HTTP");
        let e = check(expect(None), bytes);
        assert!(e.contains("4 bytes after the end of the body"), "{e}");
        let mut bytes = response("200 OK", 0, FILE, "");
        let at = bytes.len() - 1000;
        bytes[at] ^= 1;
        let e = check(expect(None), bytes);
        assert!(
            e.contains(&format!("byte {} of the file", FILE - 1000)),
            "{e}"
        );
    }

    #[test]
    fn a_short_body_is_described_when_the_server_closes() {
        let bytes = response("200 OK", 0, FILE, "");
        let mut exchange = Exchange::new(expect(None));
        assert!(exchange.describe_close().contains("between responses"));
        exchange.begin();
        let fed = exchange.feed(&bytes[..bytes.len() - 10]).unwrap();
        assert_eq!((fed.head, fed.done), (true, None));
        assert!(exchange.describe_close().contains("10 body bytes to come"));
    }
}
