"""Governance mechanics (issue 4) on the engine, against every store: many raters, scoring, rounds and
quotas, public notice with objections, timers, claims, dispatch, the points ledger, org scope, notifications."""
from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest

from engine import ledger
from engine.cases import CASES
from engine.clock import FrozenClock
from engine.errors import NotAllowed, NotFound, SubmissionError, TransitionError
from engine.loader import load_definitions
from engine.notify import NOTIFICATIONS
from engine.runtime import Engine
from engine.store import open_store
from engine.users import User
from tests.conftest import GOVERNANCE_USERS, STORES, add_users, governance_dir, store_location

U = {name: User(name, full, tuple(roles), unit) for name, full, roles, unit in GOVERNANCE_USERS}


@pytest.fixture(params=STORES)
def gov(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    store = open_store(store_location(request.param, request, tmp_path, "gov.json"))
    add_users(store, GOVERNANCE_USERS)
    engine = Engine(load_definitions(governance_dir(tmp_path)), store, clock=FrozenClock("2026-11-27T09:00:00"))
    yield engine
    store.close()


def notes(engine: Engine, username: str) -> list[str]:
    return [n["kind"] for n in engine.store.search(NOTIFICATIONS, lambda d: d["to"] == username)]


def appraisal(engine: Engine) -> int:
    return engine.start("appraisal", U["staff"], {"person": "陈静", "unit": "renjia", "summary": "全年走访 520 户"}).id


def rate_residents(engine: Engine, cid: int, stars: list[int]) -> None:
    for i, s in enumerate(stars, start=1):
        engine.contribute(cid, U[f"r{i}"], {"stars": str(s)})


def to_org_rating(engine: Engine) -> int:
    cid = appraisal(engine)
    rate_residents(engine, cid, [5, 4, 3])
    engine.fire(cid, "close_rating", U["secretary"])
    return cid


def scores(service: int, attitude: int, results: int) -> dict[str, str]:
    return {"service": str(service), "attitude": str(attitude), "results": str(results)}


# ---------------------------------------------------------------- 1. many contributors

def test_residents_rate_once_each_and_see_progress(gov: Engine):
    cid = appraisal(gov)
    rate_residents(gov, cid, [5, 4])
    case = gov.get(cid)
    assert case.data["rating"] == {"total": 4.5, "count": 2, "needed": 3, "complete": False, "method": "mean"}
    with pytest.raises(TransitionError):
        gov.fire(cid, "close_rating", U["secretary"])  # guard: rating.complete
    gov.contribute(cid, U["r1"], {"stars": "1"})  # a second submission replaces the first
    case = gov.get(cid)
    assert case.data["rating"]["count"] == 2 and case.data["rating"]["total"] == 2.5
    assert case.contributions["resident_rating"]["r1"]["revisions"][0]["data"] == {"stars": 5}
    gov.contribute(cid, U["r3"], {"stars": "3"})
    progress = gov.progress(gov.get(cid), U["secretary"])
    assert (progress["done"], progress["needed"]) == (3, 3) and progress["may_see"]
    assert {c["by"] for c in progress["contributions"]} == {"r1", "r2", "r3"}
    creator_view = gov.progress(gov.get(cid), U["staff"])
    assert creator_view["contributions"] == [] and not creator_view["may_see"]  # who rated what is hidden


def test_contributors_outside_scope_or_role_are_refused(gov: Engine):
    cid = appraisal(gov)
    with pytest.raises(NotFound):
        gov.contribute(cid, U["r_wf"], {"stars": "5"})  # a resident of another community
    with pytest.raises(NotAllowed):
        gov.contribute(cid, U["secretary"], {"stars": "5"})  # sees the case, but is no resident
    with pytest.raises(SubmissionError) as err:
        gov.contribute(cid, U["r1"], {"stars": "9"})
    assert "stars" in err.value.errors


def test_assigned_evaluators_weighted_criteria_trimmed_mean_and_recusal(gov: Engine):
    cid = to_org_rating(gov)
    case = gov.get(cid)
    assert sorted(case.assignees) == ["street", "street2", "street3"]  # routed to the street's evaluators
    assert "assigned" in notes(gov, "street")
    gov.contribute(cid, U["street"], scores(90, 80, 70))     # 40/30/30 -> 81
    progress = gov.progress(gov.get(cid), U["street"])
    assert (progress["done"], progress["needed"]) == (1, 3) and progress["pending"] == ["何平", "施琳"]
    gov.contribute(cid, U["street2"], scores(60, 60, 60))    # 60
    gov.contribute(cid, U["street3"], scores(100, 100, 100))  # 100
    score = gov.get(cid).data["score"]
    assert score["total"] == 81.0 and score["complete"]       # trimmed: drop 100 and 60
    assert score["criteria"] == {"service": 83.33, "attitude": 80.0, "results": 76.67}
    assert [t.id for t in gov.available_transitions(gov.get(cid), U["street"])] == ["to_notice"]


def test_declared_conflict_lowers_what_is_needed(gov: Engine):
    cid = to_org_rating(gov)
    gov.declare_conflict(cid, U["street3"], "被考核人是我的亲属")
    case = gov.get(cid)
    with pytest.raises(NotAllowed) as err:
        gov.contribute(cid, U["street3"], scores(90, 90, 90))
    assert "回避" in err.value.message["zh"]
    gov.contribute(cid, U["street"], scores(70, 70, 70))
    gov.contribute(cid, U["street2"], scores(50, 50, 50))
    score = gov.get(cid).data["score"]
    assert score["needed"] == 2 and score["complete"] and score["total"] == 60.0  # two sheets: plain mean
    assert case.history[-1]["action"] == "recuse"


def test_recusal_of_the_nominee_and_refused_second_sheet(gov: Engine):
    case = gov.start("award", U["secretary"], {"nominee": "韩梅", "nominee_user": "district2", "unit": "renjia",
                                               "deeds": "组织楼道清洁 40 次"})
    with pytest.raises(NotAllowed):
        gov.contribute(case.id, U["district2"], scores(100, 100, 100))  # the nominee herself
    gov.contribute(case.id, U["district"], scores(80, 80, 80))
    with pytest.raises(NotAllowed) as err:
        gov.contribute(case.id, U["district"], scores(90, 90, 90))     # once: refuse
    assert "不能重复提交" in err.value.message["zh"]


def test_n_of_m_approvals(gov: Engine):
    cid = gov.start("approval", U["grid"], {"wish_title": "楼道装灯", "grid": "renjia-g1"}).id
    gov.contribute(cid, U["secretary"], {"decision": "approve"})
    with pytest.raises(TransitionError):
        gov.fire(cid, "approve", U["secretary"])
    gov.contribute(cid, U["staff"], {"decision": "reject"})
    gov.contribute(cid, U["secretary2"], {"decision": "approve"})
    assert gov.get(cid).data["votes"]["tally"] == {"approve": 2, "reject": 1}
    assert gov.fire(cid, "approve", U["secretary"]).state == "approved"


# ---------------------------------------------------------------- 4. public notice and objections

def to_notice(engine: Engine) -> int:
    cid = to_org_rating(engine)
    for name in ("street", "street2", "street3"):
        engine.contribute(cid, U[name], scores(80, 80, 80))
    engine.fire(cid, "to_notice", U["street"])
    return cid


def test_notice_without_objection_publishes_by_itself(gov: Engine):
    cid = to_notice(gov)
    public = {c.id: s.id for c, s in gov.public_cases()}
    assert public == {cid: "notice"}
    assert gov.public_data(gov.get(cid), gov.state_of(gov.get(cid)))["person"] == "陈静"
    assert gov.notice_ends(gov.get(cid)) == "2026-12-02T09:00:00+08:00"
    gov.clock.advance(days=4, hours=23)
    assert gov.tick() == []
    gov.clock.advance(hours=2)
    assert gov.tick() == [{"case": cid, "kind": "notice", "transition": "publish"}]
    assert gov.tick() == []  # fires once
    case = gov.get(cid)
    assert case.state == "published" and case.history[-1]["by"] == "system"
    chain = gov.store.search(ledger.PUBLICATIONS)
    assert [(e["case"], e["state"]) for e in chain] == [(cid, "published")]
    assert "result" in notes(gov, "staff")
    assert ledger.verify(gov.store) == []


def test_objection_dismissed_then_upheld(gov: Engine):
    cid = to_notice(gov)
    with pytest.raises(NotAllowed):
        gov.object(cid, U["grid"], "不是居民")
    with pytest.raises(SubmissionError):
        gov.object(cid, U["r1"], "  ")
    case = gov.object(cid, U["r1"], "测评时未通知本楼居民")
    assert case.state == "objection_review" and case.objections[0]["status"] == "open"
    assert "objection" in notes(gov, "secretary")
    gov.fire(cid, "dismiss", U["secretary"], comment="已核实，通知到位")
    case = gov.get(cid)
    assert case.state == "notice" and case.objections[0]["status"] == "dismissed"
    gov.object(cid, U["r2"], "分数与实际不符")
    case = gov.fire(cid, "uphold", U["secretary"], comment="重新考核")
    assert case.state == "failed" and case.objections[1]["status"] == "upheld"
    gov.clock.advance(days=10)
    assert gov.tick() == []  # the notice timer died with the notice


# ---------------------------------------------------------------- 5. timers and deadlines

def test_after_timer_fires_once_even_when_ticked_twice(gov: Engine):
    cid = gov.start("approval", U["grid"], {"wish_title": "修路", "grid": "renjia-g1"}).id
    gov.clock.advance(days=3)
    first, second = gov.tick(), gov.tick()
    assert first == [{"case": cid, "kind": "after", "transition": "expire"}] and second == []
    assert gov.get(cid).state == "expired"


def test_collect_deadline_with_a_failing_guard_is_noted_not_retried(gov: Engine):
    cid = appraisal(gov)
    rate_residents(gov, cid, [5])
    gov.clock.advance(days=7)
    assert gov.tick()[0]["kind"] == "collect_deadline"
    case = gov.get(cid)
    assert case.state == "resident_rating" and case.history[-1]["action"] == "timer_skipped"
    assert gov.tick() == []


def test_deadline_marks_overdue_and_escalates(gov: Engine):
    cid = gov.start("service_order", U["volunteer"], {"service": "修水管", "grid": "renjia-g1"}).id
    gov.fire(cid, "dispatch", U["staff"], assignees=["volunteer2"])
    gov.clock.advance(days=2, minutes=1)
    assert gov.tick() == [{"case": cid, "kind": "deadline", "transition": None}]
    case = gov.get(cid)
    assert case.overdue and case.escalated_to == ["staff"] and case.assignees == ["volunteer2"]  # told, not assigned
    assert cid in [c.id for c in gov.inbox(U["staff"])]
    assert "overdue" in notes(gov, "volunteer2") and "overdue" in notes(gov, "staff")
    assert case.history[-1]["action"] == "overdue"


# ---------------------------------------------------------------- 3. rounds, ranking, quotas

def nominate(engine: Engine, name: str, service: int, others: int) -> int:
    cid = engine.start("award", U["secretary"], {"nominee": name, "unit": "renjia", "deeds": "事迹"}).id
    for evaluator in ("district", "district2"):
        engine.contribute(cid, U[evaluator], scores(service, others, others))
    engine.fire(cid, "done_scoring", U["district"])
    return cid


def test_ranking_fills_quotas_in_order(gov: Engine):
    ids = [nominate(gov, n, s, o) for n, s, o in (("甲", 90, 90), ("乙", 80, 80), ("丙", 70, 70), ("丁", 60, 60))]
    case = gov.get(ids[0])
    assert case.round == "2026-Q4" and gov.rounds("award", U["district"]) == ["2026-Q4"]
    with pytest.raises(NotAllowed):
        gov.close_round("award", "2026-Q4", U["secretary"])
    result = gov.close_round("award", "2026-Q4", U["district"])
    assert [(p.case_id, p.rank, p.level) for p in result.placed] == [
        (ids[0], 1, "gold"), (ids[1], 2, "silver"), (ids[2], 3, "silver"), (ids[3], 4, None)]
    states = [gov.get(i).state for i in ids]
    assert states == ["selected", "selected", "selected", "not_selected"]
    assert gov.get(ids[1]).data["award_level"] == "silver"
    assert "第 2 名" in gov.get(ids[1]).history[-1]["comment"]
    with pytest.raises(TransitionError):
        gov.close_round("award", "2026-Q4", U["district"])  # closes once


def test_tie_break_rule_decides_and_a_remaining_tie_refuses_to_close(gov: Engine):
    # same total 80: 甲 (service 90) beats 乙 (service 70) by the declared tie-break
    a = nominate(gov, "甲", 95, 70)   # 0.4*95 + 0.6*70 = 80
    b = nominate(gov, "乙", 80, 80)   # 80
    c = nominate(gov, "丙", 80, 80)   # 80, exactly tied with 乙 for the last silver place
    d = nominate(gov, "丁", 50, 50)
    preview = gov.ranking("award", "2026-Q4", U["district"])
    assert preview.placed[0].case_id == a and preview.blocking_ties == []  # 甲 wins gold on service
    e = nominate(gov, "戊", 80, 80)   # now 乙/丙/戊 tie for 2 silver places
    preview = gov.ranking("award", "2026-Q4", U["district"])
    assert preview.blocking_ties == [{"level": "silver", "cases": [b, c, e], "resolved": "refuse"}]
    with pytest.raises(TransitionError) as err:
        gov.close_round("award", "2026-Q4", U["district"])
    assert f"#{b}" in err.value.message["zh"] and f"#{e}" in err.value.message["zh"]
    assert gov.get(b).state == "ranked"  # nothing moved
    spec = gov.definitions.workflows["award"]
    include = dataclasses.replace(spec, ranking=dataclasses.replace(spec.ranking, on_tie="include"))
    gov.definitions = dataclasses.replace(gov.definitions, workflows={**gov.definitions.workflows, "award": include})
    result = gov.close_round("award", "2026-Q4", U["district"])
    assert {p.case_id: p.level for p in result.placed} == {a: "gold", b: "silver", c: "silver", e: "silver", d: None}


# ---------------------------------------------------------------- 6. claims

def wish(engine: Engine) -> int:
    return engine.start("wish", U["grid"], {"wish_title": "给独居老人买助行器", "grid": "renjia-g1"}).id


def test_exactly_one_claim_wins_under_threads(gov: Engine):
    cid = wish(gov)
    claimers = ["party", "party2"] * 4
    outcomes: list[str] = []
    barrier = threading.Barrier(len(claimers))

    def claim(name: str) -> None:
        barrier.wait()
        try:
            gov.fire(cid, "claim", U[name])
            outcomes.append("won")
        except TransitionError as exc:
            outcomes.append(exc.message["zh"])

    threads = [threading.Thread(target=claim, args=(n,)) for n in claimers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("won") == 1
    assert all("已被" in o and "认领" in o for o in outcomes if o != "won")
    case = gov.get(cid)
    assert case.state == "claimed" and len(case.assignees) == 1 and "claimed" in notes(gov, "grid")


def test_release_puts_the_wish_back_and_other_communities_never_see_it(gov: Engine):
    cid = wish(gov)
    assert [c.id for c in gov.inbox(U["party"])] == [cid]  # party member of the same community, other grid
    assert gov.inbox(U["party_wf"]) == []
    with pytest.raises(NotFound):
        gov.fire(cid, "claim", U["party_wf"])
    gov.fire(cid, "claim", U["party"])
    assert [c.id for c in gov.inbox(U["party"])] == [cid] and gov.inbox(U["party2"]) == []
    with pytest.raises(SubmissionError):
        gov.fire(cid, "release", U["party"])  # a reason is required
    gov.fire(cid, "release", U["party"], comment="临时出差")
    case = gov.get(cid)
    assert case.state == "published" and case.assignees == []
    assert gov.fire(cid, "claim", U["party2"]).assignees == ["party2"]


# ---------------------------------------------------------------- 7. dispatch and 8. points

def test_dispatch_decline_accept_rate_and_earn_points(gov: Engine):
    cid = gov.start("service_order", U["r1"], {"service": "上门理发", "grid": "renjia-g1"}).id
    with pytest.raises(SubmissionError):
        gov.fire(cid, "dispatch", U["staff"], assignees=["volunteer_wf"])  # another community's volunteer
    with pytest.raises(SubmissionError):
        gov.fire(cid, "dispatch", U["staff"], assignees=[])
    gov.fire(cid, "dispatch", U["staff"], assignees=["volunteer"])
    assert [c.id for c in gov.inbox(U["volunteer"])] == [cid] and gov.inbox(U["volunteer2"]) == []
    assert "assigned" in notes(gov, "volunteer")
    gov.fire(cid, "decline", U["volunteer"], comment="本周在外地")
    case = gov.get(cid)
    assert case.state == "ordered" and case.assignees == [] and [c.id for c in gov.inbox(U["staff"])] == [cid]
    gov.fire(cid, "dispatch", U["staff"], assignees=["volunteer2"])
    gov.fire(cid, "accept", U["volunteer2"])
    gov.fire(cid, "finish", U["volunteer2"], {"hours": "2.5"})
    gov.fire(cid, "rate", U["r1"], {"order_stars": "5"})
    assert gov.balance("volunteer2") == 25
    entry = gov.ledger_of("volunteer2")[0]
    assert (entry["amount"], entry["balance"], entry["case"], entry["transition"]) == (25, 25, cid, "rate")
    assert ledger.verify(gov.store) == []


def test_unrated_order_is_rated_by_the_clock_with_points(gov: Engine):
    cid = gov.start("service_order", U["r1"], {"service": "陪诊", "grid": "renjia-g1"}).id
    gov.fire(cid, "dispatch", U["staff"], assignees=["volunteer"])
    gov.fire(cid, "accept", U["volunteer"])
    gov.fire(cid, "finish", U["volunteer"], {"hours": "3"})
    gov.clock.advance(days=7)
    gov.tick()
    assert gov.get(cid).state == "rated" and gov.balance("volunteer") == 30


def earn(engine: Engine, who: str, amount: int) -> None:
    with engine.store.transaction() as tx:
        ledger.post(tx, who, amount, reason={"zh": "测试", "en": "test"}, case_id=None, workflow=None,
                    transition=None, by="admin", now=engine.clock())


def redeem_request(engine: Engine, who: str, reward: str) -> int:
    return engine.start("redeem", U[who], {"reward": reward, "grid": "renjia-g1"}).id


def test_redemption_never_overdraws(gov: Engine):
    earn(gov, "volunteer", 30)
    soap, rice = redeem_request(gov, "volunteer", "soap"), redeem_request(gov, "volunteer", "rice")
    assert gov.get(rice).data["cost"] == 50
    gov.fire(soap, "redeem", U["volunteer"])
    with pytest.raises(TransitionError) as err:
        gov.fire(rice, "redeem", U["staff"])
    assert err.value.message["zh"] == "积分不足：当前余额 10，需要 50。"
    assert gov.balance("volunteer") == 10 and gov.get(rice).state == "requested"
    assert [e["amount"] for e in gov.ledger_of("volunteer")] == [-20, 30]


def test_concurrent_redemptions_in_threads_never_go_negative(gov: Engine):
    earn(gov, "volunteer", 100)
    ids = [redeem_request(gov, "volunteer", "soap") for _ in range(8)]
    outcomes: list[bool] = []
    barrier = threading.Barrier(len(ids))

    def redeem(cid: int) -> None:
        barrier.wait()
        try:
            gov.fire(cid, "redeem", U["volunteer"])
            outcomes.append(True)
        except TransitionError:
            outcomes.append(False)

    threads = [threading.Thread(target=redeem, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count(True) == 5 and gov.balance("volunteer") == 0
    assert ledger.verify(gov.store) == []


def test_verify_finds_the_first_broken_link(gov: Engine):
    for amount in (10, 20, 30):
        earn(gov, "volunteer", amount)
    entries = sorted(gov.store.search(ledger.LEDGER), key=lambda e: e["seq"])
    tampered = {**entries[1], "amount": 200}
    with gov.store.transaction() as tx:
        tx.replace(ledger.LEDGER, tampered["id"], tampered)
    broken = ledger.verify(gov.store)
    assert str(broken[0]) == "ledger entry 2: its content was changed after it was written"
    with gov.store.transaction() as tx:
        tx.replace(ledger.LEDGER, entries[1]["id"], entries[1])
        tx.delete(ledger.LEDGER, entries[2]["id"])
    broken = ledger.verify(gov.store)
    assert "entries after 2 were removed" in str(broken[0])
    assert any("balance of volunteer is 60" in str(b) for b in broken)


# ---------------------------------------------------------------- 9. org units

def test_other_community_can_neither_list_open_nor_act(gov: Engine):
    cid = appraisal(gov)
    order = gov.start("service_order", U["r1"], {"service": "修水管", "grid": "renjia-g1"}).id
    for outsider in ("staff2", "secretary_wf"):
        assert gov.cases(U[outsider]) == [] and gov.inbox(U[outsider]) == []
        with pytest.raises(NotFound):
            gov.get(cid, U[outsider])
    with pytest.raises(NotFound):
        gov.fire(order, "dispatch", U["staff2"], assignees=["volunteer_wf"])
    with pytest.raises(NotFound):
        gov.fire(cid, "close_rating", U["secretary_wf"])
    assert gov.store.get(CASES, order)["state"] == "ordered"


# ---------------------------------------------------------------- links between processes, figures, quotas

def test_publishing_minutes_spawns_one_linked_case_per_decision(gov: Engine):
    values = {"topic": "楼道堆物整治", "grid": "renjia-g1", "decisions": [
        {"text": "清理 3 号楼楼道", "owner": "赵敏", "due": "2026-12-05"},
        {"text": "加装监控", "owner": "陈静", "due": "2026-12-20"}]}
    meeting = gov.start("meeting", U["staff"], values)
    gov.fire(meeting.id, "publish", U["secretary"])
    children = gov.children(gov.get(meeting.id), U["staff"])
    assert [(c.workflow, c.data["decision_text"], c.data["due"], c.parent) for c in children] == [
        ("decision", "清理 3 号楼楼道", "2026-12-05", meeting.id), ("decision", "加装监控", "2026-12-20", meeting.id)]
    assert children[0].org_unit == "renjia-g1" and gov.get(children[0].id).history[0]["comment"] == f"#{meeting.id}"


def test_a_bad_row_stops_the_publication_and_says_which(gov: Engine):
    values = {"topic": "议题", "grid": "renjia-g1", "decisions": [{"text": "甲", "owner": "赵敏", "due": "2026-12-05"}]}
    meeting = gov.start("meeting", U["staff"], values)
    spec = gov.definitions.workflows["meeting"]
    t = spec.states["draft"].transitions[0]
    broken = dataclasses.replace(t, spawn=(dataclasses.replace(t.spawn[0], map={**t.spawn[0].map, "due": t.spawn[0].map["owner"]}),))
    draft = dataclasses.replace(spec.states["draft"], transitions=(broken,))
    gov.definitions = dataclasses.replace(gov.definitions, workflows={
        **gov.definitions.workflows, "meeting": dataclasses.replace(spec, states={**spec.states, "draft": draft})})
    with pytest.raises(TransitionError) as err:
        gov.fire(meeting.id, "publish", U["secretary"])
    assert "第 1 行" in err.value.message["zh"] and "due" in err.value.message["zh"]
    assert gov.get(meeting.id).state == "draft" and gov.children(gov.get(meeting.id), U["staff"]) == []


def test_a_visit_offers_a_prefilled_wish(gov: Engine):
    visit = gov.start("visit", U["grid"], {"household": "3 号楼 201 张奶奶", "visit_date": "2026-11-27",
                                           "grid": "renjia-g1", "need": "需要助行器"})
    parent, offer = gov.offer(visit.id, "wish", U["grid"])
    assert gov.prefill(parent, offer, U["grid"]) == {"wish_title": "需要助行器", "grid": "renjia-g1"}
    wish = gov.start("wish", U["grid"], {"wish_title": "需要助行器", "grid": "renjia-g1"}, parent=visit.id)
    assert wish.parent == visit.id and [c.id for c in gov.children(gov.get(visit.id), U["grid"])] == [wish.id]
    with pytest.raises(TransitionError):
        gov.start("meeting", U["staff"], {"topic": "x", "grid": "renjia-g1",
                                          "decisions": [{"text": "a", "owner": "b", "due": "2026-12-01"}]}, parent=visit.id)
    with pytest.raises(NotFound):  # a grid worker of another community cannot start from this visit
        gov.start("wish", U["grid_wf"], {"wish_title": "x", "grid": "wenfeng-g1"}, parent=visit.id)


def test_case_reference_fields_accept_only_visible_cases_of_the_right_kind(gov: Engine):
    wish_here = gov.start("wish", U["grid"], {"wish_title": "修门", "grid": "renjia-g1"}).id
    wish_there = gov.start("wish", U["grid_wf"], {"wish_title": "修窗", "grid": "wenfeng-g1"}).id
    visit = gov.start("visit", U["grid"], {"household": "x", "visit_date": "2026-11-27", "grid": "renjia-g1"}).id
    assert [c.id for c in gov.case_choices(gov.definitions.forms["project"].field("for_wish"), U["staff"])] == [wish_here]
    project = gov.start("project", U["staff"], {"name": "助老项目", "for_wish": str(wish_here)})
    assert project.data["for_wish"] == wish_here
    for bad in (wish_there, visit, 999):
        with pytest.raises(SubmissionError) as err:
            gov.start("project", U["staff"], {"name": "x", "for_wish": str(bad)})
        assert "for_wish" in err.value.errors
    gov.fire(wish_here, "claim", U["party"])
    with pytest.raises(SubmissionError):  # no longer in a listed state
        gov.start("project", U["staff"], {"name": "x", "for_wish": str(wish_here)})


def test_figures_count_per_month_and_unit(gov: Engine):
    a = gov.start("wish", U["grid"], {"wish_title": "甲", "grid": "renjia-g1"}).id
    gov.start("wish", U["grid"], {"wish_title": "乙", "grid": "renjia-g1"})
    gov.start("wish", U["grid_wf"], {"wish_title": "丙", "grid": "wenfeng-g1"})
    gov.fire(a, "claim", U["party"])
    gov.fire(a, "fulfil", U["party"])
    rows = gov.figures(User("boss", "区领导", ("community_staff",), "huizhou"))  # the whole district
    totals: dict[str, int] = {}
    for r in rows:
        totals[r["metric"]] = totals.get(r["metric"], 0) + r["value"]
    assert totals == {"wishes_collected": 3, "wishes_claimed": 1, "wishes_fulfilled": 1}
    assert {r["month"] for r in rows} == {"2026-11"}
    mine = gov.figures(U["staff"])
    assert sum(r["value"] for r in mine if r["metric"] == "wishes_collected") == 2  # own unit only


def test_weekly_visit_quota_shows_the_shortfall(gov: Engine):
    for day in ("2026-11-23", "2026-11-25"):
        gov.start("visit", U["grid"], {"household": day, "visit_date": day, "grid": "renjia-g1"})
    gov.start("visit", U["grid"], {"household": "上周", "visit_date": "2026-11-20", "grid": "renjia-g1"})
    report = gov.quota_report(gov.definitions.workflows["visit"], U["staff"])
    mine = [r for r in report if r["user"].username == "grid"][0]
    assert (mine["count"], mine["shortfall"], mine["start"], mine["end"]) == (2, 1, "2026-11-23", "2026-11-29")
    assert [r["user"].username for r in report] == ["grid"]  # the other community's grid worker is out of scope


def test_form_rules_check_fields_against_each_other(gov: Engine):
    from engine import forms
    form = gov.definitions.forms["vote_count"]
    with pytest.raises(SubmissionError) as err:
        forms.validate(form, {"present": "2", "votes_for": "5"})
    assert err.value.errors == {"votes_for": [{"zh": "赞成票不能多于到会人数", "en": "There cannot be more votes for than people present."}],
                                "": [{"zh": "到会人数不足，会议无效", "en": "Too few people present for a valid meeting."}]}
    with pytest.raises(SubmissionError) as err:
        forms.validate(form, {"present": "", "votes_for": "5"})
    assert set(err.value.errors) == {"present"}  # a rule over a missing value says nothing
    assert forms.validate(form, {"present": "30", "votes_for": "21"}) == {"present": 30, "votes_for": 21}


def test_a_deadline_at_a_date_of_the_case(gov: Engine):
    values = {"topic": "议题", "grid": "renjia-g1", "decisions": [{"text": "修路灯", "owner": "赵敏", "due": "2026-12-05"}]}
    meeting = gov.start("meeting", U["staff"], values)
    gov.fire(meeting.id, "publish", U["secretary"])
    decision = gov.children(gov.get(meeting.id), U["staff"])[0]
    assert [t["due"] for t in decision.timers] == ["2026-12-06T00:00:00+08:00"]
    gov.clock.advance(days=8, hours=14)  # 2026-12-05 23:00: still in time
    assert gov.tick() == []
    gov.clock.advance(hours=2)
    assert gov.tick() == [{"case": decision.id, "kind": "deadline", "transition": None}]
    assert gov.get(decision.id).overdue and gov.get(decision.id).escalated_to == ["secretary", "secretary2"]
