//! The event mask (SPEC §4): which categories are recorded, and the count of
//! records dropped because of it.
//!
//! The mask is a `+`-separated list of category names (case-insensitive), or
//! `all`. A record without a category is always recorded: the mask selects
//! among classified events and never silently loses an unclassified one.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use crate::store::layout::Layout;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventMask {
    All,
    Only(Vec<String>),
}

impl EventMask {
    pub fn parse(text: &str) -> Result<EventMask, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("all") {
            return Ok(EventMask::All);
        }
        let mut names = Vec::new();
        for part in text.split('+') {
            let name = part.trim();
            if name.is_empty() {
                return Err(format!("event_mask = {text:?} has an empty category name"));
            }
            if name.eq_ignore_ascii_case("all") {
                return Ok(EventMask::All);
            }
            names.push(name.to_ascii_lowercase());
        }
        Ok(EventMask::Only(names))
    }

    /// Whether a record of this category is recorded.
    pub fn admits(&self, category: Option<&str>) -> bool {
        match (self, category) {
            (EventMask::All, _) | (_, None) => true,
            (EventMask::Only(names), Some(c)) => names.iter().any(|n| n.eq_ignore_ascii_case(c.trim())),
        }
    }

    /// The reason given for a dropped record.
    pub fn reason(category: &str) -> String {
        format!("category {category:?} is not in the event mask; record counted and dropped")
    }
}

/// Counts of records dropped by the mask, per category (lowercase), kept in
/// `state/dropped.json` by whoever holds the log.
pub fn dropped_path(layout: &Layout) -> std::path::PathBuf {
    layout.state.join("dropped.json")
}

pub fn read_dropped(layout: &Layout) -> Result<BTreeMap<String, u64>> {
    let path = dropped_path(layout);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("cannot read {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Adds `counts` to the stored totals (written aside and renamed).
pub fn add_dropped(layout: &Layout, counts: &BTreeMap<String, u64>) -> Result<()> {
    if counts.is_empty() {
        return Ok(());
    }
    let mut total = read_dropped(layout)?;
    for (k, v) in counts {
        *total.entry(k.clone()).or_default() += v;
    }
    crate::fsx::write_atomic(&dropped_path(layout), serde_json::to_string_pretty(&total)?.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_admit() {
        let m = EventMask::parse("presence+failure+System").unwrap();
        assert!(m.admits(Some("system")));
        assert!(m.admits(Some(" PRESENCE ")));
        assert!(!m.admits(Some("read")));
        assert!(m.admits(None));
        assert_eq!(EventMask::parse("ALL").unwrap(), EventMask::All);
        assert!(EventMask::parse("presence++read").is_err());
        assert!(EventMask::parse("").is_err());
    }
}
