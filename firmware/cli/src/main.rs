//! `vigil`: the one binary. It parses the command line and hands each subcommand to its module
//! in `cmd/`; what runs on the box is the `vigil-daemon` library. See `vigil --help` and docs/.

mod broker;
mod cmd;

use clap::{Parser, Subcommand};
use cmd::run::ConfigArg;

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Video anomaly detection on edge boxes: camera frames in, anomaly events out over MQTT"
)]
struct Cli {
    /// Log filter (error, warn, info, debug, trace; or per module, as RUST_LOG). Default:
    /// info; warn for `demo`, whose console already shows every event as the broker delivers it.
    #[arg(long, global = true, env = "VIGIL_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon (what systemd starts).
    ///
    /// Every configuration key, its default and an example per camera source: docs/configuration.md
    /// (installed as /usr/share/doc/vigil/configuration.md).
    Run(ConfigArg),
    /// Make every check `vigil run` makes at start (configuration, TLS and password files,
    /// outbox directory, model packages, camera sources); exit 0 or explain what is wrong.
    Check(ConfigArg),
    /// Self-contained demo: bundled model, replayed Ped2 clip, embedded MQTT broker.
    Demo(cmd::demo::DemoArgs),
    /// Frame-level ROC AUC of a model package on a labelled dataset.
    Eval(cmd::eval::EvalArgs),
    /// Per-stage timings and throughput on real frames.
    Bench(cmd::bench::BenchArgs),
    /// TensorRT engines: build (or print the trtexec command), and check one against the CPU.
    Engine {
        #[command(subcommand)]
        cmd: cmd::engine::EngineCmd,
    },
    /// Training data from the runtime's own preprocessing.
    Dataset {
        #[command(subcommand)]
        cmd: cmd::dataset::DatasetCmd,
    },
    /// Calibration of a model package.
    Calib {
        #[command(subcommand)]
        cmd: cmd::calib::CalibCmd,
    },
}

fn main() {
    let cli = Cli::parse();
    let default_log = if matches!(cli.cmd, Cmd::Demo(_)) {
        "warn"
    } else {
        "info"
    };
    vigil_daemon::logging::init(cli.log.as_deref().unwrap_or(default_log));
    let result = dispatch(cli.cmd);
    // Reports what the rate limiter is still holding back (firmware/daemon/src/logging.rs).
    log::logger().flush();
    if let Err(e) = result {
        eprintln!("error: {}", one_line_chain(&e));
        std::process::exit(1);
    }
}

/// Timings from an unoptimised build of vigil's own crates are not what a box does.
pub(crate) fn warn_if_debug_build(cmd: &str) {
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: this vigil is a debug build; `vigil {cmd}` timings are not representative \
             (build with `cargo build --release` and use target/release/vigil)"
        );
    }
}

/// The whole context chain on one line ("camera cam0: model ...: reason"), like `{:#}`, but a
/// cause whose text its parent already quotes (library errors that show their source) is not
/// repeated: `cannot read: No such file or directory (os error 2)`, once.
fn one_line_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn dispatch(command: Cmd) -> anyhow::Result<()> {
    match command {
        Cmd::Run(args) => cmd::run::run(args),
        Cmd::Check(args) => cmd::check::run(args),
        Cmd::Demo(args) => cmd::demo::run(args),
        Cmd::Eval(args) => cmd::eval::run(args),
        Cmd::Bench(args) => cmd::bench::run(args),
        Cmd::Engine { cmd: sub } => cmd::engine::run(sub),
        Cmd::Dataset { cmd: sub } => cmd::dataset::run(sub),
        Cmd::Calib { cmd: sub } => cmd::calib::run(sub),
    }
}
