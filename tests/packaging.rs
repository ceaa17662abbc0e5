//! What the packages promise (README "Installing"): `ringstream --version` names the commit it
//! was built from, and the container image starts under a container runtime's default seccomp
//! profile, which refuses io_uring with `EPERM`: the server runs on the poll driver after one
//! log line.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use support::{PATIENCE, TempFile};

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

/// Docker's default seccomp profile (moby 25 and later, and runtimes that copy it) has no
/// `io_uring_*` system call in its allow list: they fail with `EPERM`. `auto` takes the poll
/// driver, says so once at the default log level, and serves.
#[cfg(target_arch = "x86_64")]
#[test]
fn under_a_container_seccomp_profile_auto_serves_on_poll_after_one_line() {
    let log = TempFile::new("log", b"");
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringstream"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--workers", "2"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log.path).unwrap());
    support::deny_io_uring(&mut command, libc::EPERM);
    let mut child = KillOnDrop(command.spawn().unwrap());

    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line {first:?}; log: {}", read(&log)));
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    std::io::Write::write_all(&mut stream, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let response = support::read_response(&mut stream).expect("a response");
    assert_eq!(response.status, 200);

    let log = read(&log);
    let about_drivers: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("io_uring") || l.contains("poll driver"))
        .collect();
    assert_eq!(about_drivers.len(), 1, "one line: {log}");
    let line = about_drivers[0];
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("running on the poll driver"), "{line}");
    assert!(
        line.contains("Operation not permitted"),
        "the EPERM: {line}"
    );
    assert!(log.contains("driver=poll"), "started on poll: {log}");
}

fn read(file: &TempFile) -> String {
    std::fs::read_to_string(&file.path).unwrap()
}

/// A child killed and reaped when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
