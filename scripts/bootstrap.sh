#!/usr/bin/env bash
# Create .venv and install the project into it; idempotent and quick when nothing changed.
#   scripts/bootstrap.sh            runtime dependencies (what the app needs)
#   scripts/bootstrap.sh dev        plus the test, lint and type-check tools
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-}
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  for candidate in python3.11 /usr/bin/python3.11; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PYTHON=$candidate; break
    fi
  done
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || {
  echo "bootstrap: Python 3.11 is required (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
spec=".${extras:+[$extras]}"
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)-${extras:-base}"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing $spec into .venv"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
  touch "$stamp"
else
  echo "bootstrap: .venv is up to date ($spec)"
fi

# The app's modules compiled to bytecode now, not at each process start: where
# PYTHONDONTWRITEBYTECODE is set (this kind of machine, the Docker image) Python never writes the
# .pyc files itself, and every `manage.py` run, worker and web process compiled the whole app from
# source again (0.1-0.2 s each; bench/README.md, ingest). Quick when nothing changed; a file edited
# later is compiled in memory from its source, as before (a stale .pyc is never used).
.venv/bin/python -m compileall -q -j 0 tms mailboxes shipments documents classifier demo >/dev/null

# The classifier's place tables (US ZIPs and cities, Canadian and Mexican cities) built into their
# cache file now (classifier/regions.py: ~/.cache/tms-classifier, or $XDG_CACHE_HOME), not by the
# first poll after an install: that build takes ~2 s and ~200 MB more of that process's memory;
# loading the file takes 0.05 s. Nothing to do when the file is there.
.venv/bin/python -c "import classifier; classifier.warm_up()"
