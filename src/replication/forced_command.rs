//! `buttervolume ssh-command`: what a peer may do on this node over SSH.
//!
//! sshd runs it for every connection of a paired key (authorized_keys line
//! `command="/usr/bin/buttervolume ssh-command",restrict ssh-ed25519 ...`)
//! with the client's request in `SSH_ORIGINAL_COMMAND`. The request must be
//! one of the [`super::protocol`] requests (the one definition of what a
//! peer may ask), naming only this node's snapshots or test dir (and the
//! volumes dir for rsync's read-only server side). Then:
//!
//! - a received stream is confined to the one snapshot it creates
//!   ([`super::receive`], [`super::confine`]);
//! - a delete must name a received snapshot (read-only, with a received
//!   UUID): never a volume, a local snapshot, a restore backup or a marker;
//! - rsync runs with only the options `rsync -a` and the reference's sync
//!   send (links are sent as links, never followed).
//!
//! Anything else is refused, logged with the peer's address and key
//! fingerprint, and exits with status 1.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::protocol::{is_pullable, ListedSnapshot, PeerRequest, ProtocolError};
use super::receive;
use crate::btrfs;
use crate::config::Config;
use crate::snapshots::Placed;
use crate::subvolumes::{Btrfs, Subvolumes};

/// Why a peer's request is refused (logged, and printed to the peer).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("{what} {dir} is not allowed")]
    Dir { what: &'static str, dir: String },
    #[error("no such snapshot {0}")]
    NoSuchSnapshot(PathBuf),
    #[error("{0} was not received from a peer")]
    NotReceived(PathBuf),
    #[error(transparent)]
    Btrfs(#[from] btrfs::BtrfsError),
}

/// A validated request.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Receive {
        dir: PathBuf,
        parent_uuid: Option<String>,
        /// The stream is zstd-compressed (only our own senders do that).
        zstd: bool,
        /// Reply with one JSON line (our own protocol) or quietly (reference).
        json: bool,
    },
    List {
        dir: PathBuf,
        volume: String,
    },
    ListNewest {
        dir: PathBuf,
    },
    Delete {
        path: PathBuf,
    },
    Send {
        path: PathBuf,
        parent: Option<PathBuf>,
    },
    Rsync {
        args: Vec<String>,
    },
}

fn same_dir(a: &str, b: &Path) -> bool {
    Path::new(a.trim_end_matches('/')) == Path::new(b.to_string_lossy().trim_end_matches('/'))
}

/// The one of `allowed` that `dir` names (trailing slashes aside).
fn one_of<'a>(dir: &str, allowed: &[&'a PathBuf]) -> Option<&'a PathBuf> {
    allowed.iter().copied().find(|a| same_dir(dir, a))
}

/// Parses `SSH_ORIGINAL_COMMAND` ([`PeerRequest::parse`]) and maps it onto
/// this node's directories; `Err` says why it is refused.
pub fn parse(config: &Config, original: &str) -> Result<Request, Refusal> {
    let request = PeerRequest::parse(original)?;
    let data_dir = |test: bool| {
        if test {
            config.test_remote_path.clone()
        } else {
            config.snapshots_path.clone()
        }
    };
    let receive_dirs = [&config.snapshots_path, &config.test_remote_path];
    Ok(match request {
        PeerRequest::Receive {
            test,
            zstd,
            parent_uuid,
        } => Request::Receive {
            dir: data_dir(test),
            parent_uuid,
            zstd,
            json: true,
        },
        PeerRequest::List { volume, test } => Request::List {
            dir: data_dir(test),
            volume,
        },
        PeerRequest::ListNewest { test } => Request::ListNewest {
            dir: data_dir(test),
        },
        PeerRequest::Delete { snapshot, test } => Request::Delete {
            path: data_dir(test).join(snapshot),
        },
        PeerRequest::Send {
            snapshot,
            parent,
            test,
        } => Request::Send {
            path: data_dir(test).join(snapshot),
            parent: parent.map(|p| data_dir(test).join(p)),
        },
        PeerRequest::BtrfsReceive { dir } => Request::Receive {
            dir: one_of(&dir, &receive_dirs)
                .ok_or_else(|| Refusal::Dir {
                    what: "receiving into",
                    dir: dir.clone(),
                })?
                .clone(),
            parent_uuid: None,
            zstd: false,
            json: false,
        },
        PeerRequest::BtrfsDelete { dir, snapshot } => Request::Delete {
            path: one_of(&dir, &receive_dirs)
                .ok_or_else(|| Refusal::Dir {
                    what: "deleting in",
                    dir: dir.clone(),
                })?
                .join(snapshot),
        },
        PeerRequest::Rsync { dir, volume, .. } => {
            if one_of(&dir, &[&config.volumes_path, &config.test_remote_path]).is_none() {
                return Err(Refusal::Dir {
                    what: "rsync of",
                    dir: format!("{dir}/{volume}"),
                });
            }
            Request::Rsync {
                args: original
                    .split_whitespace()
                    .skip(1)
                    .map(String::from)
                    .collect(),
            }
        }
    })
}

/// The SHA256 fingerprint (as `ssh-keygen -l` prints it) of the key the
/// peer authenticated with. sshd tells it through the file named by
/// `SSH_USER_AUTH` (`ExposeAuthInfo yes`, which the plugin's sshd sets).
fn peer_fingerprint() -> String {
    use base64::Engine;
    use sha2::Digest;
    let Some(file) = std::env::var_os("SSH_USER_AUTH") else {
        return "unknown".into();
    };
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .rev()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("publickey")).then_some(())?;
            let blob = words.nth(1)?;
            base64::engine::general_purpose::STANDARD.decode(blob).ok()
        })
        .map(|blob| {
            let digest = sha2::Sha256::digest(&blob);
            format!(
                "SHA256:{}",
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
            )
        })
        .next()
        .unwrap_or_else(|| "unknown".into())
}

fn log_line(config: &Config, outcome: &str, original: &str) {
    let line = format!(
        "{} client={} key={} outcome={outcome} command={original:?}\n",
        chrono::Local::now().to_rfc3339(),
        std::env::var("SSH_CLIENT").unwrap_or_default(),
        peer_fingerprint()
    );
    let _ = std::fs::create_dir_all(&config.state_path);
    let path = config.state_path.join(crate::metrics::peer_log::LOG_FILE);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        // A full disk can refuse even a write into the reserved range (its
        // metadata): wait a while for room (the failed receive's partial
        // copy being freed, an operator deleting something) rather than
        // lose the line that says what happened.
        for _ in 0..LOG_WRITE_TRIES {
            match f.write_all(line.as_bytes()) {
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => {
                    std::thread::sleep(LOG_WRITE_PAUSE);
                }
                _ => break,
            }
        }
        // Room for the next lines, allocated now: btrfs writes into a
        // preallocated range without allocating, so the line that says a
        // receive failed on a full disk can still be written.
        if let Ok(len) = f.metadata().map(|m| m.len() as i64) {
            let _ = nix::fcntl::fallocate(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
                len,
                LOG_RESERVE_BYTES,
            );
        }
        // Kept bounded: an idle round of many followed volumes logs a line
        // per volume and minute. The full log becomes `.1` (the previous
        // `.1` goes); a writer still holding it appends there.
        if f.metadata().is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
            let _ = std::fs::rename(&path, path.with_extension("log.1"));
        }
    }
}

/// How long a log line refused for lack of space is retried: tries, pause.
const LOG_WRITE_TRIES: u32 = 60;
const LOG_WRITE_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// Bytes kept allocated past the end of the forced command's log.
const LOG_RESERVE_BYTES: i64 = 64 << 10;

/// Size at which the forced command's log is rotated.
const LOG_ROTATE_BYTES: u64 = 16 << 20;

/// A peer deletes only what a peer sent: a read-only snapshot with a
/// received UUID. Never a local snapshot, a restore backup or a sent marker
/// (all made here, none received), never anything else.
pub fn delete(fs: &dyn Subvolumes, path: &Path) -> Result<(), Refusal> {
    if !fs.is_subvolume(path) {
        return Err(Refusal::NoSuchSnapshot(path.into()));
    }
    let id = fs.identity(path)?;
    if id.received_uuid.is_none() || !id.read_only {
        return Err(Refusal::NotReceived(path.into()));
    }
    fs.delete(path)?;
    Ok(())
}

/// The `list` reply: volume's snapshots and markers in `dir`, oldest first
/// in this node's creation order, which each line also carries.
pub fn list(fs: &dyn Subvolumes, dir: &Path, volume: &str, out: &mut dyn Write) {
    for placed in crate::snapshots::by_creation(fs, dir, volume, true) {
        write_listed(fs, dir, placed, out);
    }
}

/// `list-newest`: the newest pullable snapshot ([`ListedSnapshot::pullable`])
/// of every volume with one in `dir`, in one scan of `dir`.
pub fn list_newest(fs: &dyn Subvolumes, dir: &Path, out: &mut dyn Write) {
    for (_, placed) in crate::snapshots::snapshots_of_all(fs, dir) {
        let newest = placed
            .into_iter()
            .rev()
            .find(|p| is_pullable(&p.name, p.identity.read_only));
        if let Some(newest) = newest {
            write_listed(fs, dir, newest, out);
        }
    }
}

/// One [`ListedSnapshot`] line: `placed` with its lineage.
fn write_listed(fs: &dyn Subvolumes, dir: &Path, placed: Placed, out: &mut dyn Write) {
    let path = dir.join(&placed.name);
    let metadata = crate::metadata::VolumeMetadata::decode(
        &path,
        fs.get_xattr(&path, crate::metadata::XATTR).ok().flatten(),
    );
    let line = ListedSnapshot {
        lineage: metadata.lineage,
        created: Some(placed.order()),
        name: placed.name,
        uuid: placed.identity.uuid,
        received_uuid: placed.identity.received_uuid,
        read_only: placed.identity.read_only,
        parent_uuid: placed.identity.parent_uuid,
    };
    let _ = writeln!(out, "{}", serde_json::to_string(&line).unwrap_or_default());
}

/// A peer may pull only existing read-only snapshots (and parents).
pub fn sendable(fs: &dyn Subvolumes, path: &Path) -> Result<(), Refusal> {
    let read_only = fs.is_subvolume(path) && fs.identity(path).is_ok_and(|id| id.read_only);
    if read_only {
        Ok(())
    } else {
        Err(Refusal::NoSuchSnapshot(path.into()))
    }
}

/// Entry point of the `ssh-command` verb; returns the exit status.
pub fn run(config: &Config) -> i32 {
    let original = std::env::var("SSH_ORIGINAL_COMMAND").unwrap_or_default();
    let request = match parse(config, &original) {
        Ok(r) => r,
        Err(reason) => {
            log_line(config, &format!("refused ({reason})"), &original);
            eprintln!("buttervolume: refused {original:?}: {reason}");
            return 1;
        }
    };
    log_line(config, "accepted", &original);
    let fs = Btrfs;
    let outcome = match request {
        Request::Receive {
            dir,
            parent_uuid,
            zstd,
            json,
        } => return serve_receive(config, &original, &dir, parent_uuid.as_deref(), zstd, json),
        Request::List { dir, volume } => {
            list(&fs, &dir, &volume, &mut std::io::stdout().lock());
            return 0;
        }
        Request::ListNewest { dir } => {
            list_newest(&fs, &dir, &mut std::io::stdout().lock());
            return 0;
        }
        Request::Delete { path } => delete(&fs, &path).map_err(|e| ("delete refused", e)),
        Request::Send { path, parent } => std::iter::once(&path)
            .chain(parent.as_ref())
            .try_for_each(|p| sendable(&fs, p))
            .map_err(|e| ("send refused", e))
            .and_then(|()| {
                btrfs::send(&path, parent.as_deref(), &std::io::stdout())
                    .map_err(|e| ("send failed", e.into()))
            }),
        Request::Rsync { args } => {
            let err = Command::new("rsync").args(&args).exec();
            eprintln!("buttervolume: cannot run rsync: {err}");
            return 1;
        }
    };
    match outcome {
        Ok(()) => 0,
        Err((what, reason)) => {
            log_line(config, &format!("{what} ({reason})"), &original);
            eprintln!("buttervolume: {what}: {reason}");
            1
        }
    }
}

/// Receives a stream from stdin into `dir` ([`receive::receive`]).
fn serve_receive(
    config: &Config,
    original: &str,
    dir: &Path,
    parent_uuid: Option<&str>,
    zstd: bool,
    json: bool,
) -> i32 {
    let stdin = std::io::stdin().lock();
    let mut input: Box<dyn std::io::Read> = if zstd {
        match zstd::stream::read::Decoder::new(stdin) {
            Ok(d) => Box::new(d),
            Err(e) => {
                eprintln!("buttervolume: cannot start zstd: {e}");
                return 1;
            }
        }
    } else {
        Box::new(std::io::BufReader::with_capacity(super::PIPE_SIZE, stdin))
    };
    match receive::receive(dir, &mut input, parent_uuid) {
        Ok(received) => {
            // What the daemon's metrics count (crate::metrics::peer_log).
            let landed = format!("received {} bytes={}", received.name, received.bytes);
            log_line(config, &landed, original);
            if json {
                println!("{}", serde_json::to_string(&received).unwrap_or_default());
            } else {
                eprintln!("At subvol {}", received.name);
            }
            0
        }
        Err(e) => {
            log_line(config, &format!("receive failed ({e})"), original);
            eprintln!("buttervolume: receive failed: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config() -> Config {
        Config::resolve(&HashMap::new(), &HashMap::new()).unwrap()
    }

    #[test]
    fn the_log_is_rotated_once_full() {
        let dir = tempfile::tempdir().unwrap();
        let env = HashMap::from([(
            "BUTTERVOLUME_STATE_PATH".to_string(),
            dir.path().display().to_string(),
        )]);
        let c = Config::resolve(&env, &HashMap::new()).unwrap();
        let log = dir.path().join("ssh-command.log");
        let old = dir.path().join("ssh-command.log.1");
        log_line(&c, "accepted", "buttervolume list db");
        assert!(log.exists() && !old.exists());
        std::fs::File::options()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(LOG_ROTATE_BYTES)
            .unwrap();
        log_line(&c, "accepted", "buttervolume list db");
        assert!(!log.exists(), "a full log is moved aside");
        assert!(std::fs::metadata(&old).unwrap().len() > LOG_ROTATE_BYTES);
        log_line(&c, "refused (x)", "rm -rf /");
        let fresh = std::fs::read_to_string(&log).unwrap();
        assert_eq!(fresh.lines().count(), 1);
        assert!(fresh.contains("outcome=refused (x)"), "{fresh}");
    }

    #[test]
    fn accepts_exactly_the_protocol() {
        let c = config();
        assert_eq!(
            parse(&c, "buttervolume receive").unwrap(),
            Request::Receive {
                dir: c.snapshots_path.clone(),
                parent_uuid: None,
                zstd: false,
                json: true
            }
        );
        let uuid = "0b7c8a34-5a2e-7b4b-9c55-0123456789ab";
        assert!(matches!(
            parse(&c, &format!("buttervolume receive --test --zstd --parent-uuid {uuid}")).unwrap(),
            Request::Receive { ref dir, parent_uuid: Some(_), zstd: true, .. } if *dir == c.test_remote_path
        ));
        assert!(matches!(
            parse(&c, "buttervolume list db").unwrap(),
            Request::List { .. }
        ));
        assert!(matches!(
            parse(&c, "btrfs receive /var/lib/buttervolume/snapshots/").unwrap(),
            Request::Receive { json: false, .. }
        ));
        assert!(matches!(
            parse(&c, "btrfs receive /var/lib/buttervolume/received").unwrap(),
            Request::Receive { .. }
        ));
        assert_eq!(
            parse(&c, "btrfs subvolume delete /var/lib/buttervolume/snapshots//db@2026-01-01T00:00:00.000000").unwrap(),
            Request::Delete {
                path: c.snapshots_path.join("db@2026-01-01T00:00:00.000000")
            }
        );
        assert!(matches!(
            parse(
                &c,
                "rsync --server --sender -vlogDtprze.iLsfxCIvu . /var/lib/buttervolume/volumes/db/"
            )
            .unwrap(),
            Request::Rsync { .. }
        ));
    }

    #[test]
    fn a_peer_deletes_only_what_a_peer_sent() {
        use crate::subvolumes::fake::FakeSubvolumes;
        let dir = tempfile::tempdir().unwrap();
        let fs = FakeSubvolumes::default();
        let volume = dir.path().join("db");
        fs.create(&volume).unwrap();
        let local = dir.path().join("db@2026-01-01T00:00:00.000000");
        fs.snapshot(&volume, &local, true).unwrap();
        let marker = dir.path().join("db@2026-01-01T00:00:00.000000@peer");
        fs.snapshot(&local, &marker, true).unwrap();
        let received = dir.path().join("db@2026-01-02T00:00:00.000000");
        fs.receive(&volume, &received, "0b7c8a34-5a2e-7b4b-9c55-0123456789ab");
        let writable = dir.path().join("db@2026-01-03T00:00:00.000000");
        fs.receive(&volume, &writable, "1b7c8a34-5a2e-7b4b-9c55-0123456789ab");
        fs.set_read_only(&writable, false).unwrap();

        for refused in [&volume, &local, &marker, &writable] {
            let err = delete(&fs, refused).unwrap_err();
            assert!(matches!(err, Refusal::NotReceived(_)), "{err}");
            assert!(refused.exists());
        }
        let err = delete(&fs, &dir.path().join("db@nothing")).unwrap_err();
        assert!(matches!(err, Refusal::NoSuchSnapshot(_)), "{err}");
        delete(&fs, &received).unwrap();
        assert!(!received.exists());
    }

    #[test]
    fn the_listing_is_in_creation_order_with_identities() {
        use crate::subvolumes::fake::FakeSubvolumes;
        let dir = tempfile::tempdir().unwrap();
        let fs = FakeSubvolumes::default();
        let volume = dir.path().join("db");
        fs.create(&volume).unwrap();
        for name in [
            "db@2099-01-01T00:00:00.000000",
            "db@2000-01-01T00:00:00.000000",
        ] {
            fs.snapshot(&volume, &dir.path().join(name), true).unwrap();
        }
        let mut out = Vec::new();
        list(&fs, dir.path(), "db", &mut out);
        let listed = ListedSnapshot::parse_listing(&out).unwrap();
        let names: Vec<&str> = listed.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "db@2099-01-01T00:00:00.000000",
                "db@2000-01-01T00:00:00.000000"
            ]
        );
        assert!(listed[0].created < listed[1].created);
        let first = fs.identity(&dir.path().join(names[0])).unwrap();
        assert_eq!(listed[0].uuid, first.uuid);
        assert!(sendable(&fs, &dir.path().join(names[1])).is_ok());
        assert!(
            sendable(&fs, &volume).is_err(),
            "a writable volume is not sent"
        );
    }

    #[test]
    fn list_newest_gives_each_volumes_newest_snapshot_by_creation() {
        use crate::subvolumes::fake::FakeSubvolumes;
        let dir = tempfile::tempdir().unwrap();
        let fs = FakeSubvolumes::default();
        for volume in ["db", "web", "empty"] {
            fs.create(&dir.path().join(volume)).unwrap();
        }
        let db = dir.path().join("db");
        // Created in this order: a name dated 2099 is not the newest.
        for name in [
            "db@2099-01-01T00:00:00.000000",
            "db@2000-01-01T00:00:00.000000",
            "web@2000-01-01T00:00:00.000000",
        ] {
            let of = dir.path().join(crate::names::volume_of(name));
            fs.snapshot(&of, &dir.path().join(name), true).unwrap();
        }
        // Newer still, but neither a marker nor a writable copy is pulled.
        let newest = dir.path().join("db@2000-01-01T00:00:00.000000");
        fs.snapshot(
            &newest,
            &dir.path().join("db@2000-01-01T00:00:00.000000@h"),
            true,
        )
        .unwrap();
        fs.snapshot(
            &db,
            &dir.path().join("db@2001-01-01T00:00:00.000000"),
            false,
        )
        .unwrap();
        let mut out = Vec::new();
        list_newest(&fs, dir.path(), &mut out);
        let listed = ListedSnapshot::parse_listing(&out).unwrap();
        let names: Vec<&str> = listed.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "db@2000-01-01T00:00:00.000000",
                "web@2000-01-01T00:00:00.000000"
            ]
        );
        let db_newest = fs.identity(&newest).unwrap();
        assert_eq!(listed[0].uuid, db_newest.uuid);
        assert_eq!(listed[0].created, Some(db_newest.creation_order()));
    }

    #[test]
    fn refuses_everything_else() {
        let c = config();
        for bad in [
            "",
            "id",
            "sh -c id",
            "buttervolume receive; id",
            "buttervolume receive && id",
            "buttervolume receive $(id)",
            "buttervolume receive `id`",
            "buttervolume receive | id",
            "buttervolume receive --parent-uuid nope",
            "buttervolume list ../x",
            "buttervolume delete db",
            "btrfs receive /",
            "btrfs receive /var/lib/buttervolume/volumes",
            "btrfs receive /var/lib/buttervolume/snapshots/../volumes",
            "btrfs subvolume delete /var/lib/buttervolume/volumes/db",
            "btrfs subvolume delete /var/lib/buttervolume/snapshots/../volumes/db",
            "btrfs subvolume snapshot /var/lib/buttervolume/volumes/db /x",
            "rsync --server -vlogDtprze.iLsfxC . /var/lib/buttervolume/volumes/db/",
            "rsync --server --sender -v . /etc/",
            "rsync --server --sender -v --rsh=evil . /var/lib/buttervolume/volumes/db/",
            "rsync --server --sender -v . /var/lib/buttervolume/volumes/../../etc",
            "buttervolume receive\nid",
        ] {
            assert!(parse(&c, bad).is_err(), "{bad:?} accepted");
        }
    }
}
