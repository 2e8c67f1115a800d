"""A WSGI app that answers 5 bytes without Django: bench_pages.py serves it with the same gunicorn
configuration as the app, to show what the server, wrk and loopback alone allow on this machine."""

from collections.abc import Callable, Iterable
from typing import Any


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]
