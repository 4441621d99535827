#!/usr/bin/env bash
# Set up a fresh machine and run the test suite: Chromium for the browser tests (Debian package),
# a virtual environment with painterly and its dev and docs extras (Ray, PyAV, OpenCV, the web parts,
# ruff, mypy, import-linter, MkDocs), the checks the project configures (ruff, mypy, the import rule:
# lint-imports), the documentation site built strictly (a broken link, a missing page or a stale
# docs picture fails), then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
python3 -m venv .venv
.venv/bin/pip install -q torch==2.13.0 -e '.[dev,docs]'
.venv/bin/ruff check .
.venv/bin/mypy painterly
.venv/bin/lint-imports
.venv/bin/python scripts/docs_pictures.py --check
# Into a folder of its own, so that the checkout gains no site/.
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --site-dir "$(mktemp -d)"
exec .venv/bin/python -m pytest "$@"
