//! The `sink` route (telemetry in): every message becomes one JSON line in the sink file, a
//! kill -9 leaves only whole lines, a drain writes everything received, and rotation keeps
//! lines whole across files. Against the real binary with two workers.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::ws::{BINARY, TEXT, close_frame, connect, expect_close, frame};
use support::{DRIVERS, PATIENCE, Server};

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("ringstream-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sink_server(file: &Path, options: &str, driver: &str) -> Server {
    let config = format!(
        r#"
[[routes]]
path = "/ws/sink"
kind = "sink"
sink_file = "{}"
{options}

[[routes]]
path = "/stats"
kind = "stats"
"#,
        file.display()
    );
    Server::with_config(&config, &["--workers", "2", "--io-driver", driver])
}

/// Every line of the file, each checked to be whole JSON; the file must end with a whole line.
fn lines(file: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "a torn last line in {}",
        file.display()
    );
    whole_lines(&text)
}

/// The whole lines of `text`, each checked to be JSON (a read racing a write in progress may
/// see the end of a line not written yet; it is left out).
fn whole_lines(text: &str) -> Vec<serde_json::Value> {
    let end = text.rfind('\n').map_or(0, |i| i + 1);
    text[..end]
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect()
}

/// Polls until the file holds `count` lines.
fn wait_for_lines(file: &Path, count: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let found = whole_lines(&std::fs::read_to_string(file).unwrap_or_default());
        if found.len() >= count {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} lines",
            found.len()
        );
        sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_message_is_one_json_line_and_nothing_is_answered() {
    for driver in DRIVERS {
        every_message_is_one_json_line_and_nothing_is_answered_on(driver);
    }
}

fn every_message_is_one_json_line_and_nothing_is_answered_on(driver: &str) {
    let dir = TempDir::new("sink-lines");
    let file = dir.0.join("telemetry.jsonl");
    let server = sink_server(&file, "", driver);
    let mut client = connect(&server, "/ws/sink");
    const N: usize = 1000;
    let mut batch = Vec::new();
    for i in 0..N {
        let text = format!("{{\"n\":{i},\"note\":\"quote \\\" and\nnewline\"}}");
        batch.extend_from_slice(&frame(true, 0, TEXT, text.as_bytes()));
    }
    batch.extend_from_slice(&frame(true, 0, BINARY, &[0, 255, 10, 13]));
    client.write_all(&batch).unwrap();
    client.write_all(&close_frame(1000, "")).unwrap();
    // The only answer is the close handshake: no echo came before it.
    assert_eq!(expect_close(&mut client).0, 1000);
    let found = wait_for_lines(&file, N + 1);
    assert_eq!(found.len(), N + 1);
    for (i, line) in found[..N].iter().enumerate() {
        let expected = format!("{{\"n\":{i},\"note\":\"quote \\\" and\nnewline\"}}");
        assert_eq!(line["text"], expected.as_str());
        assert_eq!(line["peer"], "127.0.0.1");
        assert!(line["ts"].as_u64().unwrap() > 1_700_000_000_000);
    }
    assert_eq!(found[N]["binary"], "AP8KDQ==");
}

#[test]
fn kill_9_mid_stream_loses_no_whole_line_and_a_restart_leaves_only_whole_lines() {
    for driver in DRIVERS {
        kill_9_mid_stream_loses_no_whole_line_and_a_restart_leaves_only_whole_lines_on(driver);
    }
}

fn kill_9_mid_stream_loses_no_whole_line_and_a_restart_leaves_only_whole_lines_on(driver: &str) {
    let dir = TempDir::new("sink-kill");
    let file = dir.0.join("t.jsonl");
    let server = sink_server(&file, "", driver);
    let mut clients: Vec<TcpStream> = (0..4).map(|_| connect(&server, "/ws/sink")).collect();
    let writers: Vec<_> = clients
        .iter_mut()
        .map(|c| c.try_clone().unwrap())
        .enumerate()
        .map(|(id, mut client)| {
            std::thread::spawn(move || {
                let body = format!("{{\"client\":{id},\"pad\":\"{}\"}}", "x".repeat(300));
                let message = frame(true, 0, TEXT, body.as_bytes());
                let batch: Vec<u8> = message
                    .iter()
                    .copied()
                    .cycle()
                    .take(message.len() * 64)
                    .collect();
                // Until the server dies under it.
                while client.write_all(&batch).is_ok() {}
            })
        })
        .collect();
    // Let lines pile up, then kill the server mid-stream.
    wait_for_lines(&file, 2000);
    server.signal(libc::SIGKILL);
    for writer in writers {
        writer.join().unwrap();
    }
    drop(server);
    // Every line the server wrote is whole. The kernel may cut the write a SIGKILL lands in
    // at a page boundary, leaving a torn last line in the page cache; the next start cuts it.
    let text = std::fs::read_to_string(&file).unwrap();
    let before = whole_lines(&text);
    assert!(before.len() >= 2000);
    if !text.ends_with('\n') {
        println!(
            "the kill tore the last write: {} bytes after the last line",
            text.len() - text.rfind('\n').map_or(0, |i| i + 1)
        );
    }
    // A restart cuts any torn tail, keeps every whole line, and appends after them.
    let server = sink_server(&file, "", driver);
    assert_eq!(
        lines(&file).len(),
        before.len(),
        "only whole lines after the restart"
    );
    let mut client = connect(&server, "/ws/sink");
    client
        .write_all(&frame(true, 0, TEXT, b"after restart"))
        .unwrap();
    let after = wait_for_lines(&file, before.len() + 1);
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(after[before.len()]["text"], "after restart");
}

#[test]
fn a_drain_writes_every_line_received_and_rotation_keeps_lines_whole() {
    for driver in DRIVERS {
        a_drain_writes_every_line_received_and_rotation_keeps_lines_whole_on(driver);
    }
}

fn a_drain_writes_every_line_received_and_rotation_keeps_lines_whole_on(driver: &str) {
    let dir = TempDir::new("sink-rotate");
    let file = dir.0.join("r.jsonl");
    let mut server = sink_server(&file, "sink_max_bytes = \"16KiB\"\nsink_keep = 100", driver);
    let mut client = connect(&server, "/ws/sink");
    const N: usize = 2000;
    let mut batch = Vec::new();
    for i in 0..N {
        batch.extend_from_slice(&frame(true, 0, TEXT, format!("m{i}").as_bytes()));
    }
    client.write_all(&batch).unwrap();
    // Received: the route counted them all (so the lines are queued for the writer).
    let deadline = Instant::now() + PATIENCE;
    while !server_counted(&server, N) {
        assert!(
            Instant::now() < deadline,
            "the server never counted {N} messages"
        );
        sleep(Duration::from_millis(20));
    }
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(PATIENCE).code(), Some(0));
    // Oldest file first: r.jsonl.K .. r.jsonl.1, then r.jsonl.
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() > 2, "rotated: {files:?}");
    files.sort_by_key(|p| {
        let ext = p.extension().unwrap().to_str().unwrap().to_owned();
        std::cmp::Reverse(ext.parse::<u32>().unwrap_or(0))
    });
    let all: Vec<String> = files
        .iter()
        .flat_map(|f| {
            assert!(
                std::fs::metadata(f).unwrap().len() <= 16 * 1024,
                "{}",
                f.display()
            );
            lines(f)
        })
        .map(|line| line["text"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(all, expected);
}

/// Whether `/stats` shows `count` messages received on the sink route.
fn server_counted(server: &Server, count: usize) -> bool {
    let response = server.request(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if response.status != 200 {
        return false;
    }
    let stats: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    stats["routes"].as_array().unwrap().iter().any(|r| {
        r["path"] == "/ws/sink" && r["traffic"]["messages_in"].as_u64() >= Some(count as u64)
    })
}
