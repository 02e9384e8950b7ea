//! The HTML export (`export --format html`): one self-contained HTML5 page
//! that any browser opens from disk, where the XML files' XSLT stylesheet is
//! refused (Chromium on `file:` URLs, Firefox by its file-origin policy).
//!
//! The page holds everything: the stylesheet (shared with
//! `schema/audit-trail.xsl`, print rules included, so that no column is cut
//! on A4 or Letter portrait) and a small script for sorting, filtering and
//! paging. A Content-Security-Policy allows exactly these two by their hash
//! and nothing else: no load, no other script, no form, no base URL. The
//! table is complete without the script.
//!
//! Every value is written as text, never as markup or code:
//! - `& < > " '` become character references, in text and attributes;
//! - each value sits in a `<bdi>`, so right-to-left text cannot reorder
//!   what is around it;
//! - characters that are invisible or change how text around them is shown
//!   are not written as such but as a marked escape, `\u202E` in a
//!   `<span class="c">` (bidi controls in `class="c b"`): C0 controls but
//!   line feed (which stays a line break), DEL, C1 controls, the bidi
//!   controls (U+061C, U+200E/F, U+202A–U+202E, U+2066–U+2069), and the
//!   invisible characters that could make two different values look the
//!   same (soft hyphen, U+180E, U+200B, U+2028/9, U+2060–U+2064,
//!   U+206A–U+206F, U+FEFF, U+FFF9–U+FFFB, U+FFFE/F, tags U+E0000–U+E007F).
//!   So "Deleted user \u202Enimda\u202C" reads as it is stored, never as
//!   "Deleted user admin". Joiners (U+200C/D) are kept: scripts and emoji
//!   need them and they do not reorder text.
//!
//! The page is written as the records are read (one `<tbody>` per record, a
//! row of columns and a detail line; a new table every [`TABLE_ROWS`] or so,
//! see there), so memory does not grow with the export; what the export held
//! (count and ids) is stated at its end.

use sha2::Digest as _;

use crate::record::{Field, Record};

/// The page's stylesheet (also embedded in `schema/audit-trail.xsl`).
pub const CSS: &str = include_str!("html/viewer.css");
/// The page's script.
pub const JS: &str = include_str!("html/viewer.js");

/// What the page says about the export at its top.
#[derive(Debug, Clone, Default)]
pub struct Head<'a> {
    pub host: &'a str,
    /// When the export was made (the archiver's clock).
    pub created: &'a str,
    /// Which records were read, in words ("the whole history", …).
    pub selection: String,
    /// The filters as given on the command line (flag, value).
    pub filters: Vec<(&'static str, String)>,
    /// The ids the selection spans as the export started (first, last).
    pub ids: Option<(u64, u64)>,
}

/// What the export held, stated at the end of the page.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub records: u64,
    pub first: Option<u64>,
    pub last: Option<u64>,
}

/// Columns of the table: class of `<col>` and cells, title, how the script
/// sorts it (text when empty) and which filter it gets.
const COLUMNS: [(&str, &str, &str, &str); 11] = [
    ("id", "ID", "number", ""),
    ("ts", "Time Stamp", "time", ""),
    ("user", "User Name", "", "text"),
    ("tenant", "Tenant", "", "text"),
    ("ip", "Source IP", "", ""),
    ("app", "App Name", "", "text"),
    ("ctx", "App Context", "", ""),
    ("action", "Action Type", "", ""),
    ("data", "Action Data", "", ""),
    ("cat", "Category", "", "text"),
    ("outcome", "Outcome", "", "outcome"),
];

/// Fields shown on each record's detail line, after the columns.
const DETAILS: [Field; 4] = [Field::DetailLevel, Field::Node, Field::AuthType, Field::SessionId];

fn sha256_b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(s.as_bytes()))
}

/// The start of the page, up to and including the table head.
pub fn header(out: &mut Vec<u8>, head: &Head<'_>) {
    let csp = format!(
        "default-src 'none'; style-src 'sha256-{}'; script-src 'sha256-{}'; img-src 'none'; base-uri 'none'; form-action 'none'",
        sha256_b64(CSS),
        sha256_b64(JS)
    );
    out.extend_from_slice(b"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    // Our own text: keywords and base64 (no quote or markup character).
    out.extend_from_slice(b"<meta http-equiv=\"Content-Security-Policy\" content=\"");
    out.extend_from_slice(csp.as_bytes());
    out.extend_from_slice(b"\">\n<meta name=\"referrer\" content=\"no-referrer\">\n");
    out.extend_from_slice(b"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.extend_from_slice(b"<meta name=\"generator\" content=\"audit-trail ");
    escape_attr(out, env!("CARGO_PKG_VERSION"));
    out.extend_from_slice(b"\">\n<title>Audit trail of ");
    escape_attr(out, head.host);
    out.extend_from_slice(b", exported ");
    escape_attr(out, head.created);
    out.extend_from_slice(b"</title>\n<style>");
    out.extend_from_slice(CSS.as_bytes());
    out.extend_from_slice(b"</style>\n</head>\n<body>\n<h1>Audit trail of ");
    cell_value(out, Some(head.host));
    out.extend_from_slice(b"</h1>\n<dl class=\"meta\">");
    let item = |out: &mut Vec<u8>, name: &str, v: &dyn Fn(&mut Vec<u8>)| {
        out.extend_from_slice(b"<div><dt>");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b":</dt> <dd>");
        v(out);
        out.extend_from_slice(b"</dd></div>");
    };
    item(out, "Host", &|o| cell_value(o, Some(head.host)));
    item(out, "Exported", &|o| cell_value(o, Some(head.created)));
    item(out, "Selection", &|o| cell_value(o, Some(&head.selection)));
    item(out, "Filters", &|o| {
        if head.filters.is_empty() {
            o.extend_from_slice(b"none");
        }
        for (i, (flag, v)) in head.filters.iter().enumerate() {
            if i > 0 {
                o.push(b' ');
            }
            o.extend_from_slice(b"--");
            o.extend_from_slice(flag.as_bytes());
            o.push(b' ');
            cell_value(o, Some(v));
        }
    });
    item(out, "Ids", &|o| match head.ids {
        Some((first, last)) => {
            o.extend_from_slice(format!("{first}\u{2013}{last}").as_bytes());
            o.extend_from_slice(b" (as the export started; what it holds is stated at the end)");
        }
        None => o.extend_from_slice(b"none (no record to export)"),
    });
    out.extend_from_slice(b"</dl>\n");
    out.extend_from_slice(
        "<p class=\"note\">Each value is shown exactly as stored. Characters that are invisible or would \
         change how the text around them is displayed are shown as escapes: <span class=\"c\">\\u0000</span> \
         for control characters and <span class=\"c b\">\\u202E</span> for bidirectional controls (never \
         applied); line feeds are line breaks. Each record's detail line gives its other fields and its hash \
         chain value; <code>audit-trail verify</code> checks the files themselves.</p>\n"
            .as_bytes(),
    );
    out.extend_from_slice(
        b"<noscript><p class=\"note\">Scripts are off: the table below holds every record of the export, \
          in id order; sorting and filtering need scripts.</p></noscript>\n",
    );
    out.extend_from_slice(b"<div class=\"tools\" id=\"tools\" hidden></div>\n<p class=\"view\" id=\"view\"></p>\n");
    table_start(out, true);
}

/// Records per table, about: the rows are cut into tables of this many (the
/// export cuts between the pieces it writes), each in a `div.chunk` that the
/// browser lays out only when it comes into view (`content-visibility`), so
/// a page of a million records opens in seconds instead of laying out one
/// huge table again and again as it loads.
pub const TABLE_ROWS: u64 = 512;

/// Ends one table of records and starts the next.
pub fn table_break(out: &mut Vec<u8>) {
    out.extend_from_slice(b"</table></div>\n");
    table_start(out, false);
}

/// The start of a table of records: its columns and header row.
fn table_start(out: &mut Vec<u8>, first: bool) {
    out.extend_from_slice(if first {
        b"<div class=\"chunk\"><table class=\"at\" id=\"records\">\n<colgroup>".as_slice()
    } else {
        b"<div class=\"chunk\"><table class=\"at\">\n<colgroup>"
    });
    for (class, ..) in COLUMNS {
        out.extend_from_slice(format!("<col class=\"c-{class}\">").as_bytes());
    }
    out.extend_from_slice(b"</colgroup>\n<thead><tr>");
    for (_, title, sort, filter) in COLUMNS {
        out.extend_from_slice(b"<th scope=\"col\"");
        if !sort.is_empty() {
            out.extend_from_slice(format!(" data-sort=\"{sort}\"").as_bytes());
        }
        if !filter.is_empty() {
            out.extend_from_slice(format!(" data-filter=\"{filter}\"").as_bytes());
        }
        out.push(b'>');
        out.extend_from_slice(title.as_bytes());
        out.extend_from_slice(b"</th>");
    }
    out.extend_from_slice(b"</tr></thead>\n");
}

/// One record: a `<tbody>` with its row of columns and its detail line.
pub fn record(out: &mut Vec<u8>, r: &Record<'_>) {
    let outcome = r.get(Field::Outcome);
    out.extend_from_slice(match outcome {
        Some("failure") => b"<tbody class=\"r f\"><tr>".as_slice(),
        Some("success") => b"<tbody class=\"r s\"><tr>",
        _ => b"<tbody class=\"r\"><tr>",
    });
    out.extend_from_slice(b"<td class=\"id\">");
    out.extend_from_slice(itoa::Buffer::new().format(r.id).as_bytes());
    out.extend_from_slice(b"</td><td class=\"ts\">");
    if let Some(ts) = r.get(Field::Timestamp) {
        timestamp(out, ts);
    }
    out.extend_from_slice(b"</td><td class=\"user\">");
    cell_value(out, r.get(Field::UserName));
    let (first, last) = (r.get(Field::FirstName), r.get(Field::LastName));
    if first.is_some() || last.is_some() {
        out.extend_from_slice(b"<span class=\"sub\">");
        cell_value(out, first);
        if first.is_some() && last.is_some() {
            out.push(b' ');
        }
        cell_value(out, last);
        out.extend_from_slice(b"</span>");
    }
    for (class, f) in [
        ("tenant", Field::Tenant),
        ("ip", Field::SourceIp),
        ("app", Field::AppName),
        ("ctx", Field::AppContext),
        ("action", Field::ActionType),
        ("data", Field::ActionData),
        ("cat", Field::Category),
        ("o", Field::Outcome),
    ] {
        out.extend_from_slice(b"</td><td class=\"");
        out.extend_from_slice(class.as_bytes());
        out.extend_from_slice(b"\">");
        cell_value(out, r.get(f));
    }
    out.extend_from_slice(b"</td></tr><tr class=\"d\"><td colspan=\"11\">");
    let mut first = true;
    for f in DETAILS {
        if let Some(v) = r.get(f) {
            if !first {
                out.push(b' ');
            }
            first = false;
            out.extend_from_slice(b"<span class=\"kv\"><span class=\"k\">");
            out.extend_from_slice(f.spec().title.as_bytes());
            out.extend_from_slice(b":</span> ");
            cell_value(out, Some(v));
            out.extend_from_slice(b"</span>");
        }
    }
    if let Some(c) = &r.chain {
        if !first {
            out.push(b' ');
        }
        let mut hex = [0u8; 64];
        crate::store::chain::hex_into(c, &mut hex);
        out.extend_from_slice(b"<span class=\"kv\"><span class=\"k\">Chain:</span> <code class=\"h\">");
        out.extend_from_slice(&hex);
        out.extend_from_slice(b"</code></span>");
    }
    out.extend_from_slice(b"</td></tr></tbody>\n");
}

/// The end of the page: what the export held, and the script.
pub fn end(out: &mut Vec<u8>, s: &Summary) {
    if s.records == 0 {
        out.extend_from_slice(
            b"<tbody class=\"none\"><tr><td class=\"none\" colspan=\"11\">No record matches the selection.</td></tr></tbody>\n",
        );
    }
    out.extend_from_slice(b"</table></div>\n<p class=\"foot\" id=\"summary\">");
    match (s.first, s.last) {
        (Some(first), Some(last)) => out.extend_from_slice(
            format!(
                "This export holds {} record{}, ids {first}\u{2013}{last}, in id order.",
                s.records,
                if s.records == 1 { "" } else { "s" }
            )
            .as_bytes(),
        ),
        _ => out.extend_from_slice(b"This export holds no record."),
    }
    out.extend_from_slice(b"</p>\n<script>");
    out.extend_from_slice(JS.as_bytes());
    out.extend_from_slice(b"</script>\n</body>\n</html>\n");
}

/// A value isolated in a `<bdi>`; nothing for an absent field.
fn cell_value(out: &mut Vec<u8>, v: Option<&str>) {
    if let Some(v) = v {
        out.extend_from_slice(b"<bdi>");
        value(out, v);
        out.extend_from_slice(b"</bdi>");
    }
}

/// A time stamp, with break opportunities after the date and before the
/// offset for narrow printed columns (the text itself is unchanged).
fn timestamp(out: &mut Vec<u8>, ts: &str) {
    let plain = ts.bytes().all(|b| b.is_ascii_digit() || b"-:.+TZ".contains(&b));
    match (plain, ts.find('T')) {
        (true, Some(t)) => {
            let (date, time) = ts.split_at(t + 1);
            let zone = time.rfind(['+', '-', 'Z']).unwrap_or(time.len());
            let (time, zone) = time.split_at(zone);
            out.extend_from_slice(b"<bdi>");
            out.extend_from_slice(date.as_bytes());
            out.extend_from_slice(b"<wbr>");
            out.extend_from_slice(time.as_bytes());
            if !zone.is_empty() {
                out.extend_from_slice(b"<wbr>");
                out.extend_from_slice(zone.as_bytes());
            }
            out.extend_from_slice(b"</bdi>");
        }
        _ => cell_value(out, Some(ts)),
    }
}

/// Whether `c` is shown as an escape rather than as itself (see the module
/// documentation); line feed is not.
pub fn marked(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{9}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{ad}' | '\u{61c}' | '\u{180e}'
        | '\u{200b}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}' | '\u{fffe}' | '\u{ffff}'
        | '\u{e0000}'..='\u{e007f}')
}

/// Whether `c` is a bidirectional control.
pub fn bidi_control(c: char) -> bool {
    matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Bytes that need a look: markup characters, controls, and the lead bytes
/// of the marked characters beyond ASCII.
const fn special_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b != b'\n' as usize;
        b += 1;
    }
    t[0x7f] = true;
    t[b'<' as usize] = true;
    t[b'>' as usize] = true;
    t[b'&' as usize] = true;
    t[b'"' as usize] = true;
    t[b'\'' as usize] = true;
    // U+0080–U+00BF, U+061C, U+180E, U+2000–U+2FFF, U+FEFF and U+FFxx, U+E0000–U+E007F.
    t[0xc2] = true;
    t[0xd8] = true;
    t[0xe1] = true;
    t[0xe2] = true;
    t[0xef] = true;
    t[0xf3] = true;
    t
}
static SPECIAL: [bool; 256] = special_table();

/// Appends `s` as HTML element content: markup characters (quotes too) as
/// references, marked characters as visible escapes.
pub fn value(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !SPECIAL[b as usize] {
            i += 1;
            continue;
        }
        let rep: &[u8] = match b {
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'&' => b"&amp;",
            b'"' => b"&quot;",
            b'\'' => b"&#39;",
            _ => {
                // `i` is a char boundary: every byte before it was ASCII or
                // part of a whole char skipped below.
                let c = s[i..].chars().next().unwrap_or('\u{0}');
                let len = c.len_utf8();
                if !marked(c) {
                    i += len;
                    continue;
                }
                out.extend_from_slice(&bytes[start..i]);
                escape_char(out, c);
                i += len;
                start = i;
                continue;
            }
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(rep);
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// The visible escape of a marked character: `\u202E` (`\u{E0041}` beyond
/// U+FFFF) in a marked span.
fn escape_char(out: &mut Vec<u8>, c: char) {
    out.extend_from_slice(if bidi_control(c) { b"<span class=\"c b\">" } else { b"<span class=\"c\">" });
    let code = c as u32;
    if code > 0xffff {
        out.extend_from_slice(format!("\\u{{{code:X}}}").as_bytes());
    } else {
        out.extend_from_slice(format!("\\u{code:04X}").as_bytes());
    }
    out.extend_from_slice(b"</span>");
}

/// Appends `s` for a double-quoted attribute value or an element that holds
/// only text (`<title>`): references for markup characters, and controls as
/// `\uXXXX` text (no markup can go there).
fn escape_attr(out: &mut Vec<u8>, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.extend_from_slice(b"&lt;"),
            '>' => out.extend_from_slice(b"&gt;"),
            '&' => out.extend_from_slice(b"&amp;"),
            '"' => out.extend_from_slice(b"&quot;"),
            '\'' => out.extend_from_slice(b"&#39;"),
            c if marked(c) || c == '\n' => out.extend_from_slice(format!("\\u{:04X}", c as u32).as_bytes()),
            c => {
                let mut b = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> String {
        let mut out = Vec::new();
        value(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            v("<script>alert(1)</script> \"><img src=x onerror='a()'> & ]]>"),
            "&lt;script&gt;alert(1)&lt;/script&gt; &quot;&gt;&lt;img src=x onerror=&#39;a()&#39;&gt; &amp; ]]&gt;"
        );
    }

    #[test]
    fn controls_and_bidi_are_visible_escapes() {
        assert_eq!(
            v("Deleted user \u{202e}nimda\u{202c}"),
            "Deleted user <span class=\"c b\">\\u202E</span>nimda<span class=\"c b\">\\u202C</span>"
        );
        assert_eq!(v("a\nb\r\n\t"), "a\nb<span class=\"c\">\\u000D</span>\n<span class=\"c\">\\u0009</span>");
        assert_eq!(v("\u{0}\u{7f}\u{85}\u{9f}é"), {
            let s = |h: &str| format!("<span class=\"c\">\\u{h}</span>");
            format!("{}{}{}{}é", s("0000"), s("007F"), s("0085"), s("009F"))
        });
        assert_eq!(v("x\u{e0041}"), "x<span class=\"c\">\\u{E0041}</span>");
        // Text that only looks like the lead bytes of marked characters.
        assert_eq!(v("– ‘é’ € ½ 😀 \u{200d} \u{fffd}"), "– ‘é’ € ½ 😀 \u{200d} \u{fffd}");
    }

    #[test]
    fn every_marked_character_leaves_no_raw_copy() {
        for c in (0u32..=0x10ffff).filter_map(char::from_u32) {
            let out = v(&format!("a{c}b"));
            if marked(c) {
                assert!(!out.contains(c), "U+{:04X} written raw: {out:?}", c as u32);
                assert!(out.contains(&format!("{:04X}", c as u32)), "U+{:04X}: {out:?}", c as u32);
            } else if !matches!(c, '<' | '>' | '&' | '"' | '\'') {
                assert_eq!(out, format!("a{c}b"));
            }
        }
    }

    #[test]
    fn record_row_and_details() {
        let mut r = Record { id: 7, chain: Some([0xab; 32]), ..Default::default() };
        r.set(Field::Timestamp, "2026-11-22T09:45:37.120+01:00");
        r.set(Field::UserName, "bob");
        r.set(Field::LastName, "Brown");
        r.set(Field::AppName, "Suite");
        r.set(Field::ActionType, "Login");
        r.set(Field::Outcome, "failure");
        r.set(Field::Node, "pbx01");
        let mut out = Vec::new();
        record(&mut out, &r);
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("<tbody class=\"r f\"><tr><td class=\"id\">7</td>"), "{out}");
        assert!(out.contains("<td class=\"ts\"><bdi>2026-11-22T<wbr>09:45:37.120<wbr>+01:00</bdi></td>"), "{out}");
        assert!(out.contains("<bdi>bob</bdi><span class=\"sub\"><bdi>Brown</bdi></span>"), "{out}");
        assert!(out.contains("<td class=\"o\"><bdi>failure</bdi></td>"), "{out}");
        assert!(out.contains("<span class=\"k\">Node:</span> <bdi>pbx01</bdi>"), "{out}");
        assert!(out.contains(&format!("<code class=\"h\">{}</code>", "ab".repeat(32))), "{out}");
        assert_eq!(out.matches("<td").count(), 12, "{out}");
    }

    #[test]
    fn csp_hashes_match_the_embedded_style_and_script() {
        let mut out = Vec::new();
        header(&mut out, &Head { host: "h\"<x>", created: "c", ..Default::default() });
        end(&mut out, &Summary::default());
        let page = String::from_utf8(out).unwrap();
        let between = |a: &str, b: &str| {
            let s = &page[page.find(a).unwrap() + a.len()..];
            s[..s.find(b).unwrap()].to_owned()
        };
        let (style, script) = (between("<style>", "</style>"), between("<script>", "</script>"));
        assert!(page.contains(&format!("style-src 'sha256-{}'", sha256_b64(&style))));
        assert!(page.contains(&format!("script-src 'sha256-{}'", sha256_b64(&script))));
        assert!(page.contains("<title>Audit trail of h&quot;&lt;x&gt;, exported c</title>"));
        assert!(!style.contains("</") && !script.contains("</"), "no end tag inside the style or script");
    }

    #[test]
    fn the_xsl_report_has_the_same_stylesheet_and_allows_only_it() {
        let xsl = crate::STYLESHEET_XSL;
        assert!(
            xsl.contains(&format!("<style>{CSS}</style>")),
            "schema/audit-trail.xsl must embed src/html/viewer.css exactly (copy it between <style> and </style>)"
        );
        assert!(
            xsl.contains(&format!("default-src 'none'; style-src 'sha256-{}';", sha256_b64(CSS))),
            "the Content-Security-Policy of schema/audit-trail.xsl must carry the sha256 of viewer.css"
        );
        assert!(!CSS.contains('<') && !CSS.contains('&'), "the stylesheet must be plain text in XSLT too");
    }

    #[test]
    fn the_xsl_marks_the_same_characters() {
        // The XSL's list, read back from its character references.
        let xsl = crate::STYLESHEET_XSL;
        let start = xsl.find("<xsl:variable name=\"marked\" select=\"'").unwrap();
        let list = &xsl[start..];
        let list = &list[list.find('\'').unwrap() + 1..];
        let list = &list[..list.find('\'').unwrap()];
        let chars: Vec<char> = list
            .split(';')
            .filter(|s| !s.is_empty())
            .map(|r| char::from_u32(u32::from_str_radix(r.trim_start_matches("&#x"), 16).unwrap()).unwrap())
            .collect();
        // Every character XML 1.0 can carry raw, but the tag characters.
        let xml_chars = (0u32..0x10000)
            .filter_map(char::from_u32)
            .filter(|&c| (c >= ' ' || matches!(c, '\t' | '\r')) && !matches!(c, '\u{fffe}' | '\u{ffff}'));
        let expected: Vec<char> = xml_chars.filter(|&c| marked(c)).collect();
        let mut got = chars.clone();
        got.sort();
        assert_eq!(got, expected);
        let nbidi = chars.iter().take_while(|&&c| bidi_control(c)).count();
        assert_eq!(chars.iter().filter(|&&c| bidi_control(c)).count(), nbidi, "bidi controls come first");
        assert!(xsl.contains(&format!("<xsl:variable name=\"nbidi\" select=\"{nbidi}\"/>")));
        let codes: String = chars.iter().map(|&c| format!("{:04X}", c as u32)).collect();
        assert!(xsl.contains(&format!("<xsl:variable name=\"codes\" select=\"'{codes}'\"/>")));
    }
}
