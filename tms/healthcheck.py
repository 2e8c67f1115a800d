"""Container health check of the web service: `python -m tms.healthcheck [URL]`, exit 0 when /healthz is 200.

Standard library only, so it costs no Django start-up. It sends the Host header Django expects
(the first ALLOWED_HOSTS entry; DEBUG off refuses any other host) and X-Forwarded-Proto: https,
as the TLS-terminating proxy would.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8000/healthz"


def host_header() -> str:
    for entry in os.environ.get("ALLOWED_HOSTS", "").split(","):
        host = entry.strip().lstrip(".")  # ".example.com" allows subdomains: the bare domain matches too
        if host and host != "*":
            return host
    return "localhost"


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else DEFAULT_URL
    if not url.startswith(("http://", "https://")):
        print(f"healthcheck: not an http(s) URL: {url}", file=sys.stderr)
        return 2
    headers = {"Host": host_header(), "X-Forwarded-Proto": "https"}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (scheme checked above)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (scheme checked above)
            body = response.read(2000).decode("utf-8", "replace")
            status = response.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(2000).decode("utf-8", "replace"), exc.code
    except OSError as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"healthcheck: {url}: HTTP {status} {body}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
