"""Points 服务换积分、积分兑权益, end to end through the pages: volunteer activities recorded by staff credit
every participant; rewards from the charity supermarket (爱心超市) spend them, never below zero; cancelling
or not collecting returns them; every change is on the ledger."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from engine import ledger
from engine.clock import FrozenClock
from engine.users import find_user
from tests.conftest import DURABLE_STORES, Browser, act, case, shipped_app, started, store_location

USERS = [
    ("volunteer", "李强", ["resident", "volunteer"], "renjia-g1"),
    ("volunteer2", "杨帆", ["resident", "volunteer"], "renjia-g2"),
    ("party", "刘洋", ["resident", "party_member"], "renjia-g2"),
    ("resident", "王芳", ["resident"], "renjia-g1"),
    ("grid", "赵敏", ["grid_worker"], "renjia-g1"),
    ("staff", "陈静", ["community_staff"], "renjia"),
    ("secretary", "周伟", ["community_secretary"], "renjia"),
    ("staff2", "吴婷", ["community_staff"], "wenfeng"),
]


@pytest.fixture(params=DURABLE_STORES)
def app(request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock) -> Any:
    yield from shipped_app(tmp_path, clock, USERS, store_location(request.param, request, tmp_path))


def shown_state(b: Browser, cid: int) -> str:
    page = b.get(f"/cases/{cid}").get_data(as_text=True)
    return re.search(r'<span class="state state-\w+">([^<]+)</span>', page).group(1)


def figure(app: Any, metric: str) -> float:
    engine = app.extensions["civicflow"]
    return sum(r["value"] for r in engine.figures(find_user(engine.store, "staff")) if r["metric"] == metric)


ACTIVITY = {
    "activity_title": "常青藤夜间治安巡逻", "activity_type": "patrol", "activity_date": "2026-11-26",
    "place": "徽州人家社区各楼栋", "unit": "renjia", "hours": "2", "description": "夜间巡逻两小时",
}


def earn(app: Any, who: Any, people: list[str], hours: str = "2") -> int:
    """Staff record an activity with these volunteers and the secretary confirms it."""
    cid = started(who("staff").post("/start/volunteer_activity", {**ACTIVITY, "hours": hours}))
    assert act(who("staff"), cid, "add_participants", assignees=people, headcount=str(len(people))).status_code == 302
    assert act(who("secretary"), cid, "confirm").status_code == 302
    return cid


# --------------------------------------------------------------------------- 志愿活动登记（服务换积分）

def test_activity_recorded_participants_confirmed_and_points_credited(app: Any, who: Any):
    staff = who("staff")
    cid = started(staff.post("/start/volunteer_activity", ACTIVITY))
    assert case(app, cid)["data"]["points_each"] == 20
    assert f"#{cid} 2026-11-26 常青藤夜间治安巡逻" in staff.get("/").get_data(as_text=True)
    page = staff.get(f"/cases/{cid}/do/add_participants").get_data(as_text=True)
    assert 'type="checkbox" name="assignees" value="volunteer"' in page and 'value="volunteer2"' in page
    response = act(staff, cid, "add_participants", assignees=["volunteer", "volunteer2"], headcount="12",
                   participants_note="另有 10 名居民参加")
    assert response.status_code == 302
    assert case(app, cid)["state"] == "to_confirm"
    # the person who recorded it does not confirm it: another staff member or the secretary does
    assert f"/cases/{cid}/do/confirm" not in staff.get(f"/cases/{cid}").get_data(as_text=True)
    refused = staff.post(f"/cases/{cid}/do/confirm", {"version": "2"}, page=f"/cases/{cid}")
    assert refused.status_code == 409 and "条件未满足" in refused.get_data(as_text=True)
    secretary = who("secretary")
    assert f"#{cid}" in secretary.get("/").get_data(as_text=True)
    assert act(secretary, cid, "confirm").status_code == 302
    assert shown_state(staff, cid) == "已记积分"

    engine = app.extensions["civicflow"]
    assert engine.balance("volunteer") == 20 and engine.balance("volunteer2") == 20
    volunteer = who("volunteer")
    assert "常青藤夜间治安巡逻" in volunteer.get(f"/cases/{cid}").get_data(as_text=True)  # their own record
    points = volunteer.get("/points").get_data(as_text=True)
    assert "志愿活动" in points and "20" in points
    assert who("staff2").get(f"/cases/{cid}").status_code == 404
    assert [h["action"] for h in case(app, cid)["history"]] == ["start", "add_participants", "confirm"]
    assert figure(app, "activities_held") == 1 and figure(app, "activity_person_times") == 12


def test_activity_sent_back_then_cancelled(app: Any, who: Any):
    cid = started(who("grid").post("/start/volunteer_activity", {**ACTIVITY, "unit": "renjia-g1"}))
    grid = who("grid")
    assert f"#{cid}" in grid.get("/").get_data(as_text=True)
    assert act(grid, cid, "add_participants", assignees="volunteer", headcount="3").status_code == 302
    staff = who("staff")
    assert act(staff, cid, "send_back").status_code == 422
    assert act(staff, cid, "send_back", comment="参与人次与签到表不符").status_code == 302
    data = case(app, cid)
    assert data["state"] == "recorded" and data["assignees"] == []
    assert act(grid, cid, "cancel", comment="重复登记").status_code == 302
    assert case(app, cid)["state"] == "cancelled"
    assert app.extensions["civicflow"].balance("volunteer") == 0
    assert figure(app, "activities_held") == 0


# --------------------------------------------------------------------------- 积分兑换（爱心超市）

def test_redeem_collect_and_the_balance_never_goes_below_zero(app: Any, who: Any):
    volunteer = who("volunteer")
    form = volunteer.get("/start/points_redemption").get_data(as_text=True)
    assert "大米 5 斤（100 积分）" in form and "毛巾（20 积分）" in form
    rice = started(volunteer.post("/start/points_redemption", {"reward": "rice", "quantity": "1", "supermarket": "renjia"}))
    assert case(app, rice)["data"]["cost"] == 100
    response = act(volunteer, rice, "redeem")
    assert response.status_code == 409 and "积分不足：当前余额 0，需要 100" in response.get_data(as_text=True)
    assert case(app, rice)["state"] == "requested"

    earn(app, who, ["volunteer"], hours="3")  # 30 points
    towels = started(volunteer.post("/start/points_redemption", {"reward": "towel", "quantity": "2", "supermarket": "renjia"}))
    assert case(app, towels)["data"]["cost"] == 40 and case(app, towels)["title"] == "毛巾 ×2（40 积分）"
    response = act(volunteer, towels, "redeem")
    assert response.status_code == 409 and "当前余额 30，需要 40" in response.get_data(as_text=True)
    response = volunteer.post(f"/cases/{towels}/do/cancel", {"version": "1"}, page=f"/cases/{towels}")
    assert response.status_code == 302 and case(app, towels)["state"] == "cancelled"

    towel = started(volunteer.post("/start/points_redemption", {"reward": "towel", "quantity": "1", "supermarket": "renjia"}))
    assert act(volunteer, towel, "redeem").status_code == 302
    engine = app.extensions["civicflow"]
    assert engine.balance("volunteer") == 10
    assert shown_state(volunteer, towel) == "待领取"
    staff = who("staff")
    assert f"#{towel} 毛巾 ×1（20 积分）" in staff.get("/").get_data(as_text=True)  # waiting at the counter
    assert act(staff, towel, "hand_over").status_code == 302
    assert shown_state(volunteer, towel) == "已领取"

    points = volunteer.get("/points").get_data(as_text=True)
    assert "爱心超市兑换" in points and "-20" in points
    entries = [e["amount"] for e in sorted(engine.ledger_of("volunteer"), key=lambda e: e["seq"])]
    assert entries == [30, -20] and all(e["balance"] >= 0 for e in engine.ledger_of("volunteer"))
    assert ledger.verify(engine.store) == []
    assert figure(app, "points_redeemed") == 20 and figure(app, "redemptions") == 1
    assert who("staff2").get(f"/cases/{towel}").status_code == 404


def test_a_reward_carries_its_name_cost_and_category_into_the_case_and_the_figures(app: Any, who: Any):
    """The rewards' names, costs and categories are data of their choices (charity_rewards): the form computes
    with them and the dashboard counts food rewards by the category."""
    earn(app, who, ["volunteer"], hours="12")  # 120 points
    volunteer = who("volunteer")
    rice = started(volunteer.post("/start/points_redemption", {"reward": "rice", "quantity": "1", "supermarket": "renjia"}))
    soap = started(volunteer.post("/start/points_redemption", {"reward": "soap", "quantity": "2", "supermarket": "renjia"}))
    assert case(app, rice)["data"]["reward_name"] == "大米" and case(app, rice)["data"]["unit_cost"] == 100
    assert case(app, soap)["title"] == "洗衣皂 ×2（20 积分）"
    assert figure(app, "food_redemptions") == 0  # not confirmed yet
    assert act(volunteer, rice, "redeem").status_code == 302 and act(volunteer, soap, "redeem").status_code == 302
    assert figure(app, "food_redemptions") == 1 and figure(app, "redemptions") == 2
    assert app.extensions["civicflow"].balance("volunteer") == 0


def test_staff_confirm_at_the_counter_and_cancel_returns_the_points(app: Any, who: Any):
    earn(app, who, ["volunteer2"], hours="2")  # 20 points
    volunteer = who("volunteer2")
    soap = started(volunteer.post("/start/points_redemption", {"reward": "soap", "quantity": "2", "supermarket": "renjia"}))
    staff = who("staff")
    assert act(staff, soap, "redeem").status_code == 302  # confirmed by staff at the counter
    engine = app.extensions["civicflow"]
    assert engine.balance("volunteer2") == 0
    second = started(volunteer.post("/start/points_redemption", {"reward": "soap", "quantity": "1", "supermarket": "renjia"}))
    assert act(volunteer, second, "redeem").status_code == 409  # nothing left
    assert act(volunteer, soap, "cancel_refund", comment="想换成别的物品").status_code == 302
    assert case(app, soap)["state"] == "cancelled" and engine.balance("volunteer2") == 20
    points = volunteer.get("/points").get_data(as_text=True)
    assert "取消兑换，退还积分" in points
    assert [h["action"] for h in case(app, soap)["history"]] == ["start", "redeem", "cancel_refund"]
    assert figure(app, "points_redeemed") == 0
    assert ledger.verify(engine.store) == []


def test_not_collected_in_thirty_days_returns_the_points(app: Any, who: Any, clock: FrozenClock):
    earn(app, who, ["volunteer"], hours="2")
    volunteer = who("volunteer")
    cid = started(volunteer.post("/start/points_redemption", {"reward": "toothpaste", "quantity": "1",
                                                             "supermarket": "renjia"}))
    assert act(volunteer, cid, "redeem").status_code == 302
    engine = app.extensions["civicflow"]
    assert engine.balance("volunteer") == 5 and figure(app, "points_redeemed") == 15
    clock.advance(days=29)
    engine.tick()
    assert case(app, cid)["state"] == "to_collect"
    clock.advance(days=1, minutes=1)
    engine.tick()
    data = case(app, cid)
    assert data["state"] == "cancelled" and data["history"][-1]["by"] == "system"
    assert engine.balance("volunteer") == 20 and figure(app, "points_redeemed") == 0
    assert "逾期未领取，退还积分" in volunteer.get("/points").get_data(as_text=True)
    assert ledger.verify(engine.store) == []


def test_who_may_redeem(app: Any, who: Any):
    assert who("resident").get("/start/points_redemption").status_code == 403  # not a volunteer
    assert who("party").get("/start/points_redemption").status_code == 200  # party members earn points too
