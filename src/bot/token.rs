//! The LUCI machine token: reading it from its JSON file and keeping it out of
//! every log line, error message and environment.
//!
//! The value lives only inside [`MachineToken`], whose `Debug` and `Display`
//! print a placeholder; the one way to get the text is [`MachineToken::expose`],
//! used to set the request header and to filter the bot's environment.

use std::fmt;
use std::io;
use std::path::Path;

/// JSON field of token.json holding the token.
const FIELD: &str = "luci_machine_token";

/// A machine token. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct MachineToken(String);

impl MachineToken {
    /// The secret text, for the request header and environment filtering only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MachineToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MachineToken(<redacted>)")
    }
}

impl fmt::Display for MachineToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What reading the token file gave.
#[derive(Debug)]
pub enum TokenRead {
    Token(MachineToken),
    /// The file does not exist: the normal case on hosts without tokend.
    Missing,
    /// The file exists but gives no usable token; the reason never quotes the file.
    Unusable(String),
}

/// Reads the token file. Never fails hard: without a token the download is
/// simply made without the header, as the replaced image did.
pub fn read(path: &Path) -> TokenRead {
    match std::fs::read(path) {
        Ok(bytes) => parse(&bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => TokenRead::Missing,
        Err(e) => TokenRead::Unusable(format!("cannot read it: {e}")),
    }
}

/// Parses token.json. Messages describe the problem without quoting any of
/// the content, which may be the token itself.
pub fn parse(bytes: &[u8]) -> TokenRead {
    let value: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        // serde_json's message names only line and column, never the text.
        Err(e) => return TokenRead::Unusable(format!("not valid JSON ({e})")),
    };
    match value.get(FIELD) {
        Some(serde_json::Value::String(s)) if s.is_empty() => {
            TokenRead::Unusable(format!("field {FIELD:?} is empty"))
        }
        // Visible ASCII only: anything else is not a valid header value, and
        // would make the HTTP library fail with an error of its own.
        Some(serde_json::Value::String(s)) if s.bytes().all(|b| b.is_ascii_graphic()) => {
            TokenRead::Token(MachineToken(s.clone()))
        }
        Some(serde_json::Value::String(_)) => TokenRead::Unusable(format!(
            "field {FIELD:?} holds characters that are not allowed in an HTTP header"
        )),
        Some(_) => TokenRead::Unusable(format!("field {FIELD:?} is not a string")),
        None => TokenRead::Unusable(format!("no field {FIELD:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-t0ken-value";

    #[test]
    fn reads_the_field() {
        let json = format!(r#"{{"luci_machine_token": "{SECRET}", "expiry": 1}}"#);
        match parse(json.as_bytes()) {
            TokenRead::Token(t) => assert_eq!(t.expose(), SECRET),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn never_printed() {
        let t = MachineToken(SECRET.to_string());
        assert!(!format!("{t:?}").contains(SECRET));
        assert!(!format!("{t}").contains(SECRET));
        assert!(!format!("{:?}", TokenRead::Token(t)).contains(SECRET));
    }

    #[test]
    fn unusable_files_do_not_leak() {
        for json in [
            format!(r#"{{"luci_machine_token": 5, "x": "{SECRET}"}}"#),
            format!(r#"{{"other": "{SECRET}"}}"#),
            format!(r#"{{"luci_machine_token": "{SECRET}""#),
            SECRET.to_string(),
            format!(r#"{{"luci_machine_token": "{SECRET} with space"}}"#),
            r#"{"luci_machine_token": ""}"#.to_string(),
        ] {
            match parse(json.as_bytes()) {
                TokenRead::Unusable(why) => assert!(!why.contains(SECRET), "{why}"),
                other => panic!("{json}: {other:?}"),
            }
        }
    }

    #[test]
    fn missing_file() {
        assert!(matches!(
            read(Path::new("/nonexistent/token.json")),
            TokenRead::Missing
        ));
    }
}
