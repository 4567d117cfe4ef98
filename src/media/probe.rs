//! What this machine's GStreamer has, and which pipeline profile to use.
//!
//! The probe checks element factories. Hardware profiles (issue: hardware codecs) also
//! need a one-buffer test of the device; until those profiles exist, the software
//! profile is the one chosen, and the report says what hardware elements are present.

use gstreamer as gst;
use serde::Serialize;

use super::{MediaError, encoder};

/// Elements worth reporting, by what they are for.
const INTERESTING: &[(&str, &[&str])] = &[
    (
        "h264 encoders",
        &[
            "x264enc",
            "openh264enc",
            "vah264enc",
            "nvh264enc",
            "v4l2h264enc",
        ],
    ),
    (
        "h264 decoders",
        &[
            "avdec_h264",
            "openh264dec",
            "vah264dec",
            "nvh264dec",
            "v4l2h264dec",
            "v4l2slh264dec",
        ],
    ),
    (
        "h265 decoders",
        &["avdec_h265", "vah265dec", "nvh265dec", "v4l2slh265dec"],
    ),
    ("audio", &["opusenc", "opusdec", "webrtcdsp"]),
    (
        "video sinks",
        &[
            "kmssink",
            "waylandsink",
            "glimagesink",
            "xvimagesink",
            "autovideosink",
            "fakesink",
        ],
    ),
    (
        "audio sinks",
        &["alsasink", "pulsesink", "pipewiresink", "autoaudiosink"],
    ),
    (
        "sources",
        &[
            "v4l2src",
            "libcamerasrc",
            "pipewiresrc",
            "alsasrc",
            "pulsesrc",
            "videotestsrc",
            "audiotestsrc",
        ],
    ),
    (
        "plumbing",
        &[
            "appsrc",
            "appsink",
            "h264parse",
            "videoconvert",
            "audioconvert",
            "audioresample",
            "videoscale",
        ],
    ),
];

/// Elements every software profile needs, beside an encoder and a decoder.
const SOFTWARE_BASE: &[&str] = &[
    "appsrc",
    "appsink",
    "h264parse",
    "videoconvert",
    "videoscale",
    "audioconvert",
    "audioresample",
    "opusenc",
    "opusdec",
    "queue",
];

#[derive(Debug, Clone, Serialize)]
pub struct ElementPresence {
    pub group: &'static str,
    pub element: &'static str,
    pub present: bool,
}

/// The chosen profile: which description directory, and which elements fill it.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub name: String,
    pub h264_encoder: &'static str,
    pub h264_decoder: &'static str,
    pub reason: String,
}

impl Profile {
    pub fn encoder(&self) -> &'static encoder::EncoderQuirks {
        encoder::quirks(self.h264_encoder)
            .expect("profiles only name encoders from the quirk table")
    }

    pub fn decoder_launch(&self) -> &'static str {
        encoder::H264_DECODERS
            .iter()
            .find(|(name, _)| *name == self.h264_decoder)
            .map(|(_, launch)| *launch)
            .expect("profiles only name decoders from the table")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub gstreamer_version: String,
    pub elements: Vec<ElementPresence>,
    pub profile: Result<Profile, String>,
}

pub fn has(element: &str) -> bool {
    gst::ElementFactory::find(element).is_some()
}

/// Choose a profile. `forced` is `media.profile` ("auto" probes).
pub fn choose(forced: &str) -> Result<Profile, MediaError> {
    if forced != "auto" && !super::pipeline::built_in_profiles().contains(&forced) {
        return Err(MediaError::NoProfile(format!(
            "media.profile = \"{forced}\" is not one of: auto, {}",
            super::pipeline::built_in_profiles().join(", ")
        )));
    }
    let missing: Vec<&str> = SOFTWARE_BASE.iter().copied().filter(|e| !has(e)).collect();
    if !missing.is_empty() {
        return Err(MediaError::NoProfile(format!(
            "GStreamer elements missing: {} (install gstreamer1.0-plugins-base/-good/-bad; see image/dev-setup.sh)",
            missing.join(", ")
        )));
    }
    let encoder = encoder::H264_ENCODERS
        .iter()
        .filter(|q| !q.hardware)
        .find(|q| has(q.element))
        .ok_or_else(|| {
            MediaError::NoProfile(
                "no H.264 encoder: install gstreamer1.0-plugins-ugly (x264enc)".into(),
            )
        })?;
    let decoder = encoder::H264_DECODERS
        .iter()
        .find(|(name, _)| has(name))
        .ok_or_else(|| {
            MediaError::NoProfile(
                "no H.264 decoder: install gstreamer1.0-libav (avdec_h264)".into(),
            )
        })?;
    let hardware: Vec<&str> = encoder::H264_ENCODERS
        .iter()
        .filter(|q| q.hardware && has(q.element))
        .map(|q| q.element)
        .collect();
    let reason = if forced == "auto" {
        let hw = if hardware.is_empty() {
            "no hardware H.264 elements registered".to_string()
        } else {
            format!(
                "hardware elements registered ({}) but no hardware profile is built in yet",
                hardware.join(", ")
            )
        };
        format!(
            "software: {hw}; {} encodes, {} decodes",
            encoder.element, decoder.0
        )
    } else {
        format!("forced by media.profile = \"{forced}\"")
    };
    Ok(Profile {
        name: "software".into(),
        h264_encoder: encoder.element,
        h264_decoder: decoder.0,
        reason,
    })
}

pub fn report(forced: &str) -> ProbeReport {
    let mut elements = Vec::new();
    for (group, names) in INTERESTING {
        for element in *names {
            elements.push(ElementPresence {
                group,
                element,
                present: has(element),
            });
        }
    }
    ProbeReport {
        gstreamer_version: gst::version_string().to_string(),
        elements,
        profile: choose(forced).map_err(|e| e.to_string()),
    }
}
