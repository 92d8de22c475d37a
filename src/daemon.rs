//! `buttervolume run`: start the daemon.
//!
//! Order matters for a managed plugin: Docker kills a plugin whose socket is
//! not up within ~9.5 s, so the socket is bound first, before any slow work
//! (btrfs checks, sweeping leftovers). Connections that arrive meanwhile wait
//! in the listen backlog.

use std::sync::Arc;

use crate::config::Config;
use crate::schedule::{Scheduler, SchedulerOptions, StoreActions, SystemClock};
use crate::server::{self, AppState, ServerError};
use crate::volumes::VolumeStore;

/// Closes every descriptor above stderr that the daemon inherited. A
/// long-lived daemon must not keep its starter's files open: a lock held by
/// the script that started it (`flock ... setup-and-run.sh`) would stay
/// held for the daemon's lifetime, a pipe would never see EOF. Called
/// before anything of ours (the runtime, the socket) is opened.
pub fn close_inherited_fds() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    // Collect first: the directory being read has a descriptor of its own.
    let fds: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // The directory's own descriptor is gone by now: EBADF, ignored.
        let _ = nix::unistd::close(fd);
    }
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// Runs the daemon until a termination signal.
pub async fn run(config: Config, with_sshd: bool) -> Result<(), ServerError> {
    let config = Arc::new(config);
    let nofile = server::raise_fd_limit();
    let limits = server::ServerLimits::new(&config, nofile);
    let listener = server::bind(&config.socket).await?;
    tracing::info!(socket = %config.socket.display(), "listening");
    let opened = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            let store = VolumeStore::open(config.clone())?;
            // Half-received snapshots of transfers a crash interrupted.
            for dir in [&config.snapshots_path, &config.test_remote_path] {
                crate::replication::receive::sweep_stale(dir, store.receives());
            }
            // Metadata out of the containers' reach (crate::metadata).
            let moved = crate::metadata::migrate(store.fs(), &config.volumes_path);
            if moved > 0 {
                tracing::info!(
                    volumes = moved,
                    "moved volume metadata to trusted.buttervolume"
                );
            }
            Ok::<_, crate::volumes::VolumeError>(store)
        })
        .await
        .expect("store opening does not panic")
    };
    let store = match opened {
        Ok(store) => store,
        Err(e) => {
            // Leave no socket behind that Docker would wait on.
            drop(listener);
            let _ = std::fs::remove_file(&config.socket);
            return Err(e.into());
        }
    };
    let store = Arc::new(store);
    // Cluster mode (crate::cluster): connects lazily, so an etcd without
    // quorum does not keep the socket from serving.
    let cluster = match crate::cluster::Cluster::start(&config).await {
        Ok(cluster) => cluster.map(Arc::new),
        Err(e) => {
            tracing::error!(error = %e, "cannot set up the etcd client: cluster mode is off");
            None
        }
    };
    // The scheduler starts once the store is open (its jobs use it) and
    // stops dispatching as soon as the termination signal arrives, while
    // the server drains; its in-flight jobs get a bounded grace period.
    let scheduler = Scheduler::new(
        SchedulerOptions::from_config(&config),
        Arc::new(StoreActions::new(store.clone())),
        Arc::new(SystemClock),
    );
    let (stop_scheduler, stop_rx) = tokio::sync::watch::channel(false);
    let sshd_task =
        with_sshd.then(|| tokio::spawn(crate::sshd::supervise(config.clone(), stop_rx.clone())));
    let scheduler_task = tokio::spawn(scheduler.clone().run(stop_rx.clone()));
    // The legacy daemon makes its driver known to its engine, for Swarm
    // (crate::announce); the managed plugin (`--sshd`) is listed already.
    if let Some(driver) = (!with_sshd)
        .then(|| crate::announce::driver_name(&config.socket))
        .flatten()
    {
        tokio::spawn(crate::announce::announce(
            config.docker_socket.clone(),
            driver,
            stop_rx.clone(),
        ));
    }
    if let Some(cluster) = cluster {
        tracing::info!(node = %cluster.node, ttl = ?cluster.ttl, "cluster mode on etcd");
        store.set_cluster(cluster.clone());
        crate::cluster::watchdog::spawn(cluster, store.clone(), stop_rx.clone());
    }
    let state = Arc::new(AppState {
        config: config.clone(),
        store,
        scheduler,
        sizes: Arc::default(),
    });
    let metrics_task = match config.metrics_addr {
        None => None,
        // The plugin socket matters more than its metrics: a listener that
        // cannot bind is logged, and the daemon serves on.
        Some(addr) => match crate::metrics::listener::bind(addr).await {
            Ok(listener) => Some(tokio::spawn(crate::metrics::listener::serve(
                listener,
                state.clone(),
                stop_rx.clone(),
            ))),
            Err(e) => {
                tracing::error!(error = %e, "no metrics listener");
                None
            }
        },
    };
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop_scheduler.send(true);
    };
    server::serve(listener, state, limits, shutdown).await;
    if let Some(task) = sshd_task {
        let _ = task.await;
    }
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    if let Err(e) = scheduler_task.await {
        tracing::warn!(error = %e, "the scheduler did not stop cleanly");
    }
    tracing::info!("stopped");
    Ok(())
}
