//! The cluster-mode settings (ownership on etcd): the endpoints, this
//! node's name, the owner lease and the failover lag bound, checked once
//! at load so the cluster code gets values it can use as they are.

/// Cluster mode's settings; `endpoints` empty means pair mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// etcd endpoints (`ETCD_ENDPOINTS`), each `http://host:port` as
    /// checked by [`parse_endpoints`]; empty: pair mode, no etcd.
    pub endpoints: Vec<String>,
    /// This node's name in the cluster (`NODE_NAME`, default the host
    /// name), checked by [`check_node_name`] in cluster mode.
    pub node_name: String,
    /// Seconds an owner's lease lives without renewal (`OWNER_TTL`, at
    /// least [`MIN_OWNER_TTL_SECS`]).
    pub owner_ttl_secs: u64,
    /// Seconds a replica may be older than the owner's last confirmed
    /// snapshot and still take over (`MAX_LAG_ON_FAILOVER`; 0: no bound).
    pub max_lag_secs: u64,
}

/// The shortest owner lease accepted: shorter ones would expire between
/// two renewals on a loaded node.
pub const MIN_OWNER_TTL_SECS: u64 = 3;

/// Splits `ETCD_ENDPOINTS` (comma-separated, blanks around items ignored)
/// into `http://host:port` URLs; empty text is no endpoint at all. A host
/// is a name, an IPv4 address or a bracketed IPv6 address; the port is
/// required; a trailing `/` is dropped, any other path refused.
pub fn parse_endpoints(text: &str) -> Result<Vec<String>, &'static str> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|item| parse_endpoint(item.trim()))
        .collect()
}

const ENDPOINT: &str =
    "expected comma-separated etcd endpoints like http://10.0.0.1:2379 (empty: pair mode)";

fn parse_endpoint(item: &str) -> Result<String, &'static str> {
    let rest = item.strip_prefix("http://").ok_or(ENDPOINT)?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = authority.rsplit_once(':').ok_or(ENDPOINT)?;
    let port_ok = !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p > 0);
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host.len() <= 253
                && !host.starts_with(['-', '.'])
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
        }
    };
    if port_ok && host_ok {
        Ok(format!("http://{host}:{port}"))
    } else {
        Err(ENDPOINT)
    }
}

/// A node name: 1 to 253 letters, digits, `.`, `-` or `_`, not starting
/// with `-` or `.` (it names this node in etcd keys and in logs).
pub fn check_node_name(name: &str) -> Result<(), &'static str> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b));
    if ok {
        Ok(())
    } else {
        Err("expected 1 to 253 letters, digits, '.', '-' or '_'")
    }
}

/// This machine's host name (the default `NODE_NAME`); empty when it
/// cannot be read, which [`check_node_name`] then refuses.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_default()
}
