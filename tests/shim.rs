//! The shim (`swarm-shutdown`, installed as /sbin/shutdown and linked as
//! reboot, halt, poweroff), run as a user would: through symlinks with those
//! names, inside a fresh PID namespace, never against this machine's PID 1.
//!
//! - Under a test PID 1 written in Python, which blocks SIGUSR1, runs the shim
//!   as its child, and then collects any SIGUSR1 (with the sender's pid and
//!   uid) with `sigtimedwait`: `kill()` makes the signal pending before the
//!   shim exits, so "nothing pending once the shim has exited" proves nothing
//!   was sent, with no sleeps. Under its own name that PID 1 is foreign and
//!   must be refused; renamed `swarm-init` (via /proc/self/comm) it shows what
//!   the shim records and sends, and that usage errors and no-op options send
//!   nothing even where sending would be allowed.
//! - Under the real swarm-init as PID 1: every name makes swarm-init SIGTERM
//!   the main child and exit with code 10, and swarm-init's log names the
//!   mode, the caller's uid and the message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Pid1, TempDir};

/// The test PID 1. argv: OUT_DIR COMM RUN_AS_UID SHIM_PATH ARGS... It runs
/// SHIM_PATH (a symlink whose name is the command) with ARGS, as RUN_AS_UID
/// when that is not "-", and writes rc, stdout, stderr, shim_pid and usr1
/// ("<sender pid> <sender uid>" or empty) into OUT_DIR, then `done`.
const TEST_PID1_PY: &str = r#"
import os, signal, subprocess, sys
out, comm, run_as, shim, *args = sys.argv[1:]
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
if comm != "-":
    with open("/proc/self/comm", "w") as f:
        f.write(comm)
with open("/proc/1/comm") as f:
    seen_comm = f.read().strip()
kwargs = {}
if run_as != "-":
    kwargs["user"] = int(run_as)
p = subprocess.Popen([shim] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)
stdout, stderr = p.communicate()
got = signal.sigtimedwait({signal.SIGUSR1}, 0)
def put(name, text):
    with open(os.path.join(out, name), "w") as f:
        f.write(text)
put("pid1_comm", seen_comm)
put("rc", str(p.returncode))
put("stdout", stdout.decode("utf-8", "replace"))
put("stderr", stderr.decode("utf-8", "replace"))
put("shim_pid", str(p.pid))
put("usr1", "" if got is None else "%d %d" % (got.si_pid, got.si_uid))
put("done", "")
"#;

/// What one shim run under the test PID 1 produced.
#[derive(Debug)]
struct Run {
    pid1_comm: String,
    rc: i32,
    stdout: String,
    stderr: String,
    shim_pid: u32,
    /// Sender pid and uid of the SIGUSR1 that PID 1 received, if any.
    usr1: Option<(u32, u32)>,
    /// The request file the shim left, if any (nobody consumes it here).
    request: Option<String>,
}

/// A scratch directory with the shim linked under its four names, and a
/// per-test run directory for the request file.
struct Setup {
    dir: TempDir,
}

impl Setup {
    fn new(tag: &str) -> Setup {
        let dir = TempDir::new(tag);
        let shim = common::shim_bin();
        assert!(shim.is_file(), "{} was not built", shim.display());
        let bin = dir.join("bin");
        std::fs::create_dir(&bin).unwrap();
        // A link or copy inside the 0755 scratch directory, so the non-root
        // test can run it even when the checkout's directories are private.
        let local = bin.join("swarm-shutdown");
        if std::fs::hard_link(&shim, &local).is_err() {
            std::fs::copy(&shim, &local).unwrap();
        }
        std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o755)).unwrap();
        for name in ["shutdown", "reboot", "halt", "poweroff"] {
            symlink("swarm-shutdown", bin.join(name)).unwrap();
        }
        Setup { dir }
    }

    fn link(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    fn request_path(&self) -> PathBuf {
        self.run_dir().join("shutdown-request")
    }

    /// Runs `name args...` under the Python test PID 1, named `comm` ("-"
    /// keeps python's own name), as `uid` (None: root).
    fn run_under_test_pid1(
        &self,
        comm: &str,
        uid: Option<u32>,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Run {
        let out = self.dir.join(&format!("out-{name}-{}", unique()));
        std::fs::create_dir(&out).unwrap();
        let _ = std::fs::remove_file(self.request_path());
        let uid_arg = uid.map_or("-".to_owned(), |u| u.to_string());
        let mut command = common::in_new_pid_namespace();
        command
            .args(["python3", "-c", TEST_PID1_PY])
            .arg(&out)
            .arg(comm)
            .arg(&uid_arg)
            .arg(self.link(name))
            .args(args)
            .env_clear()
            .env("PATH", common::PATH)
            .env("SWARM_INIT_RUN_DIR", self.run_dir())
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        let status = wait_with_timeout(command, Duration::from_secs(30));
        assert!(
            status.success() && out.join("done").exists(),
            "test PID 1 failed ({status}) for {name} {args:?}"
        );
        let read = |file: &str| std::fs::read_to_string(out.join(file)).unwrap();
        let usr1 = read("usr1");
        Run {
            pid1_comm: read("pid1_comm"),
            rc: read("rc").parse().unwrap(),
            stdout: read("stdout"),
            stderr: read("stderr"),
            shim_pid: read("shim_pid").parse().unwrap(),
            usr1: usr1
                .split_once(' ')
                .map(|(pid, uid)| (pid.parse().unwrap(), uid.parse().unwrap())),
            request: std::fs::read_to_string(self.request_path()).ok(),
        }
    }
}

fn unique() -> usize {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

/// Runs `command` (an `unshare --kill-child ...`) to completion; on timeout
/// kills it by pid, which takes its namespace down, and fails the test.
fn wait_with_timeout(mut command: Command, timeout: Duration) -> std::process::ExitStatus {
    let mut child = command.spawn().expect("spawn unshare");
    let mut status = None;
    let finished = common::wait_until(timeout, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !finished {
        let _ = child.kill();
        let _ = child.wait();
        panic!("unshare still running after {timeout:?}");
    }
    status.unwrap()
}

/// The shim's request file as a map.
fn parse_request(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(|l| {
            let (k, v) = l.split_once('=').expect("key=value line");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn python3_available() -> bool {
    common::require("python3 (the test PID 1)", || {
        match Command::new("python3")
            .arg("--version")
            .env_clear()
            .env("PATH", common::PATH)
            .stdout(Stdio::null())
            .status()
        {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("`python3 --version` failed: {s}")),
            Err(e) => Err(format!("cannot run python3 on {}: {e}", common::PATH)),
        }
    })
}

fn requirements_met() -> bool {
    common::require_root_and_unshare() && python3_available()
}

#[test]
fn refuses_under_a_foreign_pid1_and_sends_nothing() {
    if !requirements_met() {
        return;
    }
    let setup = Setup::new("shim-foreign");
    let cases: [(&str, &[&str]); 5] = [
        ("shutdown", &["-r", "now", "Restarting after task"]),
        ("shutdown", &[]),
        ("reboot", &[]),
        ("halt", &["-f"]),
        ("poweroff", &[]),
    ];
    for (name, args) in cases {
        let run = setup.run_under_test_pid1("-", None, name, args, &[]);
        assert!(run.pid1_comm.starts_with("python"), "{run:?}");
        assert_eq!(run.rc, 1, "{name} {args:?}: {run:?}");
        assert!(
            run.stderr.contains(&format!(
                "{name}: PID 1 is {}, not swarm-init: refusing to signal it; this shutdown only stops swarm-init containers",
                run.pid1_comm
            )),
            "{name} {args:?}: {run:?}"
        );
        assert_eq!(run.stderr.lines().count(), 1, "one line: {run:?}");
        assert_eq!(run.usr1, None, "PID 1 got SIGUSR1 from {name}: {run:?}");
        assert_eq!(run.request, None, "{name} wrote a request: {run:?}");
    }
}

#[test]
fn refuses_a_pid1_whose_name_only_resembles_swarm_init() {
    if !requirements_met() {
        return;
    }
    let setup = Setup::new("shim-lookalike");
    for comm in ["swarm-init2", "swarm-ini", "Swarm-init"] {
        let run = setup.run_under_test_pid1(comm, None, "shutdown", &["-r", "now"], &[]);
        assert_eq!(run.pid1_comm, comm);
        assert_eq!(run.rc, 1, "{run:?}");
        assert!(
            run.stderr
                .contains(&format!("PID 1 is {comm}, not swarm-init")),
            "{run:?}"
        );
        assert_eq!(run.usr1, None, "{run:?}");
        assert_eq!(run.request, None, "{run:?}");
    }
}

#[test]
fn records_the_request_then_signals_a_pid1_named_swarm_init() {
    if !requirements_met() {
        return;
    }
    let setup = Setup::new("shim-record");
    let before = now_secs();
    let run = setup.run_under_test_pid1(
        "swarm-init",
        None,
        "shutdown",
        &["-r", "now", "Restarting:\tbot", "asked\nfor it"],
        &[("SUDO_UID", "1234")],
    );
    let after = now_secs();
    assert_eq!(run.pid1_comm, "swarm-init");
    assert_eq!(run.rc, 0, "{run:?}");
    // The sender of SIGUSR1 is the shim itself, as root.
    assert_eq!(run.usr1, Some((run.shim_pid, 0)), "{run:?}");
    let request = parse_request(run.request.as_deref().expect("request file written"));
    assert_eq!(request["mode"], "reboot");
    assert_eq!(request["message"], "Restarting: bot asked for it");
    assert_eq!(request["uid"], "1234", "SUDO_UID is the caller");
    assert_eq!(request["pid"], run.shim_pid.to_string());
    let time: u64 = request["time"].parse().unwrap();
    assert!(
        (before..=after).contains(&time),
        "{time} not in {before}..={after}"
    );
    assert_eq!(request.len(), 5, "{request:?}");
    // Written by rename: no temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(setup.run_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["shutdown-request"]);
    assert_eq!(
        run.stderr,
        "shutdown: reboot requested: asked swarm-init (PID 1) to stop the container (message: Restarting: bot asked for it)\n"
    );
    assert_eq!(run.stdout, "");
}

#[test]
fn each_name_records_its_mode() {
    if !requirements_met() {
        return;
    }
    let setup = Setup::new("shim-modes");
    let cases: [(&str, &[&str], &str); 12] = [
        ("shutdown", &["now"], "poweroff"),
        ("shutdown", &["-h", "now"], "poweroff"),
        ("shutdown", &["-P", "now"], "poweroff"),
        ("shutdown", &["-H", "now"], "halt"),
        ("shutdown", &["--halt", "-h", "now"], "halt"),
        ("shutdown", &["-rf", "now"], "reboot"),
        ("reboot", &[], "reboot"),
        ("reboot", &["-f"], "reboot"),
        ("halt", &[], "halt"),
        ("halt", &["-p"], "poweroff"),
        ("poweroff", &[], "poweroff"),
        ("poweroff", &["--reboot"], "reboot"),
    ];
    for (name, args, mode) in cases {
        let run = setup.run_under_test_pid1("swarm-init", None, name, args, &[]);
        assert_eq!(run.rc, 0, "{name} {args:?}: {run:?}");
        assert_eq!(
            run.usr1,
            Some((run.shim_pid, 0)),
            "{name} {args:?}: {run:?}"
        );
        let request = parse_request(run.request.as_deref().expect("request file"));
        assert_eq!(request["mode"], mode, "{name} {args:?}");
        assert_eq!(request["message"], "", "{name} {args:?}");
        assert_eq!(request["uid"], "0", "{name} {args:?}");
        assert!(
            run.stderr.contains(&format!(
                "{name}: {mode} requested: asked swarm-init (PID 1) to stop the container"
            )),
            "{name} {args:?}: {run:?}"
        );
    }
}

#[test]
fn a_later_time_still_stops_now_and_says_so() {
    if !requirements_met() {
        return;
    }
    let setup = Setup::new("shim-later");
    for time in ["+5", "23:59"] {
        let run =
            setup.run_under_test_pid1("swarm-init", None, "shutdown", &["-r", time, "later"], &[]);
        assert_eq!(run.rc, 0, "{run:?}");
        assert!(run.usr1.is_some(), "{run:?}");
        assert!(
            run.stderr.contains(&format!(
                "shutdown: time '{time}' ignored: in a container the stop happens now"
            )),
            "{run:?}"
        );
    }
}

#[test]
fn usage_errors_and_no_op_options_send_nothing() {
    if !requirements_met() {
        return;
    }
    let setup = Setup::new("shim-noop");
    // Under a PID 1 named swarm-init, where a real request would be sent.
    let cases: [(&str, &[&str], i32, &str); 13] = [
        ("shutdown", &["--bogus"], 2, "unknown option '--bogus'"),
        ("shutdown", &["-rx", "now"], 2, "unknown option '-x'"),
        ("shutdown", &["-r", "soon", "msg"], 2, "bad time 'soon'"),
        ("shutdown", &["-r", "24:00"], 2, "bad time '24:00'"),
        ("reboot", &["a", "b"], 2, "too many arguments"),
        ("halt", &["now"], 2, "too many arguments"),
        ("poweroff", &["-r"], 2, "unknown option '-r'"),
        (
            "shutdown",
            &["-k", "-r", "now", "hi"],
            0,
            "nothing was sent",
        ),
        ("shutdown", &["-c"], 0, "nothing to cancel"),
        ("shutdown", &["--show"], 0, "no stop is scheduled"),
        ("reboot", &["-w"], 0, "nothing was sent"),
        ("halt", &["--wtmp-only"], 0, "nothing was sent"),
        ("poweroff", &["-fw"], 0, "nothing was sent"),
    ];
    for (name, args, rc, says) in cases {
        let run = setup.run_under_test_pid1("swarm-init", None, name, args, &[]);
        assert_eq!(run.rc, rc, "{name} {args:?}: {run:?}");
        assert!(run.stderr.contains(says), "{name} {args:?}: {run:?}");
        assert!(run.stderr.starts_with(&format!("{name}: ")), "{run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "one line: {run:?}");
        assert_eq!(run.usr1, None, "{name} {args:?} sent SIGUSR1: {run:?}");
        assert_eq!(run.request, None, "{name} {args:?} wrote a request");
    }
}

#[test]
fn help_and_version_send_nothing() {
    if !requirements_met() {
        return;
    }
    let setup = Setup::new("shim-help");
    for name in ["shutdown", "reboot", "halt", "poweroff"] {
        let run = setup.run_under_test_pid1("swarm-init", None, name, &["--help"], &[]);
        assert_eq!(run.rc, 0, "{run:?}");
        assert!(
            run.stdout.starts_with(&format!("Usage: {name} [OPTIONS]")),
            "{run:?}"
        );
        assert!(run.stdout.contains("4 not root"), "{run:?}");
        assert_eq!(run.usr1, None, "{run:?}");
        let run = setup.run_under_test_pid1("swarm-init", None, name, &["--version"], &[]);
        assert_eq!(run.rc, 0, "{run:?}");
        assert_eq!(
            run.stdout,
            format!("{name} (swarm-shutdown) {}\n", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(run.usr1, None, "{run:?}");
        assert_eq!(run.request, None);
    }
}

#[test]
fn non_root_is_told_to_use_sudo_and_sends_nothing() {
    if !requirements_met() {
        return;
    }
    let setup = Setup::new("shim-nonroot");
    for name in ["shutdown", "reboot"] {
        let run = setup.run_under_test_pid1("swarm-init", Some(65534), name, &[], &[]);
        assert_eq!(run.rc, 4, "{run:?}");
        assert!(run.stderr.contains("run it with sudo"), "{run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "one line: {run:?}");
        assert_eq!(run.usr1, None, "{run:?}");
        assert_eq!(run.request, None, "{run:?}");
    }
}

/// How one stop of the real swarm-init went.
struct RealStop {
    pid1: Pid1,
    /// swarm-init's exit code.
    code: i32,
    shim_rc: i32,
    shim_stderr: String,
    /// The main child received SIGTERM (its trap wrote the marker).
    child_got_term: bool,
}

/// Runs `name args` (with `env`) from the main child of the real swarm-init.
/// The main child is a shell that records SIGTERM in a marker file and then
/// exits 0, as a well-behaved bot does. It runs the shim in a subshell that
/// ignores SIGTERM, so the shim's exit status and output are recorded even
/// though swarm-init starts tearing down while the shim is still exiting.
fn stop_real_swarm_init(setup: &Setup, name: &str, args: &[&str], env: &str) -> RealStop {
    let out = setup.dir.join(&format!("real-{name}-{}", unique()));
    std::fs::create_dir(&out).unwrap();
    let quoted: Vec<String> = args
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    // The trap is set before the shim runs and uses only builtins. After
    // that the shell starts no process (one forked just as SIGTERM arrives
    // could lose it and hold the teardown for the whole grace period): it
    // waits in `read` on a FIFO nobody writes, which the trapped SIGTERM
    // interrupts.
    let script = format!(
        "mkfifo \"$OUT/block\" && exec 3<>\"$OUT/block\" || exit 99; \
         trap ': >\"$OUT/term\"; exit 0' TERM; \
         ( trap '' TERM; exec 3>&-; {env} \"$SHIM\" {} >\"$OUT/stdout\" 2>\"$OUT/stderr\"; \
           echo $? >\"$OUT/rc.tmp\"; mv \"$OUT/rc.tmp\" \"$OUT/rc\" ) & \
         while :; do read -r _ <&3; done",
        quoted.join(" ")
    );
    let run_dir = setup.run_dir();
    let shim = setup.link(name);
    let mut pid1 = Pid1::spawn(
        &["--", "sh", "-c", &script],
        &[
            ("SWARM_INIT_RUN_DIR", run_dir.to_str().unwrap()),
            ("SHIM", shim.to_str().unwrap()),
            ("OUT", out.to_str().unwrap()),
        ],
    );
    let code = pid1.exit_code(Duration::from_secs(30));
    assert!(
        common::wait_for_file(&out.join("rc"), Duration::from_secs(5)),
        "the shim did not finish; log:\n{}",
        pid1.stderr_text()
    );
    let shim_rc: i32 = std::fs::read_to_string(out.join("rc"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let shim_stderr = std::fs::read_to_string(out.join("stderr")).unwrap();
    let child_got_term = out.join("term").exists();
    RealStop {
        pid1,
        code,
        shim_rc,
        shim_stderr,
        child_got_term,
    }
}

#[test]
fn every_name_stops_swarm_init_with_exit_10_and_logs_mode_and_message() {
    if !common::require_root_and_unshare() {
        return;
    }
    let setup = Setup::new("shim-real");
    let cases: [(&str, &[&str], &str, &str, &str); 6] = [
        (
            "shutdown",
            &["-r", "now", "Restarting after task 42"],
            "",
            "reboot",
            "Restarting after task 42",
        ),
        (
            "shutdown",
            &["-H", "+5", "halt", "later"],
            "",
            "halt",
            "halt later",
        ),
        ("shutdown", &["now"], "SUDO_UID=1234", "poweroff", ""),
        ("reboot", &[], "", "reboot", ""),
        ("halt", &[], "", "halt", ""),
        ("poweroff", &["-f"], "", "poweroff", ""),
    ];
    for (name, args, env, mode, message) in cases {
        let stop = stop_real_swarm_init(&setup, name, args, env);
        let (log, shim_stderr) = (stop.pid1.stderr_text(), &stop.shim_stderr);
        assert_eq!(stop.code, 10, "{name} {args:?}: log:\n{log}");
        assert_eq!(
            stop.shim_rc, 0,
            "{name} {args:?}: {shim_stderr}\nlog:\n{log}"
        );
        assert!(
            stop.child_got_term,
            "{name} {args:?}: the main child got no SIGTERM before the end; log:\n{log}"
        );
        assert!(
            shim_stderr.contains(&format!("{name}: {mode} requested")),
            "{name} {args:?}: {shim_stderr}"
        );
        let line = log
            .lines()
            .find(|l| l.contains("shutdown requested"))
            .unwrap_or_else(|| panic!("no shutdown request logged:\n{log}"));
        // src/supervisor.rs logs: `shutdown requested from pid P (uid U):
        // mode M[, run by uid N], message "MSG"`.
        let (_, request) = line
            .split_once("): mode ")
            .unwrap_or_else(|| panic!("{name} {args:?}: no sender and mode in {line}"));
        let caller = if env.contains("SUDO_UID=1234") {
            ", run by uid 1234"
        } else {
            ", run by uid 0"
        };
        assert!(
            request.starts_with(&format!("{mode}{caller}, message ")),
            "{name} {args:?}: want mode {mode}{caller} in {line}"
        );
        assert!(
            request.ends_with(&format!(", message {message:?}")),
            "{name} {args:?}: want message {message:?} at the end of {line}"
        );
        // swarm-init consumed the request.
        assert!(
            !setup.request_path().exists(),
            "{name}: request file left behind; log:\n{log}"
        );
    }
}

/// Issue 2's case on its own: `shutdown -r now` from inside makes
/// swarm-init SIGTERM the main child first, then exit with 10.
#[test]
fn shutdown_r_now_sigterms_the_main_child_then_exits_10() {
    if !common::require_root_and_unshare() {
        return;
    }
    let setup = Setup::new("shim-term");
    let stop = stop_real_swarm_init(&setup, "shutdown", &["-r", "now"], "");
    let log = stop.pid1.stderr_text();
    assert_eq!(stop.shim_rc, 0, "{}\nlog:\n{log}", stop.shim_stderr);
    assert!(
        stop.child_got_term,
        "the main child got no SIGTERM; log:\n{log}"
    );
    assert_eq!(stop.code, 10, "log:\n{log}");
}
