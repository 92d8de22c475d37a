//! A real Prometheus server (the Debian package) scrapes a node's daemon
//! every second during a small replication scenario, and the lag it stored
//! is checked through its HTTP API (`/api/v1/query`) against the truth:
//! 0 after a send, then the age of the snapshot not sent (from its btrfs
//! creation time), growing, then 0 again once it is sent.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use testkit::metrics::{free_port, http_get, Prometheus};
use testkit::nodes::Nodes;
use testkit::wait_until;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The stored samples of `selector` whose figures were read after
/// `since` (`buttervolume_status_timestamp_seconds` of the same scrape:
/// the scrapes of a second share one read), once there are at least
/// `count` of them: (read at, value).
fn samples_after(prom: &Prometheus, selector: &str, since: f64, count: usize) -> Vec<(f64, f64)> {
    let mut after = Vec::new();
    wait_until(
        format!("{count} scrapes of {selector} read after {since}"),
        60,
        || {
            let read_at = prom.samples("buttervolume_status_timestamp_seconds", "1m");
            after = prom
                .samples(selector, "1m")
                .into_iter()
                .filter_map(|(at, value)| {
                    let (_, read) = read_at.iter().find(|(t, _)| *t == at)?;
                    (*read > since).then_some((*read, value))
                })
                .collect();
            after.len() >= count
        },
    );
    after
}

#[test]
fn prometheus_sees_the_lag_that_is_true() {
    let (n, a, _b, b_ip) = Nodes::sender_and_receiver("pm", "2G");
    let port = free_port(&a);
    n.stop(&a);
    n.start_with(
        &a,
        &[&format!("BUTTERVOLUME_METRICS_ADDR=127.0.0.1:{port}")],
    );
    wait_until("the metrics listener", 10, || {
        http_get(&a, port, "/metrics").is_some_and(|(s, _)| s == 200)
    });
    let prom = Prometheus::start(&a, port);

    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "db"}));
    std::fs::write(n.data(&a).join("volumes/db/f"), vec![1u8; 1 << 20]).unwrap();
    let s1 = n.snapshot(&a, "db");
    n.send(&a, &s1, &b_ip);
    let sent = now();
    let lag = format!("buttervolume_replication_lag_seconds{{volume=\"db\",peer=\"{b_ip}\"}}");
    for (_, value) in samples_after(&prom, &lag, sent, 2) {
        assert_eq!(value, 0.0, "the peer holds the newest snapshot");
    }
    // Prometheus judged every scrape well formed.
    let up = prom.query("up{job=\"buttervolume\"}");
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0].2, 1.0);

    // A snapshot that is not sent: the lag is its age at each scrape.
    std::fs::write(n.data(&a).join("volumes/db/g"), b"more").unwrap();
    let s2 = n.snapshot(&a, "db");
    let taken = now();
    let created = buttervolume::btrfs::identity(&n.data(&a).join("snapshots").join(&s2))
        .unwrap()
        .otime as f64;
    let grown = samples_after(&prom, &lag, taken, 4);
    for (read, value) in &grown {
        // The daemon counts whole seconds from its own `now`.
        let truth = (read - created).floor();
        assert_eq!(
            *value, truth,
            "lag {value} read at {read}, snapshot created at {created}"
        );
    }
    assert!(
        grown.windows(2).all(|w| w[0].1 <= w[1].1),
        "the lag only grows: {grown:?}"
    );
    assert!(grown.last().unwrap().1 >= 3.0, "{grown:?}");
    let unsent =
        format!("buttervolume_replication_unsent_snapshots{{volume=\"db\",peer=\"{b_ip}\"}}");
    let counted = prom.query(&unsent);
    assert_eq!(counted[0].2, 1.0, "{counted:?}");

    // Sent: back to 0.
    n.send(&a, &s2, &b_ip);
    let sent = now();
    for (_, value) in samples_after(&prom, &lag, sent, 2) {
        assert_eq!(value, 0.0);
    }
}
