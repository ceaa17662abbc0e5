//! Stamps `ringstream --version` with the commit the binary was built from:
//! `ringstream 0.1.0 (abc1234 2026-12-01)`.
//!
//! The commit comes from, in order: `RINGSTREAM_COMMIT` (and `RINGSTREAM_COMMIT_DATE`) set by a
//! packager; git, when the package root is the top of a git checkout (a clone or a worktree);
//! the `.cargo_vcs_info.json` that `cargo package` writes into a crates.io tarball (hash only).
//! Without any of them the version is printed alone: a build never fails for want of a commit.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Hex digits of the hash shown, as `git log --abbrev=7` (git lengthens it when ambiguous).
const SHORT_HASH: usize = 7;

/// The commit a build comes from.
struct Commit {
    hash: String,
    /// The committer date, `YYYY-MM-DD`, where known.
    date: Option<String>,
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RINGSTREAM_COMMIT");
    println!("cargo:rerun-if-env-changed=RINGSTREAM_COMMIT_DATE");
    let version = env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = from_env()
        .or_else(|| from_git(&root))
        .or_else(|| from_vcs_info(&root));
    let long = match commit {
        Some(Commit {
            hash,
            date: Some(date),
        }) => format!("{version} ({hash} {date})"),
        Some(Commit { hash, date: None }) => format!("{version} ({hash})"),
        None => version,
    };
    println!("cargo:rustc-env=RINGSTREAM_VERSION={long}");
}

/// `RINGSTREAM_COMMIT`, for packagers building outside a checkout (an sdist, a distro build).
fn from_env() -> Option<Commit> {
    let hash = env::var("RINGSTREAM_COMMIT")
        .ok()
        .filter(|h| !h.trim().is_empty())?;
    let date = env::var("RINGSTREAM_COMMIT_DATE")
        .ok()
        .filter(|d| !d.trim().is_empty());
    Some(Commit {
        hash: hash.trim().to_owned(),
        date: date.map(|d| d.trim().to_owned()),
    })
}

/// The checked-out commit, when `root` is the top of a git checkout; also tells cargo to run
/// this script again when the checkout moves to another commit.
fn from_git(root: &Path) -> Option<Commit> {
    // A tarball unpacked inside some other repository must not take that repository's commit.
    let top = git(root, &["rev-parse", "--show-toplevel"])?;
    if fs::canonicalize(&top).ok()? != fs::canonicalize(root).ok()? {
        return None;
    }
    watch_head(root);
    let line = git(
        root,
        &[
            "log",
            "-1",
            &format!("--abbrev={SHORT_HASH}"),
            "--format=%h %cs",
        ],
    )?;
    let (hash, date) = line.split_once(' ')?;
    Some(Commit {
        hash: hash.to_owned(),
        date: Some(date.to_owned()),
    })
}

/// Reruns this script when HEAD moves: a checkout changes `HEAD`, a commit changes the branch's
/// ref (or `packed-refs`). `--git-path` finds each file both in a clone (`.git/`) and in a
/// worktree, where `.git` is a file, `HEAD` is in the worktree's own git directory and the
/// refs are in the common one. Only existing files are named: cargo reruns a script on every
/// build while a named file is missing.
fn watch_head(root: &Path) {
    let mut names = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(root, &["symbolic-ref", "-q", "HEAD"]) {
        names.push(branch);
    }
    for name in names {
        if let Some(path) = git(root, &["rev-parse", "--git-path", &name]) {
            let path = root.join(path);
            if path.is_file() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}

/// The commit `cargo package` recorded in the published tarball (no date there).
fn from_vcs_info(root: &Path) -> Option<Commit> {
    let text = fs::read_to_string(root.join(".cargo_vcs_info.json")).ok()?;
    let after = text.split_once("\"sha1\"")?.1;
    let hash = after.split('"').nth(1)?;
    if hash.len() < SHORT_HASH || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(Commit {
        hash: hash[..SHORT_HASH].to_owned(),
        date: None,
    })
}

/// Runs `git` in `dir`; its trimmed standard output when it succeeds, else `None` (no git, not
/// a checkout).
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}
