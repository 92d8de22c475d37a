//! A restic repository on a second node of the node harness, over SFTP.

use super::*;

/// A target on another node over SFTP, reached with the node's own SSH key
/// as a separate, sftp-only account there (chrooted, internal-sftp forced;
/// it exists in that node's mount namespace only, see nodes.sh
/// sftp-account): root is not authorised there at all.
#[test]
fn sftp_target_on_a_second_node() {
    let n = testkit::nodes::Nodes::up("bks", 2, "3G");
    let (a, b) = (n.name(1), n.name(2));
    let out = testkit::nodes::nodes_sh(&["sftp-account", &b, "bvbackup", &a]);
    assert!(out.status.success(), "{}", stderr(&out));
    let uid: u32 = stdout(&out).trim().parse().unwrap();
    let b_ip = n.ip(&b);
    let config = n.data(&a).join("config/backup");
    std::fs::create_dir_all(&config).unwrap();
    private_file(&config.join("remote.pw"), "over sftp\n");
    private_file(
        &config.join("remote.env"),
        &format!(
            "RESTIC_REPOSITORY=sftp://bvbackup@{b_ip}:1122//data/app\n\
             RESTIC_PASSWORD_FILE=/etc/buttervolume/backup/remote.pw\n"
        ),
    );
    n.ok(&a, "/VolumeDriver.Create", json!({"Name": "app"}));
    let vol = n.data(&a).join("volumes/app");
    fill(&vol);

    let out = n.cli(&a, &["backup", "remote", "app"]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), n.log(&a));
    let first = stdout(&out);
    assert!(first.starts_with("app@"), "{first}");
    // The repository is the account's, in its chroot on b.
    let out = n.exec(
        &b,
        &[
            "stat",
            "-c",
            "%u",
            "/var/lib/buttervolume/sftp/bvbackup/data/app/config",
        ],
    );
    assert!(
        out.status.success(),
        "no repository on {b}: {}",
        stderr(&out)
    );
    assert_eq!(stdout(&out).trim(), uid.to_string());
    // The key gets sftp and nothing else: no command, no root login.
    let ssh = |user: &str| {
        n.exec(
            &a,
            &[
                "ssh",
                "-p",
                "1122",
                "-o",
                "BatchMode=yes",
                &format!("{user}@{b_ip}"),
                "id",
            ],
        )
    };
    let out = ssh("bvbackup");
    assert!(!stdout(&out).contains("uid="), "{}", stdout(&out));
    let out = ssh("root");
    assert!(!out.status.success() && !stdout(&out).contains("uid="));
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );

    let again = stdout(&n.cli(&a, &["backup", "remote", "app"]));
    assert!(again.contains("already in remote"), "{again}");
    let out = n.cli(&a, &["restore-backup", "remote", "app", "copy"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(files(&n.data(&a).join("volumes/copy")), files(&vol));
}
