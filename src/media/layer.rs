//! A second encoding of the teacher's camera (simulcast, see [`crate::abr::Layer`]):
//! a branch off the capture pipeline's `video_tee` with its own rate, scaler,
//! encoder and sink, added while the pipeline runs and removed when no classroom
//! needs it. The main branch and the sound never stop for it.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;

use super::{
    MediaError,
    capture::{KeyframeClock, force_key_unit_event, frame_callbacks, picture_caps},
    encoder::EncoderQuirks,
};
use crate::frame::{Frame, TrackKind};

/// The tee every teacher pipeline has after its camera.
pub const TEE: &str = "video_tee";

/// A running second encoding. Dropping it takes the branch out of the pipeline.
pub struct LayerBranch {
    pipeline: gst::Pipeline,
    tee: gst::Element,
    tee_pad: gst::Pad,
    bin: gst::Bin,
    quirks: &'static EncoderQuirks,
    encoder: gst::Element,
    caps_filter: gst::Element,
    sink: gst_app::AppSink,
    format: String,
    keyframe_seconds: f64,
}

/// A picture to encode: size, frame rate, bitrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
    pub kbps: u32,
}

impl LayerBranch {
    /// Branch off `pipeline`'s [`TEE`]: `picture` in raw `format` (the main branch's),
    /// encoded by `quirks`' encoder with a keyframe every `keyframe_seconds`; its
    /// frames go to `out`, the first one a keyframe.
    pub fn add(
        pipeline: &gst::Pipeline,
        quirks: &'static EncoderQuirks,
        format: &str,
        picture: Picture,
        keyframe_seconds: f64,
        out: mpsc::Sender<Frame>,
    ) -> Result<Self, MediaError> {
        let tee = pipeline
            .by_name(TEE)
            .ok_or(MediaError::MissingElement(TEE))?;
        let gop = gop(keyframe_seconds, picture.framerate);
        // A queue first: the branch's scaling and encoding run in a thread of their
        // own, never in the camera's (which feeds the main branch). Its videorate may
        // repeat pictures: until the camera follows [`super::capture::Capture::set_source_floor`] it
        // delivers the main encoding's rate, maybe less than this one's, and a
        // videorate that only drops fails to negotiate that (and stops the pipeline).
        let leaky = "queue max-size-buffers=2 max-size-bytes=0 max-size-time=0 leaky=downstream";
        let description = format!(
            "{leaky} ! videorate ! videoconvert ! videoscale \
             ! capsfilter name=layer_caps caps=\"{caps}\" ! {leaky} ! {chain} \
             ! appsink name=layer_out sync=false max-buffers=64",
            caps = picture_caps(format, picture.width, picture.height, picture.framerate),
            chain = quirks.chain(picture.kbps, gop),
        );
        let bin = gst::parse::bin_from_description(&description, true)
            .map_err(|e| MediaError::Swap(format!("{description}: {e}")))?;
        let find = |name: &'static str| bin.by_name(name).ok_or(MediaError::MissingElement(name));
        let encoder = find("video_encoder")?;
        let caps_filter = find("layer_caps")?;
        let sink = find("layer_out")?
            .downcast::<gst_app::AppSink>()
            .map_err(|_| MediaError::MissingElement("layer_out"))?;
        sink.set_callbacks(frame_callbacks(
            TrackKind::Video,
            out,
            Some(KeyframeClock::new(keyframe_seconds)),
        ));
        pipeline
            .add(&bin)
            .map_err(|e| MediaError::Swap(e.to_string()))?;
        let tee_pad = tee
            .request_pad_simple("src_%u")
            .ok_or(MediaError::MissingElement("a free pad on video_tee"))?;
        let linked =
            bin.static_pad("sink")
                .ok_or(MediaError::MissingElement("the branch's input"))
                .and_then(|sink_pad| {
                    tee_pad.link(&sink_pad).map(|_| ()).map_err(|e| {
                        MediaError::Swap(format!("linking the second encoding: {e:?}"))
                    })
                })
                .and_then(|()| {
                    bin.sync_state_with_parent()
                        .map_err(|e| MediaError::Swap(format!("starting the second encoding: {e}")))
                });
        if let Err(e) = linked {
            let _ = bin.set_state(gst::State::Null);
            let _ = pipeline.remove(&bin);
            tee.release_request_pad(&tee_pad);
            return Err(e);
        }
        Ok(Self {
            pipeline: pipeline.clone(),
            tee,
            tee_pad,
            bin: bin.upcast(),
            quirks,
            encoder,
            caps_filter,
            sink,
            format: format.to_string(),
            keyframe_seconds,
        })
    }

    pub fn set_bitrate(&self, kbps: u32) {
        self.quirks.set_bitrate(&self.encoder, kbps);
    }

    /// A new picture size and rate; it starts with a keyframe (see
    /// [`super::capture::Capture::set_picture`]).
    pub fn set_picture(&self, width: u32, height: u32, framerate: u32) {
        self.quirks
            .set_gop(&self.encoder, gop(self.keyframe_seconds, framerate));
        self.caps_filter
            .set_property("caps", picture_caps(&self.format, width, height, framerate));
    }

    /// Ask for a keyframe now (a classroom joins this encoding).
    pub fn force_keyframe(&self) {
        if !self.sink.send_event(force_key_unit_event()) {
            tracing::debug!("second encoder ignored a keyframe request");
        }
    }
}

fn gop(keyframe_seconds: f64, framerate: u32) -> u32 {
    (keyframe_seconds * f64::from(framerate)).round().max(1.0) as u32
}

impl Drop for LayerBranch {
    /// Unlink between two pictures, then stop the branch outside the camera's thread.
    fn drop(&mut self) {
        let (tee, bin, pipeline) = (self.tee.clone(), self.bin.clone(), self.pipeline.clone());
        let _ = self
            .tee_pad
            .add_probe(gst::PadProbeType::IDLE, move |pad, _| {
                if let Some(peer) = pad.peer() {
                    let _ = pad.unlink(&peer);
                }
                tee.release_request_pad(pad);
                let pipeline = pipeline.clone();
                bin.clone().call_async(move |bin| {
                    let _ = bin.set_state(gst::State::Null);
                    let _ = pipeline.remove(bin);
                });
                gst::PadProbeReturn::Remove
            });
    }
}
