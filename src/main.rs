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

fn main() {
    let code = run();
    log::logger().flush();
    std::process::exit(code);
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
            return match settings::from_env(|name| std::env::var(name).ok()) {
                Ok(settings) => {
                    logging::init(settings.log_level);
                    bot::fetch_command()
                }
                Err(message) => config_error(&message),
            };
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

    let work = match program {
        Some(argv) => {
            log::info!(
                "swarm-init {} starting as pid {} in generic mode: {}",
                env!("CARGO_PKG_VERSION"),
                std::process::id(),
                argv.iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            spawn::Work::Exec(argv)
        }
        None => {
            log::info!(
                "swarm-init {} starting as pid {} in bot mode",
                env!("CARGO_PKG_VERSION"),
                std::process::id()
            );
            spawn::Work::BootBot
        }
    };
    supervisor::run(&settings, work)
}

fn config_error(message: &str) -> i32 {
    eprintln!("swarm-init: configuration error: {message}");
    exit_code::CONFIG
}
