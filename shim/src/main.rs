//! `swarm-shutdown`: the container's `/sbin/shutdown` (also `reboot`, `halt`,
//! `poweroff`). It asks swarm-init, PID 1, to stop the container.
//!
//! Order matters: parse the command line (usage errors send nothing), check
//! root, check that PID 1 really is swarm-init (a shim that ends up on a host
//! must never signal the host's init), record the request for swarm-init's
//! log, send SIGUSR1 to PID 1, confirm on stderr and exit at once. swarm-init
//! does the actual stopping; this process is one of those it will end.

mod args;
mod exit_code;
mod pid1;
mod request_file;

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use args::{Action, Personality, Request, When};
use pid1::Pid1;

fn main() {
    std::process::exit(run());
}

/// Writes one line to stderr. Errors are ignored on purpose: a closed or
/// broken stderr must not turn into a panic or change the exit code.
fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn run() -> i32 {
    let mut argv = std::env::args_os();
    let argv0 = argv.next().unwrap_or_default();
    let rest: Vec<OsString> = argv.collect();
    let personality = Personality::from_argv0(&argv0);
    let prog = Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "shutdown".to_owned());

    let action = match args::parse(personality, &rest) {
        Ok(action) => action,
        Err(e) => {
            say(&format!(
                "{prog}: {e} (see '{prog} --help'); nothing was sent"
            ));
            return exit_code::USAGE;
        }
    };

    match action {
        Action::Stop(request) => stop(&prog, &request),
        Action::Help => {
            let _ = std::io::stdout().write_all(args::usage(personality, &prog).as_bytes());
            exit_code::OK
        }
        Action::Version => {
            let _ = writeln!(
                std::io::stdout(),
                "{prog} (swarm-shutdown) {}",
                env!("CARGO_PKG_VERSION")
            );
            exit_code::OK
        }
        Action::Cancel => {
            say(&format!(
                "{prog}: nothing to cancel: in a swarm-init container a stop is never scheduled, it happens at once"
            ));
            exit_code::OK
        }
        Action::Show => {
            say(&format!(
                "{prog}: no stop is scheduled: in a swarm-init container a stop happens at once"
            ));
            exit_code::OK
        }
        Action::WallOnly(_) => {
            say(&format!(
                "{prog}: -k given: nothing was sent, the container keeps running (drop -k to stop it)"
            ));
            exit_code::OK
        }
        Action::WtmpOnly(_) => {
            say(&format!(
                "{prog}: --wtmp-only given: nothing was sent, the container keeps running (drop -w to stop it)"
            ));
            exit_code::OK
        }
    }
}

/// Checks, records and signals. Returns the exit code.
fn stop(prog: &str, request: &Request) -> i32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        say(&format!(
            "{prog}: only root can stop the container: run it with sudo (sudo {prog} ...); nothing was sent"
        ));
        return exit_code::NOT_ROOT;
    }

    match pid1::identify(Path::new("/proc")) {
        Pid1::SwarmInit => {}
        Pid1::Other(name) => {
            say(&format!(
                "{prog}: PID 1 is {name}, not swarm-init: refusing to signal it; this shutdown only stops swarm-init containers"
            ));
            return exit_code::FAILED;
        }
        Pid1::Unknown(why) => {
            say(&format!(
                "{prog}: cannot tell what PID 1 is ({why}): refusing to signal it; this shutdown only stops swarm-init containers"
            ));
            return exit_code::FAILED;
        }
    }

    match &request.when {
        When::Now => {}
        When::Omitted => say(&format!(
            "{prog}: no time given: stopping now (a container does not wait the minute shutdown(8) would)"
        )),
        When::Later(time) => say(&format!(
            "{prog}: time '{time}' ignored: in a container the stop happens now"
        )),
    }

    let record = request_file::Record {
        mode: request.mode,
        message: request.message.clone(),
        uid: caller_uid(),
        pid: std::process::id(),
        time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let dir = request_file::run_dir(std::env::var_os(request_file::RUN_DIR_ENV));
    // The stop matters more than its log entry: if the request cannot be
    // recorded (read-only /run, say), still signal, or a bot that runs
    // `shutdown -r now` and waits to be killed would wait forever.
    let written = match request_file::write(&dir, &record) {
        Ok(path) => Some(path),
        Err(e) => {
            say(&format!(
                "{prog}: warning: could not record the request ({e}); swarm-init will stop the container without logging its mode and message (set {} to a writable directory for both)",
                request_file::RUN_DIR_ENV
            ));
            None
        }
    };

    // swarm-init answers SIGUSR1 by sending SIGTERM to every process, this one
    // included, possibly before we finish. Block it so the confirmation is
    // always printed and the caller always sees exit 0; the pending signal
    // dies with us.
    block_termination_signals();

    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(1, libc::SIGUSR1) } != 0 {
        let err = std::io::Error::last_os_error();
        if let Some(path) = written {
            let _ = std::fs::remove_file(path);
        }
        say(&format!(
            "{prog}: could not send SIGUSR1 to swarm-init (PID 1): {err}; the container was not stopped"
        ));
        return exit_code::FAILED;
    }

    let message = request_file::sanitize_message(&request.message);
    let suffix = if message.is_empty() {
        String::new()
    } else {
        format!(" (message: {message})")
    };
    say(&format!(
        "{prog}: {} requested: asked swarm-init (PID 1) to stop the container{suffix}",
        request.mode.as_str()
    ));
    exit_code::OK
}

/// Blocks SIGTERM, SIGINT and SIGHUP. Best effort: if it fails the stop
/// still happens, only the confirmation line may be lost.
fn block_termination_signals() {
    // SAFETY: the set is initialised by sigemptyset before use, and the
    // pointers are valid for the duration of each call.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// The real uid of whoever asked: sudo runs us with uid 0 and says who the
/// caller was in SUDO_UID; without sudo (or if SUDO_UID is bogus) getuid().
fn caller_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    if uid == 0 {
        if let Some(sudo_uid) = std::env::var("SUDO_UID")
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
        {
            return sudo_uid;
        }
    }
    uid
}
