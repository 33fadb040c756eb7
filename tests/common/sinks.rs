//! Real network servers that receive notifications: an HTTP server that
//! records every request (and answers as a test says, e.g. as a stand-in for
//! the GitHub API), and an SMTP server that records every message.
//! Both are a few dozen lines of std::net on a free loopback port, each
//! connection served on its own thread; they stop with the test process.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One HTTP request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// An HTTP server answering 200 to everything (or 500 to the first
/// `failures` requests), recording each request.
pub struct HttpSink {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

/// How a server built with [`HttpSink::answering`] answers a request: status and JSON body.
pub type Responder = dyn Fn(&Request) -> (u16, String) + Send + Sync;

impl HttpSink {
    pub fn start(failures: usize) -> HttpSink {
        let failures = Mutex::new(failures);
        HttpSink::answering(move |_| {
            let mut failures = failures.lock().unwrap();
            let fail = *failures > 0;
            *failures = failures.saturating_sub(1);
            if fail {
                (500, "ok".to_owned())
            } else {
                (200, "ok".to_owned())
            }
        })
    }

    /// A server that records each request and answers what `respond` says.
    pub fn answering(
        respond: impl Fn(&Request) -> (u16, String) + Send + Sync + 'static,
    ) -> HttpSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        let respond: Arc<Responder> = Arc::new(respond);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let recorded = Arc::clone(&recorded);
                let respond = Arc::clone(&respond);
                std::thread::spawn(move || serve_http(stream, &recorded, respond.as_ref()));
            }
        });
        HttpSink { port, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn taken(&self) -> Vec<Request> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

fn serve_http(stream: TcpStream, recorded: &Mutex<Vec<Request>>, respond: &Responder) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or_default().to_owned();
    let path = words.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_lowercase(), value.trim().to_owned()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let request = Request {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let (status, answer) = respond(&request);
    recorded.lock().unwrap().push(request);
    let reason = match status {
        200 => "OK",
        201 => "Created",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
}

/// One message as received over SMTP.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The decoded `AUTH PLAIN` credentials (`user`, `password`), if any.
    pub auth: Option<(String, String)>,
    /// Headers and body, as sent (dot-stuffing undone).
    pub data: String,
}

/// An SMTP server (no TLS, AUTH PLAIN accepted) recording each message.
pub struct SmtpSink {
    pub port: u16,
    pub mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&mails);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let recorded = Arc::clone(&recorded);
                std::thread::spawn(move || serve_smtp(stream, &recorded));
            }
        });
        SmtpSink { port, mails }
    }

    pub fn taken(&self) -> Vec<Mail> {
        std::mem::take(&mut *self.mails.lock().unwrap())
    }
}

fn serve_smtp(stream: TcpStream, recorded: &Mutex<Vec<Mail>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut mail = Mail::default();
    let mut send = |text: &str| writer.write_all(text.as_bytes());
    if send("220 sink ESMTP\r\n").is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_uppercase();
        let answer = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            "250-sink\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n".to_owned()
        } else if upper.starts_with("AUTH PLAIN ") {
            let decoded = base64_decode(command[11..].trim());
            let parts: Vec<&[u8]> = decoded.split(|byte| *byte == 0).collect();
            if parts.len() == 3 {
                mail.auth = Some((
                    String::from_utf8_lossy(parts[1]).into_owned(),
                    String::from_utf8_lossy(parts[2]).into_owned(),
                ));
            }
            "235 ok\r\n".to_owned()
        } else if upper.starts_with("MAIL FROM:") {
            mail.from = command[10..].trim().to_owned();
            "250 ok\r\n".to_owned()
        } else if upper.starts_with("RCPT TO:") {
            mail.to.push(command[8..].trim().to_owned());
            "250 ok\r\n".to_owned()
        } else if upper == "DATA" {
            if send("354 go on\r\n").is_err() {
                return;
            }
            let mut data = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            mail.data = data;
            recorded.lock().unwrap().push(std::mem::take(&mut mail));
            "250 queued\r\n".to_owned()
        } else if upper == "QUIT" {
            let _ = send("221 bye\r\n");
            return;
        } else {
            "250 ok\r\n".to_owned()
        };
        if send(&answer).is_err() {
            return;
        }
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0_u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text.bytes().filter(|byte| *byte != b'=') {
        let Some(value) = ALPHABET.iter().position(|candidate| *candidate == byte) else {
            continue;
        };
        bits = (bits << 6) | value as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

/// Waits up to 10 s until `ready` holds.
pub fn wait_for(mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ready()
}
