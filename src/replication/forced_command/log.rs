//! The forced command's log, `STATE_PATH/ssh-command.log`: one line per
//! request with the peer's address and key fingerprint (read back by
//! [`crate::metrics::peer_log`]). Kept bounded, and writable on a full disk.

use std::io::Write;

use crate::config::Config;
use crate::replication::command_log::{LogLine, Outcome, LOG_FILE};

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

pub fn log_line(config: &Config, outcome: Outcome, original: &str) {
    let line = LogLine {
        time: chrono::Local::now().to_rfc3339(),
        client: std::env::var("SSH_CLIENT").unwrap_or_default(),
        key: peer_fingerprint(),
        outcome,
        command: original.into(),
    };
    let line = format!("{line}\n");
    let _ = std::fs::create_dir_all(&config.state_path);
    let path = config.state_path.join(LOG_FILE);
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
pub(super) const LOG_ROTATE_BYTES: u64 = 16 << 20;
