//! A fault-injecting HTTP/1.1 proxy for S3 tests: it sits between `backup`
//! and a real S3 server and breaks a share of the requests the way networks
//! and stores do — 500 InternalError, 503 SlowDown, 503 ServiceUnavailable,
//! a connection reset in the middle of the request body, a response body cut
//! short, and a connection reset after the store carried out the request
//! (the client never hears that it succeeded).
//!
//! Each request is read whole, then either answered with a fault or sent to
//! the store over a fresh connection (`Connection: close`, so the response
//! ends where the store closes) and relayed back.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// What the proxy did to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    InternalError,
    SlowDown,
    ServiceUnavailable,
    /// The connection is reset halfway through the request body.
    ResetRequest,
    /// The store answered; the client gets half the response body, then a reset.
    TruncateResponse,
    /// The store carried the request out; the client gets a reset instead of the answer.
    LoseResponse,
}

const FAULTS: [Fault; 6] = [
    Fault::InternalError,
    Fault::SlowDown,
    Fault::ServiceUnavailable,
    Fault::ResetRequest,
    Fault::TruncateResponse,
    Fault::LoseResponse,
];

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    faults: [AtomicU64; 6],
}

/// A fault aimed at requests of one kind, before any random ones: the first
/// `count` requests whose method is `method` and whose request line has
/// `contains` and not `lacks` get `fault`.
pub struct Targeted {
    pub method: &'static str,
    pub contains: &'static str,
    pub lacks: &'static str,
    pub fault: Fault,
    pub count: u64,
}

impl Targeted {
    fn matches(&self, request_line: &str) -> bool {
        request_line.starts_with(self.method)
            && request_line.contains(self.contains)
            && (self.lacks.is_empty() || !request_line.contains(self.lacks))
    }
}

/// The answer to CreateMultipartUpload never reaches the client: its retry
/// starts a second upload of the same key.
pub const LOSE_CREATE_MULTIPART: Targeted = Targeted {
    method: "POST",
    contains: "?uploads",
    lacks: "uploadId=",
    fault: Fault::LoseResponse,
    count: 3,
};

/// The answer to CompleteMultipartUpload never reaches the client: its retry
/// finds the upload gone.
pub const LOSE_COMPLETE_MULTIPART: Targeted = Targeted {
    method: "POST",
    contains: "uploadId=",
    lacks: "",
    fault: Fault::LoseResponse,
    count: 3,
};

/// Requests seen, and faults injected by kind.
#[derive(Debug, Clone)]
pub struct Stats {
    pub requests: u64,
    pub faults: Vec<(Fault, u64)>,
}

impl Stats {
    pub fn faulted(&self) -> u64 {
        self.faults.iter().map(|(_, count)| count).sum()
    }
}

pub struct FaultProxy {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`) that faults
    /// `percent`% of requests, chosen by a generator seeded with `seed`.
    pub fn start(upstream: &str, percent: u64, seed: u64) -> FaultProxy {
        FaultProxy::with_targets(upstream, percent, seed, Vec::new())
    }

    /// Like [`FaultProxy::start`], with `targets` served first.
    pub fn with_targets(
        upstream: &str,
        percent: u64,
        seed: u64,
        targets: Vec<Targeted>,
    ) -> FaultProxy {
        let targets: Arc<Vec<(Targeted, AtomicU64)>> = Arc::new(
            targets
                .into_iter()
                .map(|target| (target, AtomicU64::new(0)))
                .collect(),
        );
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream is http://ip:port");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let sequence = Arc::new(AtomicU64::new(seed));
        {
            let stop = stop.clone();
            let counters = counters.clone();
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let counters = counters.clone();
                    let sequence = sequence.clone();
                    let targets = targets.clone();
                    std::thread::spawn(move || {
                        let _ = serve(client, upstream, percent, &counters, &sequence, &targets);
                    });
                }
            });
        }
        FaultProxy {
            address,
            stop,
            counters,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn stats(&self) -> Stats {
        Stats {
            requests: self.counters.requests.load(Ordering::SeqCst),
            faults: FAULTS
                .iter()
                .zip(&self.counters.faults)
                .map(|(fault, count)| (*fault, count.load(Ordering::SeqCst)))
                .collect(),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.address);
    }
}

/// splitmix64: a small, good generator; the proxy needs no crate for it.
fn next_random(sequence: &AtomicU64) -> u64 {
    let mut z = sequence
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::SeqCst)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One request read off the client connection.
struct Request {
    head: Vec<String>,
    body: Vec<u8>,
}

fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

/// Reads a request head; `None` at a clean end of the connection.
fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<Vec<String>>> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            if head.is_empty() {
                continue;
            }
            return Ok(Some(head));
        }
        head.push(line);
    }
}

/// Reads a body framed by Content-Length or chunked encoding, framing kept.
fn read_body(reader: &mut impl BufRead, head: &[String]) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if header(head, "transfer-encoding").is_some_and(|value| value.contains("chunked")) {
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            body.extend_from_slice(line.as_bytes());
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(std::io::Error::other)?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    let mut trailer = String::new();
                    reader.read_line(&mut trailer)?;
                    body.extend_from_slice(trailer.as_bytes());
                    if trailer.trim().is_empty() {
                        return Ok(body);
                    }
                }
            }
            let start = body.len();
            body.resize(start + size + 2, 0);
            reader.read_exact(&mut body[start..])?;
        }
    }
    let length: usize = header(head, "content-length")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    body.resize(length, 0);
    reader.read_exact(&mut body)?;
    Ok(body)
}

/// Closes with a TCP reset rather than an orderly end.
fn reset(stream: TcpStream) {
    let socket = socket2::SockRef::from(&stream);
    let _ = socket.set_linger(Some(Duration::ZERO));
    drop(stream);
}

fn error_response(status: &str, code: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error>"
    );
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    percent: u64,
    counters: &Counters,
    sequence: &AtomicU64,
    targets: &[(Targeted, AtomicU64)],
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut writer = client.try_clone()?;
    loop {
        let Some(head) = read_head(&mut reader)? else {
            return Ok(());
        };
        counters.requests.fetch_add(1, Ordering::SeqCst);
        let targeted = targets.iter().find_map(|(target, used)| {
            (target.matches(&head[0]) && used.fetch_add(1, Ordering::SeqCst) < target.count)
                .then_some(target.fault)
        });
        let fault = targeted.or_else(|| {
            (next_random(sequence) % 100 < percent)
                .then(|| FAULTS[(next_random(sequence) % FAULTS.len() as u64) as usize])
        });
        if let Some(fault) = fault {
            let index = FAULTS.iter().position(|known| *known == fault).unwrap();
            counters.faults[index].fetch_add(1, Ordering::SeqCst);
        }
        let expects_continue =
            header(&head, "expect").is_some_and(|value| value.eq_ignore_ascii_case("100-continue"));
        if expects_continue {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        if fault == Some(Fault::ResetRequest) {
            // Take part of the body, then break the connection.
            let length: usize = header(&head, "content-length")
                .and_then(|value| value.parse().ok())
                .unwrap_or(0);
            let mut some = vec![0; length / 2];
            let _ = reader.read_exact(&mut some);
            reset(client);
            return Ok(());
        }
        let request = Request {
            body: read_body(&mut reader, &head)?,
            head,
        };
        let answer = match fault {
            Some(Fault::InternalError) => {
                Some(error_response("500 Internal Server Error", "InternalError"))
            }
            Some(Fault::SlowDown) => Some(error_response("503 Slow Down", "SlowDown")),
            Some(Fault::ServiceUnavailable) => Some(error_response(
                "503 Service Unavailable",
                "ServiceUnavailable",
            )),
            _ => None,
        };
        if let Some(answer) = answer {
            writer.write_all(&answer)?;
            continue;
        }
        let response = forward(upstream, &request)?;
        match fault {
            Some(Fault::LoseResponse) => {
                reset(client);
                return Ok(());
            }
            Some(Fault::TruncateResponse) => {
                let split = response
                    .windows(4)
                    .position(|window| window == b"\r\n\r\n")
                    .map_or(response.len(), |at| at + 4);
                let body = response.len() - split;
                writer.write_all(&response[..split + body / 2])?;
                writer.flush()?;
                reset(client);
                return Ok(());
            }
            _ => {
                // The store was told to close; so is the client, in the head
                // as well, so it never reuses the connection.
                let split = response
                    .windows(4)
                    .position(|window| window == b"\r\n\r\n")
                    .map_or(response.len(), |at| at + 2);
                let head = String::from_utf8_lossy(&response[..split]);
                let mut relayed = String::new();
                for line in head.split("\r\n").filter(|line| !line.is_empty()) {
                    let name = line.split(':').next().unwrap_or("").trim();
                    if !name.eq_ignore_ascii_case("connection") {
                        relayed.push_str(line);
                        relayed.push_str("\r\n");
                    }
                }
                relayed.push_str("Connection: close\r\n");
                writer.write_all(relayed.as_bytes())?;
                writer.write_all(&response[split..])?;
                writer.flush()?;
                client.shutdown(Shutdown::Both).ok();
                return Ok(());
            }
        }
    }
}

/// Sends the request to the store on a fresh connection and reads the whole answer.
fn forward(upstream: SocketAddr, request: &Request) -> std::io::Result<Vec<u8>> {
    let mut store = TcpStream::connect(upstream)?;
    let mut head = String::new();
    head.push_str(&request.head[0]);
    head.push_str("\r\n");
    for line in &request.head[1..] {
        let name = line.split(':').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("expect") {
            continue;
        }
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    store.write_all(head.as_bytes())?;
    store.write_all(&request.body)?;
    store.flush()?;
    let mut response = Vec::new();
    store.read_to_end(&mut response)?;
    Ok(response)
}
