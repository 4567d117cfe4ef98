//! Demo: relay + classroom + teacher in one process on loopback, test sources,
//! embedded defaults, state in a temporary directory.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use super::loopback::LoopbackRelay;
use crate::{auth::Role, cli::DemoArgs, config::DisplayMode, stats::LessonStats};

pub async fn run(args: &DemoArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let state = tempfile::Builder::new()
        .prefix("classbox-demo-")
        .tempdir()?;
    crate::media::init()?;
    let profile = crate::media::probe::choose("auto")?;

    // relay on an ephemeral loopback port, with a fresh certificate and key
    let relay = LoopbackRelay::start(state.path(), "127.0.0.1:0", shutdown.child_token())?;
    let (relay_addr, fingerprint) = (relay.addr, relay.fingerprint.clone());
    let base = |role: Role| relay.client_config(relay_addr, "demo", role);
    let mut classroom = base(Role::Box);
    classroom.classroom.name = "Demo classroom".into();
    classroom.classroom.web_listen = args.web.clone();
    classroom.classroom.display = if args.headless {
        DisplayMode::Headless
    } else {
        DisplayMode::Auto
    };
    let teacher = base(Role::Teacher);

    let classroom_stats = Arc::new(LessonStats::default());
    let teacher_stats = Arc::new(LessonStats::default());
    let web = match super::classroom::bind_web(
        &classroom,
        state.path().join("classbox.toml"),
        classroom_stats.clone(),
        &profile.name,
    )
    .await
    {
        Ok(web) => web,
        Err(e) => {
            // The usual port may be taken; any free port will do for a demo.
            tracing::warn!(error = %e, "using a free port for the demo page instead");
            classroom.classroom.web_listen = "127.0.0.1:0".into();
            super::classroom::bind_web(
                &classroom,
                state.path().join("classbox.toml"),
                classroom_stats.clone(),
                &profile.name,
            )
            .await?
        }
    };
    println!("classbox demo: relay on {relay_addr} (sha256:{fingerprint})");
    println!(
        "classbox demo: open http://{}/ to see the lesson status (first choose a password: this demo's state is temporary)",
        web.local_addr()?
    );
    println!("classbox demo: press Ctrl-C to stop");

    if let Some(secs) = args.duration {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            stop.cancel();
        });
    }
    let classroom_run = super::classroom::run(
        &classroom,
        classroom_stats.clone(),
        Some(web),
        shutdown.clone(),
    );
    let teacher_run = super::teacher::run(&teacher, teacher_stats.clone(), true, shutdown.clone());
    let (c, t) = tokio::join!(classroom_run, teacher_run);
    shutdown.cancel();
    let _ = relay.task.await;

    let sent = teacher_stats
        .totals(crate::frame::TrackKind::Video)
        .sent_frames;
    let decoded = classroom_stats
        .totals(crate::frame::TrackKind::Video)
        .decoded;
    let audio = classroom_stats
        .totals(crate::frame::TrackKind::Audio)
        .decoded;
    match classroom_stats.latency_summary() {
        Some(l) => println!(
            "classbox demo: {decoded}/{sent} video frames decoded, {audio} audio packets decoded, \
             latency p50 {:.0} ms p95 {:.0} ms",
            l.p50_ms, l.p95_ms
        ),
        None => println!("classbox demo: no video frame was decoded"),
    }
    c?;
    t?;
    Ok(())
}
