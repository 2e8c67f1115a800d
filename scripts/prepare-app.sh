#!/usr/bin/env bash
# What every process of the installed app would otherwise redo at start; quick when already done.
# Run by scripts/bootstrap.sh after the install, and by bench/run.sh before measuring (whatever
# was edited since). The Docker image does the same two steps in its Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/.."

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
