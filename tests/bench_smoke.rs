//! The load generator against the real server, briefly: every mode completes with no error,
//! so `ringstream bench` cannot rot unnoticed. (No rate is asserted: speed is for benchmarks.)
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::process::Command;

use support::Server;

fn bench(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ringstream"))
        .arg("bench")
        .args(args)
        .args(["--seconds", "0.5", "--warmup", "0.2"])
        .output()
        .unwrap();
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
    for size in ["32", "20000"] {
        let out = bench(&[
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
        ]);
        assert!(
            out.contains(" 0 errors") && out.contains("server CPU"),
            "{out}"
        );
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
