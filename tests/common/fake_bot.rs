//! Fake Swarming bots for the bot-mode tests: zipapps built in memory whose
//! `__main__.py` reports how swarm-init started them, the broken zips that
//! must never be run, the Swarming bot version and SHA-256 of a zip, a
//! scratch-directory type, and a small JSON reader for the bot's report.
//!
//! Zips are written by hand (stored entries only, no compression) so that a
//! test knows exactly where each entry's bytes are and can corrupt them.
//! SHA-256 and CRC-32 are implemented here to keep the test suite free of
//! dependencies the product does not need; `bot_version_matches_python`
//! in tests/bot_mode.rs checks both against Python's implementations.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    hex(&sha256(data))
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
    hex(&h.finish())
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

// ------------------------------------------------------------------- sha-256

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// Incremental SHA-256.
pub struct Sha256 {
    state: [u32; 8],
    block: Vec<u8>,
    len: u64,
}

impl Sha256 {
    pub fn new() -> Sha256 {
        Sha256 {
            state: [
                0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
                0x5be0cd19,
            ],
            block: Vec::with_capacity(64),
            len: 0,
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        while !data.is_empty() {
            let take = (64 - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.block.len() == 64 {
                let block: [u8; 64] = self.block[..].try_into().unwrap();
                self.compress(&block);
                self.block.clear();
            }
        }
    }

    pub fn finish(mut self) -> [u8; 32] {
        let bit_len = self.len.wrapping_mul(8);
        let mut pad = vec![0x80u8];
        let used = (self.block.len() + 1) % 64;
        let zeros = if used <= 56 { 56 - used } else { 120 - used };
        pad.extend(std::iter::repeat_n(0u8, zeros));
        pad.extend_from_slice(&bit_len.to_be_bytes());
        let len = self.len;
        self.update(&pad);
        self.len = len;
        assert!(self.block.is_empty());
        let mut out = [0u8; 32];
        for (i, word) in self.state.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    fn compress(&mut self, block: &[u8; 64]) {
        let mut w = [0u32; 64];
        for i in 0..16 {
            w[i] = u32::from_be_bytes(block[i * 4..i * 4 + 4].try_into().unwrap());
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = self.state;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = h
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            h = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (s, v) in self.state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
            *s = s.wrapping_add(v);
        }
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Sha256::new()
    }
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(data);
    h.finish()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ------------------------------------------------------------ scratch dirs

/// A scratch directory under /tmp, mode 0755 so that `nobody` can reach what
/// a test opens up inside it; removed (as root, whatever `nobody` left in it)
/// on drop.
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub fn new(tag: &str) -> TestDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = PathBuf::from(format!(
            "/tmp/swarm-init-test-{tag}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir(&path).expect("create test dir");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod test dir");
        TestDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates a subdirectory with the given mode (not subject to umask).
    pub fn mkdir(&self, rel: &str, mode: u32) -> PathBuf {
        let p = self.path.join(rel);
        fs::create_dir_all(&p).expect("create subdir");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod subdir");
        p
    }

    /// Writes a file with the given mode.
    pub fn write(&self, rel: &str, data: &[u8], mode: u32) -> PathBuf {
        let p = self.path.join(rel);
        fs::write(&p, data).expect("write file");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod file");
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Waits until `path` exists, at most `timeout`; returns whether it does.
pub fn wait_for_file(path: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if path.exists() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
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
        let v = Json::parse(&raw).unwrap_or_else(|e| panic!("bad report {raw:?}: {e}"));
        let ints = |k: &str| -> Vec<i64> {
            v.get(k)
                .and_then(Json::as_array)
                .unwrap_or_else(|| panic!("report field {k}"))
                .iter()
                .map(|x| x.as_i64().expect("int"))
                .collect()
        };
        let strs = |k: &str| -> Vec<String> {
            v.get(k)
                .and_then(Json::as_array)
                .unwrap_or_else(|| panic!("report field {k}"))
                .iter()
                .map(|x| x.as_str().expect("string").to_string())
                .collect()
        };
        let int = |k: &str| v.get(k).and_then(Json::as_i64).expect(k);
        let boolean = |k: &str| v.get(k).and_then(Json::as_bool).expect(k);
        let env = match v.get("env") {
            Some(Json::Object(m)) => m
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("env value").to_string()))
                .collect(),
            _ => panic!("report field env"),
        };
        Some(BotReport {
            resuid: ints("resuid"),
            resgid: ints("resgid"),
            groups: ints("groups"),
            cwd: v
                .get("cwd")
                .and_then(Json::as_str)
                .expect("cwd")
                .to_string(),
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

/// Just enough JSON for the fake bot's report (which Python's json module
/// writes: ASCII only, \uXXXX escapes for the rest).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    Object(BTreeMap<String, Json>),
}

impl Json {
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut p = JsonParser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing data at {}", p.i));
        }
        Ok(v)
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(m) => m.get(key),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Number(n) if n.fract() == 0.0 => Some(*n as i64),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Vec<Json>> {
        match self {
            Json::Array(a) => Some(a),
            _ => None,
        }
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> Result<(), String> {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(format!("expected {lit:?} at {}", self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            None => Err("unexpected end".to_string()),
            Some(b'n') => self.eat("null").map(|_| Json::Null),
            Some(b't') => self.eat("true").map(|_| Json::Bool(true)),
            Some(b'f') => self.eat("false").map(|_| Json::Bool(false)),
            Some(b'"') => self.string().map(Json::String),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Array(items));
                        }
                        _ => return Err(format!("bad array at {}", self.i)),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut map = BTreeMap::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Object(map));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.ws();
                    self.eat(":")?;
                    let v = self.value()?;
                    map.insert(k, v);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Object(map));
                        }
                        _ => return Err(format!("bad object at {}", self.i)),
                    }
                }
            }
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len() && b"+-0123456789.eE".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                let text =
                    std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
                text.parse::<f64>()
                    .map(Json::Number)
                    .map_err(|e| format!("bad number {text:?}: {e}"))
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .ok_or_else(|| "short \\u escape".to_string())?;
        self.i += 4;
        u32::from_str_radix(std::str::from_utf8(h).map_err(|e| e.to_string())?, 16)
            .map_err(|e| e.to_string())
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat("\"")?;
        let mut out = String::new();
        loop {
            let start = self.i;
            while self.i < self.s.len() && self.s[self.i] != b'"' && self.s[self.i] != b'\\' {
                self.i += 1;
            }
            out.push_str(std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?);
            match self.s.get(self.i) {
                None => return Err("unterminated string".to_string()),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(_) => {
                    self.i += 1;
                    let c = *self.s.get(self.i).ok_or("bad escape")?;
                    self.i += 1;
                    match c {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xd800..0xdc00).contains(&cp)
                                && self.s[self.i..].starts_with(b"\\u")
                            {
                                self.i += 2;
                                let lo = self.hex4()?;
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo.wrapping_sub(0xdc00));
                            }
                            out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                        }
                        _ => return Err(format!("bad escape at {}", self.i)),
                    }
                }
            }
        }
    }
}
