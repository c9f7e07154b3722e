//! Bot mode: everything the main child does to start a Swarming bot.
//!
//! PID 1 forks the main child and calls [`boot`] in it; `swarm-init fetch`
//! calls [`fetch_command`] directly. PID 1 itself never runs this code, so the
//! HTTP, TLS and zip code never enters the long-lived init process.

/// Runs in the forked main child: configure, run hooks, fetch, verify, drop
/// privileges and exec the bot. Returns only on failure, with the exit code.
pub fn boot() -> i32 {
    log::error!("bot mode is not implemented yet; run `swarm-init -- PROGRAM` instead");
    crate::exit_code::USAGE
}

/// `swarm-init fetch`: configure, fetch and verify, then print what was fetched.
pub fn fetch_command() -> i32 {
    log::error!("`swarm-init fetch` is not implemented yet");
    crate::exit_code::USAGE
}
