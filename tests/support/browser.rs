//! The headless Chromium the browser checks drive through playwright-core: Debian's chromium,
//! Node.js, and the node module of `tests/dashboard` (`bash tests/dashboard/install.sh`). A
//! missing one fails the test with what to install; it never skips.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::upstream::repo_root;

/// The Chromium binary and the path of `tests/dashboard/{script}`; panics saying what to
/// install when a tool is missing.
pub fn tools(script: &str) -> (PathBuf, PathBuf) {
    let chromium =
        std::env::var_os("CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from);
    let dir = repo_root().join("tests/dashboard");
    let module = dir.join("node_modules/playwright-core");
    let node_runs = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let found = |yes: bool| if yes { "found" } else { "missing" };
    assert!(
        chromium.exists() && module.exists() && node_runs,
        "the browser checks need Debian's chromium ({}: {}), Node.js (node: {}) and \
         playwright-core ({}: {}): run `bash tests/dashboard/install.sh` first",
        chromium.display(),
        found(chromium.exists()),
        found(node_runs),
        module.display(),
        found(module.exists()),
    );
    (chromium, dir.join(script))
}
