//! What the packages promise (README "Installing"): `ringstream --version` names the commit it
//! was built from.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::process::{Command, Stdio};

/// `ringstream VERSION`, then ` (HASH DATE)` or ` (HASH)` where the build knew its commit.
#[test]
fn version_names_the_version_and_the_commit() {
    let line = version_line(&["--version"]);
    let prefix = concat!("ringstream ", env!("CARGO_PKG_VERSION"));
    let rest = line
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{line:?}"));
    let commit = match rest.strip_prefix(" (").and_then(|r| r.strip_suffix(')')) {
        Some(commit) => commit,
        None => {
            assert!(rest.is_empty(), "{line:?}");
            assert!(
                checkout_head().is_none(),
                "built in a checkout, no commit: {line:?}"
            );
            return;
        }
    };
    let (hash, date) = commit.split_once(' ').unwrap_or((commit, ""));
    if option_env!("RINGSTREAM_COMMIT").is_none() {
        assert!(hash.len() >= 7, "{line:?}");
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{line:?}");
        if let Some(head) = checkout_head() {
            assert!(head.starts_with(hash), "{line:?} is not HEAD {head}");
        }
    }
    if !date.is_empty() {
        let digits: Vec<bool> = date.bytes().map(|b| b.is_ascii_digit()).collect();
        let shape = [true, true, true, true, false, true, true, false, true, true];
        assert_eq!(digits, shape, "a YYYY-MM-DD date: {line:?}");
    }

    // The short flag prints the same line; a subcommand the same version under its own name.
    assert_eq!(version_line(&["-V"]), line);
    for sub in ["serve", "check-config"] {
        let expected = format!("ringstream-{sub}{}", &line["ringstream".len()..]);
        assert_eq!(version_line(&[sub, "--version"]), expected);
    }
}

/// `ringstream ARGS`'s only line of standard output; it must exit 0.
fn version_line(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ringstream"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{args:?}: {output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let line = stdout.strip_suffix('\n').unwrap_or(&stdout);
    assert!(!line.contains('\n'), "one line: {stdout:?}");
    line.to_owned()
}

/// The full hash of the checked-out commit, when this package is the top of a git checkout.
fn checkout_head() -> Option<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new("git")
        .args(["-C", root, "rev-parse", "--show-toplevel", "HEAD"])
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let mut lines = text.lines();
    let top = std::fs::canonicalize(lines.next()?).ok()?;
    (output.status.success() && top == std::fs::canonicalize(root).ok()?)
        .then(|| lines.next().map(str::to_owned))
        .flatten()
}
