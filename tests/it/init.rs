//! `buttervolume init` on a directory that is not btrfs: it creates a
//! sparse image, formats it, loop-mounts it and creates the data dirs; run
//! again it sees btrfs and changes nothing; a non-empty directory is refused.

use std::process::Command;

use testkit::bin;

fn init(root: &std::path::Path, size: &str) -> std::process::Output {
    Command::new(bin())
        .args(["init", "--loop-size", size])
        .env("BUTTERVOLUME_VOLUMES_PATH", root.join("data/volumes/"))
        .env("BUTTERVOLUME_SNAPSHOTS_PATH", root.join("data/snapshots/"))
        .env("BUTTERVOLUME_TEST_REMOTE_PATH", root.join("data/received/"))
        .output()
        .unwrap()
}

#[test]
fn init_makes_a_loop_btrfs_when_needed() {
    assert!(nix::unistd::geteuid().is_root(), "init needs root (mount)");
    let root = tempfile::tempdir_in("/var/tmp").unwrap();
    let data = root.path().join("data");
    assert!(
        !buttervolume::btrfs::is_btrfs(root.path()),
        "/var/tmp must not be btrfs here"
    );

    let out = init(root.path(), "256M");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let result = std::panic::catch_unwind(|| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("sparse btrfs image"), "{text}");
        assert!(buttervolume::btrfs::is_btrfs(&data));
        for dir in ["volumes", "snapshots", "received", "config", "ssh"] {
            assert!(data.join(dir).is_dir(), "{dir} missing");
        }
        let again = init(root.path(), "256M");
        assert!(again.status.success());
        assert!(String::from_utf8_lossy(&again.stdout).contains("already on btrfs"));
    });
    // Unmount and detach the loop device whatever happened.
    let _ = Command::new("umount").arg("-d").arg(&data).status();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    assert!(!buttervolume::btrfs::is_btrfs(&data));

    // A non-btrfs directory with data in it is never mounted over.
    let busy = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::create_dir_all(busy.path().join("data")).unwrap();
    std::fs::write(busy.path().join("data/precious"), "x").unwrap();
    let out = init(busy.path(), "256M");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not empty"), "{err}");
    assert!(busy.path().join("data/precious").exists());
    let out = init(busy.path(), "huge");
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid size"));
}
