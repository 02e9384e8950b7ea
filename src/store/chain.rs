//! Tamper evidence (SPEC §9): the hash chain over records and the keyed MAC
//! that seals a file.
//!
//! # The chain
//!
//! Every record carries `<Chain>`, the lowercase hex of
//!
//! ```text
//! chain(i)  = SHA-256( fields(i) ‖ id(i) as 8 bytes big-endian ‖ chain(i-1) )
//! fields(i) = for each field present, in the order of the XSD:
//!               field number (1 = TimeStamp … 16 = SessionId) as 1 byte
//!               ‖ value length in bytes as 4 bytes big-endian ‖ value (UTF-8)
//! ```
//!
//! From format 3 the value before a file's first record is not the bare
//! `chain-start` but [`header_value`], a hash over every root attribute, and
//! the seal's `chain-end` is [`seal_value`], a hash over the seal's
//! attributes and the last record's value; so nothing a reader relies on
//! stands outside the chain.
//!
//! The hash covers field *values* (after XML unescaping and base64 decoding),
//! not the bytes of the file, so a copy that an XML tool re-indented or an FTP
//! ASCII transfer re-ended still verifies, and anyone can recompute it with a
//! few lines of Python. The header's `chain-start` is the chain value the
//! file continues from (its predecessor's last record); the first file of a
//! data directory starts from 32 random bytes. The seal repeats the last value
//! as `chain-end`, and the next file's header states it again, so each file
//! anchors the one before it.
//!
//! The fields come first so that whoever renders a record can hash all of it
//! but its last block ([`Partial`]) on any thread, before its id is known; the
//! single writer only finishes one or two blocks per record.
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

/// Appends a record's field values in the form the chain hashes them.
pub fn fields(rec: &Record<'_>, out: &mut Vec<u8>) {
    for (n, spec) in FIELDS.iter().enumerate() {
        if let Some(v) = &rec.fields[spec.field as usize] {
            out.push(n as u8 + 1);
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v.as_bytes());
        }
    }
}

/// The chain value of a record, from its [`fields`] bytes, its id and the
/// chain value before it.
pub fn next(fields: &[u8], id: u64, prev: &Digest) -> Digest {
    Sha256::new().chain_update(fields).chain_update(id.to_be_bytes()).chain_update(prev).finalize().into()
}

/// What a format-3 header states, bound into the chain by [`header_value`].
#[derive(Debug, Clone, Copy)]
pub struct HeaderFacts<'a> {
    /// The root's `format` (3 for the files this version writes).
    pub format: u32,
    pub host: &'a str,
    pub created: &'a str,
    pub first_id: u64,
    pub previous: Option<&'a str>,
    /// `chain-origin="new"`: this file starts a chain rather than continuing one.
    pub origin: bool,
    pub chain_start: &'a Digest,
}

/// Appends a string as its length (4 bytes big-endian) and its UTF-8 bytes.
fn put_str(h: &mut Sha256, s: &str) {
    h.update((s.len() as u32).to_be_bytes());
    h.update(s.as_bytes());
}

/// Format 3: the value a file's first record continues from, in place of
/// the bare `chain-start`, so that every header attribute a reader relies on
/// is covered by the chain:
///
/// ```text
/// SHA-256( "audit-trail header v3" 0x00 ‖ format (4 bytes big-endian) ‖ str(host) ‖ str(created) ‖ first-id (8 bytes big-endian)
///          ‖ 0x00, or 0x01 ‖ str(previous) ‖ origin (1 byte: 1 for chain-origin="new") ‖ chain-start )
/// str(s) = length in bytes (4 bytes big-endian) ‖ s (UTF-8)
/// ```
pub fn header_value(h: &HeaderFacts<'_>) -> Digest {
    let mut d = Sha256::new();
    d.update(b"audit-trail header v3\0");
    d.update(h.format.to_be_bytes());
    put_str(&mut d, h.host);
    put_str(&mut d, h.created);
    d.update(h.first_id.to_be_bytes());
    match h.previous {
        None => d.update([0u8]),
        Some(p) => {
            d.update([1u8]);
            put_str(&mut d, p);
        }
    }
    d.update([u8::from(h.origin)]);
    d.update(h.chain_start);
    d.finalize().into()
}

/// Format 3: the seal's `chain-end`, which the next file's `chain-start`
/// repeats, so that the seal is covered by the chain too:
///
/// ```text
/// SHA-256( "audit-trail seal v3" 0x00 ‖ first-id ‖ last-id ‖ records (8 bytes big-endian each)
///          ‖ str(sealed) ‖ chain value of the last record (of the header, for none) )
/// ```
pub fn seal_value(first_id: u64, last_id: u64, records: u64, sealed: &str, last: &Digest) -> Digest {
    let mut d = Sha256::new();
    d.update(b"audit-trail seal v3\0");
    for n in [first_id, last_id, records] {
        d.update(n.to_be_bytes());
    }
    put_str(&mut d, sealed);
    d.update(last);
    d.finalize().into()
}

/// SHA-256's initial hash value (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// A record's chain hash with every complete 64-byte block of its fields
/// already compressed: [`next`] split in two, so that the costly part runs
/// where the record is rendered and [`Partial::finish`] only adds the id and
/// the previous value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Partial {
    state: [u32; 8],
    /// Bytes compressed into `state` (a multiple of 64).
    done: u64,
    tail: [u8; 64],
    tail_len: u8,
}

impl Partial {
    /// Size of [`Partial::encode`]'s output.
    pub const ENCODED: usize = 32 + 8 + 1 + 64;

    /// Absorbs a record's [`fields`] bytes.
    pub fn absorb(fields: &[u8]) -> Partial {
        let (blocks, tail) = fields.as_chunks::<64>();
        let mut state = IV;
        sha2::block_api::compress256(&mut state, blocks);
        let mut p = Partial { state, done: (blocks.len() * 64) as u64, tail: [0; 64], tail_len: tail.len() as u8 };
        p.tail[..tail.len()].copy_from_slice(tail);
        p
    }

    /// The record's chain value: SHA-256 padding as FIPS 180-4, 5.1.1.
    pub fn finish(&self, id: u64, prev: &Digest) -> Digest {
        let mut state = self.state;
        let mut buf = [[0u8; 64]; 2];
        let flat = buf.as_flattened_mut();
        let n = self.tail_len as usize;
        flat[..n].copy_from_slice(&self.tail[..n]);
        flat[n..n + 8].copy_from_slice(&id.to_be_bytes());
        flat[n + 8..n + 40].copy_from_slice(prev);
        let len = n + 40;
        flat[len] = 0x80;
        let blocks = if len + 9 <= 64 { 1 } else { 2 };
        let bits = (self.done + len as u64) * 8;
        flat[blocks * 64 - 8..blocks * 64].copy_from_slice(&bits.to_be_bytes());
        sha2::block_api::compress256(&mut state, &buf[..blocks]);
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    /// Appends the partial hash in a fixed-size form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for w in self.state {
            out.extend_from_slice(&w.to_be_bytes());
        }
        out.extend_from_slice(&self.done.to_be_bytes());
        out.push(self.tail_len);
        out.extend_from_slice(&self.tail);
    }

    /// Reads [`Partial::encode`]'s output back.
    pub fn decode(b: &[u8; Partial::ENCODED]) -> Option<Partial> {
        let mut state = [0u32; 8];
        for (w, chunk) in state.iter_mut().zip(b[..32].chunks_exact(4)) {
            *w = u32::from_be_bytes(chunk.try_into().ok()?);
        }
        let done = u64::from_be_bytes(b[32..40].try_into().ok()?);
        let tail_len = b[40];
        if tail_len >= 64 || done % 64 != 0 {
            return None;
        }
        Some(Partial { state, done, tail: b[41..].try_into().ok()?, tail_len })
    }
}

/// Where a data directory's chain starts: 32 bytes from the system's random source.
pub fn genesis() -> Result<Digest> {
    random32("the start of the hash chain")
}

/// 32 bytes from the system's random source; `purpose` names them in errors.
fn random32(purpose: &str) -> Result<Digest> {
    let mut d = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut d))
        .with_context(|| format!("cannot read /dev/urandom for {purpose}"))?;
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
    // Read for every record by verify and the SIEM forwarder: a table lookup
    // per digit instead of a branch per case.
    let b: &[u8; 64] = s.trim().as_bytes().try_into().ok()?;
    let mut d = [0u8; 32];
    let mut bad = 0u8;
    for (out, pair) in d.iter_mut().zip(b.chunks_exact(2)) {
        let (hi, lo) = (NIBBLE[pair[0] as usize], NIBBLE[pair[1] as usize]);
        bad |= hi | lo;
        *out = (hi << 4) | (lo & 0x0F);
    }
    (bad & 0xF0 == 0).then_some(d)
}

/// The value of a hex digit, or 0xFF for any other byte.
static NIBBLE: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

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
        self.hmac_of(statement).finalize().into_bytes().into()
    }

    /// Whether `mac` is this key's MAC of the statement (in constant time).
    pub fn check(&self, statement: &SealStatement<'_>, mac: &Digest) -> bool {
        self.hmac_of(statement).verify_slice(mac).is_ok()
    }

    /// HMAC-SHA-256 with this key, fed the statement.
    fn hmac_of(&self, statement: &SealStatement<'_>) -> hmac::Hmac<Sha256> {
        let mut m = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        m.update(&seal_statement(statement));
        m
    }
}

/// Writes a new random 32-byte key to `path` with mode 600, refusing to
/// replace an existing file.
pub fn generate_key(path: &Path) -> Result<MacKey> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = random32("a new key")?.to_vec();
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

    fn of(rec: &Record<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        fields(rec, &mut out);
        out
    }

    #[test]
    fn fields_depend_on_every_value_and_its_boundaries() {
        let mut a = Record::default();
        a.set(Field::AppName, "ab");
        a.set(Field::ActionType, "c");
        let mut b = Record::default();
        b.set(Field::AppName, "a");
        b.set(Field::ActionType, "bc");
        assert_ne!(of(&a), of(&b), "moving a character between fields changes the input");
        let mut c = a.clone();
        c.id = 99;
        assert_eq!(of(&a), of(&c), "the id is bound by the chain step, not the fields");
        let mut d = a.clone();
        d.set(Field::ActionData, "");
        assert_ne!(of(&a), of(&d), "an empty field differs from an absent one");
    }

    #[test]
    fn next_is_a_plain_sha256_of_fields_id_and_previous_value() {
        let prev = [7u8; 32];
        let mut input = b"fields".to_vec();
        input.extend_from_slice(&42u64.to_be_bytes());
        input.extend_from_slice(&prev);
        let want: Digest = Sha256::digest(&input).into();
        assert_eq!(next(b"fields", 42, &prev), want);
        assert_ne!(next(b"fields", 43, &prev), want);
    }

    #[test]
    fn partial_hash_finishes_to_the_full_one_at_every_length() {
        let data: Vec<u8> = (0..400u32).map(|i| (i * 31 % 251) as u8).collect();
        for len in 0..data.len() {
            let prev: Digest = std::array::from_fn(|i| (i + len) as u8);
            let p = Partial::absorb(&data[..len]);
            assert_eq!(p.finish(len as u64, &prev), next(&data[..len], len as u64, &prev), "length {len}");
            let mut enc = Vec::new();
            p.encode(&mut enc);
            assert_eq!(enc.len(), Partial::ENCODED);
            let back = Partial::decode(enc.as_slice().try_into().unwrap()).unwrap();
            assert!(back == p, "length {len}: the encoding round-trips");
        }
    }

    #[test]
    fn hex_round_trips() {
        let d: Digest = std::array::from_fn(|i| i as u8 * 7);
        assert_eq!(parse_hex(&hex(&d)), Some(d));
        assert_eq!(parse_hex(&hex(&d).to_uppercase()), Some(d));
        assert_eq!(parse_hex("abc"), None);
        let good = hex(&d);
        for bad in [format!("{}g", &good[1..]), format!("{}é", &good[2..]), format!("{} 0", &good[2..])] {
            assert_eq!(bad.len(), 64);
            assert_eq!(parse_hex(&bad), None, "{bad}");
        }
        assert_eq!(parse_hex(&format!(" {good}\n")), Some(d), "surrounding whitespace is ignored");
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
