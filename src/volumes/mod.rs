//! Volumes: one btrfs subvolume per Docker volume under VOLUMES_PATH.
//!
//! The store owns the volumes directory, the creation options
//! ([`options`]), the mount counts and the per-volume locks ([`locks`]) that
//! serialize changes to one volume (create, remove, restore, clone, send)
//! while letting different volumes proceed in parallel. The locks are
//! private: callers take them through [`VolumeStore::exclusive`] and
//! [`VolumeStore::lock`], which hold the one lock order (activity first,
//! refused at once; then the volume's name lock, waited for). Snapshot
//! names have a lock set of their own. All methods are blocking; the server
//! calls them from `spawn_blocking`. btrfs is reached through
//! [`Subvolumes`], so the rules are unit-tested against a fake.
//!
//! New subvolumes are built in `VOLUMES_PATH/.staging/` and moved into place
//! with one atomic rename, so a volume is either absent or complete: a crash
//! never leaves a half-configured volume under its real name. The staging
//! dir's name is not a valid volume name, so List never shows it.

mod locks;
mod options;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use locks::{Activity, ActivityGuard, ActivityLocks, NameGuard, NameLocks};
pub use options::{Compression, CreateOptions};

use crate::btrfs::{self, BtrfsError};
use crate::config::Config;
use crate::fsutil;
use crate::metadata::VolumeMetadata;
use crate::mounts::MountTable;
use crate::names::{self, NameError};
use crate::subvolumes::{Btrfs, Subvolumes};

/// Where subvolumes are assembled before they get their real name.
pub const STAGING_DIR: &str = ".staging";

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("{0}: no such volume")]
    NoSuchVolume(String),
    /// A boolean option's value: the reference's text for `copyonwrite`,
    /// used for every boolean option.
    #[error("Invalid option for {key}: {value}. Set to \"true\" or \"false\".")]
    InvalidBool { key: String, value: String },
    /// The reference's text, byte for byte.
    #[error("Invalid option for compression: {0}. Valid options: false, true, zlib, lzo, zstd")]
    InvalidCompression(String),
    #[error("Invalid option for compression: {0}. btrfs cannot compress a volume created with copyonwrite=false")]
    CompressionWithoutCow(String),
    /// The reference's master refuses unknown keys with this text too (3.13
    /// ignored them); the list is this plugin's.
    #[error("Unknown option '{0}'. Options are copyonwrite, compression, nonmigrable, follow, or an action to schedule on the volume (snapshot, replicate:<host>, purge:<pattern>, synchronize:<hosts>) with a number of minutes as its value")]
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

/// What `Get` and `inspect` show about a volume.
#[derive(Debug, Clone)]
pub struct VolumeInfo {
    pub name: String,
    pub mountpoint: PathBuf,
    pub created_at: Option<String>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub nonmigrable: bool,
    pub mounts: u32,
}

/// Holds a volume for an [`Activity`] and its name lock, in that order.
pub struct Exclusive<'a> {
    // Dropped in declaration order: the name lock first, then the activity.
    _name: NameGuard<'a>,
    _activity: ActivityGuard<'a>,
}

/// The volumes of this node.
pub struct VolumeStore {
    config: Arc<Config>,
    fs: Arc<dyn Subvolumes>,
    mounts: MountTable,
    /// Volume names: held briefly by create, snapshot, metadata writes and
    /// inside every [`Exclusive`].
    locks: NameLocks,
    /// Snapshot names: held while one is deleted.
    snapshot_locks: NameLocks,
    /// Held by a send, a receive, a restore or a remove of the volume (see
    /// [`Activity`]); each refuses while another holds it, saying which.
    activities: ActivityLocks,
    /// The newest snapshot of each volume and what a restore put in place,
    /// remembered between rounds ([`crate::snapshots::holders`]).
    holders: crate::snapshots::holders::Holders,
    /// The last follow failure of each volume ([`crate::follow`]).
    follow_failures: crate::follow::Failures,
    /// Each peer's last `list-newest` answer ([`crate::replication::newest`]).
    newest_answers: crate::replication::newest::Answers,
    /// The sends running now ([`crate::replication::progress`]).
    transfers: crate::replication::progress::Transfers,
    /// The last failed send of each volume and peer.
    send_failures: crate::replication::progress::SendFailures,
    /// SSH sessions kept per peer between transfers.
    sessions: crate::replication::transport::Sessions,
    /// The receives running now ([`crate::replication::receive::Receives`]).
    receives: crate::replication::receive::Receives,
    /// Cluster mode ([`crate::cluster`]), set once at daemon start; unset
    /// in pair mode and in CLI processes.
    cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

impl VolumeStore {
    /// Opens the store on the real btrfs: creates the data dirs, checks
    /// they are on btrfs and deletes leftovers of operations a crash
    /// interrupted.
    pub fn open(config: Arc<Config>) -> Result<VolumeStore> {
        VolumeStore::open_with(config, Arc::new(Btrfs))
    }

    /// [`VolumeStore::open`] with another [`Subvolumes`] (the fake in tests).
    pub fn open_with(config: Arc<Config>, fs: Arc<dyn Subvolumes>) -> Result<VolumeStore> {
        config
            .create_dirs()
            .map_err(|e| VolumeError::io("creating data directories", e))?;
        for dir in [&config.volumes_path, &config.snapshots_path] {
            if !fs.is_btrfs(dir) {
                return Err(VolumeError::NotBtrfs { path: dir.clone() });
            }
        }
        let store = VolumeStore {
            mounts: MountTable::load(&config.state_path.join("mounts.json")),
            locks: NameLocks::default(),
            snapshot_locks: NameLocks::default(),
            activities: ActivityLocks::default(),
            holders: Default::default(),
            follow_failures: Default::default(),
            newest_answers: Default::default(),
            transfers: Default::default(),
            send_failures: Default::default(),
            sessions: Default::default(),
            receives: Default::default(),
            cluster: Default::default(),
            config,
            fs,
        };
        store.sweep_staging()?;
        if !fsutil::mounted_noatime(&store.config.volumes_path) {
            tracing::warn!(
                path = %store.config.volumes_path.display(),
                "the volumes are on a filesystem mounted without noatime: a read counts as a change, so unchanged volumes get new snapshots and a follow may see both nodes as moved on; remount it with noatime (buttervolume init does)"
            );
        }
        Ok(store)
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Cluster mode, when this daemon runs in it.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.cluster.get()
    }

    /// Turns cluster mode on (daemon start, once).
    pub fn set_cluster(&self, cluster: Arc<crate::cluster::Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// The btrfs operations, real or fake.
    pub fn fs(&self) -> &dyn Subvolumes {
        &*self.fs
    }

    pub fn holders(&self) -> &crate::snapshots::holders::Holders {
        &self.holders
    }

    pub fn follow_failures(&self) -> &crate::follow::Failures {
        &self.follow_failures
    }

    pub fn newest_answers(&self) -> &crate::replication::newest::Answers {
        &self.newest_answers
    }

    pub fn transfers(&self) -> &crate::replication::progress::Transfers {
        &self.transfers
    }

    pub fn send_failures(&self) -> &crate::replication::progress::SendFailures {
        &self.send_failures
    }

    pub fn sessions(&self) -> &crate::replication::transport::Sessions {
        &self.sessions
    }

    pub fn receives(&self) -> &crate::replication::receive::Receives {
        &self.receives
    }

    /// How many containers have `name` mounted.
    pub fn mount_count(&self, name: &str) -> u32 {
        self.mounts.count(name)
    }

    /// Holds volume `name` for `activity`: refused at once (saying which
    /// activity runs) when another holds it, then waits for its name lock.
    /// The one place that knows the order.
    pub fn exclusive(&self, name: &str, activity: Activity) -> Result<Exclusive<'_>> {
        let activity = self.activities.hold(name, activity)?;
        Ok(Exclusive {
            _name: self.locks.lock(name),
            _activity: activity,
        })
    }

    /// Holds `activity` on `name` without its name lock: for long
    /// operations (a send, a receive) that must not block snapshots of the
    /// same volume while they stream.
    pub fn hold(&self, name: &str, activity: Activity) -> Result<ActivityGuard<'_>> {
        self.activities.hold(name, activity)
    }

    /// The activity holding `name`, if any.
    pub fn activity(&self, name: &str) -> Option<Activity> {
        self.activities.holder(name)
    }

    /// Waits for volume `name`'s lock (short critical sections).
    pub fn lock(&self, name: &str) -> NameGuard<'_> {
        self.locks.lock(name)
    }

    /// Waits for snapshot `name`'s lock.
    pub fn lock_snapshot(&self, name: &str) -> NameGuard<'_> {
        self.snapshot_locks.lock(name)
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
            if self.fs.is_subvolume(&path) {
                // A read-only leftover (a received snapshot) must be made
                // writable before it can be deleted by path.
                let _ = self.fs.set_read_only(&path, false);
                self.fs.delete(&path)?;
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
        if self.fs.is_subvolume(&path) {
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
        if self.fs.is_subvolume(&final_path) {
            return Ok(());
        }
        // Only new names are held to the length rule: Docker re-creating an
        // existing (older, longer-named) volume is still success.
        names::check_new_volume(name)?;
        let staged = self.staging_path(name)?;
        self.fs.create(&staged)?;
        let result = self.configure_new(&staged, &options).and_then(|()| {
            fsutil::rename_noreplace(&staged, &final_path)
                .map_err(|e| VolumeError::io(format!("moving {name} into place"), e))
        });
        if let Err(err) = result {
            let _ = self.fs.delete(&staged);
            return Err(err);
        }
        Ok(())
    }

    fn configure_new(&self, path: &Path, options: &CreateOptions) -> Result<()> {
        if !options.copy_on_write {
            self.fs.add_inode_flags(path, btrfs::FS_NOCOW_FL)?;
        }
        let property = match options.compression {
            Compression::None => None,
            Compression::Default => {
                self.fs.add_inode_flags(path, btrfs::FS_COMPR_FL)?;
                None
            }
            Compression::Zlib => Some("zlib"),
            Compression::Lzo => Some("lzo"),
            Compression::Zstd => Some("zstd"),
        };
        if let Some(algorithm) = property {
            self.fs
                .set_xattr(path, "btrfs.compression", algorithm.as_bytes())?;
        }
        let metadata = VolumeMetadata {
            options: options.given.clone().into(),
            nonmigrable: options.nonmigrable,
            labels: BTreeMap::new(),
            created_at: Some(chrono::Local::now().to_rfc3339()),
            lineage: Vec::new(),
        };
        self.write_metadata(path, &metadata)
    }

    /// The metadata of a volume or snapshot at `path` (defaults when it has
    /// none or it is malformed, see [`VolumeMetadata::decode`]).
    pub fn read_metadata(&self, path: &Path) -> std::result::Result<VolumeMetadata, BtrfsError> {
        Ok(VolumeMetadata::decode(
            path,
            crate::metadata::read(self.fs.as_ref(), path)?,
        ))
    }

    /// Writes the metadata of the (writable) subvolume at `path`.
    pub fn write_metadata(&self, path: &Path, metadata: &VolumeMetadata) -> Result<()> {
        self.fs
            .set_xattr(path, crate::metadata::XATTR, &metadata.encode())?;
        Ok(())
    }

    /// Records Docker's labels of volume `name`; returns whether they
    /// changed. Under the volume's lock.
    pub fn record_labels(&self, name: &str, labels: BTreeMap<String, String>) -> Result<bool> {
        let path = self.existing(name)?;
        let _guard = self.locks.lock(name);
        let mut metadata = self.read_metadata(&path).unwrap_or_default();
        if metadata.labels == labels {
            return Ok(false);
        }
        metadata.set_labels(labels);
        self.write_metadata(&path, &metadata)?;
        Ok(true)
    }

    /// Deletes a volume (its snapshots are kept). Refused while mounted.
    pub fn remove(&self, name: &str) -> Result<()> {
        let path = self.existing(name)?;
        let _held = self.exclusive(name, Activity::Remove)?;
        let mounts = self.mounts.count(name);
        if mounts > 0 {
            return Err(VolumeError::InUse {
                name: name.into(),
                mounts,
            });
        }
        if !self.fs.is_subvolume(&path) {
            return Err(VolumeError::NoSuchVolume(name.into()));
        }
        self.fs.delete(&path)?;
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
        let metadata = self.read_metadata(&path).unwrap_or_else(|e| {
            tracing::warn!(volume = name, error = %e, "cannot read volume metadata");
            VolumeMetadata::default()
        });
        let created_at = metadata.created_at.clone().or_else(|| {
            std::fs::metadata(&path)
                .and_then(|m| m.created().or_else(|_| m.modified()))
                .ok()
                .map(|t| chrono::DateTime::<chrono::Local>::from(t).to_rfc3339())
        });
        Ok(VolumeInfo {
            name: name.into(),
            mountpoint: path,
            created_at,
            options: metadata.options.into(),
            labels: metadata.labels,
            nonmigrable: metadata.nonmigrable,
            mounts: self.mounts.count(name),
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
            .filter(|name| self.fs.is_subvolume(&self.config.volumes_path.join(name)))
            .collect();
        volumes.sort();
        Ok(volumes)
    }
}
