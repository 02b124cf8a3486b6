#!/usr/bin/env bash
# Make sure a Chromium is there for the chat page's browser test (Playwright drives it; Playwright's own
# browser download needs hosts this machine may not reach, so Debian's chromium package is used).
# Prints the browser's path. Set LLMFORGE_CHROMIUM to use another Chromium or Chrome.
set -euo pipefail
for candidate in "${LLMFORGE_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser /usr/bin/google-chrome; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then echo "$candidate"; exit 0; fi
done
if command -v apt-get >/dev/null; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo -n"; fi
  echo "installing Debian's chromium for the browser test (apt-get)..." >&2
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >&2
  echo /usr/bin/chromium
  exit 0
fi
echo "no Chromium found: install one (Debian/Ubuntu: apt-get install chromium) or set LLMFORGE_CHROMIUM" >&2
exit 1
