#!/bin/sh
# mmdebstrap customize hook for the classbox image (called by image/build.sh):
#   customize.sh ROOTFS ARCH ROOT_UUID
# Identity, no passwords, SSH off, networking, the first-boot settings, the boot loader.
set -eu
root="$1" arch="$2" uuid="$3"
in_root() { chroot "$root" "$@"; }

echo classbox >"$root/etc/hostname"
cat >"$root/etc/hosts" <<EOF
127.0.0.1	localhost
127.0.1.1	classbox
::1		localhost ip6-localhost ip6-loopback
EOF
cat >"$root/etc/fstab" <<EOF
# classbox image
UUID=$uuid	/		ext4	defaults,noatime,errors=remount-ro	0 1
LABEL=CLASSBOX	/boot/firmware	vfat	defaults,umask=0077,nofail	0 2
EOF

# Every box its own identity: machine-id and SSH host keys are made on first boot.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*
# No password anywhere: root is locked; SSH (keys only) is off until enabled.
in_root passwd -l root >/dev/null
in_root systemctl disable ssh.service >/dev/null 2>&1 || true

in_root systemctl enable systemd-networkd.service systemd-resolved.service \
  systemd-timesyncd.service classbox.service classbox-bootconfig.service >/dev/null 2>&1
ln -sf /run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"

# The page on the LAN (tablets and the IT person's laptop), not only on loopback.
mkdir -p "$root/etc/systemd/system/classbox.service.d"
cat >"$root/etc/systemd/system/classbox.service.d/image.conf" <<'EOF'
# classbox image: the page listens on every interface, port 8080 (classbox.local:8080).
# This overrides classroom.web_listen in classbox.toml; delete this file to use that.
[Service]
Environment=CLASSBOX_CLASSROOM_WEB_LISTEN=0.0.0.0:8080
EOF

kernel=$(ls "$root"/boot/vmlinuz-* | sed 's|.*/vmlinuz-||' | sort -V | tail -n1)
if [ "$arch" = amd64 ]; then
  # systemd-boot on the EFI system partition, which is mounted at /boot/firmware.
  fw="$root/boot/firmware"
  mkdir -p "$fw/EFI/BOOT" "$fw/loader/entries"
  cp "$root/usr/lib/systemd/boot/efi/systemd-bootx64.efi" "$fw/EFI/BOOT/BOOTX64.EFI"
  printf 'default classbox.conf\ntimeout 0\nconsole-mode keep\n' >"$fw/loader/loader.conf"
  cat >"$fw/loader/entries/classbox.conf" <<EOF
title   classbox
linux   /vmlinuz
initrd  /initrd.img
options root=UUID=$uuid ro rootwait console=tty0 console=ttyS0,115200 systemd.show_status=1
EOF
  in_root /usr/lib/classbox/esp-kernel "$kernel"
else
  # raspi-firmware copies the kernel, initrd and device trees to /boot/firmware and
  # writes cmdline.txt from /etc/default/raspi-firmware.
  sed -i 's/^#\?ROOTPART=.*/ROOTPART=LABEL=classbox-root/' "$root/etc/default/raspi-firmware"
  grep -q '^ROOTPART=' "$root/etc/default/raspi-firmware" ||
    echo 'ROOTPART=LABEL=classbox-root' >>"$root/etc/default/raspi-firmware"
  sed -i 's/^#\?CONSOLES=.*/CONSOLES="ttyS1,115200 tty0"/' "$root/etc/default/raspi-firmware"
  in_root /etc/kernel/postinst.d/z50-raspi-firmware "$kernel"
fi
in_root apt-get clean
