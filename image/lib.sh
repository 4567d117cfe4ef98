# Shared by the image/ scripts (sourced; each script defines say() first).

# Run a command as root: directly, or through sudo.
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else printf 'need root for: %s (run as root or install sudo)\n' "$*" >&2; exit 1; fi
}

# Install those of the named Debian packages that are not installed yet; returns 1 if
# everything was present already (so a caller can refresh the package lists anyway).
install_missing() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 1
  say "installing ${missing[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}
