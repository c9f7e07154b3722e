//! Which signals PID 1 takes, and how it waits for them.
//!
//! PID 1 installs no signal handlers at all. It blocks every catchable signal
//! and collects them with `sigwaitinfo`, so the whole init runs as one plain
//! loop with no async-signal-safety concerns, and it sleeps in the kernel
//! until a signal arrives: an idle container costs PID 1 no wakeups.
//!
//! Blocking also matters for PID 1 specifically: the kernel discards signals
//! that PID 1 has left at their default action, but never discards a blocked
//! one, so `docker stop`'s SIGTERM is always delivered here.

use std::io;
use std::time::Duration;

/// One received signal, with the sender's identity from its siginfo.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub signo: i32,
    /// Sender's pid in our PID namespace; 0 when it came from outside it
    /// (for example `docker kill`) or from the kernel.
    pub sender_pid: i32,
    pub sender_uid: u32,
}

/// A signal set; a thin safe wrapper over `sigset_t`.
#[derive(Clone, Copy)]
pub struct SignalSet(libc::sigset_t);

impl SignalSet {
    fn empty() -> Self {
        // SAFETY: sigemptyset fully initialises the zeroed set it is given.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        unsafe { libc::sigemptyset(&mut set) };
        SignalSet(set)
    }

    fn add(&mut self, signo: i32) {
        // SAFETY: the set is initialised; an invalid number only returns EINVAL.
        unsafe { libc::sigaddset(&mut self.0, signo) };
    }
}

/// Signals that report a fault in the process that receives them. Blocking
/// them would hide a real crash of PID 1, so they keep their default action.
const SYNCHRONOUS_FAULTS: [i32; 7] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGTRAP,
    libc::SIGSYS,
    libc::SIGABRT,
];

/// Every signal PID 1 takes: all but SIGKILL and SIGSTOP (which cannot be
/// caught) and the synchronous faults. Real-time signals are included so they
/// can be forwarded like any other.
pub fn supervised() -> SignalSet {
    let mut set = SignalSet::empty();
    for signo in 1..=libc::SIGRTMAX() {
        if signo == libc::SIGKILL || signo == libc::SIGSTOP || SYNCHRONOUS_FAULTS.contains(&signo) {
            continue;
        }
        // glibc reserves the first real-time signals for its threads.
        if (libc::SIGRTMIN() - 2..libc::SIGRTMIN()).contains(&signo) {
            continue;
        }
        set.add(signo);
    }
    set
}

/// Blocks `set` for this process (it is single-threaded).
pub fn block(set: &SignalSet) -> io::Result<()> {
    // SAFETY: valid set pointer, null old-set pointer is allowed.
    let rc = unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set.0, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Gives the calling process (the freshly forked main child) a clean signal
/// state before it execs: every disposition back to default (Rust's runtime
/// ignores SIGPIPE, and ignored dispositions survive exec) and nothing blocked.
pub fn reset_for_exec() {
    for signo in 1..=libc::SIGRTMAX() {
        if signo == libc::SIGKILL || signo == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is always a valid disposition; errors (reserved
        // numbers) are harmless and ignored.
        unsafe { libc::signal(signo, libc::SIG_DFL) };
    }
    let empty = SignalSet::empty();
    // SAFETY: valid set pointer.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &empty.0, std::ptr::null_mut()) };
}

/// Waits, without any timeout, until a signal of `set` is pending.
pub fn wait(set: &SignalSet) -> io::Result<Received> {
    loop {
        // SAFETY: siginfo_t is plain data that the kernel fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let signo = unsafe { libc::sigwaitinfo(&set.0, &mut info) };
        if signo > 0 {
            return Ok(received(signo, &info));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Waits at most `timeout` for a signal of `set`; `Ok(None)` on timeout.
/// Only used during teardown, where a deadline exists.
pub fn wait_timeout(set: &SignalSet, timeout: Duration) -> io::Result<Option<Received>> {
    let spec = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: siginfo_t is plain data that the kernel fills in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let signo = unsafe { libc::sigtimedwait(&set.0, &mut info, &spec) };
    if signo > 0 {
        return Ok(Some(received(signo, &info)));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) => Ok(None),
        // Interrupted: the caller recomputes the time left and waits again.
        Some(libc::EINTR) => Ok(None),
        _ => Err(err),
    }
}

fn received(signo: i32, info: &libc::siginfo_t) -> Received {
    // SAFETY: si_pid/si_uid are valid to read for every signal; for
    // kernel-generated ones they are simply zero.
    let (sender_pid, sender_uid) = unsafe { (info.si_pid(), info.si_uid()) };
    Received {
        signo,
        sender_pid,
        sender_uid,
    }
}

/// A signal's conventional name, for logs ("SIGTERM", "SIGRTMIN+3").
pub fn name(signo: i32) -> String {
    const NAMES: [(i32, &str); 27] = [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGTRAP, "SIGTRAP"),
        (libc::SIGABRT, "SIGABRT"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGKILL, "SIGKILL"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGCHLD, "SIGCHLD"),
        (libc::SIGCONT, "SIGCONT"),
        (libc::SIGSTOP, "SIGSTOP"),
        (libc::SIGTSTP, "SIGTSTP"),
        (libc::SIGTTIN, "SIGTTIN"),
        (libc::SIGTTOU, "SIGTTOU"),
        (libc::SIGURG, "SIGURG"),
        (libc::SIGXCPU, "SIGXCPU"),
        (libc::SIGXFSZ, "SIGXFSZ"),
        (libc::SIGVTALRM, "SIGVTALRM"),
        (libc::SIGPROF, "SIGPROF"),
        (libc::SIGWINCH, "SIGWINCH"),
    ];
    if let Some((_, name)) = NAMES.iter().find(|(n, _)| *n == signo) {
        return (*name).to_string();
    }
    match signo {
        libc::SIGIO => "SIGIO".to_string(),
        libc::SIGPWR => "SIGPWR".to_string(),
        libc::SIGSYS => "SIGSYS".to_string(),
        n if n >= libc::SIGRTMIN() && n <= libc::SIGRTMAX() => {
            format!("SIGRTMIN+{}", n - libc::SIGRTMIN())
        }
        n => format!("signal {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(set: &SignalSet, signo: i32) -> bool {
        unsafe { libc::sigismember(&set.0, signo) == 1 }
    }

    #[test]
    fn supervised_set_takes_catchable_signals_only() {
        let set = supervised();
        for signo in [
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGWINCH,
            libc::SIGCONT,
            libc::SIGTSTP,
            libc::SIGCHLD,
            libc::SIGRTMIN(),
            libc::SIGRTMAX(),
        ] {
            assert!(contains(&set, signo), "{}", name(signo));
        }
        for signo in [libc::SIGKILL, libc::SIGSTOP, libc::SIGSEGV, libc::SIGABRT] {
            assert!(!contains(&set, signo), "{}", name(signo));
        }
    }

    #[test]
    fn names() {
        assert_eq!(name(libc::SIGTERM), "SIGTERM");
        assert_eq!(name(libc::SIGRTMIN() + 3), "SIGRTMIN+3");
    }
}
