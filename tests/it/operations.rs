//! Operations: `config check` and `config show` (what an operator runs
//! before a reload), `status --check` for monitoring, completions and man
//! pages, and the Debian package.

use std::path::{Path, PathBuf};

use crate::support::harness::{Env, Run};

/// Exit status of a configuration problem (README "Exit status").
const CONFIG: Option<i32> = Some(2);

/// The 1-based line of `text` that holds `needle` first.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text.find(needle).unwrap_or_else(|| panic!("{needle:?} not in the text"));
    1 + text[..at].matches('\n').count()
}

/// A schedules directory in `env`'s temporary directory holding `files`.
fn schedules(env: &Env, files: &[(&str, &str)]) -> PathBuf {
    let dir = env.dir.path().join("schedules");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

fn check(env: &Env, dir: &Path) -> Run {
    env.run(&["--schedules", dir.to_str().unwrap(), "config", "check"])
}

const ROTATE: &str = "cron = \"0 0 0 * * *\"\njob = \"rotate\"\n";

#[test]
fn config_check_passes_a_good_configuration_and_its_schedules() {
    let env = Env::with_config(
        "host_name = \"pbx01\"\ncapacity = 100\n\n[targets.share]\nprotocol = \"local\"\nremote_dir = \"/srv/share\"\n",
    );
    let dir = schedules(
        &env,
        &[
            ("rotate-daily.toml", ROTATE),
            ("upload-share.toml", "cron = \"@hourly\"\njob = \"upload\"\ntarget = \"share\"\n"),
            ("upload-off.toml", "cron = \"@hourly\"\njob = \"upload\"\ntarget = \"elsewhere\"\nenabled = false\n"),
        ],
    );
    let run = check(&env, &dir).success();
    assert!(run.stdout.contains("configuration OK"), "{}", run.stdout);
    assert!(run.stdout.contains("3 schedule(s) loaded, 2 enabled"), "{}", run.stdout);
    // The shipped schedules pass too (their upload examples are disabled).
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("schedules");
    check(&env, &shipped).success();
}

#[test]
fn config_check_names_file_line_and_key_of_each_kind_of_error() {
    let env = Env::new();
    let dir = schedules(&env, &[("rotate-daily.toml", ROTATE)]);
    let cases: [(&str, &str, &str, &str); 7] = [
        // (configuration, text on the line at fault, key, words of the reason)
        ("host_name = \"pbx01\"\n\ncolour = \"red\"\n", "colour", "colour", "unknown field"),
        ("host_name = \"pbx01\"\ncapacity = \"big\"\n", "capacity", "capacity", "invalid type"),
        ("capacity = 0\n", "capacity", "capacity", "out of range"),
        ("[siem]\nprotocol = \"tcp\"\n", "[siem]", "siem.host", "missing field"),
        (
            "capacity = 10\n\n[targets.ftp1]\nprotocol = \"ftp\"\nhost = \"h\"\nuser = \"u\"\npassword_env = \"P\"\nformat = \"zip\"\n",
            "format",
            "targets.ftp1.format",
            "\"zip\"",
        ),
        (
            "[targets.s1]\nprotocol = \"sftp\"\nhost = \"h\"\nuser = \"u\"\n",
            "[targets.s1]",
            "targets.s1",
            "key_file or a password",
        ),
        ("event_mask = \"presence+\"\n", "event_mask", "event_mask", "empty category"),
    ];
    for (toml, at, key, why) in cases {
        std::fs::write(&env.config, toml).unwrap();
        let run = check(&env, &dir);
        assert_eq!(run.code, CONFIG, "{toml}\nstdout: {}\nstderr: {}", run.stdout, run.stderr);
        let want = format!("{}:{}: {key}: ", env.config.display(), line_of(toml, at));
        assert!(run.stderr.contains(&want), "{toml}\nwant {want:?} in:\n{}", run.stderr);
        assert!(run.stderr.contains(why), "{toml}\nwant {why:?} in:\n{}", run.stderr);
        // Every other command refuses the same file with the same status.
        assert_eq!(env.run(&["status"]).code, CONFIG, "{toml}");
    }
}

#[test]
fn config_check_reports_every_problem_in_the_config_and_the_schedule_files() {
    let env = Env::with_config("host_name = \"pbx01\"\nhmac_key_file = \"/nonexistent/mac.key\"\n");
    let bad_cron = "job = \"rotate\"\n\ncron = \"0 30 1 * *\"\n";
    let no_target = "# hourly\ncron = \"@hourly\"\njob = \"upload\"\ntarget = \"nowhere\"\n";
    let dir = schedules(
        &env,
        &[("rotate-daily.toml", ROTATE), ("bad-cron.toml", bad_cron), ("upload-nowhere.toml", no_target)],
    );
    let run = check(&env, &dir);
    assert_eq!(run.code, CONFIG, "{}", run.stderr);
    let config_text = std::fs::read_to_string(&env.config).unwrap();
    let expect = [
        format!("{}:{}: hmac_key_file: ", env.config.display(), line_of(&config_text, "hmac_key_file")),
        format!("{}:{}: ", dir.join("bad-cron.toml").display(), line_of(bad_cron, "cron")),
        format!("{}:{}: target: \"nowhere\"", dir.join("upload-nowhere.toml").display(), line_of(no_target, "target")),
    ];
    for e in &expect {
        assert!(run.stderr.contains(e.as_str()), "want {e:?} in:\n{}", run.stderr);
    }
    assert!(run.stderr.contains("FAILED: 3 problem(s)"), "{}", run.stderr);
    assert!(!run.stderr.contains("rotate-daily"), "a good file is not a problem:\n{}", run.stderr);

    // A schedules directory that is not there is a problem: the service would run none.
    let run = check(&env, &env.dir.path().join("no-such-dir"));
    assert_eq!(run.code, CONFIG);
    assert!(run.stderr.contains("no-such-dir: schedules directory not found"), "{}", run.stderr);

    // An explicit --config that does not exist is a problem; none at the default place is all defaults.
    let missing = env.dir.path().join("missing.toml");
    let run =
        env.run(&["--schedules", dir.to_str().unwrap(), "--config", missing.to_str().unwrap(), "config", "check"]);
    assert_eq!(run.code, CONFIG);
    assert!(run.stderr.contains("missing.toml: cannot read"), "{}", run.stderr);
    std::fs::remove_file(&env.config).unwrap();
    let good = schedules(&env, &[]);
    std::fs::remove_file(good.join("bad-cron.toml")).unwrap();
    std::fs::remove_file(good.join("upload-nowhere.toml")).unwrap();
    let run = check(&env, &good).success();
    assert!(run.stdout.contains("every setting has its default"), "{}", run.stdout);
}

#[test]
fn config_show_prints_defaults_resolved_values_and_schedules_but_no_secret() {
    let env = Env::new();
    let pw_file = env.dir.path().join("ftp.pw");
    std::fs::write(&pw_file, "s3cret-in-a-file\n").unwrap();
    let config = format!(
        "host_name = \"pbx01\"\n\n[targets.ftp1]\nprotocol = \"ftps\"\nhost = \"ftp.example\"\nuser = \"audit\"\n\
         password_file = \"{}\"\n\n[targets.sftp1]\nprotocol = \"sftp\"\nhost = \"sftp.example\"\nuser = \"audit\"\n\
         password_env = \"AT_OPS_TEST_PW\"\n",
        pw_file.display()
    );
    std::fs::write(&env.config, &config).unwrap();
    let dir = schedules(
        &env,
        &[
            ("rotate-daily.toml", ROTATE),
            ("upload-ftp1.toml", "cron = \"@hourly\"\njob = \"upload\"\ntarget = \"ftp1\"\n"),
        ],
    );
    let show = |json: bool| {
        let mut c = env.cmd(&["--schedules", dir.to_str().unwrap(), "config", "show"]);
        if json {
            c.arg("--json");
        }
        let out = c.env("AT_OPS_TEST_PW", "hunter2-in-the-env").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let text = show(false);
    for secret in ["s3cret-in-a-file", "hunter2-in-the-env"] {
        assert!(!text.contains(secret), "a secret is shown:\n{text}");
        assert!(!show(true).contains(secret), "a secret is shown in JSON");
    }
    // The text is TOML: the configuration's keys, then the schedules as comments.
    let doc: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    // Every key left out has the default the README's Configuration table states.
    let defaults = readme_defaults();
    for key in ["enabled", "capacity", "retention_days", "event_mask", "keep_backups", "socket_mode"] {
        let want = defaults.get(key).unwrap_or_else(|| panic!("{key} missing from the README's table"));
        let got = match &doc[key] {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(&got, want, "{key}");
    }
    assert_eq!(doc["host_name"].as_str(), Some("pbx01"));
    assert_eq!(doc["schedules_dir"].as_str(), dir.to_str());
    let socket = env.data.join("ingest.sock");
    assert_eq!(doc["ingest_socket"].as_str(), socket.to_str());
    let targets = doc["targets"].as_table().unwrap();
    assert_eq!(targets["ftp1"]["port"].as_integer(), Some(21));
    assert_eq!(targets["sftp1"]["port"].as_integer(), Some(22));
    // Where the password is read from is shown; the password is not.
    assert_eq!(targets["ftp1"]["password_file"].as_str(), pw_file.to_str());
    assert_eq!(targets["sftp1"]["password_env"].as_str(), Some("AT_OPS_TEST_PW"));
    // The schedules are there as comments: uncommented, they are [[schedule]] tables.
    assert!(doc.get("schedule").is_none(), "schedules are comments");
    let part = text.split("\n# The schedules").nth(1).unwrap();
    let uncommented: String =
        part.lines().skip(1).filter_map(|l| l.strip_prefix("# ")).map(|l| format!("{l}\n")).collect();
    let sched: toml::Table = toml::from_str(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    let names: Vec<&str> = sched["schedule"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["rotate-daily", "upload-ftp1"]);
    assert_eq!(sched["schedule"][1]["target"].as_str(), Some("ftp1"));

    let v: serde_json::Value = serde_json::from_str(&show(true)).unwrap();
    assert_eq!(v["config"]["targets"]["ftp1"]["port"], 21);
    assert_eq!(v["config_file"].as_str(), env.config.to_str());
    assert_eq!(v["schedules"].as_array().unwrap().len(), 2);

    // What `show` prints is a configuration `check` accepts, as it is.
    std::fs::write(&env.config, &text).unwrap();
    check(&env, &dir).success();

    std::fs::write(&env.config, "capacity = -1\n").unwrap();
    assert_eq!(env.run(&["config", "show"]).code, CONFIG);
}

/// The defaults of the README's Configuration table: key → value, without
/// backquotes and quotes.
fn readme_defaults() -> std::collections::BTreeMap<String, String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme.split("\n## Configuration\n").nth(1).expect("a Configuration section");
    let section = section.split("\n## ").next().unwrap();
    let unquote = |s: &str| s.trim().trim_matches('`').trim_matches('"').to_owned();
    section
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').collect();
            (cells.len() > 3 && cells[1].trim().starts_with('`')).then(|| (unquote(cells[1]), unquote(cells[2])))
        })
        .collect()
}

/// `status --check` with `extra` flags: its exit status and the JSON report.
fn status_check(env: &Env, dir: &Path, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut args = vec!["--schedules", dir.to_str().unwrap(), "status", "--check", "--json"];
    args.extend_from_slice(extra);
    let run = env.run(&args);
    let v: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr));
    assert_eq!(v["check"]["status"].as_i64().map(|c| c as i32), run.code, "exit status and report agree");
    (run.code, v)
}

/// The `check` names of the problems in a `status --check --json` report.
fn checks(v: &serde_json::Value) -> Vec<String> {
    v["check"]["problems"].as_array().unwrap().iter().map(|p| p["check"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn status_check_exit_codes_say_what_needs_attention() {
    let share = tempfile::tempdir().unwrap();
    let env = Env::with_config(&format!(
        "host_name = \"pbx01\"\ncapacity = 5\n\n[targets.share]\nprotocol = \"local\"\nremote_dir = \"{}\"\nformat = \"xml\"\n",
        share.path().display()
    ));
    let dir = schedules(&env, &[]);
    let sched = dir.to_str().unwrap();
    // Without --check, status stays a report: exit 0 with no service.
    env.run(&["--schedules", sched, "status"]).success();
    let (code, v) = status_check(&env, &dir, &[]);
    assert_eq!((code, checks(&v)), (Some(10), vec!["service".to_owned()]), "{v}");
    let text = env.run(&["--schedules", sched, "status", "--check"]);
    assert_eq!(text.code, Some(10));
    assert!(text.stdout.contains("check            1 problem(s), exit 10"), "{}", text.stdout);
    assert_eq!(status_check(&env, &dir, &["--allow-stopped"]).0, Some(0));

    // Uploads: files waiting past the threshold.
    env.run_with_input(&["append", "--json", "-"], &crate::support::harness::json_records(12)).success();
    let sealed = env.sealed_files();
    assert_eq!(sealed.len(), 2);
    let n = sealed.len().to_string();
    let fewer = (sealed.len() - 1).to_string();
    let (code, v) = status_check(&env, &dir, &["--allow-stopped", "--max-upload-pending", &fewer]);
    assert_eq!((code, checks(&v)), (Some(12), vec!["uploads".to_owned()]), "{v}");
    assert_eq!(status_check(&env, &dir, &["--allow-stopped", "--max-upload-pending", &n]).0, Some(0));
    env.run(&["upload"]).success();
    assert_eq!(status_check(&env, &dir, &["--allow-stopped", "--max-upload-pending", "0"]).0, Some(0));

    // Verification: the last verify of the data directory is kept.
    env.run(&["verify"]).success();
    let (code, v) = status_check(&env, &dir, &["--allow-stopped"]);
    assert_eq!(code, Some(0));
    assert_eq!(v["last_verify"]["ok"], true, "{v}");
    let original = std::fs::read_to_string(&sealed[0]).unwrap();
    let altered = original.replacen("record 1<", "record 9<", 1);
    assert_ne!(original, altered);
    std::fs::write(&sealed[0], &altered).unwrap();
    assert_eq!(env.run(&["verify"]).code, Some(3));
    let (code, v) = status_check(&env, &dir, &["--allow-stopped"]);
    assert_eq!((code, checks(&v)), (Some(11), vec!["verify".to_owned()]), "{v}");
    // Several problems: each listed, the lowest code is the status.
    let (code, v) = status_check(&env, &dir, &[]);
    assert_eq!((code, checks(&v)), (Some(10), vec!["service".to_owned(), "verify".to_owned()]), "{v}");
    // Verifying other files does not replace the data directory's outcome.
    env.run(&["verify", sealed[1].to_str().unwrap()]).success();
    assert_eq!(status_check(&env, &dir, &["--allow-stopped"]).0, Some(11));
    std::fs::write(&sealed[0], &original).unwrap();
    env.run(&["verify"]).success();
    assert_eq!(status_check(&env, &dir, &["--allow-stopped"]).0, Some(0));

    // A schedule file that cannot be loaded.
    std::fs::write(dir.join("bad.toml"), "cron = \"@hourly\"\njob = \"defrag\"\n").unwrap();
    let (code, v) = status_check(&env, &dir, &["--allow-stopped"]);
    assert_eq!((code, checks(&v)), (Some(14), vec!["schedules".to_owned()]), "{v}");

    // The flags only make sense with --check.
    assert_eq!(env.run(&["status", "--allow-stopped"]).code, CONFIG);
}

#[test]
fn status_check_sees_a_failing_siem_and_failing_scheduled_uploads_of_a_running_service() {
    // A port nothing listens on: the receiver is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let env = Env::with_config(&format!(
        "host_name = \"pbx01\"\ncapacity = 5\n\n[targets.broken]\nprotocol = \"local\"\nremote_dir = \"/dev/null/x\"\n\
         format = \"xml\"\n\n[siem]\nenabled = true\nprotocol = \"tcp\"\nhost = \"127.0.0.1\"\nport = {port}\n"
    ));
    let dir =
        schedules(&env, &[("upload-broken.toml", "cron = \"* * * * * *\"\njob = \"upload\"\ntarget = \"broken\"\n")]);
    let server = env.serve(&dir);
    env.run_with_input(&["append", "--json", "-"], &crate::support::harness::json_records(12)).success();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let v = loop {
        let (code, v) = status_check(&env, &dir, &[]);
        let found = checks(&v);
        if found.contains(&"siem".to_owned()) && found.contains(&"uploads".to_owned()) {
            assert_eq!(code, Some(12), "{v}");
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "the failures never showed: {v}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(!checks(&v).contains(&"service".to_owned()), "the service runs: {v}");
    let lag = v["siem"]["lag"].as_u64().unwrap();
    assert!(lag >= 12, "{v}");
    let lagging = |max: u64| {
        let (_, v) = status_check(&env, &dir, &["--max-siem-lag", &max.to_string()]);
        v["check"]["problems"].as_array().unwrap().iter().any(|p| p["message"].as_str().unwrap().contains("behind"))
    };
    assert!(lagging(lag - 1));
    assert!(!lagging(lag + 1000));
    server.stop();
    let (code, v) = status_check(&env, &dir, &[]);
    assert_eq!(code, Some(10), "{v}");
}

/// Every command (nested ones too) with its path, e.g. `audit-trail config check`.
fn all_commands(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
    let path = if path.is_empty() { cmd.get_name().to_owned() } else { format!("{path} {}", cmd.get_name()) };
    for sub in cmd.get_subcommands() {
        all_commands(sub, &path, out);
    }
    out.push((path, cmd.clone()));
}

#[test]
fn every_command_and_flag_has_help_and_every_command_examples() {
    let mut cmd = audit_trail::command();
    cmd.build();
    let mut commands = Vec::new();
    all_commands(&cmd, "", &mut commands);
    assert!(commands.len() > 20, "{} commands", commands.len());
    let mut missing = Vec::new();
    for (path, c) in commands.iter().filter(|(p, _)| !p.split(' ').any(|w| w == "help")) {
        if c.get_about().is_none() {
            missing.push(format!("{path}: no about"));
        }
        let examples = c.get_after_long_help().map(|h| h.to_string()).unwrap_or_default();
        if !examples.contains("Examples:\n  audit-trail ") {
            missing.push(format!("{path}: no examples in the long help"));
        }
        for a in c.get_arguments().filter(|a| !a.is_hide_set()) {
            if a.get_help().is_none() {
                missing.push(format!("{path} {}: no help", a.get_id()));
            }
            for v in a.get_possible_values().iter().filter(|v| !v.is_hide_set()) {
                // Shell names are self-explanatory; the export formats are not.
                if v.get_help().is_none() && a.get_id() != "shell" {
                    missing.push(format!("{path} {} {}: no help", a.get_id(), v.get_name()));
                }
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
    // The long help shows them.
    let env = Env::new();
    let help = env.run(&["status", "--help"]).success().stdout;
    assert!(help.contains("Examples:") && help.contains("--max-siem-lag"), "{help}");
}

#[test]
fn bash_completion_parses_and_completes_commands_and_flags() {
    let env = Env::new();
    let script = env.run(&["completions", "bash"]).success().stdout;
    let path = env.dir.path().join("audit-trail.bash");
    std::fs::write(&path, &script).unwrap();
    let syntax = std::process::Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(syntax.status.success(), "bash -n: {}", String::from_utf8_lossy(&syntax.stderr));
    // Loaded into bash, it completes a command name and a flag.
    let complete = |words: &str| {
        // The function the script registers with `complete -F`, called as bash calls it.
        let program = format!(
            "source {}; fn=$(complete -p audit-trail | sed -E 's/.*-F ([^ ]+).*/\\1/'); COMP_WORDS=({words}); \
             COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; \
             \"$fn\" audit-trail \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            path.display()
        );
        let out = std::process::Command::new("bash").arg("-c").arg(program).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let got = complete("audit-trail conf");
    assert_eq!(got.lines().collect::<Vec<_>>(), ["config"], "{got}");
    let got = complete("audit-trail status --max-s");
    assert_eq!(got.lines().collect::<Vec<_>>(), ["--max-siem-lag"], "{got}");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = env.run(&["completions", shell]).success().stdout;
        assert!(out.contains("audit-trail") && out.contains("max-siem-lag"), "{shell}");
    }
    assert_eq!(env.run(&["completions", "tcsh"]).code, CONFIG);
}

/// groff's warnings for a page (`-ww`: all of them), and its text.
fn groff(page: &Path) -> (String, String) {
    let out = std::process::Command::new("groff")
        .args(["-man", "-Tutf8", "-ww"])
        .arg(page)
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("groff is needed (Debian package groff-base; .ci/run installs it)");
    assert!(out.status.success(), "groff {}", page.display());
    // The terminal output makes bold and underlined text by overstriking (X\bX, _\bX): keep the last character.
    let mut text = String::new();
    for c in String::from_utf8_lossy(&out.stdout).chars() {
        if c == '\u{8}' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    (String::from_utf8_lossy(&out.stderr).into_owned(), text)
}

#[test]
fn man_pages_render_without_warnings_and_cover_every_command() {
    let env = Env::new();
    let main = env.dir.path().join("audit-trail.1");
    std::fs::write(&main, env.run(&["man"]).success().stdout).unwrap();
    let (warnings, text) = groff(&main);
    assert!(warnings.is_empty(), "{warnings}");
    for section in ["NAME", "SYNOPSIS", "OPTIONS", "SUBCOMMANDS", "EXAMPLES", "EXIT STATUS", "ENVIRONMENT", "FILES"] {
        assert!(text.contains(section), "no {section} in:\n{text}");
    }
    // Hyphens are minus signs: a flag copied from the page works.
    assert!(text.contains("--data-dir"), "{text}");

    let dir = env.dir.path().join("man1");
    env.run(&["man", "--dir", dir.to_str().unwrap()]).success();
    let mut commands = Vec::new();
    all_commands(&audit_trail::command(), "", &mut commands);
    for (path, _) in commands.iter().filter(|(p, _)| !p.split(' ').any(|w| w == "help")) {
        let page = dir.join(format!("{}.1", path.replace(' ', "-")));
        assert!(page.exists(), "no page for {path}");
        let (warnings, text) = groff(&page);
        assert!(warnings.is_empty(), "{}: {warnings}", page.display());
        assert!(text.contains("EXAMPLES") && text.contains(path.as_str()), "{}:\n{text}", page.display());
    }
    // man itself reads them.
    if std::process::Command::new("man").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let out = std::process::Command::new("man")
            .arg("-l")
            .arg(dir.join("audit-trail-config-check.1"))
            .env("MANPAGER", "cat")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("FILE:LINE"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn serve_tells_systemd_it_is_ready_once_the_ingest_socket_accepts() {
    use std::os::unix::net::{UnixDatagram, UnixStream};
    let env = Env::new();
    let dir = schedules(&env, &[]);
    let notify = env.dir.path().join("notify.sock");
    let listener = UnixDatagram::bind(&notify).unwrap();
    listener.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let mut child = env
        .cmd(&["--schedules", dir.to_str().unwrap(), "serve"])
        .env("NOTIFY_SOCKET", &notify)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let got = listener.recv(&mut buf);
    // Ready means ready: the ingest socket accepts at that moment.
    let accepts = UnixStream::connect(env.data.join("ingest.sock")).is_ok();
    let _ = child.kill();
    let _ = child.wait();
    let n = got.expect("no notification within 30 s");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "READY=1");
    assert!(accepts, "READY=1 before the ingest socket accepts");
}

/// Runs `audit-trail ARGS` through `sh` with stderr's own `DEVICE:INODE` in
/// `JOURNAL_STREAM`, as systemd does when stderr is the journal.
fn run_as_under_journal(env: &Env, args: &str, stdin: &str) -> std::process::Output {
    use std::io::Write;
    let script = format!("JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec \"$0\" --data-dir \"$1\" {args}");
    let mut child = std::process::Command::new("sh")
        .args(["-c", &script, crate::support::harness::BIN])
        .arg(&env.data)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sh");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn stderr_lines_carry_their_level_and_journald_priority_and_quiet_hides_notes() {
    let env = Env::with_config("host_name = \"pbx01\"\nevent_mask = \"presence\"\n");
    // A record of a category the mask does not record is a warning.
    let dropped = ["append", "--app", "PBX", "--action", "Change", "--category", "modify"];
    let err = env.run(&dropped).success().stderr;
    assert!(err.lines().any(|l| l.starts_with("audit-trail: warning: dropped")), "{err}");

    // Under the journal each line starts with its syslog priority.
    let out = run_as_under_journal(&env, &dropped.join(" "), "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.lines().any(|l| l.starts_with("<4>audit-trail: warning: dropped")), "{err}");
    assert!(err.lines().all(|l| l.starts_with('<')), "every line has a priority: {err}");

    // An invalid record is an error, and so is the final line.
    let out = run_as_under_journal(&env, "append --json -", "{\"app_name\":\"PBX\"\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.lines().any(|l| l.starts_with("<3>audit-trail: error: ")), "{err}");
    assert!(err.lines().all(|l| l.starts_with("<3>")), "{err}");

    // Without JOURNAL_STREAM naming stderr, no prefix is written.
    let out = env.cmd(&dropped).env("JOURNAL_STREAM", "1:1").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("audit-trail: warning: dropped"), "{err}");

    // -q keeps warnings and errors, -qq errors only; RUST_LOG decides when set.
    let stderr_of = |quiet: &str, rust_log: Option<&str>| -> String {
        let mut args = vec![quiet];
        args.extend(dropped);
        let mut c = env.cmd(&args);
        match rust_log {
            Some(v) => c.env("RUST_LOG", v),
            None => c.env_remove("RUST_LOG"),
        };
        String::from_utf8_lossy(&c.output().unwrap().stderr).into_owned()
    };
    assert!(stderr_of("-q", None).contains("warning: dropped"));
    assert!(!stderr_of("-qq", None).contains("dropped"), "-qq hides warnings");
    assert!(stderr_of("-qq", Some("warn")).contains("warning: dropped"), "RUST_LOG decides");
}

#[test]
fn a_service_message_never_spans_lines() {
    // A schedule file whose name holds a line break: its error names it.
    let env = Env::new();
    let dir = schedules(&env, &[("bad\nname.toml", "job = \"archive\"\ncron = \"not a cron\"\n")]);
    let server = env.serve(&dir);
    let err = server.stop();
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.iter().all(|l| l.starts_with("audit-trail: ")), "{err}");
    assert!(
        lines.iter().any(|l| l.starts_with("audit-trail: error: schedule not loaded") && l.contains("bad\\nname")),
        "{err}"
    );
}

#[test]
fn a_check_keeps_its_status_when_the_reader_stops_early() {
    // No service runs here: status --check says 10, also into a closed pipe.
    let env = Env::new();
    for _ in 0..10 {
        let out = std::process::Command::new("bash")
            .args(["-c", "\"$0\" --data-dir \"$1\" status --check | true; echo \"${PIPESTATUS[0]}\""])
            .arg(crate::support::harness::BIN)
            .arg(&env.data)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "10", "{out:?}");
    }
}
