//! Fake Swarming bots for the bot-mode tests: zipapps built in memory whose
//! `__main__.py` reports how swarm-init started them, the broken zips that
//! must never be run, the Swarming bot version and SHA-256 of a zip, and the
//! reader of the bot's JSON report.
//!
//! Zips are written by hand (stored entries only, no compression) so that a
//! test knows exactly where each entry's bytes are and can corrupt them;
//! hence the small CRC-32 here. SHA-256 and JSON come from the `sha2` and
//! `serde_json` crates. `fakes_agree_with_python` in tests/bot_mode.rs checks
//! the zips, the bot version and the SHA-256 against Python's zipfile and
//! hashlib.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The fake bot. Environment it reads:
/// - `FAKE_BOT_REPORT`: where to write the JSON report (written atomically);
///   `<report>.ready` is created once the report is written and, with
///   `FAKE_BOT_WAIT_TERM=1`, once the SIGTERM handler is installed.
/// - `FAKE_BOT_WAIT_TERM=1`: wait (at most 60 s) for SIGTERM, then write
///   `<report>.term` and exit.
/// - `FAKE_BOT_EXIT_CODE`: the exit code (default 0).
pub const MAIN_PY: &str = r#"import json, os, signal, sys, time

def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)

def main():
    report = os.environ["FAKE_BOT_REPORT"]
    code = int(os.environ.get("FAKE_BOT_EXIT_CODE", "0"))
    wait_term = os.environ.get("FAKE_BOT_WAIT_TERM") == "1"
    got = []
    if wait_term:
        signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    with open("/proc/self/cmdline", "rb") as f:
        cmdline = [a.decode("utf-8", "replace") for a in f.read().split(b"\0")[:-1]]
    try:
        os.setuid(0)
        regained_root = os.getuid() == 0
    except OSError:
        regained_root = False
    st = os.stat(".")
    info = {
        "resuid": list(os.getresuid()),
        "resgid": list(os.getresgid()),
        "groups": os.getgroups(),
        "cwd": os.getcwd(),
        "cwd_owner": st.st_uid,
        "cwd_writable": os.access(".", os.W_OK),
        "argv": sys.argv,
        "cmdline": cmdline,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "regained_root": regained_root,
        "env": dict(os.environ),
    }
    write_atomic(report, json.dumps(info))
    write_atomic(report + ".ready", "ready\n")
    if wait_term:
        deadline = time.monotonic() + 60
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
        if not got:
            sys.exit(99)
        write_atomic(report + ".term", json.dumps({"signal": got[0]}))
    sys.exit(code)

main()
"#;

/// A zip entry: name and uncompressed content.
pub type Entry = (String, Vec<u8>);

/// The entries of the fake bot; `variant` changes the content (and so the
/// bot version and SHA-256) without changing the behaviour.
pub fn fake_bot_entries(variant: &str) -> Vec<Entry> {
    vec![
        ("__main__.py".to_string(), MAIN_PY.as_bytes().to_vec()),
        (
            "config/bot_config.py".to_string(),
            format!("# fake bot_config, variant {variant}\n").into_bytes(),
        ),
        (
            "payload.txt".to_string(),
            format!("payload of the fake bot, variant {variant}\n")
                .repeat(64)
                .into_bytes(),
        ),
    ]
}

/// The fake bot zipapp.
pub fn fake_bot_zip() -> Vec<u8> {
    build_zip(&fake_bot_entries("default"))
}

/// Another valid fake bot zipapp with different bytes and bot version.
pub fn fake_bot_zip_variant(variant: &str) -> Vec<u8> {
    build_zip(&fake_bot_entries(variant))
}

/// The fake bot with one byte of `payload.txt` (a stored entry) flipped, so
/// its CRC-32 no longer matches. Python would still run it: zipimport never
/// reads `payload.txt`, so only swarm-init's verification keeps it from running.
pub fn corrupt_crc_zip() -> Vec<u8> {
    let mut zip = fake_bot_zip();
    let (offset, len) = entry_data_range(&zip, "payload.txt").expect("payload.txt in the zip");
    assert!(len > 10);
    zip[offset + 5] ^= 0x20;
    zip
}

/// A zip without `__main__.py` at its root (it is one level down instead).
pub fn no_main_zip() -> Vec<u8> {
    let mut entries = fake_bot_entries("no-main");
    entries[0].0 = "bot/__main__.py".to_string();
    build_zip(&entries)
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// The Swarming bot version of a zip (see SWARMING.md): SHA-256 over the
/// entries in archive order of: decimal len(name), name, decimal
/// len(content), content. Only reads zips of stored entries (ours).
pub fn bot_version(zip: &[u8]) -> String {
    bot_version_of_entries(&zip_entries(zip))
}

/// The bot version computed from the entries directly.
pub fn bot_version_of_entries(entries: &[Entry]) -> String {
    let mut h = Sha256::new();
    for (name, content) in entries {
        h.update(name.len().to_string().as_bytes());
        h.update(name.as_bytes());
        h.update(content.len().to_string().as_bytes());
        h.update(content);
    }
    hex(&h.finalize())
}

// ---------------------------------------------------------------- zip writer

/// Builds a zip of stored (uncompressed) entries, in the order given.
pub fn build_zip(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let size = data.len() as u32;
        // Local file header.
        put32(&mut out, 0x0403_4b50);
        put16(&mut out, 20); // version needed
        put16(&mut out, 0); // flags
        put16(&mut out, 0); // method: stored
        put16(&mut out, 0); // time
        put16(&mut out, 0x21); // date: 1980-01-01
        put32(&mut out, crc);
        put32(&mut out, size);
        put32(&mut out, size);
        put16(&mut out, name.len() as u16);
        put16(&mut out, 0); // extra length
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        // Central directory header.
        put32(&mut central, 0x0201_4b50);
        put16(&mut central, 0x0314); // made by: unix, 2.0
        put16(&mut central, 20);
        put16(&mut central, 0);
        put16(&mut central, 0);
        put16(&mut central, 0);
        put16(&mut central, 0x21);
        put32(&mut central, crc);
        put32(&mut central, size);
        put32(&mut central, size);
        put16(&mut central, name.len() as u16);
        put16(&mut central, 0); // extra
        put16(&mut central, 0); // comment
        put16(&mut central, 0); // disk
        put16(&mut central, 0); // internal attributes
        put32(&mut central, 0o100_644 << 16); // external: regular file, 0644
        put32(&mut central, offset);
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    let cd_size = central.len() as u32;
    out.extend_from_slice(&central);
    put32(&mut out, 0x0605_4b50);
    put16(&mut out, 0);
    put16(&mut out, 0);
    put16(&mut out, entries.len() as u16);
    put16(&mut out, entries.len() as u16);
    put32(&mut out, cd_size);
    put32(&mut out, cd_offset);
    put16(&mut out, 0);
    out
}

/// The entries of a zip made of stored entries, in archive order, read by
/// walking the local headers (no CRC check: corrupt zips are read too).
pub fn zip_entries(zip: &[u8]) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut pos = 0;
    while pos + 30 <= zip.len() && get32(zip, pos) == 0x0403_4b50 {
        assert_eq!(get16(zip, pos + 8), 0, "only stored entries are supported");
        let size = get32(zip, pos + 18) as usize;
        let name_len = get16(zip, pos + 26) as usize;
        let extra_len = get16(zip, pos + 28) as usize;
        let name_start = pos + 30;
        let data_start = name_start + name_len + extra_len;
        let name = String::from_utf8(zip[name_start..name_start + name_len].to_vec())
            .expect("utf-8 entry name");
        entries.push((name, zip[data_start..data_start + size].to_vec()));
        pos = data_start + size;
    }
    entries
}

/// Offset and length of a stored entry's data inside the zip.
fn entry_data_range(zip: &[u8], wanted: &str) -> Option<(usize, usize)> {
    let mut pos = 0;
    while pos + 30 <= zip.len() && get32(zip, pos) == 0x0403_4b50 {
        let size = get32(zip, pos + 18) as usize;
        let name_len = get16(zip, pos + 26) as usize;
        let extra_len = get16(zip, pos + 28) as usize;
        let name = &zip[pos + 30..pos + 30 + name_len];
        let data_start = pos + 30 + name_len + extra_len;
        if name == wanted.as_bytes() {
            return Some((data_start, size));
        }
        pos = data_start + size;
    }
    None
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn get32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// CRC-32 (IEEE 802.3, as in zip).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// -------------------------------------------------------------- the report

/// What the fake bot recorded about itself.
#[derive(Debug)]
pub struct BotReport {
    pub resuid: Vec<i64>,
    pub resgid: Vec<i64>,
    pub groups: Vec<i64>,
    pub cwd: String,
    pub cwd_owner: i64,
    pub cwd_writable: bool,
    pub argv: Vec<String>,
    pub cmdline: Vec<String>,
    pub pid: i64,
    pub ppid: i64,
    pub regained_root: bool,
    pub env: BTreeMap<String, String>,
    /// The whole report as written, to search for leaked secrets.
    pub raw: String,
}

impl BotReport {
    /// Reads the report at `path`, if the bot wrote one.
    pub fn read(path: &Path) -> Option<BotReport> {
        let raw = fs::read_to_string(path).ok()?;
        let v: Value =
            serde_json::from_str(&raw).unwrap_or_else(|e| panic!("bad report {raw:?}: {e}"));
        let field = |k: &str| {
            v.get(k)
                .unwrap_or_else(|| panic!("report field {k} missing: {raw}"))
        };
        let ints = |k: &str| -> Vec<i64> {
            field(k)
                .as_array()
                .unwrap_or_else(|| panic!("report field {k} is not a list: {raw}"))
                .iter()
                .map(|x| {
                    x.as_i64()
                        .unwrap_or_else(|| panic!("{k}: {x} is not an int"))
                })
                .collect()
        };
        let strs = |k: &str| -> Vec<String> {
            field(k)
                .as_array()
                .unwrap_or_else(|| panic!("report field {k} is not a list: {raw}"))
                .iter()
                .map(|x| {
                    x.as_str()
                        .unwrap_or_else(|| panic!("{k}: {x} is not a string"))
                        .to_string()
                })
                .collect()
        };
        let int = |k: &str| {
            field(k)
                .as_i64()
                .unwrap_or_else(|| panic!("report field {k} is not an int: {raw}"))
        };
        let boolean = |k: &str| {
            field(k)
                .as_bool()
                .unwrap_or_else(|| panic!("report field {k} is not a bool: {raw}"))
        };
        let text = |k: &str| {
            field(k)
                .as_str()
                .unwrap_or_else(|| panic!("report field {k} is not a string: {raw}"))
                .to_string()
        };
        let env = field("env")
            .as_object()
            .unwrap_or_else(|| panic!("report field env is not an object: {raw}"))
            .iter()
            .map(|(k, v)| {
                let v = v
                    .as_str()
                    .unwrap_or_else(|| panic!("env {k}: {v} is not a string"));
                (k.clone(), v.to_string())
            })
            .collect();
        Some(BotReport {
            resuid: ints("resuid"),
            resgid: ints("resgid"),
            groups: ints("groups"),
            cwd: text("cwd"),
            cwd_owner: int("cwd_owner"),
            cwd_writable: boolean("cwd_writable"),
            argv: strs("argv"),
            cmdline: strs("cmdline"),
            pid: int("pid"),
            ppid: int("ppid"),
            regained_root: boolean("regained_root"),
            env,
            raw,
        })
    }
}

/// The signal number the fake bot recorded in `<report>.term`, if it wrote
/// that file (it does once it has received SIGTERM).
pub fn term_signal(path: &Path) -> Option<i64> {
    let raw = fs::read_to_string(path).ok()?;
    let v: Value =
        serde_json::from_str(&raw).unwrap_or_else(|e| panic!("bad term file {raw:?}: {e}"));
    Some(
        v.get("signal")
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("no signal number in the term file: {raw}")),
    )
}
