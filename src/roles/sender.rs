//! An adaptive sender: capture (gst) -> Frames -> one broadcast (moq-lite), with the
//! receivers' reports driving the bitrate and the rung of the ladder.
//!
//! The teacher's lesson and the classroom's return feed are both this; they differ
//! in their broadcast name, their bitrate range and who reports back.

use std::{
    sync::{Arc, atomic::AtomicBool, atomic::Ordering},
    time::Duration,
};

use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    abr::{
        AbrSettings, Decision, ReceiverReport, ReceiverSet, codec::CodecChooser, ladder,
        usage::EncoderUse,
    },
    frame::VideoCodec,
    media::{
        MediaError,
        capture::{Capture, CaptureSettings},
        probe::Profile,
    },
    stats::{LessonStats, SenderState},
    transport::{
        TransportError,
        catalog::{AudioInfo, Catalog, VideoInfo},
        publish::{BroadcastPublisher, Prober},
    },
};

#[derive(Debug, Clone)]
pub struct SenderSettings {
    /// The broadcast path in the room (`teacher`, `classroom/<id>/feed`).
    pub broadcast: String,
    /// Picture when not adaptive.
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
    pub video_kbps: u32,
    pub max_kbps: u32,
    pub audio_kbps: u32,
    pub keyframe_interval: u32,
    pub test_sources: bool,
    /// A slate instead of the camera (see [`CaptureSettings::slate`]).
    pub slate: Option<String>,
    /// Cancel the speakers' echo (see [`CaptureSettings::echo_cancel`]).
    pub echo_cancel: bool,
    /// Who is sending, for the receivers' pages (the teacher's name).
    pub title: Option<String>,
    /// Chosen camera and microphone (None: whichever is plugged in).
    pub video_source: Option<String>,
    pub audio_source: Option<String>,
    pub adaptive: bool,
    pub pipelines_dir: Option<std::path::PathBuf>,
    /// May encode H.265 when every receiver asks for it (the lesson; not a return feed,
    /// which the teacher's machine decodes whatever it is).
    pub allow_h265: bool,
    /// Probe for a better link with padding (see [`crate::abr::probe`]): the lesson,
    /// whose classrooms report what their link delivers, padding included.
    pub probe: bool,
}

pub struct AdaptiveSender {
    capture: Capture,
    settings: SenderSettings,
    rung: Option<&'static ladder::Rung>,
    /// Picture size changes: down at once, up after a while (see [`ladder::RungChooser`]).
    rungs: ladder::RungChooser,
    applied: u32,
    video_switch: Arc<AtomicBool>,
    receivers: ReceiverSet,
    /// Whether the encoder uses its target (no growth while it does not).
    usage: EncoderUse,
    codecs: CodecChooser,
    profile: Profile,
    started: tokio::time::Instant,
    /// Padding for probes (None: this sender does not probe).
    prober: Option<Prober>,
    stats: Arc<LessonStats>,
    /// The publisher's task (ends with an error if the broadcast breaks).
    pub publish_task: JoinHandle<Result<(), TransportError>>,
    /// Capture errors (a camera unplugged, a pipeline failing).
    pub errors: mpsc::UnboundedReceiver<MediaError>,
}

impl AdaptiveSender {
    pub async fn start(
        profile: &Profile,
        origin: &moq_net::origin::Producer,
        settings: SenderSettings,
        stats: Arc<LessonStats>,
    ) -> anyhow::Result<Self> {
        let s = &settings;
        // Adaptive: the ladder decides the picture; fixed: the config does.
        let rung = s
            .adaptive
            .then(|| ladder::rung_for(s.video_kbps, None))
            .flatten();
        let (width, height, framerate) = match rung {
            Some(r) => (r.width, r.height, r.framerate),
            None => (s.width, s.height, s.framerate),
        };
        let catalog = Catalog {
            version: Catalog::VERSION,
            video: Some(VideoInfo {
                codec: "h264".into(),
                width,
                height,
                framerate,
            }),
            audio: Some(AudioInfo::default()),
            teacher: s.title.clone(),
        };
        let publisher = BroadcastPublisher::new(origin, &s.broadcast, &catalog)?;
        let video_switch = publisher.video_switch();
        let prober = (s.adaptive && s.probe).then(|| publisher.prober());
        let (frames_tx, frames_rx) = mpsc::channel(256);
        let (errors_tx, errors) = mpsc::unbounded_channel();
        let capture = Capture::start(
            profile,
            &CaptureSettings {
                width,
                height,
                framerate,
                video_kbps: s.video_kbps,
                audio_kbps: s.audio_kbps,
                // The interval is counted at the configured frame rate; the first
                // rung's may differ (360p20 from 30 fps: 30 frames were 1.5 s).
                keyframe_interval: (u64::from(s.keyframe_interval) * u64::from(framerate)
                    / u64::from(s.framerate.max(1)))
                .max(1) as u32,
                test_sources: s.test_sources,
                slate: s.slate.clone(),
                echo_cancel: s.echo_cancel,
                video_source: s.video_source.clone(),
                audio_source: s.audio_source.clone(),
                pipelines_dir: s.pipelines_dir.clone(),
            },
            frames_tx,
            Some(errors_tx),
        )
        .await?;
        stats.set_sender(SenderState {
            target_kbps: s.video_kbps,
            rung: rung.map(|r| r.name.to_string()),
            reason: None,
        });
        let publish_task = tokio::spawn({
            let stats = stats.clone();
            async move { publisher.run(frames_rx, &stats).await }
        });
        let receivers = ReceiverSet::new(AbrSettings {
            start_kbps: s.video_kbps,
            max_kbps: s.max_kbps,
            audio_wire_kbps: crate::abr::audio_wire_kbps(s.audio_kbps),
            ..Default::default()
        });
        let can_h265 = s.allow_h265 && profile.encoder_for(VideoCodec::H265).is_some();
        Ok(Self {
            capture,
            codecs: CodecChooser::new(can_h265),
            profile: profile.clone(),
            applied: s.video_kbps,
            settings,
            rung,
            rungs: ladder::RungChooser::default(),
            video_switch,
            receivers,
            usage: EncoderUse::default(),
            started: tokio::time::Instant::now(),
            prober,
            stats,
            publish_task,
            errors,
        })
    }

    /// A receiver's report: feed the controller, then follow its target.
    pub fn on_report(&mut self, receiver: &str, report: &ReceiverReport) {
        if !self.receivers.knows(receiver) {
            tracing::info!(%receiver, broadcast = %self.settings.broadcast, "receiver joined");
            self.capture.force_keyframe();
        }
        self.codecs
            .on_report(self.started.elapsed(), receiver, &report.codecs);
        self.observe_encoder();
        let decision = self
            .receivers
            .on_report(self.started.elapsed(), receiver, report);
        tracing::trace!(
            %receiver,
            at_ms = self.started.elapsed().as_millis() as u64,
            received_kbps = report.received_kbps as u64,
            queue_delay_ms = report.queue_delay_ms as u64,
            skipped = report.groups_skipped,
            frames = report.video_frames,
            encoder_share = ?self.usage.share().map(|s| (s * 100.0) as u32),
            ?decision,
            "receiver report"
        );
        let reason = match decision {
            Decision::Decrease { to_kbps, reason } => {
                tracing::debug!(%receiver, to_kbps, %reason, "bitrate down");
                Some(reason)
            }
            _ => None,
        };
        self.follow(reason);
    }

    pub fn on_tick(&mut self) {
        self.receivers.on_tick(self.started.elapsed());
        self.observe_encoder();
        if let Some(codec) = self.codecs.on_tick(self.started.elapsed())
            && let Some(encoder) = self.profile.encoder_for(codec)
        {
            tracing::info!(broadcast = %self.settings.broadcast, %codec, "every classroom decodes this best: switching");
            self.capture.set_encoder(encoder);
            self.usage.reset();
        }
        self.follow(None);
    }

    /// Note what the encoder produced against what it was given.
    fn observe_encoder(&mut self) {
        if self.rung.is_none() {
            // Audio-only: no picture to measure.
            self.usage.reset();
        } else {
            self.usage.record(
                self.started.elapsed(),
                self.stats.totals(crate::frame::TrackKind::Video).sent_bytes,
                self.applied,
            );
        }
        self.receivers
            .set_encoder(self.usage.limited(), self.usage.produced_kbps());
    }

    fn follow(&mut self, reason: Option<String>) {
        if !self.settings.adaptive {
            return;
        }
        if let Some(prober) = &self.prober {
            let kbps = self.receivers.padding_kbps(self.started.elapsed());
            prober.set(kbps.round() as u32);
        }
        let Some(target) = self.receivers.target_kbps() else {
            return;
        };
        // Evidence for a larger picture: pictures arriving at its rate. But an
        // encoder that cannot fill its target (a small, simple picture) never makes
        // that rate: all it makes getting through is evidence enough.
        // (`None` to the chooser: see [`ladder::RungChooser::choose`].)
        let arriving = self.receivers.arriving_kbps().filter(|&a| {
            let made = self.usage.share().map(|s| s * f64::from(self.applied));
            !(self.usage.limited() && made.is_some_and(|m| f64::from(a) >= 0.9 * m))
        });
        let next = self
            .rungs
            .choose(self.started.elapsed(), target, arriving, self.rung);
        if target == self.applied && next == self.rung {
            return;
        }
        self.applied = target;
        self.observe_encoder();
        if next != self.rung {
            match next {
                Some(r) => {
                    tracing::info!(broadcast = %self.settings.broadcast, rung = r.name, kbps = target, "picture changes");
                    self.capture.set_picture(r.width, r.height, r.framerate);
                    self.receivers
                        .expect_burst(self.started.elapsed(), Duration::from_secs(1));
                }
                None => {
                    tracing::info!(broadcast = %self.settings.broadcast, kbps = target, "link too weak for video: audio only")
                }
            }
            if self.rung.is_none() && next.is_some() {
                // Back from audio-only: start the picture now, not at the next GOP.
                self.capture.force_keyframe();
            }
            self.video_switch.store(next.is_some(), Ordering::Relaxed);
            self.rung = next;
        }
        self.capture
            .set_video_bitrate(target.max(ladder::min_kbps()));
        self.stats.set_sender(SenderState {
            target_kbps: target,
            rung: self.rung.map(|r| r.name.to_string()),
            reason: reason.or_else(|| self.stats.sender().reason),
        });
    }
}

impl Drop for AdaptiveSender {
    fn drop(&mut self) {
        self.publish_task.abort();
    }
}
