//! Verification of a downloaded bot zip before anything runs it: the archive
//! parses, every entry decompresses with a matching CRC-32 and declared size,
//! `__main__.py` sits at the root, and the optional SHA-256 pin and Swarming
//! bot version match.
//!
//! The bot version is computed here for every zip (it is logged and printed by
//! `fetch`): SHA-256 over the entries in archive (central directory) order, each
//! contributing the ASCII decimal length of its name, the name, the ASCII
//! decimal length of its content, and the content. Names are the zip's
//! decoded names (UTF-8, or CP437 without the UTF-8 flag) hashed as UTF-8,
//! their length counted in characters, as Python's `len(name)` does.

use std::io::{Read, Seek, SeekFrom};

use sha2::{Digest, Sha256};

use super::config::hex;

/// What a successful verification learned about the zip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipReport {
    pub entries: usize,
    pub uncompressed_bytes: u64,
    pub bot_version: [u8; 32],
}

/// Checks the SHA-256 of the downloaded bytes against the pin, if any.
pub fn check_pin(sha256: &[u8; 32], pin: Option<&[u8; 32]>) -> Result<(), String> {
    match pin {
        Some(want) if want != sha256 => Err(format!(
            "SHA-256 of the zip is {}, but SWARM_BOT_SHA256 pins {}",
            hex(sha256),
            hex(want)
        )),
        _ => Ok(()),
    }
}

/// Checks the computed bot version against the expected one, if any.
pub fn check_version(report: &ZipReport, want: Option<&[u8; 32]>) -> Result<(), String> {
    match want {
        Some(want) if *want != report.bot_version => Err(format!(
            "bot version of the zip is {}, but SWARM_BOT_VERSION expects {}",
            hex(&report.bot_version),
            hex(want)
        )),
        _ => Ok(()),
    }
}

/// One entry's header facts, as seen in a streaming pass; compared with the
/// central directory afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    pub offset: u64,
    pub name_raw: Vec<u8>,
    pub name: String,
    pub crc32: u32,
    pub compressed_size: u64,
    pub size: u64,
    pub method: zip::CompressionMethod,
}

impl EntryMeta {
    /// The facts of `entry`, whose local header starts at `offset`.
    fn of<R: Read + ?Sized>(entry: &zip::read::ZipFile<'_, R>, offset: u64) -> EntryMeta {
        EntryMeta {
            offset,
            name_raw: entry.name_raw().to_vec(),
            name: entry.name().to_string(),
            crc32: entry.crc32(),
            compressed_size: entry.compressed_size(),
            size: entry.size(),
            method: entry.compression(),
        }
    }
}

/// What a streaming pass over the local entries found.
#[derive(Debug)]
pub struct StreamReport {
    pub entries: Vec<EntryMeta>,
    pub uncompressed_bytes: u64,
    pub bot_version: [u8; 32],
}

/// The part of the bot version hash that introduces an entry.
fn hash_entry_header(sha: &mut Sha256, name: &str, size: u64) {
    sha.update(name.chars().count().to_string().as_bytes());
    sha.update(name.as_bytes());
    sha.update(size.to_string().as_bytes());
}

/// Computes the bot version as the entries go by, in archive order.
struct Versioner {
    sha: Sha256,
    buf: Vec<u8>,
}

impl Versioner {
    fn new(buf_size: usize) -> Versioner {
        Versioner {
            sha: Sha256::new(),
            buf: vec![0; buf_size.max(1)],
        }
    }

    fn finish(self) -> [u8; 32] {
        self.sha.finalize().into()
    }
}

/// Reads one entry to its end, hashing its content into the bot version; the
/// zip crate checks the CRC-32 when the end is reached. Returns the bytes read.
fn read_entry(
    entry: &mut impl Read,
    name: &str,
    declared: u64,
    version: &mut Versioner,
) -> Result<u64, String> {
    hash_entry_header(&mut version.sha, name, declared);
    let mut got: u64 = 0;
    loop {
        let n = match entry.read(&mut version.buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("zip entry {name:?} is corrupt: {e}")),
        };
        got += n as u64;
        if got > declared {
            break;
        }
        version.sha.update(&version.buf[..n]);
    }
    if got != declared {
        return Err(format!(
            "zip entry {name:?} is corrupt: it holds {got} bytes but declares {declared}"
        ));
    }
    Ok(got)
}

const NO_MAIN: &str =
    "the zip has no __main__.py at its root, so it is not a Swarming bot; check SWARM_URL";

fn is_root_main(name: &str, is_dir: bool) -> bool {
    name == "__main__.py" && !is_dir
}

/// End of central directory record: signature and fixed size.
const EOCD_SIGNATURE: &[u8; 4] = b"PK\x05\x06";
const EOCD_LEN: usize = 22;
/// The record may be followed by a comment of at most this many bytes.
const MAX_COMMENT: usize = 0xffff;

/// Where Python (zipimport, which runs the bot, and zipfile) finds the
/// central directory: (its absolute start, the archive's offset in the file).
/// Python looks for the end record only in the last 64 KiB + 22 bytes, taking
/// the last signature there; a zip the zip crate still accepts (say with
/// trailing junk) may be one Python cannot open, and must then fail here.
pub fn python_directory<R: Read + Seek>(reader: &mut R) -> Result<(u64, u64), String> {
    let io = |e: std::io::Error| format!("cannot read the zip: {e}");
    let size = reader.seek(SeekFrom::End(0)).map_err(io)?;
    let window = size.min((EOCD_LEN + MAX_COMMENT) as u64);
    reader.seek(SeekFrom::Start(size - window)).map_err(io)?;
    let mut data = vec![0u8; usize::try_from(window).map_err(|e| e.to_string())?];
    reader.read_exact(&mut data).map_err(io)?;
    let tail_start = data.len().saturating_sub(EOCD_LEN);
    let pos = if data.len() >= EOCD_LEN && data[tail_start..].starts_with(EOCD_SIGNATURE) {
        tail_start
    } else {
        data.windows(4).rposition(|w| w == EOCD_SIGNATURE).ok_or(
            "not a zip Python can open: no end of central directory record in its last 64 KiB",
        )?
    };
    let record = data
        .get(pos..pos + EOCD_LEN)
        .ok_or("not a zip Python can open: truncated end record")?;
    let u32_at = |i: usize| {
        u64::from(u32::from_le_bytes([
            record[i],
            record[i + 1],
            record[i + 2],
            record[i + 3],
        ]))
    };
    let (cd_size, cd_offset) = (u32_at(12), u32_at(16));
    let record_at = size - window + pos as u64;
    let bad = || "not a zip Python can open: its end record points outside the file".to_string();
    let cd_start = record_at.checked_sub(cd_size).ok_or_else(bad)?;
    let archive_offset = cd_start.checked_sub(cd_offset).ok_or_else(bad)?;
    Ok((cd_start, archive_offset))
}

/// Opens the archive, insisting that it is the archive Python will see.
fn open_archive<R: Read + Seek>(mut reader: R) -> Result<zip::ZipArchive<R>, String> {
    let python = python_directory(&mut reader);
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| format!("cannot read the zip: {e}"))?;
    let archive =
        zip::ZipArchive::new(reader).map_err(|e| format!("not a valid zip archive: {e}"))?;
    let python = python.map_err(|e| format!("{e} (is there data after the end of the zip?)"))?;
    if (archive.central_directory_start(), archive.offset()) != python {
        return Err(format!(
            "ambiguous zip: Python would read the central directory at {} (archive offset {}), \
             the zip library at {} (offset {}); is there data after the end of the zip?",
            python.0,
            python.1,
            archive.central_directory_start(),
            archive.offset()
        ));
    }
    Ok(archive)
}

/// Parses the zip in `reader`, decompresses every entry (the zip crate checks
/// each CRC-32 at the end of the entry), and computes the bot version.
/// `buf` is scratch space; a large one keeps the number of reads low.
pub fn verify_zip<R: Read + Seek>(reader: R, buf_size: usize) -> Result<ZipReport, String> {
    let mut archive = open_archive(reader)?;
    let mut version = Versioner::new(buf_size);
    let mut has_main = false;
    let mut total: u64 = 0;
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| format!("zip entry #{index} cannot be read: {e}"))?;
        let name = entry.name().to_string();
        has_main |= is_root_main(&name, entry.is_dir());
        let declared = entry.size();
        total = total.saturating_add(read_entry(&mut entry, &name, declared, &mut version)?);
    }
    if !has_main {
        return Err(NO_MAIN.to_string());
    }
    Ok(ZipReport {
        entries: archive.len(),
        uncompressed_bytes: total,
        bot_version: version.finish(),
    })
}

/// Counts the bytes taken from a reader: the offset of each local header.
struct Counting<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Verifies the local entries of a zip as its bytes stream in (while it is
/// still downloading): each entry is decompressed with its CRC-32 checked and
/// its content hashed into the bot version. Stops at the central directory.
/// Its result stands only once [`check_central`] confirms that the central
/// directory, which is what Python reads, lists exactly these entries.
pub fn verify_stream<R: Read>(reader: R, buf_size: usize) -> Result<StreamReport, String> {
    let mut stream = Counting {
        inner: reader,
        pos: 0,
    };
    let mut version = Versioner::new(buf_size);
    let mut entries = Vec::new();
    let mut total: u64 = 0;
    loop {
        let offset = stream.pos;
        let mut entry = match zip::read::read_zipfile_from_stream(&mut stream) {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(e) => return Err(format!("local entry at offset {offset}: {e}")),
        };
        let meta = EntryMeta::of(&entry, offset);
        let got = read_entry(&mut entry, &meta.name, meta.size, &mut version)?;
        total = total.saturating_add(got);
        entries.push(meta);
    }
    Ok(StreamReport {
        entries,
        uncompressed_bytes: total,
        bot_version: version.finish(),
    })
}

/// Confirms that the central directory of the complete zip lists exactly the
/// entries [`verify_stream`] verified (same order, offsets, names, CRCs, sizes
/// and methods) and that `__main__.py` is among them. Reads only the central
/// directory, not the data.
pub fn check_central<R: Read + Seek>(reader: R, seen: &StreamReport) -> Result<ZipReport, String> {
    let mut archive = open_archive(reader)?;
    if archive.offset() != 0 {
        return Err(format!("the archive starts at offset {}", archive.offset()));
    }
    if archive.len() != seen.entries.len() {
        return Err(format!(
            "the central directory lists {} entries, the stream held {}",
            archive.len(),
            seen.entries.len()
        ));
    }
    let mut has_main = false;
    for (index, want) in seen.entries.iter().enumerate() {
        let entry = archive
            .by_index_raw(index)
            .map_err(|e| format!("zip entry #{index} cannot be read: {e}"))?;
        let got = EntryMeta::of(&entry, entry.header_start());
        if &got != want {
            return Err(format!(
                "central directory entry #{index} differs from its local header"
            ));
        }
        has_main |= is_root_main(&got.name, entry.is_dir());
    }
    if !has_main {
        return Err(NO_MAIN.to_string());
    }
    Ok(ZipReport {
        entries: seen.entries.len(),
        uncompressed_bytes: seen.uncompressed_bytes,
        bot_version: seen.bot_version,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::{Cursor, Write};
    use zip::write::SimpleFileOptions;
    use zip::CompressionMethod;

    /// Builds a zip of (name, content) in memory; names ending in '/' are directories.
    pub(crate) fn build_zip(entries: &[(&str, &[u8])], method: CompressionMethod) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = SimpleFileOptions::default().compression_method(method);
        for (name, content) in entries {
            if let Some(dir) = name.strip_suffix('/') {
                w.add_directory(dir, opts).unwrap();
            } else {
                w.start_file(*name, opts).unwrap();
                w.write_all(content).unwrap();
            }
        }
        w.finish().unwrap().into_inner()
    }

    pub(crate) fn expected_version(entries: &[(&str, &[u8])]) -> [u8; 32] {
        let mut h = Sha256::new();
        for (name, content) in entries {
            h.update(name.len().to_string());
            h.update(name);
            h.update(content.len().to_string());
            h.update(content);
        }
        h.finalize().into()
    }

    /// Both ways of verifying, which must agree.
    fn verify(bytes: &[u8]) -> Result<ZipReport, String> {
        let full = verify_zip(Cursor::new(bytes), 1000);
        let streamed =
            verify_stream(bytes, 777).and_then(|s| check_central(Cursor::new(bytes), &s));
        match (&full, &streamed) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            _ => panic!("full pass {full:?} but streaming pass {streamed:?}"),
        }
        full
    }

    const MAIN: &[u8] = b"import sys\nprint('bot', sys.argv)\n";

    #[test]
    fn good_zip_and_its_version() {
        let big: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let entries: [(&str, &[u8]); 4] = [
            ("__main__.py", MAIN),
            ("bot_code/", b""),
            ("bot_code/big.bin", &big),
            ("config/bot_config.py", b"x=1\n"),
        ];
        for method in [CompressionMethod::Stored, CompressionMethod::Deflated] {
            let report = verify(&build_zip(&entries, method)).unwrap();
            assert_eq!(report.entries, 4);
            assert_eq!(
                report.uncompressed_bytes,
                (MAIN.len() + big.len() + 4) as u64
            );
            assert_eq!(report.bot_version, expected_version(&entries));
            check_version(&report, Some(&expected_version(&entries))).unwrap();
            let e = check_version(&report, Some(&[7; 32])).unwrap_err();
            assert!(
                e.contains("SWARM_BOT_VERSION") && e.contains(&hex(&[7; 32])),
                "{e}"
            );
        }
    }

    #[test]
    fn version_depends_on_order() {
        let a: [(&str, &[u8]); 2] = [("__main__.py", MAIN), ("b.py", b"b")];
        let b: [(&str, &[u8]); 2] = [("b.py", b"b"), ("__main__.py", MAIN)];
        let va = verify(&build_zip(&a, CompressionMethod::Stored))
            .unwrap()
            .bot_version;
        let vb = verify(&build_zip(&b, CompressionMethod::Stored))
            .unwrap()
            .bot_version;
        assert_ne!(va, vb);
        assert_eq!(vb, expected_version(&b));
    }

    #[test]
    fn corrupt_crc() {
        let mut bytes = build_zip(
            &[("__main__.py", b"MARKER-CONTENT-HERE")],
            CompressionMethod::Stored,
        );
        let at = bytes.windows(6).position(|w| w == b"MARKER").unwrap();
        bytes[at] = b'X';
        let e = verify(&bytes).unwrap_err();
        assert!(
            e.contains("__main__.py")
                && e.contains("corrupt")
                && e.to_lowercase().contains("checksum"),
            "{e}"
        );
    }

    #[test]
    fn corrupt_deflate_stream() {
        let body: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut bytes = build_zip(
            &[("__main__.py", MAIN), ("data", &body)],
            CompressionMethod::Deflated,
        );
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..mid + 16] {
            *b ^= 0x5a;
        }
        assert!(verify(&bytes).is_err());
    }

    #[test]
    fn no_main_py() {
        let bytes = build_zip(
            &[("lib/__main__.py", MAIN), ("x.py", b"")],
            CompressionMethod::Deflated,
        );
        let e = verify(&bytes).unwrap_err();
        assert!(e.contains("no __main__.py"), "{e}");
    }

    #[test]
    fn not_a_zip() {
        let e = verify(b"<!DOCTYPE html><html>maintenance</html>").unwrap_err();
        assert!(e.contains("not a valid zip"), "{e}");
        let good = build_zip(&[("__main__.py", MAIN)], CompressionMethod::Deflated);
        assert!(verify(&good[..good.len() - 10]).is_err(), "truncated zip");
    }

    #[test]
    fn data_descriptors_need_the_full_pass() {
        // Written to a pipe, a zip has sizes only after each entry's data: the
        // streaming pass cannot vouch for it, and the full pass must decide.
        let mut w = zip::ZipWriter::new_stream(Vec::new());
        let opts = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
        w.start_file("__main__.py", opts).unwrap();
        w.write_all(MAIN).unwrap();
        let bytes = w.finish().unwrap().into_inner();
        let entries: [(&str, &[u8]); 1] = [("__main__.py", MAIN)];
        let full = verify_zip(Cursor::new(&bytes), 100).unwrap();
        assert_eq!(full.bot_version, expected_version(&entries));
        let streamed =
            verify_stream(&bytes[..], 100).and_then(|s| check_central(Cursor::new(&bytes), &s));
        assert!(streamed.is_err(), "{streamed:?}");
    }

    #[test]
    fn central_directory_must_match_the_stream() {
        let entries: [(&str, &[u8]); 2] = [("__main__.py", MAIN), ("b.py", b"bbbb")];
        let bytes = build_zip(&entries, CompressionMethod::Stored);
        let seen = verify_stream(&bytes[..], 100).unwrap();
        assert_eq!(
            check_central(Cursor::new(&bytes), &seen)
                .unwrap()
                .bot_version,
            expected_version(&entries)
        );
        let mut other = verify_stream(&bytes[..], 100).unwrap();
        other.entries[1].crc32 ^= 1;
        assert!(check_central(Cursor::new(&bytes), &other).is_err());
        other.entries.pop();
        assert!(check_central(Cursor::new(&bytes), &other).is_err());
    }

    #[test]
    fn trailing_junk_python_cannot_see_past_is_refused() {
        let mut bytes = build_zip(&[("__main__.py", MAIN)], CompressionMethod::Deflated);
        bytes.extend(std::iter::repeat_n(0u8, 128 << 10));
        let e = verify(&bytes).unwrap_err();
        assert!(e.contains("Python"), "{e}");
    }

    #[test]
    fn python_directory_agrees_on_plain_and_prefixed_zips() {
        let zip = build_zip(
            &[("__main__.py", MAIN), ("a", b"a")],
            CompressionMethod::Stored,
        );
        let (cd, offset) = python_directory(&mut Cursor::new(&zip)).unwrap();
        assert_eq!(offset, 0);
        assert!(cd > 0 && (cd as usize) < zip.len());
        // A zipapp may start with a #! line: Python and the zip crate both allow it.
        let mut prefixed = b"#!/usr/bin/env python3\n".to_vec();
        prefixed.extend_from_slice(&zip);
        let r = verify_zip(Cursor::new(&prefixed), 100).unwrap();
        assert_eq!(r.entries, 2);
        // A short comment after the end record is fine too.
        let mut commented = zip.clone();
        let n = commented.len();
        commented[n - 2] = 5;
        commented.extend_from_slice(b"hello");
        verify(&commented).unwrap();
        assert!(python_directory(&mut Cursor::new(b"PK\x05\x06")).is_err());
        assert!(python_directory(&mut Cursor::new(b"")).is_err());
    }

    #[test]
    fn pin() {
        let digest: [u8; 32] = Sha256::digest(b"abc").into();
        check_pin(&digest, None).unwrap();
        check_pin(&digest, Some(&digest)).unwrap();
        let e = check_pin(&digest, Some(&[0; 32])).unwrap_err();
        assert!(
            e.contains("SWARM_BOT_SHA256") && e.contains(&hex(&digest)),
            "{e}"
        );
    }
}
