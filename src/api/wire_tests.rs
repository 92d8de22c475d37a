//! The JSON field names of every request and reply type, checked against
//! their spelling on the wire (3.13's capitalized names, and our few
//! exceptions: `ID`, `Dryrun`, `BwLimit`), so moving a type to
//! `rename_all` or renaming a Rust field cannot change the JSON.

use serde::de::{self, Deserialize, Visitor};

use super::backup::*;
use super::cluster::*;
use super::status::*;
use super::*;

/// The field names a type's `Deserialize` accepts (what serde derives
/// for both directions, renames applied).
fn names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe;
    #[derive(Debug)]
    struct Fields(&'static [&'static str]);
    impl std::fmt::Display for Fields {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }
    impl std::error::Error for Fields {}
    impl de::Error for Fields {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Fields(&[])
        }
    }
    impl<'de> de::Deserializer<'de> for Probe {
        type Error = Fields;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Fields> {
            Err(Fields(&[]))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Fields> {
            Err(Fields(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    match T::deserialize(Probe) {
        Err(Fields(fields)) => fields,
        Ok(_) => unreachable!("the probe never yields a value"),
    }
}

macro_rules! wire {
    ($($ty:ty => [$($name:literal),* $(,)?]),* $(,)?) => {
        vec![$((stringify!($ty), names::<$ty>(), &[$($name),*][..])),*]
    };
}

#[test]
fn every_type_keeps_its_json_field_names() {
    let types = wire! {
        NameRequest => ["Name"],
        SnapshotRequest => ["Name", "IfChanged"],
        CreateRequest => ["Name", "Opts"],
        MountRequest => ["Name", "ID"],
        RestoreRequest => ["Name", "Target", "Force"],
        CloneRequest => ["Name", "Target"],
        PurgeRequest => ["Name", "Pattern", "Dryrun", "Explain", "At"],
        SendRequest => ["Name", "Host", "Test", "Compress", "BwLimit", "Detail"],
        PeerVolumeRequest => ["Name", "Host"],
        SyncRequest => ["Volumes", "Hosts", "Test"],
        ScheduleListRequest => ["Detail"],
        ScheduleRequest => ["Name", "Action", "Timer"],
        SnapshotReply => ["Snapshot", "Summary", "Created"],
        SnapshotsReply => ["Snapshots"],
        RestoreReply => ["VolumeBackup"],
        CloneReply => ["VolumeCloned"],
        PurgeReply => ["Purged", "Explain"],
        PurgeExplained => ["Snapshot", "Keep", "Reason", "PatternKeeps"],
        HandoverReply => ["Phase", "Snapshot", "Rounds", "Bytes", "CriticalSeconds"],
        SummaryReply => ["Summary"],
        TransfersReply => ["Transfers"],
        TransferStatus => ["Snapshot", "Host", "StartedAt", "ElapsedSeconds", "Full", "Bytes", "WireBytes", "EstimatedBytes"],
        BackupRequest => ["Target", "Name"],
        BackupReply => ["Snapshot", "Id", "Created", "FilesNew", "FilesChanged", "FilesUnmodified", "BytesAdded", "Bytes"],
        BackupListRequest => ["Target", "Name"],
        BackupListReply => ["Backups"],
        BackupEntry => ["Volume", "Snapshot", "Id", "Time", "Bytes"],
        BackupRestoreRequest => ["Target", "Name", "NewName"],
        BackupRestoreReply => ["Volume", "Snapshot", "Id", "VolumeBackup"],
        BackupCheckRequest => ["Target", "ReadDataSubset"],
        BackupCheckReply => ["Summary"],
        BackupStatus => ["Target", "Snapshot", "Id", "Time", "AgeSeconds", "Bytes", "Timer", "LastError", "LastCheck", "LastCheckOk"],
        StatusReply => ["Now", "Problems", "Volumes", "SchedulePaused", "Cluster"],
        OwnerReply => ["Name", "Node", "Owner", "OwnerAlive", "Known", "Fenced", "Diverged", "EtcdError"],
        ClusterStatus => ["Node", "OwnerTtlSeconds", "SecondsSinceEtcd", "LeaseAgeSeconds", "Owned", "Fenced", "Diverged", "Takeovers"],
        OwnedVolume => ["Name", "Epoch", "Since", "How"],
        DivergedState => ["Snapshot", "Why"],
        Problem => ["Kind", "Volume", "Peer", "Message"],
        VolumeStatus => ["Name", "SizeBytes", "SizeMeasuredAt", "SizeStale", "Snapshots", "NewestSnapshot", "NewestSnapshotCreated", "NewestSnapshotAgeSeconds", "Peers", "Follow", "Jobs", "RunningJobs", "LastError", "Backups", "Owner"],
        PeerStatus => ["Host", "SentSnapshot", "LastSuccess", "LagSeconds", "UnsentSnapshots", "ReplicateTimer", "LastFailure", "LastFailureAt"],
        JobStatus => ["Action", "Timer", "Active", "Running", "LastRun", "NextRun", "LastOk", "LastResult", "LastDurationMs"],
    };
    for (ty, actual, expected) in types {
        assert_eq!(actual, expected, "{ty}");
    }
}

/// The odd names survive a round trip next to `rename_all`'s.
#[test]
fn send_and_mount_requests_round_trip() {
    let send: SendRequest = serde_json::from_value(serde_json::json!({
        "Name": "db@2026-01-01T00:00:00.000000",
        "Host": "peer",
        "Test": true,
        "Compress": true,
        "BwLimit": 5,
        "Detail": true,
    }))
    .unwrap();
    let again = serde_json::to_value(&send).unwrap();
    assert_eq!(again["BwLimit"], 5);
    assert_eq!(again["Name"], "db@2026-01-01T00:00:00.000000");
    let mount: MountRequest =
        serde_json::from_value(serde_json::json!({"Name": "db", "ID": "abc"})).unwrap();
    assert_eq!(mount.docker_id(), Some("abc"));
    assert_eq!(
        serde_json::to_value(&mount).unwrap(),
        serde_json::json!({"Name": "db", "ID": "abc"})
    );
}
