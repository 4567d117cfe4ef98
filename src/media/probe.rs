//! What this machine's GStreamer has, and which pipeline profile to use.
//!
//! `auto` tries the profiles best first (Raspberry Pi 5, Pi 4, VA-API, NVIDIA, then
//! software). A profile is taken when the machine is its board (Pi), its elements are
//! registered, and, for hardware codecs, a one-buffer test pipeline actually encodes and
//! decodes (a plugin can register its elements on a machine without the device).
//! `media.profile` forces one. The report says why each was or was not taken.

use gstreamer as gst;
use serde::Serialize;

use super::{MediaError, encoder};
pub use crate::config::H265Mode;
use crate::frame::VideoCodec;

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
    ("h265 encoders", &["x265enc", "vah265enc", "nvh265enc"]),
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
            "h265parse",
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

/// A platform profile: its pipeline directory, the elements that fill it (in order of
/// preference), and how to tell it applies to this machine.
#[derive(Debug)]
pub struct ProfileSpec {
    pub name: &'static str,
    pub encoders: &'static [&'static str],
    pub decoders: &'static [&'static str],
    /// H.265, optional: the teacher encodes it when every classroom asks for it.
    pub h265_encoders: &'static [&'static str],
    pub h265_decoders: &'static [&'static str],
    /// Other elements its pipelines need.
    pub needs: &'static [&'static str],
    /// Where the lesson is shown when there is a screen.
    pub window_sink: &'static str,
    /// A substring of /proc/device-tree/model this profile is for (None: any machine).
    pub board: Option<&'static str>,
    /// Whether a device must answer a one-buffer test (hardware codecs).
    pub device_test: bool,
}

/// In the order `auto` tries them; software last, always possible.
pub const PROFILES: &[ProfileSpec] = &[
    ProfileSpec {
        name: "pi5",
        encoders: &["x264enc"],
        decoders: &["avdec_h264"],
        h265_encoders: &[],
        h265_decoders: &["v4l2slh265dec", "avdec_h265"],
        needs: &["kmssink"],
        window_sink: "kmssink",
        board: Some("Raspberry Pi 5"),
        device_test: false,
    },
    ProfileSpec {
        name: "pi4",
        encoders: &["v4l2h264enc"],
        decoders: &["v4l2h264dec"],
        h265_encoders: &[],
        h265_decoders: &["avdec_h265"],
        needs: &["kmssink"],
        window_sink: "kmssink",
        board: Some("Raspberry Pi 4"),
        device_test: true,
    },
    ProfileSpec {
        name: "vaapi",
        encoders: &["vah264enc", "x264enc", "openh264enc"],
        decoders: &["vah264dec"],
        h265_encoders: &["vah265enc", "x265enc"],
        h265_decoders: &["vah265dec", "avdec_h265"],
        needs: &["vapostproc"],
        window_sink: "autovideosink",
        board: None,
        device_test: true,
    },
    ProfileSpec {
        name: "nvidia",
        encoders: &["nvh264enc"],
        decoders: &["nvh264dec"],
        h265_encoders: &["nvh265enc", "x265enc"],
        h265_decoders: &["nvh265dec", "avdec_h265"],
        needs: &[],
        window_sink: "autovideosink",
        board: None,
        device_test: true,
    },
    ProfileSpec {
        name: "software",
        encoders: &["x264enc", "openh264enc"],
        decoders: &["avdec_h264", "openh264dec"],
        h265_encoders: &["x265enc"],
        h265_decoders: &["avdec_h265"],
        needs: &[],
        window_sink: "autovideosink",
        board: None,
        device_test: false,
    },
];

/// The chosen profile: which description directory, and which elements fill it.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub name: String,
    pub h264_encoder: &'static str,
    pub h264_decoder: &'static str,
    /// The H.265 encoder and decoder, when this machine has them.
    pub h265_encoder: Option<&'static str>,
    pub h265_decoder: Option<&'static str>,
    pub window_sink: &'static str,
    pub reason: String,
}

impl Profile {
    pub fn encoder(&self) -> &'static encoder::EncoderQuirks {
        encoder::quirks(self.h264_encoder)
            .expect("profiles only name encoders from the quirk table")
    }

    /// The encoder for `codec`, if this machine has one.
    pub fn encoder_for(&self, codec: VideoCodec) -> Option<&'static encoder::EncoderQuirks> {
        match codec {
            VideoCodec::H264 => Some(self.encoder()),
            VideoCodec::H265 => self.h265_encoder.and_then(encoder::quirks),
        }
    }

    pub fn decoder_launch(&self) -> &'static str {
        encoder::decoder_launch(self.h264_decoder)
            .expect("profiles only name decoders from the table")
    }

    /// The decoder for `codec` (H.264 always; H.265 when this machine has one).
    pub fn decoder_for(&self, codec: VideoCodec) -> Option<&'static str> {
        match codec {
            VideoCodec::H264 => Some(self.h264_decoder),
            VideoCodec::H265 => self.h265_decoder,
        }
    }

    /// The video codecs this machine decodes, best first, as a classroom tells the
    /// teacher. `h265`: `auto` puts H.265 first when it is decoded in hardware (a
    /// Raspberry Pi 5), `prefer` whenever it is decoded at all (a strong mini-PC on a
    /// thin link: a third fewer bits for the same picture), `off` never offers it.
    /// `need_h264`: something on the box needs H.264 right now (tablets watching the
    /// lesson on the LAN get it as it arrives, and H.264 plays on every tablet).
    pub fn video_codecs(&self, h265: H265Mode, need_h264: bool) -> Vec<VideoCodec> {
        let h265 = match (h265, self.h265_decoder) {
            (H265Mode::Off, _) | (_, None) => None,
            (H265Mode::Auto, Some(d)) => Some(encoder::is_hardware_decoder(d)),
            (H265Mode::Prefer, Some(_)) => Some(true),
        };
        match h265 {
            Some(true) if !need_h264 => vec![VideoCodec::H265, VideoCodec::H264],
            Some(_) => vec![VideoCodec::H264, VideoCodec::H265],
            None => vec![VideoCodec::H264],
        }
    }

    pub fn is_software(&self) -> bool {
        self.name == "software"
    }
}

/// Why each profile was or was not taken (for `doctor` and the page).
#[derive(Debug, Clone, Serialize)]
pub struct ProfileCheck {
    pub name: &'static str,
    pub usable: bool,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub gstreamer_version: String,
    pub board: Option<String>,
    pub elements: Vec<ElementPresence>,
    pub profiles: Vec<ProfileCheck>,
    pub profile: Result<Profile, String>,
}

pub fn has(element: &str) -> bool {
    gst::ElementFactory::find(element).is_some()
}

/// The board's model from the device tree (Raspberry Pi and other ARM boards).
pub fn board() -> Option<String> {
    std::fs::read_to_string("/proc/device-tree/model")
        .ok()
        .map(|m| m.trim_end_matches('\0').trim().to_string())
}

/// Run a tiny pipeline to its end: does the element really work on this machine? An
/// installed plugin may register a factory while the device behind it is absent.
pub fn one_buffer_test(description: &str) -> Result<(), String> {
    use gst::prelude::*;
    let pipeline = gst::parse::launch(description).map_err(|e| e.to_string())?;
    let bus = pipeline.bus().ok_or("no bus")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("would not start: {e}"))?;
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(5),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let _ = pipeline.set_state(gst::State::Null);
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => Ok(()),
        Some(gst::MessageView::Error(e)) => Err(e.error().to_string()),
        _ => Err("no result within 5 s".into()),
    }
}

/// What a usable profile found: H.264 encoder and decoder, H.265 ones if any.
struct Found {
    encoder: &'static str,
    decoder: &'static str,
    h265_encoder: Option<&'static str>,
    h265_decoder: Option<&'static str>,
    /// Why a present H.265 decoder is not used.
    h265_note: Option<String>,
}

/// Check one profile: its board, its elements, and (for hardware) a one-buffer test.
fn check(spec: &ProfileSpec, board: Option<&str>) -> Result<Found, String> {
    if let Some(want) = spec.board
        && !board.is_some_and(|b| b.contains(want))
    {
        return Err(format!("not a {want}"));
    }
    let missing: Vec<&str> = SOFTWARE_BASE
        .iter()
        .chain(spec.needs)
        .copied()
        .filter(|e| !has(e))
        .collect();
    if !missing.is_empty() {
        return Err(format!("elements missing: {}", missing.join(", ")));
    }
    let encoder = spec
        .encoders
        .iter()
        .copied()
        .find(|e| has(e))
        .ok_or_else(|| format!("no encoder ({})", spec.encoders.join(" or ")))?;
    let decoder = spec
        .decoders
        .iter()
        .copied()
        .find(|e| has(e))
        .ok_or_else(|| format!("no decoder ({})", spec.decoders.join(" or ")))?;
    if spec.device_test {
        let raw = TEST_PICTURE;
        let enc = encoder::quirks(encoder)
            .expect("quirk table")
            .launch(300, 30);
        if encoder::quirks(encoder).is_some_and(|q| q.hardware) {
            one_buffer_test(&format!("{raw} ! {enc} ! h264parse ! fakesink"))
                .map_err(|e| format!("{encoder} did not encode: {e}"))?;
        }
        let source = if has("x264enc") {
            "x264enc tune=zerolatency"
        } else {
            enc.as_str()
        };
        let dec = encoder::decoder_launch(decoder).unwrap_or(decoder);
        one_buffer_test(&format!("{raw} ! {source} ! h264parse ! {dec} ! fakesink"))
            .map_err(|e| format!("{decoder} did not decode: {e}"))?;
    }
    let h265_encoder = spec.h265_encoders.iter().copied().find(|e| {
        has(e)
            && has("h265parse")
            && (!encoder::quirks(e).is_some_and(|q| q.hardware) || h265_encodes(e).is_ok())
    });
    // The first H.265 decoder that works: a hardware one must decode a test stream.
    let mut h265_note = None;
    let h265_decoder = spec.h265_decoders.iter().copied().find(|d| {
        if !has(d) || !has("h265parse") {
            return false;
        }
        if !encoder::is_hardware_decoder(d) {
            return true;
        }
        match h265_decodes(d) {
            Ok(()) => true,
            Err(e) => {
                h265_note = Some(format!("{d} did not decode H.265: {e}"));
                false
            }
        }
    });
    Ok(Found {
        encoder,
        decoder,
        h265_encoder,
        h265_decoder,
        h265_note,
    })
}

const TEST_PICTURE: &str =
    "videotestsrc num-buffers=3 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1";

fn h265_encodes(element: &str) -> Result<(), String> {
    let enc = encoder::quirks(element)
        .expect("quirk table")
        .launch(300, 30);
    one_buffer_test(&format!("{TEST_PICTURE} ! {enc} ! h265parse ! fakesink"))
}

/// A hardware H.265 decoder decodes a test stream (x265 makes it).
fn h265_decodes(element: &str) -> Result<(), String> {
    if !has("x265enc") {
        return Err("no x265enc here to make a test stream".into());
    }
    let dec = encoder::decoder_launch(element).unwrap_or(element);
    one_buffer_test(&format!(
        "{TEST_PICTURE} ! x265enc tune=zerolatency speed-preset=ultrafast ! h265parse ! {dec} ! fakesink"
    ))
}

/// Choose a profile. `forced` is `media.profile` ("auto" probes, best first).
pub fn choose(forced: &str) -> Result<Profile, MediaError> {
    choose_with(forced, board().as_deref()).0
}

fn choose_with(
    forced: &str,
    board: Option<&str>,
) -> (Result<Profile, MediaError>, Vec<ProfileCheck>) {
    let mut checks = Vec::new();
    if forced != "auto" && !PROFILES.iter().any(|p| p.name == forced) {
        let names: Vec<&str> = PROFILES.iter().map(|p| p.name).collect();
        let err = MediaError::NoProfile(format!(
            "media.profile = \"{forced}\" is not one of: auto, {}",
            names.join(", ")
        ));
        return (Err(err), checks);
    }
    let mut reasons = Vec::new();
    for spec in PROFILES
        .iter()
        .filter(|p| forced == "auto" || p.name == forced)
    {
        // A forced profile skips the board check (an IT person knows the board).
        let board = if forced == "auto" {
            board
        } else {
            spec.board.or(board)
        };
        match check(spec, board) {
            Ok(found) => {
                let (encoder, decoder) = (found.encoder, found.decoder);
                let h265 = match (found.h265_encoder, found.h265_decoder) {
                    (Some(e), Some(d)) => format!("; H.265: {e} encodes, {d} decodes"),
                    (Some(e), None) => format!("; H.265: {e} encodes, no decoder"),
                    (None, Some(d)) => format!("; H.265: {d} decodes, no encoder"),
                    (None, None) => "; no H.265".to_string(),
                } + &found
                    .h265_note
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default();
                checks.push(ProfileCheck {
                    name: spec.name,
                    usable: true,
                    why: format!("{encoder} encodes, {decoder} decodes{h265}"),
                });
                let reason = if forced != "auto" {
                    format!(
                        "forced by media.profile = \"{forced}\"; {encoder} encodes, {decoder} decodes{h265}"
                    )
                } else if reasons.is_empty() {
                    format!("{}: {encoder} encodes, {decoder} decodes{h265}", spec.name)
                } else {
                    format!(
                        "{}: {encoder} encodes, {decoder} decodes{h265} (not taken: {})",
                        spec.name,
                        reasons.join("; ")
                    )
                };
                let profile = Profile {
                    name: spec.name.into(),
                    h264_encoder: encoder,
                    h264_decoder: decoder,
                    h265_encoder: found.h265_encoder,
                    h265_decoder: found.h265_decoder,
                    window_sink: spec.window_sink,
                    reason,
                };
                // Report the rest too (doctor), without running more device tests.
                for rest in PROFILES.iter().skip_while(|p| p.name != spec.name).skip(1) {
                    checks.push(ProfileCheck {
                        name: rest.name,
                        usable: false,
                        why: format!("not needed: {} is preferred", spec.name),
                    });
                }
                return (Ok(profile), checks);
            }
            Err(why) => {
                reasons.push(format!("{} ({why})", spec.name));
                checks.push(ProfileCheck {
                    name: spec.name,
                    usable: false,
                    why,
                });
            }
        }
    }
    let hint = "install gstreamer1.0-plugins-base/-good/-bad/-ugly and gstreamer1.0-libav (see image/dev-setup.sh)";
    (
        Err(MediaError::NoProfile(format!(
            "{}; {hint}",
            reasons.join("; ")
        ))),
        checks,
    )
}

pub fn report(forced: &str) -> ProbeReport {
    let board = board();
    let (profile, profiles) = choose_with(forced, board.as_deref());
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
        board,
        elements,
        profiles,
        profile: profile.map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(h265_decoder: Option<&'static str>) -> Profile {
        Profile {
            name: "test".into(),
            h264_encoder: "x264enc",
            h264_decoder: "avdec_h264",
            h265_encoder: None,
            h265_decoder,
            window_sink: "fakesink",
            reason: String::new(),
        }
    }

    #[test]
    fn a_box_asks_for_h265_first_only_when_it_helps_and_nothing_needs_h264() {
        use VideoCodec::*;
        let pi5 = profile(Some("v4l2slh265dec"));
        assert_eq!(pi5.video_codecs(H265Mode::Auto, false), [H265, H264]);
        // A tablet watches on the LAN: H.264 first, H.265 still decodable.
        assert_eq!(pi5.video_codecs(H265Mode::Auto, true), [H264, H265]);
        assert_eq!(pi5.video_codecs(H265Mode::Off, false), [H264]);
        // Software H.265 only counts when asked for.
        let pc = profile(Some("avdec_h265"));
        assert_eq!(pc.video_codecs(H265Mode::Auto, false), [H264, H265]);
        assert_eq!(pc.video_codecs(H265Mode::Prefer, false), [H265, H264]);
        let none = profile(None);
        assert_eq!(none.video_codecs(H265Mode::Prefer, false), [H264]);
    }
}
