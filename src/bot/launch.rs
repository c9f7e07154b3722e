//! Starting the bot: finding `SWARM_PYTHON` on PATH, and the final
//! `chdir(SWARM_DIR)` + exec of `python swarming_bot.zip start_bot`, which
//! replaces this process so the bot keeps the main child's PID.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::exit_code;

/// PATH used when the environment has none (as the shells do).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn is_executable_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Resolves `python` like a shell would: a name containing `/` is taken as a
/// path (made absolute, since the bot runs from SWARM_DIR), anything else is
/// searched on `path_var`. Errors carry the exit code and the message.
pub fn resolve_python(python: &OsStr, path_var: Option<&OsStr>) -> Result<PathBuf, (i32, String)> {
    let shown = Path::new(python).display();
    if python.as_encoded_bytes().contains(&b'/') {
        let p = Path::new(python);
        let abs = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir()
                .map(|d| d.join(p))
                .unwrap_or_else(|_| p.to_path_buf())
        };
        return match std::fs::metadata(&abs) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err((
                exit_code::NOT_FOUND,
                format!("SWARM_PYTHON={shown}: no such file; install Python or fix SWARM_PYTHON"),
            )),
            _ if is_executable_file(&abs) => Ok(abs),
            _ => Err((
                exit_code::EXEC_FAILED,
                format!("SWARM_PYTHON={shown}: not an executable file; fix SWARM_PYTHON"),
            )),
        };
    }
    let path_var = path_var
        .filter(|p| !p.is_empty())
        .unwrap_or(OsStr::new(DEFAULT_PATH));
    std::env::split_paths(path_var)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(python))
        .find(|candidate| is_executable_file(candidate))
        .ok_or_else(|| {
            (
                exit_code::NOT_FOUND,
                format!(
                    "SWARM_PYTHON={shown}: not found on PATH={}; install Python or set SWARM_PYTHON to its full path",
                    Path::new(path_var).display()
                ),
            )
        })
}

/// `chdir(dir)` then exec `python zip start_bot` with exactly `env`. Returns
/// only on failure, with the exit code and the message.
pub fn exec_bot(
    python: &Path,
    dir: &Path,
    zip_name: &str,
    env: Vec<(OsString, OsString)>,
) -> (i32, String) {
    if let Err(e) = std::env::set_current_dir(dir) {
        return (
            exit_code::IO_ERROR,
            format!("cannot chdir to SWARM_DIR={}: {e}", dir.display()),
        );
    }
    let e = Command::new(python)
        .arg(zip_name)
        .arg("start_bot")
        .env_clear()
        .envs(env)
        .exec();
    let code = if e.kind() == io::ErrorKind::NotFound {
        exit_code::NOT_FOUND
    } else {
        exit_code::EXEC_FAILED
    };
    (
        code,
        format!(
            "cannot execute {} {zip_name} start_bot: {e}; check SWARM_PYTHON",
            python.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_on_path() {
        let sh = resolve_python(
            OsStr::new("sh"),
            Some(OsStr::new("relative/dir:/nonexistent:/usr/bin:/bin")),
        )
        .unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
        let (code, msg) = resolve_python(
            OsStr::new("no-such-python-xyz"),
            Some(OsStr::new("/usr/bin")),
        )
        .unwrap_err();
        assert_eq!(code, exit_code::NOT_FOUND);
        assert!(
            msg.contains("SWARM_PYTHON=no-such-python-xyz") && msg.contains("PATH=/usr/bin"),
            "{msg}"
        );
    }

    #[test]
    fn explicit_paths() {
        assert_eq!(
            resolve_python(OsStr::new("/bin/sh"), None).unwrap(),
            PathBuf::from("/bin/sh")
        );
        assert_eq!(
            resolve_python(OsStr::new("/nonexistent/python3"), None)
                .unwrap_err()
                .0,
            exit_code::NOT_FOUND
        );
        assert_eq!(
            resolve_python(OsStr::new("/etc/passwd"), None)
                .unwrap_err()
                .0,
            exit_code::EXEC_FAILED
        );
        assert_eq!(
            resolve_python(OsStr::new("/etc"), None).unwrap_err().0,
            exit_code::EXEC_FAILED
        );
    }
}
