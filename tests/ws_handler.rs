//! The WebSocket handler API: handlers registered in code on a server started in this process,
//! spoken to over loopback by a raw client. Each test checks what the client receives on the
//! wire: the handler's replies, its close, and that the route's protections (size, heartbeat,
//! idle timeout, drain) act before and beside the handler.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{Either, select};
use ringstream_engine::config::{IoDriver, RouteKind, ServerConfig};
use ringstream_engine::handler::WsHandler;
use ringstream_engine::task::sleep;
use ringstream_engine::{EngineError, Server};
use support::PATIENCE;
use support::ws::{
    BINARY, PING, PONG, TEXT, close_frame, connect_to, expect_close, frame, read_frame,
};

const DRIVERS: [IoDriver; 2] = [IoDriver::Uring, IoDriver::Poll];

/// Replies to `whoami` with what the handler knows of the request, and upper-cases anything
/// else; `close` makes it close with 4001 "bye".
fn upper() -> WsHandler {
    WsHandler::new(|mut ws| async move {
        while let Some(message) = ws.recv().await {
            let reply = match message.as_text() {
                Some("whoami") => {
                    let head = ws.request();
                    format!(
                        "path={} name={} agent={} loopback={} proto={}",
                        head.path(),
                        head.query_param("name").unwrap_or("-"),
                        String::from_utf8_lossy(head.header("user-agent").unwrap_or(b"-")),
                        head.peer().ip().is_loopback(),
                        head.subprotocol().unwrap_or("-"),
                    )
                }
                Some("close") => {
                    ws.close(4001, "bye").await.unwrap();
                    return;
                }
                Some(text) => text.to_uppercase(),
                None => {
                    let mut data = message.into_data().to_vec();
                    data.reverse();
                    if ws.send(data).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            if ws.send(reply).await.is_err() {
                return;
            }
        }
    })
}

/// Records the length of every message it is given.
fn recorder(seen: Arc<Mutex<Vec<usize>>>) -> WsHandler {
    WsHandler::new(move |mut ws| {
        let seen = Arc::clone(&seen);
        async move {
            while let Some(message) = ws.recv().await {
                seen.lock().unwrap().push(message.len());
            }
        }
    })
}

/// Never reads: it only holds the connection, for a long time.
fn busy() -> WsHandler {
    WsHandler::new(|ws| async move {
        sleep(Duration::from_secs(3600)).await;
        drop(ws);
    })
}

/// Sends `tick N` every 50 ms while waiting for the client; `stop` ends it.
fn ticker() -> WsHandler {
    WsHandler::new(|mut ws| async move {
        let mut n = 0;
        loop {
            // `recv` is cancel-safe: losing the race to the timer loses no message.
            let received = {
                let tick = std::pin::pin!(sleep(Duration::from_millis(50)));
                let next = std::pin::pin!(ws.recv());
                match select(next, tick).await {
                    Either::Left((message, _)) => Some(message),
                    Either::Right(((), _)) => None,
                }
            };
            match received {
                Some(Some(message)) if message.as_text() == Some("stop") => return,
                Some(Some(_)) => {}
                Some(None) => return,
                None => {
                    n += 1;
                    if ws.send(format!("tick {n}")).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
}

/// Waits before reading anything, then answers with how many messages arrived in order.
fn late_reader() -> WsHandler {
    WsHandler::new(|mut ws| async move {
        sleep(Duration::from_millis(500)).await;
        let mut in_order = 0u32;
        while let Some(message) = ws.recv().await {
            if message.data()[..4] == in_order.to_be_bytes() {
                in_order += 1;
            }
            if message.data()[4..] == *b"last" {
                let _ = ws.send(format!("{in_order} in order")).await;
            }
        }
    })
}

/// Sends 1 KiB messages as fast as `send` lets it; records the bytes it got through once a
/// send fails.
fn flooder(sent: Arc<AtomicUsize>) -> WsHandler {
    WsHandler::new(move |mut ws| {
        let sent = Arc::clone(&sent);
        async move {
            let mut total = 0;
            while ws.send(vec![7u8; 1024]).await.is_ok() {
                total += 1024;
            }
            sent.store(total, Ordering::SeqCst);
        }
    })
}

/// Records the close code the connection ended with once `recv` returns `None`.
fn watcher(ended: Arc<AtomicU16>) -> WsHandler {
    WsHandler::new(move |mut ws| {
        let ended = Arc::clone(&ended);
        async move {
            while ws.recv().await.is_some() {}
            ended.store(ws.close_code().unwrap_or(0), Ordering::SeqCst);
        }
    })
}

struct Harness {
    server: Option<Server>,
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<usize>>>,
    ended: Arc<AtomicU16>,
    flooded: Arc<AtomicUsize>,
}

impl Harness {
    fn start(driver: IoDriver) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(AtomicU16::new(0));
        let flooded = Arc::new(AtomicUsize::new(0));
        let panics = WsHandler::new(|mut ws| async move {
            if ws.recv().await.is_some() {
                panic!("handler failure on purpose");
            }
        });
        let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap())
            .route(
                "/ws/upper",
                RouteKind::Handler {
                    handler: upper(),
                    subprotocols: vec!["upper.v1".into()],
                },
            )
            .route(
                "/ws/record",
                RouteKind::handler(recorder(Arc::clone(&seen))),
            )
            .route("/ws/busy", RouteKind::handler(busy()))
            .route("/ws/ticker", RouteKind::handler(ticker()))
            .route("/ws/late", RouteKind::handler(late_reader()))
            .route("/ws/watch", RouteKind::handler(watcher(Arc::clone(&ended))))
            .route("/ws/panic", RouteKind::handler(panics))
            .route(
                "/ws/flood",
                RouteKind::handler(flooder(Arc::clone(&flooded))),
            );
        config.workers = 1;
        config.io_driver = driver;
        config.drain_timeout = Duration::from_secs(5);
        for route in &mut config.routes {
            route.ws.max_message_size = 1000;
            if route.path == "/ws/flood" {
                route.ws.max_backpressure = 64 * 1024;
                route.limits.send_timeout = Duration::from_secs(1);
            }
            if route.path == "/ws/busy" {
                route.ws.heartbeat_interval = Duration::from_millis(300);
                route.ws.timeout = Duration::from_secs(1);
            }
        }
        let server = Server::start(config).unwrap();
        let addr = server.local_addr();
        Self {
            server: Some(server),
            addr,
            seen,
            ended,
            flooded,
        }
    }

    fn connect(&self, path: &str) -> std::net::TcpStream {
        connect_to(self.addr, path, "").0
    }

    /// Drains the server and waits for its workers.
    fn drain(&mut self) -> Result<(), EngineError> {
        let server = self.server.take().unwrap();
        server.begin_drain();
        server.join()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.begin_drain();
            let _ = server.join();
        }
    }
}

/// The next data frame (pings answered, pongs skipped).
fn next_message(stream: &mut std::net::TcpStream) -> (u8, Vec<u8>) {
    loop {
        let frame = read_frame(stream).expect("a message");
        match frame.opcode {
            PING => stream
                .write_all(&support::ws::frame(true, 0, PONG, &frame.payload))
                .unwrap(),
            PONG => {}
            _ => return (frame.opcode, frame.payload),
        }
    }
}

#[test]
fn the_handler_replies_and_sees_the_request_head() {
    for driver in DRIVERS {
        let harness = Harness::start(driver);
        let (mut ws, response) = connect_to(
            harness.addr,
            "/ws/upper?name=ada&x=1",
            "User-Agent: probe/1\r\nSec-WebSocket-Protocol: other, upper.v1\r\n",
        );
        assert_eq!(response.header("sec-websocket-protocol"), Some("upper.v1"));
        ws.write_all(&frame(true, 0, TEXT, b"whoami")).unwrap();
        let expected = "path=/ws/upper name=ada agent=probe/1 loopback=true proto=upper.v1";
        assert_eq!(next_message(&mut ws), (TEXT, expected.as_bytes().to_vec()));
        // Several messages in one write, a fragmented one among them: all answered, in order.
        let mut batch = frame(true, 0, TEXT, b"one");
        batch.extend(frame(false, 0, TEXT, b"tw"));
        batch.extend(frame(true, 0, 0, b"o"));
        batch.extend(frame(true, 0, BINARY, &[1, 2, 3]));
        ws.write_all(&batch).unwrap();
        assert_eq!(next_message(&mut ws), (TEXT, b"ONE".to_vec()));
        assert_eq!(next_message(&mut ws), (TEXT, b"TWO".to_vec()));
        assert_eq!(next_message(&mut ws), (BINARY, vec![3, 2, 1]));
        // The client's close is answered with its code, and the handler's recv ends.
        ws.write_all(&close_frame(1000, "done")).unwrap();
        assert_eq!(expect_close(&mut ws), (1000, "done".into()));
    }
}

#[test]
fn the_handler_closes_with_its_own_code_and_reason() {
    for driver in DRIVERS {
        let harness = Harness::start(driver);
        let mut ws = harness.connect("/ws/upper");
        ws.write_all(&frame(true, 0, TEXT, b"close")).unwrap();
        assert_eq!(expect_close(&mut ws), (4001, "bye".into()));
        ws.write_all(&close_frame(4001, "")).unwrap();
        assert!(read_frame(&mut ws).is_none(), "closed after the handshake");
    }
}

#[test]
fn protections_act_before_the_handler_sees_a_message() {
    for driver in DRIVERS {
        let harness = Harness::start(driver);
        let mut ws = harness.connect("/ws/record");
        ws.write_all(&frame(true, 0, BINARY, &[0; 10])).unwrap();
        ws.write_all(&frame(true, 0, BINARY, &[0; 2000])).unwrap();
        assert_eq!(expect_close(&mut ws), (1009, "message too big".into()));
        let mut ws = harness.connect("/ws/record");
        ws.write_all(&frame(true, 0, TEXT, &[0xff, 0xfe])).unwrap();
        assert_eq!(expect_close(&mut ws).0, 1007);
        assert_eq!(
            *harness.seen.lock().unwrap(),
            vec![10],
            "only the valid message"
        );
    }
}

#[test]
fn heartbeat_and_idle_timeout_run_while_the_handler_is_busy() {
    for driver in DRIVERS {
        let harness = Harness::start(driver);
        // A silent client is closed for idleness although its handler never reads.
        let started = Instant::now();
        let mut silent = harness.connect("/ws/busy");
        let mut pings = 0;
        let close = loop {
            let frame = read_frame(&mut silent).expect("pings, then a close");
            match frame.opcode {
                PING => pings += 1,
                _ => break frame.close(),
            }
        };
        assert_eq!(close, (1000, "idle timeout".into()));
        assert!(pings >= 2, "heartbeat pings were sent ({pings})");
        assert!(started.elapsed() < PATIENCE);
        // A client that answers the pings stays past the idle timeout.
        let mut alive = harness.connect("/ws/busy");
        let until = Instant::now() + Duration::from_millis(2500);
        while Instant::now() < until {
            let frame = read_frame(&mut alive).expect("the connection stays open");
            assert_eq!(
                frame.opcode, PING,
                "only pings while the client answers them"
            );
            alive
                .write_all(&support::ws::frame(true, 0, PONG, &frame.payload))
                .unwrap();
        }
    }
}

#[test]
fn a_handler_sends_while_it_waits_for_the_client() {
    for driver in DRIVERS {
        let harness = Harness::start(driver);
        let mut ws = harness.connect("/ws/ticker");
        for n in 1..=3 {
            assert_eq!(
                next_message(&mut ws),
                (TEXT, format!("tick {n}").into_bytes())
            );
        }
        // The handler returns: the connection closes normally.
        ws.write_all(&frame(true, 0, TEXT, b"stop")).unwrap();
        assert_eq!(expect_close(&mut ws), (1000, String::new()));
    }
}

#[test]
fn a_slow_handler_holds_the_client_back_without_losing_a_message() {
    for driver in DRIVERS {
        let harness = Harness::start(driver);
        let mut ws = harness.connect("/ws/late");
        // Far more than the handler's inbound queue holds (256 messages, 1000 bytes).
        let count = 2000u32;
        let mut all = Vec::new();
        for i in 0..count {
            let mut payload = i.to_be_bytes().to_vec();
            payload.extend_from_slice(if i + 1 == count { b"last" } else { b"data" });
            all.extend(frame(true, 0, BINARY, &payload));
        }
        ws.write_all(&all).unwrap();
        assert_eq!(
            next_message(&mut ws),
            (TEXT, format!("{count} in order").into_bytes())
        );
    }
}

#[test]
fn a_panicking_handler_closes_its_connection_with_1011() {
    for driver in DRIVERS {
        let harness = Harness::start(driver);
        let mut ws = harness.connect("/ws/panic");
        ws.write_all(&frame(true, 0, TEXT, b"boom")).unwrap();
        assert_eq!(expect_close(&mut ws), (1011, "internal error".into()));
        // The worker lives on.
        let mut again = harness.connect("/ws/upper");
        again
            .write_all(&frame(true, 0, TEXT, b"still here"))
            .unwrap();
        assert_eq!(next_message(&mut again), (TEXT, b"STILL HERE".to_vec()));
    }
}

#[test]
fn the_drain_sends_1001_and_the_handler_sees_the_end() {
    for driver in DRIVERS {
        let mut harness = Harness::start(driver);
        let mut ws = harness.connect("/ws/watch");
        ws.write_all(&frame(true, 0, TEXT, b"hello")).unwrap();
        // The message is through once a ping round trip has been answered after it.
        ws.write_all(&frame(true, 0, PING, b"sync")).unwrap();
        loop {
            let frame = read_frame(&mut ws).expect("the pong");
            if frame.opcode == PONG && frame.payload == b"sync" {
                break;
            }
        }
        let closer = std::thread::spawn(move || {
            let close = expect_close(&mut ws);
            ws.write_all(&close_frame(close.0, "")).unwrap();
            close
        });
        harness.drain().unwrap();
        assert_eq!(
            closer.join().unwrap(),
            (1001, "server shutting down".into())
        );
        assert_eq!(harness.ended.load(Ordering::SeqCst), 1001);
    }
}

#[test]
fn a_client_that_does_not_read_holds_its_handler_back_and_is_closed() {
    for driver in DRIVERS {
        let harness = Harness::start(driver);
        let mut ws = harness.connect("/ws/flood");
        // The client reads nothing: `send` waits once 64 KiB are queued, and after
        // `send_timeout` (1 s) without progress the connection is closed and `send` fails.
        let started = Instant::now();
        while harness.flooded.load(Ordering::SeqCst) == 0 {
            assert!(
                started.elapsed() < PATIENCE,
                "the handler's send never failed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let sent = harness.flooded.load(Ordering::SeqCst);
        // What got through fits the socket buffers plus the queue, nowhere near what an
        // unbounded queue would have taken in a second.
        assert!(sent < 32 << 20, "{sent} bytes were queued");
        // The client finds the data that made it, then the end of the connection.
        let mut received = 0;
        while let Some(frame) = read_frame(&mut ws) {
            assert_eq!(frame.payload.len(), 1024);
            received += 1024;
        }
        assert!(received <= sent);
    }
}
