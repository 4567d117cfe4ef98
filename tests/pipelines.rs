//! Every pipeline description in gst-pipelines/ parses and links with test sources and
//! sinks substituted, and names the elements the code binds to. A profile whose
//! elements this machine lacks is skipped with the reason printed, never passed
//! silently; the software profile (and the LAN and baseline ones) must always build.

use std::collections::BTreeMap;

use classbox::{
    frame::VideoCodec,
    media::{self, encoder, pipeline, probe::PROFILES},
};
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
    let dec_launch = encoder::decoder_launch(dec).unwrap().to_string();
    BTreeMap::from([
        ("VIDEO_CAPS", VideoCodec::H264.caps().to_string()),
        ("VIDEO_DECODER", format!("h264parse ! {dec_launch}")),
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
        (
            "ECHO_CANCEL",
            "! audioconvert ! webrtcdsp probe=x ! audioconvert".into(),
        ),
        (
            "ECHO_PROBE",
            "! audioconvert ! webrtcechoprobe name=x ! audioconvert".into(),
        ),
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
        // A classroom also takes the lesson in H.265, with the profile's decoder.
        if *role == "classroom"
            && let Some(spec) = PROFILES.iter().find(|p| p.name == *profile)
        {
            match spec.h265_decoders.iter().find(|d| media::probe::has(d)) {
                Some(dec) => {
                    let mut v = vars(profile);
                    v.insert("VIDEO_CAPS", VideoCodec::H265.caps().into());
                    v.insert(
                        "VIDEO_DECODER",
                        format!("h265parse ! {}", encoder::decoder_launch(dec).unwrap()),
                    );
                    let launch = pipeline::render(text, &v).unwrap();
                    if let Err(e) = gst::parse::launch(&launch) {
                        let missing = e.to_string();
                        // The same elements as in H.264 may be absent (kmssink...).
                        assert!(
                            missing.contains("no element"),
                            "{profile}/{role} H.265: {missing}"
                        );
                        skipped.push(format!("{profile}/{role} in H.265: {missing}"));
                    } else {
                        built.push(format!("{profile}/{role} in H.265 ({dec})"));
                    }
                }
                None => skipped.push(format!(
                    "{profile}/{role} in H.265: none of {} here",
                    spec.h265_decoders.join(", ")
                )),
            }
        }
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
    for must in [
        "software/teacher",
        "software/classroom",
        "software/classroom in H.265 (avdec_h265)",
        "lan/watch",
    ] {
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

/// The echo canceller on the microphone finds the probe before the speakers, and both
/// pipelines run (the classroom with the lesson on speakers and its microphone live).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_cancellation_pairs_the_microphone_with_the_speakers() {
    use classbox::media::display::{Display, DisplaySettings, Output};
    media::init().unwrap();
    if !media::probe::has("webrtcdsp") {
        println!("SKIPPED: webrtcdsp is not installed here (gstreamer1.0-plugins-bad)");
        return;
    }
    let profile = media::probe::choose("software").unwrap();
    let stats = std::sync::Arc::new(classbox::stats::LessonStats::default());
    let (display_errors, mut display_err) = tokio::sync::mpsc::unbounded_channel();
    let _speakers = Display::start(
        &profile,
        &DisplaySettings {
            output: Output::Headless,
            audio_rate: 48_000,
            audio_channels: 1,
            pipelines_dir: None,
            echo_probe: true,
            codec: VideoCodec::H264,
        },
        stats,
        Some(display_errors),
    )
    .await
    .unwrap();
    let (_microphone, mut frames, mut capture_err) =
        start_test_capture((320, 240, 15), 300, 24, true).await;
    let mut audio = 0;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while audio < 50 {
        tokio::select! {
            Some(f) = frames.recv() => if f.track == classbox::frame::TrackKind::Audio { audio += 1 },
            Some(e) = capture_err.recv() => panic!("microphone pipeline failed: {e}"),
            Some(e) = display_err.recv() => panic!("speaker pipeline failed: {e}"),
            _ = tokio::time::sleep_until(deadline) => panic!("only {audio} sound packets through the echo canceller"),
        }
    }
}

/// A rung change costs one keyframe, the largest frame there is, at the moment the
/// link is tightest: a second one right behind it is a new group that supersedes
/// the first before a classroom on 300 kbit/s has even received it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picture_change_starts_one_group() {
    use classbox::frame::TrackKind;
    media::init().unwrap();
    let (capture, mut frames, mut error) =
        start_test_capture((854, 480, 25), 1800, 32, false).await;
    // (pts ms, keyframe) of every picture, the change made after the 30th.
    let mut pictures = Vec::new();
    let mut changed_at = None;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while pictures.len() < 60 {
        tokio::select! {
            Some(f) = frames.recv() => if f.track == TrackKind::Video {
                pictures.push((f.pts_us / 1000, f.keyframe));
                if pictures.len() == 30 {
                    changed_at = Some(f.pts_us / 1000);
                    capture.set_picture(426, 240, 15);
                    capture.set_video_bitrate(220);
                }
            },
            Some(e) = error.recv() => panic!("capture failed: {e}"),
            _ = tokio::time::sleep_until(deadline) => panic!("only {} pictures", pictures.len()),
        }
    }
    let changed_at = changed_at.unwrap();
    let keyframes: Vec<u64> = pictures
        .iter()
        .filter(|&&(pts, key)| key && pts > changed_at && pts < changed_at + 800)
        .map(|&(pts, _)| pts)
        .collect();
    assert_eq!(
        keyframes.len(),
        1,
        "keyframes after the change at {changed_at} ms: {keyframes:?}"
    );
}

/// On a slow link the teacher repacks the sound while it runs (see
/// `classbox::abr::sound`): 40 ms packets at 24 kbit/s instead of 20 ms at 32,
/// with no gap in the capture timeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sound_is_repacked_while_it_runs() {
    use classbox::{abr::sound::Sound, frame::TrackKind};
    media::init().unwrap();
    let (capture, mut frames, mut error) = start_test_capture((320, 240, 15), 300, 32, false).await;
    // (pts ms, payload bytes) of every sound packet; repacked after the 100th.
    let mut sound: Vec<(u64, usize)> = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while sound.len() < 180 {
        tokio::select! {
            Some(f) = frames.recv() => if f.track == TrackKind::Audio {
                sound.push((f.pts_us / 1000, f.payload.len()));
                if sound.len() == 100 {
                    assert!(capture.set_sound(Sound { kbps: 24, frame_ms: 40 }));
                }
            },
            Some(e) = error.recv() => panic!("capture failed: {e}"),
            _ = tokio::time::sleep_until(deadline) => panic!("only {} sound packets", sound.len()),
        }
    }
    // Packet time and payload kbit/s over a stretch of packets.
    let measure = |packets: &[(u64, usize)]| {
        let span = packets.last().unwrap().0 - packets[0].0;
        let mut steps: Vec<u64> = packets.windows(2).map(|w| w[1].0 - w[0].0).collect();
        steps.sort();
        let bytes: usize = packets[1..].iter().map(|p| p.1).sum();
        (steps[steps.len() / 2], bytes as f64 * 8.0 / span as f64)
    };
    let (before_ms, before_kbps) = measure(&sound[40..100]);
    let (after_ms, after_kbps) = measure(&sound[120..]);
    assert_eq!(
        (before_ms, after_ms),
        (20, 40),
        "packet time before and after"
    );
    assert!(
        after_kbps < 0.9 * before_kbps && after_kbps > 12.0,
        "{before_kbps:.1} kbit/s of sound before, {after_kbps:.1} after"
    );
    // No hole where the packing changed: each packet starts where the last ended.
    let longest = sound.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap();
    assert!(longest <= 40, "{longest} ms between two sound packets");
}

/// A teacher's capture from the test sources with the software profile, a keyframe a
/// second: the capture, its frames and its errors.
async fn start_test_capture(
    (width, height, framerate): (u32, u32, u32),
    video_kbps: u32,
    audio_kbps: u32,
    echo_cancel: bool,
) -> (
    classbox::media::capture::Capture,
    tokio::sync::mpsc::Receiver<classbox::frame::Frame>,
    tokio::sync::mpsc::UnboundedReceiver<media::MediaError>,
) {
    use classbox::media::capture::{Capture, CaptureSettings};
    let profile = media::probe::choose("software").unwrap();
    let (frames_tx, frames) = tokio::sync::mpsc::channel(512);
    let (errors_tx, errors) = tokio::sync::mpsc::unbounded_channel();
    let capture = Capture::start(
        &profile,
        &CaptureSettings {
            width,
            height,
            framerate,
            video_kbps,
            audio_kbps,
            keyframe_interval: framerate,
            test_sources: true,
            slate: None,
            echo_cancel,
            video_source: None,
            audio_source: None,
            pipelines_dir: None,
        },
        frames_tx,
        Some(errors_tx),
    )
    .await
    .unwrap();
    (capture, frames, errors)
}
