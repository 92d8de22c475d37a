//! The cluster's checks: placement, moves, final sends, replication,
//! failed moves, status and metrics against the nodes' disks.

use super::*;

impl Cluster {
    /// The app runs on the master only, its volumes exist there only, and
    /// the schedules are exactly the handler's on every node.
    pub(super) fn assert_placement(&self, step: &str, app: &App, place: Placement, cli: Cli) {
        self.assert_placed(step, app, place, cli, true)
    }

    /// [`Cluster::assert_placement`]; with `scheduled` false, no node has
    /// any schedule line (after a failed move: the handler removed the old
    /// master's before the transfer and its failure path does not put
    /// them back).
    pub(super) fn assert_placed(
        &self,
        step: &str,
        app: &App,
        place: Placement,
        cli: Cli,
        scheduled: bool,
    ) {
        for k in 0..3 {
            let node = &self.names[k];
            let master = place.master == k;
            assert_eq!(
                self.running(k, app),
                master,
                "{step}: app running on {node}?"
            );
            let listed: BTreeSet<String> = self.listed(k).into_iter().collect();
            let expected: BTreeSet<String> = match master {
                true => app.volumes().into_iter().collect(),
                false => BTreeSet::new(),
            };
            assert_eq!(listed, expected, "{step}: docker volumes on {node}");
            for volume in app.volumes() {
                let on_disk = self.data(k).join("volumes").join(&volume).exists();
                assert_eq!(on_disk, master, "{step}: {volume} on {node}'s disk?");
            }
            let expected = match scheduled {
                true => self.expected_schedule(k, app, place),
                false => BTreeSet::new(),
            };
            assert_eq!(
                self.scheduled(k, cli),
                expected,
                "{step}: schedule of {node}"
            );
        }
    }

    /// The new master was given exactly what the old one stopped with.
    pub(super) fn assert_moved_intact(&self, step: &str, app: &App) {
        let record = self.record.borrow();
        for volume in app.volumes() {
            let stopped = &record.stopped[&volume];
            assert!(!stopped.is_empty(), "{step}: {volume} was empty");
            assert_eq!(
                record.restored.get(&volume),
                Some(stopped),
                "{step}: {volume} on the new master differs from what the old one stopped with"
            );
        }
        assert_eq!(record.transfer_status, Some("success"), "{step}");
    }

    /// The handler's last snapshot of each volume on `from` (taken after
    /// the stop) was sent to `to`: marker on `from`, received snapshot on
    /// `to`.
    pub(super) fn assert_final_sent(
        &self,
        step: &str,
        app: &App,
        from: usize,
        to: usize,
    ) -> Vec<String> {
        let record = self.record.borrow();
        let mut finals = Vec::new();
        for volume in app.volumes() {
            let taken = &record.snapshots[&(from, volume.clone())];
            let last = taken.last().unwrap().clone();
            let marker = format!("{last}@{}", self.ips[to]);
            let markers: Vec<String> = self
                .n
                .markers(&self.names[from], &self.ips[to])
                .into_iter()
                .filter(|m| m.starts_with(&format!("{volume}@")))
                .collect();
            assert_eq!(
                markers,
                vec![marker],
                "{step}: {volume}'s marker on {}",
                self.names[from]
            );
            let landed = self.data(to).join("snapshots").join(&last);
            let id = buttervolume::btrfs::identity(&landed)
                .unwrap_or_else(|e| panic!("{step}: {last} not on {}: {e}", self.names[to]));
            assert!(id.read_only && id.received_uuid.is_some(), "{step}: {last}");
            finals.push(last);
        }
        finals
    }

    /// Waits for the scheduled replicate round (due at once when
    /// scheduled) to have pushed `volume` from `master` to `slave`: a
    /// marker for the slave that was not there before.
    pub(super) fn wait_replicated(
        &self,
        master: usize,
        slave: usize,
        volume: &str,
        before: &[String],
    ) -> String {
        let prefix = format!("{volume}@");
        let mut found = String::new();
        wait_until(
            format!(
                "the scheduled replication of {volume} to {}",
                self.names[slave]
            ),
            60,
            || {
                let markers = self.n.markers(&self.names[master], &self.ips[slave]);
                match markers
                    .into_iter()
                    .find(|m| m.starts_with(&prefix) && !before.contains(m))
                {
                    Some(m) => {
                        found = m;
                        true
                    }
                    None => false,
                }
            },
        );
        found
    }

    /// A move whose final send failed: the old master's handler raised
    /// and started the app again on exactly what it stopped with; the new
    /// master's handler raised at its first `restore` (refused) and made
    /// nothing: no volume, no container, no partial snapshot. Returns the
    /// newest snapshot of the data volume that did land on `new`.
    pub(super) fn assert_failed_move(
        &self,
        step: &str,
        app: &App,
        outcome: &[Result<(), String>],
        old: usize,
        new: usize,
    ) -> String {
        let data = app.data();
        let raised = outcome[old]
            .as_ref()
            .expect_err("the final send did not fail");
        assert!(raised.contains(r#"["send", "#), "{step}: {raised}");
        assert!(
            outcome[new].is_err(),
            "{step}: the new master's handler went on: {:?}",
            outcome[new]
        );
        let record = self.record.borrow();
        assert_eq!(record.transfer_status, Some("failure"), "{step}");
        assert!(record.restored.is_empty(), "{step}: something was restored");
        // Back up on the old master, with what it stopped with.
        let mut now = state_of(&self.data(old).join("volumes").join(&data));
        let log = read(self, old, &data, "log");
        assert!(log.ends_with("stop\nstart\n"), "{step}: {log}");
        now.remove("log");
        let mut stopped = record.stopped[&data].clone();
        stopped.remove("log");
        assert_eq!(now, stopped, "{step}: the old master lost data");
        // The new master: nothing partial, the failed snapshot absent.
        let failed = record.snapshots[&(old, data.clone())].last().unwrap();
        let dir = self.data(new).join("snapshots");
        assert!(
            !dir.join(failed).exists(),
            "{step}: {failed} landed after all"
        );
        for name in self.snapshots_of(new, &data) {
            let id = buttervolume::btrfs::identity(&dir.join(&name)).unwrap();
            assert!(id.read_only, "{step}: {name} is partial");
        }
        self.newest_snapshot(new, &data)
    }

    /// `buttervolume status --json` on node `k` (our CLI) and its
    /// metrics page, taken while the node's snapshots dir did not change,
    /// each checked against the disk ([`Cluster::assert_status_true`]).
    pub(super) fn status_and_metrics(&self, step: &str, k: usize) -> (StatusReply, Page) {
        let dir = self.data(k).join("snapshots");
        let mut taken = None;
        wait_until(
            format!(
                "{step}: a status of node {} taken while its snapshots stayed put",
                k + 1
            ),
            60,
            || {
                let before = entries(&dir);
                let out = self.n.cli(&self.names[k], &["status", "--json"]);
                let text = testkit::succeeded(out, "buttervolume status --json");
                let page = scrape(&self.names[k], self.metrics_ports[k]);
                if entries(&dir) != before {
                    return false;
                }
                let status = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
                taken = Some((status, page));
                true
            },
        );
        let (status, page) = taken.unwrap();
        self.assert_status_true(step, k, &status, &page);
        (status, page)
    }

    /// What status and the metrics say of node `k` is what its disk
    /// holds: per volume the snapshots (markers aside) and the newest in
    /// creation order; per peer the newest marker of that host, when it
    /// was recorded, and the snapshots made here after the one it names
    /// (unsent, and the lag: the age of the oldest of them); a peer for
    /// every marker host; problems sorted worst first and their volumes
    /// listed first; the problems gauge counting them by kind.
    pub(super) fn assert_status_true(&self, step: &str, k: usize, st: &StatusReply, page: &Page) {
        let dir = self.data(k).join("snapshots");
        let on_disk: Vec<(String, SubvolumeIdentity)> = entries(&dir)
            .into_iter()
            .filter(|e| !e.starts_with('.'))
            .filter_map(|e| {
                buttervolume::btrfs::identity(&dir.join(&e))
                    .ok()
                    .map(|id| (e, id))
            })
            .collect();
        let node = &self.names[k];
        for v in &st.volumes {
            let ctx = format!("{step}: {} on {node}", v.name);
            let mut snaps: Vec<&(String, SubvolumeIdentity)> = on_disk
                .iter()
                .filter(|(e, _)| names::volume_of(e) == v.name && !names::is_marker(e))
                .collect();
            snaps.sort_by_key(|(_, id)| id.creation_order());
            assert_eq!(v.snapshots, snaps.len(), "{ctx}");
            assert_eq!(
                v.newest_snapshot.as_deref(),
                snaps.last().map(|(e, _)| e.as_str()),
                "{ctx}"
            );
            let vol = [("volume", v.name.as_str())];
            assert_eq!(
                page.value("buttervolume_volume_snapshots", &vol),
                snaps.len() as f64,
                "{ctx}"
            );
            let markers: Vec<&(String, SubvolumeIdentity)> = on_disk
                .iter()
                .filter(|(e, _)| names::volume_of(e) == v.name && names::is_marker(e))
                .collect();
            for (m, _) in &markers {
                let host = names::marker_host(m).unwrap();
                assert!(
                    v.peers.iter().any(|p| p.host == host),
                    "{ctx}: no peer {host}"
                );
            }
            for p in &v.peers {
                let ctx = format!("{ctx}, peer {}", p.host);
                let newest = markers
                    .iter()
                    .filter(|(e, _)| names::marker_host(e) == Some(p.host.as_str()))
                    .max_by_key(|(_, id)| id.creation_order());
                let series = [("volume", v.name.as_str()), ("peer", p.host.as_str())];
                let held_at = newest.map(|(m, id)| {
                    let source = names::marker_source(m);
                    assert_eq!(p.sent_snapshot.as_deref(), Some(source), "{ctx}");
                    assert_eq!(
                        p.last_success.map(|t| t.timestamp()),
                        Some(id.otime),
                        "{ctx}"
                    );
                    assert_eq!(
                        page.value(
                            "buttervolume_replication_last_success_timestamp_seconds",
                            &series
                        ),
                        id.otime as f64,
                        "{ctx}"
                    );
                    snaps
                        .iter()
                        .find(|(e, _)| e == source)
                        .map_or(id.creation_order(), |(_, s)| s.creation_order())
                });
                if newest.is_none() {
                    assert_eq!((&p.sent_snapshot, p.last_success), (&None, None), "{ctx}");
                }
                let unsent: Vec<&&(String, SubvolumeIdentity)> = snaps
                    .iter()
                    .filter(|(_, id)| id.received_uuid.is_none())
                    .filter(|(_, id)| held_at.is_none_or(|at| id.creation_order() > at))
                    .collect();
                assert_eq!(p.unsent_snapshots, unsent.len(), "{ctx}");
                assert_eq!(
                    page.value("buttervolume_replication_unsent_snapshots", &series),
                    unsent.len() as f64,
                    "{ctx}"
                );
                match unsent.first() {
                    None => assert_eq!(p.lag_seconds, 0, "{ctx}"),
                    Some((_, id)) => {
                        // `Now` travels in whole seconds.
                        let lag = (st.now.timestamp() - id.otime).max(0);
                        assert!(
                            (p.lag_seconds - lag).abs() <= 1,
                            "{ctx}: {} vs {lag}",
                            p.lag_seconds
                        );
                    }
                }
            }
        }
        let kinds: Vec<ProblemKind> = st.problems.iter().map(|p| p.kind).collect();
        let mut sorted = kinds.clone();
        sorted.sort();
        assert_eq!(kinds, sorted, "{step}: problems not worst first on {node}");
        let with_problem = |name: &str| {
            st.problems
                .iter()
                .any(|p| p.volume.as_deref() == Some(name))
        };
        let flags: Vec<bool> = st.volumes.iter().map(|v| with_problem(&v.name)).collect();
        assert!(
            flags.windows(2).all(|w| w[0] || !w[1]),
            "{step}: volumes with a problem not first on {node}: {:?}",
            st.volumes.iter().map(|v| &v.name).collect::<Vec<_>>()
        );
        for kind in ProblemKind::ALL {
            let count = kinds.iter().filter(|k| **k == kind).count();
            assert_eq!(
                page.value("buttervolume_problems", &[("kind", kind.as_str())]),
                count as f64,
                "{step}: {} problems on {node}",
                kind.as_str()
            );
        }
    }

    /// The failed final send shows on the old master: its first problem is
    /// `send-failed` for the data volume and the new master, that volume
    /// comes first with the send as its last error, and the peer says so.
    /// Returns when the peer's failure was recorded.
    pub(super) fn assert_send_failure_shown(
        &self,
        step: &str,
        app: &App,
        old: usize,
        new: usize,
    ) -> chrono::DateTime<chrono::Utc> {
        let (data, ip) = (app.data(), &self.ips[new]);
        let (st, page) = self.status_and_metrics(step, old);
        let first = &st.problems[0];
        assert_eq!(
            first.kind,
            ProblemKind::SendFailed,
            "{step}: {:?}",
            st.problems
        );
        assert_eq!(first.volume.as_deref(), Some(data.as_str()), "{step}");
        assert_eq!(first.peer.as_deref(), Some(ip.as_str()), "{step}");
        assert_eq!(st.volumes[0].name, data, "{step}: problems first");
        let last_error = st.volumes[0].last_error.clone().unwrap_or_default();
        assert!(
            last_error.starts_with(&format!("send to {ip}: ")),
            "{step}: {last_error}"
        );
        let peer = st.volumes[0].peers.iter().find(|p| &p.host == ip).unwrap();
        assert!(peer.last_failure.is_some(), "{step}: {peer:?}");
        // The state that did not land is unsent.
        assert!(peer.unsent_snapshots >= 1, "{step}: {peer:?}");
        assert!(
            page.value("buttervolume_problems", &[("kind", "send-failed")]) >= 1.0,
            "{step}"
        );
        peer.last_failure_at.unwrap()
    }

    /// A counter of node `k`'s metrics now (0 when absent).
    pub(super) fn counter(&self, k: usize, name: &str, labels: &[(&str, &str)]) -> f64 {
        scrape(&self.names[k], self.metrics_ports[k])
            .get(name, labels)
            .unwrap_or(0.0)
    }

    /// The handler's command forms that did not go through both CLIs.
    pub(super) fn forms_not_run_through_both(&self) -> Vec<(&'static str, Cli)> {
        let ran = self.ran.borrow();
        FORMS
            .iter()
            .flat_map(|f| [(*f, Cli::V34), (*f, Cli::V313)])
            .filter(|pair| !ran.contains(pair))
            .collect()
    }

    /// The handler's `migrate` event on `node` (source and target app
    /// both there): the target down, `restore <src> <tgt>` for each pair
    /// of volumes whose target Docker does not label non-migrable, up.
    pub(super) fn migrate(
        &self,
        source: &App,
        target: &App,
        node: usize,
        cli: Cli,
    ) -> Result<(), String> {
        self.compose(node, target, &["down"])?;
        for (src, tgt) in source.volumes().iter().zip(target.volumes()) {
            if self.migrable(node, &tgt) {
                self.restore(node, cli, src, Some(&tgt))?;
            }
        }
        self.compose(node, target, &["up", "-d"])
    }

    /// `Volume.migrable_volume`: the Docker label, as the handler reads it.
    pub(super) fn migrable(&self, k: usize, volume: &str) -> bool {
        let labels = self.docker(k, &["volume", "inspect", "-f", "{{json .Labels}}", volume]);
        let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
        let flag = labels[LABEL].as_str().unwrap_or("false").to_lowercase();
        !(flag == "true" || flag == "1")
    }

    /// The newest snapshot of `volume` on node `k`, btrfs creation order.
    pub(super) fn newest_snapshot(&self, k: usize, volume: &str) -> String {
        let dir = self.data(k).join("snapshots");
        self.snapshots_of(k, volume)
            .into_iter()
            .max_by_key(|s| {
                buttervolume::btrfs::identity(&dir.join(s))
                    .unwrap()
                    .creation_order()
            })
            .unwrap()
    }

    pub(super) fn markers_of(&self, k: usize, to: usize, volume: &str) -> Vec<String> {
        let prefix = format!("{volume}@");
        self.n
            .markers(&self.names[k], &self.ips[to])
            .into_iter()
            .filter(|m| m.starts_with(&prefix))
            .collect()
    }

    pub(super) fn snapshots_of(&self, k: usize, volume: &str) -> Vec<String> {
        let prefix = format!("{volume}@");
        entries(&self.data(k).join("snapshots"))
            .into_iter()
            .filter(|e| e.starts_with(&prefix) && e.matches('@').count() == 1)
            .collect()
    }
}
