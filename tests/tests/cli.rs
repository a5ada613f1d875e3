//! The `herald` CLI's behaviour on bad input: clear errors, non-zero exits.

use herald_e2e::bin;
use std::process::Command;

fn herald(args: &[&str], config: Option<&str>) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin("herald"));
    if let Some(text) = config {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        cmd.arg("--config").arg(path);
    }
    cmd.args(args).env_remove("HERALD_CONFIG").output().unwrap()
}

const GOOD: &str =
    "[destinations.crm]\nkind = \"webhook\"\nurl = \"https://crm.example.com/hook\"\n";

#[test]
fn config_check_explains_a_good_config() {
    let out = herald(&["config", "check"], Some(GOOD));
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("destination crm"), "{text}");
    assert!(
        text.contains("herald.dest.crm.retry.30s") || text.contains("herald.dest.crm"),
        "{text}"
    );
}

#[test]
fn config_check_names_the_bad_key() {
    let out = herald(
        &["config", "check"],
        Some(&format!("{GOOD}concurrency = 0\n")),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("destinations.crm.concurrency"), "{err}");

    let out = herald(
        &["config", "check"],
        Some(&format!("{GOOD}colour = \"blue\"\n")),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("colour"));
}

#[test]
fn misuse_exits_non_zero_with_help() {
    let out = herald(&["dlq"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
    let out = herald(&["dlq", "replay", "--destination", "crm"], Some(GOOD));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--all"));
}
