//! Who swarm-init may signal when it tears the container down.
//!
//! As PID 1 of a PID namespace, every other process in the namespace is fair
//! game and `kill(-1, sig)` reaches them all in one call. Anywhere else (under
//! another init, in a shell, in tests) `kill(-1)` would hit the user's whole
//! session, so swarm-init signals only its own descendants, found by walking
//! the parent links in /proc. Registering as a child subreaper keeps orphaned
//! descendants reparented to us, so the walk cannot lose them.

use std::collections::{HashMap, HashSet};
use std::fs;

/// How to reach "every process but me".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// We are PID 1: `kill(-1)` signals the whole namespace except us.
    Namespace,
    /// We are not PID 1: only our descendants, by pid.
    Descendants { own_pid: i32 },
}

impl Scope {
    pub fn current() -> Scope {
        // SAFETY: getpid cannot fail.
        let pid = unsafe { libc::getpid() };
        if pid == 1 {
            Scope::Namespace
        } else {
            Scope::Descendants { own_pid: pid }
        }
    }

    /// Sends `signo` to every process in scope.
    pub fn signal_all(self, signo: i32) {
        match self {
            Scope::Namespace => {
                // SAFETY: only reached when getpid() == 1 (see `current`).
                // ESRCH just means nobody else is left.
                unsafe { libc::kill(-1, signo) };
            }
            Scope::Descendants { own_pid } => {
                // A descendant may fork while we walk; a second pass catches
                // children born during the first. Bounded, never a loop.
                let mut signalled = HashSet::new();
                for _ in 0..3 {
                    let fresh: Vec<i32> = descendants(own_pid)
                        .into_iter()
                        .filter(|pid| !signalled.contains(pid))
                        .collect();
                    if fresh.is_empty() {
                        break;
                    }
                    for pid in fresh {
                        // SAFETY: pid > 1, a descendant of ours. A pid that
                        // is already gone is simply not found next pass.
                        unsafe { libc::kill(pid, signo) };
                        signalled.insert(pid);
                    }
                }
            }
        }
    }
}

/// All live descendants of `root`, read from /proc/*/stat.
pub fn descendants(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        log::warn!("cannot read /proc: descendants of pid {root} cannot be found");
        return Vec::new();
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue; // it exited meanwhile
        };
        if let Some(ppid) = parent_from_stat(&stat) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut seen = HashSet::from([root]);
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        for &kid in children.get(&pid).into_iter().flatten() {
            if seen.insert(kid) {
                found.push(kid);
                queue.push(kid);
            }
        }
    }
    found
}

/// The parent pid from a /proc/PID/stat line. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted after its last ')'.
fn parent_from_stat(stat: &str) -> Option<i32> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_from_stat_survives_odd_names() {
        assert_eq!(parent_from_stat("42 (a) b) c) S 7 42 42 0"), Some(7));
        assert_eq!(parent_from_stat("42 (sleep) S 1 42"), Some(1));
        assert_eq!(parent_from_stat("garbage"), None);
    }

    #[test]
    fn finds_own_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let me = std::process::id() as i32;
        assert!(descendants(me).contains(&(child.id() as i32)));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
