//! The bot user: looking it up, dropping root privileges to it for good, and
//! the environment the bot starts with.
//!
//! Users and groups are read straight from `/etc/passwd` and `/etc/group` at run
//! time, never through getpwnam/getgrouplist: the binary is linked statically,
//! where glibc's NSS is unreliable, and the files may be the host's, bind-mounted
//! into the container, so nothing may be baked in at build time. Supplementary
//! groups are the user's primary group plus every group of `/etc/group` that
//! lists the user, which is what `initgroups` computes from those files.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};

use super::token::MachineToken;

pub const PASSWD: &str = "/etc/passwd";
pub const GROUP: &str = "/etc/group";

/// A user from the passwd file, with the groups it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: PathBuf,
    /// Primary group first, then the others from the group file, no duplicates.
    pub groups: Vec<u32>,
}

/// The entry for `name` in passwd-format `text` (the first one, as NSS files
/// would pick), or None.
pub fn parse_passwd(text: &str, name: &str) -> Option<(u32, u32, PathBuf, PathBuf)> {
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 7 || fields[0] != name {
            return None;
        }
        let uid = fields[2].trim().parse().ok()?;
        let gid = fields[3].trim().parse().ok()?;
        Some((uid, gid, PathBuf::from(fields[5]), PathBuf::from(fields[6])))
    })
}

/// The user's groups from group-format `text`: `primary` first, then each group
/// listing `name` as a member, in file order, without duplicates.
pub fn parse_groups(text: &str, name: &str, primary: u32) -> Vec<u32> {
    let mut groups = vec![primary];
    for line in text.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 4 {
            continue;
        }
        let Ok(gid) = fields[2].trim().parse::<u32>() else {
            continue;
        };
        if fields[3].split(',').any(|m| m.trim() == name) && !groups.contains(&gid) {
            groups.push(gid);
        }
    }
    groups
}

/// Looks the user up in the given passwd and group files.
pub fn resolve_in(name: &str, passwd: &Path, group: &Path) -> Result<BotUser, String> {
    let read = |p: &Path| {
        std::fs::read(p)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| {
                format!(
                    "cannot read {} to look up bot user {name:?}: {e}",
                    p.display()
                )
            })
    };
    let passwd_text = read(passwd)?;
    let (uid, gid, home, shell) = parse_passwd(&passwd_text, name).ok_or_else(|| {
        format!(
            "bot user {name:?} is not in {}; create it in the image (or the bind-mounted \
             host files) or set SWARM_BOT_USER to an existing user",
            passwd.display()
        )
    })?;
    if uid == 0 {
        return Err(format!(
            "bot user {name:?} has uid 0: the bot must not run as root; set SWARM_BOT_USER \
             to an unprivileged user"
        ));
    }
    // Without a group file the user still gets its primary group.
    let groups = match read(group) {
        Ok(text) => parse_groups(&text, name, gid),
        Err(e) => {
            log::warn!("{e}; the bot gets only its primary group {gid}");
            vec![gid]
        }
    };
    Ok(BotUser {
        name: name.to_string(),
        uid,
        gid,
        home,
        shell,
        groups,
    })
}

/// Looks the user up in /etc/passwd and /etc/group.
pub fn resolve(name: &str) -> Result<BotUser, String> {
    resolve_in(name, Path::new(PASSWD), Path::new(GROUP))
}

/// Whether this process runs as root (and so can and must drop privileges).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn os_err(what: &str) -> String {
    format!("{what} failed: {}", io::Error::last_os_error())
}

/// Switches this process to `user` for good: supplementary groups, gid, uid,
/// then proves root cannot be regained. Any failure leaves the process unfit
/// to run the bot, so the caller must exit.
pub fn drop_privileges(user: &BotUser) -> Result<(), String> {
    let fail = |msg: String| format!("cannot switch to bot user {:?}: {msg}", user.name);
    // SAFETY: plain system calls on values we own; each result is checked.
    unsafe {
        if libc::setgroups(user.groups.len(), user.groups.as_ptr()) != 0 {
            return Err(fail(os_err("setgroups")));
        }
        if libc::setresgid(user.gid, user.gid, user.gid) != 0 {
            return Err(fail(os_err(&format!("setresgid({})", user.gid))));
        }
        if libc::setresuid(user.uid, user.uid, user.uid) != 0 {
            return Err(fail(os_err(&format!("setresuid({})", user.uid))));
        }
        // Root must be gone from real, effective and saved ids: if any
        // way back worked, stop rather than run the bot with it.
        if libc::setuid(0) == 0 || libc::seteuid(0) == 0 {
            return Err(fail(
                "root could be regained after setuid; refusing to start the bot".into(),
            ));
        }
        let (mut r, mut e, mut s) = (0, 0, 0);
        if libc::getresuid(&mut r, &mut e, &mut s) != 0 || [r, e, s] != [user.uid; 3] {
            return Err(fail(format!(
                "uids are {r}/{e}/{s} after setresuid, not {}",
                user.uid
            )));
        }
        let (mut r, mut e, mut s) = (0, 0, 0);
        if libc::getresgid(&mut r, &mut e, &mut s) != 0 || [r, e, s] != [user.gid; 3] {
            return Err(fail(format!(
                "gids are {r}/{e}/{s} after setresgid, not {}",
                user.gid
            )));
        }
    }
    Ok(())
}

/// The bot's environment: swarm-init's own, unchanged (the bot's hooks read
/// e.g. DOCKER_HOST_HOSTNAME and NUM_CONFIGURED_CONTAINERS), except that
/// HOME, USER, LOGNAME and SHELL describe the bot user, and the token file
/// path and any variable holding a token are removed.
pub fn bot_environment(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    user: &BotUser,
    tokens: &[MachineToken],
) -> Vec<(OsString, OsString)> {
    const REPLACED: [&str; 4] = ["HOME", "USER", "LOGNAME", "SHELL"];
    let holds_token = |value: &OsStr| {
        let bytes = value.as_encoded_bytes();
        tokens.iter().any(|t| {
            let t = t.expose().as_bytes();
            !t.is_empty() && bytes.windows(t.len()).any(|w| w == t)
        })
    };
    let mut env: Vec<(OsString, OsString)> = vars
        .into_iter()
        .filter(|(k, v)| {
            k != super::config::LUCI_MACHINE_TOKEN_FILE
                && !REPLACED.iter().any(|r| k == r)
                && !holds_token(v)
                && !holds_token(k)
        })
        .collect();
    let shell = if user.shell.as_os_str().is_empty() {
        PathBuf::from("/bin/sh")
    } else {
        user.shell.clone()
    };
    env.push(("HOME".into(), user.home.clone().into_os_string()));
    env.push(("USER".into(), user.name.clone().into()));
    env.push(("LOGNAME".into(), user.name.clone().into()));
    env.push(("SHELL".into(), shell.into_os_string()));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD_TEXT: &str = "\
root:x:0:0:root:/root:/bin/bash
# a comment
+nis
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
chrome-bot:x:1000:1001:Chrome Bot,,,:/home/chrome-bot:/bin/bash
broken:x:notanumber:1:::
chrome-bot:x:2000:2000:second entry ignored:/x:/bin/sh
";
    const GROUP_TEXT: &str = "\
root:x:0:
sudo:x:27:alice,chrome-bot
chrome-bot:x:1001:
kvm:x:108: chrome-bot , bob
docker:x:999:bob
plugdev:x:46:chrome-botty
dup:x:27:chrome-bot
nogroup:x:65534:
";

    #[test]
    fn passwd_lookup() {
        let (uid, gid, home, shell) = parse_passwd(PASSWD_TEXT, "chrome-bot").unwrap();
        assert_eq!((uid, gid), (1000, 1001));
        assert_eq!(home, PathBuf::from("/home/chrome-bot"));
        assert_eq!(shell, PathBuf::from("/bin/bash"));
        assert_eq!(parse_passwd(PASSWD_TEXT, "nobody").unwrap().0, 65534);
        assert!(parse_passwd(PASSWD_TEXT, "chrome").is_none());
        assert!(parse_passwd(PASSWD_TEXT, "broken").is_none());
        assert!(parse_passwd(PASSWD_TEXT, "+nis").is_none());
    }

    #[test]
    fn group_membership() {
        assert_eq!(
            parse_groups(GROUP_TEXT, "chrome-bot", 1001),
            vec![1001, 27, 108]
        );
        assert_eq!(parse_groups(GROUP_TEXT, "nobody", 65534), vec![65534]);
        assert_eq!(parse_groups(GROUP_TEXT, "bob", 5), vec![5, 108, 999]);
    }

    #[test]
    fn resolve_from_files() {
        let dir = std::env::temp_dir().join(format!("swarm-init-user-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (p, g) = (dir.join("passwd"), dir.join("group"));
        std::fs::write(&p, PASSWD_TEXT).unwrap();
        std::fs::write(&g, GROUP_TEXT).unwrap();
        let u = resolve_in("chrome-bot", &p, &g).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.groups.clone()),
            (1000, 1001, vec![1001, 27, 108])
        );
        let e = resolve_in("ghost", &p, &g).unwrap_err();
        assert!(
            e.contains("\"ghost\"") && e.contains("SWARM_BOT_USER"),
            "{e}"
        );
        let e = resolve_in("root", &p, &g).unwrap_err();
        assert!(e.contains("uid 0"), "{e}");
        let u = resolve_in("nobody", &p, &dir.join("no-group-file")).unwrap();
        assert_eq!(u.groups, vec![65534]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn user() -> BotUser {
        BotUser {
            name: "chrome-bot".into(),
            uid: 1000,
            gid: 1001,
            home: "/home/chrome-bot".into(),
            shell: "".into(),
            groups: vec![1001],
        }
    }

    #[test]
    fn environment_filtering() {
        let token = match super::super::token::parse(br#"{"luci_machine_token":"tok-SECRET-123"}"#)
        {
            super::super::token::TokenRead::Token(t) => t,
            other => panic!("{other:?}"),
        };
        let vars = [
            ("PATH", "/usr/bin:/bin"),
            ("DOCKER_HOST_HOSTNAME", "host1.example.com"),
            ("NUM_CONFIGURED_CONTAINERS", "4"),
            ("HOME", "/root"),
            ("USER", "root"),
            (
                "LUCI_MACHINE_TOKEN_FILE",
                "/var/lib/luci_machine_tokend/token.json",
            ),
            ("LEAKY", "Bearer tok-SECRET-123"),
            ("SWARM_URL", "https://s/bot_code"),
        ];
        let env = bot_environment(
            vars.iter().map(|(k, v)| ((*k).into(), (*v).into())),
            &user(),
            &[token],
        );
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.to_str().unwrap().to_string())
        };
        assert_eq!(get("PATH").as_deref(), Some("/usr/bin:/bin"));
        assert_eq!(
            get("DOCKER_HOST_HOSTNAME").as_deref(),
            Some("host1.example.com")
        );
        assert_eq!(get("NUM_CONFIGURED_CONTAINERS").as_deref(), Some("4"));
        assert_eq!(get("SWARM_URL").as_deref(), Some("https://s/bot_code"));
        assert_eq!(get("HOME").as_deref(), Some("/home/chrome-bot"));
        assert_eq!(get("USER").as_deref(), Some("chrome-bot"));
        assert_eq!(get("LOGNAME").as_deref(), Some("chrome-bot"));
        assert_eq!(get("SHELL").as_deref(), Some("/bin/sh"));
        assert_eq!(get("LUCI_MACHINE_TOKEN_FILE"), None);
        assert_eq!(get("LEAKY"), None);
        assert_eq!(env.iter().filter(|(k, _)| k == "HOME").count(), 1);
    }
}
