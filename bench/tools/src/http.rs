//! A minimal HTTP/1.1 client over one keep-alive connection: just enough to time requests
//! precisely and check their answers (status and body), with no library between.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub struct Conn {
    addr: SocketAddr,
    timeout: Duration,
    reader: Option<BufReader<TcpStream>>,
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Conn {
    pub fn new(addr: SocketAddr, timeout: Duration) -> Conn {
        Conn {
            addr,
            timeout,
            reader: None,
        }
    }

    fn connect(&mut self) -> io::Result<&mut BufReader<TcpStream>> {
        if self.reader.is_none() {
            let stream = TcpStream::connect_timeout(&self.addr, self.timeout)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(self.timeout))?;
            stream.set_write_timeout(Some(self.timeout))?;
            self.reader = Some(BufReader::with_capacity(64 << 10, stream));
        }
        Ok(self.reader.as_mut().expect("connected"))
    }

    /// One request; on a connection the server closed meanwhile, one retry on a fresh one.
    pub fn request(&mut self, method: &str, path: &str, body: &[u8]) -> io::Result<Response> {
        self.request_with(method, path, String::new, body)
    }

    /// [`Conn::request`] with `extra` header lines (each ending in CRLF), made again for the
    /// retry (a signature is good once).
    pub fn request_with(
        &mut self,
        method: &str,
        path: &str,
        extra: impl Fn() -> String,
        body: &[u8],
    ) -> io::Result<Response> {
        let fresh = self.reader.is_none();
        match self.try_request(method, path, &extra(), body) {
            Ok(r) => Ok(r),
            Err(_) if !fresh => {
                self.reader = None;
                self.try_request(method, path, &extra(), body)
            }
            Err(e) => Err(e),
        }
    }

    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.request("GET", path, b"")
    }

    fn try_request(
        &mut self,
        method: &str,
        path: &str,
        extra: &str,
        body: &[u8],
    ) -> io::Result<Response> {
        let host = self.addr;
        let result = (|| {
            let reader = self.connect()?;
            let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}");
            if !body.is_empty() || method == "POST" {
                head.push_str(&format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n",
                    body.len()
                ));
            }
            head.push_str("\r\n");
            let stream = reader.get_mut();
            if body.len() < 16 << 10 {
                let mut all = head.into_bytes();
                all.extend_from_slice(body);
                stream.write_all(&all)?;
            } else {
                stream.write_all(head.as_bytes())?;
                stream.write_all(body)?;
            }
            read_response(reader, method == "HEAD")
        })();
        match result {
            Ok((response, keep)) => {
                if !keep {
                    self.reader = None;
                }
                Ok(response)
            }
            Err(e) => {
                self.reader = None;
                Err(e)
            }
        }
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    let n = reader.read_line(&mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Reads one response; the flag says whether the connection stays usable.
fn read_response(
    reader: &mut BufReader<TcpStream>,
    head_only: bool,
) -> io::Result<(Response, bool)> {
    let status_line = read_line(reader)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut keep = version == "HTTP/1.1";
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().ok(),
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "connection" => {
                let v = value.to_ascii_lowercase();
                if v.contains("close") {
                    keep = false;
                } else if v.contains("keep-alive") {
                    keep = true;
                }
            }
            _ => {}
        }
    }
    let mut body = Vec::new();
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
    } else if chunked {
        loop {
            let size_line = read_line(reader)?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                // Trailers, then the empty line.
                while !read_line(reader)?.is_empty() {}
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            read_line(reader)?;
        }
    } else if let Some(len) = length {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
        keep = false;
    }
    Ok((Response { status, body }, keep))
}
