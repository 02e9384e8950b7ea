//! The audit record (SPEC §2): its fields, their limits, and the validation
//! every record passes before it gets an id.
//!
//! A record is kept as an array of optional strings indexed by [`Field`], so
//! the XML writer and reader, the CSV/JSON exporters and the JSON Lines parser
//! all walk the same table ([`FIELDS`]) instead of repeating sixteen names.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use crate::timestamp;

/// Number of fields a record carries besides its id.
pub const NFIELDS: usize = 16;

/// Longest `action_data` accepted, in bytes (an import of hundreds of users
/// fits comfortably; a runaway blob does not).
pub const MAX_ACTION_DATA: usize = 1024 * 1024;
/// Longest value accepted for every other field, in bytes.
pub const MAX_FIELD: usize = 4096;

/// The `app_name` of the archiver's own records (start, stop, purge,
/// integrity checks); reserved: clients cannot submit it.
pub const SELF_APP_NAME: &str = "audit-trail";

/// Index of a field in [`FIELDS`] and in [`Record::fields`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Field {
    Timestamp = 0,
    DetailLevel,
    UserName,
    FirstName,
    LastName,
    Tenant,
    SourceIp,
    Node,
    AppName,
    AppContext,
    ActionType,
    ActionData,
    Category,
    Outcome,
    AuthType,
    SessionId,
}

/// How a field is named in each of the places it appears.
#[derive(Debug)]
pub struct FieldSpec {
    pub field: Field,
    /// JSON input and export, CSV header.
    pub json: &'static str,
    /// XML element.
    pub xml: &'static str,
    /// Column title in `show`.
    pub title: &'static str,
    pub max_len: usize,
}

macro_rules! spec {
    ($f:ident, $json:literal, $xml:literal, $title:literal, $max:expr) => {
        FieldSpec { field: Field::$f, json: $json, xml: $xml, title: $title, max_len: $max }
    };
}

/// Every field in the order it is written to XML, JSON and CSV.
pub const FIELDS: [FieldSpec; NFIELDS] = [
    spec!(Timestamp, "timestamp", "TimeStamp", "Time Stamp", 64),
    spec!(DetailLevel, "detail_level", "DetailLevel", "Detail Level", MAX_FIELD),
    spec!(UserName, "user_name", "UserName", "User Name", MAX_FIELD),
    spec!(FirstName, "first_name", "FirstName", "First Name", MAX_FIELD),
    spec!(LastName, "last_name", "LastName", "Last Name", MAX_FIELD),
    spec!(Tenant, "tenant", "Tenant", "Tenant", MAX_FIELD),
    spec!(SourceIp, "source_ip", "SourceIP", "Source IP", 64),
    spec!(Node, "node", "Node", "Node", MAX_FIELD),
    spec!(AppName, "app_name", "AppName", "App Name", MAX_FIELD),
    spec!(AppContext, "app_context", "AppContext", "App Context", MAX_FIELD),
    spec!(ActionType, "action_type", "ActionType", "Action Type", MAX_FIELD),
    spec!(ActionData, "action_data", "ActionData", "Action Data", MAX_ACTION_DATA),
    spec!(Category, "category", "Category", "Category", MAX_FIELD),
    spec!(Outcome, "outcome", "Outcome", "Outcome", 16),
    spec!(AuthType, "auth_type", "AuthType", "Auth Type", MAX_FIELD),
    spec!(SessionId, "session_id", "SessionId", "Session Id", MAX_FIELD),
];

impl Field {
    pub fn spec(self) -> &'static FieldSpec {
        &FIELDS[self as usize]
    }

    pub fn from_json(name: &str) -> Option<Field> {
        // Called for every key read: a match compiles to a few compares.
        Some(match name {
            "timestamp" => Field::Timestamp,
            "detail_level" => Field::DetailLevel,
            "user_name" => Field::UserName,
            "first_name" => Field::FirstName,
            "last_name" => Field::LastName,
            "tenant" => Field::Tenant,
            "source_ip" => Field::SourceIp,
            "node" => Field::Node,
            "app_name" => Field::AppName,
            "app_context" => Field::AppContext,
            "action_type" => Field::ActionType,
            "action_data" => Field::ActionData,
            "category" => Field::Category,
            "outcome" => Field::Outcome,
            "auth_type" => Field::AuthType,
            "session_id" => Field::SessionId,
            _ => return None,
        })
    }

    pub fn from_xml(name: &[u8]) -> Option<Field> {
        // Called for every element read: a match compiles to a few compares.
        Some(match name {
            b"TimeStamp" => Field::Timestamp,
            b"DetailLevel" => Field::DetailLevel,
            b"UserName" => Field::UserName,
            b"FirstName" => Field::FirstName,
            b"LastName" => Field::LastName,
            b"Tenant" => Field::Tenant,
            b"SourceIP" => Field::SourceIp,
            b"Node" => Field::Node,
            b"AppName" => Field::AppName,
            b"AppContext" => Field::AppContext,
            b"ActionType" => Field::ActionType,
            b"ActionData" => Field::ActionData,
            b"Category" => Field::Category,
            b"Outcome" => Field::Outcome,
            b"AuthType" => Field::AuthType,
            b"SessionId" => Field::SessionId,
            _ => return None,
        })
    }
}

/// One audit record. `id` is 0 until the log assigns one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record<'a> {
    pub id: u64,
    pub fields: [Option<Cow<'a, str>>; NFIELDS],
    /// The hash chain value read from a log file (`<Chain>`, SPEC §9).
    pub chain: Option<[u8; 32]>,
}

impl<'a> Record<'a> {
    pub fn get(&self, f: Field) -> Option<&str> {
        self.fields[f as usize].as_deref()
    }

    pub fn set(&mut self, f: Field, v: impl Into<Cow<'a, str>>) {
        self.fields[f as usize] = Some(v.into());
    }

    pub fn into_owned(self) -> Record<'static> {
        Record { id: self.id, fields: self.fields.map(|v| v.map(|c| Cow::Owned(c.into_owned()))), chain: self.chain }
    }
}

/// What is wrong with one field of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The JSON name of the field, or `None` when the problem is the record as a whole.
    pub field: Option<&'static str>,
    pub reason: String,
}

impl FieldError {
    fn new(field: Field, reason: impl Into<String>) -> Self {
        FieldError { field: Some(field.spec().json), reason: reason.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(name) => write!(f, "field `{name}`: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

/// Values the archiver fills in when the submitter leaves them out.
#[derive(Debug, Clone)]
pub struct Defaults<'d> {
    /// Acceptance time, already formatted (RFC 3339, milliseconds, server offset).
    pub now: &'d str,
    /// The archiver's host name, for `node`.
    pub node: &'d str,
}

/// Checks a submitted record and brings it to its stored form: required fields
/// present, IP and timestamp valid (and normalised), sizes within limits,
/// defaults applied. Every problem found is returned, not just the first.
pub fn validate<'a>(rec: &mut Record<'a>, defaults: &Defaults<'a>) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    for spec in &FIELDS {
        if let Some(v) = &rec.fields[spec.field as usize]
            && v.len() > spec.max_len
        {
            errors.push(FieldError::new(
                spec.field,
                format!("{} bytes, longer than the limit of {} bytes", v.len(), spec.max_len),
            ));
        }
    }
    for f in [Field::AppName, Field::ActionType] {
        match rec.get(f) {
            None => errors.push(FieldError::new(f, "is required")),
            Some(v) if v.trim().is_empty() => errors.push(FieldError::new(f, "is required and must not be blank")),
            Some(_) => {}
        }
    }
    if let Some(ip) = rec.get(Field::SourceIp) {
        match ip.trim().parse::<IpAddr>() {
            // Dotted quads parse only in their one canonical spelling (no
            // leading zeros), so only IPv6 and padded input get rewritten.
            Ok(IpAddr::V4(_)) if ip.len() == ip.trim().len() => {}
            Ok(addr) => {
                let canonical = addr.to_string();
                if canonical != ip {
                    rec.set(Field::SourceIp, canonical);
                }
            }
            Err(_) => errors.push(FieldError::new(Field::SourceIp, format!("{ip:?} is not an IPv4 or IPv6 address"))),
        }
    }
    if let Some(out) = rec.get(Field::Outcome) {
        if out.eq_ignore_ascii_case("success") {
            if out != "success" {
                rec.set(Field::Outcome, "success");
            }
        } else if out.eq_ignore_ascii_case("failure") {
            if out != "failure" {
                rec.set(Field::Outcome, "failure");
            }
        } else {
            errors.push(FieldError::new(Field::Outcome, format!("{out:?} is not `success` or `failure`")));
        }
    }
    match rec.get(Field::Timestamp) {
        None => rec.set(Field::Timestamp, defaults.now),
        Some(ts) => match timestamp::normalize(ts) {
            Ok(Some(stored)) => rec.set(Field::Timestamp, stored),
            Ok(None) => {}
            Err(reason) => errors.push(FieldError::new(Field::Timestamp, reason)),
        },
    }
    if rec.get(Field::DetailLevel).is_none() {
        rec.set(Field::DetailLevel, "Low");
    }
    if rec.get(Field::Node).is_none() {
        rec.set(Field::Node, defaults.node);
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// A string that borrows from the JSON input when it holds no escapes.
struct JsonStr<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for JsonStr<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = JsonStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Reads one JSON object into a record. Problems that leave the JSON itself
/// readable (an unknown or repeated field) are kept in `problem` while the
/// rest of the object is skipped; `current` names the field being read, so a
/// JSON error inside a value can name its field.
struct RecordSeed<'s> {
    current: &'s std::cell::Cell<Option<Field>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = Result<Record<'de>, FieldError>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for RecordSeed<'_> {
    type Value = Result<Record<'de>, FieldError>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object with the fields of an audit record")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut rec = Record::default();
        let mut problem = None;
        // Fields seen so far, null ones included: a field given twice is an
        // error whatever its first value was.
        let mut seen = 0u64;
        while let Some(JsonStr(key)) = map.next_key::<JsonStr<'de>>()? {
            let field = Field::from_json(&key);
            self.current.set(field);
            let Some(field) = field.filter(|_| problem.is_none()) else {
                map.next_value::<serde::de::IgnoredAny>()?;
                if problem.is_none() {
                    let reason = if key == "id" {
                        "ids are assigned by the archiver; remove `id` from the input".to_owned()
                    } else {
                        let known: Vec<_> = FIELDS.iter().map(|s| s.json).collect();
                        format!("unknown field `{key}` (known fields: {})", known.join(", "))
                    };
                    problem = Some(FieldError { field: None, reason });
                }
                continue;
            };
            let value = map.next_value::<Option<JsonStr<'de>>>()?;
            if seen & (1 << field as u32) != 0 {
                problem = Some(FieldError::new(field, "given more than once"));
            }
            seen |= 1 << field as u32;
            rec.fields[field as usize] = value.map(|v| v.0);
        }
        self.current.set(None);
        Ok(match problem {
            Some(p) => Err(p),
            None => Ok(rec),
        })
    }
}

/// serde_json's messages end with "at line 1 column N", which is the column
/// inside one input line; keep it but drop the meaningless "line 1".
fn json_reason(msg: &str) -> String {
    match msg.rfind(" at line 1 column ") {
        Some(i) => format!("{} (column {})", &msg[..i], &msg[i + " at line 1 column ".len()..]),
        None => msg.to_owned(),
    }
}

/// Parses one JSON Lines line into a record (not yet validated).
pub fn parse_json_line(line: &[u8]) -> Result<Record<'_>, FieldError> {
    let line = match std::str::from_utf8(line) {
        Ok(line) => line,
        Err(e) => {
            // Say which field holds the bad bytes, when the line is otherwise JSON.
            let lossy = String::from_utf8_lossy(line);
            let field = field_at(&lossy, e.valid_up_to());
            return Err(FieldError {
                field,
                reason: format!("invalid UTF-8 at byte {} of the line", e.valid_up_to() + 1),
            });
        }
    };
    if let Some(rec) = parse_plain(line) {
        return Ok(rec);
    }
    parse_with_serde(line)
}

/// Any JSON, with a message naming the field for every problem.
pub(crate) fn parse_with_serde(line: &str) -> Result<Record<'_>, FieldError> {
    // Checked by the caller: the str reader does not validate UTF-8 again.
    let mut de = serde_json::Deserializer::from_str(line);
    let current = std::cell::Cell::new(None);
    let parsed = match serde::de::DeserializeSeed::deserialize(RecordSeed { current: &current }, &mut de) {
        Ok(r) => r?,
        Err(e) => {
            let field = current.get().map(|f| f.spec().json);
            return Err(FieldError { field, reason: json_reason(&e.to_string()) });
        }
    };
    if let Err(e) = de.end() {
        return Err(FieldError { field: None, reason: json_reason(&e.to_string()) });
    }
    Ok(parsed)
}

/// The shape nearly every submitter sends, read without the general parser:
/// one flat object of known fields, each given once, whose values are
/// strings without escapes (borrowed from the line) or `null`. Anything else
/// (escapes, other value types, unknown or repeated fields, malformed JSON)
/// gives `None`, and [`parse_json_line`] reads the line with serde_json,
/// which accepts exactly the same records and words every error.
fn parse_plain(line: &str) -> Option<Record<'_>> {
    let b = line.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    let mut rec = Record::default();
    let mut seen = 0u64;
    loop {
        i = skip_ws(b, i + 1);
        let (key, after) = plain_string(line, i)?;
        let field = Field::from_json(key)?;
        i = skip_ws(b, after);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        // Repeats (a null one included) go to serde_json, which words the error.
        if seen & (1 << field as u32) != 0 {
            return None;
        }
        seen |= 1 << field as u32;
        let slot = &mut rec.fields[field as usize];
        if b[i..].starts_with(b"null") {
            i += 4;
        } else {
            let (value, after) = plain_string(line, i)?;
            *slot = Some(Cow::Borrowed(value));
            i = after;
        }
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b',') => {}
            Some(b'}') => break,
            _ => return None,
        }
    }
    (skip_ws(b, i + 1) == b.len()).then_some(rec)
}

/// JSON whitespace from `i` on; returns the first other position.
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// The string starting with the quote at `i`, when it holds no escape and no
/// control character, and the position after its closing quote.
fn plain_string(line: &str, i: usize) -> Option<(&str, usize)> {
    let b = line.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let end = i + 1 + memchr::memchr2(b'"', b'\\', &b[i + 1..])?;
    let body = &b[i + 1..end];
    // Branch-free so that it vectorises: control characters must be escaped in JSON.
    if b[end] != b'"' || body.iter().fold(false, |acc, &c| acc | (c < 0x20)) {
        return None;
    }
    // Quotes are ASCII, so both ends are character boundaries.
    Some((&line[i + 1..end], end + 1))
}

/// The JSON key whose value spans byte `pos` of a line, found by looking back
/// for the nearest `"key":` (good enough to name a field in an error).
fn field_at(line: &str, pos: usize) -> Option<&'static str> {
    let head = line.get(..pos)?;
    FIELDS
        .iter()
        .filter_map(|s| head.rfind(&format!("\"{}\"", s.json)).map(|i| (i, s.json)))
        .max_by_key(|(i, _)| *i)
        .map(|(_, name)| name)
}

/// Whether an `app_name` is the archiver's own ([`SELF_APP_NAME`],
/// in any case, spacing or punctuation). Such records come only from the
/// archiver itself; the ingest socket and `append` refuse them, so a client
/// cannot write one that looks like the archiver's (a forged `Service Stop`).
pub fn is_reserved_app(app_name: &str) -> bool {
    // A service sees the same few application names again and again: the
    // answer is kept per thread (a bounded cache) so ingest pays for the
    // Unicode folding once per name.
    thread_local! {
        static SEEN: std::cell::RefCell<std::collections::HashMap<String, bool>> = Default::default();
    }
    SEEN.with_borrow_mut(|seen| {
        if let Some(&r) = seen.get(app_name) {
            return r;
        }
        let r = fold_app(app_name) == fold_app(SELF_APP_NAME);
        if seen.len() >= 4096 {
            seen.clear();
        }
        seen.insert(app_name.to_owned(), r);
        r
    })
}

/// What a name looks like: its NFKC form and Unicode confusable skeleton (UTS #39, so a
/// Cyrillic `а`, a fullwidth `ａ` or a Roman numeral `ⅼ` read as the Latin
/// letters they imitate), lower-cased, letters and digits only.
fn fold_app(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    use unicode_security::confusable_detection::skeleton;
    // Compatibility forms first (fullwidth, ligatures, Roman numerals).
    let lower: String = name.nfkc().flat_map(char::to_lowercase).collect();
    skeleton(&lower).filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect::<String>().replace('ı', "i")
}

/// The error for a record that claims the archiver's own `app_name`.
pub fn reserved_app_error() -> FieldError {
    FieldError::new(Field::AppName, format!("{:?} is reserved for the archiver's own records", SELF_APP_NAME))
}

#[cfg(test)]
mod reserved_tests {
    use super::is_reserved_app;

    #[test]
    fn the_archivers_name_is_reserved_in_every_disguise() {
        for name in [
            "audit-trail",
            "Audit Trail",
            " AUDIT_TRAIL ",
            "audit.trail",
            "\u{430}udit-trail",
            "\u{ff41}\u{ff55}\u{ff44}\u{ff49}\u{ff54}\u{ff0d}\u{ff54}\u{ff52}\u{ff41}\u{ff49}\u{ff4c}",
            "audit-trai\u{217c}",
            "AUD\u{130}T-TRA\u{130}L",
            "aud\u{131}t-tra\u{131}l",
            "audit\u{200b}-trail",
        ] {
            assert!(is_reserved_app(name), "{name:?}");
        }
        for name in ["audit", "trail", "audit-trails", "System Admin Tool", "auditor trail"] {
            assert!(!is_reserved_app(name), "{name:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Defaults<'static> = Defaults { now: "2026-11-22T09:45:37.120+01:00", node: "pbx01" };

    fn parse_ok(line: &str) -> Record<'_> {
        let mut r = parse_json_line(line.as_bytes()).expect("parses");
        validate(&mut r, &D).expect("valid");
        r
    }

    #[test]
    fn plain_reader_agrees_with_serde_json() {
        // Hand-picked shapes: the plain reader takes the first group, leaves
        // the second to serde_json.
        let plain = [
            r#"{"app_name":"a","action_type":"b"}"#,
            " {\t\"app_name\" : \"a é 😀\" , \"user_name\":null,\"action_type\":\"\"}\r ",
        ];
        let general = [
            r#"{}"#,
            r#"{"app_name":"a\"b"}"#,
            r#"{"app_name":"a\nb"}"#,
            r#"{"app_na\u006de":"a"}"#,
            r#"{"app_name":"a","app_name":"b"}"#,
            r#"{"user_name":null,"user_name":"x","app_name":"a"}"#,
            r#"{"id":"1"}"#,
            r#"{"session_id":10}"#,
            r#"{"app_name":"a",}"#,
            r#"{"app_name":"a"} x"#,
            r#"{"app_name":nul}"#,
            "{\"app_name\":\"a\u{1}\"}",
        ];
        for line in plain {
            let r = parse_plain(line).unwrap_or_else(|| panic!("plain reader should take {line:?}"));
            assert_eq!(Ok(r), parse_with_serde(line), "{line:?}");
        }
        for line in general {
            assert!(parse_plain(line).is_none(), "{line:?} is for serde_json");
        }
        // And many generated lines, mixing good and bad pieces: whatever the
        // plain reader accepts, serde_json reads the same.
        let keys = ["app_name", "action_type", "user_name", "tenant", "action_data", "id", "colour", "app\\u005fname"];
        let values = [
            "\"x\"",
            "\"\"",
            "null",
            "\"a\\\"b\"",
            "\"é😀 <&>\"",
            "\"tab\there\"",
            "\"new\\nline\"",
            "\"c\u{1}\"",
            "12",
            "{}",
            "nul",
        ];
        let ws = ["", " ", "\t", "\r", "\n", "  "];
        let seps = [",", ",", ",", "", ",,"];
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut pick = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let (mut taken, mut agreed_errors) = (0, 0);
        for _ in 0..20_000 {
            let mut line = String::from(ws[pick(ws.len())]);
            line.push('{');
            let fields = 1 + pick(4);
            for f in 0..fields {
                line.push_str(ws[pick(ws.len())]);
                line.push_str(&format!("\"{}\"", keys[pick(keys.len())]));
                line.push_str(ws[pick(ws.len())]);
                line.push(':');
                line.push_str(ws[pick(ws.len())]);
                line.push_str(values[pick(values.len())]);
                line.push_str(ws[pick(ws.len())]);
                if f + 1 < fields {
                    line.push_str(seps[pick(seps.len())]);
                }
            }
            line.push('}');
            line.push_str([" ", "", "", "", "x"][pick(5)]);
            match parse_plain(&line) {
                Some(r) => {
                    taken += 1;
                    assert_eq!(Ok(r), parse_with_serde(&line), "{line:?}");
                }
                None => agreed_errors += usize::from(parse_with_serde(&line).is_err()),
            }
        }
        assert!(taken > 1000 && agreed_errors > 1000, "both readers were exercised: {taken} {agreed_errors}");
    }

    #[test]
    fn xml_names_map_back() {
        for spec in &FIELDS {
            assert_eq!(Field::from_xml(spec.xml.as_bytes()), Some(spec.field));
            assert_eq!(Field::from_json(spec.json), Some(spec.field));
        }
        assert_eq!(Field::from_xml(b"Record"), None);
    }

    #[test]
    fn defaults_fill_in() {
        let r = parse_ok(r#"{"app_name":"System Admin Tool","action_type":"Login"}"#);
        assert_eq!(r.get(Field::Timestamp), Some(D.now));
        assert_eq!(r.get(Field::DetailLevel), Some("Low"));
        assert_eq!(r.get(Field::Node), Some("pbx01"));
        assert!(matches!(r.fields[Field::AppName as usize], Some(Cow::Borrowed(_))), "no copy when unescaped");
    }

    #[test]
    fn unknown_and_id_fields_are_named() {
        let e = parse_json_line(br#"{"app_name":"a","action_type":"b","colour":"red"}"#).unwrap_err();
        assert!(e.reason.contains("unknown field `colour`"), "{e}");
        let e = parse_json_line(br#"{"id":"4","app_name":"a"}"#).unwrap_err();
        assert!(e.reason.contains("assigned by the archiver"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_field() {
        let e = parse_json_line(br#"{"app_name":"a","action_type":"b","session_id":10}"#).unwrap_err();
        assert_eq!(e.field, Some("session_id"));
    }

    #[test]
    fn invalid_utf8_names_the_field() {
        let e = parse_json_line(b"{\"app_name\":\"a\",\"action_data\":\"x\xff\"}").unwrap_err();
        assert_eq!(e.field, Some("action_data"), "{e}");
        assert!(e.reason.contains("UTF-8"));
    }

    #[test]
    fn all_problems_reported() {
        let mut r =
            parse_json_line(br#"{"source_ip":"10.0.0.300","timestamp":"yesterday","outcome":"maybe"}"#).unwrap();
        let errs = validate(&mut r, &D).unwrap_err();
        let names: Vec<_> = errs.iter().map(|e| e.field.unwrap()).collect();
        assert_eq!(names, ["app_name", "action_type", "source_ip", "outcome", "timestamp"]);
    }

    #[test]
    fn ip_and_outcome_normalised() {
        let r = parse_ok(r#"{"app_name":"a","action_type":"b","source_ip":"2001:DB8:0:0::1","outcome":"FAILURE"}"#);
        assert_eq!(r.get(Field::SourceIp), Some("2001:db8::1"));
        assert_eq!(r.get(Field::Outcome), Some("failure"));
    }

    #[test]
    fn ipv4_is_kept_only_in_canonical_form() {
        let r = parse_ok(r#"{"app_name":"a","action_type":"b","source_ip":" 10.1.2.3 "}"#);
        assert_eq!(r.get(Field::SourceIp), Some("10.1.2.3"));
        // Leading zeros are refused, never stored in a second spelling.
        let mut r = parse_json_line(br#"{"app_name":"a","action_type":"b","source_ip":"10.01.2.3"}"#).unwrap();
        let errs = validate(&mut r, &D).unwrap_err();
        assert_eq!(errs[0].field, Some("source_ip"));
    }

    #[test]
    fn oversized_field_rejected() {
        let big = "x".repeat(MAX_FIELD + 1);
        let line = format!(r#"{{"app_name":"{big}","action_type":"b"}}"#);
        let mut r = parse_json_line(line.as_bytes()).unwrap();
        let errs = validate(&mut r, &D).unwrap_err();
        assert_eq!(errs[0].field, Some("app_name"));
        assert!(errs[0].reason.contains("limit"));
    }

    #[test]
    fn duplicate_and_trailing_garbage() {
        assert!(parse_json_line(br#"{"app_name":"a","app_name":"b"}"#).unwrap_err().reason.contains("more than once"));
        for twice in [
            r#"{"app_name":"A","action_type":"B","tenant":null,"tenant":"x"}"#,
            r#"{"app_name":"A","action_type":"B","tenant":null,"tenant":null}"#,
            r#"{"app_name":"A","action_type":"B","tenant":"x","tenant":null}"#,
        ] {
            let e = parse_json_line(twice.as_bytes()).unwrap_err();
            assert!(e.reason.contains("more than once"), "{twice}: {e}");
        }
        assert!(parse_json_line(br#"{"app_name":"a"} x"#).is_err());
        assert!(parse_json_line(br#"[1]"#).is_err());
    }
}
