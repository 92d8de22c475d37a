//! The receive side of the trust boundary: hostile send streams, fed to the
//! forced command exactly as sshd does (`SSH_ORIGINAL_COMMAND`, stream on
//! stdin), through both entry points (`buttervolume receive` and the
//! reference's literal `btrfs receive <dir>`). Each must be refused with
//! nothing landed and nothing touched outside; legitimate full and
//! incremental streams of a tricky tree (renames, symlinks, hard links,
//! deletions) must still land exactly.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use buttervolume::replication::stream::{attr, build, cmd};
use testkit::{bin, cleanup_dir, output_with_stdin, test_btrfs};

mod peer_commands;

const NAME: &str = "db@2026-01-01T00:00:00.000000";

struct Node {
    root: PathBuf,
}

impl Node {
    fn new(test: &str) -> Node {
        let root = test_btrfs().join(format!("{test}-{}", std::process::id()));
        if root.exists() {
            cleanup_dir(&root);
        }
        for dir in ["volumes", "snapshots", "received", "state", "outside"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        buttervolume::btrfs::create_subvolume(&root.join("volumes/db")).unwrap();
        std::fs::write(root.join("volumes/db/canary"), b"the app's data").unwrap();
        std::fs::write(root.join("outside/victim"), b"a host file").unwrap();
        Node { root }
    }

    /// Runs the forced command with `request`, the stream on stdin.
    fn ssh_command(&self, request: &str, stream: &[u8]) -> (bool, String) {
        let d = |sub: &str| format!("{}/{sub}/", self.root.display());
        let out = output_with_stdin(
            Command::new(bin())
                .arg("ssh-command")
                .env("SSH_ORIGINAL_COMMAND", request)
                .env("BUTTERVOLUME_VOLUMES_PATH", d("volumes"))
                .env("BUTTERVOLUME_SNAPSHOTS_PATH", d("snapshots"))
                .env("BUTTERVOLUME_TEST_REMOTE_PATH", d("received"))
                .env("BUTTERVOLUME_STATE_PATH", d("state")),
            stream,
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Everything a hostile stream must leave alone.
    fn fingerprint(&self) -> BTreeMap<String, String> {
        let mut seen = BTreeMap::new();
        let canary = self.root.join("volumes/db/canary");
        let m = std::fs::symlink_metadata(&canary).unwrap();
        let xattrs = xattr_names(&canary);
        seen.insert(
            "canary".into(),
            format!(
                "{:?} mode={:o} uid={} gid={} xattrs={xattrs:?}",
                std::fs::read(&canary).unwrap(),
                m.permissions().mode(),
                m.uid(),
                m.gid()
            ),
        );
        for dir in [
            "volumes",
            "volumes/db",
            "outside",
            "snapshots",
            "received",
            "",
        ] {
            let mut names: Vec<String> = std::fs::read_dir(self.root.join(dir))
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "state")
                .collect();
            names.sort();
            seen.insert(format!("dir {dir}"), names.join(","));
        }
        seen.insert(
            "victim".into(),
            format!(
                "{:?}",
                std::fs::read(self.root.join("outside/victim")).unwrap()
            ),
        );
        seen.insert(
            "authorized_keys".into(),
            format!("{:?}", std::fs::read("/root/.ssh/authorized_keys").ok()),
        );
        seen
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        cleanup_dir(&self.root);
    }
}

fn xattr_names(path: &Path) -> Vec<u8> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: `c` is a NUL-terminated path and `buf` is writable for its
    // whole length, which is what llistxattr(2) is told.
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    buf.truncate(n.max(0) as usize);
    buf
}

fn first_command(name: &str) -> Vec<u8> {
    build::command(
        cmd::SUBVOL,
        &[
            (attr::PATH, name.as_bytes()),
            (attr::UUID, &[0x5a; 16]),
            (2, &1u64.to_le_bytes()),
        ],
    )
}

fn stream(commands: &[Vec<u8>]) -> Vec<u8> {
    let mut s = build::header(1);
    s.extend(first_command(NAME));
    for c in commands {
        s.extend_from_slice(c);
    }
    s.extend(build::command(cmd::END, &[]));
    s
}

fn path_cmd(command: u16, path: &str, more: &[(u16, &[u8])]) -> Vec<u8> {
    let mut attributes: Vec<(u16, &[u8])> = vec![(attr::PATH, path.as_bytes())];
    attributes.extend_from_slice(more);
    build::command(command, &attributes)
}

/// One hostile stream per path-carrying command, and the structural tricks.
fn hostile_streams(root: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let canary = "../../volumes/db/canary";
    let outside_abs = root.join("outside").display().to_string();
    let zero = 0u64.to_le_bytes();
    let mut second = build::header(1);
    second.extend(first_command("db@2099-01-01T00:00:00.000000"));
    second.extend(build::command(cmd::END, &[]));
    vec![
        (
            "write through ..",
            stream(&[path_cmd(
                cmd::WRITE,
                canary,
                &[(18, &zero), (attr::DATA, b"PWNED")],
            )]),
        ),
        (
            "mkfile outside",
            stream(&[path_cmd(cmd::MKFILE, "../../outside/new", &[])]),
        ),
        (
            "mkdir outside",
            stream(&[path_cmd(cmd::MKDIR, "../../outside/newdir", &[])]),
        ),
        (
            "rename over a live file",
            stream(&[
                path_cmd(cmd::MKFILE, "f", &[]),
                path_cmd(cmd::RENAME, "f", &[(attr::PATH_TO, canary.as_bytes())]),
            ]),
        ),
        (
            "unlink a live file",
            stream(&[path_cmd(cmd::UNLINK, canary, &[])]),
        ),
        (
            "symlink outside",
            stream(&[path_cmd(
                cmd::SYMLINK,
                "../../outside/link",
                &[(attr::PATH_LINK, b"/etc/passwd")],
            )]),
        ),
        (
            "link outside",
            stream(&[
                path_cmd(cmd::MKFILE, "f", &[]),
                path_cmd(cmd::LINK, "../../outside/hard", &[(attr::PATH_LINK, b"f")]),
            ]),
        ),
        (
            "truncate",
            stream(&[path_cmd(cmd::TRUNCATE, canary, &[(4, &zero)])]),
        ),
        (
            "chmod",
            stream(&[path_cmd(
                cmd::CHMOD,
                canary,
                &[(5, &0o777u64.to_le_bytes())],
            )]),
        ),
        (
            "chown",
            stream(&[path_cmd(
                cmd::CHOWN,
                canary,
                &[(6, &1234u64.to_le_bytes()), (7, &1234u64.to_le_bytes())],
            )]),
        ),
        (
            "set_xattr",
            stream(&[path_cmd(
                cmd::SET_XATTR,
                canary,
                &[(13, b"user.pwned"), (14, b"1")],
            )]),
        ),
        (
            "clone onto a live file",
            stream(&[path_cmd(
                cmd::CLONE,
                canary,
                &[
                    (18, &zero),
                    (24, &4096u64.to_le_bytes()),
                    (attr::CLONE_UUID, &[0x5a; 16]),
                    (21, &1u64.to_le_bytes()),
                    (attr::CLONE_PATH, b"f"),
                    (23, &zero),
                ],
            )]),
        ),
        (
            "absolute symlink then write through it",
            stream(&[
                path_cmd(
                    cmd::SYMLINK,
                    "l",
                    &[(attr::PATH_LINK, outside_abs.as_bytes())],
                ),
                path_cmd(cmd::MKFILE, "l/new", &[]),
                path_cmd(
                    cmd::WRITE,
                    "l/victim",
                    &[(18, &zero), (attr::DATA, b"PWNED")],
                ),
            ]),
        ),
        (
            "relative symlink into a live volume",
            stream(&[
                path_cmd(cmd::SYMLINK, "l", &[(attr::PATH_LINK, b"../../volumes/db")]),
                path_cmd(
                    cmd::WRITE,
                    "l/canary",
                    &[(18, &zero), (attr::DATA, b"PWNED")],
                ),
            ]),
        ),
        (
            "write to a symlink itself",
            stream(&[
                path_cmd(
                    cmd::SYMLINK,
                    "l",
                    &[(
                        attr::PATH_LINK,
                        format!("{}/victim", outside_abs).as_bytes(),
                    )],
                ),
                path_cmd(cmd::WRITE, "l", &[(18, &zero), (attr::DATA, b"PWNED")]),
            ]),
        ),
        (
            "a second subvolume in the stream",
            stream(&[first_command("db@2099-01-01T00:00:00.000000")]),
        ),
        (
            "a second stream after the end",
            [stream(&[]), second].concat(),
        ),
        ("no end command", {
            let mut s = build::header(1);
            s.extend(first_command(NAME));
            s.extend(path_cmd(cmd::MKFILE, "f", &[]));
            s
        }),
    ]
}

fn send_stream(args: &[&str]) -> Vec<u8> {
    let out = Command::new("btrfs")
        .arg("send")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "btrfs send {args:?}: {out:?}");
    out.stdout
}

#[test]
fn hostile_streams_are_refused_through_both_entry_points() {
    let node = Node::new("confine-hostile");
    let before = node.fingerprint();
    let snapshots = format!("{}/snapshots/", node.root.display());
    let literal = format!("btrfs receive {snapshots}");
    for (what, bytes) in hostile_streams(&node.root) {
        for request in ["buttervolume receive", literal.as_str()] {
            let (ok, stderr) = node.ssh_command(request, &bytes);
            assert!(!ok, "{what} via {request:?} was accepted: {stderr}");
            assert_eq!(
                node.fingerprint(),
                before,
                "{what} via {request:?} changed something: {stderr}"
            );
        }
    }
    let log = std::fs::read_to_string(node.root.join("state/ssh-command.log")).unwrap();
    assert!(log.contains("refused send stream"), "{log}");

    // A legitimate stream still lands.
    let vol = node.root.join("volumes/db");
    let snap = node.root.join("snapshots-src");
    std::fs::create_dir_all(&snap).unwrap();
    buttervolume::btrfs::snapshot(&vol, &snap.join(NAME), true).unwrap();
    let bytes = send_stream(&[snap.join(NAME).to_str().unwrap()]);
    let (ok, stderr) = node.ssh_command("buttervolume receive", &bytes);
    assert!(ok, "{stderr}");
    assert_eq!(
        std::fs::read(node.root.join("snapshots").join(NAME).join("canary")).unwrap(),
        b"the app's data"
    );
    buttervolume::btrfs::delete_subvolume(&snap.join(NAME)).unwrap();
}

/// Type, content and link target of every entry under `root`.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&path).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&path).unwrap().display())
            } else if m.is_dir() {
                walk(root, &path, out);
                "dir".to_string()
            } else {
                format!(
                    "file {} nlink={}",
                    std::fs::read(&path).unwrap().len(),
                    m.nlink()
                )
            };
            out.insert(rel, format!("{what} mode={:o}", m.permissions().mode()));
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn legitimate_full_and_incremental_streams_land_exactly() {
    let node = Node::new("confine-legit");
    let vol = node.root.join("volumes/db");
    let src = node.root.join("snapshots-src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(vol.join("a/b/c")).unwrap();
    std::fs::write(vol.join("a/b/c/deep"), vec![7u8; 200_000]).unwrap();
    std::fs::write(vol.join("a/file"), b"one").unwrap();
    std::fs::hard_link(vol.join("a/file"), vol.join("hard")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", vol.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("a/b", vol.join("rel-link")).unwrap();
    std::fs::create_dir_all(vol.join("gone/sub")).unwrap();
    std::fs::write(vol.join("gone/sub/x"), b"x").unwrap();

    let s1 = "db@2026-01-01T00:00:00.000001";
    let s2 = "db@2026-01-01T00:00:00.000002";
    buttervolume::btrfs::snapshot(&vol, &src.join(s1), true).unwrap();
    // Everything an incremental stream can do: move directories, swap a
    // file for a directory, replace a symlink, delete a tree, rename into
    // a new directory, link again.
    std::fs::rename(vol.join("a/b"), vol.join("moved")).unwrap();
    std::fs::remove_file(vol.join("a/file")).unwrap();
    std::fs::create_dir(vol.join("a/file")).unwrap();
    std::fs::write(vol.join("a/file/inner"), b"now a dir").unwrap();
    std::fs::remove_file(vol.join("rel-link")).unwrap();
    std::os::unix::fs::symlink("moved/c", vol.join("rel-link")).unwrap();
    std::fs::remove_dir_all(vol.join("gone")).unwrap();
    std::fs::create_dir(vol.join("new")).unwrap();
    std::fs::rename(vol.join("hard"), vol.join("new/hard")).unwrap();
    std::fs::hard_link(vol.join("new/hard"), vol.join("moved/hard2")).unwrap();
    std::fs::write(vol.join("moved/c/deep"), vec![8u8; 300_000]).unwrap();
    buttervolume::btrfs::snapshot(&vol, &src.join(s2), true).unwrap();

    let full = send_stream(&[src.join(s1).to_str().unwrap()]);
    let (ok, stderr) = node.ssh_command("buttervolume receive", &full);
    assert!(ok, "full: {stderr}");
    let landed = node.root.join("snapshots");
    assert_eq!(tree(&landed.join(s1)), tree(&src.join(s1)));

    let parent_key = buttervolume::btrfs::identity(&src.join(s1)).unwrap().uuid;
    let delta = send_stream(&[
        "-p",
        src.join(s1).to_str().unwrap(),
        src.join(s2).to_str().unwrap(),
    ]);
    let (ok, stderr) = node.ssh_command(
        &format!("buttervolume receive --parent-uuid {parent_key}"),
        &delta,
    );
    assert!(ok, "incremental: {stderr}");
    assert_eq!(tree(&landed.join(s2)), tree(&src.join(s2)));
    assert_eq!(
        std::fs::read(landed.join(s2).join("moved/c/deep")).unwrap(),
        vec![8u8; 300_000]
    );

    // The reference's literal command takes the same path.
    std::fs::write(vol.join("moved/c/deep"), b"third").unwrap();
    let s3 = "db@2026-01-01T00:00:00.000003";
    buttervolume::btrfs::snapshot(&vol, &src.join(s3), true).unwrap();
    let delta = send_stream(&[
        "-p",
        src.join(s2).to_str().unwrap(),
        src.join(s3).to_str().unwrap(),
    ]);
    let (ok, stderr) = node.ssh_command(&format!("btrfs receive {}", landed.display()), &delta);
    assert!(ok, "literal: {stderr}");
    assert_eq!(tree(&landed.join(s3)), tree(&src.join(s3)));
    for s in [s1, s2, s3] {
        buttervolume::btrfs::delete_subvolume(&src.join(s)).unwrap();
    }
}
