#!/usr/bin/env bash
# The patched crates' own test suites. classbox builds quinn-proto and moq-net from
# vendor/ (see the [patch.crates-io] notes in Cargo.toml), and each patch carries its
# tests there, next to the upstream ones it must not break; `cargo test` here does not
# reach them. Each crate resolves its own dev-dependencies (its Cargo.lock, --locked)
# into target/vendored.
set -euo pipefail
cd "$(dirname "$0")/.."
for crate in quinn-proto moq-net; do
    echo "== vendor/$crate: its own unit tests"
    CARGO_TARGET_DIR=target/vendored \
        cargo test --locked --manifest-path "vendor/$crate/Cargo.toml" --lib
done
