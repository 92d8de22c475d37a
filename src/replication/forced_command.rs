//! `buttervolume ssh-command`: what a peer may do on this node over SSH.
//!
//! sshd runs it for every connection of a paired key (authorized_keys line
//! `command="/usr/bin/buttervolume ssh-command",restrict ssh-ed25519 ...`)
//! with the client's request in `SSH_ORIGINAL_COMMAND`. The request is split
//! on whitespace (no shell ever sees it) and must be exactly one of:
//!
//! - `buttervolume receive [--test] [--parent-uuid <uuid>]`: land a send
//!   stream from stdin in SNAPSHOTS_PATH (TEST_REMOTE_PATH with `--test`);
//! - `buttervolume list <volume> [--test]`: that volume's snapshots with
//!   their UUIDs, one JSON object per line (for parent selection);
//! - `buttervolume delete <snapshot> [--test]`: delete a snapshot that was
//!   received (read-only, with a received UUID): never a volume, a local
//!   snapshot, a restore backup or a sent marker;
//! - `btrfs receive <dir>` and `btrfs subvolume delete <dir>/<snapshot>`,
//!   the literal commands a Python buttervolume 3.13 node sends, for `<dir>`
//!   the snapshots or test dir only (the same receive and delete rules);
//! - `rsync --server --sender <flags> . <VOLUMES_PATH>/<volume>[/]`: the
//!   server side of `buttervolume sync`, read-only, one volume, with only
//!   the options `rsync -a` and the reference's sync send (links are sent
//!   as links, never followed).
//!
//! Anything else (shell metacharacters, `..`, other paths, other programs)
//! is refused, logged, and exits with status 1.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::receive;
use crate::btrfs;
use crate::config::Config;
use crate::names;

/// Characters a legitimate request can contain.
fn allowed_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || " _.:@/,=+-".contains(c)
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
    Delete {
        path: PathBuf,
    },
    Rsync {
        args: Vec<String>,
    },
}

fn same_dir(a: &str, b: &Path) -> bool {
    Path::new(a.trim_end_matches('/')) == Path::new(b.to_string_lossy().trim_end_matches('/'))
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// Parses and validates `SSH_ORIGINAL_COMMAND`; `Err` says why it is refused.
pub fn parse(config: &Config, original: &str) -> Result<Request, String> {
    if original.len() > 4096 {
        return Err("request too long".into());
    }
    if let Some(c) = original.chars().find(|c| !allowed_char(*c)) {
        return Err(format!("forbidden character {c:?}"));
    }
    let words: Vec<&str> = original.split_whitespace().collect();
    if words.iter().any(|w| w.split('/').any(|part| part == "..")) {
        return Err("\"..\" is not allowed".into());
    }
    let data_dir = |test: bool| {
        if test {
            config.test_remote_path.clone()
        } else {
            config.snapshots_path.clone()
        }
    };
    match words.as_slice() {
        ["buttervolume", "receive", rest @ ..] => {
            let (mut test, mut parent_uuid, mut zstd) = (false, None, false);
            let mut it = rest.iter();
            while let Some(word) = it.next() {
                match *word {
                    "--test" => test = true,
                    "--zstd" => zstd = true,
                    "--parent-uuid" => match it.next() {
                        Some(u) if is_uuid(u) => parent_uuid = Some(u.to_string()),
                        _ => return Err("--parent-uuid needs a UUID".into()),
                    },
                    other => return Err(format!("unknown receive option {other:?}")),
                }
            }
            Ok(Request::Receive {
                dir: data_dir(test),
                parent_uuid,
                zstd,
                json: true,
            })
        }
        ["buttervolume", "list", volume, rest @ ..] if rest.is_empty() || rest == ["--test"] => {
            names::check_volume(volume).map_err(|e| e.to_string())?;
            Ok(Request::List {
                dir: data_dir(!rest.is_empty()),
                volume: volume.to_string(),
            })
        }
        ["buttervolume", "delete", snapshot, rest @ ..]
            if rest.is_empty() || rest == ["--test"] =>
        {
            names::check_snapshot(snapshot).map_err(|e| e.to_string())?;
            Ok(Request::Delete {
                path: data_dir(!rest.is_empty()).join(snapshot),
            })
        }
        ["btrfs", "receive", dir] => {
            let dir = [&config.snapshots_path, &config.test_remote_path]
                .into_iter()
                .find(|allowed| same_dir(dir, allowed))
                .ok_or_else(|| format!("receiving into {dir} is not allowed"))?;
            Ok(Request::Receive {
                dir: dir.clone(),
                parent_uuid: None,
                zstd: false,
                json: false,
            })
        }
        ["btrfs", "subvolume", "delete", path] => {
            let (dir, name) = path
                .rsplit_once('/')
                .ok_or_else(|| "expected <dir>/<snapshot>".to_string())?;
            names::check_snapshot(name).map_err(|e| e.to_string())?;
            let dir = [&config.snapshots_path, &config.test_remote_path]
                .into_iter()
                .find(|allowed| same_dir(dir, allowed))
                .ok_or_else(|| format!("deleting in {dir} is not allowed"))?;
            Ok(Request::Delete {
                path: dir.join(name),
            })
        }
        ["rsync", "--server", "--sender", flags @ .., ".", path] => {
            check_rsync_flags(flags)?;
            let trimmed = path.trim_end_matches('/');
            let (dir, volume) = trimmed
                .rsplit_once('/')
                .ok_or_else(|| "expected <volumes dir>/<volume>".to_string())?;
            names::check_volume(volume).map_err(|e| e.to_string())?;
            if ![&config.volumes_path, &config.test_remote_path]
                .into_iter()
                .any(|allowed| same_dir(dir, allowed))
            {
                return Err(format!("rsync of {path} is not allowed"));
            }
            Ok(Request::Rsync {
                args: words[1..].iter().map(|w| w.to_string()).collect(),
            })
        }
        _ => Err("not an allowed command".into()),
    }
}

/// Option letters an rsync `--sender` server may get: what `rsync -a`,
/// `-v`, `-z`, `-H`, `-A`, `-X`, `-S`, `-c`, `-x`, `-n` and the reference's
/// `sync` (`-r -a -z -h`) send. Links are sent as links (`l`); `L` and `k`
/// (follow symlinks) are not here, so a volume holding a symlink to a host
/// file can only ever transfer the link.
const RSYNC_SHORT: &str = "vlogDtprzHAXScxnd";

/// Long options a `--sender` server may get; none follows a symlink.
const RSYNC_LONG: [&str; 6] = [
    "--numeric-ids",
    "--safe-links",
    "--inplace",
    "--bwlimit",
    "--compress-level",
    "--no-implied-dirs",
];

/// Checks the options between `--sender` and `.` of rsync's server command.
/// The short cluster is `-<letters>` with an optional `e<capabilities>`
/// tail (protocol capability letters such as `.iLsfxCIvu`, where `L` is not
/// an option).
fn check_rsync_flags(flags: &[&str]) -> Result<(), String> {
    for flag in flags {
        if let Some(long) = flag.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or(long);
            if !RSYNC_LONG.contains(&format!("--{name}").as_str()) {
                return Err(format!("rsync option {flag} is not allowed"));
            }
        } else if let Some(cluster) = flag.strip_prefix('-') {
            let (options, capabilities) = cluster.split_once('e').unwrap_or((cluster, ""));
            if let Some(bad) = options.chars().find(|c| !RSYNC_SHORT.contains(*c)) {
                return Err(format!("rsync option -{bad} is not allowed"));
            }
            if !capabilities
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.')
            {
                return Err(format!("unexpected rsync capabilities in {flag}"));
            }
        } else {
            return Err(format!("unexpected rsync argument {flag}"));
        }
    }
    Ok(())
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
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.state_path.join("ssh-command.log"))
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// A peer deletes only what a peer sent: a read-only snapshot with a
/// received UUID. Never a local snapshot, a restore backup or a sent marker
/// (all made here, none received), never anything else.
fn deletable(path: &Path) -> Result<(), String> {
    if !btrfs::is_subvolume(path) {
        return Err("no such snapshot".into());
    }
    let id = btrfs::identity(path).map_err(|e| e.to_string())?;
    if id.received_uuid.is_none() || !id.read_only {
        return Err("it was not received from a peer".into());
    }
    Ok(())
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
    match request {
        Request::Receive {
            dir,
            parent_uuid,
            zstd,
            json,
        } => {
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
                Box::new(std::io::BufReader::with_capacity(1 << 20, stdin))
            };
            match receive::receive(&dir, &mut input, parent_uuid.as_deref()) {
                Ok(received) => {
                    if json {
                        println!("{}", serde_json::to_string(&received).unwrap_or_default());
                    } else {
                        eprintln!("At subvol {}", received.name);
                    }
                    0
                }
                Err(e) => {
                    log_line(config, &format!("receive failed ({e})"), &original);
                    eprintln!("buttervolume: receive failed: {e}");
                    1
                }
            }
        }
        Request::List { dir, volume } => {
            let prefix = format!("{volume}@");
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .filter_map(|e| e.file_name().into_string().ok())
                        .filter(|n| n.starts_with(&prefix))
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            let mut out = std::io::stdout().lock();
            for name in names {
                if let Ok(id) = btrfs::identity(&dir.join(&name)) {
                    let line = serde_json::json!({
                        "name": name,
                        "uuid": id.uuid,
                        "received_uuid": id.received_uuid,
                        "read_only": id.read_only,
                    });
                    let _ = writeln!(out, "{line}");
                }
            }
            0
        }
        Request::Delete { path } => match deletable(&path) {
            Ok(()) => match btrfs::delete_subvolume(&path) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("buttervolume: {e}");
                    1
                }
            },
            Err(reason) => {
                log_line(config, &format!("delete refused ({reason})"), &original);
                eprintln!(
                    "buttervolume: refused to delete {}: {reason}",
                    path.display()
                );
                1
            }
        },
        Request::Rsync { args } => {
            let err = Command::new("rsync").args(&args).exec();
            eprintln!("buttervolume: cannot run rsync: {err}");
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

    #[test]
    fn rsync_accepts_what_sync_and_rsync_a_send() {
        let c = config();
        for flags in [
            "-logDtprze.iLsfxCIvu",
            "-logDtpre.iLsfxCIvu",
            "-vlogDtpre.iLsfxCIvu",
            "-vlHogDtpAXre.iLsfxCIvu",
            "-logDtprSe.iLsfxCIvu --numeric-ids",
            "-logDtpre.iLsfxCIvu --safe-links",
            "-nlogDtpre.iLsfxCIvu --bwlimit=10",
        ] {
            let command =
                format!("rsync --server --sender {flags} . /var/lib/buttervolume/volumes/db/");
            assert!(parse(&c, &command).is_ok(), "{command} refused");
        }
    }

    #[test]
    fn rsync_refuses_symlink_following_and_unknown_options() {
        let c = config();
        for flags in [
            // -L / --copy-links, -k / --copy-dirlinks, as rsync sends them.
            "-lLogDtpre.iLsfxCIvu",
            "-lkogDtpre.iLsfxCIvu",
            "-KlogDtpre.iLsfxCIvu",
            "-logDtpre.iLsfxCIvu --copy-unsafe-links",
            "-logDtpre.iLsfxCIvu --copy-links",
            "-logDtpre.iLsfxCIvu --copy-dirlinks",
            "-logDtpre.iLsfxCIvu --keep-dirlinks",
            "-logDtpre.iLsfxCIvu --remove-source-files",
            "-logDtpre.iLsfxCIvu --delete",
            "-logDtpre.iLsfxCIvu --files-from=/etc/passwd",
            "-logDtpre.iLsfxCIvu --include-from=/etc/shadow",
            "-logDtpre.iLsfxCIvu --rsync-path=x",
            "-R",
            "-W",
            "-e.iLs=fx",
            "logDtpr",
        ] {
            let command =
                format!("rsync --server --sender {flags} . /var/lib/buttervolume/volumes/db/");
            assert!(parse(&c, &command).is_err(), "{command} accepted");
        }
        // Without --sender, rsync would write into the volume.
        assert!(parse(
            &c,
            "rsync --server -logDtpre.iLsfxCIvu . /var/lib/buttervolume/volumes/db/"
        )
        .is_err());
    }
}
