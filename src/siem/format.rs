//! Syslog messages for the SIEM: an RFC 5424 header, then the record as one
//! JSON object (the export's field names, with `id`) or as a CEF event.
//!
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - audit - MSG`: PRI from the
//! configured facility and a severity derived from the record; TIMESTAMP
//! the record's own (RFC 3339, milliseconds, offset); HOSTNAME the record's
//! node as a name every common receiver accepts (see [`hostname`]; the exact
//! node is always in MSG). MSG is UTF-8 without a byte-order mark (RFC 5424's
//! MSG-ANY), which is what receivers and CEF parsers expect.
//!
//! # Nothing in a value can end, split or forge a message
//!
//! A value may hold any character, but no control character reaches the
//! wire raw in either format or framing: receivers end a message at NUL or
//! LF (syslog-ng with newline framing, for one), some split at CR, NEL,
//! U+2028 or U+2029, and terminals act on ESC. So:
//!
//! - JSON escapes C0 (as JSON always does), and also DEL, C1, U+2028 and
//!   U+2029, as `\uXXXX`: the value decodes to exactly the original.
//! - CEF escapes `\` and `|` in header fields, `\` and `=` in extension
//!   values, writes LF and CR in extension values as CEF's `\n` and `\r`, and
//!   writes every other control character (C0 including NUL and TAB, DEL, C1,
//!   U+2028, U+2029; in header fields LF and CR too) as the six characters
//!   `\uXXXX` (on the wire `\\uXXXX`, since the backslash is escaped). CEF has
//!   no escape for them, so this is the one place a SIEM copy differs from
//!   the log, visibly.
//!
//! # Datagrams that do not fit
//!
//! Over UDP a message longer than `max_udp_bytes` is shortened, never cut:
//! the longest values are shortened first (all values longer than a common
//! length are cut to it at a character boundary, as little as needed), each
//! ending with the marker `...[truncated, N bytes]` (N: the value's whole
//! length), so the datagram stays valid JSON or CEF with every key. The id,
//! time stamp and source address are never shortened, and short values (the
//! outcome, category, action type a SIEM filters on) keep their exact text
//! because only values longer than the others are shortened.
//!
//! # Chain anchors
//!
//! Now and then the forwarder also sends a *chain anchor* (see
//! [`anchor_message`]): the id and hash-chain value (SPEC §9) of the newest
//! record it sent, so that a copy off this host can later prove, with
//! `verify --anchor ID:VALUE`, that the log still holds that record
//! unchanged. Its header has MSGID `anchor`, severity informational (6), the
//! configured facility and APP-NAME, the archiver's host name and the time
//! the anchor was taken:
//!
//! ```text
//! <PRI>1 TIME HOST APP-NAME - anchor - {"type":"chain-anchor","id":N,"chain":"HEX","anchor":"N:HEX","host":"HOST","time":"TIME"}
//! <PRI>1 TIME HOST APP-NAME - anchor - CEF:0|audit-trail|audit-trail|VERSION|chain-anchor|Audit chain anchor|1|externalId=N cs1Label=chain cs1=HEX cs2Label=anchor cs2=N:HEX dvchost=HOST rt=MS
//! ```

use std::fmt::Write as _;

use crate::record::{Field, Record};
use crate::store::chain::{self, Digest};

/// The product version in CEF headers (Device Version).
pub const CEF_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Syslog severities (RFC 5424 §6.2.1).
const WARNING: u8 = 4;
const NOTICE: u8 = 5;
const INFO: u8 = 6;

fn is_failure(r: &Record<'_>) -> bool {
    r.get(Field::Outcome).is_some_and(|o| o.eq_ignore_ascii_case("failure"))
        || r.get(Field::Category).is_some_and(|c| c.eq_ignore_ascii_case("failure"))
}

fn category_is(r: &Record<'_>, names: &[&str]) -> bool {
    r.get(Field::Category).is_some_and(|c| names.iter().any(|n| c.eq_ignore_ascii_case(n)))
}

/// Syslog severity: failures are warnings, changes notices, the rest informational.
pub fn syslog_severity(r: &Record<'_>) -> u8 {
    if is_failure(r) {
        WARNING
    } else if category_is(r, &["config", "modify", "system"]) {
        NOTICE
    } else {
        INFO
    }
}

/// CEF severity (0–10): failures 7, configuration changes 5, system events 4, the rest 3.
pub fn cef_severity(r: &Record<'_>) -> u8 {
    if is_failure(r) {
        7
    } else if category_is(r, &["config", "modify"]) {
        5
    } else if category_is(r, &["system"]) {
        4
    } else {
        3
    }
}

/// Longest HOSTNAME and APP-NAME (RFC 5424 §6).
const MAX_HOSTNAME: usize = 255;
const MAX_APP_NAME: usize = 48;

/// A syslog HOSTNAME every common receiver accepts, for `node`: an IP
/// address as it is; otherwise letters, digits, `.`, `-` and `_` kept and
/// every other character (`:`, `[`, spaces, non-ASCII…) written as `_`, at
/// most 255 characters. A node without a letter or digit (such as `-`,
/// which would read as "no host") gives way to `fallback` (the archiver's
/// host) made the same way; `-` only when neither has one. syslog-ng refuses
/// a whole RFC 5424 message whose HOSTNAME holds `[` or a `:` outside an IPv6
/// address, so these characters never go into the header; the exact node is
/// in the message itself (JSON `node`, CEF `dvchost`).
pub fn hostname(node: &str, fallback: &str) -> String {
    if node.parse::<std::net::IpAddr>().is_ok() {
        return node.to_owned();
    }
    let made = header_token(node, MAX_HOSTNAME);
    if made.bytes().any(|b| b.is_ascii_alphanumeric()) {
        return made;
    }
    let made = header_token(fallback, MAX_HOSTNAME);
    if made.bytes().any(|b| b.is_ascii_alphanumeric()) { made } else { "-".into() }
}

/// A header token: letters, digits, `.`, `-`, `_` kept, any other character
/// as `_`, at most `max` characters.
fn header_token(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .collect()
}

/// APP-NAME: the configured name as a header token, `-` when empty.
fn app_token(s: &str) -> String {
    let t = header_token(s, MAX_APP_NAME);
    if t.is_empty() { "-".into() } else { t }
}

/// `ts` when it is an RFC 5424 TIMESTAMP (`YYYY-MM-DDTHH:MM:SS`, up to six
/// fraction digits, `Z` or `±HH:MM`, no leap second), else `-` (the exact
/// time is in the message).
fn timestamp_token(ts: &str) -> &str {
    let b = ts.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let date_time = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[17] <= b'5';
    if !date_time {
        return "-";
    }
    let mut i = 19;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if !(1..=6).contains(&(i - start)) {
            return "-";
        }
    }
    let zone = match &b[i..] {
        [b'Z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    };
    if zone { ts } else { "-" }
}

/// The RFC 5424 header of a record, up to and including the space before MSG.
pub fn header(r: &Record<'_>, facility: u8, severity: u8, app_name: &str, host: &str) -> String {
    let ts = r.get(Field::Timestamp).unwrap_or("-");
    let node = r.get(Field::Node).unwrap_or(host);
    header_with(facility, severity, ts, &hostname(node, host), app_name, "audit")
}

/// An RFC 5424 header (without PROCID and STRUCTURED-DATA), up to and
/// including the space before MSG; `hostname` is already a HOSTNAME.
fn header_with(facility: u8, severity: u8, ts: &str, hostname: &str, app_name: &str, msgid: &str) -> String {
    format!(
        "<{}>1 {} {hostname} {} - {msgid} - ",
        u16::from(facility) * 8 + u16::from(severity),
        timestamp_token(ts),
        app_token(app_name)
    )
}

/// A character no receiver may see raw: C0, DEL, C1, U+2028, U+2029.
pub fn is_control(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// Whether `s` may hold a byte [`cef_header_escape`] or [`cef_value_escape`]
/// changes (a fast check: `\xC2` and `\xE2` start C1 and U+2028/9, among others).
fn cef_special(s: &str, sep: u8) -> bool {
    s.bytes().any(|b| b < 0x20 || b == 0x7f || b == b'\\' || b == sep || b == 0xc2 || b == 0xe2)
}

/// `\uXXXX` for a control character, as text (the backslash itself escaped for CEF).
fn push_cef_control(out: &mut String, c: char) {
    let _ = write!(out, "\\\\u{:04X}", u32::from(c));
}

/// `\` and `|` escaped, control characters (line breaks included: a CEF
/// header has none) written as `\uXXXX` text.
pub fn cef_header_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_cef_header(&mut out, s);
    out
}

fn push_cef_header(out: &mut String, s: &str) {
    if !cef_special(s, b'|') {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            c if is_control(c) => push_cef_control(out, c),
            c => out.push(c),
        }
    }
}

/// `\`, `=` escaped, line breaks written as `\n` and `\r`, every other
/// control character as `\uXXXX` text (CEF extension values).
pub fn cef_value_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_cef_value(&mut out, s);
    out
}

fn push_cef_value(out: &mut String, s: &str) {
    if !cef_special(s, b'=') {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if is_control(c) => push_cef_control(out, c),
            c => out.push(c),
        }
    }
}

/// `s` as a JSON string: `"` and `\` escaped, and every control character
/// (C0, DEL, C1, U+2028, U+2029) as `\uXXXX` (`\n`, `\r`, `\t` short), so no
/// receiver can split or end a message inside a value.
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f || b == 0xc2 || b == 0xe2) {
        out.push_str(s);
    } else {
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if is_control(c) => {
                    let _ = write!(out, "\\u{:04x}", u32::from(c));
                }
                c => out.push(c),
            }
        }
    }
    out.push('"');
}

/// Milliseconds since the epoch of an RFC 3339 time stamp.
fn epoch_ms(ts: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(ts).ok().map(|t| t.timestamp_millis())
}

/// Values longer than `cap` bytes are written shortened: the first `cap`
/// bytes (at a character boundary) and the marker `...[truncated, N bytes]`
/// (only when that is shorter than the value). `None`: values as they are.
#[derive(Debug, Clone, Copy)]
struct Cap(Option<usize>);

impl Cap {
    fn apply<'v>(self, v: &'v str) -> std::borrow::Cow<'v, str> {
        let Some(cap) = self.0 else { return v.into() };
        if v.len() <= cap {
            return v.into();
        }
        let mut marker = itoa::Buffer::new();
        let n = marker.format(v.len());
        if cap + TRUNCATED.len() + n.len() + TRUNCATED_END.len() >= v.len() {
            return v.into();
        }
        let mut keep = cap;
        while !v.is_char_boundary(keep) {
            keep -= 1;
        }
        let mut out = String::with_capacity(keep + 32);
        out.push_str(&v[..keep]);
        out.push_str(TRUNCATED);
        out.push_str(n);
        out.push_str(TRUNCATED_END);
        out.into()
    }

    /// A value that is never shortened (id, time stamp, source address).
    fn whole(v: &str) -> std::borrow::Cow<'_, str> {
        v.into()
    }
}

/// The marker that ends a shortened value: `...[truncated, N bytes]`.
pub const TRUNCATED: &str = "...[truncated, ";
const TRUNCATED_END: &str = " bytes]";

/// The record as a CEF event.
#[cfg(test)]
pub fn cef(r: &Record<'_>) -> String {
    let mut out = String::with_capacity(256 + r.get(Field::ActionData).map_or(0, str::len));
    cef_into(&mut out, r, Cap(None));
    out
}

fn cef_into(out: &mut String, r: &Record<'_>, cap: Cap) {
    let action = cap.apply(r.get(Field::ActionType).unwrap_or(""));
    let app = cap.apply(r.get(Field::AppName).unwrap_or(""));
    out.push_str("CEF:0|audit-trail|audit-trail|");
    push_cef_header(out, CEF_VERSION);
    out.push('|');
    push_cef_header(out, &action);
    out.push('|');
    push_cef_header(out, &app);
    out.push_str(": ");
    push_cef_header(out, &action);
    out.push('|');
    out.push_str(itoa::Buffer::new().format(cef_severity(r)));
    out.push('|');
    out.push_str("externalId=");
    out.push_str(itoa::Buffer::new().format(r.id));
    if let Some(ms) = r.get(Field::Timestamp).and_then(epoch_ms) {
        out.push_str(" rt=");
        out.push_str(itoa::Buffer::new().format(ms));
    }
    let pair = |out: &mut String, key: &str, v: &str| {
        out.push(' ');
        out.push_str(key);
        out.push('=');
        push_cef_value(out, v);
    };
    for (key, f) in [
        ("act", Field::ActionType),
        ("suser", Field::UserName),
        ("dvchost", Field::Node),
        ("cat", Field::Category),
        ("outcome", Field::Outcome),
        ("msg", Field::ActionData),
    ] {
        if let Some(v) = r.get(f) {
            pair(out, key, &cap.apply(v));
        }
    }
    match r.get(Field::SourceIp) {
        Some(ip) if ip.contains(':') => {
            pair(out, "c6a2", &Cap::whole(ip));
            pair(out, "c6a2Label", "Source IPv6 Address");
        }
        Some(ip) => pair(out, "src", &Cap::whole(ip)),
        None => {}
    }
    let labelled = [
        ("cs1", "AppName", Field::AppName),
        ("cs2", "AppContext", Field::AppContext),
        ("cs3", "Tenant", Field::Tenant),
        ("cs4", "SessionId", Field::SessionId),
        ("cs5", "AuthType", Field::AuthType),
        ("cs6", "DetailLevel", Field::DetailLevel),
        ("flexString1", "FirstName", Field::FirstName),
        ("flexString2", "LastName", Field::LastName),
    ];
    for (key, _, f) in labelled {
        if let Some(v) = r.get(f) {
            pair(out, key, &cap.apply(v));
        }
    }
    for (key, label, f) in labelled {
        if r.get(f).is_some() {
            out.push(' ');
            out.push_str(key);
            out.push_str("Label=");
            out.push_str(label);
        }
    }
}

/// The export's JSON line (fields in the order of SPEC §2, absent ones left
/// out), with every control character escaped (see [`push_json_string`]).
fn json_into(out: &mut String, r: &Record<'_>, cap: Cap) {
    out.push_str("{\"id\":");
    out.push_str(itoa::Buffer::new().format(r.id));
    for spec in &crate::record::FIELDS {
        if let Some(v) = r.get(spec.field) {
            out.push_str(",\"");
            out.push_str(spec.json);
            out.push_str("\":");
            let v = match spec.field {
                Field::Timestamp | Field::SourceIp => Cap::whole(v),
                _ => cap.apply(v),
            };
            push_json_string(out, &v);
        }
    }
    out.push('}');
}

/// A whole syslog message for `r`; with `max` set (UDP), a message longer
/// than `max` bytes has its longest values shortened, and marked, to fit
/// (see the module documentation). Should even the shortest form not fit,
/// it goes as it is: whole keys and valid JSON or CEF matter more than the
/// limit, which is below what a datagram can carry.
pub fn message(
    r: &Record<'_>,
    cef_format: bool,
    facility: u8,
    app_name: &str,
    host: &str,
    max: Option<usize>,
) -> Vec<u8> {
    let sev = syslog_severity(r);
    let head = header(r, facility, sev, app_name, host);
    let build = |cap: Cap| {
        let mut msg = String::with_capacity(head.len() + 256 + r.get(Field::ActionData).map_or(0, str::len));
        msg.push_str(&head);
        if cef_format {
            cef_into(&mut msg, r, cap)
        } else {
            json_into(&mut msg, r, cap)
        }
        msg
    };
    let msg = build(Cap(None));
    let Some(max) = max else { return msg.into_bytes() };
    if msg.len() <= max {
        return msg.into_bytes();
    }
    // The largest common length that fits (binary search: the message only
    // grows with it).
    let longest = r.fields.iter().flatten().map(|v| v.len()).max().unwrap_or(0);
    let (mut lo, mut hi) = (0usize, longest);
    let mut best = build(Cap(Some(0)));
    if best.len() > max {
        return best.into_bytes();
    }
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        let m = build(Cap(Some(mid)));
        if m.len() <= max {
            lo = mid;
            best = m;
        } else {
            hi = mid;
        }
    }
    best.into_bytes()
}

/// A chain anchor: record `id` has hash-chain value `chain`; taken by the
/// archiver on `host` at `time` (RFC 3339, milliseconds).
#[derive(Debug, Clone, Copy)]
pub struct Anchor<'a> {
    pub id: u64,
    pub chain: &'a Digest,
    pub host: &'a str,
    pub time: &'a str,
}

impl Anchor<'_> {
    /// `ID:VALUE`, as `verify --anchor` takes it.
    pub fn text(&self) -> String {
        format!("{}:{}", self.id, chain::hex(self.chain))
    }
}

/// An anchor as one JSON object (no trailing newline).
pub fn anchor_json(a: &Anchor<'_>) -> String {
    let quote = |s: &str| {
        let mut q = String::with_capacity(s.len() + 2);
        push_json_string(&mut q, s);
        q
    };
    format!(
        "{{\"type\":\"chain-anchor\",\"id\":{},\"chain\":\"{}\",\"anchor\":\"{}\",\"host\":{},\"time\":{}}}",
        a.id,
        chain::hex(a.chain),
        a.text(),
        quote(a.host),
        quote(a.time)
    )
}

/// An anchor as a CEF event (severity 1).
pub fn anchor_cef(a: &Anchor<'_>) -> String {
    let mut out =
        format!("CEF:0|audit-trail|audit-trail|{}|chain-anchor|Audit chain anchor|1|", cef_header_escape(CEF_VERSION));
    let mut ext: Vec<(&str, String)> = vec![
        ("externalId", a.id.to_string()),
        ("cs1Label", "chain".into()),
        ("cs1", chain::hex(a.chain)),
        ("cs2Label", "anchor".into()),
        ("cs2", a.text()),
        ("dvchost", a.host.to_owned()),
    ];
    if let Some(ms) = epoch_ms(a.time) {
        ext.push(("rt", ms.to_string()));
    }
    for (i, (k, v)) in ext.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{k}={}", cef_value_escape(v));
    }
    out
}

/// A whole syslog message for an anchor: MSGID `anchor`, severity
/// informational, HOSTNAME the archiver's host, TIMESTAMP the anchor's time.
pub fn anchor_message(a: &Anchor<'_>, cef_format: bool, facility: u8, app_name: &str) -> Vec<u8> {
    let head = header_with(facility, INFO, a.time, &hostname(a.host, a.host), app_name, "anchor");
    let body = if cef_format { anchor_cef(a) } else { anchor_json(a) };
    (head + &body).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Record<'static> {
        let mut r = Record { id: 42, ..Record::default() };
        r.set(Field::Timestamp, "2026-11-22T09:45:37.120+01:00");
        r.set(Field::AppName, "System Admin Tool");
        r.set(Field::ActionType, "Change");
        r.set(Field::Node, "pbx01");
        r.set(Field::UserName, "alice");
        r.set(Field::SourceIp, "10.1.1.10");
        r.set(Field::Category, "config");
        r
    }

    #[test]
    fn cef_header_escapes_backslash_and_pipe_only() {
        assert_eq!(cef_header_escape(r"a|b\c=d"), r"a\|b\\c=d");
        assert_eq!(cef_header_escape("two\nlines\0"), r"two\\u000Alines\\u0000");
    }

    #[test]
    fn cef_extension_escapes_backslash_equals_and_line_breaks() {
        assert_eq!(cef_value_escape("a=b\\c|d\r\ne"), r"a\=b\\c|d\r\ne");
    }

    #[test]
    fn cef_event_has_header_fields_and_escaped_extension() {
        let mut r = rec();
        r.set(Field::ActionData, "Display Name changed from 'A|B' to 'x=y'\nnext \\ line");
        let c = cef(&r);
        let head =
            format!("CEF:0|audit-trail|audit-trail|{}|Change|System Admin Tool: Change|5|", env!("CARGO_PKG_VERSION"));
        assert!(c.starts_with(&head), "{c}");
        assert!(c.contains(r"msg=Display Name changed from 'A|B' to 'x\=y'\nnext \\ line src=10.1.1.10"), "{c}");
        assert!(c.contains("externalId=42 rt=1795337137120 act=Change suser=alice"), "{c}");
        assert!(c.contains(" cs1=System Admin Tool") && c.contains(" cs1Label=AppName"), "{c}");
    }

    #[test]
    fn severities_rank_failures_highest() {
        let mut r = rec();
        assert_eq!((syslog_severity(&r), cef_severity(&r)), (NOTICE, 5));
        r.set(Field::Outcome, "failure");
        assert_eq!((syslog_severity(&r), cef_severity(&r)), (WARNING, 7));
        r.set(Field::Outcome, "success");
        r.set(Field::Category, "presence");
        assert_eq!((syslog_severity(&r), cef_severity(&r)), (INFO, 3));
    }

    #[test]
    fn rfc5424_header_and_json_body() {
        let m = String::from_utf8(message(&rec(), false, 4, "audit-trail", "host", None)).unwrap();
        assert!(m.starts_with("<37>1 2026-11-22T09:45:37.120+01:00 pbx01 audit-trail - audit - {\"id\":42,"), "{m}");
        let json: serde_json::Value = serde_json::from_str(m.split_once(" - audit - ").unwrap().1).unwrap();
        assert_eq!(json["user_name"], "alice");
    }

    fn anchor_value() -> Digest {
        std::array::from_fn(|i| (i as u8).wrapping_mul(37))
    }

    #[test]
    fn anchor_json_message_names_the_record_and_its_chain_value() {
        let value = anchor_value();
        let hex = chain::hex(&value);
        let a = Anchor { id: 1234, chain: &value, host: "pbx01", time: "2026-11-22T09:45:37.120+01:00" };
        let m = String::from_utf8(anchor_message(&a, false, 4, "audit-trail")).unwrap();
        // auth (4) × 8 + informational (6) = 38.
        let head = "<38>1 2026-11-22T09:45:37.120+01:00 pbx01 audit-trail - anchor - ";
        assert!(m.starts_with(head), "{m}");
        let body = &m[head.len()..];
        assert_eq!(
            body,
            format!(
                "{{\"type\":\"chain-anchor\",\"id\":1234,\"chain\":\"{hex}\",\"anchor\":\"1234:{hex}\",\
                 \"host\":\"pbx01\",\"time\":\"2026-11-22T09:45:37.120+01:00\"}}"
            )
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["type"], "chain-anchor");
        assert_eq!(v["id"], 1234);
        assert_eq!(v["chain"].as_str().map(str::len), Some(64));
        // What verify --anchor takes.
        let parsed: crate::store::verify::Anchor = v["anchor"].as_str().unwrap().parse().unwrap();
        assert_eq!((parsed.id, parsed.value), (Some(1234), value));
        // Another facility and app name; a host name that needs JSON escaping.
        let odd = Anchor { host: "a\"b", ..a };
        let m = String::from_utf8(anchor_message(&odd, false, 16, "trail")).unwrap();
        assert!(m.starts_with("<134>1 2026-11-22T09:45:37.120+01:00 a_b trail - anchor - {"), "{m}");
        let v: serde_json::Value = serde_json::from_str(m.split_once(" - anchor - ").unwrap().1).unwrap();
        assert_eq!(v["host"], "a\"b");
    }

    #[test]
    fn anchor_cef_message_has_its_own_event_class_and_escaped_extension() {
        let value = anchor_value();
        let hex = chain::hex(&value);
        let a = Anchor { id: 7, chain: &value, host: "pbx=01", time: "2026-11-22T09:45:37.120+01:00" };
        let m = String::from_utf8(anchor_message(&a, true, 4, "audit-trail")).unwrap();
        let head = "<38>1 2026-11-22T09:45:37.120+01:00 pbx_01 audit-trail - anchor - ";
        assert!(m.starts_with(head), "{m}");
        let cef = &m[head.len()..];
        assert_eq!(
            cef,
            format!(
                "CEF:0|audit-trail|audit-trail|{CEF_VERSION}|chain-anchor|Audit chain anchor|1|externalId=7 \
                 cs1Label=chain cs1={hex} cs2Label=anchor cs2=7:{hex} dvchost=pbx\\=01 rt=1795337137120"
            )
        );
        assert_eq!(anchor_cef(&a), cef);
    }

    #[test]
    fn udp_messages_are_shortened_to_fit_at_a_character_boundary() {
        let mut r = rec();
        r.set(Field::ActionData, "é".repeat(3000));
        for cef_format in [false, true] {
            let m = message(&r, cef_format, 4, "audit-trail", "host", Some(1024));
            assert!(m.len() <= 1024, "{}", m.len());
            let text = String::from_utf8(m).expect("still UTF-8");
            assert!(text.contains("...[truncated, 6000 bytes]"), "{text}");
        }
    }

    #[test]
    fn no_control_character_reaches_the_wire_raw() {
        let hostile: String =
            (0u32..0x20).chain([0x7f]).chain(0x80..0xa0).chain([0x2028, 0x2029]).filter_map(char::from_u32).collect();
        let mut r = rec();
        for f in [Field::UserName, Field::ActionData, Field::ActionType, Field::AppName, Field::Node, Field::Tenant] {
            r.set(f, format!("a{hostile}b|c=d\\e"));
        }
        for cef_format in [false, true] {
            for max in [None, Some(600)] {
                let m = String::from_utf8(message(&r, cef_format, 4, "audit-trail", "host", max)).unwrap();
                assert!(!m.chars().any(is_control), "{m:?}");
                if !cef_format {
                    let v: serde_json::Value = serde_json::from_str(m.split_once(" - audit - ").unwrap().1).unwrap();
                    if max.is_none() {
                        assert_eq!(v["user_name"], format!("a{hostile}b|c=d\\e"));
                    }
                }
            }
        }
        let c = cef(&r);
        assert!(c.contains(r"suser=a\\u0000\\u0001"), "{c}");
        assert!(c.contains(r"\\u001F\\u007F\\u0080"), "{c}");
        assert!(c.contains(r"\\u009F\\u2028\\u2029b|c\=d\\e"), "{c}");
        assert!(c.contains(r"\n\\u000B\\u000C\r"), "{c}");
        assert!(c.contains(r"|a\\u0000"), "header field: {c}");
        assert!(c.contains(r"b\|c=d\\e: a"), "header field: {c}");
    }

    #[test]
    fn hostname_is_one_every_receiver_accepts() {
        assert_eq!(hostname("pbx01.example.com", "h"), "pbx01.example.com");
        assert_eq!(hostname("sbc:primary", "h"), "sbc_primary");
        assert_eq!(hostname("[pbx01]", "h"), "_pbx01_");
        assert_eq!(hostname("fe80::1", "h"), "fe80::1");
        assert_eq!(hostname("2001:db8::1", "h"), "2001:db8::1");
        assert_eq!(hostname("10.0.0.1", "h"), "10.0.0.1");
        assert_eq!(hostname("Zürich 1", "h"), "Z_rich_1");
        assert_eq!(hostname("-", "archiver"), "archiver");
        assert_eq!(hostname("", "archiver"), "archiver");
        assert_eq!(hostname("--", "::"), "-");
        assert_eq!(hostname(&"n".repeat(300), "h").len(), 255);
        let mut r = rec();
        r.set(Field::Node, "sbc:primary");
        let m = String::from_utf8(message(&r, false, 4, "audit trail[1]", "host", None)).unwrap();
        assert!(m.starts_with("<37>1 2026-11-22T09:45:37.120+01:00 sbc_primary audit_trail_1_ - audit - {"), "{m}");
        assert!(m.contains("\"node\":\"sbc:primary\""), "{m}");
    }

    #[test]
    fn timestamps_that_rfc5424_forbids_become_nil() {
        assert_eq!(timestamp_token("2026-11-22T09:45:37.120+01:00"), "2026-11-22T09:45:37.120+01:00");
        assert_eq!(timestamp_token("2026-11-22T09:45:37Z"), "2026-11-22T09:45:37Z");
        assert_eq!(timestamp_token("2016-12-31T23:59:60.500Z"), "-");
        assert_eq!(timestamp_token("2026-11-22T09:45:37.1234567Z"), "-");
        assert_eq!(timestamp_token("2026-11-22 09:45:37Z"), "-");
        assert_eq!(timestamp_token(""), "-");
    }

    #[test]
    fn udp_shortening_keeps_every_key_and_the_short_values() {
        let mut r = rec();
        r.set(Field::UserName, "x".repeat(4096));
        r.set(Field::Outcome, "failure");
        r.set(Field::ActionData, "y".repeat(3000));
        r.set(Field::FirstName, "z".repeat(100));
        r.set(Field::SourceIp, "2001:db8::1");
        for cef_format in [false, true] {
            for max in [480, 1024, 2048] {
                let m = String::from_utf8(message(&r, cef_format, 4, "audit-trail", "host", Some(max))).unwrap();
                assert!(m.len() <= max, "{max}: {} {m}", m.len());
                assert!(m.len() > max - 64, "as little as needed is cut: {max}: {}", m.len());
                let body = m.split_once(" - audit - ").unwrap().1;
                if cef_format {
                    for key in ["externalId=42 ", "rt=", "act=Change", "suser=x", "dvchost=pbx01", "cat=config"] {
                        assert!(body.contains(key), "{key}: {body}");
                    }
                    for key in ["outcome=failure", "msg=y", "c6a2=2001:db8::1 ", "cs1=System Admin Tool "] {
                        assert!(body.contains(key), "{key}: {body}");
                    }
                    assert!(body.contains("...[truncated, 4096 bytes]"), "{body}");
                } else {
                    let v: serde_json::Value = serde_json::from_str(body).unwrap();
                    assert_eq!(v["outcome"], "failure");
                    assert_eq!(v["source_ip"], "2001:db8::1");
                    assert_eq!(v["category"], "config");
                    assert_eq!(v["app_name"], "System Admin Tool");
                    let user = v["user_name"].as_str().unwrap();
                    assert!(user.starts_with("xxx") && user.ends_with("...[truncated, 4096 bytes]"), "{user}");
                    let data = v["action_data"].as_str().unwrap();
                    assert!(data.ends_with("...[truncated, 3000 bytes]"), "{data}");
                }
            }
        }
    }
}
