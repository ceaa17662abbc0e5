//! The `upload` route against the real binary: a stored file's SHA-256 matches what was sent,
//! and no failure (too large, too slow, aborted, the server killed) leaves a file under the
//! final name or a temporary file after the next start.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::{DRIVERS, PATIENCE, Response, Server, is_closed, read_response};

/// An upload directory for one test, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("ringstream-upload-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    /// Every entry of the directory, sorted.
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An upload route on `driver`.
fn server(dir: &Path, options: &str, limits: &str, driver: &str) -> Server {
    let config = format!(
        r#"
[limits]
{limits}

[[routes]]
path = "/upload/"
kind = "upload"
upload_dir = "{}"
max_upload_size = "1MiB"
{options}
"#,
        dir.display()
    );
    Server::with_config(&config, &["--workers", "2", "--io-driver", driver])
}

fn put(server: &Server, name: &str, body: &[u8]) -> Response {
    let mut stream = server.connect();
    let mut raw = format!(
        "PUT /upload/{name} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    stream.write_all(&raw).unwrap();
    read_response(&mut stream).expect("a response")
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Waits until the directory holds exactly `expected`.
fn wait_for_entries(dir: &Dir, expected: &[&str]) {
    let deadline = Instant::now() + PATIENCE;
    while dir.entries() != expected {
        assert!(
            Instant::now() < deadline,
            "{:?} instead of {expected:?}",
            dir.entries()
        );
        sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_stored_upload_is_whole_and_its_sha256_matches() {
    for driver in DRIVERS {
        a_stored_upload_is_whole_and_its_sha256_matches_on(driver);
    }
}

fn a_stored_upload_is_whole_and_its_sha256_matches_on(driver: &str) {
    let dir = Dir::new("good");
    let server = server(&dir.0, "", "", driver);
    let body: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let response = put(&server, "report%20v1.bin", &body);
    assert_eq!(response.status, 201);
    assert_eq!(response.header("location"), Some("/upload/report_v1.bin"));
    let answer: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(answer["name"], "report_v1.bin");
    assert_eq!(answer["size"], body.len());
    assert_eq!(answer["sha256"], sha256_hex(&body));
    assert!(std::fs::read(dir.0.join("report_v1.bin")).unwrap() == body);
    // A chunked POST is stored the same way.
    let mut stream = server.connect();
    stream
        .write_all(b"POST /upload/chunked.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        .unwrap();
    let response = read_response(&mut stream).unwrap();
    assert_eq!(response.status, 201);
    assert_eq!(
        std::fs::read(dir.0.join("chunked.txt")).unwrap(),
        b"hello world"
    );
    // An existing name is not replaced: 409 before the body is read.
    let conflict = put(&server, "chunked.txt", b"other");
    assert_eq!(conflict.status, 409);
    assert_eq!(
        std::fs::read(dir.0.join("chunked.txt")).unwrap(),
        b"hello world"
    );
    for (target, status) in [("..", 400), ("a%2Fb", 400), ("", 400)] {
        assert_eq!(put(&server, target, b"x").status, status, "{target}");
    }
    let mut stream = server.connect();
    stream
        .write_all(b"GET /upload/x HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let refused = read_response(&mut stream).unwrap();
    assert_eq!(
        (refused.status, refused.header("allow")),
        (405, Some("PUT, POST"))
    );
    assert_eq!(dir.entries(), ["chunked.txt", "report_v1.bin"]);
}

#[test]
fn a_synced_upload_is_stored_whole() {
    for driver in DRIVERS {
        let dir = Dir::new("synced");
        let server = server(&dir.0, "fsync = true", "", driver);
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
        let response = put(&server, "synced.bin", &body);
        assert_eq!(response.status, 201, "on {driver}");
        assert!(std::fs::read(dir.0.join("synced.bin")).unwrap() == body);
        assert_eq!(dir.entries(), ["synced.bin"]);
    }
}

#[test]
fn overwrite_replaces_and_concurrent_uploads_per_client_are_capped() {
    for driver in DRIVERS {
        overwrite_replaces_and_concurrent_uploads_per_client_are_capped_on(driver);
    }
}

fn overwrite_replaces_and_concurrent_uploads_per_client_are_capped_on(driver: &str) {
    let dir = Dir::new("overwrite");
    let server = server(
        &dir.0,
        "overwrite = true\nmax_uploads_per_client = 1",
        "",
        driver,
    );
    assert_eq!(put(&server, "a.txt", b"one").status, 201);
    assert_eq!(put(&server, "a.txt", b"two").status, 201);
    assert_eq!(std::fs::read(dir.0.join("a.txt")).unwrap(), b"two");
    // One upload in progress: a second one from the same client gets 429.
    let mut first = server.connect();
    first
        .write_all(b"PUT /upload/b.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf")
        .unwrap();
    sleep(Duration::from_millis(200));
    let second = put(&server, "c.txt", b"x");
    assert_eq!(
        (second.status, second.header("retry-after")),
        (429, Some("1"))
    );
    first.write_all(b"-done!").unwrap();
    assert_eq!(read_response(&mut first).unwrap().status, 201);
    assert_eq!(put(&server, "c.txt", b"x").status, 201);
}

#[test]
fn no_failure_leaves_a_file_under_the_final_name_or_a_temporary_file() {
    for driver in DRIVERS {
        no_failure_leaves_a_file_under_the_final_name_or_a_temporary_file_on(driver);
    }
}

fn no_failure_leaves_a_file_under_the_final_name_or_a_temporary_file_on(driver: &str) {
    let dir = Dir::new("failures");
    let server = server(
        &dir.0,
        "",
        "upload_timeout = \"1s\"\nmin_upload_rate = 0",
        driver,
    );
    // Announced too large: 413 before a byte is read.
    let mut stream = server.connect();
    stream
        .write_all(b"PUT /upload/big HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 413);
    // Chunked, found too large mid-stream.
    let mut stream = server.connect();
    stream
        .write_all(b"PUT /upload/big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let chunk = vec![b'x'; 256 * 1024];
    let mut refused = None;
    for _ in 0..8 {
        let mut piece = format!("{:x}\r\n", chunk.len()).into_bytes();
        piece.extend_from_slice(&chunk);
        piece.extend_from_slice(b"\r\n");
        if stream.write_all(&piece).is_err() {
            break;
        }
    }
    if let Some(response) = read_response(&mut stream) {
        refused = Some(response.status);
    }
    assert_eq!(refused, Some(413));
    // Too slow: half a body, then nothing until upload_timeout.
    let mut stream = server.connect();
    stream
        .write_all(b"PUT /upload/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf")
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 408);
    // Aborted: the client leaves mid-body.
    let mut stream = server.connect();
    stream
        .write_all(b"PUT /upload/aborted HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    stream.write_all(&[0u8; 50_000]).unwrap();
    drop(stream);
    wait_for_entries(&dir, &[]);
}

#[test]
fn a_server_killed_mid_upload_leaves_nothing_after_its_next_start() {
    for driver in DRIVERS {
        a_server_killed_mid_upload_leaves_nothing_after_its_next_start_on(driver);
    }
}

fn a_server_killed_mid_upload_leaves_nothing_after_its_next_start_on(driver: &str) {
    let dir = Dir::new("kill");
    let server = server(&dir.0, "", "", driver);
    let mut stream: TcpStream = server.connect();
    stream
        .write_all(
            b"PUT /upload/interrupted HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n",
        )
        .unwrap();
    stream.write_all(&vec![1u8; 600_000]).unwrap();
    // The temporary file exists (and grows), under a hidden name only.
    let deadline = Instant::now() + PATIENCE;
    while !dir.entries().iter().any(|n| n.ends_with(".part")) {
        assert!(
            Instant::now() < deadline,
            "no temporary file: {:?}",
            dir.entries()
        );
        sleep(Duration::from_millis(20));
    }
    server.signal(libc::SIGKILL);
    assert!(is_closed(&mut stream));
    drop(server);
    assert!(!dir.entries().contains(&"interrupted".to_owned()));
    let server = self::server(&dir.0, "", "", driver);
    assert_eq!(
        dir.entries(),
        Vec::<String>::new(),
        "the next start cleans up"
    );
    assert_eq!(put(&server, "interrupted", b"now whole").status, 201);
}
