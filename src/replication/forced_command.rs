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
//! - `buttervolume delete <snapshot> [--test]`: delete a snapshot, never a
//!   volume;
//! - `btrfs receive <dir>` and `btrfs subvolume delete <dir>/<snapshot>`,
//!   the literal commands a Python buttervolume 3.13 node sends, for `<dir>`
//!   the snapshots or test dir only;
//! - `rsync --server --sender <flags> . <VOLUMES_PATH>/<volume>[/]`: the
//!   server side of `buttervolume sync`, read-only, one volume.
//!
//! Anything else (shell metacharacters, `..`, other paths, other programs)
//! is refused, logged, and exits with status 1.

use std::io::Write;
use std::os::fd::AsFd;
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
            if flags
                .iter()
                .any(|f| !f.starts_with('-') || f.starts_with("--") && !is_safe_long_flag(f))
            {
                return Err("unexpected rsync arguments".into());
            }
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

/// Long rsync options a `--sender` server may legitimately get.
fn is_safe_long_flag(flag: &str) -> bool {
    let name = flag.split('=').next().unwrap_or(flag);
    matches!(
        name,
        "--server"
            | "--sender"
            | "--numeric-ids"
            | "--partial"
            | "--log-format"
            | "--safe-links"
            | "--no-implied-dirs"
            | "--compress-level"
    )
}

fn log_line(config: &Config, outcome: &str, original: &str) {
    let line = format!(
        "{} client={} outcome={outcome} command={original:?}\n",
        chrono::Local::now().to_rfc3339(),
        std::env::var("SSH_CLIENT").unwrap_or_default()
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
            // Unbuffered: the first command is read exactly, the rest is
            // spliced straight from sshd's pipe (see receive::Source).
            let stdin = match std::io::stdin().as_fd().try_clone_to_owned() {
                Ok(fd) => std::fs::File::from(fd),
                Err(e) => {
                    eprintln!("buttervolume: cannot use stdin: {e}");
                    return 1;
                }
            };
            let input = if zstd {
                match zstd::stream::read::Decoder::new(stdin) {
                    Ok(d) => receive::Source::Reader(Box::new(d)),
                    Err(e) => {
                        eprintln!("buttervolume: cannot start zstd: {e}");
                        return 1;
                    }
                }
            } else {
                receive::Source::Fd(stdin)
            };
            match receive::receive(&dir, input, parent_uuid.as_deref()) {
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
        Request::Delete { path } => {
            if !btrfs::is_subvolume(&path) {
                eprintln!("buttervolume: no such snapshot {}", path.display());
                return 1;
            }
            match btrfs::delete_subvolume(&path) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("buttervolume: {e}");
                    1
                }
            }
        }
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
}
