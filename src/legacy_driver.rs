//! What `buttervolume doctor` sees of the legacy (socket-mode) driver: the
//! `btrfs` plugin Docker discovers from `RUNPATH/plugins/btrfs.sock` or a
//! `btrfs.spec` / `btrfs.json` spec file, next to the managed plugin
//! (`RUNPATH/plugins/<plugin id>/btrfs.sock`).
//!
//! Docker keeps a legacy driver it has loaded for as long as dockerd runs:
//! once the legacy daemon is gone, every `docker volume` command retries it
//! (`docker volume ls` took 15 s, `docker-compose up` a minute) until the
//! socket or spec file is removed *and* dockerd restarted. A dead socket or
//! spec file is reported with that remedy; `--fix` removes the file (the
//! restart is left to the operator). Both drivers alive at once is
//! reported too: two daemons would serve the same volumes.
//!
//! Every path comes from [`LegacyPaths`], so the tests look at temporary
//! directories, never at the host's `/run/docker/plugins`. Only unix
//! addresses are probed (a connect on a local socket); a `tcp://` spec is
//! reported as not checked.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::config::{Config, SOCKET_FILE};
use crate::doctor::Finding;

/// The legacy driver's name: `btrfs.sock`, `btrfs.spec`, `btrfs.json`.
const LEGACY_NAME: &str = "btrfs";

/// Where Docker looks for legacy plugins.
#[derive(Debug, Clone)]
pub struct LegacyPaths {
    /// `RUNPATH/plugins`: legacy sockets and managed plugins' directories.
    pub plugins: PathBuf,
    /// Directories Docker reads spec files from.
    pub spec_dirs: Vec<PathBuf>,
}

impl LegacyPaths {
    /// `RUNPATH/plugins`, where the legacy setup puts its socket and spec
    /// (Docker also reads specs from `/etc/docker/plugins` and
    /// `/usr/lib/docker/plugins`: files an operator wrote, left to them).
    pub fn of(config: &Config) -> LegacyPaths {
        let plugins = config.runpath.join("plugins");
        LegacyPaths {
            spec_dirs: vec![plugins.clone()],
            plugins,
        }
    }

    /// The legacy socket, `plugins/btrfs.sock`.
    pub fn legacy_socket(&self) -> PathBuf {
        self.plugins.join(SOCKET_FILE)
    }
}

/// Whether something listens on the unix socket at `path` (`None`: no
/// socket there).
fn listening(path: &Path) -> Option<bool> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    meta.file_type()
        .is_socket()
        .then(|| std::os::unix::net::UnixStream::connect(path).is_ok())
}

/// The live sockets of managed plugins: `plugins/<id>/btrfs.sock`.
fn managed_sockets(paths: &LegacyPaths) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(&paths.plugins) else {
        return Vec::new();
    };
    let mut live: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path().join(SOCKET_FILE))
        .filter(|p| listening(p) == Some(true))
        .collect();
    live.sort();
    live
}

/// The address a spec file names: a `.spec` holds a URL, a `.json` its
/// `Addr`.
fn spec_address(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    if path.extension().is_some_and(|e| e == "json") {
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        value["Addr"].as_str().map(str::to_string)
    } else {
        Some(text.trim().to_string())
    }
}

/// What to do about a dead file: remove it with `fix`, and restart dockerd.
fn remove_then_restart(path: &Path, fix: bool) -> String {
    let restart =
        "then restart dockerd (`systemctl restart docker`) so it forgets the legacy `btrfs` driver";
    if !fix {
        return format!("run with --fix to remove it, {restart}");
    }
    match std::fs::remove_file(path) {
        Ok(()) => format!("removed; {restart}"),
        Err(e) => format!("could not remove it ({e}); remove it by hand, {restart}"),
    }
}

/// The findings about the legacy driver under `paths`; with `fix`, dead
/// sockets and spec files are removed.
pub fn findings(paths: &LegacyPaths, fix: bool) -> Vec<Finding> {
    let managed = managed_sockets(paths);
    let context = match managed.first() {
        Some(live) => format!(
            "the managed plugin is in use ({}), but dockerd keeps retrying the legacy `btrfs` driver it loaded from here: every `docker volume` command waits for it",
            live.display()
        ),
        None => "dockerd keeps retrying the legacy `btrfs` driver: every `docker volume` command waits for it; if the legacy daemon should run, start it (`buttervolume run`)".to_string(),
    };
    let mut found = Vec::new();
    let socket = paths.legacy_socket();
    match listening(&socket) {
        Some(false) => found.push(Finding {
            problem: format!(
                "legacy plugin socket {} is dead (nobody listens); {context}",
                socket.display()
            ),
            action: remove_then_restart(&socket, fix),
        }),
        Some(true) if !managed.is_empty() => found.push(Finding {
            problem: format!(
                "both the legacy daemon ({}) and the managed plugin ({}) are running: two plugins serve the same volumes",
                socket.display(),
                managed[0].display()
            ),
            action: "left alone: stop one of them (`docker plugin disable <name>`, or stop `buttervolume run`)".into(),
        }),
        _ => {}
    }
    for dir in &paths.spec_dirs {
        for ext in ["spec", "json"] {
            let spec = dir.join(format!("{LEGACY_NAME}.{ext}"));
            let Some(address) = spec_address(&spec) else {
                continue;
            };
            let Some(target) = address.strip_prefix("unix://") else {
                found.push(Finding {
                    problem: format!(
                        "legacy driver spec {} points at {address}, not checked (only unix sockets are)",
                        spec.display()
                    ),
                    action: "left alone: if nothing serves that address, remove the file and restart dockerd".into(),
                });
                continue;
            };
            if listening(Path::new(target)) != Some(true) {
                found.push(Finding {
                    problem: format!(
                        "legacy driver spec {} points at {target}, where nobody listens; {context}",
                        spec.display()
                    ),
                    action: remove_then_restart(&spec, fix),
                });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn paths(root: &Path) -> LegacyPaths {
        let plugins = root.join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        LegacyPaths {
            spec_dirs: vec![plugins.clone(), root.join("etc")],
            plugins,
        }
    }

    /// A socket file nobody listens on (bound, then closed).
    fn dead_socket(path: &Path) {
        drop(UnixListener::bind(path).unwrap());
        assert_eq!(listening(path), Some(false));
    }

    fn managed(p: &LegacyPaths) -> UnixListener {
        let dir = p.plugins.join("0123abcd");
        std::fs::create_dir_all(&dir).unwrap();
        UnixListener::bind(dir.join(SOCKET_FILE)).unwrap()
    }

    #[test]
    fn nothing_legacy_nothing_to_say() {
        let root = tempfile::tempdir().unwrap();
        let p = paths(root.path());
        let _live = managed(&p);
        assert_eq!(findings(&p, true), Vec::new());
    }

    #[test]
    fn a_dead_legacy_socket_next_to_the_managed_plugin_is_named_and_removed() {
        let root = tempfile::tempdir().unwrap();
        let p = paths(root.path());
        let _live = managed(&p);
        dead_socket(&p.legacy_socket());
        let found = findings(&p, false);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].problem.contains("managed plugin is in use"),
            "{found:?}"
        );
        assert!(found[0].action.contains("restart dockerd"), "{found:?}");
        assert!(p.legacy_socket().exists(), "removed without --fix");
        let found = findings(&p, true);
        assert!(found[0].action.starts_with("removed;"), "{found:?}");
        assert!(!p.legacy_socket().exists());
        assert_eq!(findings(&p, true), Vec::new());
    }

    #[test]
    fn a_dead_legacy_socket_alone_says_to_start_the_daemon_or_clean_up() {
        let root = tempfile::tempdir().unwrap();
        let p = paths(root.path());
        dead_socket(&p.legacy_socket());
        let found = findings(&p, false);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].problem.contains("buttervolume run"), "{found:?}");
    }

    #[test]
    fn both_alive_is_reported_and_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let p = paths(root.path());
        let _live = managed(&p);
        let _legacy = UnixListener::bind(p.legacy_socket()).unwrap();
        let found = findings(&p, true);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].problem.contains("two plugins"), "{found:?}");
        assert!(p.legacy_socket().exists());
    }

    #[test]
    fn spec_files_pointing_nowhere_are_named() {
        let root = tempfile::tempdir().unwrap();
        let p = paths(root.path());
        let _live = managed(&p);
        let gone = root.path().join("gone.sock");
        dead_socket(&gone);
        let alive = root.path().join("alive.sock");
        let _alive = UnixListener::bind(&alive).unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        let spec = p.plugins.join("btrfs.spec");
        std::fs::write(&spec, format!("unix://{}\n", gone.display())).unwrap();
        let json = root.path().join("etc/btrfs.json");
        std::fs::write(
            &json,
            format!(r#"{{"Name":"btrfs","Addr":"unix://{}"}}"#, alive.display()),
        )
        .unwrap();
        let found = findings(&p, true);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].problem.contains("btrfs.spec"), "{found:?}");
        assert!(!spec.exists() && json.exists());
        // A tcp address is not probed: reported, kept.
        std::fs::write(&spec, "tcp://127.0.0.1:1\n").unwrap();
        let found = findings(&p, true);
        assert!(found[0].problem.contains("not checked"), "{found:?}");
        assert!(spec.exists());
    }
}
