//! Which addresses the delivery client may connect to (SSRF protection).
//!
//! Loopback, private, link-local, CGNAT, cloud metadata and other special-purpose addresses are refused unless
//! they fall inside one of the configured `allowed_networks`. The check runs on every address a host name
//! resolves to, right before connecting, so DNS rebinding and IP-literal URLs are caught alike.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The address policy of the delivery client.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    allowed: Vec<IpNet>,
}

impl NetworkPolicy {
    pub fn new(allowed: Vec<IpNet>) -> Self {
        NetworkPolicy { allowed }
    }

    /// Parses CIDR strings such as `127.0.0.0/8` or `::1/128`.
    pub fn parse(allowed: &[String]) -> Result<Self, String> {
        let nets = allowed
            .iter()
            .map(|s| {
                s.trim()
                    .parse::<IpNet>()
                    .map_err(|_| format!("'{s}' is not a CIDR network (e.g. 10.1.0.0/16)"))
            })
            .collect::<Result<_, _>>()?;
        Ok(NetworkPolicy::new(nets))
    }

    /// `Err(reason)` when `ip` may not be connected to.
    pub fn check(&self, ip: IpAddr) -> Result<(), &'static str> {
        if self.allowed.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        match restricted(ip) {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }
}

/// Why `ip` is not a public unicast address, if it is not.
pub fn restricted(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => restricted_v4(v4),
        IpAddr::V6(v6) => restricted_v6(v6),
    }
}

fn restricted_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        Some("loopback address")
    } else if ip.is_private() {
        Some("private address")
    } else if ip == Ipv4Addr::new(169, 254, 169, 254) {
        Some("cloud metadata address")
    } else if ip.is_link_local() {
        Some("link-local address")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (CGNAT) address")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified address")
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        Some("multicast or reserved address")
    } else if (a == 192 && b == 0 && c == 0) || (a == 198 && (18..20).contains(&b)) {
        Some("special-purpose address")
    } else if ip.is_documentation() {
        Some("documentation address")
    } else {
        None
    }
}

fn restricted_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return restricted_v4(v4);
    }
    let seg = ip.segments();
    if ip.is_loopback() {
        Some("loopback address")
    } else if ip.is_unspecified() {
        Some("unspecified address")
    } else if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        Some("cloud metadata address")
    } else if seg[0] & 0xfe00 == 0xfc00 {
        Some("private (unique local) address")
    } else if seg[0] & 0xffc0 == 0xfe80 {
        Some("link-local address")
    } else if ip.is_multicast() {
        Some("multicast address")
    } else if seg[0] == 0x64 && seg[1] == 0xff9b {
        // NAT64: judge the embedded IPv4 address.
        let v4 = Ipv4Addr::new(
            (seg[6] >> 8) as u8,
            seg[6] as u8,
            (seg[7] >> 8) as u8,
            seg[7] as u8,
        );
        restricted_v4(v4)
    } else if seg[0] == 0x2001 && seg[1] == 0xdb8 {
        Some("documentation address")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn special_addresses_are_refused() {
        let policy = NetworkPolicy::default();
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "100.100.100.200",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(policy.check(ip(bad)).is_err(), "{bad} must be refused");
        }
        for good in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert!(policy.check(ip(good)).is_ok(), "{good} must be allowed");
        }
    }

    #[test]
    fn allowed_networks_open_a_hole() {
        let policy =
            NetworkPolicy::parse(&["127.0.0.0/8".into(), "::1/128".into()]).expect("cidrs");
        assert!(policy.check(ip("127.0.0.1")).is_ok());
        assert!(policy.check(ip("::1")).is_ok());
        assert!(policy.check(ip("10.0.0.1")).is_err());
        assert!(NetworkPolicy::parse(&["nonsense".into()]).is_err());
    }
}
