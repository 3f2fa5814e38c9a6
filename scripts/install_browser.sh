#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for the serving page's end-to-end browser test.
# Idempotent: returns at once when both are installed.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install_browser: install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)" >&2
  exit 1
fi
echo "install_browser: installing chromium and chromium-driver"
apt-get install -y -q chromium chromium-driver >/dev/null || {
  apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null
}
