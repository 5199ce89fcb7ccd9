//! A deliberately tiny HTTP/1.0 client for talking to ClickHouse in tests.
//!
//! Requests are sent as HTTP/1.0 with `Connection: close`, so the server answers
//! without chunking and closes the connection; the response is read until EOF.
//! Chunked bodies and `Content-Length` are still honoured, in case a server (or
//! a newer ClickHouse) answers with HTTP/1.1 framing anyway.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Upper bound for establishing the TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A parsed HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Send one request to `127.0.0.1:{port}` and read the whole response.
pub(crate) fn request(port: u16, method: &str, path: &str, body: &[u8], timeout: Duration) -> io::Result<Response> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT.min(timeout))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;

    let head = format!(
        "{method} {path} HTTP/1.0\r\n\
         Host: 127.0.0.1:{port}\r\n\
         User-Agent: hospital-testkit\r\n\
         Connection: close\r\n\
         Content-Length: {}\r\n\
         \r\n",
        body.len()
    );
    let mut request = Vec::with_capacity(head.len() + body.len());
    request.extend_from_slice(head.as_bytes());
    request.extend_from_slice(body);
    stream.write_all(&request)?;
    stream.flush()?;

    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parse a complete response (status line, headers, body) read until EOF.
pub(crate) fn parse_response(raw: &[u8]) -> io::Result<Response> {
    let end = find(raw, b"\r\n\r\n").ok_or_else(|| {
        invalid(format!(
            "incomplete HTTP response ({} bytes, no end of headers)",
            raw.len()
        ))
    })?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| invalid("non-UTF-8 HTTP headers"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("bad HTTP status line: {status_line:?}")));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(|| invalid(format!("bad HTTP status line: {status_line:?}")))?;

    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad HTTP header line: {line:?}")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };

    let rest = &raw[end + 4..];
    let chunked = response
        .header("Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    response.body = if chunked {
        decode_chunked(rest)?
    } else if let Some(len) = response.header("Content-Length") {
        let len: usize = len
            .parse()
            .map_err(|_| invalid(format!("bad Content-Length: {len:?}")))?;
        if rest.len() < len {
            return Err(invalid(format!(
                "truncated HTTP body: got {} of {len} bytes",
                rest.len()
            )));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(response)
}

/// Decode a `Transfer-Encoding: chunked` body (trailers are ignored).
fn decode_chunked(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or_else(|| invalid("truncated chunk size line"))?;
        let line = std::str::from_utf8(&data[..line_end]).map_err(|_| invalid("non-UTF-8 chunk size line"))?;
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| invalid(format!("bad chunk size: {line:?}")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 || &data[size..size + 2] != b"\r\n" {
            return Err(invalid("truncated or malformed chunk"));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http10_until_eof() {
        let raw = b"HTTP/1.0 200 OK\r\nConnection: Close\r\nContent-Type: text/plain\r\n\r\n0\n1\n2\n";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(r.body, b"0\n1\n2\n");
    }

    #[test]
    fn honours_content_length() {
        let raw = b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nOk.\nextra";
        assert_eq!(parse_response(raw).unwrap().body, b"Ok.\n");
        let short = b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nOk.\n";
        assert!(parse_response(short).is_err());
    }

    #[test]
    fn decodes_chunked() {
        let raw = b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n\
                    6\r\n0\n1\n2\n\r\na;ext=1\r\n0123456789\r\n0\r\n\r\n";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.status, 500);
        assert_eq!(r.body, b"0\n1\n2\n0123456789");
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n0\n";
        assert!(parse_response(bad).is_err());
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_response(b"").is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.0 abc OK\r\n\r\n").is_err());
    }
}
