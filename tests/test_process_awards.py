"""评优评先: 最美楼栋红管家 (award_selection, quarterly, ranked against quotas) and the star rating of residents' groups
(star_rating, yearly), end to end through the pages: nomination, community recommendation, street review, district
scoring, ranking, public notice with objections, award and certificate."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine import ledger
from engine.clock import FrozenClock
from tests.conftest import DURABLE_STORES, Browser, act, case, shipped_app, started, store_location

ROOT = Path(__file__).resolve().parents[1]
USERS = [
    ("resident", "王芳", ["resident"], "renjia-g1"),
    ("resident2", "马丽", ["resident"], "renjia-g1"),
    ("steward", "孙丽", ["resident", "building_steward"], "renjia-g1-b1"),
    ("grid", "赵敏", ["grid_worker"], "renjia-g1"),
    ("staff", "陈静", ["community_staff"], "renjia"),
    ("secretary", "周伟", ["community_secretary"], "renjia"),
    ("secretary2", "孔亮", ["community_secretary"], "wenfeng"),
    ("street", "郑军", ["street_evaluator"], "huizhou-jie"),
    ("street2", "何平", ["street_evaluator"], "huizhou-jie"),
    ("district", "黄蕾", ["district_evaluator"], "huizhou"),
    ("district2", "韩梅", ["district_evaluator"], "huizhou"),
    ("district3", "唐宁", ["district_evaluator"], "huizhou"),
]
EVALUATORS = ("district", "district2", "district3")


@pytest.fixture(params=DURABLE_STORES)
def app(request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock) -> Any:
    yield from shipped_app(tmp_path, clock, USERS, store_location(request.param, request, tmp_path))


def nomination(name: str, **more: str) -> dict[str, str]:
    return {"award_title": "steward", "nominee": name, "building": "renjia-g1-b1", "nomination_source": "masses", "households": "5", "visits": "6",
            "deeds": f"{name}联系本楼栋5户居民，每季度入户走访，牵头解决楼道照明问题。", **more}


def to_scoring(who: Any, name: str, by: str = "resident", **more: str) -> int:
    cid = started(who(by).post("/start/award_selection", nomination(name, **more)))
    assert act(who("secretary"), cid, "recommend", comment="同意推荐").status_code == 302
    assert sorted(case(who.app, cid)["assignees"]) == ["street", "street2"]  # routed to the street's evaluators
    assert act(who("street"), cid, "pass_street").status_code == 302
    return cid


def nominate(who: Any, name: str, totals: tuple[int, int, int], duty: int | None = None, **more: str) -> int:
    """A nominee through every step to the ranking: each evaluator scores every criterion ``total``
    (the duty criterion ``duty`` if given, to separate equal totals)."""
    cid = to_scoring(who, name, **more)
    for evaluator, total in zip(EVALUATORS, totals):
        sheet = {"duty": str(duty if duty is not None else total), "contact": str(total), "results": str(total),
                 "satisfaction": str(total)}
        assert who(evaluator).post(f"/cases/{cid}/contribute", sheet).status_code == 302
    assert act(who("district"), cid, "done_scoring").status_code == 302
    return cid


# --------------------------------------------------------------------------- 最美楼栋红管家

def test_nomination_review_scoring_ranking_notice_award_and_certificate(app: Any, who: Any, clock: FrozenClock):
    first = to_scoring(who, "孙丽", nominee_user="steward", nominee_phone="13655556666")
    data = case(app, first)
    assert data["round"] == "2026-Q4" and data["history"][-1]["by"] == "street"
    assert data["assignees"] == []  # the street's evaluators were routed the case; passing it clears them
    assert f"#{first}" in who("district2").get("/").get_data(as_text=True)  # waiting for my score
    sheet = {"duty": "95", "contact": "92", "results": "90", "satisfaction": "96"}
    assert who("district").post(f"/cases/{first}/contribute", sheet).status_code == 302
    assert who("district").post(f"/cases/{first}/contribute", sheet, page="/").status_code == 409  # once only
    assert act(who("district"), first, "done_scoring").status_code == 409  # 1 of 3 sheets
    who("district2").post(f"/cases/{first}/contribute", {**sheet, "duty": "90"})
    who("district3").post(f"/cases/{first}/contribute", {**sheet, "duty": "99"})
    page = who("district2").get(f"/cases/{first}").get_data(as_text=True)
    assert "唐宁" in page  # evaluators see each other's sheets
    assert "唐宁" not in who("secretary").get(f"/cases/{first}").get_data(as_text=True)
    assert "13655556666" in who("secretary").get(f"/cases/{first}").get_data(as_text=True)  # staff see the phone
    assert act(who("district"), first, "done_scoring").status_code == 302
    others = [nominate(who, n, t) for n, t in (("钱进", (88, 85, 86)), ("张桂兰", (90, 89, 87)), ("李建华", (80, 78, 82)))]

    assert who("secretary").get("/workflows/award_selection/ranking").status_code == 403
    preview = who("district").get("/workflows/award_selection/ranking").get_data(as_text=True)
    assert "2026-Q4" in preview and "孙丽" in preview
    assert who("district").post("/workflows/award_selection/ranking", {"round": "2026-Q4"}).status_code == 302
    states = [case(app, i)["state"] for i in [first] + others]
    assert states == ["on_notice", "on_notice", "on_notice", "not_selected"]
    levels = [case(app, i)["data"].get("award_level") for i in [first] + others]
    assert levels == ["first", "second", "second", None]
    assert case(app, first)["history"][-1]["comment"] == "最美楼栋红管家 · 第 1 名 · 一等奖"  # one ranking per award title
    assert case(app, others[0])["history"][-1]["comment"] == "最美楼栋红管家 · 第 3 名 · 二等奖"  # 86 after 张桂兰's 89

    public = Browser(app)
    listing = public.get("/public").get_data(as_text=True)
    assert "孙丽" in listing and "李建华" not in listing and "2026-12-04" in listing
    detail = public.get(f"/public/{first}").get_data(as_text=True)
    assert "孙丽" in detail and "13655556666" not in detail and "联系本楼栋" not in detail
    assert who("district").get(f"/cases/{first}/certificate").status_code == 404  # not before the notice ends

    clock.advance(days=7, minutes=1)
    app.extensions["civicflow"].tick()
    assert [case(app, i)["state"] for i in [first] + others] == ["awarded", "awarded", "awarded", "not_selected"]
    certificate = who("resident").get(f"/cases/{first}/certificate")
    assert certificate.status_code == 200
    text = certificate.get_data(as_text=True)
    assert "荣誉证书" in text and "孙丽" in text and "一等奖" in text and "2026-Q4" in text
    assert who("secretary").get(f"/cases/{others[2]}/certificate").status_code == 404
    assert "已表彰" in public.get("/public").get_data(as_text=True)
    published = [p["case"] for p in app.extensions["civicflow"].store.search(ledger.PUBLICATIONS)]
    assert sorted(published) == sorted([first] + others[:2])
    assert ledger.verify(app.extensions["civicflow"].store) == []
    figures = app.extensions["civicflow"].figures(app.extensions["civicflow"].users(role="district_evaluator")[0])
    assert sum(r["value"] for r in figures if r["metric"] == "awards_given") == 3
    assert sum(r["value"] for r in figures if r["metric"] == "nominations") == 4
    assert "表彰最美楼栋红管家" in who("district").get("/dashboard").get_data(as_text=True)


def test_equal_totals_go_to_the_duty_score_and_a_true_tie_is_refused(app: Any, who: Any):
    a = nominate(who, "甲", (90, 90, 90), duty=80)
    b = nominate(who, "乙", (90, 90, 90), duty=100)   # the same total as 甲 would need; duty lifts it
    c = nominate(who, "丙", (70, 70, 70))
    d = nominate(who, "丁", (70, 70, 70))             # 丙 and 丁 tie on everything at the edge of the quota
    response = who("district").post("/workflows/award_selection/ranking", {"round": "2026-Q4"})
    assert response.status_code == 302
    page = who("district").get(response.headers["Location"]).get_data(as_text=True)
    assert "名额边界出现并列" in page and f"#{c}" in page and f"#{d}" in page
    assert [case(app, i)["state"] for i in (a, b, c, d)] == ["ranked"] * 4  # nothing moved
    assert case(app, b)["data"]["score"]["total"] > case(app, a)["data"]["score"]["total"]


def test_objections_during_the_notice_dismissed_then_upheld(app: Any, who: Any, clock: FrozenClock):
    cid = nominate(who, "孙丽", (95, 92, 90))
    who("district").post("/workflows/award_selection/ranking", {"round": "2026-Q4"})
    assert case(app, cid)["state"] == "on_notice"
    clock.advance(days=4)  # Tuesday 1 December
    assert who("resident2").post(f"/public/{cid}", {"reason": "她本季度没有来我家走访过。"}).status_code == 302
    assert case(app, cid)["state"] == "objection_review"
    assert act(who("secretary"), cid, "dismiss", comment="x").status_code == 403  # the district decides
    assert act(who("district"), cid, "dismiss", comment="经核实，走访台账有记录和签字。").status_code == 302
    assert case(app, cid)["state"] == "on_notice"
    assert "2026-12-08" in Browser(app).get(f"/public/{cid}").get_data(as_text=True)  # a fresh 5 working days
    assert who("resident").post(f"/public/{cid}", {"reason": "台账签字系代签。"}).status_code == 302
    assert act(who("district2"), cid, "uphold", comment="经查台账存在代签，取消表彰。").status_code == 302
    data = case(app, cid)
    assert data["state"] == "revoked"
    assert [o["status"] for o in data["objections"]] == ["dismissed", "upheld"]
    assert who("resident").get(f"/cases/{cid}/certificate").status_code == 404
    clock.advance(days=10)
    app.extensions["civicflow"].tick()
    assert case(app, cid)["state"] == "revoked"


def test_returned_resubmitted_not_recommended_and_not_passed(app: Any, who: Any):
    cid = started(who("grid").post("/start/award_selection", nomination("赵大伟")))
    assert f"#{cid}" in who("secretary").get("/").get_data(as_text=True)
    assert act(who("secretary"), cid, "return_for_changes").status_code == 422
    assert act(who("secretary"), cid, "return_for_changes", comment="请补充走访次数").status_code == 302
    assert case(app, cid)["state"] == "returned" and case(app, cid)["assignees"] == ["grid"]
    response = who("grid").post(f"/cases/{cid}/do/resubmit", {**nomination("赵大伟"), "visits": "9", "version": "2"})
    assert response.status_code == 302
    data = case(app, cid)
    assert data["state"] == "nominated" and data["data"]["visits"] == 9
    assert act(who("secretary"), cid, "recommend").status_code == 302
    assert act(who("street2"), cid, "fail_street", comment="事迹不够突出").status_code == 302
    assert case(app, cid)["state"] == "not_passed"

    other = started(who("steward").post("/start/award_selection", nomination("孙丽", nomination_source="self")))
    assert who("secretary2").get(f"/cases/{other}").status_code == 404  # another community's secretary
    assert act(who("secretary"), other, "not_recommend", comment="本季度已有推荐").status_code == 302
    assert case(app, other)["state"] == "not_recommended"
    assert [h["action"] for h in case(app, cid)["history"]] == ["start", "return_for_changes", "resubmit", "recommend", "fail_street"]


# --------------------------------------------------------------------------- 星级评定

def application(name: str, **more: str) -> dict[str, str]:
    return {"group_name": name, "group_kind": "culture_sports", "community": "renjia", "leader": "王芳",
            "leader_phone": "13812345678", "members": "30", "level_applied": "five",
            "highlights": "常态化开展活动，带动居民参与社区治理。", **more}


def star_scored(who: Any, name: str, value: int, by: str = "resident") -> int:
    cid = started(who(by).post("/start/star_rating", application(name)))
    assert act(who("secretary"), cid, "recommend").status_code == 302
    assert act(who("street2"), cid, "pass_street").status_code == 302
    for evaluator in EVALUATORS:
        sheet = {"party_building_score": str(value), "vitality": str(value), "influence": str(value)}
        assert who(evaluator).post(f"/cases/{cid}/contribute", sheet).status_code == 302
    return cid


def test_star_rating_threshold_quota_notice_and_star_certificate(app: Any, who: Any, clock: FrozenClock):
    dance = star_scored(who, "夕阳红舞蹈队", 92)
    mutual = star_scored(who, "邻里互助会", 84, by="staff")
    weak = star_scored(who, "楼道美化小组", 55)
    assert act(who("district"), weak, "done_scoring").status_code == 409  # below 60: not to the ranking
    assert act(who("district"), weak, "below_standard").status_code == 302
    for cid in (dance, mutual):
        assert act(who("district"), cid, "below_standard").status_code == 409
        assert act(who("district"), cid, "done_scoring").status_code == 302
    assert who("district").post("/workflows/star_rating/ranking", {"round": "2026"}).status_code == 302
    assert [case(app, i)["data"].get("star_level") for i in (dance, mutual)] == ["five_star", "four_star"]
    assert [case(app, i)["state"] for i in (dance, mutual, weak)] == ["on_notice", "on_notice", "not_rated"]
    assert "夕阳红舞蹈队" in Browser(app).get("/public").get_data(as_text=True)
    clock.advance(days=7, minutes=1)
    app.extensions["civicflow"].tick()
    assert case(app, dance)["state"] == "rated"
    text = who("resident").get(f"/cases/{dance}/certificate").get_data(as_text=True)
    assert "夕阳红舞蹈队" in text and "五星级" in text and "星级社区社会组织" in text
    assert ledger.verify(app.extensions["civicflow"].store) == []


def test_star_application_checked_returned_resubmitted_and_failed_by_the_street(app: Any, who: Any):
    bad = who("resident2").post("/start/star_rating", application("银龄合唱团", members="2"))
    assert bad.status_code == 422 and "银龄合唱团" in bad.get_data(as_text=True)  # at least 3 members; typing kept
    cid = started(who("resident2").post("/start/star_rating", application("银龄合唱团")))
    assert act(who("secretary"), cid, "return_for_changes", comment="请补充党的建设情况").status_code == 302
    assert f"#{cid}" in who("resident2").get("/").get_data(as_text=True)
    data = {**application("银龄合唱团"), "party_building": "成立功能型党小组", "version": "2"}
    assert who("resident2").post(f"/cases/{cid}/do/resubmit", data).status_code == 302
    assert case(app, cid)["state"] == "applied"
    assert act(who("secretary"), cid, "recommend").status_code == 302
    assert act(who("street"), cid, "fail_street", comment="成立不满一年").status_code == 302
    assert case(app, cid)["state"] == "not_rated"
    assert [h["action"] for h in case(app, cid)["history"]] == ["start", "return_for_changes", "resubmit", "recommend", "fail_street"]
