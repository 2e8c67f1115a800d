#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what is missing (Debian and npm packages,
# Python packages), starts what is down, then lint, type check and pytest. Idempotent.
#   scripts/test.sh [pytest args...]      e.g. scripts/test.sh tests/accounts -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system.sh
bash scripts/bootstrap.sh dev
export PATH="$PWD/.venv/bin:$PATH"
# Tests start their own servers; these keep them quiet and deterministic.
export DJANGO_SETTINGS_MODULE=tms.settings PYTHONHASHSEED=0
unset DATABASE_URL CELERY_BROKER_URL REDIS_URL

echo "== ruff"
ruff check .
echo "== mypy"
mypy .
echo "== pytest"
set +e
pytest -m "not slow" "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
  echo "pytest: no tests ran" >&2
fi
exit "$status"
