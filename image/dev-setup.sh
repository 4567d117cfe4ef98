#!/usr/bin/env bash
# Set up a Debian 12 machine to build, run and test classbox. Idempotent: run it again
# any time; it only installs what is missing.
#
#   image/dev-setup.sh          build + run dependencies (GStreamer, a Rust toolchain)
#   image/dev-setup.sh --test   the same, plus what the test suite needs (moq-relay,
#                               Chromium + chromedriver, Node.js and the test LRS)
set -euo pipefail

want_test=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "dev-setup: unknown option $arg (use --test or nothing)" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1mdev-setup:\033[0m %s\n' "$*"; }
. "$(dirname "$0")/lib.sh"

# --- Debian packages ---------------------------------------------------------------
packages=(
  pkg-config build-essential git ca-certificates iproute2 util-linux
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
  gstreamer1.0-x  # textoverlay (pango): the slates
)
install_missing "${packages[@]}" || say "Debian packages present"

# --- Rust (>= 1.92) ------------------------------------------------------------------
rust_ok() {
  command -v cargo >/dev/null 2>&1 || return 1
  local v; v=$(rustc --version 2>/dev/null | awk '{print $2}')
  [ "$(printf '%s\n1.92.0\n' "$v" | sort -V | head -n1)" = "1.92.0" ]
}
if ! rust_ok; then
  # Debian 12's own rustc is too old; rustc-web (1.9x) is a Debian package too.
  say "no Rust >= 1.92 found; installing Debian's rustc-web and cargo-web"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q rustc-web cargo-web
fi
say "$(cargo --version)"

# --- test tools ----------------------------------------------------------------------
if [ "$want_test" = 1 ]; then
  # A stock moq-relay for the interop test. Cached in ~/.cargo/bin: the first build
  # takes a while (only the QUIC listener is built), later runs skip it.
  relay_bin="${CARGO_HOME:-$HOME/.cargo}/bin/moq-relay"
  if [ -x "$relay_bin" ] && "$relay_bin" --version 2>/dev/null | grep -q "0.17.10"; then
    say "moq-relay 0.17.10 present"
  else
    say "building moq-relay 0.17.10 (first time only; several minutes)"
    # Not --locked: one locked crate version is missing from the registry.
    cargo install moq-relay --version 0.17.10 --no-default-features --features noq
  fi

  # A real browser for the page tests: Debian's Chromium and its WebDriver.
  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    say "installing Chromium and chromedriver (page tests)"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver
  else
    say "Chromium present"
  fi

  # A real LRS for the LMS outbox tests (Learning Locker's xapi-statements, pinned by
  # package-lock.json). Node.js from Debian if the machine has none.
  if ! command -v npm >/dev/null 2>&1; then
    say "installing Node.js and npm"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm
  fi
  lrs_dir="$(dirname "$0")/lrs"
  if [ -f "$lrs_dir/node_modules/xapi-statements/dist/server.js" ]; then
    say "test LRS present"
  else
    say "installing the test LRS (npm ci in image/lrs)"
    # --ignore-scripts: none of its install scripts is needed to serve statements.
    (cd "$lrs_dir" && npm ci --no-audit --no-fund --ignore-scripts)
  fi
fi
say "done"
