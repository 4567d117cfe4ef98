#!/usr/bin/env bash
# Build classbox for arm64 (Raspberry Pi 4/5) on an amd64 Debian 12 machine, without
# Docker: Debian multiarch, Debian's rustc-web/cargo-web (1.96, with the arm64 std),
# gcc-aarch64-linux-gnu and the :arm64 GStreamer -dev packages to link against. Then it
# packs the .deb and runs the binary under qemu-aarch64-static (--version, doctor, and a
# short headless demo with the arm64 GStreamer runtime).
#
#   image/cross-build.sh aarch64            build, pack, test
#   image/cross-build.sh aarch64 --no-test  build and pack only
#
# Output: target/cross/aarch64-unknown-linux-gnu/release/classbox and
#         target/cross/aarch64-unknown-linux-gnu/debian/classbox_<version>_arm64.deb
# Installs what it needs (apt as root or through sudo; cargo-deb into target/cross/tools).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1mcross-build:\033[0m %s\n' "$*"; }
die() { printf '\033[1mcross-build:\033[0m %s\n' "$*" >&2; exit 1; }
. image/lib.sh

arch="${1:-}"
run_tests=1
case "$arch" in
  aarch64|arm64) ;;
  -h|--help|"") sed -n '2,13p' "$0"; [ -n "$arch" ] && exit 0 || exit 2 ;;
  *) die "unknown architecture '$arch' (only aarch64 is supported)" ;;
esac
shift
for arg in "$@"; do
  case "$arg" in
    --no-test) run_tests=0 ;;
    *) die "unknown option $arg (use --no-test or nothing)" ;;
  esac
done

triple=aarch64-unknown-linux-gnu
[ "$(dpkg --print-architecture)" = amd64 ] || die "this script runs on an amd64 Debian machine"
. /etc/os-release
[ "${VERSION_CODENAME:-}" = bookworm ] || say "warning: tested on Debian 12 (bookworm), this is ${PRETTY_NAME:-unknown}"

avail_kb=$(df -Pk . | awk 'NR==2 {print $4}')
[ "$avail_kb" -gt $((6 * 1024 * 1024)) ] || die "need 6 GiB free here for the arm64 build, have $((avail_kb / 1024)) MiB"

# --- Debian packages ---------------------------------------------------------------
packages=(
  rustc-web cargo-web libstd-rust-web-dev:arm64
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu
  pkg-config git ca-certificates qemu-user-static dpkg-dev
  libgstreamer1.0-dev:arm64 libglib2.0-dev:arm64 libgstreamer-plugins-base1.0-0:arm64
)
# NOTE: libgstreamer-plugins-base1.0-dev is not co-installable across architectures in
# Debian 12: apt would remove the amd64 one (and break native builds). Its arm64 .deb is
# unpacked into target/cross/sysroot instead (below); only its .pc files and .so links
# are needed to link, against the arm64 runtime libraries installed above.
if [ "$run_tests" = 1 ]; then
  # The arm64 GStreamer runtime beside the amd64 one (Multi-Arch: same), for the demo.
  packages+=(
    gstreamer1.0-plugins-base:arm64 gstreamer1.0-plugins-good:arm64
    gstreamer1.0-plugins-bad:arm64 gstreamer1.0-plugins-ugly:arm64 gstreamer1.0-libav:arm64
    gstreamer1.0-x:arm64
  )
fi
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  say "adding the arm64 architecture to dpkg"
  as_root dpkg --add-architecture arm64
  need_update=1
fi
if ! install_missing "${packages[@]}"; then
  if [ "${need_update:-0}" = 1 ]; then as_root apt-get update -q; else say "Debian packages present"; fi
fi

sysroot="$PWD/target/cross/sysroot"
if ! [ -f "$sysroot/pkgconfig/gstreamer-app-1.0.pc" ]; then
  say "unpacking libgstreamer-plugins-base1.0-dev:arm64 into $sysroot"
  rm -rf "$sysroot" && mkdir -p "$sysroot/debs" "$sysroot/pkgconfig" "$sysroot/lib"
  (cd "$sysroot/debs" && apt-get download -q libgstreamer-plugins-base1.0-dev:arm64)
  dpkg-deb -x "$sysroot"/debs/libgstreamer-plugins-base1.0-dev_*_arm64.deb "$sysroot/root"
  cp "$sysroot"/root/usr/lib/aarch64-linux-gnu/pkgconfig/*.pc "$sysroot/pkgconfig/"
  # The dev links (libgstapp-1.0.so -> libgstapp-1.0.so.0), aimed at the installed libraries.
  for link in "$sysroot"/root/usr/lib/aarch64-linux-gnu/*.so; do
    ln -sf "/usr/lib/aarch64-linux-gnu/$(readlink "$link")" "$sysroot/lib/$(basename "$link")"
  done
fi

# Debian's toolchain, whatever rustup puts first on PATH: its std is the one with arm64.
export RUSTC=/usr/bin/rustc
cargo=/usr/bin/cargo
say "$($cargo --version), $($RUSTC --version)"

# --- build ---------------------------------------------------------------------------
export CARGO_TARGET_DIR="$PWD/target/cross"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export PKG_CONFIG_ALLOW_CROSS=1
export PKG_CONFIG_PATH=
export PKG_CONFIG_LIBDIR="$sysroot/pkgconfig:/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-L native=$sysroot/lib"
started=$(date +%s)
say "building classbox for $triple (release; progress below)"
$cargo build --release --locked --target "$triple"
bin="$CARGO_TARGET_DIR/$triple/release/classbox"
say "built $(du -h "$bin" | cut -f1) in $(( $(date +%s) - started )) s: $bin"

# --- .deb ----------------------------------------------------------------------------
tools="$PWD/target/cross/tools"
cargo_deb="$tools/bin/cargo-deb"
if ! [ -x "$cargo_deb" ]; then
  if command -v cargo-deb >/dev/null; then
    cargo_deb=$(command -v cargo-deb)
  else
    say "installing cargo-deb into $tools (once)"
    # The host build of cargo-deb: no cross settings.
    env -u CARGO_TARGET_DIR -u PKG_CONFIG_LIBDIR -u PKG_CONFIG_ALLOW_CROSS \
      $cargo install cargo-deb --version 3.8.0 --locked --root "$tools"
  fi
fi
# Stripped: the box has little storage (line tables stay in target/ for crash reports).
"$cargo_deb" --no-build --target "$triple" --strip >/dev/null
deb=$(ls -t "$CARGO_TARGET_DIR/$triple/debian/"classbox_*_arm64.deb | head -n1)
say "packed $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb --field "$deb" Package Version Architecture Depends

# --- run it under qemu ----------------------------------------------------------------
if [ "$run_tests" = 1 ]; then
  qemu=(qemu-aarch64-static -L /usr/aarch64-linux-gnu)
  say "under qemu-aarch64-static: classbox --version"
  version=$("${qemu[@]}" "$bin" --version)
  echo "$version"
  grep -q "$triple" <<<"$version" || die "--version does not name $triple: $version"

  # doctor and the demo start threads (tokio's workers, GStreamer's). Some hosts' qemu-user
  # never returns from the first pthread_create (seen on Debian 12's qemu 7.2 in a
  # Firecracker VM: glibc walks its thread-stack list forever); there they are stopped
  # after a while and reported as unverified instead of hanging the build.
  limit=${QEMU_TEST_TIMEOUT:-300}
  unverified=()
  # GStreamer's arm64 plugin scanner and registry, kept apart from the host's.
  export GST_REGISTRY="$CARGO_TARGET_DIR/gst-registry-arm64.bin"
  export GST_REGISTRY_FORK=no  # scan in-process: no binfmt needed for the arm64 scanner
  export GST_PLUGIN_SYSTEM_PATH=/usr/lib/aarch64-linux-gnu/gstreamer-1.0
  export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu

  say "under qemu-aarch64-static: classbox doctor --json (at most $limit s)"
  status=0
  doctor=$(timeout "$limit" "${qemu[@]}" "$bin" doctor --json) || status=$?
  if [ "$status" = 124 ]; then
    say "UNVERIFIED: doctor did not finish within $limit s under qemu-user on this host"
    unverified+=(doctor)
  else
    echo "$doctor" | head -c 2000; echo
    grep -q '"profile"' <<<"$doctor" || die "doctor --json under qemu gave no profile (exit $status)"
  fi

  say "under qemu-aarch64-static: a 20 s headless demo (teacher -> relay -> classroom)"
  demo_log="$CARGO_TARGET_DIR/arm64-demo.log"
  status=0
  timeout "$limit" "${qemu[@]}" "$bin" demo --headless --duration 20 --web 127.0.0.1:0 >"$demo_log" 2>&1 || status=$?
  if [ "$status" = 0 ]; then
    tail -n 5 "$demo_log"
    say "demo ran to its end under emulation"
  elif [ "$status" = 124 ]; then
    say "UNVERIFIED: the demo did not finish within $limit s under qemu-user on this host"
    unverified+=(demo)
  else
    tail -n 30 "$demo_log" >&2
    die "the headless demo failed under qemu (log: $demo_log)"
  fi
  if [ ${#unverified[@]} -gt 0 ]; then
    say "the binary and .deb are built; under this host's qemu-user only --version was verified (not: ${unverified[*]})"
  fi
fi
say "done in $(( $(date +%s) - started )) s"
