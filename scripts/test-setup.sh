#!/usr/bin/env bash
# System packages the test suite needs beyond the Python environment: Debian's chromium, for the
# headless-browser check of report.html (tests/test_report_browser.py). Idempotent: a no-op when installed.
# Installing needs root (as on CI); elsewhere without root it only warns, and the browser test skips.
set -euo pipefail
command -v chromium >/dev/null && exit 0
if [[ "$(id -u)" != 0 && "${CI:-}" != true ]]; then
    echo "test-setup: chromium missing and not root: the report browser test will skip" >&2
    exit 0
fi
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
