// Package deploy holds the deployment files (docker/, compose/, helm/,
// prometheus/, grafana/, local/) and the tests that check them against a
// running system: deploycheck_test.go starts `zaits all` and a real
// Prometheus and queries every alert and dashboard expression;
// deploy/check.sh runs the static checks (promtool, helm, kubernetes-validate,
// docker-compose config). It has no code of its own.
package deploy
