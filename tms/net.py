"""The one place that decides where the app may open sockets to user-supplied hosts, and how.

IMAP/SMTP hosts come from users, so a host that resolves to a private, loopback, link-local or
otherwise non-public address is refused (server-side request forgery into the internal network)
unless MAILBOX_ALLOW_PRIVATE_HOSTS is set. TLS contexts always verify certificates and host
names; MAILBOX_CA_FILE adds a CA (test servers, private PKI) on top of the system store.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings


class Stage:
    """Where a connection attempt failed, in the order they happen."""

    DNS = "dns"
    BLOCKED = "blocked"
    CONNECT = "connect"
    TLS = "tls"
    AUTH = "authentication"
    PROTOCOL = "protocol"


@dataclass
class NetError(Exception):
    stage: str
    message: str

    def __str__(self) -> str:
        return f"{self.stage}: {self.message}"


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int) -> list[str]:
    """The host's addresses; NetError(DNS) when it does not resolve, NetError(BLOCKED) when any
    address is not public and private hosts are not allowed."""
    host = host.strip()
    if not host or len(host) > 253 or any(c.isspace() or c in "/@:\\" for c in host.strip("[]")):
        raise NetError(Stage.DNS, f"not a valid host name: {host!r}")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise NetError(Stage.DNS, f"{host} does not resolve ({exc})") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    if not settings.MAILBOX_ALLOW_PRIVATE_HOSTS:
        blocked = [a for a in addresses if not is_public_address(a)]
        if blocked:
            raise NetError(Stage.BLOCKED, f"{host} resolves to a private or local address ({blocked[0]})")
    return addresses


@lru_cache(maxsize=4)
def _ssl_context(ca_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def ssl_context() -> ssl.SSLContext:
    """A verifying client context (CERT_REQUIRED, host names checked), shared and cached."""
    return _ssl_context(settings.MAILBOX_CA_FILE)


def connect_timeout() -> int:
    return int(settings.MAILBOX_CONNECT_TIMEOUT)
