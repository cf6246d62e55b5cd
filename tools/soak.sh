#!/usr/bin/env bash
# Long tiers that do not fit CI's budget (run by hand or nightly; each part prints its seed):
#   - the threaded stress suites scaled x50 on this interpreter and on free-threaded 3.13t;
#   - the pure-C harness (plain and TSan) scaled x100 (FASTQ_STRESS_SCALE);
#   - the segment log crash / power-loss / corruption tiers and the dedup window's kill -9 loop
#     at soak size (FASTQ_SOAK=1);
#   - the whole suite against an ASan+UBSan build of the extension.
# Usage: tools/soak.sh [scale]   (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE="${1:-50}"
export FASTQ_STRESS_SCALE="$SCALE"
python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]'
.venv/bin/python -m pytest -m "stress or native" -p no:cacheprovider --timeout=0
# the segment log's reliability tiers at soak size (TESTING.md R1 10^4 kill cycles, R3 10^5
# crash images, R4 x10 corruption cases)
FASTQ_SOAK=1 .venv/bin/python -m pytest -p no:cacheprovider --timeout=0 tests/crash tests/fuzz

FT_PY=$(tools/build-freethreaded-python.sh | tail -n 1)
"$FT_PY" -m venv .venv-ft
.venv-ft/bin/pip install -q pytest pytest-timeout
.venv-ft/bin/pip install -q --only-binary=:all: hypothesis numpy
.venv-ft/bin/pip install -q -e .
.venv-ft/bin/python -m pytest -m stress -p no:cacheprovider --timeout=0 tests/concurrency

# ASan/UBSan build (pymalloc off so ASan sees every object; leaks are not checked here)
python3 -m venv .venv-asan
FASTQ_SANITIZE=1 .venv-asan/bin/pip install -q --no-cache-dir --force-reinstall -e '.[test]'
FASTQ_STRESS_SCALE=1 PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=0 \
  LD_PRELOAD="$(gcc -print-file-name=libasan.so)" \
  .venv-asan/bin/python -m pytest -m "not native" --ignore=tests/typing -p no:cacheprovider
