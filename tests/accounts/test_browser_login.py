from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures import PASSWORD
from tms.accounts.models import Staff

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_logs_in_from_chromium_and_shows_the_staff_members_profile(
    browser: Any, live_server: Any, bob: Staff
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{live_server.url}/login/")
        assert page.title().startswith("Log in")
        page.get_by_label("E-mail").fill(bob.email.upper())
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_load_state()
        assert "/login/" not in page.url
        assert page.get_by_text("Bob Dispatch").first.is_visible()
        page.get_by_role("button", name="Log out").click()
        page.wait_for_url("**/login/")
    finally:
        context.close()
