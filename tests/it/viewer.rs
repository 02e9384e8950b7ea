//! Reading the audit trail in a browser: `export --format html` and the
//! XSL report, checked in a real headless Chromium (`data/browser.py`, the
//! DevTools protocol over a pipe) and, for print, through its PDF read back
//! by pdftotext (poppler-utils).
//!
//! - The page opens from a file: URL as a table of the records.
//! - Hostile values (markup, `]]>`, bidi overrides, every control character;
//!   examples and seeded random mixtures, AUDIT_TRAIL_TEST_SEED) appear in
//!   the rendered DOM exactly as the documented visible escapes, inside
//!   `<bdi>`; no element, attribute or script of a record's making exists
//!   or runs, with scripts on and off.
//! - The in-page script sorts, filters and pages; with scripts off every
//!   record is in the table.
//! - Printed on A4 and on Letter portrait, every column header and every
//!   record's id and outcome are on paper, and no word is past the page edge.
//! - The XSL report (xsltproc) isolates values and marks bidi controls the
//!   same way, and prints the same.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::fixtures::TEXT_FIELDS;
use crate::support::harness::{Env, Rng, seed};

const BROWSER: &str = include_str!("data/browser.py");

/// Stops the test with a clear message when a tool the tests need is missing.
#[track_caller]
pub(crate) fn need(tool: &str, package: &str) {
    let ok = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|o| o.status.success());
    assert!(ok, "{tool} is required by the tests (Debian package {package}; .ci/run installs it)");
}

fn env() -> Env {
    Env::with_config("host_name = \"pbx01\"\nevent_mask = \"all\"\n")
}

fn append(env: &Env, records: &[Value]) {
    let mut input = Vec::new();
    for r in records {
        input.extend(serde_json::to_vec(r).unwrap());
        input.push(b'\n');
    }
    let run = env.run_with_input(&["append", "--json", "-"], &input).success();
    assert!(run.stdout.contains(&format!("appended {} records", records.len())), "{}", run.stdout);
}

/// `export --format html` with `args` into a file; returns its path.
fn export_html(env: &Env, name: &str, args: &[&str]) -> PathBuf {
    let out = env.dir.path().join(name);
    let mut all = vec!["export", "--format", "html", "-o", out.to_str().unwrap()];
    all.extend_from_slice(args);
    env.run(&all).success();
    out
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.canonicalize().unwrap().display())
}

/// Runs `data/browser.py` on `url`; returns its report (results, violations,
/// dialogs, console, errors).
fn browser(dir: &Path, url: &str, javascript: bool, actions: Vec<Value>) -> Value {
    need("chromium", "chromium");
    let cfg = dir.join(format!("browser-{}.json", rand_suffix()));
    std::fs::write(
        &cfg,
        serde_json::to_vec(&json!({"url": url, "javascript": javascript, "actions": actions})).unwrap(),
    )
    .unwrap();
    let out = Command::new("python3")
        .arg("-c")
        .arg(BROWSER)
        .arg(&cfg)
        .output()
        .expect("python3 is required by the tests (Debian package python3)");
    assert!(
        out.status.success(),
        "the browser driver failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("browser driver output: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The characters the README documents as shown escaped, written here again
/// from the documentation (not taken from the product).
fn shown_escaped(c: char) -> bool {
    let u = c as u32;
    (u < 0x20 && c != '\n')
        || (0x7f..=0x9f).contains(&u)
        || [0xad, 0x61c, 0x180e, 0x200b, 0x200e, 0x200f, 0xfeff, 0xfffe, 0xffff].contains(&u)
        || (0x2028..=0x202e).contains(&u)
        || (0x2060..=0x2064).contains(&u)
        || (0x2066..=0x206f).contains(&u)
        || (0xfff9..=0xfffb).contains(&u)
        || (0xe0000..=0xe007f).contains(&u)
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The text a value must show in the page: each escaped character as
/// `\uXXXX` (`\u{XXXXX}` beyond U+FFFF), everything else as itself.
pub(crate) fn shown(v: &str) -> String {
    v.chars()
        .map(|c| match (shown_escaped(c), c as u32) {
            (false, _) => c.to_string(),
            (true, u) if u > 0xffff => format!("\\u{{{u:X}}}"),
            (true, u) => format!("\\u{u:04X}"),
        })
        .collect()
}

fn record(pairs: &[(&str, &str)]) -> Value {
    Value::Object(pairs.iter().map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned()))).collect())
}

/// Elements the page is made of; anything else came from a record.
const PAGE_ELEMENTS: &[&str] = &[
    "html", "head", "meta", "title", "style", "body", "h1", "dl", "div", "dt", "dd", "p", "span", "code", "noscript",
    "table", "colgroup", "col", "thead", "tr", "th", "tbody", "td", "bdi", "wbr", "script", "label", "input", "select",
    "option", "datalist", "button",
];

/// What the page shows, read from the DOM: tag names, scripts, event-handler
/// attributes, the records (cells, detail line, escapes) and the table text.
const READ_DOM: &str = r#"JSON.stringify({
  tags: Array.from(new Set(Array.from(document.querySelectorAll('*')).map(e => e.localName))),
  scripts: document.scripts.length,
  handlers: Array.from(document.querySelectorAll('*')).filter(e => Array.from(e.attributes).some(a => /^on/i.test(a.name) || /javascript:/i.test(a.value))).length,
  pwned: window.__pwned === undefined ? null : String(window.__pwned),
  title: document.title,
  toolsShown: !document.getElementById('tools') || !document.getElementById('tools').hidden,
  rows: Array.from(document.querySelectorAll('table.at tbody.r')).map(b => ({
    cells: Array.from(b.rows[0].cells).map(c => c.textContent),
    unisolated: Array.from(b.rows[0].cells).slice(1).filter(c => c.textContent !== '' && !c.querySelector('bdi')).length,
    detail: b.rows[1] ? b.rows[1].textContent : '',
    escapes: b.querySelectorAll('span.c').length,
    bidi: b.querySelectorAll('span.c.b').length
  })),
  text: Array.from(document.querySelectorAll('table.at')).map(t => t.textContent).join(''),
  summary: (document.getElementById('summary') || {}).textContent || ''
})"#;

fn read_dom(report: &Value, index: usize) -> Value {
    let s = report["results"][index].as_str().unwrap_or_else(|| panic!("no DOM read in {report}"));
    serde_json::from_str(s).unwrap()
}

/// Checks the DOM read by [`READ_DOM`] against the stored records (from
/// `export --format json`): every value shown as [`shown`] gives it, in its
/// `<bdi>`, with one marked escape per escaped character; nothing a record
/// holds became an element, an attribute or a script.
#[track_caller]
fn check_dom(dom: &Value, stored: &[Value], what: &str, page_scripts: usize) {
    let tags: Vec<&str> = dom["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    for t in &tags {
        assert!(PAGE_ELEMENTS.contains(t), "{what}: a <{t}> element from a record exists in the page");
    }
    assert_eq!(dom["scripts"], json!(page_scripts), "{what}: scripts in the page");
    assert_eq!(dom["handlers"], json!(0), "{what}: elements with event handlers or javascript: URLs");
    assert_eq!(dom["pwned"], Value::Null, "{what}: a record's script ran");
    let text = dom["text"].as_str().unwrap();
    if let Some(c) = text.chars().find(|&c| shown_escaped(c)) {
        panic!("{what}: the table text holds U+{:04X} itself instead of its visible escape", c as u32);
    }
    let rows = dom["rows"].as_array().unwrap();
    assert_eq!(rows.len(), stored.len(), "{what}: one table body per record");
    for (row, rec) in rows.iter().zip(stored) {
        let id = rec["id"].as_u64().unwrap();
        let get = |f: &str| rec[f].as_str().unwrap_or("");
        let cells: Vec<&str> = row["cells"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        assert_eq!(cells.len(), 11, "{what}: record {id}: columns");
        assert_eq!(cells[0], id.to_string(), "{what}: id column");
        let mut user = shown(get("user_name"));
        if rec.get("first_name").is_some() || rec.get("last_name").is_some() {
            user.push_str(&shown(get("first_name")));
            if rec.get("first_name").is_some() && rec.get("last_name").is_some() {
                user.push(' ');
            }
            user.push_str(&shown(get("last_name")));
        }
        let expected = [
            shown(get("timestamp")),
            user,
            shown(get("tenant")),
            shown(get("source_ip")),
            shown(get("app_name")),
            shown(get("app_context")),
            shown(get("action_type")),
            shown(get("action_data")),
            shown(get("category")),
            shown(get("outcome")),
        ];
        for (k, (got, want)) in cells[1..].iter().zip(&expected).enumerate() {
            assert_eq!(got, want, "{what}: record {id}, column {}", k + 2);
        }
        assert_eq!(row["unisolated"], json!(0), "{what}: record {id}: every value sits in a <bdi>");
        let detail = row["detail"].as_str().unwrap();
        let mut at = 0;
        for (field, title) in [
            ("detail_level", "Detail Level"),
            ("node", "Node"),
            ("auth_type", "Auth Type"),
            ("session_id", "Session Id"),
        ] {
            if let Some(v) = rec[field].as_str() {
                let want = format!("{title}: {}", shown(v));
                let pos = detail[at..]
                    .find(&want)
                    .unwrap_or_else(|| panic!("{what}: record {id}: detail line {detail:?} lacks {want:?}"));
                at += pos + want.len();
            }
        }
        let all: String = rec.as_object().unwrap().values().filter_map(|v| v.as_str()).collect();
        let escaped = all.chars().filter(|&c| shown_escaped(c)).count();
        let bidi = all.chars().filter(|&c| is_bidi_control(c)).count();
        assert_eq!(row["escapes"], json!(escaped), "{what}: record {id}: one marked escape per escaped character");
        assert_eq!(row["bidi"], json!(bidi), "{what}: record {id}: bidi controls marked as such");
    }
}

/// The stored records, as `export --all --format json` gives them.
fn stored(env: &Env) -> Vec<Value> {
    env.export_all_lines().into_iter().map(|(_, l)| serde_json::from_str(&l).unwrap()).collect()
}

#[test]
fn html_export_opens_from_a_file_url_in_chromium_as_the_records_table() {
    need("chromium", "chromium");
    // The records of the case where the sealed .xml opened from disk shows a
    // blank page (the browser refuses its XSLT stylesheet on file: URLs).
    let env = env();
    append(
        &env,
        &[
            record(&[
                ("app_name", "System Admin Tool"),
                ("action_type", "Login"),
                ("user_name", "alice"),
                ("source_ip", "10.1.1.10"),
                ("category", "presence"),
                ("outcome", "success"),
            ]),
            record(&[
                ("app_name", "System Admin Tool"),
                ("action_type", "Login failure"),
                ("user_name", "bob"),
                ("category", "failure"),
                ("outcome", "failure"),
            ]),
        ],
    );
    env.run(&["rotate"]).success();
    let page = export_html(&env, "report.html", &["--all"]);
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(file_url(&page))
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("<table class=\"at\" id=\"records\">"), "no records table in the DOM:\n{dom}");
    for th in ["ID", "Time Stamp", "User Name", "Source IP", "App Name", "Action Type", "Action Data", "Outcome"] {
        assert!(dom.contains(&format!(">{th}</")), "column {th} missing:\n{dom}");
    }
    assert_eq!(dom.matches("<tbody class=\"r ").count(), 2, "{dom}");
    for cell in ["<bdi>alice</bdi>", "<bdi>bob</bdi>", "<bdi>Login failure</bdi>", "<bdi>10.1.1.10</bdi>"] {
        assert!(dom.contains(cell), "{cell} missing:\n{dom}");
    }
    assert!(dom.contains("<td class=\"o\"><bdi>failure</bdi></td>"), "{dom}");
    assert!(dom.contains("Host:</dt> <dd><bdi>pbx01</bdi>"), "{dom}");
    assert!(dom.contains("This export holds 2 records, ids 1–2"), "{dom}");
}

pub(crate) fn hostile_examples() -> Vec<Value> {
    let c0: String = (0u32..0x20).chain([0x7f]).chain(0x80..0xa0).filter_map(char::from_u32).collect();
    let bidi: String =
        "\u{61c}\u{200e}\u{200f}\u{202a}\u{202b}\u{202c}\u{202d}\u{202e}\u{2066}\u{2067}\u{2068}\u{2069}".into();
    let script = "<script>window.__pwned='script';alert(1)</script>";
    let img = "\"><img src=x onerror=\"window.__pwned='img'\">";
    vec![
        record(&[
            ("app_name", "System Admin Tool"),
            ("action_type", "Delete"),
            ("user_name", "mallory"),
            ("action_data", "Deleted user \u{202e}nimda\u{202c}"),
        ]),
        record(&[
            ("app_name", script),
            ("action_type", img),
            ("user_name", "</bdi></td></tr></tbody></table><script>window.__pwned='break-out'</script>"),
            ("first_name", "<svg onload=\"window.__pwned='svg'\">"),
            ("last_name", "<iframe srcdoc=\"<script>parent.__pwned=1</script>\"></iframe>"),
            ("tenant", "<a href=\"javascript:window.__pwned='a'\">x</a>"),
            ("app_context", "]]><![CDATA[ <!-- --> &lt;script&gt; &amp; &#x202E;"),
            ("action_data", "</script><script>window.__pwned='end'</script><style>*{display:none}</style><textarea>"),
            ("category", "<plaintext>"),
            (
                "node",
                "<base href=\"http://127.0.0.1:9/\"><meta http-equiv=\"refresh\" content=\"0;url=http://127.0.0.1:9/\">",
            ),
            ("auth_type", "'\"`${window.__pwned='tpl'}`{{7*7}}"),
            ("session_id", "<img src=x onerror=alert(1)>"),
            ("outcome", "failure"),
        ]),
        record(&[
            ("app_name", &format!("App{c0}")),
            ("action_type", &format!("Act{bidi}")),
            ("user_name", &format!("u{c0}{bidi}")),
            (
                "action_data",
                &format!("every control: {c0} every bidi control: {bidi}\nline 2\r\nline 3\u{2028}\u{2029}"),
            ),
            ("tenant", "ad\u{200b}min \u{feff}\u{ad}\u{2060}\u{180e}\u{fff9}\u{e0041}\u{e007f}"),
            ("detail_level", &c0),
            ("outcome", "success"),
        ]),
        record(&[
            ("app_name", "RTL"),
            ("action_type", "Login"),
            ("user_name", "\u{202e}nimda"),
            ("action_data", "RTL: \u{202e}evil\u{202c} end; \u{2067}isolate; Hebrew שלום, Arabic مرحبا 123"),
        ]),
    ]
}

/// Random values made of hostile pieces.
pub(crate) fn hostile_mixtures(seed: u64, n: usize) -> Vec<Value> {
    let mut atoms: Vec<String> = (0u32..0x20)
        .chain([0x7f])
        .chain(0x80..0xa0)
        .chain([0x61c, 0x200b, 0x200c, 0x200d, 0x200e, 0x200f, 0x2028, 0x2029])
        .chain(0x202a..0x202f)
        .chain(0x2060..0x2070)
        .chain([0xad, 0x180e, 0xfeff, 0xfff9, 0xfffd, 0xe0041, 0xe007f])
        .filter_map(char::from_u32)
        .map(String::from)
        .collect();
    for s in [
        "<",
        ">",
        "&",
        "\"",
        "'",
        "]]>",
        "<script>",
        "</script>",
        "<img src=x onerror=alert(1)>",
        "</td>",
        "</bdi>",
        "&amp;",
        "&#x202E;",
        "\\u202E",
        "<!--",
        "javascript:",
        "\n",
        "\r\n",
        " ",
        "a",
        "é",
        "😀",
        "ש",
        "م",
        "1",
        "\u{2400}",
    ] {
        atoms.push(s.into());
    }
    let mut rng = Rng(seed | 1);
    (0..n)
        .map(|_| {
            let mut m = serde_json::Map::new();
            for f in TEXT_FIELDS {
                let mandatory = f == "app_name" || f == "action_type";
                if !mandatory && rng.below(3) == 0 {
                    continue;
                }
                let len = if rng.below(15) == 0 { 200 + rng.below(600) } else { rng.below(12) };
                let mut v = String::from(if mandatory { "A" } else { "" });
                for _ in 0..len {
                    v.push_str(&atoms[rng.below(atoms.len())]);
                }
                m.insert(f.into(), Value::String(v));
            }
            match rng.below(3) {
                0 => m.insert("outcome".into(), json!("failure")),
                1 => m.insert("outcome".into(), json!("success")),
                _ => None,
            };
            if rng.below(2) == 0 {
                m.insert("source_ip".into(), json!("2001:db8::42"));
            }
            Value::Object(m)
        })
        .collect()
}

#[test]
fn hostile_values_are_shown_escaped_and_isolated_and_never_become_markup_or_code() {
    let seed = seed();
    let env = env();
    let mut records = hostile_examples();
    records.extend(hostile_mixtures(seed, 40));
    append(&env, &records);
    let stored = stored(&env);
    assert_eq!(stored.len(), records.len());
    let page = export_html(&env, "hostile.html", &["--all"]);
    let raw = std::fs::read_to_string(&page).unwrap();
    // In the file itself: one script (the page's own), no markup from a record,
    // and no escaped character written as itself.
    assert_eq!(raw.to_ascii_lowercase().matches("<script").count(), 1, "seed {seed}: one <script> in the file");
    for bad in ["<img", "<svg", "<iframe", "<textarea", "<plaintext", "<base", "<a href", "<!--", "]]>"] {
        assert!(!raw.contains(bad), "seed {seed}: {bad} written as markup");
    }
    if let Some(c) = raw.chars().find(|&c| shown_escaped(c)) {
        panic!("seed {seed}: U+{:04X} is written into the page as itself", c as u32);
    }
    let url = file_url(&page);
    let dir = env.dir.path();
    let report = browser(dir, &url, true, vec![json!({"eval": READ_DOM})]);
    let what = format!("scripts on, seed {seed}");
    check_dom(&read_dom(&report, 0), &stored, &what, 1);
    assert!(read_dom(&report, 0)["toolsShown"].as_bool().unwrap(), "{what}: the page's own script ran");
    assert!(read_dom(&report, 0)["title"].as_str().unwrap().starts_with("Audit trail of pbx01, exported "));
    for key in ["violations", "dialogs", "errors"] {
        assert_eq!(report[key], json!([]), "{what}: {key}: {report}");
    }
    let report = browser(dir, &url, false, vec![json!({"eval": READ_DOM})]);
    let what = format!("scripts off, seed {seed}");
    check_dom(&read_dom(&report, 0), &stored, &what, 1);
    assert!(!read_dom(&report, 0)["toolsShown"].as_bool().unwrap(), "{what}: no controls that need scripts");
    assert_eq!(report["dialogs"], json!([]), "{what}");
}

#[test]
fn the_page_sorts_filters_and_pages_and_shows_everything_without_scripts() {
    let env = env();
    let n = 613;
    let records: Vec<Value> = (0..n)
        .map(|i| {
            let user = format!("user{}", i % 37);
            let tenant = ["acme", "globex", "initech"][i % 3];
            let outcome = if i % 5 == 0 { "failure" } else { "success" };
            record(&[
                ("app_name", if i % 2 == 0 { "System Admin Tool" } else { "Attendant Console" }),
                ("action_type", "Login"),
                ("user_name", &user),
                ("tenant", tenant),
                ("category", if i % 7 == 0 { "config" } else { "presence" }),
                ("outcome", outcome),
                ("action_data", &format!("record {i}")),
            ])
        })
        .collect();
    append(&env, &records);
    let page = export_html(&env, "many.html", &["--all"]);
    let wait = |js: &str| {
        json!({"eval": format!("new Promise(r => {{ {js}; setTimeout(() => r(JSON.stringify({{
            ids: Array.from(document.querySelectorAll('table.at tbody.r')).map(b => Number(b.rows[0].cells[0].textContent)),
            users: Array.from(document.querySelectorAll('table.at tbody.r')).map(b => b.rows[0].cells[2].textContent),
            view: document.getElementById('view').textContent }})), 150) }})")})
    };
    let set = |sel: &str, v: &str, ev: &str| {
        format!(
            "(function () {{ var e = document.querySelector({sel:?}); e.value = {v:?}; e.dispatchEvent(new Event({ev:?})); }})()"
        )
    };
    let filter = |label: &str| format!("#tools input[aria-label=\"Filter {label}\"]");
    let actions = vec![
        wait(""),
        wait(&set("#tools select:not([aria-label])", "0", "change")),
        wait(&set("#tools input[type=search]:not([aria-label])", "USER7", "input")),
        wait(&format!(
            "{}; {}; {}",
            set("#tools input[type=search]:not([aria-label])", "", "input"),
            set("#tools select[aria-label=\"Filter Outcome\"]", "failure", "change"),
            set(&filter("Tenant"), "acme", "input")
        )),
        wait(&format!(
            "{}; {}; document.querySelectorAll('#records th')[0].click(); document.querySelectorAll('#records th')[0].click()",
            set("#tools select[aria-label=\"Filter Outcome\"]", "", "change"),
            set(&filter("Tenant"), "", "input")
        )),
        wait("document.querySelectorAll('#records th')[2].click()"),
        wait(&format!(
            "{}; window.dispatchEvent(new Event('beforeprint'))",
            set("#tools select:not([aria-label])", "100", "change")
        )),
        wait("window.dispatchEvent(new Event('afterprint'))"),
    ];
    let report = browser(env.dir.path(), &file_url(&page), true, actions);
    let step = |k: usize| -> Value { serde_json::from_str(report["results"][k].as_str().unwrap()).unwrap() };
    let ids =
        |k: usize| -> Vec<u64> { step(k)["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect() };
    let view = |k: usize| step(k)["view"].as_str().unwrap().to_owned();

    assert_eq!(ids(0), (1..=500).collect::<Vec<u64>>(), "first page of 500, in id order");
    assert!(view(0).starts_with("Showing records 1–500 of 613"), "{}", view(0));
    assert_eq!(ids(1).len(), n, "all rows: {}", view(1));
    // Full text, ignoring case: user7, and user7x for x in 0..=6.
    let text: Vec<u64> =
        (0..n).filter(|i| format!("user{}", i % 37).starts_with("user7")).map(|i| i as u64 + 1).collect();
    assert_eq!(ids(2), text, "{}", view(2));
    assert!(view(2).contains(&format!("Showing all {} records that match, of 613", text.len())), "{}", view(2));
    let both: Vec<u64> = (0..n).filter(|i| i % 5 == 0 && i % 3 == 0).map(|i| i as u64 + 1).collect();
    assert_eq!(ids(3), both, "outcome failure and tenant acme: {}", view(3));
    assert_eq!(ids(4), (1..=n as u64).rev().collect::<Vec<u64>>(), "sorted by id, descending");
    let users: Vec<String> =
        step(5)["users"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    let number = |u: &str| u.trim_start_matches("user").parse::<u32>().unwrap();
    assert!(users.windows(2).all(|w| number(&w[0]) <= number(&w[1])), "sorted by user name (numbers as numbers)");
    assert_eq!(users.len(), n);
    assert_eq!(ids(6).len(), n, "printing shows every matching record, not one page");
    assert_eq!(ids(7).len(), 100, "after printing, pages of 100 again");
    for key in ["violations", "dialogs", "errors"] {
        assert_eq!(report[key], json!([]), "{key}: {report}");
    }

    // Without scripts (and so without timers): every record, in id order,
    // in tables of about 512 records.
    let read =
        "Array.from(document.querySelectorAll('table.at tbody.r')).map(b => Number(b.rows[0].cells[0].textContent))";
    let tables = "document.querySelectorAll('div.chunk > table.at').length";
    let report =
        browser(env.dir.path(), &file_url(&page), false, vec![json!({ "eval": read }), json!({ "eval": tables })]);
    assert_eq!(report["results"][1], json!(2), "613 records in two tables");
    let got: Vec<u64> = report["results"][0].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(got, (1..=n as u64).collect::<Vec<u64>>());
}

/// One word of a PDF page as pdftotext -bbox gives it.
#[derive(Debug)]
pub(crate) struct Word {
    pub x0: f64,
    pub x1: f64,
    pub text: String,
}

pub(crate) struct Page {
    pub width: f64,
    pub words: Vec<Word>,
}

pub(crate) fn pdf_pages(pdf: &Path) -> Vec<Page> {
    need("pdftotext", "poppler-utils");
    let out = Command::new("pdftotext").arg("-bbox").arg(pdf).arg("-").output().expect("pdftotext");
    assert!(out.status.success(), "pdftotext: {}", String::from_utf8_lossy(&out.stderr));
    let html = String::from_utf8_lossy(&out.stdout);
    let attr = |tag: &str, name: &str| -> f64 {
        let k = format!("{name}=\"");
        let s = &tag[tag.find(&k).unwrap() + k.len()..];
        s[..s.find('"').unwrap()].parse().unwrap()
    };
    let mut pages = Vec::new();
    for chunk in html.split("<page ").skip(1) {
        let head = &chunk[..chunk.find('>').unwrap()];
        let mut page = Page { width: attr(head, "width"), words: Vec::new() };
        for w in chunk.split("<word ").skip(1) {
            let tag = &w[..w.find('>').unwrap()];
            let text = &w[w.find('>').unwrap() + 1..w.find("</word>").unwrap()];
            let text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&");
            page.words.push(Word { x0: attr(tag, "xMin"), x1: attr(tag, "xMax"), text });
        }
        pages.push(page);
    }
    pages
}

/// Every column header on the first page, every record's id in the ID
/// column and its outcome in the Outcome column, nothing past the page edge.
#[track_caller]
fn check_printed(pdf: &Path, stored: &[Value], what: &str) {
    let pages = pdf_pages(pdf);
    assert!(!pages.is_empty(), "{what}: empty PDF");
    let headers = ["ID", "Time Stamp", "User Name", "Tenant", "Source IP", "App Name", "App Context", "Action Type"];
    let headers = headers.iter().chain(&["Action Data", "Category", "Outcome"]);
    let first: Vec<&str> = pages[0].words.iter().map(|w| w.text.as_str()).collect();
    for h in headers {
        for word in h.split(' ') {
            assert!(first.contains(&word), "{what}: header {h:?} is not on the first page: {first:?}");
        }
    }
    let (mut ids, mut success, mut failure) = (Vec::new(), 0, 0);
    for (k, p) in pages.iter().enumerate() {
        for w in &p.words {
            assert!(
                w.x0 >= -0.5 && w.x1 <= p.width + 0.5,
                "{what}: page {}: {:?} is cut at the page edge ({}..{} of {})",
                k + 1,
                w.text,
                w.x0,
                w.x1,
                p.width
            );
        }
        let Some(outcome) = p.words.iter().find(|w| w.text == "Outcome") else { continue };
        let time = p.words.iter().find(|w| w.text == "Time").expect("Time Stamp header on every page");
        for w in &p.words {
            if w.x0 >= outcome.x0 - 1.0 && w.text == "success" {
                success += 1;
            }
            if w.x0 >= outcome.x0 - 1.0 && w.text == "failure" {
                failure += 1;
            }
            if w.x1 <= time.x0 && w.text.bytes().all(|b| b.is_ascii_digit()) {
                ids.push(w.text.parse::<u64>().unwrap());
            }
        }
    }
    let count = |o: &str| stored.iter().filter(|r| r["outcome"] == o).count();
    assert_eq!(success, count("success"), "{what}: outcomes 'success' in the Outcome column");
    assert_eq!(failure, count("failure"), "{what}: outcomes 'failure' in the Outcome column");
    for r in stored {
        let id = r["id"].as_u64().unwrap();
        assert!(ids.contains(&id), "{what}: record {id} has no id in the ID column");
    }
}

fn wide_records() -> Vec<Value> {
    (0..24)
        .map(|i| {
            let long = |p: &str, n: usize| format!("{p}{}", "x".repeat(n));
            let data = if i % 4 == 0 { long("blob-", 900) } else { format!("Changed setting {i} from a to b") };
            record(&[
                ("app_name", &long("ApplicationNameWithoutSpaces", 30)),
                ("app_context", &long("Context", 40)),
                ("action_type", &long("ActionTypeWithoutSpaces", 25)),
                ("user_name", &long("user.name.without.any.space.", 30)),
                ("first_name", "Bartholomew"),
                ("last_name", &long("Lastname", 30)),
                ("tenant", &long("tenant-", 40)),
                ("source_ip", if i % 2 == 0 { "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" } else { "203.0.113.254" }),
                ("action_data", &data),
                ("category", &long("categorywithoutspaces", 20)),
                ("outcome", if i % 3 == 0 { "failure" } else { "success" }),
                ("node", &long("node-", 60)),
                ("auth_type", "LDAP"),
                ("session_id", &long("session-", 120)),
            ])
        })
        .collect()
}

const A4: (f64, f64) = (8.27, 11.69);
const LETTER: (f64, f64) = (8.5, 11.0);

fn print_actions(dir: &Path, name: &str) -> (Vec<Value>, [PathBuf; 2]) {
    let a4 = dir.join(format!("{name}-a4.pdf"));
    let letter = dir.join(format!("{name}-letter.pdf"));
    let actions = vec![
        json!({"pdf": a4.to_str().unwrap(), "width": A4.0, "height": A4.1}),
        json!({"pdf": letter.to_str().unwrap(), "width": LETTER.0, "height": LETTER.1}),
    ];
    (actions, [a4, letter])
}

#[test]
fn printed_on_a4_and_letter_portrait_no_column_is_cut() {
    let env = env();
    append(&env, &wide_records());
    env.run(&["rotate"]).success();
    let stored = stored(&env);
    let dir = env.dir.path();

    // The HTML export, at both paper sizes, and as Chromium prints by default.
    let page = export_html(&env, "print.html", &["--all"]);
    let (actions, [a4, letter]) = print_actions(dir, "export");
    let report = browser(dir, &file_url(&page), true, actions);
    assert_eq!(report["violations"], json!([]), "{report}");
    check_printed(&a4, &stored, "HTML export on A4");
    check_printed(&letter, &stored, "HTML export on Letter");
    let plain = dir.join("plain.pdf");
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer"])
        .arg(format!("--print-to-pdf={}", plain.display()))
        .arg(file_url(&page))
        .output()
        .expect("run chromium");
    assert!(plain.exists(), "chromium --print-to-pdf wrote nothing: {}", String::from_utf8_lossy(&out.stderr));
    check_printed(&plain, &stored, "HTML export, chromium --print-to-pdf");

    // The XSL report of the sealed file (xsltproc), the same way.
    need("xsltproc", "xsltproc");
    let sealed = env.sealed_files();
    let report_html = dir.join("xsl-report.html");
    let out = Command::new("xsltproc")
        .arg(env.sealed_dir().join("audit-trail.xsl"))
        .arg(&sealed[0])
        .output()
        .expect("run xsltproc");
    assert!(out.status.success(), "xsltproc: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&report_html, &out.stdout).unwrap();
    let (actions, [a4, letter]) = print_actions(dir, "xsl");
    let report = browser(dir, &file_url(&report_html), true, actions);
    assert_eq!(report["violations"], json!([]), "the report's own stylesheet is allowed: {report}");
    check_printed(&a4, &stored, "XSL report on A4");
    check_printed(&letter, &stored, "XSL report on Letter");
}

#[test]
fn xsl_report_isolates_values_and_shows_bidi_and_control_characters() {
    need("xsltproc", "xsltproc");
    let env = env();
    // Values XML carries as they are (the XSL marks them) and ones it cannot
    // (C0 controls: base64 fields, shown as such).
    let marked_in_xml: String = "\t\r\u{7f}\u{85}\u{9f}\u{ad}\u{61c}\u{200b}\u{200e}\u{200f}\u{2028}\u{2029}\
        \u{202a}\u{202b}\u{202c}\u{202d}\u{202e}\u{2060}\u{2066}\u{2067}\u{2068}\u{2069}\u{206f}\u{feff}\u{fffb}"
        .into();
    let many = "a\u{202e}".repeat(2_000);
    let records = vec![
        record(&[
            ("app_name", "System Admin Tool"),
            ("action_type", "Delete"),
            ("user_name", "mallory"),
            ("action_data", "Deleted user \u{202e}nimda\u{202c}"),
        ]),
        record(&[
            ("app_name", "<script>window.__pwned=1</script>"),
            ("action_type", "\"><img src=x onerror=\"window.__pwned=2\">"),
            ("user_name", &format!("u{marked_in_xml}u")),
            ("tenant", "]]> &amp; <!-- -->"),
            ("action_data", &format!("RTL: \u{202e}evil\u{202c} end\n{marked_in_xml}\nשלום")),
            ("outcome", "failure"),
        ]),
        record(&[("app_name", "Many"), ("action_type", "Change"), ("action_data", &many)]),
        record(&[("app_name", "Base64"), ("action_type", "Change"), ("action_data", "NUL \u{0} here")]),
    ];
    append(&env, &records);
    env.run(&["rotate"]).success();
    let stored = stored(&env);
    let out = Command::new("xsltproc")
        .arg(env.sealed_dir().join("audit-trail.xsl"))
        .arg(&env.sealed_files()[0])
        .output()
        .expect("run xsltproc");
    assert!(out.status.success(), "xsltproc: {}", String::from_utf8_lossy(&out.stderr));
    let report = env.dir.path().join("report.html");
    std::fs::write(&report, &out.stdout).unwrap();
    let html = String::from_utf8(out.stdout).unwrap();
    assert!(html.contains("unicode-bidi: isolate"), "the report isolates values");
    assert!(
        html.contains("Deleted user <span class=\"c b\">\\u202E</span>nimda<span class=\"c b\">\\u202C</span>"),
        "the override is shown, not applied"
    );
    let dom = browser(env.dir.path(), &file_url(&report), true, vec![json!({"eval": READ_DOM})]);
    assert_eq!(dom["violations"], json!([]), "{dom}");
    let read = read_dom(&dom, 0);
    // The base64 field is shown as such by the XSL: compare the others.
    let (b64, plain): (Vec<_>, Vec<_>) = read["rows"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&stored)
        .partition(|(_, r)| r["action_data"].as_str().is_some_and(|v| v.contains('\u{0}')));
    let mut checked = read.clone();
    checked["rows"] = Value::Array(plain.iter().map(|(row, _)| (*row).clone()).collect());
    let plain_stored: Vec<Value> = plain.iter().map(|(_, r)| (*r).clone()).collect();
    check_dom(&checked, &plain_stored, "XSL report", 0);
    let (row, _) = b64[0];
    assert!(row["cells"][8].as_str().unwrap().starts_with("[base64] "), "{row}");

    // A long value made only of overrides (100,000): every one marked,
    // without exhausting xsltproc's recursion depth (a 1 MiB value takes a
    // few seconds the same way).
    let env = self::env();
    append(
        &env,
        &[record(&[("app_name", "Max"), ("action_type", "Change"), ("action_data", &"\u{202e}".repeat(100_000))])],
    );
    env.run(&["rotate"]).success();
    let out = Command::new("xsltproc")
        .arg(env.sealed_dir().join("audit-trail.xsl"))
        .arg(&env.sealed_files()[0])
        .output()
        .expect("run xsltproc");
    assert!(out.status.success(), "xsltproc: {}", String::from_utf8_lossy(&out.stderr));
    let html = String::from_utf8(out.stdout).unwrap();
    let table = &html[html.find("<table").unwrap()..];
    assert_eq!(table.matches("<span class=\"c b\">\\u202E</span>").count(), 100_000);
    assert!(!html.contains('\u{202e}'));
}

#[test]
fn html_export_states_its_selection_and_reads_archived_files() {
    let env = env();
    let rec = |user: &str, i: usize| {
        record(&[
            ("app_name", "Suite"),
            ("action_type", "Login"),
            ("user_name", user),
            ("action_data", &format!("login {i}")),
        ])
    };
    append(&env, &(0..6).map(|i| rec(if i % 2 == 0 { "bob" } else { "alice" }, i)).collect::<Vec<_>>());
    env.run(&["rotate"]).success();
    env.run(&["archive"]).success();
    let archived = std::fs::read_dir(env.data.join("archive")).unwrap().filter_map(|e| e.ok()).count();
    assert!(archived > 0, "archive wrote a .gz");
    append(&env, &(6..9).map(|i| rec("bob", i)).collect::<Vec<_>>());

    let page = std::fs::read_to_string(export_html(&env, "bob.html", &["--all", "--user", "BOB"])).unwrap();
    assert!(page.contains("<dt>Host:</dt> <dd><bdi>pbx01</bdi></dd>"), "host");
    assert!(page.contains("<dt>Exported:</dt> <dd><bdi>20"), "export time");
    assert!(page.contains("<dt>Selection:</dt> <dd><bdi>the whole history (--all)"), "selection");
    assert!(page.contains("<dt>Filters:</dt> <dd>--user <bdi>BOB</bdi></dd>"), "filters");
    assert!(page.contains("<dt>Ids:</dt> <dd>1–9 "), "id range");
    let ids: Vec<&str> = page.split("<td class=\"id\">").skip(1).map(|s| &s[..s.find('<').unwrap()]).collect();
    assert_eq!(ids, ["1", "3", "5", "7", "8", "9"], "bob's records, archived (.gz) and active");
    assert!(page.contains("This export holds 6 records, ids 1–9, in id order."));

    let page = std::fs::read_to_string(export_html(&env, "none.html", &["--user", "nobody"])).unwrap();
    assert!(page.contains("<dt>Selection:</dt> <dd><bdi>the circular log"), "default selection");
    assert!(page.contains("No record matches the selection."));
    assert!(page.contains("This export holds no record."));
    assert!(page.trim_end().ends_with("</html>"));
}
