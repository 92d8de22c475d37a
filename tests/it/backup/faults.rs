//! A repository locked by another restic and a full target: clear errors,
//! exit status 1, a failed job in the schedule history, nothing local
//! changed (the snapshot a failed backup took never appears).

use std::io::Write;
use std::process::{Child, Stdio};

use super::*;

/// `restic key passwd` waiting for the new password on a pipe we hold
/// open: restic's own command, holding an exclusive lock on the repository
/// until its stdin closes (then it refuses the empty password, changing
/// nothing).
struct Locker(Child);

impl Locker {
    fn hold(d: &Daemon) -> Locker {
        let child = Command::new("restic")
            .args(["key", "passwd"])
            .env("RESTIC_REPOSITORY", d.root.join("repo"))
            .env("RESTIC_PASSWORD_FILE", d.root.join("local.pw"))
            .env("RESTIC_CACHE_DIR", d.root.join("restic-cache"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let locks = d.root.join("repo/locks");
        testkit::wait_until("restic key passwd to lock the repository", 30, || {
            !testkit::entries(&locks).is_empty()
        });
        Locker(child)
    }

    fn release(mut self, d: &Daemon) {
        let mut stdin = self.0.stdin.take().unwrap();
        let _ = stdin.write_all(b"");
        drop(stdin);
        let status = self.0.wait().unwrap();
        assert!(
            !status.success(),
            "restic key passwd took an empty password"
        );
        assert!(testkit::entries(&d.root.join("repo/locks")).is_empty());
    }
}

impl Drop for Locker {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// A tmpfs of `size` at `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// What a failed backup must leave as it was: the snapshots, the
/// volume's files, the staging dir.
#[derive(Debug, PartialEq)]
struct Local {
    snapshots: Vec<String>,
    files: Vec<(String, Vec<u8>)>,
    staging: Vec<String>,
}

fn local_state(d: &Daemon, volume: &str) -> Local {
    Local {
        snapshots: testkit::entries(&d.snapshots()),
        files: files(&d.volumes().join(volume)),
        staging: testkit::entries(&d.volumes().join(".staging")),
    }
}

fn failed_job(d: &Daemon, volume: &str, action: &str) -> String {
    cli_ok(d, &["schedule", action, "60", volume]);
    testkit::wait_until(format!("{action} on {volume} to run"), 60, || {
        !last_result(d, volume, action).is_empty()
    });
    let result = last_result(d, volume, action);
    cli_ok(d, &["schedule", action, "0", volume]);
    assert!(result.contains("error"), "{result}");
    result
}

#[test]
fn a_locked_repository_fails_after_the_lock_wait_and_changes_nothing() {
    let (mut d, targets) = daemon("backuplock");
    d.env.push(("BUTTERVOLUME_TIMER".into(), "1".into()));
    d.env
        .push(("BUTTERVOLUME_BACKUP_LOCK_WAIT".into(), "3".into()));
    d.stop();
    d.spawn();
    add_target(&d, &targets, "local", "secret\n", "");
    d.ok("/VolumeDriver.Create", json!({"Name": "v"}));
    fill(&d.volumes().join("v"));
    cli_ok(&d, &["backup", "local", "v"]);
    std::fs::write(d.volumes().join("v/f00"), b"new\n").unwrap();
    let before = local_state(&d, "v");

    let locker = Locker::hold(&d);
    let err = cli_fails(&d, &["backup", "local", "v"]);
    assert!(
        err.starts_with("ERROR:root:") && err.contains("is locked by another restic"),
        "{err}"
    );
    assert!(d.log_text().contains("repository locked, retrying"));
    let failed = failed_job(&d, "v", "backup:local");
    assert!(failed.contains("locked by another restic"), "{failed}");
    assert_eq!(local_state(&d, "v"), before);
    assert_eq!(backups(&d, "v").len(), 1);
    let (_, status) = d.get("/VolumeDriver.Status");
    assert!(
        status.to_string().contains("locked by another restic"),
        "{status}"
    );

    // Once the lock is gone, the same backup goes through.
    locker.release(&d);
    let out = cli_ok(&d, &["backup", "local", "v"]);
    assert!(out.starts_with("v@") && !out.contains("already"), "{out}");
    assert_eq!(backups(&d, "v").len(), 2);
}

#[test]
fn a_full_target_fails_and_changes_nothing() {
    let (mut d, targets) = daemon("backupfull");
    d.env.push(("BUTTERVOLUME_TIMER".into(), "1".into()));
    d.stop();
    d.spawn();
    let full = Tmpfs::mount(d.root.join("full"), "2m");
    let pw = d.root.join("full.pw");
    private_file(&pw, "secret\n");
    private_file(
        &targets.join("full.env"),
        &format!(
            "RESTIC_REPOSITORY={}/repo\nRESTIC_PASSWORD_FILE={}\n",
            full.0.display(),
            pw.display()
        ),
    );
    d.ok("/VolumeDriver.Create", json!({"Name": "big"}));
    let vol = d.volumes().join("big");
    let mut random = vec![0u8; 8 << 20];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut random))
        .unwrap();
    std::fs::write(vol.join("data"), &random).unwrap();
    let before = local_state(&d, "big");

    let err = cli_fails(&d, &["backup", "full", "big"]);
    assert!(
        err.starts_with("ERROR:root:") && err.contains("is full (no space left on device)"),
        "{err}"
    );
    assert_eq!(local_state(&d, "big"), before);
    let failed = failed_job(&d, "big", "backup:full");
    assert!(failed.contains("is full"), "{failed}");
    assert_eq!(local_state(&d, "big"), before);
}
