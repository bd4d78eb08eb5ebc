//! A minimal blocking HTTP/1.1 client over raw TCP, so the tests see the exact wire format
//! (status line, headers, chunk boundaries, terminating chunk).
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: testkit-tests\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    if let Some(b) = body {
        s.write_all(b).unwrap();
    }
    s
}

fn read_head(r: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    assert!(line.starts_with("HTTP/1.1 "), "status line {line:?}");
    let status = line[9..12].parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    (status, headers)
}

/// Sends a request and reads the whole response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let s = send(addr, method, path, headers, body.map(str::as_bytes));
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        let mut w = Watch {
            r,
            status,
            headers: headers.clone(),
            buf: Vec::new(),
            chunks: Vec::new(),
            split: 0,
            merged: 0,
        };
        loop {
            match w.read_chunk() {
                Chunk::Data(d) => body.extend_from_slice(&d),
                Chunk::End => break,
                Chunk::Reset => panic!("connection reset mid-body"),
                Chunk::Timeout => panic!("timeout reading body"),
            }
        }
    } else {
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        body.resize(len, 0);
        r.read_exact(&mut body).unwrap();
    }
    Resp {
        status,
        headers,
        body,
    }
}

pub fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[], None)
}

pub fn post_json(addr: SocketAddr, path: &str, body: &Value) -> Resp {
    request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        Some(&body.to_string()),
    )
}

pub enum Chunk {
    Data(Vec<u8>),
    End,
    Reset,
    Timeout,
}

#[derive(Debug, PartialEq)]
pub enum Next {
    Event(Value),
    /// Terminating zero-length chunk: a clean end.
    End,
    /// EOF without the terminating chunk.
    Reset,
    Timeout,
}

/// A streaming (chunked) response read event by event.
pub struct Watch {
    r: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    buf: Vec<u8>,
    /// Sizes of the chunks received so far.
    pub chunks: Vec<usize>,
    pub split: usize,
    pub merged: usize,
}

/// Chunks that ended mid-line, and chunks that carried more than one line.
pub fn chunk_stats(w: &Watch) -> (usize, usize) {
    (w.split, w.merged)
}

pub fn watch(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Watch {
    let s = send(addr, "GET", path, headers, None);
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    Watch {
        r,
        status,
        headers,
        buf: Vec::new(),
        chunks: Vec::new(),
        split: 0,
        merged: 0,
    }
}

impl Watch {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn set_timeout(&mut self, d: Duration) {
        self.r.get_ref().set_read_timeout(Some(d)).unwrap();
    }

    fn read_chunk(&mut self) -> Chunk {
        let mut line = String::new();
        match self.r.read_line(&mut line) {
            Ok(0) => return Chunk::Reset,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Chunk::Timeout;
            }
            Err(_) => return Chunk::Reset,
        }
        let size = usize::from_str_radix(line.trim(), 16)
            .unwrap_or_else(|_| panic!("chunk size {line:?}"));
        if size == 0 {
            let mut crlf = String::new();
            let _ = self.r.read_line(&mut crlf);
            return Chunk::End;
        }
        let mut data = vec![0; size + 2];
        if self.r.read_exact(&mut data).is_err() {
            return Chunk::Reset;
        }
        assert_eq!(&data[size..], b"\r\n");
        data.truncate(size);
        self.chunks.push(size);
        Chunk::Data(data)
    }

    /// The next raw line (without the newline).
    pub fn next_line(&mut self) -> Result<String, Next> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Ok(String::from_utf8(line[..i].to_vec()).unwrap());
            }
            match self.read_chunk() {
                Chunk::Data(d) => {
                    self.split += usize::from(!d.ends_with(b"\n"));
                    self.merged += usize::from(d.iter().filter(|b| **b == b'\n').count() > 1);
                    self.buf.extend_from_slice(&d);
                }
                Chunk::End => {
                    assert!(self.buf.is_empty(), "partial line at end: {:?}", self.buf);
                    return Err(Next::End);
                }
                Chunk::Reset => return Err(Next::Reset),
                Chunk::Timeout => return Err(Next::Timeout),
            }
        }
    }

    pub fn next(&mut self) -> Next {
        match self.next_line() {
            Ok(l) => Next::Event(
                serde_json::from_str(&l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")),
            ),
            Err(n) => n,
        }
    }

    /// The next event, panicking on anything else.
    pub fn event(&mut self) -> Value {
        match self.next() {
            Next::Event(v) => v,
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

/// `(type, name, resourceVersion)` of an event.
pub fn summary(ev: &Value) -> (String, String, String) {
    let s = |p: &str| {
        ev.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    (
        s("/type"),
        s("/object/metadata/name"),
        s("/object/metadata/resourceVersion"),
    )
}

/// Decodes an unpadded base64url string (for inspecting continue tokens).
pub fn b64url(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a' + 26),
            b'0'..=b'9' => u32::from(c - b'0' + 52),
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {s}"),
        }
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        acc = (acc << 6) | val(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// The JSON inside a continue token.
pub fn token_json(tok: &str) -> Value {
    serde_json::from_slice(&b64url(tok)).unwrap()
}
