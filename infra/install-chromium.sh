#!/usr/bin/env bash
# Install Debian's Chromium and its WebDriver when missing: the browser tests (tests/browser) drive them through
# Selenium at fixed paths (/usr/bin/chromium, /usr/bin/chromedriver), so no browser or driver is ever downloaded.
#
# chromium-driver depends on chromium of exactly its own version, so apt keeps the two in step.
# Safe to run twice: it does nothing when both are installed.
set -euo pipefail

log() { printf '[chromium] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing_debs() {
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || printf '%s ' "$pkg"
  done
}

need=$(missing_debs chromium chromium-driver)
if [ -n "$need" ]; then
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
    log "missing Debian packages: $need(root or sudo is needed to install them)"
    log "run as root: apt-get update && apt-get install -y --no-install-recommends $need"
    exit 1
  fi
  log "installing Debian packages: $need"
  # Another apt (an unattended upgrade, a second checkout's setup) may hold the lock: wait for it rather than fail.
  apt_wait=(-o DPkg::Lock::Timeout=300)
  as_root apt-get "${apt_wait[@]}" update -qq
  # shellcheck disable=SC2086  # $need is a word list on purpose
  as_root env DEBIAN_FRONTEND=noninteractive apt-get "${apt_wait[@]}" install -y -qq --no-install-recommends $need \
    >/dev/null
fi

for binary in /usr/bin/chromium /usr/bin/chromedriver; do
  [ -x "$binary" ] || { log "the packages are installed but $binary is missing"; exit 1; }
done
