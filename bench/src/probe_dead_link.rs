//! `probe-dead-link`: how our libssh2 transport meets a link that dies, on
//! two throw-away nodes (testkit's `Nodes`: bdl1 -> bdl2, our forced
//! command on bdl2, SSH_TIMEOUT at its default 30 s):
//!
//! - dead: bdl1 pulls a snapshot from bdl2 (its session is then kept),
//!   bdl2's link goes down, bdl1 pulls again: the seconds until that
//!   Receive fails, and its error;
//! - blip: a 400 MB incremental send from bdl1 to bdl2 whose link is down
//!   for CUT seconds (default 12, longer than the 10 s keepalive interval
//!   the transport once had, shorter than SSH_TIMEOUT) mid-stream: the
//!   send's outcome and its duration.

use std::time::Duration;

use buttervolume::api::path;
use clap::Args;
use serde_json::json;
use testkit::nodes::Nodes;
use testkit::wait::wait_for_every;

use crate::app_data::write_file;
use crate::report::{timed, Table};

#[derive(Args)]
pub struct Options {
    /// Seconds the link stays down mid-stream.
    #[arg(long, default_value_t = 12)]
    cut: u64,
}

pub fn run(o: &Options) -> Table {
    let n = Nodes::up("bdl", 2, "2G");
    let (a, b) = (n.name(1), n.name(2));
    n.pair_with(&a, &b, &format!("{} ssh-command", testkit::bin()));
    let ip = n.ip(&b);
    let receive = json!({ "Name": "db", "Host": ip });

    // dead: a kept session, then the link down.
    n.ok(&b, "/VolumeDriver.Create", json!({ "Name": "db" }));
    n.snapshot(&b, "db");
    n.ok(&a, path::SNAPSHOT_RECEIVE, receive.clone());
    n.link(&b, "down");
    let (reply, dead) = timed(|| n.post(&a, path::SNAPSHOT_RECEIVE, &receive));
    n.link(&b, "up");
    let dead_err = reply["Err"].as_str().unwrap_or_default().to_string();

    // blip: a cut shorter than SSH_TIMEOUT, mid-stream.
    n.ok(&a, "/VolumeDriver.Create", json!({ "Name": "x" }));
    let first = n.snapshot(&a, "x");
    n.send(&a, &first, &ip);
    write_file(&n.data(&a).join("volumes/x/big"), 400 << 20, 0);
    let second = n.snapshot(&a, "x");
    let send = json!({ "Name": second, "Host": ip, "Detail": true });
    let landing = n.data(&b).join("snapshots");
    let (reply, blip) = std::thread::scope(|s| {
        let sender = s.spawn(|| timed(|| n.post(&a, path::SNAPSHOT_SEND, &send)));
        // Mid-stream: once bdl2 is landing data.
        wait_for_every(
            "bdl2 to land the stream",
            60,
            Duration::from_millis(50),
            || {
                testkit::entries(&landing)
                    .iter()
                    .any(|e| e.starts_with(".recv."))
                    .then_some(())
            },
        );
        n.link(&b, "down");
        // The fault itself: how long the link stays down.
        std::thread::sleep(Duration::from_secs(o.cut));
        n.link(&b, "up");
        sender.join().unwrap()
    });
    let blip_err = reply["Err"].as_str().unwrap_or_default();
    let summary = reply["Summary"].as_str().unwrap_or_default();

    let mut t = Table::new(&["case", "outcome"]);
    t.row(vec![
        "dead: a pull on a kept session after the peer's link went down".into(),
        format!("failed after {:.1} s: {dead_err}", dead.as_secs_f64()),
    ]);
    t.row(vec![
        format!(
            "blip: a {} s cut mid-stream of a 400 MiB incremental send",
            o.cut
        ),
        format!(
            "the send took {:.1} s; error: {}; {summary}",
            blip.as_secs_f64(),
            if blip_err.is_empty() {
                "none"
            } else {
                blip_err
            }
        ),
    ]);
    t
}
