//! `plugin`: the managed plugin's rootfs size, `docker plugin create` time,
//! `docker plugin enable` time, and the time from the start of `enable`
//! until `docker volume create -d <plugin>` succeeds. For this project's
//! plugin (`plugin/build.sh` with our release binary) and, for comparison,
//! the reference buttervolume 3.13 packaged the same way (mmdebstrap Debian
//! bookworm rootfs + python3 + `pip install buttervolume==3.13`, the
//! reference's manifest: ours with `buttervolume run` as entrypoint).
//!
//! In a private dockerd of its own (`tests/dockerd/dockerd.sh start
//! --new-netns`, never the host's), whose /var/lib/buttervolume is a
//! directory of the test btrfs; stopped and removed at the end. The Debian
//! mirror and PyPI are needed to build the rootfs (once: the reference's is
//! kept in /var/tmp/buttervolume-bench/, ours in plugin/cache/).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::Args;
use serde_json::Value;
use testkit::dockerd::{Dockerd, DOCKERD_SH};
use testkit::wait::wait_for_every;
use testkit::{cleanup_dir, test_btrfs, REPO};

use crate::report::{timed, Samples, Table};

#[derive(Args)]
pub struct Options {
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Only our plugin (no reference row).
    #[arg(long)]
    ours_only: bool,
}

const CACHE: &str = "/var/tmp/buttervolume-bench";

/// One plugin's figures over the runs.
#[derive(Default)]
struct Figures {
    rootfs_bytes: u64,
    create: Samples,
    enable: Samples,
    ready: Samples,
}

pub fn run(o: &Options) -> Table {
    let id = std::process::id();
    let work = PathBuf::from(format!("/var/tmp/bench-plugin.{id}"));
    let state = PathBuf::from(format!("/run/bench-plugin-{id}"));
    let data = test_btrfs().join(format!("bench-plugin-{id}"));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        measure_all(o, &work, &state, &data)
    }));
    let _ = Command::new(DOCKERD_SH).arg("stop").arg(&state).status();
    let _ = std::fs::remove_dir_all(&work);
    cleanup_dir(&data);
    result.unwrap_or_else(|e| std::panic::resume_unwind(e))
}

fn measure_all(o: &Options, work: &Path, state: &Path, data: &Path) -> Table {
    for dir in ["ssh", "config"] {
        std::fs::create_dir_all(data.join(dir)).unwrap();
    }
    std::fs::create_dir_all(work).unwrap();
    testkit::run(
        DOCKERD_SH,
        &[
            "start",
            state.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--new-netns",
            "--hide",
            "/etc/buttervolume",
        ],
    );
    let docker = Dockerd {
        dir: state.to_path_buf(),
    };
    let ours = work.join("ours");
    testkit::run(
        &format!("{REPO}/plugin/build.sh"),
        &[
            "--output",
            ours.to_str().unwrap(),
            "--binary",
            testkit::bin(),
        ],
    );
    let reference = work.join("reference");
    if !o.ours_only {
        build_reference(work, &reference);
    }
    let mut figures = vec![("ours", ours, Figures::default())];
    if !o.ours_only {
        figures.push((
            "reference 3.13, same packaging",
            reference,
            Figures::default(),
        ));
    }
    for run in 0..o.runs {
        for (k, (_, dir, f)) in figures.iter_mut().enumerate() {
            measure(&docker, &format!("bvbench/p{k}r{run}:latest"), dir, f);
        }
    }
    let mut t = Table::new(&[
        "plugin",
        "rootfs",
        "`docker plugin create`",
        "`docker plugin enable`",
        "enable → first `volume create` OK",
    ]);
    let range = |s: &Samples| {
        let secs: Vec<String> =
            s.0.iter()
                .map(|d| format!("{:.2}", d.as_secs_f64()))
                .collect();
        format!("{:.2} s ({})", s.p50() / 1e3, secs.join(", "))
    };
    for (label, _, f) in &figures {
        t.row(vec![
            label.to_string(),
            format!("{:.1} MB", f.rootfs_bytes as f64 / 1e6),
            range(&f.create),
            range(&f.enable),
            range(&f.ready),
        ]);
    }
    t
}

/// create, enable, first volume, then the plugin removed again.
fn measure(docker: &Dockerd, name: &str, dir: &Path, f: &mut Figures) {
    let du = testkit::run("du", &["-sb", dir.join("rootfs").to_str().unwrap()]);
    f.rootfs_bytes = du.split_whitespace().next().unwrap().parse().unwrap();
    let dir = dir.to_str().unwrap();
    let ((), took) = timed(|| {
        docker.docker(&["plugin", "create", name, dir]);
    });
    f.create.push(took);
    let volume = format!("bvbench-{}", std::process::id());
    let ((), ready) = timed(|| {
        let ((), enable) = timed(|| {
            docker.docker(&["plugin", "enable", name]);
        });
        f.enable.push(enable);
        wait_for_every(
            "a first volume on the enabled plugin",
            15,
            Duration::from_millis(50),
            || {
                let out = docker.docker_output(&["volume", "create", "-d", name, &volume]);
                out.status.success().then_some(())
            },
        );
    });
    f.ready.push(ready);
    docker.docker(&["volume", "rm", &volume]);
    docker.docker(&["plugin", "disable", "-f", name]);
    docker.docker(&["plugin", "rm", "-f", name]);
}

/// The reference packaged like ours: Debian rootfs, python3, pip install
/// (the wheels fetched by the host's pip, installed offline in the
/// rootfs's python3, 3.11 on bookworm); the tarball is kept.
fn build_reference(work: &Path, dir: &Path) {
    let tar = PathBuf::from(CACHE).join("reference-3.13-rootfs.tar");
    if !tar.exists() {
        std::fs::create_dir_all(CACHE).unwrap();
        let wheels = work.join("wheels");
        let wheels_s = wheels.to_str().unwrap();
        testkit::run(
            "python3",
            &[
                "-m",
                "pip",
                "download",
                "--quiet",
                "--dest",
                wheels_s,
                "--only-binary=:all:",
                "--python-version",
                "3.11",
                "--platform",
                "manylinux2014_x86_64",
                "buttervolume==3.13",
            ],
        );
        let mirror = std::env::var("MIRROR").unwrap_or("http://deb.debian.org/debian".into());
        let security = std::env::var("SECURITY_MIRROR")
            .unwrap_or("http://deb.debian.org/debian-security".into());
        let partial = tar.with_extension("tmp");
        // mmdebstrap's hooks are its own shell commands; `copy-in` is not.
        let out = Command::new("mmdebstrap")
            .env("SOURCE_DATE_EPOCH", "1735689600")
            .args([
                "--mode=root",
                "--variant=essential",
                "--format=tar",
                "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
                "--include=python3,python3-pip,btrfs-progs,e2fsprogs,openssh-server,openssh-client,rsync,tini",
                "--aptopt=APT::Install-Recommends \"false\"",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                &format!("--customize-hook=copy-in {wheels_s} /tmp"),
                "--customize-hook=chroot \"$1\" python3 -m pip install --quiet --no-cache-dir --break-system-packages --no-index --find-links /tmp/wheels buttervolume==3.13",
                "--customize-hook=rm -rf \"$1/tmp/wheels\"",
                "--customize-hook=mkdir -p \"$1/run/docker/plugins\"",
                "bookworm",
                partial.to_str().unwrap(),
                &format!("deb {mirror} bookworm main"),
                &format!("deb {mirror} bookworm-updates main"),
                &format!("deb {security} bookworm-security main"),
            ])
            .output()
            .expect("mmdebstrap");
        testkit::succeeded(out, "mmdebstrap (the reference rootfs)");
        std::fs::rename(&partial, &tar).unwrap();
    }
    std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    testkit::run(
        "tar",
        &[
            "-C",
            dir.join("rootfs").to_str().unwrap(),
            "--numeric-owner",
            "-xpf",
            tar.to_str().unwrap(),
        ],
    );
    // The reference's manifest is ours minus our settings, with its
    // entrypoint.
    let ours = std::fs::read_to_string(format!("{REPO}/config.json")).unwrap();
    let mut config: Value = serde_json::from_str(&ours).unwrap();
    config["Entrypoint"] = serde_json::json!(["/usr/local/bin/buttervolume", "run"]);
    config.as_object_mut().unwrap().remove("WorkDir");
    let env = config["Env"].as_array().cloned().unwrap_or_default();
    config["Env"] = Value::Array(
        env.into_iter()
            .filter(|e| e["Name"] == "SSH_PORT")
            .collect(),
    );
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();
}
