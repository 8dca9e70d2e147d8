"""The dashboard: declared metrics per month or quarter, for the user's unit and below, charts with a table."""
from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from engine.clock import FrozenClock
from engine.web import create_app
from tests.conftest import DURABLE_STORES, GOVERNANCE_USERS, Browser, add_users, governance_dir, store_location
from tests.test_governance import U


@pytest.fixture(params=DURABLE_STORES)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    clock = FrozenClock("2026-11-27T09:00:00")
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "STORE": store_location(request.param, request, tmp_path),
                      "UPLOADS": str(tmp_path / "up"), "DEFINITIONS": str(governance_dir(tmp_path)), "CLOCK": clock})
    engine = app.extensions["civicflow"]
    add_users(engine.store, GOVERNANCE_USERS + [("boss", "区领导", ["community_staff"], "huizhou")])
    first = engine.start("wish", U["grid"], {"wish_title": "甲", "grid": "renjia-g1"}).id
    engine.start("wish", U["grid_wf"], {"wish_title": "乙", "grid": "wenfeng-g1"})
    clock.advance(days=20)  # next month: 2026-12-17
    engine.start("wish", U["grid"], {"wish_title": "丙", "grid": "renjia-g1"})
    engine.fire(first, "claim", U["party"])
    yield app
    engine.store.close()


def chart(page: str, wid: str) -> dict[str, Any]:
    raw = re.search(r'id="chart-%s".*?data-chart="([^"]+)"' % wid, page, re.S).group(1)
    return json.loads(unescape(raw))


def test_district_sees_every_community_by_month(app: Any):
    page = Browser(app).login("boss").get("/dashboard").get_data(as_text=True)
    data = chart(page, "wish")
    collected = next(s for s in data["series"] if s["name"] == "收集微心愿")
    assert data["buckets"][-2:] == ["2026-11", "2026-12"] and collected["data"][-2:] == [2, 1]
    assert {u["name"] for u in data["units"]} == {"徽州街道"}
    claimed = next(s for s in data["series"] if s["name"] == "认领微心愿")
    assert claimed["total"] == 1


def test_quarters_and_a_community_unit(app: Any):
    b = Browser(app).login("boss")
    data = chart(b.get("/dashboard?period=quarter&unit=huizhou-jie").get_data(as_text=True), "wish")
    collected = next(s for s in data["series"] if s["name"] == "收集微心愿")
    assert data["buckets"][-1] == "2026-Q4" and collected["data"][-1] == 3
    assert {u["name"] for u in data["units"]} == {"徽州人家社区", "文峰社区"}


def test_staff_see_only_their_own_unit(app: Any):
    page = Browser(app).login("staff").get("/dashboard?unit=huizhou").get_data(as_text=True)
    data = chart(page, "wish")
    assert sum(next(s for s in data["series"] if s["name"] == "收集微心愿")["data"]) == 2  # 文峰 not counted


def test_a_new_case_shows_on_the_next_look_and_each_language_gets_its_own_page(app: Any):
    """The charts are kept between requests for the same figures; a write changes the figures, so the next
    request draws them anew, and the English page is not the Chinese one kept."""
    b = Browser(app).login("boss")
    before = chart(b.get("/dashboard").get_data(as_text=True), "wish")
    assert chart(b.get("/dashboard").get_data(as_text=True), "wish") == before  # kept, the same
    app.extensions["civicflow"].start("wish", U["grid"], {"wish_title": "丁", "grid": "renjia-g1"})
    after = chart(b.get("/dashboard").get_data(as_text=True), "wish")
    collected = [next(s for s in d["series"] if s["name"] == "收集微心愿")["total"] for d in (before, after)]
    assert collected[1] == collected[0] + 1
    b.post("/lang/en", {}, page="/dashboard")
    english = chart(b.get("/dashboard").get_data(as_text=True), "wish")
    assert english["title"] != after["title"] and english["series"][0]["data"] == after["series"][0]["data"]
