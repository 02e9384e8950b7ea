//! Writing the XML file format (SPEC §3): header, records and the seal.
//!
//! Exact text is the point. Element content escapes `&`, `<` and `>` (so `]]>`
//! can never appear) and writes CR as `&#13;`, because every conforming parser
//! turns a raw CR into LF. Tabs, LF, quotes and leading/trailing spaces are
//! written as they are: element content keeps them. Characters that XML 1.0
//! cannot carry at all (U+0000–U+0008, U+000B, U+000C, U+000E–U+001F, U+FFFE,
//! U+FFFF) are not dropped: the whole field is then written as base64 of its
//! UTF-8 bytes with `encoding="base64"`, which our reader decodes.
//!
//! Records start with a newline instead of ending with one, so the end of the
//! last complete record is always the end of a `</Record>` tag: recovery can
//! cut a torn tail exactly there.

use base64::Engine;

use crate::record::{FIELDS, Record};
use crate::store::chain::{self, Digest};

/// Bumped when elements are added, so readers and the XSD can tell.
/// Version 2 added the hash chain (`chain-start`, `<Chain>`, `chain-end`,
/// the seal MAC); version 3 binds the header and the seal into the chain
/// ([`chain::header_value`], [`chain::seal_value`]) and marks the file that
/// starts a chain (`chain-origin="new"`). Files of versions 1 and 2 are still
/// read and verified as what they are.
pub const FORMAT_VERSION: u32 = 3;

/// Name of the stylesheet the files point to (shipped next to them).
pub const STYLESHEET: &str = "audit-trail.xsl";

/// Bytes that need a look before being copied into element content.
const fn special_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b != b'\t' as usize && b != b'\n' as usize;
        b += 1;
    }
    t[b'<' as usize] = true;
    t[b'>' as usize] = true;
    t[b'&' as usize] = true;
    // Lead byte of U+FFFE / U+FFFF (EF BF BE / EF BF BF).
    t[0xEF] = true;
    t
}
static SPECIAL: [bool; 256] = special_table();

/// True when `s` holds a character XML 1.0 cannot represent.
pub fn needs_base64(s: &str) -> bool {
    s.chars().any(|c| {
        let c = c as u32;
        (c < 0x20 && c != 0x09 && c != 0x0A && c != 0x0D) || c == 0xFFFE || c == 0xFFFF
    })
}

/// Appends `s` escaped for element content.
pub fn escape_text(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !SPECIAL[b as usize] {
            continue;
        }
        let rep: &[u8] = match b {
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'&' => b"&amp;",
            b'\r' => b"&#13;",
            // 0xEF and the control characters are only reached by callers
            // that checked `needs_base64` first; copy them through.
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(rep);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends `s` escaped for a double-quoted attribute value (whitespace other
/// than space is written as character references, so it survives attribute
/// value normalisation).
pub fn escape_attr(out: &mut Vec<u8>, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.extend_from_slice(b"&lt;"),
            '>' => out.extend_from_slice(b"&gt;"),
            '&' => out.extend_from_slice(b"&amp;"),
            '"' => out.extend_from_slice(b"&quot;"),
            '\t' => out.extend_from_slice(b"&#9;"),
            '\n' => out.extend_from_slice(b"&#10;"),
            '\r' => out.extend_from_slice(b"&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push(b'?'),
            c => {
                let mut b = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
}

/// Where a log file starts: the id of its first record, the chain value it
/// continues from, and the file before it.
#[derive(Debug, Clone, Copy)]
pub struct FileStart<'a> {
    pub first_id: u64,
    pub chain_start: &'a Digest,
    pub previous: Option<&'a str>,
    /// The file starts a new chain (`chain-start` is random, not a predecessor's seal).
    pub origin: bool,
}

/// The XML declaration, stylesheet link and root start tag of a document.
/// Log files give where they start (it lets the next id and chain value be
/// found without a separate state file); export documents give `None`.
pub fn header(host: &str, created: &str, start: Option<FileStart<'_>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(384);
    out.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.extend_from_slice(format!("<?xml-stylesheet type=\"text/xsl\" href=\"{STYLESHEET}\"?>\n").as_bytes());
    out.extend_from_slice(format!("<AuditTrail format=\"{FORMAT_VERSION}\" host=\"").as_bytes());
    escape_attr(&mut out, host);
    out.extend_from_slice(b"\" created=\"");
    escape_attr(&mut out, created);
    out.push(b'"');
    if let Some(s) = start {
        out.extend_from_slice(
            format!(" first-id=\"{}\" chain-start=\"{}\"", s.first_id, chain::hex(s.chain_start)).as_bytes(),
        );
        if let Some(prev) = s.previous {
            out.extend_from_slice(b" previous=\"");
            escape_attr(&mut out, prev);
            out.push(b'"');
        }
        if s.origin {
            out.extend_from_slice(b" chain-origin=\"new\"");
        }
    }
    out.push(b'>');
    out
}

/// Appends one record as an export document holds it, starting with its
/// newline: without its chain value, which belongs to the log file's chain.
pub fn record(out: &mut Vec<u8>, rec: &Record<'_>) {
    record_start(out, rec.id);
    record_body(out, rec);
    record_end(out, None);
}

/// The start tag of a record (with its leading newline).
pub fn record_start(out: &mut Vec<u8>, id: u64) {
    out.extend_from_slice(b"\n  <Record id=\"");
    out.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
    out.extend_from_slice(b"\">");
}

/// The fields of a record, between its start tag and [`record_end`].
/// Rendering the body needs no id, so it can happen on any thread before ids
/// are handed out.
pub fn record_body(out: &mut Vec<u8>, rec: &Record<'_>) {
    for spec in &FIELDS {
        let Some(v) = &rec.fields[spec.field as usize] else { continue };
        out.extend_from_slice(b"\n    <");
        out.extend_from_slice(spec.xml.as_bytes());
        if needs_base64_fast(v) {
            out.extend_from_slice(b" encoding=\"base64\">");
            let engine = &base64::engine::general_purpose::STANDARD;
            out.extend_from_slice(engine.encode(v.as_bytes()).as_bytes());
        } else {
            out.push(b'>');
            escape_text(out, v);
        }
        out.extend_from_slice(b"</");
        out.extend_from_slice(spec.xml.as_bytes());
        out.push(b'>');
    }
}

/// The chain value (log files) and the end tag of a record.
pub fn record_end(out: &mut Vec<u8>, chain: Option<&Digest>) {
    if let Some(c) = chain {
        let mut hex = [0u8; 64];
        chain::hex_into(c, &mut hex);
        out.extend_from_slice(b"\n    <Chain>");
        out.extend_from_slice(&hex);
        out.extend_from_slice(b"</Chain>");
    }
    out.extend_from_slice(b"\n  </Record>");
}

/// `needs_base64` behind a byte scan: nearly all text has no byte that could
/// start a forbidden character.
fn needs_base64_fast(s: &str) -> bool {
    s.bytes().any(|b| (b < 0x20 && b != b'\t' && b != b'\n' && b != b'\r') || b == 0xEF) && needs_base64(s)
}

/// What a seal states about the file it closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealInfo {
    pub first_id: u64,
    pub last_id: u64,
    pub records: u64,
    pub sealed: String,
    /// The chain value of the last record (of the header, for no record).
    pub chain_end: Option<Digest>,
    /// The seal MAC and the id of the key that made it.
    pub mac: Option<(String, Digest)>,
}

/// The trailer that seals a file.
pub fn seal(info: &SealInfo) -> Vec<u8> {
    let mut s = format!(
        "\n  <Seal first-id=\"{}\" last-id=\"{}\" records=\"{}\" sealed=\"{}\"",
        info.first_id, info.last_id, info.records, info.sealed
    );
    if let Some(end) = &info.chain_end {
        s.push_str(&format!(" chain-end=\"{}\"", chain::hex(end)));
    }
    if let Some((key_id, mac)) = &info.mac {
        s.push_str(&format!(" key-id=\"{key_id}\" mac=\"{}\"", chain::hex(mac)));
    }
    s.push_str("/>\n</AuditTrail>\n");
    s.into_bytes()
}

/// The end of an export document (no seal: it is not a log file).
pub const EXPORT_END: &[u8] = b"\n</AuditTrail>\n";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Field;

    fn esc(s: &str) -> String {
        let mut v = Vec::new();
        escape_text(&mut v, s);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn escapes_markup_and_cr() {
        assert_eq!(esc("a<b&c]]>d\r\n\t \"'"), "a&lt;b&amp;c]]&gt;d&#13;\n\t \"'");
        assert_eq!(esc("日本語 😀"), "日本語 😀");
    }

    #[test]
    fn forbidden_characters_go_base64() {
        let mut r = Record { id: 7, ..Default::default() };
        r.set(Field::ActionData, "a\u{1}b");
        r.set(Field::AppName, "ok\u{FFFD}");
        let mut out = Vec::new();
        record(&mut out, &r);
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("<ActionData encoding=\"base64\">YQFi</ActionData>"), "{s}");
        assert!(s.contains("<AppName>ok\u{FFFD}</AppName>"), "U+FFFD is allowed: {s}");
        assert!(s.ends_with("</Record>"));
    }
}
