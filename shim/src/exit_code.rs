//! Exit codes of the shim (`swarm-shutdown` and its names `shutdown`,
//! `reboot`, `halt`, `poweroff`).
//!
//! They are the shim's own, separate from swarm-init's: callers such as the
//! Swarming bot run `sudo -n /sbin/shutdown -r now MESSAGE` and only look at
//! zero versus non-zero, while people and scripts can tell the causes apart.
//! The README lists them; keep both in step.

/// The request was sent to swarm-init (or there was nothing to send: `--help`,
/// `--version`, `-c`, `-k`, `-w`, `--show`).
pub const OK: i32 = 0;
/// Nothing was stopped: PID 1 is not swarm-init (or cannot be identified), or
/// the signal to PID 1 could not be sent.
pub const FAILED: i32 = 1;
/// Bad command line (unknown option, bad time, too many arguments); nothing was sent.
pub const USAGE: i32 = 2;
/// Not run as root; nothing was sent.
pub const NOT_ROOT: i32 = 4;
