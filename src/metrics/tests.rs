//! The registry's counters and the page they make.

use super::*;

#[test]
fn action_kinds_cover_every_action() {
    for (text, kind) in [
        ("snapshot", "snapshot"),
        ("replicate:h", "replicate"),
        ("purge:1h:1d", "purge"),
        ("synchronize:a,b", "synchronize"),
    ] {
        let action = Action::parse(text).unwrap();
        assert_eq!(action_kind(&action), kind);
        assert!(ACTION_KINDS.contains(&kind));
    }
}

mod page_tests {
    use super::*;
    use crate::api::{PeerStatus, VolumeStatus};

    #[test]
    fn each_family_once_with_its_samples_after_it() {
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let status = StatusReply {
            now,
            problems: vec![],
            volumes: vec![VolumeStatus {
                name: "db".into(),
                size_bytes: None,
                size_measured_at: None,
                size_stale: true,
                snapshots: 3,
                newest_snapshot: Some("db@1".into()),
                newest_snapshot_created: Some(now),
                newest_snapshot_age_seconds: Some(7),
                peers: vec![PeerStatus {
                    host: "10.0.0.2".into(),
                    sent_snapshot: Some("db@1".into()),
                    last_success: Some(now),
                    lag_seconds: 0,
                    unsent_snapshots: 0,
                    replicate_timer: None,
                    last_failure: None,
                    last_failure_at: None,
                }],
                follow: None,
                jobs: vec![],
                running_jobs: vec![],
                last_error: None,
                backups: vec![],
                owner: None,
            }],
            schedule_paused: false,
            cluster: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let text = render(&status, &dir.path().join("none.log"));
        let mut seen = std::collections::HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap().to_string();
                assert!(seen.insert(current.clone()), "{current} twice");
            } else if !line.starts_with('#') {
                assert!(
                    line.starts_with(&current),
                    "{line} outside its family {current}"
                );
            }
        }
        for sample in [
            "buttervolume_volume_snapshots{volume=\"db\"} 3",
            "buttervolume_volume_newest_snapshot_age_seconds{volume=\"db\"} 7",
            "buttervolume_replication_lag_seconds{volume=\"db\",peer=\"10.0.0.2\"} 0",
            "buttervolume_replication_last_success_timestamp_seconds{volume=\"db\",peer=\"10.0.0.2\"} 1800000000",
            "buttervolume_peer_refusals_total{kind=\"stream\"} 0",
            "buttervolume_problems{kind=\"job-failed\"} 0",
            "buttervolume_schedule_paused 0",
            "buttervolume_status_timestamp_seconds 1800000000",
        ] {
            assert!(text.lines().any(|l| l == sample), "{sample} missing:\n{text}");
        }
        assert!(
            !text.contains("buttervolume_volume_size_bytes{"),
            "unmeasured: absent"
        );
    }
}
