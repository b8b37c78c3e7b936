#!/usr/bin/env bash
# Install Debian's Chromium for the browser test (Playwright drives it; its own browser download is not used).
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq chromium >&2
fi
