//! The auth hook of any route (`auth = "http://127.0.0.1:8000/auth"`): before a request is
//! answered, upgraded or forwarded, ringstream asks the app, with the original method, target,
//! `Authorization` and `Cookie`, who may. The app keeps its auth; the streaming stays here.
//!
//! A 2xx allows; its `X-Allowed-Topics` (comma-separated names) restricts which topics the
//! client may join or publish to (403 for others), and its `X-Client-Id` names the client for
//! the per-client limits when `client_id = "auth"`. 401 and 403 go back to the client (with
//! the app's `WWW-Authenticate`). Anything else, a failed connection or a timeout answers 503
//! (`auth_failure = "closed"`) or allows (`"open"`). Answers are kept per credential (a
//! SHA-256 of its `Authorization` and `Cookie` values) for `auth_cache` ([`cache`]).

pub mod cache;

use std::io::Write;

use ringstream_protocol::http::{Header, Request};
use sha2::{Digest, Sha256};

use crate::config::AuthConfig;
use crate::routes::ask::{Ask, Joins, Upgrade};
use crate::routes::broadcast::publish::PublishHead;
use crate::routes::proxy::forward::Hop;

/// Longest `X-Allowed-Topics` value read.
const MAX_TOPICS_FIELD: usize = 8 * 1024;
/// Longest `X-Client-Id` value kept (a longer one is cut: the name is only ever hashed).
const MAX_CLIENT_ID: usize = 1024;

/// A request's question to the auth endpoint, captured while its head was at hand.
#[derive(Debug)]
pub struct AuthAsk {
    /// The request to send to the endpoint.
    pub head: Vec<u8>,
    /// The credential's cache key.
    pub key: [u8; 32],
}

impl AuthAsk {
    /// The question `request` (from `hop`) puts to `auth`.
    pub fn capture(request: &Request<'_, '_>, auth: &AuthConfig, hop: Hop) -> Self {
        let mut head = Vec::with_capacity(256);
        let _ = write!(
            head,
            "GET {} HTTP/1.1\r\nHost: {}\r\nX-Original-Method: {}\r\nX-Original-URI: {}\r\n",
            auth.path,
            auth.host,
            request.method.as_str(),
            request.target
        );
        let mut credential = Sha256::new();
        for header in request.headers {
            let name = header.name;
            if name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("cookie") {
                head.extend_from_slice(name.as_bytes());
                head.extend_from_slice(b": ");
                head.extend_from_slice(header.value);
                head.extend_from_slice(b"\r\n");
                credential.update(name.to_ascii_lowercase().as_bytes());
                credential.update([0]);
                credential.update(header.value);
                credential.update([0]);
            }
        }
        let _ = write!(head, "X-Forwarded-For: {}\r\n", hop.peer);
        if let Some(host) = request.host {
            head.extend_from_slice(b"X-Forwarded-Host: ");
            head.extend_from_slice(host);
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        Self {
            head,
            key: credential.finalize().into(),
        }
    }
}

/// What the endpoint's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A 2xx: the request goes on, within what the grant allows.
    Allow(Grant),
    /// 401 or 403, passed to the client with the app's challenge.
    Deny {
        /// 401 or 403.
        status: u16,
        /// The app's `WWW-Authenticate` value, for a 401.
        challenge: Option<Vec<u8>>,
    },
    /// Any other answer.
    Failed,
}

/// What a 2xx allows beyond the request itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grant {
    /// `X-Allowed-Topics`: the topics the client may join or publish to (`None`: any).
    pub topics: Option<Vec<Box<str>>>,
    /// `X-Client-Id`: who the client is, for the per-client limits (`client_id = "auth"`).
    pub client: Option<Box<[u8]>>,
}

impl Grant {
    /// Whether what `ask` asks stays within the grant: a broadcast join or a publish names a
    /// topic the grant lists (when it lists any).
    pub fn allows(&self, ask: &Ask) -> bool {
        let Some(topics) = &self.topics else {
            return true;
        };
        let topic = match ask {
            Ask::Upgrade(Ok(Upgrade {
                joins: Joins::Topic(topic, _),
                ..
            })) => topic,
            Ask::Publish(PublishHead::Publish { topic, .. }) => topic,
            _ => return true,
        };
        topics.iter().any(|allowed| allowed == topic)
    }
}

/// The verdict of an answer with `status` and `headers`.
pub fn verdict(status: u16, headers: &[Header<'_>]) -> Verdict {
    let field = |name: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    match status {
        200..=299 => {
            let topics = field("x-allowed-topics").map(|value| {
                let value = &value[..value.len().min(MAX_TOPICS_FIELD)];
                String::from_utf8_lossy(value)
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(Box::from)
                    .collect()
            });
            let client = field("x-client-id")
                .map(|value| value.trim_ascii())
                .filter(|value| !value.is_empty())
                .map(|value| Box::from(&value[..value.len().min(MAX_CLIENT_ID)]));
            Verdict::Allow(Grant { topics, client })
        }
        401 | 403 => Verdict::Deny {
            status,
            challenge: (status == 401)
                .then(|| field("www-authenticate").map(<[u8]>::to_vec))
                .flatten(),
        },
        _ => Verdict::Failed,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::config::UpstreamAddr;
    use ringstream_protocol::http::{HEADER_SLOTS, HeadLimits, parse_request};
    use std::mem::MaybeUninit;

    fn capture(raw: &str) -> AuthAsk {
        let mut slots = [const { MaybeUninit::uninit() }; HEADER_SLOTS];
        let request = parse_request(raw.as_bytes(), &mut slots, &HeadLimits::default())
            .unwrap()
            .unwrap();
        let auth = AuthConfig::new(
            UpstreamAddr::Tcp("127.0.0.1:8000".parse().unwrap()),
            "127.0.0.1:8000".into(),
            "/auth".into(),
        );
        let hop = Hop {
            peer: "203.0.113.9".parse().unwrap(),
            trusted: false,
        };
        AuthAsk::capture(&request, &auth, hop)
    }

    #[test]
    fn the_question_carries_the_original_request_and_its_credentials_only() {
        let ask = capture(
            "POST /publish/news?x=1 HTTP/1.1\r\nHost: app.example\r\nAuthorization: Bearer t\r\n\
             Cookie: s=1\r\nX-Other: no\r\nContent-Length: 3\r\n\r\n",
        );
        assert_eq!(
            String::from_utf8(ask.head).unwrap(),
            "GET /auth HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nX-Original-Method: POST\r\n\
             X-Original-URI: /publish/news?x=1\r\nAuthorization: Bearer t\r\nCookie: s=1\r\n\
             X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Host: app.example\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn the_cache_key_is_the_credential_and_nothing_else() {
        let a = capture("GET /a HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer one\r\n\r\n");
        let b = capture("GET /b?q HTTP/1.1\r\nHost: other\r\nAuthorization: Bearer one\r\n\r\n");
        let c = capture("GET /a HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer two\r\n\r\n");
        let d = capture("GET /a HTTP/1.1\r\nHost: h\r\nCookie: Bearer one\r\n\r\n");
        assert_eq!(a.key, b.key);
        assert_ne!(a.key, c.key);
        assert_ne!(a.key, d.key, "the field's name is part of the key");
    }

    #[test]
    fn verdicts_and_grants() {
        let h = |name: &'static str, value: &'static [u8]| Header { name, value };
        assert_eq!(verdict(204, &[]), Verdict::Allow(Grant::default()));
        let Verdict::Allow(grant) = verdict(200, &[h("X-Allowed-Topics", b" news , chat,,")])
        else {
            panic!("allowed");
        };
        assert_eq!(grant.topics, Some(vec!["news".into(), "chat".into()]));
        assert_eq!(grant.client, None);
        let Verdict::Allow(named) = verdict(200, &[h("x-client-id", b" user-7 ")]) else {
            panic!("allowed");
        };
        assert_eq!(named.client.as_deref(), Some(&b"user-7"[..]));
        assert_eq!(named.topics, None);
        let Verdict::Allow(blank) = verdict(200, &[h("X-Client-Id", b"  ")]) else {
            panic!("allowed");
        };
        assert_eq!(blank.client, None, "a blank name names nobody");
        let join = |topic: &str| {
            Ask::Upgrade(Ok(Upgrade {
                accepted: crate::conn::ws::Accepted::for_tests(),
                joins: Joins::Topic(topic.into(), false),
            }))
        };
        assert!(grant.allows(&join("news")));
        assert!(!grant.allows(&join("secret")));
        assert!(grant.allows(&Ask::Plain));
        assert_eq!(
            verdict(401, &[h("WWW-Authenticate", b"Bearer realm=\"app\"")]),
            Verdict::Deny {
                status: 401,
                challenge: Some(b"Bearer realm=\"app\"".to_vec())
            }
        );
        assert_eq!(
            verdict(403, &[h("WWW-Authenticate", b"x")]),
            Verdict::Deny {
                status: 403,
                challenge: None
            }
        );
        for status in [301, 404, 500, 503] {
            assert_eq!(verdict(status, &[]), Verdict::Failed, "{status}");
        }
    }
}
