//! Admission of a connection's client, at accept or at its first request head: the allow and
//! deny lists, a trusted proxy's forwarding header, and the client's connection count, rate
//! and ban.

use std::net::IpAddr;
use std::sync::Arc;

use ringstream_limits::client_table::{ClientState, ConnectionPass, Denial, Rule};
use ringstream_limits::identity::{ClientIdSource, ClientKey};
use ringstream_protocol::http::Request;

use super::ClientGate;
use super::refusal::{Refusal, whole_seconds};
use super::shared::Taken;
use crate::cluster::SharedCount;
use crate::config::{DenyAction, LimitMode};
use ringstream_limits::gcra::Decision;

/// `Retry-After` of a 503 while Redis is away under `on_redis_error = "closed"`: about
/// the longest the link waits between two attempts to reconnect.
pub(super) const REDIS_AWAY_RETRY: u64 = 3;

/// What admission decided.
#[derive(Debug)]
pub enum Admission {
    /// Serve the connection; keep the slot until it ends.
    Admit(ClientSlot),
    /// The client is named by its request heads: decide at each (a trusted proxy may carry
    /// many clients' requests on one connection, and a header or query key may change).
    AtFirstRequest,
    /// Refuse it.
    Refuse(Refusal),
}

/// One admitted connection's client: its address, its place in the count, its shared state.
#[derive(Debug)]
pub struct ClientSlot {
    pub(super) address: IpAddr,
    /// The fingerprint of the key its limits are counted under
    /// ([`ringstream_limits::identity::ClientIdentity::fingerprint`]).
    key: u64,
    /// `None` for an exempt client (no per-client rule applies).
    pass: Option<ConnectionPass>,
}

impl ClientSlot {
    /// The client's address (after trusted proxies).
    pub fn address(&self) -> IpAddr {
        self.address
    }

    pub(super) fn limited(&self) -> Option<&Arc<ClientState>> {
        self.pass.as_ref().map(ConnectionPass::client)
    }
}

impl ClientGate {
    /// Admission at accept, from the TCP peer's address alone.
    pub fn on_accept(&self, peer: IpAddr) -> Admission {
        let by_address = self.limits.client_id == ClientIdSource::Ip;
        if !by_address || self.limits.trusted_proxies.contains(peer) {
            // The lists still apply to the proxy's (or the client's) own address right away.
            if let Some(refusal) = self.check_lists(peer, "") {
                return Admission::Refuse(refusal);
            }
            return Admission::AtFirstRequest;
        }
        match self.admit(peer, self.identity.address_key(peer), "") {
            Ok(slot) => Admission::Admit(slot),
            Err(refusal) => Admission::Refuse(refusal),
        }
    }

    /// Admission at each request head of a connection [`Self::on_accept`] deferred: `None`
    /// when the head names the `current` client again (its slot is kept), otherwise the new
    /// client's admission, which takes the connection over (a proxy's pooled connection
    /// carries one client's request, then another's). The client's address is read from every
    /// line of the configured forwarding header when `peer` is a trusted proxy (the other
    /// forwarding header is never read); a client the proxy names by something other than an
    /// address is refused 400, so it can never pass for the proxy (PROTECTIONS.md, "client
    /// identity").
    pub fn on_request(
        &self,
        peer: IpAddr,
        request: &Request<'_, '_>,
        route: &str,
        current: Option<&ClientSlot>,
    ) -> Option<Result<ClientSlot, Refusal>> {
        let (address, key) = match self.identify(peer, request, route) {
            Ok(found) => found,
            Err(refusal) => return Some(Err(refusal)),
        };
        let fingerprint = self.identity.fingerprint(&key);
        if current.is_some_and(|slot| slot.address == address && slot.key == fingerprint) {
            return None;
        }
        Some(self.admit(address, key, route))
    }

    /// Whether a request on a route with an auth hook is admitted only once the hook's answer
    /// named its client (`client_id = "auth"`).
    pub fn names_by_auth(&self) -> bool {
        self.limits.client_id == ClientIdSource::Auth
    }

    /// Before the auth hook of a request that its answer names the client of
    /// ([`Self::names_by_auth`]): the client's address (after trusted proxies), held to the
    /// allow and deny lists; the refusal of a client the lists keep out, or a proxy names by
    /// no address (400).
    pub fn before_auth(
        &self,
        peer: IpAddr,
        request: &Request<'_, '_>,
        route: &str,
    ) -> Result<IpAddr, Refusal> {
        let (address, _) = self.identify(peer, request, route)?;
        match self.check_lists(address, route) {
            Some(refusal) => Err(refusal),
            None => Ok(address),
        }
    }

    /// Admission once the auth hook answered, of the client at `address` that the answer
    /// names `name` (by its address when it names nobody, or when a failure passed it): as
    /// [`Self::on_request`], `None` when that is the `current` client again.
    pub fn after_auth(
        &self,
        address: IpAddr,
        name: Option<&[u8]>,
        route: &str,
        current: Option<&ClientSlot>,
    ) -> Option<Result<ClientSlot, Refusal>> {
        let key = match name.filter(|name| !name.is_empty()) {
            Some(name) => self.identity.named_key(name),
            None => self.identity.address_key(address),
        };
        let fingerprint = self.identity.fingerprint(&key);
        if current.is_some_and(|slot| slot.address == address && slot.key == fingerprint) {
            return None;
        }
        Some(self.admit(address, key, route))
    }

    /// The address and key of the client `request` names (see [`Self::on_request`]).
    fn identify(
        &self,
        peer: IpAddr,
        request: &Request<'_, '_>,
        route: &str,
    ) -> Result<(IpAddr, ClientKey), Refusal> {
        let header = self.identity.forwarded_header().name();
        let lines = request
            .headers
            .iter()
            .filter(|field| field.name.eq_ignore_ascii_case(header))
            .map(|field| field.value);
        let address = match self.identity.client_address(peer, lines) {
            Ok(address) => address,
            Err(unknown) => {
                if self.may_log(self.now()) {
                    tracing::warn!(
                        target: "ringstream::violation",
                        proxy = %peer,
                        route,
                        header,
                        action = "refused",
                        "400: {unknown}"
                    );
                }
                return Err(Refusal {
                    status: 400,
                    retry_after: None,
                    silent: false,
                });
            }
        };
        let key = self
            .identity
            .key(address, |name| request.header(name), request.query());
        Ok((address, key))
    }

    fn admit(&self, address: IpAddr, key: ClientKey, route: &str) -> Result<ClientSlot, Refusal> {
        let fingerprint = self.identity.fingerprint(&key);
        if let Some(refusal) = self.check_lists(address, route) {
            return Err(refusal);
        }
        let exempt = self.limits.exempt.contains(address);
        self.loopback.record(address, exempt);
        if exempt {
            return Ok(ClientSlot {
                address,
                key: fingerprint,
                pass: None,
            });
        }
        let now = self.now();
        let client = self.table.client(key, now);
        let mut policy = self.connections;
        let elsewhere = match self.shared_count(key) {
            None | Some(SharedCount::Open) => 0,
            Some(SharedCount::Elsewhere(count)) => count,
            Some(SharedCount::Divided(nodes)) => {
                policy.max_concurrent = (policy.max_concurrent / nodes).max(1);
                0
            }
            Some(SharedCount::Closed) => {
                return Err(Refusal {
                    status: 503,
                    retry_after: Some(REDIS_AWAY_RETRY),
                    silent: false,
                });
            }
        };
        let (pass, mut denial) = self
            .table
            .admit_connection(key, &client, &policy, now, elsewhere);
        if denial.is_none()
            && let Some((bucket, rate)) = self.connection_rate
        {
            match self.take(&client, bucket, &rate, now, 1) {
                Taken::Decided(Decision::Allow { .. }) => {}
                Taken::Decided(Decision::Deny { retry_after }) => {
                    denial = Some(Denial {
                        rule: Rule::ConnectionRate,
                        observed: rate.burst() + 1,
                        limit: rate.burst(),
                        retry_after,
                    });
                }
                Taken::RedisAway => {
                    self.count_redis_away(true);
                    return Err(Refusal {
                        status: 503,
                        retry_after: Some(REDIS_AWAY_RETRY),
                        silent: false,
                    });
                }
            }
        }
        let slot = ClientSlot {
            address,
            key: fingerprint,
            pass: Some(pass),
        };
        match denial {
            None => Ok(slot),
            Some(denial) => {
                self.violation(address, route, denial, self.limits.mode, Some(&client));
                if self.limits.mode == LimitMode::Shadow {
                    return Ok(slot);
                }
                let status = if denial.rule == Rule::Banned {
                    403
                } else {
                    429
                };
                Err(Refusal {
                    status,
                    retry_after: denial.retry_after.map(whole_seconds),
                    silent: false,
                })
            }
        }
    }

    /// How the cluster counts `key`'s connections on other nodes (`None`: no cluster, or no
    /// cap to share).
    fn shared_count(&self, key: ClientKey) -> Option<SharedCount> {
        let cluster = self.cluster.as_ref()?;
        if self.connections.max_concurrent == 0 {
            return None;
        }
        let policy = self
            .limits
            .on_redis_error
            .unwrap_or_else(|| cluster.default_policy());
        Some(cluster.shared_count(key, policy))
    }

    /// The allow and deny lists, for any client (exempt or not).
    fn check_lists(&self, address: IpAddr, route: &str) -> Option<Refusal> {
        let listed = self.limits.deny.contains(address)
            || (!self.limits.allow.is_empty() && !self.limits.allow.contains(address));
        if !listed {
            return None;
        }
        let denial = Denial {
            rule: Rule::Denied,
            observed: 1,
            limit: 0,
            retry_after: None,
        };
        self.violation(address, route, denial, self.limits.mode, None);
        (self.limits.mode == LimitMode::Enforce).then_some(Refusal {
            status: 403,
            retry_after: None,
            silent: self.limits.deny_action == DenyAction::Close,
        })
    }
}
