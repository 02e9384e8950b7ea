//! Command-line interface: the flags and commands scripts rely on (SPEC §12).
//! The `///` comments are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "audit-trail",
    version,
    about = "Audit-trail archiver for telephony and unified-communications systems",
    long_about = "Audit-trail archiver for telephony and unified-communications systems.\n\n\
Applications submit audit records (logins, failed logins, provisioning changes, maintenance \
commands); audit-trail gives each an id, keeps the newest ones in a circular log and writes every \
record to hostname-named XML files that are sealed and never touched again. `serve` runs the \
service; the other commands work on the same data directory, through the service when it runs.",
    after_long_help = examples::MAIN
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

    /// More detail on stderr (-v debug, -vv trace); RUST_LOG, when set, decides instead
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Less on stderr (-q warnings and errors only, -qq errors only)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Append one record (one flag per field) or JSON Lines (--json FILE|-)
    #[command(after_long_help = examples::APPEND)]
    Append(Box<AppendArgs>),
    /// Show the circular log as a table
    #[command(after_long_help = examples::SHOW)]
    Show(ShowArgs),
    /// Export records as CSV, JSON Lines, XML or a self-contained HTML page
    #[command(after_long_help = examples::EXPORT)]
    Export(ExportArgs),
    /// Seal the active file now
    #[command(after_long_help = examples::ROTATE)]
    Rotate,
    /// Prove files intact: well-formed, ids contiguous, hash chain, seal MACs (--key), anchors (--anchor)
    #[command(after_long_help = examples::VERIFY)]
    Verify(VerifyArgs),
    /// Read files in a browser: verify them, then serve a read-only web view on loopback
    #[command(after_long_help = examples::VIEW)]
    View(ViewArgs),
    /// Manage the web console's accounts (passwords stored as Argon2id hashes)
    #[command(after_long_help = examples::USER)]
    User(UserArgs),
    /// Create a new random key file for seal MACs (hmac_key_file), readable by its owner only
    #[command(after_long_help = examples::KEYGEN)]
    Keygen(KeygenArgs),
    /// Counts, active file, next id, service, schedules and their last runs
    #[command(after_long_help = examples::STATUS)]
    Status(StatusArgs),
    /// Compress sealed files into archive/ (verified, recorded in the manifest)
    #[command(after_long_help = examples::ARCHIVE)]
    Archive,
    /// Remove sealed and archived files older than retention_days
    #[command(after_long_help = examples::PURGE)]
    Purge,
    /// Write a backup bundle of the data directory (consistent while the service runs)
    #[command(after_long_help = examples::BACKUP)]
    Backup(BackupArgs),
    /// Restore a backup bundle into the data directory and verify it
    #[command(after_long_help = examples::RESTORE)]
    Restore(RestoreArgs),
    /// Upload sealed files to the configured targets (FTP, FTPS, SFTP), each file once
    #[command(after_long_help = examples::UPLOAD)]
    Upload(UploadArgs),
    /// Check a target: connect, log in, write, rename, size and remove a probe file
    #[command(after_long_help = examples::TEST_TARGET)]
    TestTarget(TestTargetArgs),
    /// SIEM forwarding: `siem test` sends a test message to the configured receiver
    #[command(after_long_help = examples::SIEM)]
    Siem(SiemArgs),
    /// Run the service: ingest socket, scheduler, self-audit (stop with SIGTERM, reload with SIGHUP)
    #[command(after_long_help = examples::SERVE)]
    Serve,
    /// List the schedules with their next fire times and last runs
    #[command(after_long_help = examples::SCHEDULES)]
    Schedules(SchedulesArgs),
    /// Check the configuration and the schedule files, or show the effective configuration
    #[command(after_long_help = examples::CONFIG)]
    Config(ConfigArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(after_long_help = examples::COMPLETIONS)]
    Completions(CompletionsArgs),
    /// Print the manual page (roff), or write one page per command with --dir
    #[command(after_long_help = examples::MAN)]
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell the script is for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write audit-trail.1 and one page per command (audit-trail-append.1, …)
    /// into DIR instead of printing the main page
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
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
    #[command(after_long_help = examples::CONFIG_CHECK)]
    Check,
    /// Print the effective configuration (defaults filled in) and the schedules;
    /// secrets are never printed
    #[command(after_long_help = examples::CONFIG_SHOW)]
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
    #[command(after_long_help = examples::SIEM_TEST)]
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
    /// The user's first name
    #[arg(long)]
    pub first_name: Option<String>,
    /// The user's last name
    #[arg(long)]
    pub last_name: Option<String>,
    /// Tenant (customer, site or partition) the action was made in
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
    /// Session the action belongs to, as the application names it
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
    /// Comma-separated values with a header row (spreadsheet-safe unless --csv-raw)
    Csv,
    /// JSON Lines: one record per line
    Json,
    /// The XML format of the sealed files
    Xml,
    /// One self-contained HTML page (table, sorting, filters, print layout)
    /// that opens from disk in any browser
    Html,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output format
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
    /// Tenant
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
    /// Event class (presence, failure, system, config, …)
    #[arg(long)]
    pub category: Option<String>,
}

impl Opts {
    /// The global flags, for [`crate::app::Ctx::new`].
    pub fn settings(&self) -> crate::app::Settings {
        crate::app::Settings {
            data_dir: self.data_dir.clone(),
            config: self.config.clone(),
            schedules: self.schedules.clone(),
            timeout_secs: self.timeout,
        }
    }
}

impl From<ExportFormat> for crate::export::Format {
    fn from(f: ExportFormat) -> Self {
        match f {
            ExportFormat::Csv => Self::Csv,
            ExportFormat::Json => Self::Json,
            ExportFormat::Xml => Self::Xml,
            ExportFormat::Html => Self::Html,
        }
    }
}

impl FilterArgs {
    /// The filter these flags describe.
    pub fn filter(&self) -> anyhow::Result<crate::export::Filter> {
        use crate::record::Field;
        let text = [
            (Field::Tenant, &self.tenant),
            (Field::AppName, &self.app),
            (Field::UserName, &self.user),
            (Field::ActionType, &self.action),
            (Field::Category, &self.category),
        ]
        .into_iter()
        .filter_map(|(f, v)| v.clone().map(|v| (f, v)))
        .collect();
        crate::export::Filter::new(self.from.as_deref(), self.to.as_deref(), text)
    }
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
    pub anchors: Vec<crate::store::verify::Anchor>,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ViewArgs {
    /// Files and directories to read (plain or .gz, any order, several
    /// hosts; default: the whole data directory)
    pub paths: Vec<PathBuf>,
    /// Loopback address and port to serve on (default: 127.0.0.1, a free port)
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
    /// The accounts file (default: [web] accounts, else <data-dir>/state/web-accounts)
    #[arg(long, value_name = "FILE", global = true)]
    pub accounts: Option<PathBuf>,
}

/// What a console account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Records, a record's detail, sessions, reports, verification, downloads
    Auditor,
    /// All an auditor may, and the status page (schedules, uploads, SIEM)
    Operator,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add an account; the password is asked for twice, or read from stdin with --password-stdin
    #[command(after_long_help = examples::USER_ADD)]
    Add {
        /// Account name: 1 to 64 letters, digits, '.', '_', '@' or '-'
        name: String,
        /// What the account may do
        #[arg(long, value_enum, default_value = "auditor")]
        role: RoleArg,
        /// Read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set an account's password (and with --role its role); its sessions end
    #[command(after_long_help = examples::USER_PASSWD)]
    Passwd {
        /// The account
        name: String,
        /// A new role as well
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
        /// Read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete an account; its sessions end within 30 s (at their next request, if sooner)
    #[command(after_long_help = examples::USER_DEL)]
    Del {
        /// The account
        name: String,
    },
    /// List accounts and their roles, one per line (name TAB role)
    #[command(after_long_help = examples::USER_LIST)]
    List,
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

/// The examples at the end of each command's long help (`--help`) and man page.
pub mod examples {
    pub const MAIN: &str = "\
Examples:
  audit-trail serve
  audit-trail append --app \"System Admin Tool\" --action Login --user alice --source-ip 10.1.1.10
  audit-trail show -n 20
  audit-trail export --format csv --from 2026-11-01 --to 2026-11-30 --out november.csv
  audit-trail verify --key /etc/audit-trail/mac.key
  audit-trail status --check
  audit-trail config check

Environment: AUDIT_TRAIL_DATA (--data-dir), AUDIT_TRAIL_CONFIG (--config), AUDIT_TRAIL_TIMEOUT (--timeout).
Exit status: 0 success, 1 failure, 2 usage or configuration error, 3 files altered or missing (verify), \
4 input refused, 5 outcome unknown, 75 temporary failure (retry later); status --check: 10 to 14.";
    pub const APPEND: &str = "\
Examples:
  audit-trail append --app \"System Admin Tool\" --action Login --user alice --source-ip 10.1.1.10 --category presence
  audit-trail append --app CUCM --action \"Login failure\" --user bob --outcome failure --category failure
  audit-trail append --json records.jsonl
  printf '%s\\n' '{\"app_name\":\"PBX\",\"action_type\":\"Add\",\"user_name\":\"carol\"}' | audit-trail append --json -";
    pub const SHOW: &str = "\
Examples:
  audit-trail show
  audit-trail show -n 50 --wide";
    pub const EXPORT: &str = "\
Examples:
  audit-trail export --format csv > log.csv
  audit-trail export --format json --all --user alice --from 2026-11-01
  audit-trail export --format html --all --out audit.html
  audit-trail export --format xml --tenant acme --category config -o acme.xml";
    pub const ROTATE: &str = "\
Examples:
  audit-trail rotate";
    pub const VERIFY: &str = "\
Examples:
  audit-trail verify
  audit-trail verify --key /etc/audit-trail/mac.key --json
  audit-trail verify /srv/offboard/pbx01_*.xml.gz --anchor 5000:9e29…
Exit status 3 when anything was altered, is missing or damaged.";
    pub const VIEW: &str = "\
Examples:
  audit-trail view
  audit-trail view /srv/offboard/pbx01/ /srv/offboard/pbx02/*.xml.gz
  audit-trail view --listen 127.0.0.1:8480 pbx01_20261122094537.xml
Prints the address to open; serves until Ctrl-C. Nothing is written.";
    pub const USER: &str = "\
Examples:
  audit-trail user add alice --role operator
  echo 'long secret' | audit-trail user add bob --password-stdin
  audit-trail user passwd alice
  audit-trail user list";
    pub const USER_ADD: &str = "\
Examples:
  audit-trail user add alice --role operator
  echo 'long secret' | audit-trail user add bob --password-stdin";
    pub const USER_PASSWD: &str = "\
Examples:
  audit-trail user passwd alice
  audit-trail user passwd bob --role operator";
    pub const USER_DEL: &str = "\
Examples:
  audit-trail user del bob";
    pub const USER_LIST: &str = "\
Examples:
  audit-trail user list
  audit-trail --config /etc/audit-trail/audit-trail.toml user list";
    pub const KEYGEN: &str = "\
Examples:
  audit-trail keygen /etc/audit-trail/mac.key";
    pub const STATUS: &str = "\
Examples:
  audit-trail status
  audit-trail status --json | jq .next_id
  audit-trail status --check --max-siem-lag 10000 --max-upload-pending 48
With --check the exit status is 0 when nothing needs attention, else the lowest of: 10 service not \
running, 11 last verify failed, 12 uploads failing, 13 SIEM failing or lagging, 14 a schedule failed.";
    pub const ARCHIVE: &str = "\
Examples:
  audit-trail archive";
    pub const PURGE: &str = "\
Examples:
  audit-trail purge";
    pub const BACKUP: &str = "\
Examples:
  audit-trail backup
  audit-trail backup --out /var/backups/audit-trail --keep 14";
    pub const RESTORE: &str = "\
Examples:
  audit-trail restore /var/backups/audit-trail/pbx01_20261122024500.backup.tar.gz
  audit-trail --data-dir /srv/new restore pbx01_20261122024500.backup.tar.gz --force";
    pub const UPLOAD: &str = "\
Examples:
  audit-trail upload
  audit-trail upload --target auditors-sftp";
    pub const TEST_TARGET: &str = "\
Examples:
  audit-trail test-target auditors-sftp";
    pub const SIEM: &str = "\
Examples:
  audit-trail siem test";
    pub const SIEM_TEST: &str = SIEM;
    pub const SERVE: &str = "\
Examples:
  audit-trail serve
  audit-trail --data-dir /var/lib/audit-trail --config /etc/audit-trail/audit-trail.toml serve
  kill -HUP \"$(cat audit-data/state/serve.lock)\"    # reload the configuration and schedules";
    pub const SCHEDULES: &str = "\
Examples:
  audit-trail schedules
  audit-trail schedules --next 5 --json";
    pub const CONFIG: &str = "\
Examples:
  audit-trail config check && systemctl reload audit-trail
  audit-trail config show
  audit-trail --config /etc/audit-trail/audit-trail.toml config show --json";
    pub const CONFIG_CHECK: &str = "\
Examples:
  audit-trail config check
  audit-trail --config /etc/audit-trail/audit-trail.toml --schedules /etc/audit-trail/schedules config check";
    pub const CONFIG_SHOW: &str = "\
Examples:
  audit-trail config show
  audit-trail config show --json | jq .config.targets";
    pub const COMPLETIONS: &str = "\
Examples:
  audit-trail completions bash > /etc/bash_completion.d/audit-trail
  audit-trail completions zsh > \"${fpath[1]}/_audit-trail\"
  audit-trail completions fish > ~/.config/fish/completions/audit-trail.fish";
    pub const MAN: &str = "\
Examples:
  audit-trail man | man -l -
  audit-trail man --dir /usr/local/share/man/man1";
}
