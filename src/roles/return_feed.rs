//! The classroom seen and heard by the teacher: camera + microphone (gst) -> Frames ->
//! `classroom/<box>/feed` (moq-lite), adapted to the school's uplink by the teacher's
//! reports on `teacher/feedback/<box>` ([`AdaptiveSender`]).
//!
//! A camera that fails or goes away is replaced by a slate ("camera disconnected") and
//! tried again every few seconds; the microphone and the lesson are unaffected.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::sender::{AdaptiveSender, SenderSettings};
use crate::{
    config::Config,
    media::probe::Profile,
    stats::LessonStats,
    transport::{CLASSROOM_BROADCAST, report},
};

const SLATE: &str = "Camera disconnected";
const CAMERA_RETRY: Duration = Duration::from_secs(5);

/// What `classroom.return_feed` asks for: None (off), or whether to use test sources.
pub fn sources(config: &Config) -> Option<bool> {
    match config.classroom.return_feed.as_str() {
        "off" => None,
        "test" => Some(true),
        "camera" => Some(false),
        _ if !config.classroom.camera.is_empty() => Some(false),
        _ => {
            if crate::media::devices::cameras().is_empty() {
                tracing::info!(
                    "no camera found: the teacher will not see the classroom (classroom.return_feed = \"auto\")"
                );
                None
            } else {
                Some(false)
            }
        }
    }
}

/// The return feed's parts, as the classroom role hands them over.
pub struct ReturnFeed {
    pub config: Config,
    pub profile: Profile,
    pub origin: moq_net::origin::Producer,
    pub test_sources: bool,
    /// True while the classroom's speakers play the lesson through an echo probe; the
    /// microphone then cancels their echo (and the feed restarts to take it up).
    pub echo: tokio::sync::watch::Receiver<bool>,
    /// The feed's own sender figures.
    pub stats: Arc<LessonStats>,
    /// The classroom's, where the camera's state is shown.
    pub classroom: Arc<LessonStats>,
}

pub async fn run(feed: ReturnFeed, shutdown: CancellationToken) {
    let ReturnFeed {
        config,
        profile,
        origin,
        test_sources,
        mut echo,
        stats,
        classroom,
    } = feed;
    let box_id = config.box_id();
    let c = &config.classroom;
    let settings = |slate: Option<String>| SenderSettings {
        broadcast: format!("{CLASSROOM_BROADCAST}/{box_id}/feed"),
        width: 640,
        height: 360,
        framerate: 15,
        video_kbps: c.return_kbps,
        max_kbps: c.return_max_kbps,
        audio_kbps: 24,
        keyframe_interval: 15,
        test_sources,
        slate,
        echo_cancel: false,
        title: Some(c.name.clone()),
        video_source: Some(c.camera.clone()).filter(|s| !s.is_empty()),
        audio_source: Some(c.microphone.clone()).filter(|s| !s.is_empty()),
        adaptive: true,
        pipelines_dir: config.media.pipelines_dir.clone(),
        allow_h265: false,
        // The teacher's feedback counts media frames, not the link's bytes: padding
        // would show nothing there.
        probe: false,
        simulcast: false,
        // The school's uplink is as slow as its downlink.
        slow_link_sound: true,
    };
    // The teacher's reports about this feed.
    let (reports_tx, mut reports) = mpsc::channel(64);
    let watcher = tokio::spawn(report::watch_reports_under(
        origin.clone(),
        report::FEEDBACK_PREFIX,
        reports_tx,
    ));
    // 0: camera and microphone; 1: slate and microphone; 2: slate and silence.
    let mut slate = 0u8;
    'outer: while !shutdown.is_cancelled() {
        let text = match slate {
            0 => None,
            1 => Some(SLATE.to_string()),
            _ => Some(format!("{SLATE} (no microphone either)")),
        };
        let mut s = settings(text);
        s.test_sources |= slate >= 2;
        s.echo_cancel = *echo.borrow_and_update() && !s.test_sources;
        if slate > 0 {
            // The slate runs on the built-in pipeline: an edited one may be the culprit.
            s.pipelines_dir = None;
        }
        let mut sender = match AdaptiveSender::start(&profile, &origin, s, stats.clone()).await {
            Ok(s) => s,
            Err(e) if slate < 2 => {
                tracing::warn!(error = %e, "camera unavailable: showing the teacher a slate");
                slate += 1;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "return feed cannot start");
                classroom.set_camera("failed: the teacher cannot see the classroom");
                break;
            }
        };
        classroom.set_camera(match slate {
            0 => "sending to the teacher",
            1 => "slate: camera disconnected",
            _ => "slate: no camera or microphone",
        });
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let retry_camera = tokio::time::sleep(CAMERA_RETRY);
        tokio::pin!(retry_camera);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break 'outer,
                Some(e) = sender.errors.recv() => {
                    if slate < 2 {
                        tracing::warn!(error = %e, "camera or microphone failed: showing the teacher a slate");
                        slate += 1;
                    } else {
                        tracing::error!(error = %e, "return feed failed even on its slate");
                        tokio::time::sleep(CAMERA_RETRY).await;
                    }
                    continue 'outer;
                }
                Some((id, r)) = reports.recv() => {
                    if id == box_id {
                        sender.on_report("teacher", &r);
                    }
                }
                _ = tick.tick() => sender.on_tick(),
                Ok(()) = echo.changed() => continue 'outer,
                _ = &mut retry_camera, if slate > 0 => {
                    // Is a camera back? Try it; a failure brings the slate back.
                    if test_sources || !crate::media::devices::cameras().is_empty() {
                        slate = 0;
                        continue 'outer;
                    }
                    retry_camera.as_mut().reset(tokio::time::Instant::now() + CAMERA_RETRY);
                }
            }
        }
    }
    watcher.abort();
}
