//! swarm-init as a real PID 1: reaping, forwarding, shutdown and exit codes,
//! observed from outside the PID namespace the way a container user sees them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{wait_for_file, wait_until, Pid1, TempDir};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(20);

/// A python program that records every signal it gets (by number, one per
/// line, in `<dir>/<role>.signals`). The main child starts a grandchild with
/// the same program in its own process group, then marks itself ready.
const RECORDER: &str = r#"
import os, signal, subprocess, sys, time
role, out = sys.argv[1], sys.argv[2]
log = open(os.path.join(out, role + ".signals"), "a", buffering=1)
def record(signo, frame):
    log.write("%d\n" % signo)
for s in range(1, signal.SIGRTMAX + 1):
    if s in (signal.SIGKILL, signal.SIGSTOP, 32, 33):
        continue
    try:
        signal.signal(s, record)
    except (OSError, ValueError):
        pass
if role == "child":
    subprocess.Popen([sys.executable, "-c", sys.argv[3], "grandchild", out, sys.argv[3]])
    while not os.path.exists(os.path.join(out, "grandchild.ready")):
        time.sleep(0.005)
open(os.path.join(out, role + ".ready"), "w").close()
while True:
    signal.pause()
"#;

fn recorded(dir: &TempDir, role: &str) -> Vec<i32> {
    std::fs::read_to_string(dir.join(&format!("{role}.signals")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

fn start_recorder(dir: &TempDir, extra_args: &[&str], env: &[(&str, &str)]) -> Pid1 {
    let out = dir.path().to_str().unwrap();
    let mut args: Vec<&str> = extra_args.to_vec();
    args.extend(["--", "python3", "-c", RECORDER, "child", out, RECORDER]);
    let pid1 = Pid1::spawn(&args, env);
    assert!(
        wait_for_file(&dir.join("child.ready"), LONG),
        "recorder not ready; log:\n{}",
        pid1.stderr_text()
    );
    pid1
}

/// Starts `sh -c "SETUP touch READY; RUN"` under swarm-init and waits until
/// the main child has passed SETUP (its traps are set) and marked itself ready.
fn spawn_ready(dir: &TempDir, setup: &str, run: &str, env: &[(&str, &str)]) -> Pid1 {
    let ready = dir.join("ready");
    let script = format!("{setup} touch {}; {run}", ready.display());
    let pid1 = Pid1::spawn(&["--", "sh", "-c", &script], env);
    assert!(
        wait_for_file(&ready, LONG),
        "main child never got ready; log:\n{}",
        pid1.stderr_text()
    );
    pid1
}

/// The main child's script: sleep until told otherwise.
const SLEEP: &str = "exec sleep 1000";
/// The same, as a shell loop, so the shell's own traps stay in force.
const LOOP: &str = "while :; do sleep 1; done";

/// The signals a user expects forwarded, by number.
fn forwarded_signals() -> Vec<i32> {
    vec![
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR2,
        libc::SIGWINCH,
        libc::SIGCONT,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGALRM,
        libc::SIGPIPE,
        libc::SIGURG,
        libc::SIGXCPU,
        libc::SIGPWR,
        libc::SIGRTMIN() + 1,
    ]
}

#[test]
fn exit_code_of_the_main_child_becomes_init_s() {
    if !common::require_root_and_unshare() {
        return;
    }
    let mut pid1 = Pid1::spawn(&["--", "sh", "-c", "exit 7"], &[]);
    assert_eq!(pid1.exit_code(LONG), 7, "{}", pid1.stderr_text());
    assert!(pid1.stderr_text().contains("main child exited with code 7"));
}

#[test]
fn main_child_killed_by_signal_gives_128_plus_n() {
    if !common::require_root_and_unshare() {
        return;
    }
    let mut pid1 = Pid1::spawn(&["--", "sh", "-c", "kill -9 $$"], &[]);
    assert_eq!(pid1.exit_code(LONG), 137, "{}", pid1.stderr_text());
}

#[test]
fn missing_program_gives_127_and_says_so() {
    if !common::require_root_and_unshare() {
        return;
    }
    let mut pid1 = Pid1::spawn(&["--", "/nonexistent/program"], &[]);
    assert_eq!(pid1.exit_code(LONG), 127);
    assert!(
        pid1.stderr_text().contains("not found"),
        "{}",
        pid1.stderr_text()
    );
}

#[test]
fn configuration_errors_exit_before_starting_anything() {
    if !common::require_root_and_unshare() {
        return;
    }
    let mut pid1 = Pid1::spawn(&["--frobnicate", "--", "true"], &[]);
    assert_eq!(pid1.exit_code(LONG), 64);
    assert!(pid1.stderr_text().contains("unknown option '--frobnicate'"));

    let dir = TempDir::new("config");
    let marker = dir.join("started");
    for (name, value) in [
        ("SWARM_INIT_GRACE_SECONDS", "ten"),
        ("SWARM_INIT_SHUTDOWN_EXIT_CODE", "300"),
        ("SWARM_INIT_LOG", "loud"),
        ("SWARM_INIT_FORWARD_TO_GROUP", "maybe"),
    ] {
        let mut pid1 = Pid1::spawn(&["--", "touch", marker.to_str().unwrap()], &[(name, value)]);
        assert_eq!(pid1.exit_code(LONG), 78, "{name}={value}");
        assert!(!marker.exists(), "the program ran despite {name}={value}");
        let log = pid1.stderr_text();
        assert_eq!(log.lines().count(), 1, "one clear line: {log}");
        assert!(log.contains(name), "{log}");
        assert!(!log.contains("main child is pid"), "{log}");
    }
}

#[test]
fn orphan_storm_leaves_no_zombies() {
    if !common::require_root_and_unshare() {
        return;
    }
    let dir = TempDir::new("storm");
    let done = dir.join("done");
    // Each subshell forks `true` and exits at once, so 3000 orphans are
    // reparented to PID 1, which alone can reap them.
    let script = format!(
        "i=0; while [ $i -lt 3000 ]; do (true &); i=$((i+1)); done; touch {}; exec sleep 1000",
        done.display()
    );
    let pid1 = Pid1::spawn(&["--", "sh", "-c", &script], &[]);
    assert!(
        wait_for_file(&done, Duration::from_secs(120)),
        "{}",
        pid1.stderr_text()
    );
    let zombies = || {
        pid1.namespace_processes()
            .into_iter()
            .filter(|&p| common::process_state(p) == Some('Z'))
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(10), || zombies() == 0),
        "{} zombies left after the storm",
        zombies()
    );
    // Only the main child (sleep) is left.
    assert_eq!(pid1.namespace_processes().len(), 1);
}

#[test]
fn signals_reach_the_main_child_and_not_its_children() {
    if !common::require_root_and_unshare() {
        return;
    }
    let dir = TempDir::new("forward");
    let pid1 = start_recorder(&dir, &[], &[]);
    for (i, &signo) in forwarded_signals().iter().enumerate() {
        pid1.signal(signo);
        assert!(
            wait_until(LONG, || recorded(&dir, "child").len() > i),
            "main child never got signal {signo}; log:\n{}",
            pid1.stderr_text()
        );
    }
    assert_eq!(recorded(&dir, "child"), forwarded_signals());
    // The grandchild shares the child's process group; had a signal been
    // sent to the group it would be pending there already.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(recorded(&dir, "grandchild"), Vec::<i32>::new());
}

#[test]
fn group_mode_reaches_the_whole_process_group() {
    if !common::require_root_and_unshare() {
        return;
    }
    for (args, env) in [
        (vec!["-g"], vec![]),
        (vec![], vec![("SWARM_INIT_FORWARD_TO_GROUP", "1")]),
    ] {
        let dir = TempDir::new("group");
        let pid1 = start_recorder(&dir, &args, &env);
        for (i, &signo) in [libc::SIGHUP, libc::SIGTERM, libc::SIGUSR2]
            .iter()
            .enumerate()
        {
            pid1.signal(signo);
            for role in ["child", "grandchild"] {
                assert!(
                    wait_until(LONG, || recorded(&dir, role).len() > i),
                    "{role} never got signal {signo} ({args:?} {env:?})"
                );
            }
        }
    }
}

#[test]
fn sigchld_is_never_forwarded() {
    if !common::require_root_and_unshare() {
        return;
    }
    let dir = TempDir::new("sigchld");
    let pid1 = start_recorder(&dir, &[], &[]);
    // Real-time signals are delivered after standard ones, so once the
    // sentinel is recorded a forwarded SIGCHLD would have been too.
    let sentinel = libc::SIGRTMIN() + 2;
    pid1.signal(libc::SIGCHLD);
    pid1.signal(sentinel);
    assert!(wait_until(LONG, || recorded(&dir, "child").contains(&sentinel)));
    assert_eq!(recorded(&dir, "child"), vec![sentinel]);
}

#[test]
fn shutdown_request_sends_sigterm_first_then_exits_10() {
    if !common::require_root_and_unshare() {
        return;
    }
    let dir = TempDir::new("usr1");
    let got_term = dir.join("got-term");
    let trap = format!("trap 'touch {}; exit 0' TERM;", got_term.display());
    let mut pid1 = spawn_ready(&dir, &trap, LOOP, &[]);
    pid1.signal(libc::SIGUSR1);
    assert_eq!(pid1.exit_code(LONG), 10, "{}", pid1.stderr_text());
    assert!(got_term.exists(), "the main child never saw SIGTERM");
    let log = pid1.stderr_text();
    assert!(log.contains("shutdown requested"), "{log}");
    assert!(log.contains("from outside the container"), "{log}");
}

#[test]
fn shutdown_exit_code_is_configurable() {
    if !common::require_root_and_unshare() {
        return;
    }
    let dir = TempDir::new("usr1code");
    let mut pid1 = spawn_ready(&dir, "", SLEEP, &[("SWARM_INIT_SHUTDOWN_EXIT_CODE", "0")]);
    pid1.signal(libc::SIGUSR1);
    assert_eq!(pid1.exit_code(LONG), 0);
}

#[test]
fn term_ignoring_child_is_killed_when_the_grace_period_ends() {
    if !common::require_root_and_unshare() {
        return;
    }
    let dir = TempDir::new("stubborn");
    let mut pid1 = spawn_ready(
        &dir,
        "trap '' TERM;",
        LOOP,
        &[("SWARM_INIT_GRACE_SECONDS", "2")],
    );
    let start = Instant::now();
    pid1.signal(libc::SIGUSR1);
    assert_eq!(pid1.exit_code(LONG), 10);
    let took = start.elapsed();
    // Not before the grace period ends, and soon after it.
    assert!(
        took >= Duration::from_secs(2),
        "killed early, after {took:?}"
    );
    assert!(took < Duration::from_secs(4), "killed late, after {took:?}");
    assert!(pid1.stderr_text().contains("sending SIGKILL"));
}

#[test]
fn second_request_during_the_grace_period_skips_the_rest() {
    if !common::require_root_and_unshare() {
        return;
    }
    for second in [libc::SIGUSR1, libc::SIGTERM, libc::SIGINT] {
        let dir = TempDir::new("impatient");
        let mut pid1 = spawn_ready(
            &dir,
            "trap '' TERM;",
            LOOP,
            &[("SWARM_INIT_GRACE_SECONDS", "600")],
        );
        pid1.signal(libc::SIGUSR1);
        assert!(pid1.wait_for_log("sending SIGTERM", LONG));
        pid1.signal(second);
        assert_eq!(pid1.exit_code(LONG), 10, "second signal {second}");
        assert!(pid1.stderr_text().contains("skipping the rest"));
    }
}

#[test]
fn sigterm_to_pid1_stops_a_term_obeying_child_promptly() {
    if !common::require_root_and_unshare() {
        return;
    }
    // What `docker stop` does: SIGTERM to PID 1. The main child (default
    // SIGTERM action) dies, and init follows with its status.
    let dir = TempDir::new("dockerstop");
    let mut pid1 = spawn_ready(&dir, "", SLEEP, &[]);
    pid1.signal(libc::SIGTERM);
    // Well inside the default 10 s grace: nothing waited for a timeout.
    assert_eq!(pid1.exit_code(Duration::from_secs(5)), 143);
}

#[test]
fn leftover_processes_are_stopped_when_the_main_child_exits() {
    if !common::require_root_and_unshare() {
        return;
    }
    // A daemon in its own session is outside the main child's process group:
    // only kill(-1) from PID 1 reaches it. It must end by SIGTERM, well
    // before the grace period would have let SIGKILL do it.
    let dir = TempDir::new("leftover");
    let ready = dir.join("ready");
    let script = format!("setsid sleep 1000 & touch {}; exit 3", ready.display());
    let start = Instant::now();
    let mut pid1 = Pid1::spawn(
        &["--", "sh", "-c", &script],
        &[("SWARM_INIT_GRACE_SECONDS", "60")],
    );
    assert_eq!(pid1.exit_code(LONG), 3, "{}", pid1.stderr_text());
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(ready.exists());
    let log = pid1.stderr_text();
    assert!(
        log.contains("sending SIGTERM to the remaining processes"),
        "{log}"
    );
    assert!(!log.contains("sending SIGKILL"), "{log}");
}

#[test]
fn fetch_as_pid1_still_answers_sigterm() {
    if !common::require_root_and_unshare() {
        return;
    }
    // `docker run IMAGE fetch` makes `fetch` PID 1. A server that accepts
    // connections and never answers keeps the download waiting; `docker
    // stop`'s SIGTERM must still end it at once, not after a timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/bot_code", silent.local_addr().unwrap());
    let dir = TempDir::new("fetchpid1");
    let swarm_dir = dir.join("swarming");
    let mut pid1 = Pid1::spawn(
        &["fetch"],
        &[
            ("SWARM_URL", &url),
            ("SWARM_DIR", swarm_dir.to_str().unwrap()),
            ("SWARM_BOT_USER", "nobody"),
            ("LUCI_MACHINE_TOKEN_FILE", ""),
        ],
    );
    assert!(
        pid1.wait_for_log("main child is pid", LONG),
        "{}",
        pid1.stderr_text()
    );
    pid1.signal(libc::SIGTERM);
    assert_eq!(
        pid1.exit_code(Duration::from_secs(5)),
        143,
        "{}",
        pid1.stderr_text()
    );
}

#[test]
fn not_pid1_signals_only_its_own_descendants() {
    if !common::require_root_and_unshare() {
        return;
    }
    // Inside a namespace whose PID 1 is a shell: a bystander process, and
    // swarm-init (pid > 1) supervising a child that leaves an orphan behind.
    // swarm-init must stop the orphan and leave the bystander alone, where
    // kill(-1) would have hit it.
    let dir = TempDir::new("notpid1");
    let result = dir.join("result");
    let script = format!(
        r#"sleep 1000 & bystander=$!
{bin} -- sh -c 'sleep 1000 & echo $! > {dir}/orphan; exit 5'
echo "init=$?" > {dir}/tmp
if kill -0 $bystander 2>/dev/null; then echo bystander=alive >> {dir}/tmp; else echo bystander=dead >> {dir}/tmp; fi
if kill -0 $(cat {dir}/orphan) 2>/dev/null; then echo orphan=alive >> {dir}/tmp; else echo orphan=dead >> {dir}/tmp; fi
mv {dir}/tmp {result}
"#,
        bin = common::swarm_init_bin().display(),
        dir = dir.path().display(),
        result = result.display()
    );
    let status = common::in_new_pid_namespace()
        .args(["sh", "-c", &script])
        .env("SWARM_INIT_GRACE_SECONDS", "5")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&status.stderr);
    let text = std::fs::read_to_string(&result).unwrap_or_default();
    assert_eq!(
        text, "init=5\nbystander=alive\norphan=dead\n",
        "log:\n{log}"
    );
    assert!(
        log.contains("not PID 1: will signal only my descendants"),
        "{log}"
    );
}

#[test]
fn idle_pid1_does_not_wake_up() {
    if !common::require_root_and_unshare() {
        return;
    }
    let dir = TempDir::new("idle");
    let pid1 = spawn_ready(&dir, "", SLEEP, &[]);
    // Let the exec settle: the child's start-up is not idle time.
    assert!(wait_until(LONG, || {
        pid1.namespace_processes().iter().any(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default() == "sleep\n"
        })
    }));
    let before = pid1.context_switches();
    std::thread::sleep(Duration::from_secs(5));
    let after = pid1.context_switches();
    eprintln!(
        "PID 1: {} context switches in 5 s idle, RSS {} KiB",
        after - before,
        pid1.rss_kib()
    );
    assert_eq!(after - before, 0, "PID 1 woke up while idle");
}
