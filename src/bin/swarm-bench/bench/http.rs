//! A minimal keep-alive HTTP/1.1 client for load generation: one request at a time per
//! connection, `Content-Length` bodies only (what actix-web sends for JSON). It costs far
//! less CPU per request than awc, so on a 2-core machine more of the CPU is left to the
//! server being measured.

use std::io;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Conn {
    addr: SocketAddr,
    stream: TcpStream,
    buf: Vec<u8>,
    req: Vec<u8>,
}

/// A response: status and body.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            addr,
            stream,
            buf: Vec::with_capacity(4096),
            req: Vec::with_capacity(1024),
        })
    }

    /// Connects again (after the server closed an idle connection).
    pub async fn reconnect(&mut self) -> io::Result<()> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        self.stream = stream;
        self.buf.clear();
        Ok(())
    }

    /// Sends one request and reads its response.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> io::Result<Response> {
        self.req.clear();
        self.req.extend_from_slice(method.as_bytes());
        self.req.push(b' ');
        self.req.extend_from_slice(path.as_bytes());
        self.req.extend_from_slice(b" HTTP/1.1\r\nHost: bench\r\n");
        if let Some(t) = token {
            self.req.extend_from_slice(b"Authorization: Bearer ");
            self.req.extend_from_slice(t.as_bytes());
            self.req.extend_from_slice(b"\r\n");
        }
        if !body.is_empty() || method == "POST" {
            self.req
                .extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
            self.req
                .extend_from_slice(body.len().to_string().as_bytes());
            self.req.extend_from_slice(b"\r\n");
        }
        self.req.extend_from_slice(b"\r\n");
        self.req.extend_from_slice(body);
        self.stream.write_all(&self.req).await?;
        self.read_response().await
    }

    async fn fill(&mut self) -> io::Result<()> {
        // Straight into the buffer's spare room: no bounce buffer to zero and copy.
        self.buf.reserve(8192);
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        Ok(())
    }

    async fn read_response(&mut self) -> io::Result<Response> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).map_err(|_| bad("non-UTF-8 head"))?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status code"))?;
        let mut length = 0usize;
        for line in head.lines().skip(1) {
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().map_err(|_| bad("bad content-length"))?;
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    return Err(bad("chunked answers are not supported"));
                }
            }
        }
        while self.buf.len() < head_end + length {
            self.fill().await?;
        }
        let body = self.buf[head_end..head_end + length].to_vec();
        self.buf.drain(..head_end + length);
        Ok(Response { status, body })
    }
}
