# Shared helpers for the local stack scripts. Sourced, not run.
# Every path and port can be overridden from the environment.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE_DIR="${ZAITS_STATE_DIR:-$ROOT/.state}"

log()  { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*"; }
die()  { printf '[%s] ERROR: %s\n' "$(basename "$0" .sh)" "$*" >&2; exit 1; }

# apt_install PKG... installs Debian packages that are missing (root, no prompt).
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} (apt-get)"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# pid_alive FILE: the process recorded in FILE is running.
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# port_open HOST PORT: something accepts TCP connections there.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_for SECONDS CMD...: retries CMD every 0.5 s until it succeeds or time runs out.
wait_for() {
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$deadline" ] && return 1
    sleep 0.5
  done
}

# stop_pid NAME FILE: TERM the recorded process, KILL it after 20 s, remove FILE.
stop_pid() {
  local name=$1 file=$2
  if ! pid_alive "$file"; then
    log "$name is not running (no live pid in $file)"; rm -f "$file"; return 0
  fi
  local pid; pid=$(cat "$file")
  log "stopping $name (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then log "$name did not stop in 20 s, killing"; kill -9 "$pid" 2>/dev/null || true; fi
  rm -f "$file"
}
