//! Command-line interface: the flags and commands scripts rely on (SPEC §12).
//! The `///` comments are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "audit-trail",
    version,
    about = "Audit-trail archiver for telephony and unified-communications systems"
)]
pub struct Opts {
    /// Data directory (default: $AUDIT_TRAIL_DATA, else ./audit-data)
    #[arg(long, global = true, env = "AUDIT_TRAIL_DATA", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Configuration file (default: $AUDIT_TRAIL_CONFIG, else <data-dir>/audit-trail.toml; no file means all defaults)
    #[arg(long, global = true, env = "AUDIT_TRAIL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Schedules directory (default: the schedules_dir setting, else ./schedules)
    #[arg(long, global = true, value_name = "DIR")]
    pub schedules: Option<PathBuf>,

    /// Seconds to wait for each answer of the running service (append); past
    /// it the command fails with exit status 5: the outcome is unknown
    #[arg(long, global = true, env = "AUDIT_TRAIL_TIMEOUT", value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Append one record (one flag per field) or JSON Lines (--json FILE|-)
    Append(Box<AppendArgs>),
    /// Show the circular log as a table
    Show(ShowArgs),
    /// Export records as CSV, JSON Lines, XML or a self-contained HTML page
    Export(ExportArgs),
    /// Seal the active file now
    Rotate,
    /// Prove files intact: well-formed, ids contiguous, hash chain, seal MACs (--key), anchors (--anchor)
    Verify(VerifyArgs),
    /// Create a new random key file for seal MACs (hmac_key_file), readable by its owner only
    Keygen(KeygenArgs),
    /// Counts, active file, next id, service, schedules and their last runs
    Status(StatusArgs),
    /// Compress sealed files into archive/ (verified, recorded in the manifest)
    Archive,
    /// Remove sealed and archived files older than retention_days
    Purge,
    /// Write a backup bundle of the data directory (consistent while the service runs)
    Backup(BackupArgs),
    /// Restore a backup bundle into the data directory and verify it
    Restore(RestoreArgs),
    /// Upload sealed files to the configured targets (FTP, FTPS, SFTP), each file once
    Upload(UploadArgs),
    /// Check a target: connect, log in, write, rename, size and remove a probe file
    TestTarget(TestTargetArgs),
    /// SIEM forwarding: `siem test` sends a test message to the configured receiver
    Siem(SiemArgs),
    /// Run the service: ingest socket, scheduler, self-audit (stop with SIGTERM, reload with SIGHUP)
    Serve,
    /// List the schedules with their next fire times and last runs
    Schedules(SchedulesArgs),
    /// Check the configuration and the schedule files, or show the effective configuration
    Config(ConfigArgs),
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the configuration file and every schedule file without starting
    /// anything; exit 2 with FILE:LINE: KEY: reason for each problem
    Check,
    /// Print the effective configuration (defaults filled in) and the schedules;
    /// secrets are never printed
    Show(ConfigShowArgs),
}

#[derive(Debug, Args)]
pub struct ConfigShowArgs {
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the key (an existing file is never replaced)
    pub path: PathBuf,
}

#[derive(Debug, Args)]
pub struct UploadArgs {
    /// Only this target (default: every enabled target)
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
}

#[derive(Debug, Args)]
pub struct TestTargetArgs {
    /// The target's name, as in [targets.NAME]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct SiemArgs {
    #[command(subcommand)]
    pub command: SiemCommand,
}

#[derive(Debug, Subcommand)]
pub enum SiemCommand {
    /// Send a test message to the [siem] receiver and report what happened
    Test,
}

#[derive(Debug, Args)]
pub struct SchedulesArgs {
    /// Fire times to show per schedule
    #[arg(long, default_value_t = 3)]
    pub next: usize,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AppendArgs {
    /// JSON Lines input, one record per line ("-" for standard input)
    #[arg(long, value_name = "FILE|-", conflicts_with_all = FIELD_FLAG_IDS)]
    pub json: Option<PathBuf>,

    #[command(flatten)]
    pub fields: FieldArgs,
}

/// Flag names of the record fields, in the order of `record::FIELDS`.
pub const FIELD_FLAG_NAMES: [&str; 16] = [
    "time",
    "detail-level",
    "user",
    "first-name",
    "last-name",
    "tenant",
    "source-ip",
    "node",
    "app",
    "context",
    "action",
    "data",
    "category",
    "outcome",
    "auth-type",
    "session-id",
];

const FIELD_FLAG_IDS: [&str; 16] = [
    "time",
    "detail_level",
    "user",
    "first_name",
    "last_name",
    "tenant",
    "source_ip",
    "node",
    "app",
    "context",
    "action",
    "data",
    "category",
    "outcome",
    "auth_type",
    "session_id",
];

/// One flag per record field (SPEC §12), in the order of `record::FIELDS`.
#[derive(Debug, Args, Default)]
pub struct FieldArgs {
    /// Event time, RFC 3339 (default: now)
    #[arg(long)]
    pub time: Option<String>,
    /// Detail level (default: Low)
    #[arg(long)]
    pub detail_level: Option<String>,
    /// Who did it
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long)]
    pub first_name: Option<String>,
    #[arg(long)]
    pub last_name: Option<String>,
    #[arg(long)]
    pub tenant: Option<String>,
    /// IPv4 or IPv6 address of the client
    #[arg(long)]
    pub source_ip: Option<String>,
    /// Node where the action was made (default: this host)
    #[arg(long)]
    pub node: Option<String>,
    /// Application (required), e.g. "System Admin Tool"
    #[arg(long)]
    pub app: Option<String>,
    /// Area of the application, e.g. "User Session"
    #[arg(long)]
    pub context: Option<String>,
    /// Action (required): Login, Logout, Login failure, Add, Change, Delete, Submit…
    #[arg(long)]
    pub action: Option<String>,
    /// Free text; kept exactly
    #[arg(long)]
    pub data: Option<String>,
    /// Event class: presence, failure, system, config, read, modify…
    #[arg(long)]
    pub category: Option<String>,
    /// success or failure
    #[arg(long)]
    pub outcome: Option<String>,
    /// SSO, LDAP, CUCM, Windows, Local…
    #[arg(long)]
    pub auth_type: Option<String>,
    #[arg(long)]
    pub session_id: Option<String>,
}

impl FieldArgs {
    /// The flag values in the order of `record::FIELDS`.
    pub fn values(&self) -> [Option<&str>; 16] {
        [
            &self.time,
            &self.detail_level,
            &self.user,
            &self.first_name,
            &self.last_name,
            &self.tenant,
            &self.source_ip,
            &self.node,
            &self.app,
            &self.context,
            &self.action,
            &self.data,
            &self.category,
            &self.outcome,
            &self.auth_type,
            &self.session_id,
        ]
        .map(|v| v.as_deref())
    }
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Only the newest N records
    #[arg(long, short = 'n', value_name = "N")]
    pub last: Option<u64>,
    /// Do not shorten long values
    #[arg(long)]
    pub wide: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
    Xml,
    /// One self-contained HTML page (table, sorting, filters, print layout)
    /// that opens from disk in any browser
    Html,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// The whole local history (active, sealed and archived files), not just the circular log
    #[arg(long)]
    pub all: bool,
    /// Write to FILE (complete or not at all) instead of standard output
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// CSV: write the exact values. By default a cell that a spreadsheet could
    /// run as a formula (starting with = + - @, tab or CR) gets a leading ' and
    /// every cell is quoted
    #[arg(long)]
    pub csv_raw: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Record filters (SPEC §8). Text filters match whole values, ignoring case.
#[derive(Debug, Args, Default)]
pub struct FilterArgs {
    /// From this time on (RFC 3339, "YYYY-MM-DD HH:MM:SS" local, or a date)
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Up to this time, inclusive (a date means through the end of that day)
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    #[arg(long)]
    pub tenant: Option<String>,
    /// Application name
    #[arg(long)]
    pub app: Option<String>,
    /// User name
    #[arg(long)]
    pub user: Option<String>,
    /// Action type
    #[arg(long)]
    pub action: Option<String>,
    #[arg(long)]
    pub category: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Files to check (plain or .gz; default: the whole data directory)
    pub paths: Vec<PathBuf>,
    /// Check every sealed file's MAC with this key file (the hmac_key_file);
    /// give it again for files sealed under earlier keys
    #[arg(long = "key", value_name = "FILE")]
    pub keys: Vec<PathBuf>,
    /// A chain value kept earlier, as ID:VALUE from `status --json` (or VALUE
    /// alone): the set must hold that record with that value
    #[arg(long = "anchor", value_name = "ID:VALUE")]
    pub anchors: Vec<crate::verify::Anchor>,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
    /// For monitoring: exit with a status that says what needs attention
    /// (10 service not running, 11 last verify failed, 12 uploads failing,
    /// 13 SIEM forwarding failing or lagging, 14 a schedule failed; the
    /// lowest applies) and list every problem found
    #[arg(long)]
    pub check: bool,
    /// With --check: a stopped service is not a problem (for hosts that
    /// append directly, without `serve`)
    #[arg(long, requires = "check")]
    pub allow_stopped: bool,
    /// With --check: SIEM forwarding is lagging when more than N records wait
    /// to be sent (default: any lag is fine, only errors count)
    #[arg(long, value_name = "N", requires = "check")]
    pub max_siem_lag: Option<u64>,
    /// With --check: uploads are failing when an enabled target has more than
    /// N files waiting (default: only failed scheduled uploads count)
    #[arg(long, value_name = "N", requires = "check")]
    pub max_upload_pending: Option<usize>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Directory for the bundle (default: <data-dir>/backups)
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Bundles to keep in that directory, newest first (default: keep_backups, 7)
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The bundle (`<host>_<YYYYMMDDHHMMSS>.backup.tar.gz`)
    pub bundle: PathBuf,
    /// Replace the contents of a data directory that is not empty
    #[arg(long)]
    pub force: bool,
}
