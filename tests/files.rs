//! The `files` route against the real binary: whole files and random ranges compared byte
//! for byte, validators (304), ranges (206, 416, If-Range), every traversal spelling answered
//! 404, resume, and the bandwidth caps (per connection, and one budget shared by a client's
//! connections).
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use support::files::{Tree, server};
use support::{
    DRIVERS, PATIENCE, Response, Server, ask, connect_from, read_head_response, read_response,
};

/// A GET of `target` with the header lines `headers`, on a fresh connection.
fn get(server: &Server, target: &str, headers: &str) -> Response {
    let mut stream = server.connect();
    ask(
        &mut stream,
        format!("GET {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n"),
    )
}

#[test]
fn whole_files_and_random_ranges_are_the_bytes_of_the_file() {
    for driver in DRIVERS {
        whole_files_and_random_ranges_are_the_bytes_of_the_file_on(driver);
    }
}

fn whole_files_and_random_ranges_are_the_bytes_of_the_file_on(driver: &str) {
    let tree = Tree::new("ranges");
    let content = tree.file("big.bin", 64 * 1024 * 1024);
    let server = server(&tree, "", driver);
    let mut stream = server.connect();
    let whole = ask(
        &mut stream,
        "GET /files/big.bin HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        whole.header("content-type"),
        Some("application/octet-stream")
    );
    assert!(whole.body == content, "the whole file differs");
    // Random ranges on the same keep-alive connection (a fixed seed: reproducible).
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = |bound: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % bound
    };
    let size = content.len() as u64;
    for _ in 0..40 {
        let start = next(size);
        let end = (start + next(2 * 1024 * 1024)).min(size - 1);
        let response = ask(
            &mut stream,
            format!("GET /files/big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes={start}-{end}\r\n\r\n"),
        );
        assert_eq!(response.status, 206);
        let expected_range = format!("bytes {start}-{end}/{size}");
        assert_eq!(
            response.header("content-range"),
            Some(expected_range.as_str())
        );
        assert!(
            response.body == content[start as usize..=end as usize],
            "range {start}-{end} differs"
        );
    }
    let suffix = ask(
        &mut stream,
        "GET /files/big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=-1000\r\n\r\n",
    );
    assert!(suffix.body == content[content.len() - 1000..]);
}

#[test]
fn validators_ranges_and_their_edge_cases() {
    for driver in DRIVERS {
        validators_ranges_and_their_edge_cases_on(driver);
    }
}

fn validators_ranges_and_their_edge_cases_on(driver: &str) {
    let tree = Tree::new("validators");
    let content = tree.file("f.txt", 10_000);
    let server = server(&tree, "", driver);
    let first = get(&server, "/files/f.txt", "");
    assert_eq!(first.status, 200);
    assert_eq!(first.header("content-type"), Some("text/plain"));
    let etag = first.header("etag").unwrap().to_owned();
    let modified = first.header("last-modified").unwrap().to_owned();

    let cached = get(
        &server,
        "/files/f.txt",
        &format!("If-None-Match: {etag}\r\n"),
    );
    assert_eq!((cached.status, cached.body.len()), (304, 0));
    assert_eq!(cached.header("etag"), Some(etag.as_str()));
    let cached = get(
        &server,
        "/files/f.txt",
        &format!("If-Modified-Since: {modified}\r\n"),
    );
    assert_eq!(cached.status, 304);
    // If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
    let stale = get(
        &server,
        "/files/f.txt",
        &format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {modified}\r\n"),
    );
    assert_eq!(stale.status, 200);

    let unsatisfiable = get(&server, "/files/f.txt", "Range: bytes=10000-\r\n");
    assert_eq!(unsatisfiable.status, 416);
    assert_eq!(unsatisfiable.header("content-range"), Some("bytes */10000"));
    // If-Range with the current tag: the range; with another: the whole file.
    let fresh = get(
        &server,
        "/files/f.txt",
        &format!("Range: bytes=5-9\r\nIf-Range: {etag}\r\n"),
    );
    assert_eq!((fresh.status, &fresh.body[..]), (206, &content[5..10]));
    let changed = get(
        &server,
        "/files/f.txt",
        "Range: bytes=5-9\r\nIf-Range: \"old\"\r\n",
    );
    assert_eq!((changed.status, changed.body.len()), (200, 10_000));
    // Two ranges where one is honoured, or a header that does not parse: the whole file.
    let two = get(&server, "/files/f.txt", "Range: bytes=0-1,5-6\r\n");
    assert_eq!((two.status, two.body.len()), (200, 10_000));
    let junk = get(&server, "/files/f.txt", "Range: lines=1-2\r\n");
    assert_eq!(junk.status, 200);

    let mut stream = server.connect();
    stream
        .write_all(b"HEAD /files/f.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let head = read_head_response(&mut stream).unwrap();
    assert_eq!(
        (head.status, head.header("content-length")),
        (200, Some("10000"))
    );
    let attachment = get(&server, "/files/f.txt?download=report%202026.txt", "");
    assert_eq!(
        attachment.header("content-disposition"),
        Some("attachment; filename=\"report 2026.txt\"")
    );
    let post = ask(
        &mut server.connect(),
        "POST /files/f.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(
        (post.status, post.header("allow")),
        (405, Some("GET, HEAD"))
    );
}

#[test]
fn nothing_outside_the_root_and_nothing_hidden_is_ever_served() {
    for driver in DRIVERS {
        nothing_outside_the_root_and_nothing_hidden_is_ever_served_on(driver);
    }
}

fn nothing_outside_the_root_and_nothing_hidden_is_ever_served_on(driver: &str) {
    let tree = Tree::new("traversal");
    tree.file("sub/inside.txt", 10);
    std::fs::write(tree.0.join("secret.txt"), b"outside the root").unwrap();
    std::fs::write(tree.root().join(".env"), b"hidden").unwrap();
    let link = |target: &Path, name: &str| {
        std::os::unix::fs::symlink(target, tree.root().join(name)).unwrap()
    };
    link(&tree.0.join("secret.txt"), "absolute-out");
    link(Path::new("../secret.txt"), "relative-out");
    link(Path::new("sub/inside.txt"), "inner-link");
    link(Path::new(".."), "up");
    let server = server(&tree, "", driver);
    assert_eq!(
        get(&server, "/files/inner-link", "").status,
        200,
        "a link inside the root"
    );
    for target in [
        "/files/../secret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/%2E%2E/secret.txt",
        "/files/sub/..%2f..%2fsecret.txt",
        "/files/sub/%2e%2e/%2e%2e/secret.txt",
        "/files/..%5csecret.txt",
        "/files/absolute-out",
        "/files/relative-out",
        "/files/up/secret.txt",
        "/files/.env",
        "/files/%2eenv",
        "/files/sub/inside.txt%00.png",
        "/files/sub",
        "/files/sub/",
        "/files/",
        "/files//etc/passwd",
        "/files/nope",
        "/files/%zz",
    ] {
        let response = get(&server, target, "");
        assert_eq!(response.status, 404, "{target}");
        assert!(
            !String::from_utf8_lossy(&response.body).contains("outside"),
            "{target}"
        );
    }
}

#[test]
fn an_interrupted_download_resumes_into_an_identical_file() {
    for driver in DRIVERS {
        an_interrupted_download_resumes_into_an_identical_file_on(driver);
    }
}

fn an_interrupted_download_resumes_into_an_identical_file_on(driver: &str) {
    let tree = Tree::new("resume");
    let content = tree.file("movie.bin", 8 * 1024 * 1024);
    let server = server(&tree, "", driver);
    let out = tree.0.join("partial.bin");
    // The first 3 MiB, then the connection drops.
    let first = get(&server, "/files/movie.bin", "Range: bytes=0-3145727\r\n");
    std::fs::write(&out, &first.body).unwrap();
    let url = format!("http://{}/files/movie.bin", server.addr);
    let curl = std::process::Command::new("curl")
        .args(["-s", "-f", "-C", "-", "-o"])
        .arg(&out)
        .arg(&url)
        .status();
    match curl {
        Ok(status) => assert!(status.success(), "curl -C - failed"),
        Err(_) => {
            // No curl here: resume the way it does.
            let etag = first.header("etag").unwrap();
            let rest = get(
                &server,
                "/files/movie.bin",
                &format!("Range: bytes=3145728-\r\nIf-Range: {etag}\r\n"),
            );
            assert_eq!(rest.status, 206);
            let mut file = std::fs::OpenOptions::new().append(true).open(&out).unwrap();
            file.write_all(&rest.body).unwrap();
        }
    }
    assert!(
        std::fs::read(&out).unwrap() == content,
        "the resumed file differs"
    );
}

/// Downloads `target` on `stream`; returns the body length and the seconds it took.
fn timed_download(mut stream: TcpStream, target: &str) -> (usize, f64) {
    let started = Instant::now();
    let response = ask(
        &mut stream,
        format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n"),
    );
    assert_eq!(response.status, 200);
    (response.body.len(), started.elapsed().as_secs_f64())
}

#[test]
fn bandwidth_caps_hold_per_connection_and_per_client_across_connections() {
    for driver in DRIVERS {
        bandwidth_caps_hold_per_connection_and_per_client_across_connections_on(driver);
    }
}

fn bandwidth_caps_hold_per_connection_and_per_client_across_connections_on(driver: &str) {
    let tree = Tree::new("caps");
    tree.file("four.bin", 4 * 1024 * 1024);
    let mib = 1024.0 * 1024.0;
    let server = server(
        &tree,
        "[routes.limits]\nrate_limit_bandwidth = \"2MiB\"\nclient_bandwidth = \"3MiB\"\nrate_after = \"512KiB\"",
        driver,
    );
    // One connection: 512 KiB at full speed, then 3.5 MiB at 2 MiB/s.
    let (len, seconds) = timed_download(connect_from(&server, 2), "/files/four.bin");
    let rate = (len as f64 - 512.0 * 1024.0) / mib / seconds;
    println!(
        "one connection: {len} bytes in {seconds:.2} s, {rate:.2} MiB/s after rate_after (cap 2)"
    );
    assert!(
        rate <= 2.0 * 1.05,
        "the per-connection cap did not hold: {rate:.2} MiB/s"
    );
    // Two connections of one client share 3 MiB/s (each alone could do 2).
    let downloads: Vec<_> = (0..2)
        .map(|_| {
            let stream = connect_from(&server, 3);
            std::thread::spawn(move || timed_download(stream, "/files/four.bin"))
        })
        .collect();
    let results: Vec<(usize, f64)> = downloads.into_iter().map(|d| d.join().unwrap()).collect();
    let slowest = results.iter().map(|r| r.1).fold(0.0, f64::max);
    let total = (results.iter().map(|r| r.0).sum::<usize>() as f64 - 2.0 * 512.0 * 1024.0) / mib;
    let rate = total / slowest;
    println!(
        "two connections of one client: {total:.2} MiB capped in {slowest:.2} s, {rate:.2} MiB/s (cap 3)"
    );
    assert!(
        rate <= 3.0 * 1.05,
        "the client's budget did not hold: {rate:.2} MiB/s"
    );
    // Another client has its own budget: not slowed by the first.
    let (_, alone) = timed_download(connect_from(&server, 4), "/files/four.bin");
    assert!(alone < PATIENCE.as_secs_f64());
}

#[test]
fn client_and_route_budgets_hold_alone_at_rates_that_send_large_pieces() {
    for driver in DRIVERS {
        client_and_route_budgets_hold_alone_on(driver);
    }
}

/// Two downloads at once under `limits` (16 MiB/s, a cap whose pieces are 256 KiB), each of
/// 8 MiB, from clients 127.0.0.`hosts`: the MiB/s the two got together.
fn two_downloads_under(driver: &str, limits: &str, hosts: [u8; 2]) -> f64 {
    let tree = Tree::new("shared-caps");
    tree.file("eight.bin", 8 * 1024 * 1024);
    let server = server(&tree, limits, driver);
    let downloads: Vec<_> = hosts
        .iter()
        .map(|&host| {
            let stream = connect_from(&server, host);
            std::thread::spawn(move || timed_download(stream, "/files/eight.bin"))
        })
        .collect();
    let results: Vec<(usize, f64)> = downloads.into_iter().map(|d| d.join().unwrap()).collect();
    let slowest = results.iter().map(|r| r.1).fold(0.0, f64::max);
    let total = results.iter().map(|r| r.0).sum::<usize>() as f64 / (1024.0 * 1024.0);
    total / slowest
}

/// A shared cap's burst holds the largest piece a download asks it for: a piece larger than
/// the burst could never be granted and would be let through, leaving the cap without effect.
fn client_and_route_budgets_hold_alone_on(driver: &str) {
    // 16 MiB in all at 16 MiB/s: about a second, less the burst (a piece and 1 ms).
    // The client's two connections, then two clients on the route.
    for (cap, hosts) in [("client_bandwidth", [6, 6]), ("global_bandwidth", [7, 8])] {
        let limits = format!("[routes.limits]\n{cap} = \"16MiB\"");
        let rate = two_downloads_under(driver, &limits, hosts);
        assert!(
            rate <= 16.0 * 1.05,
            "{driver}: {cap} did not hold: {rate:.1} MiB/s"
        );
    }
}

#[test]
fn download_timeout_closes_a_download_that_takes_too_long() {
    for driver in DRIVERS {
        download_timeout_closes_a_download_that_takes_too_long_on(driver);
    }
}

fn download_timeout_closes_a_download_that_takes_too_long_on(driver: &str) {
    let tree = Tree::new("timeout");
    tree.file("slow.bin", 1024 * 1024);
    let server = server(
        &tree,
        "[routes.limits]\nrate_limit_bandwidth = \"64KiB\"\ndownload_timeout = \"1s\"",
        driver,
    );
    let mut stream = connect_from(&server, 5);
    stream
        .write_all(b"GET /files/slow.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    // 1 MiB at 64 KiB/s would take 16 s: the response is cut after about a second.
    assert!(
        read_response(&mut stream).is_none(),
        "the body was cut short"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}
