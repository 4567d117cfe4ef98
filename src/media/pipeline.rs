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

    #[test]
    fn built_in_descriptions_exist() {
        for profile in built_in_profiles() {
            for role in ["teacher", "classroom"] {
                assert!(description(None, profile, role).is_ok(), "{profile}/{role}");
            }
        }
    }
}
