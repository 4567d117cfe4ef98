//! Command-line interface: one binary, one subcommand per role.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{auth::Role, config::Override};

pub const VERSION_LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CLASSBOX_GIT_COMMIT"),
    ", ",
    env!("CLASSBOX_TARGET"),
    ")"
);

#[derive(Parser, Debug)]
#[command(name = "classbox", version = VERSION_LONG, about = "Brings a remote teacher into the classroom live over a poor school link")]
pub struct Cli {
    /// Config file (TOML). Default: /etc/classbox/classbox.toml if it exists.
    #[arg(
        long,
        short,
        global = true,
        env = "CLASSBOX_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// Override one config key, e.g. --set classroom.latency_budget_ms=300 (repeatable).
    #[arg(long = "set", global = true, value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
    /// Validate the configuration, print what would run, and exit.
    #[arg(long, global = true)]
    pub check: bool,
    /// More detailed logs.
    #[arg(long, short, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The appliance daemon: dial out to the relay, show the lesson, serve the page.
    Classroom(ClassroomArgs),
    /// The teacher's end: capture, encode, publish the lesson.
    Teacher(TeacherArgs),
    /// The public relay boxes and teachers dial out to (rooms, tokens, fan-out).
    Relay(RelayArgs),
    /// Relay, classroom and teacher in one process on loopback with test sources.
    Demo(DemoArgs),
    /// What this machine has (GStreamer, codecs, sinks), what will be used, and why.
    Doctor(DoctorArgs),
    /// Latency and adaptive-bitrate benchmark over emulated links, beside an SRT baseline
    /// (`classbox bench TRACE...`), or the LMS outbox benchmark (`classbox bench outbox`).
    Bench(BenchArgs),
    /// The LMS outbox: what is queued, delivered, dead-lettered; retry; sync now.
    Outbox(OutboxArgs),
}

#[derive(Args, Debug, Clone)]
pub struct OutboxArgs {
    #[command(subcommand)]
    pub action: OutboxAction,
}

#[derive(Subcommand, Debug, Clone)]
pub enum OutboxAction {
    /// Queue lengths and the last delivery.
    Status,
    /// Records in one state (pending, delivered or dead), newest first.
    List {
        #[arg(long, default_value = "pending")]
        state: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put a dead-lettered record back in the queue.
    Retry { record_id: String },
    /// Queue events from a file of JSON lines (one event per line; `-` for stdin).
    Enqueue { file: PathBuf },
    /// Deliver to the configured LMS until stopped (what the classroom daemon runs).
    Sync,
}

#[derive(Args, Debug, Clone)]
pub struct OutboxBenchArgs {
    /// Records to enqueue.
    #[arg(long, default_value_t = 20_000)]
    pub records: usize,
    /// Enqueues in flight at once (as from many page requests).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// An xAPI LRS (its xAPI base URL) to drain to; without it only enqueues are measured.
    #[arg(long, value_name = "URL")]
    pub lrs: Option<String>,
    /// Records drained to the LRS (and sent to it directly, for comparison).
    #[arg(long, default_value_t = 500)]
    pub drain: usize,
}

#[derive(Subcommand, Debug, Clone)]
pub enum BenchMode {
    /// Durable enqueues per second, and drain rate to an LRS against the LRS's own rate.
    Outbox(OutboxBenchArgs),
}

#[derive(Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub mode: Option<BenchMode>,
    /// Bandwidth traces in Mahimahi format (one line per 1500-byte opportunity, in ms).
    #[arg(required = true, value_name = "TRACE")]
    pub traces: Vec<PathBuf>,
    /// Round-trip time added by the link (half each way), ms.
    #[arg(long, default_value_t = 80)]
    pub rtt_ms: u64,
    /// Random packet loss each way, percent.
    #[arg(long, default_value_t = 1.0)]
    pub loss_percent: f64,
    /// Delay variation each way (±), ms.
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: u64,
    /// Seconds per run.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Bottleneck queue (drop-tail), KiB.
    #[arg(long, default_value_t = 64)]
    pub queue_kib: usize,
    /// The SRT baseline's fixed video bitrate, kbit/s.
    #[arg(long, default_value_t = 800)]
    pub baseline_kbps: u32,
    /// Skip the SRT baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// Run classbox through this stock moq-relay binary instead of its own relay (what a
    /// district's moq-relay cluster gives a school), e.g. ~/.cargo/bin/moq-relay.
    #[arg(long, value_name = "PATH")]
    pub moq_relay: Option<PathBuf>,
    /// Run classbox without adaptation, at this fixed video bitrate (diagnosis).
    #[arg(long, value_name = "KBPS")]
    pub fixed_kbps: Option<u32>,
    /// Write every decoded frame (run, system, seconds, track, latency ms) as CSV here.
    #[arg(long, value_name = "FILE")]
    pub timeline: Option<PathBuf>,
    /// Print the figures as JSON (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Default)]
pub struct LinkArgs {
    /// Relay address, host:port [link.relay].
    #[arg(long)]
    pub relay: Option<String>,
    /// Room (lesson) name [link.room].
    #[arg(long)]
    pub room: Option<String>,
    /// Token from `classbox relay token` [link.token]. Prefer link.token_file.
    #[arg(long, env = "CLASSBOX_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// SHA-256 fingerprint of the relay's certificate [link.fingerprint].
    #[arg(long)]
    pub fingerprint: Option<String>,
}

#[derive(Args, Debug)]
pub struct ClassroomArgs {
    #[command(flatten)]
    pub link: LinkArgs,
    /// Where the web page listens [classroom.web_listen].
    #[arg(long)]
    pub web: Option<String>,
    /// Decode without showing anything [classroom.display=headless].
    #[arg(long)]
    pub headless: bool,
}

#[derive(Args, Debug)]
pub struct TeacherArgs {
    #[command(flatten)]
    pub link: LinkArgs,
    /// Stop after this many seconds (scripts and tests).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<u64>,
}

#[derive(Args, Debug)]
pub struct RelayArgs {
    /// UDP address to listen on [relay.listen].
    #[arg(long)]
    pub listen: Option<String>,
    /// Certificate, key and token key live here [relay.state_dir].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub action: Option<RelayAction>,
}

#[derive(Subcommand, Debug)]
pub enum RelayAction {
    /// Issue a room-scoped, expiring token for a teacher or a box.
    Token {
        #[arg(long)]
        room: String,
        #[arg(long, value_enum)]
        role: Role,
        /// Lifetime: 90m, 8h, 30d, ...
        #[arg(long, default_value = "12h")]
        ttl: String,
    },
    /// Print the relay certificate's SHA-256 fingerprint (what clients pin).
    Fingerprint,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// No window, no sound device.
    #[arg(long)]
    pub headless: bool,
    /// Where the demo's web page listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub web: String,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<u64>,
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

impl Cli {
    /// Flags that set config keys, in the order they override.
    pub fn overrides(&self) -> Result<Vec<Override>, crate::config::ConfigError> {
        let mut out = Vec::new();
        for set in &self.set {
            out.push(Override::parse_flag(set)?);
        }
        let link = |out: &mut Vec<Override>, link: &LinkArgs| {
            let pairs = [
                ("link.relay", "--relay", &link.relay),
                ("link.room", "--room", &link.room),
                ("link.token", "--token", &link.token),
                ("link.fingerprint", "--fingerprint", &link.fingerprint),
            ];
            for (key, flag, value) in pairs {
                if let Some(v) = value {
                    // Quote: these are always strings (a room may look like a number).
                    out.push(Override::flag(key, flag, toml::Value::String(v.clone())));
                }
            }
        };
        match &self.command {
            Command::Classroom(a) => {
                link(&mut out, &a.link);
                if let Some(web) = &a.web {
                    out.push(Override::flag(
                        "classroom.web_listen",
                        "--web",
                        toml::Value::String(web.clone()),
                    ));
                }
                if a.headless {
                    out.push(Override::flag(
                        "classroom.display",
                        "--headless",
                        "\"headless\"",
                    ));
                }
            }
            Command::Teacher(a) => link(&mut out, &a.link),
            Command::Relay(a) => {
                if let Some(listen) = &a.listen {
                    out.push(Override::flag(
                        "relay.listen",
                        "--listen",
                        toml::Value::String(listen.clone()),
                    ));
                }
                if let Some(dir) = &a.state_dir {
                    out.push(Override::flag(
                        "relay.state_dir",
                        "--state-dir",
                        toml::Value::String(dir.display().to_string()),
                    ));
                }
            }
            Command::Demo(_) | Command::Doctor(_) | Command::Bench(_) | Command::Outbox(_) => {}
        }
        Ok(out)
    }
}
