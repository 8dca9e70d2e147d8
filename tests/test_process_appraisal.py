"""考核评价: the annual appraisal of community workers (annual_appraisal) and the building steward satisfaction
rating (steward_rating), end to end through the pages as the people who take part."""
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
    ("resident3", "高建国", ["resident"], "renjia-g2"),
    ("resident4", "林小雨", ["resident"], "renjia-g2"),
    ("volunteer", "李强", ["resident", "volunteer"], "renjia-g1"),
    ("party", "刘洋", ["resident", "party_member"], "renjia-g2"),
    ("steward", "孙丽", ["resident", "building_steward"], "renjia-g1-b1"),
    ("r_wf", "文峰居民", ["resident"], "wenfeng-g1"),
    ("grid", "赵敏", ["grid_worker"], "renjia-g1"),
    ("staff", "陈静", ["community_staff"], "renjia"),
    ("secretary", "周伟", ["community_secretary"], "renjia"),
    ("staff2", "吴婷", ["community_staff"], "wenfeng"),
    ("street", "郑军", ["street_evaluator"], "huizhou-jie"),
    ("street2", "何平", ["street_evaluator"], "huizhou-jie"),
]
RATERS = ["resident", "resident2", "resident3", "volunteer", "party"]
REPORT = {"person": "陈静", "person_post": "community_worker", "unit": "renjia", "year": "2026",
          "summary": "全年入户走访520户，办结居民诉求86件，组织志愿服务活动24场。"}


@pytest.fixture
def app(tmp_path: Path, clock: FrozenClock) -> Any:
    yield from shipped_app(tmp_path, clock, USERS)


def rate(who: Any, cid: int, raters: list[str] = RATERS) -> None:
    for i, name in enumerate(raters):
        verdict = "satisfied" if i % 2 == 0 else "fairly_satisfied"
        response = who(name).post(f"/cases/{cid}/contribute", {"stars": str(5 - i % 2), "verdict": verdict, "remark": "多来2号楼"})
        assert response.status_code == 302, response.get_data(as_text=True)[:2000]


def score(who: Any, cid: int, value: int, people: tuple[str, ...] = ("street", "street2")) -> None:
    for name in people:
        sheet = {k: str(value) for k in ("conduct", "ability", "diligence", "performance", "integrity")}
        assert who(name).post(f"/cases/{cid}/contribute", sheet).status_code == 302


def to_notice(app: Any, who: Any, report: dict[str, str] = REPORT, by: str = "staff") -> int:
    cid = started(who(by).post("/start/annual_appraisal", report))
    rate(who, cid)
    assert act(who("secretary"), cid, "close_rating").status_code == 302
    score(who, cid, 90)
    response = act(who("street"), cid, "determine", grade="excellent", org_opinion="成效突出，评定为优秀。")
    assert response.status_code == 302
    assert case(app, cid)["state"] == "on_notice"
    return cid


# --------------------------------------------------------------------------- annual appraisal

def test_appraisal_self_report_rating_org_rating_notice_and_result(app: Any, who: Any, clock: FrozenClock):
    cid = started(who("staff").post("/start/annual_appraisal", REPORT))
    page = who("staff").get(f"/cases/{cid}").get_data(as_text=True)
    assert "群众测评" in page and "陈静 2026年度述职" in page

    # the person appraised may not rate themself; a resident of another community never sees the case
    assert who("staff").post(f"/cases/{cid}/contribute", {"stars": "5", "verdict": "satisfied"}, page="/").status_code == 409
    assert who("r_wf").get(f"/cases/{cid}").status_code == 404
    assert f"#{cid}" in who("resident3").get("/").get_data(as_text=True)  # a resident of grid 2 is asked to rate
    rate(who, cid, RATERS[:4])
    assert act(who("secretary"), cid, "close_rating").status_code == 409  # 4 of the 5 ratings needed
    rate(who, cid, RATERS[4:])
    secretary_page = who("secretary").get(f"/cases/{cid}").get_data(as_text=True)
    assert "高建国" in secretary_page  # the secretary sees who rated what
    assert "高建国" not in who("staff").get(f"/cases/{cid}").get_data(as_text=True)
    assert "高建国" not in who("resident").get(f"/cases/{cid}").get_data(as_text=True)
    rating = case(app, cid)["data"]["rating"]
    assert rating["count"] == 5 and rating["total"] == 4.6 and rating["tally"] == {"satisfied": 3, "fairly_satisfied": 2}

    assert act(who("secretary"), cid, "close_rating").status_code == 302
    data = case(app, cid)
    assert data["state"] == "org_rating" and sorted(data["assignees"]) == ["street", "street2"]
    assert f"#{cid}" in who("street").get("/").get_data(as_text=True)
    sheet = {"conduct": "90", "ability": "80", "diligence": "90", "performance": "100", "integrity": "90"}
    assert who("street").post(f"/cases/{cid}/contribute", {**sheet, "performance": "101"}).status_code == 422
    assert who("street").post(f"/cases/{cid}/contribute", sheet).status_code == 302
    assert act(who("street"), cid, "determine", grade="excellent", org_opinion="好").status_code == 409  # street2 still to score
    assert who("street2").post(f"/cases/{cid}/contribute", {**sheet, "performance": "80"}).status_code == 302
    assert case(app, cid)["data"]["score"]["total"] == 88.0  # (91.5 + 84.5) / 2: weighted sheets, two only so nothing trimmed
    response = act(who("street"), cid, "determine", grade="excellent", org_opinion="全年工作成效突出，评定为优秀。")
    assert response.status_code == 302
    assert case(app, cid)["state"] == "on_notice"

    public = Browser(app)
    listing = public.get("/public").get_data(as_text=True)
    assert "陈静 2026年度述职" in listing and "2026-12-04" in listing  # 5 working days from Friday
    detail = public.get(f"/public/{cid}").get_data(as_text=True)
    assert "优秀" in detail and "社区工作者" in detail and "全年入户走访" not in detail

    clock.advance(days=6)
    app.extensions["civicflow"].tick()
    assert case(app, cid)["state"] == "on_notice"  # Thursday: the notice still runs
    clock.advance(days=1, minutes=1)
    app.extensions["civicflow"].tick()
    data = case(app, cid)
    assert data["state"] == "result"
    assert [h["action"] for h in data["history"]] == ["start", "close_rating", "determine", "conclude"]
    assert data["history"][-1]["by"] == "system"
    page = who("staff").get(f"/cases/{cid}").get_data(as_text=True)
    assert "考核结果反馈" in page and "全年工作成效突出" in page  # the opinion fed back to the person
    assert "考核结果反馈" in public.get("/public").get_data(as_text=True)
    published = app.extensions["civicflow"].store.search(ledger.PUBLICATIONS)
    assert [(p["case"], p["state"]) for p in published] == [(cid, "result")]
    assert ledger.verify(app.extensions["civicflow"].store) == []


def test_objection_dismissed_restarts_the_notice_then_upheld_leads_to_re_rating(app: Any, who: Any, clock: FrozenClock):
    cid = to_notice(app, who)
    clock.advance(days=3)
    response = who("resident4").post(f"/public/{cid}", {"reason": "该同志今年有两个月病假，评为优秀与实际不符。"})
    assert response.status_code == 302
    assert case(app, cid)["state"] == "objection_review"
    assert f"#{cid}" in who("secretary").get("/").get_data(as_text=True)
    assert act(who("secretary"), cid, "dismiss").status_code == 422  # a comment is required
    assert act(who("secretary"), cid, "dismiss", comment="病假已按规定扣分，等次评定无误。").status_code == 302
    data = case(app, cid)
    assert data["state"] == "on_notice" and data["objections"][0]["status"] == "dismissed"
    assert Browser(app).get(f"/public/{cid}").get_data(as_text=True).count("2026-12-07") >= 1  # a fresh 5 working days

    assert who("resident3").post(f"/public/{cid}", {"reason": "走访台账有补记情况。"}).status_code == 302
    assert act(who("street2"), cid, "reappraise", comment="台账确有补记，请重新评定。").status_code == 302
    data = case(app, cid)
    assert data["state"] == "re_rating" and data["objections"][1]["status"] == "upheld"
    assert data["data"]["grade"] == "excellent"  # the earlier grade stands until it is decided again
    score(who, cid, 75)
    assert case(app, cid)["data"]["review_score"]["total"] == 75.0
    assert case(app, cid)["data"]["score"]["total"] == 90.0  # the first rating is kept, not mixed in
    response = act(who("street2"), cid, "redetermine", grade="competent", org_opinion="经复核，评定为称职。")
    assert response.status_code == 302
    assert case(app, cid)["state"] == "on_notice"
    assert "称职" in Browser(app).get(f"/public/{cid}").get_data(as_text=True)
    history = [h["action"] for h in case(app, cid)["history"]]
    assert history == ["start", "close_rating", "determine", "object", "dismiss", "object", "reappraise", "redetermine"]


def test_objection_upheld_as_a_fail(app: Any, who: Any):
    cid = to_notice(app, who)
    assert who("r_wf").post(f"/public/{cid}", {"reason": "外社区"}).status_code == 302  # any resident may object
    assert act(who("staff"), cid, "uphold_fail", comment="x").status_code == 403  # staff do not decide objections
    assert act(who("secretary"), cid, "uphold_fail", comment="查实有违反廉洁纪律行为。").status_code == 302
    data = case(app, cid)
    assert data["state"] == "failed" and data["objections"][0]["status"] == "upheld"
    assert "考核不合格" in who("staff").get(f"/cases/{cid}").get_data(as_text=True)
    assert ledger.verify(app.extensions["civicflow"].store) == []


def test_the_secretarys_own_appraisal_is_closed_by_the_street_or_the_clock(app: Any, who: Any, clock: FrozenClock):
    report = {**REPORT, "person": "周伟", "person_post": "secretary"}
    own = started(who("secretary").post("/start/annual_appraisal", report))
    rate(who, own)
    assert act(who("secretary"), own, "close_rating").status_code == 409  # not on their own appraisal
    assert act(who("street"), own, "close_rating").status_code == 302

    few = started(who("staff").post("/start/annual_appraisal", REPORT))
    rate(who, few, RATERS[:2])
    full = started(who("grid").post("/start/annual_appraisal", {**REPORT, "person": "赵敏", "person_post": "grid_worker"}))
    rate(who, full)
    clock.advance(days=7, minutes=1)
    app.extensions["civicflow"].tick()
    assert case(app, full)["state"] == "org_rating" and case(app, full)["history"][-1]["by"] == "system"
    data = case(app, few)
    assert data["state"] == "resident_rating" and data["history"][-1]["action"] == "timer_skipped"


def test_appraisal_list_filters_by_post(app: Any, who: Any):
    started(who("staff").post("/start/annual_appraisal", REPORT))
    started(who("grid").post("/start/annual_appraisal", {**REPORT, "person": "赵敏", "person_post": "grid_worker"}))
    page = who("secretary").get("/workflows/annual_appraisal?person_post=grid_worker").get_data(as_text=True)
    assert "赵敏" in page and "陈静 2026" not in page
    assert "赵敏" not in who("staff2").get("/workflows/annual_appraisal").get_data(as_text=True)


# --------------------------------------------------------------------------- steward satisfaction rating

REVISIT = {"steward": "孙丽", "steward_user": "steward", "building": "renjia-g1-b1", "revisit_date": "2026-11-20",
           "revisit_ways": ["on_site", "records"], "ledger_checked": "1", "households_linked": "5",
           "revisit_notes": "实地回访1号楼5户"}


def test_steward_rating_residents_rate_and_the_community_records(app: Any, who: Any):
    cid = started(who("staff").post("/start/steward_rating", REVISIT))
    data = case(app, cid)
    assert data["state"] == "rating" and data["round"] == "2026-Q4" and data["org_unit"] == "renjia-g1-b1"
    # the steward may not rate themself; residents of another grid are not asked
    assert who("steward").post(f"/cases/{cid}/contribute", {"stars": "5", "verdict": "satisfied"}, page="/").status_code == 409
    assert who("resident3").get(f"/cases/{cid}").status_code == 404
    for name, stars, verdict in (("resident", "5", "satisfied"), ("resident2", "4", "satisfied"),
                                 ("volunteer", "3", "fairly_satisfied")):
        assert who(name).post(f"/cases/{cid}/contribute", {"stars": stars, "verdict": verdict, "contacted": "1"}).status_code == 302
    assert "马丽" in who("staff").get(f"/cases/{cid}").get_data(as_text=True)  # staff see who rated what
    assert "马丽" not in who("resident").get(f"/cases/{cid}").get_data(as_text=True)
    assert case(app, cid)["data"]["satisfaction"]["total"] == 4.0
    assert act(who("staff"), cid, "close_rating").status_code == 302
    assert act(who("staff"), cid, "record").status_code == 422  # the result is required
    assert act(who("staff"), cid, "record", rating_result="satisfied", result_feedback="评价满意").status_code == 302
    data = case(app, cid)
    assert data["state"] == "recorded" and data["data"]["rating_result"] == "satisfied"
    assert [h["action"] for h in data["history"]] == ["start", "close_rating", "record"]
    assert "已记录" in who("staff").get("/workflows/steward_rating").get_data(as_text=True)


def test_steward_rating_too_few_ratings_then_cancelled(app: Any, who: Any, clock: FrozenClock):
    cid = started(who("grid").post("/start/steward_rating", REVISIT))
    who("resident").post(f"/cases/{cid}/contribute", {"stars": "2", "verdict": "dissatisfied", "remark": "没见过红管家"})
    assert act(who("grid"), cid, "close_rating").status_code == 403  # grid workers revisit; staff close
    assert act(who("staff"), cid, "close_rating").status_code == 409  # 1 of 3 ratings
    clock.advance(days=10, minutes=1)
    app.extensions["civicflow"].tick()
    assert case(app, cid)["history"][-1]["action"] == "timer_skipped"
    assert act(who("secretary"), cid, "cancel").status_code == 422
    assert act(who("secretary"), cid, "cancel", comment="参评居民不足，下季度重新组织。").status_code == 302
    assert case(app, cid)["state"] == "cancelled"
