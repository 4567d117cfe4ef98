//! Records the git commit, its time and the target triple (for `classbox --version`
//! and the outbox's clock check).
fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CLASSBOX_GIT_COMMIT={commit}");
    // The commit's time: no event this build records can be older (a clock check).
    let source_unix = std::process::Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| s.parse::<i64>().is_ok())
        .unwrap_or_else(|| "0".into());
    println!("cargo:rustc-env=CLASSBOX_SOURCE_UNIX={source_unix}");
    println!(
        "cargo:rustc-env=CLASSBOX_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}
