//! Pre-start hooks: every executable file in the hooks directory
//! (`SWARM_INIT_HOOKS_DIR`, default `/etc/swarm-init/pre-start.d`), run in
//! byte order of their names, as root, with swarm-init's environment, before
//! anything is downloaded. The arm64 image uses one to create the qemu tap
//! device. The first hook that fails stops the boot, named in the error.
//!
//! Skipped: names starting with `.`, and files without any execute bit (so a
//! README or a disabled hook can sit in the directory).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The hooks to run, in order. A missing directory means no hooks.
pub fn list(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut hooks = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let path = entry.path();
        // fs::metadata follows symlinks: a link to an executable is a hook.
        match fs::metadata(&path) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => hooks.push(path),
            Ok(_) => log::info!(
                "pre-start hook dir: skipping {} (not an executable file)",
                path.display()
            ),
            Err(e) => log::warn!("pre-start hook dir: skipping {}: {e}", path.display()),
        }
    }
    // Byte order of the names, like run-parts in the C locale.
    hooks.sort_by(|a, b| {
        a.as_os_str()
            .as_encoded_bytes()
            .cmp(b.as_os_str().as_encoded_bytes())
    });
    Ok(hooks)
}

/// Runs every hook in `dir`; on failure returns the one-line message to log.
pub fn run_all(dir: &Path) -> Result<(), String> {
    let hooks = list(dir).map_err(|e| {
        format!(
            "cannot list pre-start hooks in {}: {e}; fix the directory or point \
             SWARM_INIT_HOOKS_DIR elsewhere",
            dir.display()
        )
    })?;
    if hooks.is_empty() {
        log::debug!("no pre-start hooks in {}", dir.display());
    }
    for hook in hooks {
        run_one(&hook)?;
    }
    Ok(())
}

fn run_one(hook: &Path) -> Result<(), String> {
    log::info!("running pre-start hook {}", hook.display());
    let start = Instant::now();
    let status = Command::new(hook)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| {
            format!(
                "pre-start hook {} could not be started: {e}; check its #! line and permissions",
                hook.display()
            )
        })?;
    let took = start.elapsed();
    if status.success() {
        log::info!(
            "pre-start hook {} succeeded in {:.1?}",
            hook.display(),
            took
        );
        Ok(())
    } else {
        Err(format!(
            "pre-start hook {} failed ({status}) after {:.1?}; the bot is not started: fix or remove the hook",
            hook.display(),
            took
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Writing a script while another test thread forks can make exec fail
    /// with ETXTBSY; these tests take turns.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("swarm-init-hooks-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn script(dir: &Path, name: &str, body: &str, mode: u32) {
        let p = dir.join(name);
        fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn runs_in_name_order_and_skips_non_executables() {
        let _turn = SERIAL.lock();
        let dir = temp_dir("order");
        let out = dir.join("out.txt");
        let o = out.display();
        script(&dir, "20-b", &format!("echo b >> {o}"), 0o755);
        script(&dir, "10-a", &format!("echo a >> {o}"), 0o700);
        script(&dir, "15-off", &format!("echo off >> {o}"), 0o644);
        script(&dir, ".hidden", &format!("echo hidden >> {o}"), 0o755);
        let names: Vec<_> = list(&dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["10-a", "20-b"]);
        run_all(&dir).unwrap();
        assert_eq!(fs::read_to_string(&out).unwrap(), "a\nb\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failure_names_the_hook_and_stops() {
        let _turn = SERIAL.lock();
        let dir = temp_dir("fail");
        let out = dir.join("out.txt");
        script(&dir, "10-bad", "exit 3", 0o755);
        script(&dir, "20-never", &format!("touch {}", out.display()), 0o755);
        let e = run_all(&dir).unwrap_err();
        assert!(e.contains("10-bad") && e.contains('3'), "{e}");
        assert!(!out.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_dir_is_no_hooks() {
        assert!(run_all(Path::new("/nonexistent/pre-start.d")).is_ok());
    }
}
