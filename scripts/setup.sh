#!/usr/bin/env bash
# Create (or reuse) the project's virtualenv and print its path on the last line.
#
#   scripts/setup.sh                 the CPU profile (requirements.lock), linked as .venv
#   VOICE_ASSETS_PROFILE=gpu scripts/setup.sh  (or --profile gpu)
#                                    the GPU profile (requirements-gpu.lock: pyannote.audio,
#                                    whisperx and the torch they pin), linked as .venv-gpu
#
# The venv lives outside the clone, keyed by the hash of the profile's lock and the Python
# version, so a fresh clone on a machine that already built it starts in seconds, and a lock
# change builds a new one beside the old. Override the location with VOICE_ASSETS_VENV.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${VOICE_ASSETS_PROFILE:-cpu}
if [ "${1:-}" = "--profile" ]; then profile=${2:?"--profile needs cpu or gpu"}; fi
case $profile in
  cpu) lock=requirements.lock; link=.venv; prefix=venv ;;
  gpu) lock=requirements-gpu.lock; link=.venv-gpu; prefix=venv-gpu ;;
  *) echo "setup: unknown profile '$profile' (cpu or gpu)" >&2; exit 2 ;;
esac

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "voice-assets needs Python 3.11"'

key=$( (cat "$lock"; "$PYTHON" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-12)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/voice-assets
venv=${VOICE_ASSETS_VENV:-$cache/$prefix-$key}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

pip_quiet() {  # run pip; show its output only when it fails
  if ! "$@" >"$log" 2>&1; then
    grep -v "^WARNING: Location" "$log" >&2
    echo "setup: failed: $*" >&2
    exit 1
  fi
}

if [ ! -f "$venv/.complete" ]; then
  echo "setup: building $venv from $lock (first time on this machine: ~3-6 min, gpu ~10)" >&2
  rm -rf "$venv.partial"
  "$PYTHON" -m venv "$venv.partial"
  pip_quiet "$venv.partial/bin/python" -m pip install -q --upgrade pip
  pip_quiet "$venv.partial/bin/python" -m pip install -q -r "$lock"
  rm -rf "$venv"
  mv "$venv.partial" "$venv"
  # venv scripts carry absolute paths: rewrite them for the final location.
  grep -rlI --null "$venv.partial" "$venv/bin" | xargs -0 -r sed -i "s#$venv.partial#$venv#g"
  touch "$venv/.complete"
fi
# The project itself: editable, no dependency resolution (the lock already has them).
pip_quiet "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
ln -sfn "$venv" "$link"
echo "$venv"
