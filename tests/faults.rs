//! Faults, with nothing lost: a disk that fills up under an upload and under a sink file, a
//! client that resets mid-response, one that half-closes, one that trickles a frame, and a
//! server killed mid-traffic then started again. Each on both drivers, bounded in time,
//! loopback only.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::ws::{self, close_frame, expect_close, frame};
use support::{DRIVERS, PATIENCE, Server, is_closed, read_response};

/// A directory for one test, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("ringstream-faults-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn health(server: &Server) -> u16 {
    server
        .request(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .status
}

/// `/health` and `/stats`, beside the routes a test is about.
const HEALTH: &str = "[[routes]]\npath = \"/health\"\nkind = \"health\"\n\n\
                      [[routes]]\npath = \"/stats\"\nkind = \"stats\"\n\n";

/// Every line of `text` is one whole JSON object, and the text ends with a newline.
fn assert_whole_lines(text: &str) -> usize {
    assert!(text.is_empty() || text.ends_with('\n'), "a torn last line");
    for line in text.lines() {
        let parsed: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
            panic!("not a whole line ({e}): {line:?}");
        });
        assert!(parsed["ts"].is_u64(), "{line}");
    }
    text.lines().count()
}

#[test]
fn a_full_disk_refuses_an_upload_with_507_deletes_its_file_and_keeps_serving() {
    for driver in DRIVERS {
        let dir = Dir::new(&format!("upload-{driver}"));
        let config = format!(
            "{HEALTH}[[routes]]\npath = \"/upload/\"\nkind = \"upload\"\nupload_dir = \"{}\"\n\
             max_upload_size = \"8MiB\"\n",
            dir.0.display()
        );
        let args = ["--io-driver", driver, "--workers", "1"];
        let Some(server) = Server::with_config_on_small_disk(&config, &args, &dir.0, 1 << 20)
        else {
            return;
        };
        let seen = server.path_as_seen(&dir.0);
        // 3 MiB into a 1 MiB file system.
        let body = vec![b'x'; 3 << 20];
        let mut stream = server.connect();
        let head = format!(
            "PUT /upload/big.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        // The server answers as soon as the disk is full; what it does not read is dropped.
        let _ = stream.write_all(&body);
        let answer = read_response(&mut stream).expect("an answer");
        assert_eq!(answer.status, 507, "on {driver}");
        assert_eq!(answer.header("connection"), Some("close"));
        // The temporary file is gone, nothing carries the final name, and the server serves.
        let deadline = Instant::now() + PATIENCE;
        while !entries(&seen).is_empty() {
            assert!(
                Instant::now() < deadline,
                "left behind: {:?}",
                entries(&seen)
            );
            sleep(Duration::from_millis(20));
        }
        assert_eq!(health(&server), 200);
        let small = server.request(
            b"PUT /upload/small.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert_eq!(small.status, 201);
        assert_eq!(std::fs::read(seen.join("small.txt")).unwrap(), b"hello");
        let refusals = &server.stats()["http_refusals"];
        assert_eq!(refusals["507"], 1, "{refusals}");
    }
}

#[test]
fn a_full_disk_under_a_sink_file_drops_whole_lines_counted_and_never_tears_one() {
    for driver in DRIVERS {
        let dir = Dir::new(&format!("sink-{driver}"));
        let path = dir.0.join("lines.jsonl");
        let config = format!(
            "{HEALTH}[[routes]]\npath = \"/ws/sink\"\nkind = \"sink\"\nsink_file = \"{}\"\n\
             sink_max_bytes = 0\n",
            path.display()
        );
        let args = ["--io-driver", driver, "--workers", "1"];
        let Some(server) = Server::with_config_on_small_disk(&config, &args, &dir.0, 256 << 10)
        else {
            return;
        };
        // 2 MiB of lines into a 256 KiB file system.
        let mut sink = ws::connect(&server, "/ws/sink");
        let message = vec![b'm'; 1000];
        for _ in 0..2048 {
            sink.write_all(&frame(true, 0, 0x1, &message)).unwrap();
        }
        // Every line is either written or counted as dropped.
        let count = |s: &serde_json::Value, key: &str| s["sinks"][0][key].as_u64().unwrap_or(0);
        let stats =
            server.wait_for_stats(|s| count(s, "lines") + count(s, "dropped_lines") == 2048);
        let (written, dropped) = (count(&stats, "lines"), count(&stats, "dropped_lines"));
        assert!(dropped > 0, "{stats}");
        let text = std::fs::read_to_string(server.path_as_seen(&path)).unwrap();
        assert_eq!(assert_whole_lines(&text) as u64, written);
        // The sink connection and the server go on.
        sink.write_all(&close_frame(1000, "")).unwrap();
        assert_eq!(expect_close(&mut sink).0, 1000);
        assert_eq!(health(&server), 200);
    }
}

/// The server's open connections, the `/stats` request included.
fn active(server: &Server) -> u64 {
    server.stats()["connections"]["active"].as_u64().unwrap()
}

#[test]
fn a_client_that_resets_mid_download_costs_nothing_after() {
    for driver in DRIVERS {
        let dir = Dir::new(&format!("reset-{driver}"));
        std::fs::write(dir.0.join("big.bin"), vec![7u8; 32 << 20]).unwrap();
        let config = format!(
            "{HEALTH}[[routes]]\npath = \"/files/\"\nkind = \"files\"\nroot = \"{}\"\n",
            dir.0.display()
        );
        let server = Server::with_config(&config, &["--io-driver", driver, "--workers", "1"]);
        for _ in 0..8 {
            let mut stream = server.connect();
            stream
                .write_all(b"GET /files/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut some = vec![0u8; 64 << 10];
            stream.read_exact(&mut some).unwrap();
            // SO_LINGER 0: the close is a reset, with most of the body unsent.
            socket2::SockRef::from(&stream)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        let deadline = Instant::now() + PATIENCE;
        while active(&server) != 1 {
            assert!(
                Instant::now() < deadline,
                "connections left open on {driver}"
            );
            sleep(Duration::from_millis(20));
        }
        assert_eq!(health(&server), 200);
    }
}

#[test]
fn a_client_that_half_closes_after_its_request_gets_its_answer() {
    for driver in DRIVERS {
        let server = Server::with_config(HEALTH, &["--io-driver", driver]);
        let mut stream = server.connect();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let answer = read_response(&mut stream).expect("the answer to a half-closed request");
        assert_eq!(answer.status, 200, "on {driver}");
        assert!(
            is_closed(&mut stream),
            "the server closes after the client's FIN"
        );
    }
}

#[test]
fn a_websocket_frame_trickled_a_byte_at_a_time_is_closed_as_idle() {
    for driver in DRIVERS {
        let config = "[[routes]]\npath = \"/ws/echo\"\nkind = \"echo\"\n\
                      [routes.limits]\ntimeout = \"1s\"\nheartbeat_interval = \"10s\"\n";
        let server = Server::with_config(config, &["--io-driver", driver]);
        let mut stream = ws::connect(&server, "/ws/echo");
        let whole = frame(true, 0, 0x2, &[9u8; 100]);
        let started = Instant::now();
        let mut sent = 0;
        // A byte every 100 ms: bytes keep arriving, a frame never completes.
        let closed = loop {
            if stream.write_all(&whole[sent..=sent]).is_err() {
                break true;
            }
            sent += 1;
            if sent == whole.len() - 1 || started.elapsed() > PATIENCE {
                break false;
            }
            sleep(Duration::from_millis(100));
            let mut peek = [0u8; 1];
            stream.set_nonblocking(true).unwrap();
            let waiting = matches!(stream.peek(&mut peek), Ok(n) if n > 0);
            stream.set_nonblocking(false).unwrap();
            if waiting {
                break true;
            }
        };
        assert!(closed, "a trickled frame kept the connection on {driver}");
        assert_eq!(
            expect_close(&mut stream),
            (1000, "idle timeout".to_owned()),
            "on {driver}"
        );
        assert!(started.elapsed() < PATIENCE);
        assert!(sent < whole.len() - 1);
    }
}

#[test]
fn a_server_killed_mid_traffic_leaves_whole_lines_and_no_partial_upload_after_its_restart() {
    for driver in DRIVERS {
        let dir = Dir::new(&format!("kill-{driver}"));
        let uploads = dir.0.join("uploads");
        std::fs::create_dir_all(&uploads).unwrap();
        let lines = dir.0.join("lines.jsonl");
        let config = format!(
            "{HEALTH}[[routes]]\npath = \"/ws/sink\"\nkind = \"sink\"\nsink_file = \"{}\"\n\n\
             [[routes]]\npath = \"/upload/\"\nkind = \"upload\"\nupload_dir = \"{}\"\n",
            lines.display(),
            uploads.display()
        );
        let args = ["--io-driver", driver, "--workers", "2"];
        let mut server = Server::with_config(&config, &args);
        // Lines stream in on two connections, an upload is half sent.
        let mut upload = server.connect();
        upload
            .write_all(
                b"PUT /upload/half.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000\r\n\r\n",
            )
            .unwrap();
        upload.write_all(&vec![1u8; 1_000_000]).unwrap();
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let mut sink = ws::connect(&server, "/ws/sink");
                std::thread::spawn(move || {
                    let message = vec![b'k'; 300];
                    let started = Instant::now();
                    while started.elapsed() < PATIENCE {
                        if sink.write_all(&frame(true, 0, 0x1, &message)).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        let deadline = Instant::now() + PATIENCE;
        while std::fs::metadata(&lines).map_or(0, |m| m.len()) < 1 << 20 {
            assert!(Instant::now() < deadline, "no lines written");
            sleep(Duration::from_millis(10));
        }
        server.signal(libc::SIGKILL);
        server.wait_exit(PATIENCE);
        for writer in writers {
            writer.join().unwrap();
        }
        assert!(!entries(&uploads).contains(&"half.bin".to_owned()));
        // Started again on the same files: a torn last line is cut, a temporary file deleted.
        let server = Server::with_config(&config, &args);
        assert!(entries(&uploads).is_empty(), "{:?}", entries(&uploads));
        let text = std::fs::read_to_string(&lines).unwrap();
        assert!(assert_whole_lines(&text) > 0);
        assert_eq!(health(&server), 200);
    }
}
