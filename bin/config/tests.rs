//! Loader tests: the embedded default, layering, and the exact shape of every kind of error.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::time::Duration;

use ringstream_engine::config::{
    ClientLimits, ConnectionLimits, DenyAction, FilesConfig, HttpLimits, IoDriver, LimitMode,
    ReceiveMode, RingSetup, Route, RouteKind, ServerConfig, TopicSource, UploadConfig, WsLimits,
    loopback,
};
use ringstream_engine::limits::identity::{ClientIdSource, ForwardedHeader};

use super::{DEFAULT_TOML, embedded_default, parse, summary};

/// The error message `text` gives, as `config.toml:line: ...`.
pub(super) fn error(text: &str) -> String {
    parse(text, "config.toml").unwrap_err().to_string()
}

/// `text` plus a minimal route, so that a test can focus on the top of the file.
pub(super) fn with_route(text: &str) -> String {
    format!("{text}\n[[routes]]\npath = \"/health\"\nkind = \"health\"\n")
}

#[test]
fn embedded_default_is_the_documented_defaults() {
    let config = embedded_default().unwrap();
    assert_eq!(
        config,
        ServerConfig {
            listen: "0.0.0.0:8080".parse().unwrap(),
            workers: 0,
            backlog: 4096,
            io_driver: IoDriver::Auto,
            io_uring_setup: RingSetup::default(),
            receive: ReceiveMode::Auto,
            drain_timeout: Duration::from_secs(10),
            allow_shared_port: false,
            access_log: None,
            cluster: None,
            tls: None,
            connection_limits: ConnectionLimits::default(),
            clients: ClientLimits::default(),
            limits: HttpLimits::default(),
            routes: vec![
                Route {
                    path: "/health".into(),
                    kind: RouteKind::Health,
                    limits: HttpLimits::default(),
                    ws: WsLimits::default(),
                    auth: None,
                },
                Route {
                    path: "/stats".into(),
                    kind: RouteKind::Stats {
                        allowed_clients: loopback(),
                    },
                    limits: HttpLimits::default(),
                    ws: WsLimits::default(),
                    auth: None,
                },
                Route {
                    path: "/metrics".into(),
                    kind: RouteKind::Metrics {
                        allowed_clients: loopback(),
                    },
                    limits: HttpLimits::default(),
                    ws: WsLimits::default(),
                    auth: None,
                },
                Route {
                    path: "/dashboard".into(),
                    kind: RouteKind::Dashboard {
                        allowed_clients: loopback(),
                    },
                    limits: HttpLimits::default(),
                    ws: WsLimits::default(),
                    auth: None,
                },
                Route {
                    path: "/ws/echo".into(),
                    kind: RouteKind::Echo {
                        response_prefix: Vec::new(),
                        subprotocols: Vec::new(),
                    },
                    limits: HttpLimits::default(),
                    ws: WsLimits::default(),
                    auth: None,
                },
                Route {
                    path: "/ws/broadcast/".into(),
                    kind: RouteKind::Broadcast {
                        topic: TopicSource::Path,
                        echo_to_sender: true,
                        subprotocols: Vec::new(),
                    },
                    limits: HttpLimits::default(),
                    ws: WsLimits::default(),
                    auth: None,
                },
                Route {
                    path: "/publish/".into(),
                    kind: RouteKind::Publish {
                        topic: TopicSource::Path,
                        token: None,
                        allowed_clients: loopback(),
                    },
                    limits: HttpLimits::default(),
                    ws: WsLimits::default(),
                    auth: None,
                },
                Route {
                    path: "/ws/sink".into(),
                    kind: RouteKind::Sink {
                        file: None,
                        subprotocols: Vec::new(),
                    },
                    limits: HttpLimits::default(),
                    ws: WsLimits::default(),
                    auth: None,
                },
                Route {
                    path: "/files/".into(),
                    kind: RouteKind::Files(Box::new(FilesConfig {
                        root_optional: true,
                        ..FilesConfig::new("./public")
                    })),
                    limits: HttpLimits::default(),
                    ws: WsLimits::default(),
                    auth: None,
                },
            ],
        }
    );
    assert_eq!(
        summary(&config),
        "listen 0.0.0.0:8080, workers one per CPU, io_driver auto, max_connections 100000, \
         9 routes: /health (health), /stats (stats), /metrics (metrics), /dashboard (dashboard), \
         /ws/echo (echo), /ws/broadcast/ (broadcast), /publish/ (publish), /ws/sink (sink), \
         /files/ (files)"
    );
}

#[test]
fn embedded_default_sets_every_key() {
    // It is the reference users copy: every key the loader knows appears in it, uncommented.
    for key in [
        "listen",
        "workers",
        "backlog",
        "io_driver",
        "io_uring_setup",
        "receive",
        "drain_timeout",
        "allow_shared_port",
        "max_connections",
        "header_timeout",
        "max_header_bytes",
        "max_headers",
        "max_uri_bytes",
        "max_body_size",
        "upload_timeout",
        "min_upload_rate",
        "min_upload_rate_after",
        "keepalive_timeout",
        "send_timeout",
        "rate_limit_requests",
        "burst",
        "rate_limit_headers",
        "mode",
        "client_id",
        "trusted_proxies",
        "forwarded_header",
        "ipv6_prefix",
        "exempt",
        "allow",
        "deny",
        "deny_action",
        "max_concurrent_connections",
        "connections_per_minute",
        "client_messages_per_minute",
        "client_bytes_per_minute",
        "ban_after_violations",
        "ban_window",
        "ban_duration",
        "max_tracked_clients",
    ] {
        assert!(
            DEFAULT_TOML
                .lines()
                .any(|line| line.starts_with(&format!("{key} = "))),
            "{key} missing from default.toml"
        );
    }
}

#[test]
fn a_minimal_file_gets_the_defaults() {
    let config = parse(&with_route(""), "config.toml").unwrap();
    let mut default = embedded_default().unwrap();
    default.routes.retain(|r| r.path == "/health");
    assert_eq!(config, default);
}

#[test]
fn limits_layer_defaults_then_global_then_route() {
    let config = parse(
        r#"
workers = 2
[limits]
max_connections = 500
header_timeout = "5s"
max_body_size = "2MiB"
max_headers = 32

[[routes]]
path = "/health"
kind = "health"

[[routes]]
path = "/"
kind = "static_text"
body = "hello"
[routes.limits]
upload_timeout = 1.5
max_header_bytes = 2048
max_uri_bytes = "1KiB"
min_upload_rate = 0
"#,
        "config.toml",
    )
    .unwrap();
    assert_eq!(config.workers, 2);
    assert_eq!(config.connection_limits.max_connections, 500);
    let global = HttpLimits {
        header_timeout: Duration::from_secs(5),
        max_body_size: 2 << 20,
        max_headers: 32,
        ..HttpLimits::default()
    };
    assert_eq!(config.limits, global);
    assert_eq!(config.routes[0].limits, global);
    assert_eq!(
        config.routes[1],
        Route {
            path: "/".into(),
            kind: RouteKind::StaticText {
                body: "hello".into(),
                content_type: "text/plain; charset=utf-8".into(),
            },
            limits: HttpLimits {
                upload_timeout: Duration::from_millis(1500),
                max_header_bytes: 2048,
                max_uri_bytes: 1024,
                min_upload_rate: 0,
                ..global
            },
            ws: WsLimits::default(),
            auth: None,
        }
    );
}

#[test]
fn every_top_level_key() {
    let config = parse(
        &with_route(
            r#"
listen = "[::1]:9000"
workers = 1024
backlog = 1
io_driver = "uring"
io_uring_setup = "defer_taskrun"
receive = "ring"
drain_timeout = 0
allow_shared_port = true
"#,
        ),
        "config.toml",
    )
    .unwrap();
    assert_eq!(config.listen, "[::1]:9000".parse().unwrap());
    assert_eq!(config.workers, 1024);
    assert_eq!(config.backlog, 1);
    assert_eq!(config.io_driver, IoDriver::Uring);
    assert_eq!(config.io_uring_setup, RingSetup::DeferTaskrun);
    assert_eq!(config.receive, ReceiveMode::Ring);
    assert_eq!(config.drain_timeout, Duration::ZERO);
    assert!(config.allow_shared_port);
}

#[test]
fn unknown_key_at_the_top() {
    assert_eq!(
        error(&with_route(
            "listen = \"0.0.0.0:1\"\nworkers = 1\nlistn = 3"
        )),
        "config.toml:3: unknown key 'listn' (expected one of: listen, workers, backlog, \
         io_driver, io_uring_setup, receive, drain_timeout, allow_shared_port, access_log, access_log_format, limits, routes, cluster, tls)"
    );
}

#[test]
fn unknown_key_in_limits() {
    let message = error(&with_route("[limits]\nmax_headers = 3\nmax_header = 4\n"));
    assert!(
        message.starts_with(
            "config.toml:3: unknown key 'limits.max_header' (expected one of: max_connections, \
             max_buffered_bytes, header_timeout, max_header_bytes, max_headers,"
        ),
        "{message}"
    );
    for key in [
        "ws_idle_timeout",
        "rate_limit_requests",
        "client_id",
        "ban_duration",
    ] {
        assert!(message.contains(key), "{key} in {message}");
    }
    assert!(
        error(&with_route("limits.colour = 1"))
            .starts_with("config.toml:1: unknown key 'limits.colour'")
    );
}

#[test]
fn unknown_key_in_a_route() {
    assert_eq!(
        error(
            "[[routes]]\npath = \"/\"\nkind = \"health\"\n\n[[routes]]\npath = \"/x\"\nkind = \"health\"\nbodi = \"x\"\n"
        ),
        "config.toml:8: unknown key 'routes[1].bodi' (expected one of: path, kind, body, \
         content_type, response_prefix, subprotocols, allowed_clients, topic, echo_to_sender, token, sink_file, sink_max_bytes, sink_keep, root, index, hidden, attachment, max_ranges, chunk_size, send, upload_dir, max_upload_size, overwrite, fsync, max_uploads_per_client, upstreams, connect_timeout, upstream_timeout, balance, max_fails, fail_timeout, pool_idle_timeout, pool_size, strip_prefix, host, health_check, health_interval, auth, auth_failure, auth_cache, auth_timeout, limits)"
    );
}

#[test]
fn unknown_key_in_route_limits_does_not_suggest_server_wide_keys() {
    assert_eq!(
        error("[[routes]]\npath = \"/\"\nkind = \"health\"\n[routes.limits]\nmax_bodysize = 1\n"),
        "config.toml:5: unknown key 'routes[0].limits.max_bodysize' (expected one of: \
         max_header_bytes, max_headers, max_uri_bytes, max_body_size, upload_timeout, \
         min_upload_rate, min_upload_rate_after, send_timeout, max_message_size, max_fragments, rate_limit, messages_per_minute, bytes_per_minute, on_limit, heartbeat_interval, timeout, ws_idle_timeout, allowed_origins, permessage_deflate, deflate_context_takeover, deflate_window_bits, download_timeout, rate_limit_bandwidth, client_bandwidth, global_bandwidth, rate_after, max_backpressure, slow_consumer, slow_consumer_code, rate_limit_requests, burst, \
         rate_limit_headers, mode)"
    );
}

#[test]
fn out_of_range_names_the_line_and_the_key() {
    let text = r#"listen = "0.0.0.0:8080"

[limits]
max_headers = 100

[[routes]]
path = "/health"
kind = "health"

[[routes]]
path = "/"
kind = "static_text"
body = "x"
[routes.limits]
max_headers = 300
"#;
    assert_eq!(
        error(text),
        "config.toml:15: routes[1].limits.max_headers: 300 is out of range (1..=256)"
    );
    assert_eq!(
        error(&with_route("[limits]\nmax_headers = 0")),
        "config.toml:2: limits.max_headers: 0 is out of range (1..=256)"
    );
    assert_eq!(
        error(&with_route("workers = 2000")),
        "config.toml:1: workers: 2000 is out of range (0..=1024)"
    );
    assert_eq!(
        error(&with_route("backlog = 0")),
        "config.toml:1: backlog: 0 is out of range (1..=65535)"
    );
    assert_eq!(
        error(&with_route("[limits]\nmax_connections = 0")),
        "config.toml:2: limits.max_connections: 0 is out of range (1..=10000000)"
    );
    assert_eq!(
        error(&with_route("[limits]\nmax_header_bytes = \"2MiB\"")),
        "config.toml:2: limits.max_header_bytes: \"2MiB\" is out of range (1KiB..=1MiB)"
    );
    assert_eq!(
        error(&with_route("[limits]\nmax_header_bytes = 100")),
        "config.toml:2: limits.max_header_bytes: 100 is out of range (1KiB..=1MiB)"
    );
    assert_eq!(
        error(&with_route("[limits]\nmax_uri_bytes = 8")),
        "config.toml:2: limits.max_uri_bytes: 8 is out of range (16B..=16KiB, at most max_header_bytes)"
    );
    assert_eq!(
        error(&with_route("[limits]\nupload_timeout = \"8d\"")),
        "config.toml:2: limits.upload_timeout: \"8d\" is not a duration (use e.g. \"500ms\", \"10s\", \"5m\")"
    );
    assert_eq!(
        error(&with_route("[limits]\nupload_timeout = \"200h\"")),
        "config.toml:2: limits.upload_timeout: \"200h\" is out of range (0s..=168h)"
    );
}

#[test]
fn uri_limit_follows_the_route_header_limit() {
    let route = "[[routes]]\npath = \"/\"\nkind = \"health\"\n[routes.limits]\n";
    assert_eq!(
        error(&format!(
            "{route}max_header_bytes = \"4KiB\"\nmax_uri_bytes = \"5KiB\"\n"
        )),
        "config.toml:6: routes[0].limits.max_uri_bytes: \"5KiB\" is out of range \
         (16B..=4KiB, at most max_header_bytes)"
    );
    assert_eq!(
        error(&format!("{route}max_header_bytes = \"4KiB\"\n")),
        "config.toml:5: routes[0].limits.max_header_bytes: \"4KiB\" is less than \
         max_uri_bytes (8KiB); lower max_uri_bytes here as well"
    );
    let config = parse(
        &format!("[limits]\nmax_uri_bytes = 4096\n{route}max_header_bytes = \"4KiB\"\n"),
        "config.toml",
    )
    .unwrap();
    assert_eq!(config.routes[0].limits.max_uri_bytes, 4096);
}

#[test]
fn timeouts_cannot_be_switched_off() {
    assert_eq!(
        error(&with_route("[limits]\nheader_timeout = 0")),
        "config.toml:2: limits.header_timeout: 0 would switch this protection off, which is \
         not allowed (use a duration above 0, e.g. \"10s\")"
    );
    for key in ["upload_timeout", "keepalive_timeout", "send_timeout"] {
        assert!(
            error(&with_route(&format!("[limits]\n{key} = \"0s\"")))
                .contains("switch this protection off"),
            "{key}"
        );
    }
    assert!(
        error(&with_route("[limits]\nmin_upload_rate_after = 0"))
            .contains("set min_upload_rate = 0")
    );
}

#[test]
fn unit_errors_name_the_key() {
    assert_eq!(
        error(&with_route("[limits]\n\nheader_timeout = \"10 seconds\"")),
        "config.toml:3: limits.header_timeout: \"10 seconds\" is not a duration (use e.g. \"500ms\", \"10s\", \"5m\")"
    );
    assert!(
        error(&with_route("[limits]\nmax_body_size = \"1 megabyte\""))
            .starts_with("config.toml:2: limits.max_body_size: \"1 megabyte\" is not a size")
    );
    assert_eq!(
        error(&with_route("workers = \"4\"")),
        "config.toml:1: workers: \"4\" is a string: write the number without quotes"
    );
    assert_eq!(
        error(&with_route("allow_shared_port = 1")),
        "config.toml:1: allow_shared_port: invalid type: integer `1`, expected a boolean"
    );
}

#[test]
fn server_wide_key_in_route_limits() {
    assert_eq!(
        error(
            "[[routes]]\npath = \"/\"\nkind = \"health\"\n[routes.limits]\nmax_connections = 10\n"
        ),
        "config.toml:5: routes[0].limits.max_connections: max_connections applies to the whole \
         server; set it in [limits]"
    );
    assert_eq!(
        error(
            "[[routes]]\npath = \"/\"\nkind = \"health\"\n[routes.limits]\nsend_timeout = 1\nkeepalive_timeout = 10\n"
        ),
        "config.toml:6: routes[0].limits.keepalive_timeout: keepalive_timeout applies to the whole \
         server (it runs before a request names its route); set it in [limits]"
    );
    assert!(
        error("[[routes]]\npath = \"/\"\nkind = \"health\"\n[routes.limits]\nheader_timeout = 1\n")
            .contains("header_timeout applies to the whole server")
    );
}

#[test]
fn duplicate_route_path() {
    assert_eq!(
        error(&with_route(
            "[[routes]]\npath = \"/health\"\nkind = \"static_text\"\nbody = \"x\""
        )),
        "config.toml:6: routes[1].path: \"/health\" is already the path of routes[0]; each path \
         may appear once"
    );
}

#[test]
fn route_kinds() {
    assert_eq!(
        error("[[routes]]\npath = \"/\"\nkind = \"helth\"\n"),
        "config.toml:3: routes[0].kind: unknown route kind `helth` (expected one of: health, \
         static_text, echo, broadcast, publish, sink, files, upload, proxy, stats, metrics, \
         dashboard)"
    );
    assert_eq!(
        error("[[routes]]\npath = \"/\"\nkind = 3\n"),
        "config.toml:3: routes[0].kind: invalid type: integer `3`, expected a string"
    );
}

#[test]
fn static_text_needs_a_body_and_only_it_takes_one() {
    assert_eq!(
        error("[[routes]]\npath = \"/\"\nkind = \"static_text\"\n"),
        "config.toml:3: routes[0]: a static_text route needs a body (add body = \"...\")"
    );
    assert_eq!(
        error("[[routes]]\npath = \"/\"\nkind = \"health\"\nbody = \"x\"\n"),
        "config.toml:4: routes[0].body: only static_text routes take a body"
    );
    assert_eq!(
        error(
            "[[routes]]\npath = \"/\"\nkind = \"static_text\"\nbody = \"\"\ncontent_type = \"a\\r\\nb: c\"\n"
        ),
        "config.toml:5: routes[0].content_type: \"a\\r\\nb: c\" is not a valid header value \
         (printable ASCII, e.g. \"text/plain; charset=utf-8\")"
    );
}

#[test]
fn route_paths() {
    assert_eq!(
        error("[[routes]]\npath = \"health\"\nkind = \"health\"\n"),
        "config.toml:2: routes[0].path: \"health\" is not a route path (it starts with '/' and \
         holds no spaces, '?' or '#')"
    );
    assert!(error("[[routes]]\npath = \"/a b\"\nkind = \"health\"\n").contains("not a route path"));
    assert_eq!(
        error("\n[[routes]]\nkind = \"health\"\n"),
        "config.toml:2: routes[0]: missing key 'path'"
    );
}

#[test]
fn at_least_one_route() {
    assert_eq!(
        error("workers = 1\n"),
        "config.toml: routes: at least one [[routes]] entry is required (e.g. path = \"/health\", \
         kind = \"health\")"
    );
}

#[test]
fn bad_top_level_values() {
    assert_eq!(
        error(&with_route("listen = \"0.0.0.0\"")),
        "config.toml:1: listen: \"0.0.0.0\" is not a socket address (use e.g. \"0.0.0.0:8080\" \
         or \"[::]:8080\")"
    );
    assert_eq!(
        error(&with_route("io_driver = \"epoll\"")),
        "config.toml:1: io_driver: \"epoll\" is not one of: auto, uring, poll"
    );
    assert_eq!(
        error(&with_route("io_uring_setup = \"sqpoll\"")),
        "config.toml:1: io_uring_setup: \"sqpoll\" is not one of: default, coop_taskrun, defer_taskrun"
    );
    assert_eq!(
        error(&with_route("receive = \"multishot\"")),
        "config.toml:1: receive: \"multishot\" is not one of: auto, per_read, ring"
    );
}

#[test]
fn invalid_toml() {
    assert_eq!(
        error("listen = \"a\"\nlisten = \"b\"\n"),
        "config.toml:2: invalid TOML: duplicate key (at `listen`)"
    );
    assert!(error("workers = \n").starts_with("config.toml:1: invalid TOML: "));
}

#[test]
fn routes_written_as_a_single_table() {
    assert_eq!(
        error("[routes]\npath = \"/\"\nkind = \"health\"\n"),
        "config.toml:1: routes: each route is a [[routes]] table (double brackets), or \
         routes = [{ path = ..., kind = ... }]"
    );
}

#[test]
fn client_keys_are_read_and_checked() {
    let config = parse(
        &with_route(
            r#"
[limits]
client_id = "header:X-Api-Key"
trusted_proxies = ["10.0.0.0/8"]
forwarded_header = "forwarded"
exempt = []
deny = ["192.0.2.0/24", "2001:db8::/32"]
deny_action = "close"
ws_max_connections_per_user = 5
connections_per_minute = 30
ban_after_violations = 3
ban_duration = "1h"
client_messages_per_minute = 600
client_bytes_per_minute = "1MiB"
rate_limit_requests = 120
mode = "shadow"
"#,
        ),
        "config.toml",
    )
    .unwrap();
    let clients = &config.clients;
    assert_eq!(
        clients.client_id,
        ClientIdSource::Header("x-api-key".into())
    );
    assert!(
        clients
            .trusted_proxies
            .contains("10.1.2.3".parse().unwrap())
    );
    assert_eq!(clients.forwarded_header, ForwardedHeader::Forwarded);
    assert!(clients.exempt.is_empty());
    assert!(clients.deny.contains("2001:db8::1".parse().unwrap()));
    assert_eq!(clients.deny_action, DenyAction::Close);
    assert_eq!(clients.max_concurrent_connections, 5);
    assert_eq!(clients.connections_per_minute, 30);
    assert_eq!(clients.ban_after_violations, 3);
    assert_eq!(clients.ban_duration, Duration::from_secs(3600));
    assert_eq!(clients.client_messages_per_minute, 600);
    assert_eq!(clients.client_bytes_per_minute, 1 << 20);
    assert_eq!(clients.mode, LimitMode::Shadow);
    assert_eq!(config.limits.request_rate.per_minute, 120);
    let route = &config.routes[0];
    assert_eq!(route.limits.request_rate.per_minute, 120, "inherited");
    assert!(!route.limits.request_rate.own_budget);
    assert_eq!(route.limits.mode, LimitMode::Shadow);
    assert_eq!(ClientLimits::default().exempt, loopback());
}

#[test]
fn a_route_with_its_own_request_quota_gets_its_own_budget() {
    let config = parse(
        r#"
[limits]
rate_limit_requests = 600
[[routes]]
path = "/login"
kind = "health"
[routes.limits]
rate_limit_requests = 10
burst = 2
rate_limit_headers = true
"#,
        "config.toml",
    )
    .unwrap();
    let rate = config.routes[0].limits.request_rate;
    assert_eq!((rate.per_minute, rate.burst), (10, 2));
    assert!(rate.own_budget && rate.headers);
}

#[test]
fn client_key_errors_name_the_key_and_line() {
    assert_eq!(
        error(&with_route("[limits]\ndeny = [\"10.0.0.0/33\"]")),
        "config.toml:2: limits.deny: \"10.0.0.0/33\" is not an address range: \
         \"33\" is not a valid prefix length (0-32 for IPv4, 0-128 for IPv6)"
    );
    assert_eq!(
        error(&with_route("[limits]\nclient_id = \"cookie:x\"")),
        "config.toml:2: limits.client_id: \"cookie:x\" is not a client identity \
         (use \"ip\", \"header:NAME\", \"query:NAME\" or \"auth\")"
    );
    assert_eq!(
        error(&with_route("[limits]\nmode = \"dry\"")),
        "config.toml:2: limits.mode: \"dry\" is not one of: enforce, shadow"
    );
    assert_eq!(
        error(&with_route("[limits]\nforwarded_header = \"X-Real-IP\"")),
        "config.toml:2: limits.forwarded_header: \"X-Real-IP\" is not one of: \
         x-forwarded-for, forwarded"
    );
    assert_eq!(
        error(
            "[[routes]]\npath = \"/a\"\nkind = \"health\"\n[routes.limits]\n\
             forwarded_header = \"forwarded\"\n"
        ),
        "config.toml:5: routes[0].limits.forwarded_header: \
         forwarded_header applies to the whole server \
         (it runs before a request names its route); set it in [limits]"
    );
    assert_eq!(
        error(
            "[[routes]]\npath = \"/a\"\nkind = \"health\"\n[routes.limits]\n\
             max_concurrent_connections = 3\n"
        ),
        "config.toml:5: routes[0].limits.max_concurrent_connections: \
         max_concurrent_connections applies to the whole server \
         (it runs before a request names its route); set it in [limits]"
    );
    assert_eq!(
        error("[[routes]]\npath = \"/a\"\nkind = \"health\"\nallowed_clients = []\n"),
        "config.toml:4: routes[0].allowed_clients: only stats, metrics, dashboard and publish \
         routes take allowed_clients"
    );
}

#[test]
fn broadcast_and_publish_routes() {
    let config = parse(
        "[[routes]]\npath = \"/room\"\nkind = \"broadcast\"\ntopic = \"lobby\"\n\
         echo_to_sender = false\n[routes.limits]\nslow_consumer = \"keep_latest\"\n\
         max_backpressure = \"64KiB\"\nslow_consumer_code = 1013\n\
         [[routes]]\npath = \"/pub/{topic}\"\nkind = \"publish\"\n\
         token = \"0123456789abcdef\"\nallowed_clients = [\"10.0.0.0/8\"]\n",
        "config.toml",
    )
    .unwrap();
    let room = &config.routes[0];
    assert_eq!(room.path, "/room");
    assert_eq!(
        room.kind,
        RouteKind::Broadcast {
            topic: TopicSource::Fixed("lobby".into()),
            echo_to_sender: false,
            subprotocols: Vec::new(),
        }
    );
    assert_eq!(room.ws.max_backpressure, 64 * 1024);
    assert_eq!(room.ws.slow_consumer_code, 1013);
    assert_eq!(
        room.ws.slow_consumer,
        ringstream_engine::subscriber_queue::SlowConsumer::KeepLatest
    );
    assert_eq!(config.routes[1].path, "/pub/");
    assert!(matches!(
        &config.routes[1].kind,
        RouteKind::Publish { topic: TopicSource::Path, token: Some(t), .. } if t == "0123456789abcdef"
    ));
    for (text, message) in [
        (
            "[[routes]]\npath = \"/b\"\nkind = \"broadcast\"\n",
            "config.toml:3: routes[0]: a broadcast route needs a topic: end its path with \
             /{topic} or set topic = \"name\"",
        ),
        (
            "[[routes]]\npath = \"/b/{topic}\"\nkind = \"broadcast\"\ntopic = \"x\"\n",
            "config.toml:4: routes[0].topic: the path already names the topic with {topic}; \
             remove one of the two",
        ),
        (
            "[[routes]]\npath = \"/b/{room}\"\nkind = \"broadcast\"\n",
            "config.toml:3: routes[0]: a broadcast route needs a topic: end its path with \
             /{topic} or set topic = \"name\"",
        ),
        (
            "[[routes]]\npath = \"/b/{topic}\"\nkind = \"echo\"\n",
            "config.toml:2: routes[0].path: \"/b/{topic}\" holds a placeholder; only broadcast \
             and publish paths may, and only a final /{topic}",
        ),
        (
            "[[routes]]\npath = \"/b\"\nkind = \"broadcast\"\ntopic = \"a/b\"\n",
            "config.toml:4: routes[0].topic: \"a/b\" is not a topic name (1 to 128 printable \
             ASCII characters, no '/' or spaces)",
        ),
        (
            "[[routes]]\npath = \"/p/{topic}\"\nkind = \"publish\"\ntoken = \"short\"\n",
            "config.toml:4: routes[0].token: a token is at least 16 printable ASCII characters, \
             no spaces",
        ),
        (
            "[[routes]]\npath = \"/e\"\nkind = \"echo\"\ntoken = \"0123456789abcdef\"\n",
            "config.toml:4: routes[0].token: only publish routes take token",
        ),
        (
            "[[routes]]\npath = \"/b/{topic}\"\nkind = \"broadcast\"\n[routes.limits]\n\
             slow_consumer = \"block\"\n",
            "config.toml:5: routes[0].limits.slow_consumer: \"block\" is not one of: close, drop, \
             keep_latest",
        ),
        (
            "[[routes]]\npath = \"/b/{topic}\"\nkind = \"broadcast\"\n[routes.limits]\n\
             slow_consumer_code = 1011\n",
            "config.toml:5: routes[0].limits.slow_consumer_code: 1011 is not 1008 (policy \
             violation) or 1013 (try again later)",
        ),
    ] {
        assert_eq!(error(text), message, "{text}");
    }
}

#[test]
fn sink_routes() {
    let config = parse(
        "[[routes]]\npath = \"/t\"\nkind = \"sink\"\nsink_file = \"/var/log/t.jsonl\"\n\
         sink_max_bytes = \"10MiB\"\nsink_keep = 3\n[[routes]]\npath = \"/c\"\nkind = \"sink\"\n",
        "config.toml",
    )
    .unwrap();
    assert_eq!(
        config.routes[0].kind,
        RouteKind::Sink {
            file: Some(ringstream_engine::sink_file::SinkFileConfig {
                path: "/var/log/t.jsonl".into(),
                max_bytes: 10 * 1024 * 1024,
                keep: 3,
            }),
            subprotocols: Vec::new(),
        }
    );
    assert_eq!(
        config.routes[1].kind,
        RouteKind::Sink {
            file: None,
            subprotocols: Vec::new()
        }
    );
    for (text, message) in [
        (
            "[[routes]]\npath = \"/t\"\nkind = \"sink\"\nsink_keep = 3\n",
            "config.toml:4: routes[0].sink_keep: sink_keep applies to a sink file; set \
             sink_file = \"PATH\" as well",
        ),
        (
            "[[routes]]\npath = \"/t\"\nkind = \"sink\"\nsink_file = \"x\"\nsink_keep = 0\n",
            "config.toml:5: routes[0].sink_keep: 0 is out of range (1..=1000)",
        ),
        (
            "[[routes]]\npath = \"/t\"\nkind = \"echo\"\nsink_file = \"x\"\n",
            "config.toml:4: routes[0].sink_file: only sink routes take sink_file",
        ),
    ] {
        assert_eq!(error(text), message, "{text}");
    }
}

#[test]
fn files_routes() {
    let config = parse(
        "[[routes]]\npath = \"/dl/\"\nkind = \"files\"\nroot = \"/srv\"\nindex = \"index.html\"\n\
         hidden = true\nattachment = true\nmax_ranges = 0\nchunk_size = \"256KiB\"\n\
         [routes.limits]\nrate_limit_bandwidth = \"1MiB\"\nclient_bandwidth = \"2MiB\"\n\
         global_bandwidth = \"100MiB\"\nrate_after = \"4MiB\"\ndownload_timeout = \"2h\"\n",
        "config.toml",
    )
    .unwrap();
    let route = &config.routes[0];
    assert_eq!(
        route.kind,
        RouteKind::Files(Box::new(FilesConfig {
            index: Some("index.html".into()),
            allow_hidden: true,
            attachment: true,
            max_ranges: 0,
            chunk_size: 256 * 1024,
            ..FilesConfig::new("/srv")
        }))
    );
    let mib = 1024 * 1024;
    assert_eq!(route.limits.bandwidth.per_connection, mib);
    assert_eq!(route.limits.bandwidth.per_client, 2 * mib);
    assert_eq!(route.limits.bandwidth.global, 100 * mib);
    assert_eq!(route.limits.bandwidth.rate_after, 4 * mib);
    assert_eq!(route.limits.download_timeout, Duration::from_secs(7200));
    for (text, message) in [
        (
            "[[routes]]\npath = \"/f/\"\nkind = \"files\"\n",
            "config.toml:3: routes[0]: a files route needs a root directory (add root = \
             \"./public\")",
        ),
        (
            "[[routes]]\npath = \"/f/\"\nkind = \"files\"\nroot = \"x\"\nmax_ranges = 5\n",
            "config.toml:5: routes[0].max_ranges: 5 is not supported: 1 honours one range per \
             request, 0 none (multipart/byteranges is not built)",
        ),
        (
            "[[routes]]\npath = \"/f/\"\nkind = \"files\"\nroot = \"x\"\nindex = \"../x\"\n",
            "config.toml:5: routes[0].index: \"../x\" is not a file name",
        ),
        (
            "[[routes]]\npath = \"/e\"\nkind = \"echo\"\nroot = \"x\"\n",
            "config.toml:4: routes[0].root: only files routes take root",
        ),
    ] {
        assert_eq!(error(text), message, "{text}");
    }
}

#[test]
fn upload_routes() {
    let config = parse(
        "[[routes]]\npath = \"/up/\"\nkind = \"upload\"\nupload_dir = \"/var/up\"\n\
         max_upload_size = \"10GiB\"\noverwrite = true\nfsync = true\nmax_uploads_per_client = 2\n",
        "config.toml",
    )
    .unwrap();
    assert_eq!(
        config.routes[0].kind,
        RouteKind::Upload(Box::new(UploadConfig {
            max_upload_size: 10 * 1024 * 1024 * 1024,
            overwrite: true,
            fsync: true,
            max_uploads_per_client: 2,
            ..UploadConfig::new("/var/up")
        }))
    );
    assert_eq!(
        error("[[routes]]\npath = \"/up/\"\nkind = \"upload\"\n"),
        "config.toml:3: routes[0]: an upload route needs a directory (add upload_dir = \
         \"./uploads\")"
    );
    assert_eq!(
        error("[[routes]]\npath = \"/f/\"\nkind = \"files\"\nroot = \"x\"\nfsync = true\n"),
        "config.toml:5: routes[0].fsync: only upload routes take fsync"
    );
}
