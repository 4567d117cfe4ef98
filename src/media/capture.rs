//! Teacher capture: camera + microphone (or test sources) -> encoders -> Frames.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;

use std::sync::Mutex;

use super::{
    MediaError,
    encoder::EncoderQuirks,
    layer::{LayerBranch, Picture},
    pipeline,
    probe::Profile,
};
use crate::frame::{Frame, TrackKind, VideoCodec, unix_micros};

pub(crate) use super::keyframe_clock::KeyframeClock;

#[derive(Debug, Clone)]
pub struct CaptureSettings {
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
    pub video_kbps: u32,
    pub audio_kbps: u32,
    pub keyframe_interval: u32,
    /// Moving test picture and a tone instead of a camera and microphone.
    pub test_sources: bool,
    /// Show this text on a plain picture instead of the camera (a camera that went
    /// away); the microphone stays.
    pub slate: Option<String>,
    /// The camera and microphone source elements (None: whichever is plugged in).
    pub video_source: Option<String>,
    pub audio_source: Option<String>,
    /// Cancel the speakers' echo from the microphone (`webrtcdsp`, paired with the
    /// display's `webrtcechoprobe`, which must be running).
    pub echo_cancel: bool,
    pub pipelines_dir: Option<PathBuf>,
}

/// A running capture pipeline. Dropping it stops the pipeline (state Null).
pub struct Capture {
    pipeline: gst::Pipeline,
    video_out: gst_app::AppSink,
    video: Arc<Mutex<VideoEncoder>>,
    caps_filter: gst::Element,
    /// What the camera is asked for before the tee (see [`Capture::set_source_floor`]).
    source_caps: Option<gst::Element>,
    /// The keyframe interval in seconds, kept when the frame rate changes.
    keyframe_seconds: f64,
    _bus: tokio::task::JoinHandle<()>,
}

/// The video encoder as it runs now; replaced whole when the codec changes.
struct VideoEncoder {
    quirks: &'static EncoderQuirks,
    element: gst::Element,
    /// From the encoder to the last element before `video_out` (encoder, parser, caps).
    chain: Vec<gst::Element>,
    /// The pad that feeds the encoder (the queue's).
    upstream: gst::Pad,
    kbps: u32,
    gop: u32,
    /// Swaps so far (names the next chain's bin).
    swaps: u32,
}

impl Capture {
    /// Build and start capture; frames go to `out`. Errors on the bus go to `errors`.
    pub async fn start(
        profile: &Profile,
        settings: &CaptureSettings,
        out: mpsc::Sender<Frame>,
        errors: Option<mpsc::UnboundedSender<MediaError>>,
    ) -> Result<Self, MediaError> {
        let (video_source, audio_source) = if let Some(text) = &settings.slate {
            let text: String = text.chars().filter(|c| !matches!(c, '"' | '\\')).collect();
            let audio = if settings.test_sources {
                "audiotestsrc is-live=true wave=silence".to_string()
            } else {
                settings
                    .audio_source
                    .clone()
                    .unwrap_or_else(|| "autoaudiosrc".into())
            };
            // Without the text plugin (Debian's gstreamer1.0-x) the teacher still gets a
            // picture rather than no feed at all: a plain test card says "no camera" well
            // enough.
            let video = if gst::ElementFactory::find("textoverlay").is_some() {
                format!(
                    "videotestsrc is-live=true pattern=black ! textoverlay text=\"{text}\" valignment=center halignment=center font-desc=\"Sans 28\""
                )
            } else {
                tracing::warn!(
                    "no textoverlay element (install gstreamer1.0-x): the slate has no text"
                );
                "videotestsrc is-live=true pattern=bar".to_string()
            };
            (video, audio)
        } else if settings.test_sources {
            (
                "videotestsrc is-live=true pattern=smpte horizontal-speed=2".to_string(),
                "audiotestsrc is-live=true wave=sine freq=440 volume=0.3".to_string(),
            )
        } else {
            (
                settings
                    .video_source
                    .clone()
                    .unwrap_or_else(|| "autovideosrc".into()),
                settings
                    .audio_source
                    .clone()
                    .unwrap_or_else(|| "autoaudiosrc".into()),
            )
        };
        let vars = BTreeMap::from([
            ("VIDEO_SOURCE", video_source),
            ("AUDIO_SOURCE", audio_source),
            ("WIDTH", settings.width.to_string()),
            ("HEIGHT", settings.height.to_string()),
            ("FRAMERATE", settings.framerate.to_string()),
            (
                "H264_ENCODER",
                profile
                    .encoder()
                    .launch(settings.video_kbps, settings.keyframe_interval),
            ),
            ("AUDIO_BPS", (settings.audio_kbps * 1000).to_string()),
            (
                "ECHO_CANCEL",
                if settings.echo_cancel {
                    format!(
                        "! audioconvert ! webrtcdsp probe={} echo-cancel=true noise-suppression=true ! audioconvert ! audio/x-raw,rate=48000,channels=1",
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
            "teacher",
            &vars,
        )?;
        // Sound goes out before the camera and encoder give their first picture.
        pipeline::sinks_play_independently(&pipeline);
        let encoder: gst::Element = pipeline::element(&pipeline, "video_encoder")?;
        let video_out: gst_app::AppSink = pipeline::element(&pipeline, "video_out")?;
        let video = VideoEncoder::find(
            profile.encoder(),
            encoder,
            video_out.upcast_ref(),
            settings.video_kbps,
            settings.keyframe_interval,
        )?;
        let caps_filter: gst::Element = pipeline::element(&pipeline, "video_caps")?;
        let source_caps = pipeline.by_name("video_source_caps");
        let keyframe_seconds =
            f64::from(settings.keyframe_interval) / f64::from(settings.framerate.max(1));
        for (name, kind) in [
            ("video_out", TrackKind::Video),
            ("audio_out", TrackKind::Audio),
        ] {
            let sink: gst_app::AppSink = pipeline::element(&pipeline, name)?;
            // Video: a keyframe every `keyframe_seconds` of pictures, whatever the frame
            // rate (see [`KeyframeClock`]).
            let clock = (kind == TrackKind::Video).then(|| KeyframeClock::new(keyframe_seconds));
            sink.set_callbacks(frame_callbacks(kind, out.clone(), clock));
        }
        let bus = super::watch_bus(&pipeline, "teacher-capture", errors);
        super::set_state(&pipeline, gst::State::Playing).await?;
        Ok(Self {
            pipeline,
            video_out,
            video: Arc::new(Mutex::new(video)),
            caps_filter,
            source_caps,
            keyframe_seconds,
            _bus: bus,
        })
    }

    /// Change the video bitrate while running (through the quirk table).
    pub fn set_video_bitrate(&self, kbps: u32) {
        let mut video = self.video.lock().expect("encoder lock");
        video.kbps = kbps;
        video.quirks.set_bitrate(&video.element, kbps);
    }

    /// Change the sound's bitrate and packet time while running (the pipelines'
    /// `audio_encoder`, opusenc, takes both between two packets). A pipeline whose
    /// sound encoder is not an opusenc named so keeps its own, with a warning (false).
    pub fn set_sound(&self, sound: crate::abr::sound::Sound) -> bool {
        let encoder = self.pipeline.by_name("audio_encoder").filter(|e| {
            e.find_property("frame-size").is_some() && e.find_property("bitrate").is_some()
        });
        let Some(encoder) = encoder else {
            tracing::warn!(
                "the pipeline has no opusenc named audio_encoder: its sound stays as it is"
            );
            return false;
        };
        encoder.set_property_from_str("frame-size", &sound.frame_ms.to_string());
        encoder.set_property("bitrate", (sound.kbps * 1000) as i32);
        true
    }

    /// The codec being encoded now (or about to be, after [`Capture::set_encoder`]).
    pub fn codec(&self) -> VideoCodec {
        self.video.lock().expect("encoder lock").quirks.codec
    }

    /// Replace the video encoder (another codec) while the pipeline runs: between two
    /// pictures the queue's output is unlinked from the old encoder, parser and caps,
    /// and linked to new ones, which open at the same bitrate and keyframe interval
    /// and start with a keyframe. Audio, in its own branch, never stops. Frames tell
    /// their codec by their caps, so the first one of the new codec is the keyframe.
    pub fn set_encoder(&self, quirks: &'static EncoderQuirks) {
        let (upstream, codec) = {
            let video = self.video.lock().expect("encoder lock");
            if video.quirks.element == quirks.element {
                return;
            }
            (video.upstream.clone(), video.quirks.codec)
        };
        tracing::info!(from = %codec, to = %quirks.codec, encoder = quirks.element, "video codec changes");
        let (video, pipeline, sink) = (
            self.video.clone(),
            self.pipeline.clone(),
            self.video_out.clone().upcast::<gst::Element>(),
        );
        // IDLE: runs now if no picture is passing, else right after the one that is.
        upstream.add_probe(gst::PadProbeType::IDLE, move |pad, _| {
            let mut video = video.lock().expect("encoder lock");
            if let Err(e) = video.swap(pad, &pipeline, &sink, quirks) {
                tracing::error!(error = %e, encoder = quirks.element, "video encoder not replaced");
            }
            gst::PadProbeReturn::Remove
        });
    }

    /// Ask the encoder for a keyframe now (a new group): a classroom that just joined
    /// then starts from the present instead of catching up a whole GOP.
    pub fn force_keyframe(&self) {
        // Sent from the sink, it travels upstream to the encoder.
        if !self.video_out.send_event(force_key_unit_event()) {
            tracing::debug!("encoder ignored a keyframe request");
        }
    }

    /// The raw pictures' format the pipeline encodes (its `video_caps`'), I420 if it
    /// names none.
    fn raw_format(&self) -> String {
        let caps = self.caps_filter.property::<Option<gst::Caps>>("caps");
        caps.as_ref()
            .and_then(|c| c.structure(0))
            .and_then(|s| s.get::<String>("format").ok())
            .unwrap_or_else(|| "I420".into())
    }

    /// Ask the camera for at least `width` x `height` at `framerate` (None: whatever
    /// the encodings ask for). The camera otherwise delivers what the main encoding
    /// asks for, and a second, larger encoding would be made of its small pictures;
    /// each encoding scales and drops frames from there.
    pub fn set_source_floor(&self, floor: Option<(u32, u32, u32)>) {
        let Some(element) = &self.source_caps else {
            return;
        };
        let caps = match floor {
            None => gst::Caps::new_any(),
            Some((width, height, framerate)) => gst::Caps::builder("video/x-raw")
                .field("width", gst::IntRange::new(width as i32, i32::MAX))
                .field("height", gst::IntRange::new(height as i32, i32::MAX))
                .field(
                    "framerate",
                    gst::FractionRange::new(
                        gst::Fraction::new(framerate as i32, 1),
                        gst::Fraction::new(i32::MAX, 1),
                    ),
                )
                .build(),
        };
        element.set_property("caps", caps);
    }

    /// A second encoding of the same camera (simulcast): see [`LayerBranch`]. It uses
    /// the codec and keyframe interval of the main one.
    pub fn add_layer(
        &self,
        picture: Picture,
        out: mpsc::Sender<Frame>,
    ) -> Result<LayerBranch, MediaError> {
        let quirks = self.video.lock().expect("encoder lock").quirks;
        LayerBranch::add(
            &self.pipeline,
            quirks,
            &self.raw_format(),
            picture,
            self.keyframe_seconds,
            out,
        )
    }

    /// Change picture size and frame rate while running. The encoder renegotiates and
    /// starts the new size with a keyframe, so the change lands on a group boundary.
    /// The keyframe interval keeps its length in time: a group is also the unit the
    /// relay drops when it is late, so 3 s groups at 10 fps would hold 3 s of backlog.
    /// Encoders that take a new interval while running get it here; for the others
    /// (x264enc) the [`KeyframeClock`] asks for each keyframe on time.
    /// The caps name a square pixel: without it videoscale first offers the new size
    /// with the pixel shape that keeps the old picture's proportions (427:426 for
    /// 854x480 to 426x240) and then renegotiates, and each negotiation restarts the
    /// encoder: two keyframes 100 ms apart, the second a new group that supersedes
    /// the first before a classroom on a slow link has even received it.
    pub fn set_picture(&self, width: u32, height: u32, framerate: u32) {
        let gop = (self.keyframe_seconds * f64::from(framerate))
            .round()
            .max(1.0) as u32;
        {
            let mut video = self.video.lock().expect("encoder lock");
            video.gop = gop;
            video.quirks.set_gop(&video.element, gop);
        }
        let caps = picture_caps(&self.raw_format(), width, height, framerate);
        self.caps_filter.set_property("caps", caps);
    }
}

/// Raw pictures of `width` x `height` at `framerate` in `format`, with square pixels
/// (see [`Capture::set_picture`]).
pub(super) fn picture_caps(format: &str, width: u32, height: u32, framerate: u32) -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", format)
        .field("width", width as i32)
        .field("height", height as i32)
        .field("framerate", gst::Fraction::new(framerate as i32, 1))
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build()
}

impl VideoEncoder {
    /// The encoder chain of a freshly built pipeline: from `element` downstream to `sink`.
    fn find(
        quirks: &'static EncoderQuirks,
        element: gst::Element,
        sink: &gst::Element,
        kbps: u32,
        gop: u32,
    ) -> Result<Self, MediaError> {
        let upstream = element
            .static_pad("sink")
            .and_then(|p| p.peer())
            .ok_or(MediaError::MissingElement("the video encoder's input"))?;
        let mut chain = vec![element.clone()];
        loop {
            let next = chain
                .last()
                .and_then(|e| e.static_pad("src"))
                .and_then(|p| p.peer())
                .and_then(|p| p.parent_element())
                .ok_or(MediaError::MissingElement(
                    "video_out after the video encoder",
                ))?;
            if &next == sink {
                break;
            }
            chain.push(next);
        }
        Ok(Self {
            quirks,
            element,
            chain,
            upstream,
            kbps,
            gop,
            swaps: 0,
        })
    }

    /// Unlink the old chain from `upstream` and `sink`, and link a new one for `quirks`.
    /// Called with `upstream` idle.
    fn swap(
        &mut self,
        upstream: &gst::Pad,
        pipeline: &gst::Pipeline,
        sink: &gst::Element,
        quirks: &'static EncoderQuirks,
    ) -> Result<(), MediaError> {
        let description = quirks.chain(self.kbps, self.gop);
        let bin = gst::parse::bin_from_description_with_name(
            &description,
            true,
            &format!("video_chain_{}", self.swaps + 1),
        )
        .map_err(|e| MediaError::Swap(format!("{description}: {e}")))?;
        let element = bin
            .by_name("video_encoder")
            .ok_or(MediaError::MissingElement("video_encoder"))?;
        let (first, last) = (&self.chain[0], self.chain.last().expect("non-empty chain"));
        if let Some(sink_pad) = first.static_pad("sink") {
            let _ = upstream.unlink(&sink_pad);
        }
        last.unlink(sink);
        for old in &self.chain {
            let _ = old.set_state(gst::State::Null);
        }
        pipeline
            .remove_many(&self.chain)
            .map_err(|e| MediaError::Swap(e.to_string()))?;
        pipeline
            .add(&bin)
            .map_err(|e| MediaError::Swap(e.to_string()))?;
        let bin_sink = bin
            .static_pad("sink")
            .ok_or(MediaError::MissingElement("chain input"))?;
        upstream
            .link(&bin_sink)
            .map_err(|e| MediaError::Swap(format!("linking the new encoder: {e:?}")))?;
        bin.link(sink)
            .map_err(|e| MediaError::Swap(format!("linking the new encoder to video_out: {e}")))?;
        bin.sync_state_with_parent()
            .map_err(|e| MediaError::Swap(format!("starting the new encoder: {e}")))?;
        *self = Self {
            quirks,
            element,
            chain: vec![bin.upcast()],
            upstream: upstream.clone(),
            kbps: self.kbps,
            gop: self.gop,
            swaps: self.swaps + 1,
        };
        Ok(())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// The upstream event asking an encoder for a keyframe now (the structure
/// gst_video_event_new_upstream_force_key_unit() builds).
pub(super) fn force_key_unit_event() -> gst::Event {
    gst::event::CustomUpstream::new(
        gst::Structure::builder("GstForceKeyUnit")
            .field("all-headers", true)
            .field("count", 0u32)
            .build(),
    )
}

/// Turn each encoded sample into a Frame stamped with its capture time; video asks
/// `clock` when to ask the encoder for a keyframe.
pub(super) fn frame_callbacks(
    kind: TrackKind,
    out: mpsc::Sender<Frame>,
    clock: Option<KeyframeClock>,
) -> gst_app::AppSinkCallbacks {
    let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let clock = clock.map(Mutex::new);
    gst_app::AppSinkCallbacks::builder()
        .new_sample(move |sink| {
            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
            let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
            let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
            let pts = buffer.pts().unwrap_or(gst::ClockTime::ZERO);
            let codec = match sample.caps().and_then(|c| c.structure(0)) {
                Some(s) if s.name() == "video/x-h265" => VideoCodec::H265,
                _ => VideoCodec::H264,
            };
            let frame = Frame {
                codec,
                track: kind,
                keyframe: kind == TrackKind::Audio
                    || !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
                capture_us: capture_time_us(sink.upcast_ref(), running_time(sample.segment(), pts)),
                pts_us: pts.useconds(),
                payload: Bytes::copy_from_slice(&map),
            };
            if let Some(clock) = &clock
                && clock
                    .lock()
                    .expect("keyframe clock lock")
                    .on_frame(frame.pts_us, frame.keyframe)
            {
                let taken = sink.send_event(force_key_unit_event());
                tracing::trace!(
                    pts_ms = frame.pts_us / 1000,
                    taken,
                    "group long enough: keyframe asked"
                );
            }
            // Never block the streaming thread: a full queue means the network side
            // stalled, and a late frame is worth less than the next one.
            if out.try_send(frame).is_err() {
                let n = dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n.is_multiple_of(100) {
                    tracing::warn!(
                        track = kind.track_name(),
                        dropped = n + 1,
                        "capture queue full; dropping frames"
                    );
                }
            }
            Ok(gst::FlowSuccess::Ok)
        })
        .build()
}

/// The running time of `pts` in `segment`. Not the pts itself: an encoder may move its
/// output's timestamps (x264enc and x265enc start them at 1000 hours, so that no
/// decoding time is negative) and says so in its segment. Taken as a running time,
/// such a pts was in the future: every picture counted as captured at the moment it
/// left the encoder, and glass-to-glass latency missed the encoding (about 2 ms with
/// x264 at 480p on this machine, measured at the appsink; more for a slower encoder).
pub(crate) fn running_time(segment: Option<&gst::Segment>, pts: gst::ClockTime) -> gst::ClockTime {
    segment
        .and_then(|segment| segment.downcast_ref::<gst::ClockTime>())
        .and_then(|segment| segment.to_running_time(pts))
        .unwrap_or(pts)
}

/// The wall-clock time at which a live source captured the buffer at running time
/// `running`: now, minus how long ago (on the pipeline clock) that was.
pub(crate) fn capture_time_us(element: &gst::Element, running: gst::ClockTime) -> u64 {
    let now_wall = unix_micros();
    let (Some(clock), Some(base)) = (element.clock(), element.base_time()) else {
        return now_wall;
    };
    let now_clock = clock.time().unwrap_or(gst::ClockTime::ZERO);
    let captured_clock = base + running;
    let age_us = now_clock.saturating_sub(captured_clock).useconds();
    now_wall.saturating_sub(age_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_time_follows_the_segment() {
        gst::init().unwrap();
        let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
        segment.set_start(gst::ClockTime::from_seconds(3_600_000));
        let pts = gst::ClockTime::from_seconds(3_600_005);
        assert_eq!(
            running_time(Some(segment.upcast_ref()), pts),
            gst::ClockTime::from_seconds(5)
        );
        assert_eq!(running_time(None, pts), pts);
    }

    /// A real encoder's output: its pts is far ahead of the pipeline's running time,
    /// its running time is not.
    #[test]
    fn encoded_pictures_are_timed_from_capture() {
        gst::init().unwrap();
        let Ok(pipeline) = gst::parse::launch(
            "videotestsrc is-live=true num-buffers=5 ! video/x-raw,width=320,height=240 \
             ! x264enc tune=zerolatency ! appsink name=out sync=false",
        ) else {
            eprintln!("skipping: no x264enc here");
            return;
        };
        let pipeline = pipeline.downcast::<gst::Pipeline>().unwrap();
        let sink = pipeline
            .by_name("out")
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let sample = sink.pull_sample().unwrap();
        let pts = sample.buffer().unwrap().pts().unwrap();
        let now = pipeline.current_running_time().unwrap();
        let running = running_time(sample.segment(), pts);
        assert!(running <= now, "{running} is after now, {now}");
        let before = unix_micros();
        let captured = capture_time_us(sink.upcast_ref(), running);
        assert!(captured <= before, "captured {captured} after {before}");
        pipeline.set_state(gst::State::Null).unwrap();
    }
}
