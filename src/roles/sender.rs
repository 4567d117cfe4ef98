//! An adaptive sender: capture (gst) -> Frames -> one broadcast (moq-lite), with the
//! receivers' reports driving the bitrate and the rung of the ladder.
//!
//! The teacher's lesson and the classroom's return feed are both this; they differ
//! in their broadcast name, their bitrate range and who reports back.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    abr::{
        AbrSettings, Decision, Layer, ReceiverReport, ReceiverSet, codec::CodecChooser, ladder,
        sound::SoundPacing, usage::EncoderUse,
    },
    frame::{Frame, VideoCodec},
    media::{
        MediaError,
        capture::{Capture, CaptureSettings},
        layer::{LayerBranch, Picture},
        probe::Profile,
    },
    stats::{LessonStats, SenderState},
    transport::{
        TransportError,
        catalog::{AudioInfo, Catalog, VideoInfo},
        publish::{BroadcastPublisher, Layers, LayersWriter, Prober},
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
    /// A second encoding for receivers on much faster links (see
    /// [`crate::abr::Layer`]): the lesson, with several classrooms.
    pub simulcast: bool,
    /// Repack the sound on a slow link (see [`crate::abr::sound`]).
    pub slow_link_sound: bool,
}

/// One encoding's state: its rung of the ladder, and what its encoder does.
struct Encoding {
    rung: Option<&'static ladder::Rung>,
    /// Picture size changes: down at once, up after a while (see [`ladder::RungChooser`]).
    rungs: ladder::RungChooser,
    applied: u32,
    /// Whether the encoder uses its target (no growth while it does not).
    usage: EncoderUse,
}

impl Encoding {
    fn new(rung: Option<&'static ladder::Rung>, kbps: u32) -> Self {
        Self {
            rung,
            rungs: ladder::RungChooser::default(),
            applied: kbps,
            usage: EncoderUse::default(),
        }
    }

    /// The rung for `target` (see [`ladder::RungChooser::choose`]). Evidence for a
    /// larger picture: pictures `arriving` at its rate. But an encoder that cannot
    /// fill its target (a small, simple picture) never makes that rate: all it makes
    /// getting through is evidence enough (`None` to the chooser).
    fn next_rung(
        &mut self,
        now: Duration,
        target: u32,
        arriving: Option<u32>,
    ) -> Option<&'static ladder::Rung> {
        let arriving = arriving.filter(|&a| {
            let made = self.usage.share().map(|s| s * f64::from(self.applied));
            !(self.usage.limited() && made.is_some_and(|m| f64::from(a) >= 0.9 * m))
        });
        self.rungs.choose(now, target, arriving, self.rung)
    }

    /// Note what the encoder produced (`sent_bytes` so far) against its target, and
    /// tell the boxes on `layer`.
    fn observe(
        &mut self,
        now: Duration,
        sent_bytes: u64,
        layer: Layer,
        receivers: &mut ReceiverSet,
    ) {
        if self.rung.is_none() {
            // Audio-only: no picture to measure.
            self.usage.reset();
        } else {
            self.usage.record(now, sent_bytes, self.applied);
        }
        receivers.set_encoder(layer, self.usage.limited(), self.usage.produced_kbps());
    }
}

/// The second encoding while some receivers are on it.
struct FastEncoding {
    encoding: Encoding,
    branch: LayerBranch,
}

pub struct AdaptiveSender {
    capture: Capture,
    settings: SenderSettings,
    main: Encoding,
    fast: Option<FastEncoding>,
    /// Where the second encoding's pictures go (to the publisher), and how many
    /// bytes of them it has sent.
    fast_frames: mpsc::Sender<Frame>,
    fast_bytes: Arc<AtomicU64>,
    /// Tells the receivers which of them are on the second encoding.
    layers: LayersWriter,
    video_switch: Arc<AtomicBool>,
    receivers: ReceiverSet,
    /// The sound's packing, for the slowest classroom's link.
    sound: SoundPacing,
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
        let layers = publisher.layers();
        let fast_bytes = publisher.fast_bytes();
        let (frames_tx, frames_rx) = mpsc::channel(256);
        let (fast_frames, fast_rx) = mpsc::channel(256);
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
            async move { publisher.run(frames_rx, fast_rx, &stats).await }
        });
        let sound = SoundPacing::new(s.audio_kbps, s.slow_link_sound);
        let mut receivers = ReceiverSet::new(AbrSettings {
            start_kbps: s.video_kbps,
            max_kbps: s.max_kbps,
            audio_wire_kbps: sound.sound().wire_kbps(),
            ..Default::default()
        });
        receivers.simulcast = s.adaptive && s.simulcast;
        let can_h265 = s.allow_h265 && profile.encoder_for(VideoCodec::H265).is_some();
        Ok(Self {
            capture,
            codecs: CodecChooser::new(can_h265),
            profile: profile.clone(),
            main: Encoding::new(rung, s.video_kbps),
            settings,
            fast: None,
            fast_frames,
            fast_bytes,
            layers,
            video_switch,
            receivers,
            sound,
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
            capacity_kbps = report.capacity_kbps.map(|k| k as u64),
            skipped = report.groups_skipped,
            frames = report.video_frames,
            encoder_share = ?self.main.usage.share().map(|s| (s * 100.0) as u32),
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
            self.main.usage.reset();
            // The second encoding starts again in the new codec, if still wanted
            // (the new codec's first picture is a keyframe for all).
            if self.fast.is_some() {
                self.stop_fast();
                self.publish_layers();
            }
        }
        self.follow(None);
    }

    /// Note what the encoders produced against what they were given.
    fn observe_encoder(&mut self) {
        let now = self.started.elapsed();
        let sent = self.stats.totals(crate::frame::TrackKind::Video).sent_bytes;
        self.main
            .observe(now, sent, Layer::Main, &mut self.receivers);
        if let Some(fast) = &mut self.fast {
            let sent = self.fast_bytes.load(Ordering::Relaxed);
            fast.encoding
                .observe(now, sent, Layer::Fast, &mut self.receivers);
        }
    }

    fn follow(&mut self, reason: Option<String>) {
        if !self.settings.adaptive {
            return;
        }
        if let Some(prober) = &self.prober {
            let kbps = self.receivers.padding_kbps(self.started.elapsed());
            prober.set(kbps.round() as u32);
        }
        let moved = self.receivers.regroup(self.started.elapsed());
        // (The last box on the second encoding may also have gone quiet for good.)
        let orphaned = self.fast.is_some() && self.receivers.target_kbps(Layer::Fast).is_none();
        if !moved.is_empty() || orphaned {
            self.regrouped(&moved);
        }
        self.follow_main(reason);
        self.follow_fast();
    }

    /// Receivers moved between the encodings: start or stop the second one, give
    /// each receiver that moved a keyframe on its new track, and tell them all.
    fn regrouped(&mut self, moved: &[String]) {
        let fast_target = self.receivers.target_kbps(Layer::Fast);
        match (fast_target, &self.fast) {
            (None, Some(_)) => self.stop_fast(),
            (Some(target), None) => {
                let rung = ladder::rung_for(target, None).unwrap_or(ladder::lowest());
                self.ask_camera_for(Some(rung));
                let picture = Picture {
                    width: rung.width,
                    height: rung.height,
                    framerate: rung.framerate,
                    kbps: target,
                };
                match self.capture.add_layer(picture, self.fast_frames.clone()) {
                    Ok(branch) => {
                        tracing::info!(broadcast = %self.settings.broadcast, rung = rung.name, kbps = target, "second encoding starts");
                        self.fast = Some(FastEncoding {
                            encoding: Encoding::new(Some(rung), target),
                            branch,
                        });
                    }
                    Err(e) => {
                        // (A pipeline of the user's without `video_tee`, say.)
                        tracing::warn!(error = %e, "no second encoding: the slowest classroom sets the picture for all");
                        self.receivers.simulcast = false;
                        self.stop_fast();
                    }
                }
            }
            _ => {}
        }
        for name in moved {
            match (self.receivers.layer_of(name), &self.fast) {
                (Some(Layer::Fast), Some(fast)) => fast.branch.force_keyframe(),
                _ => self.capture.force_keyframe(),
            }
        }
        self.publish_layers();
    }

    /// No second encoding: every receiver on the main one, the camera as it asks.
    fn stop_fast(&mut self) {
        if self.fast.take().is_some() {
            tracing::info!(broadcast = %self.settings.broadcast, "second encoding stops");
        }
        self.receivers.regroup_all_main();
        self.ask_camera_for(None);
    }

    /// Tell the receivers which of them are on the second encoding.
    fn publish_layers(&mut self) {
        let layers = Layers {
            fast: self.receivers.boxes_on(Layer::Fast),
        };
        if let Err(e) = self.layers.set(layers) {
            tracing::warn!(error = %e, "could not tell the classrooms their encodings");
        }
    }

    /// While the second encoding runs, the camera delivers at least the larger of the
    /// two pictures (see [`Capture::set_source_floor`]); `fast` is its rung.
    fn ask_camera_for(&self, fast: Option<&'static ladder::Rung>) {
        self.capture
            .set_source_floor(camera_floor(self.main.rung, fast));
    }

    fn follow_main(&mut self, reason: Option<String>) {
        let now = self.started.elapsed();
        let Some(target) = self.receivers.target_kbps(Layer::Main) else {
            return;
        };
        if let Some(sound) = self.sound.follow(target)
            && self.capture.set_sound(sound)
        {
            tracing::info!(broadcast = %self.settings.broadcast, kbps = sound.kbps, packet_ms = sound.frame_ms, "sound repacked for the slowest link");
            self.receivers.set_audio_wire_kbps(sound.wire_kbps());
        }
        let arriving = self.receivers.arriving_kbps(Layer::Main);
        let next = self.main.next_rung(now, target, arriving);
        if target == self.main.applied && next == self.main.rung {
            return;
        }
        self.main.applied = target;
        self.observe_encoder();
        if next != self.main.rung {
            match next {
                Some(r) => {
                    tracing::info!(broadcast = %self.settings.broadcast, rung = r.name, kbps = target, "picture changes");
                    self.capture.set_picture(r.width, r.height, r.framerate);
                    self.receivers
                        .expect_burst(Layer::Main, now, Duration::from_secs(1));
                }
                None => {
                    tracing::info!(broadcast = %self.settings.broadcast, kbps = target, "link too weak for video: audio only")
                }
            }
            if self.main.rung.is_none() && next.is_some() {
                // Back from audio-only: start the picture now, not at the next GOP.
                self.capture.force_keyframe();
            }
            self.video_switch.store(next.is_some(), Ordering::Relaxed);
            self.main.rung = next;
            if let Some(fast) = &self.fast {
                self.ask_camera_for(fast.encoding.rung);
            }
        }
        self.capture
            .set_video_bitrate(target.max(ladder::min_kbps()));
        self.stats.set_sender(SenderState {
            target_kbps: target,
            rung: self.main.rung.map(|r| r.name.to_string()),
            reason: reason.or_else(|| self.stats.sender().reason),
        });
    }

    /// The second encoding follows the slowest receiver on it; it never goes
    /// audio-only (its receivers move back to the main one long before).
    fn follow_fast(&mut self) {
        let now = self.started.elapsed();
        let (Some(fast), Some(target)) = (&mut self.fast, self.receivers.target_kbps(Layer::Fast))
        else {
            return;
        };
        let arriving = self.receivers.arriving_kbps(Layer::Fast);
        let next = fast
            .encoding
            .next_rung(now, target, arriving)
            .unwrap_or(ladder::lowest());
        let changes = fast.encoding.rung != Some(next);
        if target == fast.encoding.applied && !changes {
            return;
        }
        fast.encoding.applied = target;
        if changes {
            tracing::info!(broadcast = %self.settings.broadcast, rung = next.name, kbps = target, "second encoding's picture changes");
            fast.branch
                .set_picture(next.width, next.height, next.framerate);
            fast.encoding.rung = Some(next);
            self.capture
                .set_source_floor(camera_floor(self.main.rung, Some(next)));
            self.receivers
                .expect_burst(Layer::Fast, now, Duration::from_secs(1));
        }
        fast.branch.set_bitrate(target.max(ladder::min_kbps()));
        self.observe_encoder();
    }
}

/// The least picture the camera must deliver for both encodings (None: no second one).
fn camera_floor(
    main: Option<&'static ladder::Rung>,
    fast: Option<&'static ladder::Rung>,
) -> Option<(u32, u32, u32)> {
    let fast = fast?;
    let main = main.unwrap_or(ladder::lowest());
    Some((
        fast.width.max(main.width),
        fast.height.max(main.height),
        fast.framerate.max(main.framerate),
    ))
}

impl Drop for AdaptiveSender {
    fn drop(&mut self) {
        self.publish_task.abort();
    }
}
