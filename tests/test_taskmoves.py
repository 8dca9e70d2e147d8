"""A person's moves on their own task (issue 12.2), through the engine on every store: 转交 (transfer an assignment or
an approval seat to a colleague of the same role and reach), 加签 (add an approver before or after oneself, in
会签 / 或签 / 依次审批), 撤回 (the initiator withdraws while nobody else has acted) and 退回 (send back to a named earlier
step). Each is an edge of the state graph taken through the one transition path: checked, in the history, a new
version, the read model and notifications in the same transaction."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from engine.clock import FrozenClock
from engine.errors import NotAllowed, StaleVersion, SubmissionError, TransitionError
from engine.loader import load_definitions
from engine.mechanics import approval, taskmoves
from engine.notify import NOTIFICATIONS
from engine.readmodel import CASE_INDEX
from engine.runtime import Engine
from engine.store import open_store
from engine.users import User
from tests.conftest import GOVERNANCE_USERS, ROOT, STORES, add_users, store_location

DEFS = Path(__file__).parent / "data" / "valid" / "taskmoves"
FORMS = Path(__file__).parent / "data" / "valid" / "approval" / "forms"
USERS = GOVERNANCE_USERS
#: a street evaluator who joins after a round opened (a role's holders are worked out when it opens, so every other
#: evaluator of the street already has a seat): a colleague of the same role and reach a seat can be handed to
NEWCOMER = ("street4", "罗斌", ["street_evaluator"], "huizhou-jie")
U = {name: User(name, full, tuple(roles), unit) for name, full, roles, unit in USERS + [NEWCOMER]}
REQUEST = {"subject": "楼道灯更换", "amount": "1200", "unit": "renjia"}


@pytest.fixture(params=STORES)
def eng(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    root = tmp_path / "defs"
    shutil.copytree(DEFS, root)
    shutil.copytree(FORMS, root / "forms")
    shutil.copytree(ROOT / "org", root / "org")
    store = open_store(store_location(request.param, request, tmp_path, "taskmoves.json"))
    add_users(store, USERS)
    engine = Engine(load_definitions(root), store, clock=FrozenClock("2026-11-27T09:00:00"))
    yield engine
    store.close()


def start(engine: Engine, workflow: str = "tm_funds") -> int:
    return engine.start(workflow, U["staff"], dict(REQUEST)).id


def inbox(engine: Engine, username: str) -> list[int]:
    return [c.id for c in engine.inbox(U[username])]


def waiting_index(engine: Engine, username: str) -> list[int]:
    return [d["id"] for d in engine.store.lookup(CASE_INDEX, [("wait_user", username)]).docs]


def notes(engine: Engine, username: str) -> list[tuple[str, str]]:
    return [(d["kind"], d["label"]["zh"]) for d in engine.store.search(NOTIFICATIONS) if d["to"] == username]


def hire(engine: Engine) -> None:
    add_users(engine.store, [NEWCOMER])


def to_cosign(engine: Engine) -> int:
    cid = start(engine)
    engine.fire(cid, "take", U["secretary"])
    engine.fire(cid, "pass", U["secretary"])
    assert engine.get(cid).state == "cosign"
    return cid


def seats(engine: Engine, cid: int) -> list[tuple[list[str], str | None]]:
    case = engine.get(cid)
    return [(s["users"], s["decision"]) for s in case.approvals[case.state]["seats"]]


def last(engine: Engine, cid: int) -> dict[str, Any]:
    return engine.get(cid).history[-1]


# --------------------------------------------------------------------------- the YAML and the graph

def test_moves_are_edges_of_the_graph(eng: Engine):
    wf = eng.definitions.workflows["tm_funds"]
    moves = {e.key: (e.source, e.target) for e in wf.edges if e.kind == "move"}
    assert moves == {
        "handling:move:transfer": ("handling", "handling"),        # default where people act: [transfer]
        "cosign:move:transfer": ("cosign", "cosign"), "cosign:move:add_approver": ("cosign", "cosign"),
        "cosign:move:return-handling": ("cosign", "handling"), "cosign:move:return-check": ("cosign", "check"),
        # 撤回 from every open state but the target; check has moves: [] (nobody holds it)
        "check:move:withdraw": ("check", "withdrawn"), "handling:move:withdraw": ("handling", "withdrawn"),
        "cosign:move:withdraw": ("cosign", "withdrawn"), "returned:move:withdraw": ("returned", "withdrawn"),
        "returned:move:transfer": ("returned", "returned"),
    }
    assert wf.states["check"].moves == () and wf.states["done"].moves == ()
    assert wf.withdraw == "withdrawn"


# --------------------------------------------------------------------------- 转交

def test_an_approver_transfers_their_seat_to_a_colleague_who_then_signs(eng: Engine):
    cid = to_cosign(eng)
    hire(eng)
    before = eng.get(cid)
    assert [s[0] for s in seats(eng, cid)] == [["street"], ["street2"], ["street3"]]
    assert [u.username for u in taskmoves.colleagues(eng, None, before, U["street2"])] == ["street4"]
    case = eng.transfer(cid, U["street2"], "street4", "出差一周，请罗斌代为审核", expected_version=before.version)
    assert case.version == before.version + 1 and case.state == "cosign"
    assert [s[0] for s in seats(eng, cid)] == [["street"], ["street4"], ["street3"]]
    bucket = case.approvals["cosign"]
    assert bucket["round"] == before.approvals["cosign"]["round"] and case.entered_at == before.entered_at  # no reset
    assert case.timers == before.timers and [t["kind"] for t in case.timers] == ["deadline"]  # the 时限 runs on
    h = last(eng, cid)
    assert (h["action"], h["by"], h["from"], h["to"], h["label"]["zh"], h["comment"]) == (
        "transfer", "street2", "cosign", "cosign", "转交给 罗斌", "出差一周，请罗斌代为审核")
    # the read model moved with it, in the same transaction
    assert cid in inbox(eng, "street4") and cid not in inbox(eng, "street2")
    assert waiting_index(eng, "street4") == [cid] and waiting_index(eng, "street2") == []
    assert notes(eng, "street4") == [("approval", "转交给 罗斌")]
    with pytest.raises(NotAllowed):  # street2 holds nothing now
        eng.approve(cid, U["street2"], "approve")
    eng.approve(cid, U["street"], "approve")
    eng.approve(cid, U["street4"], "approve", "同意")
    done = eng.approve(cid, U["street3"], "approve")
    assert done.state == "done"
    status = eng.approval_status(done, U["staff"])
    assert [(s["by"], s["status"]) for s in status["seats"]] == [("street", "approve"), ("street4", "approve"),
                                                                 ("street3", "approve")]
    assert status["seats"][1]["transfers"][0]["from_name"] == "何平"


def test_a_transfer_is_refused_to_oneself_outsiders_and_those_who_hold_it(eng: Engine):
    cid = to_cosign(eng)
    hire(eng)
    version = eng.get(cid).version
    refusals = {}
    for to in ("street2", "staff", "secretary", "street3", "nobody", ""):
        with pytest.raises(SubmissionError) as refused:
            eng.transfer(cid, U["street2"], to)
        refusals[to] = refused.value.errors["to"][0]["zh"]
    assert refusals["street2"] == "不能转交给自己" and refusals[""] == "请选择转交给谁"
    assert all("没有相同的角色" in refusals[u] for u in ("staff", "secretary", "street3", "nobody"))
    # not holding a seat: the newcomer, the applicant, nor the secretary the earlier step was assigned to
    for who in ("street4", "staff", "secretary"):
        with pytest.raises(NotAllowed) as refused:
            eng.transfer(cid, U[who], "street4")
    assert "没有持有" in refused.value.message["zh"]
    assert eng.get(cid).version == version  # nothing changed


def test_an_assignee_transfers_to_a_secretary_of_the_same_community_only(eng: Engine):
    cid = start(eng)
    eng.fire(cid, "take", U["secretary"])
    assert eng.get(cid).assignees == ["secretary"] and cid in inbox(eng, "secretary")
    case = eng.get(cid)
    # secretary_wf holds the role in another community: their reach does not cover the case
    assert [u.username for u in taskmoves.colleagues(eng, None, case, U["secretary"])] == ["secretary2"]
    with pytest.raises(SubmissionError):
        eng.transfer(cid, U["secretary"], "secretary_wf")
    case = eng.transfer(cid, U["secretary"], "secretary2")
    assert case.assignees == ["secretary2"] and case.state == "handling"
    assert cid in inbox(eng, "secretary2") and cid not in inbox(eng, "secretary")
    assert notes(eng, "secretary2")[-1] == ("assigned", "转交给 钱刚")
    with pytest.raises(NotAllowed):
        eng.fire(cid, "pass", U["secretary"])
    assert eng.fire(cid, "pass", U["secretary2"]).state == "cosign"


def test_a_stale_page_is_refused(eng: Engine):
    cid = to_cosign(eng)
    hire(eng)
    version = eng.get(cid).version
    eng.approve(cid, U["street"], "approve")
    with pytest.raises(StaleVersion):
        eng.transfer(cid, U["street2"], "street4", expected_version=version)


# --------------------------------------------------------------------------- 加签

def test_cosign_add_before_waits_for_the_added_one_then_returns(eng: Engine):
    cid = to_cosign(eng)
    case = eng.add_approver(cid, U["street"], "secretary2", "before", "请钱书记先看预算")
    assert seats(eng, cid)[-1] == (["secretary2"], None)
    assert approval.pending(case.approvals["cosign"]) == ["secretary2", "street2", "street3"]  # street waits
    assert last(eng, cid)["label"]["zh"] == "加签 钱刚（先于我审批）"
    assert cid not in inbox(eng, "street") and cid in inbox(eng, "secretary2")
    assert notes(eng, "secretary2") == [("approval", "加签 钱刚（先于我审批）")]
    status = eng.approval_status(case, U["staff"])
    assert [s["status"] for s in status["seats"]] == ["waiting", "pending", "pending", "pending"]
    with pytest.raises(NotAllowed) as refused:
        eng.approve(cid, U["street"], "approve")
    assert "还未轮到您" in refused.value.message["zh"]
    eng.approve(cid, U["secretary2"], "approve", "预算合理")
    assert cid in inbox(eng, "street")  # it came back to street, who is asked again
    assert notes(eng, "street").count(("approval", "街道会签")) == 2
    eng.approve(cid, U["street"], "approve")
    eng.approve(cid, U["street2"], "approve")
    assert eng.approve(cid, U["street3"], "approve").state == "done"  # the added seat counted like the others


def test_cosign_add_after_is_one_seat_more_now(eng: Engine):
    cid = to_cosign(eng)
    case = eng.add_approver(cid, U["street"], "secretary2", "after")
    assert approval.pending(case.approvals["cosign"]) == ["secretary2", "street", "street2", "street3"]
    for who in ("street", "street2", "street3"):
        eng.approve(cid, U[who], "approve")
    assert eng.get(cid).state == "cosign"  # still waiting for the added approver
    assert eng.approve(cid, U["secretary2"], "approve").state == "done"


def test_who_may_be_added_and_who_may_add(eng: Engine):
    cid = to_cosign(eng)
    for who in ("street2", "staff", "secretary_wf", "district", "nobody"):  # in the round, applicant, out of reach...
        with pytest.raises(SubmissionError):
            eng.add_approver(cid, U["street"], who, "before")
    with pytest.raises(SubmissionError) as refused:
        eng.add_approver(cid, U["street"], "secretary2", "sideways")
    assert "position" in refused.value.errors
    with pytest.raises(NotAllowed):  # not an approver of the round
        eng.add_approver(cid, U["secretary"], "secretary2", "before")
    eng.approve(cid, U["street"], "approve")
    with pytest.raises(NotAllowed):  # signed already
        eng.add_approver(cid, U["street"], "secretary2", "after")


def test_anysign_an_approver_added_before_advises_and_it_returns(eng: Engine):
    cid = start(eng, "tm_any")
    eng.add_approver(cid, U["secretary"], "street", "before")
    assert approval.pending(eng.get(cid).approvals["sign"]) == ["secretary2", "street"]
    case = eng.approve(cid, U["street"], "approve", "可以")
    assert case.state == "sign"  # an approval before someone advises them: it does not decide the 或签
    assert approval.pending(case.approvals["sign"]) == ["secretary", "secretary2"]
    assert eng.approve(cid, U["secretary"], "approve").state == "done"


def test_anysign_an_approver_added_after_decides_like_any_other(eng: Engine):
    cid = start(eng, "tm_any")
    eng.add_approver(cid, U["secretary"], "street", "after")
    assert eng.approve(cid, U["street"], "approve").state == "done"


def test_sequence_add_before_and_after_take_turns_of_their_own(eng: Engine):
    cid = start(eng, "tm_seq")
    eng.add_approver(cid, U["secretary"], "street2", "after")
    eng.add_approver(cid, U["secretary"], "street3", "after")
    eng.add_approver(cid, U["secretary"], "secretary2", "before")
    assert [s[0] for s in seats(eng, cid)] == [["secretary2"], ["secretary"], ["street2"], ["street3"], ["street"]]
    order = []
    for who in ("secretary2", "secretary", "street2", "street3", "street"):
        assert approval.pending(eng.get(cid).approvals["sign"]) == [who]
        order.append(eng.approve(cid, U[who], "approve").state)
    assert order == ["sign"] * 4 + ["done"]


def test_sequence_transfer_of_the_seat_whose_turn_it_is(eng: Engine):
    cid = start(eng, "tm_seq")
    eng.transfer(cid, U["secretary"], "secretary2")
    assert approval.pending(eng.get(cid).approvals["sign"]) == ["secretary2"]
    with pytest.raises(NotAllowed):  # street's turn has not come: nothing to transfer yet
        eng.transfer(cid, U["street"], "street2")


# --------------------------------------------------------------------------- 撤回

def test_the_initiator_withdraws_while_nobody_else_has_acted(eng: Engine):
    cid = start(eng)
    with pytest.raises(NotAllowed):
        eng.withdraw(cid, U["secretary"])
    case = eng.withdraw(cid, U["staff"], "金额填错了")
    assert case.state == "withdrawn" and case.version == 2
    h = last(eng, cid)
    assert (h["action"], h["by"], h["from"], h["to"], h["label"]["zh"]) == ("withdraw", "staff", "check", "withdrawn", "撤回")
    assert cid not in inbox(eng, "secretary")
    assert notes(eng, "secretary")[-1] == ("case_changed", "撤回")  # it no longer waits for them


def test_withdrawing_after_someone_acted_says_who(eng: Engine):
    cid = start(eng)
    eng.fire(cid, "take", U["secretary"])
    with pytest.raises(TransitionError) as refused:
        eng.withdraw(cid, U["staff"])
    assert refused.value.message["zh"] == "周伟 已办理过此事项（受理），不能再撤回。"
    offered = eng.task_moves(eng.get(cid), U["staff"])["withdraw"]
    assert offered["ok"] is False and offered["by"] == "周伟"
    assert eng.get(cid).state == "handling"


def test_withdrawing_an_approval_step_closes_its_round_and_tells_its_approvers(eng: Engine):
    cid = start(eng, "tm_any")
    assert eng.task_moves(eng.get(cid), U["staff"])["withdraw"]["ok"] is True
    assert "withdraw" not in eng.task_moves(eng.get(cid), U["secretary"])
    case = eng.withdraw(cid, U["staff"])
    assert case.state == "withdrawn" and case.approvals["sign"]["status"] == "closed"
    for who in ("secretary", "secretary2"):
        assert cid not in inbox(eng, who) and notes(eng, who)[-1] == ("case_changed", "撤回")


# --------------------------------------------------------------------------- 退回

def test_the_street_sends_it_back_to_the_secretary_with_a_reason(eng: Engine):
    cid = to_cosign(eng)
    before_due = eng.get(cid).timers[0]["due"]
    eng.approve(cid, U["street"], "approve")
    offered = eng.task_moves(eng.get(cid), U["street2"])
    assert [sid for sid, _t in offered["return_to"]] == ["handling", "check"]
    with pytest.raises(SubmissionError) as refused:
        eng.send_back(cid, U["street2"], "handling", "  ")
    assert refused.value.errors["comment"][0]["zh"] == "请写明退回的理由"
    with pytest.raises(SubmissionError):
        eng.send_back(cid, U["street2"], "done", "不是更早的步骤")
    with pytest.raises(NotAllowed):
        eng.send_back(cid, U["staff"], "handling", "申请人不能退回")
    case = eng.send_back(cid, U["street2"], "handling", "预算缺少明细，请补充")
    assert case.state == "handling" and case.approvals["cosign"]["status"] == "closed"
    h = last(eng, cid)
    assert (h["action"], h["from"], h["to"], h["comment"]) == ("return", "cosign", "handling", "预算缺少明细，请补充")
    assert cid in inbox(eng, "secretary") and cid not in inbox(eng, "street3")  # back with the one assigned
    assert notes(eng, "secretary")[-1] == ("case_changed", "退回") and notes(eng, "staff")[-1] == ("case_changed", "退回")
    assert ("case_changed", "退回") in notes(eng, "street3")  # no longer waited for
    # entering again opens a fresh round and a fresh time limit, as entering does
    eng.clock.advance(days=3)  # Monday
    case = eng.fire(cid, "pass", U["secretary"])
    assert case.approvals["cosign"]["round"] == 2 and [s[1] for s in seats(eng, cid)] == [None, None, None]
    assert case.entered_at.startswith("2026-11-30") and case.timers[0]["due"] > before_due


def test_send_back_to_the_first_step_and_withdrawing_is_then_still_refused(eng: Engine):
    cid = to_cosign(eng)
    case = eng.send_back(cid, U["street"], "check", "请重新受理")
    assert case.state == "check" and cid in inbox(eng, "secretary2")
    with pytest.raises(TransitionError):
        eng.withdraw(cid, U["staff"])
