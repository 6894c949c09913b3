//! A minimal HTTP/1.1 client over a unix socket, for `vfvm ctl`.
//!
//! One request per connection (`Connection: close`); the response is read
//! up to its Content-Length, or to the end of the stream without one.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::{ApiRequest, ErrorBody};

/// How long to wait for the server (longer than it waits for the VMM).
const TIMEOUT: Duration = Duration::from_secs(45);
/// The largest response accepted.
const MAX_RESPONSE: u64 = 16 << 20;

/// Why a call failed before an HTTP status came back.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, writing or reading failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    /// The answer is not HTTP.
    #[error("bad response from the API server: {0}")]
    BadResponse(String),
}

/// An HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The message of an error body, if the body is one.
    pub fn error(&self) -> Option<String> {
        serde_json::from_str::<ErrorBody>(&self.body)
            .ok()
            .map(|b| b.line())
    }
}

/// Sends `request` to the API server on `socket`.
pub fn send(socket: &Path, request: ApiRequest) -> Result<Response, ClientError> {
    let (method, uri) = request.route().endpoint();
    call(socket, method.as_str(), uri, &request.body())
}

/// [`send`], asking for the answer as `accept` (e.g. `text/plain` for
/// counters in Prometheus' format) rather than JSON.
pub fn send_accepting(
    socket: &Path,
    request: ApiRequest,
    accept: &str,
) -> Result<Response, ClientError> {
    let (method, uri) = request.route().endpoint();
    exchange(socket, method.as_str(), uri, &request.body(), accept)
}

/// Sends `method uri` with `body` to the API server on `socket`.
pub fn call(socket: &Path, method: &str, uri: &str, body: &str) -> Result<Response, ClientError> {
    exchange(socket, method, uri, body, "application/json")
}

fn exchange(
    socket: &Path,
    method: &str,
    uri: &str,
    body: &str,
    accept: &str,
) -> Result<Response, ClientError> {
    let io_err = |source| ClientError::Io {
        path: socket.display().to_string(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(io_err)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io_err)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io_err)?;
    let mut req = format!(
        "{method} {uri} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Accept: {accept}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).map_err(io_err)?;
    read_response(BufReader::new(stream).take(MAX_RESPONSE)).map_err(|e| match e {
        ReadError::Io(source) => io_err(source),
        ReadError::Bad(msg) => ClientError::BadResponse(msg),
    })
}

enum ReadError {
    Io(io::Error),
    Bad(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

fn read_response(mut r: impl BufRead) -> Result<Response, ReadError> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let status = match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => code
            .parse::<u16>()
            .map_err(|_| ReadError::Bad(format!("status line {:?}", line.trim_end())))?,
        _ => return Err(ReadError::Bad(format!("status line {:?}", line.trim_end()))),
    };
    let mut length: Option<usize> = None;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(ReadError::Bad("headers cut short".into()));
        }
        let h = line.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| ReadError::Bad(format!("Content-Length {value:?}")))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(ReadError::Bad(format!(
                    "unsupported Transfer-Encoding {value}"
                )));
            }
        }
    }
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        }
        None if status == 204 || status == 304 || status < 200 => {}
        None => {
            r.read_to_end(&mut body)?;
        }
    }
    let body = String::from_utf8(body).map_err(|_| ReadError::Bad("body is not UTF-8".into()))?;
    Ok(Response { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Response, String> {
        read_response(raw.as_bytes()).map_err(|e| match e {
            ReadError::Io(e) => e.to_string(),
            ReadError::Bad(m) => m,
        })
    }

    #[test]
    fn responses() {
        let r = parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}trailing").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "{}"));
        assert!(r.is_success());
        let r = parse("HTTP/1.1 404 Not Found\r\n\r\n[\"no\"]").unwrap();
        assert_eq!(r.error().as_deref(), Some("no"));
        // Cloud Hypervisor's chain of messages, as one line.
        let r = parse("HTTP/1.1 500 \r\n\r\n[\"Error from API\",\"no VM\"]").unwrap();
        assert_eq!(r.error().as_deref(), Some("Error from API: no VM"));
        assert!(!r.is_success());
        let r = parse("HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.as_str()), (204, ""));
        // vfvm's own server writes no reason phrase.
        let r = parse("HTTP/1.1 405 \r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_str()), (405, "{}"));
        assert!(parse("garbage\r\n\r\n").is_err());
        assert!(parse("HTTP/1.1 abc\r\n\r\n").is_err());
        assert!(parse("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}").is_err());
        assert!(parse("HTTP/1.1 200 OK\r\n").is_err());
    }
}
