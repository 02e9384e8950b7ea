//! The rules of XML 1.0 that make a document well-formed, checked on the raw
//! text of each piece of markup.
//!
//! quick-xml finds where each tag, run of text, reference, comment, processing
//! instruction and declaration starts and ends, checks that the bytes are
//! UTF-8 and that end tags match start tags. It leaves the rest to its user:
//! which characters may appear, the grammar inside a tag (`Name Eq AttValue`,
//! white space between attributes, no `<` in a value, references that
//! resolve, no attribute twice), the XML declaration's grammar and place,
//! `]]>` in text, `--` in comments, reserved processing-instruction targets.
//! [`crate::store::xml::read`] runs every piece through these checks, so a document
//! it reads whole is one that every conforming XML 1.0 parser reads too.
//!
//! Some checks are stricter than XML 1.0, never looser: names are ASCII
//! letters, digits, `_`, `-` and `.` (all that the file format uses; no
//! namespace prefixes), the declaration must say version 1.0 and, if it names
//! an encoding, UTF-8, and a DOCTYPE is refused (it could declare entities
//! that change what the records say).

use std::borrow::Cow;

/// XML white space (`S`): space, tab, LF, CR. Not Unicode white space.
pub fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// True when `s` is nothing but XML white space.
pub fn all_space(s: &str) -> bool {
    s.bytes().all(is_space)
}

/// Whether XML 1.0 allows the character anywhere in a document (`Char`).
pub fn is_char(c: char) -> bool {
    matches!(c as u32, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

/// The first character of `s` that XML 1.0 does not allow, with its byte
/// offset. In UTF-8 text those are the C0 controls but tab, LF and CR, and
/// U+FFFE and U+FFFF (surrogates cannot be encoded).
pub fn bad_char(s: &str) -> Option<(usize, char)> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c < 0x20 && !matches!(c, b'\t' | b'\n' | b'\r') {
            return Some((i, c as char));
        }
        if c == 0xEF && b.get(i + 1) == Some(&0xBF) && matches!(b.get(i + 2), Some(0xBE | 0xBF)) {
            return Some((i, s[i..].chars().next().unwrap_or('\u{FFFF}')));
        }
        i += 1;
    }
    None
}

fn chars_ok(s: &str, what: &str) -> Result<(), String> {
    match bad_char(s) {
        None => Ok(()),
        Some((at, c)) => Err(format!("{what}: character U+{:04X} is not allowed in XML (at +{at})", c as u32)),
    }
}

fn name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// Length of the name at the start of `b` (0 when there is none).
fn name_len(b: &[u8]) -> usize {
    match b.first() {
        Some(&c) if name_start(c) => 1 + b[1..].iter().take_while(|&&c| name_char(c)).count(),
        _ => 0,
    }
}

/// Checks that `s` is a name (see the module header for the subset allowed).
pub fn check_name(s: &str) -> Result<(), String> {
    if !s.is_empty() && name_len(s.as_bytes()) == s.len() { Ok(()) } else { Err(format!("{s:?} is not a valid name")) }
}

/// What a reference stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefValue {
    Char(char),
    Entity(&'static str),
}

impl RefValue {
    pub fn push_to(self, out: &mut String) {
        match self {
            RefValue::Char(c) => out.push(c),
            RefValue::Entity(s) => out.push_str(s),
        }
    }
}

/// Resolves the reference `&body;`: one of the five predefined entities (a
/// document without a DTD declares no other) or a character reference
/// (`#` decimal digits, `#x` hex digits) to a character XML allows.
pub fn resolve_ref(body: &str) -> Result<RefValue, String> {
    let entity = match body {
        "lt" => "<",
        "gt" => ">",
        "amp" => "&",
        "quot" => "\"",
        "apos" => "'",
        _ => "",
    };
    if !entity.is_empty() {
        return Ok(RefValue::Entity(entity));
    }
    let bad = || format!("&{body}; is not a valid reference");
    let Some(num) = body.strip_prefix('#') else {
        return Err(if check_name(body).is_ok() {
            format!("&{body}; refers to an entity that is not declared")
        } else {
            bad()
        });
    };
    let (digits, radix) = match num.strip_prefix('x') {
        Some(hex) => (hex, 16),
        None => (num, 10),
    };
    if digits.is_empty() || !digits.bytes().all(|b| (b as char).is_digit(radix)) {
        return Err(bad());
    }
    // Leading zeros are allowed, so parse without a length limit.
    let mut v: u32 = 0;
    for d in digits.bytes() {
        v = v.saturating_mul(radix).saturating_add((d as char).to_digit(radix).unwrap_or(0));
    }
    match char::from_u32(v).filter(|&c| is_char(c)) {
        Some(c) => Ok(RefValue::Char(c)),
        None => Err(format!("&{body}; refers to a character XML does not allow")),
    }
}

/// Checks the text between markup (quick-xml hands references separately,
/// and text never holds `<`): allowed characters, no `]]>`.
pub fn check_text(s: &str) -> Result<(), String> {
    chars_ok(s, "text")?;
    if memchr::memmem::find(s.as_bytes(), b"]]>").is_some() {
        return Err("text holds \"]]>\", which XML does not allow outside CDATA".into());
    }
    if s.contains(['<', '&']) {
        return Err("text holds a bare '<' or '&'".into());
    }
    Ok(())
}

/// Checks the content of a CDATA section.
pub fn check_cdata(s: &str) -> Result<(), String> {
    chars_ok(s, "CDATA section")
}

/// Checks a comment's content (between `<!--` and `-->`).
pub fn check_comment(s: &str) -> Result<(), String> {
    chars_ok(s, "comment")?;
    if s.contains("--") || s.ends_with('-') {
        return Err("a comment holds \"--\" or ends with \"-\"".into());
    }
    Ok(())
}

/// Checks a processing instruction (the text between `<?` and `?>`).
pub fn check_pi(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let n = name_len(b);
    if n == 0 {
        return Err(format!("processing instruction <?{}?> has no valid target", truncate(s)));
    }
    if s[..n].eq_ignore_ascii_case("xml") {
        return Err("an XML declaration is only allowed at the very start of the document".into());
    }
    if n < b.len() && !is_space(b[n]) {
        return Err(format!("processing instruction <?{}?>: no white space after its target", truncate(s)));
    }
    chars_ok(s, "processing instruction")
}

/// Checks the XML declaration (the text between `<?` and `?>`, starting
/// `xml`): `version="1.0"`, optionally `encoding` (UTF-8) and `standalone`
/// (yes or no), in that order, nothing else.
pub fn check_decl(s: &str) -> Result<(), String> {
    let bad = |what: &str| Err(format!("XML declaration <?{}?>: {what}", truncate(s)));
    let Some(mut rest) = s.strip_prefix("xml") else { return bad("not a declaration") };
    for (i, want) in ["version", "encoding", "standalone"].into_iter().enumerate() {
        let spaced = rest.len() - rest.trim_start_matches([' ', '\t', '\n', '\r']).len();
        let after = &rest[spaced..];
        let Some(tail) = after.strip_prefix(want) else {
            if i == 0 {
                return bad("version is missing");
            }
            continue;
        };
        if spaced == 0 {
            return bad("white space is missing before a pseudo-attribute");
        }
        let tail = tail.trim_start_matches([' ', '\t', '\n', '\r']);
        let Some(tail) = tail.strip_prefix('=') else { return bad("'=' is missing") };
        let tail = tail.trim_start_matches([' ', '\t', '\n', '\r']);
        let Some(q) = tail.chars().next().filter(|&c| c == '"' || c == '\'') else {
            return bad("a value is not quoted");
        };
        let Some(end) = tail[1..].find(q) else { return bad("a value is not closed") };
        let value = &tail[1..1 + end];
        let ok = match want {
            "version" => value == "1.0",
            "encoding" => value.eq_ignore_ascii_case("UTF-8"),
            _ => value == "yes" || value == "no",
        };
        if !ok {
            return bad(&format!("{want}={value:?} is not supported (audit-trail files are XML 1.0 in UTF-8)"));
        }
        rest = &tail[2 + end..];
    }
    if all_space(rest) { Ok(()) } else { bad("unexpected text") }
}

/// A start tag: its name and its attributes, with values normalised as XML
/// says (references resolved; tab, LF and CR as spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag<'a> {
    pub name: &'a str,
    pub attrs: Vec<(&'a str, Cow<'a, str>)>,
}

#[cfg(test)]
impl Tag<'_> {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_ref())
    }
}

/// Parses a start tag or empty-element tag, given the text between `<` and
/// `>` (without the `/` of `/>`): `Name (S Name S? = S? AttValue)* S?`.
pub fn parse_tag(raw: &str) -> Result<Tag<'_>, String> {
    let b = raw.as_bytes();
    let n = name_len(b);
    if n == 0 {
        return Err(format!("<{}>: not a valid element name", truncate(raw)));
    }
    let name = &raw[..n];
    let bad = |what: String| Err(format!("<{name}>: {what}"));
    let mut attrs: Vec<(&str, Cow<'_, str>)> = Vec::new();
    let mut i = n;
    loop {
        let s = b[i..].iter().take_while(|&&c| is_space(c)).count();
        i += s;
        if i == b.len() {
            break;
        }
        if s == 0 {
            return bad(format!("{:?} where white space or the end of the tag belongs", char_at(raw, i)));
        }
        let an = name_len(&b[i..]);
        if an == 0 {
            return bad(format!("{:?} where an attribute name belongs", char_at(raw, i)));
        }
        let aname = &raw[i..i + an];
        i += an;
        i += b[i..].iter().take_while(|&&c| is_space(c)).count();
        if b.get(i) != Some(&b'=') {
            return bad(format!("attribute {aname} has no '=' and value"));
        }
        i += 1;
        i += b[i..].iter().take_while(|&&c| is_space(c)).count();
        let q = match b.get(i) {
            Some(&q @ (b'"' | b'\'')) => q,
            _ => return bad(format!("the value of attribute {aname} is not quoted")),
        };
        i += 1;
        let Some(len) = memchr::memchr(q, &b[i..]) else {
            return bad(format!("the value of attribute {aname} is not closed"));
        };
        let value = attr_value(&raw[i..i + len]).map_err(|e| format!("<{name}> attribute {aname}: {e}"))?;
        i += len + 1;
        attrs.push((aname, value));
    }
    if attrs.len() > 1 {
        let mut names: Vec<&str> = attrs.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return bad(format!("attribute {} is given twice", w[0]));
        }
    }
    Ok(Tag { name, attrs })
}

/// Checks and normalises an attribute value (between its quotes).
fn attr_value(raw: &str) -> Result<Cow<'_, str>, String> {
    chars_ok(raw, "value")?;
    if raw.contains('<') {
        return Err("'<' is not allowed in a value".into());
    }
    if !raw.contains(['&', '\t', '\n', '\r']) {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find(['&', '\t', '\n', '\r']) {
        out.push_str(&rest[..i]);
        let c = rest.as_bytes()[i];
        if c == b'&' {
            let Some(semi) = rest[i..].find(';') else { return Err("'&' without a reference".into()) };
            resolve_ref(&rest[i + 1..i + semi])?.push_to(&mut out);
            rest = &rest[i + semi + 1..];
        } else {
            // Line ends are normalised first (CR LF is one LF), then each is a space.
            out.push(' ');
            rest = if rest[i..].starts_with("\r\n") { &rest[i + 2..] } else { &rest[i + 1..] };
        }
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

fn char_at(s: &str, i: usize) -> char {
    s.get(i..).and_then(|t| t.chars().next()).unwrap_or('?')
}

/// At most 40 bytes of `s`, for messages.
fn truncate(s: &str) -> &str {
    let mut end = s.len().min(40);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_need_name_eq_value_and_nothing_else() {
        let t = parse_tag("AuditTrail format=\"2\" host='h' created = \"c\"  ").unwrap();
        assert_eq!(t.name, "AuditTrail");
        assert_eq!(t.get("host"), Some("h"));
        assert_eq!(t.get("created"), Some("c"));
        for bad in [
            "",
            " a",
            "1a",
            "a:b",
            "a b",
            "a b=",
            "a b=1",
            "a b=\"1",
            "a b=\"1\"c=\"2\"",
            "a b=\"1\" b='2'",
            "a b=\"<\"",
            "a b=\"&\"",
            "a b=\"&bogus;\"",
            "a b=\"&#0;\"",
            "a b=\"&#xD800;\"",
            "a b=\"&#X41;\"",
            "a b=\"\u{1}\"",
            "a b=\"\u{FFFE}\"",
            "a b=\"1\" junk\"<<<&&&\"",
            "a b=\"1\"/",
            "a\u{0}",
        ] {
            assert!(parse_tag(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn attribute_values_are_normalised() {
        let t = parse_tag("a v=\"x&#9;y\r\nz\tw&lt;&#x26;&amp;\"").unwrap();
        assert_eq!(t.get("v"), Some("x\ty z w<&&"));
    }

    #[test]
    fn references() {
        assert_eq!(resolve_ref("amp"), Ok(RefValue::Entity("&")));
        assert_eq!(resolve_ref("#13"), Ok(RefValue::Char('\r')));
        assert_eq!(resolve_ref("#x1F600"), Ok(RefValue::Char('😀')));
        assert_eq!(resolve_ref("#0000065"), Ok(RefValue::Char('A')));
        for bad in ["", "#", "#x", "#1a", "#x110000", "#99999999999999999999", "#xFFFF", "#1", "nbsp", "a b", "#-1"] {
            assert!(resolve_ref(bad).is_err(), "&{bad}; accepted");
        }
    }

    #[test]
    fn text_comments_pis_and_declarations() {
        assert!(check_text("a > b ]] > c\t\r\n 日本").is_ok());
        for bad in ["]]>", "a\u{0}", "\u{FFFF}", "\u{B}", "a&b"] {
            assert!(check_text(bad).is_err(), "{bad:?}");
        }
        assert!(check_comment(" a - b ").is_ok());
        for bad in [" a -- b ", "a-", "\u{1}"] {
            assert!(check_comment(bad).is_err(), "{bad:?}");
        }
        assert!(check_pi("xml-stylesheet type=\"text/xsl\" href=\"a.xsl\"").is_ok());
        assert!(check_pi("target").is_ok());
        for bad in ["XML x", "xml", "1x", " x", "x\u{1}", "x\"y"] {
            assert!(check_pi(bad).is_err(), "{bad:?}");
        }
        for good in [
            "xml version=\"1.0\" encoding=\"UTF-8\"",
            "xml version='1.0'",
            "xml version = \"1.0\" encoding='utf-8' standalone=\"yes\" ",
        ] {
            assert!(check_decl(good).is_ok(), "{good:?}");
        }
        for bad in [
            "xml",
            "xml encoding=\"UTF-8\"",
            "xml version=\"1.1\"",
            "xml version=\"1.0\"encoding=\"UTF-8\"",
            "xml version=\"1.0\" encoding=\"ISO-8859-1\"",
            "xml version=\"1.0' ",
            "xml version=\"1.0\" standalone=\"yes\" encoding=\"UTF-8\"",
            "xml version=\"1.0\" junk",
            "xml version=\"1.0\" standalone=\"maybe\"",
            "xml version=\"1.0\" version=\"1.0\"",
        ] {
            assert!(check_decl(bad).is_err(), "{bad:?}");
        }
    }
}
