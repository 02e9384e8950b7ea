//! `config check` and `config show`: what an operator runs before a reload
//! (as `rsyslogd -N1` or `nginx -t`) and to see what the service will use.
//!
//! Both work on the same files the service reads, resolved the same way
//! (`--config`, `--data-dir`, `--schedules`), and neither starts anything.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use serde_json::{Value, json};

use crate::app::{Ctx, Settings};
use crate::cli::ConfigCommand;
use crate::config::TargetProtocol;
use crate::config::{self, Config};
use crate::schedules::{self, Job};

pub fn run(opts: &Settings, command: &ConfigCommand) -> Result<ExitCode> {
    match command {
        ConfigCommand::Check => check(opts),
        ConfigCommand::Show(a) => show(&Ctx::new(opts)?, a.json),
    }
}

/// Checks the configuration file and the schedule files; every problem is
/// printed as `FILE:LINE: KEY: reason` and the exit status is 2 when there
/// is one. Unlike the other commands it does not stop at the first problem.
fn check(opts: &Settings) -> Result<ExitCode> {
    let (path, explicit) = opts.config_location();
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut cfg = None;
    match std::fs::read_to_string(&path) {
        Ok(text) => match config::check_text(&text) {
            Ok(c) => {
                check_referenced_files(&c, &text, &path, &mut problems);
                notes.push(format!("{}: ok", path.display()));
                cfg = Some(c);
            }
            Err(p) => problems.push(format!("{}:{}: {}: {}", path.display(), p.line, p.key, p.message)),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            notes.push(format!("{}: no such file; every setting has its default", path.display()));
            cfg = Some(Config::default());
        }
        Err(e) => problems.push(format!("{}: cannot read: {e}", path.display())),
    }
    let schedules_dir = opts
        .schedules
        .clone()
        .or_else(|| cfg.as_ref().and_then(|c| c.schedules_dir.clone()))
        .unwrap_or_else(|| PathBuf::from("schedules"));
    if schedules_dir.is_dir() {
        let loaded = schedules::load_dir(&schedules_dir);
        problems.extend(loaded.errors);
        if let Some(c) = &cfg {
            check_upload_targets(c, &loaded.schedules, &mut problems);
        }
        let enabled = loaded.schedules.iter().filter(|s| s.enabled).count();
        notes.push(format!(
            "{}: {} schedule(s) loaded, {enabled} enabled",
            schedules_dir.display(),
            loaded.schedules.len()
        ));
    } else {
        problems.push(format!(
            "{}: schedules directory not found (set schedules_dir in the configuration or give --schedules; the \
             service would run no schedule)",
            schedules_dir.display()
        ));
    }
    if problems.is_empty() {
        for n in &notes {
            crate::outln!("{n}")?;
        }
        crate::outln!("configuration OK")?;
        return Ok(ExitCode::SUCCESS);
    }
    for p in &problems {
        tracing::error!("{p}");
    }
    tracing::error!("configuration check FAILED: {} problem(s)", problems.len());
    Ok(ExitCode::from(crate::error::Kind::Config.exit_code()))
}

/// Files the configuration names must be there: the service would fail on
/// them later (at start, or at the first upload or SIEM connection).
fn check_referenced_files(cfg: &Config, text: &str, path: &Path, problems: &mut Vec<String>) {
    let at =
        |keys: &[&str]| format!("{}:{}: {}", path.display(), config::key_line(text, keys).unwrap_or(1), keys.join("."));
    if let Err(e) = cfg.mac_key() {
        problems.push(format!("{}: {:#}", at(&["hmac_key_file"]), e.root_cause()));
    }
    let mut files: Vec<(Vec<&str>, &Path)> = Vec::new();
    for (name, t) in &cfg.targets {
        for (key, p) in [
            ("password_file", &t.password_file),
            ("key_file", &t.key_file),
            ("known_hosts", &t.known_hosts),
            ("ca_file", &t.ca_file),
        ] {
            if let Some(p) = p {
                files.push((vec!["targets", name, key], p));
            }
        }
    }
    if let Some(ca) = cfg.siem.as_ref().and_then(|s| s.ca_file.as_deref()) {
        files.push((vec!["siem", "ca_file"], ca));
    }
    for (keys, p) in files {
        if let Err(e) = std::fs::metadata(p) {
            problems.push(format!("{}: {}: {e}", at(&keys), p.display()));
        }
    }
}

/// An enabled upload schedule must name a target of the configuration.
fn check_upload_targets(cfg: &Config, schedules: &[schedules::Schedule], problems: &mut Vec<String>) {
    for s in schedules.iter().filter(|s| s.enabled) {
        let Job::Upload { target } = &s.job else { continue };
        let why = match cfg.targets.get(target) {
            None => "no [targets.NAME] of that name in the configuration",
            Some(t) if !t.enabled => "that target is disabled (enabled = false) in the configuration",
            Some(_) => continue,
        };
        let text = std::fs::read_to_string(&s.path).unwrap_or_default();
        let line = config::key_line(&text, &["target"]).unwrap_or(1);
        problems.push(format!("{}:{line}: target: {target:?}: {why}", s.path.display()));
    }
}

/// Keys whose values are secrets themselves (as opposed to naming the file or
/// variable holding one): printed as `<redacted>` whatever their table.
fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    let names_a_place = k.ends_with("_file") || k.ends_with("_env") || k.ends_with("_dir");
    !names_a_place && ["password", "passphrase", "secret", "token", "private_key"].iter().any(|s| k.contains(s))
}

fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            for (k, v) in map.iter_mut() {
                if is_secret(k) {
                    *v = Value::String("<redacted>".into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// The configuration as the service uses it: every default written out,
/// derived values (host name, schedules directory, socket, ports) resolved.
fn effective(ctx: &Ctx) -> Result<Value> {
    let mut v = serde_json::to_value(&ctx.config)?;
    v["host_name"] = json!(ctx.host);
    v["schedules_dir"] = json!(ctx.schedules_dir.display().to_string());
    v["ingest_socket"] = json!(crate::service::ingest_socket_path(&ctx.layout, &ctx.config).display().to_string());
    for (name, t) in &ctx.config.targets {
        if t.protocol != TargetProtocol::Local {
            v["targets"][name]["port"] = json!(t.port());
        }
    }
    if let Some(s) = &ctx.config.siem {
        v["siem"]["port"] = json!(s.port());
    }
    redact(&mut v);
    Ok(v)
}

fn schedule_json(s: &schedules::Schedule) -> Value {
    let mut v = json!({
        "name": s.name,
        "file": s.path.display().to_string(),
        "cron": s.cron_text,
        "job": s.job.name(),
        "enabled": s.enabled,
    });
    match &s.job {
        Job::Upload { target } => v["target"] = json!(target),
        Job::Backup { keep, out } => {
            if let Some(k) = keep {
                v["keep"] = json!(k);
            }
            if let Some(o) = out {
                v["out"] = json!(o.display().to_string());
            }
        }
        _ => {}
    }
    if let Some(d) = &s.description {
        v["description"] = json!(d);
    }
    redact(&mut v);
    v
}

fn show(ctx: &Ctx, as_json: bool) -> Result<ExitCode> {
    let cfg = effective(ctx)?;
    let loaded = schedules::load_dir(&ctx.schedules_dir);
    let schedules: Vec<Value> = loaded.schedules.iter().map(schedule_json).collect();
    let file = if ctx.config_path.exists() { ctx.config_path.display().to_string() } else { String::new() };
    if as_json {
        let v = json!({
            "config_file": if file.is_empty() { Value::Null } else { json!(file) },
            "data_dir": ctx.layout.data_dir.display().to_string(),
            "config": cfg,
            "schedules": schedules,
            "schedule_errors": loaded.errors,
        });
        crate::outln!("{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let source = if file.is_empty() { format!("no file at {}: all defaults", ctx.config_path.display()) } else { file };
    crate::outln!("# The effective configuration ({source}), defaults filled in; secrets are never shown.")?;
    crate::outln!("# data directory: {}", ctx.layout.data_dir.display())?;
    crate::outln!("{}", toml::to_string(&cfg)?.trim_end())?;
    // The schedules are comments, so that what is printed is itself a
    // configuration file `config check` accepts.
    use crate::logging::one_line;
    crate::outln!(
        "\n# The schedules of {} (one file each there; shown here as [[schedule]]).",
        one_line(&ctx.schedules_dir.display().to_string())
    )?;
    let doc = json!({ "schedule": schedules });
    if !schedules.is_empty() {
        for line in toml::to_string(&doc)?.trim_end().lines() {
            crate::outln!("# {line}")?;
        }
    }
    for e in &loaded.errors {
        crate::outln!("# not loaded: {}", one_line(e))?;
    }
    Ok(ExitCode::SUCCESS)
}
