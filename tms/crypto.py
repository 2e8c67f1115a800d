"""Secrets at rest: a text field encrypted with MultiFernet.

Keys come from FIELD_ENCRYPTION_KEYS (never derived from SECRET_KEY): the first key encrypts,
every key decrypts, so keys are rotated by putting a new key first, running
`manage.py rotate_keys`, then dropping the old key. A value no key can decrypt raises
DecryptionError; it is never returned raw. Encrypted columns cannot be filtered on.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


class DecryptionError(Exception):
    """A stored secret that none of the configured keys can decrypt."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(value: str) -> str:
    return fernet().encrypt(value.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError) as exc:
        raise DecryptionError(
            "a stored secret cannot be decrypted with FIELD_ENCRYPTION_KEYS (was a key removed?)"
        ) from exc


class EncryptedTextField(models.TextField):
    """Stores a Fernet token; Python code only ever sees the plain text. Empty stays empty."""

    description = "Text encrypted at rest (MultiFernet)"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(str(value))

    def get_lookup(self, lookup_name: str) -> Any:
        # A Fernet token is randomised: equality or containment on the column can never match.
        if lookup_name not in {"isnull"}:
            raise TypeError(f"EncryptedTextField does not support the '{lookup_name}' lookup")
        return super().get_lookup(lookup_name)


def encrypted_fields() -> list[tuple[type[models.Model], list[str]]]:
    """Every concrete model with encrypted fields, and those fields' names."""
    from django.apps import apps

    found = []
    for model in apps.get_models():
        names = [f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
        if names:
            found.append((model, names))
    return found
