#!/usr/bin/env bash
# The whole product on one machine, with nothing installed but Python 3.11 (demo/supervisor.py):
# creates .venv, migrates SQLite under var/, seeds the demo company, starts a local IMAP server
# (pymap) and SMTP server (aiosmtpd) holding sample freight mail, connects dispatch@demo.example's
# mailbox to them, and runs web on http://127.0.0.1:8000 with a Celery worker and beat on a
# filesystem broker. Ctrl-C stops everything it started; running it again reuses what is there.
# Options go to `manage.py demo`: --port, --imap-port, --smtp-port, --poll-interval; VAR_DIR=... moves var/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh demo
export PATH="$PWD/.venv/bin:$PATH"
python manage.py migrate --no-input -v 0
exec python manage.py demo "$@"
