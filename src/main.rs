//! swarm-init: the PID 1 of a Swarming bot container.
//!
//! Where things live:
//! - `cli`: the command line; `settings`: PID 1's environment variables.
//! - `supervisor`: the PID-1 loop, where every signal decision is made.
//! - `signals`: which signals PID 1 takes and how it waits for them.
//! - `reaper`: reaping zombies; `process_tree`: whom teardown may signal.
//! - `spawn`: forking the main child; `shutdown_request`: what the shim left.
//! - `bot`: bot mode (download, verification, privilege drop, exec), which
//!   only ever runs in the main child.
//! - `memory`: keeping PID 1's resident memory small while it supervises.
//! - `exit_code`: every exit code swarm-init chooses itself.
//!
//! There is no Rust runtime start-up (`no_main`): std's `main` wrapper reads
//! /proc/self/maps and installs stack-overflow handlers, most of what PID 1
//! would otherwise do before it can start the child. glibc still hands std
//! the arguments and environment, so `std::env` works as usual; the one thing
//! the wrapper did that matters, ignoring SIGPIPE (a closed stderr must not
//! kill us), is done in `main`.
// Unit tests keep the test harness's own `main`.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code))]

mod bot;
mod cli;
mod exit_code;
mod logging;
mod memory;
mod process_tree;
mod reaper;
mod settings;
mod shutdown_request;
mod signals;
mod spawn;
mod supervisor;

use cli::Command;

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: SIG_IGN is a valid disposition for SIGPIPE.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let code = run();
    log::logger().flush();
    // Leave without glibc's exit handlers and stdio teardown: nothing is left
    // to clean up, and as PID 1 those would page back in code that
    // `memory::release_startup_pages` returned, slowing every container stop.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(code) }
}

fn run() -> i32 {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let command = match cli::parse(&args) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("swarm-init: {message}; see `swarm-init --help`");
            return exit_code::USAGE;
        }
    };
    let (program, forward_to_group) = match command {
        Command::Help => {
            println!("{}", cli::USAGE);
            return 0;
        }
        Command::Version => {
            println!("swarm-init {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        Command::Fetch => {
            let settings = match settings::from_env(|name| std::env::var(name).ok()) {
                Ok(settings) => settings,
                Err(message) => return config_error(&message),
            };
            logging::init(settings.log_level);
            if std::process::id() != 1 {
                return bot::fetch_command();
            }
            // As PID 1 (`docker run IMAGE fetch`) the kernel would drop
            // SIGTERM and SIGINT sent to us: supervise the fetch instead.
            return supervisor::run(&settings, spawn::Work::Fetch, "fetch mode");
        }
        Command::Supervise {
            program,
            forward_to_group,
        } => (program, forward_to_group),
    };

    let mut settings = match settings::from_env(|name| std::env::var(name).ok()) {
        Ok(settings) => settings,
        Err(message) => return config_error(&message),
    };
    settings.forward_to_group |= forward_to_group;
    logging::init(settings.log_level);

    let (work, mode) = match program {
        Some(argv) => {
            let command_line = argv
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ");
            (
                spawn::Work::Exec(argv),
                format!("generic mode: {command_line}"),
            )
        }
        None => (spawn::Work::BootBot, "bot mode".to_string()),
    };
    supervisor::run(&settings, work, &mode)
}

fn config_error(message: &str) -> i32 {
    eprintln!("swarm-init: configuration error: {message}");
    exit_code::CONFIG
}
