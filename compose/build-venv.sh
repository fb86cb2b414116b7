#!/bin/sh
# Installs stockalert (a wheel built from SOURCE_DIR, not editable) and its runtime
# dependencies into a new virtual environment at TARGET_DIR, plus `grpc-health` (the gRPC
# healthcheck of the compose services). The image's builder stage runs this, and so does
# scripts/check-compose without Docker: CI tests the very install step of the image.
#
# Usage: compose/build-venv.sh TARGET_DIR [SOURCE_DIR]   (SOURCE_DIR: the repository root)
# PYTHON picks the interpreter (default python3); pip's cache is used where it exists.
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 TARGET_DIR [SOURCE_DIR]" >&2
  exit 2
fi
target=$1
source=${2:-$(cd "$(dirname "$0")/.." && pwd)}
python=${PYTHON:-python3}

"$python" -m venv "$target"
target=$(cd "$target" && pwd)
"$target/bin/python" -m pip install --quiet --disable-pip-version-check "$source"
"$target/bin/python" -m pip check --disable-pip-version-check >/dev/null

# A script of the venv, like pip's console scripts: its shebang names the venv's python.
{
  echo "#!$target/bin/python"
  tail -n +2 "$source/compose/grpc_health.py"
} >"$target/bin/grpc-health"
chmod 0755 "$target/bin/grpc-health"
