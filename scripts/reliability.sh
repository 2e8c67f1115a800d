#!/usr/bin/env bash
# The slow half of the reliability suite (issue 10): 2,000-message ingest through killed workers and
# restarted Dovecot/PostgreSQL/Redis, 1,000 sends under SMTP faults, 100,000 hostile messages, the full
# schemathesis run. Same setup as scripts/test.sh; each test prints a one-line summary of its counts.
#   scripts/reliability.sh [pytest args...]      e.g. scripts/reliability.sh -k sending
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system.sh
bash scripts/bootstrap.sh dev
export PATH="$PWD/.venv/bin:$PATH"
export DJANGO_SETTINGS_MODULE=tms.settings PYTHONHASHSEED=0
unset DATABASE_URL CELERY_BROKER_URL REDIS_URL
exec pytest -m slow tests/reliability -q "$@"
