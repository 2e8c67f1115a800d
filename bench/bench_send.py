"""Send: N messages through one IMAP/SMTP mailbox to aiosmtpd, ours beside Django's SMTP backend.

    .venv/bin/python -m bench send [--quick]

The mailbox: SMTP = the test bed's aiosmtpd submission server (STARTTLS, AUTH PLAIN, verified
TLS), IMAP = Dovecot (for the Sent copy). Each contestant runs in a child process (aiosmtpd runs
in threads of the bench process: never in the measured process), sends the same N messages
(subject, 1 KB body, one recipient each) and is timed from its first message built to its last
one accepted:

- django, new connection per message: EmailMessage(...).send() with a fresh SMTP EmailBackend
  connection each time - what send_mail() does;
- django, one connection: EmailBackend.send_messages() of all N messages over one connection;
- ours: mailboxes.sending.messages_queue() of all N messages (checks, build, the OutboundMessage
  rows: the bulk API, as send_messages() is Django's), then mailbox_deliver_queued() - one SMTP
  connection for the batch, the rows marked SENT, the Sent copies filed over one IMAP session
  (MULTIAPPEND), the message_sent signal and webhooks;
- ours, per message: the same with one message_queue() call per message (the single-message API).

Django per message runs once (minutes); the others run 3 times, alternating, and the median of each
is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from bench.common import PYTHON, ROOT, App, Options, Table, Testbed, median, ratio, write_result

SENDER = "alice@example.test"
PASSWORD = "alice-pass"
BODY = ("Hello,\n\nPlease find the rate confirmation for the load below. Pickup at the dock between "
        "08:00 and 14:00; call the dispatcher on arrival.\n\n") * 5


def message_fields(i: int) -> dict[str, Any]:
    return {"to": [f"dispatch{i % 50}@carrier.example"], "subject": f"Rate confirmation {i}",
            "body": f"{BODY}Reference {i}\n"}


# ----------------------------------------------------------------------------- children


def child_django(n: int, port: int, per_message: bool) -> dict[str, Any]:
    from django.core.mail import EmailMessage
    from django.core.mail.backends.smtp import EmailBackend

    def backend() -> EmailBackend:
        return EmailBackend(host="127.0.0.1", port=port, username=SENDER, password=PASSWORD, use_tls=True,
                            fail_silently=False, timeout=30)

    began = time.perf_counter()
    sent = 0
    if per_message:
        for i in range(n):
            f = message_fields(i)
            sent += EmailMessage(f["subject"], f["body"], SENDER, f["to"], connection=backend()).send()
    else:
        messages = []
        for i in range(n):
            f = message_fields(i)
            messages.append(EmailMessage(f["subject"], f["body"], SENDER, f["to"]))
        conn = backend()
        sent = conn.send_messages(messages) or 0
    return {"seconds": time.perf_counter() - began, "sent": sent}


def child_ours(n: int, mailbox_id: int, bulk: bool) -> dict[str, Any]:
    from mailboxes.models import Mailbox, OutboundMessage
    from mailboxes.sending import Outgoing, mailbox_deliver_queued, message_queue, messages_queue

    mailbox = Mailbox.unscoped.select_related("tenant", "staff").get(pk=mailbox_id)
    began = time.perf_counter()
    if bulk:
        messages = []
        for i in range(n):
            f = message_fields(i)
            messages.append(Outgoing(to=f["to"], subject=f["subject"], body_text=f["body"]))
        messages_queue(tenant=mailbox.tenant, staff=mailbox.staff, mailbox=mailbox, messages=messages, enqueue=False)
    else:
        for i in range(n):
            f = message_fields(i)
            message_queue(tenant=mailbox.tenant, staff=mailbox.staff, mailbox=mailbox, to=f["to"],
                          subject=f["subject"], body_text=f["body"], enqueue=False)
    queued = time.perf_counter() - began
    sent = 0
    while True:
        results = mailbox_deliver_queued(mailbox_id=mailbox_id, limit=n)
        if not results:
            break
        sent += sum(1 for r in results.values() if r.status == "sent")
    seconds = time.perf_counter() - began
    rows = OutboundMessage.unscoped.filter(mailbox_id=mailbox_id)
    return {"seconds": seconds, "queue_seconds": queued, "sent": sent,
            "rows_sent": rows.filter(status="sent").count(),
            "sent_copies_pending": rows.filter(sent_copy_pending=True).count()}


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mailbox", type=int, default=0)
    args = parser.parse_args(argv)
    import django

    django.setup()
    if args.child in ("ours", "ours-per-message"):
        out = child_ours(args.n, args.mailbox, bulk=args.child == "ours")
    else:
        out = child_django(args.n, args.port, per_message=args.child == "django-per-message")
    print(json.dumps(out), flush=True)


# ----------------------------------------------------------------------------- the benchmark


def _child(app: App, mode: str, n: int, mailbox_id: int, profile: bool = False) -> dict[str, Any]:
    port = app.tb.smtp.submission_port
    prof = ["-m", "cProfile", "-o", str(ROOT / "bench" / "results" / f"send-{mode}.prof")] if profile else []
    done = subprocess.run([PYTHON, *prof, "-m", "bench.bench_send", "--child", mode, "--n", str(n), "--port",
                           str(port), "--mailbox", str(mailbox_id)], check=False, env=app.env, cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    (app.log(f"send-{mode}")).write_text(done.stderr)
    if done.returncode:
        raise RuntimeError(f"send child {mode}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run(app: App, opts: Options) -> dict[str, Any]:
    from mailboxes.models import OutboundMessage
    from tests.factories import make_mailbox, make_staff, make_tenant

    tb = app.tb
    n = 500 if opts.quick else 2_000
    # Django's new-connection-per-message pass alone takes minutes here: it runs once. The others
    # run ROUNDS times, alternating, and the median of each is reported (the machine is shared:
    # one run of a few seconds moves 2x with the load).
    rounds = 3
    tenant = make_tenant(slug="send", name="Send Bench")
    staff = make_staff(tenant, "sender@bench.example", name="Bench Sender")
    mailbox = make_mailbox(staff, SENDER, imap_port=tb.dovecot.imaps_port, smtp_port=tb.smtp.submission_port,
                           smtp_security="starttls", secret=PASSWORD, permission="send")
    modes = ["django-per-message", "django-one-connection", "ours", "ours-per-message"]
    samples: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for round_ in range(rounds):
        for mode in modes:
            if mode == "django-per-message" and round_:
                continue
            OutboundMessage.unscoped.filter(mailbox=mailbox).delete()
            tb.smtp.clear()
            out = _child(app, mode, n, mailbox.pk, opts.profile)
            received = len(tb.smtp.messages)
            if out["sent"] != n or received != n:
                raise RuntimeError(f"send {mode}: sent {out['sent']}, aiosmtpd received {received}, of {n}")
            if mode.startswith("ours") and (out["rows_sent"] != n or out["sent_copies_pending"]):
                raise RuntimeError(f"send ours: {out}")
            samples[mode].append(out)
            print(f"send {mode}: {n / out['seconds']:.0f}/s", flush=True)
    rate = {m: median([n / s["seconds"] for s in samples[m]]) for m in modes}
    from bench.common import folder_count

    sent_folder = folder_count(tb.dovecot, SENDER, PASSWORD, "Sent")
    table = Table(f"Send (messages/s, N = {n}, median of {rounds}, Django per message 1; ratio = ours / baseline)",
                  ["contestant", "messages/s", "ours / this"])
    table.add("Django EmailBackend, new connection per message", rate["django-per-message"],
              f"{ratio(rate['ours'], rate['django-per-message']):.2f}x")
    table.add("Django EmailBackend, one connection", rate["django-one-connection"],
              f"{ratio(rate['ours'], rate['django-one-connection']):.2f}x")
    table.add("ours: messages_queue + deliver + Sent copy + outbound log", rate["ours"], "1.00x")
    table.add("ours, one message_queue call per message (then the same delivery)", rate["ours-per-message"],
              f"{ratio(rate['ours'], rate['ours-per-message']):.2f}x")
    table.print()
    per_message = rate["ours-per-message"]
    print(f"ours per message: {ratio(per_message, rate['django-per-message']):.2f}x Django per message, "
          f"{ratio(per_message, rate['django-one-connection']):.2f}x Django one connection", flush=True)
    queue_share = {m: median([s["queue_seconds"] / s["seconds"] for s in samples[m]])
                   for m in ("ours", "ours-per-message")}
    print(f"ours: {100 * queue_share['ours']:.0f}% of the time in messages_queue (checks, build, rows); "
          f"per message: {100 * queue_share['ours-per-message']:.0f}% in message_queue; "
          f"Sent folder holds {sent_folder} copies (every run of ours)", flush=True)
    path = write_result("send", {"n": n, "rounds": rounds, "per_second": rate, "samples": samples,
                                 "ours_queue_share": queue_share, "sent_folder_messages": sent_folder,
                                 "table": table.render()})
    return {"table": table.render(), "json": str(path)}


def main() -> None:
    if "--child" in sys.argv:
        child_main(sys.argv[1:])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with Testbed() as tb:
        run(App(tb), Options(quick=args.quick, profile=args.profile))


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tms.settings")
    main()
