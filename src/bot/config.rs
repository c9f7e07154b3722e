//! Bot mode configuration: every environment variable of bot mode, its default,
//! and the checks that turn a bad value into one clear error line.
//!
//! Parsing reads through a lookup function so unit tests can feed a map instead
//! of the process environment. An empty value counts as unset (so `-e VAR=` in
//! `docker run` means "use the default"), except for `SWARM_URL`, which is
//! required.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use ureq::http::Uri;

pub const SWARM_URL: &str = "SWARM_URL";
pub const SWARM_DIR: &str = "SWARM_DIR";
pub const SWARM_BOT_USER: &str = "SWARM_BOT_USER";
pub const SWARM_PYTHON: &str = "SWARM_PYTHON";
pub const LUCI_MACHINE_TOKEN_FILE: &str = "LUCI_MACHINE_TOKEN_FILE";
pub const SWARM_BOT_SHA256: &str = "SWARM_BOT_SHA256";
pub const SWARM_BOT_VERSION: &str = "SWARM_BOT_VERSION";
pub const FETCH_ATTEMPTS: &str = "SWARM_INIT_FETCH_ATTEMPTS";
pub const FETCH_BACKOFF_MS: &str = "SWARM_INIT_FETCH_BACKOFF_MS";
pub const FETCH_TIMEOUT_SECONDS: &str = "SWARM_INIT_FETCH_TIMEOUT_SECONDS";
pub const FETCH_MAX_BYTES: &str = "SWARM_INIT_FETCH_MAX_BYTES";
pub const ALLOW_HTTP: &str = "SWARM_INIT_ALLOW_HTTP";
pub const HOOKS_DIR: &str = "SWARM_INIT_HOOKS_DIR";

pub const DEFAULT_DIR: &str = "/b/swarming";
pub const DEFAULT_BOT_USER: &str = "chrome-bot";
pub const DEFAULT_PYTHON: &str = "python3";
pub const DEFAULT_TOKEN_FILE: &str = "/var/lib/luci_machine_tokend/token.json";
pub const DEFAULT_ATTEMPTS: u32 = 10;
pub const DEFAULT_BACKOFF_MS: u64 = 1000;
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 60;
pub const DEFAULT_MAX_BYTES: u64 = 512 * 1024 * 1024;
pub const DEFAULT_HOOKS_DIR: &str = "/etc/swarm-init/pre-start.d";

const MAX_ATTEMPTS: u32 = 1000;
/// Waits are capped at 60 s anyway, so a larger first backoff means nothing.
const MAX_BACKOFF_MS: u64 = 60_000;
const MAX_TIMEOUT_SECONDS: u64 = 3600;

/// Everything bot mode reads from the environment, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// The bot code URL, as given (used in messages).
    pub url: String,
    /// The same URL, parsed; scheme is http or https and a host is present.
    pub uri: Uri,
    pub dir: PathBuf,
    pub bot_user: String,
    /// As given; resolved on PATH only by `boot` (fetch needs no Python).
    pub python: OsString,
    /// None when set to nothing: no token is ever sent.
    pub token_file: Option<PathBuf>,
    pub sha256_pin: Option<[u8; 32]>,
    pub bot_version: Option<[u8; 32]>,
    pub fetch_attempts: u32,
    pub backoff_initial: Duration,
    pub fetch_timeout: Duration,
    pub max_bytes: u64,
    pub allow_http: bool,
    pub hooks_dir: PathBuf,
}

/// All problems found in the environment, one line each.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config, ConfigErrors> {
        Config::from_lookup(|name| std::env::var_os(name))
    }

    /// Reads the configuration through `lookup` (the environment, or a test map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        // Empty counts as unset everywhere: `docker run -e VAR=` means "default".
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());

        let url = match get(SWARM_URL) {
            None => {
                errors.push(format!(
                    "{SWARM_URL} is not set: set it to the Swarming server's bot code URL, \
                     e.g. https://example.appspot.com/bot_code"
                ));
                None
            }
            Some(raw) => match text(SWARM_URL, &raw).and_then(|s| parse_url(&s)) {
                Ok(parsed) => Some(parsed),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
        };

        let dir = match get(SWARM_DIR) {
            None => PathBuf::from(DEFAULT_DIR),
            Some(raw) => collect(&mut errors, parse_dir(SWARM_DIR, &raw, true))
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR)),
        };
        let hooks_dir = match get(HOOKS_DIR) {
            None => PathBuf::from(DEFAULT_HOOKS_DIR),
            Some(raw) => collect(&mut errors, parse_dir(HOOKS_DIR, &raw, false))
                .unwrap_or_else(|| PathBuf::from(DEFAULT_HOOKS_DIR)),
        };
        let bot_user = match get(SWARM_BOT_USER) {
            None => DEFAULT_BOT_USER.to_string(),
            Some(raw) => collect(&mut errors, text(SWARM_BOT_USER, &raw).and_then(parse_user))
                .unwrap_or_default(),
        };
        let python = get(SWARM_PYTHON).unwrap_or_else(|| OsString::from(DEFAULT_PYTHON));
        let token_file = match lookup(LUCI_MACHINE_TOKEN_FILE) {
            None => Some(PathBuf::from(DEFAULT_TOKEN_FILE)),
            // Set but empty: the operator asks for no token at all.
            Some(v) if v.is_empty() => None,
            Some(v) => Some(PathBuf::from(v)),
        };
        let sha256_pin = get(SWARM_BOT_SHA256).and_then(|raw| {
            collect(
                &mut errors,
                text(SWARM_BOT_SHA256, &raw).and_then(|s| parse_sha256(SWARM_BOT_SHA256, &s)),
            )
        });
        let bot_version = get(SWARM_BOT_VERSION).and_then(|raw| {
            collect(
                &mut errors,
                text(SWARM_BOT_VERSION, &raw).and_then(|s| parse_sha256(SWARM_BOT_VERSION, &s)),
            )
        });
        let fetch_attempts = number(&mut errors, &get, FETCH_ATTEMPTS, 1, MAX_ATTEMPTS.into())
            .map_or(DEFAULT_ATTEMPTS, |n| {
                u32::try_from(n).unwrap_or(DEFAULT_ATTEMPTS)
            });
        let backoff_ms = number(&mut errors, &get, FETCH_BACKOFF_MS, 0, MAX_BACKOFF_MS)
            .unwrap_or(DEFAULT_BACKOFF_MS);
        let timeout_s = number(
            &mut errors,
            &get,
            FETCH_TIMEOUT_SECONDS,
            1,
            MAX_TIMEOUT_SECONDS,
        )
        .unwrap_or(DEFAULT_TIMEOUT_SECONDS);
        let max_bytes = match get(FETCH_MAX_BYTES) {
            None => DEFAULT_MAX_BYTES,
            Some(raw) => collect(
                &mut errors,
                text(FETCH_MAX_BYTES, &raw).and_then(|s| parse_size(&s)),
            )
            .unwrap_or(DEFAULT_MAX_BYTES),
        };
        let allow_http = match get(ALLOW_HTTP) {
            None => false,
            Some(raw) => collect(
                &mut errors,
                text(ALLOW_HTTP, &raw).and_then(|s| parse_bool(ALLOW_HTTP, &s)),
            )
            .unwrap_or(false),
        };

        if let Some((url, uri)) = &url {
            if !http_allowed(uri, allow_http, sha256_pin.is_some()) {
                errors.push(plain_http_refused(ALLOW_HTTP_SUBJECT, url));
            }
        }

        match url {
            Some((url, uri)) if errors.is_empty() => Ok(Config {
                url,
                uri,
                dir,
                bot_user,
                python,
                token_file,
                sha256_pin,
                bot_version,
                fetch_attempts,
                backoff_initial: Duration::from_millis(backoff_ms),
                fetch_timeout: Duration::from_secs(timeout_s),
                max_bytes,
                allow_http,
                hooks_dir,
            }),
            _ => Err(ConfigErrors(errors)),
        }
    }
}

const ALLOW_HTTP_SUBJECT: &str = SWARM_URL;

/// The message for a plain http:// URL that the policy refuses; `subject` says
/// where the URL came from (the variable, or a redirect).
pub fn plain_http_refused(subject: &str, url: &str) -> String {
    format!(
        "{subject}={url:?}: plain http:// is only allowed for loopback hosts; use https://, \
         or pin the zip with {SWARM_BOT_SHA256}, or set {ALLOW_HTTP}=1"
    )
}

/// Whether fetching `uri` is allowed: https always; plain http only for
/// loopback hosts, unless explicitly allowed or the zip is pinned by SHA-256
/// (a pin makes tampering in transit harmless).
pub fn http_allowed(uri: &Uri, allow_http: bool, pinned: bool) -> bool {
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => true,
        Some(s) if s.eq_ignore_ascii_case("http") => {
            allow_http || pinned || uri.host().is_some_and(is_loopback_host)
        }
        _ => false,
    }
}

/// `localhost` or a loopback IP literal (brackets around IPv6 allowed).
pub fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

fn collect<T>(errors: &mut Vec<String>, result: Result<T, String>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

fn text(name: &str, raw: &OsStr) -> Result<String, String> {
    raw.to_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{name}={raw:?}: not valid UTF-8; set it to plain text"))
}

fn number(
    errors: &mut Vec<String>,
    get: &dyn Fn(&str) -> Option<OsString>,
    name: &str,
    min: u64,
    max: u64,
) -> Option<u64> {
    let raw = get(name)?;
    let parsed = text(name, &raw).and_then(|s| match s.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{name}={s:?}: not a whole number from {min} to {max}"
        )),
    });
    collect(errors, parsed)
}

fn parse_url(s: &str) -> Result<(String, Uri), String> {
    let bad = || {
        format!(
            "{SWARM_URL}={s:?}: not an http:// or https:// URL with a host; set it to the \
             Swarming server's bot code URL, e.g. https://example.appspot.com/bot_code"
        )
    };
    let uri: Uri = s.parse().map_err(|_| bad())?;
    let scheme_ok = uri
        .scheme_str()
        .is_some_and(|sc| sc.eq_ignore_ascii_case("http") || sc.eq_ignore_ascii_case("https"));
    if !scheme_ok || uri.host().is_none_or(str::is_empty) {
        return Err(bad());
    }
    Ok((s.to_string(), uri))
}

fn parse_dir(name: &str, raw: &OsStr, not_root: bool) -> Result<PathBuf, String> {
    let path = Path::new(raw);
    if !path.is_absolute() {
        return Err(format!(
            "{name}={raw:?}: not an absolute path; use a path starting with /"
        ));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "{name}={raw:?}: contains \"..\"; use a plain absolute path"
        ));
    }
    // The bot directory is chowned to the bot user: never the root directory.
    if not_root && path.parent().is_none() {
        return Err(format!(
            "{name}={raw:?}: must be a directory below /, e.g. {DEFAULT_DIR}"
        ));
    }
    Ok(path.to_path_buf())
}

fn parse_user(s: String) -> Result<String, String> {
    let ok = s.len() <= 256
        && !s.starts_with('-')
        && s.chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != ':' && c != '/');
    if ok {
        Ok(s)
    } else {
        Err(format!(
            "{SWARM_BOT_USER}={s:?}: not a user name; use a name from /etc/passwd \
             (no ':', '/', spaces or control characters)"
        ))
    }
}

/// 64 hexadecimal digits, either case.
pub fn parse_sha256(name: &str, s: &str) -> Result<[u8; 32], String> {
    let t = s.trim();
    let bad = || format!("{name}={s:?}: not a SHA-256 digest; use 64 hexadecimal digits");
    if t.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, pair) in t.as_bytes().chunks(2).enumerate() {
        let hi = hex_digit(pair[0]).ok_or_else(bad)?;
        let lo = hex_digit(pair[1]).ok_or_else(bad)?;
        out[i] = (hi << 4) | lo;
    }
    Ok(out)
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Lower-case hex of a digest, for messages and `fetch` output.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Bytes as a whole number, optionally with a KiB, MiB or GiB suffix.
fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{FETCH_MAX_BYTES}={s:?}: not a size; use a whole number of bytes from 1, \
             optionally followed by KiB, MiB or GiB (e.g. 512MiB)"
        )
    };
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    match n.checked_mul(multiplier) {
        Some(v) if v >= 1 => Ok(v),
        _ => Err(bad()),
    }
}

fn parse_bool(name: &str, s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{name}={s:?}: not a boolean; use 1 or 0")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const URL: &str = "https://swarm.example.com/bot_code";
    const PIN: &str = "0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789abcdef";

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    fn with_url(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let mut all = vec![(SWARM_URL, URL)];
        all.extend_from_slice(vars);
        parse(&all)
    }

    /// The single error line, which must name the variable and the bad value.
    fn error_for(vars: &[(&str, &str)], name: &str, value: &str) -> String {
        let errors = with_url(vars).unwrap_err().0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        let line = &errors[0];
        assert!(line.contains(name), "{line}");
        assert!(line.contains(value), "{line}");
        assert!(!line.contains('\n'), "{line}");
        line.clone()
    }

    #[test]
    fn defaults() {
        let c = with_url(&[]).unwrap();
        assert_eq!(c.url, URL);
        assert_eq!(c.dir, PathBuf::from("/b/swarming"));
        assert_eq!(c.bot_user, "chrome-bot");
        assert_eq!(c.python, OsString::from("python3"));
        assert_eq!(
            c.token_file,
            Some(PathBuf::from("/var/lib/luci_machine_tokend/token.json"))
        );
        assert_eq!(c.sha256_pin, None);
        assert_eq!(c.bot_version, None);
        assert_eq!(c.fetch_attempts, 10);
        assert_eq!(c.backoff_initial, Duration::from_millis(1000));
        assert_eq!(c.fetch_timeout, Duration::from_secs(60));
        assert_eq!(c.max_bytes, 512 * 1024 * 1024);
        assert!(!c.allow_http);
        assert_eq!(c.hooks_dir, PathBuf::from("/etc/swarm-init/pre-start.d"));
    }

    #[test]
    fn empty_values_mean_default() {
        let c = with_url(&[
            (SWARM_DIR, ""),
            (SWARM_BOT_USER, ""),
            (FETCH_ATTEMPTS, ""),
            (FETCH_MAX_BYTES, ""),
            (SWARM_BOT_SHA256, ""),
        ])
        .unwrap();
        assert_eq!(c.dir, PathBuf::from("/b/swarming"));
        assert_eq!(c.bot_user, "chrome-bot");
        assert_eq!(c.fetch_attempts, 10);
        assert_eq!(c.sha256_pin, None);
    }

    #[test]
    fn url_required_and_checked() {
        let e = parse(&[]).unwrap_err().0;
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("SWARM_URL is not set"), "{e:?}");
        let e = parse(&[(SWARM_URL, "")]).unwrap_err().0;
        assert!(e[0].contains("SWARM_URL is not set"), "{e:?}");
        for bad in [
            "ftp://h/x",
            "not a url",
            "/bot_code",
            "https://",
            "http:///x",
        ] {
            let e = parse(&[(SWARM_URL, bad)]).unwrap_err().0;
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
            assert!(
                e[0].contains("SWARM_URL") && e[0].contains("https://"),
                "{e:?}"
            );
        }
        let c = parse(&[(SWARM_URL, "https://h:8443/a/b?c=d")]).unwrap();
        assert_eq!(c.uri.port_u16(), Some(8443));
    }

    #[test]
    fn plain_http_policy() {
        for ok in [
            "http://127.0.0.1:8080/bot_code",
            "http://localhost/x",
            "http://[::1]:1/x",
            "http://127.1.2.3/",
        ] {
            assert!(parse(&[(SWARM_URL, ok)]).is_ok(), "{ok}");
        }
        let line = parse(&[(SWARM_URL, "http://swarm.example.com/bot_code")])
            .unwrap_err()
            .0;
        assert_eq!(line.len(), 1);
        assert!(
            line[0].contains("SWARM_INIT_ALLOW_HTTP=1") && line[0].contains("SWARM_BOT_SHA256"),
            "{line:?}"
        );
        assert!(parse(&[(SWARM_URL, "http://swarm.example.com/x"), (ALLOW_HTTP, "1")]).is_ok());
        assert!(parse(&[
            (SWARM_URL, "http://swarm.example.com/x"),
            (SWARM_BOT_SHA256, PIN)
        ])
        .is_ok());
        assert!(parse(&[(SWARM_URL, "http://10.0.0.1/x"), (ALLOW_HTTP, "0")]).is_err());
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback_host("LOCALHOST"));
        assert!(is_loopback_host("127.0.0.1"));
        assert!(is_loopback_host("[::1]"));
        assert!(is_loopback_host("[::ffff:127.0.0.1]"));
        assert!(!is_loopback_host("localhost.example.com"));
        assert!(!is_loopback_host("10.0.0.1"));
        assert!(!is_loopback_host("[::2]"));
    }

    #[test]
    fn dirs() {
        assert_eq!(
            with_url(&[(SWARM_DIR, "/tmp/x/y")]).unwrap().dir,
            PathBuf::from("/tmp/x/y")
        );
        error_for(&[(SWARM_DIR, "relative/dir")], SWARM_DIR, "relative/dir");
        error_for(&[(SWARM_DIR, "/")], SWARM_DIR, "\"/\"");
        error_for(&[(SWARM_DIR, "/b/../etc")], SWARM_DIR, "/b/../etc");
        assert_eq!(
            with_url(&[(HOOKS_DIR, "/h")]).unwrap().hooks_dir,
            PathBuf::from("/h")
        );
        error_for(&[(HOOKS_DIR, "hooks")], HOOKS_DIR, "hooks");
    }

    #[test]
    fn user() {
        assert_eq!(
            with_url(&[(SWARM_BOT_USER, "nobody")]).unwrap().bot_user,
            "nobody"
        );
        for bad in ["a:b", "a b", "-x", "a/b"] {
            error_for(&[(SWARM_BOT_USER, bad)], SWARM_BOT_USER, bad);
        }
    }

    #[test]
    fn python_and_token_file() {
        let c = with_url(&[
            (SWARM_PYTHON, "/usr/bin/python3.11"),
            (LUCI_MACHINE_TOKEN_FILE, "/t.json"),
        ])
        .unwrap();
        assert_eq!(c.python, OsString::from("/usr/bin/python3.11"));
        assert_eq!(c.token_file, Some(PathBuf::from("/t.json")));
        assert_eq!(
            with_url(&[(LUCI_MACHINE_TOKEN_FILE, "")])
                .unwrap()
                .token_file,
            None
        );
    }

    #[test]
    fn digests() {
        let c = with_url(&[
            (SWARM_BOT_SHA256, PIN),
            (SWARM_BOT_VERSION, &PIN.to_lowercase()),
        ])
        .unwrap();
        assert_eq!(hex(&c.sha256_pin.unwrap()), PIN.to_lowercase());
        assert_eq!(c.bot_version, c.sha256_pin);
        for name in [SWARM_BOT_SHA256, SWARM_BOT_VERSION] {
            let line = error_for(&[(name, "abc")], name, "abc");
            assert!(line.contains("64 hexadecimal digits"), "{line}");
            let bad = format!("{}zz", &PIN[..62]);
            error_for(&[(name, &bad)], name, &bad);
        }
    }

    #[test]
    fn numbers() {
        let c = with_url(&[
            (FETCH_ATTEMPTS, "3"),
            (FETCH_BACKOFF_MS, "0"),
            (FETCH_TIMEOUT_SECONDS, " 5 "),
        ])
        .unwrap();
        assert_eq!(c.fetch_attempts, 3);
        assert_eq!(c.backoff_initial, Duration::ZERO);
        assert_eq!(c.fetch_timeout, Duration::from_secs(5));
        for (name, bad) in [
            (FETCH_ATTEMPTS, "0"),
            (FETCH_ATTEMPTS, "1001"),
            (FETCH_ATTEMPTS, "-1"),
            (FETCH_ATTEMPTS, "ten"),
            (FETCH_BACKOFF_MS, "60001"),
            (FETCH_BACKOFF_MS, "1.5"),
            (FETCH_TIMEOUT_SECONDS, "0"),
            (FETCH_TIMEOUT_SECONDS, "99999999999999999999999"),
        ] {
            let line = error_for(&[(name, bad)], name, bad);
            assert!(line.contains("whole number from"), "{line}");
        }
    }

    #[test]
    fn sizes() {
        for (s, v) in [
            ("1", 1),
            ("1000", 1000),
            ("64MiB", 64 << 20),
            ("2 GiB", 2 << 30),
            ("1kib", 1024),
        ] {
            assert_eq!(
                with_url(&[(FETCH_MAX_BYTES, s)]).unwrap().max_bytes,
                v,
                "{s}"
            );
        }
        for bad in ["0", "MiB", "12MB", "-5", "99999999999999GiB", "1.5MiB"] {
            error_for(&[(FETCH_MAX_BYTES, bad)], FETCH_MAX_BYTES, bad);
        }
    }

    #[test]
    fn booleans() {
        for (s, v) in [
            ("1", true),
            ("true", true),
            ("YES", true),
            ("0", false),
            ("off", false),
        ] {
            assert_eq!(with_url(&[(ALLOW_HTTP, s)]).unwrap().allow_http, v, "{s}");
        }
        error_for(&[(ALLOW_HTTP, "maybe")], ALLOW_HTTP, "maybe");
    }

    #[test]
    fn every_error_is_reported() {
        let e = parse(&[(FETCH_ATTEMPTS, "x"), (FETCH_MAX_BYTES, "y")])
            .unwrap_err()
            .0;
        assert_eq!(e.len(), 3, "{e:?}");
    }

    #[test]
    fn non_utf8_is_an_error_not_a_panic() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![0xff, 0xfe]);
        let r = Config::from_lookup(|name| match name {
            SWARM_URL => Some(OsString::from(URL)),
            FETCH_ATTEMPTS => Some(bad.clone()),
            _ => None,
        });
        let e = r.unwrap_err().0;
        assert!(
            e[0].contains(FETCH_ATTEMPTS) && e[0].contains("UTF-8"),
            "{e:?}"
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(values in proptest::collection::vec(".*", 13)) {
            let names = [
                SWARM_URL, SWARM_DIR, SWARM_BOT_USER, SWARM_PYTHON, LUCI_MACHINE_TOKEN_FILE,
                SWARM_BOT_SHA256, SWARM_BOT_VERSION, FETCH_ATTEMPTS, FETCH_BACKOFF_MS,
                FETCH_TIMEOUT_SECONDS, FETCH_MAX_BYTES, ALLOW_HTTP, HOOKS_DIR,
            ];
            let map: HashMap<&str, OsString> =
                names.iter().copied().zip(values.iter().map(OsString::from)).collect();
            match Config::from_lookup(|n| map.get(n).cloned()) {
                Ok(c) => proptest::prop_assert!(c.fetch_attempts >= 1),
                Err(e) => {
                    proptest::prop_assert!(!e.0.is_empty());
                    for line in e.0 {
                        proptest::prop_assert!(!line.contains('\n'), "{}", line);
                    }
                }
            }
        }
    }
}
