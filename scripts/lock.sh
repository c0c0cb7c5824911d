#!/usr/bin/env bash
# Resolve requirements.in into a fresh venv and freeze it into requirements.lock.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3.11 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --upgrade pip
"$tmp/venv/bin/pip" install -q -r requirements.in
{
  echo "# Full pinned environment (Python 3.11, CPU). Regenerate: make lock"
  "$tmp/venv/bin/pip" freeze --exclude-editable | sed -e 's/^torch==\([0-9.]*\)+cpu/torch==\1/'
  echo "setuptools==$("$tmp/venv/bin/python" -c 'import setuptools; print(setuptools.__version__)')"
} > requirements.lock
echo "requirements.lock: $(grep -c '==' requirements.lock) pins"
