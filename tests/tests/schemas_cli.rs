//! `herald schemas check`: the built binary against schema directories and
//! an in-memory Schema Registry. No Kafka broker needed.

use herald_core::codec::EVENT_AVSC;
use herald_devtools::registry::TestRegistry;
use herald_e2e::{bin, repo_root};
use std::path::Path;
use std::process::Output;

const FILES: [&str; 5] = [
    "event.avsc",
    "delivery.avsc",
    "attempt.avsc",
    "dead_letter.avsc",
    "ledger.avsc",
];

async fn herald(args: &[&str]) -> Output {
    tokio::process::Command::new(bin("herald"))
        .args(args)
        .env_remove("HERALD_CONFIG")
        .env_remove("HERALD__SCHEMA_REGISTRY__URL")
        .env_remove("HERALD__TOPICS__INPUT")
        .output()
        .await
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A copy of the repository's schemas/, with `event.avsc` replaced when given.
fn schemas_dir(event: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in FILES {
        std::fs::copy(repo_root().join("schemas").join(f), dir.path().join(f)).unwrap();
    }
    if let Some(e) = event {
        std::fs::write(dir.path().join("event.avsc"), e).unwrap();
    }
    dir
}

/// event.avsc with its fields edited by `f`.
fn edit_event(f: impl FnOnce(&mut Vec<serde_json::Value>)) -> String {
    let mut v: serde_json::Value = serde_json::from_str(EVENT_AVSC).unwrap();
    f(v["fields"].as_array_mut().unwrap());
    v.to_string()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test]
async fn bundled_schemas_are_compatible_with_a_copy_of_themselves() {
    let old = schemas_dir(None);
    let out = herald(&["schemas", "check", "--against", p(old.path())]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for f in FILES {
        assert!(
            stdout.lines().any(|l| l.starts_with("ok") && l.contains(f)),
            "{f}: {}",
            text(&out)
        );
    }

    // A schema the old release did not have is new, and fine; --json.
    std::fs::remove_file(old.path().join("ledger.avsc")).unwrap();
    let out = herald(&["--json", "schemas", "check", "--against", p(old.path())]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = v.as_array().unwrap();
    assert_eq!(checks.len(), FILES.len(), "{v}");
    let ledger = checks
        .iter()
        .find(|c| c["schema"] == "ledger.avsc")
        .unwrap();
    assert_eq!(ledger["compatible"], true);
    assert!(
        ledger["reason"]
            .as_str()
            .unwrap()
            .contains("nothing to compare"),
        "{ledger}"
    );
}

#[tokio::test]
async fn a_new_field_without_default_is_incompatible() {
    let new = schemas_dir(Some(&edit_event(|f| {
        f.push(serde_json::json!({"name": "priority", "type": "int"}))
    })));
    let repo_schemas = repo_root().join("schemas");
    let args = [
        "schemas",
        "check",
        "--schemas",
        p(new.path()),
        "--against",
        p(&repo_schemas),
    ];
    let out = herald(&args).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let bad: Vec<_> = stdout
        .lines()
        .filter(|l| l.starts_with("INCOMPATIBLE"))
        .collect();
    assert_eq!(bad.len(), 1, "{}", text(&out));
    assert!(
        bad[0].contains("event.avsc") && bad[0].contains("priority"),
        "{}",
        text(&out)
    );

    // The same edit with a default is compatible.
    let ok = schemas_dir(Some(&edit_event(|f| {
        f.push(serde_json::json!({"name": "priority", "type": "int", "default": 0}))
    })));
    let out = herald(&[
        "schemas",
        "check",
        "--schemas",
        p(ok.path()),
        "--against",
        p(&repo_schemas),
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[tokio::test]
async fn misuse_and_unreadable_inputs_exit_2() {
    let out = herald(&["schemas", "check"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));

    let gone = tempfile::tempdir().unwrap();
    let missing = gone.path().join("nope");
    let out = herald(&["schemas", "check", "--against", p(&missing)]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nope"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_check_reads_the_input_subjects_latest_version() {
    let registry = TestRegistry::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "[topics]\ninput = \"orders\"\n\n[schema_registry]\nurl = \"{}\"\n",
            registry.url()
        ),
    )
    .unwrap();
    let args = ["--config", p(&config), "schemas", "check", "--registry"];

    // Nothing registered yet: reported, fine.
    let out = herald(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("orders-value"),
        "{}",
        text(&out)
    );

    // A producer's older writer schema (no `tenant`): Herald reads it.
    let older = edit_event(|f| f.retain(|x| x["name"] != "tenant"));
    registry.register("orders-value", &older);
    let out = herald(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("ok"),
        "{}",
        text(&out)
    );

    // A producer one version ahead, with a field Herald does not know (no
    // default needed: the reader skips it): still readable.
    let ahead = edit_event(|f| f.push(serde_json::json!({"name": "priority", "type": "int"})));
    let id = registry.register("orders-value", &ahead);
    let out = herald(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("(id {id})")),
        "{}",
        text(&out)
    );

    // A newer version with `data` as an int: Herald cannot read it.
    let int_data = edit_event(|f| {
        for x in f.iter_mut().filter(|x| x["name"] == "data") {
            x["type"] = "int".into();
        }
    });
    let id = registry.register("orders-value", &int_data);
    let out = herald(&args).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("INCOMPATIBLE") && stdout.contains(&format!("(id {id})")),
        "{}",
        text(&out)
    );

    // --against and --registry together: one line each.
    let out = herald(&[
        "--json",
        "--config",
        p(&config),
        "schemas",
        "check",
        "--registry",
        "--against",
        p(&repo_root().join("schemas")),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let incompatible: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["compatible"] == false)
        .collect();
    assert_eq!(v.as_array().unwrap().len(), FILES.len() + 1, "{v}");
    assert_eq!(incompatible.len(), 1, "{v}");
    assert!(
        incompatible[0]["against"]
            .as_str()
            .unwrap()
            .contains("orders-value"),
        "{v}"
    );

    // Unreachable: no verdict.
    registry.set_down(true);
    let out = herald(&args).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unavailable"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn registry_check_without_a_registry_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    std::fs::write(&config, "[topics]\ninput = \"orders\"\n").unwrap();
    let out = herald(&["--config", p(&config), "schemas", "check", "--registry"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("schema_registry.url"),
        "{}",
        text(&out)
    );
}
