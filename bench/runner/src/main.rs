//! `schemebench`: the timed loops behind `bench/run.sh`, and the report it writes.
//!
//! Every measuring subcommand prints one line per metric, `metric<TAB>unit<TAB>value`, where the
//! value is a number, `n/a` (the file system refuses the request, e.g. O_DIRECT) or `err` (the
//! workload failed; the reason goes to stderr and the exit status is 1). Only the loop itself
//! is timed: files are prepared, caches dropped and helper processes started before the clock
//! starts.
//!
//! ```text
//! schemebench fs DIR --workload write-seq --bs 128k [--direct] --size-mb 256
//! schemebench chan-stream MOUNT --mb 256        # writer -> reader through a chan stream
//! schemebench pipe-stream --mb 256              # the same two programs over a plain pipe
//! schemebench wire-rtt --daemon zerod --size 4k # Client::read round trips to zerod
//! schemebench pipe-rtt --size 4k                # raw pipe ping-pong with the same frame sizes
//! schemebench chain-rtt --size 4k               # the same bytes through a relay process
//! schemebench shared-chain-rtt --size 4k        # ... with the relay's hop through shared memory
//! schemebench loop-rtt --size 4k                # ... round a loop of three processes
//! schemebench report results.tsv                # markdown tables from run.sh's raw TSV
//! ```

#![deny(clippy::undocumented_unsafe_blocks)]

mod aligned;
mod fs;
mod report;
mod rtt;
mod sample;
mod stream;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use sample::{Sample, Value};

/// Benchmark loops for scheme-bridge mounts (see bench/run.sh).
#[derive(Debug, Parser)]
#[command(name = "schemebench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A file-system workload in a mounted directory.
    Fs(fs::FsArgs),
    /// Stream throughput from a writer process to a reader process through a chan mount.
    ChanStream(stream::ChanArgs),
    /// Stream throughput between the same two programs over a plain pipe.
    PipeStream(stream::PipeArgs),
    /// Internal: the writer process of chan-stream and pipe-stream.
    #[command(hide = true)]
    StreamWriter(stream::WriterArgs),
    /// Round trips of `Client::read` over the wire to a spawned zero daemon.
    WireRtt(rtt::WireArgs),
    /// Round trips over a raw pipe to a child, with the wire call's request and reply sizes.
    PipeRtt(rtt::PipeArgs),
    /// Round trips of real frames (the codec on both ends) over a raw pipe to a child.
    FrameRtt(rtt::PipeArgs),
    /// Round trips of pipe-rtt's bytes through a relay process to its echo child (3 processes).
    ChainRtt(rtt::PipeArgs),
    /// chain-rtt with the relay's hop to its echo child through shared memory (the CPU handed
    /// over with sched_yield), as the bridge's frame rings.
    SharedChainRtt(rtt::PipeArgs),
    /// Round trips of pipe-rtt's bytes to a forwarding process, on to an echo process and
    /// straight back (3 processes in a loop).
    LoopRtt(rtt::PipeArgs),
    /// Internal: the answering child of pipe-rtt.
    #[command(hide = true)]
    PipeEcho(rtt::EchoArgs),
    /// Internal: the relay child of chain-rtt.
    #[command(hide = true)]
    PipeRelay(rtt::RelayArgs),
    /// Internal: the echo child of shared-chain-rtt's relay.
    #[command(hide = true)]
    SharedEcho(rtt::SharedEchoArgs),
    /// Markdown tables (median (min-max) per metric and contender) from run.sh's raw TSV.
    Report(report::ReportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (expected, result) = match &cli.command {
        Command::Fs(args) => (args.metrics(), args.run()),
        Command::ChanStream(args) => (vec![args.metric()], args.run()),
        Command::PipeStream(args) => (vec![args.metric()], args.run()),
        Command::WireRtt(args) => (vec![args.metric()], args.run()),
        Command::PipeRtt(args) => (vec![args.metric()], args.run()),
        Command::FrameRtt(args) => (vec![args.metric()], args.run_frames()),
        Command::ChainRtt(args) => (vec![args.metric()], args.run_chain()),
        Command::SharedChainRtt(args) => (vec![args.metric()], args.run_shared_chain()),
        Command::LoopRtt(args) => (vec![args.metric()], args.run_loop()),
        Command::StreamWriter(args) => return finish(args.run()),
        Command::PipeEcho(args) => return finish(args.run()),
        Command::PipeRelay(args) => return finish(args.run()),
        Command::SharedEcho(args) => return finish(args.run()),
        Command::Report(args) => return finish(args.run()),
    };
    match result {
        Ok(samples) => {
            let lines: String = samples.iter().map(|sample| format!("{sample}\n")).collect();
            finish(emit(&lines))
        }
        Err(err) => {
            let lines: String = expected
                .into_iter()
                .map(|(metric, unit)| format!("{}\n", Sample { metric, unit, value: Value::Error }))
                .collect();
            let _ = emit(&lines);
            eprintln!("schemebench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` to standard output; an error if it cannot (a reader such as `head` that
/// went away closes the pipe: that is an error, not a panic as with `println!`).
pub(crate) fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|err| anyhow::anyhow!("cannot write to standard output: {err}"))
}

/// Exit status of a subcommand that prints no samples.
fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("schemebench: {err:#}");
            ExitCode::FAILURE
        }
    }
}
