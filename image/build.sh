#!/usr/bin/env bash
# Build a flashable classbox disk image: Debian 12 with the classbox .deb and its
# GStreamer runtime, systemd-networkd (DHCP on wired, Wi-Fi from wifi.txt), no password
# on any account, SSH off unless the boot partition holds ssh_authorized_keys.
#
#   image/build.sh --arch amd64   UEFI PC / mini-PC (systemd-boot), GPT
#   image/build.sh --arch arm64   Raspberry Pi 4/5 (raspi-firmware, linux-image-arm64), MBR
#   options: --deb FILE (use this .deb instead of building one), --out DIR (default
#            target/image), --size 3G (raw image size; the root grows to the card on
#            first boot), --mirror URL (default http://deb.debian.org/debian)
#
# Output: DIR/classbox-<version>-<arch>.img.xz and .bmap (flash with
# `bmaptool copy classbox-….img.xz /dev/sdX`, or any image writer).
# Boot partition (FAT, label CLASSBOX): put classbox.toml (and wifi.txt,
# ssh_authorized_keys) there before the first boot; see the README, "Deploy on a box".
# Needs root (mmdebstrap, file ownership in the root file system) and ~6 GiB free.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

say() { printf '\033[1mimage [%4ss]:\033[0m %s\n' "$(( $(date +%s) - started ))" "$*"; }
die() { printf '\033[1mimage:\033[0m %s\n' "$*" >&2; exit 1; }
. image/lib.sh
started=$(date +%s)

arch="" deb="" out="$repo/target/image" size=3G mirror=http://deb.debian.org/debian
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="${2:-}"; shift 2 ;;
    --deb) deb="${2:-}"; shift 2 ;;
    --out) out="${2:-}"; shift 2 ;;
    --size) size="${2:-}"; shift 2 ;;
    --mirror) mirror="${2:-}"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
case "$arch" in
  amd64|arm64) ;;
  "") die "say which image: --arch amd64 or --arch arm64" ;;
  *) die "unknown --arch '$arch' (amd64 or arm64)" ;;
esac
[ "$(id -u)" = 0 ] || die "run as root: mmdebstrap and the root file system's ownership need it (sudo $0 $*)"
mkdir -p "$out"
avail_kb=$(df -Pk "$out" | awk 'NR==2 {print $4}')
[ "$avail_kb" -gt $((6 * 1024 * 1024)) ] || die "need 6 GiB free in $out, have $((avail_kb / 1024)) MiB"

# --- tools ---------------------------------------------------------------------------
tools=(mmdebstrap dosfstools mtools e2fsprogs fdisk bmap-tools xz-utils arch-test)
[ "$arch" = arm64 ] && tools+=(qemu-user-static)
install_missing "${tools[@]}" || true
if [ "$arch" = arm64 ]; then
  # mmdebstrap runs the arm64 packages' scripts through qemu's binfmt handler.
  if ! [ -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
      die "cannot mount binfmt_misc (needed to run arm64 package scripts); in a container, run it on the host"
  fi
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] ||
    /lib/systemd/systemd-binfmt /usr/lib/binfmt.d/qemu-aarch64.conf ||
    die "cannot register qemu-aarch64 with binfmt_misc"
  arch-test arm64 >/dev/null || die "arm64 binaries do not run here through qemu-user-static"
fi

# --- the .deb --------------------------------------------------------------------------
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
if [ -z "$deb" ]; then
  if [ "$arch" = arm64 ]; then
    say "building the arm64 .deb (image/cross-build.sh)"
    image/cross-build.sh aarch64 --no-test
    deb=$(ls -t target/cross/aarch64-unknown-linux-gnu/debian/classbox_*_arm64.deb | head -n1)
  else
    say "building the amd64 .deb (cargo build --release, cargo deb)"
    command -v cargo >/dev/null || die "no cargo: run image/dev-setup.sh first"
    cargo build --release --locked
    command -v cargo-deb >/dev/null || cargo install cargo-deb --version 3.8.0 --locked
    cargo deb --no-build --strip >/dev/null
    deb=$(ls -t target/debian/classbox_*_amd64.deb | head -n1)
  fi
fi
[ -f "$deb" ] || die "no such .deb: $deb"
deb=$(realpath "$deb")
dpkg-deb --field "$deb" Architecture | grep -qx "$arch" || die "$deb is not for $arch"
say "using $deb"

# --- root file system ------------------------------------------------------------------
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
root_uuid=$(cat /proc/sys/kernel/random/uuid)
packages=(
  systemd systemd-sysv systemd-timesyncd systemd-resolved udev dbus kmod
  initramfs-tools iproute2 iputils-ping netbase ca-certificates wpasupplicant
  openssh-server cloud-guest-utils e2fsprogs dosfstools fdisk less
  gstreamer1.0-alsa alsa-utils
)
if [ "$arch" = amd64 ]; then
  packages+=(linux-image-amd64 systemd-boot-efi intel-microcode amd64-microcode)
else
  packages+=(linux-image-arm64 raspi-firmware firmware-brcm80211 wireless-regdb)
fi
# Files only the x86 image carries (its systemd-boot loader entry); a Pi boots from
# the firmware partition that customize.sh fills.
arch_hooks=()
[ "$arch" = amd64 ] && arch_hooks+=(--customize-hook="sync-in $repo/image/amd64 /")
say "mmdebstrap: Debian 12 $arch, ${#packages[@]} packages and their dependencies (a few minutes)"
: >"$out/mmdebstrap-$arch.log"
mmdebstrap --mode=root --variant=minbase --arch="$arch" \
  --components="main non-free-firmware" \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --aptopt='APT::Install-Recommends "false"' \
  --setup-hook='mkdir -p "$1/boot/firmware"' \
  --customize-hook='rm -f "$1/etc/resolv.conf" && cp /etc/resolv.conf "$1/etc/resolv.conf"' \
  --customize-hook="copy-in $deb /tmp" \
  --customize-hook='chroot "$1" sh -c "DEBIAN_FRONTEND=noninteractive apt-get install -y -q /tmp/$(basename '"$deb"')"' \
  --customize-hook="sync-in $repo/image/rootfs /" \
  "${arch_hooks[@]}" \
  --customize-hook="$repo/image/customize.sh \"\$1\" $arch $root_uuid" \
  bookworm "$rootfs" \
  "deb $mirror bookworm main non-free-firmware" \
  "deb $mirror bookworm-updates main non-free-firmware" \
  "deb ${mirror%/debian}/debian-security bookworm-security main non-free-firmware" \
  >"$out/mmdebstrap-$arch.log" 2>&1 &
mm=$!
# Progress: mmdebstrap's own step lines, as they come.
tail -n +1 -f "$out/mmdebstrap-$arch.log" --pid=$mm | grep --line-buffered -E "^(I|W|E): " | sed -u 's/^/    /' || true
wait $mm || { tail -n 30 "$out/mmdebstrap-$arch.log" >&2; die "mmdebstrap failed (full log: $out/mmdebstrap-$arch.log)"; }
[ -x "$rootfs/usr/bin/classbox" ] || die "no /usr/bin/classbox in the root file system (log: $out/mmdebstrap-$arch.log)"
say "root file system: $(du -sh "$rootfs" | cut -f1)"

# --- boot partition (FAT) ---------------------------------------------------------------
boot_mb=256
bootimg="$work/boot.img"
mkfs.vfat -C -F 32 -n CLASSBOX "$bootimg" $((boot_mb * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
mcopy -i "$bootimg" -s "$rootfs/boot/firmware/"* ::/ 2>/dev/null || true
rm -rf "${rootfs:?}/boot/firmware/"*
cat >"$work/README.txt" <<EOF
classbox $version ($arch)

Put these files here before the first boot (this partition is readable on any computer):
  classbox.toml         the box's settings (see classbox.example.toml); applied at boot,
                        then removed from here (it holds secrets). If it is refused, the
                        reason is in classbox-error.txt and the file stays.
  wifi.txt              ssid=..., psk=..., country=GB   (optional; removed once applied)
  ssh_authorized_keys   public keys for root; turns SSH on (there are no passwords)
Without classbox.toml the box starts its set-up page: http://classbox.local:8080
EOF
sed 's/$/\r/' "$work/README.txt" >"$work/README-classbox.txt"
mcopy -i "$bootimg" "$work/README-classbox.txt" ::/README-classbox.txt
sed 's/$/\r/' "$repo/classbox.example.toml" >"$work/classbox.example.toml"
mcopy -i "$bootimg" "$work/classbox.example.toml" ::/classbox.example.toml
say "boot partition: $(mdir -i "$bootimg" -b ::/ | wc -l) entries"

# --- root partition (ext4, filled from the directory: no loop devices needed) -----------
rootimg="$work/root.img"
root_mb=$(( $(du -sm "$rootfs" | cut -f1) * 13 / 10 + 200 ))
mkfs.ext4 -q -L classbox-root -U "$root_uuid" -d "$rootfs" "$rootimg" "${root_mb}M"
say "root partition: ${root_mb} MiB"

# --- the disk ------------------------------------------------------------------------------
img="$out/classbox-$version-$arch.img"
total_mb=$(numfmt --from=iec "$size" | awk '{print int($1 / 1048576)}')
need_mb=$((1 + boot_mb + root_mb + 1))
[ "$total_mb" -ge "$need_mb" ] || total_mb=$need_mb
rm -f "$img" "$img.xz" "$img.bmap"
truncate -s "${total_mb}M" "$img"
if [ "$arch" = amd64 ]; then
  sfdisk -q "$img" <<EOF
label: gpt
start=1MiB, size=${boot_mb}MiB, type=U, name=boot
start=$((1 + boot_mb))MiB, size=${root_mb}MiB, type=L, name=root
EOF
else
  # The Pi's firmware reads a FAT32 (LBA) partition on an MBR disk.
  sfdisk -q "$img" <<EOF
label: dos
start=1MiB, size=${boot_mb}MiB, type=c, bootable
start=$((1 + boot_mb))MiB, size=${root_mb}MiB, type=83
EOF
fi
dd if="$bootimg" of="$img" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$rootimg" of="$img" bs=1M seek=$((1 + boot_mb)) conv=notrunc,sparse status=none
bmaptool create "$img" >"$img.bmap"
say "compressing (xz)"
xz -T0 -6 -f -k "$img"
say "done: $img.xz ($(du -h "$img.xz" | cut -f1); raw $(du -h --apparent-size "$img" | cut -f1), $(du -h "$img" | cut -f1) used) and $img.bmap"
