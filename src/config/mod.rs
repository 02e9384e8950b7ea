//! The configuration file (`audit-trail.toml`) and the data directory layout.
//!
//! One type serves the file and the defaults: every key has its default here,
//! unknown keys are rejected with their name, and no file at all means all
//! defaults. Validation happens once, in [`Config::load`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

pub mod mask;

/// Default number of records in the circular log and in each file.
pub const DEFAULT_CAPACITY: u64 = 5000;
/// Largest capacity accepted (a file of this many records is still a few GB).
pub const MAX_CAPACITY: u64 = 10_000_000;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Auditing is on; once a data directory holds records it cannot be turned off.
    pub enabled: bool,
    /// Host name used in file names and as the default `node`; the system's by default.
    pub host_name: Option<String>,
    /// Records in the circular log and per file.
    pub capacity: u64,
    /// Days to keep sealed and archived files (0 = forever).
    pub retention_days: u32,
    /// Categories recorded, joined with `+` (`all` for everything).
    pub event_mask: String,
    /// Where schedule files are read from.
    pub schedules_dir: Option<PathBuf>,
    /// Backup bundles kept by the `backup` job and command (older ones are removed).
    pub keep_backups: usize,
    /// Path of the ingest socket (default `<data-dir>/ingest.sock`).
    pub ingest_socket: Option<PathBuf>,
    /// Permissions of the ingest socket, octal (default `"0660"`).
    pub socket_mode: String,
    /// File holding the secret key for seal MACs (SPEC §9); none by default.
    /// Read when the log is opened; the service reads it at start.
    pub hmac_key_file: Option<PathBuf>,
    /// Address of the Prometheus endpoint of `serve` (`"127.0.0.1:9464"`, or a
    /// port alone for 127.0.0.1); off when unset. Any address other than a
    /// loopback one makes record counts readable from the network.
    pub metrics_listen: Option<String>,
    pub targets: BTreeMap<String, TargetConfig>,
    pub siem: Option<SiemConfig>,
    /// The web console of `serve`; off when absent.
    pub web: Option<WebConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            host_name: None,
            capacity: DEFAULT_CAPACITY,
            retention_days: 0,
            event_mask: "presence+failure+system+config".into(),
            schedules_dir: None,
            keep_backups: 7,
            ingest_socket: None,
            socket_mode: "0660".into(),
            hmac_key_file: None,
            metrics_listen: None,
            targets: BTreeMap::new(),
            siem: None,
            web: None,
        }
    }
}

/// A configuration value that is one word of a fixed set, parsed once when the
/// file is read: the rest of the program matches on the variant, never on
/// text. An unknown word is refused at its place in the file, naming the
/// words allowed.
macro_rules! word_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "&'static str")]
        pub enum $name {
            $($(#[$vm])* $variant),+
        }

        impl $name {
            /// Every word, in the order the documentation gives them.
            pub const WORDS: &'static [&'static str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> std::result::Result<Self, String> {
                match s.as_str() {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!("{s:?} is not {}", one_of(Self::WORDS))),
                }
            }
        }

        impl From<$name> for &'static str {
            fn from(v: $name) -> &'static str {
                v.as_str()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// `a`, `a or b`, `a, b or c`.
fn one_of(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

word_enum! {
    /// How an upload target is reached.
    TargetProtocol {
        Ftp = "ftp",
        /// FTP with explicit TLS (`AUTH TLS`).
        Ftps = "ftps",
        Sftp = "sftp",
        /// A directory (a mounted share, say).
        Local = "local",
    }
}

word_enum! {
    /// What is uploaded: the archived, compressed file or the plain one.
    UploadFormat {
        Gz = "gz",
        Xml = "xml",
    }
}

word_enum! {
    /// The transport to the SIEM receiver.
    SiemProtocol {
        Udp = "udp",
        Tcp = "tcp",
        Tls = "tls",
    }
}

word_enum! {
    /// The message body sent to the SIEM.
    SiemFormat {
        Json = "json",
        Cef = "cef",
    }
}

word_enum! {
    /// TCP/TLS framing (RFC 6587).
    Framing {
        OctetCounting = "octet-counting",
        Lf = "lf",
    }
}

/// A syslog facility (RFC 5424 §6.2.1), written by name (`auth`, `local0`,
/// case-insensitive) or number (0..=23).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "FacilityText", into = "String")]
pub struct Facility(u8);

/// A facility as written in the file: a name or number in quotes, or a bare number.
#[derive(Deserialize)]
#[serde(untagged)]
enum FacilityText {
    Number(i64),
    Text(String),
}

impl TryFrom<FacilityText> for Facility {
    type Error = String;
    fn try_from(v: FacilityText) -> std::result::Result<Self, String> {
        match v {
            FacilityText::Number(n) => Facility::try_from(n.to_string()),
            FacilityText::Text(t) => Facility::try_from(t),
        }
    }
}

impl Facility {
    pub fn code(self) -> u8 {
        self.0
    }
}

impl TryFrom<String> for Facility {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        facility_code(&s)
            .map(Facility)
            .ok_or_else(|| format!("{s:?} is not a syslog facility name (auth, authpriv, local0…local7, …) or 0..=23"))
    }
}

impl From<Facility> for String {
    fn from(f: Facility) -> String {
        FACILITIES.iter().find(|(_, c)| *c == f.0).map_or_else(|| f.0.to_string(), |(n, _)| (*n).to_owned())
    }
}

/// An offboard upload target (§6).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// `ftp`, `ftps` (explicit TLS), `sftp`, or `local` (a directory, e.g. a mounted share).
    pub protocol: TargetProtocol,
    /// Server name or address (IPv4, IPv6, name); unused by `local`.
    #[serde(default)]
    pub host: String,
    /// Default 21 for FTP/FTPS, 22 for SFTP.
    pub port: Option<u16>,
    pub user: Option<String>,
    /// File holding the password (its first line); never printed.
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password; never printed.
    pub password_env: Option<String>,
    /// SFTP: OpenSSH private key used to log in (public-key authentication).
    pub key_file: Option<PathBuf>,
    /// SFTP: known_hosts file the server's host key must be listed in
    /// (default `~/.ssh/known_hosts` of the service user).
    pub known_hosts: Option<PathBuf>,
    /// FTPS: PEM file of the certificate authorities trusted for this server
    /// (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    /// Directory on the server (created when missing); for `local`, the directory itself.
    #[serde(default)]
    pub remote_dir: String,
    /// FTP/FTPS: passive mode (the default); `false` for active mode.
    #[serde(default = "yes")]
    pub passive: bool,
    /// What is uploaded: `gz` (the archived, compressed file; the default) or `xml` (plain).
    #[serde(default = "gz")]
    pub format: UploadFormat,
    /// Seconds without progress (connect, login, any read or write) before giving up.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Further attempts within one run after a failure, with doubling delays.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Delay before the first retry, in milliseconds (doubles each time, at most 60 s).
    #[serde(default = "default_retry_delay")]
    pub retry_delay_ms: u64,
    /// SFTP: accept any host key without checking known_hosts. Dangerous: anyone
    /// able to intercept the connection receives the audit trail.
    #[serde(default)]
    pub insecure_accept_any_host_key: bool,
    /// FTPS: accept any server certificate. Dangerous, as above.
    #[serde(default)]
    pub insecure_accept_any_certificate: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl TargetConfig {
    /// The port used: the configured one or the protocol's default.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(if self.protocol == TargetProtocol::Sftp { 22 } else { 21 })
    }

    /// `protocol host:port` for messages (IPv6 addresses in brackets); the
    /// directory for `local`.
    pub fn describe(&self) -> String {
        if self.protocol == TargetProtocol::Local {
            return format!("local {}", self.remote_dir);
        }
        if self.host.contains(':') {
            format!("{} [{}]:{}", self.protocol, self.host, self.port())
        } else {
            format!("{} {}:{}", self.protocol, self.host, self.port())
        }
    }

    fn validate(&self) -> Result<()> {
        if self.protocol == TargetProtocol::Local {
            if self.remote_dir.is_empty() {
                bail!("a local target needs remote_dir, the directory files are copied to");
            }
        } else if self.host.trim().is_empty() {
            bail!("host is missing");
        }
        if self.password_file.is_some() && self.password_env.is_some() {
            bail!("give the password either in password_file or in password_env, not both");
        }
        if self.timeout_secs == 0 {
            bail!("timeout_secs must be at least 1");
        }
        let network = self.protocol != TargetProtocol::Local;
        if network && self.user.as_deref().unwrap_or("").is_empty() {
            bail!("user is missing");
        }
        let has_password = self.password_file.is_some() || self.password_env.is_some();
        match self.protocol {
            TargetProtocol::Sftp if self.key_file.is_none() && !has_password => {
                bail!("an SFTP target needs key_file or a password (password_file or password_env)")
            }
            TargetProtocol::Ftp | TargetProtocol::Ftps if !has_password => {
                bail!("an FTP target needs password_file or password_env")
            }
            _ => {}
        }
        let only = |set: bool, key: &str, proto: TargetProtocol| -> Result<()> {
            if set && self.protocol != proto {
                bail!("{key} applies to {proto} targets only");
            }
            Ok(())
        };
        only(self.key_file.is_some(), "key_file", TargetProtocol::Sftp)?;
        only(self.known_hosts.is_some(), "known_hosts", TargetProtocol::Sftp)?;
        only(self.insecure_accept_any_host_key, "insecure_accept_any_host_key", TargetProtocol::Sftp)?;
        only(self.ca_file.is_some(), "ca_file", TargetProtocol::Ftps)?;
        only(self.insecure_accept_any_certificate, "insecure_accept_any_certificate", TargetProtocol::Ftps)?;
        Ok(())
    }
}

/// Target names become file names in `state/uploads/`.
fn valid_target_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `[web]`: the web console of `serve` (README "Web console").
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Address and port (`"127.0.0.1:8480"`, or a port alone for
    /// 127.0.0.1). An address other than loopback needs TLS.
    pub listen: String,
    /// PEM certificate chain and private key: HTTPS when set.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The accounts file (`audit-trail user`); default `<data-dir>/state/web-accounts`.
    pub accounts: Option<PathBuf>,
    /// Minutes without a request after which a session ends.
    pub idle_minutes: u64,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig { listen: "127.0.0.1:8480".into(), tls_cert: None, tls_key: None, accounts: None, idle_minutes: 15 }
    }
}

impl WebConfig {
    /// `listen` as a socket address.
    pub fn addr(&self) -> anyhow::Result<std::net::SocketAddr> {
        socket_addr(&self.listen, "[web] listen")
    }
}

/// A listen address from the configuration: `"host:port"`, or a port
/// alone for 127.0.0.1; `key` names the setting in errors.
fn socket_addr(text: &str, key: &str) -> Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let mut addrs = text.to_socket_addrs().map_err(|e| {
        anyhow::anyhow!("{key} = {text:?} is not an address with a port such as \"127.0.0.1:9464\": {e}")
    })?;
    addrs.next().ok_or_else(|| anyhow::anyhow!("{key} = {text:?} names no address"))
}

/// SIEM forwarding (§10).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SiemConfig {
    #[serde(default)]
    pub enabled: bool,
    /// `udp`, `tcp` or `tls`.
    pub protocol: SiemProtocol,
    /// Receiver name or address (IPv4, IPv6, name).
    pub host: String,
    /// Default 514 (UDP, TCP), 6514 (TLS).
    pub port: Option<u16>,
    /// `json` (the record's fields, as exported) or `cef`.
    #[serde(default = "json")]
    pub format: SiemFormat,
    /// TLS: PEM certificates of the authorities trusted for the receiver (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    /// TLS: accept any certificate. Dangerous: anyone able to intercept the
    /// connection reads the audit trail.
    #[serde(default)]
    pub insecure_accept_any_certificate: bool,
    /// TCP/TLS framing: `octet-counting` (RFC 6587, the default) or `lf`.
    #[serde(default = "octet_counting")]
    pub framing: Framing,
    /// Syslog facility, by name (`auth`, `authpriv`, `local0`…`local7`, …) or number.
    #[serde(default = "auth")]
    pub facility: Facility,
    /// APP-NAME of the syslog header.
    #[serde(default = "app_name")]
    pub app_name: String,
    /// UDP: largest datagram sent, in bytes; longer messages have their
    /// action data shortened (and marked) to fit.
    #[serde(default = "udp_max")]
    pub max_udp_bytes: usize,
    /// Seconds without progress (connect, TLS handshake, a write) before the connection is given up.
    #[serde(default = "siem_timeout")]
    pub timeout_secs: u64,
    /// Seconds between chain anchors sent to the receiver (default 300, 0 =
    /// never). After records were sent and this long since the last anchor,
    /// the forwarder sends one message naming the newest record sent, its id
    /// and its hash-chain value (as `verify --anchor ID:VALUE` takes it), on
    /// the same connection after that record; also when the service stops,
    /// if records were sent since the last one. A copy of recent anchors off
    /// this host exposes the removal of the newest records or files.
    #[serde(default = "anchor_interval")]
    pub anchor_interval_secs: u64,
}

/// Longest `anchor_interval_secs`: one week.
pub const MAX_ANCHOR_INTERVAL: u64 = 7 * 24 * 3600;

/// Syslog facility names and numbers (RFC 5424 §6.2.1).
pub const FACILITIES: [(&str, u8); 20] = [
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

impl SiemConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(if self.protocol == SiemProtocol::Tls { 6514 } else { 514 })
    }

    /// The facility's number.
    pub fn facility_code(&self) -> u8 {
        self.facility.code()
    }

    /// `protocol host:port`, IPv6 addresses in brackets.
    pub fn describe(&self) -> String {
        if self.host.contains(':') {
            format!("{} [{}]:{}", self.protocol, self.host.trim_matches(['[', ']']), self.port())
        } else {
            format!("{} {}:{}", self.protocol, self.host, self.port())
        }
    }

    fn validate(&self) -> Result<()> {
        if self.host.trim().is_empty() {
            bail!("host is missing");
        }
        if self.app_name.is_empty()
            || self.app_name.len() > 48
            || !self.app_name.bytes().all(|b| (33..=126).contains(&b))
        {
            bail!("app_name = {:?} must be 1 to 48 printable ASCII characters without spaces", self.app_name);
        }
        if !(480..=65_000).contains(&self.max_udp_bytes) {
            bail!("max_udp_bytes = {} is out of range (480..=65000)", self.max_udp_bytes);
        }
        if self.timeout_secs == 0 {
            bail!("timeout_secs must be at least 1");
        }
        if self.anchor_interval_secs > MAX_ANCHOR_INTERVAL {
            bail!(
                "anchor_interval_secs = {} is out of range (0 = never, else at most {MAX_ANCHOR_INTERVAL}, one week)",
                self.anchor_interval_secs
            );
        }
        if self.protocol != SiemProtocol::Tls && (self.ca_file.is_some() || self.insecure_accept_any_certificate) {
            bail!("ca_file and insecure_accept_any_certificate apply to protocol = \"tls\" only");
        }
        Ok(())
    }
}

fn facility_code(name: &str) -> Option<u8> {
    FACILITIES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, c)| *c).or_else(|| {
        name.bytes().all(|b| b.is_ascii_digit()).then(|| name.parse::<u8>().ok()).flatten().filter(|c| *c <= 23)
    })
}

fn octet_counting() -> Framing {
    Framing::OctetCounting
}

fn auth() -> Facility {
    Facility(4)
}

fn app_name() -> String {
    "audit-trail".into()
}

fn udp_max() -> usize {
    2048
}

fn siem_timeout() -> u64 {
    10
}

fn anchor_interval() -> u64 {
    300
}

fn yes() -> bool {
    true
}

fn json() -> SiemFormat {
    SiemFormat::Json
}

fn gz() -> UploadFormat {
    UploadFormat::Gz
}

fn default_timeout() -> u64 {
    30
}

fn default_retries() -> u32 {
    3
}

fn default_retry_delay() -> u64 {
    1000
}

impl Config {
    /// The seal MAC key, when `hmac_key_file` is set.
    pub fn mac_key(&self) -> Result<Option<crate::store::chain::MacKey>> {
        self.hmac_key_file.as_deref().map(crate::store::chain::MacKey::load).transpose().context("hmac_key_file")
    }

    /// Reads `path`; a missing file is all defaults only when the path was not
    /// given explicitly.
    pub fn load(path: &Path, explicit: bool) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(Config::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read configuration {}", path.display())),
        };
        let cfg: Config =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("configuration {}: {e}", path.display()))?;
        cfg.validate().with_context(|| format!("configuration {}", path.display()))?;
        Ok(cfg)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.capacity == 0 || self.capacity > MAX_CAPACITY {
            bail!("capacity = {} is out of range (1..={MAX_CAPACITY})", self.capacity);
        }
        crate::config::mask::EventMask::parse(&self.event_mask).map_err(|e| anyhow::anyhow!(e))?;
        if self.socket_mode().is_none() {
            bail!("socket_mode = {:?} is not an octal permission such as \"0660\"", self.socket_mode);
        }
        self.metrics_addr()?;
        if let Some(h) = &self.host_name
            && sanitize_host(h).is_empty()
        {
            bail!("host_name = {h:?} has no character usable in a file name");
        }
        for (name, target) in &self.targets {
            if !valid_target_name(name) {
                bail!("[targets.{name}]: a target name may hold letters, digits, '-', '_' and '.' only");
            }
            target.validate().with_context(|| format!("[targets.{name}]"))?;
        }
        if let Some(siem) = &self.siem {
            siem.validate().context("[siem]")?;
        }
        Ok(())
    }

    /// `metrics_listen` as a socket address: an address with a port
    /// (`127.0.0.1:9464`, `[::1]:9464`, `localhost:9464`), or a port alone,
    /// which means 127.0.0.1. `None` when the endpoint is off.
    pub fn metrics_addr(&self) -> Result<Option<std::net::SocketAddr>> {
        let Some(text) = self.metrics_listen.as_deref() else { return Ok(None) };
        socket_addr(text, "metrics_listen").map(Some)
    }

    /// `socket_mode` as permission bits.
    pub fn socket_mode(&self) -> Option<u32> {
        u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8).ok().filter(|m| *m <= 0o777)
    }

    /// The parsed event mask (checked when the configuration was loaded).
    pub fn mask(&self) -> crate::config::mask::EventMask {
        crate::config::mask::EventMask::parse(&self.event_mask).unwrap_or(crate::config::mask::EventMask::All)
    }

    /// The host name used for file names and `node`, sanitised for file names.
    pub fn host(&self) -> String {
        let raw = match &self.host_name {
            Some(h) => h.clone(),
            None => gethostname::gethostname().to_string_lossy().into_owned(),
        };
        let clean = sanitize_host(&raw);
        if clean.is_empty() { "localhost".into() } else { clean }
    }
}

/// A problem found by [`check_text`]: the line (1-based) and the key
/// (dotted path, e.g. `targets.auditors.port`) it is about, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub key: String,
    pub message: String,
}

/// Checks a configuration's text exactly as [`Config::load`] does, but says
/// where the problem is: the line and key from the TOML parser's span for
/// syntax, type and unknown-key errors, and for a value that parses but is
/// refused, the key the refusal names (else the table it belongs to).
pub fn check_text(text: &str) -> std::result::Result<Config, Problem> {
    let doc = toml::de::DeTable::parse(text).ok();
    let cfg: Config = match toml::from_str(text) {
        Ok(c) => c,
        Err(e) => {
            let at = e.span().map_or(0, |s| s.start);
            let mut key = doc.as_ref().map(|d| key_at(d.get_ref(), at)).unwrap_or_default();
            // A missing field is reported on its table: name the field too.
            if let Some(field) = e.message().split('`').nth(1).filter(|_| e.message().starts_with("missing field")) {
                key = join_key(&key, field);
            }
            if key.is_empty() {
                key = key_on_line(text, at);
            }
            return Err(Problem { line: line_of(text, at), key, message: e.message().trim().to_owned() });
        }
    };
    if let Err(e) = cfg.validate() {
        let message = format!("{e:#}");
        let root = e.root_cause().to_string();
        // The table the refusal is about: `[targets.NAME]` or `[siem]` in the chain.
        let scope = e
            .chain()
            .map(|c| c.to_string())
            .find_map(|c| {
                let inner = c.strip_prefix('[')?;
                Some(inner[..inner.find(']')?].to_owned())
            })
            .unwrap_or_default();
        let (line, key) = doc.as_ref().map_or((1, scope.clone()), |d| locate_refusal(d.get_ref(), text, &scope, &root));
        return Err(Problem { line, key, message });
    }
    Ok(cfg)
}

/// The line of the key at `path` (table names, then the key) in a
/// configuration's text; `None` when it is not written there.
pub fn key_line(text: &str, path: &[&str]) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut line = None;
    for (i, part) in path.iter().enumerate() {
        let (k, v) = table.iter().find(|(k, _)| k.get_ref() == part)?;
        line = Some(line_of(text, k.span().start));
        match v.get_ref() {
            toml::de::DeValue::Table(t) => table = t,
            _ if i + 1 < path.len() => return None,
            _ => {}
        }
    }
    line
}

fn join_key(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}.{b}"),
    }
}

/// The dotted path of the deepest key whose name or value holds byte `at`.
fn key_at(table: &toml::de::DeTable<'_>, at: usize) -> String {
    for (k, v) in table {
        // A table written under its own `[header]` has a span that does not
        // cover its keys: look inside every table.
        if let toml::de::DeValue::Table(t) = v.get_ref() {
            let inner = key_at(t, at);
            if !inner.is_empty() {
                return join_key(k.get_ref(), &inner);
            }
        }
        let (ks, vs) = (k.span(), v.span());
        if ks.contains(&at) || vs.contains(&at) || (ks.start <= at && at < vs.end) {
            return k.get_ref().to_string();
        }
    }
    String::new()
}

/// The key written at the start of the line holding byte `at` (`key = …`).
fn key_on_line(text: &str, at: usize) -> String {
    let at = at.min(text.len());
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    line.split_once('=').map(|(k, _)| k.trim().to_owned()).unwrap_or_default()
}

/// Line and key of a refused value: the first word of the refusal that is a
/// key written in `scope`'s table, else the table's own header.
fn locate_refusal(doc: &toml::de::DeTable<'_>, text: &str, scope: &str, root: &str) -> (usize, String) {
    let mut table = Some(doc);
    let mut header = 0;
    for part in scope.split('.').filter(|p| !p.is_empty()) {
        let entry = table.and_then(|t| t.iter().find(|(k, _)| k.get_ref() == part));
        header = entry.map_or(header, |(k, _)| k.span().start);
        table = entry.and_then(|(_, v)| match v.get_ref() {
            toml::de::DeValue::Table(t) => Some(t),
            _ => None,
        });
    }
    let words = root.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
    for w in words.filter(|w| !w.is_empty()) {
        if let Some((k, _)) = table.and_then(|t| t.iter().find(|(k, _)| k.get_ref() == w)) {
            return (line_of(text, k.span().start), join_key(scope, w));
        }
    }
    (if scope.is_empty() { 1 } else { line_of(text, header) }, scope.to_owned())
}

fn line_of(text: &str, offset: usize) -> usize {
    1 + text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count()
}

/// Keeps letters, digits, `.` and `-`; anything else (including `_`, which
/// separates the host from the time stamp in file names) becomes `-`.
pub fn sanitize_host(raw: &str) -> String {
    let s: String =
        raw.trim().chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '-' }).collect();
    s.trim_matches(['-', '.']).chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_parse_once_and_unknown_words_name_the_allowed_ones() {
        let t: TargetConfig = toml::from_str("protocol = 'sftp'\nhost = 'h'\n").unwrap();
        assert_eq!((t.protocol, t.format, t.port()), (TargetProtocol::Sftp, UploadFormat::Gz, 22));
        let e = toml::from_str::<TargetConfig>("protocol = 'smtp'\n").unwrap_err();
        assert!(e.message().contains("\"smtp\" is not ftp, ftps, sftp or local"), "{e}");
        let s: SiemConfig = toml::from_str("protocol = 'tls'\nhost = 'h'\nfacility = 'LOCAL3'\n").unwrap();
        assert_eq!(
            (s.protocol, s.framing, s.facility_code(), s.port()),
            (SiemProtocol::Tls, Framing::OctetCounting, 19, 6514)
        );
        let e = toml::from_str::<SiemConfig>("protocol = 'tcp'\nhost = 'h'\nframing = 'LF'\n").unwrap_err();
        assert!(e.message().contains("\"LF\" is not octet-counting or lf"), "{e}");
        assert!(toml::from_str::<SiemConfig>("protocol = 'tcp'\nhost = 'h'\nfacility = '24'\n").is_err());
        assert!(toml::from_str::<SiemConfig>("protocol = 'tcp'\nhost = 'h'\nfacility = '+4'\n").is_err());
        let n: SiemConfig = toml::from_str("protocol = 'tcp'\nhost = 'h'\nfacility = 17\n").unwrap();
        assert_eq!(n.facility_code(), 17, "a bare number is a facility too");
        assert!(toml::from_str::<SiemConfig>("protocol = 'tcp'\nhost = 'h'\nfacility = 24\n").is_err());
        // Written back as the words they were read from.
        let back = toml::to_string(&s).unwrap();
        assert!(back.contains("protocol = \"tls\"") && back.contains("facility = \"local3\""), "{back}");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = toml::from_str::<Config>("capacity = 10\ncolour = 'red'\n").unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }

    #[test]
    fn metrics_listen_takes_an_address_or_a_port() {
        let addr = |v: &str| {
            let cfg: Config = toml::from_str(&format!("metrics_listen = {v:?}\n")).unwrap();
            cfg.validate().and_then(|()| cfg.metrics_addr()).map(|a| a.map(|a| a.to_string()))
        };
        assert_eq!(addr("9464").unwrap().as_deref(), Some("127.0.0.1:9464"));
        assert_eq!(addr("[::1]:9464").unwrap().as_deref(), Some("[::1]:9464"));
        assert_eq!(addr("0.0.0.0:1").unwrap().as_deref(), Some("0.0.0.0:1"));
        assert!(addr("127.0.0.1").is_err());
        assert!(addr("").is_err());
        assert_eq!(Config::default().metrics_addr().unwrap(), None);
    }

    #[test]
    fn host_names_are_sanitised() {
        assert_eq!(sanitize_host("pbx_01/../x"), "pbx-01-..-x");
        assert_eq!(sanitize_host("  "), "");
        assert_eq!(sanitize_host("PBX01.example.com"), "PBX01.example.com");
    }

    #[test]
    fn siem_anchor_interval_defaults_to_300_and_is_checked() {
        let parse = |extra: &str| {
            let cfg: Config =
                toml::from_str(&format!("[siem]\nenabled = true\nprotocol = \"tcp\"\nhost = \"h\"\n{extra}")).unwrap();
            cfg.validate().map(|()| cfg.siem.unwrap().anchor_interval_secs).map_err(|e| format!("{e:#}"))
        };
        assert_eq!(parse(""), Ok(300));
        assert_eq!(parse("anchor_interval_secs = 0"), Ok(0));
        assert_eq!(parse("anchor_interval_secs = 604800"), Ok(604_800));
        let e = parse("anchor_interval_secs = 604801").unwrap_err();
        assert!(e.contains("[siem]") && e.contains("anchor_interval_secs = 604801 is out of range"), "{e}");
        assert!(
            toml::from_str::<Config>("[siem]\nprotocol = \"tcp\"\nhost = \"h\"\nanchor_interval_secs = -1\n").is_err()
        );
    }

    #[test]
    fn defaults_without_file() {
        let cfg = Config::load(Path::new("/nonexistent/audit-trail.toml"), false).unwrap();
        assert_eq!(cfg.capacity, 5000);
        assert!(Config::load(Path::new("/nonexistent/audit-trail.toml"), true).is_err());
    }
}
