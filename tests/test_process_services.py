"""Service orders 群众点单—所站派单—志愿者接单—群众评单, end to end through the pages: dispatch to one
volunteer or a team, accept / decline, done with hours, rating, points, the 7-day default rating and the
escalation of an order nobody accepts."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from engine import ledger
from engine.clock import FrozenClock
from engine.users import find_user
from tests.conftest import Browser, act, case, shipped_app, started

USERS = [
    ("resident", "王芳", ["resident"], "renjia-g1"),
    ("resident3", "高建国", ["resident"], "renjia-g2"),
    ("volunteer", "李强", ["resident", "volunteer"], "renjia-g1"),
    ("volunteer2", "杨帆", ["resident", "volunteer"], "renjia-g2"),
    ("volunteer_wf", "许诺", ["resident", "volunteer"], "wenfeng-g1"),
    ("staff", "陈静", ["community_staff"], "renjia"),
    ("secretary", "周伟", ["community_secretary"], "renjia"),
    ("staff2", "吴婷", ["community_staff"], "wenfeng"),
]


@pytest.fixture
def app(tmp_path: Path, clock: FrozenClock) -> Any:
    yield from shipped_app(tmp_path, clock, USERS)


def shown_state(b: Browser, cid: int) -> str:
    page = b.get(f"/cases/{cid}").get_data(as_text=True)
    return re.search(r'<span class="state state-\w+">([^<]+)</span>', page).group(1)


def figure(app: Any, metric: str) -> float:
    engine = app.extensions["civicflow"]
    return sum(r["value"] for r in engine.figures(find_user(engine.store, "staff")) if r["metric"] == metric)


ORDER = {
    "service_type": "haircut", "details": "家中老人行动不便，需要上门理发", "contact_name": "王芳", "phone": "13812345678",
    "grid": "renjia-g1", "address": "1号楼302", "preferred_time": "2026-11-28T09:30", "vulnerable": "1",
}


def order(who: Any, **changes: Any) -> int:
    return started(who("resident").post("/start/service_order", {**ORDER, **changes}))


def test_order_dispatched_to_a_team_accepted_done_rated_and_points(app: Any, who: Any):
    cid = order(who)
    staff = who("staff")
    assert f"#{cid} 王芳：家中老人行动不便，需要上门理发" in staff.get("/").get_data(as_text=True)
    page = staff.get(f"/cases/{cid}/do/dispatch").get_data(as_text=True)
    assert 'type="checkbox" name="assignees" value="volunteer"' in page  # several may be picked: a team
    assert 'value="volunteer2"' in page and 'value="volunteer_wf"' not in page  # only this community's volunteers
    assert act(staff, cid, "dispatch").status_code == 422  # nobody picked
    assert act(staff, cid, "dispatch", assignees=["volunteer", "volunteer2"]).status_code == 302
    assert case(app, cid)["assignees"] == ["volunteer", "volunteer2"]
    for name in ("volunteer", "volunteer2"):
        inbox = who(name).get("/").get_data(as_text=True)
        assert f"#{cid}" in inbox, name
    page = who("volunteer2").get(f"/cases/{cid}").get_data(as_text=True)
    assert "家中老人行动不便" in page and "第一网格" in page
    # the volunteers assigned to do the work see the phone and address whole; neighbours never see the case
    assert "13812345678" in page
    assert "1号楼302" in staff.get(f"/cases/{cid}").get_data(as_text=True)

    # the first of the team to accept takes the order
    assert act(who("volunteer2"), cid, "accept").status_code == 302
    assert case(app, cid)["assignees"] == ["volunteer2"]
    assert f"#{cid}" not in who("volunteer").get("/").get_data(as_text=True)
    assert who("volunteer").get(f"/cases/{cid}").status_code == 404
    assert shown_state(who("resident"), cid) == "服务中"

    volunteer = who("volunteer2")
    response = act(volunteer, cid, "finish", hours="0", service_note="理发")
    assert response.status_code == 422 and "不能小于 0.5" in response.get_data(as_text=True)
    assert act(volunteer, cid, "finish", hours="1.5", service_note="为两位老人理发").status_code == 302
    assert case(app, cid)["data"]["points_earned"] == 15
    assert app.extensions["civicflow"].balance("volunteer2") == 0  # credited once rated

    resident = who("resident")
    assert f"#{cid}" in resident.get("/").get_data(as_text=True)  # waiting for my rating
    form = resident.get(f"/cases/{cid}/do/rate").get_data(as_text=True)
    assert "满意度" in form and "评价意见" in form
    assert act(resident, cid, "rate", stars="5", remark="很耐心，谢谢！").status_code == 302
    assert shown_state(resident, cid) == "已评单"

    engine = app.extensions["civicflow"]
    assert engine.balance("volunteer2") == 15
    points = volunteer.get("/points").get_data(as_text=True)
    assert "志愿服务（群众点单）" in points and "15" in points
    history = case(app, cid)["history"]
    assert [h["action"] for h in history] == ["start", "dispatch", "accept", "finish", "rate"]
    assert [h["by"] for h in history] == ["resident", "staff", "volunteer2", "volunteer2", "resident"]
    page = resident.get(f"/cases/{cid}").get_data(as_text=True)
    assert "很耐心，谢谢！" in page and "为两位老人理发" in page
    assert ledger.verify(engine.store) == []
    assert figure(app, "orders_rated") == 1 and figure(app, "orders_satisfied") == 1
    assert figure(app, "order_service_hours") == 1.5 and figure(app, "order_points_issued") == 15


def test_decline_goes_back_to_dispatch_and_a_low_rating_needs_a_reason(app: Any, who: Any):
    cid = order(who)
    staff = who("staff")
    act(staff, cid, "dispatch", assignees="volunteer2")
    assert act(who("volunteer2"), cid, "decline").status_code == 422  # a reason is required
    assert act(who("volunteer2"), cid, "decline", comment="当天在外地").status_code == 302
    assert case(app, cid)["state"] == "ordered" and case(app, cid)["assignees"] == []
    assert f"#{cid}" in staff.get("/").get_data(as_text=True)  # to dispatch again
    assert "当天在外地" in staff.get(f"/cases/{cid}").get_data(as_text=True)

    act(staff, cid, "dispatch", assignees="volunteer")
    act(who("volunteer"), cid, "accept")
    act(who("volunteer"), cid, "finish", hours="1", service_note="理发")
    resident = who("resident")
    response = act(resident, cid, "rate", stars="2")
    assert response.status_code == 422 and "此项为必填项" in response.get_data(as_text=True)  # why not satisfied
    assert act(resident, cid, "rate", stars="2", complaint="迟到了半小时").status_code == 302
    assert app.extensions["civicflow"].balance("volunteer") == 10
    assert app.extensions["civicflow"].balance("volunteer2") == 0
    assert [h["action"] for h in case(app, cid)["history"]] == ["start", "dispatch", "decline", "dispatch", "accept",
                                                                 "finish", "rate"]
    assert figure(app, "orders_rated") == 1 and figure(app, "orders_satisfied") == 0


def test_refused_or_cancelled_orders(app: Any, who: Any):
    cid = order(who, details="帮忙搬运旧家具")
    staff = who("staff")
    assert act(staff, cid, "refuse").status_code == 422
    assert act(staff, cid, "refuse", comment="大件搬运请联系物业").status_code == 302
    assert shown_state(who("resident"), cid) == "不予受理"
    other = order(who)
    assert act(who("resident"), other, "cancel").status_code == 302
    assert case(app, other)["state"] == "cancelled"
    assert who("staff2").get(f"/cases/{other}").status_code == 404  # another community sees nothing
    assert figure(app, "orders_placed") == 2 and figure(app, "orders_served") == 0


def test_unrated_orders_are_rated_by_default_after_seven_days(app: Any, who: Any, clock: FrozenClock):
    cid = order(who)
    act(who("staff"), cid, "dispatch", assignees="volunteer")
    act(who("volunteer"), cid, "accept")
    act(who("volunteer"), cid, "finish", hours="2", service_note="理发")
    engine = app.extensions["civicflow"]
    clock.advance(days=6)
    engine.tick()
    assert case(app, cid)["state"] == "to_rate"
    clock.advance(days=1, minutes=1)
    engine.tick()
    data = case(app, cid)
    assert data["state"] == "rated" and data["data"]["stars"] == 5 and data["data"]["rated_by_default"] is True
    assert data["history"][-1]["by"] == "system" and data["history"][-1]["action"] == "auto_rate"
    assert engine.balance("volunteer") == 20
    page = who("resident").get(f"/cases/{cid}").get_data(as_text=True)
    assert "超时默认好评" in page and "系统" in page
    assert figure(app, "orders_rated_by_default") == 1 and figure(app, "orders_rated") == 1


def test_an_order_not_accepted_in_a_day_is_escalated_to_the_community(app: Any, who: Any, clock: FrozenClock):
    cid = order(who)
    act(who("staff"), cid, "dispatch", assignees="volunteer")
    engine = app.extensions["civicflow"]
    clock.advance(days=1, minutes=1)
    engine.tick()
    data = case(app, cid)
    assert data["overdue"] is True and data["escalated_to"] == ["secretary"] and data["assignees"] == ["volunteer"]
    assert data["history"][-1]["action"] == "overdue"
    secretary = who("secretary")
    assert f"#{cid}" in secretary.get("/").get_data(as_text=True)
    assert "已超期" in secretary.get("/notifications").get_data(as_text=True)
    page = secretary.get(f"/cases/{cid}").get_data(as_text=True)
    assert "收回重新派单" in page and "/do/accept" not in page  # the secretary does not serve it
    assert act(secretary, cid, "redispatch", comment="李强联系不上，改派").status_code == 302
    data = case(app, cid)
    assert data["state"] == "ordered" and data["assignees"] == [] and data["overdue"] is False
    assert act(secretary, cid, "dispatch", assignees="volunteer2").status_code == 302
    assert act(who("volunteer2"), cid, "accept").status_code == 302
