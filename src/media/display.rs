//! Classroom display: Frames -> decoders -> screen and speakers, measuring
//! glass-to-glass latency at the decoder's output.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::{MediaError, pipeline, probe::Profile};
use crate::{
    frame::{Frame, TrackKind, VideoCodec},
    stats::LessonStats,
};

/// Where pictures and sound go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// A real window (and the default audio device).
    Window,
    /// Decode fully, show nothing (servers, tests, CI).
    Headless,
}

impl Output {
    /// `auto`: a window when a display server is reachable.
    pub fn detect(mode: crate::config::DisplayMode) -> Self {
        use crate::config::DisplayMode::*;
        match mode {
            Window => Output::Window,
            Headless => Output::Headless,
            Auto if std::env::var_os("DISPLAY").is_some()
                || std::env::var_os("WAYLAND_DISPLAY").is_some() =>
            {
                Output::Window
            }
            Auto => Output::Headless,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DisplaySettings {
    pub output: Output,
    pub audio_rate: u32,
    pub audio_channels: u32,
    pub pipelines_dir: Option<PathBuf>,
    /// Tell an echo canceller what the speakers play (`webrtcechoprobe`).
    pub echo_probe: bool,
    /// The video codec, from the catalog.
    pub codec: VideoCodec,
}

/// A running decode pipeline. Dropping it stops the pipeline.
pub struct Display {
    pipeline: gst::Pipeline,
    video_in: gst_app::AppSrc,
    audio_in: gst_app::AppSrc,
    codec: VideoCodec,
    /// Capture time (µs) that maps to PTS zero; set by the first frame.
    epoch_us: Arc<AtomicU64>,
    /// Capture time of the last sound handed in (see [`SOUND_RESTART_US`]).
    last_sound_us: AtomicU64,
    _bus: tokio::task::JoinHandle<()>,
}

/// Sound resuming after a hole this long (an outage) starts afresh: the decoder's
/// loss concealment is for a lost packet or two, and over a hole of seconds it
/// made one block of invented sound as old as the hole.
const SOUND_RESTART_US: u64 = 200_000;

/// Headroom below the first frame's capture time, so a slightly older frame on the
/// other track still gets a positive PTS.
const EPOCH_MARGIN_US: u64 = 10_000_000;

impl Display {
    pub async fn start(
        profile: &Profile,
        settings: &DisplaySettings,
        stats: Arc<LessonStats>,
        errors: Option<tokio::sync::mpsc::UnboundedSender<MediaError>>,
    ) -> Result<Self, MediaError> {
        let (video_sink, audio_sink) = match settings.output {
            // The profile's screen sink: kmssink on a Pi's console, a desktop sink elsewhere.
            Output::Window => (
                format!("{} sync=false", profile.window_sink),
                "autoaudiosink sync=false",
            ),
            Output::Headless => (
                "fakesink name=video_sink sync=false".to_string(),
                "fakesink name=audio_sink sync=false",
            ),
        };
        let decoder = profile
            .decoder_for(settings.codec)
            .and_then(super::encoder::decoder_launch)
            .ok_or_else(|| {
                MediaError::NoProfile(format!(
                    "the lesson is in {} and this box has no decoder for it (gstreamer1.0-libav)",
                    settings.codec
                ))
            })?;
        let vars = BTreeMap::from([
            ("VIDEO_CAPS", settings.codec.caps().to_string()),
            (
                "VIDEO_DECODER",
                format!("{} ! {decoder}", settings.codec.parser()),
            ),
            ("VIDEO_SINK", video_sink),
            ("AUDIO_SINK", audio_sink.to_string()),
            ("AUDIO_RATE", settings.audio_rate.to_string()),
            ("AUDIO_CHANNELS", settings.audio_channels.to_string()),
            (
                "ECHO_PROBE",
                if settings.echo_probe {
                    format!(
                        "! audioconvert ! audio/x-raw,format=S16LE,rate=48000 ! webrtcechoprobe name={} ! audioconvert",
                        super::ECHO_PROBE_NAME
                    )
                } else {
                    String::new()
                },
            ),
        ]);
        let pipeline = pipeline::build(
            settings.pipelines_dir.as_deref(),
            &profile.name,
            "classroom",
            &vars,
        )?;
        pipeline::sinks_play_independently(&pipeline);
        let video_in: gst_app::AppSrc = pipeline::element(&pipeline, "video_in")?;
        let audio_in: gst_app::AppSrc = pipeline::element(&pipeline, "audio_in")?;
        let epoch_us = Arc::new(AtomicU64::new(0));
        for (name, kind) in [
            ("video_decoder", TrackKind::Video),
            ("audio_decoder", TrackKind::Audio),
        ] {
            let decoder: gst::Element = pipeline::element(&pipeline, name)?;
            let pad = decoder
                .static_pad("src")
                .ok_or(MediaError::MissingElement("decoder src pad"))?;
            let stats = stats.clone();
            let epoch = epoch_us.clone();
            pad.add_probe(
                gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
                move |_, info| {
                    if let Some(buffer) = info.buffer() {
                        let pts_us = buffer.pts().map(|p| p.useconds()).unwrap_or(0);
                        stats.record_decoded(kind, epoch.load(Ordering::Relaxed) + pts_us);
                    } else if let Some(gst::PadProbeData::Event(event)) = &info.data
                        && let gst::EventView::Caps(caps) = event.view()
                        && kind == TrackKind::Video
                        && let Some(s) = caps.caps().structure(0)
                        && let (Ok(w), Ok(h)) = (s.get::<i32>("width"), s.get::<i32>("height"))
                    {
                        // The picture size the teacher sends now (it follows the ladder).
                        stats.set_picture(w as u32, h as u32);
                    }
                    gst::PadProbeReturn::Ok
                },
            );
        }
        let bus = super::watch_bus(&pipeline, "classroom-display", errors);
        super::set_state(&pipeline, gst::State::Playing).await?;
        Ok(Self {
            pipeline,
            video_in,
            audio_in,
            codec: settings.codec,
            epoch_us,
            last_sound_us: AtomicU64::new(0),
            _bus: bus,
        })
    }

    /// The video codec this display decodes; a frame in another needs a new display.
    pub fn codec(&self) -> VideoCodec {
        self.codec
    }

    /// Hand one frame to its decoder. Never blocks.
    pub fn push(&self, frame: Frame) -> Result<(), MediaError> {
        let epoch = match self.epoch_us.load(Ordering::Relaxed) {
            0 => {
                let epoch = frame.capture_us.saturating_sub(EPOCH_MARGIN_US).max(1);
                self.epoch_us.store(epoch, Ordering::Relaxed);
                epoch
            }
            epoch => epoch,
        };
        let mut buffer = gst::Buffer::from_slice(frame.payload);
        {
            let buffer = buffer.get_mut().expect("fresh buffer is writable");
            buffer.set_pts(gst::ClockTime::from_useconds(
                frame.capture_us.saturating_sub(epoch),
            ));
            if !frame.keyframe {
                buffer.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
            if frame.track == TrackKind::Audio {
                let last = self.last_sound_us.swap(frame.capture_us, Ordering::Relaxed);
                if last != 0 && frame.capture_us.saturating_sub(last) > SOUND_RESTART_US {
                    buffer.set_flags(gst::BufferFlags::DISCONT | gst::BufferFlags::RESYNC);
                }
            }
        }
        let src = match frame.track {
            TrackKind::Video => &self.video_in,
            TrackKind::Audio => &self.audio_in,
        };
        src.push_buffer(buffer)
            .map(|_| ())
            .map_err(|e| MediaError::State(format!("decoder refused a frame: {e:?}")))
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
