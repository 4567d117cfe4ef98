//! Teacher: capture (gst) -> encode (gst) -> Frame -> publisher (moq-lite, QUIC) -> relay,
//! and receiver reports from the classrooms -> ABR -> encoder bitrate and picture size
//! ([`AdaptiveSender`]). The other way: each classroom's return feed
//! (`classroom/<box>/feed`) is decoded and shown, and reported on
//! (`teacher/feedback/<box>`) so the box adapts it to its uplink.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::sender::{AdaptiveSender, SenderSettings};
use crate::{
    config::Config,
    frame::TrackKind,
    media::{
        self,
        display::{Display, DisplaySettings, Output},
        probe::Profile,
    },
    stats::{LessonStats, ReportState},
    transport::{CLASSROOM_BROADCAST, TEACHER_BROADCAST, link::Link, report, subscribe},
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
    // capture -> frames -> publisher (into the local origin) -> link (to the relay)
    let origin = super::spawn_origin();
    let mut sender = AdaptiveSender::start(
        &profile,
        &origin,
        SenderSettings {
            broadcast: TEACHER_BROADCAST.into(),
            width: t.width,
            height: t.height,
            framerate: t.framerate,
            video_kbps: t.video_kbps,
            max_kbps: crate::abr::ladder::max_kbps(),
            audio_kbps: t.audio_kbps,
            keyframe_interval: t.keyframe_interval,
            test_sources: t.test_sources,
            slate: None,
            echo_cancel: false,
            title: Some(t.name.clone()).filter(|n| !n.is_empty()),
            video_source: None,
            audio_source: None,
            adaptive: t.adaptive,
            pipelines_dir: config.media.pipelines_dir.clone(),
            allow_h265: config.media.h265 != crate::config::H265Mode::Off,
            probe: true,
            simulcast: config.teacher.simulcast,
            slow_link_sound: config.teacher.slow_link_sound,
        },
        stats.clone(),
    )
    .await?;
    let link_task = tokio::spawn(link.run(
        origin.clone(),
        stats.clone(),
        stop_when_refused,
        shutdown.clone(),
    ));
    // classrooms' reports -> controller
    let (reports_tx, mut reports_rx) = mpsc::channel(64);
    let reports_task = tokio::spawn(report::watch_reports(origin.clone(), reports_tx));
    // classrooms' return feeds -> screen, and reports back about them
    let feeds_task = tokio::spawn(watch_feeds(
        origin.clone(),
        profile.clone(),
        Output::detect(t.feed_display),
        config.latency_budget(),
        config.media.pipelines_dir.clone(),
        stats.clone(),
        shutdown.clone(),
    ));
    let mut tick = tokio::time::interval(Duration::from_millis(250));

    let result: anyhow::Result<()> = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            r = &mut sender.publish_task => break r.map_err(anyhow::Error::from).and_then(|r| r.map_err(Into::into)),
            Some(e) = sender.errors.recv() => break Err(anyhow::Error::from(e).context("capture failed")),
            Some((box_id, report)) = reports_rx.recv() => sender.on_report(&box_id, &report),
            _ = tick.tick() => sender.on_tick(),
        }
    };
    drop(sender);
    shutdown.cancel();
    reports_task.abort();
    let _ = feeds_task.await;
    let link_result = link_task.await?;
    result?;
    link_result?;
    Ok(())
}

/// Show every classroom's return feed and report on it, until `shutdown`.
async fn watch_feeds(
    origin: moq_net::origin::Producer,
    profile: Profile,
    output: Output,
    budget: Duration,
    pipelines_dir: Option<std::path::PathBuf>,
    stats: Arc<LessonStats>,
    shutdown: CancellationToken,
) {
    let consumer = origin.consume();
    let mut announced = consumer.announced();
    let mut feeds: HashMap<String, JoinHandle<()>> = HashMap::new();
    let prefix = format!("{CLASSROOM_BROADCAST}/");
    loop {
        let update = tokio::select! {
            _ = shutdown.cancelled() => break,
            update = announced.next() => match update {
                Some(u) => u,
                None => break,
            },
        };
        let path = update.prefix.as_str().to_string();
        let Some(box_id) = path
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix("/feed"))
            .map(str::to_string)
        else {
            continue;
        };
        if let Some(old) = feeds.remove(&box_id) {
            old.abort();
        }
        if !update.kind.is_active() {
            tracing::info!(%box_id, "classroom's return feed ended");
            continue;
        }
        let Ok(broadcast) = consumer.request_broadcast(path.as_str()).await else {
            continue;
        };
        tracing::info!(%box_id, "classroom's return feed started");
        let feed = FeedView {
            origin: origin.clone(),
            profile: profile.clone(),
            output,
            budget,
            pipelines_dir: pipelines_dir.clone(),
            stats: stats.feed(&box_id),
            box_id: box_id.clone(),
        };
        feeds.insert(box_id, tokio::spawn(feed.run(broadcast)));
    }
    for (_, f) in feeds {
        f.abort();
    }
}

/// One classroom's return feed on the teacher's side.
struct FeedView {
    origin: moq_net::origin::Producer,
    profile: Profile,
    output: Output,
    budget: Duration,
    pipelines_dir: Option<std::path::PathBuf>,
    stats: Arc<LessonStats>,
    box_id: String,
}

impl FeedView {
    async fn run(self, broadcast: moq_net::broadcast::Consumer) {
        if let Err(e) = self.play(broadcast).await {
            tracing::warn!(box_id = %self.box_id, error = %e, "return feed stopped");
        }
    }

    async fn play(&self, broadcast: moq_net::broadcast::Consumer) -> anyhow::Result<()> {
        let catalog = subscribe::read_catalog(&broadcast).await?;
        let audio = catalog.audio.clone().unwrap_or_default();
        let display = Display::start(
            &self.profile,
            &DisplaySettings {
                output: self.output,
                audio_rate: audio.rate,
                audio_channels: audio.channels,
                pipelines_dir: self.pipelines_dir.clone(),
                // NOTE: the teacher wears a headset, or their own call app cancels echo.
                echo_probe: false,
                codec: catalog.video_codec()?,
            },
            self.stats.clone(),
            None,
        )
        .await?;
        // Reports about this feed, for the box's controller.
        let mut reports =
            report::ReportPublisher::at(&self.origin, &report::feedback_name(&self.box_id))?;
        let stats = self.stats.clone();
        let reporter = tokio::spawn(async move {
            let mut state = ReportState::default();
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                if let Err(e) = reports.send(&stats.receiver_report(&mut state)) {
                    tracing::debug!(error = %e, "feedback report not sent");
                }
            }
        });
        let (tx, mut rx) = mpsc::channel(64);
        let video = subscribe::forward_track(
            &broadcast,
            TrackKind::Video,
            self.budget,
            tx.clone(),
            &self.stats,
        );
        let audio =
            subscribe::forward_track(&broadcast, TrackKind::Audio, self.budget, tx, &self.stats);
        let feed = async {
            while let Some(frame) = rx.recv().await {
                if let Err(e) = display.push(frame) {
                    tracing::debug!(error = %e, "return feed frame refused");
                }
            }
        };
        let _ = tokio::join!(video, audio, feed);
        reporter.abort();
        Ok(())
    }
}
