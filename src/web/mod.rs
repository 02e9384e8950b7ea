//! The web interface: records with search, filters and sorting, a record's
//! detail, sessions, failed-login and change reports, verification state,
//! downloads, and for operators the service's status.
//!
//! Two ways in:
//! - `audit-trail view [PATH…]`: offboard copies or a data directory, on
//!   loopback only, no login, nothing written anywhere.
//! - `serve` with `[web]`: accounts and sessions ([`auth`]), optional TLS;
//!   every sign-in, sign-out, failed sign-in and download is an audit record
//!   (app_name `audit-trail`, context `Web console`).
//!
//! HTTP is axum on hyper with a small tokio runtime of its own (two workers),
//! apart from ingest's threads: page work (filtering a million records) runs
//! on tokio's blocking pool, so the console cannot hold up ingest's threads
//! or the log writer beyond the one append of its own audit records. axum
//! rather than our own HTTP: request parsing, limits and keep-alive are
//! hyper's, which is fuzzed and widely deployed.

pub mod auth;
pub mod history;
pub mod pages;
pub mod query;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::Markup;
use serde::Deserialize;

use self::auth::{Accounts, Role, Sessions};
use self::history::{History, Snapshot, Source};
use self::query::{Filter, Params};
use crate::export::{self, CsvCells};
use crate::selfaudit::Event;
use crate::store::verify;

/// The cookie holding a session's token.
const SESSION_COOKIE: &str = "at_session";
/// The cookie holding the sign-in form's token (double submit).
const LOGIN_COOKIE: &str = "at_login";
/// How often a page looks for new files, at most.
const REFRESH_EVERY: Duration = Duration::from_secs(2);
/// Connections served at once; more are closed as soon as accepted.
const MAX_CONNECTIONS: usize = 1024;
/// Connections from one address at once; more are closed as soon as accepted.
const MAX_PER_ADDRESS: usize = 16;
/// Time to send a request's head, and to start the next one on a kept-alive connection.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The login type of console accounts, in their audit records.
const AUTH_TYPE: &str = "Local";
const CONTEXT: &str = "Web console";
const ACCOUNT_CHANGED: &str = "Session ended: the account was deleted or its password or role changed";
/// Longest wait for a client to take the next chunk of a download.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// The outcome of the last verification.
pub enum VerifyState {
    Running,
    Failed(String),
    /// One report per host (each host's files are checked on their own).
    Done {
        reports: Vec<(String, verify::Report)>,
        at: String,
    },
}

/// Records the console's own events (serve mode): returns once stored.
pub type AuditSink = Box<dyn Fn(&[Event]) -> Result<()> + Send + Sync>;

/// Sign-in with accounts (serve mode).
pub struct Login {
    pub accounts: Accounts,
    pub sessions: Sessions,
    pub audit: AuditSink,
    /// Cookies get `Secure` (served over TLS).
    pub secure: bool,
    /// For operators' status page.
    pub ctx: crate::app::Ctx,
}

pub struct Console {
    history: History,
    last_refresh: Mutex<Instant>,
    verify: Mutex<Arc<VerifyState>>,
    verifying: std::sync::atomic::AtomicBool,
    /// `None`: `view`, no sign-in.
    login: Option<Login>,
    /// The token of `view`'s forms.
    view_csrf: String,
    zone: String,
}

/// Who is asking.
#[derive(Clone)]
struct Who {
    user: Option<String>,
    role: Role,
    csrf: String,
    /// The console session's id (serve mode).
    session: Option<String>,
    source: String,
}

impl Who {
    fn viewer(&self) -> pages::Viewer<'_> {
        pages::Viewer { user: self.user.as_deref(), operator: self.role == Role::Operator, csrf: &self.csrf }
    }
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl Console {
    pub fn new(history: History, login: Option<Login>) -> Console {
        Console {
            history,
            last_refresh: Mutex::new(Instant::now()),
            verify: Mutex::new(Arc::new(VerifyState::Running)),
            verifying: std::sync::atomic::AtomicBool::new(false),
            login,
            view_csrf: auth::token(16),
            zone: pages::zone(),
        }
    }

    /// The signed-in user, or the answer to give instead (the sign-in page).
    /// A session whose account was deleted or changed (password, role) ends
    /// here; sessions that timed out are recorded as ended.
    fn who(self: &Arc<Self>, headers: &HeaderMap, peer: SocketAddr) -> Result<Who, Redirect> {
        let source = peer.ip().to_canonical().to_string();
        let Some(login) = &self.login else {
            return Ok(Who { user: None, role: Role::Auditor, csrf: self.view_csrf.clone(), session: None, source });
        };
        let mut ended: Vec<(auth::Session, &'static str)> = Vec::new();
        let found = cookie(headers, SESSION_COOKIE).and_then(|t| login.sessions.get(t).map(|s| (t, s)));
        let result = match found {
            None => Err(Redirect::to("/login")),
            Some((token, s)) => {
                let current = login.accounts.read().ok().and_then(|all| all.into_iter().find(|a| a.name == s.user));
                match current {
                    Some(a) if a.hash == s.hash && a.role == s.role => {
                        Ok(Who { user: Some(s.user), role: s.role, csrf: s.csrf, session: Some(s.id), source })
                    }
                    _ => {
                        login.sessions.end(token);
                        ended.push((s, ACCOUNT_CHANGED));
                        Err(Redirect::to("/login"))
                    }
                }
            }
        };
        if !ended.is_empty() {
            let events: Vec<Event> = ended.into_iter().map(|(s, why)| session_end(&s, why, None)).collect();
            let me = self.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = me.audit(&events) {
                    tracing::error!("web console: cannot record the end of a session: {e:#}");
                }
            });
        }
        result
    }

    /// Records the end of sessions that timed out, at the time each ended,
    /// and ends those whose account was deleted or changed.
    fn sweep(&self) {
        let Some(login) = &self.login else { return };
        let idle = login.sessions.idle();
        let mut events: Vec<Event> = login
            .sessions
            .sweep()
            .iter()
            .map(|s| session_end(s, "Session ended: no request within the idle time", Some(s.timed_out_at(idle))))
            .collect();
        if let Ok(accounts) = login.accounts.read() {
            let changed = login
                .sessions
                .end_unless(|s| accounts.iter().any(|a| a.name == s.user && a.hash == s.hash && a.role == s.role));
            events.extend(changed.iter().map(|s| session_end(s, ACCOUNT_CHANGED, None)));
        }
        if !events.is_empty()
            && let Err(e) = self.audit(&events)
        {
            tracing::error!("web console: cannot record the end of a session: {e:#}");
        }
    }

    /// Ends every session (the console stops) and records it.
    fn end_all(&self, why: &'static str) {
        let Some(login) = &self.login else { return };
        self.sweep();
        let events: Vec<Event> = login.sessions.end_all().iter().map(|s| session_end(s, why, None)).collect();
        if !events.is_empty()
            && let Err(e) = self.audit(&events)
        {
            tracing::error!("web console: cannot record the end of a session: {e:#}");
        }
    }

    /// Looks for new or changed files, at most every [`REFRESH_EVERY`].
    fn refresh(&self) {
        {
            let mut last = self.last_refresh.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() < REFRESH_EVERY {
                return;
            }
            *last = Instant::now();
        }
        if let Err(e) = self.history.refresh(2) {
            tracing::warn!("web console: cannot read the history: {e:#}");
        }
    }

    /// Runs `verify` over the history's files and keeps the result; does
    /// nothing while a verification runs.
    pub fn run_verify(&self) {
        use std::sync::atomic::Ordering;
        if self.verifying.swap(true, Ordering::SeqCst) {
            return;
        }
        *self.verify.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(VerifyState::Running);
        let state = match self.history.source().targets() {
            Ok(t) if t.is_empty() => VerifyState::Failed("no audit-trail files".into()),
            Ok(t) => {
                let reports = verify::verify_by_host(t, &verify::Options::default());
                VerifyState::Done { reports, at: crate::timestamp::format(&chrono::Local::now().fixed_offset()) }
            }
            Err(e) => VerifyState::Failed(format!("{e:#}")),
        };
        *self.verify.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(state);
        self.verifying.store(false, Ordering::SeqCst);
    }

    pub fn verify_state(&self) -> Arc<VerifyState> {
        self.verify.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records `events` (serve mode); `view` records nothing.
    fn audit(&self, events: &[Event]) -> Result<()> {
        match &self.login {
            Some(l) => (l.audit)(events),
            None => Ok(()),
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.history.snapshot()
    }
}

/// The sign-out record of session `s`, ended for `why` (at `at`, else now).
fn session_end(s: &auth::Session, why: &'static str, at: Option<std::time::SystemTime>) -> Event {
    let e = Event::new(CONTEXT, "Logout", why).category("presence").by(&s.user, &s.source, AUTH_TYPE, Some(&s.id));
    match at {
        Some(t) => e.at(crate::timestamp::format(&chrono::DateTime::<chrono::Local>::from(t).fixed_offset())),
        None => e,
    }
}

type Shared = State<Arc<Console>>;

/// The signed-in user as a handler's argument; without a session, the
/// answer is the way to the sign-in page.
impl axum::extract::FromRequestParts<Arc<Console>> for Who {
    type Rejection = Redirect;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, st: &Arc<Console>) -> Result<Who, Redirect> {
        // Every connection's address is set by `serve`.
        let peer =
            parts.extensions.get::<ConnectInfo<SocketAddr>>().map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
        st.who(&parts.headers, peer)
    }
}

/// Runs `f` on the blocking pool.
async fn blocking<F: FnOnce() -> Response + Send + 'static>(f: F) -> Response {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        tracing::error!("web console: a page failed: {e}");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
    })
}

fn page(m: Markup) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], m.into_string()).into_response()
}

/// The filters of `p`, and a sentence naming those left out.
fn filter_of(p: &Params) -> (Filter, Option<String>) {
    let (f, errors) = Filter::new(p);
    let error = (!errors.is_empty()).then(|| format!("Not applied: {}", errors.join("; ")));
    (f, error)
}

async fn records(State(st): Shared, who: Who, Query(p): Query<Params>) -> Response {
    blocking(move || {
        let t = Instant::now();
        st.refresh();
        let snap = st.snapshot();
        let (filter, error) = filter_of(&p);
        let pg = query::page(&snap, &filter, &p);
        page(pages::records(&who.viewer(), &snap, &p, &pg, &st.zone, error.as_deref(), t.elapsed().as_millis()))
    })
    .await
}

#[derive(Deserialize)]
struct RecordParams {
    #[serde(default)]
    host: String,
    id: u64,
}

async fn record(State(st): Shared, who: Who, Query(p): Query<RecordParams>) -> Response {
    blocking(move || {
        st.refresh();
        let snap = st.snapshot();
        let host = if p.host.is_empty() { snap.hosts.first().cloned().unwrap_or_default() } else { p.host };
        match snap.find(&host, p.id) {
            Some((r, e)) => page(pages::record(&who.viewer(), &snap, e, &snap.files[r.file as usize].path)),
            None => (
                StatusCode::NOT_FOUND,
                page(pages::message(&who.viewer(), "No such record", &format!("No record {} of host {host:?}.", p.id))),
            )
                .into_response(),
        }
    })
    .await
}

async fn sessions(State(st): Shared, who: Who, Query(p): Query<Params>) -> Response {
    blocking(move || {
        st.refresh();
        let snap = st.snapshot();
        let (filter, error) = filter_of(&p);
        let list = query::sessions(&snap, &filter);
        page(pages::sessions(&who.viewer(), &snap, &p, &list, &st.zone, error.as_deref()))
    })
    .await
}

async fn reports(State(st): Shared, who: Who, Query(p): Query<Params>) -> Response {
    blocking(move || {
        st.refresh();
        let snap = st.snapshot();
        let (filter, error) = filter_of(&p);
        let failed = query::failed_logins(&snap, &filter);
        let changes = query::changes(&snap, &filter);
        page(pages::reports(&who.viewer(), &snap, &p, &failed, &changes, &st.zone, error.as_deref()))
    })
    .await
}

async fn verify_page(State(st): Shared, who: Who) -> Response {
    blocking(move || {
        st.refresh();
        page(pages::verify(&who.viewer(), &st.verify_state(), &st.snapshot()))
    })
    .await
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Whether a form came from this site: the token matches, and the browser
/// does not say it came from elsewhere.
fn same_site(headers: &HeaderMap, sent: &str, expected: &str) -> bool {
    let fetch_site_ok =
        headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_none_or(|v| v == "same-origin" || v == "none");
    fetch_site_ok && !expected.is_empty() && constant_time_eq(sent.as_bytes(), expected.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn verify_again(State(st): Shared, who: Who, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    if !same_site(&headers, &f.csrf, &who.csrf) {
        return (StatusCode::FORBIDDEN, "form token mismatch: reload the page").into_response();
    }
    let s = st.clone();
    std::thread::spawn(move || {
        lower_priority();
        s.run_verify()
    });
    Redirect::to("/verify").into_response()
}

async fn status(State(st): Shared, who: Who) -> Response {
    if who.role != Role::Operator {
        return (
            StatusCode::FORBIDDEN,
            page(pages::message(&who.viewer(), "Not allowed", "The status page is for operators.")),
        )
            .into_response();
    }
    blocking(move || {
        let Some(login) = &st.login else { return StatusCode::NOT_FOUND.into_response() };
        match crate::commands::status::json(&login.ctx) {
            Ok(v) => page(pages::status(&who.viewer(), &v)),
            Err(e) => page(pages::message(&who.viewer(), "Status unavailable", &format!("{e:#}"))),
        }
    })
    .await
}

#[derive(Deserialize)]
struct DownloadParams {
    format: String,
    #[serde(flatten)]
    filters: Params,
}

async fn download(
    State(st): Shared,
    who: Who,
    method: axum::http::Method,
    Query(d): Query<DownloadParams>,
) -> Response {
    let (format, ext, mime) = match d.format.as_str() {
        "csv" => (export::Format::Csv, "csv", "text/csv; charset=utf-8"),
        "json" => (export::Format::Json, "jsonl", "application/jsonl; charset=utf-8"),
        "xml" => (export::Format::Xml, "xml", "application/xml; charset=utf-8"),
        _ => return (StatusCode::BAD_REQUEST, "format is csv, json or xml").into_response(),
    };
    blocking(move || {
        st.refresh();
        let snap = st.snapshot();
        let (filter, errors) = Filter::new(&d.filters);
        if !errors.is_empty() {
            return (StatusCode::BAD_REQUEST, format!("not downloaded: {}", errors.join("; "))).into_response();
        }
        let mut refs = filter.select(&snap);
        // The formats have no host column: one host at a time.
        let mut hosts: Vec<u32> = refs.iter().map(|r| snap.entry(*r).host).collect();
        hosts.sort_unstable();
        hosts.dedup();
        if hosts.len() > 1 {
            return (
                StatusCode::BAD_REQUEST,
                "this selection holds records of several hosts, whose ids overlap: choose one host in the Host filter",
            )
                .into_response();
        }
        // In id order, like `export`.
        refs.sort_unstable_by_key(|r| snap.entry(*r).id);
        let name =
            format!("attachment; filename=\"audit-trail-{}.{ext}\"", chrono::Local::now().format("%Y%m%d%H%M%S"));
        let head_of = |body: axum::body::Body| {
            (
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static(mime)),
                    (
                        header::CONTENT_DISPOSITION,
                        HeaderValue::from_str(&name).unwrap_or(HeaderValue::from_static("attachment")),
                    ),
                ],
                body,
            )
                .into_response()
        };
        // HEAD: the answer's head only; nothing is downloaded, nothing recorded.
        if method == axum::http::Method::HEAD {
            return head_of(axum::body::Body::empty());
        }
        let query = d.filters.filter_query();
        let described = if query.is_empty() { "no filter".to_string() } else { query.clone() };
        let event = Event::new(CONTEXT, "Export", format!("Downloaded {} records as {ext} ({described})", refs.len()))
            .category("read");
        if let Some(user) = &who.user
            && let Err(e) = st.audit(&[event.by(user, &who.source, AUTH_TYPE, who.session.as_deref())])
        {
            tracing::error!("web console: download refused, cannot record it: {e:#}");
            return (StatusCode::SERVICE_UNAVAILABLE, "the download cannot be recorded in the audit trail; try again")
                .into_response();
        }
        let created = crate::timestamp::format(&chrono::Local::now().fixed_offset());
        let host = hosts
            .first()
            .map_or_else(|| snap.hosts.first().cloned().unwrap_or_default(), |h| snap.hosts[*h as usize].clone());
        // Written as it is sent, a chunk at a time: memory stays flat
        // whatever the selection.
        let (tx, rx) = tokio::sync::mpsc::channel::<Piece>(4);
        let snap2 = snap.clone();
        let (host2, created2) = (host.clone(), created.clone());
        // On a thread of its own, not tokio's blocking pool: a client that
        // reads slowly holds only this thread, for SEND_TIMEOUT at most per chunk.
        let rt = tokio::runtime::Handle::current();
        let spawned = std::thread::Builder::new().name("web-download".into()).spawn(move || {
            lower_priority();
            let head = export::Head { host: &host2, created: &created2, ..Default::default() };
            let mut out = ChunkSender { tx: tx.clone(), buf: Vec::with_capacity(CHUNK), rt };
            let written = (|| -> Result<()> {
                let mut w = export::Writer::new(format, CsvCells::Safe, &mut out, &head)?;
                for r in &refs {
                    w.write(&snap2.entry(*r).to_record())?;
                }
                w.finish()?;
                Ok(())
            })();
            let done = written
                .and_then(|()| out.flush_chunk().map_err(Into::into))
                .and_then(|()| out.send(Piece::End).map_err(Into::into));
            match done {
                Ok(()) => {}
                // The client left: nothing to tell.
                Err(_) if tx.is_closed() => {}
                // Dropping the sender without `End` aborts the answer: the
                // client sees a cut download, never a short file that looks whole.
                Err(e) => tracing::error!("web console: download stopped: {e:#}"),
            }
        });
        if let Err(e) = spawned {
            return (StatusCode::SERVICE_UNAVAILABLE, format!("cannot start the download: {e}")).into_response();
        }
        let body = axum::body::Body::from_stream(futures_util::stream::unfold(Some(rx), |rx| async move {
            let mut rx = rx?;
            match rx.recv().await {
                Some(Piece::Bytes(b)) => Some((Ok(b), Some(rx))),
                Some(Piece::End) => None,
                // The writer stopped before the end: an error aborts the
                // connection instead of ending the body.
                None => Some((Err(std::io::Error::other("the download stopped before its end")), None)),
            }
        }));
        head_of(body)
    })
    .await
}

/// Bytes of a download sent at a time.
const CHUNK: usize = 64 * 1024;

/// What the writer of a download hands to the answer.
enum Piece {
    Bytes(axum::body::Bytes),
    /// Everything was written: the answer may end.
    End,
}

/// Sends what is written to it in chunks of [`CHUNK`] bytes; fails once the
/// client has gone.
struct ChunkSender {
    tx: tokio::sync::mpsc::Sender<Piece>,
    buf: Vec<u8>,
    rt: tokio::runtime::Handle,
}

impl ChunkSender {
    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = axum::body::Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.send(Piece::Bytes(chunk))
    }

    fn send(&self, piece: Piece) -> std::io::Result<()> {
        match self.rt.block_on(self.tx.send_timeout(piece, SEND_TIMEOUT)) {
            Ok(()) => Ok(()),
            Err(tokio::sync::mpsc::error::SendTimeoutError::Timeout(_)) => {
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client took no data for 60 s"))
            }
            Err(tokio::sync::mpsc::error::SendTimeoutError::Closed(_)) => {
                Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            }
        }
    }
}

impl std::io::Write for ChunkSender {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK {
            self.flush_chunk()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(a) = max_age {
        c.push_str(&format!("; Max-Age={a}"));
    }
    HeaderValue::from_str(&c).unwrap_or(HeaderValue::from_static(""))
}

async fn login_page(State(st): Shared) -> Response {
    let Some(login) = &st.login else { return Redirect::to("/").into_response() };
    let token = auth::token(16);
    let mut r = page(pages::login(None, &token));
    r.headers_mut().insert(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &token, login.secure, Some(3600)));
    r
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
}

async fn login_post(
    State(st): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let Some(login) = &st.login else { return Redirect::to("/").into_response() };
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if !same_site(&headers, &f.csrf, expected) {
        return (StatusCode::FORBIDDEN, "form token mismatch: reload the sign-in page").into_response();
    }
    let source = peer.ip().to_canonical().to_string();
    // The name as a record can hold it.
    let name: String = f.user.trim().chars().filter(|c| !c.is_control()).take(64).collect();
    // One attempt at a time from an address, each after the delay its
    // failures earned: another one meanwhile is refused.
    let lock = login.sessions.attempt_lock(&source);
    let Ok(_turn) = lock.try_lock() else {
        return (StatusCode::TOO_MANY_REQUESTS, "a sign-in from this address is in progress; try again")
            .into_response();
    };
    tokio::time::sleep(login.sessions.delay(&name, &source)).await;
    let st2 = st.clone();
    let (name2, source2) = (name.clone(), source.clone());
    let checked = tokio::task::spawn_blocking(move || {
        let login = st2.login.as_ref().expect("serve mode");
        login.accounts.check(&name2, &f.password).map(|a| (a, source2))
    })
    .await;
    let retry = |msg: &str| {
        let token = auth::token(16);
        let mut r = (StatusCode::UNAUTHORIZED, page(pages::login(Some(msg), &token))).into_response();
        r.headers_mut().insert(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &token, login.secure, Some(3600)));
        r
    };
    match checked {
        Ok(Ok((Some(account), _))) => {
            let (token, session) = login.sessions.start(&account, &source);
            let event =
                Event::new(CONTEXT, "Login", format!("Signed in to the web console (role {})", account.role.as_str()))
                    .category("presence")
                    .by(&account.name, &source, AUTH_TYPE, Some(&session.id));
            let st3 = st.clone();
            let stored = tokio::task::spawn_blocking(move || st3.audit(&[event])).await;
            if !matches!(stored, Ok(Ok(()))) {
                login.sessions.end(&token);
                tracing::error!("web console: sign-in refused, cannot record it");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the sign-in cannot be recorded in the audit trail; try again",
                )
                    .into_response();
            }
            login.sessions.succeeded(&account.name, &source);
            let mut r = Redirect::to("/").into_response();
            r.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &token, login.secure, None));
            r.headers_mut().append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", login.secure, Some(0)));
            r
        }
        Ok(Ok((None, _))) => {
            login.sessions.failed(&name, &source);
            let event = Event::new(CONTEXT, "Login failure", "Wrong account name or password for the web console")
                .category("failure")
                .failed()
                .by(if name.is_empty() { "(none)" } else { &name }, &source, AUTH_TYPE, None);
            let st3 = st.clone();
            if !matches!(tokio::task::spawn_blocking(move || st3.audit(&[event])).await, Ok(Ok(()))) {
                tracing::error!("web console: cannot record a failed sign-in");
            }
            retry("Wrong account name or password.")
        }
        Ok(Err(e)) => {
            tracing::error!("web console: cannot read the accounts: {e:#}");
            retry("Sign-in is not possible now: the accounts cannot be read.")
        }
        Err(_) => retry("Sign-in failed; try again."),
    }
}

async fn logout(State(st): Shared, who: Who, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    let Some(login) = &st.login else { return Redirect::to("/").into_response() };
    if !same_site(&headers, &f.csrf, &who.csrf) {
        return (StatusCode::FORBIDDEN, "form token mismatch: reload the page").into_response();
    }
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        login.sessions.end(token);
    }
    let event = Event::new(CONTEXT, "Logout", "Signed out of the web console").category("presence").by(
        who.user.as_deref().unwrap_or(""),
        &who.source,
        AUTH_TYPE,
        who.session.as_deref(),
    );
    let st2 = st.clone();
    if !matches!(tokio::task::spawn_blocking(move || st2.audit(&[event])).await, Ok(Ok(()))) {
        tracing::error!("web console: cannot record a sign-out");
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", login.secure, Some(0)));
    r
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")],
        include_str!("assets/style.css"),
    )
        .into_response()
}

/// Security headers on every answer.
async fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    r
}

/// `view` answers only requests addressed to loopback by number or as
/// localhost, so that a web page whose name an attacker points at 127.0.0.1
/// (DNS rebinding) cannot read the records.
async fn loopback_host_only(
    State(port): State<u16>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let ok = ["127.0.0.1", "localhost", "[::1]"].iter().any(|name| host == format!("{name}:{port}"));
    if !ok {
        return (StatusCode::MISDIRECTED_REQUEST, "this viewer answers only http://127.0.0.1, localhost or [::1]")
            .into_response();
    }
    next.run(req).await
}

/// The routes; `view_port`: the port `view` listens on (serve: `None`).
pub fn router(console: Arc<Console>, view_port: Option<u16>) -> Router {
    let app = Router::new()
        .route("/", get(records))
        .route("/record", get(record))
        .route("/sessions", get(sessions))
        .route("/reports", get(reports))
        .route("/verify", get(verify_page).post(verify_again))
        .route("/status", get(status))
        .route("/download", get(download))
        .route("/login", get(login_page).post(login_post))
        .route("/logout", post(logout))
        .route("/static/style.css", get(style))
        .with_state(console);
    let app = match view_port {
        Some(port) => app.layer(axum::middleware::from_fn_with_state(port, loopback_host_only)),
        None => app,
    };
    app.layer(axum::middleware::map_response(secure_headers))
}

/// Largest request body (the forms are a few hundred bytes).
const MAX_BODY: usize = 16 * 1024;
/// Time to send a request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The request with its body read in full, within [`MAX_BODY`] and
/// [`BODY_TIMEOUT`], so that a client sending slowly cannot hold a handler;
/// `Err`: the answer instead.
async fn whole_body(req: hyper::Request<hyper::body::Incoming>) -> Result<axum::extract::Request, Response> {
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    if matches!(parts.method, axum::http::Method::GET | axum::http::Method::HEAD) {
        return Ok(axum::extract::Request::from_parts(parts, axum::body::Body::empty()));
    }
    match tokio::time::timeout(BODY_TIMEOUT, http_body_util::Limited::new(body, MAX_BODY).collect()).await {
        Ok(Ok(c)) => Ok(axum::extract::Request::from_parts(parts, axum::body::Body::from(c.to_bytes()))),
        Ok(Err(_)) => Err((StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response()),
        Err(_) => Err((StatusCode::REQUEST_TIMEOUT, "request body not sent in time").into_response()),
    }
}

/// TLS for the console from PEM files.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read the certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate", cert.display());
    }
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("cannot read the private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and key do not go together")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// Serves `app` on `listener` until `stop` turns true.
async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let open = Arc::new(Mutex::new(std::collections::HashMap::<std::net::IpAddr, usize>::new()));
    let total = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("web console: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        // Accepted and closed at once when full, so that one address
        // holding connections neither fills the listen queue nor keeps
        // others out.
        let ip = peer.ip().to_canonical();
        let permit = {
            let mut m = open.lock().unwrap_or_else(|e| e.into_inner());
            let mine = m.get(&ip).copied().unwrap_or(0);
            if mine >= MAX_PER_ADDRESS || total.load(std::sync::atomic::Ordering::SeqCst) >= MAX_CONNECTIONS {
                drop(tcp);
                continue;
            }
            m.insert(ip, mine + 1);
            total.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            ConnectionSlot { open: open.clone(), total: total.clone(), ip }
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let mut app = app.clone();
                async move {
                    match whole_body(req).await {
                        Ok(req) => tower::Service::call(&mut app, req).await,
                        Err(answer) => Ok(answer),
                    }
                }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEAD_TIMEOUT).max_buf_size(64 * 1024);
            let served = match tls {
                Some(acceptor) => match tokio::time::timeout(HEAD_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => http.serve_connection(hyper_util::rt::TokioIo::new(s), svc).await,
                    _ => return,
                },
                None => http.serve_connection(hyper_util::rt::TokioIo::new(tcp), svc).await,
            };
            if let Err(e) = served {
                tracing::debug!("web console: connection from {peer}: {e}");
            }
        });
    }
}

/// A connection's place in the limits; given back when dropped.
struct ConnectionSlot {
    open: Arc<Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    total: Arc<std::sync::atomic::AtomicUsize>,
    ip: std::net::IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut m = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
        self.total.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A console running on its own thread.
pub struct Running {
    console: Arc<Console>,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub addr: SocketAddr,
}

impl Running {
    /// Stops serving; open sessions end, and their ends are recorded.
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.console.end_all("Session ended: the service stopped");
    }
}

/// The niceness of the console's threads: reading the history, searching
/// and verifying yield the processor to ingest and the log writer.
const NICE: i32 = 10;

/// Lowers the calling thread's priority to [`NICE`] (on Linux, nice is
/// per thread).
fn lower_priority() {
    if let Err(e) = rustix::process::setpriority_process(None, NICE) {
        tracing::debug!("web console: cannot lower its priority: {e}");
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .on_thread_start(lower_priority)
        .thread_name("web")
        .enable_all()
        .build()
        .context("cannot start the web console's runtime")
}

/// Binds `addr`.
fn bind(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serves `console` on `listener` from a thread of its own; `prepare` runs
/// on that thread first (reading the history), while connections wait.
fn start(
    listener: std::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    view: bool,
    console: Arc<Console>,
    prepare: impl FnOnce(&Console) + Send + 'static,
) -> Result<Running> {
    let addr = listener.local_addr()?;
    let rt = runtime()?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let kept = console.clone();
    let thread = std::thread::Builder::new().name("web".into()).spawn(move || {
        lower_priority();
        prepare(&console);
        rt.block_on(async move {
            if console.login.is_some() {
                // Timed-out sessions are recorded within half a minute, whether
                // or not requests come.
                let c = console.clone();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_secs(30));
                    loop {
                        tick.tick().await;
                        let c = c.clone();
                        let _ = tokio::task::spawn_blocking(move || c.sweep()).await;
                    }
                });
            }
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("web console: {e}");
                    return;
                }
            };
            serve(listener, tls, router(console, view.then_some(addr.port())), rx).await;
        });
        rt.shutdown_timeout(Duration::from_secs(2));
    })?;
    Ok(Running { console: kept, stop: tx, thread: Some(thread), addr })
}

/// `[web]` of `serve`, checked and bound before the service's sockets.
pub struct Prepared {
    listener: std::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    accounts: Accounts,
    idle: Duration,
    ctx: crate::app::Ctx,
}

/// Checks `[web]`, reads its certificate and binds its address.
pub fn prepare(ctx: &crate::app::Ctx, cfg: &crate::config::WebConfig) -> Result<Prepared> {
    let addr = cfg.addr()?;
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => Some(tls_acceptor(c, k)?),
        (None, None) => None,
        _ => bail!("[web] needs both tls_cert and tls_key, or neither"),
    };
    if tls.is_none() && !addr.ip().is_loopback() {
        bail!(
            "[web] listen = {addr} is not a loopback address: set tls_cert and tls_key, so that passwords and \
             records are not sent in clear"
        );
    }
    let accounts_path = cfg.accounts.clone().unwrap_or_else(|| auth::default_accounts_path(&ctx.layout.data_dir));
    let accounts = Accounts::new(accounts_path.clone());
    if accounts.read()?.is_empty() {
        tracing::warn!(
            "web console: no accounts in {}: add one with `audit-trail user add NAME --role auditor`",
            accounts_path.display()
        );
    }
    let listener = bind(addr)?;
    Ok(Prepared { listener, tls, accounts, idle: Duration::from_secs(cfg.idle_minutes.max(1) * 60), ctx: ctx.clone() })
}

impl Prepared {
    /// Reads the history and serves on a thread of its own; `audit` stores
    /// the console's own records.
    pub fn start(self, audit: AuditSink) -> Result<Running> {
        let secure = self.tls.is_some();
        let history = History::empty(Source::DataDir(self.ctx.layout.clone()));
        let login = Login { accounts: self.accounts, sessions: Sessions::new(self.idle), audit, secure, ctx: self.ctx };
        let console = Arc::new(Console::new(history, Some(login)));
        let running = start(self.listener, self.tls, false, console, |c| {
            // Computed once, before the first sign-in waits for it.
            std::sync::LazyLock::force(&auth::DUMMY_HASH);
            if let Err(e) = c.history.refresh(2) {
                tracing::warn!("web console: cannot read the history: {e:#}");
            }
            c.run_verify();
        })?;
        tracing::info!("web console on {}://{}/", if secure { "https" } else { "http" }, running.addr);
        Ok(running)
    }
}

/// `audit-trail view`: reads and verifies, then serves on loopback until
/// interrupted. Prints the address to open.
pub fn view(source: Source, listen: SocketAddr) -> Result<()> {
    if !listen.ip().is_loopback() {
        bail!("view listens on loopback only (127.0.0.1 or ::1), not {}", listen.ip());
    }
    let t = Instant::now();
    let history = History::load(source, std::thread::available_parallelism().map_or(2, |n| n.get()))?;
    let snap = history.snapshot();
    if snap.files.is_empty() {
        bail!("no audit-trail files found");
    }
    tracing::info!(
        "read {} records of {} host(s) from {} files in {:.1} s",
        snap.by_time.len(),
        snap.hosts.len(),
        snap.files.len(),
        t.elapsed().as_secs_f64()
    );
    drop(snap);
    let console = Arc::new(Console::new(history, None));
    console.run_verify();
    match &*console.verify_state() {
        VerifyState::Done { reports, .. } => {
            for (host, report) in reports {
                if report.problems.is_empty() {
                    crate::outln!("{host}: verify OK: {} files, {} records", report.files, report.records)?
                } else {
                    crate::outln!(
                        "{host}: verify FAILED: {} problem(s); the Verification page names them",
                        report.problems.len()
                    )?
                }
            }
        }
        VerifyState::Failed(e) => crate::outln!("verify could not run: {e}")?,
        VerifyState::Running => {}
    }
    let running = start(bind(listen)?, None, true, console, |_| {})?;
    crate::outln!("open http://{}/ (read-only; Ctrl-C stops)", running.addr)?;
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
    let _ = signals.forever().next();
    running.stop();
    Ok(())
}
