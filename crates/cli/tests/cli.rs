//! The binary's own surface: log output and help, whatever the command.

mod support;

use support::{run, tempdir};

/// `serve --no-auth` without an upstream logs a warning and then stops with an error: a quick way
/// to make the binary write one log line.
fn one_log_line(extra: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempdir();
    let d = dir.path().to_str().unwrap();
    let mut args = vec!["serve", "--no-auth", "--data-dir", d];
    args.extend_from_slice(extra);
    let (ok, _out, err) = run(&args, env);
    assert!(!ok, "serve without an upstream must fail: {err}");
    assert!(err.contains("no upstream configured"), "{err}");
    err
}

#[test]
fn logs_are_plain_text_when_stderr_is_not_a_terminal() {
    let err = one_log_line(&[], &[]);
    assert!(err.contains("WARN"), "{err}");
    assert!(err.contains("--no-auth"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escape in redirected logs: {err:?}"
    );
}

#[test]
fn json_logs_are_one_object_a_line() {
    for (extra, env) in [
        (&["--log-format", "json"][..], &[][..]),
        (&[][..], &[("DOWNSHIFT_LOG_FORMAT", "json")][..]),
    ] {
        let err = one_log_line(extra, env);
        let logs: Vec<serde_json::Value> = err
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let warn = logs
            .iter()
            .find(|v| v["level"] == "WARN")
            .unwrap_or_else(|| panic!("no WARN object in {err}"));
        assert!(
            warn["fields"]["message"]
                .as_str()
                .unwrap()
                .contains("--no-auth"),
            "{warn}"
        );
        assert!(warn["timestamp"].is_string(), "{warn}");
    }
    let (ok, _, err) = run(&["calls", "list", "--log-format", "xml"], &[]);
    assert!(!ok);
    assert!(err.contains("possible values: text, json"), "{err}");
}

#[test]
fn shared_options_are_listed_apart_from_each_commands_own() {
    let (ok, out, err) = run(&["calls", "list", "--help"], &[]);
    assert!(ok, "{err}");
    let global = out
        .split("Global options:")
        .nth(1)
        .unwrap_or_else(|| panic!("no global section in {out}"));
    for flag in ["--config", "--data-dir", "--log ", "--log-format"] {
        assert!(
            global.contains(flag),
            "{flag} not under the global options: {out}"
        );
    }
}
