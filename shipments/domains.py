"""E-mail domains: which ones can name a customer."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

# Mail providers anyone can sign up with: a sender's domain there says nothing about their company.
FREE_MAIL_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.ca", "yahoo.co.uk", "ymail.com", "rocketmail.com",
    "hotmail.com", "hotmail.ca", "hotmail.co.uk", "outlook.com", "live.com", "live.ca", "msn.com", "aol.com",
    "icloud.com", "me.com", "mac.com", "protonmail.com", "proton.me", "pm.me", "gmx.com", "gmx.net",
    "gmx.de", "mail.com", "yandex.com", "yandex.ru", "zoho.com", "zohomail.com", "tutanota.com",
    "fastmail.com", "hey.com", "comcast.net", "att.net", "sbcglobal.net", "verizon.net", "bellsouth.net",
    "cox.net", "charter.net", "earthlink.net", "shaw.ca", "rogers.com", "sympatico.ca", "videotron.ca",
    "qq.com", "163.com", "126.com", "mail.ru", "web.de", "prodigy.net.mx",
})

_DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$")


def domain_of(address: str) -> str:
    """The lower-cased domain of an e-mail address ("" when it has none)."""
    _, _, domain = address.strip().rpartition("@")
    return domain.strip().strip(".").lower() if "@" in address else ""


def is_free_mail(domain: str) -> bool:
    return domain.lower() in FREE_MAIL_DOMAINS


def domain_normalise(value: str) -> str:
    """"@Acme.COM " -> "acme.com"; ValidationError for what is not a company's domain."""
    domain = value.strip().lstrip("@").strip(".").lower()
    if not _DOMAIN.match(domain):
        raise ValidationError(f"{value!r} is not a domain name (e.g. acme-shipping.com)")
    if is_free_mail(domain):
        raise ValidationError(f"{domain} is a free-mail domain: it cannot identify a customer")
    return domain
