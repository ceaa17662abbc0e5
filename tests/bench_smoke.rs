//! The load generator against the real server, briefly: every mode completes with no error,
//! so `ringstream bench` cannot rot unnoticed. (No rate is asserted: speed is for benchmarks.)
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::Arc;

use support::{Server, TempFile};

/// `ringstream bench ARGS` run briefly, to completion.
fn bench_output(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringstream"))
        .arg("bench")
        .args(args)
        .args(["--seconds", "0.5", "--warmup", "0.2"])
        .output()
        .unwrap()
}

fn bench(args: &[&str]) -> String {
    let output = bench_output(args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "bench {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn echo_and_handshake_loads_complete_without_errors() {
    let server = Server::start(&[]);
    let url = format!("ws://{}/ws/echo", server.addr);
    let pid = server.pid().to_string();
    // Binary messages, and text messages (valid UTF-8, echoed as text frames).
    for (size, payload) in [("32", ""), ("20000", ""), ("5", "text"), ("600", "text")] {
        let mut args = vec![
            "echo",
            "--url",
            &url,
            "--size",
            size,
            "--connections",
            "4",
            "--depth",
            "2",
            "--server-pid",
            &pid,
        ];
        if payload == "text" {
            args.push("--text");
        }
        let out = bench(&args);
        assert!(
            out.contains(" 0 errors") && out.contains("server CPU"),
            "{out}"
        );
        assert_eq!(out.contains(" B text, depth 2"), payload == "text", "{out}");
    }
    let out = bench(&["handshake", "--url", &url, "--connections", "2", "--json"]);
    assert!(out.contains("\"errors\":0"), "{out}");
}

#[test]
fn the_echo_load_answers_the_servers_heartbeat_pings() {
    // Pings every 100 ms arrive between echoes; the client must answer them, not count them
    // as wrong echoes.
    let server = Server::with_config(
        "[limits]\nheartbeat_interval = \"100ms\"\n\n[[routes]]\npath = \"/ws/echo\"\nkind = \"echo\"\n",
        &[],
    );
    let url = format!("ws://{}/ws/echo", server.addr);
    let out = bench(&[
        "echo",
        "--url",
        &url,
        "--size",
        "512",
        "--connections",
        "2",
        "--depth",
        "4",
    ]);
    assert!(out.contains(" 0 errors"), "{out}");
}

#[test]
fn the_open_loop_echo_keeps_its_rate_through_heartbeat_pings() {
    let server = Server::with_config(
        "[limits]\nheartbeat_interval = \"100ms\"\n\n[[routes]]\npath = \"/ws/echo\"\nkind = \"echo\"\n",
        &[],
    );
    let url = format!("ws://{}/ws/echo", server.addr);
    let pid = server.pid().to_string();
    for text in [false, true] {
        let mut args = vec![
            "echo",
            "--url",
            &url,
            "--connections",
            "4",
            "--rate",
            "400",
            "--server-pid",
            &pid,
            "--json",
        ];
        if text {
            args.push("--text");
        }
        let out = bench(&args);
        assert_eq!(json_number(&out, "errors"), 0, "{out}");
        // 400/s for 0.5 s: never more than the schedule's 200 (and the window's edges).
        let ops = json_number(&out, "ops");
        assert!(ops > 0 && ops <= 250, "{out}");
        assert!(out.contains("at 400/s"), "{out}");
    }
}

#[test]
fn raw_tcp_load_completes_against_its_server() {
    let mut server = Command::new(env!("CARGO_BIN_EXE_ringstream"))
        .args(["bench", "raw-tcp-server"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let out = bench(&["raw-tcp", "--addr", &addr, "--connections", "2"]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(out.contains(" 0 errors"), "{out}");
}

/// The number after `"key":` in the bench's one-line JSON.
fn json_number(out: &str, key: &str) -> u64 {
    let pattern = format!("\"{key}\":");
    let at = out
        .find(&pattern)
        .unwrap_or_else(|| panic!("no {key} in {out}"))
        + pattern.len();
    let digits: String = out[at..].chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {out}"))
}

#[test]
fn the_broadcast_load_delivers_every_message_in_order() {
    // Pings every 100 ms reach subscribers and publishers between messages: both must answer
    // them and not count them as messages.
    let server = Server::with_config(
        "[limits]\nheartbeat_interval = \"100ms\"\n\n[[routes]]\npath = \"/ws/broadcast/{topic}\"\nkind = \"broadcast\"\n",
        &[],
    );
    let url = format!("ws://{}/ws/broadcast/smoke", server.addr);
    let pid = server.pid().to_string();
    let out = bench(&[
        "broadcast",
        "--url",
        &url,
        "--subscribers",
        "20",
        "--publishers",
        "2",
        "--window",
        "16",
        "--server-pid",
        &pid,
        "--json",
    ]);
    assert_eq!(json_number(&out, "errors"), 0, "{out}");
    assert_eq!(json_number(&out, "subscribers"), 20, "{out}");
    assert!(json_number(&out, "ops") > 0, "{out}");
    assert!(json_number(&out, "published") > 0, "{out}");
}

#[test]
fn the_broadcast_load_inflates_what_comes_compressed() {
    let config = "[[routes]]\npath = \"/ws/broadcast/{topic}\"\nkind = \"broadcast\"\n\
                  echo_to_sender = true\n[routes.limits]\npermessage_deflate = true\n";
    let server = Server::with_config(config, &[]);
    let url = format!("ws://{}/ws/broadcast/smoke", server.addr);
    let args = [
        "broadcast",
        "--url",
        &url,
        "--subscribers",
        "10",
        "--size",
        "600",
        "--deflate",
        "--json",
    ];
    let out = bench(&args);
    assert_eq!(json_number(&out, "errors"), 0, "{out}");
    assert!(json_number(&out, "ops") > 0, "{out}");
    // A server that does not agree the extension fails the run, saying so.
    let plain = Server::start(&[]);
    let url = format!("ws://{}/ws/broadcast/smoke", plain.addr);
    let refused = bench_output(&[
        "broadcast",
        "--url",
        &url,
        "--subscribers",
        "2",
        "--deflate",
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("did not agree permessage-deflate"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[test]
fn the_broadcast_load_puts_subscribers_on_another_address() {
    // One server stands for both nodes: the probe arrives, every delivery is checked, and
    // the CPU of both "nodes" (the same PID twice) is reported.
    let server = Server::start(&[]);
    let url = format!("ws://{}/ws/broadcast/across", server.addr);
    let pid = server.pid().to_string();
    let out = bench(&[
        "broadcast",
        "--url",
        &url,
        "--subscribe-url",
        &url,
        "--subscribers",
        "10",
        "--publishers",
        "2",
        "--window",
        "8",
        "--server-pid",
        &pid,
        "--server-pid",
        &pid,
        "--json",
    ]);
    assert_eq!(json_number(&out, "errors"), 0, "{out}");
    assert!(json_number(&out, "ops") > 0, "{out}");
    assert!(out.contains("subscribers on another address"), "{out}");
    assert!(out.contains("\"broker_cpu_us_per_op\":null"), "{out}");
}

/// The byte `bench make-file` writes at `offset`: each 8-byte word is its own offset (LE).
fn pattern_byte(offset: usize) -> u8 {
    ((offset & !7) as u64).to_le_bytes()[offset & 7]
}

#[test]
fn make_file_writes_each_words_offset() {
    let file = TempFile::new("bin", b"stale content to be truncated");
    let path = file.path.to_str().unwrap();
    for (size, bytes) in [("100003", 100_003), ("1KiB", 1024), ("0", 0)] {
        let output = Command::new(env!("CARGO_BIN_EXE_ringstream"))
            .args(["bench", "make-file", "--path", path, "--size", size])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let data = std::fs::read(&file.path).unwrap();
        assert_eq!(data.len(), bytes, "--size {size}");
        if let Some(at) = (0..data.len()).find(|&i| data[i] != pattern_byte(i)) {
            panic!("--size {size}: byte {at} is {:#x}", data[at]);
        }
    }
}

/// A minimal keep-alive HTTP/1.1 server for the download load (no nginx in cargo tests):
/// every GET answers `body` with 200, or with `Range: bytes=A-B` that range with 206.
fn serve_file(body: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let body = Arc::new(body);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let body = Arc::clone(&body);
            std::thread::spawn(move || serve_connection(stream, &body));
        }
    });
    addr
}

fn serve_connection(mut stream: TcpStream, body: &[u8]) {
    let (mut buf, mut chunk) = (Vec::new(), [0; 4096]);
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let range = head
            .lines()
            .find_map(|line| line.strip_prefix("Range: bytes="))
            .and_then(|range| range.split_once('-'))
            .map(|(a, b)| (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()));
        let (status, content_range, part) = match range {
            Some((a, b)) => (
                "206 Partial Content",
                format!("Content-Range: bytes {a}-{b}/{}\r\n", body.len()),
                &body[a..=b],
            ),
            None => ("200 OK", String::new(), body),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{content_range}\r\n",
            part.len()
        );
        if stream.write_all(head.as_bytes()).is_err() || stream.write_all(part).is_err() {
            return;
        }
    }
}

const FILE_SIZE: usize = 100_003;

fn pattern_file() -> Vec<u8> {
    (0..FILE_SIZE).map(pattern_byte).collect()
}

#[test]
fn the_download_load_checks_whole_files_and_ranges() {
    let addr = serve_file(pattern_file());
    let url = format!("http://{addr}/files/pattern.bin");
    let size = FILE_SIZE.to_string();
    let common = [
        "download",
        "--url",
        &url,
        "--connections",
        "2",
        "--expect-size",
        &size,
        "--json",
    ];
    let out = bench(
        &[
            &common[..],
            &["--check-pattern", "words", "--rate-check", "1MiB"],
        ]
        .concat(),
    );
    assert_eq!(json_number(&out, "errors"), 0, "{out}");
    assert!(json_number(&out, "ops") > 0, "{out}");
    // A response under way when the window opened counts only its bytes inside it: one per
    // connection may be short.
    assert!(
        json_number(&out, "bytes") >= json_number(&out, "ops").saturating_sub(2) * FILE_SIZE as u64,
        "{out}"
    );
    assert!(out.contains("\"rate_ratio\":"), "{out}");
    for range in ["4093-70000", "0-0", "100000-100002"] {
        let out = bench(
            &[
                &common[..],
                &[
                    "--check-pattern",
                    "pages",
                    "--range",
                    range,
                    "--io-driver",
                    "uring",
                ],
            ]
            .concat(),
        );
        assert_eq!(json_number(&out, "errors"), 0, "{range}: {out}");
        assert!(json_number(&out, "ops") > 0, "{range}: {out}");
    }
}

#[test]
fn the_download_load_fails_on_a_wrong_byte_or_length() {
    let mut corrupt = pattern_file();
    corrupt[77_777] ^= 0x10;
    let addr = serve_file(corrupt);
    let url = format!("http://{addr}/files/pattern.bin");
    let size = FILE_SIZE.to_string();
    let args = ["download", "--url", &url, "--expect-size", &size];
    let output = bench_output(&[&args[..], &["--check-pattern", "words"]].concat());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("first error: byte 77777 of the file"),
        "{stderr}"
    );
    // The same body unchecked passes; a wrong --expect-size fails.
    assert!(bench_output(&args).status.success());
    let output = bench_output(&["download", "--url", &url, "--expect-size", "100004"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("Content-Length 100003"),
        "{stderr}"
    );
}
