#!/usr/bin/env bash
# Runs every mutant in tests/mutants/*.mut (or those named) against a scratch copy of the tree in
# build-mutants/ (or $MUTANTS_DIR); exits 0 only when every mutant is killed. See README.md here.
set -euo pipefail
exec python3 "$(dirname "$0")/run.py" "$@"
