"""Who is logged in, read cheaply: the user, their Staff and Tenant in one query
(tms.accounts.backends.StaffModelBackend), and with Redis the session from Redis instead of the
database ("cached_db", tms/settings.py), without giving up what database sessions guarantee."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.fixtures import PASSWORD
from tms.accounts.models import Staff, Tenant

pytestmark = pytest.mark.django_db


def _tables(ctx: CaptureQueriesContext) -> list[str]:
    return [q["sql"].split(" FROM ", 1)[1].split()[0].strip('"') for q in ctx.captured_queries
            if q["sql"].startswith("SELECT") and " FROM " in q["sql"]]


def test_it_loads_the_user_with_their_staff_and_tenant_in_one_query(bob_client: Client, bob: Staff) -> None:
    with CaptureQueriesContext(connection) as ctx:
        page = bob_client.get("/customers/")
    assert page.status_code == 200 and "Bob Dispatch" in page.content.decode()
    users = [q["sql"] for q in ctx.captured_queries if 'FROM "auth_user"' in q["sql"]]
    assert len(users) == 1 and '"accounts_staff"' in users[0] and '"accounts_tenant"' in users[0]
    assert "accounts_staff" not in _tables(ctx) and "accounts_tenant" not in _tables(ctx)


def test_it_still_logs_in_a_platform_admin_without_a_company() -> None:
    root = get_user_model().objects.create_superuser("root", "root@platform.test", PASSWORD)
    client = Client()
    assert client.login(username="root", password=PASSWORD)
    assert client.get("/shipments/").status_code == 302  # no company: sent to the admin
    assert client.get("/admin/").status_code == 200
    root.is_active = False
    root.save()
    assert client.get("/admin/").status_code == 302  # an inactive user is logged out, as before


def test_it_logs_out_a_staff_member_whose_company_is_deactivated_on_the_next_page(
    bob_client: Client, acme: Tenant
) -> None:
    assert bob_client.get("/shipments/").status_code == 200
    Tenant.objects.filter(pk=acme.pk).update(active=False)
    assert bob_client.get("/shipments/").status_code == 302
    Tenant.objects.filter(pk=acme.pk).update(active=True)
    assert bob_client.get("/shipments/").status_code == 302  # the session is gone, not just hidden


def test_it_keeps_an_outsider_out_of_another_companys_pages(charlie_client: Client, bob: Staff) -> None:
    from tests.factories import make_mailbox

    box = make_mailbox(bob, "bob-box@acme.test")
    assert charlie_client.get(f"/mailboxes/{box.public_id}/edit/").status_code == 404
    assert "bob-box@acme.test" not in charlie_client.get("/profile/").content.decode()


# ----------------------------------------------------------------------------- sessions on Redis


@pytest.fixture
def redis_sessions(redis_server: Any, settings: Any) -> Iterator[redis.Redis]:
    """Sessions as production has them with REDIS_URL set (tms/settings.py), on a database of its own."""
    from django.core.cache import caches

    url = redis_server.url_for(11)
    settings.CACHES = {"default": {"BACKEND": "tms.cache.RedisCache", "LOCATION": url, "KEY_PREFIX": "tms-cache"}}
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
    client = redis.Redis.from_url(url, socket_timeout=5)
    client.flushdb()
    yield client
    client.flushdb()
    caches["default"].close()


def test_the_cache_keeps_one_redis_client_and_works_in_a_forked_child(redis_sessions: redis.Redis) -> None:
    """tms.cache.RedisCache: one redis.Redis for every call (Django's builds one per call), still
    usable in a process forked after the parent used it (gunicorn and Celery fork)."""
    import multiprocessing

    from django.core.cache import caches

    cache = caches["default"]
    cache.set("greeting", "hello", 60)
    assert cache.get("greeting") == "hello"
    inner = cache._cache  # type: ignore[attr-defined]
    assert inner.get_client("greeting") is inner.get_client("other", write=True)
    assert redis_sessions.get(cache.make_key("greeting")) is not None  # really in Redis

    def child(out: Any) -> None:
        cache.set("from-child", "ok", 60)
        out.send(cache.get("greeting"))

    reader, writer = multiprocessing.get_context("fork").Pipe(duplex=False)
    proc = multiprocessing.get_context("fork").Process(target=child, args=(writer,))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 0 and reader.poll(1) and reader.recv() == "hello"
    assert cache.get("from-child") == "ok"


def test_it_reads_the_session_from_redis_not_the_database(redis_sessions: redis.Redis, bob: Staff) -> None:
    client = Client()
    assert client.login(username=bob.user.get_username(), password=PASSWORD)
    with CaptureQueriesContext(connection) as ctx:
        assert client.get("/shipments/").status_code == 200
    assert "django_session" not in _tables(ctx)
    assert redis_sessions.keys("tms-cache:*")


def test_it_keeps_sessions_when_redis_is_flushed(redis_sessions: redis.Redis, bob: Staff) -> None:
    client = Client()
    assert client.login(username=bob.user.get_username(), password=PASSWORD)
    redis_sessions.flushdb()
    with CaptureQueriesContext(connection) as ctx:
        assert client.get("/shipments/").status_code == 200  # still logged in: read from the database
    assert "django_session" in _tables(ctx)
    assert client.get("/shipments/").status_code == 200


def test_it_ends_the_session_everywhere_on_logout(redis_sessions: redis.Redis, bob: Staff) -> None:
    client = Client()
    assert client.login(username=bob.user.get_username(), password=PASSWORD)
    stolen = Client()
    stolen.cookies["sessionid"] = client.cookies["sessionid"].value
    assert stolen.get("/shipments/").status_code == 200
    assert client.post("/logout/").status_code == 302
    assert stolen.get("/shipments/").status_code == 302  # the copied cookie is worth nothing now
    assert not redis_sessions.keys("tms-cache:*django.contrib.sessions*")
