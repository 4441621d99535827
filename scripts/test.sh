#!/usr/bin/env bash
# Set up a fresh machine and run the test suite: Chromium for the browser tests (Debian package),
# a virtual environment with painterly and its dev extras (Ray, PyAV, OpenCV, the web parts, ruff,
# mypy), the checks the project configures (ruff, mypy), then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
python3 -m venv .venv
.venv/bin/pip install -q torch==2.13.0 -e '.[dev]'
.venv/bin/ruff check .
.venv/bin/mypy painterly
exec .venv/bin/python -m pytest "$@"
