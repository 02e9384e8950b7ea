//! The web interface (`view` and `serve` with `[web]`), driven in a real
//! Chromium through chromedriver (Debian chromium-driver) by a WebDriver
//! client (fantoccini):
//!
//! - `view` of offboard copies of two hosts (plain and .gz, one file given
//!   twice) shows every record once; search, filters, sorting and paging
//!   give the records `export` gives; the CSV download equals `export`'s.
//! - Hostile values (examples and seeded random mixtures) are shown as the
//!   documented visible escapes on the detail page, and nothing in the
//!   page came from a record: no script, no event handler, no element
//!   outside the page's own set.
//! - Sessions pair login and logout by login type and session id.
//! - Printed on A4 and Letter, every column header is on the page and no
//!   word is past its edge.
//! - `serve`: every page needs a sign-in; sign-in, failed sign-in, download
//!   and sign-out are audit records with the account and the client's
//!   address; an auditor gets no status page; forms without their token
//!   are refused; the security headers are set.
//!
//! With AUDIT_TRAIL_SCREENSHOTS=DIR the tests save the main pages there
//! (docs/ holds the ones from the README).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::support::harness::{Env, seed};
use crate::viewer::{hostile_examples, hostile_mixtures, need, pdf_pages, shown};

/// A child process killed when dropped, with its process group when it
/// leads one (chromedriver and the Chromium it starts, even when a test
/// fails before closing its session).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.0.id())]).stderr(Stdio::null()).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// chromedriver on a free port, and a WebDriver session with headless Chromium.
async fn browser() -> (Proc, Client) {
    need("chromedriver", "chromium-driver");
    need("chromium", "chromium");
    let port = free_port();
    let child = Command::new("chromedriver")
        .process_group(0)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen on port {port} within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--window-size=1400,1000"],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("WebDriver session with Chromium");
    (proc, client)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// `view` on `paths`; returns the process and the address it prints.
fn start_view(env: &Env, paths: &[&Path]) -> (Proc, String) {
    let mut cmd = env.cmd(&["view"]);
    cmd.args(paths).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = Proc(cmd.spawn().expect("start view"));
    let out = child.0.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let mut seen = Vec::new();
    loop {
        let Some(Ok(line)) = lines.next() else {
            let mut err = String::new();
            child.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("view stopped before serving: {seen:?} {err}");
        };
        if let Some(rest) = line.strip_prefix("open ") {
            let url = rest.split_whitespace().next().unwrap().trim_end_matches('/').to_string();
            // Keep reading stdout so the child never blocks on it.
            std::thread::spawn(move || for _ in lines.by_ref() {});
            return (child, url);
        }
        seen.push(line);
    }
}

/// A plain HTTP/1.1 request; returns status, headers (lowercase names) and body.
fn http(
    url: &str,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<&str>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    // An answer that never comes fails the test instead of hanging it.
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&all[..split]).to_string();
    let mut body = all[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        body = dechunk(&body);
    }
    (status, headers, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + n]);
        b = &b[nl + 2 + n + 2..];
    }
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Waits (up to 30 s) until the console of `server` listens at `url`.
#[track_caller]
fn wait_for_console(server: &crate::support::harness::Server, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(url.trim_start_matches("http://")).is_err() {
        assert!(Instant::now() < deadline, "the console did not listen: {}", server.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The sign-in form sent as a browser sends it (the token from /login's
/// cookie); returns the status and the session cookie when one was set.
fn post_sign_in(url: &str, user: &str, password: &str) -> (u16, Option<String>) {
    let (_, h, _) = http(url, "GET", "/login", None, None);
    let token =
        header(&h, "set-cookie").unwrap().trim_start_matches("at_login=").split(';').next().unwrap().to_string();
    let (status, h, _) = http(
        url,
        "POST",
        "/login",
        Some(&format!("at_login={token}")),
        Some(&format!("csrf={token}&user={user}&password={password}")),
    );
    let session = h
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("at_session="))
        .map(|(_, v)| v.split(';').next().unwrap().to_string());
    (status, session)
}

/// Signs in; returns the session cookie.
#[track_caller]
fn sign_in_over_http(url: &str, user: &str, password: &str) -> String {
    let (status, session) = post_sign_in(url, user, password);
    assert_eq!(status, 303, "sign-in of {user}");
    session.expect("a session cookie")
}

fn append_lines(env: &Env, records: &[Value]) {
    let mut input = Vec::new();
    for r in records {
        input.extend(serde_json::to_vec(r).unwrap());
        input.push(b'\n');
    }
    env.run_with_input(&["append", "--json", "-"], &input).success();
}

/// Records of a working day: sessions with changes, failed logins, and
/// times that increase with the ids.
fn day(host_tag: &str, n_sessions: usize, start_hour: i64) -> Vec<Value> {
    let mut out = Vec::new();
    let base = chrono::DateTime::parse_from_rfc3339("2026-11-20T08:00:00+00:00").unwrap();
    let mut t = start_hour * 3600;
    let mut at = || {
        t += 7;
        (base + chrono::Duration::seconds(t)).format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string()
    };
    for i in 0..n_sessions {
        let user = ["alice", "bob", "carol"][i % 3];
        let auth = ["LDAP", "SSO"][i % 2];
        let sid = format!("{}", 100 + i % 7);
        out.push(json!({"timestamp": at(), "app_name": "System Admin Tool", "action_type": "Login", "user_name": user,
            "source_ip": format!("10.1.1.{}", i % 9 + 1), "category": "presence", "outcome": "success",
            "auth_type": auth, "session_id": sid}));
        out.push(
            json!({"timestamp": at(), "app_name": "System Admin Tool", "action_type": "Change", "user_name": user,
            "action_data": format!("{host_tag}: extension {i}\nold: 1\nnew: 2"), "category": "config",
            "auth_type": auth, "session_id": sid}),
        );
        out.push(
            json!({"timestamp": at(), "app_name": "System Admin Tool", "action_type": "Logout", "user_name": user,
            "category": "presence", "auth_type": auth, "session_id": sid}),
        );
    }
    for _ in 0..6 {
        out.push(json!({"timestamp": at(), "app_name": "Attendant Console", "action_type": "Login failure",
            "user_name": "mallory", "source_ip": "192.0.2.9", "category": "failure", "outcome": "failure",
            "auth_type": "Local"}));
    }
    out
}

/// Waits (up to 10 s) until the browser is on `path` after a form was sent.
async fn wait_path(c: &Client, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = c.current_url().await.unwrap();
        if now.path() == path && c.find(Locator::Css("main")).await.is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "still on {now}, not {path}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text of the element `css`, looked up again when a navigation started
/// by the last click replaced it between finding and reading it.
async fn text_of(c: &Client, css: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let e = c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        match e.text().await {
            Ok(t) => return t,
            Err(err) if Instant::now() < deadline && err.to_string().contains("stale element") => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("{css}: {err}"),
        }
    }
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap_or_else(|e| panic!("{script}: {e}"))
}

async fn screenshot(c: &Client, name: &str) {
    if let Ok(dir) = std::env::var("AUDIT_TRAIL_SCREENSHOTS") {
        let png = c.screenshot().await.unwrap();
        std::fs::write(Path::new(&dir).join(name), png).unwrap();
    }
}

/// Rows of the records table: the ID column.
async fn shown_ids(c: &Client) -> Vec<u64> {
    let v = js(c, "return [...document.querySelectorAll('table.records tbody td.id')].map(td => td.textContent)").await;
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().trim().parse().unwrap()).collect()
}

#[test]
fn view_reads_two_hosts_and_filters_sorts_pages_and_downloads_what_export_gives() {
    let a = Env::with_config("host_name = \"pbx01\"\nevent_mask = \"all\"\n");
    let b = Env::with_config("host_name = \"pbx02\"\nevent_mask = \"all\"\n");
    append_lines(&a, &day("pbx01", 100, 0));
    a.run(&["rotate"]).success();
    append_lines(&a, &day("pbx01-second", 10, 5));
    a.run(&["rotate"]).success();
    a.run(&["archive"]).success();
    append_lines(&b, &day("pbx02", 5, 0));
    b.run(&["rotate"]).success();
    let stored_a = a.export_all_lines();
    let stored_b = b.export_all_lines();
    let total = stored_a.len() + stored_b.len();
    // Offboard copies: pbx01's archive directory, pbx02's sealed file given
    // twice (the same file and a copy of it).
    let off = a.dir.path().join("offboard");
    std::fs::create_dir_all(&off).unwrap();
    let sealed_b = b.sealed_files()[0].clone();
    let copy = off.join(sealed_b.file_name().unwrap());
    std::fs::copy(&sealed_b, &copy).unwrap();
    let archive = a.data.join("archive");
    let (_view, url) = start_view(&a, &[&archive, &sealed_b, &copy]);

    runtime().block_on(async {
        let (_driver, c) = browser().await;
        c.goto(&format!("{url}/")).await.unwrap();
        let summary = text_of(&c, "p.summary").await;
        assert!(summary.starts_with(&format!("{total} of {total} records")), "{summary} (expected {total})");
        // Newest first, 100 to a page, a host column.
        let ids = shown_ids(&c).await;
        assert_eq!(ids.len(), 100.min(total));
        let hosts = js(&c, "return [...document.querySelectorAll('table.records thead th')].map(t => t.textContent)").await;
        assert!(hosts.to_string().contains("Host"), "{hosts}");
        screenshot(&c, "console-records.png").await;

        // Search typed into the form: "extension 3" matches pbx01's records
        // whose data holds it, in either host.
        c.find(Locator::Css("input[name=q]")).await.unwrap().send_keys("EXTENSION 3").await.unwrap();
        c.find(Locator::Css("form.filters button[type=submit]")).await.unwrap().click().await.unwrap();
        let want: usize = stored_a
            .iter()
            .chain(&stored_b)
            .filter(|(_, l)| l.to_ascii_lowercase().contains("extension 3"))
            .count();
        assert!(want > 1);
        let summary = text_of(&c, "p.summary").await;
        assert!(summary.starts_with(&format!("{want} of {total} records")), "{summary} (expected {want})");

        // Filter user=bob, host pbx01, sorted by id ascending, 7 per page:
        // the pages together are export's records in order.
        let want_ids: Vec<u64> = stored_a
            .iter()
            .filter(|(_, l)| serde_json::from_str::<Value>(l).unwrap()["user_name"] == "bob")
            .map(|(id, _)| *id)
            .collect();
        let mut got = Vec::new();
        for page in 0..want_ids.len().div_ceil(7) {
            c.goto(&format!("{url}/?user=bob&host=pbx01&sort=id&dir=asc&per=7&page={page}")).await.unwrap();
            got.extend(shown_ids(&c).await);
        }
        assert_eq!(got, want_ids);

        // The CSV of a selection equals export's CSV of the same records.
        c.goto(&format!("{url}/?user=carol&host=pbx01")).await.unwrap();
        let href = js(&c, "return [...document.querySelectorAll('p.summary a')].find(a => a.textContent == 'CSV').getAttribute('href')").await;
        let (status, h, body) = http(&url, "GET", href.as_str().unwrap(), None, None);
        assert_eq!(status, 200);
        assert!(header(&h, "content-disposition").unwrap().starts_with("attachment"), "{h:?}");
        let export = a.run(&["export", "--all", "--format", "csv", "--user", "carol"]).success().stdout;
        assert_eq!(String::from_utf8(body).unwrap(), export);
        // All of a host, sent in several chunks, is export --all.
        let (status, _, body) = http(&url, "GET", "/download?host=pbx01&format=json", None, None);
        assert_eq!(status, 200);
        let export = a.run(&["export", "--all", "--format", "json"]).success().stdout;
        assert!(export.len() > 64 * 1024, "{} bytes: more than one chunk", export.len());
        assert_eq!(String::from_utf8(body).unwrap(), export);
        // Several hosts' ids overlap: a download names one.
        assert_eq!(http(&url, "GET", "/download?format=csv", None, None).0, 400);

        // Sessions: login and logout of the same login type and session id.
        c.goto(&format!("{url}/sessions?host=pbx02")).await.unwrap();
        screenshot(&c, "console-sessions.png").await;
        let rows = js(&c, "return [...document.querySelectorAll('table.sessions tbody tr')].map(r => [...r.cells].map(c => c.textContent))").await;
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 5, "{rows:?}");
        for r in rows {
            let cells: Vec<&str> = r.as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
            assert!(cells[4].contains('(') && cells[5] == "14 s", "a closed session of 14 s: {cells:?}");
            assert!(cells[7].starts_with("1 change"), "{cells:?}");
        }
        // Reports: mallory's 6 failures from one address in under 5 minutes are a burst.
        c.goto(&format!("{url}/reports?host=pbx01")).await.unwrap();
        screenshot(&c, "console-reports.png").await;
        let burst = text_of(&c, "tr.burst").await;
        assert!(burst.contains("mallory") && burst.contains("192.0.2.9") && burst.contains("burst"), "{burst}");
        // On a phone's width the page does not scroll sideways: only the
        // table does, inside its box; every filter has a label.
        c.set_window_size(390, 844).await.unwrap();
        c.goto(&format!("{url}/")).await.unwrap();
        let fit = js(&c, "return {page: document.documentElement.scrollWidth, view: window.innerWidth, \
            unlabelled: [...document.querySelectorAll('input:not([type=hidden]), select')].filter(i => !i.closest('label')).length}").await;
        assert!(fit["page"].as_u64() <= fit["view"].as_u64(), "the page is wider than a phone: {fit}");
        assert_eq!(fit["unlabelled"], 0, "{fit}");
        screenshot(&c, "console-phone.png").await;
        c.set_window_size(1400, 1000).await.unwrap();
        // Verification names the set as verify does.
        c.goto(&format!("{url}/verify")).await.unwrap();
        let verdict = text_of(&c, "main").await;
        assert!(verdict.contains("OK:"), "{verdict}");
        assert!(verdict.contains("shown once"), "the duplicated file is named: {verdict}");
        c.close().await.unwrap();
    });
}

/// The detail page shows each field as [`shown`] gives it; nothing of a
/// record's making is an element, attribute or script.
#[test]
fn hostile_values_are_inert_and_visible_on_every_page() {
    let env = Env::with_config("host_name = \"pbx01\"\nevent_mask = \"all\"\n");
    let mut records = hostile_examples();
    records.extend(hostile_mixtures(seed(), 12));
    append_lines(&env, &records);
    env.run(&["rotate"]).success();
    let stored: Vec<Value> = env.export_all_lines().iter().map(|(_, l)| serde_json::from_str(l).unwrap()).collect();
    let (_view, url) = start_view(&env, &[]);
    runtime().block_on(async {
        let (_driver, c) = browser().await;
        // The page's own elements; anything else came from a record.
        let own = "html head meta title link body a header nav span form input button main h1 h2 p strong div \
                   label select option table caption thead tbody tr th td bdi dl dt dd pre ul ol li details summary code";
        let check_page = |what: String| {
            let c = c.clone();
            async move {
                let v = js(&c, "return {tags: [...new Set([...document.querySelectorAll('*')].map(e => e.localName))], \
                    handlers: [...document.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.name)).filter(n => n.startsWith('on')), \
                    pwned: window.__pwned === undefined ? null : String(window.__pwned)}").await;
                for t in v["tags"].as_array().unwrap() {
                    assert!(own.split_whitespace().any(|o| o == t.as_str().unwrap()), "{what}: element <{t}> from a record");
                }
                assert_eq!(v["handlers"], json!([]), "{what}: event handler attributes");
                assert_eq!(v["pwned"], Value::Null, "{what}: a record's script ran");
            }
        };
        for path in ["/", "/sessions", "/reports", "/verify", "/?q=%3Cscript%3E"] {
            c.goto(&format!("{url}{path}")).await.unwrap();
            check_page(path.to_string()).await;
        }
        for r in &stored {
            let id = r["id"].as_u64().unwrap();
            c.goto(&format!("{url}/record?host=pbx01&id={id}")).await.unwrap();
            check_page(format!("record {id}")).await;
            let got = js(&c, "return Object.fromEntries([...document.querySelectorAll('dl.detail dt')].map(dt => [dt.textContent, dt.nextElementSibling.querySelector('pre') ? dt.nextElementSibling.querySelector('pre').textContent : null]))").await;
            for (json_name, title) in [
                ("user_name", "User Name"),
                ("app_name", "App Name"),
                ("action_type", "Action Type"),
                ("action_data", "Action Data"),
                ("tenant", "Tenant"),
                ("detail_level", "Detail Level"),
                ("session_id", "Session Id"),
                ("auth_type", "Auth Type"),
                ("node", "Node"),
            ] {
                let want = r.get(json_name).and_then(Value::as_str).map(shown);
                assert_eq!(got[title].as_str().map(str::to_string), want, "record {id} {title}");
            }
            if id == 1 {
                screenshot(&c, "console-record.png").await;
            }
        }
        c.close().await.unwrap();
    });
}

#[test]
fn the_records_page_prints_every_column_on_a4_and_letter() {
    let env = Env::with_config("host_name = \"pbx01\"\nevent_mask = \"all\"\n");
    let mut records = day("pbx01", 20, 0);
    records.push(
        json!({"app_name": "System Admin Tool", "app_context": "User Session", "action_type": "Login failure",
        "user_name": "bob", "source_ip": "2001:db8:ffff:ffff:ffff:ffff:ffff:17", "category": "failure",
        "outcome": "failure", "tenant": "acme-corporation-emea", "action_data": "x".repeat(3000)}),
    );
    append_lines(&env, &records);
    let (_view, url) = start_view(&env, &[]);
    runtime().block_on(async {
        let (_driver, c) = browser().await;
        c.goto(&format!("{url}/")).await.unwrap();
        for (name, size) in [("A4", fantoccini::wd::PrintSize::A4), ("Letter", fantoccini::wd::PrintSize::US_LETTER)] {
            let cfg = fantoccini::wd::PrintConfiguration::builder().size(size).build().unwrap();
            let pdf = c.print(cfg).await.unwrap();
            let path = env.dir.path().join(format!("records-{name}.pdf"));
            std::fs::write(&path, pdf).unwrap();
            let pages = pdf_pages(&path);
            let first: Vec<&str> = pages[0].words.iter().map(|w| w.text.as_str()).collect();
            for h in ["Time", "ID", "User", "Source", "Application", "Action", "data", "Category", "Outcome", "Tenant"]
            {
                assert!(first.contains(&h), "{name}: header {h:?} is not on the first page: {first:?}");
            }
            assert!(first.contains(&"failure"), "{name}: the failure outcome is on paper");
            for (k, p) in pages.iter().enumerate() {
                for w in &p.words {
                    assert!(
                        w.x0 >= -0.5 && w.x1 <= p.width + 0.5,
                        "{name} page {}: {:?} is cut at the page edge ({}..{} of {})",
                        k + 1,
                        w.text,
                        w.x0,
                        w.x1,
                        p.width
                    );
                }
            }
        }
        c.close().await.unwrap();
    });
}

fn web_env(extra: &str) -> (Env, String) {
    let port = free_port();
    let env = Env::with_config(&format!(
        "host_name = \"pbx01\"\nevent_mask = \"all\"\n[web]\nlisten = \"127.0.0.1:{port}\"\nidle_minutes = 5\n{extra}"
    ));
    (env, format!("http://127.0.0.1:{port}"))
}

fn add_user(env: &Env, name: &str, role: &str, password: &str) {
    env.run_with_input(&["user", "add", name, "--role", role, "--password-stdin"], format!("{password}\n").as_bytes())
        .success();
}

/// Console records of the history: (action, user, source, outcome).
fn console_records(env: &Env) -> Vec<(String, String, String, String)> {
    env.export_all_lines()
        .iter()
        .map(|(_, l)| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["app_context"] == "Web console")
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
            (s("action_type"), s("user_name"), s("source_ip"), s("outcome"))
        })
        .collect()
}

#[test]
fn serve_console_needs_a_sign_in_and_audits_sign_ins_downloads_and_sign_outs() {
    let (env, url) = web_env("");
    add_user(&env, "alice", "operator", "alice-secret-1");
    add_user(&env, "ann", "auditor", "ann-secret-2");
    append_lines(&env, &day("pbx01", 4, 0));
    let server = env.serve(&env.no_schedules());
    wait_for_console(&server, &url);
    // Nothing without a session.
    for path in ["/", "/record?host=pbx01&id=1", "/sessions", "/reports", "/verify", "/status", "/download?format=csv"]
    {
        let (status, h, body) = http(&url, "GET", path, None, None);
        assert_eq!(
            (status, header(&h, "location")),
            (303, Some("/login")),
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let (status, h, _) = http(&url, "GET", "/login", None, None);
    assert_eq!(status, 200);
    let csp = header(&h, "content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(header(&h, "x-content-type-options"), Some("nosniff"));
    // A sign-in form without its token is refused, and records nothing.
    let (status, _, _) = http(&url, "POST", "/login", None, Some("csrf=x&user=alice&password=alice-secret-1"));
    assert_eq!(status, 403);

    runtime().block_on(async {
        let (_driver, c) = browser().await;
        let sign_in = |user: &'static str, password: &'static str| {
            let c = c.clone();
            let url = url.clone();
            async move {
                c.goto(&format!("{url}/login")).await.unwrap();
                c.find(Locator::Css("input[name=user]")).await.unwrap().send_keys(user).await.unwrap();
                c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys(password).await.unwrap();
                c.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
            }
        };
        sign_in("alice", "wrong password").await;
        c.wait().for_element(Locator::Css("p.error")).await.unwrap();
        let err = text_of(&c, "p.error").await;
        assert!(err.contains("Wrong account name or password"), "{err}");
        screenshot(&c, "console-login.png").await;
        sign_in("alice", "alice-secret-1").await;
        wait_path(&c, "/").await;
        let who = text_of(&c, "form.logout").await;
        assert!(who.contains("alice"), "{who}");
        let cookies = c.get_all_cookies().await.unwrap();
        let session = cookies.iter().find(|k| k.name() == "at_session").expect("a session cookie");
        assert_eq!(session.http_only(), Some(true));
        assert_eq!(format!("{:?}", session.same_site()), "Some(Strict)");
        // The operator sees the status page.
        c.goto(&format!("{url}/status")).await.unwrap();
        let status_text = text_of(&c, "main").await;
        assert!(status_text.contains("next_id"), "{status_text}");
        screenshot(&c, "console-status.png").await;
        // A download made in the browser's session is recorded.
        let cookie = format!("at_session={}", session.value());
        let (status, _, body) = http(&url, "GET", "/download?format=json&user=bob", Some(&cookie), None);
        assert_eq!(status, 200);
        assert!(!body.is_empty());
        // Sign-out needs the form's token.
        let (status, _, _) = http(&url, "POST", "/logout", Some(&cookie), Some("csrf=forged"));
        assert_eq!(status, 403);
        c.goto(&format!("{url}/")).await.unwrap();
        c.find(Locator::Css("form.logout button")).await.unwrap().click().await.unwrap();
        wait_path(&c, "/login").await;
        // The old session is gone.
        let (status, _, _) = http(&url, "GET", "/", Some(&cookie), None);
        assert_eq!(status, 303);
        // An auditor has no status page.
        sign_in("ann", "ann-secret-2").await;
        wait_path(&c, "/").await;
        c.goto(&format!("{url}/status")).await.unwrap();
        let denied = text_of(&c, "main").await;
        assert!(denied.contains("for operators"), "{denied}");
        assert!(c.find(Locator::Css("a[href='/status']")).await.is_err(), "no Status link for auditors");
        c.close().await.unwrap();
    });
    server.stop();
    let got = console_records(&env);
    let ip = "127.0.0.1".to_string();
    let want = [
        ("Login failure", "alice", "failure"),
        ("Login", "alice", "success"),
        ("Export", "alice", "success"),
        ("Logout", "alice", "success"),
        ("Login", "ann", "success"),
        // The session still open when the service stops ends with it.
        ("Logout", "ann", "success"),
    ];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!((g.0.as_str(), g.1.as_str(), &g.2, g.3.as_str()), (w.0, w.1, &ip, w.2), "{got:?}");
    }
}

#[test]
fn failed_sign_ins_are_slowed_down() {
    let (env, url) = web_env("");
    add_user(&env, "alice", "auditor", "alice-secret-1");
    let server = env.serve(&env.no_schedules());
    wait_for_console(&server, &url);
    let attempt = |password: &str| -> (u16, Duration) {
        let t = Instant::now();
        let (status, _) = post_sign_in(&url, "alice", password);
        (status, t.elapsed())
    };
    let (s1, first) = attempt("wrong-1");
    let (_, second) = attempt("wrong-2");
    let (_, third) = attempt("wrong-3");
    assert_eq!(s1, 401);
    // No wait before the first answer; 1 s before the third (after two
    // failures), which the password check itself overlaps: the third takes
    // the wait, the first only the check.
    assert!(
        third >= Duration::from_millis(950) && third > first + Duration::from_millis(200),
        "{first:?} {second:?} {third:?}"
    );
    // The right password still works, after the wait.
    let (ok, _) = attempt("alice-secret-1");
    assert_eq!(ok, 303);
    server.stop();
    let failures = console_records(&env).iter().filter(|r| r.0 == "Login failure").count();
    assert_eq!(failures, 3);
}

#[test]
fn a_changed_or_deleted_account_ends_its_sessions_and_view_answers_only_loopback_names() {
    let (env, url) = web_env("");
    add_user(&env, "op", "operator", "op-secret-123");
    let server = env.serve(&env.no_schedules());
    wait_for_console(&server, &url);
    let sign_in = || -> String { sign_in_over_http(&url, "op", "op-secret-123") };
    // A role change ends the session.
    let cookie = sign_in();
    assert_eq!(http(&url, "GET", "/status", Some(&cookie), None).0, 200);
    env.run_with_input(&["user", "passwd", "op", "--role", "auditor", "--password-stdin"], b"op-secret-123\n")
        .success();
    assert_eq!(http(&url, "GET", "/status", Some(&cookie), None).0, 303);
    // So does deleting the account.
    let cookie = sign_in();
    assert_eq!(http(&url, "GET", "/", Some(&cookie), None).0, 200);
    env.run(&["user", "del", "op"]).success();
    assert_eq!(http(&url, "GET", "/", Some(&cookie), None).0, 303);
    assert_eq!(http(&url, "GET", "/download?format=csv", Some(&cookie), None).0, 303);
    server.stop();
    let ends = console_records(&env).iter().filter(|r| r.0 == "Logout").count();
    assert_eq!(ends, 2, "both ended sessions are recorded: {:?}", console_records(&env));

    // view: requests for another host name (DNS rebinding) are refused.
    let (_view, vurl) = start_view(&env, &[]);
    let port = vurl.rsplit(':').next().unwrap();
    for (host, ok) in [
        (format!("127.0.0.1:{port}"), true),
        (format!("localhost:{port}"), true),
        (format!("attacker.example:{port}"), false),
        ("attacker.example".to_string(), false),
    ] {
        let mut s = TcpStream::connect(vurl.trim_start_matches("http://")).unwrap();
        write!(s, "GET /download?format=csv HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert_eq!(answer.starts_with("HTTP/1.1 200"), ok, "Host: {host}: {}", answer.lines().next().unwrap_or(""));
    }
}

/// Connections held open by one address, sending nothing, neither keep
/// another address out nor last: each address has 16 at once, and a silent
/// one is closed after 5 s.
#[test]
fn idle_connections_from_one_address_do_not_keep_others_out() {
    need("curl", "curl");
    let env = Env::with_config("host_name = \"pbx01\"\n");
    append_lines(&env, &day("pbx01", 2, 0));
    let (_view, url) = start_view(&env, &[]);
    let addr = url.trim_start_matches("http://").to_string();
    let port = addr.rsplit(':').next().unwrap().to_string();
    let held: Vec<TcpStream> = (0..300).filter_map(|_| TcpStream::connect(&addr).ok()).collect();
    assert!(held.len() >= 16, "{} connections", held.len());
    std::thread::sleep(Duration::from_millis(300));
    // Another loopback address gets its answer at once.
    let t = Instant::now();
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3", "--interface", "127.0.0.2"])
        .arg(format!("http://127.0.0.1:{port}/static/style.css"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{:?}", t.elapsed());
    // The silent ones are closed within the head timeout.
    std::thread::sleep(Duration::from_secs(6));
    let mut closed = 0;
    let count = held.len();
    for mut s in held {
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut b = [0u8; 1];
        if matches!(s.read(&mut b), Ok(0) | Err(_)) {
            closed += 1;
        }
    }
    assert_eq!(closed, count, "silent connections still open after the head timeout");
    let (status, _, _) = http(&url, "GET", "/static/style.css", None, None);
    assert_eq!(status, 200, "the first address is served again");
}

/// Downloads a client does not read hold only their own threads: pages,
/// sign-ins and the records of other sessions go on.
#[test]
fn unread_downloads_do_not_hold_up_other_users() {
    let (env, url) = web_env("");
    add_user(&env, "ann", "auditor", "ann-secret-2");
    add_user(&env, "bob", "auditor", "bob-secret-3");
    env.run_with_input(&["append", "--json", "-"], &crate::support::harness::json_records(40_000)).success();
    let server = env.serve(&env.no_schedules());
    let addr = url.trim_start_matches("http://").to_string();
    wait_for_console(&server, &url);
    let ann = sign_in_over_http(&url, "ann", "ann-secret-2");
    // Ten downloads of everything (about 15 MB each), never read.
    let held: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            write!(s, "GET /download?format=json HTTP/1.1\r\nHost: {addr}\r\nCookie: {ann}\r\n\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    let bob = sign_in_over_http(&url, "bob", "bob-secret-3");
    let (status, _, _) = http(&url, "GET", "/?per=10", Some(&bob), None);
    assert_eq!(status, 200);
    assert!(t.elapsed() < Duration::from_secs(10), "another user waited {:?}", t.elapsed());
    drop(held);
    server.stop();
}
