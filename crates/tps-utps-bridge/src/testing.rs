//! A scripted HTTP/1.1 server on 127.0.0.1 for fault tests of any HTTP client in the project:
//! one scripted answer per request, the last repeating, each with its
//! status, content type, body, a `Content-Length` that may promise more than the body holds,
//! and a delay. It reads each request whole (head, then the body its `Content-Length`
//! announces) before answering, and closes the connection after the answer.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Answer {
    status: u16,
    content_type: &'static str,
    body: String,
    /// Bytes of the body actually sent (the whole body when `None`).
    keep: Option<usize>,
    delay: Duration,
}

impl Answer {
    /// `status` with a JSON `body`.
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Self::raw(status, "application/json", body)
    }

    /// `status` with `body` of `content_type` (a proxy's page, say).
    pub fn raw(status: u16, content_type: &'static str, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type,
            body: body.into(),
            keep: None,
            delay: Duration::ZERO,
        }
    }

    /// A 200 JSON answer whose `Content-Length` is `body`'s, but which sends only its first
    /// `keep` bytes.
    pub fn cut(body: impl Into<String>, keep: usize) -> Self {
        Self {
            keep: Some(keep),
            ..Self::json(200, body)
        }
    }

    /// The same answer after waiting `delay` (a server slower than a timeout).
    pub fn after(self, delay: Duration) -> Self {
        Self { delay, ..self }
    }

    fn bytes(&self) -> Vec<u8> {
        let sent = &self.body.as_bytes()[..self.keep.unwrap_or(self.body.len())];
        let mut out = format!(
            "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        out.extend_from_slice(sent);
        out
    }
}

/// Serves `script` on 127.0.0.1 in a thread that ends with the process; returns
/// `http://127.0.0.1:<port>`.
pub fn serve(script: Vec<Answer>) -> String {
    assert!(!script.is_empty(), "a script needs an answer");
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut s) = stream else { continue };
            let answer = &script[n.min(script.len() - 1)];
            if !read_request(&mut s) {
                continue;
            }
            std::thread::sleep(answer.delay);
            let _ = s.write_all(&answer.bytes());
        }
    });
    url
}

/// Reads one request whole; false when the client went away first.
fn read_request(s: &mut impl Read) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
    true
}
