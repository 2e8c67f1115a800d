"""Pages: the shipment list and the mailbox list with 1,000 rows, under 50 concurrent clients.

    .venv/bin/python -m bench pages [--quick]

Data: a tenant with 1,000 shipments (shipments.services.shipment_create, as the app makes them)
and a staff member with 1,000 mailboxes; a second tenant with 10 of each. Both lists show 50 rows a
page with a pager (the mailbox list showed all of them at once before).

- SQL queries per page: django.test.Client (logged in) under CaptureQueriesContext, 10 rows vs
  1,000 rows. Constant means the page does not query per row.
- Latency: gunicorn with the production configuration (tms/gunicorn_conf.py: sync workers, 2 per
  CPU, access log; only the address differs), DEBUG off, on loopback; wrk (Debian package,
  installed when missing) in another process, 2 threads, 50 connections, the logged-in session
  cookie, for D seconds per page; p50/p95/p99 from wrk's own latency histogram. The baseline is
  a logged-in list page with no rows (/customers/: the tenant has none) under the same load: the
  floor of this stack (Django, the session and tenant middleware, the base template) here.
  (/healthz is no floor: it opens a new broker connection per request.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import ROOT, App, Options, Table, Testbed, ensure_wrk, ratio, write_result

PAGES = {"shipment list": "/shipments/", "mailbox list (profile)": "/profile/"}
BASELINE = ("floor: /customers/ with 0 rows", "/customers/")
SERVER_FLOOR = "server alone: a 5-byte WSGI app, no Django"  # bench/hello_wsgi.py, same gunicorn configuration
SERVER = f"tms/gunicorn_conf.py ({2 * (os.cpu_count() or 1)} sync workers)"

LUA = """
done = function(summary, latency, requests)
  local out = string.format('{"requests": %d, "seconds": %f, "p50": %d, "p95": %d, "p99": %d, "max": %d, ' ..
    '"non2xx": %d, "errors": %d}',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout)
  io.write("WRK_JSON " .. out .. "\\n")
end
"""


def seed(rows: int, slug: str) -> tuple[Any, Any]:
    from mailboxes.models import Mailbox
    from shipments.services import shipment_create
    from tests.factories import make_staff, make_tenant

    tenant = make_tenant(slug=slug, name=f"Pages {rows}")
    staff = make_staff(tenant, f"{slug}@bench.example", name="Page Viewer", role="admin", password="pages-pass")
    cities = [("Dallas", "TX"), ("Denver", "CO"), ("Chicago", "IL"), ("Atlanta", "GA"), ("Phoenix", "AZ")]
    for i in range(rows):
        o, d = cities[i % 5], cities[(i + 2) % 5]
        shipment_create(tenant=tenant, assigned_to=staff if i % 2 else None,
                        fields={"origin_city": o[0], "origin_state": o[1], "destination_city": d[0],
                                "destination_state": d[1]})
    Mailbox.unscoped.bulk_create([
        Mailbox(tenant=tenant, staff=staff, provider="imap", email_address=f"box{i}@{slug}.example", status="active",
                imap_host="127.0.0.1", imap_port=993, imap_security="ssl", smtp_host="127.0.0.1", smtp_port=587,
                smtp_security="starttls", username=f"box{i}@{slug}.example", secret="x", permission="send",
                post_processing="nothing")
        for i in range(rows)
    ], batch_size=500)
    return tenant, staff


def queries(staff: Any, path: str) -> tuple[int, int]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(staff.user)
    client.get(path)  # warm: the session, the caches of the first request
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(path)
    return len(ctx.captured_queries), response.status_code


def session_cookie(staff: Any) -> str:
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(staff.user)
    return str(client.cookies["sessionid"].value)


class Gunicorn:
    def __init__(self, app: App, port: int, wsgi: str = "tms.wsgi:application") -> None:
        self.port = port
        self.log = app.log(f"pages-gunicorn-{port}")
        self.proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "gunicorn"), wsgi, "--config", "tms/gunicorn_conf.py",
             "--bind", f"127.0.0.1:{port}"],
            env=app.env, cwd=ROOT, stdout=open(self.log, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not start: {self.log.read_text()[-2000:]}")

    def worker_cpu_seconds(self) -> float:
        """User + system CPU of the worker processes so far (Linux /proc)."""
        total = 0
        children = subprocess.run(["pgrep", "-P", str(self.proc.pid)], check=False, capture_output=True,
                                  text=True).stdout
        for pid in children.split():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def wrk(binary: str, url: str, cookie: str, seconds: int, script: str, connections: int = 50) -> dict[str, Any]:
    threads = min(2, connections)
    done = subprocess.run([binary, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
                           "-s", script, "-H", f"Cookie: sessionid={cookie}", url], check=True, capture_output=True,
                          text=True, timeout=seconds + 60)
    line = next(line for line in done.stdout.splitlines() if line.startswith("WRK_JSON "))
    data = dict(json.loads(line.split(" ", 1)[1]))
    data["per_second"] = data["requests"] / data["seconds"]
    for key in ("p50", "p95", "p99", "max"):
        data[f"{key}_ms"] = data.pop(key) / 1000
    return data


def run(app: App, opts: Options) -> dict[str, Any]:
    from tests.testbed._proc import free_port

    binary = ensure_wrk()
    seconds = 5 if opts.quick else 10
    began = time.perf_counter()
    _, big = seed(1_000, "pages1000")
    _, small = seed(10, "pages10")
    print(f"pages: seeded in {time.perf_counter() - began:.1f} s", flush=True)
    counts = {}
    for name, path in PAGES.items():
        few, status_few = queries(small, path)
        many, status_many = queries(big, path)
        if status_few != 200 or status_many != 200:
            raise RuntimeError(f"{path}: status {status_few} / {status_many}")
        counts[name] = {"10 rows": few, "1,000 rows": many}
    script = app.tb.workdir / "wrk-report.lua"
    script.write_text(LUA)
    cookie = session_cookie(big)
    latency: dict[str, dict[str, Any]] = {}
    single: dict[str, dict[str, Any]] = {}
    load = {"before": os.getloadavg()}
    # What gunicorn, wrk and loopback allow on this machine now, before any Django: if this row's p95
    # is near the goal, no page can be under it (50 clients always waiting: p95 >= 50 / requests/s).
    bare = Gunicorn(app, free_port(), wsgi="bench.hello_wsgi:application")
    try:
        url = f"http://127.0.0.1:{bare.port}/"
        single[SERVER_FLOOR] = wrk(binary, url, cookie, max(2, seconds // 2), str(script), connections=1)
        began_cpu = bare.worker_cpu_seconds()
        latency[SERVER_FLOOR] = wrk(binary, url, cookie, seconds, str(script))
        latency[SERVER_FLOOR]["worker_cpu_ms"] = (
            (bare.worker_cpu_seconds() - began_cpu) * 1000 / max(1, latency[SERVER_FLOOR]["requests"]))
    finally:
        bare.stop()
    server = Gunicorn(app, free_port())
    try:
        base = f"http://127.0.0.1:{server.port}"
        for name, path in [BASELINE, *PAGES.items()]:
            body = urllib.request.urlopen(
                urllib.request.Request(base + path, headers={"Cookie": f"sessionid={cookie}"}), timeout=30).read()
            if path == "/shipments/" and body.count(b'<tr data-number="SHP-') != 50:
                raise RuntimeError("the shipment list does not show a page of 50 shipments: not logged in?")
            if path == "/profile/" and body.count(b"<tr data-mailbox=") != 50:
                raise RuntimeError("the mailbox list does not show a page of 50 mailboxes: not logged in?")
            # One client first: the service time of the page, without queueing.
            single[name] = wrk(binary, base + path, cookie, max(2, seconds // 2), str(script), connections=1)
            began_cpu = server.worker_cpu_seconds()
            latency[name] = wrk(binary, base + path, cookie, seconds, str(script))
            # CPU of the gunicorn workers per request: less noisy than latency on a shared machine
            latency[name]["worker_cpu_ms"] = (
                (server.worker_cpu_seconds() - began_cpu) * 1000 / max(1, latency[name]["requests"]))
            if latency[name]["non2xx"] or single[name]["non2xx"]:
                raise RuntimeError(f"{path}: {latency[name]}")
            print(f"pages {name}: 1 client p50 {single[name]['p50_ms']:.0f} ms; 50 clients p95 "
                  f"{latency[name]['p95_ms']:.0f} ms at {latency[name]['per_second']:.0f}/s", flush=True)
    finally:
        server.stop()
    load["after"] = os.getloadavg()
    floor = latency[BASELINE[0]]
    table = Table(f"Pages: 50 concurrent clients, {seconds} s each, gunicorn {SERVER} (ratio = page p95 / floor p95)",
                  ["page", "SQL queries (10 rows)", "SQL queries (1,000 rows)", "1 client p50 ms", "requests/s",
                   "p50 ms", "p95 ms", "p99 ms", "p95 / floor", "worker CPU ms/request"])
    bare_row = latency[SERVER_FLOOR]
    table.add(SERVER_FLOOR, "-", "-", single[SERVER_FLOOR]["p50_ms"], bare_row["per_second"], bare_row["p50_ms"],
              bare_row["p95_ms"], bare_row["p99_ms"], f"{ratio(bare_row['p95_ms'], floor['p95_ms']):.2f}x",
              f"{bare_row['worker_cpu_ms']:.2f}")
    table.add(BASELINE[0], "-", "-", single[BASELINE[0]]["p50_ms"], floor["per_second"], floor["p50_ms"],
              floor["p95_ms"], floor["p99_ms"], "1.00x", f"{floor['worker_cpu_ms']:.2f}")
    for name in PAGES:
        row = latency[name]
        table.add(name, counts[name]["10 rows"], counts[name]["1,000 rows"], single[name]["p50_ms"], row["per_second"],
                  row["p50_ms"], row["p95_ms"], row["p99_ms"], f"{ratio(row['p95_ms'], floor['p95_ms']):.1f}x",
                  f"{row['worker_cpu_ms']:.2f}")
    table.print()
    print(f"load average (1, 5, 15 min) before {load['before']}, after {load['after']}")
    result = write_result("pages", {"seconds_per_page": seconds, "connections": 50, "server": f"gunicorn {SERVER}",
                                  "queries": counts, "latency": latency, "one_client": single, "load_average": load,
                                  "table": table.render()})
    return {"table": table.render(), "json": str(result)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    with Testbed() as tb:
        run(App(tb), Options(quick=args.quick))


if __name__ == "__main__":
    main()
