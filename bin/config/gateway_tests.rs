//! Loader tests of the gateway's keys: the buffer budget, proxy routes and their health
//! checks, the auth hook and the access log, each with the exact shape of its errors.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::time::Duration;

use ringstream_engine::config::RouteKind;

use super::parse;
use super::tests::{error, with_route};

#[test]
fn max_buffered_bytes_holds_at_least_one_connections_largest_message() {
    let config = parse(&with_route("[limits]\nmax_buffered_bytes = \"8MiB\""), "c").unwrap();
    assert_eq!(config.connection_limits.max_buffered_bytes, 8 << 20);
    let default = parse(&with_route(""), "c").unwrap();
    assert_eq!(default.connection_limits.max_buffered_bytes, 256 << 20);
    let large = "[[routes]]\npath = \"/ws\"\nkind = \"echo\"\n[routes.limits]\nmax_message_size = \"64MiB\"\n";
    assert_eq!(
        error(&format!("[limits]\nmax_buffered_bytes = \"1MiB\"\n{large}")),
        "config.toml:2: limits.max_buffered_bytes: \"1MiB\" is less than one connection may need \
         to buffer (67108878B: the largest max_message_size or max_header_bytes); raise it or lower \
         those"
    );
    assert_eq!(
        error(&with_route("[limits]\nmax_buffered_bytes = \"1KiB\"")),
        "config.toml:2: limits.max_buffered_bytes: \"1KiB\" is out of range (64KiB..=1024GiB)"
    );
    assert!(
        error(&format!(
            "{}[routes.limits]\nmax_buffered_bytes = \"1GiB\"\n",
            with_route("")
        ))
        .contains(
            "routes[0].limits.max_buffered_bytes: max_buffered_bytes applies to the whole server"
        )
    );
}

#[test]
fn proxy_routes_and_their_errors() {
    use ringstream_engine::config::{Balance, UpstreamAddr};
    let route = |keys: &str| format!("[[routes]]\npath = \"/api/\"\nkind = \"proxy\"\n{keys}");
    let config = parse(
        &route(
            "upstreams = [\"127.0.0.1:8000\", \"[::1]:9000\", \"unix:/run/app.sock\"]\n\
             connect_timeout = \"2s\"\nupstream_timeout = \"30s\"\nbalance = \"round_robin\"\n\
             max_fails = 3\nfail_timeout = \"20s\"\npool_idle_timeout = \"1s\"\npool_size = 8\n\
             strip_prefix = \"/api\"\nhost = \"app.internal:8000\"\n",
        ),
        "c",
    )
    .unwrap();
    let RouteKind::Proxy(proxy) = &config.routes[0].kind else {
        panic!("not a proxy: {:?}", config.routes[0].kind);
    };
    assert_eq!(
        proxy.upstreams,
        [
            UpstreamAddr::Tcp("127.0.0.1:8000".parse().unwrap()),
            UpstreamAddr::Tcp("[::1]:9000".parse().unwrap()),
            UpstreamAddr::Unix("/run/app.sock".into()),
        ]
    );
    assert_eq!(proxy.connect_timeout, Duration::from_secs(2));
    assert_eq!(proxy.upstream_timeout, Duration::from_secs(30));
    assert_eq!(proxy.balance, Balance::RoundRobin);
    assert_eq!((proxy.max_fails, proxy.pool_size), (3, 8));
    assert_eq!(proxy.fail_timeout, Duration::from_secs(20));
    assert_eq!(proxy.pool_idle_timeout, Duration::from_secs(1));
    assert_eq!(proxy.strip_prefix, "/api");
    assert_eq!(proxy.host.as_deref(), Some("app.internal:8000"));
    assert_eq!(
        error(&route("")),
        "config.toml:3: routes[0]: a proxy route needs its upstreams (add upstreams = \
         [\"127.0.0.1:8000\"])"
    );
    assert_eq!(
        error(&route("upstreams = [\"localhost:8000\"]")),
        "config.toml:4: routes[0].upstreams: \"localhost:8000\" is not an upstream \
         (\"HOST_IP:PORT\", \"[IPv6]:PORT\" or \"unix:/path/to.sock\")"
    );
    assert_eq!(
        error(&route(
            "upstreams = [\"127.0.0.1:1\"]\nbalance = \"random\""
        )),
        "config.toml:5: routes[0].balance: \"random\" is not a balance (expected \
         \"least_conn\" or \"round_robin\")"
    );
    assert_eq!(
        error(&route(
            "upstreams = [\"127.0.0.1:1\"]\nstrip_prefix = \"api\""
        )),
        "config.toml:5: routes[0].strip_prefix: \"api\" is not a path prefix (it starts with '/')"
    );
    assert!(
        error("[[routes]]\npath = \"/h\"\nkind = \"health\"\nupstreams = [\"127.0.0.1:1\"]")
            .contains("only proxy routes take upstreams"),
    );
}

#[test]
fn auth_hooks_and_their_errors() {
    use ringstream_engine::config::{AuthFailure, UpstreamAddr};
    let route = |keys: &str| format!("[[routes]]\npath = \"/h\"\nkind = \"health\"\n{keys}");
    let config = parse(
        &route(
            "auth = \"http://127.0.0.1:8000/auth?x=1\"\nauth_failure = \"open\"\n\
             auth_cache = \"30s\"\nauth_timeout = \"2s\"\n",
        ),
        "c",
    )
    .unwrap();
    let auth = config.routes[0].auth.as_deref().unwrap();
    assert_eq!(
        auth.endpoint,
        UpstreamAddr::Tcp("127.0.0.1:8000".parse().unwrap())
    );
    assert_eq!(
        (auth.host.as_str(), auth.path.as_str()),
        ("127.0.0.1:8000", "/auth?x=1")
    );
    assert_eq!(auth.failure, AuthFailure::Open);
    assert_eq!(auth.cache, Duration::from_secs(30));
    assert_eq!(auth.timeout, Duration::from_secs(2));
    let plain = parse(&route("auth = \"http://[::1]:9000\""), "c").unwrap();
    let auth = plain.routes[0].auth.as_deref().unwrap();
    assert_eq!(
        (auth.path.as_str(), auth.failure),
        ("/", AuthFailure::Closed)
    );
    assert_eq!(
        error(&route("auth = \"https://app.example/auth\"")),
        "config.toml:4: routes[0].auth: \"https://app.example/auth\" is not an auth endpoint \
         (\"http://IP:PORT/path\", e.g. \"http://127.0.0.1:8000/auth\")"
    );
    assert_eq!(
        error(&route(
            "auth = \"http://127.0.0.1:1/a\"\nauth_failure = \"maybe\""
        )),
        "config.toml:5: routes[0].auth_failure: \"maybe\" is not an auth failure mode (expected \
         \"closed\" or \"open\")"
    );
    assert_eq!(
        error(&route("auth_cache = \"10s\"")),
        "config.toml:4: routes[0].auth_cache: auth_cache needs auth (the endpoint's URL) on the \
         same route"
    );
}

#[test]
fn clients_named_by_the_auth_hook_need_a_route_with_one() {
    use ringstream_engine::limits::identity::ClientIdSource;
    let config = parse(
        "[limits]\nclient_id = \"auth\"\n[[routes]]\npath = \"/h\"\nkind = \"health\"\n\
         auth = \"http://127.0.0.1:8000/auth\"\n",
        "c",
    )
    .unwrap();
    assert_eq!(config.clients.client_id, ClientIdSource::Auth);
    assert_eq!(
        error(&with_route("[limits]\nclient_id = \"auth\"")),
        "config.toml:2: limits.client_id: \"auth\" names clients by the answer of a route's auth \
         hook, and no route has `auth`"
    );
}

#[test]
fn proxy_health_checks() {
    let route = |keys: &str| {
        format!(
            "[[routes]]\npath = \"/api/\"\nkind = \"proxy\"\nupstreams = [\"127.0.0.1:1\"]\n{keys}"
        )
    };
    let config = parse(
        &route("health_check = \"/healthz\"\nhealth_interval = \"2s\""),
        "c",
    )
    .unwrap();
    let RouteKind::Proxy(proxy) = &config.routes[0].kind else {
        panic!("not a proxy");
    };
    assert_eq!(proxy.health_check.as_deref(), Some("/healthz"));
    assert_eq!(proxy.health_interval, Duration::from_secs(2));
    assert_eq!(
        error(&route("health_check = \"healthz\"")),
        "config.toml:5: routes[0].health_check: \"healthz\" is not a path (it starts with '/' and \
         holds no spaces)"
    );
}

#[test]
fn access_logs_and_their_errors() {
    use ringstream_engine::config::{AccessLogFormat, AccessLogTarget};
    let config = parse(
        &with_route("access_log = \"/var/log/rs.log\"\naccess_log_format = \"json\""),
        "c",
    )
    .unwrap();
    let log = config.access_log.unwrap();
    assert_eq!(log.target, AccessLogTarget::File("/var/log/rs.log".into()));
    assert_eq!(log.format, AccessLogFormat::Json);
    let stdout = parse(&with_route("access_log = \"stdout\""), "c").unwrap();
    assert_eq!(
        stdout.access_log.map(|log| (log.target, log.format)),
        Some((AccessLogTarget::Stdout, AccessLogFormat::Combined))
    );
    assert_eq!(parse(&with_route(""), "c").unwrap().access_log, None);
    assert_eq!(
        error(&with_route(
            "access_log = \"stdout\"\naccess_log_format = \"clf\""
        )),
        "config.toml:2: access_log_format: \"clf\" is not one of: combined, json"
    );
    assert_eq!(
        error(&with_route("access_log_format = \"json\"")),
        "config.toml:1: access_log_format: access_log_format applies to an access log; set \
         access_log = \"PATH\" or \"stdout\" as well"
    );
    assert_eq!(
        error(&with_route("access_log = \"/var/log/\"")),
        "config.toml:1: access_log: \"/var/log/\" is not a file path"
    );
}
