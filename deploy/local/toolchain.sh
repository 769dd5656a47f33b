#!/usr/bin/env bash
# Checks that a Go toolchain is there. go.mod names the version; a Go 1.21+
# fetches a newer toolchain from the module proxy by itself (GOTOOLCHAIN=auto).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
if ! command -v go >/dev/null; then
  for d in /usr/local/go/bin /usr/lib/go/bin "$HOME/go/bin"; do [ -x "$d/go" ] && { log "go found in $d but not on PATH: add it"; exit 1; }; done
  apt_install golang-go
fi
ver=$(go env GOVERSION)
log "using $ver"
