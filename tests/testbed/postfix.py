"""A private Postfix as a submission server, using Dovecot's auth service for SASL and relaying to the sink."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import socket
import time
from pathlib import Path
from typing import Self

from ._proc import (
    HOST,
    ProcessServer,
    TestbedError,
    free_port,
    is_root,
    log_tail,
    port_open,
    run_quiet,
    spawn,
    stop_group,
    subdir,
    wait_until,
)

MASTER = "/usr/lib/postfix/sbin/master"

MAIN_CF = """\
# private test instance, written by tests/testbed/postfix.py
compatibility_level = 3.6
queue_directory = {p}/queue
data_directory = {p}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.example.test
mydomain = example.test
myorigin = example.test
mydestination =
local_transport = error:no local delivery
# without these two the log fills with "open database /etc/aliases.db" errors
alias_maps =
alias_database =
inet_interfaces = {host}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [{host}]:{relay_port}
# no syslog here: log to a file (maillog_file needs maillog_file_prefixes to cover its path, and a postlog service)
maillog_file = {p}/maillog
maillog_file_prefixes = {p}
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtp_tls_security_level = none
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:{host}:{auth_port}
smtpd_sasl_auth_enable = no
# AUTH lines carrying big bearer tokens (default 2048)
line_length_limit = 12288
smtpd_relay_restrictions = permit_sasl_authenticated, reject
delay_warning_time = 0
# a sink that answers 4xx: retry soon, so a test can see the message arrive once the fault is gone
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
"""

MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
{host}:{port} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
{host}:{tls_port} inet n - n - - smtpd
  -o syslog_name=postfix/submissions
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _greets(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2) as s:
            return s.recv(64).startswith(b"220")
    except OSError:
        return False


class Postfix(ProcessServer):
    """Postfix (Debian's 3.7) with a private config in WORKDIR/postfix: submission on port (STARTTLS
    required) and tls_port (implicit TLS). SASL (PLAIN, LOGIN, XOAUTH2, OAUTHBEARER) goes to Dovecot's auth
    listener (dovecot_auth_port), so it accepts whatever Dovecot accepts, JWT-sized initial responses
    included. Accepted mail is relayed to relay_port (the aiosmtpd sink). Needs root (Postfix drops to the
    user postfix). The master runs in the foreground as our child; its log: WORKDIR/postfix/maillog.
    """

    name = "postfix"

    def __init__(self, workdir: Path, cert: Path, key: Path, dovecot_auth_port: int, relay_port: int,
                 port: int | None = None, tls_port: int | None = None) -> None:
        self.dir = Path(workdir) / "postfix"
        self.log = self.dir / "maillog"
        self.cert, self.key = cert, key
        self.dovecot_auth_port = dovecot_auth_port
        self.relay_port = relay_port
        self.port = port or free_port()
        self.tls_port = tls_port or free_port()
        self.host = HOST

    @property
    def ports(self) -> dict[str, int]:
        return {"submission": self.port, "submissions": self.tls_port}

    def start(self) -> Self:
        if self.running:
            return self
        if not Path(MASTER).exists():
            raise TestbedError(f"no {MASTER}: run scripts/install-system.sh")
        if not is_root():
            raise TestbedError("the test bed's Postfix needs root")
        p = subdir(self.dir.parent, self.dir.name)
        conf = subdir(p, "conf")
        self._make_queue(p)
        if Path("/etc/postfix/dynamicmaps.cf").exists():
            shutil.copyfile("/etc/postfix/dynamicmaps.cf", conf / "dynamicmaps.cf")
        (conf / "main.cf").write_text(MAIN_CF.format(
            p=p, host=HOST, relay_port=self.relay_port, cert=self.cert, key=self.key,
            auth_port=self.dovecot_auth_port))
        (conf / "master.cf").write_text(MASTER_CF.format(host=HOST, port=self.port, tls_port=self.tls_port))
        # Postfix re-reads a config file younger than 2 s every 0.3 s until it is older (it might still be being
        # written): date the files back, or the start takes 2 s longer.
        past = time.time() - 10
        for f in conf.iterdir():
            os.utime(f, (past, past))
        # The master in the foreground (`postfix start` would daemonise it): our child, stopped by pid.
        self.proc = spawn([MASTER, "-c", conf], p / "master.log")
        try:
            wait_until("postfix", lambda: _greets(self.port) and port_open(self.tls_port), 30, self.proc,
                       self.log)
        except TestbedError as exc:
            # Postfix reports fatal errors only to syslog or a tty: script(1) gives `postfix check` a tty.
            with contextlib.suppress(TestbedError):
                run_quiet(["script", "-qec", f"postfix -c {conf} check", "/dev/null"], p / "check.log", "check")
            raise TestbedError(f"{exc}{log_tail(p / 'check.log')}") from None
        return self

    @staticmethod
    def _make_queue(p: Path) -> None:
        """The queue directories as /etc/postfix/postfix-files has them. `postfix check` would make them
        too, but takes 1.8 s for it."""
        postfix = pwd.getpwnam("postfix").pw_uid
        postdrop = grp.getgrnam("postdrop").gr_gid
        queue = subdir(p, "queue")
        for name, uid, gid, mode in [
            *((n, postfix, -1, 0o700) for n in ("active", "bounce", "corrupt", "defer", "deferred", "flush",
                                                "hold", "incoming", "private", "saved", "trace")),
            ("maildrop", postfix, postdrop, 0o730), ("public", postfix, postdrop, 0o710), ("pid", 0, -1, 0o755),
        ]:
            d = queue / name
            d.mkdir(exist_ok=True)
            os.chown(d, uid, gid)
            d.chmod(mode)
        data = p / "data"
        data.mkdir(exist_ok=True)
        os.chown(data, postfix, -1)
        data.chmod(0o700)

    def stop(self) -> None:
        """SIGTERM: the master passes it to its children and exits."""
        if self.proc is not None:
            stop_group(self.proc, grace=5.0)
            self.proc = None
