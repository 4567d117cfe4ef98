//! Pipeline descriptions from `gst-pipelines/<profile>/<role>.pipeline`, with `${NAME}`
//! placeholders filled in.

use std::{collections::BTreeMap, path::Path};

use gstreamer as gst;
use gstreamer::prelude::*;

use super::MediaError;

/// The descriptions compiled into the binary, by (profile, role).
pub const BUILT_IN: &[(&str, &str, &str)] = &[
    (
        "software",
        "teacher",
        include_str!("../../gst-pipelines/software/teacher.pipeline"),
    ),
    (
        "software",
        "classroom",
        include_str!("../../gst-pipelines/software/classroom.pipeline"),
    ),
    (
        "pi4",
        "teacher",
        include_str!("../../gst-pipelines/pi4/teacher.pipeline"),
    ),
    (
        "pi4",
        "classroom",
        include_str!("../../gst-pipelines/pi4/classroom.pipeline"),
    ),
    (
        "pi5",
        "teacher",
        include_str!("../../gst-pipelines/pi5/teacher.pipeline"),
    ),
    (
        "pi5",
        "classroom",
        include_str!("../../gst-pipelines/pi5/classroom.pipeline"),
    ),
    (
        "vaapi",
        "teacher",
        include_str!("../../gst-pipelines/vaapi/teacher.pipeline"),
    ),
    (
        "vaapi",
        "classroom",
        include_str!("../../gst-pipelines/vaapi/classroom.pipeline"),
    ),
    (
        "nvidia",
        "teacher",
        include_str!("../../gst-pipelines/nvidia/teacher.pipeline"),
    ),
    (
        "nvidia",
        "classroom",
        include_str!("../../gst-pipelines/nvidia/classroom.pipeline"),
    ),
    (
        "lan",
        "slate",
        include_str!("../../gst-pipelines/lan/slate.pipeline"),
    ),
    (
        "lan",
        "watch",
        include_str!("../../gst-pipelines/lan/watch.pipeline"),
    ),
    (
        "baseline",
        "srt-sender",
        include_str!("../../gst-pipelines/baseline/srt-sender.pipeline"),
    ),
    (
        "baseline",
        "srt-receiver",
        include_str!("../../gst-pipelines/baseline/srt-receiver.pipeline"),
    ),
];

/// Platform profiles with built-in descriptions (the benchmark's baseline is not one).
pub fn built_in_profiles() -> Vec<&'static str> {
    let mut names: Vec<_> = BUILT_IN
        .iter()
        .map(|(p, _, _)| *p)
        .filter(|p| *p != "baseline" && *p != "lan")
        .collect();
    names.dedup();
    names
}

/// The description text for `profile`/`role`, from `dir` if given, else built in.
pub fn description(dir: Option<&Path>, profile: &str, role: &str) -> Result<String, MediaError> {
    if let Some(dir) = dir {
        let path = dir.join(profile).join(format!("{role}.pipeline"));
        return std::fs::read_to_string(&path).map_err(|e| MediaError::Description {
            path: path.display().to_string(),
            message: e.to_string(),
        });
    }
    BUILT_IN
        .iter()
        .find(|(p, r, _)| *p == profile && *r == role)
        .map(|(_, _, text)| text.to_string())
        .ok_or_else(|| MediaError::Description {
            path: format!("{profile}/{role}.pipeline"),
            message: "no such built-in pipeline".into(),
        })
}

/// Strip comments, join lines, and replace every `${NAME}` from `vars`. A placeholder
/// with no value is an error rather than a silently broken pipeline.
pub fn render(text: &str, vars: &BTreeMap<&str, String>) -> Result<String, String> {
    let joined: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut out = joined.join(" ");
    for (name, value) in vars {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    if let Some(start) = out.find("${") {
        let name: String = out[start + 2..].chars().take_while(|c| *c != '}').collect();
        return Err(format!("placeholder ${{{name}}} has no value"));
    }
    Ok(out)
}

/// Build (but do not start) the pipeline for `profile`/`role`.
pub fn build(
    dir: Option<&Path>,
    profile: &str,
    role: &str,
    vars: &BTreeMap<&str, String>,
) -> Result<gst::Pipeline, MediaError> {
    let err = |message: String| MediaError::Build {
        profile: profile.into(),
        role: role.into(),
        message,
    };
    let text = description(dir, profile, role)?;
    let launch = render(&text, vars).map_err(err)?;
    tracing::debug!(%profile, %role, %launch, "building pipeline");
    let element = gst::parse::launch(&launch).map_err(|e| err(e.to_string()))?;
    element
        .downcast::<gst::Pipeline>()
        .map_err(|_| err("description is not a pipeline".into()))
}

/// Let each sink of `pipeline` play as soon as its own track has data.
///
/// By default a sink prerolls: it holds its first buffer until every other sink has
/// one too. In the classroom that made the first words wait for the first picture
/// (0.6 s of sound then came as one burst), and a lesson that starts without pictures
/// (audio-only on a bad link) would never be heard. Covers sinks that auto-detecting
/// bins (`autoaudiosink`) create later, when the pipeline starts.
pub fn sinks_play_independently(pipeline: &gst::Pipeline) {
    fn no_preroll(element: &gst::Element) {
        if element.element_flags().contains(gst::ElementFlags::SINK)
            && element
                .find_property("async")
                .is_some_and(|p| p.value_type() == bool::static_type())
        {
            element.set_property("async", false);
        }
    }
    pipeline.connect_deep_element_added(|_, _, element| no_preroll(element));
    for element in pipeline.iterate_recurse().into_iter().flatten() {
        no_preroll(&element);
    }
}

/// Fetch a named element and cast it to the type the code binds to.
pub fn element<T: IsA<gst::Element>>(
    pipeline: &gst::Pipeline,
    name: &'static str,
) -> Result<T, MediaError> {
    pipeline
        .by_name(name)
        .and_then(|e| e.downcast::<T>().ok())
        .ok_or(MediaError::MissingElement(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_fills_and_refuses_missing() {
        let vars = BTreeMap::from([("A", "x".to_string())]);
        assert_eq!(
            render("# c\n${A} ! fakesink\n  \n", &vars).unwrap(),
            "x ! fakesink"
        );
        assert!(render("${A} ! ${B}", &vars).unwrap_err().contains("${B}"));
    }

    /// One track's sink plays while the other track has sent nothing yet.
    #[test]
    fn a_sink_does_not_wait_for_the_other_track() {
        crate::media::init().unwrap();
        let pipeline = gst::parse::launch(
            "appsrc name=a is-live=true format=time caps=text/x-raw,format=utf8 \
               ! fakesink name=a_sink sync=false signal-handoffs=true \
             appsrc name=b is-live=true format=time caps=text/x-raw,format=utf8 \
               ! fakesink sync=false",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        sinks_play_independently(&pipeline);
        let (tx, rx) = std::sync::mpsc::channel();
        let sink: gst::Element = element(&pipeline, "a_sink").unwrap();
        sink.connect("handoff", false, move |_| {
            let _ = tx.send(());
            None
        });
        pipeline.set_state(gst::State::Playing).unwrap();
        let a: gstreamer_app::AppSrc = element(&pipeline, "a").unwrap();
        let mut buffer = gst::Buffer::from_slice(b"hello".to_vec());
        buffer.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
        a.push_buffer(buffer).unwrap();
        let played = rx.recv_timeout(std::time::Duration::from_secs(5));
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(played.is_ok(), "the sink waited for the other track");
    }

    #[test]
    fn built_in_descriptions_exist() {
        for profile in built_in_profiles() {
            for role in ["teacher", "classroom"] {
                assert!(description(None, profile, role).is_ok(), "{profile}/{role}");
            }
        }
    }
}
