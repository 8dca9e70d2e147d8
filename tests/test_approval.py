"""Several approvers on one step (issue 12.1), through the engine on every store: 会签 (all), 或签 (any) and
依次审批 (sequence); who may act and when; rounds, history, the inbox index and concurrent approvals."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from engine.cases import Case, migrate
from engine.clock import FrozenClock
from engine.errors import NotAllowed, NotFound, StaleVersion, SubmissionError, TransitionError
from engine.loader import load_definitions
from engine.mechanics import approval
from engine.notify import NOTIFICATIONS
from engine.readmodel import CASE_INDEX
from engine.runtime import Engine
from engine.store import open_store
from engine.users import User
from tests.conftest import GOVERNANCE_USERS, ROOT, STORES, add_users, store_location

DEFS = Path(__file__).parent / "data" / "valid" / "approval"
U = {name: User(name, full, tuple(roles), unit) for name, full, roles, unit in GOVERNANCE_USERS}
REQUEST = {"subject": "楼道灯更换", "amount": "1200", "unit": "renjia"}


@pytest.fixture(params=STORES)
def eng(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    root = tmp_path / "defs"
    shutil.copytree(DEFS, root)
    shutil.copytree(ROOT / "org", root / "org")
    store = open_store(store_location(request.param, request, tmp_path, "approval.json"))
    add_users(store, GOVERNANCE_USERS)
    engine = Engine(load_definitions(root), store, clock=FrozenClock("2026-11-27T09:00:00"))
    yield engine
    store.close()


def start(engine: Engine, workflow: str, **values: Any) -> int:
    return engine.start(workflow, U["staff"], {**REQUEST, **values}).id


def inbox(engine: Engine, username: str) -> list[int]:
    return [c.id for c in engine.inbox(U[username])]


def waiting_index(engine: Engine, username: str) -> list[int]:
    """The cases the read model's index files as waiting for this one person (before any re-check)."""
    return [d["id"] for d in engine.store.lookup(CASE_INDEX, [("wait_user", username)]).docs]


def seats(engine: Engine, cid: int, state: str | None = None) -> list[tuple[list[str], str | None, str | None]]:
    case = engine.get(cid)
    bucket = case.approvals[state or case.state]
    return [(s["users"], s["decision"], s["by"]) for s in bucket["seats"]]


# --------------------------------------------------------------------------- 会签: all must approve

def test_cosign_waits_for_every_street_evaluator_then_moves_once(eng: Engine):
    cid = start(eng, "cosign")
    case = eng.get(cid)
    # every street evaluator whose reach covers the case, worked out when the step opened
    assert [s[0] for s in seats(eng, cid)] == [["street"], ["street2"], ["street3"]]
    assert all(cid in inbox(eng, u) for u in ("street", "street2", "street3"))
    assert all(notes(eng, u) == ["approval"] for u in ("street", "street2", "street3"))  # each was asked
    assert cid not in inbox(eng, "district")
    assert waiting_index(eng, "street2") == [cid]
    eng.approve(cid, U["street2"], "approve", "同意更换")
    assert cid not in inbox(eng, "street2") and cid in inbox(eng, "street")  # only those still to act
    assert waiting_index(eng, "street2") == [] and waiting_index(eng, "street3") == [cid]  # the index itself
    assert eng.get(cid).state == "cosign"
    eng.approve(cid, U["street"], "approve")
    done = eng.approve(cid, U["street3"], "approve", expected_version=eng.get(cid).version)
    assert done.state == "done" and done.approvals["cosign"]["status"] == "approved"
    moves = [(h["action"], h["by"], h["from"], h["to"]) for h in done.history]
    assert moves == [("start", "staff", None, "cosign"),
                     ("approve", "street2", "cosign", "cosign"),
                     ("approve", "street", "cosign", "cosign"),
                     ("approve", "street3", "cosign", "cosign"),
                     ("approved", "street3", "cosign", "done")]  # the last act moved the case, once
    assert done.history[1]["comment"] == "同意更换" and done.history[1]["label"]["zh"] == "同意"
    assert done.history[-1]["label"] == {"zh": "街道会签通过", "en": "Street co-signing: approved"}
    assert done.version == 1 + 4  # every act and the outcome are new versions
    assert not any(cid in inbox(eng, u) for u in ("street", "street2", "street3"))


def test_one_rejection_ends_a_cosign_step_and_a_new_round_starts_on_return(eng: Engine):
    cid = start(eng, "cosign")
    eng.approve(cid, U["street"], "approve")
    with pytest.raises(SubmissionError) as err:
        eng.approve(cid, U["street2"], "reject", "  ")
    assert err.value.errors["comment"][0]["zh"] == "不同意时请写明理由"
    case = eng.approve(cid, U["street2"], "reject", "预算偏高，请核减")
    assert case.state == "returned" and case.approvals["cosign"]["status"] == "rejected"
    assert case.history[-1]["action"] == "rejected" and case.history[-1]["to"] == "returned"
    assert cid not in inbox(eng, "street3")  # nobody is asked any more
    assert notes(eng, "staff") == ["case_changed"]  # the applicant hears the outcome
    with pytest.raises(TransitionError):
        eng.approve(cid, U["street3"], "approve")
    case = eng.fire(cid, "resubmit", U["staff"])
    bucket = case.approvals["cosign"]
    assert bucket["round"] == 2 and bucket["status"] == "open"
    assert [s["decision"] for s in bucket["seats"]] == [None, None, None]  # a fresh round
    assert cid in inbox(eng, "street")  # who approved in round 1 signs again
    acted = [(h["action"], h["by"]) for h in case.history if h["action"] in ("approve", "reject")]
    assert acted == [("approve", "street"), ("reject", "street2")]  # round 1 stays in the history


def test_double_approval_and_non_approvers_are_refused(eng: Engine):
    cid = start(eng, "cosign")
    eng.approve(cid, U["street"], "approve")
    version = eng.get(cid).version
    with pytest.raises(NotAllowed) as err:
        eng.approve(cid, U["street"], "approve")
    assert "不能重复审批" in err.value.message["zh"]
    with pytest.raises(NotAllowed) as err:
        eng.approve(cid, U["staff"], "approve")  # the applicant sees the case, but does not sign it
    assert err.value.message["zh"] == "您不是本步骤的审批人。"
    for outsider in ("district", "secretary"):  # no role acting on this step: the case is not even visible
        with pytest.raises(NotFound):
            eng.approve(cid, U[outsider], "approve")
    with pytest.raises(TransitionError):
        eng.approve(cid, U["street2"], "maybe")
    with pytest.raises(StaleVersion):
        eng.approve(cid, U["street2"], "approve", expected_version=version - 1)
    assert eng.get(cid).version == version and seats(eng, cid)[1][1] is None  # nothing changed


def test_an_outcome_edge_cannot_be_taken_before_the_round_decides_it(eng: Engine):
    from engine import transition as moves
    cid = start(eng, "cosign")
    wf = eng.definitions.workflows["cosign"]
    outcome = wf.edge("cosign", "done", kind="approval", via="approved")
    with eng.store.transaction() as tx:
        case = eng._load(tx, cid, None)
        with pytest.raises(TransitionError):
            moves.take(eng, tx, case, outcome, U["street"])
    assert eng.get(cid).state == "cosign"


def test_concurrent_approvals_move_the_case_exactly_once(eng: Engine):
    cid = start(eng, "cosign")
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def sign(username: str) -> None:
        barrier.wait()
        try:
            eng.approve(cid, U[username], "approve")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=sign, args=(u,)) for u in ("street", "street2", "street3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    case = eng.get(cid)
    assert case.state == "done"
    actions = [h["action"] for h in case.history]
    assert actions.count("approve") == 3 and actions.count("approved") == 1 and actions[-1] == "approved"
    assert sorted(s[2] for s in seats(eng, cid, "cosign")) == ["street", "street2", "street3"]


def test_withdrawing_closes_the_open_round(eng: Engine):
    cid = start(eng, "cosign")
    eng.approve(cid, U["street"], "approve")
    case = eng.fire(cid, "withdraw", U["staff"])
    assert case.state == "withdrawn" and case.approvals["cosign"]["status"] == "closed"
    assert cid not in inbox(eng, "street2")
    assert eng.can_see(case, U["street"])  # who signed still sees what they signed


def test_an_approval_does_not_restart_the_states_timer_and_the_timer_closes_the_round(eng: Engine):
    cid = start(eng, "timed")
    eng.clock.advance(days=2)
    eng.approve(cid, U["street"], "approve")  # a self-loop that stays in the round: the 3 days still count from entry
    eng.clock.advance(days=1, hours=1)
    eng.tick()
    case = eng.get(cid)
    assert case.state == "lapsed" and case.approvals["sign"]["status"] == "closed"
    assert cid not in inbox(eng, "street2")


# --------------------------------------------------------------------------- 或签: any one decides

def test_anysign_first_decision_decides(eng: Engine):
    approved = start(eng, "anysign")
    assert cid_in_both(eng, approved)
    case = eng.approve(approved, U["secretary2"], "approve")
    assert case.state == "done" and [h["action"] for h in case.history][-2:] == ["approve", "approved"]
    assert approved not in inbox(eng, "secretary")
    with pytest.raises(TransitionError):
        eng.approve(approved, U["secretary"], "approve")
    refused = start(eng, "anysign")
    case = eng.approve(refused, U["secretary"], "reject", "不符合使用范围")
    assert case.state == "refused" and case.history[-1]["action"] == "rejected"
    assert case.history[-1]["label"] == {"zh": "或签未通过", "en": "Approval by any one: rejected"}  # the default name


def cid_in_both(eng: Engine, cid: int) -> bool:
    return cid in inbox(eng, "secretary") and cid in inbox(eng, "secretary2")


# --------------------------------------------------------------------------- 依次审批: in the given order

def test_sequence_by_role_goes_level_by_level(eng: Engine):
    cid = start(eng, "insequence")
    # the community's two secretaries share the first turn; the street's evaluators the second
    assert [s[0] for s in seats(eng, cid)] == [["secretary", "secretary2"], ["street", "street2", "street3"]]
    assert cid in inbox(eng, "secretary") and cid in inbox(eng, "secretary2")
    assert cid not in inbox(eng, "street") and waiting_index(eng, "street") == []  # not their turn yet
    with pytest.raises(NotAllowed) as err:
        eng.approve(cid, U["street"], "approve")
    assert err.value.message["zh"] == "还未轮到您审批。"
    eng.approve(cid, U["secretary2"], "approve")
    assert cid not in inbox(eng, "secretary") and cid in inbox(eng, "street2")
    with pytest.raises(NotAllowed):
        eng.approve(cid, U["secretary"], "approve")  # the secretaries' turn is over
    assert "approval" in notes(eng, "street3")  # the next turn was told
    case = eng.approve(cid, U["street3"], "approve")
    assert case.state == "done"
    assert [(h["action"], h["by"]) for h in case.history][1:] == [
        ("approve", "secretary2"), ("approve", "street3"), ("approved", "street3")]


def test_the_applicant_is_not_among_the_approvers_a_role_names(eng: Engine):
    cid = eng.start("insequence", U["secretary"], REQUEST).id
    assert seats(eng, cid)[0][0] == ["secretary2"]  # 周伟 asked for it: only the other secretary checks it
    with pytest.raises(NotAllowed):
        eng.approve(cid, U["secretary"], "approve")


def test_sequence_rejection_ends_it(eng: Engine):
    cid = start(eng, "insequence")
    eng.approve(cid, U["secretary"], "approve")
    case = eng.approve(cid, U["street"], "reject", "材料不全")
    assert case.state == "refused"


def test_sequence_by_field_follows_the_named_order(eng: Engine):
    cid = start(eng, "fieldseq", signers=["street2", "secretary"])
    assert [s[0] for s in seats(eng, cid)] == [["street2"], ["secretary"]]
    assert inbox(eng, "street2") == [cid] and cid not in inbox(eng, "secretary")
    assert eng.can_see(eng.get(cid), U["street2"])  # named, so they see it (their role alone does not act here)
    eng.approve(cid, U["street2"], "approve")
    assert inbox(eng, "secretary") == [cid]
    assert eng.approve(cid, U["secretary"], "approve").state == "done"


# --------------------------------------------------------------------------- reject: majority

def test_majority_waits_for_everyone_and_rejects_on_more_than_half(eng: Engine):
    cid = start(eng, "majority")
    eng.approve(cid, U["street"], "reject", "不同意")
    assert eng.get(cid).state == "sign"  # one rejection does not end a majority 会签
    eng.approve(cid, U["street2"], "approve")
    assert eng.approve(cid, U["street3"], "approve").state == "done"
    cid = start(eng, "majority")
    eng.approve(cid, U["street"], "reject", "不同意")
    eng.approve(cid, U["street2"], "reject", "不同意")
    assert eng.get(cid).state == "sign"
    assert eng.approve(cid, U["street3"], "approve").state == "refused"


@pytest.mark.parametrize(("rule", "decisions", "outcome"), [
    ("any", ["approve", "reject"], "rejected"), ("any", ["approve", "approve", "approve"], "approved"),
    ("all", ["reject", "reject", "approve"], "approved"), ("all", ["reject", "reject", "reject"], "rejected"),
    ("all", ["reject", "reject"], None), ("majority", ["reject", "approve", "approve"], "approved"),
    ("majority", ["reject", "reject", "approve"], "rejected"), ("majority", ["reject", "reject"], None),
])
def test_decide_by_the_reject_rule(rule: str, decisions: list[str], outcome: str | None):
    bucket = {"mode": "all", "reject": rule, "status": "open",
              "seats": [{"users": [f"u{i}"], "decision": d} for i, d in enumerate(decisions + [None] * (3 - len(decisions)))]}
    assert approval.decide(bucket) == outcome


# --------------------------------------------------------------------------- stored records, status for the page

def test_a_case_stored_before_approvals_existed_still_loads():
    old = Case("cosign", 1, "cosign", {}, "renjia", "staff", "2026-01-01", "2026-01-01").to_doc()
    del old["approvals"]
    old["schema_version"] = 2
    assert migrate(old)["approvals"] == {} and Case.from_doc(old).approvals == {}


def test_status_lists_who_acted_and_who_is_still_to_act(eng: Engine):
    cid = start(eng, "insequence")
    eng.approve(cid, U["secretary"], "approve", "同意")
    status = eng.approval_status(eng.get(cid), U["street"])
    assert status["mine"] is True and status["pending"] == ["郑军", "何平", "施琳"]
    first, second = status["seats"]
    assert first["status"] == "approve" and first["by_name"] == "周伟" and first["at"].startswith("2026-11-27T09:00")
    assert second["status"] == "pending" and second["role_title"]["zh"]
    assert eng.approval_status(eng.get(cid), U["secretary2"])["mine"] is False


def notes(engine: Engine, username: str) -> list[str]:
    return [n["kind"] for n in engine.store.search(NOTIFICATIONS, lambda d: d["to"] == username)]


def test_a_state_that_gains_an_approval_opens_its_round_when_cases_migrate(tmp_path: Path):
    from engine import migration
    from engine.store import MemoryStore
    from tests.test_versions import FORM_V1, WORKFLOW_V1, user, write

    root = write(tmp_path / "defs", WORKFLOW_V1, FORM_V1)
    store = MemoryStore()
    add_users(store)
    v1 = Engine(load_definitions(root), store)
    cid = v1.start("permit", user(v1, "resident"), {"subject": "s"}).id
    v1.fire(cid, "send", user(v1, "staff"))
    old = "    transitions:\n      - {id: approve, to: done, label: {zh: 书记批准, en: Secretary approves}, roles: [community_secretary]}\n"
    assert old in WORKFLOW_V1
    v2_text = WORKFLOW_V1.replace("version: 1", "version: 2").replace(old, (
        "    approval: {mode: any, approvers: {roles: [community_secretary]}, approved: done, rejected: submitted}\n"))
    write(root, v2_text + "migrate: {from: 1}\n", FORM_V1)
    v2 = Engine(load_definitions(root), store)
    migration.apply(v2, "permit")
    case = v2.get(cid)
    assert case.workflow_version == 2 and case.state == "review" and case.approvals["review"]["status"] == "open"
    assert [c.id for c in v2.inbox(user(v2, "secretary"))] == [cid]
    assert v2.approve(cid, user(v2, "secretary"), "approve").state == "done"
