//! Identifies PID 1, so the shim signals only swarm-init.
//!
//! The replaced `/sbin/shutdown` sent SIGUSR1 to whatever PID 1 was; on a host
//! that is systemd or another init, where SIGUSR1 means something else. The
//! shim therefore signals only when `/proc/1/comm` is exactly `swarm-init`,
//! falling back to the basename of `/proc/1/exe` only when `comm` cannot be
//! read. The proc root is a parameter so tests can use a fake tree.

use std::fs;
use std::path::Path;

/// The name PID 1 must have.
pub const EXPECTED: &str = "swarm-init";

/// What PID 1 turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pid1 {
    /// swarm-init: safe to signal.
    SwarmInit,
    /// Something else, by name (escaped for printing).
    Other(String),
    /// Neither `comm` nor `exe` could be read; the text says why.
    Unknown(String),
}

/// Looks at `<proc_root>/1/comm`, then `<proc_root>/1/exe`.
pub fn identify(proc_root: &Path) -> Pid1 {
    let comm_path = proc_root.join("1").join("comm");
    let comm_err = match fs::read(&comm_path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            // The kernel ends comm with one newline; nothing else is trimmed,
            // so "swarm-init " or "swarm-init2" do not pass.
            let comm = text.strip_suffix('\n').unwrap_or(&text);
            return if comm == EXPECTED {
                Pid1::SwarmInit
            } else {
                Pid1::Other(comm.escape_debug().to_string())
            };
        }
        Err(e) => e,
    };
    let exe_path = proc_root.join("1").join("exe");
    match fs::read_link(&exe_path) {
        Ok(target) => {
            let name = target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // An upgraded binary reads back as "NAME (deleted)".
            let name = name.strip_suffix(" (deleted)").unwrap_or(&name);
            if name == EXPECTED {
                Pid1::SwarmInit
            } else {
                Pid1::Other(name.escape_debug().to_string())
            }
        }
        Err(exe_err) => Pid1::Unknown(format!(
            "cannot read {} ({comm_err}) or {} ({exe_err})",
            comm_path.display(),
            exe_path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fake proc root with a `1/` directory, removed on drop.
    struct FakeProc(PathBuf);

    impl FakeProc {
        fn new() -> Self {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "swarm-shutdown-proc-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(path.join("1")).unwrap();
            FakeProc(path)
        }
        fn comm(self, text: &str) -> Self {
            fs::write(self.0.join("1/comm"), text).unwrap();
            self
        }
        fn exe(self, target: &str) -> Self {
            symlink(target, self.0.join("1/exe")).unwrap();
            self
        }
    }

    impl Drop for FakeProc {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn swarm_init_comm_passes() {
        let p = FakeProc::new().comm("swarm-init\n");
        assert_eq!(identify(&p.0), Pid1::SwarmInit);
    }

    #[test]
    fn other_comms_are_refused_by_name() {
        for (comm, name) in [
            ("systemd\n", "systemd"),
            ("bash\n", "bash"),
            ("init\n", "init"),
            ("swarm-init2\n", "swarm-init2"),
            ("swarm-init \n", "swarm-init "),
            ("Swarm-init\n", "Swarm-init"),
            ("swarm-ini\n", "swarm-ini"),
            ("\n", ""),
            ("a\x1bb\n", "a\\u{1b}b"),
        ] {
            let p = FakeProc::new().comm(comm);
            assert_eq!(identify(&p.0), Pid1::Other(name.to_owned()), "{comm:?}");
        }
    }

    #[test]
    fn readable_comm_wins_over_exe() {
        let p = FakeProc::new()
            .comm("systemd\n")
            .exe("/usr/local/bin/swarm-init");
        assert_eq!(identify(&p.0), Pid1::Other("systemd".to_owned()));
    }

    #[test]
    fn exe_is_the_fallback_when_comm_is_unreadable() {
        let p = FakeProc::new().exe("/usr/local/bin/swarm-init");
        assert_eq!(identify(&p.0), Pid1::SwarmInit);
        let p = FakeProc::new().exe("/usr/local/bin/swarm-init (deleted)");
        assert_eq!(identify(&p.0), Pid1::SwarmInit);
        let p = FakeProc::new().exe("/lib/systemd/systemd");
        assert_eq!(identify(&p.0), Pid1::Other("systemd".to_owned()));
        let p = FakeProc::new().exe("/");
        assert_eq!(identify(&p.0), Pid1::Other(String::new()));
    }

    #[test]
    fn nothing_readable_is_unknown() {
        let p = FakeProc::new();
        match identify(&p.0) {
            Pid1::Unknown(why) => assert!(why.contains("comm") && why.contains("exe"), "{why}"),
            other => panic!("expected Unknown, got {other:?}"),
        }
    }

    #[test]
    fn this_machine_is_answered_without_panicking() {
        // Whatever this test runs under, identify() gives an answer.
        let _ = identify(Path::new("/proc"));
    }
}
