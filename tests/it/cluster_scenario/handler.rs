//! The cluster: nodes up, the CLI forms, and the deploy handler
//! transliterated (deploy, take-over, schedules, transfer flag).

use super::*;

impl Cluster {
    /// Three nodes paired with each other; with `etcd`, each also a
    /// member of a three-member etcd and its daemon in cluster mode.
    pub(super) fn up(tag: &str, etcd: bool) -> Cluster {
        let n = Nodes::up(tag, 3, "2G");
        let names: Vec<String> = (1..=3).map(|k| n.name(k)).collect();
        let mut metrics_ports = Vec::new();
        // OWNER_TTL 9 as in the cluster tests.
        let etcd = etcd.then(|| Etcd::start(&n, &names));
        for a in &names {
            for b in &names {
                if a != b {
                    n.pair(a, b);
                }
            }
            let port = free_port(a);
            metrics_ports.push(port);
            // Rounds every 2 s (Nodes::start_with): the handler's new jobs
            // first run at the next round, which steps wait on.
            let metrics = format!("BUTTERVOLUME_METRICS_ADDR=127.0.0.1:{port}");
            let env = ["BUTTERVOLUME_SEND_BWLIMIT=32", metrics.as_str()];
            match &etcd {
                Some(etcd) => etcd.start_daemon(&n, a, 9, &env),
                None => {
                    n.stop(a);
                    n.start_with(a, &env);
                }
            }
            n.docker_start(a);
        }
        let ips = names.iter().map(|k| n.ip(k)).collect();
        Cluster {
            n,
            names,
            ips,
            metrics_ports,
            ran: RefCell::default(),
            kv: RefCell::default(),
            record: RefCell::default(),
        }
    }

    pub(super) fn data(&self, k: usize) -> PathBuf {
        self.n.data(&self.names[k])
    }

    pub(super) fn log(&self, k: usize) -> String {
        std::fs::read_to_string(format!("/run/bvnodes/{}/daemon.log", self.names[k]))
            .unwrap_or_default()
    }

    // ------------------------------------------------------------ commands

    /// The handler's `do()` of a `buttervolume` command, on node `k`:
    /// stdout on success, the error otherwise (the handler raises).
    pub(super) fn bv(
        &self,
        k: usize,
        cli: Cli,
        form: &'static str,
        args: &[&str],
    ) -> Result<String, String> {
        self.ran.borrow_mut().insert((form, cli));
        let bin = cli.bin();
        let mut all = vec![bin.to_str().unwrap()];
        all.extend_from_slice(args);
        let started = std::time::Instant::now();
        let out = self.n.exec(&self.names[k], &all);
        eprintln!(
            "  {} {cli:?} {args:?}: {:.2} s",
            self.names[k],
            started.elapsed().as_secs_f64()
        );
        match out.status.success() {
            true => Ok(stdout(&out).trim().to_string()),
            false => Err(format!(
                "{} buttervolume {args:?} on {}: {}",
                match cli {
                    Cli::V34 => "3.4",
                    Cli::V313 => "3.13",
                },
                self.names[k],
                stderr(&out)
            )),
        }
    }

    /// `docker-compose -p <project> <args>` against node `k`'s dockerd.
    pub(super) fn compose(&self, k: usize, app: &App, args: &[&str]) -> Result<(), String> {
        let host = self.n.dockerd(&self.names[k]).docker_host();
        let started = std::time::Instant::now();
        let out = Command::new("docker-compose")
            .env("DOCKER_HOST", host)
            .env("COMPOSE_HTTP_TIMEOUT", "300")
            .args(["-p", &app.project])
            .args(args)
            .current_dir(app.dir.path())
            .output()
            .expect("docker-compose is required (apt-get install docker-compose)");
        eprintln!(
            "  {} compose {args:?}: {:.2} s",
            self.names[k],
            started.elapsed().as_secs_f64()
        );
        match out.status.success() {
            true => Ok(()),
            false => Err(format!(
                "docker-compose {args:?} on {}: {}",
                self.names[k],
                stderr(&out)
            )),
        }
    }

    pub(super) fn docker(&self, k: usize, args: &[&str]) -> String {
        self.n.dockerd(&self.names[k]).docker(args)
    }

    /// `docker volume ls -f driver=btrfs`, parsed as the handler does.
    pub(super) fn listed(&self, k: usize) -> Vec<String> {
        self.docker(k, &["volume", "ls", "-f", "driver=btrfs"])
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1).map(String::from))
            .collect()
    }

    pub(super) fn running(&self, k: usize, app: &App) -> bool {
        let name = format!("name={}", app.container());
        !self.docker(k, &["ps", "-q", "-f", &name]).is_empty()
    }

    // ------------------------------------------------- the handler's Volume

    /// `Volume.snapshot()`: only a volume Docker lists is snapshotted.
    pub(super) fn snapshot(
        &self,
        k: usize,
        cli: Cli,
        volume: &str,
    ) -> Result<Option<String>, String> {
        if !self.listed(k).iter().any(|v| v == volume) {
            return Ok(None);
        }
        let snap = self.bv(k, cli, "snapshot V", &["snapshot", volume])?;
        self.record
            .borrow_mut()
            .snapshots
            .entry((k, volume.to_string()))
            .or_default()
            .push(snap.clone());
        Ok(Some(snap))
    }

    /// `volume.send(volume.snapshot(), ip)`: a missing snapshot is sent as
    /// `None`, as Python formats it.
    pub(super) fn snapshot_and_send(
        &self,
        k: usize,
        cli: Cli,
        volume: &str,
        to: usize,
    ) -> Result<(), String> {
        let snap = self.snapshot(k, cli, volume)?;
        let snap = snap.unwrap_or_else(|| "None".into());
        self.bv(k, cli, "send IP SNAPSHOT", &["send", &self.ips[to], &snap])?;
        Ok(())
    }

    pub(super) fn schedule(
        &self,
        k: usize,
        cli: Cli,
        app: &App,
        action: &str,
        timer: &str,
    ) -> Result<(), String> {
        let form = match (action.split(':').next().unwrap(), timer) {
            ("snapshot", "60") => "schedule snapshot 60 V",
            ("snapshot", "0") => "schedule snapshot 0 V",
            ("replicate", "60") => "schedule replicate:IP 60 V",
            ("replicate", "0") => "schedule replicate:IP 0 V",
            ("purge", "1440") => "schedule purge:1h:1d:1w:4w:1y 1440 V",
            ("purge", "0") => "schedule purge:1h:1d:1w:4w:1y 0 V",
            other => panic!("not a handler schedule: {other:?}"),
        };
        for volume in app.volumes() {
            self.bv(k, cli, form, &["schedule", action, timer, &volume])?;
        }
        Ok(())
    }

    pub(super) fn enable_replicate(
        &self,
        k: usize,
        cli: Cli,
        app: &App,
        on: bool,
        to: usize,
    ) -> Result<(), String> {
        let action = format!("replicate:{}", self.ips[to]);
        self.schedule(k, cli, app, &action, if on { "60" } else { "0" })
    }

    pub(super) fn enable_snapshot(
        &self,
        k: usize,
        cli: Cli,
        app: &App,
        on: bool,
    ) -> Result<(), String> {
        self.schedule(k, cli, app, "snapshot", if on { "60" } else { "0" })
    }

    pub(super) fn enable_purge(
        &self,
        k: usize,
        cli: Cli,
        app: &App,
        on: bool,
    ) -> Result<(), String> {
        self.schedule(k, cli, app, PURGE, if on { "1440" } else { "0" })
    }

    /// `Volume.restore(snapshot=None, target)`: `restore <volume> [target]`.
    pub(super) fn restore(
        &self,
        k: usize,
        cli: Cli,
        volume: &str,
        target: Option<&str>,
    ) -> Result<String, String> {
        match target {
            None => self.bv(k, cli, "restore V", &["restore", volume]),
            Some(t) => self.bv(k, cli, "restore V TARGET", &["restore", volume, t]),
        }
    }

    // --------------------------------------------------- the handler's deploy

    /// The `deploy` event on every node; each node's outcome (an error is
    /// where its handler raised).
    pub(super) fn deploy(
        &self,
        app: &App,
        old: Option<Placement>,
        new: Placement,
        cli: Cli,
        hooks: &Hooks,
    ) -> Vec<Result<(), String>> {
        *self.record.borrow_mut() = Record::default();
        let mut order: Vec<usize> = Vec::new();
        if let Some(old) = old {
            order.push(old.master);
            order.extend(old.slave);
        }
        let rest: Vec<usize> = (0..3).filter(|k| !order.contains(k)).collect();
        order.extend(rest);
        let mut outcome: Vec<Result<(), String>> = vec![Ok(()); 3];
        for me in order {
            let started = std::time::Instant::now();
            outcome[me] = self.handle_deploy(me, app, old, new, cli, hooks);
            eprintln!(
                "handler of {} ({cli:?}): {:.1} s",
                self.names[me],
                started.elapsed().as_secs_f64()
            );
        }
        outcome
    }

    pub(super) fn handle_deploy(
        &self,
        me: usize,
        app: &App,
        old: Option<Placement>,
        new: Placement,
        cli: Cli,
        hooks: &Hooks,
    ) -> Result<(), String> {
        let was_master = old.is_some_and(|o| o.master == me);
        let was_slave = old.is_some_and(|o| o.slave == Some(me));
        if was_master {
            let old = old.unwrap();
            if new.master != me {
                for volume in app.volumes() {
                    self.snapshot_and_send(me, cli, &volume, new.master)?;
                }
            }
            if let Some(work) = hooks.while_running {
                work();
            }
            self.compose(me, app, &["down"])?;
            self.remember_stopped(me, app);
            match old.slave {
                Some(slave) => self.enable_replicate(me, cli, app, false, slave)?,
                None => self.enable_snapshot(me, cli, app, false)?,
            }
            self.enable_purge(me, cli, app, false)?;
            *self.kv.borrow_mut() = None; // clean_notif
            if new.master == me {
                for volume in app.volumes() {
                    self.snapshot(me, cli, &volume)?;
                }
                self.compose(me, app, &["up", "-d"])?;
                self.enable_schedules(me, cli, app, new)?;
            } else {
                self.notify_transfer(me, app, || {
                    if let Some(before) = hooks.before_final_sends {
                        before();
                    }
                    for volume in app.volumes() {
                        self.snapshot_and_send(me, cli, &volume, new.master)?;
                    }
                    Ok(())
                })?;
                self.compose(me, app, &["down", "-v"])?;
                if new.slave == Some(me) {
                    self.enable_purge(me, cli, app, true)?;
                }
            }
        } else if was_slave {
            self.enable_purge(me, cli, app, false)?;
            if new.master == me {
                self.take_over(me, app, new, cli)?;
            } else if new.slave == Some(me) {
                self.enable_purge(me, cli, app, true)?;
            }
        } else if new.master == me {
            if old.is_some() {
                self.take_over(me, app, new, cli)?;
            } else {
                self.compose(me, app, &["up", "-d"])?;
                self.enable_schedules(me, cli, app, new)?;
            }
        } else if new.slave == Some(me) {
            self.enable_purge(me, cli, app, true)?;
        }
        Ok(())
    }

    /// slave -> master and nothing -> master with an old master: wait for
    /// the transfer flag (its value is not looked at), restore, up.
    pub(super) fn take_over(
        &self,
        me: usize,
        app: &App,
        new: Placement,
        cli: Cli,
    ) -> Result<(), String> {
        let status = self
            .kv
            .borrow_mut()
            .take()
            .ok_or("Waited too much :( Master did not send a notification")?;
        self.record.borrow_mut().transfer_status = Some(status);
        for volume in app.volumes() {
            self.restore(me, cli, &volume, None)?;
        }
        for volume in app.volumes() {
            let state = state_of(&self.data(me).join("volumes").join(&volume));
            self.record.borrow_mut().restored.insert(volume, state);
        }
        self.compose(me, app, &["up", "-d"])?;
        self.enable_schedules(me, cli, app, new)
    }

    pub(super) fn enable_schedules(
        &self,
        me: usize,
        cli: Cli,
        app: &App,
        new: Placement,
    ) -> Result<(), String> {
        match new.slave {
            Some(slave) => self.enable_replicate(me, cli, app, true, slave)?,
            None => self.enable_snapshot(me, cli, app, true)?,
        }
        self.enable_purge(me, cli, app, true)
    }

    /// `notify_transfer()`: the flag, and on failure the app up again here.
    pub(super) fn notify_transfer(
        &self,
        me: usize,
        app: &App,
        transfer: impl FnOnce() -> Result<(), String>,
    ) -> Result<(), String> {
        match transfer() {
            Ok(()) => {
                *self.kv.borrow_mut() = Some("success");
                Ok(())
            }
            Err(e) => {
                *self.kv.borrow_mut() = Some("failure");
                self.compose(me, app, &["up", "-d"])?;
                Err(e)
            }
        }
    }

    /// Not the handler's: the test reads what the app left on the disk.
    pub(super) fn remember_stopped(&self, me: usize, app: &App) {
        for volume in app.volumes() {
            let state = state_of(&self.data(me).join("volumes").join(&volume));
            self.record.borrow_mut().stopped.insert(volume, state);
        }
    }

    // ------------------------------------------------------------ the world

    /// The running app does some work on node `k`.
    pub(super) fn work(&self, k: usize, app: &App, what: &str) {
        let script =
            format!("echo {what} >> /data/log && head -c 1048576 /dev/urandom > /data/{what}.bin");
        self.docker(k, &["exec", &app.container(), "sh", "-c", &script]);
    }

    // ------------------------------------------------------------ assertions

    /// `scheduled` on node `k` (through the CLI of `cli`), as a set.
    pub(super) fn scheduled(&self, k: usize, cli: Cli) -> BTreeSet<String> {
        let bin = cli.bin();
        let out = self
            .n
            .exec(&self.names[k], &[bin.to_str().unwrap(), "scheduled"]);
        assert!(out.status.success(), "scheduled: {}", stderr(&out));
        // 3.13 appends " " (or " (paused)") to every line, 3.4 nothing.
        stdout(&out)
            .lines()
            .map(|l| l.trim_end().to_string())
            .collect()
    }

    /// What the handler leaves scheduled on each node for `app` at `place`.
    pub(super) fn expected_schedule(
        &self,
        k: usize,
        app: &App,
        place: Placement,
    ) -> BTreeSet<String> {
        let mut lines = BTreeSet::new();
        for volume in app.volumes() {
            if place.master == k {
                match place.slave {
                    Some(s) => lines.insert(format!("replicate:{} 60 {volume}", self.ips[s])),
                    None => lines.insert(format!("snapshot 60 {volume}")),
                };
            }
            if place.master == k || place.slave == Some(k) {
                lines.insert(format!("{PURGE} 1440 {volume}"));
            }
        }
        lines
    }
}
