//! WebSocket through a proxy route against the real binary on both drivers: the upstream is a
//! second ringstream with an echo route. Messages pass both ways as sent, the route's
//! protections close the client before the upstream sees what broke them, close codes pass
//! both ways, an upgrade the upstream refuses is answered with its status, and the drain and
//! the idle timeout close the tunnel; a heartbeat never lands inside an upstream frame that
//! arrives in parts; clients that send more than the sockets hold without reading stall
//! neither their tunnel (its two directions run at once) nor anyone else, and lose nothing.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::Write;

use support::ws::{
    BINARY, CONTINUATION, PING, PONG, TEXT, close_frame, connect_to, expect_close, frame,
    read_frame, send_without_reading, upgrade_request,
};
use support::{DRIVERS, Server, read_response};

const UPSTREAM: &str = r#"
[[routes]]
path = "/ws/echo"
kind = "echo"
"#;

/// The upstream (an echo route) and a proxy in front of it at `/ws/` (one worker, `/stats`),
/// with `limits` in the proxy route's `[routes.limits]`.
fn servers(driver: &str, limits: &str) -> (Server, Server) {
    servers_with(driver, limits, &[])
}

/// [`servers`], the proxy started with `args` too.
fn servers_with(driver: &str, limits: &str, args: &[&str]) -> (Server, Server) {
    let upstream = Server::with_config(UPSTREAM, &["--io-driver", driver]);
    let config = format!(
        "[[routes]]\npath = \"/stats\"\nkind = \"stats\"\n\n\
         [[routes]]\npath = \"/ws/\"\nkind = \"proxy\"\nupstreams = [\"{}\"]\n\
         [routes.limits]\n{limits}\n",
        upstream.addr
    );
    let args = [&["--workers", "1", "--io-driver", driver], args].concat();
    let proxy = Server::with_config(&config, &args);
    (upstream, proxy)
}

/// The next data or control frame other than a ping.
fn next(stream: &mut std::net::TcpStream) -> (u8, Vec<u8>) {
    loop {
        let frame = read_frame(stream).expect("a frame");
        if frame.opcode != PING {
            return (frame.opcode, frame.payload);
        }
    }
}

#[test]
fn messages_pass_both_ways_through_the_tunnel() {
    for driver in DRIVERS {
        let (_upstream, proxy) = servers(driver, "");
        let (mut ws, answer) = connect_to(proxy.addr, "/ws/echo", "");
        assert_eq!(answer.status, 101, "{driver}");
        ws.write_all(&frame(true, 0, TEXT, b"hello")).unwrap();
        assert_eq!(next(&mut ws), (TEXT, b"hello".to_vec()), "{driver}");
        let large = vec![7u8; 60_000];
        ws.write_all(&frame(true, 0, BINARY, &large)).unwrap();
        assert_eq!(next(&mut ws), (BINARY, large), "{driver}");
        // A fragmented message passes as its fragments; the upstream answers it whole.
        ws.write_all(&frame(false, 0, TEXT, b"frag")).unwrap();
        ws.write_all(&frame(true, 0, CONTINUATION, b"ments"))
            .unwrap();
        assert_eq!(next(&mut ws), (TEXT, b"fragments".to_vec()), "{driver}");
        // The client's ping reaches the upstream, whose pong comes back.
        ws.write_all(&frame(true, 0, PING, b"p")).unwrap();
        assert_eq!(next(&mut ws), (PONG, b"p".to_vec()), "{driver}");
        // The client's close reaches the upstream, whose answer comes back with its code.
        ws.write_all(&close_frame(4000, "bye")).unwrap();
        assert_eq!(expect_close(&mut ws), (4000, "bye".to_owned()), "{driver}");
    }
}

#[test]
fn the_routes_protections_close_the_client_before_the_upstream_sees_the_frame() {
    for driver in DRIVERS {
        let (_upstream, proxy) = servers(driver, "max_message_size = 1000\nrate_limit = 3");
        let (mut ws, _) = connect_to(proxy.addr, "/ws/echo", "");
        ws.write_all(&frame(true, 0, BINARY, &[1; 2000])).unwrap();
        assert_eq!(expect_close(&mut ws).0, 1009, "{driver}");
        let (mut ws, _) = connect_to(proxy.addr, "/ws/echo", "");
        for i in 0..3u8 {
            ws.write_all(&frame(true, 0, BINARY, &[i])).unwrap();
            assert_eq!(next(&mut ws), (BINARY, vec![i]), "{driver}");
        }
        ws.write_all(&frame(true, 0, BINARY, &[3])).unwrap();
        assert_eq!(
            expect_close(&mut ws),
            (1008, "rate limit exceeded: messages per second".to_owned()),
            "{driver}"
        );
        // Invalid UTF-8 never reaches the app either.
        let (mut ws, _) = connect_to(proxy.addr, "/ws/echo", "");
        ws.write_all(&frame(true, 0, TEXT, &[0xff, 0xfe])).unwrap();
        assert_eq!(expect_close(&mut ws).0, 1007, "{driver}");
    }
}

#[test]
fn a_dropped_message_is_left_out_and_the_frames_behind_it_pass_whole() {
    for driver in DRIVERS {
        // 300 bytes a minute: 106 pass, the next 258 do not fit and are dropped, 56 still fit.
        let (_upstream, proxy) = servers(driver, "bytes_per_minute = 300\non_limit = \"drop\"");
        let (mut ws, _) = connect_to(proxy.addr, "/ws/echo", "");
        let mut batch = frame(true, 0, BINARY, &[b'a'; 100]);
        batch.extend(frame(true, 0, BINARY, &[b'b'; 250]));
        batch.extend(frame(true, 0, TEXT, &[b'c'; 50]));
        ws.write_all(&batch).unwrap();
        assert_eq!(next(&mut ws), (BINARY, vec![b'a'; 100]), "{driver}");
        assert_eq!(next(&mut ws), (TEXT, vec![b'c'; 50]), "{driver}");
        // Nothing else was passed on: a ping's pong is what comes next.
        ws.write_all(&frame(true, 0, PING, b"p")).unwrap();
        assert_eq!(next(&mut ws), (PONG, b"p".to_vec()), "{driver}");
    }
}

#[test]
fn an_upgrade_the_upstream_refuses_gets_its_answer_and_a_bad_handshake_never_leaves() {
    for driver in DRIVERS {
        let (_upstream, proxy) = servers(driver, "");
        // The upstream has no WebSocket route there: its 404 comes back.
        let mut stream = proxy.connect();
        stream
            .write_all(&upgrade_request("/ws/nothing", ""))
            .unwrap();
        assert_eq!(read_response(&mut stream).unwrap().status, 404, "{driver}");
        // A handshake with a bad version is answered by the proxy itself.
        let mut stream = proxy.connect();
        let request = String::from_utf8(upgrade_request("/ws/echo", ""))
            .unwrap()
            .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
        stream.write_all(request.as_bytes()).unwrap();
        let answer = read_response(&mut stream).unwrap();
        assert_eq!(answer.status, 426, "{driver}");
    }
}

#[test]
fn the_idle_timeout_and_the_drain_close_the_tunnel() {
    for driver in DRIVERS {
        let (_upstream, proxy) =
            servers(driver, "timeout = \"1s\"\nheartbeat_interval = \"300ms\"");
        let (mut ws, _) = connect_to(proxy.addr, "/ws/echo", "");
        assert_eq!(
            expect_close(&mut ws),
            (1000, "idle timeout".to_owned()),
            "{driver}"
        );
        let (_upstream, mut proxy) = servers(driver, "");
        let (mut ws, _) = connect_to(proxy.addr, "/ws/echo", "");
        ws.write_all(&frame(true, 0, TEXT, b"x")).unwrap();
        assert_eq!(next(&mut ws), (TEXT, b"x".to_vec()), "{driver}");
        proxy.signal(libc::SIGTERM);
        assert_eq!(expect_close(&mut ws).0, 1001, "{driver}");
        assert!(proxy.wait_exit(support::PATIENCE).success(), "{driver}");
    }
}

/// A one-connection upstream that answers the upgrade, then sends a 10-byte binary message in
/// two parts `pause` apart.
fn stalling_upstream(pause: std::time::Duration) -> std::net::SocketAddr {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            support::ws::ACCEPT
        );
        conn.write_all(answer.as_bytes()).unwrap();
        conn.write_all(&[0x82, 10, 0, 1, 2]).unwrap();
        std::thread::sleep(pause);
        conn.write_all(&[3, 4, 5, 6, 7, 8, 9]).unwrap();
        // Held open until the proxy is done with it.
        let _ = conn.read(&mut byte);
    });
    addr
}

#[test]
fn a_heartbeat_never_lands_inside_an_upstream_frame() {
    for driver in DRIVERS {
        let upstream = stalling_upstream(std::time::Duration::from_millis(1200));
        let config = format!(
            "[[routes]]\npath = \"/ws/\"\nkind = \"proxy\"\nupstreams = [\"{upstream}\"]\n\
             [routes.limits]\nheartbeat_interval = \"200ms\"\n"
        );
        let proxy = Server::with_config(&config, &["--io-driver", driver]);
        let (mut ws, _) = connect_to(proxy.addr, "/ws/echo", "");
        let first = read_frame(&mut ws).expect("a frame");
        assert_eq!(
            (first.opcode, first.payload),
            (BINARY, (0..10).collect::<Vec<u8>>()),
            "{driver}: the upstream's message arrives whole, before any ping"
        );
        // Once it is whole, heartbeats go on.
        assert_eq!(
            read_frame(&mut ws).expect("a ping").opcode,
            PING,
            "{driver}"
        );
    }
}

/// Receives armed through the worker's buffer ring so far (a tunnel arms one on each side).
fn armed(server: &Server) -> u64 {
    server.stats()["buffers"]["receive_ring_armed"]
        .as_u64()
        .unwrap()
}

/// The next message other than a ping, checked against `sent`.
fn expect_echo(stream: &mut std::net::TcpStream, sent: &[u8], what: &str) {
    let (opcode, payload) = next(stream);
    assert_eq!(opcode, BINARY, "{what}");
    assert!(
        payload == sent,
        "{what}: wrong echo ({} bytes)",
        payload.len()
    );
}

#[test]
fn tunnels_whose_clients_stop_reading_stall_nobody_and_lose_nothing() {
    const GREEDY: usize = 2;
    let modes: [(&str, &[&str]); 3] = [
        ("uring", &[]),
        ("uring", &["--receive", "per-read"]),
        ("poll", &[]),
    ];
    for (driver, receive) in modes {
        let (_upstream, proxy) = servers_with(driver, "", receive);
        let driver = format!("{driver} {receive:?}");
        // Both sides of a tunnel receive through the worker's ring from its start (io_uring
        // unless `per_read`; the poll driver receives per read).
        let (mut first, _) = connect_to(proxy.addr, "/ws/echo", "");
        first.write_all(&frame(true, 0, BINARY, b"x")).unwrap();
        expect_echo(&mut first, b"x", &driver);
        let ring = driver == "uring []";
        assert_eq!(armed(&proxy), 2 * u64::from(ring), "{driver}");
        // Greedy clients send 32 MiB each and read nothing until they have sent it all: more
        // than the sockets on the way hold, so the echoes back up into the proxy while the
        // client's frames still go to the upstream. The proxy reads the upstream's echoes
        // while it sends the upstream more (an upstream that echoes stops reading while its
        // echoes wait), and on io_uring its receives take ring buffers until the ring is dry.
        let message: Vec<u8> = (0..32 * 1024).map(|i| (i * 31) as u8).collect();
        let count = 32 * 32;
        let one = frame(true, 0, BINARY, &message);
        let greedy: Vec<_> = (0..GREEDY)
            .map(|_| {
                let (stream, _) = connect_to(proxy.addr, "/ws/echo", "");
                let sending = send_without_reading(&stream, one.clone(), count);
                (stream, sending)
            })
            .collect();
        // Meanwhile another tunnel echoes as usual.
        std::thread::sleep(std::time::Duration::from_millis(1_000));
        let (mut other, _) = connect_to(proxy.addr, "/ws/echo", "");
        other.set_read_timeout(Some(support::PATIENCE)).unwrap();
        for i in 0..100u8 {
            other.write_all(&frame(true, 0, BINARY, &[i; 100])).unwrap();
            expect_echo(
                &mut other,
                &[i; 100],
                &format!("{driver}: other's echo {i}"),
            );
        }
        // Every echo of every greedy tunnel arrives, whole and in order.
        let readers: Vec<_> = greedy
            .into_iter()
            .map(|(mut stream, sending)| {
                let message = message.clone();
                std::thread::spawn(move || {
                    stream.set_read_timeout(Some(support::PATIENCE)).unwrap();
                    for i in 0..count {
                        expect_echo(&mut stream, &message, &format!("greedy echo {i}"));
                    }
                    sending.join().unwrap();
                })
            })
            .collect();
        for reader in readers {
            reader.join().unwrap();
        }
        if ring {
            let dry = proxy.stats()["buffers"]["receive_ring_dry"]
                .as_u64()
                .unwrap();
            assert!(dry > 0, "the ring never ran dry");
        }
    }
}
