#!/usr/bin/env bash
# Resolve a profile's requirements into a fresh venv and freeze it into its lock file:
#   scripts/lock.sh [cpu|gpu|all]   (cpu: requirements.in -> requirements.lock, the default;
#                                    gpu: requirements-gpu.in -> requirements-gpu.lock)
set -euo pipefail
cd "$(dirname "$0")/.."

lock_profile() {
  local profile=$1 in lock title
  case $profile in
    cpu) in=requirements.in; lock=requirements.lock; title="CPU profile, the default" ;;
    gpu) in=requirements-gpu.in; lock=requirements-gpu.lock
         title="GPU profile: VOICE_ASSETS_PROFILE=gpu scripts/setup.sh" ;;
    *) echo "lock: unknown profile '$profile' (cpu, gpu or all)" >&2; exit 2 ;;
  esac
  local tmp
  tmp=$(mktemp -d)
  python3.11 -m venv "$tmp/venv"
  "$tmp/venv/bin/pip" install -q --upgrade pip
  "$tmp/venv/bin/pip" install -q -r "$in"
  {
    echo "# Full pinned environment (Python 3.11, $title). Regenerate: make lock"
    "$tmp/venv/bin/pip" freeze --exclude-editable | sed -e 's/^torch==\([0-9.]*\)+cpu/torch==\1/'
    echo "setuptools==$("$tmp/venv/bin/python" -c 'import setuptools; print(setuptools.__version__)')"
  } > "$lock"
  rm -rf "$tmp"
  echo "$lock: $(grep -c '==' "$lock") pins"
}

case ${1:-all} in
  all) lock_profile cpu; lock_profile gpu ;;
  *) lock_profile "$1" ;;
esac
