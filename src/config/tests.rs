//! Resolution order, defaults, and the settings table against the parser
//! and README.

use super::*;

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_match_the_reference() {
    let c = Config::resolve(&HashMap::new(), &HashMap::new()).unwrap();
    assert_eq!(c.volumes_path, Path::new("/var/lib/buttervolume/volumes/"));
    assert_eq!(c.socket, Path::new("/run/docker/plugins/btrfs.sock"));
    assert_eq!(c.state_path, Path::new("/var/lib/buttervolume/state"));
    assert_eq!(c.timer, 60);
    assert_eq!(c.ssh_port, 1122);
    assert_eq!(c.metrics_addr, None);
    assert_eq!(
        c.schedule_disabled(),
        Path::new("/etc/buttervolume/schedule.csv.disabled")
    );
}

#[test]
fn env_beats_ini_beats_default() {
    let ini = parse_ini_defaults(
        "[DEFAULT]\nVOLUMES_PATH = /ini/vols\nTIMER: 5\n[other]\nSOCKET=/nope\n",
    );
    let env = map(&[("BUTTERVOLUME_TIMER", "7"), ("BUTTERVOLUME_RUNPATH", "/r")]);
    let c = Config::resolve(&env, &ini).unwrap();
    assert_eq!(c.volumes_path, Path::new("/ini/vols"));
    assert_eq!(c.timer, 7);
    assert_eq!(c.socket, Path::new("/r/plugins/btrfs.sock"));
}

#[test]
fn metrics_addr_is_an_address_and_a_port() {
    let ini = parse_ini_defaults("[DEFAULT]\nmetrics_addr = 127.0.0.1:9470\n");
    let c = Config::resolve(&HashMap::new(), &ini).unwrap();
    assert_eq!(c.metrics_addr, Some("127.0.0.1:9470".parse().unwrap()));
    let env = map(&[("BUTTERVOLUME_METRICS_ADDR", "[::1]:9")]);
    let c = Config::resolve(&env, &ini).unwrap();
    assert_eq!(c.metrics_addr, Some("[::1]:9".parse().unwrap()));
    for bad in ["9470", "localhost:9470", "127.0.0.1", "127.0.0.1:x"] {
        let env = map(&[("BUTTERVOLUME_METRICS_ADDR", bad)]);
        let err = Config::resolve(&env, &HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("METRICS_ADDR"), "{bad}: {err}");
    }
}

#[test]
fn bad_numbers_are_clear_errors() {
    let env = map(&[("BUTTERVOLUME_TIMER", "soon")]);
    let err = Config::resolve(&env, &HashMap::new()).unwrap_err();
    assert!(err.to_string().contains("TIMER"), "{err}");
    let env = map(&[("SSH_PORT", "99999")]);
    assert!(Config::resolve(&env, &HashMap::new()).is_err());
    for key in [
        "SCHEDULE_WORKERS",
        "READ_TIMEOUT",
        "MAX_CONNECTIONS",
        "SSH_TIMEOUT",
    ] {
        for bad in ["0", "-1", "ten", "1.5"] {
            let env = map(&[(&format!("BUTTERVOLUME_{key}"), bad)]);
            let err = Config::resolve(&env, &HashMap::new()).unwrap_err();
            assert!(err.to_string().contains(key), "{key}={bad}: {err}");
        }
    }
}

#[test]
fn purge_timeframes_are_age_unless_set_to_calendar() {
    let c = Config::resolve(&HashMap::new(), &HashMap::new()).unwrap();
    assert_eq!(c.purge_timeframes, PurgeTimeframes::Age);
    let ini = parse_ini_defaults("[DEFAULT]\npurge_timeframes = Calendar\n");
    let c = Config::resolve(&HashMap::new(), &ini).unwrap();
    assert_eq!(c.purge_timeframes, PurgeTimeframes::Calendar);
    let env = map(&[("BUTTERVOLUME_PURGE_TIMEFRAMES", "weekly")]);
    let err = Config::resolve(&env, &HashMap::new()).unwrap_err();
    assert!(err.to_string().contains("PURGE_TIMEFRAMES"), "{err}");
}

/// What `resolve` reads, and what it makes of it.
fn resolve_reading(
    env: &HashMap<String, String>,
    ini: &HashMap<String, String>,
) -> (Result<Config, ConfigError>, BTreeSet<&'static str>) {
    let keys = Keys {
        env,
        ini,
        read: RefCell::default(),
    };
    let config = Config::from_keys(&keys);
    (config, keys.read.into_inner())
}

#[test]
fn the_parser_reads_every_setting_and_only_those() {
    let (config, read) = resolve_reading(&HashMap::new(), &HashMap::new());
    config.unwrap();
    let defined: BTreeSet<&str> = settings::SETTINGS.iter().map(|s| s.key).collect();
    assert_eq!(read, defined);
    assert_eq!(
        defined.len(),
        settings::SETTINGS.len(),
        "a key defined twice"
    );
}

/// Setting a key to its documented default changes nothing: the default
/// README shows is the one the parser falls back to.
#[test]
fn documented_defaults_are_the_defaults() {
    let unset = Config::resolve(&HashMap::new(), &HashMap::new()).unwrap();
    for setting in settings::SETTINGS {
        let settings::Default::Text(default) = setting.default else {
            continue;
        };
        let var = match setting.source {
            Source::PlainEnv => setting.key.to_string(),
            Source::Buttervolume => format!("BUTTERVOLUME_{}", setting.key),
        };
        let env = map(&[(&var, default)]);
        assert_eq!(
            Config::resolve(&env, &HashMap::new()).unwrap(),
            unset,
            "{var}"
        );
        if setting.source == Source::Buttervolume {
            let ini = map(&[(&setting.key.to_ascii_lowercase(), default)]);
            assert_eq!(
                Config::resolve(&HashMap::new(), &ini).unwrap(),
                unset,
                "ini {}",
                setting.key
            );
        }
    }
    assert_eq!(DEFAULT_SCHEDULE_WORKERS, 4);
    assert_eq!(unset.schedule_workers, DEFAULT_SCHEDULE_WORKERS);
    assert_eq!(unset.cluster.node_name, cluster::host_name());
}

/// README's configuration table is the one the settings make: no key
/// missing, no default other than the real one.
#[test]
fn readme_lists_every_setting_with_its_default() {
    let readme = include_str!("../../README.md");
    let table = settings::readme_table();
    assert!(
        readme.contains(&table),
        "README's configuration table is not the settings' table; paste this in:\n{table}"
    );
    for setting in settings::SETTINGS {
        assert!(
            table.contains(&format!("| `{}`", setting.key)),
            "{}",
            setting.key
        );
    }
}

#[test]
fn cluster_settings_default_to_pair_mode() {
    let c = Config::resolve(&HashMap::new(), &HashMap::new()).unwrap();
    assert!(c.cluster.endpoints.is_empty());
    assert_eq!(c.cluster.owner_ttl_secs, 15);
    assert_eq!(c.cluster.max_lag_secs, 0);
    let ini = parse_ini_defaults(
        "[DEFAULT]\netcd_endpoints = http://10.0.0.1:2379, http://[fd00::2]:2379/ ,http://etcd-3.lan:2379\nnode_name = node-a\nowner_ttl = 3\nmax_lag_on_failover = 120\n",
    );
    let c = Config::resolve(&HashMap::new(), &ini).unwrap();
    assert_eq!(
        c.cluster,
        ClusterConfig {
            endpoints: vec![
                "http://10.0.0.1:2379".into(),
                "http://[fd00::2]:2379".into(),
                "http://etcd-3.lan:2379".into(),
            ],
            node_name: "node-a".into(),
            owner_ttl_secs: 3,
            max_lag_secs: 120,
        }
    );
}

/// A bad node name only matters in cluster mode (an odd host name never
/// stops a pair-mode node); every other cluster key is checked always.
#[test]
fn bad_cluster_settings_are_clear_errors() {
    let env = map(&[("BUTTERVOLUME_NODE_NAME", "a/b")]);
    assert_eq!(
        Config::resolve(&env, &HashMap::new())
            .unwrap()
            .cluster
            .node_name,
        "a/b"
    );
    for (key, bad) in [
        ("ETCD_ENDPOINTS", "10.0.0.1:2379"),
        ("ETCD_ENDPOINTS", "https://10.0.0.1:2379"),
        ("ETCD_ENDPOINTS", "http://10.0.0.1"),
        ("ETCD_ENDPOINTS", "http://10.0.0.1:0"),
        ("ETCD_ENDPOINTS", "http://10.0.0.1:99999"),
        ("ETCD_ENDPOINTS", "http://10.0.0.1:2379/v3"),
        ("ETCD_ENDPOINTS", "http://:2379"),
        ("ETCD_ENDPOINTS", "http://[nope]:2379"),
        ("ETCD_ENDPOINTS", "http://a b:2379"),
        ("ETCD_ENDPOINTS", "http://a:1,,http://b:2"),
        ("ETCD_ENDPOINTS", "http://user@a:1"),
        ("NODE_NAME", "a/b"),
        ("NODE_NAME", "-a"),
        ("OWNER_TTL", "2"),
        ("OWNER_TTL", "0"),
        ("OWNER_TTL", "soon"),
        ("MAX_LAG_ON_FAILOVER", "-1"),
        ("MAX_LAG_ON_FAILOVER", "1.5"),
    ] {
        // Cluster mode, where the last pair (the bad one) wins.
        let env = map(&[
            ("BUTTERVOLUME_ETCD_ENDPOINTS", "http://127.0.0.1:2379"),
            ("BUTTERVOLUME_NODE_NAME", "node-a"),
            (&format!("BUTTERVOLUME_{key}"), bad),
        ]);
        let err = Config::resolve(&env, &HashMap::new()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(key) && text.contains(bad),
            "{key}={bad}: {text}"
        );
    }
}
