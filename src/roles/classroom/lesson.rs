//! The lesson on the classroom's screen and speakers: a display for the teacher's
//! catalog, and the teacher's tracks forwarded into it (the video track of the
//! encoding the teacher puts this classroom on, see [`crate::abr::Layer`]).

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::{
    frame::{TrackKind, VideoCodec},
    media::{
        self,
        display::{Display, DisplaySettings, Output},
        probe::Profile,
    },
    stats::LessonStats,
    transport::{catalog::Catalog, subscribe},
};

/// The next error of the current display (pending while there is none).
pub(super) async fn next_error(
    errors: &mut Option<mpsc::UnboundedReceiver<media::MediaError>>,
) -> Option<media::MediaError> {
    match errors {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Start a display for `catalog`; its run-time errors arrive on the returned receiver.
pub(super) async fn start_display(
    profile: &Profile,
    pipelines_dir: Option<std::path::PathBuf>,
    catalog: &Catalog,
    output: Output,
    echo_probe: bool,
    stats: &Arc<LessonStats>,
) -> anyhow::Result<(Display, mpsc::UnboundedReceiver<media::MediaError>)> {
    let audio = catalog.audio.clone().unwrap_or_default();
    let codec = catalog.video_codec()?;
    stats.set_codec(
        profile
            .decoder_for(codec)
            .map(|decoder| format!("{codec} ({decoder})")),
    );
    let (errors_tx, errors) = mpsc::unbounded_channel();
    let display = Display::start(
        profile,
        &DisplaySettings {
            output,
            audio_rate: audio.rate,
            audio_channels: audio.channels,
            pipelines_dir,
            echo_probe,
            codec,
        },
        stats.clone(),
        Some(errors_tx),
    )
    .await?;
    Ok((display, errors))
}

/// Forward both tracks of one teacher broadcast into the display until it ends.
pub(super) async fn play_lesson(
    broadcast: moq_net::broadcast::Consumer,
    display: Arc<Display>,
    budget: std::time::Duration,
    stats: Arc<LessonStats>,
    lan: Option<Arc<crate::media::rebroadcast::LanFeed>>,
    codec_changed: mpsc::UnboundedSender<VideoCodec>,
    box_id: String,
) {
    let (tx, mut rx) = mpsc::channel(64);
    // The teacher may put this classroom on a second encoding (see `abr::Layer`).
    let (layer_tx, layer_rx) = tokio::sync::watch::channel(TrackKind::Video.track_name());
    let layers = tokio::spawn({
        let broadcast = broadcast.clone();
        async move { subscribe::follow_layers(&broadcast, &box_id, layer_tx).await }
    });
    let video = subscribe::forward_video(&broadcast, Some(layer_rx), budget, tx.clone(), &stats);
    // Audio tolerates a little more reordering than video: a gap is worse than a delay.
    let audio = subscribe::forward_track(&broadcast, TrackKind::Audio, budget, tx, &stats);
    let feed = async {
        while let Some(frame) = rx.recv().await {
            if let Some(lan) = &lan {
                lan.publish(&frame);
            }
            if frame.track == TrackKind::Video && frame.codec != display.codec() {
                // The new codec's first picture (a keyframe): the main loop starts a
                // display for it, and a new subscription starts from this group.
                let _ = codec_changed.send(frame.codec);
                break;
            }
            if let Err(e) = display.push(frame) {
                tracing::warn!(error = %e, "display refused a frame");
            }
        }
    };
    // The padding of the teacher's probes, for as long as the lesson plays.
    let probe = tokio::spawn({
        let broadcast = broadcast.clone();
        async move { subscribe::drain_probe(&broadcast).await }
    });
    let (v, a, ()) = tokio::join!(video, audio, feed);
    probe.abort();
    layers.abort();
    for (name, result) in [("video", v), ("audio", a)] {
        if let Err(e) = result {
            tracing::info!(track = name, error = %e, "track ended");
        }
    }
}
