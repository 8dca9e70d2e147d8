"""Visit log 走访台账 / 民情日记, end to end through the pages: community cadres and grid workers log household visits;
the quota page shows each one's visits this week against the target of 10 and the shortfall; a visit that found a
need offers a problem report, a micro wish or a service order pre-filled from it, linked to the visit; visits are
archived by hand or by the clock after 14 days."""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest

from engine.cases import CASES
from engine.clock import FrozenClock
from engine.users import find_user
from tests.conftest import act, case, shipped_app, started

USERS = [
    ("resident", "王芳", ["resident"], "renjia-g1"),
    ("grid", "赵敏", ["grid_worker"], "renjia-g1"),
    ("grid2", "冯磊", ["grid_worker"], "renjia-g2"),
    ("staff", "陈静", ["community_staff"], "renjia"),
    ("secretary", "周伟", ["community_secretary"], "renjia"),
    ("staff2", "吴婷", ["community_staff"], "wenfeng"),
    ("grid_wf", "许诺", ["grid_worker"], "wenfeng-g1"),
]


@pytest.fixture
def app(tmp_path: Path, clock: FrozenClock) -> Any:
    yield from shipped_app(tmp_path, clock, USERS)


def figure(app: Any, metric: str) -> float:
    engine = app.extensions["civicflow"]
    return sum(r["value"] for r in engine.figures(find_user(engine.store, "staff")) if r["metric"] == metric)


VISIT = {"household": "张桂英", "address": "1号楼2单元101", "household_phone": "13955550101",
         "household_types": ["elderly_alone"], "grid": "renjia-g1", "visit_date": "2026-11-23", "visit_method": "home",
         "companions": "楼栋红管家 孙丽", "situation": "老人82岁独居，冬季用电炉取暖。", "need_category": "hazard",
         "needs": "电炉电线老化，存在用电安全隐患"}


def visit(who: Any, by: str = "grid", **changes: Any) -> int:
    return started(who(by).post("/start/visit_log", {**VISIT, **changes}))


def quota_row(page: str, name: str) -> list[str]:
    """The cells of one person's row on the quota page."""
    row = re.search(r"<tr[^>]*>(?:(?!</tr>).)*" + re.escape(name) + r"(?:(?!</tr>).)*</tr>", page, re.S).group(0)
    return [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]


def test_visits_count_against_the_weekly_target_of_ten(app: Any, who: Any):
    for day, name in (("2026-11-23", "张桂英"), ("2026-11-24", "李明"), ("2026-11-26", "王建华")):
        visit(who, household=name, visit_date=day, need_category="none", needs="")
    visit(who, household="孙大伟", visit_date="2026-11-20", need_category="none")  # last week: not counted
    visit(who, by="grid2", household="周凤英", grid="renjia-g2", visit_date="2026-11-25")
    page = who("staff").get("/workflows/visit_log/targets").get_data(as_text=True)
    assert "每周走访10户" in page
    assert quota_row(page, "赵敏")[-2:] == ["3", "7"]  # done, shortfall
    assert quota_row(page, "冯磊")[-2:] == ["1", "9"]
    assert quota_row(page, "陈静")[-2:] == ["0", "10"]
    assert "许诺" not in page  # another community's grid worker is not in this community's quota
    last_week = who("staff").get("/workflows/visit_log/targets?day=2026-11-20").get_data(as_text=True)
    assert quota_row(last_week, "赵敏")[-2:] == ["1", "9"]
    assert who("resident").get("/workflows/visit_log/targets").status_code == 403

    listing = who("staff").get("/workflows/visit_log?need_category=none").get_data(as_text=True)
    assert "李明" in listing and "周凤英" not in listing
    assert "13955550101" not in who("staff").get("/workflows/visit_log").get_data(as_text=True)
    assert figure(app, "households_visited") == 5 and figure(app, "needs_found") == 1
    assert figure(app, "vulnerable_visited") == 5


def test_a_visit_offers_a_problem_report_prefilled_and_linked(app: Any, who: Any):
    vid = visit(who)
    grid = who("grid")
    page = grid.get(f"/cases/{vid}").get_data(as_text=True)
    assert "生成问题上报" in page and "生成微心愿" in page
    assert f"/start/problem_report?parent={vid}" in html.unescape(page)
    form = grid.get(f"/start/problem_report?parent={vid}").get_data(as_text=True)
    assert "电炉电线老化，存在用电安全隐患" in form and 'value="1号楼2单元101"' in form
    assert re.search(r'value="hazard"\s+selected', form) and re.search(r'value="grid_worker"\s+selected', form)
    data = {"category": "hazard", "description": "电炉电线老化，存在用电安全隐患", "address": "1号楼2单元101",
            "grid": "renjia-g1", "reporter_type": "grid_worker", "parent": str(vid)}
    pid = started(grid.post(f"/start/problem_report?parent={vid}", data))
    problem = case(app, pid)
    assert problem["workflow"] == "problem_report" and problem["parent"] == vid and problem["state"] == "reported"
    assert f"#{pid}" in grid.get(f"/cases/{vid}").get_data(as_text=True)  # listed under the visit's linked cases

    assert act(grid, vid, "archive", comment="已上报").status_code == 302
    assert case(app, vid)["state"] == "archived"
    assert "生成问题上报" not in grid.get(f"/cases/{vid}").get_data(as_text=True)  # offered only while logged
    refused = grid.post(f"/start/problem_report?parent={vid}", data)
    assert refused.status_code in (403, 409, 422) and len(app.extensions["civicflow"].store.search(
        CASES, lambda d: d.get("parent") == vid)) == 1


def test_a_visit_offers_a_micro_wish_prefilled(app: Any, who: Any):
    vid = visit(who, household="陈小宝", household_types=["left_behind_child"], need_category="wish",
                needs="希望有志愿者每周辅导一次数学", situation="孩子由奶奶照顾")
    form = who("grid").get(f"/start/micro_wish?parent={vid}").get_data(as_text=True)
    assert "希望有志愿者每周辅导一次数学" in form and 'value="陈小宝"' in form
    assert re.search(r'value="left_behind_child"\s+selected', form)
    assert re.search(r'value="visit"\s+selected', form)


def test_a_visit_offers_a_service_order_for_the_household(app: Any, who: Any):
    vid = visit(who, household="陈小宝", needs="需要上门理发", situation="老人行动不便")
    grid = who("grid")
    page = grid.get(f"/cases/{vid}").get_data(as_text=True)
    assert f"/start/service_order?parent={vid}" in page  # the 代居民点单 button
    form = grid.get(f"/start/service_order?parent={vid}").get_data(as_text=True)
    assert "需要上门理发" in form and 'value="陈小宝"' in form
    assert f'name="parent" value="{vid}"' in form


def test_visits_archive_by_the_clock_and_stay_within_the_community(app: Any, who: Any, clock: FrozenClock):
    vid = visit(who, need_category="none", needs="")
    grid = who("grid")
    engine = app.extensions["civicflow"]
    assert vid in [c.id for c in engine.inbox(find_user(engine.store, "grid"))]  # the cadre's own follow-up list
    assert f"#{vid}" in grid.get("/").get_data(as_text=True)
    assert who("staff").get(f"/cases/{vid}").status_code == 200
    assert "13955550101" in who("staff").get(f"/cases/{vid}").get_data(as_text=True)
    for outsider in ("staff2", "grid_wf", "grid2", "resident"):
        assert who(outsider).get(f"/cases/{vid}").status_code == 404, outsider
    assert who("resident").get("/start/visit_log").status_code == 403
    missing = who("grid").post("/start/visit_log", {**VISIT, "need_category": "service", "needs": ""})
    assert missing.status_code == 422  # a need found must be described
    clock.advance(days=14, minutes=1)
    app.extensions["civicflow"].tick()
    doc = case(app, vid)
    assert doc["state"] == "archived" and doc["history"][-1]["by"] == "system"
    assert vid not in [c.id for c in engine.inbox(find_user(engine.store, "grid"))]  # off the to-do list
