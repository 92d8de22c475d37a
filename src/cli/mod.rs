//! The `buttervolume` command line, verb for verb compatible with
//! buttervolume 3.13: same arguments, same output on stdout, errors on
//! stderr as `ERROR:root:<message>` (what the reference's logging printed)
//! and exit status 1 on failure.
//!
//! Two kinds of verbs: [`DaemonVerb`]s run here (the daemon itself, init,
//! doctor, the SSH forced command); [`ClientVerb`]s are one HTTP
//! call each to the daemon's socket ([`client`]), one file per family
//! ([`local`], [`peer`], [`schedule`]), printed by [`print`].

mod backup;
mod client;
mod local;
mod peer;
mod print;
mod progress;
mod schedule;
mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use client::discover_socket;
pub use local::LocalVerb;
pub use peer::PeerVerb;
pub use schedule::ScheduleVerb;

use crate::config::Config;

#[derive(Parser, Debug)]
#[command(
    name = "buttervolume",
    version = "3.13",
    about = "Command-line client for the BTRFS Docker Volume Plugin"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Verb>,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    #[command(flatten)]
    Daemon(DaemonVerb),
    #[command(flatten)]
    Client(ClientVerb),
}

/// Verbs that call the daemon, by family (one file each).
#[derive(Subcommand, Debug)]
pub enum ClientVerb {
    #[command(flatten)]
    Local(LocalVerb),
    #[command(flatten)]
    Peer(PeerVerb),
    #[command(flatten)]
    Schedule(ScheduleVerb),
    #[command(flatten)]
    Backup(backup::BackupVerb),
}

/// Verbs that run on this machine rather than call the daemon.
#[derive(Subcommand, Debug)]
pub enum DaemonVerb {
    /// Run the plugin in foreground
    Run {
        /// Also run and supervise the OpenSSH server peers send to (managed plugin)
        #[arg(long)]
        sshd: bool,
    },
    /// Prepare the data directory (loop-mounted btrfs image when needed)
    Init {
        /// Size of the sparse loop image created when the data dir is not btrfs
        #[arg(long, default_value = crate::init::DEFAULT_LOOP_SIZE)]
        loop_size: String,
    },
    /// Find (and with --fix repair) local/btrfs duplicate volumes and stale sockets
    Doctor {
        #[arg(long)]
        fix: bool,
    },
    /// SSH forced command: serve a peer's request (see authorized_keys)
    #[command(hide = true)]
    SshCommand {
        /// The peer this key belongs to, as this node's schedule names it:
        /// the key then reads only what is replicated with it
        #[arg(long)]
        peer: Option<String>,
    },
}

/// A CLI failure: printed on stderr as `ERROR:root:<message>`, exit status 1.
pub struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

pub fn main(args: Cli) -> ExitCode {
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => return fail(e.into()),
    };
    init_logging(&config);
    let outcome = match args.command {
        None => {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            Ok(())
        }
        Some(Verb::Daemon(verb)) => return daemon_verb(config, verb),
        Some(Verb::Client(verb)) => runtime(false).block_on(client_verb(&config, verb)),
    };
    exit(outcome)
}

fn exit(outcome: Result<(), Failure>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => fail(f),
    }
}

/// The one place a tokio runtime is built: the daemon's is multi-threaded,
/// a client verb's is the current thread.
fn runtime(multi_thread: bool) -> tokio::runtime::Runtime {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().expect("tokio runtime starts")
}

fn daemon_verb(config: Config, verb: DaemonVerb) -> ExitCode {
    match verb {
        DaemonVerb::Run { sshd } => {
            crate::daemon::close_inherited_fds();
            exit(
                runtime(true)
                    .block_on(crate::daemon::run(config, sshd))
                    .map_err(Failure::from),
            )
        }
        DaemonVerb::Doctor { fix } => {
            let findings = match runtime(false).block_on(crate::doctor::run(&config, fix)) {
                Ok(findings) => findings,
                Err(e) => return fail(e.into()),
            };
            if findings.is_empty() {
                println!("no problem found");
            }
            for f in findings {
                println!("{}\n  -> {}", f.problem, f.action);
            }
            ExitCode::SUCCESS
        }
        DaemonVerb::Init { loop_size } => exit(
            crate::init::init(&config, &loop_size)
                .map(|summary| println!("{summary}"))
                .map_err(Failure::from),
        ),
        // The peer reads the forced command's own status.
        DaemonVerb::SshCommand { peer } => {
            ExitCode::from(crate::replication::forced_command::run(&config, peer.as_deref()) as u8)
        }
    }
}

/// Runs one client verb.
async fn client_verb(config: &Config, verb: ClientVerb) -> Result<(), Failure> {
    let daemon = client::Daemon::find(config).await;
    match verb {
        ClientVerb::Local(verb) => local::run(&daemon, verb).await,
        ClientVerb::Peer(verb) => peer::run(&daemon, verb).await,
        ClientVerb::Schedule(verb) => schedule::run(&daemon, verb).await,
        ClientVerb::Backup(verb) => backup::run(&daemon, verb).await,
    }
}

fn fail(f: Failure) -> ExitCode {
    eprintln!("ERROR:root:{}", f.0);
    ExitCode::FAILURE
}

fn init_logging(config: &Config) {
    let level = match config.loglevel.to_ascii_uppercase().as_str() {
        "DEBUG" => "debug",
        "WARNING" | "WARN" => "warn",
        "ERROR" | "CRITICAL" => "error",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
