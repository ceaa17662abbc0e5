//! `conn::http::serve`: answers that do not depend on where reads split, pipelining, the
//! refusals of heads and bodies over their limits, and the deadlines of a slow client.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ringstream_limits::cidr::{Cidr, CidrSet};

use super::harness::{Then, assert_deadline, bytewise, script, serve, splits};
use crate::config::{RouteKind, ServerConfig, TopicSource};

const GET_HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
const HEALTH: &str = "HTTP/1.1 200 OK\r\nDate: <date>\r\nServer: ringstream\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\r\nok";

/// A publish of `hello, wörld` (13 bytes, the `ö` cut between two chunks) to a topic with no
/// member.
const CHUNKED_PUBLISH: &[u8] = b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n4;ext=1\r\n, w\xc3\r\n4\r\n\xb6rld\r\n0\r\n\r\n";
const PUBLISHED: &str = "HTTP/1.1 200 OK\r\nDate: <date>\r\nServer: ringstream\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: 50\r\n\r\n{\"topic\":\"news\",\"subscribers\":0,\"local_reached\":0}";

/// `/health` and a publish route open to loopback, with `adjust` applied to the global limits
/// before the routes take them.
fn config(adjust: impl FnOnce(&mut crate::config::HttpLimits)) -> ServerConfig {
    let mut config = ServerConfig::new((Ipv4Addr::LOCALHOST, 0).into());
    adjust(&mut config.limits);
    let loopback = Cidr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8).unwrap();
    config.route("/health", RouteKind::Health).route(
        "/publish",
        RouteKind::Publish {
            topic: TopicSource::Fixed("news".into()),
            token: None,
            allowed_clients: CidrSet::new(vec![loopback]),
        },
    )
}

fn refusal(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nDate: <date>\r\nServer: ringstream\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn a_get_split_at_every_offset_gets_the_same_answer() {
    let mut scripts: Vec<_> = splits(GET_HEALTH).collect();
    scripts.push(bytewise(GET_HEALTH));
    for chunks in scripts {
        let reads = chunks.len();
        let served = serve(config(|_| {}), script(chunks, Then::Eof));
        assert_eq!(served.output(), HEALTH, "{reads} reads");
        assert_eq!(served.writes.len(), 1);
    }
}

#[test]
fn pipelined_requests_in_one_read_are_answered_in_one_write() {
    let two = [GET_HEALTH, GET_HEALTH].concat();
    let served = serve(config(|_| {}), script(vec![two], Then::Eof));
    assert_eq!(served.writes.len(), 1);
    assert_eq!(served.output(), HEALTH.repeat(2));
}

#[test]
fn a_head_over_the_limit_gets_431() {
    let config = config(|limits| limits.max_header_bytes = 1024);
    let head = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n",
        "a".repeat(1100)
    );
    let served = serve(config, script(vec![head.into_bytes()], Then::EofAfterFin));
    assert_eq!(
        served.output(),
        refusal(
            "431 Request Header Fields Too Large",
            "431 Request Header Fields Too Large\n"
        )
    );
    assert!(served.fin.is_some());
}

#[test]
fn a_body_over_max_body_size_gets_413_before_it_is_read() {
    let config = config(|limits| limits.max_body_size = 100);
    let head = b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n";
    let served = serve(config, move |client| async move {
        client.send(&head[..]);
        // The body is never sent: the answer must not wait for it.
        client.wait_for(|_, fin| fin).await;
        assert_eq!(client.bytes_read(), head.len());
        client.close();
    });
    assert_eq!(
        served.output(),
        refusal("413 Content Too Large", "413 Content Too Large\n")
    );
}

#[test]
fn a_chunked_body_split_at_every_offset_is_read_whole() {
    let stream = [CHUNKED_PUBLISH, GET_HEALTH].concat();
    for chunks in splits(&stream) {
        let served = serve(config(|_| {}), script(chunks, Then::Eof));
        // The request after the body is read from where the body ended.
        assert_eq!(served.output(), format!("{PUBLISHED}{HEALTH}"));
        let publish = served.metrics.routes().totals_of("/publish");
        assert_eq!((publish.messages_in, publish.bytes_in), (1, 13));
    }
}

#[test]
fn a_slow_head_gets_408_after_header_timeout() {
    let timeout = Duration::from_millis(200);
    let config = config(|limits| limits.header_timeout = timeout);
    let partial = b"GET /health HTTP/1.1\r\nHost: x\r\n".to_vec();
    let served = serve(config, script(vec![partial], Then::EofAfterFin));
    assert_eq!(
        served.output(),
        refusal("408 Request Timeout", "408 Request Timeout\n")
    );
    // The header timeout runs from accept; the sweeper fires it within a sweep interval.
    assert_deadline(served.writes[0].at, timeout);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_keepalive_timeout() {
    let timeout = Duration::from_millis(200);
    let config = config(|limits| limits.keepalive_timeout = timeout);
    let served = serve(config, script(vec![GET_HEALTH.to_vec()], Then::Silent));
    assert_eq!(served.output(), HEALTH);
    assert_deadline(served.elapsed, timeout);
    assert_eq!(served.fin, None);
}

#[test]
fn a_client_that_never_reads_is_cut_after_send_timeout() {
    let timeout = Duration::from_millis(200);
    let config = config(|limits| limits.send_timeout = timeout);
    let served = serve(config, |client| async move {
        client.stop_reading_after(10);
        client.send(GET_HEALTH);
    });
    assert_eq!(served.output(), &HEALTH[..10]);
    assert_deadline(served.elapsed, timeout);
    assert_eq!(served.fin, None);
}
