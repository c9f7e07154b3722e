//! The shutdown request the shim (`/sbin/shutdown`) leaves for PID 1.
//!
//! The shim writes `$SWARM_INIT_RUN_DIR/shutdown-request` (default directory
//! `/run/swarm-init`) atomically, as `key=value` lines (mode, message, uid,
//! pid, time), then sends SIGUSR1 to PID 1. The signal itself is the request;
//! the file only explains it, so a missing or stale file never stops a
//! shutdown. It is read once, when SIGUSR1 arrives, and then removed.

use std::path::PathBuf;

pub const DEFAULT_RUN_DIR: &str = "/run/swarm-init";
const FILE_NAME: &str = "shutdown-request";
/// The shim writes at most about 1 KiB; refuse to read an unbounded file.
const MAX_BYTES: u64 = 8 * 1024;

/// Where the request file lives.
pub fn path() -> PathBuf {
    let dir = std::env::var_os("SWARM_INIT_RUN_DIR")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| DEFAULT_RUN_DIR.into());
    PathBuf::from(dir).join(FILE_NAME)
}

/// What the shim recorded.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub mode: String,
    pub message: String,
    pub uid: Option<u32>,
    pub pid: Option<i32>,
}

/// Reads and removes the request file, if the process that sent SIGUSR1
/// (`sender_pid`) wrote it. A file from another pid is stale: it is removed
/// and ignored.
pub fn take(sender_pid: i32) -> Option<Request> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let path = path();
    // PID 1 must never block here: no FIFO (O_NONBLOCK), no symlink to one
    // (O_NOFOLLOW), nothing but a regular file.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(&path)
        .ok()?;
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        log::warn!("ignoring {}: not a regular file", path.display());
        return None;
    }
    let mut text = String::new();
    let read = file.take(MAX_BYTES).read_to_string(&mut text);
    if let Err(err) = std::fs::remove_file(&path) {
        log::warn!("cannot remove {}: {err}", path.display());
    }
    if let Err(err) = read {
        log::warn!("cannot read {}: {err}", path.display());
        return None;
    }
    let request = parse(&text);
    if request.pid != Some(sender_pid) {
        log::warn!(
            "ignoring {}: written by pid {:?}, but SIGUSR1 came from pid {sender_pid}",
            path.display(),
            request.pid
        );
        return None;
    }
    Some(request)
}

fn parse(text: &str) -> Request {
    let mut request = Request::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "mode" => request.mode = value.to_string(),
            "message" => request.message = value.to_string(),
            "uid" => request.uid = value.parse().ok(),
            "pid" => request.pid = value.parse().ok(),
            _ => {}
        }
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_shims_format() {
        let r = parse("mode=reboot\nmessage=a=b c\nuid=1000\npid=42\ntime=1700000000\n");
        assert_eq!(r.mode, "reboot");
        assert_eq!(r.message, "a=b c");
        assert_eq!(r.uid, Some(1000));
        assert_eq!(r.pid, Some(42));
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in ".*") {
            let _ = parse(&text);
        }
    }
}
