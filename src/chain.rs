//! Tamper evidence (SPEC §9): the hash chain over records and the keyed MAC
//! that seals a file.
//!
//! # The chain
//!
//! Every record carries `<Chain>`, the lowercase hex of
//!
//! ```text
//! chain(i) = SHA-256( chain(i-1) ‖ id(i) as 8 bytes big-endian ‖ leaf(i) )
//! leaf(i)  = SHA-256( for each field present, in the order of the XSD:
//!                       field number (1 = TimeStamp … 16 = SessionId) as 1 byte
//!                       ‖ value length in bytes as 4 bytes big-endian ‖ value (UTF-8) )
//! ```
//!
//! The leaf covers field *values* (after XML unescaping and base64 decoding),
//! not the bytes of the file, so a copy that an XML tool re-indented or an FTP
//! ASCII transfer re-ended still verifies, and anyone can recompute it with a
//! few lines of Python. The header's `chain-start` is the chain value the
//! file continues from (its predecessor's last record); the first file of a
//! data directory starts from 32 random bytes. The seal repeats the last value
//! as `chain-end`, and the next file's header states it again, so each file
//! anchors the one before it.
//!
//! # The seal MAC
//!
//! With `hmac_key_file` configured, the seal also carries
//! `mac = HMAC-SHA-256(key, statement)` and the key's `key-id` (see
//! [`seal_statement`]). The statement covers the header and the seal, whose
//! `chain-end` commits to every record, so a file whose records were changed
//! and whose chain was recomputed from scratch no longer matches.

use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use hmac::{KeyInit, Mac};
use sha2::{Digest as _, Sha256};

use crate::record::{FIELDS, Record};

/// A SHA-256 value.
pub type Digest = [u8; 32];

/// The digest of a record's field values (see the module documentation).
pub fn leaf(rec: &Record<'_>) -> Digest {
    // One contiguous input hashes faster than many small updates.
    let mut input = Vec::with_capacity(512);
    for (n, spec) in FIELDS.iter().enumerate() {
        if let Some(v) = &rec.fields[spec.field as usize] {
            input.push(n as u8 + 1);
            input.extend_from_slice(&(v.len() as u32).to_be_bytes());
            input.extend_from_slice(v.as_bytes());
        }
    }
    Sha256::digest(&input).into()
}

/// The chain value of record `id`, given the one before it.
pub fn link(prev: &Digest, id: u64, leaf: &Digest) -> Digest {
    let mut input = [0u8; 72];
    input[..32].copy_from_slice(prev);
    input[32..40].copy_from_slice(&id.to_be_bytes());
    input[40..].copy_from_slice(leaf);
    Sha256::digest(input).into()
}

/// Where a data directory's chain starts: 32 bytes from the system's random source.
pub fn genesis() -> Result<Digest> {
    let mut d = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut d))
        .context("cannot read /dev/urandom for the start of the hash chain")?;
    Ok(d)
}

/// Lowercase hex of a digest.
pub fn hex(d: &Digest) -> String {
    let mut out = [0u8; 64];
    hex_into(d, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Lowercase hex of a digest into a 64-byte buffer.
pub fn hex_into(d: &Digest, out: &mut [u8; 64]) {
    // The buffer is exactly twice the input, so encoding cannot fail.
    let _ = hex::encode_to_slice(d, out);
}

/// A digest from 64 hex digits (either case).
pub fn parse_hex(s: &str) -> Option<Digest> {
    let mut d = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut d).ok()?;
    Some(d)
}

/// What a seal MAC covers: the header's host, created and first-id… and the
/// seal's fields, each in a fixed form:
///
/// ```text
/// "audit-trail seal v1" 0x00 host 0x00 created 0x00 sealed 0x00
/// first-id ‖ last-id ‖ records (8 bytes big-endian each) ‖ chain-start ‖ chain-end (32 bytes each)
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SealStatement<'a> {
    pub host: &'a str,
    pub created: &'a str,
    pub sealed: &'a str,
    pub first_id: u64,
    pub last_id: u64,
    pub records: u64,
    pub chain_start: &'a Digest,
    pub chain_end: &'a Digest,
}

/// The bytes a seal MAC is computed over.
pub fn seal_statement(s: &SealStatement<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    for part in [b"audit-trail seal v1".as_slice(), s.host.as_bytes(), s.created.as_bytes(), s.sealed.as_bytes()] {
        out.extend_from_slice(part);
        out.push(0);
    }
    for n in [s.first_id, s.last_id, s.records] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    out.extend_from_slice(s.chain_start);
    out.extend_from_slice(s.chain_end);
    out
}

/// Shortest key accepted, in bytes.
pub const MIN_KEY: usize = 16;

/// A secret key for seal MACs. Never printed: `Debug` shows its id only.
#[derive(Clone)]
pub struct MacKey {
    key: Vec<u8>,
    id: String,
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MacKey(id {})", self.id)
    }
}

impl MacKey {
    /// A key from its raw bytes.
    pub fn from_bytes(key: Vec<u8>) -> Result<MacKey> {
        if key.len() < MIN_KEY {
            bail!("the key holds {} bytes; at least {MIN_KEY} are needed (32 random bytes are recommended)", key.len());
        }
        let digest = Sha256::new().chain_update(b"audit-trail key id\0").chain_update(&key).finalize();
        let mut id = String::with_capacity(16);
        for b in &digest[..8] {
            let _ = write!(id, "{b:02x}");
        }
        Ok(MacKey { key, id })
    }

    /// Reads a key file: its bytes are the key, exactly. The file must not be
    /// readable or writable by group or others.
    pub fn load(path: &Path) -> Result<MacKey> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).with_context(|| format!("cannot read key file {}", path.display()))?;
        if !meta.is_file() {
            bail!("key file {} is not a regular file", path.display());
        }
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            bail!(
                "key file {} is accessible by group or others (mode {:o}); run chmod 600 on it",
                path.display(),
                mode & 0o777
            );
        }
        let key = std::fs::read(path).with_context(|| format!("cannot read key file {}", path.display()))?;
        MacKey::from_bytes(key).with_context(|| format!("key file {}", path.display()))
    }

    /// A public name for the key: the first 8 bytes of a hash of it, in hex.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The MAC of a seal statement.
    pub fn mac(&self, statement: &SealStatement<'_>) -> Digest {
        let mut m = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        m.update(&seal_statement(statement));
        m.finalize().into_bytes().into()
    }

    /// Whether `mac` is this key's MAC of the statement (in constant time).
    pub fn check(&self, statement: &SealStatement<'_>, mac: &Digest) -> bool {
        let mut m = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        m.update(&seal_statement(statement));
        m.verify_slice(mac).is_ok()
    }
}

/// Writes a new random 32-byte key to `path` with mode 600, refusing to
/// replace an existing file.
pub fn generate_key(path: &Path) -> Result<MacKey> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = genesis()?.to_vec();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create key file {}", path.display()))?;
    f.write_all(&key)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write key file {}", path.display()))?;
    MacKey::from_bytes(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Field;

    #[test]
    fn leaf_depends_on_every_value_and_its_boundaries() {
        let mut a = Record::default();
        a.set(Field::AppName, "ab");
        a.set(Field::ActionType, "c");
        let mut b = Record::default();
        b.set(Field::AppName, "a");
        b.set(Field::ActionType, "bc");
        assert_ne!(leaf(&a), leaf(&b), "moving a character between fields changes the leaf");
        let mut c = a.clone();
        c.id = 99;
        assert_eq!(leaf(&a), leaf(&c), "the id is bound by the link, not the leaf");
        let mut d = a.clone();
        d.set(Field::ActionData, "");
        assert_ne!(leaf(&a), leaf(&d), "an empty field differs from an absent one");
    }

    #[test]
    fn link_matches_a_plain_sha256_of_its_input() {
        let prev = [7u8; 32];
        let l = [9u8; 32];
        let mut input = prev.to_vec();
        input.extend_from_slice(&42u64.to_be_bytes());
        input.extend_from_slice(&l);
        let want: Digest = Sha256::digest(&input).into();
        assert_eq!(link(&prev, 42, &l), want);
        assert_ne!(link(&prev, 43, &l), want);
    }

    #[test]
    fn hex_round_trips() {
        let d: Digest = std::array::from_fn(|i| i as u8 * 7);
        assert_eq!(parse_hex(&hex(&d)), Some(d));
        assert_eq!(parse_hex(&hex(&d).to_uppercase()), Some(d));
        assert_eq!(parse_hex("abc"), None);
    }

    #[test]
    fn mac_checks_and_key_id_is_stable() {
        let k = MacKey::from_bytes(vec![1; 32]).unwrap();
        let (s, e) = ([1u8; 32], [2u8; 32]);
        let st = SealStatement {
            host: "pbx01",
            created: "c",
            sealed: "s",
            first_id: 1,
            last_id: 5,
            records: 5,
            chain_start: &s,
            chain_end: &e,
        };
        let mac = k.mac(&st);
        assert!(k.check(&st, &mac));
        assert!(!k.check(&SealStatement { records: 6, ..st }, &mac));
        let other = MacKey::from_bytes(vec![2; 32]).unwrap();
        assert!(!other.check(&st, &mac));
        assert_ne!(k.id(), other.id());
        assert_eq!(k.id().len(), 16);
        assert!(!format!("{k:?}").contains("0101"), "Debug never shows the key");
        assert!(MacKey::from_bytes(vec![0; 8]).is_err());
    }
}
