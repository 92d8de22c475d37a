//! Parent choice and the moved-on rule.

use super::*;

fn placed(name: &str, n: u64, received: Option<&str>) -> Placed {
    Placed::example(
        name,
        SubvolumeIdentity::example(&format!("local-{n}"), n).received(received),
    )
}

fn listed(name: &str, uuid: &str, received: Option<&str>) -> ListedSnapshot {
    ListedSnapshot::example(name, uuid, received, None, &[])
}

#[test]
fn a_peer_that_moved_on_is_told_apart() {
    let mut mine = listed("db@1", "peer-1", Some("local-1"));
    mine.created = Some((1, 256));
    let local = vec![placed("db@1", 1, None)];
    // The peer holds only what we sent: fine.
    assert_eq!(moved_on("db", &[mine.clone()], &local), None);
    // It made a snapshot of its own since: moved on.
    let mut theirs = listed("db@2", "peer-2", None);
    theirs.created = Some((2, 257));
    let remote = vec![mine.clone(), theirs.clone()];
    assert_eq!(moved_on("db", &remote, &local), Some("db@2"));
    // Once received here, it is seen.
    let received = placed("db@2", 2, Some("peer-2"));
    let local_after = vec![local[0].clone(), received];
    assert_eq!(moved_on("db", &remote, &local_after), None);
    // Markers and other volumes do not count; no order: cannot tell.
    let mut marker = listed("db@2@h", "peer-3", None);
    marker.created = Some((3, 258));
    assert_eq!(moved_on("db", &[mine.clone(), marker], &local), None);
    let mut unordered = theirs;
    unordered.created = None;
    assert_eq!(moved_on("db", &[mine, unordered], &local), None);
}

#[test]
fn the_parent_is_the_newest_shared_by_identity_created_before() {
    // Names sort the other way round from creation: names never decide.
    let local = vec![
        placed("db@3", 1, None),
        placed("db@2", 2, None),
        placed("db@1", 3, None),
        placed("db@0", 5, None),
    ];
    let remote = vec![
        listed("db@3", "peer-a", Some("local-1")),
        listed("db@2", "peer-b", Some("local-2")),
        // Same name as a local snapshot, but another identity.
        listed("db@1", "peer-c", Some("someone-else")),
        // Shared, but created after the one sent.
        listed("db@0", "peer-d", Some("local-5")),
    ];
    let parent = choose_parent(local.clone(), (4, 259), &remote).unwrap();
    assert_eq!(parent.name, "db@2");
    // Nothing shared: a full send.
    assert!(choose_parent(local.clone(), (4, 259), &[]).is_none());
    // A snapshot received here from the peer is shared through its
    // received UUID.
    let received = vec![placed("db@r", 1, Some("peer-z"))];
    let remote = vec![listed("db@r", "peer-z", None)];
    assert_eq!(
        choose_parent(received, (2, 300), &remote).unwrap().name,
        "db@r"
    );
}
