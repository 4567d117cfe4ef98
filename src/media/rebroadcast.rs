//! The lesson re-served on the school LAN: Frames in (as they arrive from the relay),
//! fragmented MP4 out, one small remux pipeline per viewer, no transcoding.
//!
//! Each viewer starts at the next keyframe with its own init segment, so a tablet can
//! join at any time; a viewer that cannot keep up is cut off (it reconnects and starts
//! again at the live edge) rather than slowing anyone else.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::{broadcast, mpsc};

use super::{MediaError, pipeline};
use crate::frame::{Frame, TrackKind, VideoCodec};

/// Viewers beyond this many are refused (each costs a remux on the box).
pub const MAX_VIEWERS: usize = 40;

/// The lesson's frames, for LAN viewers.
pub struct LanFeed {
    frames: broadcast::Sender<Frame>,
    pipelines_dir: Option<PathBuf>,
    viewers: Arc<std::sync::atomic::AtomicUsize>,
    /// Viewers waiting for their first keyframe.
    waiting: Arc<std::sync::atomic::AtomicUsize>,
}

/// One viewer's stream: the MSE type (`video/mp4; codecs="..."`) and the bytes.
pub struct Viewer {
    pub mime: String,
    pub bytes: mpsc::Receiver<Bytes>,
}

impl LanFeed {
    pub fn new(pipelines_dir: Option<PathBuf>) -> Self {
        Self {
            frames: broadcast::channel(512).0,
            pipelines_dir,
            viewers: Default::default(),
            waiting: Default::default(),
        }
    }

    /// Hand a frame to every viewer (nothing to do when nobody watches). Tablets get
    /// H.264 only (it plays on all of them): while the lesson arrives in H.265 the box
    /// asks the teacher for H.264 (see [`LanFeed::wants_h264`]) and viewers wait.
    pub fn publish(&self, frame: &Frame) {
        if frame.track == TrackKind::Video && frame.codec != VideoCodec::H264 {
            return;
        }
        if self.frames.receiver_count() > 0 {
            let _ = self.frames.send(frame.clone());
        }
    }

    pub fn viewers(&self) -> usize {
        self.viewers.load(Ordering::Relaxed)
    }

    /// Someone watches, or is about to: the lesson must arrive in H.264.
    pub fn wants_h264(&self) -> bool {
        self.viewers() + self.waiting.load(Ordering::Relaxed) > 0
    }

    /// A new viewer: waits for the next keyframe (None if no lesson delivers one).
    pub async fn viewer(&self, wait: std::time::Duration) -> Result<Option<Viewer>, MediaError> {
        if self.viewers() >= MAX_VIEWERS {
            return Err(MediaError::Busy(format!("{MAX_VIEWERS} viewers already")));
        }
        let mut frames = self.frames.subscribe();
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = ViewerCount(self.waiting.clone());
        let first = tokio::time::timeout(wait, async {
            loop {
                match frames.recv().await {
                    Ok(f) if f.track == TrackKind::Video && f.keyframe => return Some(f),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .await
        .ok()
        .flatten();
        let Some(first) = first else { return Ok(None) };
        let mime = format!(
            "video/mp4; codecs=\"{},opus\"",
            avc_codec(&first.payload).unwrap_or_else(|| "avc1.42e01e".into())
        );
        let (out, bytes) = mpsc::channel(512);
        let remux = Remux::start(self.pipelines_dir.clone(), out).await?;
        let viewers = self.viewers.clone();
        viewers.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let _count = ViewerCount(viewers);
            remux.push(&first);
            loop {
                match frames.recv().await {
                    // push() turns false once the viewer has gone away.
                    Ok(frame) if remux.push(&frame) => {}
                    // Gone, or behind by more than the channel holds: cut off (the page
                    // reconnects at the live edge).
                    _ => break,
                }
            }
        });
        Ok(Some(Viewer { mime, bytes }))
    }
}

struct ViewerCount(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for ViewerCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `avc1.PPCCLL` from the SPS in an Annex B keyframe.
pub fn avc_codec(annexb: &[u8]) -> Option<String> {
    let mut i = 0;
    while i + 4 < annexb.len() {
        let start = if annexb[i..].starts_with(&[0, 0, 1]) {
            3
        } else if annexb[i..].starts_with(&[0, 0, 0, 1]) {
            4
        } else {
            i += 1;
            continue;
        };
        let nal = &annexb[i + start..];
        if nal.first().map(|b| b & 0x1f) == Some(7) && nal.len() >= 4 {
            return Some(format!("avc1.{:02x}{:02x}{:02x}", nal[1], nal[2], nal[3]));
        }
        i += start;
    }
    None
}

/// Quirk: GStreamer 1.22's mp4mux writes the `dOps` box (Opus in MP4) with its
/// multi-byte fields little-endian; the specification (and browsers) read big-endian,
/// so Chromium refuses the stream ("sample rate mismatches"). Rewrite them in place
/// when the input rate reads as 48 kHz little-endian (later GStreamer writes it right).
pub fn fix_opus_box(bytes: &mut [u8]) {
    let Some(at) = bytes.windows(4).position(|w| w == b"dOps") else {
        return;
    };
    // version(1) channels(1) pre_skip(2) input_rate(4) gain(2)
    let body = at + 4;
    if bytes.len() < body + 10 || bytes[body] != 0 {
        return;
    }
    let rate = &bytes[body + 4..body + 8];
    if u32::from_le_bytes([rate[0], rate[1], rate[2], rate[3]]) != 48_000 {
        return;
    }
    bytes[body + 2..body + 4].reverse();
    bytes[body + 4..body + 8].reverse();
    bytes[body + 8..body + 10].reverse();
}

/// One viewer's remux pipeline. Dropping it stops the pipeline.
struct Remux {
    pipeline: gst::Pipeline,
    video_in: gst_app::AppSrc,
    audio_in: gst_app::AppSrc,
    /// Capture time of the first frame: PTS zero.
    base_us: std::sync::atomic::AtomicU64,
    failed: Arc<AtomicBool>,
    _bus: tokio::task::JoinHandle<()>,
}

impl Remux {
    async fn start(
        pipelines_dir: Option<PathBuf>,
        out: mpsc::Sender<Bytes>,
    ) -> Result<Self, MediaError> {
        let vars = BTreeMap::from([
            ("AUDIO_RATE", "48000".to_string()),
            ("AUDIO_CHANNELS", "1".to_string()),
        ]);
        let pipeline = pipeline::build(pipelines_dir.as_deref(), "lan", "watch", &vars)?;
        let video_in: gst_app::AppSrc = pipeline::element(&pipeline, "video_in")?;
        let audio_in: gst_app::AppSrc = pipeline::element(&pipeline, "audio_in")?;
        let sink: gst_app::AppSink = pipeline::element(&pipeline, "mp4_out")?;
        let failed = Arc::new(AtomicBool::new(false));
        let flag = failed.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                    let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                    let mut bytes = map.to_vec();
                    fix_opus_box(&mut bytes);
                    if out.try_send(Bytes::from(bytes)).is_err() {
                        // The viewer is gone or too slow: a gap would corrupt its stream.
                        flag.store(true, Ordering::Relaxed);
                        return Err(gst::FlowError::Eos);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        let bus = super::watch_bus(&pipeline, "lan-watch", None);
        super::set_state(&pipeline, gst::State::Playing).await?;
        Ok(Self {
            pipeline,
            video_in,
            audio_in,
            base_us: Default::default(),
            failed,
            _bus: bus,
        })
    }

    /// Push one frame; false once the viewer is gone.
    fn push(&self, frame: &Frame) -> bool {
        if self.failed.load(Ordering::Relaxed) {
            return false;
        }
        let base = match self.base_us.load(Ordering::Relaxed) {
            0 => {
                self.base_us
                    .store(frame.capture_us.max(1), Ordering::Relaxed);
                frame.capture_us
            }
            base => base,
        };
        // Sound from before the first picture has nowhere to go.
        if frame.capture_us < base {
            return true;
        }
        let mut buffer = gst::Buffer::from_slice(frame.payload.clone());
        {
            let buffer = buffer.get_mut().expect("fresh buffer is writable");
            buffer.set_pts(gst::ClockTime::from_useconds(frame.capture_us - base));
            if !frame.keyframe {
                buffer.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        let src = match frame.track {
            TrackKind::Video => &self.video_in,
            TrackKind::Audio => &self.audio_in,
        };
        src.push_buffer(buffer).is_ok()
    }
}

impl Drop for Remux {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opus_box_is_made_big_endian_once() {
        let mut moov = b"....dOps\x00\x01\x38\x01\x80\xbb\x00\x00\x00\x00\x00".to_vec();
        fix_opus_box(&mut moov);
        assert_eq!(&moov[8..], b"\x00\x01\x01\x38\x00\x00\xbb\x80\x00\x00\x00");
        let fixed = moov.clone();
        fix_opus_box(&mut moov);
        assert_eq!(moov, fixed, "a correct box is left alone");
    }

    #[test]
    fn the_codec_string_comes_from_the_sps() {
        let keyframe = [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1f, 0xac, 0, 0, 1, 0x68, 0xee,
        ];
        assert_eq!(avc_codec(&keyframe).as_deref(), Some("avc1.64001f"));
        assert_eq!(avc_codec(&[0, 0, 1, 0x65, 1, 2, 3]), None);
    }
}
