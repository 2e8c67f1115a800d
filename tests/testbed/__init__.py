"""Real servers on 127.0.0.1 for the tests, the demo and the benchmarks: no protocol is mocked.

Each launcher picks free ports, keeps its state in a work directory, waits until its server answers, and
stops it by pid; start()/stop()/restart(), or use it as a context manager. Testbed starts them on demand in
one work directory. tests/testbed/fixtures.py makes them pytest fixtures; `python -m tests.testbed` runs
them by hand. System software: scripts/install-system.sh.
"""

from ._proc import TestbedError, free_port, make_workdir
from .browser import ARGS as CHROMIUM_ARGS
from .browser import ChromiumBrowser
from .certs import Certs
from .dovecot import DEFAULT_USERS, Dovecot, make_message
from .oauth import GOOGLE_SCOPES, MICROSOFT_SCOPES, OAuthError, OAuthServer, Tokens
from .postfix import Postfix
from .postgres import Postgres
from .redis import Redis
from .smtp import Received, SmtpServers
from .testbed import Testbed

__all__ = [
    "CHROMIUM_ARGS",
    "DEFAULT_USERS",
    "GOOGLE_SCOPES",
    "MICROSOFT_SCOPES",
    "Certs",
    "ChromiumBrowser",
    "Dovecot",
    "OAuthError",
    "OAuthServer",
    "Postfix",
    "Postgres",
    "Received",
    "Redis",
    "SmtpServers",
    "Testbed",
    "TestbedError",
    "Tokens",
    "free_port",
    "make_message",
    "make_workdir",
]
