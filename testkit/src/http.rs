//! Raw HTTP/1.1 over a unix socket, both ends: requests to a daemon (also
//! malformed ones, on purpose) and the reading side of stand-in servers (a
//! fake Docker, a stopped plugin's socket).

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

pub(crate) fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {text:?}"))
}

fn request_bytes(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Writes raw bytes and reads the whole answer: (status, body), or `None`
/// when the connection failed or closed without an answer.
fn exchange(socket: &Path, bytes: &[u8]) -> Option<(u16, String)> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    // The daemon may answer (413) and close before reading everything.
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

/// Sends one HTTP/1.1 request with `Connection: close` and returns status
/// and body. Raw on purpose, so tests can also send malformed requests.
pub fn raw_request(socket: &Path, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    send_raw(socket, &request_bytes(method, path, body))
}

/// Like [`raw_request`] (POST), but a connection closed without an answer
/// (the daemon was killed) gives status 0 and an empty body.
pub fn raw_request_tolerant(socket: &Path, path: &str, body: &[u8]) -> (u16, String) {
    exchange(socket, &request_bytes("POST", path, body)).unwrap_or((0, String::new()))
}

/// Writes raw bytes, reads the whole answer, parses status and body.
pub fn send_raw(socket: &Path, bytes: &[u8]) -> (u16, String) {
    exchange(socket, bytes).unwrap_or_else(|| panic!("no HTTP answer from {}", socket.display()))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// One HTTP/1.1 request, as a stand-in server (a fake Docker, a stopped
/// plugin's socket) reads it.
#[derive(Debug)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// Reads one request: request line, headers, a `Content-Length` body.
/// `None` at the end of the connection or on a request cut short.
pub fn read_http_request(reader: &mut impl BufRead) -> Option<HttpRequest> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).ok()? == 0 {
        return None;
    }
    let mut words = request_line.split_whitespace();
    let method = words.next().unwrap_or("").to_string();
    let path = words.next().unwrap_or("").to_string();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(HttpRequest { method, path, body })
}

/// A `200 OK` answer carrying `body`.
pub fn http_answer(content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// GET `path` from 127.0.0.1:`port` (HTTP/1.0: the answer ends with the
/// connection, never chunked): (status, body); `None` when nothing answers.
pub fn tcp_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, body.to_string()))
}
