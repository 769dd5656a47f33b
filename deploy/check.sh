#!/usr/bin/env bash
# Checks the deployment files as far as a machine without a container engine allows.
#
#   deploy/check.sh           install what is missing, then every static check below
#   deploy/check.sh install   only install (idempotent; the Go test in deploy/ needs Prometheus)
#   deploy/check.sh static    only the checks (nothing installed)
#
# Installs, each only when missing:
#   Debian  prometheus      promtool and the server (the Go test in deploy/ runs the server)
#   Debian  docker-compose  `docker-compose config` parses and validates the compose file
#   PyPI    kubernetes-validate (a venv under .state/): offline Kubernetes API schemas
#   Go      helm, run through `go run` from the module proxy (built once, then cached)
# Checks:
#   promtool check rules / test rules / check config, the Grafana files parse, the
#   Dockerfile's build command gives a static binary, helm lint + helm template |
#   kubernetes-validate (two sets of values, two Kubernetes versions), docker-compose config.
# The check against a running system is a Go test: go test ./deploy/ (make deploy-check runs both).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/local/lib.sh"

DEPLOY="$ROOT/deploy"
HELM_VERSION="${ZAITS_HELM_VERSION:-v3.22.0}"
KUBERNETES_VALIDATE_VERSION="${ZAITS_KUBERNETES_VALIDATE_VERSION:-1.37.0}"
# The Kubernetes API versions the chart's objects are validated against: the
# oldest the chart supports (Chart.yaml kubeVersion) and the newest kubernetes-validate ships.
KUBERNETES_VERSIONS="${ZAITS_KUBERNETES_VERSIONS:-1.25.0 1.37.0}"
VENV="$STATE_DIR/deploy-venv"
HELM=(go run "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")

# apt_install_lean PKG...: like apt_install, without recommended packages
# (prometheus recommends node-exporter, docker-compose the Docker daemon).
apt_install_lean() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} (apt-get, no recommends)"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

install() {
  apt_install_lean prometheus docker-compose python3-venv
  local stamp="$VENV/.kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
  if [ ! -f "$stamp" ]; then
    log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    touch "$stamp"
  fi
  # The first run builds helm (a few minutes on 2 cores); later runs use Go's build cache.
  (cd "$ROOT" && "${HELM[@]}" version --short >/dev/null) || die "helm $HELM_VERSION did not build"
  log "tools: $(promtool --version 2>&1 | head -1); docker-compose $(docker-compose version --short 2>/dev/null);" \
    "kubernetes-validate $KUBERNETES_VALIDATE_VERSION; helm $(cd "$ROOT" && "${HELM[@]}" version --short)"
}

step() { log "== $*"; }

static() {
  local tmp; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' RETURN
  local chart="$DEPLOY/helm/zaits"

  step "promtool check rules deploy/prometheus/alerts.yml"
  promtool check rules "$DEPLOY/prometheus/alerts.yml"

  step "promtool test rules deploy/prometheus/alerts_test.yml (every alert fires on its condition, not on its healthy twin)"
  promtool test rules "$DEPLOY/prometheus/alerts_test.yml"

  step "promtool check config deploy/prometheus/prometheus.yml (and the rule file it names)"
  promtool check config "$DEPLOY/prometheus/prometheus.yml"

  step "Grafana dashboard and provisioning files parse"
  for f in "$DEPLOY"/grafana/dashboards/*.json; do "$VENV/bin/python" -m json.tool "$f" >/dev/null || die "$f is not JSON"; done
  for f in "$DEPLOY"/grafana/provisioning/*/*.yml; do
    "$VENV/bin/python" -c 'import sys,yaml; yaml.safe_load(open(sys.argv[1]))' "$f" || die "$f is not YAML"
  done

  step "the image's build command gives a static binary (deploy/docker/Dockerfile, build stage)"
  (cd "$ROOT" && CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o "$tmp/zaits" ./cmd/zaits)
  if ldd "$tmp/zaits" >/dev/null 2>&1; then die "the zaits binary is dynamically linked"; fi
  log "static binary (ldd: not a dynamic executable), $(du -h "$tmp/zaits" | cut -f1)"

  local values kube
  for values in "$chart"/ci/*-values.yaml; do
    step "helm lint --strict + helm template | kubernetes-validate --strict, values ci/$(basename "$values")"
    for kube in $KUBERNETES_VERSIONS; do
      (cd "$ROOT" && "${HELM[@]}" lint --strict --kube-version "$kube" -f "$values" "$chart") >"$tmp/lint.out" \
        || { cat "$tmp/lint.out"; die "helm lint failed (Kubernetes $kube)"; }
      local out="$tmp/rendered.yaml"
      (cd "$ROOT" && "${HELM[@]}" template zaits "$chart" --kube-version "$kube" -f "$values") >"$out"
      "$VENV/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$kube" "$out" \
        || die "rendered objects do not validate against Kubernetes $kube"
      log "Kubernetes $kube: $(grep -c '^kind:' "$out") objects valid ($(grep '^kind:' "$out" | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $3; sep=", "}'))"
    done
  done
  step "helm template refuses to create a Secret without an encryption key"
  if (cd "$ROOT" && "${HELM[@]}" template zaits "$chart" --kube-version 1.37.0) >/dev/null 2>"$tmp/err"; then
    die "helm template rendered without secrets.encryptionKey"
  fi
  grep -q 'secrets.encryptionKey is required' "$tmp/err" || { cat "$tmp/err"; die "unexpected helm error"; }

  step "docker-compose config deploy/compose/docker-compose.yml"
  # The file reads its secrets from the environment (an .env file beside it in
  # real use); the check sets sample values, and proves that without them it refuses.
  local compose=(docker-compose -f "$DEPLOY/compose/docker-compose.yml" --project-directory "$DEPLOY/compose")
  if env -u ZAITS_ENDPOINTS_ENCRYPTION_KEY -u CLICKHOUSE_PASSWORD -u GRAFANA_ADMIN_PASSWORD "${compose[@]}" config -q 2>/dev/null; then
    die "docker-compose config passed without the required secrets"
  fi
  ZAITS_ENDPOINTS_ENCRYPTION_KEY=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= CLICKHOUSE_PASSWORD=check GRAFANA_ADMIN_PASSWORD=check \
    "${compose[@]}" config >"$tmp/compose.out"
  log "compose: $(grep -c '^  [a-z0-9-]*:$' <(sed -n '/^services:/,/^[a-z]/p' "$tmp/compose.out")) services"
  log "all static deploy checks passed"
}

case "${1:-all}" in
  install) install ;;
  static)  static ;;
  all)     install; static ;;
  *) echo "usage: $0 [install|static|all]" >&2; exit 2 ;;
esac
