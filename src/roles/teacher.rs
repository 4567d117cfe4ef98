//! Teacher: capture (gst) -> encode (gst) -> Frame -> publisher (moq-lite, QUIC) -> relay.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    config::Config,
    media::{
        self,
        capture::{Capture, CaptureSettings},
    },
    stats::LessonStats,
    transport::{
        TEACHER_BROADCAST,
        catalog::{AudioInfo, Catalog, VideoInfo},
        link::Link,
        publish::BroadcastPublisher,
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
    let link = Link::new(super::link_settings(config)?)?;
    tracing::info!(profile = %profile.name, reason = %profile.reason, "teacher media profile");

    let t = &config.teacher;
    let catalog = Catalog {
        version: Catalog::VERSION,
        video: Some(VideoInfo {
            codec: "h264".into(),
            width: t.width,
            height: t.height,
            framerate: t.framerate,
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
    let (frames_tx, frames_rx) = mpsc::channel(256);
    let (errors_tx, mut errors_rx) = mpsc::unbounded_channel();
    let capture = Capture::start(
        &profile,
        &CaptureSettings {
            width: t.width,
            height: t.height,
            framerate: t.framerate,
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

    let link_task = tokio::spawn(link.run(origin.clone(), stats.clone(), stop_when_refused, shutdown.clone()));
    let result = tokio::select! {
        _ = shutdown.cancelled() => Ok(()),
        r = publisher.run(frames_rx, &stats) => r.map_err(anyhow::Error::from),
        Some(e) = errors_rx.recv() => Err(anyhow::Error::from(e).context("capture failed")),
    };
    drop(capture);
    shutdown.cancel();
    let link_result = link_task.await?;
    result?;
    link_result?;
    Ok(())
}
