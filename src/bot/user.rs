//! The bot user: looking it up, dropping root privileges to it for good, and
//! the environment the bot starts with.
//!
//! Users and groups are read straight from `/etc/passwd` and `/etc/group` at run
//! time, never through getpwnam/getgrouplist: the binary is linked statically,
//! where glibc's NSS is unreliable, and the files may be the host's, bind-mounted
//! into the container, so nothing may be baked in at build time. Supplementary
//! groups are the user's primary group plus every group of `/etc/group` that
//! lists the user, which is what `initgroups` computes from those files.
//!
//! Root's group (gid 0) is refused like root itself, as the primary group or
//! a membership: host files with e.g. `chrome-bot:x:1000:0` would otherwise
//! hand the bot whatever root's group may read or write.

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

/// The name of group `gid` in group-format `text`, if listed.
fn group_name(text: &str, gid: u32) -> Option<&str> {
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 4 && fields[2].trim().parse::<u32>() == Ok(gid)).then_some(fields[0])
    })
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
    if gid == 0 {
        return Err(format!(
            "bot user {name:?} has primary group 0 (root's group) in {}: the bot must not run \
             with root's group; give {name:?} a group of its own there or set SWARM_BOT_USER \
             to another user",
            passwd.display()
        ));
    }
    // Without a group file the user still gets its primary group.
    let groups = match read(group) {
        Ok(text) => {
            let groups = parse_groups(&text, name, gid);
            if groups.contains(&0) {
                let group_0 = group_name(&text, 0).unwrap_or("root");
                return Err(format!(
                    "bot user {name:?} is a member of group {group_0:?} (gid 0, root's group) \
                     in {}: the bot must not run with root's group; remove {name:?} from that \
                     group's member list or set SWARM_BOT_USER to another user",
                    group.display()
                ));
            }
            groups
        }
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

/// The supplementary groups of this process, as the kernel reports them.
fn current_groups() -> Result<Vec<u32>, String> {
    // SAFETY: with size 0, getgroups only counts the groups.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let len = usize::try_from(n).map_err(|_| os_err("getgroups"))?;
    let mut groups: Vec<libc::gid_t> = vec![0; len];
    // SAFETY: the buffer holds `n` gids, as the call is told.
    let got = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    let got = usize::try_from(got).map_err(|_| os_err("getgroups"))?;
    groups.truncate(got);
    Ok(groups)
}

/// Checks the groups the process has against those it should have: the same
/// set (the kernel may reorder them), and never root's group.
fn check_groups(actual: &[u32], intended: &[u32]) -> Result<(), String> {
    let sorted = |g: &[u32]| {
        let mut g = g.to_vec();
        g.sort_unstable();
        g.dedup();
        g
    };
    if actual.contains(&0) {
        return Err(format!(
            "the process still has root's group 0 among its groups {actual:?}"
        ));
    }
    if sorted(actual) != sorted(intended) {
        return Err(format!(
            "the process has groups {actual:?} after setgroups, not {intended:?}"
        ));
    }
    Ok(())
}

/// Switches this process to `user` for good: supplementary groups, gid, uid,
/// then proves root cannot be regained. Any failure leaves the process unfit
/// to run the bot, so the caller must exit.
pub fn drop_privileges(user: &BotUser) -> Result<(), String> {
    let fail = |msg: String| format!("cannot switch to bot user {:?}: {msg}", user.name);
    // resolve() refuses these already; checked again before anything changes.
    if user.uid == 0 || user.gid == 0 || user.groups.contains(&0) {
        return Err(fail(format!(
            "uid {}, gid {}, groups {:?} include root's; refusing to start the bot",
            user.uid, user.gid, user.groups
        )));
    }
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
    check_groups(&current_groups().map_err(fail)?, &user.groups).map_err(fail)
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

    #[test]
    fn root_group_is_refused() {
        let dir = std::env::temp_dir().join(format!("swarm-init-group0-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (p, g) = (dir.join("passwd"), dir.join("group"));
        std::fs::write(
            &p,
            "chrome-bot:x:1000:0:Chrome Bot:/home/chrome-bot:/bin/bash\n\
             member:x:1001:1001::/home/member:/bin/sh\n\
             fine:x:1002:1002::/home/fine:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            &g,
            "wheel:x:0:other,member\nmember:x:1001:\nfine:x:1002:\nusers:x:100:fine\n",
        )
        .unwrap();

        let e = resolve_in("chrome-bot", &p, &g).unwrap_err();
        for needle in [
            "\"chrome-bot\"",
            "primary group 0",
            "root's group",
            "SWARM_BOT_USER",
        ] {
            assert!(e.contains(needle), "{needle:?} missing: {e}");
        }
        // Primary group 0 is refused even when there is no group file to name it.
        let e = resolve_in("chrome-bot", &p, &dir.join("no-group-file")).unwrap_err();
        assert!(e.contains("primary group 0"), "{e}");

        let e = resolve_in("member", &p, &g).unwrap_err();
        for needle in [
            "\"member\"",
            "\"wheel\"",
            "gid 0",
            "member list",
            "SWARM_BOT_USER",
        ] {
            assert!(e.contains(needle), "{needle:?} missing: {e}");
        }
        assert_eq!(resolve_in("fine", &p, &g).unwrap().groups, vec![1002, 100]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn group_check_wants_the_same_set_without_root() {
        assert!(check_groups(&[1001, 27, 108], &[1001, 27, 108]).is_ok());
        // The kernel sorts the list; order does not matter.
        assert!(check_groups(&[27, 108, 1001], &[1001, 27, 108]).is_ok());
        assert!(check_groups(&[1001], &[1001, 1001]).is_ok());
        let e = check_groups(&[0, 1001], &[1001]).unwrap_err();
        assert!(e.contains("root's group 0"), "{e}");
        let e = check_groups(&[1001], &[1001, 27]).unwrap_err();
        assert!(e.contains("not [1001, 27]"), "{e}");
        assert!(check_groups(&[1001, 27, 5], &[1001, 27]).is_err());
        // Even if asked for (drop_privileges refuses that earlier), gid 0 fails.
        assert!(check_groups(&[0], &[0]).is_err());
    }

    /// Whether the test may switch users; without root it fails under CI.
    fn have_root() -> bool {
        if is_root() {
            return true;
        }
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "this test must run as root under CI"
        );
        eprintln!("skipped: dropping privileges needs root");
        false
    }

    /// Runs `f` in a forked child, since dropping privileges is for good, and
    /// returns what it reports (or why it did not).
    fn in_child(f: impl FnOnce() -> String) -> String {
        use std::io::{Read, Write};
        use std::os::fd::FromRawFd;
        let mut fds = [0; 2];
        // SAFETY: fds has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child only runs `f` (system calls and allocation, which
        // glibc keeps usable after fork) and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: the write end is ours in the child.
            let mut out = unsafe { std::fs::File::from_raw_fd(fds[1]) };
            let report = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .unwrap_or_else(|_| "the child panicked".to_string());
            let _ = out.write_all(report.as_bytes());
            // SAFETY: ends the child without running the parent's cleanups.
            unsafe { libc::_exit(0) }
        }
        // SAFETY: both ends are ours; the write end must close so the read ends.
        let mut input = unsafe {
            libc::close(fds[1]);
            std::fs::File::from_raw_fd(fds[0])
        };
        let mut report = String::new();
        input.read_to_string(&mut report).unwrap();
        let mut status = 0;
        // SAFETY: pid is our child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        report
    }

    fn ids() -> String {
        let (mut r, mut e, mut s) = (0, 0, 0);
        let (mut gr, mut ge, mut gs) = (0, 0, 0);
        // SAFETY: plain queries into locals.
        unsafe {
            libc::getresuid(&mut r, &mut e, &mut s);
            libc::getresgid(&mut gr, &mut ge, &mut gs);
        }
        let mut groups = current_groups().unwrap_or_default();
        groups.sort_unstable();
        format!("uids {r}/{e}/{s} gids {gr}/{ge}/{gs} groups {groups:?}")
    }

    #[test]
    fn dropping_privileges_refuses_root_group_before_changing_anything() {
        if !have_root() {
            return;
        }
        let before = in_child(ids);
        for (gid, groups) in [(0, vec![0]), (1001, vec![1001, 0])] {
            let bad = BotUser {
                gid,
                groups,
                ..user()
            };
            let report = in_child(|| match drop_privileges(&bad) {
                Ok(()) => format!("dropped to {}", ids()),
                Err(e) => format!("{e}; now {}", ids()),
            });
            assert!(report.contains("refusing"), "{report}");
            assert!(
                report.ends_with(&before),
                "ids changed: {report} (before: {before})"
            );
        }
    }

    #[test]
    fn dropping_privileges_leaves_exactly_the_bot_users_ids() {
        if !have_root() {
            return;
        }
        let nobody = BotUser {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
            home: "/nonexistent".into(),
            shell: "/usr/sbin/nologin".into(),
            groups: vec![65534, 4242, 100],
        };
        let report = in_child(|| match drop_privileges(&nobody) {
            Ok(()) => ids(),
            Err(e) => e,
        });
        assert_eq!(
            report,
            "uids 65534/65534/65534 gids 65534/65534/65534 groups [100, 4242, 65534]"
        );
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
