//! Bot mode, end to end: swarm-init runs as PID 1 of a fresh PID namespace,
//! fetches a fake bot from a fake Swarming server on loopback, verifies it and
//! starts it as `nobody`. Each fault the server can inject has a test that
//! fails if swarm-init stops handling it; the fake bot reports how it was
//! started (ids, groups, cwd, argv, environment) and can wait for SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fake_bot::{
    bot_version, corrupt_crc_zip, fake_bot_zip, fake_bot_zip_variant, no_main_zip, sha256_hex,
    term_signal, BotReport,
};
use common::fake_swarming::{FakeSwarming, Reply, Request};
use common::{require_root_and_unshare, swarm_init_bin, Pid1, TempDir};
use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

// Exit codes from src/exit_code.rs.
const VERIFICATION: i32 = 65;
const FETCH: i32 = 69;
const HOOK: i32 = 70;
const CONFIG: i32 = 78;
/// SWARM_INIT_SHUTDOWN_EXIT_CODE's default: what a shutdown request ends with.
const SHUTDOWN: i32 = 10;
/// Redirects one attempt follows (`MAX_REDIRECTS` in src/bot/fetch.rs).
const MAX_REDIRECTS: usize = 10;

/// What the fake bot exits with when a test expects it to run: distinct from
/// every code swarm-init chooses, so it proves the bot ran and its code came
/// through.
const BOT_CODE: i32 = 42;

/// Generous bound for a whole run; runs normally take well under a second.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A Python 3 that `nobody` can run (the one on root's PATH may live under
/// /root, which `nobody` cannot enter). None, after [`common::require`] has
/// failed the test (CI) or said why it skips, when there is none.
fn python() -> Option<String> {
    const CANDIDATES: [&str; 3] = ["/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"];
    let found = CANDIDATES
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| p.to_string());
    let present = common::require("python3 (to run the fake bot)", || match found {
        Some(_) => Ok(()),
        None => Err(format!(
            "none of {CANDIDATES:?} exists (apt-get install python3)"
        )),
    });
    if present {
        found
    } else {
        None
    }
}

/// The passwd entry of a user: uid, gid, home, shell.
struct User {
    uid: u32,
    gid: u32,
    home: String,
    shell: String,
}

fn user(name: &str) -> User {
    let text = fs::read_to_string("/etc/passwd").unwrap();
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 7 && f[0] == name {
            return User {
                uid: f[2].parse().unwrap(),
                gid: f[3].parse().unwrap(),
                home: f[5].to_string(),
                shell: f[6].to_string(),
            };
        }
    }
    panic!("no user {name} in /etc/passwd");
}

/// The groups `initgroups(name, gid)` gives, sorted.
fn expected_groups(name: &str, gid: u32) -> Vec<i64> {
    let cname = CString::new(name).unwrap();
    let mut groups = vec![0 as libc::gid_t; 256];
    let mut n = groups.len() as libc::c_int;
    // SAFETY: the buffer holds n entries; n is updated to the count.
    let rc = unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
    assert!(rc >= 0, "getgrouplist({name})");
    let mut out: Vec<i64> = groups[..n as usize].iter().map(|&g| i64::from(g)).collect();
    out.sort();
    out.dedup();
    out
}

// ---------------------------------------------------------------- the case

/// One bot-mode run: a scratch dir, a fake server and the environment for
/// swarm-init. Layout of the scratch dir:
///   b/swarming/   SWARM_DIR (created by swarm-init)
///   report/       where the fake bot writes (mode 0777: it runs as nobody)
///   hooks/        SWARM_INIT_HOOKS_DIR (empty unless a test adds hooks)
///   run/          SWARM_INIT_RUN_DIR (where a shutdown request would be)
struct Case {
    dir: TempDir,
    server: FakeSwarming,
    env: Vec<(String, String)>,
}

/// How a run ended.
struct Outcome {
    code: i32,
    log: String,
    elapsed: Duration,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit code {} after {:?}; swarm-init's log:\n{}",
            self.code, self.elapsed, self.log
        )
    }
}

impl Case {
    /// None (after printing why) when root, unshare or python3 is missing
    /// outside CI.
    fn new() -> Option<Case> {
        Case::with_zip(fake_bot_zip())
    }

    fn with_zip(zip: Vec<u8>) -> Option<Case> {
        if !require_root_and_unshare() {
            return None;
        }
        let python = python()?;
        let dir = TempDir::new("bot");
        common::mkdir_mode(&dir.join("b"), 0o755);
        common::mkdir_mode(&dir.join("report"), 0o777);
        common::mkdir_mode(&dir.join("hooks"), 0o755);
        common::mkdir_mode(&dir.join("run"), 0o755);
        let server = FakeSwarming::with_zip(zip);
        let p = |rel: &str| dir.path().join(rel).display().to_string();
        let env = vec![
            ("SWARM_URL", server.url()),
            ("SWARM_DIR", p("b/swarming")),
            ("SWARM_BOT_USER", "nobody".to_string()),
            ("SWARM_PYTHON", python),
            ("LUCI_MACHINE_TOKEN_FILE", p("no-token.json")),
            ("SWARM_INIT_HOOKS_DIR", p("hooks")),
            ("SWARM_INIT_FETCH_ATTEMPTS", "3".to_string()),
            ("SWARM_INIT_FETCH_BACKOFF_MS", "50".to_string()),
            ("SWARM_INIT_FETCH_TIMEOUT_SECONDS", "5".to_string()),
            ("SWARM_INIT_GRACE_SECONDS", "2".to_string()),
            ("SWARM_INIT_LOG", "debug".to_string()),
            // Never /run/swarm-init on this machine: swarm-init deletes the
            // request file it finds there when it gets SIGUSR1.
            ("SWARM_INIT_RUN_DIR", p("run")),
            ("FAKE_BOT_REPORT", p("report/report.json")),
            ("FAKE_BOT_EXIT_CODE", BOT_CODE.to_string()),
        ];
        let env = env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        Some(Case { dir, server, env })
    }

    fn set(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    fn unset(&mut self, key: &str) -> &mut Self {
        self.env.retain(|(k, _)| k != key);
        self
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Creates a directory in the scratch dir with exactly `mode`.
    fn mkdir(&self, rel: &str, mode: u32) -> PathBuf {
        common::mkdir_mode(&self.path(rel), mode)
    }

    /// Writes a file in the scratch dir with exactly `mode`.
    fn write(&self, rel: &str, data: &[u8], mode: u32) -> PathBuf {
        common::write_mode(&self.path(rel), data, mode)
    }

    fn swarm_dir(&self) -> PathBuf {
        self.path("b/swarming")
    }

    fn report_path(&self) -> PathBuf {
        self.path("report/report.json")
    }

    fn marker(&self, suffix: &str) -> PathBuf {
        self.path(&format!("report/report.json.{suffix}"))
    }

    fn report(&self) -> Option<BotReport> {
        BotReport::read(&self.report_path())
    }

    fn spawn(&self) -> Pid1 {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Pid1::spawn(&[], &env)
    }

    /// Runs swarm-init in bot mode to the end.
    fn run(&self) -> Outcome {
        let start = Instant::now();
        let mut pid1 = self.spawn();
        let code = pid1.exit_code(RUN_TIMEOUT);
        Outcome {
            code,
            log: pid1.stderr_text(),
            elapsed: start.elapsed(),
        }
    }

    /// Adds an executable (or not) hook script.
    fn hook(&self, name: &str, script: &str, mode: u32) {
        self.write(&format!("hooks/{name}"), script.as_bytes(), mode);
    }

    /// The bot ran (report present), exited with BOT_CODE, and the zip in
    /// SWARM_DIR is exactly `zip`.
    fn assert_ran(&self, out: &Outcome, zip: &[u8]) -> BotReport {
        let report = self
            .report()
            .unwrap_or_else(|| panic!("the bot did not run; {out}"));
        assert_eq!(
            out.code, BOT_CODE,
            "the bot's exit code must be swarm-init's; {out}"
        );
        let saved = fs::read(self.swarm_dir().join("swarming_bot.zip"))
            .unwrap_or_else(|e| panic!("SWARM_DIR/swarming_bot.zip: {e}; {out}"));
        assert!(
            saved == zip,
            "swarming_bot.zip differs from the served zip; {out}"
        );
        report
    }

    /// The bot never ran, and no swarming_bot*.zip (the final file or a
    /// partial download) was left in SWARM_DIR.
    fn assert_not_run(&self, out: &Outcome) {
        assert!(
            self.report().is_none(),
            "the bot ran but must not have; {out}"
        );
        let left: Vec<String> = fs::read_dir(self.swarm_dir())
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("swarming_bot") && n.ends_with(".zip"))
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "left behind in SWARM_DIR: {left:?}; {out}");
    }

    fn attempts(&self) -> Vec<Request> {
        self.server.attempts()
    }
}

/// Secs between the end of attempt `i`'s answer and the start of attempt i+1.
fn gap_after(attempts: &[Request], i: usize) -> Duration {
    let finished = attempts[i].finished.expect("attempt answered");
    attempts[i + 1].received.saturating_duration_since(finished)
}

// ------------------------------------------------------- the fakes themselves

/// The fakes are only worth something if they are right: the bot version and
/// SHA-256 computed here must match Python's zipfile and hashlib, Python
/// must see the corrupt zip's bad CRC, and the fake bot must run and report.
#[test]
fn fakes_agree_with_python() {
    let Some(python) = python() else { return };
    let dir = TempDir::new("fakes");
    let script = r#"
import hashlib, sys, zipfile
def version(path):
    h = hashlib.sha256()
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            data = z.read(info.filename)
            for part in (str(len(info.filename)).encode(), info.filename.encode(),
                         str(len(data)).encode(), data):
                h.update(part)
    return h.hexdigest()
good, corrupt = sys.argv[1], sys.argv[2]
print(version(good), hashlib.sha256(open(good, "rb").read()).hexdigest())
print(zipfile.ZipFile(corrupt).testzip())
"#;
    let good = fake_bot_zip_variant("python");
    let good_path = common::write_mode(&dir.join("good.zip"), &good, 0o644);
    let corrupt_path = common::write_mode(&dir.join("corrupt.zip"), &corrupt_crc_zip(), 0o644);
    let out = Command::new(&python)
        .args(["-c", script])
        .arg(&good_path)
        .arg(&corrupt_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!("{} {}", bot_version(&good), sha256_hex(&good))
    );
    assert_eq!(
        lines.next().unwrap(),
        "payload.txt",
        "Python must see the bad CRC"
    );
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        sha256_hex(&[b'a'; 1000]),
        "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"
    );

    // The fake bot runs from its zip, reports, and honours the exit code.
    let report = dir.path().join("report.json");
    let status = Command::new(&python)
        .arg(&good_path)
        .arg("start_bot")
        .current_dir(dir.path())
        .env("FAKE_BOT_REPORT", &report)
        .env("FAKE_BOT_EXIT_CODE", "7")
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(7));
    let r = BotReport::read(&report).expect("report");
    assert_eq!(
        r.argv,
        vec![good_path.display().to_string(), "start_bot".into()]
    );
    assert_eq!(r.cmdline[0], python);
    assert!(dir.path().join("report.json.ready").exists());

    // Python cannot run the zip without __main__.py at the root.
    let no_main = common::write_mode(&dir.join("no_main.zip"), &no_main_zip(), 0o644);
    let status = Command::new(&python)
        .arg(&no_main)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success());
}

/// A raw HTTP/1.1 GET; returns status, headers and body.
fn raw_get(server: &FakeSwarming, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nX-Luci-Machine-Token: t0k\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn fake_server_redirects_serves_records_and_injects_faults() {
    let zip = fake_bot_zip();
    let server = FakeSwarming::with_zip(zip.clone());
    server.push(Reply::Status {
        code: 503,
        retry_after: Some("2".into()),
    });
    let (status, headers, _) = raw_get(&server, "/bot_code");
    assert_eq!(status, 503);
    assert_eq!(header(&headers, "retry-after"), Some("2"));

    let (status, headers, _) = raw_get(&server, "/bot_code");
    assert_eq!(status, 302);
    let location = header(&headers, "location").unwrap().to_string();
    assert_eq!(
        location,
        format!("/swarming/api/v1/bot/bot_code/{}", bot_version(&zip))
    );
    let (status, headers, body) = raw_get(&server, &location);
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        header(&headers, "content-disposition"),
        Some("attachment; filename=swarming_bot.zip")
    );
    assert!(body == zip);

    server.push(Reply::Truncated { sent: 100 });
    let (_, headers, _) = raw_get(&server, "/bot_code");
    let (status, headers2, body) = raw_get(&server, header(&headers, "location").unwrap());
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers2, "content-length"),
        Some(&*zip.len().to_string())
    );
    assert_eq!(body.len(), 100);

    let reqs = server.requests();
    assert_eq!(reqs.len(), 5);
    assert_eq!(server.attempts().len(), 3);
    assert!(reqs
        .iter()
        .all(|r| r.header("x-luci-machine-token") == Some("t0k")));
    assert!(server.wait_for_answered_attempts(3, Duration::from_secs(5)));

    // A held connection does not keep the server (or the test) alive.
    server.push(Reply::NeverAnswer);
    let held = TcpStream::connect(server.addr()).unwrap();
    (&held)
        .write_all(b"GET /bot_code HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(server.wait_for_attempts(4, Duration::from_secs(5)));
    let start = Instant::now();
    drop(server);
    assert!(start.elapsed() < Duration::from_secs(3));
}

// ----------------------------------------------------------------- recovery

#[test]
fn retries_after_503_and_502_then_runs_the_bot() {
    let Some(case) = Case::new() else { return };
    case.server
        .push(Reply::Status {
            code: 503,
            retry_after: None,
        })
        .push(Reply::StatusAtZip {
            code: 502,
            retry_after: None,
        });
    let out = case.run();
    case.assert_ran(&out, &case.server.zip());
    assert_eq!(case.attempts().len(), 3, "{out}");
}

#[test]
fn retries_after_connection_reset_mid_body() {
    let Some(case) = Case::new() else { return };
    case.server.push(Reply::ResetMidBody { sent: 1000 });
    let out = case.run();
    case.assert_ran(&out, &case.server.zip());
    assert_eq!(case.attempts().len(), 2, "{out}");
}

#[test]
fn retries_after_truncated_body() {
    let Some(case) = Case::new() else { return };
    case.server.push(Reply::Truncated { sent: 1000 });
    let out = case.run();
    case.assert_ran(&out, &case.server.zip());
    assert_eq!(case.attempts().len(), 2, "{out}");
}

#[test]
fn truncated_body_every_time_is_never_run() {
    let Some(mut case) = Case::new() else { return };
    case.set("SWARM_INIT_FETCH_ATTEMPTS", "2");
    case.server.set_default(Reply::Truncated { sent: 1000 });
    let out = case.run();
    assert_eq!(out.code, FETCH, "{out}");
    case.assert_not_run(&out);
    assert_eq!(case.attempts().len(), 2, "{out}");
}

#[test]
fn html_page_with_200_is_never_run_and_is_retried() {
    let Some(case) = Case::new() else { return };
    case.server.push(Reply::Html);
    let out = case.run();
    case.assert_ran(&out, &case.server.zip());
    assert_eq!(case.attempts().len(), 2, "{out}");
}

#[test]
fn html_page_every_time_fails_without_running_it() {
    let Some(mut case) = Case::new() else { return };
    case.set("SWARM_INIT_FETCH_ATTEMPTS", "2");
    case.server.set_default(Reply::Html);
    let out = case.run();
    // The page arrives whole with a 200: the download succeeds and only
    // verification can refuse it.
    assert_eq!(out.code, VERIFICATION, "{out}");
    case.assert_not_run(&out);
    assert_eq!(case.attempts().len(), 2, "{out}");
}

#[test]
fn stalled_body_times_out_and_is_retried() {
    let Some(mut case) = Case::new() else { return };
    case.set("SWARM_INIT_FETCH_TIMEOUT_SECONDS", "1");
    case.server.push(Reply::Stall {
        sent: 1000,
        stall: Duration::from_secs(30),
    });
    let out = case.run();
    case.assert_ran(&out, &case.server.zip());
    let attempts = case.attempts();
    assert_eq!(attempts.len(), 2, "{out}");
    let gap = attempts[1].received - attempts[0].received;
    assert!(
        gap < Duration::from_secs(5),
        "a 1 s read timeout took {gap:?} to give up on a stalled body; {out}"
    );
}

#[test]
fn server_that_never_answers_times_out() {
    let Some(mut case) = Case::new() else { return };
    case.set("SWARM_INIT_FETCH_TIMEOUT_SECONDS", "1")
        .set("SWARM_INIT_FETCH_ATTEMPTS", "2");
    case.server.set_default(Reply::NeverAnswer);
    let out = case.run();
    assert_eq!(out.code, FETCH, "{out}");
    case.assert_not_run(&out);
    assert_eq!(case.attempts().len(), 2, "{out}");
    assert!(
        out.elapsed < Duration::from_secs(10),
        "two attempts with a 1 s timeout took {:?}; {out}",
        out.elapsed
    );
}

#[test]
fn redirect_loop_fails_after_a_bounded_number_of_requests() {
    let Some(mut case) = Case::new() else { return };
    case.set("SWARM_INIT_FETCH_ATTEMPTS", "2");
    case.server.set_default(Reply::RedirectLoop);
    let out = case.run();
    assert_eq!(out.code, FETCH, "{out}");
    case.assert_not_run(&out);
    // A loop is not retried: one attempt, which follows MAX_REDIRECTS
    // redirects and gives up on the next one (src/bot/fetch.rs).
    assert_eq!(
        case.attempts().len(),
        1,
        "a redirect loop is retried; {out}"
    );
    assert_eq!(
        case.server.requests().len(),
        MAX_REDIRECTS + 1,
        "requests in one attempt: /bot_code and the {MAX_REDIRECTS} redirects followed; {out}"
    );
}

// ------------------------------------------------------------- size limits

#[test]
fn oversized_body_with_content_length_is_refused() {
    let Some(mut case) = Case::new() else { return };
    case.set("SWARM_INIT_FETCH_MAX_BYTES", "1048576")
        .set("SWARM_INIT_FETCH_ATTEMPTS", "2");
    case.server.set_default(Reply::Oversized {
        len: 4 << 20,
        content_length: true,
    });
    let out = case.run();
    assert_eq!(out.code, FETCH, "{out}");
    case.assert_not_run(&out);
    assert!(
        out.log.contains("SWARM_INIT_FETCH_MAX_BYTES"),
        "the error must name SWARM_INIT_FETCH_MAX_BYTES (the fix); {out}"
    );
}

#[test]
fn oversized_chunked_body_is_cut_off_at_the_cap() {
    let Some(mut case) = Case::new() else { return };
    case.set("SWARM_INIT_FETCH_MAX_BYTES", "1048576")
        .set("SWARM_INIT_FETCH_ATTEMPTS", "1");
    case.server.set_default(Reply::Oversized {
        len: 256 << 20,
        content_length: false,
    });
    let out = case.run();
    assert_eq!(out.code, FETCH, "{out}");
    case.assert_not_run(&out);
    assert!(out.log.contains("SWARM_INIT_FETCH_MAX_BYTES"), "{out}");
    // The client must stop reading at the cap, not download everything: the
    // server cannot have sent much more than the cap plus socket buffers.
    assert!(
        case.server.wait_until(Duration::from_secs(10), |reqs| reqs
            .iter()
            .all(|r| r.finished.is_some())),
        "the server is still sending after swarm-init exited"
    );
    for r in case.server.requests() {
        assert!(
            r.body_sent < 64 << 20,
            "the server sent {} bytes to a client capped at 1 MiB; {out}",
            r.body_sent
        );
    }
}

// ------------------------------------------------------------- verification

#[test]
fn corrupt_crc_is_never_run() {
    let Some(mut case) = Case::with_zip(corrupt_crc_zip()) else {
        return;
    };
    case.set("SWARM_INIT_FETCH_ATTEMPTS", "2");
    let out = case.run();
    assert_eq!(out.code, VERIFICATION, "{out}");
    case.assert_not_run(&out);
    assert_eq!(
        case.attempts().len(),
        2,
        "failed verification is retried; {out}"
    );
}

#[test]
fn corrupt_crc_then_good_zip_runs_the_good_one() {
    let Some(case) = Case::new() else { return };
    case.server.push(Reply::OkZip(corrupt_crc_zip()));
    let out = case.run();
    case.assert_ran(&out, &case.server.zip());
    assert_eq!(case.attempts().len(), 2, "{out}");
}

#[test]
fn zip_without_main_py_is_never_run() {
    let Some(mut case) = Case::with_zip(no_main_zip()) else {
        return;
    };
    case.set("SWARM_INIT_FETCH_ATTEMPTS", "2");
    let out = case.run();
    assert_eq!(out.code, VERIFICATION, "{out}");
    case.assert_not_run(&out);
    assert!(out.log.contains("__main__.py"), "{out}");
}

/// Python finds a zipapp by its end-of-central-directory record, which it
/// looks for only in the last 64 KiB + 22 bytes. A zip followed by more
/// junk than that is not a zipapp to Python (it runs it as a script and
/// fails), so verification must reject it even if a lenient zip reader can
/// still find the entries.
#[test]
fn zip_with_trailing_junk_python_cannot_run_is_never_run() {
    let mut zip = fake_bot_zip();
    zip.extend(std::iter::repeat_n(0u8, 128 << 10));
    let Some(mut case) = Case::with_zip(zip) else {
        return;
    };
    case.set("SWARM_INIT_FETCH_ATTEMPTS", "1");
    let out = case.run();
    assert_eq!(out.code, VERIFICATION, "{out}");
    case.assert_not_run(&out);
}

#[test]
fn wrong_sha256_pin_is_never_run() {
    let Some(mut case) = Case::new() else { return };
    case.set("SWARM_INIT_FETCH_ATTEMPTS", "2").set(
        "SWARM_BOT_SHA256",
        &sha256_hex(&fake_bot_zip_variant("other")),
    );
    let out = case.run();
    assert_eq!(out.code, VERIFICATION, "{out}");
    case.assert_not_run(&out);
    assert!(out.log.contains("SWARM_BOT_SHA256"), "{out}");
}

#[test]
fn right_sha256_pin_runs() {
    let Some(mut case) = Case::new() else { return };
    let zip = case.server.zip();
    case.set("SWARM_BOT_SHA256", &sha256_hex(&zip));
    let out = case.run();
    case.assert_ran(&out, &zip);
}

#[test]
fn wrong_bot_version_is_never_run() {
    let Some(mut case) = Case::new() else { return };
    case.set("SWARM_INIT_FETCH_ATTEMPTS", "2").set(
        "SWARM_BOT_VERSION",
        &bot_version(&fake_bot_zip_variant("other")),
    );
    let out = case.run();
    assert_eq!(out.code, VERIFICATION, "{out}");
    case.assert_not_run(&out);
    assert!(out.log.contains("SWARM_BOT_VERSION"), "{out}");
}

#[test]
fn right_bot_version_runs() {
    let Some(mut case) = Case::new() else { return };
    let zip = case.server.zip();
    case.set("SWARM_BOT_VERSION", &bot_version(&zip));
    let out = case.run();
    case.assert_ran(&out, &zip);
}

#[test]
fn server_suggested_file_name_is_ignored() {
    let Some(case) = Case::new() else { return };
    case.server
        .set_default(Reply::Filename("../evil.zip".to_string()));
    let out = case.run();
    let report = case.assert_ran(&out, &case.server.zip());
    assert_eq!(report.argv, vec!["swarming_bot.zip", "start_bot"], "{out}");
    // Nothing outside SWARM_DIR: b/ holds only swarming/.
    let outside: Vec<_> = fs::read_dir(case.path("b"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(outside, vec!["swarming"], "{out}");
    assert!(!case.path("evil.zip").exists());
    assert!(!case.swarm_dir().join("evil.zip").exists(), "{out}");
}

// ------------------------------------------------------------ HTTP statuses

fn assert_4xx_fails_fast(code: u16) {
    let Some(case) = Case::new() else { return };
    case.server.set_default(Reply::Status {
        code,
        retry_after: None,
    });
    let out = case.run();
    assert_eq!(out.code, FETCH, "{out}");
    case.assert_not_run(&out);
    assert_eq!(
        case.attempts().len(),
        1,
        "a {code} must not be retried; {out}"
    );
    assert!(
        out.log.contains(&code.to_string()),
        "the error must name the status; {out}"
    );
}

#[test]
fn status_404_fails_fast() {
    assert_4xx_fails_fast(404);
}

#[test]
fn status_403_fails_fast() {
    assert_4xx_fails_fast(403);
}

#[test]
fn status_408_is_retried() {
    let Some(case) = Case::new() else { return };
    case.server.push(Reply::Status {
        code: 408,
        retry_after: None,
    });
    let out = case.run();
    case.assert_ran(&out, &case.server.zip());
    assert_eq!(case.attempts().len(), 2, "{out}");
}

fn assert_retry_after_honoured(code: u16, seconds: u64) {
    let Some(case) = Case::new() else { return };
    case.server.push(Reply::Status {
        code,
        retry_after: Some(seconds.to_string()),
    });
    let out = case.run();
    case.assert_ran(&out, &case.server.zip());
    let attempts = case.attempts();
    assert_eq!(attempts.len(), 2, "{out}");
    let gap = gap_after(&attempts, 0);
    // The backoff is 50 ms: only Retry-After explains a wait of seconds.
    assert!(
        gap >= Duration::from_millis(seconds * 1000 - 100),
        "Retry-After: {seconds} on a {code}, yet the next attempt came after {gap:?}; {out}"
    );
    assert!(
        gap < Duration::from_secs(seconds + 5),
        "waited {gap:?}; {out}"
    );
}

#[test]
fn retry_after_on_503_is_honoured() {
    assert_retry_after_honoured(503, 2);
}

#[test]
fn retry_after_on_429_is_honoured() {
    assert_retry_after_honoured(429, 1);
}

// ------------------------------------------------------------------- token

const TOKEN: &str = "tok-SECRET-5f3a9c0b7e";

#[test]
fn machine_token_is_sent_and_never_leaks() {
    let Some(mut case) = Case::new() else { return };
    let token_file = case.write(
        "token.json",
        format!(r#"{{"luci_machine_token": "{TOKEN}", "expiry": 1999999999}}"#).as_bytes(),
        0o600,
    );
    case.set("LUCI_MACHINE_TOKEN_FILE", &token_file.display().to_string());
    case.server.push(Reply::Status {
        code: 503,
        retry_after: None,
    });
    let out = case.run();
    let report = case.assert_ran(&out, &case.server.zip());
    let requests = case.server.requests();
    assert_eq!(requests.len(), 3, "{out}");
    for r in &requests {
        assert_eq!(
            r.header("X-Luci-Machine-Token"),
            Some(TOKEN),
            "request to {} lacks the token; {out}",
            r.path
        );
    }
    assert!(
        !out.log.contains(TOKEN),
        "the token is in swarm-init's log:\n{out}"
    );
    assert!(
        !report.raw.contains(TOKEN),
        "the token reached the bot's environment: {:?}",
        report.env
    );
    assert!(
        !report.env.contains_key("LUCI_MACHINE_TOKEN_FILE"),
        "the token path reached the bot's environment"
    );

    // Nor in an error message.
    let case2 = {
        let Some(mut c) = Case::new() else { return };
        c.set("LUCI_MACHINE_TOKEN_FILE", &token_file.display().to_string());
        c.server.set_default(Reply::Status {
            code: 403,
            retry_after: None,
        });
        c
    };
    let out = case2.run();
    assert_eq!(out.code, FETCH, "{out}");
    assert_eq!(
        case2.server.requests()[0].header("X-Luci-Machine-Token"),
        Some(TOKEN)
    );
    assert!(
        !out.log.contains(TOKEN),
        "the token is in the error:\n{out}"
    );
}

// ------------------------------------------------------------ the bot itself

#[test]
fn bot_runs_as_nobody_in_swarm_dir_with_the_environment() {
    let Some(mut case) = Case::new() else { return };
    case.set("DOCKER_HOST_HOSTNAME", "host-7.example.com")
        .set("NUM_CONFIGURED_CONTAINERS", "4")
        .set("SOME_OTHER_SETTING", "kept as is");
    // Stale zips from a previous bot must go; other files stay.
    let swarm_dir = case.mkdir("b/swarming", 0o755);
    case.write("b/swarming/swarming_bot.zip", b"stale", 0o644);
    for stale in ["swarming_bot.1.zip", "swarming_bot.partial-7.zip"] {
        case.write(&format!("b/swarming/{stale}"), b"stale", 0o644);
    }
    case.write("b/swarming/keep.txt", b"keep", 0o644);

    let out = case.run();
    let r = case.assert_ran(&out, &case.server.zip());
    let nobody = user("nobody");
    let (uid, gid) = (i64::from(nobody.uid), i64::from(nobody.gid));
    assert_eq!(
        r.resuid,
        vec![uid, uid, uid],
        "real/effective/saved uid; {out}"
    );
    assert_eq!(
        r.resgid,
        vec![gid, gid, gid],
        "real/effective/saved gid; {out}"
    );
    let mut groups = r.groups.clone();
    groups.sort();
    groups.dedup();
    assert!(
        !groups.contains(&0),
        "the bot kept the root group: {groups:?}"
    );
    assert_eq!(
        groups,
        expected_groups("nobody", nobody.gid),
        "supplementary groups"
    );
    assert!(!r.regained_root, "the bot could setuid(0)");

    assert_eq!(Path::new(&r.cwd), swarm_dir.canonicalize().unwrap());
    assert_eq!(r.cwd_owner, uid, "SWARM_DIR must belong to the bot user");
    assert!(r.cwd_writable, "the bot cannot write SWARM_DIR");
    assert_eq!(fs::metadata(&swarm_dir).unwrap().uid(), nobody.uid);

    assert_eq!(r.argv, vec!["swarming_bot.zip", "start_bot"]);
    assert_eq!(r.cmdline.len(), 3, "{:?}", r.cmdline);
    assert_eq!(&r.cmdline[1..], ["swarming_bot.zip", "start_bot"]);
    let exe = Path::new(&r.cmdline[0])
        .file_name()
        .unwrap()
        .to_string_lossy();
    assert!(exe.starts_with("python"), "argv[0] {:?}", r.cmdline[0]);
    assert_eq!(
        r.ppid, 1,
        "the bot must be PID 1's direct child (the main child)"
    );

    let env = |k: &str| r.env.get(k).map(String::as_str);
    assert_eq!(env("DOCKER_HOST_HOSTNAME"), Some("host-7.example.com"));
    assert_eq!(env("NUM_CONFIGURED_CONTAINERS"), Some("4"));
    assert_eq!(env("SOME_OTHER_SETTING"), Some("kept as is"));
    assert_eq!(env("USER"), Some("nobody"));
    assert_eq!(env("LOGNAME"), Some("nobody"));
    assert_eq!(env("HOME"), Some(nobody.home.as_str()));
    assert_eq!(env("SHELL"), Some(nobody.shell.as_str()));
    assert_eq!(env("SWARM_URL"), Some(case.server.url().as_str()));

    for stale in ["swarming_bot.1.zip", "swarming_bot.partial-7.zip"] {
        assert!(!swarm_dir.join(stale).exists(), "stale {stale} kept");
    }
    assert_eq!(fs::read(swarm_dir.join("keep.txt")).unwrap(), b"keep");
}

#[test]
fn sigterm_reaches_the_bot_and_its_exit_code_is_swarm_inits() {
    let Some(mut case) = Case::new() else { return };
    case.set("FAKE_BOT_WAIT_TERM", "1")
        .set("FAKE_BOT_EXIT_CODE", "37");
    let mut pid1 = case.spawn();
    assert!(
        common::wait_for_file(&case.marker("ready"), Duration::from_secs(30)),
        "the bot did not start; log:\n{}",
        pid1.stderr_text()
    );
    pid1.signal(libc::SIGTERM);
    let code = pid1.exit_code(Duration::from_secs(10));
    let log = pid1.stderr_text();
    let term = term_signal(&case.marker("term"))
        .unwrap_or_else(|| panic!("the bot never got SIGTERM; exit {code}; log:\n{log}"));
    assert_eq!(term, 15);
    assert_eq!(
        code, 37,
        "the bot's exit code must be swarm-init's; log:\n{log}"
    );
}

/// Starts a run whose every attempt gets a 503 and whose backoff is 30 s,
/// and returns once the first attempt has been answered (so the main child
/// is reading that answer or already sleeping in the backoff).
fn spawn_into_long_backoff(case: &mut Case) -> Pid1 {
    case.set("SWARM_INIT_FETCH_BACKOFF_MS", "30000")
        .set("SWARM_INIT_FETCH_ATTEMPTS", "5");
    case.server.set_default(Reply::Status {
        code: 503,
        retry_after: None,
    });
    let pid1 = case.spawn();
    assert!(
        case.server
            .wait_for_answered_attempts(1, Duration::from_secs(30)),
        "no attempt; log:\n{}",
        pid1.stderr_text()
    );
    assert!(
        pid1.wait_for_log("next attempt in", Duration::from_secs(10)),
        "the first attempt's failure was not logged; log:\n{}",
        pid1.stderr_text()
    );
    pid1
}

/// Sends `signo` to PID 1 during the backoff and returns how it ended and
/// how long that took.
fn signal_during_backoff(case: &mut Case, signo: i32) -> (i32, Duration, String) {
    let mut pid1 = spawn_into_long_backoff(case);
    let start = Instant::now();
    pid1.signal(signo);
    let status = pid1.wait_timeout(Duration::from_secs(10));
    let elapsed = start.elapsed();
    let log = pid1.stderr_text();
    let Some(status) = status else {
        panic!("still running 10 s after signal {signo}; log:\n{log}");
    };
    (status.code, elapsed, log)
}

#[test]
fn sigterm_during_backoff_ends_within_a_second() {
    let Some(mut case) = Case::new() else { return };
    let (code, elapsed, log) = signal_during_backoff(&mut case, libc::SIGTERM);
    assert!(
        elapsed < Duration::from_secs(1),
        "SIGTERM during the backoff took {elapsed:?}; log:\n{log}"
    );
    // The main child dies of the SIGTERM PID 1 forwards: 128 + 15.
    assert_eq!(code, 128 + libc::SIGTERM, "log:\n{log}");
    assert_eq!(case.attempts().len(), 1, "log:\n{log}");
    assert!(case.report().is_none());
}

/// A shutdown request (what the shim sends, and `docker kill -s USR1`)
/// during the backoff ends the boot within a second, with the shutdown exit
/// code, not a fetch failure.
#[test]
fn shutdown_request_during_backoff_ends_within_a_second_with_exit_10() {
    let Some(mut case) = Case::new() else { return };
    let (code, elapsed, log) = signal_during_backoff(&mut case, libc::SIGUSR1);
    assert!(
        elapsed < Duration::from_secs(1),
        "a shutdown request during the backoff took {elapsed:?}; log:\n{log}"
    );
    assert_eq!(code, SHUTDOWN, "log:\n{log}");
    assert!(log.contains("shutdown requested"), "log:\n{log}");
    assert_eq!(case.attempts().len(), 1, "log:\n{log}");
    assert!(case.report().is_none());
}

#[test]
fn sigterm_during_download_ends_within_a_second() {
    let Some(mut case) = Case::new() else { return };
    case.set("SWARM_INIT_FETCH_TIMEOUT_SECONDS", "30");
    case.server.push(Reply::Stall {
        sent: 1000,
        stall: Duration::from_secs(60),
    });
    let mut pid1 = case.spawn();
    assert!(
        case.server.wait_until(Duration::from_secs(30), |reqs| reqs
            .iter()
            .any(|r| r.path.starts_with("/swarming/"))),
        "no download started; log:\n{}",
        pid1.stderr_text()
    );
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    pid1.signal(libc::SIGTERM);
    let status = pid1.wait_timeout(Duration::from_secs(10));
    let elapsed = start.elapsed();
    let log = pid1.stderr_text();
    assert!(
        status.is_some(),
        "still running 10 s after SIGTERM; log:\n{log}"
    );
    assert!(
        elapsed < Duration::from_secs(1),
        "SIGTERM during a download took {elapsed:?}; log:\n{log}"
    );
    assert!(case.report().is_none());
}

// ------------------------------------------------------------------- hooks

#[test]
fn failing_pre_start_hook_stops_the_boot() {
    let Some(case) = Case::new() else { return };
    let ran = case.mkdir("ran", 0o777);
    let touch = |name: &str| format!("#!/bin/sh\ntouch {}/{name}\n", ran.display());
    case.hook("10-fine", &touch("10-fine"), 0o755);
    case.hook(
        "50-qemu-tap-broken",
        "#!/bin/sh\necho 'cannot create tap device' >&2\nexit 3\n",
        0o755,
    );
    case.hook("90-after", &touch("90-after"), 0o755);
    let out = case.run();
    assert_eq!(out.code, HOOK, "{out}");
    assert!(
        out.log.contains("50-qemu-tap-broken"),
        "the error must name the hook; {out}"
    );
    assert!(
        ran.join("10-fine").exists(),
        "hooks before the failing one run; {out}"
    );
    assert!(
        !ran.join("90-after").exists(),
        "hooks after a failure must not run; {out}"
    );
    assert!(
        case.server.requests().is_empty(),
        "fetched despite a failed hook; {out}"
    );
    case.assert_not_run(&out);
}

#[test]
fn pre_start_hooks_run_in_name_order_as_root_with_the_environment() {
    let Some(mut case) = Case::new() else { return };
    case.set("DOCKER_HOST_HOSTNAME", "host-9");
    let out_file = case.write("hooks.out", b"", 0o666);
    let script = |name: &str| {
        format!(
            "#!/bin/sh\necho \"{name} $(id -u) $DOCKER_HOST_HOSTNAME\" >> {}\n",
            out_file.display()
        )
    };
    case.hook("20-second", &script("20-second"), 0o755);
    case.hook("10-first", &script("10-first"), 0o755);
    case.hook("15-not-executable", &script("15-not-executable"), 0o644);
    let out = case.run();
    case.assert_ran(&out, &case.server.zip());
    let ran = fs::read_to_string(&out_file).unwrap();
    assert_eq!(ran, "10-first 0 host-9\n20-second 0 host-9\n", "{out}");
}

// ------------------------------------------------------------ configuration

#[test]
fn missing_swarm_url_is_a_configuration_error() {
    let Some(mut case) = Case::new() else { return };
    case.unset("SWARM_URL");
    let out = case.run();
    assert_eq!(out.code, CONFIG, "{out}");
    assert!(out.log.contains("SWARM_URL"), "{out}");
    case.assert_not_run(&out);
}

#[test]
fn invalid_fetch_setting_is_a_configuration_error() {
    let Some(mut case) = Case::new() else { return };
    case.set("SWARM_INIT_FETCH_ATTEMPTS", "lots");
    let out = case.run();
    assert_eq!(out.code, CONFIG, "{out}");
    assert!(out.log.contains("SWARM_INIT_FETCH_ATTEMPTS"), "{out}");
    assert!(case.server.requests().is_empty(), "{out}");
}

// ------------------------------------------------------------------- fetch

#[test]
fn fetch_command_prints_path_size_sha256_and_version() {
    let Some(case) = Case::new() else { return };
    // Hooks are not run by `fetch`: this one would fail the boot.
    case.hook("50-fail", "#!/bin/sh\nexit 1\n", 0o755);
    let zip = case.server.zip();
    let start = Instant::now();
    let mut cmd = Command::new(swarm_init_bin());
    cmd.arg("fetch")
        .env_clear()
        .env("PATH", common::PATH)
        .envs(case.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let output = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let ctx = format!(
        "exit {:?} after {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status.code(),
        start.elapsed()
    );
    assert_eq!(output.status.code(), Some(0), "{ctx}");
    let path = case.swarm_dir().join("swarming_bot.zip");
    assert!(stdout.contains(&path.display().to_string()), "path; {ctx}");
    assert!(stdout.contains(&zip.len().to_string()), "size; {ctx}");
    assert!(stdout.contains(&sha256_hex(&zip)), "sha256; {ctx}");
    assert!(stdout.contains(&bot_version(&zip)), "bot version; {ctx}");
    assert!(fs::read(&path).unwrap() == zip, "{ctx}");
    assert!(case.report().is_none(), "fetch must not run the bot; {ctx}");
    let mode = fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o022,
        0,
        "the zip must not be group/world-writable; {ctx}"
    );
}
