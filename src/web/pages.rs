//! The pages, as maud templates (checked at compile time; every
//! interpolated string is escaped by maud, and record values go through
//! [`value`], which also makes control and bidirectional characters
//! visible). The pages hold no script: sorting, filtering and paging are
//! links and forms answered by the server.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::history::{Entry, Snapshot};
use super::query::{self, Page, Params, SORTABLE, TEXT_FILTERS};
use crate::record::{FIELDS, Field};

/// Who is looking, for the navigation bar.
pub struct Viewer<'a> {
    /// Account name; `None` in `view` (no login).
    pub user: Option<&'a str>,
    pub operator: bool,
    /// The session's token for forms that change state.
    pub csrf: &'a str,
}

/// A record value shown exactly: markup escaped, control and bidirectional
/// characters as visible `\uXXXX` escapes, isolated in `<bdi>`.
pub fn value(s: &str) -> Markup {
    let mut out = Vec::with_capacity(s.len() + 16);
    crate::export::html::value(&mut out, s);
    // `html::value` writes valid UTF-8 (the input's, plus ASCII markup).
    PreEscaped(format!("<bdi>{}</bdi>", String::from_utf8_lossy(&out)))
}

/// A value cut to `max` characters for a table cell (the detail page has it whole).
fn short(s: &str, max: usize) -> Markup {
    match s.char_indices().nth(max) {
        Some((at, _)) => html! { (value(&s[..at])) span.more title="shortened: open the record for all of it" { "…" } },
        None => value(s),
    }
}

pub fn time_text(ms: i64) -> String {
    if ms == i64::MIN {
        return "?".into();
    }
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "?".into())
}

fn duration_text(ms: i64) -> String {
    let s = ms / 1000;
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{} h {} min", s / 3600, (s % 3600) / 60)
    }
}

/// The server's zone, as the filters read times without an offset.
pub fn zone() -> String {
    let now = chrono::Local::now();
    let name = std::env::var("TZ").ok().filter(|t| !t.is_empty()).or_else(|| {
        std::fs::read_link("/etc/localtime")
            .ok()
            .and_then(|p| p.to_string_lossy().split("zoneinfo/").nth(1).map(str::to_string))
    });
    match name {
        Some(n) => format!("{n}, UTC{}", now.format("%:z")),
        None => format!("UTC{}", now.format("%:z")),
    }
}

/// The `<head>` of every page.
fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="no-referrer";
            title { (title) " — audit-trail" }
            link rel="stylesheet" href="/static/style.css";
        }
    }
}

fn shell(title: &str, who: &Viewer<'_>, current: &str, body: Markup) -> Markup {
    let nav: &[(&str, &str)] =
        &[("/", "Records"), ("/sessions", "Sessions"), ("/reports", "Reports"), ("/verify", "Verification")];
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    nav aria-label="Main" {
                        span.brand { "audit-trail" }
                        @for (href, label) in nav {
                            @if *href == current {
                                a href=(href) aria-current="page" { (label) }
                            } @else {
                                a href=(href) { (label) }
                            }
                        }
                        @if who.operator {
                            @if current == "/status" {
                                a href="/status" aria-current="page" { "Status" }
                            } @else {
                                a href="/status" { "Status" }
                            }
                        }
                    }
                    @if let Some(user) = who.user {
                        form.logout method="post" action="/logout" {
                            span { "Signed in as " strong { (user) } }
                            input type="hidden" name="csrf" value=(who.csrf);
                            button type="submit" { "Sign out" }
                        }
                    } @else {
                        span.mode { "Read-only viewer (this computer only)" }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

/// The filter form; `action` is the page it submits to.
fn filters(p: &Params, action: &str, zone: &str, hosts: &[String]) -> Markup {
    html! {
        form.filters method="get" action=(action) role="search" {
            div.row {
                label { "Search all fields" input type="search" name="q" value=(p.q) placeholder="text, id…"; }
                label { "From" input type="datetime-local" step="1" name="from" value=(p.from); }
                label { "To" input type="datetime-local" step="1" name="to" value=(p.to); }
                span.zone { "Times without an offset are in the server's zone: " (zone) ". Filters match part of a value, ignoring case; " code { "=value" } " matches the whole value." }
            }
            div.row {
                @for (name, label, _) in TEXT_FILTERS {
                    label { (label) input type="text" name=(name) value=(p.text(name)); }
                }
                @if hosts.len() > 1 {
                    label { "Host"
                        select name="host" {
                            option value="" { "all" }
                            @for h in hosts {
                                option value=(h) selected[p.host == *h] { (h) }
                            }
                        }
                    }
                }
            }
            @if !p.sort.is_empty() { input type="hidden" name="sort" value=(p.sort); }
            @if !p.dir.is_empty() { input type="hidden" name="dir" value=(p.dir); }
            div.row {
                button type="submit" { "Apply" }
                a href=(action) { "Clear" }
            }
        }
    }
}

fn link(base: &str, p: &Params, sort: &str, dir: &str, page: usize) -> String {
    let mut q = p.filter_query();
    let mut add = |k: &str, v: &str| {
        if !q.is_empty() {
            q.push('&');
        }
        q.push_str(k);
        q.push('=');
        q.push_str(v);
    };
    if !sort.is_empty() {
        add("sort", sort);
    }
    if !dir.is_empty() {
        add("dir", dir);
    }
    if page > 0 {
        add("page", &page.to_string());
    }
    if p.per != 0 {
        add("per", &p.per_page().to_string());
    }
    if q.is_empty() { base.to_string() } else { format!("{base}?{q}") }
}

fn record_href(snap: &Snapshot, e: &Entry) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    s.append_pair("host", snap.host(e));
    s.append_pair("id", &e.id.to_string());
    format!("/record?{}", s.finish())
}

fn record_rows(snap: &Snapshot, rows: &[super::history::Ref], hosts: bool) -> Markup {
    html! {
        @for r in rows {
            @let e = snap.entry(*r);
            tr.failure[e.value(Field::Outcome).eq_ignore_ascii_case("failure")] {
                td.time { (value(e.value(Field::Timestamp))) }
                @if hosts { td { (value(snap.host(e))) } }
                td.id { a href=(record_href(snap, e)) aria-label=(format!("record {}", e.id)) { (e.id) } }
                td { (value(e.value(Field::UserName))) }
                td { (value(e.value(Field::SourceIp))) }
                td { (value(e.value(Field::AppName))) }
                td { (value(e.value(Field::ActionType))) }
                td.data { (short(e.value(Field::ActionData), 200)) }
                td { (value(e.value(Field::Category))) }
                td.outcome { (value(e.value(Field::Outcome))) }
                td { (value(e.value(Field::Tenant))) }
            }
        }
    }
}

/// The records table.
pub fn records(
    who: &Viewer<'_>,
    snap: &Snapshot,
    p: &Params,
    page: &Page,
    zone: &str,
    error: Option<&str>,
    millis: u128,
) -> Markup {
    let key = p.sort_key();
    let sorted_name = SORTABLE.iter().find(|(_, k)| *k == key).map_or("time", |(n, _)| n);
    let asc = p.ascending();
    let hosts = snap.hosts.len() > 1;
    let header = |label: &str, name: &str| -> Markup {
        let here = name == sorted_name;
        // Descending first, then ascending when clicked again.
        let dir = if here && !asc { "asc" } else { "" };
        let sort = if name == "time" { "" } else { name };
        let aria = if here { if asc { "ascending" } else { "descending" } } else { "none" };
        html! {
            th scope="col" aria-sort=(aria) {
                a href=(link("/", p, sort, dir, 0)) { (label) @if here { span.arrow aria-hidden="true" { @if asc { " ▲" } @else { " ▼" } } } }
            }
        }
    };
    let dl = |format: &str| {
        let mut q = p.filter_query();
        if !q.is_empty() {
            q.push('&');
        }
        format!("/download?{q}format={format}")
    };
    shell(
        "Records",
        who,
        "/",
        html! {
            h1 { "Records" }
            (filters(p, "/", zone, &snap.hosts))
            @if let Some(e) = error { p.error role="alert" { (e) } }
            p.summary {
                strong { (page.total) } " of " (snap.by_time.len()) " records"
                @if page.total > 0 { ", page " (page.page + 1) " of " (page.pages) }
                " (" (millis) " ms). Download this selection: "
                a href=(dl("csv")) download { "CSV" } " · "
                a href=(dl("json")) download { "JSON" } " · "
                a href=(dl("xml")) download { "XML" }
            }
            div.scroll {
                table.records {
                    caption.sr { "Audit records, " (if asc { "oldest" } else { "newest" }) " first by " (sorted_name) }
                    thead {
                        tr {
                            (header("Time", "time"))
                            @if hosts { th scope="col" { "Host" } }
                            (header("ID", "id"))
                            (header("User", "user"))
                            (header("Source IP", "ip"))
                            (header("Application", "app"))
                            (header("Action", "action"))
                            th scope="col" { "Action data" }
                            (header("Category", "category"))
                            (header("Outcome", "outcome"))
                            th scope="col" { "Tenant" }
                        }
                    }
                    tbody { (record_rows(snap, &page.rows, hosts)) }
                }
            }
            (pager("/", p, page))
        },
    )
}

fn pager(base: &str, p: &Params, page: &Page) -> Markup {
    let sort = if p.sort_key() == query::SortKey::Time { "" } else { p.sort.as_str() };
    html! {
        nav.pager aria-label="Pages" {
            @if page.page > 0 {
                a href=(link(base, p, sort, &p.dir, 0)) { "« Newest" }
                a href=(link(base, p, sort, &p.dir, page.page - 1)) rel="prev" { "‹ Previous" }
            }
            span { "Page " (page.page + 1) " of " (page.pages) }
            @if page.page + 1 < page.pages {
                a href=(link(base, p, sort, &p.dir, page.page + 1)) rel="next" { "Next ›" }
                a href=(link(base, p, sort, &p.dir, page.pages - 1)) { "Oldest »" }
            }
        }
    }
}

/// One record, every field exactly as stored.
pub fn record(who: &Viewer<'_>, snap: &Snapshot, e: &Entry, file: &std::path::Path) -> Markup {
    let sid = query::session_id(e);
    shell(
        &format!("Record {}", e.id),
        who,
        "",
        html! {
            h1 { "Record " (e.id) }
            p.note {
                "Each value is shown exactly as stored: line breaks kept, control and bidirectional characters as "
                span.c { "\\uXXXX" } " escapes (never applied)."
            }
            dl.detail {
                dt { "Host" } dd { pre.v { (value(snap.host(e))) } }
                dt { "ID" } dd { pre.v { (e.id) } }
                @for spec in &FIELDS {
                    dt { (spec.title) }
                    dd {
                        @match e.get(spec.field) {
                            Some(v) => {
                                pre.v { (value(v)) }
                                @if crate::store::xml::write::needs_base64(v) {
                                    span.b64 { "stored as base64 in the file (it holds characters XML 1.0 cannot carry); shown decoded" }
                                }
                            }
                            None => { span.absent { "(absent)" } }
                        }
                    }
                }
                dt { "Chain" } dd { pre.v { @match &e.chain { Some(c) => (crate::store::chain::hex(c)), None => "(none)" } } }
                dt { "File" } dd { pre.v { (value(&file.display().to_string())) } }
            }
            @if let Some(sid) = sid {
                p { a href=(format!("/sessions?{}", form(&[("user", &format!("={}", e.value(Field::UserName)))]))) { "Sessions of this user" }
                    " (session id " (value(&sid)) ")" }
            }
            p { a href="/" { "Back to the records" } }
        },
    )
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn entry_link(snap: &Snapshot, r: super::history::Ref) -> Markup {
    let e = snap.entry(r);
    html! { a href=(record_href(snap, e)) { (e.id) } }
}

/// Sessions: logins and logouts paired.
pub fn sessions(
    who: &Viewer<'_>,
    snap: &Snapshot,
    p: &Params,
    list: &[query::Session],
    zone: &str,
    error: Option<&str>,
) -> Markup {
    let per = p.per_page();
    let pages = list.len().div_ceil(per).max(1);
    let page = p.page.min(pages - 1);
    let shown = list.iter().skip(page * per).take(per);
    shell(
        "Sessions",
        who,
        "/sessions",
        html! {
            h1 { "Sessions" }
            p.note { "A login and its logout are paired by host, application, login type (Auth Type), session id (Session Id, or \"Session ID: N\" in the action data) and user. Failed attempts are the user's failed logins in the same application since their previous login there; changes are the user's changes from login to logout." }
            (filters(p, "/sessions", zone, &snap.hosts))
            @if let Some(e) = error { p.error role="alert" { (e) } }
            p.summary { strong { (list.len()) } " sessions" @if list.len() > per { ", page " (page + 1) " of " (pages) } }
            div.scroll {
                table.sessions {
                    caption.sr { "Sessions, newest first" }
                    thead { tr {
                        th scope="col" { "User" } th scope="col" { "Login type" } th scope="col" { "Session id" }
                        th scope="col" { "Login" } th scope="col" { "Logout" } th scope="col" { "Duration" }
                        th scope="col" { "Failed attempts" } th scope="col" { "Changes" } th scope="col" { "Other records" }
                    } }
                    tbody {
                        @for s in shown {
                            tr.failure[!s.failures.is_empty()] {
                                td { (value(&s.user)) }
                                td { (value(&s.auth_type)) }
                                td { @if let Some(id) = &s.id { (value(id)) } @else { span.absent { "(none)" } } }
                                td { @match s.login { Some(r) => { (time_text(snap.entry(r).time)) " (" (entry_link(snap, r)) ")" }, None => span.absent { "not in the history" } } }
                                td { @match s.logout { Some(r) => { (time_text(snap.entry(r).time)) " (" (entry_link(snap, r)) ")" }, None => span.absent { "open" } } }
                                td { @match s.duration(snap) { Some(d) => (duration_text(d)), None => "—" } }
                                td.num { (s.failures.len())
                                    @if !s.failures.is_empty() { " (" @for (i, r) in s.failures.iter().take(5).enumerate() { @if i > 0 { ", " } (entry_link(snap, *r)) } @if s.failures.len() > 5 { ", …" } ")" } }
                                td {
                                    @if s.changes.is_empty() { "0" } @else {
                                        details {
                                            summary { (s.changes.len()) " change(s)" }
                                            ul { @for r in s.changes.iter().take(50) { @let e = snap.entry(*r);
                                                li { (entry_link(snap, *r)) " " (value(e.value(Field::ActionType))) ": " (short(e.value(Field::ActionData), 120)) } } }
                                        }
                                    }
                                }
                                td.num { (s.others) }
                            }
                        }
                    }
                }
            }
            (pager("/sessions", p, &Page { rows: Vec::new(), total: list.len(), page, pages }))
        },
    )
}

/// Failed logins by user and source; changes by user and application.
pub fn reports(
    who: &Viewer<'_>,
    snap: &Snapshot,
    p: &Params,
    failed: &[query::FailureRow],
    changes: &[query::ChangeRow],
    zone: &str,
    error: Option<&str>,
) -> Markup {
    shell(
        "Reports",
        who,
        "/reports",
        html! {
            h1 { "Reports" }
            (filters(p, "/reports", zone, &snap.hosts))
            @if let Some(e) = error { p.error role="alert" { (e) } }
            h2 #failed { "Failed logins by user and source" }
            p.note { "A burst is " (query::BURST_AT) " or more failures within " (query::BURST_WINDOW_MS / 60000) " minutes; bursts are highlighted." }
            div.scroll { table {
                thead { tr { th scope="col" { "User" } th scope="col" { "Source IP" } th scope="col" { "Failures" }
                    th scope="col" { "Most in 5 minutes" } th scope="col" { "First" } th scope="col" { "Last" } } }
                tbody {
                    @for r in failed {
                        tr.burst[r.burst >= query::BURST_AT] {
                            td { a href=(format!("/?{}", form(&[("user", &format!("={}", r.user)), ("ip", &format!("={}", r.source)), ("kind", "failed-login")]))) { (value(&r.user)) } }
                            td { (value(&r.source)) }
                            td.num { (r.count) }
                            td.num { (r.burst) @if r.burst >= query::BURST_AT { " " strong { "burst" } } }
                            td { (time_text(r.first)) }
                            td { (time_text(r.last)) }
                        }
                    }
                    @if failed.is_empty() { tr { td colspan="6" { "No failed logins in this selection." } } }
                }
            } }
            h2 #changes { "Changes by user and application" }
            div.scroll { table {
                thead { tr { th scope="col" { "User" } th scope="col" { "Application" } th scope="col" { "Changes" }
                    th scope="col" { "Actions" } th scope="col" { "First" } th scope="col" { "Last" } } }
                tbody {
                    @for r in changes {
                        tr {
                            td { a href=(format!("/?{}", form(&[("user", &format!("={}", r.user)), ("app", &format!("={}", r.app)), ("kind", "change")]))) { (value(&r.user)) } }
                            td { (value(&r.app)) }
                            td.num { (r.count) }
                            td { @for (i, (a, n)) in r.actions.iter().take(8).enumerate() { @if i > 0 { ", " } (value(a)) " ×" (n) } }
                            td { (time_text(r.first)) }
                            td { (time_text(r.last)) }
                        }
                    }
                    @if changes.is_empty() { tr { td colspan="6" { "No changes in this selection." } } }
                }
            } }
        },
    )
}

/// Verification state.
pub fn verify(who: &Viewer<'_>, state: &super::VerifyState, snap: &Snapshot) -> Markup {
    shell(
        "Verification",
        who,
        "/verify",
        html! {
            h1 { "Verification" }
            p.note { "The same checks as " code { "audit-trail verify" } ": every file well-formed, ids contiguous, each file's hash chain intact and continued by the next file, seals matching their records." }
            @match state {
                super::VerifyState::Running => { p role="status" { "Verifying… reload this page in a moment." } }
                super::VerifyState::Failed(e) => { p.error role="alert" { "Verification could not run: " (e) } }
                super::VerifyState::Done { reports, at } => {
                    p { "Verified " (at) "." }
                    @for (host, report) in reports {
                        h2 { "Host " (value(host)) }
                        @if report.problems.is_empty() {
                            p.ok role="status" { strong { "OK" } ": " (report.files) " files, " (report.records) " records"
                                @if let (Some(a), Some(b)) = (report.first_id, report.last_id) { ", ids " (a) ".." (b) } }
                        } @else {
                            p.error role="alert" { strong { "FAILED" } ": " (report.problems.len()) " problem(s)" }
                            ul.problems { @for pr in &report.problems { li { (value(&pr.to_string())) } } }
                        }
                        @if let Some((id, v)) = &report.chain_head {
                            p { "Chain head: " code.anchor { (id) ":" (crate::store::chain::hex(v)) } " — keep it off this host as an anchor." }
                        }
                        @for n in &report.notes { p.note { (value(n)) } }
                    }
                }
            }
            p { (snap.files.len()) " files and " (snap.by_time.len()) " records are shown"
                @if snap.duplicates > 0 { " (" (snap.duplicates) " records were met twice, in a file and an identical copy of it, and are shown once)" } "." }
            @if snap.conflicts > 0 {
                p.error role="alert" { (snap.conflicts) " records differ between copies of the same file (same host and id): each copy is shown, and the verification above names the altered file." }
            }
            @let unread: Vec<_> = snap.files.iter().filter(|f| f.error.is_some()).collect();
            @if !unread.is_empty() {
                h2 { "Files read only in part" }
                ul { @for f in unread { li { (value(&f.path.display().to_string())) ": " (value(f.error.as_deref().unwrap_or(""))) } } }
            }
            form method="post" action="/verify" {
                input type="hidden" name="csrf" value=(who.csrf);
                button type="submit" { "Verify again" }
            }
        },
    )
}

/// The service's status, for operators.
pub fn status(who: &Viewer<'_>, status: &serde_json::Value) -> Markup {
    fn show(v: &serde_json::Value) -> Markup {
        match v {
            serde_json::Value::Object(m) => html! {
                dl { @for (k, v) in m { dt { (k) } dd { (show(v)) } } }
            },
            serde_json::Value::Array(a) if a.is_empty() => html! { span.absent { "(none)" } },
            serde_json::Value::Array(a) => html! { ol { @for v in a { li { (show(v)) } } } },
            serde_json::Value::Null => html! { span.absent { "—" } },
            serde_json::Value::String(s) => value(s),
            other => html! { (other.to_string()) },
        }
    }
    shell(
        "Status",
        who,
        "/status",
        html! {
            h1 { "Status" }
            p.note { "What " code { "audit-trail status --json" } " gives: the log, schedules and their last runs, uploads waiting, SIEM forwarding." }
            div.status { (show(status)) }
        },
    )
}

/// The sign-in form.
pub fn login(error: Option<&str>, csrf: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Sign in"))
            body.login {
                main #main {
                    h1 { "audit-trail" }
                    form method="post" action="/login" {
                        @if let Some(e) = error { p.error role="alert" { (e) } }
                        input type="hidden" name="csrf" value=(csrf);
                        label { "Account" input type="text" name="user" autocomplete="username" required autofocus; }
                        label { "Password" input type="password" name="password" autocomplete="current-password" required; }
                        button type="submit" { "Sign in" }
                    }
                    p.note { "Every sign-in, sign-out, failed sign-in and download is recorded in the audit trail." }
                }
            }
        }
    }
}

/// A page that says what went wrong.
pub fn message(who: &Viewer<'_>, title: &str, text: &str) -> Markup {
    shell(title, who, "", html! { h1 { (title) } p { (text) } p { a href="/" { "Back to the records" } } })
}
