//! Who may call the admin endpoints. With `--admin-token`: the bearer token, from
//! anywhere. Without one: loopback clients only, and of those only what a person at
//! this machine sends, not a page of another site open in their browser (a form or
//! `fetch` aimed at 127.0.0.1: cross-site request forgery) nor a site whose DNS name
//! was rebound to 127.0.0.1 (issue 22, items 2 and 3).

use std::net::IpAddr;

use axum::http::HeaderMap;

/// Who may call admin endpoints.
#[derive(Clone, Debug)]
pub enum AdminAccess {
    /// `Authorization: Bearer <token>` required, from anywhere.
    Token(String),
    /// No token configured: loopback clients only.
    LoopbackOnly,
}

impl AdminAccess {
    pub fn from_token(token: Option<String>) -> Self {
        match token.filter(|t| !t.is_empty()) {
            Some(t) => AdminAccess::Token(t),
            None => AdminAccess::LoopbackOnly,
        }
    }

    /// Whether the request may call admin endpoints, and if not why. `peer` is the
    /// socket's address; `trusted_proxies` are the proxies whose `X-Forwarded-For`
    /// names the client (see `client_address`).
    pub(super) fn check(&self, request: &AdminRequest<'_>) -> Result<(), AdminRefusal> {
        // A browser says where a request comes from: a page of another site (a form
        // or `fetch` aimed at 127.0.0.1) is refused whatever the mode.
        if let Some(site) = request.header("sec-fetch-site")
            && !matches!(site, "same-origin" | "none")
        {
            return Err(AdminRefusal::CrossSite);
        }
        if let Some(origin) = request.header("origin")
            && !same_origin(origin, request.host())
        {
            return Err(AdminRefusal::CrossSite);
        }
        match self {
            AdminAccess::Token(token) => {
                let given = request.header("authorization").and_then(|v| v.strip_prefix("Bearer "));
                if given.is_some_and(|given| constant_time_eq(given.trim().as_bytes(), token.as_bytes())) {
                    Ok(())
                } else {
                    Err(AdminRefusal::NoToken)
                }
            }
            AdminAccess::LoopbackOnly => {
                // An unknown client is refused; `::ffff:127.0.0.1` (a dual-stack listener) is loopback.
                let client = client_address(request.headers, request.peer.map(|p| p.ip()), request.trusted_proxies);
                if !client.is_some_and(|ip| ip.is_loopback()) {
                    return Err(AdminRefusal::NotLoopback);
                }
                // DNS rebinding: a site whose name now resolves to 127.0.0.1 reaches this
                // port from the victim's browser with its own name in `Host`.
                if !request.host().is_some_and(is_loopback_host) {
                    return Err(AdminRefusal::ForeignHost);
                }
                // What a plain HTML form can send (a simple request, no preflight) never
                // reaches an action that takes no body, even from a browser that sends
                // no `Origin` or `Sec-Fetch-Site`.
                if request.takes_no_body && request.method == axum::http::Method::POST && is_form_body(request) {
                    return Err(AdminRefusal::FormBody);
                }
                Ok(())
            }
        }
    }
}

/// What the admin gate reads of a request.
pub(super) struct AdminRequest<'a> {
    pub method: &'a axum::http::Method,
    pub uri: &'a axum::http::Uri,
    pub headers: &'a HeaderMap,
    pub peer: Option<std::net::SocketAddr>,
    pub trusted_proxies: &'a [IpAddr],
    /// The action takes no body (reset, reload): a body means a form sent it.
    pub takes_no_body: bool,
}

impl AdminRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The authority the client asked for: `Host`, or HTTP/2's `:authority`.
    fn host(&self) -> Option<&str> {
        self.header("host").or_else(|| self.uri.authority().map(|a| a.as_str()))
    }
}

/// Why the admin gate refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdminRefusal {
    #[error("a valid admin token is required")]
    NoToken,
    #[error("admin endpoints answer loopback clients only")]
    NotLoopback,
    #[error("admin endpoints refuse requests from another site's page")]
    CrossSite,
    #[error("without an admin token, admin endpoints answer only a Host of this machine's loopback names")]
    ForeignHost,
    #[error("this admin action takes no body: a form cannot send it")]
    FormBody,
}

impl AdminRefusal {
    /// 401 asks for the token; every other refusal is 403.
    pub fn status(self) -> axum::http::StatusCode {
        match self {
            AdminRefusal::NoToken => axum::http::StatusCode::UNAUTHORIZED,
            _ => axum::http::StatusCode::FORBIDDEN,
        }
    }
}

/// `Origin` names the page's origin (`null` for opaque ones, which never match).
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let authority = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
    authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
}

/// `localhost` (and its subdomains, which browsers resolve to loopback themselves,
/// RFC 6761) or a loopback address, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // `[::1]:5000`
        Some(rest) => match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || is_port(port) => ip,
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => host,
        },
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback())
}

fn is_port(s: &str) -> bool {
    s.strip_prefix(':').unwrap_or(s).bytes().all(|b| b.is_ascii_digit()) && !s.trim_start_matches(':').is_empty()
}

/// A body of one of the three types a form (or `fetch` without a preflight) can send.
fn is_form_body(request: &AdminRequest<'_>) -> bool {
    let Some(kind) = request.header("content-type") else { return false };
    let kind = kind.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    matches!(kind.as_str(), "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain")
}

/// The client a request comes from, `None` when unknown. From a trusted proxy: the
/// rightmost `X-Forwarded-For` hop that is not itself a trusted proxy (the ones to
/// its left can be forged by the client), or the leftmost when all are. From any other peer: the peer, unless the
/// request carries forwarding headers, which means a proxy nobody declared relayed
/// it: behind a local reverse proxy every request would otherwise be "loopback".
pub(super) fn client_address(headers: &HeaderMap, peer: Option<IpAddr>, trusted_proxies: &[IpAddr]) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|t| t.to_canonical() == *ip);
    let forwarded = headers.contains_key("forwarded") || headers.contains_key("x-forwarded-for");
    if !trusted(&peer) {
        return (!forwarded).then_some(peer);
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = None;
    for hop in hops.iter().rev() {
        let ip = hop.parse::<IpAddr>().ok()?.to_canonical();
        client = Some(ip);
        if !trusted(&ip) {
            break;
        }
    }
    // All hops trusted: the leftmost is the client (one on the proxy's own host).
    client
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The old question (the peer and the forwarding headers), with a loopback `Host`.
    fn allows(gate: &AdminAccess, headers: &HeaderMap, peer: Option<std::net::SocketAddr>, proxies: &[IpAddr]) -> bool {
        let mut headers = headers.clone();
        headers.insert("host", axum::http::HeaderValue::from_static("127.0.0.1:5000"));
        let (method, uri) = (axum::http::Method::GET, axum::http::Uri::from_static("/api/admin/stats"));
        let request = AdminRequest {
            method: &method,
            uri: &uri,
            headers: &headers,
            peer,
            trusted_proxies: proxies,
            takes_no_body: false,
        };
        gate.check(&request).is_ok()
    }

    /// Issue 11, minor: admin answered 403 to `::ffff:127.0.0.1`; and a request
    /// without a known peer must not count as loopback.
    #[test]
    fn loopback_gate_knows_mapped_addresses_and_refuses_unknown_peers() {
        let gate = AdminAccess::LoopbackOnly;
        let none = HeaderMap::new();
        let peer = |s: &str| Some(s.parse::<std::net::SocketAddr>().expect("address"));
        assert!(allows(&gate, &none, peer("127.0.0.1:9"), &[]));
        assert!(allows(&gate, &none, peer("[::1]:9"), &[]));
        assert!(allows(&gate, &none, peer("[::ffff:127.0.0.1]:9"), &[]));
        assert!(!allows(&gate, &none, peer("[::ffff:10.0.0.7]:9"), &[]));
        assert!(!allows(&gate, &none, peer("10.0.0.7:9"), &[]));
        assert!(!allows(&gate, &none, None, &[]));
    }

    /// Issue 11, admin gate: behind a local reverse proxy every request came from
    /// 127.0.0.1, so everyone was "loopback".
    #[test]
    fn forwarded_requests_are_judged_by_their_client_not_the_proxy() {
        let gate = AdminAccess::LoopbackOnly;
        let local_proxy = Some("127.0.0.1:40000".parse::<std::net::SocketAddr>().expect("address"));
        let forwarded = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", value.parse().expect("header"));
            h
        };
        let proxy: IpAddr = "127.0.0.1".parse().expect("ip");
        // Relayed by a proxy nobody declared: refused, whatever the header says.
        assert!(!allows(&gate, &forwarded("203.0.113.9"), local_proxy, &[]));
        assert!(!allows(&gate, &forwarded("127.0.0.1"), local_proxy, &[]));
        // A declared proxy: its client decides. A forged left part does not help.
        assert!(!allows(&gate, &forwarded("203.0.113.9"), local_proxy, &[proxy]));
        assert!(!allows(&gate, &forwarded("127.0.0.1, 203.0.113.9"), local_proxy, &[proxy]));
        assert!(allows(&gate, &forwarded("127.0.0.1"), local_proxy, &[proxy]));
        // Without the header, a declared proxy's own requests name no client.
        assert!(!allows(&gate, &HeaderMap::new(), local_proxy, &[proxy]));
    }

    fn check(
        gate: &AdminAccess,
        method: &str,
        pairs: &[(&'static str, &'static str)],
        no_body: bool,
    ) -> Result<(), AdminRefusal> {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(*k, axum::http::HeaderValue::from_static(v));
        }
        let method: axum::http::Method = method.parse().expect("method");
        let uri = axum::http::Uri::from_static("/api/reset");
        let peer = Some("127.0.0.1:40000".parse().expect("address"));
        gate.check(&AdminRequest {
            method: &method,
            uri: &uri,
            headers: &headers,
            peer,
            trusted_proxies: &[],
            takes_no_body: no_body,
        })
    }

    /// Issue 22, items 2 and 3: a page of another site (a form, `fetch`) and a
    /// rebound DNS name reached the loopback admin gate.
    #[test]
    fn browsers_of_other_sites_and_rebound_names_are_refused() {
        let gate = AdminAccess::LoopbackOnly;
        let host = ("host", "127.0.0.1:5000");
        // curl, the example clients, the CLI: no browser headers.
        assert_eq!(check(&gate, "POST", &[host], true), Ok(()));
        assert_eq!(check(&gate, "POST", &[("host", "localhost:5000")], true), Ok(()));
        assert_eq!(check(&gate, "POST", &[("host", "[::1]:5000")], true), Ok(()));
        assert_eq!(check(&gate, "POST", &[("host", "LOCALHOST")], true), Ok(()));
        // The /admin page itself: same origin.
        assert_eq!(
            check(&gate, "GET", &[host, ("origin", "http://127.0.0.1:5000"), ("sec-fetch-site", "same-origin")], false),
            Ok(())
        );
        // Another site's form or fetch.
        assert_eq!(check(&gate, "POST", &[host, ("sec-fetch-site", "cross-site")], true), Err(AdminRefusal::CrossSite));
        assert_eq!(check(&gate, "POST", &[host, ("sec-fetch-site", "same-site")], true), Err(AdminRefusal::CrossSite));
        assert_eq!(
            check(&gate, "POST", &[host, ("origin", "http://127.0.0.2:8000")], true),
            Err(AdminRefusal::CrossSite)
        );
        assert_eq!(check(&gate, "POST", &[host, ("origin", "null")], true), Err(AdminRefusal::CrossSite));
        // A form's body on an action that takes none, from a browser that said nothing else.
        for kind in ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain;charset=UTF-8"]
        {
            let kind: &'static str = Box::leak(kind.to_string().into_boxed_str());
            assert_eq!(check(&gate, "POST", &[host, ("content-type", kind)], true), Err(AdminRefusal::FormBody));
        }
        assert_eq!(check(&gate, "POST", &[host, ("content-type", "application/json")], true), Ok(()));
        // DNS rebinding: the attacker's name in Host.
        for name in
            ["rebind.evil.example:5000", "evil.example", "127.0.0.1.evil.example:5000", "[::1]x:5000", "localhost:x"]
        {
            let name: &'static str = Box::leak(name.to_string().into_boxed_str());
            assert_eq!(check(&gate, "GET", &[("host", name)], false), Err(AdminRefusal::ForeignHost), "{name}");
        }
        assert_eq!(check(&gate, "GET", &[], false), Err(AdminRefusal::ForeignHost), "no Host at all");
        // With a token, any Host (a remote admin behind a proxy), but never another site's page.
        let token = AdminAccess::Token("s3cret".into());
        let bearer = ("authorization", "Bearer s3cret");
        assert_eq!(check(&token, "POST", &[("host", "admin.example.com"), bearer], true), Ok(()));
        assert_eq!(
            check(&token, "POST", &[("host", "admin.example.com"), bearer, ("sec-fetch-site", "cross-site")], true),
            Err(AdminRefusal::CrossSite)
        );
        assert_eq!(check(&token, "POST", &[("host", "admin.example.com")], true), Err(AdminRefusal::NoToken));
    }
}
