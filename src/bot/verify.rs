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

use std::io::{Read, Seek};

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

/// Parses the zip in `reader`, decompresses every entry (the zip crate checks
/// each CRC-32 at the end of the entry), and computes the bot version.
/// `buf` is scratch space; a large one keeps the number of reads low.
pub fn verify_zip<R: Read + Seek>(reader: R, buf: &mut [u8]) -> Result<ZipReport, String> {
    let mut archive =
        zip::ZipArchive::new(reader).map_err(|e| format!("not a valid zip archive: {e}"))?;
    let mut version = Sha256::new();
    let mut has_main = false;
    let mut total: u64 = 0;
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| format!("zip entry #{index} cannot be read: {e}"))?;
        let name = entry.name().to_string();
        if name == "__main__.py" && !entry.is_dir() {
            has_main = true;
        }
        let declared = entry.size();
        version.update(name.chars().count().to_string().as_bytes());
        version.update(name.as_bytes());
        version.update(declared.to_string().as_bytes());
        let mut got: u64 = 0;
        loop {
            let n = match entry.read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("zip entry {name:?} is corrupt: {e}")),
            };
            got += n as u64;
            if got > declared {
                break;
            }
            version.update(&buf[..n]);
        }
        if got != declared {
            return Err(format!(
                "zip entry {name:?} is corrupt: it holds {got} bytes but declares {declared}"
            ));
        }
        total = total.saturating_add(got);
    }
    if !has_main {
        return Err(
            "the zip has no __main__.py at its root, so it is not a Swarming bot; check SWARM_URL"
                .to_string(),
        );
    }
    Ok(ZipReport {
        entries: archive.len(),
        uncompressed_bytes: total,
        bot_version: version.finalize().into(),
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

    fn verify(bytes: &[u8]) -> Result<ZipReport, String> {
        verify_zip(Cursor::new(bytes), &mut [0u8; 1000])
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
