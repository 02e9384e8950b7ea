//! The application context: what every command and the service resolve once
//! from flags, environment and the configuration file ([`Ctx`]), and the ways
//! they open the log. It knows nothing of the command line: `cli` turns its
//! flags into [`Settings`].

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use crate::config::Config;
use crate::store::layout::Layout;
use crate::store::writer::Log;
use crate::timestamp::{Clock, SystemClock};

/// Where the data, configuration and schedules are, as given by the user
/// (`None`: the default).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub data_dir: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub schedules: Option<PathBuf>,
    /// Seconds to wait for each answer of the running service.
    pub timeout_secs: u64,
}

impl Settings {
    /// The data directory the flags and environment name.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| PathBuf::from("audit-data"))
    }

    /// Where the configuration is read from, and whether it was named
    /// explicitly (then it must exist).
    pub fn config_location(&self) -> (PathBuf, bool) {
        match &self.config {
            Some(p) => (p.clone(), true),
            None => (self.data_dir().join("audit-trail.toml"), false),
        }
    }
}

/// Everything a command needs, resolved once from flags, environment and file.
#[derive(Clone)]
pub struct Ctx {
    pub layout: Layout,
    pub config: Config,
    /// Where the configuration is read from (it may not exist).
    pub config_path: PathBuf,
    config_explicit: bool,
    pub schedules_dir: PathBuf,
    pub host: String,
    pub clock: Arc<dyn Clock>,
    /// How long to wait for each answer of the running service.
    pub timeout: std::time::Duration,
}

impl Ctx {
    pub fn new(opts: &Settings) -> Result<Ctx> {
        let data_dir = opts.data_dir();
        let (config_path, explicit) = opts.config_location();
        let config = Config::load(&config_path, explicit).map_err(|e| {
            e.context(crate::error::Failure {
                kind: crate::error::Kind::Config,
                message: "the configuration cannot be used".into(),
            })
        })?;
        let host = config.host();
        let schedules_dir = opts
            .schedules
            .clone()
            .or_else(|| config.schedules_dir.clone())
            .unwrap_or_else(|| PathBuf::from("schedules"));
        Ok(Ctx {
            layout: Layout::new(&data_dir),
            config,
            config_path,
            config_explicit: explicit,
            schedules_dir,
            host,
            clock: Arc::new(SystemClock),
            timeout: std::time::Duration::from_secs(opts.timeout_secs.max(1)),
        })
    }

    /// The configuration file's text, `None` when there is none (all defaults).
    pub fn config_text(&self) -> Option<String> {
        std::fs::read_to_string(&self.config_path).ok()
    }

    /// Reads the configuration again (for a reload).
    pub fn reload_config(&self) -> Result<(Config, Option<String>)> {
        let cfg = Config::load(&self.config_path, self.config_explicit)?;
        Ok((cfg, self.config_text()))
    }

    /// Opens the log for writing, printing what recovery repaired.
    pub fn open_log(&self) -> Result<Log> {
        let key = self.config.mac_key()?;
        let (mut log, notes) = Log::open(&self.layout, &self.host, self.config.capacity, self.clock.clone(), key)?;
        for n in notes {
            tracing::warn!("{n}");
        }
        let events: Vec<_> = log
            .take_incidents()
            .into_iter()
            .map(|i| crate::selfaudit::Event::new("Log", "Integrity", i).failed())
            .collect();
        crate::selfaudit::append_to(&mut log, &events, &self.host, &*self.clock)?;
        Ok(log)
    }
}

impl Ctx {
    /// Opens the log to append directly (no service running): refuses when
    /// auditing is disabled on a fresh directory, and records configuration
    /// changes and refused attempts to disable auditing.
    pub fn open_log_for_append(&self) -> Result<Log> {
        let mut log = self.open_log()?;
        let used = log.next_id() > 1;
        if !self.config.enabled && !used {
            anyhow::bail!(
                "auditing is disabled (enabled = false in {}); record not appended",
                self.config_path.display()
            );
        }
        let events =
            crate::selfaudit::config_events(&self.layout, self.config_text().as_deref(), &self.config, used, false)?;
        if !self.config.enabled {
            tracing::warn!(
                "enabled = false is refused: this data directory holds records and auditing cannot be \
                 switched off"
            );
        }
        crate::selfaudit::append_to(&mut log, &events, &self.host, &*self.clock)?;
        Ok(log)
    }
}

impl Ctx {
    /// Records the archiver's own events: through the running service when
    /// there is one (it holds the log), else directly.
    pub fn record_events(&self, events: &[crate::selfaudit::Event]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        // The archiver's own records go through the control socket (owner
        // only): the ingest socket refuses them from anyone.
        let records: Vec<String> = events.iter().map(crate::selfaudit::Event::json_line).collect();
        if crate::client::control_request(self, &serde_json::json!({ "command": "audit", "records": records }))?
            .is_some()
        {
            return Ok(());
        }
        crate::selfaudit::append_to(&mut self.open_log()?, events, &self.host, &*self.clock)?;
        Ok(())
    }
}
