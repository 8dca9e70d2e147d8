"""A form with a note, a time and a required_if field in a real Chromium on a 360 px phone: the asterisk of the
guardian's phone appears while the person types a minor's ID number, the time picker's value is stored."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Server, login, make_app, serve
from tests.conftest import ROOT, case
from tests.test_form_keys import FORM, MINOR, WORKFLOW


@pytest.fixture(scope="module")
def signup_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("defs")
    for part in ("org", "forms", "workflows"):
        shutil.copytree(ROOT / part, root / part)
    (root / "forms" / "activity_signup.yaml").write_text(FORM, encoding="utf-8")
    (root / "workflows" / "activity_signup.yaml").write_text(WORKFLOW, encoding="utf-8")
    yield from serve(make_app(tmp_path_factory.mktemp("instance"), root))


def test_required_if_follows_the_typing_and_a_time_is_picked_on_a_phone(phone: Any, signup_server: Server):
    login(phone, signup_server, "resident")
    phone.goto(signup_server.url + "/start/activity_signup")
    expect(phone.locator(".form-description")).to_have_text("报名后社区将电话确认。")
    expect(phone.locator("#field-safety .note-text")).to_be_visible()
    guardian = phone.locator("#guardian_phone-label .req")
    expect(guardian).to_have_count(0)
    phone.fill("#name", "小明")
    phone.fill("#id_number", MINOR)
    expect(guardian).to_have_count(1)  # a live update: the minor needs a guardian's phone now
    phone.select_option("#grid", "renjia-g1")
    phone.fill("#arrive_at", "09:30")  # what the time picker posts
    assert phone.evaluate("document.documentElement.scrollWidth") <= 360  # nothing wider than the phone
    phone.click("main form .actions button[type=submit]")
    expect(phone.locator("#guardian_phone-error")).to_have_text("未成年人请填写监护人电话")
    assert phone.input_value("#name") == "小明" and phone.input_value("#arrive_at") == "09:30"
    phone.fill("#guardian_phone", "13812345678")
    phone.click("main form .actions button[type=submit]")
    phone.wait_for_url("**/cases/*")
    cid = int(phone.url.rstrip("/").rsplit("/", 1)[1])
    data = case(signup_server.app, cid)["data"]
    assert data["arrive_at"] == "09:30" and data["guardian_phone"] == "13812345678" and data["sex"] == "male"
