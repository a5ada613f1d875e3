//! `herald-chaos` misuse exits non-zero with the help; `--help` exits 0.
//! (No broker needed: both end before anything starts.)

use std::process::Command;

fn chaos(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_herald-chaos"))
        .args(args)
        .output()
        .expect("running herald-chaos")
}

#[test]
fn misuse_exits_2_with_the_help() {
    for args in [&["--bogus"][..], &["--events", "many"], &["--events", "0"]] {
        let out = chaos(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--events") && err.contains("--bin-dir"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn help_exits_0() {
    let out = chaos(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--events", "--quick", "--out", "--bin-dir"] {
        assert!(text.contains(flag), "{flag} missing from --help");
    }
}
