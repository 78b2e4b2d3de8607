#!/usr/bin/env bash
# Installs the non-Python tools the test suite runs for real, when missing. Idempotent and quick
# on a second run.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    echo "installing Debian package prometheus (promtool and the server, for rule tests)"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    # The package's service is not wanted: tests start their own Prometheus on a free port.
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
    pkill -x prometheus >/dev/null 2>&1 || true
fi

if ! command -v amtool >/dev/null 2>&1; then
    echo "installing Debian package prometheus-alertmanager (amtool, for the Alertmanager example's check)"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null
    # Only amtool is wanted; the package's service would hold port 9093.
    $SUDO systemctl disable --now prometheus-alertmanager >/dev/null 2>&1 || true
fi

if [ -f deploy/grafana/schema-check/package.json ] && [ ! -d deploy/grafana/schema-check/node_modules ]; then
    echo "installing @grafana/schema and typescript (dashboard schema check)"
    (cd deploy/grafana/schema-check && npm ci --silent --no-audit --no-fund)
fi
