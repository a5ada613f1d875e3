//! `herald schemas check`: are Herald's Avro schemas (the bundled ones, or a
//! directory of edited ones) BACKWARD-compatible with a previous release's
//! `schemas/`, and can Herald's Event schema read what producers registered
//! under the input topic's subject?

use herald_core::codec::{ATTEMPT_AVSC, DEAD_LETTER_AVSC, DELIVERY_AVSC, EVENT_AVSC, LEDGER_AVSC};
use herald_core::config::{Config, OutputFormat};
use herald_core::registry::client::SubjectVersion;
use herald_core::registry::compat::backward;
use herald_core::registry::{output, value_subject, RegistryClient};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit code for usage errors and inputs that cannot be read: no verdict.
const NO_VERDICT: u8 = 2;

/// The schema files Herald bundles, with their text.
const BUNDLED: [(&str, &str); 5] = [
    ("event.avsc", EVENT_AVSC),
    ("delivery.avsc", DELIVERY_AVSC),
    ("attempt.avsc", ATTEMPT_AVSC),
    ("dead_letter.avsc", DEAD_LETTER_AVSC),
    ("ledger.avsc", LEDGER_AVSC),
];

#[derive(clap::Subcommand)]
pub enum SchemasCmd {
    /// Check that Herald's schemas can read records written with older ones
    /// (the registry's BACKWARD rule).
    ///
    /// --against DIR compares each bundled schema with DIR/<name>.avsc, e.g.
    /// the previous release's schemas/; a file missing from DIR is new and
    /// has nothing to compare. --registry checks that Herald's Event schema
    /// reads the latest version registered under the input topic's subject
    /// (needs [schema_registry] in the config). Exit code 0: all compatible;
    /// 1: something is not; 2: usage error or an input that cannot be read.
    #[command(after_help = "Examples:\n  \
        git worktree add /tmp/prev v0.3 && herald schemas check --against /tmp/prev/schemas\n  \
        herald schemas check --schemas schemas --against /tmp/prev/schemas   # before building\n  \
        herald schemas check --config herald.toml --registry")]
    Check(CheckArgs),
}

#[derive(clap::Args)]
#[command(group(
    clap::ArgGroup::new("target")
        .args(["against", "registry"])
        .required(true)
        .multiple(true)
))]
pub struct CheckArgs {
    /// Directory of the old schemas (e.g. the previous release's schemas/).
    #[arg(long, value_name = "DIR")]
    against: Option<PathBuf>,
    /// Check the Event schema against the latest version registered under
    /// the input topic's subject (`<topics.input>-value`) and, with
    /// `output.format = "registry"`, each of Herald's schemas against its
    /// topics' subjects.
    #[arg(long)]
    registry: bool,
    /// Read the new schemas from this directory instead of the bundled ones
    /// (e.g. the working tree's schemas/, to check an edit before building).
    #[arg(long, value_name = "DIR")]
    schemas: Option<PathBuf>,
}

/// One schema compared with one older version of it.
#[derive(Debug)]
struct Check {
    /// File name of the new schema, e.g. `event.avsc`.
    schema: &'static str,
    /// What it was compared with: a path, or a registry subject's version.
    against: String,
    verdict: Verdict,
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Compatible,
    /// Nothing to compare with (why); fine.
    Nothing(String),
    Incompatible(String),
}

impl Check {
    /// `new` against `old`, or `Err(why)` when there is no old version.
    fn new(schema: &'static str, new: &str, against: String, old: Result<&str, String>) -> Self {
        let verdict = match old.map(|old| backward(new, old)) {
            Err(why) => Verdict::Nothing(why),
            Ok(Ok(())) => Verdict::Compatible,
            Ok(Err(e)) => Verdict::Incompatible(e),
        };
        Self {
            schema,
            against,
            verdict,
        }
    }

    fn compatible(&self) -> bool {
        !matches!(self.verdict, Verdict::Incompatible(_))
    }

    fn line(&self) -> String {
        let (schema, against) = (self.schema, &self.against);
        match &self.verdict {
            Verdict::Compatible => {
                format!("{:<14}{schema}  (backward-compatible with {against})", "ok")
            }
            Verdict::Nothing(why) => format!("{:<14}{schema}  ({why})", "new"),
            Verdict::Incompatible(reason) => format!(
                "{:<14}{schema}: {reason}  (cannot read records written with {against})",
                "INCOMPATIBLE"
            ),
        }
    }

    fn json(&self) -> serde_json::Value {
        let reason = match &self.verdict {
            Verdict::Compatible => None,
            Verdict::Nothing(r) | Verdict::Incompatible(r) => Some(r.as_str()),
        };
        serde_json::json!({
            "schema": self.schema,
            "against": self.against,
            "compatible": self.compatible(),
            "reason": reason,
        })
    }
}

/// Reads a schema file, `None` when it does not exist. A file that is not
/// JSON is an error: it is no schema, so there is no verdict about it.
fn read_schema(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(_) => Ok(Some(text)),
            Err(e) => Err(format!("{} is not a JSON schema: {e}", path.display())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn need_dir(dir: &Path, option: &str) -> Result<(), String> {
    match dir.is_dir() {
        true => Ok(()),
        false => Err(format!("{option} {}: not a directory", dir.display())),
    }
}

/// The new schemas by file name: bundled, or every one of them from `dir`.
fn new_schemas(dir: Option<&Path>) -> Result<Vec<(&'static str, String)>, String> {
    let Some(dir) = dir else {
        return Ok(BUNDLED.map(|(f, text)| (f, text.to_string())).to_vec());
    };
    need_dir(dir, "--schemas")?;
    BUNDLED
        .iter()
        .map(|(file, _)| {
            let path = dir.join(file);
            let text = read_schema(&path)?;
            text.map(|t| (*file, t))
                .ok_or_else(|| format!("{} is missing (--schemas)", path.display()))
        })
        .collect()
}

/// Each new schema against its namesake in `dir`.
fn against_dir(new: &[(&'static str, String)], dir: &Path) -> Result<Vec<Check>, String> {
    need_dir(dir, "--against")?;
    new.iter()
        .map(|(file, text)| {
            let path = dir.join(file);
            let old = read_schema(&path)?;
            let missing = || format!("no {}: new, nothing to compare", path.display());
            let old = old.as_deref().ok_or_else(missing);
            Ok(Check::new(file, text, path.display().to_string(), old))
        })
        .collect()
}

/// A schema (`file`, text `new`) against the subject's latest registered
/// version.
fn against_registry(
    file: &'static str,
    new: &str,
    url: &str,
    subject: &str,
    v: Option<&SubjectVersion>,
) -> Check {
    let against = match v {
        Some(SubjectVersion { id, version, .. }) => {
            format!("{url} subject {subject} version {version} (id {id})")
        }
        None => format!("{url} subject {subject}"),
    };
    let old = v
        .map(|v| v.schema.as_str())
        .ok_or_else(|| format!("subject {subject} is not registered at {url}: nothing to compare"));
    Check::new(file, new, against, old)
}

/// The schema file of a record type.
fn file_of(record: &str) -> &'static str {
    match record {
        "Delivery" => "delivery.avsc",
        "Attempt" => "attempt.avsc",
        "DeadLetter" => "dead_letter.avsc",
        "LedgerEntry" => "ledger.avsc",
        _ => "event.avsc",
    }
}

fn exit_code(checks: &[Check]) -> u8 {
    u8::from(!checks.iter().all(Check::compatible))
}

fn render(checks: &[Check], json: bool) -> String {
    if json {
        let v: Vec<_> = checks.iter().map(Check::json).collect();
        serde_json::to_string_pretty(&v).expect("JSON values serialize")
    } else {
        let lines: Vec<_> = checks.iter().map(Check::line).collect();
        lines.join("\n")
    }
}

/// Runs the command; the config is loaded only for `--registry`, so a file
/// check needs neither a config nor Kafka.
pub async fn run(config_path: Option<&Path>, cmd: SchemasCmd, json: bool) -> ExitCode {
    let SchemasCmd::Check(args) = cmd;
    match checks(config_path, &args).await {
        Ok(checks) => {
            println!("{}", render(&checks, json));
            ExitCode::from(exit_code(&checks))
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(NO_VERDICT)
        }
    }
}

async fn checks(config_path: Option<&Path>, args: &CheckArgs) -> Result<Vec<Check>, String> {
    let new = new_schemas(args.schemas.as_deref())?;
    let mut out = match &args.against {
        Some(dir) => against_dir(&new, dir)?,
        None => Vec::new(),
    };
    if args.registry {
        let config = Config::load(config_path).map_err(|e| e.to_string())?;
        let Some(rc) = &config.schema_registry else {
            let e = "--registry needs the registry's address: set schema_registry.url \
                ([schema_registry] url = \"http://…\" in the config, or HERALD__SCHEMA_REGISTRY__URL)";
            return Err(e.into());
        };
        let client = RegistryClient::from_config(rc).map_err(|e| e.to_string())?;
        let subject = value_subject(&config.topics.input);
        let latest = client.latest(&subject).await.map_err(|e| e.to_string())?;
        let event = &new[0].1; // BUNDLED[0]: event.avsc
        let check = against_registry("event.avsc", event, client.url(), &subject, latest.as_ref());
        out.push(check);
        // Herald's own subjects, when it registers its schemas.
        if config.output.format == OutputFormat::Registry {
            for (subject, name, _) in output::subjects(&config) {
                let file = file_of(name);
                let text = &new.iter().find(|(f, _)| *f == file).expect("bundled").1;
                let latest = client.latest(&subject).await.map_err(|e| e.to_string())?;
                out.push(against_registry(
                    file,
                    text,
                    client.url(),
                    &subject,
                    latest.as_ref(),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use herald_core::registry::compat::edit_fields as edit;

    /// event.avsc plus an int `priority` field, with or without a default.
    fn with_priority(default: bool) -> String {
        edit(EVENT_AVSC, |f| {
            let mut field = serde_json::json!({"name": "priority", "type": "int"});
            if default {
                field["default"] = 0.into();
            }
            f.push(field)
        })
    }

    /// `new` against `old` as event.avsc, compared with "old".
    fn vs(new: &str, old: Option<&str>) -> Check {
        let old = old.ok_or_else(|| "new".to_string());
        Check::new("event.avsc", new, "old".into(), old)
    }

    /// A fresh directory holding `files`, removed on drop.
    struct Dir(PathBuf);
    impl Dir {
        fn new(files: &[(&str, &str)]) -> Self {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("herald-schemas-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            for (name, text) in files {
                std::fs::write(p.join(name), text).unwrap();
            }
            Self(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn bundled_schemas_are_compatible_with_themselves_and_missing_ones_are_new() {
        let old = Dir::new(&BUNDLED);
        let checks = against_dir(&new_schemas(None).unwrap(), &old.0).unwrap();
        assert_eq!(checks.len(), BUNDLED.len());
        assert!(checks.iter().all(|c| c.verdict == Verdict::Compatible));
        assert_eq!(exit_code(&checks), 0);
        let text = render(&checks, false);
        assert!(text.lines().all(|l| l.starts_with("ok  ")), "{text}");

        std::fs::remove_file(old.0.join("ledger.avsc")).unwrap();
        let checks = against_dir(&new_schemas(None).unwrap(), &old.0).unwrap();
        let ledger = checks.iter().find(|c| c.schema == "ledger.avsc").unwrap();
        assert!(matches!(&ledger.verdict, Verdict::Nothing(w) if w.contains("nothing to compare")));
        assert!(ledger.line().starts_with("new "), "{}", ledger.line());
        assert_eq!(exit_code(&checks), 0);
    }

    #[test]
    fn a_new_field_needs_a_default() {
        let mut files = BUNDLED.to_vec();
        let bad = with_priority(false);
        files[0] = ("event.avsc", &bad);
        let new = Dir::new(&files);
        let old = Dir::new(&BUNDLED);
        let checks = against_dir(&new_schemas(Some(&new.0)).unwrap(), &old.0).unwrap();
        let bad: Vec<_> = checks.iter().filter(|c| !c.compatible()).collect();
        assert_eq!(bad.len(), 1, "{checks:?}");
        assert_eq!(bad[0].schema, "event.avsc");
        assert!(
            bad[0].line().starts_with("INCOMPATIBLE  event.avsc: "),
            "{}",
            bad[0].line()
        );
        assert!(bad[0].line().contains("priority"), "{}", bad[0].line());
        assert_eq!(exit_code(&checks), 1);

        assert_eq!(
            vs(&with_priority(true), Some(EVENT_AVSC)).verdict,
            Verdict::Compatible
        );
    }

    #[test]
    fn unreadable_inputs_are_errors_not_verdicts() {
        let missing = std::env::temp_dir().join("herald-schemas-does-not-exist");
        assert!(against_dir(&new_schemas(None).unwrap(), &missing).is_err());
        let garbage = Dir::new(&[("delivery.avsc", "version https://git-lfs")]);
        let e = against_dir(&new_schemas(None).unwrap(), &garbage.0).unwrap_err();
        assert!(e.contains("delivery.avsc"), "{e}");
        // --schemas must hold every schema.
        let partial = Dir::new(&[("event.avsc", EVENT_AVSC)]);
        let e = new_schemas(Some(&partial.0)).unwrap_err();
        assert!(e.contains("delivery.avsc"), "{e}");
    }

    #[test]
    fn the_registry_check_reads_the_latest_writer_schema_with_the_event_schema() {
        let check = |writer: Option<String>| {
            let v = writer.map(|schema| SubjectVersion {
                id: 7,
                version: 3,
                schema,
            });
            against_registry(
                "event.avsc",
                EVENT_AVSC,
                "http://r",
                "events-value",
                v.as_ref(),
            )
        };
        // A producer one version ahead (a field Herald ignores) or behind.
        let newer = check(Some(with_priority(false)));
        assert_eq!(newer.verdict, Verdict::Compatible, "{newer:?}");
        assert!(
            newer.against.contains("events-value version 3 (id 7)"),
            "{}",
            newer.against
        );
        let older = edit(EVENT_AVSC, |f| f.retain(|x| x["name"] != "tenant"));
        assert_eq!(check(Some(older)).verdict, Verdict::Compatible);

        let int_data = edit(EVENT_AVSC, |f| {
            f.iter_mut()
                .filter(|x| x["name"] == "data")
                .for_each(|x| x["type"] = "int".into())
        });
        assert!(!check(Some(int_data)).compatible());
        let none = check(None);
        assert!(
            none.compatible() && none.line().contains("not registered"),
            "{}",
            none.line()
        );
    }

    #[test]
    fn json_has_one_object_per_check() {
        let checks = [
            vs(EVENT_AVSC, Some(EVENT_AVSC)),
            vs(&with_priority(false), Some(EVENT_AVSC)),
            vs(EVENT_AVSC, None),
        ];
        let v: serde_json::Value = serde_json::from_str(&render(&checks, true)).unwrap();
        let get = |i: usize, k: &str| v[i][k].clone();
        assert_eq!(v.as_array().unwrap().len(), 3);
        assert_eq!(
            (get(0, "schema"), get(0, "against")),
            ("event.avsc".into(), "old".into())
        );
        assert_eq!(
            (get(0, "compatible"), get(0, "reason")),
            (true.into(), serde_json::Value::Null)
        );
        assert_eq!(get(1, "compatible"), false);
        assert!(
            get(1, "reason").as_str().unwrap().contains("priority"),
            "{v}"
        );
        assert_eq!(
            (get(2, "compatible"), get(2, "reason")),
            (true.into(), "new".into())
        );
    }
}
