//! The bot directory (`SWARM_DIR`): created with its parents, owned by the bot
//! user, and cleared of stale `swarming_bot*.zip` files (old downloads, the
//! bot's self-updates, partial downloads) so only a fresh, verified zip runs.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Creates `dir` if needed and gives it to `owner` (uid, gid) when set, then
/// removes stale zips. Returns the one-line message to log on failure.
pub fn prepare(dir: &Path, owner: Option<(u32, u32)>) -> Result<(), String> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| {
            format!(
                "cannot create SWARM_DIR={}: {e}; fix the mount or set SWARM_DIR",
                dir.display()
            )
        })?;
    let handle = open_dir(dir)?;
    if let Some((uid, gid)) = owner {
        let meta = handle
            .metadata()
            .map_err(|e| format!("cannot stat SWARM_DIR={}: {e}", dir.display()))?;
        if (meta.uid(), meta.gid()) != (uid, gid) {
            // fchown on the opened directory: a symlink swapped in meanwhile
            // cannot redirect the chown elsewhere.
            std::os::unix::fs::fchown(&handle, Some(uid), Some(gid)).map_err(|e| {
                format!(
                    "cannot give SWARM_DIR={} to uid {uid} gid {gid}: {e}",
                    dir.display()
                )
            })?;
        }
    }
    remove_stale(dir).map_err(|e| {
        format!(
            "cannot clean stale zips from SWARM_DIR={}: {e}",
            dir.display()
        )
    })
}

/// Opens the directory itself, refusing a symlink in its last component: the
/// directory is chowned to the bot user, and a link left in a persistent
/// mount by an earlier bot could otherwise point that chown at anything.
fn open_dir(dir: &Path) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => format!(
                "SWARM_DIR={} is a symlink or not a directory; point SWARM_DIR at a real directory",
                dir.display()
            ),
            _ => format!("cannot open SWARM_DIR={}: {e}", dir.display()),
        })
}

/// Whether `name` matches the shell glob `swarming_bot*.zip`.
pub fn is_stale_zip(name: &[u8]) -> bool {
    name.len() >= "swarming_bot.zip".len()
        && name.starts_with(b"swarming_bot")
        && name.ends_with(b".zip")
}

fn remove_stale(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !is_stale_zip(entry.file_name().as_encoded_bytes()) {
            continue;
        }
        let path = entry.path();
        // symlink_metadata: a link is removed itself, never followed.
        let removed = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
            Ok(_) => fs::remove_file(&path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => Err(e),
        };
        match removed {
            Ok(()) => log::info!("removed stale {}", path.display()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        for yes in [
            "swarming_bot.zip",
            "swarming_bot.1.zip",
            "swarming_bot.partial-12.zip",
            "swarming_bot_x.zip",
        ] {
            assert!(is_stale_zip(yes.as_bytes()), "{yes}");
        }
        for no in [
            "swarming.lck",
            "swarming_bot.zip.bak",
            "bot.zip",
            "swarming_bo.zip",
            "logs",
        ] {
            assert!(!is_stale_zip(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn creates_and_cleans() {
        let root = std::env::temp_dir().join(format!("swarm-init-workdir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let dir = root.join("a/b/swarming");
        prepare(&dir, None).unwrap();
        assert!(dir.is_dir());
        for name in ["swarming_bot.zip", "swarming_bot.2.zip", "keep.txt"] {
            fs::write(dir.join(name), b"x").unwrap();
        }
        fs::create_dir(dir.join("swarming_bot.d.zip")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("swarming_bot.1.zip")).unwrap();
        prepare(&dir, None).unwrap();
        let mut left: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["keep.txt"]);
        assert!(Path::new("/etc/passwd").exists());

        let link = root.join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let e = prepare(&link, None).unwrap_err();
        assert!(e.contains("symlink"), "{e}");
        fs::remove_dir_all(&root).unwrap();
    }
}
