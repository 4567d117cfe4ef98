//! A short `classbox bench` run on a step trace: the figures are produced and sane
//! (not the targets: timing on a shared CI machine is not asserted).

use std::process::Command;

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

    let out = Command::new(env!("CARGO_BIN_EXE_classbox"))
        .args(["bench", "--duration", "10", "--json"])
        .arg(&trace)
        .env("CLASSBOX_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
