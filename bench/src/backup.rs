//! `backup`: backups to a local restic repository against plain restic,
//! side by side in one run (issue 25's three figures), on testkit's daemon
//! (private dirs on the test btrfs, the repositories beside them):
//!
//! 1. first backup of a FILES × SIZE_MIB volume: `buttervolume backup`
//!    (the CLI) vs `restic backup <dir>` by hand into another repository;
//! 2. second backup after one file rewritten: our `Backup` request (its
//!    typed reply's `BytesAdded`) vs `restic backup --json` (its summary's
//!    `data_added`), time and bytes added;
//! 3. restore: `buttervolume restore-backup` into a new volume vs `restic
//!    restore latest --target <dir>`.
//!
//! The data is random (incompressible) and was just written, so both read
//! it from the page cache alike. Each step runs ROUNDS times on fresh
//! repositories (both made beforehand: the figures compare backups);
//! medians are printed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use buttervolume::api::backup::{self, BackupReply, BackupRequest};
use buttervolume::api::{path, CreateRequest};
use clap::Args;
use testkit::{cleanup_dir, test_btrfs, Daemon};

use crate::app_data::write_file;
use crate::report::{timed, Samples, Table};

#[derive(Args)]
pub struct Options {
    #[arg(long, default_value_t = 256)]
    files: usize,
    #[arg(long, default_value_t = 4)]
    size_mib: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// The file rewritten before the second backup.
const CHANGED: usize = 7;

#[derive(Default)]
struct Side {
    first: Samples,
    second: Samples,
    added: Vec<u64>,
    restore: Samples,
}

pub fn run(o: &Options) -> Table {
    let work = test_btrfs().join(format!("bench-backup-{}", std::process::id()));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| measure(o, &work)));
    cleanup_dir(&work);
    result.unwrap_or_else(|e| std::panic::resume_unwind(e))
}

fn restic(work: &Path, args: &[&str]) -> String {
    let out = Command::new("restic")
        .args(args)
        .env("RESTIC_PASSWORD_FILE", work.join("pw"))
        .env("RESTIC_CACHE_DIR", work.join("plain-cache"))
        .output()
        .expect("restic (apt-get install restic)");
    testkit::succeeded(out, &format!("restic {args:?}"))
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

fn each(s: &Samples) -> String {
    s.0.iter().map(|d| secs(*d)).collect::<Vec<_>>().join(", ")
}

fn measure(o: &Options, work: &Path) -> Table {
    let targets = work.join("targets");
    std::fs::create_dir_all(&targets).unwrap();
    std::fs::write(work.join("pw"), "bench\n").unwrap();
    let private = |p: &Path| {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap()
    };
    private(&work.join("pw"));
    let d = Daemon::builder("bench-backup")
        .env(
            "BUTTERVOLUME_BACKUP_TARGETS_PATH",
            targets.to_str().unwrap(),
        )
        .env("RUST_LOG", "warn")
        .start();
    let name = |i: usize| format!("f{i:0w$}", w = o.files.to_string().len());
    let (mut ours, mut plain) = (Side::default(), Side::default());
    let mut seed = 1;
    for round in 1..=o.rounds {
        let vol = format!("v{round}");
        let request = CreateRequest {
            name: vol.clone(),
            opts: None,
        };
        d.ok(path::CREATE, serde_json::to_value(request).unwrap());
        let dir = d.volumes().join(&vol);
        for i in 1..=o.files {
            write_file(&dir.join(name(i)), o.size_mib << 20, seed);
            seed += 1;
        }
        let (repo_bv, repo_plain) = (
            work.join(format!("repo-bv{round}")),
            work.join(format!("repo-plain{round}")),
        );
        let target = format!("t{round}");
        std::fs::write(
            targets.join(format!("{target}.env")),
            format!(
                "RESTIC_REPOSITORY={}\nRESTIC_PASSWORD_FILE={}\n",
                repo_bv.display(),
                work.join("pw").display()
            ),
        )
        .unwrap();
        private(&targets.join(format!("{target}.env")));
        testkit::run("sync", &[]);
        let (repo_bv, repo_plain) = (repo_bv.to_str().unwrap(), repo_plain.to_str().unwrap());
        restic(work, &["-r", repo_bv, "init"]);
        restic(work, &["-r", repo_plain, "init"]);
        let dir_s = dir.to_str().unwrap();

        let (out, took) = timed(|| d.cli(&["backup", &target, &vol]));
        testkit::succeeded(out, "buttervolume backup");
        ours.first.push(took);
        let (_, took) = timed(|| restic(work, &["-r", repo_plain, "backup", dir_s]));
        plain.first.push(took);

        write_file(&dir.join(name(CHANGED)), o.size_mib << 20, seed);
        seed += 1;
        testkit::run("sync", &[]);
        let request = BackupRequest {
            target: target.clone(),
            name: vol.clone(),
        };
        let (reply, took) = timed(|| d.call::<BackupReply>(backup::path::BACKUP, &request));
        ours.second.push(took);
        ours.added.push(reply.bytes_added);
        let (json, took) = timed(|| restic(work, &["-r", repo_plain, "backup", "--json", dir_s]));
        plain.second.push(took);
        let summary: serde_json::Value =
            serde_json::from_str(json.lines().last().unwrap_or_default()).unwrap();
        plain
            .added
            .push(summary["data_added"].as_u64().expect("data_added"));

        let restored = format!("r{round}");
        let (out, took) = timed(|| d.cli(&["restore-backup", &target, &vol, &restored]));
        testkit::succeeded(out, "buttervolume restore-backup");
        ours.restore.push(took);
        let into = work.join(format!("plain-restore{round}"));
        let into_s = into.to_str().unwrap();
        let (_, took) = timed(|| {
            restic(
                work,
                &["-r", repo_plain, "restore", "latest", "--target", into_s],
            )
        });
        plain.restore.push(took);
        let original = std::fs::read(dir.join(name(CHANGED))).unwrap();
        let ours_back = std::fs::read(d.volumes().join(&restored).join(name(CHANGED))).unwrap();
        let plain_back = std::fs::read(
            into.join(dir.strip_prefix("/").unwrap())
                .join(name(CHANGED)),
        )
        .unwrap();
        assert!(
            ours_back == original && plain_back == original,
            "a restore differs"
        );
        // Room for the next round.
        for p in [&into, Path::new(repo_plain), Path::new(repo_bv)] {
            std::fs::remove_dir_all(p).unwrap();
        }
    }
    let version = restic(work, &["version"]);
    println!(
        "{}, {} files × {} MiB, {} round(s), medians (each round in parentheses)",
        version
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" "),
        o.files,
        o.size_mib,
        o.rounds
    );
    let mut t = Table::new(&["step", "buttervolume", "plain restic", "ratio"]);
    let mut step = |what: &str, a: &Samples, b: &Samples| {
        t.row(vec![
            what.into(),
            format!("{:.2} s ({})", a.p50() / 1e3, each(a)),
            format!("{:.2} s ({})", b.p50() / 1e3, each(b)),
            format!("{:.2}x", a.p50() / b.p50()),
        ])
    };
    step(
        &format!("first backup of {} MiB", o.files * o.size_mib),
        &ours.first,
        &plain.first,
    );
    step(
        &format!(
            "second backup, one {} MiB file of {} rewritten",
            o.size_mib, o.files
        ),
        &ours.second,
        &plain.second,
    );
    step(
        &format!("restore of {} MiB", o.files * o.size_mib),
        &ours.restore,
        &plain.restore,
    );
    let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(" / ");
    t.row(vec![
        format!(
            "bytes added by the second (the change: {})",
            o.size_mib << 20
        ),
        list(&ours.added),
        list(&plain.added),
        String::new(),
    ]);
    t
}
