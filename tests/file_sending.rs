//! How the files route sends: every send path (`auto`, `sendfile`, `copy`, `zerocopy`) sends
//! the bytes of the file, `auto` reads what the page cache does not hold, a kept-alive
//! download never stops its worker, and a download nobody reads is cut after `send_timeout`;
//! on both drivers.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use support::files::{Tree, drop_from_page_cache, server};
use support::{DRIVERS, PATIENCE, Server, ask};

/// The route's send paths (`auto`: sendfile for cached pieces, reads for the others;
/// `sendfile`; `copy`: a read into a buffer then a send; `zerocopy`: the same with
/// `IORING_OP_SEND_ZC`).
const SEND_PATHS: [&str; 4] = ["auto", "sendfile", "copy", "zerocopy"];

#[test]
fn every_send_path_sends_the_bytes_of_the_file() {
    for driver in DRIVERS {
        for path in SEND_PATHS {
            every_send_path_sends_the_bytes_of_the_file_on(driver, path);
        }
    }
}

fn every_send_path_sends_the_bytes_of_the_file_on(driver: &str, path: &str) {
    let tree = Tree::new(&format!("send-{path}"));
    let content = tree.file("z.bin", 3 * 1024 * 1024 + 17);
    let server = server(
        &tree,
        &format!("send = \"{path}\"\nchunk_size = \"256KiB\""),
        driver,
    );
    let mut stream = server.connect();
    for _ in 0..2 {
        let whole = ask(&mut stream, "GET /files/z.bin HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            whole.status == 200 && whole.body == content,
            "{path} on {driver}: the whole file differs"
        );
    }
    let part = ask(
        &mut stream,
        "GET /files/z.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=1000-2000000\r\n\r\n",
    );
    assert!(
        part.body == content[1000..=2_000_000],
        "{path} on {driver}: the range differs"
    );
}

/// A piece whose pages are not in the page cache is read through io_uring (so the worker never
/// waits for the disk inside `sendfile`) and counted; once read, the file is cached and its
/// pieces go out by `sendfile` again.
#[test]
fn auto_reads_the_pieces_the_page_cache_does_not_hold() {
    for driver in DRIVERS {
        let tree = Tree::new(&format!("cold-{driver}"));
        let content = tree.file("cold.bin", 9 * 1024 * 1024 + 5);
        if !drop_from_page_cache(&tree.root().join("cold.bin")) {
            eprintln!("skipped: the temporary directory's file system keeps its pages (tmpfs)");
            return;
        }
        let config = format!(
            "[[routes]]\npath = \"/stats\"\nkind = \"stats\"\n\n\
             [[routes]]\npath = \"/files/\"\nkind = \"files\"\nroot = \"{}\"\nsend = \"auto\"\n",
            tree.root().display()
        );
        let server = Server::with_config(&config, &["--io-driver", driver]);
        let cold_pieces = || server.stats()["files"]["cold_pieces"].as_u64().unwrap();
        let mut stream = server.connect();
        let cold = ask(
            &mut stream,
            "GET /files/cold.bin HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        assert!(cold.status == 200 && cold.body == content, "{driver}");
        let after_cold = cold_pieces();
        assert!(after_cold >= 1, "{driver}: no piece was read as cold");
        let warm = ask(
            &mut stream,
            "GET /files/cold.bin HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        assert!(warm.status == 200 && warm.body == content, "{driver}");
        assert_eq!(
            cold_pieces(),
            after_cold,
            "{driver}: a cached file was read"
        );
    }
}

/// A download larger than a socket buffer, on a connection kept alive afterwards, must leave
/// its worker free: once a send path left the socket blocking, and the poll driver's next
/// `recv` on it stopped the only worker for everyone.
#[test]
fn a_kept_alive_download_leaves_its_worker_serving_others() {
    for driver in DRIVERS {
        for path in SEND_PATHS {
            a_kept_alive_download_leaves_its_worker_serving_others_on(driver, path);
        }
    }
}

fn a_kept_alive_download_leaves_its_worker_serving_others_on(driver: &str, path: &str) {
    let tree = Tree::new(&format!("stall-{path}"));
    let content = tree.file("big.bin", 300_000);
    let config = format!(
        "[[routes]]\npath = \"/health\"\nkind = \"health\"\n\n\
         [[routes]]\npath = \"/files/\"\nkind = \"files\"\nroot = \"{}\"\nsend = \"{path}\"\n",
        tree.root().display()
    );
    let server = Server::with_config(&config, &["--workers", "1", "--io-driver", driver]);
    let mut downloader = server.connect();
    for _ in 0..2 {
        let whole = ask(
            &mut downloader,
            "GET /files/big.bin HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        assert!(whole.status == 200 && whole.body == content);
    }
    // The downloader keeps its connection open; another client asks the same worker.
    let mut other = server.connect();
    other
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let health = ask(&mut other, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(health.status, 200, "{path} on {driver}");
    // And the downloader's connection still works.
    let again = ask(
        &mut downloader,
        "GET /files/big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\n",
    );
    assert!(again.status == 206 && again.body == content[..10]);
}

#[test]
fn a_download_nobody_reads_is_cut_after_send_timeout() {
    for driver in DRIVERS {
        let tree = Tree::new(&format!("stalled-{driver}"));
        tree.file("big.bin", 16 * 1024 * 1024);
        let server = server(&tree, "[routes.limits]\nsend_timeout = \"1s\"", driver);
        // A small receive buffer, and nothing read: the socket fills, the send stalls.
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(16 * 1024).unwrap();
        socket.connect(&server.addr.into()).unwrap();
        let mut stream: TcpStream = socket.into();
        stream
            .write_all(b"GET /files/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_secs(3));
        // The server gave up: what arrived is less than the file, then the stream ends.
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut received = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        let started = Instant::now();
        loop {
            match std::io::Read::read(&mut stream, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => received += n,
            }
            assert!(started.elapsed() < PATIENCE, "the download was never cut");
        }
        assert!(
            received < 16 * 1024 * 1024,
            "{received} bytes: the whole file on {driver}"
        );
    }
}
