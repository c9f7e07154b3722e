//! Test harness: runs swarm-init as PID 1 of a fresh PID namespace and
//! observes it from the outside, as a user would.
//!
//! `Pid1::spawn` starts `unshare --pid --fork --kill-child --mount-proc --
//! swarm-init ARGS` with a minimal environment, collects its log (stderr) on a
//! thread, and exposes the host pid of the namespace's PID 1 so tests can
//! signal it and read its /proc entries. Dropping a `Pid1` kills the whole
//! namespace (`--kill-child`), so no test leaves processes behind.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod fake_bot;
pub mod fake_swarming;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub fn swarm_init_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_swarm-init"))
}

/// The shim binary. It belongs to the other workspace package, so cargo
/// does not build it for this package's tests; build it once per test run
/// into a target directory of its own under cargo's scratch space, so the
/// path is the same whatever profile or `--target` the tests use.
pub fn shim_bin() -> PathBuf {
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("shim-build");
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "swarm-shutdown", "--target-dir"])
            .arg(&target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build -p swarm-shutdown");
        assert!(status.success(), "cargo build -p swarm-shutdown failed");
    });
    target_dir.join("debug").join("swarm-shutdown")
}

/// `unshare` set up to run what follows as PID 1 of a fresh PID namespace
/// with its own /proc; the namespace dies with the unshare process.
pub fn in_new_pid_namespace() -> Command {
    let mut command = Command::new("unshare");
    command.args(["--pid", "--fork", "--kill-child", "--mount-proc", "--"]);
    command
}

/// True when the test may run: root and a working `unshare` (see
/// [`require`] for what happens otherwise).
pub fn require_root_and_unshare() -> bool {
    static CHECK: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let check = CHECK.get_or_init(|| {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root".into());
        }
        match in_new_pid_namespace().arg("true").status() {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!(
                "`unshare --pid --fork --mount-proc true` failed: {s}"
            )),
            Err(e) => Err(format!("cannot run unshare (util-linux): {e}")),
        }
    });
    require(
        "root and a working unshare (to create PID namespaces)",
        || check.clone(),
    )
}

/// A fresh, empty directory under /tmp, removed when dropped; world-readable
/// and traversable so that unprivileged test users can reach inside.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("swarm-init-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(path)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How swarm-init (PID 1) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatusInfo {
    pub code: i32,
}

#[derive(Default)]
struct Log {
    text: String,
    closed: bool,
}

/// swarm-init running as PID 1 of its own PID namespace.
pub struct Pid1 {
    unshare_pid: i32,
    host_pid: i32,
    log: Arc<(Mutex<Log>, Condvar)>,
    exited: Receiver<ExitStatusInfo>,
    status: Option<ExitStatusInfo>,
    stdout: Arc<Mutex<String>>,
}

impl Pid1 {
    /// Starts `swarm-init ARGS` as PID 1 with only PATH and `env` set, and
    /// waits until it has logged its start.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Pid1 {
        Self::spawn_with(args, env, Stdio::null())
    }

    pub fn spawn_with(args: &[&str], env: &[(&str, &str)], stdin: Stdio) -> Pid1 {
        let mut command = in_new_pid_namespace();
        command
            .arg(swarm_init_bin())
            .args(args)
            .env_clear()
            .env("PATH", PATH)
            .envs(env.iter().copied())
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn unshare");
        let unshare_pid = child.id() as i32;

        let log: Arc<(Mutex<Log>, Condvar)> = Arc::default();
        let stderr = child.stderr.take().unwrap();
        let log_writer = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = String::new();
            loop {
                line.clear();
                let n = reader.read_line(&mut line).unwrap_or(0);
                let (lock, cvar) = &*log_writer;
                let mut log = lock.lock().unwrap();
                if n == 0 {
                    log.closed = true;
                    cvar.notify_all();
                    return;
                }
                if std::env::var_os("SWARM_INIT_TEST_ECHO").is_some() {
                    eprint!("{line}");
                }
                log.text.push_str(&line);
                cvar.notify_all();
            }
        });
        let stdout_text: Arc<Mutex<String>> = Arc::default();
        let stdout = child.stdout.take().unwrap();
        let stdout_writer = Arc::clone(&stdout_text);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    return;
                }
                stdout_writer
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let (tx, exited) = mpsc::channel();
        std::thread::spawn(move || {
            let status = child.wait().expect("wait for unshare");
            use std::os::unix::process::ExitStatusExt;
            let code = status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            let _ = tx.send(ExitStatusInfo { code });
        });

        let mut pid1 = Pid1 {
            unshare_pid,
            host_pid: 0,
            log,
            exited,
            status: None,
            stdout: stdout_text,
        };
        // Readiness: swarm-init's first log line, then unshare's only child.
        // A configuration error ends it before any log line; then there is no
        // PID 1 to find and host_pid stays 0.
        if pid1.wait_for_log("starting as pid 1", Duration::from_secs(10)) {
            let children = format!("/proc/{unshare_pid}/task/{unshare_pid}/children");
            let text = std::fs::read_to_string(children).unwrap_or_default();
            pid1.host_pid = text
                .split_whitespace()
                .next()
                .unwrap_or("0")
                .parse()
                .unwrap();
        }
        pid1
    }

    /// The host pid of the namespace's PID 1 (swarm-init).
    pub fn host_pid(&self) -> i32 {
        assert!(
            self.host_pid > 0,
            "swarm-init did not start; log:\n{}",
            self.stderr_text()
        );
        self.host_pid
    }

    pub fn signal(&self, signo: i32) {
        let rc = unsafe { libc::kill(self.host_pid(), signo) };
        assert_eq!(rc, 0, "kill({}, {signo})", self.host_pid());
    }

    /// Waits for PID 1 to exit; None if it is still running at the timeout.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatusInfo> {
        if self.status.is_none() {
            self.status = self.exited.recv_timeout(timeout).ok();
        }
        if self.status.is_some() {
            // Let the log thread drain what PID 1 wrote last.
            self.wait_log_closed(Duration::from_secs(5));
        }
        self.status
    }

    /// Waits for exit and returns the code; panics with the log on timeout.
    pub fn exit_code(&mut self, timeout: Duration) -> i32 {
        match self.wait_timeout(timeout) {
            Some(status) => status.code,
            None => panic!(
                "swarm-init still running after {timeout:?}; log:\n{}",
                self.stderr_text()
            ),
        }
    }

    /// Everything swarm-init and its children wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.log.0.lock().unwrap().text.clone()
    }

    pub fn stdout_text(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`; false at the timeout or when
    /// the log ends without it.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.log;
        let mut log = lock.lock().unwrap();
        loop {
            if log.text.contains(needle) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if log.closed || left.is_zero() {
                return false;
            }
            log = cvar.wait_timeout(log, left).unwrap().0;
        }
    }

    fn wait_log_closed(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.log;
        let mut log = lock.lock().unwrap();
        while !log.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            log = cvar.wait_timeout(log, left).unwrap().0;
        }
    }

    /// Host pids of every process in the namespace except PID 1.
    pub fn namespace_processes(&self) -> Vec<i32> {
        descendants(self.host_pid())
    }

    /// Voluntary plus involuntary context switches of PID 1 so far.
    pub fn context_switches(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.host_pid())).unwrap();
        status
            .lines()
            .filter(|l| l.contains("ctxt_switches"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    }

    /// Resident memory of PID 1 in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.host_pid())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Pid1 {
    fn drop(&mut self) {
        if self.status.is_none() {
            // Killing unshare makes the kernel kill PID 1 (--kill-child), and
            // with it the whole namespace.
            unsafe { libc::kill(self.unshare_pid, libc::SIGKILL) };
        }
    }
}

/// State letter (R, S, Z, ...) of a host pid, None if it is gone.
pub fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// All descendants of `root` (host pids), from /proc parent links.
pub fn descendants(root: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![];
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, ppid) in &parent_of {
            if ppid == p && !found.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

/// Waits until `path` exists (the main child's readiness marker).
pub fn wait_for_file(path: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// Waits until `cond` holds, checking every few milliseconds.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The one place that decides what a test does when something it needs is
/// missing: `check` says why it is missing. With CI=true a test must not pass
/// without running, so this panics; elsewhere it prints `SKIPPED: ...` and
/// returns false, so the caller can `return`.
pub fn require(what: &str, check: impl FnOnce() -> Result<(), String>) -> bool {
    match check() {
        Ok(()) => true,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but this test needs {what}: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: this test needs {what}: {why}");
            false
        }
    }
}

/// Creates `path` (and its parents) with exactly `mode` (umask does not
/// apply), e.g. 0777 for a directory an unprivileged bot writes into.
pub fn mkdir_mode(path: &Path, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    path.to_path_buf()
}

/// Writes `data` to `path` and gives it exactly `mode`.
pub fn write_mode(path: &Path, data: &[u8], mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    path.to_path_buf()
}
