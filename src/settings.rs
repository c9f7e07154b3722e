//! PID 1's own settings, read from `SWARM_INIT_*` environment variables.
//!
//! Bot mode's variables (`SWARM_URL`, ...) belong to `bot::config`; this module
//! only holds what the supervisor itself needs, so that a typo is reported
//! before any process is started.

use log::LevelFilter;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How long remaining processes get between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Exit code after a shutdown request (SIGUSR1).
    pub shutdown_exit_code: i32,
    pub log_level: LevelFilter,
    /// Forward signals to the main child's process group instead of the child.
    pub forward_to_group: bool,
}

/// The longest grace period accepted; anything longer is surely a typo and
/// would let a wedged container outlive any `docker stop` timeout.
const MAX_GRACE_SECONDS: u64 = 3600;

/// Reads the settings through `get` (the process environment in production).
/// An empty value means the default, as it does for every variable, so that
/// `docker run -e VAR=` undoes a value baked into an image.
pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
    let get = |name: &str| get(name).filter(|value| !value.trim().is_empty());
    let grace_seconds = match get("SWARM_INIT_GRACE_SECONDS") {
        None => 10,
        Some(text) => match text.trim().parse::<u64>() {
            Ok(n) if n <= MAX_GRACE_SECONDS => n,
            _ => {
                return Err(format!(
                    "SWARM_INIT_GRACE_SECONDS={text:?} is not a whole number of seconds \
                     from 0 to {MAX_GRACE_SECONDS}; set it to e.g. 10 or unset it"
                ))
            }
        },
    };
    let shutdown_exit_code = match get("SWARM_INIT_SHUTDOWN_EXIT_CODE") {
        None => crate::exit_code::DEFAULT_SHUTDOWN,
        Some(text) => match text.trim().parse::<u8>() {
            Ok(n) => i32::from(n),
            Err(_) => {
                return Err(format!(
                    "SWARM_INIT_SHUTDOWN_EXIT_CODE={text:?} is not an exit code from 0 to 255; \
                     set it to e.g. 10 or unset it"
                ))
            }
        },
    };
    let log_level = match get("SWARM_INIT_LOG").as_deref().map(str::trim) {
        None | Some("info") => LevelFilter::Info,
        Some("error") => LevelFilter::Error,
        Some("warn") => LevelFilter::Warn,
        Some("debug") => LevelFilter::Debug,
        Some(other) => {
            return Err(format!(
                "SWARM_INIT_LOG={other:?} is not a log level; use error, warn, info or debug"
            ))
        }
    };
    let forward_to_group = match get("SWARM_INIT_FORWARD_TO_GROUP").as_deref().map(str::trim) {
        None | Some("0") | Some("false") => false,
        Some("1") | Some("true") => true,
        Some(other) => {
            return Err(format!(
                "SWARM_INIT_FORWARD_TO_GROUP={other:?} is not a boolean; use 1 or 0"
            ))
        }
    };
    Ok(Settings {
        grace: Duration::from_secs(grace_seconds),
        shutdown_exit_code,
        log_level,
        forward_to_group,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        from_env(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.grace, Duration::from_secs(10));
        assert_eq!(s.shutdown_exit_code, 10);
        assert_eq!(s.log_level, LevelFilter::Info);
        assert!(!s.forward_to_group);
    }

    #[test]
    fn valid_values() {
        let s = settings(&[
            ("SWARM_INIT_GRACE_SECONDS", "0"),
            ("SWARM_INIT_SHUTDOWN_EXIT_CODE", "255"),
            ("SWARM_INIT_LOG", "debug"),
            ("SWARM_INIT_FORWARD_TO_GROUP", "1"),
        ])
        .unwrap();
        assert_eq!(s.grace, Duration::ZERO);
        assert_eq!(s.shutdown_exit_code, 255);
        assert_eq!(s.log_level, LevelFilter::Debug);
        assert!(s.forward_to_group);
    }

    #[test]
    fn empty_values_mean_the_default() {
        let s = settings(&[
            ("SWARM_INIT_GRACE_SECONDS", ""),
            ("SWARM_INIT_SHUTDOWN_EXIT_CODE", " "),
            ("SWARM_INIT_LOG", ""),
            ("SWARM_INIT_FORWARD_TO_GROUP", ""),
        ])
        .unwrap();
        assert_eq!(s, settings(&[]).unwrap());
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (name, value) in [
            ("SWARM_INIT_GRACE_SECONDS", "-1"),
            ("SWARM_INIT_GRACE_SECONDS", "ten"),
            ("SWARM_INIT_GRACE_SECONDS", "3601"),
            ("SWARM_INIT_SHUTDOWN_EXIT_CODE", "256"),
            ("SWARM_INIT_LOG", "trace"),
            ("SWARM_INIT_FORWARD_TO_GROUP", "yes please"),
        ] {
            let err = settings(&[(name, value)]).unwrap_err();
            assert!(err.contains(name), "{err}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(grace in ".*", code in ".*", level in ".*", group in ".*") {
            let _ = settings(&[
                ("SWARM_INIT_GRACE_SECONDS", &grace),
                ("SWARM_INIT_SHUTDOWN_EXIT_CODE", &code),
                ("SWARM_INIT_LOG", &level),
                ("SWARM_INIT_FORWARD_TO_GROUP", &group),
            ]);
        }
    }
}
