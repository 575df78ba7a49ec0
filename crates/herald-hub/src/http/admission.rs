//! Whether one more event stream may open: the total and per-address connection limits.
//!
//! Owns the live-stream counts (in total and per client address) and how a client's address is
//! found: the peer, or, when the peer is a trusted proxy, the rightmost `X-Forwarded-For` entry
//! that is not a trusted proxy. IPv6 addresses count per /64 (what one host usually holds);
//! loopback clients connecting directly (the operator's own tools and benchmarks) are not limited
//! per address. A request through a trusted proxy is never exempt: when the entry found is
//! malformed (`garbage`, `ip:port`), missing, or a loopback address, it counts against the
//! proxy's own address. It counts event
//! streams only, never publish or polling requests, and never closes anything: a stream's
//! [`AdmissionGuard`] gives its slot back when the response body is dropped.

use super::error::ApiError;
use axum::http::{HeaderMap, StatusCode};
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
};

/// Default most event streams open at once: 100 000, the idle streams one node is sized for.
pub const CONNECTIONS_MAX_DEFAULT: usize = 100_000;
/// Default most event streams one client address holds: 100.
pub const CONNECTIONS_PER_ADDRESS_MAX_DEFAULT: usize = 100;

/// Counts live event streams and refuses those over a limit.
#[derive(Debug)]
pub(super) struct Admission {
    /// Most streams in total; 0 is no limit.
    total_max: usize,
    /// Most streams per client address; 0 is no limit.
    per_address_max: usize,
    /// Peers whose `X-Forwarded-For` is believed.
    trusted_proxies: Vec<IpAddr>,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// One admitted stream's slot; dropping it frees the slot.
#[derive(Debug)]
pub(super) struct AdmissionGuard {
    admission: Arc<Admission>,
    address: Option<IpAddr>,
}

impl Admission {
    pub(super) fn new(
        total_max: usize,
        per_address_max: usize,
        trusted_proxies: Vec<IpAddr>,
    ) -> Self {
        Self {
            total_max,
            per_address_max,
            trusted_proxies: trusted_proxies.into_iter().map(canonical).collect(),
            counts: Mutex::new(Counts::default()),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Plain counters: still consistent after a panic elsewhere.
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a slot for a new stream from `peer`.
    ///
    /// # Errors
    /// 503 `at_capacity` when the hub holds its most streams; 429 `too_many_connections` when
    /// this client address does.
    pub(super) fn admit(
        self: &Arc<Self>,
        peer: Option<SocketAddr>,
        headers: &HeaderMap,
    ) -> Result<AdmissionGuard, ApiError> {
        let address = peer
            .map(|peer| self.client_address(peer.ip(), headers))
            .filter(|client| self.per_address_max > 0 && !client.is_exempt)
            .map(|client| address_key(client.address));
        let mut counts = self.counts();
        if self.total_max > 0 && counts.total >= self.total_max {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "at_capacity",
                format!("the hub holds its most streams ({})", self.total_max),
            ));
        }
        if let Some(address) = address {
            let held = counts.by_address.entry(address).or_default();
            if *held >= self.per_address_max {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_connections",
                    format!(
                        "this address holds its most streams ({})",
                        self.per_address_max
                    ),
                ));
            }
            *held += 1;
        }
        counts.total += 1;
        drop(counts);
        Ok(AdmissionGuard {
            admission: self.clone(),
            address,
        })
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy; then the rightmost
    /// `X-Forwarded-For` entry that is not itself a trusted proxy, or the proxy's own address
    /// (never exempt) when that entry is malformed, missing or loopback.
    fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> ClientAddress {
        let peer = canonical(peer);
        if !self.trusted_proxies.contains(&peer) {
            return ClientAddress {
                address: peer,
                is_exempt: peer.is_loopback(),
            };
        }
        let through_proxy = ClientAddress {
            address: peer,
            is_exempt: false,
        };
        let mut entries = headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|value| value.to_str().ok())
            .collect::<Vec<_>>();
        entries.reverse();
        for value in entries {
            // A header that is not text is as malformed as a bad entry.
            let Some(value) = value else {
                return through_proxy;
            };
            for entry in value.rsplit(',') {
                match entry.trim().parse::<IpAddr>().map(canonical) {
                    Ok(address) if self.trusted_proxies.contains(&address) => {}
                    Ok(address) if !address.is_loopback() && !address.is_unspecified() => {
                        return ClientAddress {
                            address,
                            is_exempt: false,
                        }
                    }
                    _ => return through_proxy,
                }
            }
        }
        through_proxy
    }
}

/// Who a stream counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClientAddress {
    address: IpAddr,
    /// A loopback peer connecting directly: not limited per address.
    is_exempt: bool,
}

impl Drop for AdmissionGuard {
    fn drop(&mut self) {
        let mut counts = self.admission.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(address) = self.address {
            if let Some(held) = counts.by_address.get_mut(&address) {
                *held -= 1;
                if *held == 0 {
                    counts.by_address.remove(&address);
                }
            }
        }
    }
}

/// An IPv4-mapped IPv6 address as its IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// What the per-address limit counts: an IPv4 address, or an IPv6 /64.
fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(Ipv6Addr::from(network))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn peer(text: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(text.parse().expect("an address"), 4000))
    }

    #[test]
    fn a_full_address_is_refused_and_a_freed_slot_reused() {
        let admission = Arc::new(Admission::new(0, 2, Vec::new()));
        let headers = HeaderMap::new();
        let first = admission
            .admit(peer("203.0.113.5"), &headers)
            .expect("room");
        let _second = admission
            .admit(peer("203.0.113.5"), &headers)
            .expect("room");
        let err = admission
            .admit(peer("203.0.113.5"), &headers)
            .expect_err("full");
        assert_eq!(err.code(), "too_many_connections");
        assert!(admission.admit(peer("203.0.113.6"), &headers).is_ok());
        drop(first);
        assert!(admission.admit(peer("203.0.113.5"), &headers).is_ok());
    }

    #[test]
    fn the_total_limit_counts_every_address() {
        let admission = Arc::new(Admission::new(1, 0, Vec::new()));
        let headers = HeaderMap::new();
        let _held = admission.admit(peer("127.0.0.1"), &headers).expect("room");
        let err = admission
            .admit(peer("203.0.113.5"), &headers)
            .expect_err("full");
        assert_eq!(err.code(), "at_capacity");
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn loopback_is_not_limited_per_address() {
        let admission = Arc::new(Admission::new(0, 1, Vec::new()));
        let headers = HeaderMap::new();
        let _a = admission.admit(peer("127.0.0.1"), &headers).expect("room");
        let _b = admission.admit(peer("::1"), &headers).expect("room");
        let _c = admission.admit(peer("127.0.0.1"), &headers).expect("room");
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let admission = Arc::new(Admission::new(0, 1, Vec::new()));
        let headers = HeaderMap::new();
        let _a = admission
            .admit(peer("2001:db8:1:2::1"), &headers)
            .expect("room");
        assert!(admission
            .admit(peer("2001:db8:1:2::ffff"), &headers)
            .is_err());
        assert!(admission.admit(peer("2001:db8:1:3::1"), &headers).is_ok());
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let proxy: IpAddr = "10.0.0.1".parse().expect("an address");
        let admission = Admission::new(0, 1, vec![proxy]);
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.9, 203.0.113.5, 10.0.0.1"),
        );
        let from_proxy = admission.client_address(proxy, &headers);
        assert_eq!(
            from_proxy.address,
            "203.0.113.5".parse::<IpAddr>().expect("an address")
        );
        assert!(!from_proxy.is_exempt);
        let direct: IpAddr = "192.0.2.1".parse().expect("an address");
        assert_eq!(admission.client_address(direct, &headers).address, direct);
    }

    #[test]
    fn a_malformed_or_loopback_forwarded_for_counts_against_the_proxy_never_exempt() {
        let proxy: IpAddr = "127.0.0.1".parse().expect("an address");
        let admission = Admission::new(0, 1, vec![proxy]);
        for value in [
            "garbage",
            "203.0.113.5:4000",
            "203.0.113.5, garbage",
            "127.0.0.1",
            "203.0.113.5, ::1",
            "0.0.0.0",
            "",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", HeaderValue::from_static(value));
            let client = admission.client_address(proxy, &headers);
            assert_eq!(client.address, proxy, "{value:?}");
            assert!(!client.is_exempt, "{value:?} made the request exempt");
        }
        // An address on the left of a malformed entry is not believed either.
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.9, garbage, 127.0.0.1"),
        );
        assert_eq!(admission.client_address(proxy, &headers).address, proxy);
        // Without the header, the proxy itself is counted, not exempt.
        let client = admission.client_address(proxy, &HeaderMap::new());
        assert!(!client.is_exempt);
        let admission = Arc::new(admission);
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        let _held = admission
            .admit(Some(SocketAddr::new(proxy, 1)), &headers)
            .expect("room");
        let refused = admission
            .admit(Some(SocketAddr::new(proxy, 2)), &headers)
            .expect_err("the proxy's own address is limited");
        assert_eq!(refused.code(), "too_many_connections");
    }
}
