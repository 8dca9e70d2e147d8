"""社区公益微创投 (micro_venture): residents propose small projects, evaluators score them, the district funds the
best, the team records its activities and closes with a report — through the pages."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine import ledger
from engine.clock import FrozenClock
from tests.conftest import Browser, act, case, shipped_app, started

ROOT = Path(__file__).resolve().parents[1]
USERS = [
    ("resident", "王芳", ["resident"], "renjia-g1"),
    ("resident2", "马丽", ["resident"], "renjia-g1"),
    ("staff", "陈静", ["community_staff"], "renjia"),
    ("secretary", "周伟", ["community_secretary"], "renjia"),
    ("staff2", "吴婷", ["community_staff"], "wenfeng"),
    ("street", "郑军", ["street_evaluator"], "huizhou-jie"),
    ("street2", "何平", ["street_evaluator"], "huizhou-jie"),
    ("district", "黄蕾", ["district_evaluator"], "huizhou"),
    ("district2", "韩梅", ["district_evaluator"], "huizhou"),
]
PROPOSAL = {"project_name": "楼道美化行动", "venture_field": "environment", "community": "renjia", "leader": "王芳",
            "leader_phone": "13812345678", "team-0-member_name": "王芳", "team-0-member_task": "统筹",
            "team-1-member_name": "马丽", "team-1-member_task": "彩绘", "beneficiaries": "300", "budget": "3000",
            "plan": "组织居民和青少年志愿者对1号楼、2号楼楼道进行清理和彩绘，制定楼道公约。",
            "period_start": "2027-03-01", "period_end": "2027-08-31"}
REPORT = {"report_summary": "完成1号楼、2号楼楼道清理和彩绘，居民共同制定楼道公约，团队发展为楼道自管小组。",
          "activities_held": "2", "people_reached": "320", "amount_spent": "2860", "continues_as_group": "1"}


@pytest.fixture
def app(tmp_path: Path, clock: FrozenClock) -> Any:
    yield from shipped_app(tmp_path, clock, USERS)


def scored(who: Any, value: int, by: str = "resident", **changes: str) -> int:
    cid = started(who(by).post("/start/micro_venture", {**PROPOSAL, **changes}))
    assert act(who("staff"), cid, "accept_entry").status_code == 302
    for name in ("street", "street2", "district2"):
        sheet = {"need_fit": str(value), "feasibility": str(value), "participation": str(value), "budget_sense": str(value)}
        assert who(name).post(f"/cases/{cid}/contribute", sheet).status_code == 302
    return cid


def test_proposal_scored_funded_carried_out_reported_and_closed(app: Any, who: Any):
    cid = started(who("resident").post("/start/micro_venture", PROPOSAL))
    data = case(app, cid)
    assert data["state"] == "submitted" and data["round"] == "2026"
    assert [m["member_name"] for m in data["data"]["team"]] == ["王芳", "马丽"]
    assert who("staff2").get(f"/cases/{cid}").status_code == 404
    assert act(who("staff"), cid, "accept_entry").status_code == 302
    assert f"#{cid}" in who("street").get("/").get_data(as_text=True)  # waiting for my score
    sheets = {"street": (90, 85, 92, 88), "street2": (60, 60, 60, 60), "district2": (95, 95, 95, 95)}
    for name, (a, b, c, d) in sheets.items():
        response = who(name).post(f"/cases/{cid}/contribute",
                                  {"need_fit": str(a), "feasibility": str(b), "participation": str(c), "budget_sense": str(d)})
        assert response.status_code == 302
    score = case(app, cid)["data"]["score"]
    assert score["count"] == 3 and score["total"] == 88.5  # the highest (95) and the lowest (60) sheets dropped: street's 88.5
    assert "何平" in who("district").get(f"/cases/{cid}").get_data(as_text=True)  # evaluators see the sheets
    assert "何平" not in who("resident").get(f"/cases/{cid}").get_data(as_text=True)

    assert act(who("street"), cid, "fund", granted_amount="3000").status_code == 403  # the district funds
    assert act(who("district"), cid, "fund").status_code == 422
    assert act(who("district"), cid, "fund", granted_amount="2800", grant_note="核减宣传费").status_code == 302
    assert case(app, cid)["state"] == "implementing"
    assert act(who("resident"), cid, "submit_report", **REPORT).status_code == 409  # no activity recorded yet

    rows = {"activities-0-activity_date": "2027-03-15", "activities-0-activity_title": "楼道杂物清理",
            "activities-0-participants": "25"}
    assert act(who("resident"), cid, "log_activities", **rows).status_code == 302
    form = who("resident").get(f"/cases/{cid}/do/log_activities").get_data(as_text=True)
    assert 'value="楼道杂物清理"' in form  # the list so far, to add to
    more = {**rows, "activities-1-activity_date": "2027-04-20", "activities-1-activity_title": "楼道彩绘",
            "activities-1-participants": "18", "activities-1-activity_note": "青少年志愿者参与"}
    assert act(who("resident"), cid, "log_activities", **more).status_code == 302
    data = case(app, cid)
    assert data["state"] == "implementing" and [a["activity_title"] for a in data["data"]["activities"]] == ["楼道杂物清理", "楼道彩绘"]

    assert act(who("resident"), cid, "submit_report", **REPORT).status_code == 302
    assert f"#{cid}" in who("secretary").get("/").get_data(as_text=True)
    assert act(who("secretary"), cid, "return_report").status_code == 422
    assert act(who("secretary"), cid, "return_report", comment="请补充资金使用明细").status_code == 302
    assert act(who("resident"), cid, "submit_report", **REPORT).status_code == 302
    assert act(who("secretary"), cid, "close_project").status_code == 302
    data = case(app, cid)
    assert data["state"] == "closed"
    assert [h["action"] for h in data["history"]] == [
        "start", "accept_entry", "fund", "log_activities", "log_activities", "submit_report", "return_report",
        "submit_report", "close_project"]
    public = Browser(app).get(f"/public/{cid}").get_data(as_text=True)
    assert "楼道美化行动" in public and "2800" in public and "13812345678" not in public
    assert ledger.verify(app.extensions["civicflow"].store) == []

    engine = app.extensions["civicflow"]
    figures = engine.figures(engine.users(role="district_evaluator")[0])
    total = {m: sum(r["value"] for r in figures if r["metric"] == m)
             for m in ("ventures_proposed", "ventures_funded", "ventures_completed", "venture_grants", "venture_activities_held")}
    assert total == {"ventures_proposed": 1, "ventures_funded": 1, "ventures_completed": 1, "venture_grants": 2800,
                     "venture_activities_held": 2}


def test_low_scores_are_not_funded(app: Any, who: Any):
    cid = scored(who, 50)
    assert act(who("district"), cid, "fund", granted_amount="1000").status_code == 409  # below 60
    assert act(who("district"), cid, "not_fund").status_code == 422
    assert act(who("district"), cid, "not_fund", comment="方案可行性不足").status_code == 302
    assert case(app, cid)["state"] == "not_funded"
    assert "未获资助" in who("resident").get(f"/cases/{cid}").get_data(as_text=True)


def test_returned_resubmitted_and_rejected_at_the_community_check(app: Any, who: Any):
    bad = who("resident2").post("/start/micro_venture", {**PROPOSAL, "team-0-member_name": "", "team-1-member_name": ""})
    assert bad.status_code == 422
    cid = started(who("resident2").post("/start/micro_venture", {**PROPOSAL, "leader": "马丽"}))
    assert act(who("staff"), cid, "return_for_changes", comment="请补充预算明细").status_code == 302
    assert case(app, cid)["state"] == "returned"
    data = {**PROPOSAL, "leader": "马丽", "budget_detail": "涂料1500元，工具800元，宣传700元", "version": "2"}
    assert who("resident2").post(f"/cases/{cid}/do/resubmit", data).status_code == 302
    assert case(app, cid)["state"] == "submitted"
    assert act(who("secretary"), cid, "reject", comment="与已资助项目重复").status_code == 302
    assert case(app, cid)["state"] == "rejected"
    assert [h["action"] for h in case(app, cid)["history"]] == ["start", "return_for_changes", "resubmit", "reject"]
