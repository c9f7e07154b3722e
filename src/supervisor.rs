//! The PID-1 loop: supervise the main child, then tear everything down.
//!
//! Read it top to bottom; every signal decision is made in this file.
//!
//! 1. Block all catchable signals and fork the main child.
//! 2. Supervise: sleep in `sigwaitinfo` (no timeout, so an idle container
//!    costs nothing) and act on each signal: reap on SIGCHLD, stop on
//!    SIGUSR1, forward everything else to the main child.
//! 3. Tear down, once the main child has exited or a stop was requested:
//!    SIGTERM everyone left, wait up to the grace period while reaping,
//!    SIGKILL whatever remains, reap it, and exit.

use crate::process_tree::Scope;
use crate::reaper::{self, Ended};
use crate::settings::Settings;
use crate::signals::{self, Received};
use crate::spawn::{self, Work};
use crate::{exit_code, shutdown_request};
use std::time::{Duration, Instant};

/// Why supervision ended.
#[derive(Clone, Copy)]
enum Stop {
    MainChildEnded(Ended),
    ShutdownRequested,
}

/// After SIGKILL, how long to wait for the kernel to finish off processes.
/// Only a process stuck in uninterruptible sleep (a hung NFS read, say) can
/// take longer; PID 1 then exits anyway rather than wedge the container.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Runs swarm-init as an init; returns the exit code for PID 1. `mode` says
/// what the main child does, for the start-up log line.
pub fn run(settings: &Settings, work: Work, mode: &str) -> i32 {
    let scope = Scope::current();
    if let Scope::Descendants { own_pid } = scope {
        // Not PID 1 (under another init, or in a shell): become a subreaper
        // so orphaned descendants are reparented to us, not to the real init,
        // and we can still reap and signal them.
        // SAFETY: plain prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        if rc != 0 {
            log::warn!(
                "cannot register as child subreaper ({}); orphans will go to the real init",
                std::io::Error::last_os_error()
            );
        }
        log::info!("running as pid {own_pid}, not PID 1: will signal only my descendants");
    }

    let supervised = signals::supervised();
    if let Err(err) = signals::block(&supervised) {
        log::error!("cannot block signals: {err}");
        return exit_code::OS_ERROR;
    }
    let main_child = match spawn::main_child(&work) {
        Ok(pid) => pid,
        Err(err) => {
            log::error!("cannot start the main child: {err}");
            return exit_code::OS_ERROR;
        }
    };
    // Logged after the fork, so that the child is already on its way.
    log::info!(
        "swarm-init {} starting as pid {} in {mode}; main child is pid {main_child}",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );
    crate::memory::release_startup_pages();

    let stop = supervise(settings, main_child, &supervised);
    let exit_code = match stop {
        Stop::MainChildEnded(ended) => ended.exit_code(),
        Stop::ShutdownRequested => settings.shutdown_exit_code,
    };
    match stop {
        // The common end: the main child exited and left nothing behind.
        Stop::MainChildEnded(ended) if reaper::sweep(0).none_left => {
            log::info!("main child {ended}; exiting with code {exit_code}");
            return exit_code;
        }
        Stop::MainChildEnded(ended) => {
            log::info!("main child {ended}");
            tear_down(settings, scope, None, &supervised);
        }
        Stop::ShutdownRequested => tear_down(settings, scope, Some(main_child), &supervised),
    }
    log::info!("exiting with code {exit_code}");
    exit_code
}

/// Phase 2: wait for signals and act on each, until the main child ends or a
/// stop is requested.
fn supervise(settings: &Settings, main_child: i32, supervised: &signals::SignalSet) -> Stop {
    // SAFETY: getpid cannot fail.
    let own_pid = unsafe { libc::getpid() };
    loop {
        let received = match signals::wait(supervised) {
            Ok(received) => received,
            Err(err) => {
                // sigwaitinfo only fails for an invalid set; nothing better
                // to do than stop cleanly rather than spin.
                log::error!("waiting for signals failed: {err}; stopping");
                return Stop::ShutdownRequested;
            }
        };
        match received.signo {
            // A child (or an orphan we inherited) exited: reap it. Never
            // forwarded: SIGCHLD is about our children, not the main child's.
            libc::SIGCHLD => {
                if let Some(ended) = reaper::sweep(main_child).main_child {
                    return Stop::MainChildEnded(ended);
                }
            }
            // SIGUSR1 is the shutdown request (from the shim, or `docker kill
            // -s USR1`). The main child gets SIGTERM in teardown, with a grace
            // period, instead of the kernel's SIGKILL.
            libc::SIGUSR1 => {
                log_shutdown_request(&received);
                return Stop::ShutdownRequested;
            }
            // A signal we raised ourselves (SIGPIPE when stderr's reader went
            // away, say) is about PID 1, not a message for the main child.
            _ if received.sender_pid == own_pid => {
                log::debug!(
                    "ignoring {} raised by PID 1 itself",
                    signals::name(received.signo)
                );
            }
            // Everything else, SIGTERM and SIGINT included, goes to the main
            // child only: the Swarming bot decides when to quit, and its task
            // processes must not be signalled behind its back. With -g the
            // whole process group of the main child gets it, like `tini -g`.
            signo => forward(settings, main_child, signo),
        }
    }
}

fn forward(settings: &Settings, main_child: i32, signo: i32) {
    let (target, whom) = if settings.forward_to_group {
        (-main_child, "process group of the main child")
    } else {
        (main_child, "main child")
    };
    // SAFETY: target is the main child's pid or its process group.
    if unsafe { libc::kill(target, signo) } == 0 {
        log::debug!("forwarded {} to the {whom}", signals::name(signo));
    } else {
        log::warn!(
            "cannot forward {} to the {whom}: {}",
            signals::name(signo),
            std::io::Error::last_os_error()
        );
    }
}

fn log_shutdown_request(received: &Received) {
    let sender = match received.sender_pid {
        0 => "from outside the container".to_string(),
        pid => format!("from pid {pid} (uid {})", received.sender_uid),
    };
    match shutdown_request::take(received.sender_pid) {
        Some(request) => {
            let caller = request
                .uid
                .map_or_else(String::new, |uid| format!(", run by uid {uid}"));
            log::info!(
                "shutdown requested {sender}: mode {}{caller}, message {:?}",
                if request.mode.is_empty() {
                    "unknown"
                } else {
                    &request.mode
                },
                request.message
            );
        }
        None => log::info!("shutdown requested by SIGUSR1 {sender}"),
    }
}

/// Phase 3: SIGTERM, grace period, SIGKILL, reap. Returns once nothing is
/// left (or, for processes the kernel cannot kill, after `KILL_WAIT`).
fn tear_down(
    settings: &Settings,
    scope: Scope,
    main_child: Option<i32>,
    supervised: &signals::SignalSet,
) {
    let mut main_child = main_child;
    if reap(&mut main_child) {
        return;
    }
    let remaining = if main_child.is_some() {
        "the main child and every other process"
    } else {
        "the remaining processes"
    };
    log::info!(
        "sending SIGTERM to {remaining}; SIGKILL follows in {} s",
        settings.grace.as_secs()
    );
    scope.signal_all(libc::SIGTERM);
    // A stopped process would sit on its SIGTERM until continued.
    scope.signal_all(libc::SIGCONT);

    let deadline = Instant::now() + settings.grace;
    if !wait_for_all_to_end(&mut main_child, supervised, deadline, true) {
        log::info!("sending SIGKILL to the processes still running");
        scope.signal_all(libc::SIGKILL);
        if !wait_for_all_to_end(
            &mut main_child,
            supervised,
            Instant::now() + KILL_WAIT,
            false,
        ) {
            log::warn!(
                "processes survived SIGKILL for {} s (uninterruptible sleep?); exiting anyway",
                KILL_WAIT.as_secs()
            );
        }
    }
}

/// Reaps what has ended; clears `main_child` (logging how it ended) once it
/// is reaped, so its pid, which may be recycled, is never signalled again.
/// True when no child at all is left.
fn reap(main_child: &mut Option<i32>) -> bool {
    // pid 0 never matches a reaped child.
    let sweep = reaper::sweep(main_child.unwrap_or(0));
    if let (Some(pid), Some(ended)) = (*main_child, sweep.main_child) {
        log::info!("main child (pid {pid}) {ended}");
        *main_child = None;
    }
    sweep.none_left
}

/// Reaps until no child is left (true) or the deadline passes (false).
/// During the grace period, another SIGUSR1, SIGTERM or SIGINT means "stop
/// now" (the operator is impatient; `docker stop` sends SIGKILL soon anyway):
/// it ends the wait early (false). Other signals still reach the main child
/// while it lives (`main_child` is cleared once it is reaped, so a recycled
/// pid is never signalled).
fn wait_for_all_to_end(
    main_child: &mut Option<i32>,
    supervised: &signals::SignalSet,
    deadline: Instant,
    impatience_ends_wait: bool,
) -> bool {
    loop {
        if reap(main_child) {
            return true;
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return false;
        };
        match signals::wait_timeout(supervised, left) {
            Ok(None)
            | Ok(Some(Received {
                signo: libc::SIGCHLD,
                ..
            })) => {}
            Ok(Some(received))
                if impatience_ends_wait
                    && matches!(received.signo, libc::SIGUSR1 | libc::SIGTERM | libc::SIGINT) =>
            {
                log::info!(
                    "{} during the grace period: skipping the rest of it",
                    signals::name(received.signo)
                );
                return false;
            }
            Ok(Some(received)) => {
                if let Some(pid) = *main_child {
                    // SAFETY: pid is our unreaped child, so it cannot be recycled.
                    unsafe { libc::kill(pid, received.signo) };
                }
            }
            Err(err) => {
                log::error!("waiting for signals failed: {err}");
                return false;
            }
        }
    }
}
