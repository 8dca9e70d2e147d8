"""Decisions with a public procedure, end to end through the pages.

Residents' convention 居民公约: 拟定草案 -> 征求意见 (residents give their opinions, the draft on the public page,
closed by the clock after 10 days) -> 审核把关 -> 表决通过 (vote counts checked: quorum, majority, ballots) ->
公布实施 (public page, publication chain); return for revision and a failed vote send it back to drafting.

四议两公开: 党组织提议 -> 两委会商议 -> 党员大会审议 -> 居民代表会议决议 -> 决议公开 (5 working days of public notice,
objections) -> 组织实施 -> 实施结果公开; any deliberation may fail; an upheld objection sends the matter back to the
representatives."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine import ledger
from engine.clock import FrozenClock
from engine.users import find_user
from tests.conftest import DURABLE_STORES, Browser, act, case, shipped_app, started, store_location

USERS = [
    ("resident", "王芳", ["resident"], "renjia-g1"),
    ("resident3", "高建国", ["resident"], "renjia-g2"),
    ("party", "刘洋", ["resident", "party_member"], "renjia-g2"),
    ("steward", "孙丽", ["resident", "building_steward"], "renjia-g1-b1"),
    ("r_wf", "文峰居民", ["resident"], "wenfeng-g1"),
    ("grid", "赵敏", ["grid_worker"], "renjia-g1"),
    ("staff", "陈静", ["community_staff"], "renjia"),
    ("secretary", "周伟", ["community_secretary"], "renjia"),
    ("staff2", "吴婷", ["community_staff"], "wenfeng"),
]


@pytest.fixture(params=DURABLE_STORES)
def app(request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock) -> Any:
    yield from shipped_app(tmp_path, clock, USERS, store_location(request.param, request, tmp_path))


def figure(app: Any, metric: str) -> float:
    engine = app.extensions["civicflow"]
    return sum(r["value"] for r in engine.figures(find_user(engine.store, "secretary")) if r["metric"] == metric)


def published(app: Any, cid: int) -> list[str]:
    """The states of this case recorded in the publication chain, in order."""
    entries = app.extensions["civicflow"].store.search("publications", lambda d: d.get("case") == cid)
    return [e["state"] for e in sorted(entries, key=lambda e: e["seq"])]


# --------------------------------------------------------------------------------- residents' convention

CONVENTION = {"convention_title": "徽州人家社区居民公约", "unit": "renjia",
              "content": "一、不在楼道堆放杂物。二、文明养犬，出门拴绳。三、垃圾分类投放。",
              "drafting_note": "根据议事会意见修订", "drafters": "社区两委"}
VOTE = {"vote_meeting_kind": "residents_meeting", "vote_date": "2026-12-10", "eligible_count": "120",
        "present_count": "86", "votes_for": "80", "votes_against": "2", "votes_abstain": "4"}


def convention(who: Any) -> int:
    cid = started(who("staff").post("/start/residents_convention", CONVENTION))
    assert act(who("staff"), cid, "open_consultation").status_code == 302
    return cid


def test_convention_consulted_reviewed_adopted_and_published(app: Any, who: Any):
    cid = convention(who)
    assert case(app, cid)["state"] == "consultation"
    public = Browser(app)
    assert "文明养犬，出门拴绳" in public.get(f"/public/{cid}").get_data(as_text=True)  # the draft is public

    resident = who("resident")
    assert f"#{cid}" in resident.get("/").get_data(as_text=True)  # residents of the community are asked
    assert "提出意见" in resident.get(f"/cases/{cid}").get_data(as_text=True)
    missing = resident.post(f"/cases/{cid}/contribute", {"attitude": "agree_with_changes"})
    assert missing.status_code == 422  # a suggestion is needed when not simply agreeing
    assert resident.post(f"/cases/{cid}/contribute", {"attitude": "agree_with_changes",
                                                      "suggestion": "增加电动车不进楼道"}).status_code == 302
    for name in ("resident3", "party", "steward"):
        assert who(name).post(f"/cases/{cid}/contribute", {"attitude": "agree"}).status_code == 302
    assert who("r_wf").get(f"/cases/{cid}").status_code == 404  # another community is not consulted
    assert case(app, cid)["data"]["opinions"]["tally"] == {"agree": 3, "agree_with_changes": 1}
    page = who("staff").get(f"/cases/{cid}").get_data(as_text=True)
    assert "增加电动车不进楼道" in page
    # the tally names each choice by its label in the page's language, never by its stored value (issue 12.6)
    assert "同意：3，基本同意，建议修改：1" in page and "同意 3" in page and "agree_with_changes" not in page
    english = Browser(app).login("staff")
    english.post("/lang/en", {}, page="/")
    page = english.get(f"/cases/{cid}").get_data(as_text=True)
    english.post("/lang/zh", {}, page="/")  # the language is remembered per user: back to Chinese for the rest
    assert "Agree: 3, Agree, with changes: 1" in page and "agree_with_changes" not in page

    assert act(who("staff"), cid, "close_consultation").status_code == 302
    assert act(who("secretary"), cid, "approve_review", comment="内容合法合规").status_code == 302
    staff = who("staff")
    response = act(staff, cid, "adopt", **{**VOTE, "present_count": "50"})
    assert response.status_code == 422 and "实到人数须超过应到人数的一半" in response.get_data(as_text=True)
    response = act(staff, cid, "adopt", **{**VOTE, "votes_for": "40"})
    assert response.status_code == 422 and "赞成票须超过实到人数的一半" in response.get_data(as_text=True)
    response = act(staff, cid, "adopt", **{**VOTE, "votes_against": "5"})
    assert response.status_code == 422 and "不能超过实到人数" in response.get_data(as_text=True)
    assert act(staff, cid, "adopt", **VOTE).status_code == 302
    doc = case(app, cid)
    assert doc["state"] == "adopted"
    assert doc["data"]["vote_summary"] == "应到120人，实到86人，赞成80票，反对2票，弃权4票"
    assert "majority_check" not in doc["data"]  # the checks are not stored once they pass
    assert act(who("secretary"), cid, "publish").status_code == 302
    assert case(app, cid)["state"] == "in_force"
    detail = public.get(f"/public/{cid}").get_data(as_text=True)
    assert "已公布实施" in detail and "赞成80票" in detail and "垃圾分类投放" in detail
    assert published(app, cid) == ["in_force"]
    assert ledger.verify(app.extensions["civicflow"].store) == []
    assert figure(app, "conventions_adopted") == 1


def test_convention_closes_by_the_clock_is_returned_and_a_failed_vote_goes_back(app: Any, who: Any, clock: FrozenClock):
    cid = convention(who)
    who("resident").post(f"/cases/{cid}/contribute", {"attitude": "disagree", "suggestion": "条款太笼统"})
    clock.advance(days=10, minutes=1)
    app.extensions["civicflow"].tick()
    doc = case(app, cid)
    assert doc["state"] == "review" and doc["history"][-1]["by"] == "system"
    assert Browser(app).get(f"/public/{cid}").status_code == 404  # no longer on the public page

    secretary = who("secretary")
    assert act(secretary, cid, "return_for_revision").status_code == 422
    assert act(secretary, cid, "return_for_revision", comment="请细化养犬条款").status_code == 302
    assert case(app, cid)["state"] == "draft"
    edited = {**CONVENTION, "content": CONVENTION["content"] + "四、大型犬只须办理登记。", "version": str(case(app, cid)["version"])}
    assert who("staff").post(f"/cases/{cid}/do/edit", edited).status_code == 302
    assert "大型犬只" in case(app, cid)["data"]["content"]
    act(who("staff"), cid, "open_consultation")
    act(who("staff"), cid, "close_consultation")
    act(secretary, cid, "approve_review")
    assert act(who("staff"), cid, "not_adopted").status_code == 422
    assert act(who("staff"), cid, "not_adopted", comment="赞成票未过半数").status_code == 302
    assert case(app, cid)["state"] == "draft"
    assert act(secretary, cid, "abandon", comment="暂缓制定").status_code == 302
    assert case(app, cid)["state"] == "abandoned"
    assert figure(app, "conventions_adopted") == 0
    assert who("resident").get("/start/residents_convention").status_code == 403


# --------------------------------------------------------------------------------- four deliberations

PROPOSAL = {"matter_title": "1号楼加装电梯", "matter_kind": "public_facility", "unit": "renjia",
            "proposal": "使用老旧小区改造资金为1号楼加装电梯一部", "reasons": "老人上下楼困难", "budget": "450000",
            "proposed_on": "2026-11-27"}
COMMITTEE = {"committee_date": "2026-11-30", "committee_present": "7", "committee_opinion": "同意提交党员大会审议"}
PARTY = {"party_date": "2026-12-02", "party_total": "45", "party_present": "38", "party_for": "36",
         "party_against": "0", "party_abstain": "2"}
REPS = {"rep_date": "2026-12-04", "rep_total": "30", "rep_present": "26", "rep_for": "24", "rep_against": "1",
        "rep_abstain": "1", "resolution": "同意为1号楼加装电梯，居民自筹部分按楼层分摊"}


def propose(who: Any) -> int:
    return started(who("secretary").post("/start/four_deliberations", PROPOSAL))


def test_four_deliberations_and_both_disclosures(app: Any, who: Any, clock: FrozenClock):
    cid = propose(who)
    staff, secretary = who("staff"), who("secretary")
    assert f"#{cid} 1号楼加装电梯" in staff.get("/").get_data(as_text=True)
    assert act(staff, cid, "committee_agree", **COMMITTEE).status_code == 302
    assert case(app, cid)["state"] == "party_review"
    response = act(secretary, cid, "party_approve", **{**PARTY, "party_present": "20"})
    assert response.status_code == 422 and "到会党员须超过应到党员的一半" in response.get_data(as_text=True)
    assert act(secretary, cid, "party_approve", **PARTY).status_code == 302
    response = act(staff, cid, "resolve", **{**REPS, "rep_present": "19"})
    assert response.status_code == 422 and "三分之二以上居民代表到会" in response.get_data(as_text=True)
    assert act(staff, cid, "resolve", **REPS).status_code == 302
    doc = case(app, cid)
    assert doc["state"] == "resolution_notice"
    assert doc["data"]["party_vote_summary"] == "应到45人，实到38人，赞成36票，反对0票，弃权2票"

    # first disclosure: the resolution on public notice, with both votes
    public = Browser(app)
    listing = public.get("/public").get_data(as_text=True)
    assert "1号楼加装电梯" in listing and "决议公开（公示中）" in listing and "2026-12-04" in listing
    detail = public.get(f"/public/{cid}").get_data(as_text=True)
    assert "居民自筹部分按楼层分摊" in detail and "赞成36票" in detail and "赞成24票" in detail
    assert published(app, cid) == ["resolution_notice"]

    clock.advance(days=7, minutes=1)  # 5 working days
    app.extensions["civicflow"].tick()
    assert case(app, cid)["state"] == "implementing"
    assert "组织实施中" in public.get(f"/public/{cid}").get_data(as_text=True)  # the resolution stays public
    assert act(staff, cid, "report_result", result_summary="电梯已安装并通过验收", completed_on="2027-03-01",
               actual_cost="438000").status_code == 302

    # second disclosure: the result
    doc = case(app, cid)
    assert doc["state"] == "result_public"
    detail = public.get(f"/public/{cid}").get_data(as_text=True)
    assert "实施结果已公开" in detail and "电梯已安装并通过验收" in detail and "438000" in detail
    assert published(app, cid) == ["resolution_notice", "result_public"]
    assert ledger.verify(app.extensions["civicflow"].store) == []
    assert [h["action"] for h in doc["history"]] == ["start", "committee_agree", "party_approve", "resolve",
                                                     "implement", "report_result"]
    assert figure(app, "matters_resolved") == 1 and figure(app, "results_disclosed") == 1


def test_any_deliberation_may_fail(app: Any, who: Any):
    staff, secretary = who("staff"), who("secretary")
    first = propose(who)
    assert act(staff, first, "committee_reject").status_code == 422
    assert act(staff, first, "committee_reject", comment="重复收费不合规").status_code == 302
    assert case(app, first)["state"] == "not_passed"

    second = propose(who)
    act(staff, second, "committee_agree", **COMMITTEE)
    response = act(secretary, second, "party_approve", **{**PARTY, "party_for": "15"})
    assert response.status_code == 422 and "赞成票须超过到会党员的一半" in response.get_data(as_text=True)
    assert act(secretary, second, "party_reject", comment="赞成15票，未过半数").status_code == 302
    assert case(app, second)["state"] == "not_passed"

    third = propose(who)
    act(staff, third, "committee_agree", **COMMITTEE)
    act(secretary, third, "party_approve", **PARTY)
    assert act(staff, third, "reps_reject", comment="居民代表多数反对").status_code == 302
    assert case(app, third)["state"] == "not_passed"
    assert all(Browser(app).get(f"/public/{c}").status_code == 404 for c in (first, second, third))
    assert figure(app, "matters_proposed") == 3 and figure(app, "matters_resolved") == 0


def test_objection_upheld_sends_the_matter_back_to_the_representatives(app: Any, who: Any, clock: FrozenClock):
    cid = propose(who)
    staff, secretary = who("staff"), who("secretary")
    act(staff, cid, "committee_agree", **COMMITTEE)
    act(secretary, cid, "party_approve", **PARTY)
    act(staff, cid, "resolve", **REPS)
    resident = who("resident3")
    assert resident.post(f"/public/{cid}", {"reason": ""}).status_code == 422
    assert resident.post(f"/public/{cid}", {"reason": "分摊方案没有征求低楼层住户意见"}).status_code == 302
    assert case(app, cid)["state"] == "objection_review"
    assert "收到异议" in secretary.get("/notifications").get_data(as_text=True)

    assert act(secretary, cid, "dismiss", comment="已征求意见，异议不成立").status_code == 302
    assert case(app, cid)["state"] == "resolution_notice"  # the notice starts again in full
    clock.advance(days=2)
    resident.post(f"/public/{cid}", {"reason": "仍有意见：一楼住户不应分摊"})
    assert act(secretary, cid, "uphold", comment="异议成立，分摊方案提交居民代表会议重议").status_code == 302
    doc = case(app, cid)
    assert doc["state"] == "representatives"
    assert [o["status"] for o in doc["objections"]] == ["dismissed", "upheld"]
    assert Browser(app).get(f"/public/{cid}").status_code == 404
    assert act(staff, cid, "resolve", **{**REPS, "resolution": "一楼住户不分摊，其余按楼层分摊"}).status_code == 302
    assert case(app, cid)["state"] == "resolution_notice"
    assert who("staff2").get(f"/cases/{cid}").status_code == 404
    assert who("staff").get("/start/four_deliberations").status_code == 403  # the party branch proposes
