//! The command line: which mode to run in, and the few options PID 1 takes.
//!
//! Parsing has no side effects so that a bad command line is reported before
//! anything is started.

use std::ffi::OsString;

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    /// `swarm-init fetch`: download and verify the bot zip, then exit.
    Fetch,
    /// Run as init. `program` is `None` in bot mode.
    Supervise {
        program: Option<Vec<OsString>>,
        forward_to_group: bool,
    },
}

pub const USAGE: &str = "\
Usage:
  swarm-init [OPTIONS]                     bot mode: fetch, verify and run the Swarming bot
  swarm-init [OPTIONS] -- PROGRAM [ARGS]   generic mode: supervise PROGRAM
  swarm-init fetch                         download and verify the bot zip, print what was fetched

Options:
  -g, --forward-to-group   forward signals to the main child's process group, not only to it
                           (also SWARM_INIT_FORWARD_TO_GROUP=1)
  -h, --help               print this help
  -V, --version            print the version

Environment: SWARM_INIT_GRACE_SECONDS (10), SWARM_INIT_SHUTDOWN_EXIT_CODE (10),
SWARM_INIT_LOG (info), SWARM_INIT_FORWARD_TO_GROUP (0), and in bot mode SWARM_URL and
the other SWARM_* variables listed in the README.";

/// Parses the arguments after argv[0].
pub fn parse(args: &[OsString]) -> Result<Command, String> {
    let mut forward_to_group = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let Some(text) = arg.to_str() else {
            return Err(format!(
                "unexpected argument {arg:?}: put the program after `--`"
            ));
        };
        match text {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "-g" | "--forward-to-group" => forward_to_group = true,
            "--" => {
                let program: Vec<OsString> = rest.cloned().collect();
                if program.is_empty() {
                    return Err("`--` must be followed by the program to run".to_string());
                }
                return Ok(Command::Supervise {
                    program: Some(program),
                    forward_to_group,
                });
            }
            "fetch" if args.len() == 1 => return Ok(Command::Fetch),
            "fetch" => return Err("`fetch` takes no options or arguments".to_string()),
            _ if text.starts_with('-') => return Err(format!("unknown option '{text}'")),
            _ => {
                return Err(format!(
                    "unexpected argument '{text}': put the program after `--`, \
                     as in `swarm-init -- {text}`"
                ))
            }
        }
    }
    Ok(Command::Supervise {
        program: None,
        forward_to_group,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_strs(args: &[&str]) -> Result<Command, String> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        parse(&args)
    }

    #[test]
    fn no_arguments_is_bot_mode() {
        assert_eq!(
            parse_strs(&[]),
            Ok(Command::Supervise {
                program: None,
                forward_to_group: false
            })
        );
    }

    #[test]
    fn program_after_double_dash_is_generic_mode() {
        assert_eq!(
            parse_strs(&["-g", "--", "sleep", "--", "-x"]),
            Ok(Command::Supervise {
                program: Some(vec!["sleep".into(), "--".into(), "-x".into()]),
                forward_to_group: true
            })
        );
    }

    #[test]
    fn help_version_and_fetch() {
        assert_eq!(parse_strs(&["--help"]), Ok(Command::Help));
        assert_eq!(parse_strs(&["-V"]), Ok(Command::Version));
        assert_eq!(parse_strs(&["fetch"]), Ok(Command::Fetch));
    }

    #[test]
    fn mistakes_are_usage_errors() {
        assert!(parse_strs(&["--bogus"]).is_err());
        assert!(parse_strs(&["--"]).is_err());
        assert!(parse_strs(&["sleep", "1"])
            .unwrap_err()
            .contains("swarm-init -- sleep"));
        assert!(parse_strs(&["fetch", "-g"]).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(args in proptest::collection::vec(".*", 0..6)) {
            let args: Vec<OsString> = args.into_iter().map(OsString::from).collect();
            let _ = parse(&args);
        }
    }
}
