"""The API's pages in a real Chromium: a token made and revoked on the account page of a 360 px phone, used from
a program in between; and the browsable API page (vendored Swagger UI under the strict CSP) drawing every path."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.browser.conftest import PHONE, Server, login, open_menu

pytestmark = pytest.mark.browser


def call(server: Server, token: str) -> int:
    request = urllib.request.Request(server.url + "/api/v1/inbox", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            json.loads(response.read())
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_token_is_made_used_and_revoked_on_a_phone(phone: Any, shipped_server: Server):
    login(phone, shipped_server, "resident")
    open_menu(phone)  # on a phone the account link sits behind the menu
    phone.click("header a.who")
    phone.wait_for_url("**/account")
    phone.fill("#token-name", "考勤脚本")
    phone.check("input[name=scope][value=write]")
    phone.click("#tokens form.stack button[type=submit]")
    token = phone.locator("#new-token").inner_text().strip()
    assert token.startswith("cf_")
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert call(shipped_server, token) == 200
    phone.goto(shipped_server.url + "/account")  # shown once: the account page does not show it again
    assert phone.locator("#new-token").count() == 0 and "考勤脚本" in phone.content()
    phone.click("#tokens ul.tokens button.danger")
    phone.wait_for_url("**/account")
    assert call(shipped_server, token) == 401


def test_the_api_page_draws_the_paths_with_the_vendored_swagger_ui(page: Any, shipped_server: Server):
    page.goto(shipped_server.url + "/api/v1/docs")
    assert page.locator("h1").first.inner_text() in ("Civicflow 接口（API）", "Civicflow API")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30000)
    # 200-odd operations: Swagger UI draws the tags as they scroll into view; its filter finds one process's paths
    page.fill(".swagger-ui .operation-filter-input", "micro_venture")
    wf = shipped_server.engine.definitions.workflows["micro_venture"]
    expected = 2 + len({t.id for t in wf.transitions() if t.roles != ("system",)})
    blocks = page.locator(".swagger-ui .opblock")
    deadline = time.monotonic() + 20
    while blocks.count() < expected and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert blocks.count() == expected
    assert page.locator(".swagger-ui .opblock-summary-path", has_text="/workflows/micro_venture/cases").count() >= 2
