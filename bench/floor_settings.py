"""The app's settings with one more page, for bench_pages.py's "Django alone" row: everything the
app's pages go through (its middleware, the session in Redis, the logged-in user's one query, the
same gunicorn configuration) and nothing of a page (no template, no query of its own). Bench only:
never a production settings module."""

from tms.settings import *  # noqa: F403

ROOT_URLCONF = "bench.floor_urls"
