//! Reaping: collecting the exit status of every child, the main child and
//! orphans alike, so that no zombie outlives a SIGCHLD.

use std::io;

/// How a process ended, as `waitpid` reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Killed(i32),
}

impl Ended {
    /// The exit code a shell would report: the code, or 128+N for signal N.
    pub fn exit_code(self) -> i32 {
        match self {
            Ended::Exited(code) => code,
            Ended::Killed(signo) => 128 + signo,
        }
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Exited(code) => write!(f, "exited with code {code}"),
            Ended::Killed(signo) => write!(f, "was killed by {}", crate::signals::name(*signo)),
        }
    }
}

/// What one sweep found.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Set when the main child was among the reaped.
    pub main_child: Option<Ended>,
    /// True when no child at all is left (`ECHILD`).
    pub none_left: bool,
}

/// Reaps every child that has ended, without blocking. SIGCHLD signals
/// coalesce, so one signal may stand for many exits: loop until none is ready.
pub fn sweep(main_child: i32) -> Sweep {
    let mut result = Sweep::default();
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: plain syscall with a valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid == 0 {
            return result;
        }
        if pid < 0 {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => result.none_left = true,
                _ => log::error!("waitpid failed: {err}"),
            }
            return result;
        }
        let ended = if libc::WIFSIGNALED(status) {
            Ended::Killed(libc::WTERMSIG(status))
        } else {
            Ended::Exited(libc::WEXITSTATUS(status))
        };
        if pid == main_child {
            result.main_child = Some(ended);
        } else {
            log::debug!("reaped pid {pid}, which {ended}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(Ended::Exited(7).exit_code(), 7);
        assert_eq!(Ended::Killed(9).exit_code(), 137);
        assert_eq!(Ended::Killed(15).to_string(), "was killed by SIGTERM");
    }
}
