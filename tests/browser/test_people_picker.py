"""The people picker of a user field in a real Chromium on a 360 px phone: the grid worker drafting the minutes
types part of a Chinese name into the recorder's search box, picks the person the search finds (only those the
field may name), and the recorder is stored by username and shown by name; the page passes axe with the results
open."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import expect

from tests.browser.axe import assert_accessible
from tests.browser.conftest import Server, login, make_app, serve
from tests.conftest import ROOT, add_users, case

PEOPLE = [("grid2", "冯磊", ["grid_worker"], "renjia-g2"), ("grid3", "冯晓", ["grid_worker"], "renjia-g2"),
          ("grid_wf", "冯文峰", ["grid_worker"], "wenfeng-g1"),   # another community: never offered
          ("resident3", "冯建国", ["resident"], "renjia-g2")]     # not a recorder's role: never offered


@pytest.fixture(scope="module")
def minutes_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    app = make_app(tmp_path_factory.mktemp("instance"), ROOT)
    add_users(app.extensions["civicflow"].store, PEOPLE)
    yield from serve(app)


def test_a_recorder_is_found_by_part_of_their_name_and_picked_on_a_phone(phone: Any, minutes_server: Server):
    login(phone, minutes_server, "grid")
    phone.goto(minutes_server.url + "/start/meeting_minutes")
    search = phone.locator("#recorder-search")
    expect(search).to_be_visible()  # with JavaScript the search box shows above the select
    search.press_sequentially("冯")
    found = phone.locator("#recorder-found .user-option")
    expect(found).to_have_count(2)  # 冯磊 and 冯晓 of the community; not 冯文峰 (another one), not 冯建国 (a resident)
    expect(found).to_have_text(["冯晓 · 徽州人家社区 / 第二网格", "冯磊 · 徽州人家社区 / 第二网格"])
    assert phone.evaluate("document.documentElement.scrollWidth") <= 360
    assert_accessible(phone, "the minutes form with the people found")
    search.press_sequentially("磊")
    expect(found).to_have_count(1)
    found.first.click()
    expect(phone.locator("#recorder")).to_have_value("grid2")
    expect(search).to_have_value("")
    expect(phone.locator("#recorder option:checked")).to_have_text("冯磊")

    phone.fill("#topic", "停车难问题议事会")
    phone.fill("#meeting_date", "2026-11-25")
    phone.fill("#place", "第一网格党群服务站")
    phone.select_option("#unit", "renjia-g1")
    phone.fill("#convener", "赵敏")
    phone.fill("#attendees-0-name", "赵敏")
    phone.select_option("#attendees-0-identity", index=1)
    phone.fill("#agenda-0-item", "夜间停车占用消防通道")
    phone.fill("#problems-0-problem", "消防通道被占")
    phone.fill("#decisions-0-decision", "施划禁停标线")
    phone.fill("#decisions-0-owner", "安居物业")
    phone.fill("#decisions-0-due", "2026-12-10")
    expect(phone.locator("#recorder")).to_have_value("grid2")  # the live re-renders keep the person picked
    phone.click("main form .actions button[type=submit]")
    phone.wait_for_url("**/cases/*")
    cid = int(phone.url.rstrip("/").rsplit("/", 1)[1])
    assert case(minutes_server.app, cid)["data"]["recorder"] == "grid2"
    expect(phone.locator("main")).to_contain_text("冯磊")
    assert "grid2" not in phone.locator("main dl.data").inner_text()
