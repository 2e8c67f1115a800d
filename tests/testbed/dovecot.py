"""A private Dovecot (IMAP + submission) in the foreground, with its own config: nothing in /etc/dovecot is read."""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import shutil
import time
from pathlib import Path
from typing import Self

from ._proc import (
    HOST,
    ProcessServer,
    TestbedError,
    free_port,
    is_root,
    port_open,
    spawn,
    stop_group,
    subdir,
    wait_until,
)
from .certs import Certs
from .oauth import OAuthServer

DEFAULT_USERS = {"alice@example.test": "alice-pass", "bob@example.test": "bob-pass"}
DOVECOT = "/usr/sbin/dovecot"

CONFIG = """\
# private test instance, written by tests/testbed/dovecot.py
instance_name = testbed-{port_imap}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap submission
listen = {host}
hostname = mail.example.test
postmaster_address = postmaster@example.test
default_internal_user = dovecot
default_login_user = dovenull

ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_dh = </usr/share/dovecot/dh.pem
disable_plaintext_auth = no

auth_mechanisms = plain login xoauth2 oauthbearer
auth_verbose = yes
# The default of 2 s makes every negative test slow. Even at 0 a failure takes about 0.5 s.
auth_failure_delay = 0
# Turn the anvil auth penalty off (2, 4, 8, then 15 s before every auth from an IP after failures there):
# nothing listens on the socket name the auth process looks for. login_trusted_networks does not help.
# A stale anvil-auth-penalty socket in base_dir brings the delay back, so base_dir is wiped at each start.
service anvil {{
  unix_listener anvil-auth-penalty {{
    path = anvil-auth-penalty-off
  }}
}}
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {d}/users/%u
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {d}/oauth2.conf.ext
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={mail}/%d/%n
}}

# IDLE, MOVE, UIDPLUS, SPECIAL-USE, CONDSTORE and QRESYNC are on by default in 2.3: no mail_plugins needed.
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Archive {{
    special_use = \\Archive
    auto = subscribe
  }}
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
  mailbox Junk {{
    special_use = \\Junk
    auto = subscribe
  }}
}}
protocol imap {{
  mail_max_userip_connections = 100
}}

# With TLS each session keeps its imap-login process (the TLS proxy): room for the pollers' kept
# connections (mailboxes/sessions.py; bench/bench_idle.py keeps up to 2 x 1,000), past the default of 100.
default_client_limit = 5000
service imap {{
  process_limit = 2500
}}
service imap-login {{
  process_limit = 2500
  inet_listener imap {{
    port = {port_imap}
  }}
  inet_listener imaps {{
    port = {port_imaps}
    ssl = yes
  }}
}}
service submission-login {{
  inet_listener submission {{
    port = {port_submission}
  }}
  inet_listener submissions {{
    port = {port_submissions}
    ssl = yes
  }}
}}
# SASL for Postfix (smtpd_sasl_type = dovecot, smtpd_sasl_path = inet:{host}:{port_auth})
service auth {{
  inet_listener auth-postfix {{
    address = {host}
    port = {port_auth}
  }}
}}
# Dovecot submission does not deliver: it relays to an MTA, here the aiosmtpd sink.
submission_relay_host = {host}
submission_relay_port = {relay_port}
submission_relay_trusted = yes
"""

OAUTH2_POST = """\
introspection_mode = post
introspection_url = {issuer}/introspect
force_introspection = yes
active_attribute = active
active_value = true
username_attribute = email
tls_ca_cert_file = {ca}
timeout_msecs = 5000
debug = {debug}
"""

OAUTH2_LOCAL = """\
introspection_mode = local
local_validation_key_dict = fs:posix:prefix={d}/keys/
issuers = {issuer}
username_attribute = email
debug = {debug}
"""


class Dovecot(ProcessServer):
    """Dovecot 2.3 run as `dovecot -F -c WORKDIR/dovecot/dovecot.conf`, our child.

    Ports on 127.0.0.1: imap_port (plain + STARTTLS), imaps_port, submission_port (STARTTLS),
    submissions_port, auth_port (SASL for Postfix). Users: a passwd-file with {PLAIN} passwords
    (users: dict email -> password; add_user() adds one, seen at the next login), one file per user,
    and XOAUTH2 / OAUTHBEARER through the oauth2 passdb against the OAuth mock: oauth_mode "post" (each token
    posted to the mock's /introspect) or "local" (Dovecot checks the JWT with the mock's public key).
    Submission relays to relay_port (the aiosmtpd sink). Mail: WORKDIR/mail/<domain>/<user>/Maildir, owned by
    nobody:nogroup when run as root (Dovecot refuses root as the mail user).
    """

    name = "dovecot"

    def __init__(self, workdir: Path, certs: Certs, oauth: OAuthServer | None = None, relay_port: int = 25,
                 users: dict[str, str] | None = None, oauth_mode: str = "post", debug: bool = False) -> None:
        self.certs = certs
        self.oauth = oauth
        self.relay_port = relay_port
        self.oauth_mode = oauth_mode
        self.debug = debug
        self.dir = Path(workdir) / "dovecot"
        self.mail = Path(workdir) / "mail"
        self.log = self.dir / "dovecot.log"
        # the dict itself is kept: a Testbed shares it with SmtpServers, so add_user() counts for both
        self.users: dict[str, str] = dict(DEFAULT_USERS) if users is None else users
        self.imap_port = free_port()
        self.imaps_port = free_port()
        self.submission_port = free_port()
        self.submissions_port = free_port()
        self.auth_port = free_port()
        self.host = HOST
        self._users_mtime = 0

    @property
    def ports(self) -> dict[str, int]:
        return {"imap": self.imap_port, "imaps": self.imaps_port, "submission": self.submission_port,
                "submissions": self.submissions_port, "auth": self.auth_port}

    # ---- users and mail ----
    def add_user(self, email: str, password: str) -> None:
        """Add a user or change a password; the next login sees it.

        Each user has a passwd-file of its own (WORKDIR/dovecot/users/<email>): Dovecot re-reads a
        passwd-file only when its mtime or size changed, and checks at most once a second. A new user's file
        is read at its first login, at once; a changed one waits for the next whole second (here, in this call).
        """
        self.users[email] = password
        if not self.running:
            return                          # start() writes every user's file
        existed = (self.dir / "users" / email).exists()
        self._write_user(email)
        if existed:
            time.sleep(1.05 - time.time() % 1)

    def remove_user(self, email: str) -> None:
        self.users.pop(email, None)
        (self.dir / "users" / email).unlink(missing_ok=True)
        if self.running:
            time.sleep(1.05 - time.time() % 1)

    def _write_user(self, email: str) -> None:
        if "/" in email or email.startswith("."):
            raise ValueError(f"not usable as a file name: {email!r}")
        path = self.dir / "users" / email
        tmp = path.with_name(f".{email}.tmp")
        tmp.write_text(f"{email}:{{PLAIN}}{self.users[email]}\n")
        tmp.chmod(0o644)          # read by the auth process, which runs as the user dovecot
        # the mtime must differ from the one Dovecot saw last, even within one second
        stamp = max(int(time.time()), self._users_mtime + 1)
        os.utime(tmp, (stamp, stamp))
        self._users_mtime = stamp
        tmp.replace(path)

    def maildir(self, email: str) -> Path:
        """The user's Maildir (made at the first login or delivery)."""
        local, domain = email.split("@", 1)
        return self.mail / domain / local / "Maildir"

    def append(self, email: str, message: bytes, folder: str = "INBOX", flags: str = "",
               password: str | None = None) -> int:
        """Put a message into a mailbox the way a client would (IMAP APPEND over TLS); returns its UID."""
        conn = imaplib.IMAP4_SSL(HOST, self.imaps_port, ssl_context=self.certs.client_context(), timeout=10)
        try:
            conn.login(email, password or self.users[email])
            typ, data = conn.append(folder, f"({flags})" if flags else None,
                                    imaplib.Time2Internaldate(time.time()), message)
            if typ != "OK":
                raise TestbedError(f"APPEND to {email}/{folder}: {typ} {data!r}")
            # [APPENDUID <uidvalidity> <uid>] (UIDPLUS)
            code = data[0].decode() if isinstance(data[0], bytes) else str(data[0])
            return int(code.split("APPENDUID", 1)[1].split()[1].rstrip("]"))
        finally:
            conn.logout()

    # ---- process ----
    def start(self) -> Self:
        if self.running:
            return self
        if not Path(DOVECOT).exists():
            raise TestbedError(f"no {DOVECOT}: run scripts/install-system.sh")
        self.certs.create()
        d = subdir(self.dir.parent, self.dir.name)
        # A stale anvil-auth-penalty socket from an earlier start brings back a 5 s delay on the first login.
        shutil.rmtree(d / "run", ignore_errors=True)
        for sub in ("run", "state", "keys"):
            subdir(d, sub)
        subdir(self.mail.parent, self.mail.name)
        if is_root():
            mail_uid, mail_gid = "nobody", "nogroup"
            os.chown(self.mail, pwd.getpwnam(mail_uid).pw_uid, grp.getgrnam(mail_gid).gr_gid)
        else:
            mail_uid, mail_gid = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
        shutil.rmtree(d / "users", ignore_errors=True)
        subdir(d, "users")
        for user in self.users:
            self._write_user(user)
        self._write_oauth2_config()
        (d / "dovecot.conf").write_text(CONFIG.format(
            d=d, host=HOST, mail=self.mail, cert=self.certs.cert, key=self.certs.key, mail_uid=mail_uid,
            mail_gid=mail_gid, relay_port=self.relay_port, port_imap=self.imap_port, port_imaps=self.imaps_port,
            port_submission=self.submission_port, port_submissions=self.submissions_port,
            port_auth=self.auth_port))
        self.proc = spawn([DOVECOT, "-F", "-c", d / "dovecot.conf"], d / "stdout.log")
        wait_until("dovecot", lambda: all(port_open(p) for p in self.ports.values()), 20, self.proc, self.log)
        return self

    def stop(self) -> None:
        """SIGTERM; once the imap/submission/auth processes have exited, SIGKILL the master and its log
        process instead of waiting 1.1 s for them (5 s when stopped within a second of starting)."""
        if self.proc is not None:
            stop_group(self.proc, grace=0.5, spare=lambda cmd: cmd.endswith("/log"))
            self.proc = None

    def _write_oauth2_config(self) -> None:
        d = self.dir
        issuer = self.oauth.issuer if self.oauth else "https://127.0.0.1:1"
        debug = "yes" if self.debug else "no"
        if self.oauth_mode == "local":
            if self.oauth is None:
                raise TestbedError("oauth_mode=local needs the OAuth server (its signing key)")
            self._write_public_key()
            text = OAUTH2_LOCAL.format(d=d, issuer=issuer, debug=debug)
        else:
            text = OAUTH2_POST.format(issuer=issuer, ca=self.certs.ca, debug=debug)
        (d / "oauth2.conf.ext").write_text(text)
        (d / "oauth2.conf.ext").chmod(0o644)

    def _write_public_key(self) -> None:
        """Where local validation looks: <prefix>/<azp or 'default'>/<alg>/<kid>, in PEM. The mock's tokens
        carry no azp, hence 'default'."""
        import json

        import jwt
        from cryptography.hazmat.primitives import serialization

        assert self.oauth is not None
        jwk = json.loads(self.oauth.key_file.read_text())
        key = jwt.PyJWK(jwk).key
        pub = key.public_key() if hasattr(key, "public_key") else key
        pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        target = self.dir / "keys" / "default" / jwk.get("alg", "RS256")
        target.mkdir(parents=True, exist_ok=True)
        (target / jwk["kid"]).write_bytes(pem)
        for p in (self.dir / "keys", target.parent, target):
            p.chmod(0o755)

    def message_count(self, email: str, folder: str = "INBOX") -> int:
        """Messages in a folder, counted on disk (new/ + cur/); no login needed."""
        base = self.maildir(email) if folder == "INBOX" else self.maildir(email) / f".{folder.replace('/', '.')}"
        return sum(len(os.listdir(base / sub)) for sub in ("new", "cur") if (base / sub).exists())


def make_message(sender: str, to: str, subject: str, body: str = "hello\n") -> bytes:
    """A small RFC 5322 message with CRLF line ends, for append() and SMTP tests."""
    import email.policy
    from email.message import EmailMessage

    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, to, subject
    m["Date"] = email.utils.formatdate(localtime=True)
    m["Message-ID"] = email.utils.make_msgid(domain="example.test")
    m.set_content(body)
    return m.as_bytes(policy=email.policy.SMTP)
