#!/usr/bin/env bash
# Run the app on its embedded defaults (SQLite, a broker on the filesystem, no servers needed):
# web on http://127.0.0.1:8000, a Celery worker and beat, and a demo company with logins.
# Ctrl-C stops everything it started; running it again reuses what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh demo
export PATH="$PWD/.venv/bin:$PATH"
python manage.py migrate --no-input -v 0
exec python manage.py demo "$@"
