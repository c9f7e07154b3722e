//! Command-line parsing for every name the shim answers to (`shutdown`,
//! `reboot`, `halt`, `poweroff`, `swarm-shutdown`).
//!
//! Pure: it turns argv into an [`Action`] or a [`UsageError`] and does no I/O,
//! so it is unit- and property-tested in isolation. The syntax follows
//! systemd's `shutdown(8)` and `halt(8)` so that existing callers (the Swarming
//! bot runs `sudo -n /sbin/shutdown -r now MESSAGE`) keep working; options
//! that only matter on a real machine (`-f`, `--no-wall`, ...) are accepted and
//! ignored, because in a container every request ends the same way.

use std::ffi::{OsStr, OsString};
use std::path::Path;

/// Which command the shim was invoked as (the basename of argv[0]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Personality {
    /// `shutdown`, `swarm-shutdown`, or any name not listed below.
    Shutdown,
    /// `reboot`.
    Reboot,
    /// `halt`.
    Halt,
    /// `poweroff`.
    Poweroff,
}

impl Personality {
    /// Picks the personality from argv[0]. Unknown names act as `shutdown`,
    /// the name the binary is installed under.
    pub fn from_argv0(argv0: &OsStr) -> Self {
        let base = Path::new(argv0).file_name().unwrap_or(argv0);
        match base.to_string_lossy().as_ref() {
            "reboot" => Personality::Reboot,
            "halt" => Personality::Halt,
            "poweroff" => Personality::Poweroff,
            _ => Personality::Shutdown,
        }
    }
}

/// What the caller asked the machine to do. In a container all three stop
/// the container; the mode is recorded so swarm-init can log it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Reboot,
    Halt,
    Poweroff,
}

impl Mode {
    /// The spelling used in the request file and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Reboot => "reboot",
            Mode::Halt => "halt",
            Mode::Poweroff => "poweroff",
        }
    }
}

/// The TIME argument of `shutdown`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// `now`, `+0`, or a name that takes no time (`reboot`, `halt`, `poweroff`).
    Now,
    /// `shutdown` without a time (shutdown(8) would wait one minute).
    Omitted,
    /// A later time (`+M`, `HH:MM`), kept as typed for the notice that a
    /// container stops at once anyway.
    Later(String),
}

/// A stop request as parsed, before anything is checked or sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub mode: Mode,
    pub when: When,
    /// The wall message: the arguments after TIME joined by single spaces
    /// (not yet sanitised; the request file does that).
    pub message: String,
}

/// What the shim should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ask swarm-init to stop the container.
    Stop(Request),
    /// `shutdown -k`: only a wall message would be sent; the shim sends nothing.
    WallOnly(Request),
    /// `reboot -w` / `--wtmp-only`: only a wtmp record would be written; the
    /// shim sends nothing.
    WtmpOnly(Mode),
    /// `shutdown -c`: there is never a pending stop to cancel.
    Cancel,
    /// `shutdown --show`: there is never a pending stop to show.
    Show,
    /// `--help`.
    Help,
    /// `--version`.
    Version,
}

/// A bad command line. Its text is one sentence naming the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses the arguments after argv[0].
pub fn parse(personality: Personality, args: &[OsString]) -> Result<Action, UsageError> {
    match personality {
        Personality::Shutdown => parse_shutdown(args),
        Personality::Reboot => parse_halt_family(Mode::Reboot, args),
        Personality::Halt => parse_halt_family(Mode::Halt, args),
        Personality::Poweroff => parse_halt_family(Mode::Poweroff, args),
    }
}

/// One argv element, classified the way GNU getopt does: options may appear
/// anywhere (before or after TIME and the message) until a `--`.
enum Arg<'a> {
    Long(&'a str),
    Shorts(&'a str),
    Positional(&'a str),
}

fn classify(arg: &str, options_ended: bool) -> Arg<'_> {
    if options_ended || arg == "-" || !arg.starts_with('-') {
        Arg::Positional(arg)
    } else if let Some(long) = arg.strip_prefix("--") {
        Arg::Long(long)
    } else {
        Arg::Shorts(arg.strip_prefix('-').unwrap_or(arg))
    }
}

fn unknown_long(long: &str) -> UsageError {
    match long.split_once('=') {
        Some((name, _)) if !name.is_empty() => {
            UsageError(format!("option '--{name}' takes no value"))
        }
        _ => UsageError(format!("unknown option '--{long}'")),
    }
}

fn unknown_short(c: char) -> UsageError {
    UsageError(format!("unknown option '-{}'", c.escape_debug()))
}

fn parse_shutdown(args: &[OsString]) -> Result<Action, UsageError> {
    let mut mode = Mode::Poweroff;
    let mut wall_only = false;
    let mut cancel = false;
    let mut show = false;
    let mut positionals: Vec<String> = Vec::new();
    let mut options_ended = false;

    let texts: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut i = 0;
    while i < texts.len() {
        let text = texts[i].as_str();
        i += 1;
        if text == "--" && !options_ended {
            options_ended = true;
            continue;
        }
        match classify(text, options_ended) {
            Arg::Positional(p) => positionals.push(p.to_owned()),
            Arg::Long(long) => match long {
                "help" => return Ok(Action::Help),
                "version" => return Ok(Action::Version),
                "reboot" => mode = Mode::Reboot,
                "halt" => mode = Mode::Halt,
                "poweroff" => mode = Mode::Poweroff,
                "no-wall" => {}
                "show" => show = true,
                _ => return Err(unknown_long(long)),
            },
            Arg::Shorts(shorts) => {
                for (pos, c) in shorts.char_indices() {
                    match c {
                        'r' => mode = Mode::Reboot,
                        'H' => mode = Mode::Halt,
                        'P' => mode = Mode::Poweroff,
                        // shutdown(8): -h is --poweroff unless --halt was given.
                        'h' => {
                            if mode != Mode::Halt {
                                mode = Mode::Poweroff;
                            }
                        }
                        'k' => wall_only = true,
                        'c' => cancel = true,
                        // Real-machine details (force, fsck, init, access
                        // control) that a container has no use for.
                        'f' | 'F' | 'n' | 'a' => {}
                        // sysvinit's "-t SECONDS" between TERM and KILL: takes
                        // a value, here or in the next argument, then ignored.
                        't' => {
                            let rest = &shorts[pos + c.len_utf8()..];
                            if rest.is_empty() {
                                if i >= texts.len() {
                                    return Err(UsageError(
                                        "option '-t' needs a value (seconds)".to_owned(),
                                    ));
                                }
                                i += 1;
                            }
                            break;
                        }
                        _ => return Err(unknown_short(c)),
                    }
                }
            }
        }
    }

    if cancel {
        return Ok(Action::Cancel);
    }
    if show {
        return Ok(Action::Show);
    }
    let when = match positionals.first() {
        None => When::Omitted,
        Some(time) => parse_time(time).ok_or_else(|| {
            UsageError(format!(
                "bad time '{}': use now, +MINUTES or HH:MM",
                time.escape_debug()
            ))
        })?,
    };
    let message = positionals.get(1..).unwrap_or(&[]).join(" ");
    let request = Request {
        mode,
        when,
        message,
    };
    if wall_only {
        Ok(Action::WallOnly(request))
    } else {
        Ok(Action::Stop(request))
    }
}

/// `now`, `+M` (minutes, digits only) or `HH:MM` (24-hour clock).
fn parse_time(text: &str) -> Option<When> {
    if text == "now" {
        return Some(When::Now);
    }
    if let Some(minutes) = text.strip_prefix('+') {
        if minutes.is_empty() || !minutes.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if minutes.bytes().all(|b| b == b'0') {
            return Some(When::Now);
        }
        return Some(When::Later(text.to_owned()));
    }
    let (hours, minutes) = text.split_once(':')?;
    let hours = small_number(hours)?;
    let minutes = small_number(minutes)?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(When::Later(text.to_owned()))
}

/// One or two ASCII digits.
fn small_number(text: &str) -> Option<u8> {
    if text.is_empty() || text.len() > 2 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `reboot`, `halt` and `poweroff` as in systemd's halt(8).
fn parse_halt_family(default: Mode, args: &[OsString]) -> Result<Action, UsageError> {
    let mut mode = default;
    let mut wtmp_only = false;
    let mut positionals = 0usize;
    let mut options_ended = false;

    for arg in args {
        let text = arg.to_string_lossy();
        if text == "--" && !options_ended {
            options_ended = true;
            continue;
        }
        match classify(&text, options_ended) {
            Arg::Positional(_) => positionals += 1,
            Arg::Long(long) => match long {
                "help" => return Ok(Action::Help),
                "version" => return Ok(Action::Version),
                "halt" => mode = Mode::Halt,
                "reboot" => mode = Mode::Reboot,
                // halt(8): --poweroff "is ignored when reboot is invoked".
                "poweroff" => {
                    if mode != Mode::Reboot {
                        mode = Mode::Poweroff;
                    }
                }
                "wtmp-only" => wtmp_only = true,
                "force" | "no-wtmp" | "no-sync" | "no-wall" => {}
                _ => return Err(unknown_long(long)),
            },
            Arg::Shorts(shorts) => {
                for c in shorts.chars() {
                    match c {
                        'p' => {
                            if mode != Mode::Reboot {
                                mode = Mode::Poweroff;
                            }
                        }
                        'w' => wtmp_only = true,
                        // force, no-wtmp, no-sync, and halt(8)'s
                        // compatibility no-ops -i and -h.
                        'f' | 'd' | 'n' | 'i' | 'h' => {}
                        _ => return Err(unknown_short(c)),
                    }
                }
            }
        }
    }

    // reboot(8) takes one optional argument for the firmware (e.g. a
    // recovery target); a container has no firmware, so it is ignored.
    let allowed = if mode == Mode::Reboot { 1 } else { 0 };
    if positionals > allowed {
        return Err(UsageError("too many arguments".to_owned()));
    }
    if wtmp_only {
        return Ok(Action::WtmpOnly(mode));
    }
    Ok(Action::Stop(Request {
        mode,
        when: When::Now,
        message: String::new(),
    }))
}

/// The `--help` text for a personality; `prog` is the name it was invoked as.
pub fn usage(personality: Personality, prog: &str) -> String {
    match personality {
        Personality::Shutdown => format!(
            "Usage: {prog} [OPTIONS] [TIME] [WALL MESSAGE...]\n\
             \n\
             Asks swarm-init (PID 1 of this container) to stop the container.\n\
             It refuses unless PID 1 is swarm-init, and must run as root (sudo).\n\
             \n\
             Options:\n\
             \x20 -r, --reboot     record the request as a reboot\n\
             \x20 -H, --halt       record the request as a halt\n\
             \x20 -P, --poweroff   record the request as a power-off (the default)\n\
             \x20 -h               same as --poweroff, unless --halt is given\n\
             \x20 -k               send nothing (shutdown(8) would only warn users)\n\
             \x20 -c               cancel: nothing is ever pending in a container\n\
             \x20     --show       show the pending stop: there never is one\n\
             \x20 -f, -F, -n, -a, -t SECONDS, --no-wall\n\
             \x20                  accepted and ignored\n\
             \x20     --help       show this help\n\
             \x20     --version    show the version\n\
             \n\
             TIME is now, +MINUTES or HH:MM. A container stops at once whatever\n\
             TIME says. The WALL MESSAGE is recorded for swarm-init's log.\n\
             \n\
             Exit status: 0 sent (or nothing to send), 1 refused or failed,\n\
             2 bad command line, 4 not root.\n"
        ),
        Personality::Reboot | Personality::Halt | Personality::Poweroff => format!(
            "Usage: {prog} [OPTIONS]{}\n\
             \n\
             Asks swarm-init (PID 1 of this container) to stop the container.\n\
             It refuses unless PID 1 is swarm-init, and must run as root (sudo).\n\
             \n\
             Options:\n\
             \x20     --reboot     record the request as a reboot\n\
             \x20     --halt       record the request as a halt\n\
             \x20 -p, --poweroff   record the request as a power-off (ignored by reboot)\n\
             \x20 -w, --wtmp-only  send nothing (halt(8) would only write wtmp)\n\
             \x20 -f, --force, -d, --no-wtmp, -n, --no-sync, --no-wall, -i, -h\n\
             \x20                  accepted and ignored\n\
             \x20     --help       show this help\n\
             \x20     --version    show the version\n\
             \n\
             Exit status: 0 sent (or nothing to send), 1 refused or failed,\n\
             2 bad command line, 4 not root.\n",
            if personality == Personality::Reboot {
                " [ARG]\n\nARG (a firmware reboot argument) is accepted and ignored."
            } else {
                ""
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn shutdown(args: &[&str]) -> Result<Action, UsageError> {
        parse(Personality::Shutdown, &os(args))
    }

    fn stop(mode: Mode, when: When, message: &str) -> Result<Action, UsageError> {
        Ok(Action::Stop(Request {
            mode,
            when,
            message: message.to_owned(),
        }))
    }

    fn is_usage_error(result: Result<Action, UsageError>) -> bool {
        result.is_err()
    }

    #[test]
    fn personality_comes_from_the_basename_of_argv0() {
        let cases = [
            ("shutdown", Personality::Shutdown),
            ("/sbin/shutdown", Personality::Shutdown),
            ("swarm-shutdown", Personality::Shutdown),
            ("/usr/local/bin/swarm-shutdown", Personality::Shutdown),
            ("reboot", Personality::Reboot),
            ("/sbin/reboot", Personality::Reboot),
            ("halt", Personality::Halt),
            ("./halt", Personality::Halt),
            ("poweroff", Personality::Poweroff),
            ("/usr/sbin/poweroff", Personality::Poweroff),
            ("", Personality::Shutdown),
            ("something-else", Personality::Shutdown),
        ];
        for (argv0, expected) in cases {
            assert_eq!(
                Personality::from_argv0(OsStr::new(argv0)),
                expected,
                "{argv0}"
            );
        }
    }

    #[test]
    fn the_bot_reboot_command_is_a_reboot_now_with_its_message() {
        assert_eq!(
            shutdown(&["-r", "now", "Restarting after task 1234"]),
            stop(Mode::Reboot, When::Now, "Restarting after task 1234")
        );
    }

    #[test]
    fn shutdown_without_mode_is_poweroff() {
        assert_eq!(shutdown(&[]), stop(Mode::Poweroff, When::Omitted, ""));
        assert_eq!(shutdown(&["now"]), stop(Mode::Poweroff, When::Now, ""));
    }

    #[test]
    fn shutdown_mode_flags() {
        assert_eq!(shutdown(&["-r"]), stop(Mode::Reboot, When::Omitted, ""));
        assert_eq!(
            shutdown(&["--reboot"]),
            stop(Mode::Reboot, When::Omitted, "")
        );
        assert_eq!(shutdown(&["-H"]), stop(Mode::Halt, When::Omitted, ""));
        assert_eq!(shutdown(&["--halt"]), stop(Mode::Halt, When::Omitted, ""));
        assert_eq!(shutdown(&["-P"]), stop(Mode::Poweroff, When::Omitted, ""));
        assert_eq!(
            shutdown(&["--poweroff"]),
            stop(Mode::Poweroff, When::Omitted, "")
        );
        assert_eq!(shutdown(&["-h"]), stop(Mode::Poweroff, When::Omitted, ""));
    }

    #[test]
    fn shutdown_h_is_poweroff_unless_halt_given() {
        assert_eq!(
            shutdown(&["-H", "-h", "now"]),
            stop(Mode::Halt, When::Now, "")
        );
        assert_eq!(shutdown(&["-hH", "now"]), stop(Mode::Halt, When::Now, ""));
        assert_eq!(
            shutdown(&["-r", "-h", "now"]),
            stop(Mode::Poweroff, When::Now, "")
        );
    }

    #[test]
    fn last_mode_flag_wins() {
        assert_eq!(
            shutdown(&["-r", "-P"]),
            stop(Mode::Poweroff, When::Omitted, "")
        );
        assert_eq!(
            shutdown(&["-P", "-r"]),
            stop(Mode::Reboot, When::Omitted, "")
        );
        assert_eq!(
            shutdown(&["--halt", "--reboot"]),
            stop(Mode::Reboot, When::Omitted, "")
        );
    }

    #[test]
    fn combined_short_flags() {
        assert_eq!(shutdown(&["-rf", "now"]), stop(Mode::Reboot, When::Now, ""));
        assert_eq!(shutdown(&["-fr", "now"]), stop(Mode::Reboot, When::Now, ""));
        assert_eq!(
            shutdown(&["-rFn", "now"]),
            stop(Mode::Reboot, When::Now, "")
        );
        assert_eq!(
            shutdown(&["-Pa", "now"]),
            stop(Mode::Poweroff, When::Now, "")
        );
        assert!(is_usage_error(shutdown(&["-rz", "now"])));
    }

    #[test]
    fn ignored_shutdown_options() {
        for flag in ["-f", "-F", "-n", "-a", "--no-wall"] {
            assert_eq!(
                shutdown(&["-r", flag, "now", "msg"]),
                stop(Mode::Reboot, When::Now, "msg"),
                "{flag}"
            );
        }
    }

    #[test]
    fn t_takes_a_value_attached_or_separate() {
        assert_eq!(
            shutdown(&["-t", "5", "-r", "now"]),
            stop(Mode::Reboot, When::Now, "")
        );
        assert_eq!(
            shutdown(&["-t5", "-r", "now"]),
            stop(Mode::Reboot, When::Now, "")
        );
        assert_eq!(
            shutdown(&["-rt", "5", "now"]),
            stop(Mode::Reboot, When::Now, "")
        );
        assert!(is_usage_error(shutdown(&["-r", "-t"])));
    }

    #[test]
    fn times() {
        assert_eq!(shutdown(&["now"]), stop(Mode::Poweroff, When::Now, ""));
        assert_eq!(shutdown(&["+0"]), stop(Mode::Poweroff, When::Now, ""));
        assert_eq!(shutdown(&["+000"]), stop(Mode::Poweroff, When::Now, ""));
        for later in [
            "+1", "+5", "+1440", "0:00", "00:00", "23:59", "9:05", "12:30",
        ] {
            assert_eq!(
                shutdown(&["-r", later]),
                stop(Mode::Reboot, When::Later(later.to_owned()), ""),
                "{later}"
            );
        }
    }

    #[test]
    fn bad_times_are_usage_errors() {
        for bad in [
            "later",
            "+",
            "+5min",
            "+-5",
            "+ 5",
            "24:00",
            "12:60",
            "1:2:3",
            ":30",
            "12:",
            "123:00",
            "12:345",
            "NOW",
            "soon",
            "",
            "１２:００",
        ] {
            let result = shutdown(&["-r", bad, "msg"]);
            assert!(is_usage_error(result.clone()), "{bad:?} gave {result:?}");
        }
        let Err(UsageError(text)) = shutdown(&["soon"]) else {
            panic!("expected an error")
        };
        assert!(text.contains("'soon'") && text.contains("HH:MM"), "{text}");
    }

    #[test]
    fn wall_message_is_the_rest_joined_by_spaces() {
        assert_eq!(
            shutdown(&["-r", "now", "bot", "asked", "for", "it"]),
            stop(Mode::Reboot, When::Now, "bot asked for it")
        );
        assert_eq!(
            shutdown(&["-r", "+5", "a  b", "c"]),
            stop(Mode::Reboot, When::Later("+5".to_owned()), "a  b c")
        );
        assert_eq!(
            shutdown(&["now", "line\nbreak"]),
            stop(Mode::Poweroff, When::Now, "line\nbreak")
        );
    }

    #[test]
    fn options_may_follow_time_like_gnu_getopt() {
        assert_eq!(
            shutdown(&["now", "-r", "msg"]),
            stop(Mode::Reboot, When::Now, "msg")
        );
        assert_eq!(
            shutdown(&["now", "msg", "--reboot"]),
            stop(Mode::Reboot, When::Now, "msg")
        );
    }

    #[test]
    fn double_dash_ends_options() {
        assert_eq!(
            shutdown(&["-r", "--", "now", "-not-an-option", "--nor-this"]),
            stop(Mode::Reboot, When::Now, "-not-an-option --nor-this")
        );
        assert_eq!(
            shutdown(&["-r", "now", "--", "--"]),
            stop(Mode::Reboot, When::Now, "--")
        );
        assert_eq!(
            shutdown(&["now", "-"]),
            stop(Mode::Poweroff, When::Now, "-")
        );
    }

    #[test]
    fn k_sends_nothing_but_parses_the_rest() {
        assert_eq!(
            shutdown(&["-k", "-r", "now", "hello"]),
            Ok(Action::WallOnly(Request {
                mode: Mode::Reboot,
                when: When::Now,
                message: "hello".to_owned()
            }))
        );
        assert!(is_usage_error(shutdown(&["-k", "soon"])));
    }

    #[test]
    fn cancel_and_show() {
        assert_eq!(shutdown(&["-c"]), Ok(Action::Cancel));
        assert_eq!(shutdown(&["-c", "never mind"]), Ok(Action::Cancel));
        assert_eq!(shutdown(&["-r", "-c"]), Ok(Action::Cancel));
        assert_eq!(shutdown(&["-ck"]), Ok(Action::Cancel));
        assert_eq!(shutdown(&["--show"]), Ok(Action::Show));
    }

    #[test]
    fn help_and_version() {
        assert_eq!(shutdown(&["--help"]), Ok(Action::Help));
        assert_eq!(shutdown(&["-r", "--help"]), Ok(Action::Help));
        assert_eq!(shutdown(&["--version"]), Ok(Action::Version));
        for p in [
            Personality::Reboot,
            Personality::Halt,
            Personality::Poweroff,
        ] {
            assert_eq!(parse(p, &os(&["--help"])), Ok(Action::Help));
            assert_eq!(parse(p, &os(&["--version"])), Ok(Action::Version));
        }
        // Processed in order, like getopt: an earlier bad option wins.
        assert!(is_usage_error(shutdown(&["--bogus", "--help"])));
    }

    #[test]
    fn unknown_options_are_usage_errors() {
        for bad in [
            "-x",
            "-K",
            "--bogus",
            "--reboot=1",
            "--=x",
            "--rebootx",
            "-R",
            "--he",
            "-é",
        ] {
            assert!(is_usage_error(shutdown(&[bad, "now"])), "{bad}");
        }
        assert_eq!(
            shutdown(&["--bogus"]),
            Err(UsageError("unknown option '--bogus'".to_owned()))
        );
        assert_eq!(
            shutdown(&["-rx"]),
            Err(UsageError("unknown option '-x'".to_owned()))
        );
        assert_eq!(
            shutdown(&["--reboot=yes"]),
            Err(UsageError("option '--reboot' takes no value".to_owned()))
        );
    }

    #[test]
    fn halt_family_defaults_to_its_name() {
        for (p, mode) in [
            (Personality::Reboot, Mode::Reboot),
            (Personality::Halt, Mode::Halt),
            (Personality::Poweroff, Mode::Poweroff),
        ] {
            assert_eq!(parse(p, &[]), stop(mode, When::Now, ""), "{p:?}");
        }
    }

    #[test]
    fn halt_family_mode_options() {
        let halt = |args: &[&str]| parse(Personality::Halt, &os(args));
        let reboot = |args: &[&str]| parse(Personality::Reboot, &os(args));
        let poweroff = |args: &[&str]| parse(Personality::Poweroff, &os(args));
        assert_eq!(halt(&["-p"]), stop(Mode::Poweroff, When::Now, ""));
        assert_eq!(halt(&["--poweroff"]), stop(Mode::Poweroff, When::Now, ""));
        assert_eq!(halt(&["--reboot"]), stop(Mode::Reboot, When::Now, ""));
        assert_eq!(poweroff(&["--halt"]), stop(Mode::Halt, When::Now, ""));
        assert_eq!(poweroff(&["--reboot"]), stop(Mode::Reboot, When::Now, ""));
        assert_eq!(reboot(&["--halt"]), stop(Mode::Halt, When::Now, ""));
        assert_eq!(
            reboot(&["--halt", "-p"]),
            stop(Mode::Poweroff, When::Now, "")
        );
        // halt(8): -p/--poweroff is ignored when the request is a reboot.
        assert_eq!(reboot(&["-p"]), stop(Mode::Reboot, When::Now, ""));
        assert_eq!(reboot(&["--poweroff"]), stop(Mode::Reboot, When::Now, ""));
        assert_eq!(halt(&["--reboot", "-p"]), stop(Mode::Reboot, When::Now, ""));
    }

    #[test]
    fn halt_family_ignored_options() {
        for p in [
            Personality::Reboot,
            Personality::Halt,
            Personality::Poweroff,
        ] {
            for args in [
                &["-f"][..],
                &["--force"],
                &["-ff"],
                &["-d"],
                &["--no-wtmp"],
                &["-n"],
                &["--no-sync"],
                &["--no-wall"],
                &["-i"],
                &["-h"],
                &["-fdn"],
                &["-f", "--no-wall", "-n"],
            ] {
                let result = parse(p, &os(args));
                assert!(matches!(result, Ok(Action::Stop(_))), "{p:?} {args:?}");
            }
        }
    }

    #[test]
    fn halt_family_wtmp_only_sends_nothing() {
        for p in [
            Personality::Reboot,
            Personality::Halt,
            Personality::Poweroff,
        ] {
            assert!(matches!(parse(p, &os(&["-w"])), Ok(Action::WtmpOnly(_))));
            assert!(matches!(
                parse(p, &os(&["--wtmp-only"])),
                Ok(Action::WtmpOnly(_))
            ));
            assert!(matches!(parse(p, &os(&["-fw"])), Ok(Action::WtmpOnly(_))));
        }
        assert_eq!(
            parse(Personality::Reboot, &os(&["-w"])),
            Ok(Action::WtmpOnly(Mode::Reboot))
        );
    }

    #[test]
    fn halt_family_arguments() {
        // reboot takes one ignored firmware argument; halt and poweroff none.
        assert_eq!(
            parse(Personality::Reboot, &os(&["recovery"])),
            stop(Mode::Reboot, When::Now, "")
        );
        assert!(is_usage_error(parse(Personality::Reboot, &os(&["a", "b"]))));
        assert!(is_usage_error(parse(Personality::Halt, &os(&["now"]))));
        assert!(is_usage_error(parse(Personality::Poweroff, &os(&["now"]))));
        assert_eq!(
            parse(Personality::Halt, &os(&["--reboot", "arg"])),
            stop(Mode::Reboot, When::Now, "")
        );
    }

    #[test]
    fn halt_family_rejects_shutdown_only_and_unknown_options() {
        for p in [
            Personality::Reboot,
            Personality::Halt,
            Personality::Poweroff,
        ] {
            for bad in [
                "-r", "-k", "-c", "-x", "-P", "-H", "--show", "--bogus", "-t",
            ] {
                assert!(is_usage_error(parse(p, &os(&[bad]))), "{p:?} {bad}");
            }
        }
    }

    #[test]
    fn non_utf8_arguments_do_not_break_parsing() {
        use std::os::unix::ffi::OsStringExt;
        let args = vec![
            OsString::from("-r"),
            OsString::from("now"),
            OsString::from_vec(vec![b'h', 0xff, b'i']),
        ];
        assert_eq!(
            parse(Personality::Shutdown, &args),
            stop(Mode::Reboot, When::Now, "h\u{fffd}i")
        );
    }

    #[test]
    fn usage_text_names_the_program_and_the_options() {
        let text = usage(Personality::Shutdown, "shutdown");
        for needle in [
            "Usage: shutdown",
            "-r, --reboot",
            "-k",
            "-c",
            "HH:MM",
            "4 not root",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        let text = usage(Personality::Reboot, "reboot");
        for needle in ["Usage: reboot", "--wtmp-only", "[ARG]"] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        assert!(!usage(Personality::Halt, "halt").contains("[ARG]"));
    }

    fn any_personality() -> impl Strategy<Value = Personality> {
        prop_oneof![
            Just(Personality::Shutdown),
            Just(Personality::Reboot),
            Just(Personality::Halt),
            Just(Personality::Poweroff),
        ]
    }

    /// Arguments biased towards what the parser looks at: dashes, option
    /// letters, times, and arbitrary bytes (including invalid UTF-8).
    fn any_arg() -> impl Strategy<Value = OsString> {
        use std::os::unix::ffi::OsStringExt;
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..12).prop_map(OsString::from_vec),
            "-{0,2}[a-zA-Z=:+0-9é-]{0,6}".prop_map(OsString::from),
            Just(OsString::from("-t")),
            Just(OsString::from("--")),
            Just(OsString::from("now")),
            "[+]?[0-9]{0,3}(:[0-9]{0,3})?".prop_map(OsString::from),
        ]
    }

    proptest! {
        #[test]
        fn parser_never_panics(
            personality in any_personality(),
            args in proptest::collection::vec(any_arg(), 0..8),
        ) {
            let _ = parse(personality, &args);
        }

        #[test]
        fn argv0_never_panics(argv0 in proptest::collection::vec(any::<u8>(), 0..32)) {
            use std::os::unix::ffi::OsStringExt;
            let _ = Personality::from_argv0(&OsString::from_vec(argv0));
        }

        #[test]
        fn message_words_survive_after_now(words in proptest::collection::vec("[a-z]{1,8}", 0..6)) {
            let mut args = vec![OsString::from("-r"), OsString::from("now")];
            args.extend(words.iter().map(OsString::from));
            prop_assert_eq!(
                parse(Personality::Shutdown, &args),
                Ok(Action::Stop(Request { mode: Mode::Reboot, when: When::Now, message: words.join(" ") }))
            );
        }
    }
}
