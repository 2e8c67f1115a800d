#!/usr/bin/env bash
# Every benchmark side by side: bench/run.sh [--quick | --full] [--profile] [ingest classify idle send pages]
# Installs its own extras: wrk (apt-get) for the pages, django-mailbox in var/bench-venv for the
# ingest baseline (never in the app's .venv). Not part of the test command. See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# Measure the app as installed (scripts/bootstrap.sh): its bytecode up to date whatever was edited
# since, the classifier's tables in their cache file (else the first poll measured builds them).
bash scripts/prepare-app.sh
exec .venv/bin/python -m bench "$@"
