//! Syslog messages for the SIEM: an RFC 5424 header, then the record as one
//! JSON object (the export's field names, with `id`) or as a CEF event.
//!
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - audit - MSG`: PRI from the
//! configured facility and a severity derived from the record; TIMESTAMP
//! the record's own (RFC 3339, milliseconds, offset); HOSTNAME the record's
//! node. MSG is UTF-8 without a byte-order mark (RFC 5424's MSG-ANY), which
//! is what receivers and CEF parsers expect.

use std::fmt::Write as _;

use crate::record::{Field, Record};

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

/// The RFC 5424 header, up to and including the space before MSG.
pub fn header(r: &Record<'_>, facility: u8, severity: u8, app_name: &str, host: &str) -> String {
    let ts = r.get(Field::Timestamp).unwrap_or("-");
    let node = r.get(Field::Node).unwrap_or(host);
    format!(
        "<{}>1 {} {} {} - audit - ",
        u16::from(facility) * 8 + u16::from(severity),
        ts,
        header_token(node, 255),
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
        env!("CARGO_PKG_VERSION"),
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
