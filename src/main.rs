//! The `buttervolume` command: the daemon (`run`), machine setup (`init`) and
//! the client verbs that talk to a running daemon over its socket.

use std::process::ExitCode;

use buttervolume::cli::{self, Cli};
use clap::Parser;

fn main() -> ExitCode {
    let args = Cli::parse();
    cli::main(args)
}
