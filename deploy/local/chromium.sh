#!/usr/bin/env bash
# Installs Debian's Chromium for the console's browser tests (gateway/console),
# idempotently: nothing happens when /usr/bin/chromium is there. The tests drive
# it with chromedp; no test tool ever downloads a browser of its own.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
apt_install chromium fonts-dejavu-core
log "using $(/usr/bin/chromium --version 2>/dev/null || echo 'chromium (version unknown)')"
