//! Exit codes that swarm-init itself chooses.
//!
//! Whenever the main child ran and exited on its own, swarm-init exits with the
//! child's status instead: its exit code, or 128+N when signal N killed it. The
//! codes below are swarm-init's own; they follow `sysexits.h` where one fits so
//! that they rarely collide with a program's ordinary codes, and the shell's
//! 126/127 for exec failures. The README lists them all; keep both in step.

/// Bad command line (unknown option, missing program after `--`).
pub const USAGE: i32 = 64;
/// A bot zip failed verification (CRC, `__main__.py`, SHA-256 pin, bot version).
pub const VERIFICATION: i32 = 65;
/// The bot user (or its group) does not exist, or privileges could not be dropped.
pub const USER: i32 = 67;
/// Every download attempt failed (server unreachable, 5xx, timeouts), or a 4xx.
pub const FETCH: i32 = 69;
/// A pre-start hook failed.
pub const HOOK: i32 = 70;
/// The operating system refused something swarm-init needs (fork, signal mask).
pub const OS_ERROR: i32 = 71;
/// A file or directory swarm-init must write could not be (SWARM_DIR, the zip).
pub const IO_ERROR: i32 = 74;
/// A bad environment variable.
pub const CONFIG: i32 = 78;
/// The program was found but could not be executed.
pub const EXEC_FAILED: i32 = 126;
/// The program was not found.
pub const NOT_FOUND: i32 = 127;
/// Default exit code after a shutdown request (SIGUSR1, the shim): the code the
/// replaced image used, kept so host launchers need no change.
pub const DEFAULT_SHUTDOWN: i32 = 10;
