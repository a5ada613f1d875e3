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

#[test]
fn config_check_explains_sources_and_names_their_bad_keys() {
    let sources = format!(
        "{GOOD}\n[sources.gh]\nscheme = \"github\"\nsecrets = [\"env:HERALD_TEST_GH_SECRET\"]\n"
    );
    // The source's secret must resolve: the variable is named, not echoed.
    let out = herald(&["config", "check"], Some(&sources));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sources.gh.secrets") && err.contains("HERALD_TEST_GH_SECRET"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, &sources).unwrap();
    let out = Command::new(bin("herald"))
        .args(["--config", path.to_str().unwrap(), "config", "check"])
        .env("HERALD_TEST_GH_SECRET", "s3cret")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("source gh (POST /webhooks/gh"), "{text}");
    assert!(text.contains("x-hub-signature-256"), "{text}");
    assert!(text.contains("id <header:x-github-delivery>"), "{text}");
    assert!(!text.contains("s3cret"), "secrets never printed: {text}");

    for (bad, key) in [
        (
            "scheme = \"hmac\"\nsecrets = [\"k\"]\nid = \"body:/id\"\n",
            "sources.x.hmac",
        ),
        ("scheme = \"github\"\nsecrets = []\n", "sources.x.secrets"),
        (
            "scheme = \"github\"\nsecrets = [\"k\"]\nsubject = [\"query:a\"]\n",
            "sources.x.subject",
        ),
        (
            "scheme = \"stripe\"\nsecrets = [\"k\"]\ntolerance = \"soon\"\n",
            "tolerance",
        ),
    ] {
        let out = herald(
            &["config", "check"],
            Some(&format!("{GOOD}\n[sources.x]\n{bad}")),
        );
        assert!(!out.status.success(), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{bad}: {err}");
    }
}
