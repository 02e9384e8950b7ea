//! What a page asks of the history: filters, full-text search, sorting and
//! paging of records; sessions (login and logout paired by login type and
//! session id); failed-login and change reports.

use std::collections::HashMap;

use serde::Deserialize;

use super::history::{Entry, Ref, Snapshot};
use crate::record::Field;

/// Records per page unless asked otherwise; at most [`MAX_PER_PAGE`].
pub const PER_PAGE: usize = 100;
pub const MAX_PER_PAGE: usize = 1000;

/// The filter form, as it arrives in the query string. Every text filter
/// matches a part of the value, ignoring the case of ASCII letters; `q`
/// searches every field.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Params {
    pub q: String,
    pub from: String,
    pub to: String,
    pub tenant: String,
    pub app: String,
    pub user: String,
    pub action: String,
    pub category: String,
    pub outcome: String,
    pub ip: String,
    pub host: String,
    /// login, logout, failed-login, change: records of that kind (see [`kind`]).
    pub kind: String,
    pub sort: String,
    pub dir: String,
    pub page: usize,
    pub per: usize,
}

/// The fields a text filter applies to, with its name in [`Params`].
pub const TEXT_FILTERS: [(&str, &str, Field); 7] = [
    ("tenant", "Tenant", Field::Tenant),
    ("app", "Application", Field::AppName),
    ("user", "User", Field::UserName),
    ("action", "Action", Field::ActionType),
    ("category", "Category", Field::Category),
    ("outcome", "Outcome", Field::Outcome),
    ("ip", "Source IP", Field::SourceIp),
];

/// Columns the table sorts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Time,
    Id,
    Field(Field),
}

pub const SORTABLE: [(&str, SortKey); 8] = [
    ("time", SortKey::Time),
    ("id", SortKey::Id),
    ("user", SortKey::Field(Field::UserName)),
    ("ip", SortKey::Field(Field::SourceIp)),
    ("app", SortKey::Field(Field::AppName)),
    ("action", SortKey::Field(Field::ActionType)),
    ("category", SortKey::Field(Field::Category)),
    ("outcome", SortKey::Field(Field::Outcome)),
];

/// A needle lowered for ASCII-case-insensitive search; `exact`: the whole
/// value must match (the filter was given as `=value`).
#[derive(Debug, Clone)]
struct Needle {
    text: Vec<u8>,
    exact: bool,
}

impl Needle {
    /// A filter on one field's value.
    fn new(s: &str) -> Option<Needle> {
        let s = s.trim();
        let (s, exact) = match s.strip_prefix('=') {
            Some(rest) => (rest, true),
            None => (s, false),
        };
        let text = s.as_bytes().to_ascii_lowercase();
        (exact || !text.is_empty()).then_some(Needle { text, exact })
    }

    /// A search of every field: never exact.
    fn search(s: &str) -> Option<Needle> {
        let text = s.trim().as_bytes().to_ascii_lowercase();
        (!text.is_empty()).then_some(Needle { text, exact: false })
    }

    /// Whether `hay` holds the needle (is it, when exact), ASCII letters in any case.
    fn found_in(&self, hay: &str) -> bool {
        let (hay, n) = (hay.as_bytes(), &self.text);
        if self.exact {
            return hay.eq_ignore_ascii_case(n);
        }
        if n.len() > hay.len() {
            return false;
        }
        let first = n[0];
        let upper = first.to_ascii_uppercase();
        let last_start = hay.len() - n.len();
        let mut from = 0;
        while from <= last_start {
            let Some(k) = memchr::memchr2(first, upper, &hay[from..=last_start]) else { return false };
            let at = from + k;
            if hay[at..at + n.len()].eq_ignore_ascii_case(n) {
                return true;
            }
            from = at + 1;
        }
        false
    }
}

/// Parsed filters.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub from: Option<i64>,
    pub to: Option<i64>,
    q: Option<Needle>,
    fields: Vec<(Field, Needle)>,
    host: Option<String>,
    kind: Option<Kind>,
}

impl Filter {
    /// The filters of `p`, and what could not be applied (a time that is
    /// not a time, an unknown kind): that filter alone is left out.
    pub fn new(p: &Params) -> (Filter, Vec<String>) {
        let mut errors = Vec::new();
        let mut bound = |s: &str, end: bool, name: &str| -> Option<i64> {
            let s = s.trim();
            if s.is_empty() {
                return None;
            }
            crate::timestamp::parse_bound(s, end).map_err(|e| errors.push(format!("{name}: {e}"))).ok()
        };
        let from = bound(&p.from, false, "From");
        let to = bound(&p.to, true, "To");
        let mut fields = Vec::new();
        for (name, _, field) in TEXT_FILTERS {
            if let Some(n) = Needle::new(p.text(name)) {
                fields.push((field, n));
            }
        }
        // A host is always matched whole; `=name` is taken as well.
        let h = p.host.trim();
        let host = Some(h.strip_prefix('=').unwrap_or(h).to_string()).filter(|h| !h.is_empty());
        let kind = match p.kind.trim() {
            "" => None,
            "login" => Some(Kind::Login),
            "logout" => Some(Kind::Logout),
            "failed-login" => Some(Kind::FailedLogin),
            "change" => Some(Kind::Change),
            other => {
                errors.push(format!("kind {other:?} is not login, logout, failed-login or change"));
                None
            }
        };
        (Filter { from, to, q: Needle::search(&p.q), fields, host, kind }, errors)
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_none() && self.fields.is_empty() && self.host.is_none() && self.kind.is_none()
    }

    pub fn matches(&self, snap: &Snapshot, e: &Entry) -> bool {
        if let Some(h) = &self.host
            && snap.host(e) != h
        {
            return false;
        }
        for (f, n) in &self.fields {
            if !e.get(*f).is_some_and(|v| n.found_in(v)) {
                return false;
            }
        }
        if let Some(k) = self.kind
            && kind(e) != k
        {
            return false;
        }
        if let Some(q) = &self.q {
            // NUL separates the fields in the joined text: a needle holding
            // it is looked for in each field alone.
            let in_fields = if q.text.contains(&0) {
                crate::record::FIELDS.iter().any(|spec| e.get(spec.field).is_some_and(|v| q.found_in(v)))
            } else {
                q.found_in(e.text())
            };
            return in_fields || q.found_in(&e.id.to_string());
        }
        true
    }

    /// The matching records, newest event first.
    pub fn select(&self, snap: &Snapshot) -> Vec<Ref> {
        let range = snap.time_range(self.from, self.to);
        let refs = &snap.by_time[range];
        if self.is_empty() {
            return refs.to_vec();
        }
        refs.iter().copied().filter(|r| self.matches(snap, snap.entry(*r))).collect()
    }
}

impl Params {
    /// The value of text filter `name`.
    pub fn text(&self, name: &str) -> &str {
        match name {
            "tenant" => &self.tenant,
            "app" => &self.app,
            "user" => &self.user,
            "action" => &self.action,
            "category" => &self.category,
            "outcome" => &self.outcome,
            "ip" => &self.ip,
            "host" => &self.host,
            "q" => &self.q,
            "kind" => &self.kind,
            "from" => &self.from,
            "to" => &self.to,
            _ => "",
        }
    }

    pub fn sort_key(&self) -> SortKey {
        SORTABLE.iter().find(|(n, _)| *n == self.sort).map_or(SortKey::Time, |(_, k)| *k)
    }

    pub fn ascending(&self) -> bool {
        self.dir == "asc"
    }

    pub fn per_page(&self) -> usize {
        if self.per == 0 { PER_PAGE } else { self.per.min(MAX_PER_PAGE) }
    }

    /// The query string of these filters (for links), without sort and page.
    pub fn filter_query(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for name in ["q", "from", "to", "tenant", "app", "user", "action", "category", "outcome", "ip", "host", "kind"]
        {
            let v = self.text(name);
            if !v.is_empty() {
                s.append_pair(name, v);
            }
        }
        s.finish()
    }
}

/// One page of the records table.
pub struct Page {
    pub rows: Vec<Ref>,
    pub total: usize,
    pub page: usize,
    pub pages: usize,
}

/// Filters, sorts and cuts one page.
pub fn page(snap: &Snapshot, filter: &Filter, p: &Params) -> Page {
    let per = p.per_page();
    let key = p.sort_key();
    let asc = p.ascending();
    let range = snap.time_range(filter.from, filter.to);
    let (rows, total) = if key == SortKey::Time && filter.is_empty() {
        // Already in order: no scan.
        let all = &snap.by_time[range];
        let total = all.len();
        let pages = total.div_ceil(per).max(1);
        let page = p.page.min(pages - 1);
        let rows: Vec<Ref> = if asc {
            all.iter().rev().skip(page * per).take(per).copied().collect()
        } else {
            all.iter().skip(page * per).take(per).copied().collect()
        };
        (rows, total)
    } else {
        let mut all = filter.select(snap);
        match key {
            SortKey::Time => {}
            SortKey::Id => all.sort_by_key(|r| {
                let e = snap.entry(*r);
                std::cmp::Reverse((e.id, e.host))
            }),
            SortKey::Field(f) => all.sort_by(|a, b| snap.entry(*b).value(f).cmp(snap.entry(*a).value(f))),
        }
        if asc {
            all.reverse();
        }
        let total = all.len();
        let pages = total.div_ceil(per).max(1);
        let page = p.page.min(pages - 1);
        let rows = all.into_iter().skip(page * per).take(per).collect();
        (rows, total)
    };
    let pages = total.div_ceil(per).max(1);
    Page { rows, total, page: p.page.min(pages - 1), pages }
}

/// What a record is, for sessions and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Login,
    Logout,
    FailedLogin,
    Change,
    Other,
}

/// Classifies a record by its action and category: "Login", "User login",
/// "Logon" are logins; "Logout", "Log off" logouts; a login action with a
/// failure outcome or category, or "Login failure"/"failed", a failed login;
/// category config or modify, or an action starting with Add, Change,
/// Delete, Modify, Create, Remove, Update or Set, a change.
pub fn kind(e: &Entry) -> Kind {
    let action = e.value(Field::ActionType).to_ascii_lowercase();
    let failed = e.value(Field::Outcome).eq_ignore_ascii_case("failure")
        || e.value(Field::Category).eq_ignore_ascii_case("failure")
        || action.contains("fail");
    let logout = ["logout", "log out", "logoff", "log off", "signout", "sign out"].iter().any(|w| action.contains(w));
    let login = ["login", "log in", "logon", "log on", "signin", "sign in"].iter().any(|w| action.contains(w));
    if logout {
        return Kind::Logout;
    }
    if login {
        return if failed { Kind::FailedLogin } else { Kind::Login };
    }
    let category = e.value(Field::Category).to_ascii_lowercase();
    let first = action.split_whitespace().next().unwrap_or("");
    if category == "config"
        || category == "modify"
        || ["add", "change", "delete", "modify", "create", "remove", "update", "set", "edit"].contains(&first)
    {
        return Kind::Change;
    }
    Kind::Other
}

/// The session id of a record: its `session_id`, else a "Session ID: N" in
/// its action data (as some applications write it).
pub fn session_id(e: &Entry) -> Option<String> {
    if let Some(s) = e.get(Field::SessionId).map(str::trim).filter(|s| !s.is_empty()) {
        return Some(s.to_string());
    }
    let data = e.value(Field::ActionData);
    let lower = data.to_ascii_lowercase();
    let at = lower.find("session id:")? + "session id:".len();
    let id: String =
        data[at..].trim_start().chars().take_while(|c| !c.is_whitespace() && *c != ',' && *c != ';').collect();
    (!id.is_empty()).then_some(id)
}

/// What pairs a login with its logout: host, application, login type,
/// session id and user (ASCII letters in any case).
type SessionKey = (u32, String, String, String, String);

fn session_key(e: &Entry, sid: String) -> SessionKey {
    (
        e.host,
        e.value(Field::AppName).to_string(),
        e.value(Field::AuthType).to_string(),
        sid,
        e.value(Field::UserName).to_ascii_lowercase(),
    )
}

/// A login and what followed it.
#[derive(Debug)]
pub struct Session {
    pub login: Option<Ref>,
    pub logout: Option<Ref>,
    /// Failed logins of the same user in the same application (and host)
    /// since the user's previous login there.
    pub failures: Vec<Ref>,
    /// Changes by the same user between login and logout.
    pub changes: Vec<Ref>,
    /// Every other record of the user in between.
    pub others: usize,
    pub user: String,
    pub auth_type: String,
    pub id: Option<String>,
}

impl Session {
    /// Milliseconds from login to logout.
    pub fn duration(&self, snap: &Snapshot) -> Option<i64> {
        let (a, b) = (snap.entry(self.login?).time, snap.entry(self.logout?).time);
        (a != i64::MIN && b != i64::MIN).then_some(b - a)
    }
}

/// Pairs logins and logouts among the records `filter` selects (sessions
/// whose login or logout is selected), newest first. Key: host,
/// application, login type (`auth_type`), session id and user; a logout
/// without a session id closes the user's latest open session of the same
/// login type. A logout with no login is a session of its own, with no
/// start.
pub fn sessions(snap: &Snapshot, filter: &Filter) -> Vec<Session> {
    let selected = filter.select(snap);
    let mut out: Vec<Session> = Vec::new();
    // Open sessions: key → index in out.
    let mut open: HashMap<SessionKey, usize> = HashMap::new();
    // user → open session indexes, latest last.
    let mut open_by_user: HashMap<(u32, String), Vec<usize>> = HashMap::new();
    // Failed logins per host, application and user, until that user's next login there.
    let mut failures: HashMap<(u32, String, String), Vec<Ref>> = HashMap::new();
    for r in selected.iter().rev() {
        let e = snap.entry(*r);
        let user = e.value(Field::UserName).to_string();
        let auth = e.value(Field::AuthType).to_string();
        let uk = (e.host, user.clone());
        let fk = (e.host, e.value(Field::AppName).to_string(), user.clone());
        match kind(e) {
            Kind::Login => {
                let sid = session_id(e);
                let s = Session {
                    login: Some(*r),
                    logout: None,
                    failures: failures.remove(&fk).unwrap_or_default(),
                    changes: Vec::new(),
                    others: 0,
                    user: user.clone(),
                    auth_type: auth.clone(),
                    id: sid.clone(),
                };
                out.push(s);
                let i = out.len() - 1;
                if let Some(sid) = sid {
                    open.insert(session_key(e, sid), i);
                }
                open_by_user.entry(uk).or_default().push(i);
            }
            Kind::Logout => {
                let sid = session_id(e);
                let found = match &sid {
                    Some(sid) => open.remove(&session_key(e, sid.clone())),
                    None => open_by_user
                        .get(&uk)
                        .and_then(|v| v.iter().rev().find(|i| out[**i].auth_type == auth && out[**i].logout.is_none()))
                        .copied(),
                };
                match found {
                    Some(i) => {
                        out[i].logout = Some(*r);
                        if let Some(v) = open_by_user.get_mut(&uk) {
                            v.retain(|x| *x != i);
                        }
                    }
                    None => out.push(Session {
                        login: None,
                        logout: Some(*r),
                        failures: Vec::new(),
                        changes: Vec::new(),
                        others: 0,
                        user,
                        auth_type: auth,
                        id: sid,
                    }),
                }
            }
            Kind::FailedLogin => failures.entry(fk).or_default().push(*r),
            k => {
                let sid = session_id(e);
                let target = match sid.and_then(|sid| open.get(&session_key(e, sid)).copied()) {
                    Some(i) => Some(i),
                    None => open_by_user.get(&uk).and_then(|v| v.last().copied()),
                };
                if let Some(i) = target {
                    if k == Kind::Change {
                        out[i].changes.push(*r);
                    } else {
                        out[i].others += 1;
                    }
                }
            }
        }
    }
    out.reverse();
    out
}

/// Failed logins of one user from one source.
#[derive(Debug)]
pub struct FailureRow {
    pub user: String,
    pub source: String,
    pub count: usize,
    pub first: i64,
    pub last: i64,
    /// Most failures within any [`BURST_WINDOW_MS`].
    pub burst: usize,
}

/// The window a burst of failed logins is counted in.
pub const BURST_WINDOW_MS: i64 = 5 * 60 * 1000;
/// Failures within the window that make a burst.
pub const BURST_AT: usize = 5;

/// Failed logins by user and source, most first.
pub fn failed_logins(snap: &Snapshot, filter: &Filter) -> Vec<FailureRow> {
    let mut groups: HashMap<(String, String), Vec<i64>> = HashMap::new();
    for r in filter.select(snap) {
        let e = snap.entry(r);
        if kind(e) == Kind::FailedLogin {
            groups
                .entry((e.value(Field::UserName).to_string(), e.value(Field::SourceIp).to_string()))
                .or_default()
                .push(e.time);
        }
    }
    let mut rows: Vec<FailureRow> = groups
        .into_iter()
        .map(|((user, source), mut times)| {
            times.sort_unstable();
            let mut burst = 0;
            let mut lo = 0;
            for hi in 0..times.len() {
                while times[hi].saturating_sub(times[lo]) > BURST_WINDOW_MS {
                    lo += 1;
                }
                burst = burst.max(hi - lo + 1);
            }
            FailureRow { user, source, count: times.len(), first: times[0], last: times[times.len() - 1], burst }
        })
        .collect();
    rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.user.cmp(&b.user)).then_with(|| a.source.cmp(&b.source)));
    rows
}

/// Changes of one user in one application.
#[derive(Debug)]
pub struct ChangeRow {
    pub user: String,
    pub app: String,
    pub count: usize,
    pub first: i64,
    pub last: i64,
    /// Actions and how often, most first.
    pub actions: Vec<(String, usize)>,
}

/// Changes by user and application, most first.
pub fn changes(snap: &Snapshot, filter: &Filter) -> Vec<ChangeRow> {
    /// Count, first and last time, and count per action.
    type Acc = (usize, i64, i64, HashMap<String, usize>);
    let mut groups: HashMap<(String, String), Acc> = HashMap::new();
    for r in filter.select(snap) {
        let e = snap.entry(r);
        if kind(e) != Kind::Change {
            continue;
        }
        let g = groups.entry((e.value(Field::UserName).to_string(), e.value(Field::AppName).to_string())).or_insert((
            0,
            i64::MAX,
            i64::MIN,
            HashMap::new(),
        ));
        g.0 += 1;
        g.1 = g.1.min(e.time);
        g.2 = g.2.max(e.time);
        *g.3.entry(e.value(Field::ActionType).to_string()).or_default() += 1;
    }
    let mut rows: Vec<ChangeRow> = groups
        .into_iter()
        .map(|((user, app), (count, first, last, actions))| {
            let mut actions: Vec<(String, usize)> = actions.into_iter().collect();
            actions.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            ChangeRow { user, app, count, first, last, actions }
        })
        .collect();
    rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.user.cmp(&b.user)).then_with(|| a.app.cmp(&b.app)));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_needles_match_the_whole_value_and_nul_never_matches_across_fields() {
        let n = Needle::new("=Alice").unwrap();
        assert!(n.found_in("alice"));
        assert!(!n.found_in("malice"));
        assert!(Needle::new("=").unwrap().found_in(""));
        assert_eq!(Needle::search("a\0B").unwrap().text, b"a\0b");
        // One field's value may hold NUL, and is matched whole.
        assert!(Needle::new("=a\0B").unwrap().found_in("A\0b"));
        let long = "x".repeat(5000);
        assert!(Needle::new(&format!("={long}")).unwrap().found_in(&long));
    }

    #[test]
    fn needle_matches_any_ascii_case_and_nothing_else() {
        let n = Needle::new("AdMin").unwrap();
        assert!(n.found_in("the admin user"));
        assert!(n.found_in("ADMIN"));
        assert!(!n.found_in("admi"));
        assert!(!n.found_in("a d m i n"));
        let u = Needle::new("ÄBC").unwrap();
        assert!(u.found_in("xÄBC"));
        // Agrees with a lowercase-both-sides search on ASCII text.
        for hay in ["", "a", "xadminx", "ADMINadmin", "adm", "Zadmin"] {
            assert_eq!(n.found_in(hay), hay.to_ascii_lowercase().contains("admin"), "{hay:?}");
        }
    }
}
