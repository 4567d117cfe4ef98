//! Demo: relay + classroom + teacher in one process on loopback, test sources,
//! embedded defaults, state in a temporary directory.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::{
    auth::{Role, TokenKey},
    cli::DemoArgs,
    config::{Config, DisplayMode, RelayConfig},
    relay::{Relay, RelaySettings},
    stats::LessonStats,
};

pub async fn run(args: &DemoArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let state = tempfile::Builder::new().prefix("classbox-demo-").tempdir()?;
    crate::media::init()?;
    let profile = crate::media::probe::choose("auto")?;

    // relay on an ephemeral loopback port, with a fresh certificate and key
    let relay_config = RelayConfig {
        listen: "127.0.0.1:0".into(),
        ..Default::default()
    };
    let settings = RelaySettings::from_state_dir(state.path(), &relay_config)?;
    let key: TokenKey = settings.key.clone();
    let relay = Relay::bind(settings)?;
    let relay_addr = relay.local_addr()?;
    let fingerprint = relay.fingerprint().to_string();
    let relay_task = tokio::spawn(relay.run(shutdown.child_token()));

    let room = "demo";
    let base = |role: Role| {
        let mut c = Config::default();
        c.link.relay = Some(relay_addr.to_string());
        c.link.fingerprint = Some(fingerprint.clone());
        c.link.room = room.into();
        c.link.token = Some(key.issue(room, role, Duration::from_secs(24 * 3600)));
        c.link.max_backoff_secs = 2;
        c
    };
    let mut classroom = base(Role::Box);
    classroom.classroom.name = "Demo classroom".into();
    classroom.classroom.web_listen = args.web.clone();
    classroom.classroom.display = if args.headless { DisplayMode::Headless } else { DisplayMode::Auto };
    let teacher = base(Role::Teacher);

    let classroom_stats = Arc::new(LessonStats::default());
    let teacher_stats = Arc::new(LessonStats::default());
    let web = match super::classroom::bind_web(&classroom, classroom_stats.clone(), &profile.name).await {
        Ok(web) => web,
        Err(e) => {
            // The usual port may be taken; any free port will do for a demo.
            tracing::warn!(error = %e, "using a free port for the demo page instead");
            classroom.classroom.web_listen = "127.0.0.1:0".into();
            super::classroom::bind_web(&classroom, classroom_stats.clone(), &profile.name).await?
        }
    };
    println!("classbox demo: relay on {relay_addr} (sha256:{fingerprint})");
    println!("classbox demo: open http://{}/ to see the lesson status", web.local_addr()?);
    println!("classbox demo: press Ctrl-C to stop");

    if let Some(secs) = args.duration {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            stop.cancel();
        });
    }
    let classroom_run = super::classroom::run(&classroom, classroom_stats.clone(), Some(web), shutdown.clone());
    let teacher_run = super::teacher::run(&teacher, teacher_stats.clone(), true, shutdown.clone());
    let (c, t) = tokio::join!(classroom_run, teacher_run);
    shutdown.cancel();
    let _ = relay_task.await;

    let sent = teacher_stats.totals(crate::frame::TrackKind::Video).sent_frames;
    let decoded = classroom_stats.totals(crate::frame::TrackKind::Video).decoded;
    let audio = classroom_stats.totals(crate::frame::TrackKind::Audio).decoded;
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
