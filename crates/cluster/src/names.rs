//! The names and addresses a node's server certificate must cover: the host
//! name, `localhost`, the loopback addresses, every address of the host's
//! interfaces and the advertised address.

use std::collections::BTreeSet;
use std::net::IpAddr;

/// The sorted, de-duplicated subject alternative names for this host.
/// `advertise` is `--advertise-addr` (`HOST`, `IP`, `HOST:PORT` or `[IPv6]:PORT`).
pub fn host_names(advertise: Option<&str>) -> Vec<String> {
    let mut names = BTreeSet::new();
    names.insert("localhost".to_string());
    names.insert("127.0.0.1".to_string());
    names.insert("::1".to_string());
    if let Ok(h) = nix::unistd::gethostname() {
        if let Some(h) = h.to_str().filter(|h| valid_dns_name(h)) {
            names.insert(h.to_string());
        }
    }
    match nix::ifaddrs::getifaddrs() {
        Ok(addrs) => {
            for a in addrs {
                let Some(sa) = a.address else { continue };
                let ip = if let Some(v4) = sa.as_sockaddr_in() {
                    IpAddr::V4(v4.ip())
                } else if let Some(v6) = sa.as_sockaddr_in6() {
                    IpAddr::V6(v6.ip())
                } else {
                    continue;
                };
                if usable(ip) {
                    names.insert(ip.to_string());
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "listing interface addresses for the server certificate"),
    }
    if let Some(a) = advertise.and_then(advertised_host) {
        names.insert(a);
    }
    names.into_iter().collect()
}

/// This host's name, as the kernel has it (`localhost` when unreadable).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The `IP:PORT` this node advertises to others: `--advertise-addr` (an
/// IP, with or without a port; without one, the listener's port), else
/// the listener's address when it names one, else the host's first
/// non-loopback IPv4 address, else loopback.
pub fn advertise_addr(advertise: Option<&str>, listen: &str) -> Result<String, String> {
    let listen: std::net::SocketAddr = listen
        .parse()
        .map_err(|_| format!("--listen {listen:?} is not IP:PORT"))?;
    if let Some(a) = advertise.map(str::trim) {
        if let Ok(sa) = a.parse::<std::net::SocketAddr>() {
            return Ok(sa.to_string());
        }
        if let Ok(ip) = a.parse::<IpAddr>() {
            return Ok(std::net::SocketAddr::new(ip, listen.port()).to_string());
        }
        return Err(format!(
            "--advertise-addr {a:?} is not an IP address or IP:PORT (other nodes dial it)"
        ));
    }
    if !listen.ip().is_unspecified() {
        return Ok(listen.to_string());
    }
    let first = nix::ifaddrs::getifaddrs().ok().and_then(|addrs| {
        addrs
            .filter_map(|a| a.address.and_then(|sa| sa.as_sockaddr_in().map(|v4| v4.ip())))
            .find(|ip| !ip.is_loopback() && !ip.is_unspecified() && !ip.is_link_local())
    });
    let ip = first.map_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), IpAddr::V4);
    Ok(std::net::SocketAddr::new(ip, listen.port()).to_string())
}

/// Link-local IPv6 addresses need a zone to be dialled: no client names them.
fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_unspecified(),
        IpAddr::V6(v6) => !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80,
    }
}

/// The host part of an advertised address.
fn advertised_host(a: &str) -> Option<String> {
    let a = a.trim();
    if let Ok(ip) = a.parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    if let Ok(sa) = a.parse::<std::net::SocketAddr>() {
        return Some(sa.ip().to_string());
    }
    let host = a.rsplit_once(':').map_or(a, |(h, _)| h);
    valid_dns_name(host).then(|| host.to_ascii_lowercase())
}

fn valid_dns_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_loopback_and_advertised() {
        let names = host_names(Some("node-1.example:7443"));
        for n in ["localhost", "127.0.0.1", "::1", "node-1.example"] {
            assert!(names.contains(&n.to_string()), "{n} missing from {names:?}");
        }
        assert!(!names.iter().any(|n| n.starts_with("fe80")));
    }

    #[test]
    fn advertised_forms() {
        assert_eq!(advertised_host("10.0.0.5").as_deref(), Some("10.0.0.5"));
        assert_eq!(advertised_host("10.0.0.5:7443").as_deref(), Some("10.0.0.5"));
        assert_eq!(advertised_host("[fd00::1]:7443").as_deref(), Some("fd00::1"));
        assert_eq!(advertised_host("Host.Example").as_deref(), Some("host.example"));
        assert_eq!(advertised_host("bad name"), None);
    }
}
