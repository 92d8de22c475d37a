//! Backup targets: one `<name>.env` file per restic repository in
//! `BACKUP_TARGETS_PATH`, holding restic's own variables
//! (`RESTIC_REPOSITORY`, `RESTIC_PASSWORD_FILE`, a backend's credentials)
//! plus our `KEEP=<purge pattern>`, so an existing restic setup is copied
//! as is.
//!
//! A target file, or the password file it names, that anyone but root
//! (the daemon's user) may read or write is refused: it holds the key to
//! every backup.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::BackupError;

/// A checked target name: letters, digits and `._-`, not starting with a
/// dot or a dash, at most 64 bytes (never a path).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TargetName(String);

impl TargetName {
    pub fn parse(name: &str) -> Result<TargetName, BackupError> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with(['.', '-'])
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if ok {
            Ok(TargetName(name.to_string()))
        } else {
            Err(BackupError::TargetName(name.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TargetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A loaded target: restic's environment for it and our own settings.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: TargetName,
    /// The variables restic runs with (every line but ours).
    pub env: BTreeMap<String, String>,
    /// `KEEP`: the purge pattern thinning each volume's backups after a
    /// scheduled backup (checked when the file is read).
    pub keep: Option<String>,
}

impl Target {
    /// The repository, for messages.
    pub fn repository(&self) -> &str {
        self.env
            .get("RESTIC_REPOSITORY")
            .map(String::as_str)
            .unwrap_or("")
    }

    /// The local directory of a local repository (`/path` or
    /// `local:/path`), `None` for a remote backend.
    pub fn local_path(&self) -> Option<PathBuf> {
        let repo = self.repository();
        let path = repo.strip_prefix("local:").unwrap_or(repo);
        path.starts_with('/').then(|| PathBuf::from(path))
    }
}

/// Reads target `name` from `dir` after checking the name and who may
/// read the file (and its password file).
pub fn load(dir: &Path, name: &str) -> Result<Target, BackupError> {
    let name = TargetName::parse(name)?;
    let path = dir.join(format!("{name}.env"));
    let meta = std::fs::metadata(&path).map_err(|source| BackupError::NoTarget {
        name: name.to_string(),
        path: path.clone(),
        source,
    })?;
    if !meta.is_file() {
        return Err(BackupError::NoTarget {
            name: name.to_string(),
            path,
            source: std::io::Error::other("not a regular file"),
        });
    }
    private(&path, &meta)?;
    let text = std::fs::read_to_string(&path).map_err(|source| BackupError::NoTarget {
        name: name.to_string(),
        path: path.clone(),
        source,
    })?;
    let (env, keep) = parse(&text).map_err(|reason| BackupError::TargetFile {
        path: path.clone(),
        reason,
    })?;
    if !env.contains_key("RESTIC_REPOSITORY") {
        return Err(BackupError::TargetFile {
            path,
            reason: "no RESTIC_REPOSITORY line".into(),
        });
    }
    if let Some(password_file) = env.get("RESTIC_PASSWORD_FILE") {
        let pw = Path::new(password_file);
        let meta = std::fs::metadata(pw).map_err(|e| BackupError::TargetFile {
            path: path.clone(),
            reason: format!("RESTIC_PASSWORD_FILE {password_file}: {e}"),
        })?;
        private(pw, &meta)?;
    }
    Ok(Target { name, env, keep })
}

/// The names of every target in `dir` (files `<name>.env` with a valid
/// name), sorted.
pub fn names(dir: &Path) -> Vec<TargetName> {
    let mut out: Vec<TargetName> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().into_string().ok()?;
            TargetName::parse(file.strip_suffix(".env")?).ok()
        })
        .collect();
    out.sort();
    out
}

/// Refuses a file anyone but its owner may read or write, or owned by
/// another user than the daemon's.
fn private(path: &Path, meta: &std::fs::Metadata) -> Result<(), BackupError> {
    let euid = nix::unistd::geteuid().as_raw();
    if meta.mode() & 0o077 != 0 || meta.uid() != euid {
        return Err(BackupError::NotPrivate {
            path: path.to_path_buf(),
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
        });
    }
    Ok(())
}

/// `KEY=value` lines (an optional `export `, `#` comments, blank lines,
/// values optionally in single or double quotes, no expansion). Returns
/// restic's variables and `KEEP`.
pub(crate) fn parse(text: &str) -> Result<(BTreeMap<String, String>, Option<String>), String> {
    let mut env = BTreeMap::new();
    let mut keep = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: expected KEY=value", n + 1));
        };
        let key = key.trim();
        let valid_key = key.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
            && key
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !valid_key {
            return Err(format!("line {}: invalid variable name {key:?}", n + 1));
        }
        let value = value.trim();
        let value = unquote(value).ok_or_else(|| format!("line {}: unbalanced quotes", n + 1))?;
        if key == "KEEP" {
            crate::purge::Pattern::parse(&value)
                .map_err(|e| format!("line {}: KEEP: {e}", n + 1))?;
            keep = Some(value);
        } else {
            env.insert(key.to_string(), value);
        }
    }
    Ok((env, keep))
}

fn unquote(value: &str) -> Option<String> {
    for quote in ['"', '\''] {
        if let Some(rest) = value.strip_prefix(quote) {
            return rest.strip_suffix(quote).map(str::to_string);
        }
    }
    if value.ends_with(['"', '\'']) {
        return None;
    }
    Some(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_are_never_paths() {
        for good in ["offsite", "nas-1", "s3.eu_west"] {
            assert!(TargetName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "../x", "a/b", ".hidden", "-o", "a b", &"x".repeat(65)] {
            assert!(TargetName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_files_as_restic_users_write_them() {
        let (env, keep) = parse(
            "# offsite\nexport RESTIC_REPOSITORY=sftp:bk@nas:/srv/restic\n\
             RESTIC_PASSWORD_FILE=\"/etc/restic/pw\"\nAWS_SECRET_ACCESS_KEY='a=b'\n\nKEEP=1h:1d:1w\n",
        )
        .unwrap();
        assert_eq!(env["RESTIC_REPOSITORY"], "sftp:bk@nas:/srv/restic");
        assert_eq!(env["RESTIC_PASSWORD_FILE"], "/etc/restic/pw");
        assert_eq!(env["AWS_SECRET_ACCESS_KEY"], "a=b");
        assert!(!env.contains_key("KEEP"));
        assert_eq!(keep.as_deref(), Some("1h:1d:1w"));
        for bad in ["just words", "lower=1", "A=\"open", "KEEP=1h/4:1d", "1A=x"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
