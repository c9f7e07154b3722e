//! A fake Swarming server for the bot-mode tests, in plain std: `/bot_code`
//! redirects to the versioned URL `/swarming/api/v1/bot/bot_code/<version>`,
//! which serves the zip, like the real server. Every request is recorded
//! (path, headers, times) for assertions, and each attempt (each request to
//! `/bot_code`) takes the next [`Reply`] from a queue, to inject faults.
//!
//! Every connection gets `Connection: close`, so one connection carries one
//! request. Dropping the server stops every thread it started: stalled and
//! held connections are shut down, so no thread outlives the test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// Whoever includes this file declares fake_bot.rs as a sibling `fake_bot`.
use super::fake_bot::{bot_version, fake_bot_zip};

/// What the server does for one attempt.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Redirect, then 200 with the server's zip.
    Ok,
    /// Redirect, then 200 with this zip instead.
    OkZip(Vec<u8>),
    /// Answer `/bot_code` itself with this status (and `Retry-After`).
    Status {
        code: u16,
        retry_after: Option<String>,
    },
    /// Redirect, then answer the versioned URL with this status.
    StatusAtZip {
        code: u16,
        retry_after: Option<String>,
    },
    /// Redirect, then send the headers and `sent` bytes of the zip, then
    /// reset the connection (RST).
    ResetMidBody { sent: usize },
    /// Redirect, then announce the whole zip's length but send only `sent`
    /// bytes, then close (FIN).
    Truncated { sent: usize },
    /// 200 with an HTML page (a login or error page), at `/bot_code`.
    Html,
    /// Redirect, then send `sent` bytes of the zip and go silent for `stall`
    /// (then close without sending the rest).
    Stall { sent: usize, stall: Duration },
    /// Redirect to a pair of URLs that redirect to each other forever.
    RedirectLoop,
    /// Redirect, then 200 with `len` bytes (the zip, padded with zeros);
    /// with Content-Length when `content_length`, chunked otherwise.
    Oversized { len: usize, content_length: bool },
    /// Redirect, then the zip with `Content-Disposition: attachment;
    /// filename=<this>`.
    Filename(String),
    /// Read the request and never answer (until the server is dropped).
    NeverAnswer,
}

/// One request the server received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub received: Instant,
    /// When the server finished answering (None: still answering, or never).
    pub finished: Option<Instant>,
    /// Body bytes the server managed to write.
    pub body_sent: usize,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_entry(&self) -> bool {
        self.path == ENTRY || self.path.starts_with("/bot_code?")
    }
}

pub const ENTRY: &str = "/bot_code";
const VERSIONED: &str = "/swarming/api/v1/bot/bot_code/";
const LOOP_A: &str = "/swarming/api/v1/bot/bot_code/loop-a";
const LOOP_B: &str = "/swarming/api/v1/bot/bot_code/loop-b";

struct State {
    queue: VecDeque<Reply>,
    default: Reply,
    zip: Vec<u8>,
    /// What the versioned URL serves: set by the last `/bot_code` request.
    current: Reply,
    requests: Vec<Request>,
    /// Clones of the open connections, to shut them down on drop.
    streams: Vec<(u64, TcpStream)>,
    next_conn: u64,
    threads: Vec<JoinHandle<()>>,
}

struct Inner {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps up to `d`, returning early when the server is dropped.
    fn pause(&self, d: Duration) {
        let deadline = Instant::now() + d;
        let mut st = self.lock();
        while !self.stopping() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// The fake server. See the module docs.
pub struct FakeSwarming {
    addr: SocketAddr,
    inner: Arc<Inner>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeSwarming {
    /// Starts a server on 127.0.0.1 serving the default fake bot zip.
    pub fn start() -> FakeSwarming {
        FakeSwarming::with_zip(fake_bot_zip())
    }

    /// Starts a server on 127.0.0.1 serving `zip`.
    pub fn with_zip(zip: Vec<u8>) -> FakeSwarming {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake server");
        let addr = listener.local_addr().expect("local addr");
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                default: Reply::Ok,
                zip,
                current: Reply::Ok,
                requests: Vec::new(),
                streams: Vec::new(),
                next_conn: 0,
                threads: Vec::new(),
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let acceptor = {
            let inner = Arc::clone(&inner);
            std::thread::spawn(move || accept_loop(listener, inner))
        };
        FakeSwarming {
            addr,
            inner,
            acceptor: Some(acceptor),
        }
    }

    /// The `SWARM_URL` to give swarm-init.
    pub fn url(&self) -> String {
        format!("http://{}{ENTRY}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues the reply for the next attempt not yet queued.
    pub fn push(&self, reply: Reply) -> &Self {
        self.inner.lock().queue.push_back(reply);
        self
    }

    /// The reply once the queue is empty (initially [`Reply::Ok`]).
    pub fn set_default(&self, reply: Reply) -> &Self {
        self.inner.lock().default = reply;
        self
    }

    pub fn zip(&self) -> Vec<u8> {
        self.inner.lock().zip.clone()
    }

    /// The versioned URL's path for `zip`.
    pub fn versioned_path(zip: &[u8]) -> String {
        format!("{VERSIONED}{}", bot_version(zip))
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.inner.lock().requests.clone()
    }

    /// The requests to `/bot_code`: one per attempt.
    pub fn attempts(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_entry())
            .collect()
    }

    /// Waits until `cond` holds for the recorded requests, at most `timeout`.
    pub fn wait_until(&self, timeout: Duration, cond: impl Fn(&[Request]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.inner.lock();
        loop {
            if cond(&st.requests) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .inner
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits until `n` attempts have been received, at most `timeout`.
    pub fn wait_for_attempts(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |reqs| {
            reqs.iter().filter(|r| r.is_entry()).count() >= n
        })
    }

    /// Waits until `n` attempts have been answered in full, at most `timeout`.
    pub fn wait_for_answered_attempts(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |reqs| {
            reqs.iter()
                .filter(|r| r.is_entry() && r.finished.is_some())
                .count()
                >= n
        })
    }
}

impl Drop for FakeSwarming {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.changed.notify_all();
        // Wake the acceptor.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        let threads = {
            let mut st = self.inner.lock();
            for (_, s) in &st.streams {
                let _ = s.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut st.threads)
        };
        self.inner.changed.notify_all();
        for t in threads {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    for stream in listener.incoming() {
        if inner.stopping() {
            break;
        }
        let Ok(stream) = stream else { continue };
        let mut st = inner.lock();
        let id = st.next_conn;
        st.next_conn += 1;
        if let Ok(clone) = stream.try_clone() {
            st.streams.push((id, clone));
        }
        let conn_inner = Arc::clone(&inner);
        st.threads
            .push(std::thread::spawn(move || handle(id, stream, conn_inner)));
    }
}

/// Method, path and headers of a request.
type Head = (String, String, Vec<(String, String)>);

/// Reads one request head. None when the peer closed or sent garbage.
fn read_head(stream: &mut TcpStream) -> Option<Head> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 64 * 1024 {
            return None;
        }
        match stream.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    Some((method, path, headers))
}

fn handle(id: u64, mut stream: TcpStream, inner: Arc<Inner>) {
    serve_connection(&mut stream, &inner);
    // Drop the clone too, so that the socket really closes when `stream`
    // does (a reset needs the last descriptor closed).
    inner.lock().streams.retain(|(i, _)| *i != id);
}

fn serve_connection(stream: &mut TcpStream, inner: &Inner) {
    // Belt and braces: a client that never sends a request cannot pin this
    // thread past the test.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Some((method, path, headers)) = read_head(stream) else {
        return;
    };
    if inner.stopping() {
        return;
    }
    let (index, reply, zip) = {
        let mut st = inner.lock();
        st.requests.push(Request {
            method,
            path: path.clone(),
            headers,
            received: Instant::now(),
            finished: None,
            body_sent: 0,
        });
        let index = st.requests.len() - 1;
        let is_entry = path == ENTRY || path.starts_with("/bot_code?");
        if is_entry {
            let next = st.queue.pop_front().unwrap_or_else(|| st.default.clone());
            st.current = next;
        }
        (index, st.current.clone(), st.zip.clone())
    };
    inner.changed.notify_all();

    let is_entry = path == ENTRY || path.starts_with("/bot_code?");
    let sent = serve(stream, inner, &path, is_entry, &reply, &zip);

    if let Some(sent) = sent {
        let mut st = inner.lock();
        let r = &mut st.requests[index];
        r.finished = Some(Instant::now());
        r.body_sent = sent;
        drop(st);
        inner.changed.notify_all();
    }
}

/// Answers one request. Returns the body bytes written, or None when the
/// reply was never completed (held until the server stopped).
fn serve(
    stream: &mut TcpStream,
    inner: &Inner,
    path: &str,
    is_entry: bool,
    reply: &Reply,
    default_zip: &[u8],
) -> Option<usize> {
    if path == LOOP_A {
        return Some(redirect(stream, LOOP_B));
    }
    if path == LOOP_B {
        return Some(redirect(stream, LOOP_A));
    }
    let zip: &[u8] = match reply {
        Reply::OkZip(z) => z,
        _ => default_zip,
    };
    if is_entry {
        return match reply {
            Reply::Status { code, retry_after } => {
                Some(status(stream, *code, retry_after.as_deref()))
            }
            Reply::Html => {
                let page = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\
                    <body><p>Please sign in to continue.</p></body></html>\n";
                Some(respond(
                    stream,
                    "200 OK",
                    "text/html; charset=utf-8",
                    &[],
                    page,
                ))
            }
            Reply::NeverAnswer => {
                inner.pause(Duration::from_secs(3600));
                None
            }
            Reply::RedirectLoop => Some(redirect(stream, LOOP_A)),
            _ => Some(redirect(stream, &FakeSwarming::versioned_path(zip))),
        };
    }
    if !path.starts_with(VERSIONED) {
        return Some(status(stream, 404, None));
    }
    let attachment = "attachment; filename=swarming_bot.zip".to_string();
    match reply {
        Reply::StatusAtZip { code, retry_after } => {
            Some(status(stream, *code, retry_after.as_deref()))
        }
        Reply::ResetMidBody { sent } => {
            let sent = (*sent).min(zip.len());
            let n = partial(stream, zip.len(), &zip[..sent]);
            reset(stream);
            Some(n)
        }
        Reply::Truncated { sent } => {
            let sent = (*sent).min(zip.len());
            let n = partial(stream, zip.len(), &zip[..sent]);
            let _ = stream.shutdown(Shutdown::Write);
            Some(n)
        }
        Reply::Stall { sent, stall } => {
            let sent = (*sent).min(zip.len());
            let n = partial(stream, zip.len(), &zip[..sent]);
            inner.pause(*stall);
            let _ = stream.shutdown(Shutdown::Write);
            Some(n)
        }
        Reply::Oversized {
            len,
            content_length,
        } => Some(oversized(stream, zip, *len, *content_length)),
        Reply::Filename(name) => {
            let cd = format!("attachment; filename={name}");
            Some(respond(
                stream,
                "200 OK",
                "application/octet-stream",
                &[("Content-Disposition", &cd)],
                zip,
            ))
        }
        _ => Some(respond(
            stream,
            "200 OK",
            "application/octet-stream",
            &[("Content-Disposition", &attachment)],
            zip,
        )),
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        302 => "Found",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

fn status(stream: &mut TcpStream, code: u16, retry_after: Option<&str>) -> usize {
    let line = format!("{code} {}", reason(code));
    let body = format!("{line}\n");
    let mut extra = Vec::new();
    if let Some(ra) = retry_after {
        extra.push(("Retry-After", ra));
    }
    respond(stream, &line, "text/plain", &extra, body.as_bytes())
}

fn redirect(stream: &mut TcpStream, to: &str) -> usize {
    respond(stream, "302 Found", "text/plain", &[("Location", to)], b"")
}

fn head(status: &str, content_type: &str, extra: &[(&str, &str)], len: Option<usize>) -> String {
    let mut h =
        format!("HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nConnection: close\r\n");
    match len {
        Some(n) => h.push_str(&format!("Content-Length: {n}\r\n")),
        None => h.push_str("Transfer-Encoding: chunked\r\n"),
    }
    for (k, v) in extra {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    h
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> usize {
    let h = head(status, content_type, extra, Some(body.len()));
    if stream.write_all(h.as_bytes()).is_err() {
        return 0;
    }
    let n = write_counted(stream, body);
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    n
}

/// Headers announcing `total` bytes of zip, then only `body`.
fn partial(stream: &mut TcpStream, total: usize, body: &[u8]) -> usize {
    let cd = "attachment; filename=swarming_bot.zip";
    let h = head(
        "200 OK",
        "application/octet-stream",
        &[("Content-Disposition", cd)],
        Some(total),
    );
    if stream.write_all(h.as_bytes()).is_err() {
        return 0;
    }
    let n = write_counted(stream, body);
    let _ = stream.flush();
    n
}

fn write_counted(stream: &mut TcpStream, body: &[u8]) -> usize {
    let mut n = 0;
    for chunk in body.chunks(64 * 1024) {
        if stream.write_all(chunk).is_err() {
            break;
        }
        n += chunk.len();
    }
    n
}

fn oversized(stream: &mut TcpStream, zip: &[u8], len: usize, content_length: bool) -> usize {
    let cd = "attachment; filename=swarming_bot.zip";
    let h = head(
        "200 OK",
        "application/octet-stream",
        &[("Content-Disposition", cd)],
        content_length.then_some(len),
    );
    if stream.write_all(h.as_bytes()).is_err() {
        return 0;
    }
    let zeros = vec![0u8; 64 * 1024];
    let mut sent = 0;
    while sent < len {
        let chunk: &[u8] = if sent < zip.len() {
            &zip[sent..zip.len().min(len)]
        } else {
            &zeros[..zeros.len().min(len - sent)]
        };
        let ok = if content_length {
            stream.write_all(chunk).is_ok()
        } else {
            stream
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .and_then(|_| stream.write_all(chunk))
                .and_then(|_| stream.write_all(b"\r\n"))
                .is_ok()
        };
        if !ok {
            return sent;
        }
        sent += chunk.len();
    }
    if !content_length {
        let _ = stream.write_all(b"0\r\n\r\n");
    }
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    sent
}

/// Makes the coming close send RST instead of FIN (SO_LINGER, zero timeout).
fn reset(stream: &mut TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid fd and a correctly sized, initialised option value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    // The RST goes out when the connection's last descriptor closes, right
    // after `handle` returns.
}
