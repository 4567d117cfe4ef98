//! Every pipeline description in gst-pipelines/ parses and links with test sources and
//! sinks substituted, and names the elements the code binds to. A profile whose
//! elements this machine lacks is skipped with the reason printed, never passed
//! silently; the software profile (and the LAN and baseline ones) must always build.

use std::collections::BTreeMap;

use classbox::media::{self, encoder, pipeline, probe::PROFILES};
use gstreamer as gst;
use gstreamer::prelude::*;

/// The elements each role's code binds to by name.
fn bound(role: &str) -> &'static [&'static str] {
    match role {
        "teacher" => &[
            "video_out",
            "audio_out",
            "video_encoder",
            "audio_encoder",
            "video_caps",
        ],
        "classroom" => &["video_in", "audio_in", "video_decoder", "audio_decoder"],
        "watch" => &["video_in", "audio_in", "mp4_out"],
        _ => &[],
    }
}

fn vars(profile: &str) -> BTreeMap<&'static str, String> {
    let spec = PROFILES.iter().find(|p| p.name == profile);
    // The profile's preferred encoder/decoder present here, else its first (which then
    // fails to parse, naming the missing element).
    let pick = |list: &[&'static str]| {
        list.iter()
            .copied()
            .find(|e| media::probe::has(e))
            .unwrap_or(list[0])
    };
    let (enc, dec) = match spec {
        Some(spec) => (pick(spec.encoders), pick(spec.decoders)),
        None => ("x264enc", "avdec_h264"),
    };
    let dec_launch = encoder::H264_DECODERS
        .iter()
        .find(|(n, _)| *n == dec)
        .map(|(_, l)| l.to_string())
        .unwrap();
    BTreeMap::from([
        ("VIDEO_SOURCE", "videotestsrc is-live=true".to_string()),
        ("AUDIO_SOURCE", "audiotestsrc is-live=true".to_string()),
        ("WIDTH", "320".into()),
        ("HEIGHT", "240".into()),
        ("FRAMERATE", "30".into()),
        (
            "H264_ENCODER",
            encoder::quirks(enc).unwrap().launch(500, 30),
        ),
        ("H264_DECODER", dec_launch),
        ("AUDIO_BPS", "32000".into()),
        ("VIDEO_SINK", "fakesink name=video_sink sync=false".into()),
        ("AUDIO_SINK", "fakesink name=audio_sink sync=false".into()),
        ("AUDIO_RATE", "48000".into()),
        ("AUDIO_CHANNELS", "1".into()),
        ("SRT_ADDRESS", "127.0.0.1:9".into()),
        ("SRT_LATENCY_MS", "320".into()),
    ])
}

#[test]
fn every_pipeline_file_parses_links_and_names_what_the_code_binds() {
    media::init().unwrap();
    let mut built = Vec::new();
    let mut skipped = Vec::new();
    for (profile, role, text) in pipeline::BUILT_IN {
        // The files on disk are the ones compiled in.
        let on_disk = std::fs::read_to_string(format!(
            "{}/gst-pipelines/{profile}/{role}.pipeline",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        assert_eq!(&on_disk, text, "{profile}/{role}");
        let launch = match pipeline::render(text, &vars(profile)) {
            Ok(l) => l,
            Err(e) => panic!("{profile}/{role}: {e}"),
        };
        match gst::parse::launch(&launch) {
            Ok(element) => {
                let bin = element.downcast::<gst::Bin>().unwrap();
                for name in bound(role) {
                    assert!(
                        bin.by_name(name).is_some(),
                        "{profile}/{role} has no element named {name}"
                    );
                }
                built.push(format!("{profile}/{role}"));
            }
            Err(e) => {
                let must_build = ["software", "lan", "baseline"].contains(profile);
                assert!(!must_build, "{profile}/{role} must build here: {e}");
                let missing = e.to_string();
                assert!(
                    missing.contains("no element"),
                    "{profile}/{role}: {missing}"
                );
                skipped.push(format!("{profile}/{role}: {missing}"));
            }
        }
    }
    println!("built and linked: {}", built.join(", "));
    for s in &skipped {
        println!("SKIPPED (elements absent on this machine) {s}");
    }
    for must in ["software/teacher", "software/classroom", "lan/watch"] {
        assert!(built.iter().any(|b| b == must), "{must}");
    }
    // Every platform profile has both roles.
    for spec in PROFILES {
        for role in ["teacher", "classroom"] {
            assert!(
                pipeline::BUILT_IN
                    .iter()
                    .any(|(p, r, _)| *p == spec.name && *r == role),
                "{}/{role}",
                spec.name
            );
        }
    }
}
