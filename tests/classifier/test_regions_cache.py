"""The place tables are built once and then loaded from the user's cache file, never from a file
someone else could have written."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from classifier import regions


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    regions._tables.cache_clear()
    yield tmp_path
    regions._tables.cache_clear()  # the next test loads the tables as usual


def _no_build(*args: Any) -> Any:
    raise AssertionError("built again instead of loaded from the cache")


def test_it_loads_the_tables_it_built_from_its_cache(cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = regions._tables()
    files = list((cache_home / "tms-classifier").glob("places-*.pickle"))
    assert len(files) == 1 and files[0].stat().st_mode & 0o077 == 0

    regions._tables.cache_clear()
    monkeypatch.setattr(regions, "_build_zip_table", _no_build)
    assert regions._tables() == built
    assert regions.zip_place("74103") == ("Tulsa", "OK")


def test_it_ignores_a_cache_file_others_can_write(cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    regions._tables()
    path = next((cache_home / "tms-classifier").glob("places-*.pickle"))
    os.chmod(path, 0o666)
    regions._tables.cache_clear()
    calls: list[int] = []
    real = regions._build_zip_table

    def counting() -> Any:
        calls.append(1)
        return real()

    monkeypatch.setattr(regions, "_build_zip_table", counting)
    assert regions.zip_place("74103") == ("Tulsa", "OK")
    assert calls == [1]


def test_it_works_without_a_writable_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    regions._tables.cache_clear()
    try:
        assert regions.zip_place("74103") == ("Tulsa", "OK")
    finally:
        regions._tables.cache_clear()
