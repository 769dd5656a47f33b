#!/usr/bin/env bash
# Installs the runtimes of the seed's signature-verification snippets (Node.js,
# Python 3, PHP) for the rotation test (gateway/rotation_test.go), which runs the
# seed's own Node, Python and PHP functions on real deliveries. Node.js and
# Python 3 are on the machine (DEVELOPERS.md); PHP comes from Debian when missing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
command -v node >/dev/null || apt_install nodejs
command -v python3 >/dev/null || apt_install python3
command -v php >/dev/null || apt_install php-cli
log "using node $(node --version), $(python3 --version 2>&1), $(php -r 'echo "PHP ".PHP_VERSION;')"
