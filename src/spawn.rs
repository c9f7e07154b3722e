//! Starting the main child: fork, give it a clean slate, then exec the
//! program (generic mode) or boot the Swarming bot (bot mode).

use std::ffi::{CString, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;

/// What the main child does after the fork.
pub enum Work {
    /// Generic mode: exec this argv (PATH is searched for argv[0]).
    Exec(Vec<OsString>),
    /// Bot mode: `bot::boot`, which execs the bot or returns an exit code.
    BootBot,
    /// `swarm-init fetch` run as PID 1 (`docker run IMAGE fetch`): the fetch
    /// runs in the main child so that PID 1 still answers `docker stop`.
    Fetch,
}

/// Forks the main child and returns its pid. The child runs in its own
/// process group, so group forwarding (`-g`) reaches it and its helpers but
/// never PID 1, and takes the terminal's foreground when there is one.
pub fn main_child(work: &Work) -> io::Result<i32> {
    // Everything that allocates or can fail is prepared before the fork.
    let argv = match work {
        Work::Exec(args) => Some(to_cstrings(args)?),
        Work::BootBot | Work::Fetch => None,
    };
    let argv_pointers = argv.as_deref().map(null_terminated);
    // SAFETY: swarm-init is single-threaded, so the child may run ordinary
    // code (including allocation) after the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid > 0 {
        // Also done in the child; whichever runs first wins the race, so the
        // group exists before PID 1 could forward a signal to it.
        // SAFETY: plain syscall on our own child.
        unsafe { libc::setpgid(pid, pid) };
        return Ok(pid);
    }
    // In the child from here on; this function never returns.
    // SAFETY: plain syscalls on ourselves.
    unsafe {
        libc::setpgid(0, 0);
        // tcsetpgrp from a background group raises SIGTTOU; it is still
        // blocked here (inherited from PID 1), so the call just succeeds.
        if libc::isatty(libc::STDIN_FILENO) == 1 {
            libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpgrp());
        }
    }
    crate::signals::reset_for_exec();
    let code = match (&argv, &argv_pointers, work) {
        (Some(argv), Some(pointers), _) => exec(argv, pointers),
        (_, _, Work::Fetch) => crate::bot::fetch_command(),
        _ => crate::bot::boot(),
    };
    log::logger().flush();
    // SAFETY: leave without running PID 1's atexit handlers in the child.
    unsafe { libc::_exit(code) }
}

/// The argv array `execvp` wants: pointers into `argv`, then a null.
fn null_terminated(argv: &[CString]) -> Vec<*const libc::c_char> {
    argv.iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Replaces the process with `argv`; returns only on failure, with the exit
/// code a shell would use (127 not found, 126 not executable).
fn exec(argv: &[CString], pointers: &[*const libc::c_char]) -> i32 {
    let Some(program) = argv.first() else {
        return crate::exit_code::USAGE;
    };
    // SAFETY: a null-terminated array of valid C strings that outlive the call.
    unsafe { libc::execvp(program.as_ptr(), pointers.as_ptr()) };
    let err = io::Error::last_os_error();
    let program = program.to_string_lossy();
    match err.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => {
            log::error!("cannot run '{program}': not found; check the program name and PATH");
            crate::exit_code::NOT_FOUND
        }
        _ => {
            log::error!("cannot run '{program}': {err}; check that it is an executable file");
            crate::exit_code::EXEC_FAILED
        }
    }
}

fn to_cstrings(args: &[OsString]) -> io::Result<Vec<CString>> {
    args.iter()
        .map(|a| {
            CString::new(a.as_bytes()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("argument {a:?} contains a NUL byte"),
                )
            })
        })
        .collect()
}
