#!/usr/bin/env bash
# Boot smoke test of the amd64 image under QEMU (UEFI through OVMF; KVM when present,
# software emulation otherwise). Puts a classbox.toml on the copy's boot partition as IT
# staff would, boots it with no way out to any network (user networking, restrict=on) and
# the page forwarded to 127.0.0.1, then checks:
#   - classbox.service reports ready to systemd ("Started classbox.service" on the console)
#   - the page answers on the forwarded port, with the classroom name from classbox.toml
#   - after a clean power-off, classbox.toml is gone from the boot partition (secrets moved)
#
#   image/boot-test.sh [IMAGE]     default: target/image/classbox-<version>-amd64.img
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1mboot-test [%4ss]:\033[0m %s\n' "$(( $(date +%s) - started ))" "$*"; }
die() { printf '\033[1mboot-test:\033[0m FAILED: %s\n' "$*" >&2; exit 1; }
. image/lib.sh
started=$(date +%s)

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
image="${1:-target/image/classbox-$version-amd64.img}"
if ! [ -f "$image" ] && [ -f "$image.xz" ]; then
  say "decompressing $image.xz"
  xz -d -k "$image.xz"
fi
[ -f "$image" ] || die "no image at $image (build it: sudo image/build.sh --arch amd64)"

install_missing qemu-system-x86 ovmf mtools curl || true

work=$(mktemp -d)
qemu_pid=""
cleanup() {
  [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

disk="$work/disk.img"
cp --sparse=always "$image" "$disk"
# The boot partition starts at 1 MiB (image/build.sh).
export MTOOLS_SKIP_CHECK=1
cat >"$work/classbox.toml" <<'EOF'
[classroom]
name = "QEMU test box"
display = "headless"
return_feed = "off"

[link]
# Nothing answers here (the VM has no way out): the box keeps dialling, as it would
# while a school's link is down.
relay = "10.0.2.2:4443"
room = "qemu"
EOF
mcopy -i "$disk@@1M" "$work/classbox.toml" ::/classbox.toml
# The journal on the serial console too (this copy only), so a failure shows why, and
# because systemd stops printing its own status lines once the serial getty holds the
# console: the journal's "Started classbox.service" (logged when the daemon sends
# READY=1) is what says the service is ready.
entry=$(mdir -i "$disk@@1M" -b ::/loader/entries | head -n1)
mtype -i "$disk@@1M" "$entry" | sed 's/^options .*/& systemd.journald.forward_to_console=1/' >"$work/entry.conf"
mcopy -o -i "$disk@@1M" "$work/entry.conf" "$entry"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# boot ACCEL: start QEMU in the background (qemu_pid, boot_started).
boot() {
  local accel
  case "$1" in
    # Without arch-capabilities: nested KVM (a CI VM) refuses to set that MSR.
    kvm) accel=(-machine q35,accel=kvm -cpu host,-arch-capabilities) ;;
    tcg) accel=(-machine q35,accel=tcg -cpu max) ;;
  esac
  cp /usr/share/OVMF/OVMF_VARS.fd "$work/vars.fd"
  : >"$work/serial.log"
  say "booting $image with $1 (page forwarded to 127.0.0.1:$port)"
  boot_started=$(date +%s)
  qemu-system-x86_64 "${accel[@]}" -m 1536 -smp 2 \
    -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd \
    -drive if=pflash,format=raw,file="$work/vars.fd" \
    -drive file="$disk",format=raw,if=virtio \
    -netdev "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:$port-:8080" \
    -device virtio-net-pci,netdev=net0 \
    -display none -serial "file:$work/serial.log" \
    -monitor "unix:$work/monitor.sock,server,nowait" 2>"$work/qemu.err" &
  qemu_pid=$!
}

# KVM when it works; some virtualised hosts expose /dev/kvm but stop the guest with
# "KVM internal error" in the firmware (QEMU then sits paused): fall back to software
# emulation, which the issue allows and which takes a few minutes.
accel=tcg
if [ -w /dev/kvm ] && [ "${BOOT_ACCEL:-}" != tcg ]; then accel=kvm; fi
boot "$accel"

ready_at="" page_at=""
deadline=$(( $(date +%s) + ${BOOT_TIMEOUT:-900} ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  if [ "$accel" = kvm ] && grep -q -E "KVM internal error|failed to set MSR" "$work/qemu.err"; then
    say "KVM cannot run this guest here ($(grep -m1 -o -E "KVM internal error|failed to set MSR[^:]*" "$work/qemu.err")); software emulation instead"
    kill "$qemu_pid" 2>/dev/null; wait "$qemu_pid" 2>/dev/null || true
    accel=tcg
    boot tcg
  fi
  kill -0 "$qemu_pid" 2>/dev/null || { cat "$work/qemu.err" >&2; tail -n 40 "$work/serial.log" >&2; die "QEMU exited"; }
  if [ -z "$ready_at" ] && grep -a -q "Started.*classbox.service" "$work/serial.log"; then
    ready_at=$(( $(date +%s) - boot_started ))
    say "classbox.service ready (systemd) ${ready_at} s after power-on"
  fi
  if [ -z "$page_at" ] && curl -fsS --max-time 5 "http://127.0.0.1:$port/setup" -o "$work/page.html" 2>/dev/null; then
    page_at=$(( $(date +%s) - boot_started ))
    say "page answered ${page_at} s after power-on"
  fi
  [ -n "$ready_at" ] && [ -n "$page_at" ] && break
  sleep 1
done
[ -n "$ready_at" ] || { tail -n 60 "$work/serial.log" >&2; die "classbox.service never reported ready"; }
[ -n "$page_at" ] || { tail -n 60 "$work/serial.log" >&2; die "the page never answered on 127.0.0.1:$port"; }
grep -q "QEMU test box" "$work/page.html" || die "the page does not show the name from classbox.toml (bootconfig not applied?)"

say "powering off"
printf 'system_powerdown\n' | python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.stdin.buffer.read()); s.close()' "$work/monitor.sock"
for _ in $(seq 1 120); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 1; done
if kill -0 "$qemu_pid" 2>/dev/null; then die "the VM did not power off within 120 s"; fi
qemu_pid=""
if mdir -i "$disk@@1M" -b ::/ | grep -qi "::/classbox\.toml$"; then
  die "classbox.toml is still on the boot partition"
fi
say "classbox.toml was moved off the boot partition"
say "PASSED ($accel): ready ${ready_at} s, page ${page_at} s after power-on (total $(( $(date +%s) - started )) s)"
