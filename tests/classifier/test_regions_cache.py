"""The place tables are built once and then loaded from the user's cache file, never from a file
someone else could have written or planted (a link, a FIFO, a directory of someone else's)."""

from __future__ import annotations

import os
import subprocess
import sys
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
    files = list((cache_home / "tms-classifier").glob("places-*.marshal"))
    assert len(files) == 1 and files[0].stat().st_mode & 0o077 == 0

    regions._tables.cache_clear()
    monkeypatch.setattr(regions, "_build_zip_table", _no_build)
    assert regions._tables() == built
    assert regions.zip_place("74103") == ("Tulsa", "OK")


def test_it_ignores_a_cache_file_others_can_write(cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    regions._tables()
    path = next((cache_home / "tms-classifier").glob("places-*.marshal"))
    os.chmod(path, 0o666)
    regions._tables.cache_clear()
    calls = _counting_build(monkeypatch)
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


def _counting_build(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = regions._build_zip_table

    def counting() -> Any:
        calls.append(1)
        return real()

    monkeypatch.setattr(regions, "_build_zip_table", counting)
    return calls


def _cache_file(cache_home: Path) -> Path:
    path = regions._cache_path()
    assert path is not None and path.parent == cache_home / "tms-classifier"
    return path


def test_it_does_not_follow_a_link_planted_at_the_cache_path(cache_home: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    regions._tables()
    path = _cache_file(cache_home)
    target = tmp_path / "elsewhere.marshal"
    os.replace(path, target)  # a valid cache file of ours, 0600: only the link makes it wrong
    os.symlink(target, path)
    regions._tables.cache_clear()
    calls = _counting_build(monkeypatch)
    assert regions.zip_place("74103") == ("Tulsa", "OK")
    assert calls == [1]
    assert not path.is_symlink() and path.is_file()  # replaced by a file of ours, the target untouched
    assert target.read_bytes() != b""


def test_writing_does_not_follow_a_planted_link_either(cache_home: Path, tmp_path: Path) -> None:
    path = _cache_file(cache_home)
    path.parent.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    os.chmod(victim, 0o644)
    os.symlink(victim, path)
    regions._tables()
    assert victim.read_text() == "keep me" and victim.stat().st_mode & 0o777 == 0o644
    assert not path.is_symlink()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_it_does_not_use_a_cache_directory_others_can_write(cache_home: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    regions._tables()
    os.chmod(cache_home / "tms-classifier", 0o777)
    regions._tables.cache_clear()
    calls = _counting_build(monkeypatch)
    assert regions.zip_place("74103") == ("Tulsa", "OK")
    assert calls == [1]


def test_it_does_not_use_a_linked_cache_directory(cache_home: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    regions._tables()
    real = tmp_path / "real-dir"
    os.replace(cache_home / "tms-classifier", real)
    os.symlink(real, cache_home / "tms-classifier")
    regions._tables.cache_clear()
    calls = _counting_build(monkeypatch)
    assert regions.zip_place("74103") == ("Tulsa", "OK")
    assert calls == [1]


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_it_does_not_use_a_cache_directory_of_someone_else(cache_home: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    regions._tables()
    os.chown(cache_home / "tms-classifier", 65534, 65534)  # nobody; mode still 0700
    regions._tables.cache_clear()
    calls = _counting_build(monkeypatch)
    assert regions.zip_place("74103") == ("Tulsa", "OK")
    assert calls == [1]
    assert not any(p.name.endswith(".tmp") for p in (cache_home / "tms-classifier").iterdir())


def test_a_fifo_at_the_cache_path_does_not_hang(cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _cache_file(cache_home)
    path.parent.mkdir(mode=0o700)
    os.mkfifo(path, 0o600)
    # Run in a child with a deadline so that a hang fails the test rather than the whole run.
    code = ("from classifier import regions; assert regions.zip_place('74103') == ('Tulsa', 'OK'); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], check=False, cwd=Path(regions.__file__).resolve().parent.parent,
                          env={**os.environ, "XDG_CACHE_HOME": str(cache_home)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_a_cache_file_of_the_wrong_shape_is_rebuilt(cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import marshal

    path = _cache_file(cache_home)
    path.parent.mkdir(mode=0o700)
    path.write_bytes(marshal.dumps(("not", "the", "tables")))
    os.chmod(path, 0o600)
    calls = _counting_build(monkeypatch)
    assert regions.zip_place("74103") == ("Tulsa", "OK")
    assert calls == [1]


def test_the_module_stays_pure() -> None:
    code = ("import sys; from classifier import regions; regions.warm_up(); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'django', 'rest_framework', 'pickle'}); "
            "print(bad)")
    done = subprocess.run([sys.executable, "-c", code], check=False, cwd=Path(regions.__file__).resolve().parent.parent,
                          env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
