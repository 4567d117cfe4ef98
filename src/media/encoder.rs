//! Per-element quirks, in ONE table keyed by GStreamer element name: how to launch each
//! encoder for low latency, and how to change its bitrate while it runs.

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::frame::VideoCodec;

/// How an element takes its bitrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitrateUnit {
    /// `bitrate` property in kbit/s.
    Kbps,
    /// `bitrate` property in bit/s.
    Bps,
    /// `extra-controls` structure, `video_bitrate` in bit/s (V4L2 stateful encoders).
    V4l2ExtraControls,
}

#[derive(Debug, Clone, Copy)]
pub struct EncoderQuirks {
    pub element: &'static str,
    pub codec: VideoCodec,
    pub unit: BitrateUnit,
    /// Launch options; `{bitrate}` is replaced in the element's own unit, `{gop}` by
    /// the keyframe interval in frames.
    pub launch: &'static str,
    /// Whether a live bitrate change takes effect (openh264enc cannot go above its
    /// opening value).
    pub live_raise: bool,
    pub hardware: bool,
    /// The property holding the keyframe interval in frames, when it can be changed
    /// (it takes effect when the encoder reopens, as on a picture size change).
    pub gop_property: Option<&'static str>,
}

/// Software encoders first: the order is the preference when several are present.
pub const H264_ENCODERS: &[EncoderQuirks] = &[
    EncoderQuirks {
        element: "x264enc",
        codec: VideoCodec::H264,
        unit: BitrateUnit::Kbps,
        launch: "x264enc name=video_encoder tune=zerolatency speed-preset=ultrafast bitrate={bitrate} \
                 key-int-max={gop} bframes=0 b-adapt=false vbv-buf-capacity=150",
        live_raise: true,
        hardware: false,
        gop_property: Some("key-int-max"),
    },
    EncoderQuirks {
        element: "openh264enc",
        codec: VideoCodec::H264,
        unit: BitrateUnit::Bps,
        launch: "openh264enc name=video_encoder bitrate={bitrate} gop-size={gop} rate-control=bitrate \
                 complexity=low usage-type=camera",
        live_raise: false,
        hardware: false,
        gop_property: Some("gop-size"),
    },
    EncoderQuirks {
        element: "vah264enc",
        codec: VideoCodec::H264,
        unit: BitrateUnit::Kbps,
        launch: "vah264enc name=video_encoder bitrate={bitrate} key-int-max={gop} b-frames=0 rate-control=cbr",
        live_raise: true,
        hardware: true,
        gop_property: Some("key-int-max"),
    },
    EncoderQuirks {
        element: "nvh264enc",
        codec: VideoCodec::H264,
        unit: BitrateUnit::Kbps,
        launch: "nvh264enc name=video_encoder bitrate={bitrate} gop-size={gop} bframes=0 rc-mode=cbr zerolatency=true",
        live_raise: true,
        hardware: true,
        gop_property: Some("gop-size"),
    },
    EncoderQuirks {
        element: "v4l2h264enc",
        codec: VideoCodec::H264,
        unit: BitrateUnit::V4l2ExtraControls,
        launch: "v4l2h264enc name=video_encoder extra-controls=\"controls,video_bitrate={bitrate},h264_i_frame_period={gop}\"",
        live_raise: true,
        hardware: true,
        gop_property: None,
    },
];

/// H.265 encoders, software first. x265 takes about four times x264's CPU for the
/// same picture: fine on a teacher's laptop, which is where the lesson is encoded.
pub const H265_ENCODERS: &[EncoderQuirks] = &[
    EncoderQuirks {
        element: "x265enc",
        codec: VideoCodec::H265,
        unit: BitrateUnit::Kbps,
        launch: "x265enc name=video_encoder tune=zerolatency speed-preset=ultrafast bitrate={bitrate} \
                 key-int-max={gop} option-string=\"bframes=0:repeat-headers=1\"",
        live_raise: true,
        hardware: false,
        gop_property: Some("key-int-max"),
    },
    EncoderQuirks {
        element: "vah265enc",
        codec: VideoCodec::H265,
        unit: BitrateUnit::Kbps,
        launch: "vah265enc name=video_encoder bitrate={bitrate} key-int-max={gop} b-frames=0 rate-control=cbr",
        live_raise: true,
        hardware: true,
        gop_property: Some("key-int-max"),
    },
    EncoderQuirks {
        element: "nvh265enc",
        codec: VideoCodec::H265,
        unit: BitrateUnit::Kbps,
        launch: "nvh265enc name=video_encoder bitrate={bitrate} gop-size={gop} bframes=0 rc-mode=cbr zerolatency=true",
        live_raise: true,
        hardware: true,
        gop_property: Some("gop-size"),
    },
];

/// H.265 decoders, software first (`v4l2slh265dec` is the Raspberry Pi 5's).
pub const H265_DECODERS: &[(&str, &str)] = &[
    ("avdec_h265", "avdec_h265 name=video_decoder max-threads=2"),
    ("v4l2slh265dec", "v4l2slh265dec name=video_decoder"),
    ("vah265dec", "vah265dec name=video_decoder"),
    ("nvh265dec", "nvh265dec name=video_decoder"),
];

/// H.264 decoders, software first.
pub const H264_DECODERS: &[(&str, &str)] = &[
    ("avdec_h264", "avdec_h264 name=video_decoder max-threads=1"),
    ("openh264dec", "openh264dec name=video_decoder"),
    ("v4l2h264dec", "v4l2h264dec name=video_decoder"),
    ("vah264dec", "vah264dec name=video_decoder"),
    ("nvh264dec", "nvh264dec name=video_decoder"),
];

pub fn quirks(element: &str) -> Option<&'static EncoderQuirks> {
    H264_ENCODERS
        .iter()
        .chain(H265_ENCODERS)
        .find(|q| q.element == element)
}

/// A decoder's launch fragment, named `video_decoder` (from either decoder table).
pub fn decoder_launch(element: &str) -> Option<&'static str> {
    H264_DECODERS
        .iter()
        .chain(H265_DECODERS)
        .find(|(name, _)| *name == element)
        .map(|(_, launch)| *launch)
}

/// Whether a decoder works on a device (its one-buffer test must pass to be used).
pub fn is_hardware_decoder(element: &str) -> bool {
    !element.starts_with("avdec_") && !element.starts_with("openh264")
}

impl EncoderQuirks {
    fn in_unit(&self, kbps: u32) -> u64 {
        match self.unit {
            BitrateUnit::Kbps => kbps as u64,
            BitrateUnit::Bps | BitrateUnit::V4l2ExtraControls => kbps as u64 * 1000,
        }
    }

    /// The encoder, its parser and the caps of what leaves them, for a capture
    /// pipeline's video branch (what replaces the encoder when the codec changes).
    pub fn chain(&self, kbps: u32, gop: u32) -> String {
        format!(
            "{} ! {} config-interval=-1 ! capsfilter caps=\"{}\"",
            self.launch(kbps, gop),
            self.codec.parser(),
            self.codec.caps()
        )
    }

    /// The launch fragment for this encoder at `kbps` with a keyframe every `gop` frames.
    pub fn launch(&self, kbps: u32, gop: u32) -> String {
        self.launch
            .replace("{bitrate}", &self.in_unit(kbps).to_string())
            .replace("{gop}", &gop.to_string())
    }

    /// Set the keyframe interval, in frames, for when the encoder next (re)opens.
    pub fn set_gop(&self, encoder: &gst::Element, frames: u32) {
        let Some(name) = self.gop_property else {
            return;
        };
        match encoder.find_property(name).map(|p| p.value_type()) {
            Some(t) if t == u32::static_type() => encoder.set_property(name, frames),
            Some(t) if t == i32::static_type() => encoder.set_property(name, frames as i32),
            other => tracing::warn!(
                element = self.element,
                ?other,
                "encoder has no usable {name} property"
            ),
        }
    }

    /// Change the bitrate of a running encoder.
    pub fn set_bitrate(&self, encoder: &gst::Element, kbps: u32) {
        let value = self.in_unit(kbps);
        match self.unit {
            BitrateUnit::Kbps | BitrateUnit::Bps => {
                // The property's type differs per element (u32 or i32 or u64).
                let pspec = encoder.find_property("bitrate");
                match pspec.map(|p| p.value_type()) {
                    Some(t) if t == u32::static_type() => {
                        encoder.set_property("bitrate", value as u32)
                    }
                    Some(t) if t == i32::static_type() => {
                        encoder.set_property("bitrate", value as i32)
                    }
                    Some(t) if t == u64::static_type() => encoder.set_property("bitrate", value),
                    other => tracing::warn!(
                        element = self.element,
                        ?other,
                        "encoder has no usable bitrate property"
                    ),
                }
            }
            BitrateUnit::V4l2ExtraControls => {
                let controls = gst::Structure::builder("controls")
                    .field("video_bitrate", value as i32)
                    .build();
                encoder.set_property("extra-controls", controls);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_differ_per_element() {
        assert!(
            quirks("x264enc")
                .unwrap()
                .launch(800, 30)
                .contains("bitrate=800 ")
        );
        assert!(
            quirks("openh264enc")
                .unwrap()
                .launch(800, 30)
                .contains("bitrate=800000 ")
        );
        assert!(
            quirks("v4l2h264enc")
                .unwrap()
                .launch(800, 30)
                .contains("video_bitrate=800000,")
        );
        assert!(quirks("nosuchenc").is_none());
    }

    #[test]
    fn live_bitrate_change_reaches_the_element() {
        gst::init().unwrap();
        for q in H264_ENCODERS
            .iter()
            .chain(H265_ENCODERS)
            .filter(|q| !q.hardware)
        {
            let Ok(element) = gst::ElementFactory::make(q.element).build() else {
                eprintln!("skipping {}: not installed here", q.element);
                continue;
            };
            q.set_bitrate(&element, 300);
            let got: u64 = match element.find_property("bitrate").unwrap().value_type() {
                t if t == u32::static_type() => element.property::<u32>("bitrate") as u64,
                t if t == i32::static_type() => element.property::<i32>("bitrate") as u64,
                _ => element.property::<u64>("bitrate"),
            };
            assert_eq!(got, q.in_unit(300), "{}", q.element);
            q.set_gop(&element, 15);
            if let Some(name) = q.gop_property {
                let gop = element.property_value(name);
                let frames = gop
                    .get::<u32>()
                    .map(i64::from)
                    .or_else(|_| gop.get::<i32>().map(i64::from));
                assert_eq!(frames, Ok(15), "{} {name}", q.element);
            }
        }
    }
}
