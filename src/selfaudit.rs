//! The archiver audits itself (SPEC §4): its start and stop, changes to its
//! configuration, attempts to disable auditing, restores and purges are
//! records like any other, with `app_name = "audit-trail"`. They bypass the
//! event mask: the archiver's own trail is never masked away.

use std::borrow::Cow;
use std::collections::BTreeSet;

use anyhow::Result;

use crate::config::Config;
use crate::fsx::write_atomic;
use crate::record::{self, Defaults, Field, Record};
use crate::store::layout::Layout;

pub const APP_NAME: &str = crate::record::SELF_APP_NAME;

/// One event of the archiver's own.
#[derive(Debug, Clone)]
pub struct Event {
    pub context: &'static str,
    pub action: &'static str,
    pub data: String,
    pub category: &'static str,
    pub outcome: &'static str,
    /// Who did it, when not the operating-system user running the archiver
    /// (a web console account).
    pub user: Option<String>,
    pub source_ip: Option<String>,
    pub auth_type: Option<&'static str>,
    pub session_id: Option<String>,
    /// When it happened, if not now (RFC 3339; a session found timed out
    /// ended when its idle time ran out).
    pub at: Option<String>,
}

impl Event {
    pub fn new(context: &'static str, action: &'static str, data: impl Into<String>) -> Event {
        Event {
            context,
            action,
            data: data.into(),
            category: "system",
            outcome: "success",
            user: None,
            source_ip: None,
            auth_type: None,
            session_id: None,
            at: None,
        }
    }

    /// The event happened at `at`, not now.
    pub fn at(mut self, at: String) -> Event {
        self.at = Some(at);
        self
    }

    /// An event of a web console account: its name, the client's address,
    /// the login type and the console session's id.
    pub fn by(mut self, user: &str, source_ip: &str, auth_type: &'static str, session_id: Option<&str>) -> Event {
        self.user = Some(user.to_string());
        self.source_ip = Some(source_ip.to_string());
        self.auth_type = Some(auth_type);
        self.session_id = session_id.map(str::to_string);
        self
    }

    fn user_name(&self) -> String {
        self.user.clone().unwrap_or_else(os_user)
    }

    pub fn category(mut self, c: &'static str) -> Event {
        self.category = c;
        self
    }

    pub fn failed(mut self) -> Event {
        self.outcome = "failure";
        self
    }

    /// The record, validated and normalised like a submitted one.
    pub fn record(&self, defaults: &Defaults<'_>) -> Record<'static> {
        let mut rec = Record::default();
        rec.set(Field::UserName, Cow::Owned(self.user_name()));
        if let Some(ip) = &self.source_ip {
            rec.set(Field::SourceIp, Cow::Owned(ip.clone()));
        }
        if let Some(a) = self.auth_type {
            rec.set(Field::AuthType, a);
        }
        if let Some(s) = &self.session_id {
            rec.set(Field::SessionId, Cow::Owned(s.clone()));
        }
        if let Some(t) = &self.at {
            rec.set(Field::Timestamp, Cow::Owned(t.clone()));
        }
        rec.set(Field::AppName, APP_NAME);
        rec.set(Field::AppContext, self.context);
        rec.set(Field::ActionType, self.action);
        rec.set(Field::ActionData, Cow::Owned(self.data.clone()));
        rec.set(Field::Category, self.category);
        rec.set(Field::Outcome, self.outcome);
        // Built from known-good values; validation only fills in defaults.
        let _ = record::validate(&mut rec, defaults);
        rec.into_owned()
    }

    /// The rendered record, ready for [`crate::store::writer::Appender::push_entry`].
    pub fn entry(&self, defaults: &Defaults<'_>) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        crate::store::writer::render_entry(&mut out, &self.record(defaults));
        out
    }

    /// The event as a JSON Lines request for the ingest socket.
    pub fn json_line(&self) -> String {
        let mut v = serde_json::json!({
            "user_name": self.user_name(),
            "app_name": APP_NAME,
            "app_context": self.context,
            "action_type": self.action,
            "action_data": self.data,
            "category": self.category,
            "outcome": self.outcome,
        });
        for (k, val) in [
            ("source_ip", self.source_ip.clone()),
            ("auth_type", self.auth_type.map(str::to_string)),
            ("session_id", self.session_id.clone()),
            ("timestamp", self.at.clone()),
        ] {
            if let Some(val) = val {
                v[k] = serde_json::Value::String(val);
            }
        }
        format!("{v}\n")
    }
}

/// Appends events straight to an open log (no service in between); returns
/// the first and last id.
pub fn append_to(
    log: &mut crate::store::writer::Log,
    events: &[Event],
    node: &str,
    clock: &dyn crate::timestamp::Clock,
) -> Result<Option<(u64, u64)>> {
    let now = crate::timestamp::format(&clock.now());
    let defaults = Defaults { now: &now, node };
    log.append(events.iter().map(|e| e.record(&defaults)))
}

/// The account the archiver runs as.
pub fn os_user() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "audit-trail".into())
}

/// Where the configuration seen last is remembered.
fn seen_path(layout: &Layout) -> std::path::PathBuf {
    layout.state.join("config.seen")
}

/// Compares the configuration with the one seen last and returns the events
/// to record: a change (naming the keys, never their values) and, when the
/// configuration tries to switch auditing off on a directory that holds
/// records, the refused attempt. `every_load` records the refused attempt on
/// every load, not only when the configuration changed (the service does,
/// at each start and reload).
pub fn config_events(
    layout: &Layout,
    text: Option<&str>,
    config: &Config,
    used: bool,
    every_load: bool,
) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    let new = text.unwrap_or("");
    let old = std::fs::read_to_string(seen_path(layout)).ok();
    if let Some(old) = &old {
        let keys: Vec<_> = changed_keys(old, new).into_iter().collect();
        if !keys.is_empty() {
            events.push(
                Event::new("Configuration", "Change", format!("configuration changed: {}", keys.join(", ")))
                    .category("config"),
            );
        }
    }
    let changed = old.as_deref() != Some(new);
    if !config.enabled && used && (every_load || changed) {
        events.push(
            Event::new(
                "Configuration",
                "Disable attempt",
                "enabled = false was refused: this data directory already holds records and auditing cannot be \
                 switched off; recording continues",
            )
            .category("config")
            .failed(),
        );
    }
    if changed {
        write_atomic(&seen_path(layout), new.as_bytes())?;
    }
    Ok(events)
}

/// Top-level keys (and `table.key` one level down) whose values differ.
fn changed_keys(old: &str, new: &str) -> BTreeSet<String> {
    let parse = |t: &str| t.parse::<toml::Table>().unwrap_or_default();
    let (a, b) = (parse(old), parse(new));
    let mut out = BTreeSet::new();
    for key in a.keys().chain(b.keys()) {
        match (a.get(key), b.get(key)) {
            (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
                for k in x.keys().chain(y.keys()) {
                    if x.get(k) != y.get(k) {
                        out.insert(format!("{key}.{k}"));
                    }
                }
            }
            (x, y) if x != y => {
                out.insert(key.clone());
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_names_keys_not_values() {
        let k = changed_keys(
            "capacity = 10\n[targets.a]\nhost = \"x\"\n",
            "capacity = 20\nretention_days = 3\n[targets.a]\nhost = \"y\"\n",
        );
        assert_eq!(k.into_iter().collect::<Vec<_>>(), ["capacity", "retention_days", "targets.a"]);
        assert!(changed_keys("a = 1 # c\n", "a = 1\n").is_empty());
    }
}
