//! Pipelined echoes: many frames in one read are answered in order and byte for byte, whether
//! they leave from the read buffer in one vectored write (large ones) or copied into the write
//! batch (small ones, control answers), on both drivers.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::Write;
use std::thread;

use support::Server;
use support::ws::{BINARY, PING, PONG, TEXT, close_frame, connect, frame, read_frame};

const DRIVERS: [&str; 2] = ["uring", "poll"];

// A large `max_message_size` lets the read buffer grow past one frame of 512 KiB, so that more
// large frames arrive in one read than are ever written in place at once.
const CONFIG: &str = r#"
[limits]
max_message_size = "1MiB"

[[routes]]
path = "/ws/echo"
kind = "echo"
"#;

/// A payload of `len` bytes that tells message `n` from every other.
fn payload(n: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + n * 7) as u8).collect()
}

#[test]
fn pipelined_echoes_keep_their_order_and_bytes() {
    for driver in DRIVERS {
        let server = Server::with_config(CONFIG, &["--io-driver", driver]);
        let mut ws = connect(&server, "/ws/echo");
        // What is sent, in order, and what must come back for it.
        let mut expected: Vec<(u8, Vec<u8>)> = Vec::new();
        let mut batch = Vec::new();
        let mut push = |batch: &mut Vec<u8>, opcode: u8, body: Vec<u8>, answer: u8| {
            batch.extend(frame(true, 0, opcode, &body));
            expected.push((answer, body));
        };
        // One large message first: the read buffer grows to hold it.
        push(&mut batch, BINARY, payload(0, 512 * 1024), BINARY);
        // Then 150 frames of 4 KiB and more, a ping among them, small ones, and a text message.
        for n in 1..=150 {
            push(&mut batch, BINARY, payload(n, 4096 + n), BINARY);
            if n == 40 {
                push(&mut batch, PING, b"among them".to_vec(), PONG);
            }
        }
        for n in 151..=170 {
            push(&mut batch, BINARY, payload(n, 32), BINARY);
        }
        push(&mut batch, TEXT, b"and the end".to_vec(), TEXT);
        for n in 171..=180 {
            push(&mut batch, BINARY, payload(n, 8192), BINARY);
        }
        batch.extend(close_frame(1000, "done"));
        // Written from another thread: the echoes come back while the batch is still going out.
        let mut writer = ws.try_clone().unwrap();
        let sending = thread::spawn(move || writer.write_all(&batch).unwrap());
        for (i, (opcode, body)) in expected.iter().enumerate() {
            let answer = read_frame(&mut ws).unwrap();
            assert_eq!(answer.opcode, *opcode, "answer {i} on {driver}");
            assert!(
                answer.payload == *body,
                "answer {i} on {driver}: wrong bytes"
            );
        }
        assert_eq!(read_frame(&mut ws).unwrap().close(), (1000, "done".into()));
        sending.join().unwrap();
    }
}
