//! Bench: teacher -> relay -> [emulated school link] -> classroom, on loopback, per
//! trace; then the SRT baseline over the same emulated link. Prints both side by side.

use std::{io::Write, sync::Arc, time::Duration};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::loopback::{LoopbackRelay, StockRelay};
use crate::{
    auth::Role,
    bench::{Figures, RunData, figures},
    cli::BenchArgs,
    config::DisplayMode,
    emulator::{
        Impairments, Trace,
        proxy::{LinkEmulator, LinkProfile},
    },
    frame::{TrackKind, unix_micros},
    media::{
        self,
        baseline::{Baseline, BaselineSettings},
    },
    stats::LessonStats,
};

#[derive(Serialize)]
struct TraceResult {
    trace: String,
    rtt_ms: u64,
    loss_percent: f64,
    duration_s: u64,
    /// The relay classbox ran through: "classbox" (ours) or "moq-relay" (`--moq-relay`).
    relay: &'static str,
    classbox: Figures,
    srt_baseline: Option<Figures>,
}

pub async fn run(args: &BenchArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    media::init()?;
    let profile = media::probe::choose("auto")?;
    let mut results = Vec::new();
    let mut timeline = match &args.timeline {
        Some(path) => {
            let mut f = std::fs::File::create(path)
                .map_err(|e| anyhow::anyhow!("cannot write --timeline {}: {e}", path.display()))?;
            writeln!(f, "trace,system,seconds,track,latency_ms")?;
            Some(f)
        }
        None => None,
    };
    for path in &args.traces {
        let trace = Trace::load(path)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let link = link_profile(args, &trace);
        let (ours, ours_run) =
            run_classbox(args, &name, &trace, link.clone(), shutdown.child_token()).await?;
        if let Some(f) = timeline.as_mut() {
            write_timeline(f, &name, "classbox", &ours_run)?;
        }
        if shutdown.is_cancelled() {
            break;
        }
        let baseline = if args.no_baseline {
            None
        } else {
            let (mut figures, run) =
                run_baseline(args, &name, &trace, link, &profile, shutdown.child_token()).await?;
            // The baseline's audio carries no capture time: its sound delay is unknown.
            figures.audio_latency_p95_ms = None;
            if let Some(f) = timeline.as_mut() {
                write_timeline(f, &name, "srt", &run)?;
            }
            Some(figures)
        };
        results.push(TraceResult {
            trace: name,
            rtt_ms: args.rtt_ms,
            loss_percent: args.loss_percent,
            duration_s: args.duration,
            relay: if args.moq_relay.is_some() {
                "moq-relay"
            } else {
                "classbox"
            },
            classbox: ours,
            srt_baseline: baseline,
        });
        if shutdown.is_cancelled() {
            break;
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print_table(&results);
    }
    Ok(())
}

fn write_timeline(
    f: &mut std::fs::File,
    trace: &str,
    system: &str,
    run: &RunData,
) -> std::io::Result<()> {
    for d in &run.timeline {
        writeln!(
            f,
            "{trace},{system},{:.3},{},{:.1}",
            d.at_us.saturating_sub(run.started_us) as f64 / 1e6,
            d.kind.track_name(),
            d.latency_ms
        )?;
    }
    Ok(())
}

fn link_profile(args: &BenchArgs, trace: &Trace) -> LinkProfile {
    let impairments = Impairments {
        delay: Duration::from_millis(args.rtt_ms / 2),
        jitter: Duration::from_millis(args.jitter_ms),
        loss: args.loss_percent / 100.0,
        queue_bytes: args.queue_kib * 1024,
    };
    LinkProfile {
        up: (trace.clone(), impairments),
        down: (trace.clone(), impairments),
    }
}

/// Print a progress line about once a second (stderr; redrawn in place on a terminal).
struct Progress {
    label: String,
    tty: bool,
}

impl Progress {
    fn new(label: String) -> Self {
        use std::io::IsTerminal;
        Self {
            label,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn update(&self, elapsed: u64, total: u64, text: &str) {
        if self.tty {
            eprint!("\r\x1b[2K[{}] {elapsed}/{total} s  {text}", self.label);
            let _ = std::io::stderr().flush();
        } else if elapsed.is_multiple_of(10) {
            eprintln!("[{}] {elapsed}/{total} s  {text}", self.label);
        }
    }

    fn done(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

/// Sample delivered bytes four times a second for `duration`, with progress.
async fn observe(
    stats: &LessonStats,
    trace: &Trace,
    started_us: u64,
    duration: Duration,
    progress: &Progress,
    shutdown: &CancellationToken,
    sender: Option<&LessonStats>,
) -> Vec<(u64, u64)> {
    let mut delivered = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last_second = u64::MAX;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = unix_micros();
        let elapsed = Duration::from_micros(now.saturating_sub(started_us));
        let bytes = stats.totals(TrackKind::Video).received_bytes
            + stats.totals(TrackKind::Audio).received_bytes;
        delivered.push((now, bytes));
        if elapsed.as_secs() != last_second {
            last_second = elapsed.as_secs();
            let link = trace.capacity_bps(elapsed.saturating_sub(Duration::from_secs(1)), elapsed)
                / 1000.0;
            let rate = delivered
                .iter()
                .rev()
                .find(|(t, _)| now - t >= 1_000_000)
                .map(|(t, b)| (bytes - b) as f64 * 8.0 / ((now - t) as f64 / 1e6) / 1000.0)
                .unwrap_or(0.0);
            let latency = stats
                .latest()
                .latency_ms_p50
                .map_or("-".into(), |l| format!("{l:.0} ms"));
            let target = sender.map(|s| {
                let st = s.sender();
                format!(
                    "  target {} kbit/s {}",
                    st.target_kbps,
                    st.rung.unwrap_or_else(|| "(no rung)".into())
                )
            });
            progress.update(
                last_second,
                duration.as_secs(),
                &format!(
                    "delivered {rate:.0} kbit/s of {link:.0}  latency {latency}{}",
                    target.unwrap_or_default()
                ),
            );
        }
        if elapsed >= duration {
            break;
        }
    }
    progress.done();
    delivered
}

async fn run_classbox(
    args: &BenchArgs,
    name: &str,
    trace: &Trace,
    link: LinkProfile,
    shutdown: CancellationToken,
) -> anyhow::Result<(Figures, RunData)> {
    let state = tempfile::Builder::new()
        .prefix("classbox-bench-")
        .tempdir()?;
    let relay = match &args.moq_relay {
        Some(binary) => BenchRelay::Stock(StockRelay::start(binary, state.path(), "bench").await?),
        None => BenchRelay::Ours(LoopbackRelay::start(
            state.path(),
            "127.0.0.1:0",
            shutdown.clone(),
        )?),
    };
    let emulator = LinkEmulator::start(relay.addr(), link, 42, shutdown.clone()).await?;
    let started_us = unix_micros();

    let config = |role: Role, via| {
        let mut c = relay.client_config(via, role);
        c.classroom.display = DisplayMode::Headless;
        c.classroom.id = "bench".into();
        c
    };
    let classroom_config = config(Role::Box, emulator.addr());
    let mut teacher_config = config(Role::Teacher, relay.addr());
    if let Some(kbps) = args.fixed_kbps {
        teacher_config.teacher.adaptive = false;
        teacher_config.teacher.video_kbps = kbps;
    }
    let classroom_stats = Arc::new(LessonStats::default());
    let teacher_stats = Arc::new(LessonStats::default());
    let classroom = tokio::spawn({
        let (stats, stop) = (classroom_stats.clone(), shutdown.clone());
        async move { super::classroom::run(&classroom_config, stats, None, stop).await }
    });
    let teacher = tokio::spawn({
        let (stats, stop) = (teacher_stats.clone(), shutdown.clone());
        async move { super::teacher::run(&teacher_config, stats, true, stop).await }
    });
    // (The classroom role runs its own stats sampler.)
    let duration = Duration::from_secs(args.duration);
    let progress = Progress::new(format!("classbox {name}"));
    let delivered = observe(
        &classroom_stats,
        trace,
        started_us,
        duration,
        &progress,
        &shutdown,
        Some(&teacher_stats),
    )
    .await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = teacher.await;
        let _ = classroom.await;
        relay.stop().await;
    })
    .await;
    emulator.join().await;

    let video = teacher_stats.totals(TrackKind::Video);
    let audio = teacher_stats.totals(TrackKind::Audio);
    for kind in [TrackKind::Video, TrackKind::Audio] {
        let (sent, got) = (teacher_stats.totals(kind), classroom_stats.totals(kind));
        tracing::info!(
            track = kind.track_name(),
            sent = sent.sent_frames,
            received = got.received_frames,
            skipped_groups = got.groups_skipped,
            dropped = got.dropped,
            decoded = got.decoded,
            "bench run totals"
        );
    }
    let sent = video.sent_bytes + audio.sent_bytes;
    let run = RunData::from_receiver(started_us, duration, &classroom_stats, delivered, sent);
    Ok((figures(trace, &run), run))
}

/// The relay of a bench run: ours, or a stock moq-relay (`--moq-relay`).
enum BenchRelay {
    Ours(LoopbackRelay),
    Stock(StockRelay),
}

impl BenchRelay {
    fn addr(&self) -> std::net::SocketAddr {
        match self {
            Self::Ours(relay) => relay.addr,
            Self::Stock(relay) => relay.addr,
        }
    }

    fn client_config(&self, via: std::net::SocketAddr, role: Role) -> crate::config::Config {
        match self {
            Self::Ours(relay) => relay.client_config(via, "bench", role),
            Self::Stock(relay) => relay.client_config(via),
        }
    }

    async fn stop(self) {
        match self {
            // (It stops with the run's shutdown token.)
            Self::Ours(relay) => {
                let _ = relay.task.await;
            }
            Self::Stock(relay) => {
                let stderr = relay.stop().await;
                tracing::debug!(%stderr, "moq-relay stopped");
            }
        }
    }
}

async fn run_baseline(
    args: &BenchArgs,
    name: &str,
    trace: &Trace,
    link: LinkProfile,
    profile: &media::probe::Profile,
    shutdown: CancellationToken,
) -> anyhow::Result<(Figures, RunData)> {
    let listen = {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0")?;
        probe.local_addr()?
    };
    let emulator = LinkEmulator::start(listen, link, 42, shutdown.clone()).await?;
    let started_us = unix_micros();
    let stats = Arc::new(LessonStats::default());
    let defaults = crate::config::TeacherConfig::default();
    let baseline = Baseline::start(
        profile,
        &BaselineSettings {
            width: defaults.width,
            height: defaults.height,
            framerate: defaults.framerate,
            video_kbps: args.baseline_kbps,
            keyframe_interval: defaults.keyframe_interval,
            send_to: emulator.addr(),
            listen_on: listen,
            // SRT's own guidance: a receive latency of about four round trips.
            srt_latency_ms: (4 * args.rtt_ms).max(120) as u32,
        },
        stats.clone(),
    )
    .await?;
    tokio::spawn({
        let (stats, stop) = (stats.clone(), shutdown.clone());
        async move { stats.run_sampler(stop).await }
    });
    let duration = Duration::from_secs(args.duration);
    let progress = Progress::new(format!("srt {name}"));
    let delivered = observe(
        &stats, trace, started_us, duration, &progress, &shutdown, None,
    )
    .await;
    let sent = baseline
        .sent_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    drop(baseline);
    shutdown.cancel();
    emulator.join().await;
    let mut run = RunData::from_receiver(started_us, duration, &stats, delivered, sent);
    // Its sound is timed at the decoder, in the 20 ms packets of its pipeline.
    run.audio_packet_ms = Some(20.0);
    Ok((figures(trace, &run), run))
}

fn print_table(results: &[TraceResult]) {
    let opt = |v: Option<f64>, unit: &str| v.map_or("-".to_string(), |v| format!("{v:.0}{unit}"));
    let secs = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} s"));
    println!(
        "| trace | system | latency p50 / p95 / max | video kbit/s (link) | utilisation | freeze | audio gaps (sound delay p95) | recovery after drop | ramp-up after rise | resume after outage | MB sent |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let ours = match r.relay {
            "classbox" => "classbox".to_string(),
            other => format!("classbox via {other}"),
        };
        let rows = std::iter::once((ours.as_str(), &r.classbox))
            .chain(r.srt_baseline.as_ref().map(|b| ("SRT baseline", b)));
        for (system, f) in rows {
            println!(
                "| {} | {system} | {} / {} / {} | {:.0} ({:.0}) | {:.0}% | {:.1}% | {} ({}) | {} | {} | {} | {:.1} |",
                r.trace,
                opt(f.latency_p50_ms, " ms"),
                opt(f.latency_p95_ms, " ms"),
                opt(f.latency_max_ms, " ms"),
                f.video_kbps,
                f.capacity_kbps,
                f.utilisation * 100.0,
                f.freeze_ratio * 100.0,
                f.audio_gaps,
                opt(f.audio_latency_p95_ms, " ms"),
                secs(f.recovery_after_drop_s),
                secs(f.rampup_after_rise_s),
                secs(f.resume_after_outage_s),
                f.bytes_sent as f64 / 1e6,
            );
        }
    }
    println!(
        "\nRTT {} ms, loss {}% each way, {} s per run. Freeze: share of time with no new picture for > 200 ms; audio gap: > 100 ms without sound.",
        results.first().map_or(0, |r| r.rtt_ms),
        results.first().map_or(0.0, |r| r.loss_percent),
        results.first().map_or(0, |r| r.duration_s)
    );
}
