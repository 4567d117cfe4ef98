//! Teacher: capture (gst) -> encode (gst) -> Frame -> publisher (moq-lite, QUIC) -> relay,
//! and receiver reports from the classrooms -> ABR -> encoder bitrate and picture size.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    abr::{AbrSettings, Decision, ReceiverSet, ladder},
    config::Config,
    media::{
        self,
        capture::{Capture, CaptureSettings},
    },
    stats::{LessonStats, SenderState},
    transport::{
        TEACHER_BROADCAST,
        catalog::{AudioInfo, Catalog, VideoInfo},
        link::Link,
        publish::BroadcastPublisher,
        report,
    },
};

/// Run the teacher's end until `shutdown`. `stop_when_refused`: give up when the
/// relay refuses the token (a person is at the keyboard), instead of retrying.
pub async fn run(
    config: &Config,
    stats: Arc<LessonStats>,
    stop_when_refused: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    media::init()?;
    let profile = media::probe::choose(&config.media.profile)?;
    let settings = super::link_settings(config)?;
    super::check_token_role(&settings, crate::auth::Role::Teacher)?;
    let link = Link::new(settings)?;
    tracing::info!(profile = %profile.name, reason = %profile.reason, "teacher media profile");

    let t = &config.teacher;
    // Adaptive: the ladder decides the picture; fixed: the config does.
    let mut rung = t
        .adaptive
        .then(|| ladder::rung_for(t.video_kbps, None))
        .flatten();
    let (width, height, framerate) = match rung {
        Some(r) => (r.width, r.height, r.framerate),
        None => (t.width, t.height, t.framerate),
    };
    let catalog = Catalog {
        version: Catalog::VERSION,
        video: Some(VideoInfo {
            codec: "h264".into(),
            width,
            height,
            framerate,
        }),
        audio: Some(AudioInfo {
            codec: "opus".into(),
            rate: 48_000,
            channels: 1,
        }),
    };

    // capture -> frames -> publisher (into the local origin) -> link (to the relay)
    let origin = super::spawn_origin();
    let publisher = BroadcastPublisher::new(&origin, TEACHER_BROADCAST, &catalog)?;
    let video_switch = publisher.video_switch();
    let (frames_tx, frames_rx) = mpsc::channel(256);
    let (errors_tx, mut errors_rx) = mpsc::unbounded_channel();
    let capture = Capture::start(
        &profile,
        &CaptureSettings {
            width,
            height,
            framerate,
            video_kbps: t.video_kbps,
            audio_kbps: t.audio_kbps,
            keyframe_interval: t.keyframe_interval,
            test_sources: t.test_sources,
            pipelines_dir: config.media.pipelines_dir.clone(),
        },
        frames_tx,
        Some(errors_tx),
    )
    .await?;
    stats.set_sender(SenderState {
        target_kbps: t.video_kbps,
        rung: rung.map(|r| r.name.to_string()),
        reason: None,
    });

    let link_task = tokio::spawn(link.run(
        origin.clone(),
        stats.clone(),
        stop_when_refused,
        shutdown.clone(),
    ));
    let mut publish_task = tokio::spawn({
        let stats = stats.clone();
        async move { publisher.run(frames_rx, &stats).await }
    });
    // classrooms' reports -> controller
    let (reports_tx, mut reports_rx) = mpsc::channel(64);
    let reports_task = tokio::spawn(report::watch_reports(origin.clone(), reports_tx));
    let mut receivers = ReceiverSet::new(AbrSettings {
        start_kbps: t.video_kbps,
        ..Default::default()
    });
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut applied = t.video_kbps;

    let result: anyhow::Result<()> = loop {
        let reason = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            r = &mut publish_task => break r.map_err(anyhow::Error::from).and_then(|r| r.map_err(Into::into)),
            Some(e) = errors_rx.recv() => break Err(anyhow::Error::from(e).context("capture failed")),
            Some((box_id, report)) = reports_rx.recv() => {
                if !receivers.knows(&box_id) {
                    tracing::info!(%box_id, "classroom joined");
                    capture.force_keyframe();
                }
                match receivers.on_report(started.elapsed(), &box_id, &report) {
                    Decision::Decrease { to_kbps, reason } => {
                        tracing::debug!(%box_id, to_kbps, %reason, "bitrate down");
                        Some(reason)
                    }
                    _ => None,
                }
            }
            _ = tick.tick() => {
                receivers.on_tick(started.elapsed());
                None
            }
        };
        if !t.adaptive {
            continue;
        }
        let Some(target) = receivers.target_kbps() else {
            continue;
        };
        if target == applied {
            continue;
        }
        applied = target;
        let next = ladder::rung_for(target, rung);
        if next != rung {
            match next {
                Some(r) => {
                    tracing::info!(rung = r.name, kbps = target, "picture changes");
                    capture.set_picture(r.width, r.height, r.framerate);
                    receivers.expect_burst(started.elapsed(), Duration::from_secs(1));
                }
                None => tracing::info!(kbps = target, "link too weak for video: audio only"),
            }
            if rung.is_none() && next.is_some() {
                // Back from audio-only: start the picture now, not at the next GOP.
                capture.force_keyframe();
            }
            video_switch.store(next.is_some(), Ordering::Relaxed);
            rung = next;
        }
        capture.set_video_bitrate(target.max(ladder::LADDER.last().expect("non-empty").min_kbps));
        stats.set_sender(SenderState {
            target_kbps: target,
            rung: rung.map(|r| r.name.to_string()),
            reason: reason.or_else(|| stats.sender().reason),
        });
    };
    drop(capture);
    shutdown.cancel();
    publish_task.abort();
    reports_task.abort();
    let link_result = link_task.await?;
    result?;
    link_result?;
    Ok(())
}
