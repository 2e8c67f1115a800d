"""Provider registry: a key maps to its class; adding a provider is adding a module here."""

from __future__ import annotations

from importlib import import_module

from .base import AuthorizationError, Endpoint, Provider, ProviderError, SmtpAuth

_MODULES = {"google": "google", "microsoft": "microsoft", "imap": "imap"}
_cache: dict[str, Provider] = {}


def get_provider(key: str) -> Provider:
    if key not in _cache:
        if key not in _MODULES:
            raise KeyError(f"unknown mailbox provider {key!r}")
        module = import_module(f"{__name__}.{_MODULES[key]}")
        _cache[key] = module.PROVIDER
    return _cache[key]


__all__ = ["AuthorizationError", "Endpoint", "Provider", "ProviderError", "SmtpAuth", "get_provider"]
