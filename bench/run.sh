#!/usr/bin/env bash
# Every benchmark side by side: bench/run.sh [--quick | --full] [--profile] [ingest classify idle send pages]
# Installs its own extras: wrk (apt-get) for the pages, django-mailbox in var/bench-venv for the
# ingest baseline (never in the app's .venv). Not part of the test command. See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# Measure the app as installed (scripts/bootstrap.sh): its bytecode up to date, whatever was edited since.
.venv/bin/python -m compileall -q -j 0 tms mailboxes shipments documents classifier demo >/dev/null
# ... and the classifier's place tables in their cache file, as scripts/bootstrap.sh leaves them: without
# it the first poll measured builds them (~2 s and ~200 MB more).
.venv/bin/python -c "import classifier; classifier.warm_up()"
exec .venv/bin/python -m bench "$@"
