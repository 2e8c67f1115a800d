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
  (/healthz is no floor: it opens a new broker connection per request.) Below it, two ceilings in
  the same run and gunicorn configuration: the server alone (bench/hello_wsgi.py, 5 bytes, no
  Django) and Django alone (bench/floor_settings.py: the app's settings and middleware, the session
  and the logged-in user's query, then a view answering 5 bytes: no template, no query of its own).
- Think time: the run above is a closed loop (every client sends its next request the moment the
  last one returns), so it measures saturation throughput, and its mean latency is 50 / throughput
  whatever the page. People wait between page loads: the floor and both lists again with the same
  50 connections (2 wrk threads, the session cookie) pausing a think time before each request
  (wrk's Lua delay(), uniform 0.5x-1.5x the mean so the clients do not march in step, the first
  request too; default 1 s, --think-ms or BENCH_PAGES_THINK_MS). wrk's latency starts when a request
  is written, after the pause, and ends when its response is read. Every response that is not a
  2xx (counted in Lua: wrk's own count is only of statuses >= 400), and every socket error or
  timeout, fails the run. The requests/s achieved is compared with what a server answering at once
  would get in the same run (50 / think time, less the first pause): well below it means requests
  waited, i.e. the server fell behind.
  Through nginx (Debian package, installed when missing) in front of the same gunicorn, as in
  production ("a TLS-terminating proxy in front", here without TLS): a sync worker reads its request
  from the connection it accepted and blocks until it arrives. wrk opens the next connection the
  moment a response is read (gunicorn closes each one), then waits the think time before writing on
  it, so without a proxy the 4 workers sit blocked on connections whose request is a second away
  (measured at load average 1.8: the empty floor page 36.8 of 47.5 requests/s, p95 785 ms direct,
  against 47.9/s, p95 16 ms through nginx). nginx keeps the clients' idle connections and hands
  gunicorn only whole requests.
  wrk "corrects" its histogram for coordinated omission (stats_correct: for each latency over twice
  run time / (requests per connection), synthetic samples): with a 1 s think time that interval is
  about 1 s, so only latencies over about 2 s would get any.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import ROOT, App, Options, Table, Testbed, ensure_wrk, group_stop, http_wait, ratio, write_result

# 1 s between a response and the next request of the same client: 50 clients offer 50 requests/s,
# an aggressive user (clicking through lists without reading them); a person reading a page waits
# longer, so real load from 50 people is lower still.
THINK_MS = int(os.environ.get("BENCH_PAGES_THINK_MS", "1000"))
PAGES = {"shipment list": "/shipments/", "mailbox list (profile)": "/profile/"}
BASELINE = ("floor: /customers/ with 0 rows", "/customers/")
SERVER_FLOOR = "server alone: a 5-byte WSGI app, no Django"  # bench/hello_wsgi.py, same gunicorn configuration
# bench/floor_settings.py: the app's middleware, session and logged-in user, then 5 bytes (no template, no query
# of its own), same gunicorn configuration: what any logged-in page of this stack costs at least.
DJANGO_FLOOR = "Django alone: a logged-in 5-byte view, the app's middleware"
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

# 50 clients pausing a think time before each request. Non-2xx responses counted here (wrk's own
# count is only of statuses >= 400), per thread, summed in done().
THINK_LUA = """
local think_ms = __THINK_MS__
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("seed", #threads)
end

function init(args)
  math.randomseed(seed * 7919 + os.time())
  non2xx = 0
end

-- before every request of a connection, its first too (wrk starts each connection delayed)
function delay()
  return math.floor(think_ms * (0.5 + math.random()))
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

done = function(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non2xx")
  end
  local out = string.format('{"requests": %d, "seconds": %f, "p50": %d, "p95": %d, "p99": %d, "max": %d, ' ..
    '"mean": %f, "non2xx": %d, "status_400_up": %d, "errors": %d, "threads": %d}',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, latency.mean, bad, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, #threads)
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
    def __init__(self, app: App, port: int, wsgi: str = "tms.wsgi:application", settings: str | None = None) -> None:
        self.port = port
        self.log = app.log(f"pages-gunicorn-{port}")
        env = {**app.env, "DJANGO_SETTINGS_MODULE": settings} if settings else app.env
        self.proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "gunicorn"), wsgi, "--config", "tms/gunicorn_conf.py",
             "--bind", f"127.0.0.1:{port}"],
            env=env, cwd=ROOT, stdout=open(self.log, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT, start_new_session=True)
        if http_wait(f"http://127.0.0.1:{port}/healthz", self.proc, 60):
            return
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

    def measure(self, binary: str, url: str, cookie: str, seconds: int, script: str) -> tuple[dict[str, Any],
                                                                                           dict[str, Any]]:
        """One client first (the service time, no queueing), then 50 clients at saturation with the
        workers' CPU a request ("worker_cpu_ms": less noisy than latency on a shared machine)."""
        one = wrk(binary, url, cookie, max(2, seconds // 2), script, connections=1)
        began_cpu = self.worker_cpu_seconds()
        fifty = wrk(binary, url, cookie, seconds, script)
        fifty["worker_cpu_ms"] = (self.worker_cpu_seconds() - began_cpu) * 1000 / max(1, fifty["requests"])
        return one, fifty

    def stop(self) -> None:
        group_stop(self.proc)


def ensure_nginx() -> str:
    """nginx from Debian (apt-get install -y nginx-light when missing)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if not found:
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "nginx-light"], check=True, capture_output=True, timeout=600)
        found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if not found:
        raise RuntimeError("nginx is not installed and apt-get could not install it")
    return found


class Proxy:
    """nginx on loopback in front of gunicorn, one process: keeps the clients' connections (keep-alive)
    and passes gunicorn whole requests, one connection each (its defaults: request and response
    buffered; the response buffers made big enough for the mailbox list's 130 KB, no temp file)."""

    def __init__(self, app: App, port: int, upstream: int) -> None:
        self.port = port
        work = app.tb.workdir / f"nginx-{port}"
        work.mkdir(parents=True, exist_ok=True)
        self.log = app.log(f"pages-nginx-{port}")
        conf = work / "nginx.conf"
        conf.write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {self.log} warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {work}/body;
  proxy_temp_path {work}/proxy;
  fastcgi_temp_path {work}/fastcgi;
  uwsgi_temp_path {work}/uwsgi;
  scgi_temp_path {work}/scgi;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  proxy_buffers 64 8k;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_set_header Host $http_host;
    }}
  }}
}}
""")
        self.proc = subprocess.Popen([ensure_nginx(), "-p", str(work), "-c", str(conf), "-e", str(self.log)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        if http_wait(f"http://127.0.0.1:{port}/healthz", self.proc, 30):
            return
        self.stop()
        raise RuntimeError(f"nginx did not start: {self.log.read_text()[-2000:] if self.log.exists() else ''}")

    def stop(self) -> None:
        group_stop(self.proc)


def wrk(binary: str, url: str, cookie: str, seconds: int, script: str, connections: int = 50,
        threads: int = 2) -> dict[str, Any]:
    threads = min(threads, connections)
    done = subprocess.run([binary, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
                           "-s", script, "-H", f"Cookie: sessionid={cookie}", url], check=True, capture_output=True,
                          text=True, timeout=seconds + 60)
    line = next(line for line in done.stdout.splitlines() if line.startswith("WRK_JSON "))
    data = dict(json.loads(line.split(" ", 1)[1]))
    data["per_second"] = data["requests"] / data["seconds"]
    for key in ("p50", "p95", "p99", "max"):
        data[f"{key}_ms"] = data.pop(key) / 1000
    return data


def think(binary: str, url: str, cookie: str, seconds: int, script: str, think_ms: int) -> dict[str, Any]:
    """50 clients, each pausing think_ms on average before each request."""
    data = wrk(binary, url, cookie, seconds, script, connections=50)
    if data["threads"] != 2:
        raise RuntimeError(f"wrk counted the responses of {data['threads']} threads, not 2")
    data["mean_ms"] = data.pop("mean") / 1000
    data["offered_per_second"] = 50 * 1000 / think_ms
    # Still a closed loop: each client sends every (think + latency), its first after one think. A server
    # answering at once would see 50 x (D / think - 1/2) requests in D seconds; under 90% of that, the
    # requests waited: the server fell behind.
    data["instant_per_second"] = 50 * (data["seconds"] * 1000 / think_ms - 0.5) / data["seconds"]
    data["kept_up"] = data["per_second"] >= 0.9 * data["instant_per_second"]
    return data


def run(app: App, opts: Options, think_ms: int = THINK_MS) -> dict[str, Any]:
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
    from django.test.utils import override_settings

    from bench.floor_urls import FLOOR_PATH

    with override_settings(ROOT_URLCONF="bench.floor_urls"):
        floor_queries, floor_status = queries(small, FLOOR_PATH)
    if floor_status != 200:
        raise RuntimeError(f"{FLOOR_PATH}: status {floor_status}")
    counts[DJANGO_FLOOR] = {"10 rows": floor_queries}
    script = app.tb.workdir / "wrk-report.lua"
    script.write_text(LUA)
    think_script = app.tb.workdir / "wrk-think.lua"
    think_script.write_text(THINK_LUA.replace("__THINK_MS__", str(think_ms)))
    think_seconds = 2 * seconds  # ~10 requests a client at 1 s: 500 (quick) or 1,000 latencies a page
    thought: dict[str, dict[str, Any]] = {}
    cookie = session_cookie(big)
    latency: dict[str, dict[str, Any]] = {}
    single: dict[str, dict[str, Any]] = {}
    load = {"before": os.getloadavg()}
    # What gunicorn, wrk and loopback allow on this machine now, before any Django: if this row's p95
    # is near the goal, no page can be under it (50 clients always waiting: p95 >= 50 / requests/s).
    bare = Gunicorn(app, free_port(), wsgi="bench.hello_wsgi:application")
    try:
        single[SERVER_FLOOR], latency[SERVER_FLOOR] = bare.measure(
            binary, f"http://127.0.0.1:{bare.port}/", cookie, seconds, str(script))
    finally:
        bare.stop()
    # Django with the app's middleware and a logged-in session, answering 5 bytes: the ceiling of any page here.
    django_floor = Gunicorn(app, free_port(), settings="bench.floor_settings")
    try:
        url = f"http://127.0.0.1:{django_floor.port}{FLOOR_PATH}"
        answer = urllib.request.urlopen(urllib.request.Request(url, headers={"Cookie": f"sessionid={cookie}"}),
                                        timeout=30)
        if answer.geturl() != url or answer.read() != b"hello":
            raise RuntimeError(f"{FLOOR_PATH}: not the logged-in 5 bytes (redirected to {answer.geturl()})")
        single[DJANGO_FLOOR], latency[DJANGO_FLOOR] = django_floor.measure(binary, url, cookie, seconds, str(script))
        if latency[DJANGO_FLOOR]["non2xx"]:
            raise RuntimeError(f"{FLOOR_PATH}: {latency[DJANGO_FLOOR]}")
        print(f"pages {DJANGO_FLOOR}: 50 clients p95 {latency[DJANGO_FLOOR]['p95_ms']:.0f} ms at "
              f"{latency[DJANGO_FLOOR]['per_second']:.0f}/s", flush=True)
    finally:
        django_floor.stop()
    server = Gunicorn(app, free_port())
    proxy = None
    try:
        base = f"http://127.0.0.1:{server.port}"
        proxy = Proxy(app, free_port(), server.port)
        proxied = f"http://127.0.0.1:{proxy.port}"
        for name, path in [BASELINE, *PAGES.items()]:
            for origin in (base, proxied):
                body = urllib.request.urlopen(
                    urllib.request.Request(origin + path, headers={"Cookie": f"sessionid={cookie}"}), timeout=30).read()
                if path == "/shipments/" and body.count(b'<tr data-number="SHP-') != 50:
                    raise RuntimeError("the shipment list does not show a page of 50 shipments: not logged in?")
                if path == "/profile/" and body.count(b"<tr data-mailbox=") != 50:
                    raise RuntimeError("the mailbox list does not show a page of 50 mailboxes: not logged in?")
            single[name], latency[name] = server.measure(binary, base + path, cookie, seconds, str(script))
            if latency[name]["non2xx"] or single[name]["non2xx"]:
                raise RuntimeError(f"{path}: {latency[name]}")
            print(f"pages {name}: 1 client p50 {single[name]['p50_ms']:.0f} ms; 50 clients p95 "
                  f"{latency[name]['p95_ms']:.0f} ms at {latency[name]['per_second']:.0f}/s", flush=True)
            thought[name] = think(binary, proxied + path, cookie, think_seconds, str(think_script), think_ms)
            if thought[name]["non2xx"] or thought[name]["status_400_up"] or thought[name]["errors"]:
                raise RuntimeError(f"{path} with think time: {thought[name]}")
            print(f"pages {name}: 50 clients at {think_ms} ms think time: p95 {thought[name]['p95_ms']:.0f} ms at "
                  f"{thought[name]['per_second']:.1f}/s of {thought[name]['instant_per_second']:.1f} (instant server)",
                  flush=True)
    finally:
        if proxy is not None:
            proxy.stop()
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
    alone = latency[DJANGO_FLOOR]
    table.add(DJANGO_FLOOR, floor_queries, "-", single[DJANGO_FLOOR]["p50_ms"], alone["per_second"], alone["p50_ms"],
              alone["p95_ms"], alone["p99_ms"], f"{ratio(alone['p95_ms'], floor['p95_ms']):.2f}x",
              f"{alone['worker_cpu_ms']:.2f}")
    table.add(BASELINE[0], "-", "-", single[BASELINE[0]]["p50_ms"], floor["per_second"], floor["p50_ms"],
              floor["p95_ms"], floor["p99_ms"], "1.00x", f"{floor['worker_cpu_ms']:.2f}")
    for name in PAGES:
        row = latency[name]
        table.add(name, counts[name]["10 rows"], counts[name]["1,000 rows"], single[name]["p50_ms"], row["per_second"],
                  row["p50_ms"], row["p95_ms"], row["p99_ms"], f"{ratio(row['p95_ms'], floor['p95_ms']):.1f}x",
                  f"{row['worker_cpu_ms']:.2f}")
    table.print()
    paced = Table(f"Pages: 50 clients at saturation (above, no pause) vs 50 clients at {think_ms / 1000:g} s "
                  f"think time (uniform {think_ms // 2}-{think_ms * 3 // 2} ms from a response to the next request: "
                  f"{50_000 / think_ms:g} requests/s offered, an aggressive user; through nginx as in production), "
                  f"{think_seconds} s each. (instant): the requests/s a server answering at once would get in the "
                  "same run (the first request too waits a think time); under 90% of it: the server fell behind",
                  ["page", "saturation: requests/s", "p50 ms", "p95 ms", "think time: requests/s (instant)",
                   "achieved / instant", "p50 ms", "p95 ms", "p99 ms", "max ms", "non-2xx + errors"])
    for name, _ in [BASELINE, *PAGES.items()]:
        sat, row = latency[name], thought[name]
        share = ratio(row["per_second"], row["instant_per_second"])
        paced.add(name, sat["per_second"], sat["p50_ms"], sat["p95_ms"],
                  f"{row['per_second']:.1f} ({row['instant_per_second']:.1f})",
                  f"{share:.0%}" + ("" if row["kept_up"] else ": server fell behind"), row["p50_ms"],
                  row["p95_ms"], row["p99_ms"], row["max_ms"], row["non2xx"] + row["errors"])
    paced.print()
    print(f"load average (1, 5, 15 min) before {load['before']}, after {load['after']}")
    tables = table.render() + "\n" + paced.render()
    result = write_result("pages", {"seconds_per_page": seconds, "connections": 50, "server": f"gunicorn {SERVER}",
                                  "queries": counts, "latency": latency, "one_client": single,
                                  "think_time": {"mean_ms": think_ms, "uniform_ms": [think_ms // 2, think_ms * 3 // 2],
                                                 "seconds_per_page": think_seconds, "wrk_threads": 2,
                                                 "through": "nginx (keep-alive to the clients) -> the same gunicorn",
                                                 "latency": thought},
                                  "load_average": load, "table": tables})
    return {"table": tables, "json": str(result)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--think-ms", type=int, default=THINK_MS,
                        help="mean pause of a client between pages (default 1000, BENCH_PAGES_THINK_MS)")
    args = parser.parse_args()
    with Testbed() as tb:
        run(App(tb), Options(quick=args.quick), think_ms=args.think_ms)


if __name__ == "__main__":
    main()
