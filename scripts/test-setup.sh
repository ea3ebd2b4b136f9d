#!/usr/bin/env bash
# System packages the test suite needs beyond the Python environment (none yet).
set -euo pipefail
exit 0
