//! `audit-trail serve`: the long-running service (SPEC §4, §5).
//!
//! Threads: one log writer (owns the log, group commit), an accept thread
//! and two threads per client on the ingest socket, a control socket for
//! the CLI (`rotate`, `reload`), the scheduler with one thread per job run,
//! and the main thread, which handles signals: SIGHUP reloads configuration
//! and schedules, SIGTERM and SIGINT stop.
//!
//! Stopping: the scheduler stops firing (runs in progress get a grace
//! period), clients stop being read, the answers already due go out, the
//! writer commits everything queued, a `Stop` record is written, and the
//! process exits. The active file is left as it is, ready for the next start;
//! nothing is half-sealed.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::app::Ctx;
use crate::config::Config;
use crate::config::mask;
use crate::schedules;
use crate::selfaudit::{self, Event};
use crate::store::layout::Layout;
use crate::store::writer::Log;

pub mod forwarder;
pub mod ingest;
pub mod metrics;
pub mod scheduler;
pub mod writer;

use ingest::Shared;
use scheduler::{JobEnv, Scheduler};

/// The lock that makes one service per data directory; holds its pid.
pub fn instance_lock_path(layout: &Layout) -> PathBuf {
    layout.state.join("serve.lock")
}

/// The control socket the CLI uses to reach a running service.
pub fn control_socket_path(layout: &Layout) -> PathBuf {
    layout.state.join("control.sock")
}

/// The ingest socket of a data directory under a configuration.
pub fn ingest_socket_path(layout: &Layout, config: &Config) -> PathBuf {
    match &config.ingest_socket {
        Some(p) if p.is_absolute() => p.clone(),
        Some(p) => layout.data_dir.join(p),
        None => layout.data_dir.join("ingest.sock"),
    }
}

/// The pid of the service running on this data directory, if one is.
pub fn running_pid(layout: &Layout) -> Option<u32> {
    let mut f = crate::fsx::open_read_nofollow(&instance_lock_path(layout)).ok()?;
    match f.try_lock() {
        Ok(()) => None,
        Err(_) => Some(read_pid(&mut f).trim().parse().unwrap_or(0)),
    }
}

fn read_pid(f: &mut std::fs::File) -> String {
    use std::io::{Read, Seek};
    let mut text = String::new();
    let _ = f.rewind().and_then(|_| f.read_to_string(&mut text));
    text
}

/// Takes `state/serve.lock` (never through a link planted in its place) and
/// writes this process's pid into it.
fn take_instance_lock(layout: &Layout) -> Result<std::fs::File> {
    let path = instance_lock_path(layout);
    let mut f = crate::fsx::open_rw_nofollow(&path).with_context(|| format!("cannot open {}", path.display()))?;
    if f.try_lock().is_err() {
        let pid = read_pid(&mut f);
        bail!(
            "another audit-trail serve (pid {}) is already running on {}; stop it first",
            pid.trim(),
            layout.data_dir.display()
        );
    }
    f.set_len(0)?;
    writeln!(f, "{}", std::process::id())?;
    f.sync_all()?;
    Ok(f)
}

/// A socket this process bound: its path and the `(device, inode)` it had
/// there, so that at stop only this very socket is removed.
struct Bound {
    path: PathBuf,
    id: Option<(u64, u64)>,
}

impl Bound {
    /// Removes the socket if the path still names the one this process
    /// created (whatever replaced it meanwhile is left alone).
    fn remove(&self) {
        if self.id.is_some() && crate::fsx::identity(&self.path).ok() == self.id {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds a Unix socket with the given permissions. The socket is created
/// under a temporary name, given its mode, then renamed into place, so it is
/// never reachable with looser permissions. Only a stale socket is ever
/// replaced: anything else at the path (a file, a directory, a link) is an
/// error, and stays as it was.
fn bind(path: &Path, mode: u32) -> Result<(UnixListener, Bound)> {
    use std::os::unix::fs::FileTypeExt;
    if path.as_os_str().len() > 100 {
        bail!("socket path {} is too long for a Unix socket (100 bytes at most)", path.display());
    }
    let refuse_existing = || -> Result<()> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if !m.file_type().is_socket() => bail!(
                "{} exists and is not a socket; it is not replaced (remove it, or set ingest_socket to another path)",
                path.display()
            ),
            _ => Ok(()),
        }
    };
    refuse_existing()?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let dir = path.parent().unwrap_or(Path::new("."));
    // bind() never follows a link and fails if the name exists: a fresh
    // random name is tried until one is free.
    let (tmp, listener) = (|| {
        for _ in 0..16 {
            let tmp = dir.join(format!(".{name}.{}", &crate::fsx::random_hex(3)[..5]));
            match UnixListener::bind(&tmp) {
                Ok(l) => return Ok((tmp, l)),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot create socket {}", path.display())),
            }
        }
        bail!("cannot create socket {}: every temporary name tried was taken", path.display())
    })()?;
    let placed = (|| {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set permissions of {}", path.display()))?;
        let id = crate::fsx::identity(&tmp).with_context(|| format!("cannot read {}", tmp.display()))?;
        refuse_existing()?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot create socket {}", path.display()))?;
        Ok(id)
    })();
    match placed {
        Ok(id) => Ok((listener, Bound { path: path.to_path_buf(), id: Some(id) })),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Wakes an accept loop so it sees that the service is stopping.
fn wake(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}

enum Ctl {
    Signal(i32),
    Reload(mpsc::Sender<String>),
}

/// Runs the service until SIGTERM or SIGINT, then stops it in order.
pub fn run(ctx: &Ctx) -> Result<ExitCode> {
    let service = Service::start(ctx)?;
    let why = service.serve(ctx);
    service.stop(why);
    Ok(ExitCode::SUCCESS)
}

/// A running service: it owns every thread, socket and lock of `serve`, so
/// that what is running is visible in one place and [`Service::stop`] can take
/// it down in order. One flag, `shared.stopping`, tells the accept and
/// control loops and the client threads that the service is stopping.
struct Service {
    /// `state/serve.lock`, held until the process ends.
    _instance: std::fs::File,
    layout: Layout,
    socket: PathBuf,
    bound_socket: Bound,
    control_path: PathBuf,
    bound_control: Bound,
    /// The writer thread's queue and handle (it owns the log).
    wtx: mpsc::SyncSender<writer::Request>,
    whandle: std::thread::JoinHandle<()>,
    /// Ingest: state shared with the accept thread and every client.
    shared: Arc<Shared>,
    accept: std::thread::JoinHandle<()>,
    control_thread: std::thread::JoinHandle<()>,
    env: Arc<JobEnv>,
    sched: Scheduler,
    forwarder: forwarder::Forwarder,
    /// The metrics endpoint's thread, when `metrics_listen` is set.
    scrapes: Option<metrics::Running>,
    /// The web console's thread, when `[web]` is set.
    console: Option<crate::web::Running>,
    /// Signals and control requests, in arrival order.
    ctl_rx: mpsc::Receiver<Ctl>,
    sig_handle: signal_hook::iterator::Handle,
    sig_thread: std::thread::JoinHandle<()>,
}

impl Service {
    /// Takes the instance lock, opens (and repairs) the log, records the
    /// start, binds the sockets and starts every thread; returns once the
    /// ingest socket accepts (and tells systemd so).
    fn start(ctx: &Ctx) -> Result<Service> {
        let layout = &ctx.layout;
        layout.create()?;
        let instance = take_instance_lock(layout)?;
        for note in crate::maintenance::backup::clean_interrupted_restores(&layout.data_dir) {
            tracing::warn!("{note}");
        }
        let log = ctx.open_log()?;
        let used = log.next_id() > 1;
        if !ctx.config.enabled && !used {
            bail!(
                "auditing is disabled (enabled = false in {}); this data directory holds no records, so there is \
                 nothing to serve",
                ctx.config_path.display()
            );
        }
        let mut events = vec![Event::new(
            "Service",
            "Start",
            format!(
                "audit-trail {} started (pid {}, data directory {})",
                env!("CARGO_PKG_VERSION"),
                std::process::id(),
                layout.data_dir.display()
            ),
        )];
        events.extend(selfaudit::config_events(layout, ctx.config_text().as_deref(), &ctx.config, used, true)?);
        if !ctx.config.enabled {
            tracing::warn!(
                "enabled = false is refused: auditing cannot be switched off on a data directory \
                 that holds records; the attempt is recorded"
            );
        }

        // Bound before the sockets, so that an address in use stops the start
        // with nothing to clean up.
        let endpoint = ctx.config.metrics_addr()?.map(metrics::Endpoint::bind).transpose()?;
        let metrics = Arc::new(metrics::Metrics::new());
        let web = ctx.config.web.as_ref().map(|w| crate::web::prepare(ctx, w)).transpose()?;

        let socket = ingest_socket_path(layout, &ctx.config);
        let mode = ctx.config.socket_mode().unwrap_or(0o660);
        let (listener, bound_socket) = bind(&socket, mode)?;
        let control_path = control_socket_path(layout);
        let (control, bound_control) = match bind(&control_path, 0o600) {
            Ok(b) => b,
            Err(e) => {
                bound_socket.remove();
                return Err(e);
            }
        };

        let (l2, host, cap, clock) = (layout.clone(), ctx.host.clone(), ctx.config.capacity, ctx.clock.clone());
        let key = ctx.config.mac_key()?;
        let reopen: writer::Reopen = Box::new(move || {
            let (log, notes) = Log::open(&l2, &host, cap, clock.clone(), key.clone())?;
            for n in notes {
                tracing::warn!("{n}");
            }
            Ok(log)
        });
        let next_id = log.next_id();
        // If SIEM forwarding starts now for the first time, it starts here (with this start's own record).
        let siem_first = next_id;
        let durable = Arc::new(writer::Durable::default());
        let (wtx, whandle) = writer::spawn(log, reopen, durable.clone(), metrics.clone());
        scheduler::submit_events(&wtx, &ctx.host, &*ctx.clock, &events).context("cannot record the service start")?;

        let mut shared =
            Shared::new(wtx.clone(), ctx.host.clone(), ctx.clock.clone(), ctx.config.mask(), metrics.clone());
        let (cap, fds) = ingest::client_cap();
        shared.max_clients = cap;
        if cap < ingest::MAX_CLIENTS {
            tracing::warn!("{fds} open files allowed: serving at most {cap} ingest clients at once");
        }
        let shared = Arc::new(shared);
        let sh = shared.clone();
        let accept =
            std::thread::Builder::new().name("accept".into()).spawn(move || ingest::accept_loop(listener, sh))?;

        let env = Arc::new(JobEnv {
            layout: layout.clone(),
            config: RwLock::new(ctx.config.clone()),
            host: ctx.host.clone(),
            clock: ctx.clock.clone(),
            writer: wtx.clone(),
            schedules_dir: ctx.schedules_dir.clone(),
            config_path: ctx.config_path.clone(),
            metrics: metrics.clone(),
        });
        if let Err(e) = schedules::trim_history(layout) {
            tracing::warn!("{e:#}");
        }
        let loaded = schedules::load_dir(&ctx.schedules_dir);
        for e in &loaded.errors {
            tracing::error!("schedule not loaded: {e}");
        }
        let enabled = loaded.schedules.iter().filter(|s| s.enabled).count();
        let sched = Scheduler::start(env.clone(), loaded.schedules);
        let forwarder = forwarder::Forwarder::start(env.clone(), durable.clone(), siem_first);
        let scrapes = endpoint.and_then(|e| {
            let addr = e.addr();
            match e.start(metrics.clone(), env.clone()) {
                Ok(r) => {
                    tracing::info!("metrics on http://{addr}/metrics");
                    Some(r)
                }
                Err(e) => {
                    tracing::error!("metrics: cannot start the endpoint: {e:#}");
                    None
                }
            }
        });

        let console = match web {
            Some(w) => {
                let audit_env = env.clone();
                Some(w.start(Box::new(move |events| audit_env.audit(events)))?)
            }
            None => None,
        };

        let (ctl_tx, ctl_rx) = mpsc::channel::<Ctl>();
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        let sig_handle = signals.handle();
        let stx = ctl_tx.clone();
        let sig_thread = std::thread::Builder::new().name("signals".into()).spawn(move || {
            for s in signals.forever() {
                if stx.send(Ctl::Signal(s)).is_err() {
                    break;
                }
            }
        })?;
        let (cenv, cshared) = (env.clone(), shared.clone());
        let control_thread = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || control_loop(control, &cenv, &ctl_tx, &cshared.stopping))?;

        tracing::info!(
            "serving {} on {} (next id {next_id}; {enabled} schedule(s) enabled from {})",
            layout.data_dir.display(),
            socket.display(),
            ctx.schedules_dir.display()
        );
        // systemd Type=notify: ready once the ingest socket accepts (nothing outside systemd).
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        Ok(Service {
            _instance: instance,
            layout: layout.clone(),
            socket,
            bound_socket,
            control_path,
            bound_control,
            wtx,
            whandle,
            shared,
            accept,
            control_thread,
            env,
            sched,
            forwarder,
            scrapes,
            console,
            ctl_rx,
            sig_handle,
            sig_thread,
        })
    }

    /// Handles signals and control requests until told to stop; returns why.
    fn serve(&self, ctx: &Ctx) -> &'static str {
        loop {
            match self.ctl_rx.recv_timeout(Duration::from_secs(1)) {
                Ok(Ctl::Signal(SIGHUP)) => {
                    let msg = reload(ctx, &self.env, &self.shared, &self.sched);
                    tracing::info!("{msg}");
                }
                Ok(Ctl::Reload(reply)) => {
                    let _ = reply.send(reload(ctx, &self.env, &self.shared, &self.sched));
                }
                Ok(Ctl::Signal(s)) => return if s == SIGINT { "stopped by SIGINT" } else { "stopped by SIGTERM" },
                Err(mpsc::RecvTimeoutError::Timeout) => save_dropped(&self.layout, &self.shared),
                Err(mpsc::RecvTimeoutError::Disconnected) => return "stopped",
            }
        }
    }

    /// Stops in order: no new schedule runs, no new clients, the answers
    /// already due go out, everything queued is committed, a `Stop` record
    /// is written, then the forwarder and the signal thread end.
    fn stop(self, why: &str) {
        tracing::info!("stopping");
        let left = self.sched.stop(Duration::from_secs(20));
        if !left.is_empty() {
            tracing::warn!("job(s) still running at stop, left to end with the process: {}", left.join(", "));
        }
        if let Some(c) = self.console {
            c.stop();
        }
        self.shared.stopping.store(true, Ordering::SeqCst);
        // New clients are refused from here on; `append` then works directly
        // on the data directory once this process has let go of the log.
        if wake(&self.socket) {
            let _ = self.accept.join();
        }
        self.bound_socket.remove();
        if wake(&self.control_path) {
            let _ = self.control_thread.join();
        }
        self.bound_control.remove();
        self.shared.close_all(Duration::from_secs(5));
        save_dropped(&self.layout, &self.shared);
        let stop_event = Event::new("Service", "Stop", format!("audit-trail {why} (pid {})", std::process::id()));
        if let Err(e) = self.env.audit(&[stop_event]) {
            tracing::error!("cannot record the stop: {e:#}");
        }
        let (tx, rx) = mpsc::channel();
        let next = if self.wtx.send(writer::Request::Stop(tx)).is_ok() { rx.recv().ok() } else { None };
        drop(self.wtx);
        let _ = self.whandle.join();
        self.forwarder.stop();
        if let Some(s) = self.scrapes {
            s.stop();
        }
        self.sig_handle.close();
        let _ = self.sig_thread.join();
        match next {
            Some(n) => tracing::info!("{why}; everything acknowledged is on disk (next id {n})"),
            None => tracing::info!("{why}"),
        }
    }
}

fn save_dropped(layout: &Layout, shared: &Shared) {
    let counts = std::mem::take(&mut *shared.dropped.lock().unwrap_or_else(|e| e.into_inner()));
    if let Err(e) = mask::add_dropped(layout, &counts) {
        tracing::error!("{e:#}");
        // Keep them for the next try.
        let mut d = shared.dropped.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in counts {
            *d.entry(k).or_default() += v;
        }
    }
}

/// SIGHUP / `reload`: configuration and schedules are read again. A bad
/// configuration is reported and the running one kept.
fn reload(ctx: &Ctx, env: &JobEnv, shared: &Shared, sched: &Scheduler) -> String {
    let mut notes = Vec::new();
    match ctx.reload_config() {
        Ok((cfg, text)) => {
            let old = env.config.read().unwrap_or_else(|e| e.into_inner()).clone();
            match selfaudit::config_events(&ctx.layout, text.as_deref(), &cfg, true, true) {
                Ok(events) => {
                    if let Err(e) = env.audit(&events) {
                        notes.push(format!("cannot record the configuration change: {e:#}"));
                    }
                }
                Err(e) => notes.push(format!("{e:#}")),
            }
            if !cfg.enabled {
                notes.push(
                    "enabled = false is refused (auditing cannot be switched off); the attempt is recorded".into(),
                );
            }
            if cfg.capacity != old.capacity || cfg.host() != old.host() || cfg.ingest_socket != old.ingest_socket {
                notes.push("capacity, host_name and ingest_socket take effect at the next start".into());
            }
            if cfg.metrics_listen != old.metrics_listen {
                notes.push("metrics_listen takes effect at the next start".into());
            }
            *shared.mask.write().unwrap_or_else(|e| e.into_inner()) = cfg.mask();
            *env.config.write().unwrap_or_else(|e| e.into_inner()) = cfg;
            notes.push("configuration reloaded".into());
        }
        Err(e) => notes.push(format!("configuration not reloaded, the running one is kept: {e:#}")),
    }
    let loaded = schedules::load_dir(&ctx.schedules_dir);
    for e in &loaded.errors {
        notes.push(format!("schedule not loaded: {e}"));
    }
    notes.push(format!(
        "{} schedule(s) loaded, {} enabled",
        loaded.schedules.len(),
        loaded.schedules.iter().filter(|s| s.enabled).count()
    ));
    sched.reload(loaded.schedules);
    notes.join("; ")
}

/// `{"command":"audit","records":[…]}`: the archiver's own records, sent by
/// the CLI (a purge, a configuration change) while the service holds the log.
/// Only the control socket (mode 0600) takes them, and only records of the
/// archiver's own `app_name`.
fn record_own_events(env: &JobEnv, request: &str) -> Result<String> {
    let v: serde_json::Value = serde_json::from_str(request)?;
    let lines = v.get("records").and_then(|r| r.as_array()).context("no records in the request")?;
    let now = crate::timestamp::format(&env.clock.now());
    let defaults = crate::record::Defaults { now: &now, node: &env.host };
    let (mut bodies, mut ends) = (Vec::new(), Vec::new());
    for line in lines {
        let line = line.as_str().context("a record is not a string")?;
        let mut rec = crate::record::parse_json_line(line.trim_end().as_bytes()).map_err(|e| anyhow!("{e}"))?;
        crate::record::validate(&mut rec, &defaults)
            .map_err(|es| anyhow!("{}", es.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")))?;
        if rec.get(crate::record::Field::AppName) != Some(crate::selfaudit::APP_NAME) {
            bail!("only the archiver's own records are taken here");
        }
        crate::store::writer::render_entry(&mut bodies, &rec);
        ends.push(bodies.len());
    }
    let n = ends.len();
    let (tx, rx) = mpsc::channel();
    env.writer
        .send(writer::Request::Append(writer::Batch { bodies, ends, reply: tx }))
        .map_err(|_| anyhow!("the service is stopping"))?;
    rx.recv().map_err(|_| anyhow!("the service is stopping"))?.map_err(|e| anyhow!(e.message))?;
    Ok(format!("recorded {n} event(s)"))
}

/// Answers the CLI on the control socket: one JSON request line, one answer
/// line (`{"ok":true,"message":…}` or `{"ok":false,"error":…}`).
fn control_loop(
    listener: UnixListener,
    env: &JobEnv,
    ctl: &mpsc::Sender<Ctl>,
    stopping: &std::sync::atomic::AtomicBool,
) {
    for conn in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = conn else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut line = String::new();
        if BufReader::new(&stream).read_line(&mut line).is_err() {
            continue;
        }
        let cmd = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v.get("command").and_then(|c| c.as_str()).map(str::to_owned))
            .unwrap_or_default();
        let result: Result<String> = match cmd.as_str() {
            "rotate" => scheduler::run_job(env, &schedules::Job::Rotate),
            "reload" => {
                let (tx, rx) = mpsc::channel();
                ctl.send(Ctl::Reload(tx))
                    .map_err(|_| anyhow!("the service is stopping"))
                    .and_then(|()| rx.recv().map_err(|_| anyhow!("the service is stopping")))
            }
            "ping" => Ok(format!("pid {}", std::process::id())),
            "audit" => record_own_events(env, &line),
            other => Err(anyhow!("unknown control command {other:?}")),
        };
        let answer = match result {
            Ok(m) => serde_json::json!({"ok": true, "message": m}),
            Err(e) => serde_json::json!({"ok": false, "error": format!("{e:#}")}),
        };
        let mut s = &stream;
        let _ = writeln!(s, "{answer}");
    }
}
