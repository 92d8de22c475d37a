//! Per-volume mutual exclusion: [`NameLocks`] (waited for: short critical
//! sections such as create, snapshot, metadata writes) and
//! [`ActivityLocks`] (never waited for: long exclusive operations such as a
//! send, a receive, a restore or a remove, refused at once with the name of
//! the one running). [`super::VolumeStore`] takes them in the one order.

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex};

use super::{Result, VolumeError};

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

#[cfg(test)]
mod tests {
    use super::*;

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
