//! Which `replicate:<host>` lines name this node itself, and are ignored
//! here. One Swarm service definition gives both nodes of a pair the same
//! volume options (`volume-opt=replicate:<node1>=...`,
//! `volume-opt=replicate:<node2>=...`): each node ignores the line naming
//! itself and replicates to its partner.
//!
//! A host names this node when (after any `user@`) it is `NODE_NAME`
//! (case-insensitive) or one of the addresses of this node's interfaces,
//! read with getifaddrs at each look (addresses come and go). Loopback
//! addresses and `localhost` are not matched: they name no partner in a
//! pair, and a line to them keeps running (and failing) as before.
//!
//! The scheduler applies the rule in one place ([`SelfHost::runs_here`]):
//! a self line is never dispatched and is never a volume's replicate peer
//! (follow and cluster mode take their peer from there).

use std::net::IpAddr;

use super::{Action, Job};

/// Where this node's addresses come from.
#[derive(Debug, Clone)]
enum Addresses {
    /// The interfaces' addresses, read at each [`SelfHost::look`].
    Interfaces,
    /// Fixed addresses (tests, or a scheduler that matches no address).
    Fixed(Vec<IpAddr>),
}

/// This node's names: `NODE_NAME` and its addresses.
#[derive(Debug, Clone)]
pub struct SelfHost {
    node_name: Option<String>,
    addresses: Addresses,
}

/// This node's names at one moment, to match many lines at once.
#[derive(Debug, Clone)]
pub struct SelfLook {
    node_name: Option<String>,
    addresses: Vec<IpAddr>,
}

impl SelfHost {
    /// Matches no host: every line runs (a scheduler outside a daemon).
    pub fn nobody() -> SelfHost {
        SelfHost {
            node_name: None,
            addresses: Addresses::Fixed(Vec::new()),
        }
    }

    /// This node: `node_name` and the addresses of its interfaces.
    pub fn node(node_name: &str) -> SelfHost {
        SelfHost {
            node_name: Some(node_name.to_ascii_lowercase()).filter(|n| !n.is_empty()),
            addresses: Addresses::Interfaces,
        }
    }

    /// A node with fixed addresses (tests).
    pub fn fixed(node_name: &str, addresses: Vec<IpAddr>) -> SelfHost {
        SelfHost {
            addresses: Addresses::Fixed(addresses),
            ..SelfHost::node(node_name)
        }
    }

    /// The names now (one getifaddrs call for [`Addresses::Interfaces`]).
    pub fn look(&self) -> SelfLook {
        let addresses = match &self.addresses {
            Addresses::Fixed(a) => a.clone(),
            Addresses::Interfaces => interface_addresses(),
        };
        SelfLook {
            node_name: self.node_name.clone(),
            addresses,
        }
    }
}

impl SelfLook {
    /// True when `host` (`[user@]name-or-address`) names this node.
    pub fn names(&self, host: &str) -> bool {
        let name = host.rsplit_once('@').map_or(host, |(_, h)| h);
        if self
            .node_name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
        {
            return true;
        }
        match name.parse::<IpAddr>() {
            Ok(ip) => !ip.is_loopback() && self.addresses.contains(&ip),
            Err(_) => false,
        }
    }

    /// The rule: false for a `replicate:` line naming this node, which is
    /// ignored here; true for every other job.
    pub fn runs_here(&self, job: &Job) -> bool {
        match &job.action {
            Action::Replicate { host } => !self.names(host),
            _ => true,
        }
    }
}

/// The addresses of this node's interfaces, loopback excluded; none when
/// getifaddrs fails (logged: no line is then ignored).
fn interface_addresses() -> Vec<IpAddr> {
    let addrs = match nix::ifaddrs::getifaddrs() {
        Ok(addrs) => addrs,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list this node's addresses: replicate: lines naming them are not ignored");
            return Vec::new();
        }
    };
    addrs
        .filter_map(|ifa| {
            let addr = ifa.address?;
            if let Some(v4) = addr.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                addr.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .filter(|ip| !ip.is_loopback())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(action: &str) -> Job {
        Job::parse("db", action, "1", true).unwrap()
    }

    fn me() -> SelfLook {
        SelfHost::fixed(
            "Node-A",
            vec!["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()],
        )
        .look()
    }

    #[test]
    fn a_line_naming_this_node_is_ignored_by_name_and_by_address() {
        let me = me();
        for own in [
            "replicate:node-a",
            "replicate:NODE-A",
            "replicate:root@node-a",
            "replicate:10.0.0.1",
            "replicate:root@10.0.0.1",
            "replicate:fd00::1",
        ] {
            assert!(!me.runs_here(&job(own)), "{own}");
        }
        for other in [
            "replicate:node-b",
            "replicate:node-ab",
            "replicate:10.0.0.2",
            "replicate:fd00::2",
            "snapshot",
            "synchronize:node-a",
            "purge:1h:1d",
        ] {
            assert!(me.runs_here(&job(other)), "{other}");
        }
    }

    #[test]
    fn loopback_and_nobody_never_match() {
        let me = SelfHost::fixed("a", vec!["127.0.0.1".parse().unwrap()]).look();
        assert!(me.runs_here(&job("replicate:127.0.0.1")));
        assert!(me.runs_here(&job("replicate:localhost")));
        let nobody = SelfHost::nobody().look();
        assert!(nobody.runs_here(&job("replicate:a")));
    }

    #[test]
    fn the_interfaces_addresses_are_read_without_loopback() {
        // Every Linux host running the tests has loopback; it is left out.
        let look = SelfHost::node("x").look();
        assert!(look.addresses.iter().all(|ip| !ip.is_loopback()));
        if let Some(ip) = look.addresses.first() {
            assert!(look.names(&ip.to_string()));
        }
    }
}
