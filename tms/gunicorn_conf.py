"""gunicorn's configuration for the web service: `gunicorn tms.wsgi:application -c tms/gunicorn_conf.py`
(Dockerfile, docker-compose.yml and bench/bench_pages.py use this same file).

- Sync workers, 2 per CPU (WEB_CONCURRENCY overrides): a page is CPU work in Python (one GIL per
  process) plus a few database round trips, so a second process per core fills the waits; more
  processes only add memory. Measured with 50 clients on 2 cores (bench/README.md, "Pages"): the
  threaded worker (gthread, keep-alive) served about as many pages a second, but each process keeps
  the connections it accepted, so clients queue behind a busy process while another idles (p95 2-3x
  the p50); sync workers take each request from the one shared accept queue, first come first served
  (p95 1.1-1.7x the p50).
- No keep-alive with sync workers: the TLS-terminating proxy in front keeps the clients' connections.
- `timeout`: a worker stuck for 60 s is killed and replaced (the longest page is far below that).
"""

import os

bind = "0.0.0.0:8000"  # the bench gives --bind 127.0.0.1:PORT
worker_class = "sync"
workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * (os.cpu_count() or 1))
timeout = 60
graceful_timeout = 30
forwarded_allow_ips = "*"  # X-Forwarded-Proto from the proxy (SECURE_PROXY_SSL_HEADER)
accesslog = "-"
