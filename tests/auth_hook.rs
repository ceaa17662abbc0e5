//! The auth hook against the real binary on both drivers, with the app's endpoint on uvicorn
//! (tests/upstreams/app.py): allowed, refused with 401 (its challenge passed on) or 403,
//! failing and timing out (503, or allowed with `auth_failure = "open"`), answers kept per
//! credential, the topics a grant names, and the client it names (`client_id = "auth"`).
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::io::Write;

use support::upstream::{RawUpstream, Uvicorn};
use support::ws::{TEXT, connect_to, frame, upgrade_request};
use support::{DRIVERS, Server, ask, read_response};

/// Routes guarded by `auth` on `app`: a proxy to the app at `/api/`, a broadcast route, a
/// route whose endpoint times out, one whose endpoint fails, and the same failing open.
fn server(driver: &str, app: &Uvicorn) -> Server {
    let endpoint = format!("http://{}", app.addr());
    let config = format!(
        r#"
[[routes]]
path = "/api/"
kind = "proxy"
upstreams = ["{app}"]
auth = "{endpoint}/auth"

[[routes]]
path = "/ws/broadcast/{{topic}}"
kind = "broadcast"
auth = "{endpoint}/auth/topics"

[[routes]]
path = "/slow"
kind = "health"
auth = "{endpoint}/auth/slow"
auth_timeout = "1s"

[[routes]]
path = "/broken"
kind = "health"
auth = "{endpoint}/auth/broken"

[[routes]]
path = "/open"
kind = "health"
auth = "{endpoint}/auth/broken"
auth_failure = "open"

[[routes]]
path = "/stats"
kind = "stats"
"#,
        app = app.addr()
    );
    Server::with_config(&config, &["--workers", "2", "--io-driver", driver])
}

fn get(server: &Server, path: &str, token: Option<&str>) -> support::Response {
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    server.request(
        format!("GET {path} HTTP/1.1\r\nHost: h\r\n{authorization}Connection: close\r\n\r\n")
            .as_bytes(),
    )
}

#[test]
fn the_app_decides_who_may_and_its_refusals_reach_the_client() {
    let app = Uvicorn::start();
    for driver in DRIVERS {
        let server = server(driver, &app);
        let allowed = get(&server, "/api/hello", Some("good-1"));
        assert_eq!(
            (allowed.status, allowed.body.as_slice()),
            (200, &b"hello"[..]),
            "{driver}"
        );
        assert_eq!(
            get(&server, "/api/hello", Some("forbidden-1")).status,
            403,
            "{driver}"
        );
        let unauthorized = get(&server, "/api/hello", None);
        assert_eq!(unauthorized.status, 401, "{driver}");
        assert_eq!(
            unauthorized.header("www-authenticate"),
            Some("Bearer"),
            "{driver}"
        );
        // An endpoint that answers too late, or with 500: 503, or allowed when failures are open.
        let slow = get(&server, "/slow", Some("good-1"));
        assert_eq!(
            (slow.status, slow.header("retry-after")),
            (503, Some("1")),
            "{driver}"
        );
        assert_eq!(
            get(&server, "/broken", Some("good-1")).status,
            503,
            "{driver}"
        );
        assert_eq!(
            get(&server, "/open", Some("good-1")).status,
            200,
            "{driver}"
        );
    }
}

#[test]
fn a_grant_names_the_topics_a_client_may_join() {
    let app = Uvicorn::start();
    for driver in DRIVERS {
        let server = server(driver, &app);
        let auth = "Authorization: Bearer good-news\r\n";
        let (mut member, answer) = connect_to(server.addr, "/ws/broadcast/news", auth);
        assert_eq!(answer.status, 101, "{driver}");
        member.write_all(&frame(true, 0, TEXT, b"hi")).unwrap();
        let mut secret = server.connect();
        secret
            .write_all(&upgrade_request("/ws/broadcast/secret", auth))
            .unwrap();
        assert_eq!(read_response(&mut secret).unwrap().status, 403, "{driver}");
        let mut anonymous = server.connect();
        anonymous
            .write_all(&upgrade_request("/ws/broadcast/news", ""))
            .unwrap();
        assert_eq!(
            read_response(&mut anonymous).unwrap().status,
            401,
            "{driver}"
        );
        drop(member);
    }
}

#[test]
fn answers_are_kept_per_credential_for_auth_cache() {
    let endpoint = RawUpstream::start("record");
    for driver in DRIVERS {
        let config = format!(
            "[[routes]]\npath = \"/guarded\"\nkind = \"health\"\nauth = \"http://{}/check\"\nauth_cache = \"60s\"\n",
            endpoint.addr()
        );
        let server = Server::with_config(&config, &["--workers", "1", "--io-driver", driver]);
        let before = endpoint.requests().len();
        for _ in 0..5 {
            assert_eq!(
                get(&server, "/guarded", Some("one")).status,
                200,
                "{driver}"
            );
        }
        assert_eq!(
            get(&server, "/guarded", Some("two")).status,
            200,
            "{driver}"
        );
        let records = endpoint.wait_for_records(|r| {
            r.iter().filter(|r| r.get("method").is_some()).count() >= before + 2
        });
        let asked: Vec<_> = records
            .iter()
            .filter(|r| r.get("method").is_some())
            .skip(before)
            .collect();
        assert_eq!(
            asked.len(),
            2,
            "{driver}: one question per credential: {asked:?}"
        );
        assert_eq!(asked[0]["target"], "/check", "{driver}");
        let headers = support::upstream::record_headers(asked[0]);
        let value = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            value("authorization").as_deref(),
            Some("Bearer one"),
            "{driver}"
        );
        assert_eq!(
            value("x-original-uri").as_deref(),
            Some("/guarded"),
            "{driver}"
        );
        assert_eq!(
            value("x-original-method").as_deref(),
            Some("GET"),
            "{driver}"
        );
    }
}

#[test]
fn with_client_id_auth_the_client_the_app_names_is_held_to_its_own_limits() {
    let app = Uvicorn::start();
    let endpoint = format!("http://{}", app.addr());
    for driver in DRIVERS {
        let config = format!(
            r#"
[limits]
client_id = "auth"
exempt = []
max_concurrent_connections = 1

[[routes]]
path = "/api/"
kind = "proxy"
upstreams = ["{app}"]
auth = "{endpoint}/auth"
[routes.limits]
rate_limit_requests = 2

[[routes]]
path = "/ws/broadcast/{{topic}}"
kind = "broadcast"
auth = "{endpoint}/auth/topics"
"#,
            app = app.addr()
        );
        let server = Server::with_config(&config, &["--workers", "2", "--io-driver", driver]);
        // One connection from one address carries two users: each has its own request rate.
        let mut stream = server.connect();
        let as_user = |token: &str| {
            format!("GET /api/hello HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {token}\r\n\r\n")
        };
        for _ in 0..2 {
            assert_eq!(ask(&mut stream, as_user("good-a")).status, 200, "{driver}");
        }
        let refused = ask(&mut stream, as_user("good-a"));
        assert_eq!(
            (refused.status, refused.header("retry-after")),
            (429, Some("30")),
            "{driver}"
        );
        assert_eq!(ask(&mut stream, as_user("good-b")).status, 200, "{driver}");
        assert_eq!(ask(&mut stream, as_user("good-a")).status, 429, "{driver}");
        drop(stream);

        // Connections are counted per named client too: user-good-news holds its one.
        let news = "Authorization: Bearer good-news\r\n";
        let (member, answer) = connect_to(server.addr, "/ws/broadcast/news", news);
        assert_eq!(answer.status, 101, "{driver}");
        let mut again = server.connect();
        again
            .write_all(&upgrade_request("/ws/broadcast/news", news))
            .unwrap();
        assert_eq!(read_response(&mut again).unwrap().status, 429, "{driver}");
        let chat = "Authorization: Bearer good-chat\r\n";
        let (other, answer) = connect_to(server.addr, "/ws/broadcast/chat", chat);
        assert_eq!(
            answer.status, 101,
            "{driver}: another user from the same address"
        );
        drop((member, other));
    }
}
