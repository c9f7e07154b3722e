//! Bot mode: everything the main child does to start a Swarming bot.
//!
//! PID 1 forks the main child and calls [`boot`] in it; `swarm-init fetch`
//! calls [`fetch_command`] directly. PID 1 itself never runs this code, so the
//! HTTP, TLS and zip code never enters the long-lived init process.
//!
//! The steps, each in its own module:
//! [`config`] (environment) → [`hooks`] (pre-start hooks, as root) →
//! [`launch`] (find Python) → [`user`] (look up the bot user) → [`workdir`]
//! (SWARM_DIR) → [`fetch`] (download, with [`token`] and [`verify`]) →
//! [`user`] (drop root) → [`launch`] (chdir + exec). Every failure logs one
//! line and returns the exit code from [`crate::exit_code`] that names its
//! kind.

pub mod config;
pub mod fetch;
pub mod hooks;
pub mod launch;
pub mod token;
pub mod user;
pub mod verify;
pub mod workdir;

use std::io::Write;

use crate::exit_code;
use config::{hex, Config};

/// Logs the configuration errors; returns the exit code.
fn config_or_exit() -> Result<Config, i32> {
    Config::from_env().map_err(|errors| {
        for line in &errors.0 {
            log::error!("bad configuration: {line}");
        }
        exit_code::CONFIG
    })
}

fn fail(code: i32, message: &str) -> i32 {
    log::error!("{message}");
    code
}

/// Runs in the forked main child: configure, run hooks, fetch, verify, drop
/// privileges and exec the bot. Returns only on failure, with the exit code.
pub fn boot() -> i32 {
    match try_boot() {
        Ok(never) => match never {},
        Err(code) => code,
    }
}

fn try_boot() -> Result<std::convert::Infallible, i32> {
    let cfg = config_or_exit()?;
    // Hooks come first: they may prepare what the steps below look for.
    hooks::run_all(&cfg.hooks_dir).map_err(|msg| fail(exit_code::HOOK, &msg))?;

    // Checked before the download, so a typo fails in a second, not after it.
    let python = launch::resolve_python(&cfg.python, std::env::var_os("PATH").as_deref())
        .map_err(|(code, msg)| fail(code, &msg))?;
    let bot_user = user::resolve(&cfg.bot_user).map_err(|msg| fail(exit_code::USER, &msg))?;
    let root = user::is_root();
    if !root {
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        if uid != bot_user.uid {
            return Err(fail(
                exit_code::USER,
                &format!(
                    "bot mode must start as root to switch to bot user {:?} (uid {}), but runs as uid {uid}; \
                     run the container as root or set SWARM_BOT_USER to the current user",
                    bot_user.name, bot_user.uid
                ),
            ));
        }
        log::info!(
            "already running as bot user {:?}: no privileges to drop",
            bot_user.name
        );
    }

    let owner = root.then_some((bot_user.uid, bot_user.gid));
    workdir::prepare(&cfg.dir, owner).map_err(|msg| fail(exit_code::IO_ERROR, &msg))?;
    let fetched = fetch::fetch(&cfg, owner).map_err(|f| fail(f.code, &f.message))?;

    let env = user::bot_environment(std::env::vars_os(), &bot_user, &fetched.tokens);
    if root {
        user::drop_privileges(&bot_user).map_err(|msg| fail(exit_code::USER, &msg))?;
    }
    log::info!(
        "starting the bot as {} (uid {}, gid {}, groups {:?}): {} {} start_bot in {}",
        bot_user.name,
        bot_user.uid,
        bot_user.gid,
        bot_user.groups,
        python.display(),
        fetch::FINAL_NAME,
        cfg.dir.display()
    );
    let (code, msg) = launch::exec_bot(&python, &cfg.dir, fetch::FINAL_NAME, env);
    Err(fail(code, &msg))
}

/// `swarm-init fetch`: configure, fetch and verify, then print what was fetched.
///
/// Runs as whoever calls it. As root, the directory and file go to the bot
/// user when it exists (as in a boot); otherwise they stay the caller's.
pub fn fetch_command() -> i32 {
    let cfg = match config_or_exit() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let owner = if user::is_root() {
        match user::resolve(&cfg.bot_user) {
            Ok(u) => Some((u.uid, u.gid)),
            Err(msg) => {
                log::warn!("{msg}; the fetched file stays owned by root");
                None
            }
        }
    } else {
        None
    };
    if let Err(msg) = workdir::prepare(&cfg.dir, owner) {
        return fail(exit_code::IO_ERROR, &msg);
    }
    let fetched = match fetch::fetch(&cfg, owner) {
        Ok(f) => f,
        Err(f) => return fail(f.code, &f.message),
    };
    let text = format!(
        "path={}\nsize={}\nsha256={}\nbot_version={}\n",
        fetched.path.display(),
        fetched.size,
        hex(&fetched.sha256),
        hex(&fetched.report.bot_version)
    );
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(e) => fail(
            exit_code::IO_ERROR,
            &format!("cannot write the result to stdout: {e}"),
        ),
    }
}
