#!/usr/bin/env bash
# Build a free-threaded CPython 3.13 (--disable-gil) once, from Debian trixie's source package,
# into a cache folder outside the repository, and reuse it on later runs.
#
#   tools/build-freethreaded-python.sh            # prints the interpreter path on the last line
#   FASTQ_FT_PREFIX=/some/dir tools/build-freethreaded-python.sh
#
# No free-threaded CPython is on PyPI or in Debian bookworm; trixie's python3.13 source builds one
# in about 6-7 minutes on 2 cores. Needs root for apt-get (CI runs as root).
set -euo pipefail

PREFIX="${FASTQ_FT_PREFIX:-/var/cache/fastq/py313t}"
PY="$PREFIX/bin/python3.13t"

if [ -x "$PY" ] && "$PY" -c 'import sys, ssl; assert not sys._is_gil_enabled()' 2>/dev/null; then
  echo "$PY"
  exit 0
fi

log() { echo "[build-freethreaded] $*" >&2; }
WORK="$(dirname "$PREFIX")/py313t-src"
mkdir -p "$WORK"

export DEBIAN_FRONTEND=noninteractive
if [ ! -f /etc/apt/sources.list.d/fastq-trixie-src.sources ]; then
  log "adding a deb-src entry for Debian trixie"
  cat > /etc/apt/sources.list.d/fastq-trixie-src.sources <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
log "apt-get update / build dependencies"
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends build-essential pkg-config libssl-dev zlib1g-dev \
  libffi-dev libbz2-dev liblzma-dev libsqlite3-dev libreadline-dev libncursesw5-dev uuid-dev \
  libgdbm-dev xz-utils dpkg-dev >&2

cd "$WORK"
if ! ls python3.13_*.orig.tar.xz >/dev/null 2>&1; then
  log "apt-get source --download-only python3.13 (trixie)"
  apt-get source -qq --download-only -t trixie python3.13 >&2 || apt-get source -qq --download-only python3.13/trixie >&2
fi
TARBALL=$(ls python3.13_*.orig.tar.xz | head -n1)
rm -rf src && mkdir src
tar -xJf "$TARBALL" -C src --strip-components=1
cd src
log "configure --disable-gil --prefix=$PREFIX"
./configure --disable-gil --prefix="$PREFIX" --with-ensurepip=install >"$WORK/configure.log" 2>&1
log "make -j$(nproc)"
make -j"$(nproc)" >"$WORK/make.log" 2>&1
make install >"$WORK/install.log" 2>&1
cd "$WORK" && rm -rf src
"$PY" -c 'import sys; assert not sys._is_gil_enabled(), "GIL is enabled"'
log "built $PY"
echo "$PY"
