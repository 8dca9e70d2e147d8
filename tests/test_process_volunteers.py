"""Volunteer registration variants, end to end through the pages: the talent pool (能人库 / 达人数据库),
party members reporting to the community (双报到) and the service posts they claim (认领服务岗位)."""
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
    ("resident", "王芳", ["resident"], "renjia-g1"),
    ("resident2", "马丽", ["resident"], "renjia-g1"),
    ("resident3", "高建国", ["resident"], "renjia-g2"),
    ("newparty", "许明", ["resident"], "renjia-g2"),
    ("party", "刘洋", ["resident", "party_member"], "renjia-g2"),
    ("party2", "蒋涛", ["resident", "party_member"], "renjia-g1"),
    ("party_wf", "沈洁", ["resident", "party_member"], "wenfeng-g2"),
    ("volunteer", "李强", ["resident", "volunteer"], "renjia-g1"),
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


def listed(b: Browser, url: str) -> set[int]:
    page = b.get(url)
    assert page.status_code == 200, url
    return {int(n) for n in re.findall(r'<td><a href="/cases/(\d+)">', page.get_data(as_text=True))}


# --------------------------------------------------------------------------- talent pool 能人库

TALENT = {
    "name": "孙丽", "gender": "female", "phone": "139 6666 0003", "birth_year": "1961", "political_status": "party_member",
    "occupation": "retired_cadre", "specialties": ["mediation", "management"], "specialty_detail": "二十年人民调解经验",
    "area": "renjia-g1", "willingness": ["mediation", "deliberation"], "commitment": "weekly", "team": "mediation_team",
    "source": "call", "pledge": "1",
}
YOUNG_TALENT = {
    "name": "杨帆", "gender": "male", "phone": "13966660002", "birth_year": "1996", "occupation": "teacher",
    "specialties": ["arts", "education"], "area": "renjia-g2", "willingness": ["culture"], "commitment": "monthly",
    "source": "call", "pledge": "1",
}


def test_talent_call_admit_team_and_search_the_pool(app: Any, who: Any):
    """召集令 → 审核入库 → 编入服务队 → 调整队伍; the pool is searched by age, occupation, specialty, area,
    willingness and team."""
    older = started(who("resident").post("/start/talent_pool", TALENT))
    younger = started(who("resident3").post("/start/talent_pool", YOUNG_TALENT))
    data = case(app, older)["data"]
    assert data["age_years"] == 65 and data["age_group"] == "senior"  # classified by age from the year of birth
    assert case(app, younger)["data"]["age_group"] == "youth"

    staff = who("staff")
    inbox = staff.get("/").get_data(as_text=True)
    assert f"#{older} 孙丽" in inbox and f"#{younger} 杨帆" in inbox
    assert "13966660003" in staff.get(f"/cases/{older}").get_data(as_text=True)  # staff see the full phone
    assert act(staff, older, "admit").status_code == 302
    assert act(staff, younger, "admit").status_code == 302
    assert case(app, older)["state"] == "in_pool" and shown_state(who("resident"), older) == "已入库（待编队）"
    assert app.extensions["civicflow"].store.search(ledger.ACCOUNTS, lambda d: d["owner"] == "resident")

    form = staff.get(f"/cases/{older}/do/assign_team").get_data(as_text=True)
    assert "矛盾调解队（老娘舅）" in form and "楼道美化队" in form and "助老队（陪聊员）" in form
    assert re.search(r'value="mediation_team"\s+selected', form)  # the wished-for team is proposed
    response = act(staff, older, "assign_team", team="mediation_team", team_position="leader", team_note="老娘舅调解队骨干")
    assert response.status_code == 302
    assert act(staff, younger, "assign_team", team="arts_team", team_position="member").status_code == 302
    assert shown_state(staff, older) == "已编队"
    assert "volunteer" in find_user(app.extensions["civicflow"].store, "resident").roles  # a team member volunteers

    # the searchable pool (达人数据库)
    pool = "/workflows/talent_pool"
    page = staff.get(pool).get_data(as_text=True)
    for heading in ("年龄", "年龄段", "职业", "专业特长", "长期活动区域", "个人意愿（愿意参与的事项）", "服务队伍"):
        assert f"<th scope=\"col\">{heading}</th>" in page
    assert "13966660003" not in page  # the phone is not a column of the pool
    assert listed(staff, pool) == {older, younger}
    assert listed(staff, f"{pool}?team=mediation_team") == {older}
    assert listed(staff, f"{pool}?team=arts_team") == {younger}
    assert listed(staff, f"{pool}?age_years_from=60") == {older}
    assert listed(staff, f"{pool}?age_years_from=18&age_years_to=40") == {younger}
    assert listed(staff, f"{pool}?age_group=senior") == {older}
    assert listed(staff, f"{pool}?occupation=teacher") == {younger}
    assert listed(staff, f"{pool}?specialties=mediation") == {older}
    assert listed(staff, f"{pool}?area=renjia-g2") == {younger}
    assert listed(staff, f"{pool}?willingness=culture") == {younger}
    assert listed(staff, f"{pool}?willingness=mediation&team=mediation_team&area=renjia") == {older}

    # a team can change, with a reason; the list follows the team now held
    assert act(staff, younger, "change_team", team="corridor_team", team_position="leader").status_code == 422
    assert act(staff, younger, "change_team", team="corridor_team", team_position="leader",
               comment="按特长调整").status_code == 302
    assert listed(staff, f"{pool}?team=corridor_team") == {younger}
    history = case(app, younger)["history"]
    assert [h["action"] for h in history] == ["start", "admit", "assign_team", "change_team"]
    assert {"field": "team", "old": "arts_team", "new": "corridor_team"} in history[-1]["changes"]

    # another community sees nothing of it
    assert who("staff2").get(f"/cases/{older}").status_code == 404
    assert listed(who("staff2"), pool) == set()

    # figures for the dashboard
    staff_user = find_user(app.extensions["civicflow"].store, "staff")
    figures = app.extensions["civicflow"].figures(staff_user)
    assert sum(r["value"] for r in figures if r["metric"] == "talents_in_teams") == 2


def test_talent_returned_resubmitted_rejected_and_leaving(app: Any, who: Any):
    cid = started(who("resident2").post("/start/talent_pool", {**TALENT, "name": "马丽", "specialties": ["other"],
                                                               "specialty_detail": ""}))
    staff = who("staff")
    response = act(staff, cid, "return_for_changes")
    assert response.status_code == 422 and "请填写意见" in response.get_data(as_text=True)
    assert act(staff, cid, "return_for_changes", comment="请写明具体特长").status_code == 302
    applicant = who("resident2")
    assert f"#{cid}" in applicant.get("/").get_data(as_text=True)
    page = applicant.get(f"/cases/{cid}").get_data(as_text=True)
    assert "请写明具体特长" in page and shown_state(applicant, cid) == "退回修改"
    response = applicant.post(f"/cases/{cid}/do/resubmit", {**TALENT, "name": "马丽", "specialties": ["other"],
                                                            "specialty_detail": "小区物业客服", "version": "2"})
    assert response.status_code == 302 and case(app, cid)["state"] == "submitted"
    assert act(staff, cid, "reject", comment="不在本社区活动").status_code == 302
    assert shown_state(applicant, cid) == "未入库"
    assert "volunteer" not in find_user(app.extensions["civicflow"].store, "resident2").roles

    # someone in the pool may leave it, with a reason
    other = started(who("resident3").post("/start/talent_pool", YOUNG_TALENT))
    act(staff, other, "admit")
    assert act(who("resident3"), other, "leave").status_code == 422
    assert act(who("resident3"), other, "leave", comment="工作调动").status_code == 302
    assert case(app, other)["state"] == "left"
    assert [h["action"] for h in case(app, other)["history"]] == ["start", "admit", "leave"]


def test_talent_form_checks(who: Any):
    response = who("resident").post("/start/talent_pool", {**TALENT, "occupation": "other", "birth_year": "1890"})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "此项为必填项" in page  # occupation_other, shown because 'other' was chosen
    assert "不能小于 1920" in page


# --------------------------------------------------------------------------- party members report 双报到

REPORT = {
    "name": "许明", "phone": "13966661009", "member_type": "on_duty", "workplace": "徽州区供电公司",
    "party_org": "区供电公司第一党支部", "community": "renjia", "home_grid": "renjia-g2", "address": "第二网格3栋",
    "skills": ["repair", "it"], "post_wishes": ["corridor_painting"], "available_times": ["weekend"], "pledge": "1",
}


def test_party_member_reports_is_confirmed_and_claims_a_post(app: Any, who: Any):
    member = who("newparty")
    cid = started(member.post("/start/party_member_reporting", REPORT))
    staff = who("staff")
    assert f"#{cid} 许明（徽州区供电公司）" in staff.get("/").get_data(as_text=True)
    page = staff.get(f"/cases/{cid}").get_data(as_text=True)
    assert "区供电公司第一党支部" in page and "第二网格3栋" in page
    assert act(staff, cid, "confirm").status_code == 302
    assert shown_state(member, cid) == "已报到"
    store = app.extensions["civicflow"].store
    assert "party_member" in find_user(store, "newparty").roles
    assert store.search(ledger.ACCOUNTS, lambda d: d["owner"] == "newparty")
    assert f"#{cid}" not in staff.get("/").get_data(as_text=True)  # nothing left to do on it

    # now a reported party member: the community's service posts are theirs to claim (after logging in again)
    post = started(staff.post("/start/service_post", POST))
    fresh = Browser(app).login("newparty")
    assert f"#{post}" in fresh.get("/").get_data(as_text=True)
    assert act(fresh, post, "claim").status_code == 302
    assert case(app, post)["assignees"] == ["newparty"]

    staff_user = find_user(store, "staff")
    figures = app.extensions["civicflow"].figures(staff_user)
    assert sum(r["value"] for r in figures if r["metric"] == "party_members_reported") == 1


def test_party_member_report_returned_then_rejected(app: Any, who: Any):
    member = who("newparty")
    cid = started(member.post("/start/party_member_reporting", REPORT))
    staff = who("secretary")
    assert act(staff, cid, "return_for_changes", comment="请填写党组织全称").status_code == 302
    assert case(app, cid)["state"] == "returned"
    response = member.post(f"/cases/{cid}/do/resubmit", {**REPORT, "party_org": "", "version": "2"})
    assert response.status_code == 422 and "此项为必填项" in response.get_data(as_text=True)
    response = member.post(f"/cases/{cid}/do/resubmit", {**REPORT, "party_org": "国网徽州区供电公司第一党支部", "version": "2"})
    assert response.status_code == 302
    assert act(staff, cid, "reject", comment="组织关系不在本区").status_code == 302
    assert shown_state(member, cid) == "未确认"
    assert "party_member" not in find_user(app.extensions["civicflow"].store, "newparty").roles
    assert [h["action"] for h in case(app, cid)["history"]] == ["start", "return_for_changes", "resubmit", "reject"]


# --------------------------------------------------------------------------- service posts 认领服务岗位

POST = {
    "post_title": "1号楼楼道彩绘", "category": "corridor_painting", "duties": "绘制楼道文化墙", "unit": "renjia-g1-b1",
    "service_date": "2026-11-28", "time_slot": "14:00-17:00", "planned_hours": "3", "contact": "陈静",
}


def test_service_post_claimed_once_done_confirmed_with_points(app: Any, who: Any):
    staff = who("staff")
    cid = started(staff.post("/start/service_post", POST))
    # every party member (and volunteer) of the community may claim it, wherever they live in it
    for name in ("party", "party2", "volunteer"):
        assert f"#{cid} 1号楼楼道彩绘" in who(name).get("/").get_data(as_text=True), name
    assert who("party_wf").get(f"/cases/{cid}").status_code == 404  # another community's member
    assert who("resident").get(f"/cases/{cid}").status_code == 404

    assert act(who("party"), cid, "claim").status_code == 302
    stale = who("party2").post(f"/cases/{cid}/do/claim", {"version": "1"}, page="/")  # loaded before the claim
    assert stale.status_code == 409
    late = who("party2").post(f"/cases/{cid}/do/claim", {"version": "2"}, page="/")
    assert late.status_code == 409 and "已被 刘洋 认领" in late.get_data(as_text=True)
    assert f"#{cid}" not in who("party2").get("/").get_data(as_text=True)

    claimer = who("party")
    form = claimer.get(f"/cases/{cid}/do/finish").get_data(as_text=True)
    assert "服务时长（小时）" in form and "可得积分" in form
    assert act(claimer, cid, "finish", hours="2.5", service_note="完成二层墙绘").status_code == 302
    assert case(app, cid)["data"]["points_earned"] == 25
    assert f"#{cid}" in staff.get("/").get_data(as_text=True)
    assert act(staff, cid, "confirm").status_code == 302
    assert shown_state(claimer, cid) == "已完成"

    engine = app.extensions["civicflow"]
    assert engine.balance("party") == 25
    points = claimer.get("/points").get_data(as_text=True)
    assert "认领服务岗位" in points and "25" in points
    assert ledger.verify(engine.store) == []
    figures = engine.figures(find_user(engine.store, "staff"))
    assert sum(r["value"] for r in figures if r["metric"] == "post_service_hours") == 2.5
    assert sum(r["value"] for r in figures if r["metric"] == "posts_completed") == 1


def test_service_post_released_back_to_the_pool_and_sent_back(app: Any, who: Any):
    staff = who("staff")
    cid = started(staff.post("/start/service_post", POST))
    act(who("party"), cid, "claim")
    assert act(who("party"), cid, "release").status_code == 422  # a reason is required
    assert act(who("party"), cid, "release", comment="临时出差").status_code == 302
    assert case(app, cid)["state"] == "published" and case(app, cid)["assignees"] == []
    assert f"#{cid}" in who("party2").get("/").get_data(as_text=True)  # back in the pool
    assert act(who("party2"), cid, "claim").status_code == 302
    act(who("party2"), cid, "finish", hours="3", service_note="完成")
    # the claimer cannot confirm their own service: only community staff credit the points
    version = str(case(app, cid)["version"])
    assert who("party2").post(f"/cases/{cid}/do/confirm", {"version": version}, page="/").status_code == 403
    assert act(staff, cid, "send_back", comment="请补充服务照片").status_code == 302
    assert case(app, cid)["state"] == "claimed" and case(app, cid)["assignees"] == ["party2"]
    assert "请补充服务照片" in who("party2").get(f"/cases/{cid}").get_data(as_text=True)
    assert app.extensions["civicflow"].balance("party2") == 0  # nothing credited before confirmation

    other = started(staff.post("/start/service_post", {**POST, "post_title": "菜市场文明劝导"}))
    assert act(staff, other, "withdraw", comment="菜市场改造").status_code == 302
    assert case(app, other)["state"] == "withdrawn"
    assert f"#{other}" not in who("party").get("/").get_data(as_text=True)
