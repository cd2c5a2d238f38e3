#!/usr/bin/env bash
# Rewrite constraints.txt, the versions that .ci/run installs (`pip install -e ".[dev,ray]" -c constraints.txt`, every
# extra): what `pip install -e ".[dev,ray]"` picks today, in a throw-away virtual environment. Run it on a machine like CI's (the
# freeze lists the packages that torch pulls in there), then run the tests and commit the file.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="$(mktemp -d)"
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet -e ".[dev,ray]"
{
    echo "# The versions CI installs (.ci/run). Made by scripts/refresh_constraints.sh on $(date -u +%Y-%m-%d), Python $("$venv/bin/python" -c 'import platform; print(platform.python_version())')."
    "$venv/bin/pip" freeze --exclude-editable
} > constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) packages"
