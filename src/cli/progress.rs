//! `buttervolume send` on an interactive terminal: while the daemon runs
//! the send, a line on stderr refreshed in place every 0.5 s from its
//! `Transfers` endpoint (bytes so far, average rate, and an ETA only when
//! the total can be estimated). Off a terminal nothing is drawn: the verb
//! prints its one summary line at the end, as before.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use super::client::Daemon;
use crate::api::{path, TransferStatus, TransfersReply};

const MIB: f64 = (1u64 << 20) as f64;

/// How often the daemon is asked.
const POLL: Duration = Duration::from_millis(500);

/// A poll that takes longer than this is skipped.
const POLL_TIMEOUT: Duration = Duration::from_secs(2);

/// Average rate in bytes per second (`None` before any time has passed).
pub fn rate(bytes: u64, elapsed_seconds: f64) -> Option<f64> {
    (elapsed_seconds > 0.0).then(|| bytes as f64 / elapsed_seconds)
}

/// What the ETA says: nothing without an estimated total, unknown once the
/// stream went past the estimate or while nothing moved, else the seconds
/// left at the average rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Eta {
    NoEstimate,
    Unknown,
    Seconds(f64),
}

pub fn eta(bytes: u64, total: Option<u64>, rate: Option<f64>) -> Eta {
    let Some(total) = total else {
        return Eta::NoEstimate;
    };
    match rate {
        Some(r) if r > 0.0 && bytes <= total => Eta::Seconds((total - bytes) as f64 / r),
        _ => Eta::Unknown,
    }
}

/// `h:mm:ss`, or `m:ss` under an hour (rounded up: never "0:00" while
/// something is left).
pub fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).ceil() as u64;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB)
}

/// The progress line of one transfer.
pub fn line(t: &TransferStatus) -> String {
    let kind = match (t.full, t.estimated_bytes) {
        (None, _) => "asking the peer".to_string(),
        (Some(false), _) => "incremental".to_string(),
        (Some(true), Some(total)) => format!("full, ~{} in all", mib(total)),
        (Some(true), None) => "full, size not measured yet".to_string(),
    };
    let rate = rate(t.bytes, t.elapsed_seconds);
    let speed = format!("{:.1} MiB/s", rate.unwrap_or(0.0) / MIB);
    let wire = if t.wire_bytes > 0 && t.wire_bytes != t.bytes {
        format!(", {} on the wire", mib(t.wire_bytes))
    } else {
        String::new()
    };
    let eta = match eta(t.bytes, t.estimated_bytes, rate) {
        Eta::NoEstimate => String::new(),
        Eta::Unknown => ", ETA ?".to_string(),
        Eta::Seconds(s) => format!(", ETA {}", clock(s)),
    };
    format!(
        "sending {} to {}: {} ({kind}){wire}, {speed}{eta}",
        t.snapshot,
        t.host,
        mib(t.bytes)
    )
}

/// Runs `request` (the send), drawing the progress of the transfer of
/// `snapshot` to `host` on stderr when stderr is a terminal; the line is
/// cleared before returning.
pub async fn while_sending<T>(
    daemon: &Daemon,
    snapshot: &str,
    host: &str,
    request: impl Future<Output = T>,
) -> T {
    let mut stderr = std::io::stderr();
    if !stderr.is_terminal() {
        return request.await;
    }
    tokio::pin!(request);
    let mut ticks = tokio::time::interval(POLL);
    let mut drawn = false;
    let mut polling = true;
    let outcome = loop {
        tokio::select! {
            outcome = &mut request => break outcome,
            _ = ticks.tick(), if polling => {
                let asked = tokio::time::timeout(
                    POLL_TIMEOUT,
                    daemon.get::<TransfersReply>(path::TRANSFERS),
                );
                match asked.await {
                    Ok(Ok(reply)) => {
                        let mine = reply
                            .transfers
                            .iter()
                            .find(|t| t.snapshot == snapshot && t.host == host);
                        if let Some(t) = mine {
                            let _ = write!(stderr, "\r{}\x1b[K", line(t));
                            let _ = stderr.flush();
                            drawn = true;
                        }
                    }
                    // A daemon without the endpoint: no progress to draw.
                    Ok(Err(_)) => polling = false,
                    Err(_) => {}
                }
            }
        }
    };
    if drawn {
        let _ = write!(stderr, "\r\x1b[K");
        let _ = stderr.flush();
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(
        bytes: u64,
        elapsed: f64,
        full: Option<bool>,
        total: Option<u64>,
    ) -> TransferStatus {
        TransferStatus {
            snapshot: "db@1".into(),
            host: "10.0.0.2".into(),
            started_at: "2024-01-01T00:00:00Z".into(),
            elapsed_seconds: elapsed,
            full,
            bytes,
            wire_bytes: bytes,
            estimated_bytes: total,
        }
    }

    #[test]
    fn rate_and_eta_are_what_the_figures_give_and_nothing_is_invented() {
        let mib = 1u64 << 20;
        // 30 MiB in 3 s: 10 MiB/s; 70 MiB left of 100: 7 s.
        let r = rate(30 * mib, 3.0);
        assert_eq!(r, Some(10.0 * MIB));
        assert_eq!(eta(30 * mib, Some(100 * mib), r), Eta::Seconds(7.0));
        // No time yet: no rate; no total: no ETA; past the estimate, or
        // nothing moving: unknown.
        assert_eq!(rate(5, 0.0), None);
        assert_eq!(eta(30 * mib, None, r), Eta::NoEstimate);
        assert_eq!(eta(130 * mib, Some(100 * mib), r), Eta::Unknown);
        assert_eq!(eta(0, Some(100 * mib), Some(0.0)), Eta::Unknown);
        assert_eq!(eta(0, Some(100 * mib), None), Eta::Unknown);
        assert_eq!(eta(100 * mib, Some(100 * mib), r), Eta::Seconds(0.0));
    }

    #[test]
    fn clock_rounds_up_and_shows_hours_only_when_needed() {
        assert_eq!(clock(7.0), "0:07");
        assert_eq!(clock(0.2), "0:01");
        assert_eq!(clock(0.0), "0:00");
        assert_eq!(clock(754.5), "12:35");
        assert_eq!(clock(3600.0 * 2.0 + 61.0), "2:01:01");
    }

    #[test]
    fn the_line_says_what_is_known() {
        let mib = 1u64 << 20;
        let full = transfer(30 * mib, 3.0, Some(true), Some(100 * mib));
        assert_eq!(
            line(&full),
            "sending db@1 to 10.0.0.2: 30.0 MiB (full, ~100.0 MiB in all), 10.0 MiB/s, ETA 0:07"
        );
        let unmeasured = transfer(30 * mib, 3.0, Some(true), None);
        assert_eq!(
            line(&unmeasured),
            "sending db@1 to 10.0.0.2: 30.0 MiB (full, size not measured yet), 10.0 MiB/s"
        );
        let incremental = transfer(3 * mib, 2.0, Some(false), None);
        assert_eq!(
            line(&incremental),
            "sending db@1 to 10.0.0.2: 3.0 MiB (incremental), 1.5 MiB/s"
        );
        let mut zstd = transfer(30 * mib, 3.0, Some(true), Some(20 * mib));
        zstd.wire_bytes = 12 * mib;
        assert_eq!(
            line(&zstd),
            "sending db@1 to 10.0.0.2: 30.0 MiB (full, ~20.0 MiB in all), 12.0 MiB on the wire, 10.0 MiB/s, ETA ?"
        );
        let starting = transfer(0, 0.0, None, None);
        assert_eq!(
            line(&starting),
            "sending db@1 to 10.0.0.2: 0.0 MiB (asking the peer), 0.0 MiB/s"
        );
    }
}
