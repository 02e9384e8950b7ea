//! Syslog messages for the SIEM: an RFC 5424 header, then the record as one
//! JSON object (the export's field names, with `id`) or as a CEF event.
//!
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - audit - MSG`: PRI from the
//! configured facility and a severity derived from the record; TIMESTAMP
//! the record's own (RFC 3339, milliseconds, offset); HOSTNAME the record's
//! node. MSG is UTF-8 without a byte-order mark (RFC 5424's MSG-ANY), which
//! is what receivers and CEF parsers expect.
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

use crate::chain::{self, Digest};
use crate::record::{Field, Record};

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

/// A header field of RFC 5424 (HOSTNAME, APP-NAME): printable ASCII without
/// spaces, at most `max` characters, `-` when empty.
fn header_token(s: &str, max: usize) -> String {
    let t: String = s.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if t.is_empty() { "-".into() } else { t }
}

/// The RFC 5424 header of a record, up to and including the space before MSG.
pub fn header(r: &Record<'_>, facility: u8, severity: u8, app_name: &str, host: &str) -> String {
    let ts = r.get(Field::Timestamp).unwrap_or("-");
    let node = r.get(Field::Node).unwrap_or(host);
    header_with(facility, severity, ts, node, app_name, "audit")
}

/// An RFC 5424 header (without PROCID and STRUCTURED-DATA), up to and
/// including the space before MSG.
fn header_with(facility: u8, severity: u8, ts: &str, host: &str, app_name: &str, msgid: &str) -> String {
    format!(
        "<{}>1 {} {} {} - {msgid} - ",
        u16::from(facility) * 8 + u16::from(severity),
        if ts.is_empty() { "-" } else { ts },
        header_token(host, 255),
        header_token(app_name, 48)
    )
}

/// `\` and `|` escaped, line breaks turned into spaces (they may not appear
/// in a CEF header).
pub fn cef_header_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `\`, `=` escaped, line breaks written as `\n` and `\r` (CEF extension values).
pub fn cef_value_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// Milliseconds since the epoch of an RFC 3339 time stamp.
fn epoch_ms(ts: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(ts).ok().map(|t| t.timestamp_millis())
}

/// The record as a CEF event.
pub fn cef(r: &Record<'_>) -> String {
    let action = r.get(Field::ActionType).unwrap_or("");
    let app = r.get(Field::AppName).unwrap_or("");
    let mut out = format!(
        "CEF:0|audit-trail|audit-trail|{}|{}|{}|{}|",
        cef_header_escape(CEF_VERSION),
        cef_header_escape(action),
        cef_header_escape(&format!("{app}: {action}")),
        cef_severity(r)
    );
    let mut ext: Vec<(&str, String)> = vec![("externalId", r.id.to_string())];
    if let Some(ms) = r.get(Field::Timestamp).and_then(epoch_ms) {
        ext.push(("rt", ms.to_string()));
    }
    let mut add = |key: &'static str, f: Field| {
        if let Some(v) = r.get(f) {
            ext.push((key, v.to_owned()));
        }
    };
    add("act", Field::ActionType);
    add("suser", Field::UserName);
    add("dvchost", Field::Node);
    add("cat", Field::Category);
    add("outcome", Field::Outcome);
    add("msg", Field::ActionData);
    match r.get(Field::SourceIp) {
        Some(ip) if ip.contains(':') => {
            ext.push(("c6a2", ip.to_owned()));
            ext.push(("c6a2Label", "Source IPv6 Address".into()));
        }
        Some(ip) => ext.push(("src", ip.to_owned())),
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
    let mut labels = Vec::new();
    for (key, label, f) in labelled {
        if let Some(v) = r.get(f) {
            ext.push((key, v.to_owned()));
            labels.push((key, label));
        }
    }
    for (i, (k, v)) in ext.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{k}={}", cef_value_escape(v));
    }
    for (key, label) in labels {
        let _ = write!(out, " {key}Label={label}");
    }
    out
}

/// The record as one JSON object (no trailing newline).
pub fn json(r: &Record<'_>) -> String {
    let mut buf = Vec::new();
    crate::export::json_line(&mut buf, r);
    buf.pop();
    String::from_utf8(buf).unwrap_or_default()
}

/// A whole syslog message for `r`; with `max` set (UDP), a message longer
/// than `max` bytes has its action data shortened, and marked, to fit.
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
    let body = |r: &Record<'_>| if cef_format { cef(r) } else { json(r) };
    let mut msg = head.clone() + &body(r);
    let Some(max) = max else { return msg.into_bytes() };
    if msg.len() <= max {
        return msg.into_bytes();
    }
    if let Some(data) = r.get(Field::ActionData) {
        // Shorten the action data by the excess (plus escaping slack), at a character boundary.
        let mut keep = data.len().saturating_sub(msg.len() - max + 64);
        loop {
            while keep > 0 && !data.is_char_boundary(keep) {
                keep -= 1;
            }
            let mut short = r.clone();
            short.set(Field::ActionData, format!("{} [truncated: {} of {} bytes]", &data[..keep], keep, data.len()));
            msg = head.clone() + &body(&short);
            if msg.len() <= max || keep == 0 {
                break;
            }
            keep = keep.saturating_sub((msg.len() - max).max(16));
        }
    }
    let mut bytes = msg.into_bytes();
    if bytes.len() > max {
        let mut cut = max;
        while cut > 0 && (bytes[cut] & 0xC0) == 0x80 {
            cut -= 1;
        }
        bytes.truncate(cut);
    }
    bytes
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
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
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
    let head = header_with(facility, INFO, a.time, a.host, app_name, "anchor");
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
        assert_eq!(cef_header_escape("two\nlines"), "two lines");
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
        let parsed: crate::verify::Anchor = v["anchor"].as_str().unwrap().parse().unwrap();
        assert_eq!((parsed.id, parsed.value), (Some(1234), value));
        // Another facility and app name; a host name that needs JSON escaping.
        let odd = Anchor { host: "a\"b", ..a };
        let m = String::from_utf8(anchor_message(&odd, false, 16, "trail")).unwrap();
        assert!(m.starts_with("<134>1 2026-11-22T09:45:37.120+01:00 a\"b trail - anchor - {"), "{m}");
        let v: serde_json::Value = serde_json::from_str(m.split_once(" - anchor - ").unwrap().1).unwrap();
        assert_eq!(v["host"], "a\"b");
    }

    #[test]
    fn anchor_cef_message_has_its_own_event_class_and_escaped_extension() {
        let value = anchor_value();
        let hex = chain::hex(&value);
        let a = Anchor { id: 7, chain: &value, host: "pbx=01", time: "2026-11-22T09:45:37.120+01:00" };
        let m = String::from_utf8(anchor_message(&a, true, 4, "audit-trail")).unwrap();
        let head = "<38>1 2026-11-22T09:45:37.120+01:00 pbx=01 audit-trail - anchor - ";
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
            assert!(text.contains("[truncated: "), "{text}");
        }
    }
}
