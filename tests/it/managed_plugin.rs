//! The managed Docker plugin, end to end, in the run's private dockerd
//! (`tests/dockerd/dockerd.sh`), never the host's: built without a registry
//! (plugin/build.sh), installed with scripts/install-plugin.sh under a name
//! unique to this run, used by a compose file, driven by our CLI (socket
//! found through the Docker API), then disabled/enabled, the private dockerd
//! restarted, SSH_PORT changed and the plugin upgraded in place: volumes,
//! snapshots, schedule and the sshd host key survive every step, and no
//! `local` duplicate appears.
//!
//! Everything "on the host" (install and upgrade scripts, compose, our CLI,
//! port probes) runs inside the private dockerd's mount and network
//! namespaces, where its /var/lib/buttervolume is a directory of the run's
//! test btrfs and its plugins' sshd ports are its own; the docker CLI, a
//! plain API client, talks to that dockerd's socket from here
//! ([`Dockerd::docker`]).

use std::path::PathBuf;
use std::process::Output;

use testkit::dockerd::Dockerd;
use testkit::{bin, run, run_tag, stderr, stdout, wait_until};

const DATA: &str = "/var/lib/buttervolume";
const REPO: &str = env!("CARGO_MANIFEST_DIR");

struct Host {
    dockerd: Dockerd,
    name: String,
}

impl Host {
    /// Our CLI, finding the plugin through the Docker API.
    fn cli(&self, args: &[&str]) -> Output {
        let driver = format!("BUTTERVOLUME_DRIVERNAME={}", self.name);
        let mut all = vec![
            "env",
            &driver,
            "BUTTERVOLUME_SOCKET=/nonexistent/btrfs.sock",
            "RUST_LOG=warn",
            bin(),
        ];
        all.extend_from_slice(args);
        self.dockerd.exec(&all)
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "buttervolume {args:?}: {}",
            stderr(&out)
        );
        stdout(&out)
    }

    /// A file of the plugin's data dir, seen from here.
    fn data(&self, path: &str) -> PathBuf {
        self.dockerd.path(&format!("{DATA}/{path}"))
    }

    fn host_key(&self) -> String {
        std::fs::read_to_string(self.data("state/sshd/ssh_host_ed25519_key.pub"))
            .unwrap_or_default()
    }

    fn compose(&self, file: &str, project: &str, args: &[&str]) {
        let mut all = vec![
            "env",
            "COMPOSE_HTTP_TIMEOUT=300",
            "docker-compose",
            "-f",
            file,
            "-p",
            project,
        ];
        all.extend_from_slice(args);
        let out = self.dockerd.exec(&all);
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {}",
            stderr(&out)
        );
    }

    fn read_volume(&self, vol: &str) -> String {
        self.dockerd.in_container(vol, "cat /data/f")
    }

    /// Everything the plugin must keep: data, snapshot, schedule line, host key.
    fn assert_state_kept(&self, vol: &str, snap: &str, key: &str) {
        let ls = self.dockerd.docker(&[
            "volume",
            "ls",
            "-f",
            &format!("driver={}", self.name),
            "--format",
            "{{.Name}}",
        ]);
        assert!(ls.lines().any(|l| l == vol), "volume gone: {ls}");
        let local = self.dockerd.docker(&[
            "volume",
            "ls",
            "-f",
            "driver=local",
            "--format",
            "{{.Name}}",
        ]);
        assert!(
            !local.lines().any(|l| l == vol),
            "a local duplicate appeared"
        );
        assert_eq!(self.read_volume(vol), "v1");
        assert!(
            self.cli_ok(&["snapshots", vol]).lines().any(|l| l == snap),
            "snapshot gone"
        );
        assert!(
            self.cli_ok(&["scheduled"])
                .contains(&format!("snapshot 60 {vol}")),
            "schedule gone"
        );
        assert_eq!(self.host_key(), key, "sshd host key changed");
    }

    fn enabled(&self) -> bool {
        let out =
            self.dockerd
                .docker_output(&["plugin", "inspect", "-f", "{{.Enabled}}", &self.name]);
        out.status.success() && stdout(&out).trim() == "true"
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- private dockerd log ---\n{}", self.dockerd.log_tail(60));
        }
        let _ = self
            .dockerd
            .docker_output(&["plugin", "rm", "-f", &self.name]);
    }
}

#[test]
fn managed_plugin_lifecycle() {
    let h = Host {
        dockerd: Dockerd::get(),
        name: format!("bvtest{}/buttervolume:latest", run_tag()),
    };
    let name = h.name.clone();
    // Legacy plugins that earlier tests stopped stay registered in dockerd,
    // which then retries their dead sockets (~15 s per volume lookup): start
    // from a fresh (private) dockerd.
    h.dockerd.restart();

    // Build (or reuse) the base rootfs here, where the Debian mirror is
    // reachable; the install inside then finds it in plugin/cache.
    let build = tempfile::tempdir().unwrap();
    let build_dir = build.path().join("plugin");
    run(
        &format!("{REPO}/plugin/build.sh"),
        &["--output", build_dir.to_str().unwrap(), "--binary", bin()],
    );
    let bv_binary = format!("BV_BINARY={}", bin());
    let install = format!("{REPO}/scripts/install-plugin.sh");
    let out = h
        .dockerd
        .exec(&["env", &bv_binary, "LOOP_SIZE=1G", &install, &name]);
    assert!(
        out.status.success(),
        "install-plugin.sh: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(h.enabled());
    wait_until("the plugin's sshd on 1122", 20, || {
        h.dockerd.port_open(1122)
    });
    let key = h.host_key();
    assert!(key.starts_with("ssh-ed25519 "), "{key}");

    // A compose file using the plugin, with driver_opts and the label.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("docker-compose.yml");
    let file = file.to_str().unwrap();
    let project = format!("bvmp{}", run_tag());
    std::fs::write(
        file,
        format!(
            r#"version: "2.4"
services:
  app:
    image: bv-busybox
    command: ["sh", "-c", "echo v1 > /data/f"]
    volumes: ["data:/data"]
volumes:
  data:
    driver: {name}
    driver_opts:
      copyonwrite: "false"
    labels:
      com.github.mlfmonde.cluster.nonmigrable: "True"
"#
        ),
    )
    .unwrap();
    h.compose(file, &project, &["up", "--abort-on-container-exit"]);
    let vol = format!("{project}_data");
    assert_eq!(
        std::fs::read_to_string(h.data(&format!("volumes/{vol}/f"))).unwrap(),
        "v1\n",
        "data not on the private dockerd's /var/lib/buttervolume"
    );
    wait_until("the label to be recorded", 20, || {
        h.cli_ok(&["inspect", &vol]).contains("NonMigrable: true")
    });

    // The CLI snapshots and restores through the plugin.
    let snap = h.cli_ok(&["snapshot", &vol]).trim().to_string();
    assert!(snap.starts_with(&format!("{vol}@")));
    h.dockerd.in_container(&vol, "echo v2 > /data/f");
    assert_eq!(h.read_volume(&vol), "v2");
    h.cli_ok(&["restore", &snap]);
    assert_eq!(h.read_volume(&vol), "v1");
    h.cli_ok(&["schedule", "snapshot", "60", &vol]);

    // disable/enable.
    h.dockerd.docker(&["plugin", "disable", "-f", &name]);
    h.dockerd.docker(&["plugin", "enable", &name]);
    h.assert_state_kept(&vol, &snap, &key);

    // dockerd restart (the private one): the plugin comes back before
    // volumes are restored.
    h.dockerd.restart();
    wait_until("the plugin after the restart", 30, || {
        h.enabled() && h.cli(&["snapshots", &vol]).status.success()
    });
    h.assert_state_kept(&vol, &snap, &key);

    // SSH_PORT is settable and honoured.
    h.dockerd.docker(&["plugin", "disable", "-f", &name]);
    h.dockerd.docker(&["plugin", "set", &name, "SSH_PORT=2222"]);
    h.dockerd.docker(&["plugin", "enable", &name]);
    wait_until("sshd on 2222", 20, || h.dockerd.port_open(2222));
    assert!(!h.dockerd.port_open(1122), "sshd still on 1122");

    // Upgrade in place keeps everything (and the setting).
    let upgrade = format!("{REPO}/scripts/upgrade-plugin.sh");
    let out = h
        .dockerd
        .exec(&["env", &bv_binary, &upgrade, "--force", &name]);
    assert!(
        out.status.success(),
        "upgrade-plugin.sh: {}{}",
        stdout(&out),
        stderr(&out)
    );
    wait_until("sshd on 2222 after the upgrade", 20, || {
        h.dockerd.port_open(2222)
    });
    h.assert_state_kept(&vol, &snap, &key);

    // Clean up.
    h.cli_ok(&["schedule", "snapshot", "0", &vol]);
    for s in h.cli_ok(&["snapshots", &vol]).lines() {
        h.cli_ok(&["rm", s]);
    }
    h.compose(file, &project, &["down", "-v"]);
    assert!(!h.data(&format!("volumes/{vol}")).exists());
    h.dockerd.docker(&["plugin", "rm", "-f", &name]);
}
