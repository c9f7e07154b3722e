//! Downloading the bot zip: HTTP(S) with ureq, redirects, the machine token
//! header, timeouts, size caps, retries with backoff, and the hand-over of a
//! verified file to `SWARM_DIR/swarming_bot.zip`.
//!
//! Each attempt streams the body through one fixed buffer into
//! `SWARM_DIR/swarming_bot.partial-<pid>.zip` (a name the stale-file cleanup
//! `swarming_bot*.zip` removes): the zip is never held in memory. The download
//! thread computes the SHA-256 as the bytes go by; one more thread, the check
//! thread, follows the download through the page cache and decompresses every
//! entry, checking its CRC-32 and hashing it into the bot version
//! ([`verify::verify_stream`]), so the checking is almost done when the last
//! byte arrives. When the body ends, the download thread fsyncs the file
//! while the check thread finishes, then the central directory is checked
//! against what it saw. Only a file that passed all of [`super::verify`] is
//! renamed into place; any other is deleted. The server's suggested file name
//! is never used.
//!
//! Why this many threads: on a 2-CPU machine (the benchmark's 64 MiB zip over
//! loopback, medians of 21-25 runs), the check thread cuts `swarm-init fetch`
//! from about 330 ms (download, then check) to about 230 ms; more threads
//! (SHA-256 of the bytes, the bot version, the fsync, each on its own) made
//! no difference beyond the runs' noise of about 10 ms.
//!
//! The check thread cannot make the download wait. If it cannot be started or
//! fails, the attempt fails with that reason; the download always tells it
//! where it ended, so no failure leaves it waiting.
//!
//! No signal handler is installed here and the threads keep the signal mask
//! they inherit: SIGTERM's default action ends the process, download and
//! threads included, at once.
//!
//! Choices worth knowing:
//! - Redirects are followed here, not by ureq, so each hop is logged, checked
//!   against the plain-http policy, and counted (at most [`MAX_REDIRECTS`]).
//! - The token goes only to the origin (scheme, host, port) of `SWARM_URL`,
//!   and only over https or to a loopback host: plain http elsewhere (allowed
//!   with a SHA-256 pin or `SWARM_INIT_ALLOW_HTTP=1`) would carry it over the
//!   network in clear text, so it is withheld, with a warning.
//! - TLS roots: the system bundle (`SSL_CERT_FILE`, else the usual
//!   ca-certificates paths), so a CA added to the image is honoured; the
//!   compiled-in Mozilla roots (webpki-roots, static data only) are the
//!   fallback when no bundle is found.
//! - ureq's own logging never shows the token: at debug it prints requests
//!   with every header outside a fixed list (Host, User-Agent, ...) redacted
//!   and the path as `/******`; only at trace does ureq-proto dump the raw
//!   request bytes, token included, and `SWARM_INIT_LOG` offers no level above
//!   debug (see the test `ureq_logging_at_debug_never_shows_the_token`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use ureq::http::{header, StatusCode, Uri};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::Agent;

use super::config::{self, Config};
use super::token::{self, MachineToken, TokenRead};
use super::verify::{self, ZipReport};
use crate::exit_code;

/// Redirects followed per attempt before giving up (a loop, most likely).
pub const MAX_REDIRECTS: u32 = 10;
/// No wait between attempts is ever longer.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// One read/write/hash buffer; large enough that syscalls and per-chunk
/// overhead vanish next to the byte work.
const BUF_SIZE: usize = 256 * 1024;
/// Progress is logged at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Written data is pushed to disk in the background every this many bytes,
/// so the final fsync has little left to do.
const WRITEBACK_CHUNK: u64 = 8 * 1024 * 1024;

pub const FINAL_NAME: &str = "swarming_bot.zip";
const TOKEN_HEADER: &str = "X-Luci-Machine-Token";

/// A verified zip in place.
#[derive(Debug)]
pub struct Fetched {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: [u8; 32],
    pub report: ZipReport,
    /// Every token read (sent or withheld), so the bot's environment can be
    /// scrubbed of them.
    pub tokens: Vec<MachineToken>,
}

/// Why fetching failed for good: the exit code and the one line to log.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

/// How one attempt failed.
#[derive(Debug)]
enum AttemptError {
    /// Worth another attempt (after `retry_after` if the server asked).
    Retry {
        cause: String,
        retry_after: Option<Duration>,
        verification: bool,
    },
    /// Another attempt would fail the same way.
    Fatal { code: i32, cause: String },
}

fn retry(cause: impl Into<String>) -> AttemptError {
    AttemptError::Retry {
        cause: cause.into(),
        retry_after: None,
        verification: false,
    }
}

fn fatal(code: i32, cause: impl Into<String>) -> AttemptError {
    AttemptError::Fatal {
        code,
        cause: cause.into(),
    }
}

/// The wait before attempt `failures + 1`: exponential from `initial`,
/// doubling per failure, capped at [`MAX_WAIT`], with "equal jitter" (`unit`
/// in [0, 1) picks a point in the upper half) so a fleet restarted together
/// does not retry in lockstep.
pub fn backoff_delay(initial: Duration, failures: u32, unit: f64) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1));
    let base = initial.saturating_mul(factor).min(MAX_WAIT);
    let half = base / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

/// `Retry-After` in its delta-seconds form. (The HTTP-date form is not
/// used by Swarming's servers or proxies in front of them; it is ignored and
/// the normal backoff applies.)
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Digits only, so a parse failure means overflow: "a very long time".
    Some(v.parse::<u64>().map_or(MAX_WAIT, Duration::from_secs))
}

/// The wait after a failed attempt: the server's Retry-After when it asked
/// for longer than the backoff, else the backoff; never above [`MAX_WAIT`].
pub fn next_wait(backoff: Duration, retry_after: Option<Duration>) -> Duration {
    retry_after
        .map_or(backoff, |ra| ra.max(backoff))
        .min(MAX_WAIT)
}

/// A small xorshift generator for jitter: no need for cryptographic quality,
/// only for different bots to pick different waits.
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Jitter(nanos ^ (u64::from(std::process::id()) << 32) | 1)
    }

    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Resolves a `Location` header against the URL that sent it (RFC 3986 §5.2).
pub fn resolve_location(base: &Uri, location: &str) -> Result<Uri, String> {
    let loc = location.trim();
    let bad = |why: &str| format!("bad redirect Location {loc:?} from {base}: {why}");
    let scheme = base.scheme_str().unwrap_or("https");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or("");
    let has_scheme = loc.split_once(':').is_some_and(|(s, _)| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            && s.as_bytes()[0].is_ascii_alphabetic()
    });
    let absolute = if has_scheme {
        loc.to_string()
    } else if loc.starts_with("//") {
        format!("{scheme}:{loc}")
    } else {
        let (path_part, rest) = match loc.find(['?', '#']) {
            Some(i) => loc.split_at(i),
            None => (loc, ""),
        };
        let merged = if path_part.is_empty() {
            base.path().to_string()
        } else if path_part.starts_with('/') {
            path_part.to_string()
        } else {
            let base_path = base.path();
            let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
            format!("{}{}", if dir.is_empty() { "/" } else { dir }, path_part)
        };
        let rest = match (rest.is_empty(), base.query()) {
            // "" keeps the base query, per RFC 3986 5.2.2.
            (true, Some(q)) if path_part.is_empty() => format!("?{q}"),
            _ => rest.to_string(),
        };
        format!(
            "{scheme}://{authority}{}{rest}",
            remove_dot_segments(&merged)
        )
    };
    // The fragment is for the client only; http::Uri rejects it anyway.
    let without_fragment = absolute.split('#').next().unwrap_or_default();
    let uri: Uri = without_fragment.parse().map_err(|e| bad(&format!("{e}")))?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {}
        _ => return Err(bad("not an http:// or https:// URL")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(uri)
}

fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if joined.starts_with('/') {
        joined
    } else {
        format!("/{joined}")
    }
}

/// Where the machine token may go, for a request to some URL.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenPolicy {
    /// The origin of `SWARM_URL`, over https or to a loopback host.
    Send,
    /// Another origin (a redirect elsewhere, e.g. a CDN): never.
    OtherOrigin,
    /// The origin of `SWARM_URL` over plain http to a host that is not
    /// loopback: the header would cross the network unencrypted.
    Cleartext,
}

/// Whether the token may be sent with a request to `uri`, given the
/// `SWARM_URL` it started from.
pub fn token_policy(uri: &Uri, origin: &Uri) -> TokenPolicy {
    if !same_origin(uri, origin) {
        TokenPolicy::OtherOrigin
    } else if uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"))
        || uri.host().is_some_and(config::is_loopback_host)
    {
        TokenPolicy::Send
    } else {
        TokenPolicy::Cleartext
    }
}

/// Same scheme, host and port: where the token may be sent.
pub fn same_origin(a: &Uri, b: &Uri) -> bool {
    let scheme = |u: &Uri| u.scheme_str().unwrap_or("").to_ascii_lowercase();
    let port = |u: &Uri| {
        u.port_u16()
            .unwrap_or(if scheme(u) == "https" { 443 } else { 80 })
    };
    let host = |u: &Uri| u.host().unwrap_or("").to_ascii_lowercase();
    scheme(a) == scheme(b) && host(a) == host(b) && port(a) == port(b)
}

fn load_roots() -> RootCerts {
    let candidates: Vec<PathBuf> = match std::env::var_os("SSL_CERT_FILE") {
        Some(p) if !p.is_empty() => vec![PathBuf::from(p)],
        _ => [
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/pki/tls/certs/ca-bundle.crt",
            "/etc/ssl/cert.pem",
        ]
        .iter()
        .map(PathBuf::from)
        .collect(),
    };
    for path in candidates {
        let Ok(pem) = fs::read(&path) else { continue };
        let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if !certs.is_empty() {
            log::debug!(
                "TLS: {} root certificates from {}",
                certs.len(),
                path.display()
            );
            return RootCerts::Specific(Arc::new(certs));
        }
    }
    log::debug!("TLS: no system CA bundle found; using the built-in Mozilla roots");
    RootCerts::WebPki
}

fn make_agent(cfg: &Config) -> Agent {
    let t = Some(cfg.fetch_timeout);
    Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(t)
        .timeout_send_request(t)
        .timeout_recv_response(t)
        .timeout_per_read(t)
        .timeout_per_write(t)
        .input_buffer_size(BUF_SIZE)
        .user_agent(concat!("swarm-init/", env!("CARGO_PKG_VERSION")))
        .tls_config(TlsConfig::builder().root_certs(load_roots()).build())
        .build()
        .into()
}

/// Progress and bookkeeping of one attempt.
struct Attempt {
    bytes: u64,
    final_url: String,
    /// SHA-256 of the body so far.
    sha: Sha256,
}

/// Everything that stays the same across attempts.
struct Fetcher<'a> {
    cfg: &'a Config,
    agent: Agent,
    temp: PathBuf,
    final_path: PathBuf,
    owner: Option<(u32, u32)>,
    buf: Vec<u8>,
    tokens: Vec<MachineToken>,
    token_note: Option<String>,
}

/// Downloads and verifies the bot zip into `cfg.dir`, retrying as configured.
/// `owner` (uid, gid) is given the file when running as root.
pub fn fetch(cfg: &Config, owner: Option<(u32, u32)>) -> Result<Fetched, Failure> {
    let mut f = Fetcher::new(cfg, owner);
    let mut jitter = Jitter::new();
    let attempts = cfg.fetch_attempts;
    for n in 1..=attempts {
        let start = Instant::now();
        let mut at = Attempt {
            bytes: 0,
            final_url: cfg.url.clone(),
            sha: Sha256::new(),
        };
        log::info!("fetch attempt {n}/{attempts}: GET {}", cfg.url);
        let result = f.attempt(&mut at);
        let took = start.elapsed();
        let err = match result {
            Ok((size, sha256, report)) => {
                log::info!(
                    "fetch attempt {n}/{attempts}: {} verified in {:.2?} ({} bytes{}, {} entries, \
                     sha256 {}, bot version {})",
                    f.final_path.display(),
                    took,
                    size,
                    rate(size, took),
                    report.entries,
                    config::hex(&sha256),
                    config::hex(&report.bot_version),
                );
                return Ok(Fetched {
                    path: f.final_path,
                    size,
                    sha256,
                    report,
                    tokens: f.tokens,
                });
            }
            Err(e) => e,
        };
        let _ = fs::remove_file(&f.temp);
        match err {
            AttemptError::Fatal { code, cause } => {
                log::warn!(
                    "fetch attempt {n}/{attempts} failed after {took:.2?} ({} bytes received): {cause}; \
                     not retried",
                    at.bytes
                );
                return Err(Failure {
                    code,
                    message: fatal_message(code, cfg, &cause),
                });
            }
            AttemptError::Retry {
                cause,
                retry_after,
                verification,
            } => {
                if n == attempts {
                    log::warn!(
                        "fetch attempt {n}/{attempts} failed after {took:.2?} ({} bytes received): {cause}; \
                         no attempts left",
                        at.bytes
                    );
                    let (code, message) =
                        exhausted_message(cfg, &cause, verification, &at.final_url);
                    return Err(Failure { code, message });
                }
                let wait = next_wait(
                    backoff_delay(cfg.backoff_initial, n, jitter.unit()),
                    retry_after,
                );
                log::warn!(
                    "fetch attempt {n}/{attempts} failed after {took:.2?} ({} bytes received): {cause}; \
                     next attempt in {wait:.2?}",
                    at.bytes
                );
                // SIGTERM keeps its default action in this process, so it
                // ends this sleep (and the boot) at once.
                std::thread::sleep(wait);
            }
        }
    }
    Err(Failure {
        code: exit_code::FETCH,
        message: "no fetch attempt was made".into(),
    })
}

fn fatal_message(code: i32, cfg: &Config, cause: &str) -> String {
    match code {
        exit_code::IO_ERROR => format!(
            "{cause}; check that SWARM_DIR={} is writable and has room",
            cfg.dir.display()
        ),
        _ => format!(
            "cannot download the bot from SWARM_URL={}: {cause}",
            cfg.url
        ),
    }
}

fn exhausted_message(
    cfg: &Config,
    cause: &str,
    verification: bool,
    final_url: &str,
) -> (i32, String) {
    if verification {
        (
            exit_code::VERIFICATION,
            format!(
                "the bot zip from {final_url} did not verify ({} failed), last: {cause}; \
                 check SWARM_URL, SWARM_BOT_SHA256 and SWARM_BOT_VERSION",
                attempts_text(cfg.fetch_attempts)
            ),
        )
    } else {
        (
            exit_code::FETCH,
            format!(
                "cannot download the bot from SWARM_URL={} ({} failed), last: {cause}; \
                 check the server and the network, or raise SWARM_INIT_FETCH_ATTEMPTS",
                cfg.url,
                attempts_text(cfg.fetch_attempts)
            ),
        )
    }
}

fn attempts_text(n: u32) -> String {
    if n == 1 {
        "the only attempt".to_string()
    } else {
        format!("all {n} attempts")
    }
}

fn rate(bytes: u64, took: Duration) -> String {
    let secs = took.as_secs_f64();
    if secs <= 0.0 {
        return String::new();
    }
    format!(", {:.1} MiB/s", bytes as f64 / secs / (1024.0 * 1024.0))
}

fn classify_ureq(e: ureq::Error, timeout: Duration) -> AttemptError {
    match e {
        ureq::Error::Timeout(which) => retry(format!("timed out ({which}) after {timeout:?}")),
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
            retry(format!("connection closed early: {io}"))
        }
        ureq::Error::HostNotFound => retry("host not found (DNS)"),
        e @ (ureq::Error::BadUri(_) | ureq::Error::Http(_) | ureq::Error::RequireHttpsOnly(_)) => {
            fatal(exit_code::FETCH, format!("bad request: {e}"))
        }
        e @ ureq::Error::LargeResponseHeader(..) => fatal(exit_code::FETCH, format!("{e}")),
        e => {
            let text = e.to_string();
            if text.contains("certificate") {
                retry(format!(
                    "{text} (TLS: check the server's certificate, or add its CA to the image's \
                     CA bundle or point SSL_CERT_FILE at it)"
                ))
            } else {
                retry(text)
            }
        }
    }
}

impl Fetcher<'_> {
    fn new(cfg: &Config, owner: Option<(u32, u32)>) -> Fetcher<'_> {
        Fetcher {
            cfg,
            agent: make_agent(cfg),
            temp: cfg
                .dir
                .join(format!("swarming_bot.partial-{}.zip", std::process::id())),
            final_path: cfg.dir.join(FINAL_NAME),
            owner,
            buf: vec![0u8; BUF_SIZE],
            tokens: Vec::new(),
            token_note: None,
        }
    }

    /// The token header value for `uri`, re-reading the file each time:
    /// tokend refreshes it, and retries can span minutes. What happened to the
    /// token is logged once, and again only when it changes.
    fn token_for(&mut self, uri: &Uri) -> Option<MachineToken> {
        let policy = token_policy(uri, &self.cfg.uri);
        if policy == TokenPolicy::OtherOrigin {
            return None;
        }
        let path = self.cfg.token_file.as_ref()?;
        let read = token::read(path);
        if let TokenRead::Token(t) = &read {
            // Withheld or not, it is a secret the bot must not inherit.
            if !self.tokens.contains(t) {
                self.tokens.push(t.clone());
            }
        }
        let (token, level, note) = match read {
            TokenRead::Token(_) if policy == TokenPolicy::Cleartext => (
                None,
                log::Level::Warn,
                format!(
                    "not sending {TOKEN_HEADER} from {} to {}://{}: over plain http:// to a \
                     host that is not loopback it would cross the network unencrypted; use an \
                     https:// SWARM_URL to send it",
                    path.display(),
                    uri.scheme_str().unwrap_or("http"),
                    uri.authority().map_or("", |a| a.as_str()),
                ),
            ),
            TokenRead::Token(t) => (
                Some(t),
                log::Level::Info,
                format!("sending {TOKEN_HEADER} from {}", path.display()),
            ),
            TokenRead::Missing => (
                None,
                log::Level::Info,
                format!(
                    "no token file at {}; fetching without {TOKEN_HEADER}",
                    path.display()
                ),
            ),
            TokenRead::Unusable(why) => (
                None,
                log::Level::Warn,
                format!(
                    "token file {}: {why}; fetching without {TOKEN_HEADER}",
                    path.display()
                ),
            ),
        };
        if self.token_note.as_deref() != Some(note.as_str()) {
            log::log!(level, "{note}");
            self.token_note = Some(note);
        }
        token
    }

    fn attempt(&mut self, at: &mut Attempt) -> Result<(u64, [u8; 32], ZipReport), AttemptError> {
        let mut uri = self.cfg.uri.clone();
        let mut redirects = 0;
        let response = loop {
            if !config::http_allowed(&uri, self.cfg.allow_http, self.cfg.sha256_pin.is_some()) {
                return Err(fatal(
                    exit_code::FETCH,
                    config::plain_http_refused("redirect to", &uri.to_string()),
                ));
            }
            let mut request = self.agent.get(uri.clone());
            if let Some(token) = self.token_for(&uri) {
                request = request.header(TOKEN_HEADER, token.expose());
            }
            let response = request
                .call()
                .map_err(|e| classify_ureq(e, self.cfg.fetch_timeout))?;
            let status = response.status();
            if matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        retry(format!(
                            "HTTP {status} from {uri} without a usable Location header"
                        ))
                    })?;
                let next =
                    resolve_location(&uri, location).map_err(|e| fatal(exit_code::FETCH, e))?;
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(fatal(
                        exit_code::FETCH,
                        format!("more than {MAX_REDIRECTS} redirects (a redirect loop?), the last to {next}"),
                    ));
                }
                log::info!("HTTP {status}: redirected to {next}");
                uri = next;
                at.final_url = uri.to_string();
                continue;
            }
            if status == StatusCode::OK {
                break response;
            }
            let retry_after = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let what = format!("HTTP {status} from {uri}");
            return Err(match status.as_u16() {
                408 | 429 | 500..=599 => AttemptError::Retry {
                    cause: what,
                    retry_after,
                    verification: false,
                },
                400..=499 => fatal(
                    exit_code::FETCH,
                    format!("{what}; check SWARM_URL and the machine token"),
                ),
                _ => fatal(exit_code::FETCH, format!("{what}: not the bot zip")),
            });
        };

        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = response.into_body();
        let expected = body.content_length();
        if let Some(len) = expected {
            if len > self.cfg.max_bytes {
                return Err(fatal(
                    exit_code::FETCH,
                    format!(
                        "the server announces {len} bytes, more than SWARM_INIT_FETCH_MAX_BYTES={}; \
                         raise it if the bot zip is really that big",
                        self.cfg.max_bytes
                    ),
                ));
            }
        }
        let mut reader = body.as_reader();
        let file = self.create_temp()?;
        let tail = Tail::default();
        let mut buf = std::mem::take(&mut self.buf);
        let followed = std::thread::scope(|s| {
            // However this closure ends, the check thread learns that the
            // download did, so it is never left waiting for bytes.
            let _abandon = AbandonOnDrop(&tail);
            let checker = spawn_follower(s, "check", || check_while_downloading(&file, &tail));
            let downloaded = match &checker {
                Ok(_) => download_body(&mut reader, &file, &tail, &mut buf, self.cfg, at, expected),
                Err(e) => Err(retry(e.clone())),
            };
            tail.end(downloaded.is_ok());
            // The disk works on this fsync while the check thread finishes.
            let synced = downloaded.map(|()| {
                let start = Instant::now();
                file.sync_all().map(|()| start.elapsed())
            });
            let stream = join_follower(checker, "check");
            synced.map(|synced| (stream, synced))
        });
        self.buf = buf;
        let (stream, synced) = followed?;
        // A check thread that failed (rather than found the zip bad) fails
        // the attempt: it checked nothing to rely on.
        let stream = stream.map_err(retry)?;
        let sha256: [u8; 32] = std::mem::take(&mut at.sha).finalize().into();
        self.finish(
            file,
            at.bytes,
            sha256,
            stream,
            synced,
            content_type.as_deref(),
        )
    }

    fn create_temp(&self) -> Result<File, AttemptError> {
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o644)
                // The directory belongs to the bot user: never follow a link planted there.
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&self.temp)
        };
        let file = match open() {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let _ = fs::remove_file(&self.temp);
                open()
            }
            other => other,
        }
        .map_err(|e| {
            fatal(
                exit_code::IO_ERROR,
                format!("cannot create {}: {e}", self.temp.display()),
            )
        })?;
        // umask must not decide whether the bot can read its own code.
        file.set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(|e| {
                fatal(
                    exit_code::IO_ERROR,
                    format!("cannot chmod {}: {e}", self.temp.display()),
                )
            })?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(|e| {
                fatal(
                    exit_code::IO_ERROR,
                    format!("cannot chown {}: {e}", self.temp.display()),
                )
            })?;
        }
        Ok(file)
    }

    /// Completes verification of the downloaded (and fsynced) file, then moves
    /// it into place.
    fn finish(
        &mut self,
        file: File,
        size: u64,
        sha256: [u8; 32],
        stream: StreamVerdict,
        synced: io::Result<Duration>,
        content_type: Option<&str>,
    ) -> Result<(u64, [u8; 32], ZipReport), AttemptError> {
        let verification_failed = |why: String| {
            let ct = content_type
                .map(|c| format!(" (Content-Type {c})"))
                .unwrap_or_default();
            AttemptError::Retry {
                cause: format!("verification failed: {why}{ct}"),
                retry_after: None,
                verification: true,
            }
        };
        verify::check_pin(&sha256, self.cfg.sha256_pin.as_ref()).map_err(verification_failed)?;
        let report = complete_verification(&file, stream).map_err(verification_failed)?;
        verify::check_version(&report, self.cfg.bot_version.as_ref())
            .map_err(verification_failed)?;
        match synced {
            Ok(took) => log::debug!("fsync of {} took {took:.2?}", self.temp.display()),
            Err(e) => {
                return Err(fatal(
                    exit_code::IO_ERROR,
                    format!("cannot fsync {}: {e}", self.temp.display()),
                ))
            }
        }
        fs::rename(&self.temp, &self.final_path).map_err(|e| {
            fatal(
                exit_code::IO_ERROR,
                format!(
                    "cannot rename {} to {}: {e}",
                    self.temp.display(),
                    self.final_path.display()
                ),
            )
        })?;
        sync_dir(&self.cfg.dir);
        Ok((size, sha256, report))
    }
}

/// Uses the streaming pass when the central directory confirms it; otherwise
/// (data descriptors, a prefix, any doubt, or a corrupt file) verifies the
/// whole file again the ordinary way, which also words the error.
fn complete_verification(file: &File, streamed: StreamVerdict) -> Result<ZipReport, String> {
    let start = Instant::now();
    let confirmed = streamed.and_then(|seen| verify::check_central(file, &seen));
    match confirmed {
        Ok(report) => {
            log::debug!(
                "zip verified while downloading; central directory checked in {:.2?}",
                start.elapsed()
            );
            Ok(report)
        }
        Err(why) => {
            log::debug!("streaming verification inconclusive ({why}); verifying the whole file");
            let mut reader = file;
            reader.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
            let report = verify::verify_zip(reader, BUF_SIZE);
            log::debug!("full verification took {:.2?}", start.elapsed());
            report
        }
    }
}

/// The check thread's verdict: the entries it verified, or why the streaming
/// pass cannot vouch for the file (a corrupt zip, or one it cannot stream,
/// such as with data descriptors), which the full verification then words.
type StreamVerdict = Result<verify::StreamReport, String>;

/// Starts a thread that follows the download. Failure (a container may be out
/// of threads) is an error to report, never a panic as from `Scope::spawn`.
fn spawn_follower<'scope, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    name: &str,
    f: impl FnOnce() -> T + Send + 'scope,
) -> Result<std::thread::ScopedJoinHandle<'scope, T>, String> {
    std::thread::Builder::new()
        .name(format!("zip-{name}"))
        .spawn_scoped(scope, f)
        .map_err(|e| format!("cannot start the {name} thread: {e}"))
}

/// Waits for a follower and passes on its failure, whether it could not
/// start or panicked (which the release build's panic=abort makes fatal
/// anyway, but a test build survives).
fn join_follower<T>(
    handle: Result<std::thread::ScopedJoinHandle<'_, T>, String>,
    name: &str,
) -> Result<T, String> {
    handle?
        .join()
        .map_err(|_| format!("the {name} thread panicked"))
}

/// How far the download has written the temp file, shared with the threads
/// that follow it.
#[derive(Default)]
struct Tail {
    state: Mutex<TailState>,
    grew: Condvar,
}

#[derive(Default)]
struct TailState {
    written: u64,
    /// Some(true): complete; Some(false): abandoned.
    end: Option<bool>,
}

impl Tail {
    fn lock(&self) -> MutexGuard<'_, TailState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn advance(&self, written: u64) {
        self.lock().written = written;
        self.grew.notify_all();
    }

    /// Marks where the download ended; the first call decides.
    fn end(&self, complete: bool) {
        self.lock().end.get_or_insert(complete);
        self.grew.notify_all();
    }
}

/// Marks the download abandoned when dropped, unless it ended before.
struct AbandonOnDrop<'a>(&'a Tail);

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        self.0.end(false);
    }
}

/// Reads the temp file behind the download, waiting for it to grow.
struct TailReader<'a> {
    file: &'a File,
    tail: &'a Tail,
    pos: u64,
}

impl Read for TailReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = {
            let mut state = self.tail.lock();
            loop {
                if state.written > self.pos {
                    break state.written - self.pos;
                }
                match state.end {
                    Some(true) => return Ok(0),
                    Some(false) => return Err(io::Error::other("download abandoned")),
                    None => {
                        state = self
                            .tail
                            .grew
                            .wait(state)
                            .unwrap_or_else(PoisonError::into_inner)
                    }
                }
            }
        };
        let want = buf
            .len()
            .min(usize::try_from(available).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "temp file shorter than written",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// The check thread: streams the zip entries through verification
/// (decompression, CRC-32, bot version) as the bytes arrive.
fn check_while_downloading(file: &File, tail: &Tail) -> StreamVerdict {
    let reader = TailReader { file, tail, pos: 0 };
    verify::verify_stream(io::BufReader::with_capacity(BUF_SIZE, reader), BUF_SIZE)
}

/// Streams the body into `file`, hashing it and telling the check thread how
/// far it got.
fn download_body(
    reader: &mut impl Read,
    file: &File,
    tail: &Tail,
    buf: &mut [u8],
    cfg: &Config,
    at: &mut Attempt,
    expected: Option<u64>,
) -> Result<(), AttemptError> {
    let started = Instant::now();
    let mut last_progress = started;
    let mut synced_to: u64 = 0;
    let mut out = file;
    loop {
        let n = match reader.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let e = classify_ureq(ureq::Error::from(e), cfg.fetch_timeout);
                return Err(match (e, expected) {
                    (AttemptError::Retry { cause, .. }, Some(len)) => retry(format!(
                        "body cut short after {} of {len} bytes: {cause}",
                        at.bytes
                    )),
                    (AttemptError::Retry { cause, .. }, None) => {
                        retry(format!("body cut short after {} bytes: {cause}", at.bytes))
                    }
                    (other, _) => other,
                });
            }
        };
        at.bytes += n as u64;
        if at.bytes > cfg.max_bytes {
            return Err(fatal(
                exit_code::FETCH,
                format!(
                    "the body exceeds SWARM_INIT_FETCH_MAX_BYTES={}; raise it if the bot zip is really that big",
                    cfg.max_bytes
                ),
            ));
        }
        out.write_all(&buf[..n]).map_err(|e| {
            fatal(
                exit_code::IO_ERROR,
                format!("cannot write the download: {e}"),
            )
        })?;
        tail.advance(at.bytes);
        at.sha.update(&buf[..n]);
        if at.bytes - synced_to >= WRITEBACK_CHUNK {
            start_writeback(file.as_raw_fd(), synced_to, at.bytes - synced_to);
            synced_to = at.bytes;
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            let of = expected.map(|l| format!(" of {l}")).unwrap_or_default();
            log::info!(
                "downloaded {}{of} bytes{}",
                at.bytes,
                rate(at.bytes, started.elapsed())
            );
        }
    }
    if let Some(len) = expected {
        if at.bytes != len {
            return Err(retry(format!(
                "body cut short: {} of {len} bytes",
                at.bytes
            )));
        }
    }
    log::debug!(
        "body of {} bytes received in {:.2?}",
        at.bytes,
        started.elapsed()
    );
    Ok(())
}

/// Starts writeback of a written range without waiting for it.
fn start_writeback(fd: i32, offset: u64, len: u64) {
    let (Ok(off), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: fd is an open file we own; the call only schedules I/O. Its
    // failure only costs time at the final fsync, so the result is ignored.
    unsafe {
        libc::sync_file_range(fd, off, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Makes the rename durable. Best effort: the file itself is already synced.
fn sync_dir(dir: &Path) {
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        log::warn!("cannot fsync directory {}: {e}", dir.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let s = Duration::from_secs;
        assert_eq!(backoff_delay(s(1), 1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff_delay(s(1), 1, 1.0), s(1));
        assert_eq!(backoff_delay(s(1), 2, 1.0), s(2));
        assert_eq!(backoff_delay(s(1), 3, 0.5), Duration::from_millis(3000));
        assert_eq!(backoff_delay(s(1), 7, 1.0), s(60));
        assert_eq!(backoff_delay(s(1), 40, 1.0), s(60));
        assert_eq!(backoff_delay(s(1), u32::MAX, 0.0), s(30));
        assert_eq!(backoff_delay(Duration::ZERO, 5, 0.7), Duration::ZERO);
        for failures in 1..20 {
            let lo = backoff_delay(s(1), failures, 0.0);
            let hi = backoff_delay(s(1), failures, 0.999);
            assert!(
                lo <= hi && hi <= MAX_WAIT && lo * 2 >= hi.min(s(60)) - Duration::from_millis(2)
            );
        }
    }

    #[test]
    fn jitter_is_in_range_and_varies() {
        let mut j = Jitter::new();
        let values: Vec<f64> = (0..100).map(|_| j.unit()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        assert!(values.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn retry_after_parsing() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("99999999999999999999999"), Some(MAX_WAIT));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after(""), None);
        assert_eq!(parse_retry_after("1.5"), None);
    }

    #[test]
    fn wait_honours_retry_after_within_cap() {
        let s = Duration::from_secs;
        assert_eq!(next_wait(s(1), None), s(1));
        assert_eq!(next_wait(s(1), Some(s(5))), s(5));
        assert_eq!(next_wait(s(8), Some(s(2))), s(8));
        assert_eq!(next_wait(s(1), Some(s(3600))), MAX_WAIT);
    }

    #[test]
    fn locations() {
        let base: Uri = "https://swarm.example.com:8443/swarming/bot_code?x=1"
            .parse()
            .unwrap();
        let r = |l: &str| resolve_location(&base, l).map(|u| u.to_string());
        assert_eq!(
            r("https://other.example.com/z").unwrap(),
            "https://other.example.com/z"
        );
        assert_eq!(
            r("//cdn.example.com/a").unwrap(),
            "https://cdn.example.com/a"
        );
        assert_eq!(
            r("/bot_code/v1").unwrap(),
            "https://swarm.example.com:8443/bot_code/v1"
        );
        assert_eq!(
            r("v1/zip").unwrap(),
            "https://swarm.example.com:8443/swarming/v1/zip"
        );
        assert_eq!(
            r("../up?y=2").unwrap(),
            "https://swarm.example.com:8443/up?y=2"
        );
        assert_eq!(
            r("../../../../etc/passwd").unwrap(),
            "https://swarm.example.com:8443/etc/passwd"
        );
        assert_eq!(
            r("./a/./b/../c").unwrap(),
            "https://swarm.example.com:8443/swarming/a/c"
        );
        assert_eq!(
            r("?q=3").unwrap(),
            "https://swarm.example.com:8443/swarming/bot_code?q=3"
        );
        assert_eq!(r("/p#frag").unwrap(), "https://swarm.example.com:8443/p");
        assert!(r("ftp://x/y").is_err());
        assert!(r("file:///etc/passwd").is_err());
        assert!(r("https:///nohost").is_err());
    }

    fn tail_file(tag: &str) -> (PathBuf, File) {
        let path =
            std::env::temp_dir().join(format!("swarm-init-tail-{tag}-{}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        (path, file)
    }

    #[test]
    fn download_hashes_every_byte_and_a_follower_sees_them() {
        let (dir, cfg) = config_with_token("body", "https://swarm.example.com/bot_code", &[]);
        let (path, file) = tail_file("body");
        let tail = Tail::default();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut at = Attempt {
            bytes: 0,
            final_url: cfg.url.clone(),
            sha: Sha256::new(),
        };
        let mut buf = vec![0u8; 100_003];
        let (downloaded, seen) = std::thread::scope(|s| {
            let follower = s.spawn(|| {
                let mut seen = Vec::new();
                TailReader {
                    file: &file,
                    tail: &tail,
                    pos: 0,
                }
                .read_to_end(&mut seen)
                .map(|_| seen)
            });
            let mut body = io::Cursor::new(&data);
            let len = Some(data.len() as u64);
            let downloaded = download_body(&mut body, &file, &tail, &mut buf, &cfg, &mut at, len);
            tail.end(downloaded.is_ok());
            (downloaded, follower.join().unwrap())
        });
        assert!(downloaded.is_ok(), "{downloaded:?}");
        assert_eq!(at.bytes, data.len() as u64);
        let want: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(<[u8; 32]>::from(at.sha.finalize()), want);
        assert!(seen.unwrap() == data, "the follower saw other bytes");
        fs::remove_file(path).unwrap();
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn checker_verifies_a_zip_as_it_arrives() {
        use crate::bot::verify::tests::{build_zip, expected_version};
        let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 7) as u8).collect();
        let entries: [(&str, &[u8]); 3] =
            [("__main__.py", b"print(1)\n"), ("d/", b""), ("d/big", &big)];
        for method in [
            zip::CompressionMethod::Stored,
            zip::CompressionMethod::Deflated,
        ] {
            let zip = build_zip(&entries, method);
            let (path, file) = tail_file("checker");
            let tail = Tail::default();
            let seen = std::thread::scope(|s| {
                let checker = s.spawn(|| check_while_downloading(&file, &tail));
                let mut written = 0u64;
                for chunk in zip.chunks(65_537) {
                    (&file).write_all(chunk).unwrap();
                    written += chunk.len() as u64;
                    tail.advance(written);
                }
                tail.end(true);
                checker.join().unwrap()
            })
            .unwrap();
            let report = verify::check_central(&file, &seen).unwrap();
            assert_eq!(report.bot_version, expected_version(&entries));
            assert_eq!(report.entries, 3);
            fs::remove_file(path).unwrap();
        }
    }

    #[test]
    fn followers_stop_when_the_download_is_abandoned() {
        let (path, file) = tail_file("abandoned");
        let tail = Tail::default();
        let checked = std::thread::scope(|s| {
            let checker = s.spawn(|| check_while_downloading(&file, &tail));
            (&file).write_all(b"PK\x03\x04partial").unwrap();
            tail.advance(11);
            tail.end(false);
            checker.join().unwrap()
        });
        let why = checked.unwrap_err();
        assert!(why.contains("download abandoned"), "{why}");
        fs::remove_file(path).unwrap();
    }

    /// Log records (level, target, text) captured from one thread.
    type Records = Vec<(log::Level, String, String)>;

    thread_local! {
        /// The level and records of a capture running on this thread.
        static CAPTURE: std::cell::RefCell<Option<(log::LevelFilter, Records)>> =
            const { std::cell::RefCell::new(None) };
    }

    /// A logger that keeps the records of threads inside [`capture_logs`] and
    /// drops everyone else's, so tests running alongside do not interfere.
    struct CaptureLogger;

    impl log::Log for CaptureLogger {
        fn enabled(&self, metadata: &log::Metadata) -> bool {
            CAPTURE.with(|c| {
                c.try_borrow()
                    .is_ok_and(|c| c.as_ref().is_some_and(|(l, _)| metadata.level() <= *l))
            })
        }

        fn log(&self, record: &log::Record) {
            if !self.enabled(record.metadata()) {
                return;
            }
            let text = record.args().to_string();
            CAPTURE.with(|c| {
                if let Ok(mut c) = c.try_borrow_mut() {
                    if let Some((_, records)) = c.as_mut() {
                        records.push((record.level(), record.target().to_string(), text));
                    }
                }
            });
        }

        fn flush(&self) {}
    }

    /// Runs `f` with this thread's log records at `level` and above captured,
    /// as a process logging at `level` would print them (libraries that ask
    /// `log_enabled!` get the answer they would get there).
    fn capture_logs<T>(level: log::LevelFilter, f: impl FnOnce() -> T) -> (T, Records) {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            log::set_logger(&CaptureLogger).expect("no other logger in the unit tests");
            log::set_max_level(log::LevelFilter::Trace);
        });
        CAPTURE.with(|c| *c.borrow_mut() = Some((level, Vec::new())));
        let out = f();
        let records = CAPTURE.with(|c| c.borrow_mut().take()).map(|(_, r)| r);
        (out, records.unwrap_or_default())
    }

    const SECRET: &str = "tok-SECRET-4f2a9c";

    /// Whether `text` holds the token or a piece of it long enough to matter
    /// (a hex dump shows 16 bytes a row, so a whole token may not be on one).
    fn leaks(text: &str) -> bool {
        SECRET
            .as_bytes()
            .windows(8)
            .any(|piece| text.as_bytes().windows(8).any(|w| w == piece))
    }

    /// A configuration for `url` with a token file holding [`SECRET`].
    fn config_with_token(tag: &str, url: &str, extra: &[(&str, &str)]) -> (PathBuf, Config) {
        let dir =
            std::env::temp_dir().join(format!("swarm-init-fetch-{tag}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let token_file = dir.join("token.json");
        fs::write(
            &token_file,
            format!(r#"{{"luci_machine_token":"{SECRET}"}}"#),
        )
        .unwrap();
        let mut vars: Vec<(String, String)> = vec![
            ("SWARM_URL".into(), url.into()),
            ("SWARM_DIR".into(), dir.display().to_string()),
            (
                "LUCI_MACHINE_TOKEN_FILE".into(),
                token_file.display().to_string(),
            ),
        ];
        vars.extend(extra.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        let cfg =
            Config::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.into()))
                .unwrap();
        (dir, cfg)
    }

    #[test]
    fn token_policy_needs_https_or_loopback() {
        let u = |s: &str| s.parse::<Uri>().unwrap();
        let same = |s: &str| token_policy(&u(s), &u(s));
        assert_eq!(
            same("https://swarm.example.com/bot_code"),
            TokenPolicy::Send
        );
        assert_eq!(same("http://127.0.0.1:8080/bot_code"), TokenPolicy::Send);
        assert_eq!(same("http://127.3.4.5/bot_code"), TokenPolicy::Send);
        assert_eq!(same("http://localhost:9/bot_code"), TokenPolicy::Send);
        assert_eq!(same("http://[::1]:8080/bot_code"), TokenPolicy::Send);
        assert_eq!(
            same("http://swarm.example.com/bot_code"),
            TokenPolicy::Cleartext
        );
        assert_eq!(same("http://10.0.0.1/bot_code"), TokenPolicy::Cleartext);
        assert_eq!(same("HTTP://192.168.1.2:80/x"), TokenPolicy::Cleartext);
        assert_eq!(
            token_policy(
                &u("https://cdn.example.com/zip"),
                &u("https://swarm.example.com/bot_code")
            ),
            TokenPolicy::OtherOrigin
        );
    }

    #[test]
    fn token_is_withheld_over_plain_http_with_one_warning() {
        // Plain http to a host that is not loopback is allowed by the
        // download policy here (SWARM_INIT_ALLOW_HTTP=1; a pin does the same),
        // but the token must not go with it.
        let url = "http://swarm.example.com:8080/bot_code";
        let (dir, cfg) = config_with_token("cleartext", url, &[("SWARM_INIT_ALLOW_HTTP", "1")]);
        let mut f = Fetcher::new(&cfg, None);
        let (sent, logs) = capture_logs(log::LevelFilter::Trace, || {
            (0..3).map(|_| f.token_for(&cfg.uri)).collect::<Vec<_>>()
        });
        assert!(
            sent.iter().all(Option::is_none),
            "token sent over plain http"
        );
        assert!(logs.iter().all(|(_, _, text)| !leaks(text)), "{logs:?}");
        let warnings: Vec<&String> = logs
            .iter()
            .filter(|(level, _, _)| *level == log::Level::Warn)
            .map(|(_, _, text)| text)
            .collect();
        assert_eq!(warnings.len(), 1, "{logs:?}");
        for needle in [
            TOKEN_HEADER,
            "swarm.example.com:8080",
            "unencrypted",
            "https://",
        ] {
            assert!(
                warnings[0].contains(needle),
                "{needle:?} missing: {}",
                warnings[0]
            );
        }
        // Withheld, it is still a secret the bot's environment is scrubbed of.
        assert_eq!(f.tokens.len(), 1);
        fs::remove_dir_all(dir).unwrap();

        for url in [
            "https://swarm.example.com/bot_code",
            "http://127.0.0.1:8080/bot_code",
        ] {
            let (dir, cfg) = config_with_token("sent", url, &[]);
            let mut f = Fetcher::new(&cfg, None);
            let (sent, logs) = capture_logs(log::LevelFilter::Trace, || f.token_for(&cfg.uri));
            assert_eq!(
                sent.map(|t| t.expose().to_string()).as_deref(),
                Some(SECRET)
            );
            assert!(
                logs.iter().all(|(level, _, _)| *level > log::Level::Warn),
                "{url}: {logs:?}"
            );
            fs::remove_dir_all(dir).unwrap();
        }
    }

    /// Reads one request from `listener`, answers "ok", returns the request.
    fn answer_once(listener: std::net::TcpListener) -> String {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut chunk = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed mid-request");
            request.extend_from_slice(&chunk[..n]);
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            .unwrap();
        String::from_utf8_lossy(&request).into_owned()
    }

    #[test]
    fn ureq_logging_at_debug_never_shows_the_token() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/bot_code", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || answer_once(listener));
        let (dir, cfg) = config_with_token("ureq-log", &url, &[]);
        let mut f = Fetcher::new(&cfg, None);
        // Debug is the highest level SWARM_INIT_LOG offers (checked below).
        let (body, logs) = capture_logs(log::LevelFilter::Debug, || {
            let token = f.token_for(&cfg.uri).unwrap();
            let response = f
                .agent
                .get(cfg.uri.clone())
                .header(TOKEN_HEADER, token.expose())
                .call()
                .unwrap();
            response.into_body().read_to_string().unwrap()
        });
        assert_eq!(body, "ok");
        let request = server.join().unwrap();
        assert!(
            request.contains(SECRET),
            "the token was not even sent: {request}"
        );
        let ureq_logs: Vec<&(log::Level, String, String)> = logs
            .iter()
            .filter(|(_, target, _)| target.starts_with("ureq"))
            .collect();
        assert!(
            ureq_logs
                .iter()
                .any(|(_, _, text)| text.contains("REDACTED")),
            "ureq logged no redacted request at debug (did its logging change?): {ureq_logs:?}"
        );
        assert!(logs.iter().all(|(_, _, text)| !leaks(text)), "{logs:?}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn log_level_never_goes_above_debug() {
        // ureq-proto dumps raw request bytes, token included, at trace: the
        // fetch relies on SWARM_INIT_LOG never selecting it.
        for value in [
            "trace", "TRACE", "Trace", " trace ", "5", "all", "debug", "info", "",
        ] {
            let settings = crate::settings::from_env(|name| {
                (name == "SWARM_INIT_LOG").then(|| value.to_string())
            });
            if let Ok(settings) = settings {
                assert!(
                    settings.log_level <= log::LevelFilter::Debug,
                    "SWARM_INIT_LOG={value:?} selects {}",
                    settings.log_level
                );
            }
        }
    }

    #[test]
    fn followers_are_released_however_the_attempt_ends() {
        // The attempt below ends without marking the tail: without the guard
        // the check thread would wait for bytes forever and the scope with it.
        let (done_tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (path, file) = tail_file("released");
            let tail = Tail::default();
            let started = std::thread::scope(|s| {
                let _abandon = AbandonOnDrop(&tail);
                let checker = spawn_follower(s, "check", || check_while_downloading(&file, &tail));
                (&file).write_all(b"PK\x03\x04").unwrap();
                tail.advance(4);
                checker.map(|_| ())
            });
            let _ = done_tx.send(started);
            let _ = fs::remove_file(path);
        });
        let started = done.recv_timeout(Duration::from_secs(10));
        assert_eq!(started, Ok(Ok(())), "the check thread was left waiting");
    }

    #[test]
    fn follower_failures_are_reported_not_swallowed() {
        let panicked: Result<u8, String> = std::thread::scope(|s| {
            join_follower(spawn_follower(s, "test", || panic!("boom")), "test")
        });
        assert_eq!(panicked, Err("the test thread panicked".to_string()));
        let failed_to_start: Result<u8, String> = join_follower(
            Err("cannot start the test thread: EAGAIN".to_string()),
            "test",
        );
        assert!(failed_to_start.unwrap_err().contains("cannot start"));
    }

    #[test]
    fn origins() {
        let u = |s: &str| s.parse::<Uri>().unwrap();
        assert!(same_origin(
            &u("https://H.example.com/a"),
            &u("https://h.example.com:443/b")
        ));
        assert!(same_origin(
            &u("http://127.0.0.1:80/a"),
            &u("http://127.0.0.1/b")
        ));
        assert!(!same_origin(&u("https://h/a"), &u("http://h/a")));
        assert!(!same_origin(&u("https://h/a"), &u("https://h:8443/a")));
        assert!(!same_origin(&u("https://h/a"), &u("https://evil/a")));
    }
}
