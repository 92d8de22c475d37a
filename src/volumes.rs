//! Volumes: one btrfs subvolume per Docker volume under VOLUMES_PATH.
//!
//! The store owns the volumes directory, the creation options, the mount
//! counts and the per-name locks that serialize changes to one volume
//! (create, remove, restore, clone, send) while letting different volumes
//! proceed in parallel. All methods are blocking; the server calls them from
//! `spawn_blocking`.
//!
//! New subvolumes are built in `VOLUMES_PATH/.staging/` and moved into place
//! with one atomic rename, so a volume is either absent or complete: a crash
//! never leaves a half-configured volume under its real name. The staging
//! dir's name is not a valid volume name, so List never shows it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use crate::btrfs::{self, BtrfsError};
use crate::config::Config;
use crate::fsutil;
use crate::metadata::VolumeMetadata;
use crate::mounts::MountTable;
use crate::names::{self, NameError};

/// Where subvolumes are assembled before they get their real name.
pub const STAGING_DIR: &str = ".staging";

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("{0}: no such volume")]
    NoSuchVolume(String),
    #[error("invalid option {key}={value}: {accepted}")]
    InvalidOptionValue {
        key: String,
        value: String,
        accepted: &'static str,
    },
    #[error("unknown option {0:?}: accepted options are copyonwrite, compression, nonmigrable")]
    UnknownOption(String),
    #[error(
        "volume {name} is in use: {mounts} mount(s) by Docker; stop the containers using it first"
    )]
    InUse { name: String, mounts: u32 },
    #[error("a send of volume {0} is in progress: retry when it has finished")]
    Sending(String),
    #[error("a restore of volume {0} is in progress: retry when it has finished")]
    Restoring(String),
    #[error("volume {0} is being removed")]
    Removing(String),
    #[error("a receive of volume {0} is in progress: retry when it has finished")]
    Receiving(String),
    #[error("{path} is not on a btrfs filesystem: run `buttervolume init` or mount btrfs there")]
    NotBtrfs { path: PathBuf },
    #[error(transparent)]
    Btrfs(#[from] BtrfsError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl VolumeError {
    /// The error for an operation refused because `holder` holds `name`.
    pub fn busy(name: &str, holder: Activity) -> Self {
        match holder {
            Activity::Send => VolumeError::Sending(name.into()),
            Activity::Restore => VolumeError::Restoring(name.into()),
            Activity::Remove => VolumeError::Removing(name.into()),
            Activity::Receive => VolumeError::Receiving(name.into()),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        VolumeError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, VolumeError>;

/// Compression requested at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    /// `true`: the filesystem's default algorithm (`chattr +c`, as the reference).
    Default,
    Zlib,
    Lzo,
    Zstd,
}

/// The `-o key=value` options of `docker volume create`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    pub copy_on_write: bool,
    pub compression: Compression,
    pub nonmigrable: bool,
    /// The options as given (lower-cased values), stored in the metadata.
    pub given: BTreeMap<String, String>,
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(VolumeError::InvalidOptionValue {
            key: key.into(),
            value: value.into(),
            accepted: "set to \"true\" or \"false\"",
        }),
    }
}

impl CreateOptions {
    /// Validates Docker's `Opts`. Values are case-insensitive like the
    /// reference's; unknown keys are refused rather than silently ignored.
    pub fn parse(opts: &HashMap<String, String>) -> Result<CreateOptions> {
        let mut parsed = CreateOptions {
            copy_on_write: true,
            compression: Compression::None,
            nonmigrable: false,
            given: BTreeMap::new(),
        };
        for (key, raw) in opts {
            let value = raw.trim().to_ascii_lowercase();
            match key.as_str() {
                "copyonwrite" => parsed.copy_on_write = parse_bool(key, &value)?,
                "nonmigrable" => parsed.nonmigrable = parse_bool(key, &value)?,
                "compression" => {
                    parsed.compression = match value.as_str() {
                        "" | "false" | "none" | "no" => Compression::None,
                        "true" => Compression::Default,
                        "zlib" => Compression::Zlib,
                        "lzo" => Compression::Lzo,
                        "zstd" => Compression::Zstd,
                        _ => {
                            return Err(VolumeError::InvalidOptionValue {
                                key: key.clone(),
                                value,
                                accepted: "valid options: none, false, true, zlib, lzo, zstd",
                            })
                        }
                    }
                }
                other => return Err(VolumeError::UnknownOption(other.into())),
            }
            parsed.given.insert(key.clone(), value);
        }
        if !parsed.copy_on_write && parsed.compression != Compression::None {
            return Err(VolumeError::InvalidOptionValue {
                key: "compression".into(),
                value: parsed.given["compression"].clone(),
                accepted: "btrfs cannot compress a volume created with copyonwrite=false",
            });
        }
        Ok(parsed)
    }
}

/// What `Get` returns about a volume.
#[derive(Debug, Clone)]
pub struct VolumeInfo {
    pub name: String,
    pub mountpoint: PathBuf,
    pub created_at: Option<String>,
    pub status: serde_json::Value,
}

/// Per-name mutual exclusion with owned guards, usable from blocking code.
#[derive(Default)]
pub struct NameLocks {
    held: Mutex<HashSet<String>>,
    released: Condvar,
}

/// Holds the lock on one name until dropped.
pub struct NameGuard<'a> {
    locks: &'a NameLocks,
    name: String,
}

impl NameLocks {
    /// Waits until no one else holds `name`, then holds it.
    pub fn lock(&self, name: &str) -> NameGuard<'_> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        while held.contains(name) {
            held = self.released.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        held.insert(name.to_string());
        NameGuard {
            locks: self,
            name: name.to_string(),
        }
    }

    /// Holds `name` only if it is free right now.
    pub fn try_lock(&self, name: &str) -> Option<NameGuard<'_>> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if !held.insert(name.to_string()) {
            return None;
        }
        Some(NameGuard {
            locks: self,
            name: name.to_string(),
        })
    }
}

impl Drop for NameGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(&self.name);
        self.locks.released.notify_all();
    }
}

/// An operation that holds a volume exclusively: no two of them run on one
/// volume at once, and the one refused is told which one is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    Send,
    /// A pull from a peer (`receive <host> <volume>`).
    Receive,
    Restore,
    Remove,
}

/// Per-name exclusive activities (see [`Activity`]), never waited for:
/// a second one is refused at once with the name of the first.
#[derive(Default)]
pub struct ActivityLocks {
    held: Mutex<HashMap<String, Activity>>,
}

/// Holds a name for an activity until dropped.
pub struct ActivityGuard<'a> {
    locks: &'a ActivityLocks,
    name: String,
}

impl ActivityLocks {
    /// Holds `name` for `activity` if no activity holds it; otherwise
    /// returns the one that does.
    pub fn try_hold(
        &self,
        name: &str,
        activity: Activity,
    ) -> std::result::Result<ActivityGuard<'_>, Activity> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(holder) = held.get(name) {
            return Err(*holder);
        }
        held.insert(name.to_string(), activity);
        Ok(ActivityGuard {
            locks: self,
            name: name.to_string(),
        })
    }

    /// [`ActivityLocks::try_hold`], refusing with the error that names
    /// the activity holding `name` ([`VolumeError::busy`]).
    pub fn hold(&self, name: &str, activity: Activity) -> Result<ActivityGuard<'_>> {
        self.try_hold(name, activity)
            .map_err(|holder| VolumeError::busy(name, holder))
    }

    /// The activity holding `name` right now, if any.
    pub fn holder(&self, name: &str) -> Option<Activity> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get(name).copied()
    }
}

impl Drop for ActivityGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(&self.name);
    }
}

/// The volumes of this node.
pub struct VolumeStore {
    pub config: Arc<Config>,
    pub mounts: MountTable,
    pub locks: NameLocks,
    /// Held by a send, a receive, a restore or a remove of the volume (see
    /// [`Activity`]); each refuses while another holds it, saying which.
    pub activities: ActivityLocks,
}

impl VolumeStore {
    /// Opens the store: creates the data dirs, checks they are on btrfs and
    /// deletes leftovers of operations a crash interrupted.
    pub fn open(config: Arc<Config>) -> Result<VolumeStore> {
        config
            .create_dirs()
            .map_err(|e| VolumeError::io("creating data directories", e))?;
        for dir in [&config.volumes_path, &config.snapshots_path] {
            if !btrfs::is_btrfs(dir) {
                return Err(VolumeError::NotBtrfs { path: dir.clone() });
            }
        }
        let store = VolumeStore {
            mounts: MountTable::load(&config.state_path.join("mounts.json")),
            locks: NameLocks::default(),
            activities: ActivityLocks::default(),
            config,
        };
        store.sweep_staging()?;
        for dir in [&store.config.snapshots_path, &store.config.test_remote_path] {
            crate::replication::receive::sweep_stale(dir);
        }
        Ok(store)
    }

    /// The staging directory (created on demand).
    pub fn staging(&self) -> Result<PathBuf> {
        let dir = self.config.volumes_path.join(STAGING_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| VolumeError::io("creating staging dir", e))?;
        Ok(dir)
    }

    /// A fresh, unused path in the staging dir for building `name`.
    pub fn staging_path(&self, name: &str) -> Result<PathBuf> {
        Ok(self
            .staging()?
            .join(format!("{name}.{}", fsutil::unique_suffix())))
    }

    /// Deletes every subvolume left in the staging dir: each is either an
    /// unfinished creation or the previous content of a restored volume,
    /// which restore saved as a snapshot before swapping it out.
    fn sweep_staging(&self) -> Result<()> {
        let dir = self.staging()?;
        let entries = std::fs::read_dir(&dir).map_err(|e| VolumeError::io("reading staging", e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            tracing::warn!(path = %path.display(), "removing leftover of an interrupted operation");
            if btrfs::is_subvolume(&path) {
                // A read-only leftover (a received snapshot) must be made
                // writable before it can be deleted by path.
                let _ = btrfs::set_read_only(&path, false);
                btrfs::delete_subvolume(&path)?;
            } else if path.is_dir() {
                std::fs::remove_dir_all(&path)
                    .map_err(|e| VolumeError::io("removing leftover", e))?;
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(())
    }

    /// The path of volume `name`, after checking the name. Does not check
    /// that the volume exists.
    pub fn path_of(&self, name: &str) -> Result<PathBuf> {
        names::check_volume(name)?;
        Ok(self.config.volumes_path.join(name))
    }

    /// The path of an existing volume, or `NoSuchVolume`.
    pub fn existing(&self, name: &str) -> Result<PathBuf> {
        let path = self.path_of(name)?;
        if btrfs::is_subvolume(&path) {
            Ok(path)
        } else {
            Err(VolumeError::NoSuchVolume(name.into()))
        }
    }

    /// Creates a volume. An existing volume of that name is success with no
    /// change (Docker's contract); on any error nothing is left behind. A
    /// new name must satisfy [`names::check_new_volume`] (length rule).
    pub fn create(&self, name: &str, opts: &HashMap<String, String>) -> Result<()> {
        let final_path = self.path_of(name)?;
        let options = CreateOptions::parse(opts)?;
        let _guard = self.locks.lock(name);
        if btrfs::is_subvolume(&final_path) {
            return Ok(());
        }
        // Only new names are held to the length rule: Docker re-creating an
        // existing (older, longer-named) volume is still success.
        names::check_new_volume(name)?;
        let staged = self.staging_path(name)?;
        btrfs::create_subvolume(&staged)?;
        let result = self.configure_new(&staged, &options).and_then(|()| {
            match fsutil::rename_noreplace(&staged, &final_path) {
                Ok(()) => Ok(()),
                Err(e) => Err(VolumeError::io(format!("moving {name} into place"), e)),
            }
        });
        if let Err(err) = result {
            let _ = btrfs::delete_subvolume(&staged);
            return Err(err);
        }
        Ok(())
    }

    fn configure_new(&self, path: &Path, options: &CreateOptions) -> Result<()> {
        if !options.copy_on_write {
            btrfs::add_inode_flags(path, btrfs::FS_NOCOW_FL)?;
        }
        let property = match options.compression {
            Compression::None => None,
            Compression::Default => {
                btrfs::add_inode_flags(path, btrfs::FS_COMPR_FL)?;
                None
            }
            Compression::Zlib => Some("zlib"),
            Compression::Lzo => Some("lzo"),
            Compression::Zstd => Some("zstd"),
        };
        if let Some(algorithm) = property {
            btrfs::set_xattr(path, "btrfs.compression", algorithm.as_bytes())?;
        }
        VolumeMetadata {
            options: options.given.clone(),
            nonmigrable: options.nonmigrable,
            labels: BTreeMap::new(),
            created_at: Some(chrono::Local::now().to_rfc3339()),
        }
        .write(path)?;
        Ok(())
    }

    /// Deletes a volume (its snapshots are kept). Refused while mounted.
    pub fn remove(&self, name: &str) -> Result<()> {
        let path = self.existing(name)?;
        let _busy = self.activities.hold(name, Activity::Remove)?;
        let _guard = self.locks.lock(name);
        let mounts = self.mounts.count(name);
        if mounts > 0 {
            return Err(VolumeError::InUse {
                name: name.into(),
                mounts,
            });
        }
        if !btrfs::is_subvolume(&path) {
            return Err(VolumeError::NoSuchVolume(name.into()));
        }
        btrfs::delete_subvolume(&path)?;
        Ok(())
    }

    /// Records a mount and returns the mountpoint.
    pub fn mount(&self, name: &str, id: &str) -> Result<PathBuf> {
        let path = self.existing(name)?;
        self.mounts
            .mount(name, id)
            .map_err(|e| VolumeError::io("saving mount counts", e))?;
        Ok(path)
    }

    /// Records an unmount. Unknown volumes are fine (reference behaviour).
    pub fn unmount(&self, name: &str, id: &str) -> Result<()> {
        self.mounts
            .unmount(name, id)
            .map_err(|e| VolumeError::io("saving mount counts", e))
    }

    /// What Docker shows in `docker volume inspect`. Never fails for an
    /// existing volume: unreadable metadata degrades to defaults.
    pub fn get(&self, name: &str) -> Result<VolumeInfo> {
        let path = self.existing(name)?;
        let metadata = VolumeMetadata::read(&path).unwrap_or_else(|e| {
            tracing::warn!(volume = name, error = %e, "cannot read volume metadata");
            VolumeMetadata::default()
        });
        let created_at = metadata.created_at.clone().or_else(|| {
            std::fs::metadata(&path)
                .and_then(|m| m.created().or_else(|_| m.modified()))
                .ok()
                .map(|t| chrono::DateTime::<chrono::Local>::from(t).to_rfc3339())
        });
        let status = serde_json::json!({
            "Options": metadata.options,
            "Labels": metadata.labels,
            "NonMigrable": metadata.nonmigrable,
            "Mounts": self.mounts.count(name),
        });
        Ok(VolumeInfo {
            name: name.into(),
            mountpoint: path,
            created_at,
            status,
        })
    }

    /// Every volume: one scan of VOLUMES_PATH and one `lstat` per entry.
    pub fn list(&self) -> Result<Vec<String>> {
        let entries = std::fs::read_dir(&self.config.volumes_path)
            .map_err(|e| VolumeError::io("listing volumes", e))?;
        let mut volumes: Vec<String> = entries
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| names::check_volume(name).is_ok())
            .filter(|name| btrfs::is_subvolume(&self.config.volumes_path.join(name)))
            .collect();
        volumes.sort();
        Ok(volumes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_parse_and_refuse() {
        let o = CreateOptions::parse(&opts(&[("copyonwrite", "FALSE")])).unwrap();
        assert!(!o.copy_on_write);
        let o = CreateOptions::parse(&opts(&[("compression", "zstd"), ("nonmigrable", "true")]))
            .unwrap();
        assert_eq!(o.compression, Compression::Zstd);
        assert!(o.nonmigrable);
        let err = CreateOptions::parse(&opts(&[("compression", "brotli")])).unwrap_err();
        assert!(err.to_string().contains("zstd"), "{err}");
        let err = CreateOptions::parse(&opts(&[("copyonwrite", "maybe")])).unwrap_err();
        assert!(err.to_string().contains("\"true\" or \"false\""), "{err}");
        let err = CreateOptions::parse(&opts(&[("size", "1G")])).unwrap_err();
        assert!(err.to_string().contains("copyonwrite"), "{err}");
        assert!(
            CreateOptions::parse(&opts(&[("copyonwrite", "false"), ("compression", "lzo")]))
                .is_err()
        );
    }

    #[test]
    fn name_locks_exclude_and_release() {
        let locks = NameLocks::default();
        let a = locks.lock("a");
        assert!(locks.try_lock("a").is_none());
        assert!(locks.try_lock("b").is_some());
        drop(a);
        assert!(locks.try_lock("a").is_some());
    }

    #[test]
    fn activity_locks_name_the_holder() {
        let locks = ActivityLocks::default();
        let restore = locks.try_hold("db", Activity::Restore).ok().unwrap();
        assert_eq!(locks.holder("db"), Some(Activity::Restore));
        assert_eq!(
            locks.try_hold("db", Activity::Remove).err(),
            Some(Activity::Restore)
        );
        assert!(locks.try_hold("db", Activity::Send).is_err());
        assert!(locks.try_hold("web", Activity::Remove).is_ok());
        drop(restore);
        assert_eq!(locks.holder("db"), None);
        let _send = locks.hold("db", Activity::Send).ok().unwrap();
        let err = locks.hold("db", Activity::Restore).err().unwrap();
        assert_eq!(
            err.to_string(),
            "a send of volume db is in progress: retry when it has finished"
        );
        assert_eq!(
            VolumeError::busy("db", Activity::Restore).to_string(),
            "a restore of volume db is in progress: retry when it has finished"
        );
        assert_eq!(
            VolumeError::busy("db", Activity::Remove).to_string(),
            "volume db is being removed"
        );
    }
}
