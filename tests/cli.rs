//! The binary as a user meets it: config errors name the key, `--check`, `doctor`,
//! `relay token`, `--version`.

mod common;

use std::process::Command;

fn classbox() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_classbox"));
    // Keep the host's config and environment out of the test.
    c.env_remove("CLASSBOX_CONFIG").env("CLASSBOX_LOG", "error");
    for (k, _) in std::env::vars() {
        if k.starts_with("CLASSBOX_") && k != "CLASSBOX_LOG" {
            c.env_remove(k);
        }
    }
    c
}

fn write_config(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("classbox.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn bad_config_fails_fast_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[link]\nrelay = \"relay.example.org\"\n", "link.relay"),
        (
            "[classroom]\nlatency_budget_ms = \"fast\"\n",
            "classroom.latency_budget_ms",
        ),
        (
            "[classroom]\nweb_listne = \"0.0.0.0:80\"\n",
            "classroom.web_listne",
        ),
        ("[teacher]\nframerate = 500\n", "teacher.framerate"),
    ];
    for (text, key) in cases {
        let path = write_config(&dir, text);
        let out = classbox()
            .args(["--check", "--config"])
            .arg(&path)
            .arg("classroom")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {stderr}");
        assert!(stderr.contains(&format!("`{key}`")), "{key}: {stderr}");
        assert!(stderr.contains("classbox.toml"), "{key}: {stderr}");
    }

    // An env var is blamed by name.
    let path = write_config(&dir, "");
    let out = classbox()
        .args(["--check", "--config"])
        .arg(&path)
        .arg("classroom")
        .env("CLASSBOX_LINK_FINGERPRINT", "nope")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("CLASSBOX_LINK_FINGERPRINT"), "{stderr}");

    // A role that needs the relay says so.
    let out = classbox()
        .args(["--check", "--config"])
        .arg(&path)
        .args(["teacher", "--duration", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`link.relay`"), "{stderr}");
    // A box without one is valid: a fresh box waits for its set-up page.
    let out = classbox()
        .args(["--check", "--config"])
        .arg(&path)
        .arg("classroom")
        .output()
        .unwrap();
    common::assert_succeeded(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("set-up page"));

    // A missing explicit config file is an error, not silently the defaults.
    let out = classbox()
        .args(["--check", "--config", "/nonexistent/classbox.toml", "relay"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/classbox.toml"));
}

#[test]
fn good_config_checks_out() {
    let dir = tempfile::tempdir().unwrap();
    let fp = "ab".repeat(32);
    let path = write_config(
        &dir,
        &format!("[link]\nrelay = \"127.0.0.1:4443\"\nfingerprint = \"{fp}\"\nroom = \"maths\"\n"),
    );
    let out = classbox()
        .args(["--check", "--config"])
        .arg(&path)
        .arg("classroom")
        .output()
        .unwrap();
    common::assert_succeeded(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
}

#[test]
fn relay_token_and_fingerprint_commands() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("relay");
    let out = classbox()
        .args(["relay", "--state-dir"])
        .arg(&state)
        .args([
            "token", "--room", "maths-4b", "--role", "teacher", "--ttl", "2h",
        ])
        .output()
        .unwrap();
    common::assert_succeeded(&out);
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(token.split('.').count(), 3, "{token}");
    // The key the token was signed with is kept for the relay.
    let key = classbox::auth::TokenKey::load_or_create(&state.join("token-key.jwk")).unwrap();
    let claims = key
        .verify(&token, "maths-4b", classbox::auth::unix_now())
        .unwrap();
    assert_eq!(claims.put, vec!["teacher".to_string()]);

    let out = classbox()
        .args(["relay", "--state-dir"])
        .arg(&state)
        .args(["token", "--room", "../etc", "--role", "box"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--room"));

    let out = classbox()
        .args(["relay", "--state-dir"])
        .arg(&state)
        .arg("fingerprint")
        .output()
        .unwrap();
    let fp = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(fp.starts_with("sha256:") && fp.len() == 7 + 64, "{fp}");
}

#[test]
fn doctor_json_reports_profile_and_elements() {
    let out = classbox()
        .args(["doctor", "--json", "--config", "/dev/null"])
        .output()
        .unwrap();
    common::assert_succeeded(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["media"]["gstreamer_version"]
            .as_str()
            .unwrap()
            .starts_with("GStreamer")
    );
    assert_eq!(v["media"]["profile"]["Ok"]["name"], "software");
    // Every profile is accounted for, with the reason it was or was not taken.
    let profiles = v["media"]["profiles"].as_array().unwrap();
    let names: Vec<&str> = profiles
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pi5", "pi4", "vaapi", "nvidia", "software"]);
    for p in profiles {
        assert!(!p["why"].as_str().unwrap().is_empty(), "{p}");
    }
    assert_eq!(profiles[4]["usable"], true);
    assert!(
        profiles[1]["why"]
            .as_str()
            .unwrap()
            .contains("not a Raspberry Pi 4")
    );
    assert!(
        v["media"]["profile"]["Ok"]["reason"]
            .as_str()
            .unwrap()
            .contains("not taken")
    );
    let found: Vec<&str> = v["media"]["elements"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["present"] == true)
        .map(|e| e["element"].as_str().unwrap())
        .collect();
    assert!(
        found.contains(&"x264enc") || found.contains(&"openh264enc"),
        "{found:?}"
    );
    assert_eq!(v["relay"]["state"], "not_configured");
    assert_eq!(v["config"]["ok"], true);
}

#[test]
fn version_names_commit_and_target() {
    let out = classbox().arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(env!("CARGO_PKG_VERSION")) && text.contains("commit"),
        "{text}"
    );
    assert!(text.contains("linux"), "{text}");
}

#[test]
fn example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/classbox.example.toml");
    let out = classbox()
        .args(["--check", "--config", path, "relay"])
        .output()
        .unwrap();
    common::assert_succeeded(&out);
}
