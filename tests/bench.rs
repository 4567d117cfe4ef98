//! A short `classbox bench` run on a step trace: the figures are produced and sane
//! (not the targets: timing on a shared CI machine is not asserted).

mod common;

use std::{
    path::Path,
    process::{Command, Output},
};

/// `classbox bench ARGS TRACE`, which must succeed.
fn bench(args: &[&str], trace: &Path) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_classbox"))
        .arg("bench")
        .args(args)
        .arg(trace)
        .env("CLASSBOX_LOG", "error")
        .output()
        .unwrap();
    common::assert_succeeded(&out);
    out
}

#[test]
fn bench_produces_sane_figures_for_ours_and_the_srt_baseline() {
    let dir = tempfile::tempdir().unwrap();
    // 5 s at ~2 Mbit/s, then 5 s at ~300 kbit/s (one 1500-byte opportunity per line).
    let mut lines = Vec::new();
    for ms in 1..=10_000u64 {
        let every = if ms <= 5_000 { 6 } else { 40 };
        if ms % every == 0 {
            lines.push(ms.to_string());
        }
    }
    let trace = dir.path().join("step.trace");
    std::fs::write(&trace, lines.join("\n") + "\n").unwrap();

    let out = bench(&["--duration", "10", "--json"], &trace);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/10 s"), "no progress line: {stderr}");
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &results[0];
    assert_eq!(run["trace"], "step");
    println!("{}", serde_json::to_string_pretty(run).unwrap());
    for system in ["classbox", "srt_baseline"] {
        let f = &run[system];
        let frames = f["decoded_video_frames"].as_u64().unwrap();
        assert!(frames > 50, "{system}: only {frames} pictures decoded");
        let p50 = f["latency_p50_ms"].as_f64().unwrap();
        let p95 = f["latency_p95_ms"].as_f64().unwrap();
        let max = f["latency_max_ms"].as_f64().unwrap();
        assert!(
            0.0 < p50 && p50 <= p95 && p95 <= max && max < 20_000.0,
            "{system}: {p50} {p95} {max}"
        );
        let capacity = f["capacity_kbps"].as_f64().unwrap();
        assert!(
            (900.0..1300.0).contains(&capacity),
            "{system}: capacity {capacity}"
        );
        let util = f["utilisation"].as_f64().unwrap();
        assert!(util > 0.0 && util < 1.05, "{system}: utilisation {util}");
        let freeze = f["freeze_ratio"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&freeze), "{system}: freeze {freeze}");
        assert!(f["bytes_sent"].as_u64().unwrap() > 100_000);
        // The drop at 5 s is found and measured.
        assert!(
            f["recovery_after_drop_s"].as_f64().is_some(),
            "{system}: no drop found"
        );
    }
}

/// After a 4 s outage the link's queue delivers what was sent as it began: sound and
/// pictures 4 s old. They are dropped, not played: nothing decoded after the outage is
/// anywhere near that old, and the lesson resumes by itself.
#[test]
fn nothing_from_before_an_outage_plays_after_it() {
    let dir = tempfile::tempdir().unwrap();
    // 4 s at ~1 Mbit/s, 4 s of nothing, 4 s at ~1 Mbit/s.
    let lines: Vec<String> = (1..=12_000u64)
        .filter(|ms| ms % 12 == 0 && !(4_000..8_000).contains(ms))
        .map(|ms| ms.to_string())
        .collect();
    let trace = dir.path().join("outage.trace");
    std::fs::write(&trace, lines.join("\n") + "\n").unwrap();
    let timeline = dir.path().join("timeline.csv");

    bench(
        &[
            "--duration",
            "12",
            "--no-baseline",
            "--timeline",
            timeline.to_str().unwrap(),
        ],
        &trace,
    );
    let csv = std::fs::read_to_string(&timeline).unwrap();
    let mut after = [0usize; 2];
    for line in csv.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let (seconds, track, latency_ms): (f64, &str, f64) = (
            fields[2].parse().unwrap(),
            fields[3],
            fields[4].parse().unwrap(),
        );
        if seconds < 8.0 {
            continue;
        }
        // The outage's own age is 4 s; a drop's backlog stays far under 2.5 s.
        assert!(
            latency_ms < 2_500.0,
            "{track} decoded at {seconds:.2} s was {latency_ms:.0} ms old"
        );
        after[usize::from(track == "video")] += 1;
    }
    let [sound, pictures] = after;
    assert!(
        sound > 50 && pictures > 10,
        "did not resume: {sound} sound packets and {pictures} pictures after the outage"
    );
}

/// `--moq-relay`: the same run through a stock moq-relay (a district's), labelled so.
#[test]
fn bench_runs_through_a_stock_moq_relay() {
    let binary = classbox::roles::loopback::StockRelay::installed()
        .expect("moq-relay is not installed: run image/dev-setup.sh --test");
    let dir = tempfile::tempdir().unwrap();
    // ~1 Mbit/s for 8 s.
    let lines: Vec<String> = (1..=8_000u64)
        .filter(|ms| ms % 12 == 0)
        .map(|ms| ms.to_string())
        .collect();
    let trace = dir.path().join("const.trace");
    std::fs::write(&trace, lines.join("\n") + "\n").unwrap();

    let binary = binary.to_str().unwrap();
    let args = [
        "--duration",
        "8",
        "--no-baseline",
        "--json",
        "--moq-relay",
        binary,
    ];
    let out = bench(&args, &trace);
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &results[0];
    assert_eq!(run["relay"], "moq-relay");
    let frames = run["classbox"]["decoded_video_frames"].as_u64().unwrap();
    assert!(
        frames > 50,
        "only {frames} pictures decoded through moq-relay"
    );
}
