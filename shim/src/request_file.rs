//! The shutdown-request file: the shim's half of the contract with swarm-init
//! (docs/HELPERS.md, "Shutdown request").
//!
//! Before signalling PID 1 the shim writes `$SWARM_INIT_RUN_DIR/shutdown-request`
//! (default `/run/swarm-init`) as `key=value` lines: mode, message, uid, pid,
//! time. swarm-init reads it on SIGUSR1, keeps it only if its `pid=` is the
//! signal's sender, logs it and deletes it. The file is written to a temporary
//! name in the same directory and renamed into place, so swarm-init never sees
//! half a request.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::args::Mode;

/// The environment variable that moves the run directory (tests use it; so
/// can images whose /run is not writable). swarm-init reads the same one.
pub const RUN_DIR_ENV: &str = "SWARM_INIT_RUN_DIR";
/// The run directory when [`RUN_DIR_ENV`] is unset or empty.
pub const DEFAULT_RUN_DIR: &str = "/run/swarm-init";
/// The request's file name inside the run directory.
pub const FILE_NAME: &str = "shutdown-request";
/// Longest message kept, in bytes: a log line, not a document.
pub const MESSAGE_MAX_BYTES: usize = 1024;

/// One shutdown request, as recorded for swarm-init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub mode: Mode,
    /// The wall message as given; [`render`] sanitises it.
    pub message: String,
    /// The caller's real uid (the sudo user's, when run through sudo).
    pub uid: u32,
    /// The shim's own pid: the sender swarm-init sees in siginfo.
    pub pid: u32,
    /// Unix seconds.
    pub time: u64,
}

/// A failed write, naming the path so the one-line message is actionable.
#[derive(Debug)]
pub struct WriteError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.source)
    }
}

/// The run directory: [`RUN_DIR_ENV`]'s value if set and non-empty, else
/// [`DEFAULT_RUN_DIR`].
pub fn run_dir(env_value: Option<OsString>) -> PathBuf {
    match env_value {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => PathBuf::from(DEFAULT_RUN_DIR),
    }
}

/// Makes a message safe for a one-line `key=value` file and a log line:
/// control characters (newlines, tabs, escapes, DEL, C1) become spaces, and
/// the result is cut to at most [`MESSAGE_MAX_BYTES`] on a character boundary.
pub fn sanitize_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MESSAGE_MAX_BYTES));
    for c in message.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MESSAGE_MAX_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

/// The file's text.
pub fn render(record: &Record) -> String {
    format!(
        "mode={}\nmessage={}\nuid={}\npid={}\ntime={}\n",
        record.mode.as_str(),
        sanitize_message(&record.message),
        record.uid,
        record.pid,
        record.time
    )
}

/// Writes `dir/shutdown-request` atomically, creating `dir` (mode 0755) if it
/// is missing. Returns the final path.
pub fn write(dir: &Path, record: &Record) -> Result<PathBuf, WriteError> {
    let target = dir.join(FILE_NAME);
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|source| WriteError {
            path: dir.to_path_buf(),
            source,
        })?;

    // Per-pid temporary name: two shims racing each rename their own file,
    // and the last complete request wins.
    let temp = dir.join(format!(".{FILE_NAME}.{}.tmp", record.pid));
    let fail = |source| WriteError {
        path: temp.clone(),
        source,
    };
    let mut file = match create_new(&temp) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Left over by a shim that died with our (reused) pid.
            fs::remove_file(&temp).map_err(fail)?;
            create_new(&temp).map_err(fail)?
        }
        other => other.map_err(fail)?,
    };
    let written = file.write_all(render(record).as_bytes());
    drop(file);
    // No fsync: /run is a tmpfs and the reader is a live process; only
    // atomic visibility matters, which the rename gives.
    let renamed = written.and_then(|()| fs::rename(&temp, &target));
    if let Err(source) = renamed {
        let _ = fs::remove_file(&temp);
        return Err(WriteError {
            path: target,
            source,
        });
    }
    Ok(target)
}

/// `O_CREAT|O_EXCL` never follows a symlink planted at the temporary name.
fn create_new(path: &Path) -> io::Result<fs::File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "swarm-shutdown-test-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn record(message: &str) -> Record {
        Record {
            mode: Mode::Reboot,
            message: message.to_owned(),
            uid: 1000,
            pid: 4242,
            time: 1_700_000_000,
        }
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn run_dir_defaults_and_env_override() {
        assert_eq!(run_dir(None), PathBuf::from("/run/swarm-init"));
        assert_eq!(
            run_dir(Some(OsString::new())),
            PathBuf::from("/run/swarm-init")
        );
        assert_eq!(
            run_dir(Some(OsString::from("/tmp/x"))),
            PathBuf::from("/tmp/x")
        );
    }

    #[test]
    fn render_is_the_contract_format() {
        assert_eq!(
            render(&record("Restarting after task")),
            "mode=reboot\nmessage=Restarting after task\nuid=1000\npid=4242\ntime=1700000000\n"
        );
        let mut r = record("");
        r.mode = Mode::Halt;
        assert!(render(&r).starts_with("mode=halt\nmessage=\n"));
        r.mode = Mode::Poweroff;
        assert!(render(&r).starts_with("mode=poweroff\n"));
    }

    #[test]
    fn sanitize_replaces_control_characters() {
        assert_eq!(sanitize_message("a\nb\rc\td\x1be\x7ff"), "a b c d e f");
        assert_eq!(sanitize_message("x\u{85}y"), "x y");
        assert_eq!(sanitize_message("mode=halt\nuid=0"), "mode=halt uid=0");
        assert_eq!(sanitize_message("héllo wörld ✓"), "héllo wörld ✓");
        assert_eq!(sanitize_message(""), "");
    }

    #[test]
    fn sanitize_cuts_at_1024_bytes_on_a_char_boundary() {
        assert_eq!(sanitize_message(&"a".repeat(5000)).len(), 1024);
        assert_eq!(sanitize_message(&"a".repeat(1024)).len(), 1024);
        // 'é' is 2 bytes: 1023 ASCII bytes leave no room for it.
        let text = format!("{}é", "a".repeat(1023));
        assert_eq!(sanitize_message(&text), "a".repeat(1023));
        let text = "€".repeat(500); // 3 bytes each: 341 fit in 1023 bytes.
        let cut = sanitize_message(&text);
        assert_eq!(cut.len(), 1023);
        assert_eq!(cut.chars().count(), 341);
    }

    #[test]
    fn write_creates_the_file_with_sanitised_contents() {
        let tmp = TempDir::new();
        let path = write(&tmp.0, &record("two\nlines")).unwrap();
        assert_eq!(path, tmp.0.join("shutdown-request"));
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "mode=reboot\nmessage=two lines\nuid=1000\npid=4242\ntime=1700000000\n"
        );
        assert_eq!(text.lines().count(), 5);
        // Only the final file remains: the temporary one was renamed.
        assert_eq!(entries(&tmp.0), vec!["shutdown-request".to_owned()]);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o600, 0o600, "{mode:o}");
    }

    #[test]
    fn write_creates_a_missing_run_dir_0755() {
        let tmp = TempDir::new();
        let dir = tmp.0.join("run").join("swarm-init");
        write(&dir, &record("x")).unwrap();
        assert!(dir.join("shutdown-request").is_file());
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        // 0755 less whatever the umask removes.
        assert_eq!(mode & !0o755, 0, "{mode:o}");
        assert_eq!(mode & 0o700, 0o700, "{mode:o}");
    }

    #[test]
    fn write_replaces_an_older_request_atomically() {
        let tmp = TempDir::new();
        write(&tmp.0, &record("first")).unwrap();
        let first_inode = {
            use std::os::unix::fs::MetadataExt;
            fs::metadata(tmp.0.join("shutdown-request")).unwrap().ino()
        };
        let mut second = record("second");
        second.pid = 5000;
        write(&tmp.0, &second).unwrap();
        let text = fs::read_to_string(tmp.0.join("shutdown-request")).unwrap();
        assert!(text.contains("message=second\n") && text.contains("pid=5000\n"));
        // A new inode: replaced by rename, never rewritten in place where a
        // reader could see it half-written.
        use std::os::unix::fs::MetadataExt;
        let second_inode = fs::metadata(tmp.0.join("shutdown-request")).unwrap().ino();
        assert_ne!(first_inode, second_inode);
        assert_eq!(entries(&tmp.0), vec!["shutdown-request".to_owned()]);
    }

    #[test]
    fn write_removes_a_stale_temp_file_and_does_not_follow_symlinks() {
        let tmp = TempDir::new();
        let victim = tmp.0.join("victim");
        fs::write(&victim, "keep me").unwrap();
        symlink(&victim, tmp.0.join(".shutdown-request.4242.tmp")).unwrap();
        write(&tmp.0, &record("x")).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
        assert_eq!(
            entries(&tmp.0),
            vec!["shutdown-request".to_owned(), "victim".to_owned()]
        );
    }

    #[test]
    fn write_replaces_a_symlink_at_the_target_instead_of_following_it() {
        let tmp = TempDir::new();
        let victim = tmp.0.join("victim");
        fs::write(&victim, "keep me").unwrap();
        symlink(&victim, tmp.0.join("shutdown-request")).unwrap();
        write(&tmp.0, &record("x")).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
        let meta = fs::symlink_metadata(tmp.0.join("shutdown-request")).unwrap();
        assert!(meta.file_type().is_file());
    }

    #[test]
    fn write_error_names_the_path() {
        let tmp = TempDir::new();
        let blocker = tmp.0.join("not-a-dir");
        fs::write(&blocker, "").unwrap();
        let err = write(&blocker.join("sub"), &record("x")).unwrap_err();
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }
}
