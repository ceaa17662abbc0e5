//! The `publish` route: `POST /publish/{topic}` delivers its body to the topic's members
//! (notifications out). The checks that come before the body is read (method, allowlist,
//! token, topic name) and the answer.

use std::fmt::Write as _;
use std::net::IpAddr;

use ringstream_protocol::http::{HttpDate, Method, Request};

use crate::config::{Route, RouteKind};
use crate::routes::Refused;
use crate::routes::plain::{MethodClass, Page};
use crate::server::context::WorkerContext;
use ringstream_protocol::json;

const JSON: &[u8] = b"application/json";
/// `Allow` of a 405 on a publish route.
const ALLOW_POST: &[(&str, &[u8])] = &[("Allow", b"POST")];
/// `WWW-Authenticate` of a 401 (RFC 6750 §3).
const BEARER_CHALLENGE: &[(&str, &[u8])] = &[("WWW-Authenticate", b"Bearer")];

/// What a publish request is, decided from its head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishHead {
    /// Publish the body to this topic, as a text message or a binary one.
    Publish {
        /// The topic's name.
        topic: Box<str>,
        /// `Content-Type` is `text/*` or `application/json`: a text message.
        text: bool,
    },
    /// Refuse with this status (405, 404, 401 or 403).
    Refuse(u16),
}

/// A publish admitted before its body is read.
#[derive(Debug)]
pub struct Admitted {
    /// The topic's name.
    topic: Box<str>,
    /// Whether the body is a text message.
    text: bool,
    /// The most the body may hold: the route's `max_message_size`, or `max_body_size` when
    /// smaller (413 past it).
    pub max_body_size: u64,
}

/// Admits a publish before its body is read: 403 (address not allowed), then what the head
/// asked ([`decide`]: 405 with `Allow`, 401 with the bearer challenge, 404).
pub fn admit(
    route: &Route,
    head: PublishHead,
    client: Option<IpAddr>,
) -> Result<Admitted, Refused> {
    if !allowed(route, client) {
        return Err(Refused::status(403));
    }
    match head {
        PublishHead::Publish { topic, text } => Ok(Admitted {
            topic,
            text,
            max_body_size: route.limits.max_body_size.min(route.ws.max_message_size),
        }),
        PublishHead::Refuse(405) => Err(Refused::with(405, ALLOW_POST)),
        PublishHead::Refuse(401) => Err(Refused::with(401, BEARER_CHALLENGE)),
        PublishHead::Refuse(status) => Err(Refused::status(status)),
    }
}

/// Delivers a publish's whole body to its topic's members on every worker: 400 for a text
/// body that is not UTF-8.
pub fn deliver(
    ctx: &WorkerContext,
    route_index: usize,
    admitted: Admitted,
    body: &[u8],
) -> Result<Published, Refused> {
    if admitted.text && std::str::from_utf8(body).is_err() {
        return Err(Refused::status(400));
    }
    let frame = super::encode_frame(admitted.text, body);
    let topics = &ctx.hub.topics;
    let here = topics.get(&admitted.topic);
    let (subscribers, local) = match &here {
        Some(topic) => (topic.total(), ctx.deliver_here(topic, &frame, None).queued),
        None => (0, 0),
    };
    let other_nodes = topics.cluster().map(|cluster| {
        // A topic with no member here is made for the message's trip (and swept after).
        let topic = here.unwrap_or_else(|| topics.get_or_create(&admitted.topic));
        cluster.publish_counted(&topic, &frame)
    });
    let traffic = ctx.route_traffic(Some(route_index));
    traffic.messages_in.add(1);
    traffic.bytes_in.add(body.len() as u64);
    Ok(Published {
        topic: admitted.topic,
        subscribers,
        local_reached: local,
        other_nodes: match other_nodes {
            None => OtherNodes::Alone,
            Some(Some(answer)) => OtherNodes::Asked(answer),
            Some(None) => OtherNodes::Unknown,
        },
    })
}

/// Whether `client` may publish on `route` (its `allowed_clients`); checked before anything
/// else about the request (403).
fn allowed(route: &Route, client: Option<IpAddr>) -> bool {
    match &route.kind {
        RouteKind::Publish {
            allowed_clients, ..
        } => client.is_some_and(|address| allowed_clients.contains(address)),
        _ => false,
    }
}

/// Decides a request on a publish route from its head: `POST` only (405), with the bearer
/// token when one is configured (401), naming a valid topic (404).
pub fn decide(route: &Route, request: &Request<'_, '_>) -> PublishHead {
    let RouteKind::Publish { topic, token, .. } = &route.kind else {
        return PublishHead::Refuse(404);
    };
    if request.method != Method::Post {
        return PublishHead::Refuse(405);
    }
    if let Some(token) = token
        && !bearer_matches(request.header("authorization"), token)
    {
        return PublishHead::Refuse(401);
    }
    let Some(name) = topic.resolve(&route.path, request.path()) else {
        return PublishHead::Refuse(404);
    };
    let text = request.header("content-type").is_some_and(|value| {
        let value = value.trim_ascii_start();
        starts_with_ignore_case(value, b"text/")
            || starts_with_ignore_case(value, b"application/json")
    });
    PublishHead::Publish {
        topic: name.into(),
        text,
    }
}

fn starts_with_ignore_case(value: &[u8], prefix: &[u8]) -> bool {
    value.len() >= prefix.len() && value[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// `Authorization: Bearer <token>`, compared in constant time.
fn bearer_matches(header: Option<&[u8]>, token: &str) -> bool {
    let Some(value) = header else {
        return false;
    };
    let Some(given) = value
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case(b"Bearer "))
        .map(|_| value[7..].trim_ascii())
    else {
        return false;
    };
    let expected = token.as_bytes();
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// What a publish knows of the other nodes.
#[derive(Debug)]
pub enum OtherNodes {
    /// The node is not part of a cluster.
    Alone,
    /// Redis is asked: it answers how many other nodes had members of the topic.
    Asked(tokio::sync::oneshot::Receiver<u64>),
    /// This many other nodes had members of the topic.
    Reached(u64),
    /// Not known: Redis is away, slow, or the link's queue was full (the message did not
    /// reach the other nodes, or did without an answer in time).
    Unknown,
}

/// How long a publish waits for Redis to say how many nodes it reached.
const NODES_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// A message published: the answer's facts.
#[derive(Debug)]
pub struct Published {
    /// The topic's name.
    pub topic: Box<str>,
    /// Members of the topic on every worker of this node when the message was published.
    pub subscribers: u64,
    /// This worker's members the message was queued to.
    pub local_reached: u64,
    /// The other nodes.
    pub other_nodes: OtherNodes,
}

impl Published {
    /// Waits (up to a second) for Redis's count of the other nodes reached.
    pub async fn count_other_nodes(&mut self) {
        if let OtherNodes::Asked(answer) = &mut self.other_nodes {
            let waited = crate::server::runtime::timeout(NODES_ANSWER_WAIT, answer).await;
            self.other_nodes = match waited {
                Some(Ok(nodes)) => OtherNodes::Reached(nodes),
                _ => OtherNodes::Unknown,
            };
        }
    }

    /// Appends the 200 answer: `{"topic":..,"subscribers":..,"local_reached":..}`, and in a
    /// cluster `"other_nodes"`: the nodes with members that Redis handed the message to
    /// (`null` when that is not known).
    pub fn write(&self, date: &HttpDate, close: bool, out: &mut Vec<u8>) {
        let mut body = String::with_capacity(64 + self.topic.len());
        body.push_str("{\"topic\":");
        json::push_string(&mut body, &self.topic);
        let _ = write!(
            body,
            ",\"subscribers\":{},\"local_reached\":{}",
            self.subscribers, self.local_reached
        );
        let _ = match self.other_nodes {
            OtherNodes::Alone => Ok(()),
            OtherNodes::Reached(nodes) => write!(body, ",\"other_nodes\":{nodes}"),
            OtherNodes::Asked(_) | OtherNodes::Unknown => write!(body, ",\"other_nodes\":null"),
        };
        body.push('}');
        let page = Page {
            method: MethodClass::Other,
            date,
            close,
            extra: &[("Cache-Control", b"no-store")],
        };
        page.write(200, JSON, body.as_bytes(), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_match_exactly() {
        assert!(bearer_matches(Some(b"Bearer s3cret"), "s3cret"));
        assert!(bearer_matches(Some(b"bearer  s3cret "), "s3cret"));
        for wrong in [
            &b"Bearer s3cre"[..],
            b"Bearer s3cretx",
            b"Basic s3cret",
            b"s3cret",
            b"",
        ] {
            assert!(!bearer_matches(Some(wrong), "s3cret"), "{wrong:?}");
        }
        assert!(!bearer_matches(None, "s3cret"));
    }
}
