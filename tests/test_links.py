"""Linked cases that move each other (issue 12.4.1), through the engine on TinyDB and PostgreSQL: a parent waiting
for all (or any) of its children, a parent moving its children, a child moving the case a field names; every move
through the one transition path, as the system, in the step's transaction, with a history entry on both cases."""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from engine import transition
from engine.cases import CASES
from engine.clock import FrozenClock
from engine.errors import TransitionError
from engine.loader import load_definitions
from engine.mechanics import links
from engine.mechanics.base import SYSTEM, Step
from engine.runtime import Engine
from engine.store import open_store
from engine.users import User
from tests.conftest import DURABLE_STORES, GOVERNANCE_USERS, ROOT, add_users, store_location

DEFS = Path(__file__).parent / "data" / "valid" / "links"
U = {name: User(name, full, tuple(roles), unit) for name, full, roles, unit in GOVERNANCE_USERS}
PLAN = {"subject": "楼道环境整治", "unit": "renjia", "tasks": [{"task": "清理杂物"}, {"task": "更换灯泡"}]}


@pytest.fixture(params=DURABLE_STORES)
def eng(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    root = tmp_path / "defs"
    shutil.copytree(DEFS, root)
    shutil.copytree(ROOT / "org", root / "org")
    store = open_store(store_location(request.param, request, tmp_path, "links.json"))
    add_users(store, GOVERNANCE_USERS)
    engine = Engine(load_definitions(root), store, clock=FrozenClock("2026-11-27T09:00:00"))
    yield engine
    store.close()


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str, str]]:
    """Every call of the real ``transition.take``: (case id, via, actor)."""
    calls: list[tuple[int, str, str]] = []
    real = transition.take

    def observed(engine: Any, tx: Any, case: Any, edge: Any, actor: Any, step: Any = None) -> Any:
        calls.append((case.id, edge.via, actor.username))
        return real(engine, tx, case, edge, actor, step)
    monkeypatch.setattr(transition, "take", observed)
    return calls


def launched(engine: Engine, workflow: str = "plan") -> tuple[int, list[int]]:
    plan = engine.start(workflow, U["staff"], PLAN).id
    engine.fire(plan, "launch", U["staff"])
    children = [c.id for c in engine.children(engine.get(plan), U["staff"])]
    assert len(children) == 2
    return plan, children


def entries(engine: Engine, cid: int) -> list[tuple[str, str, str | None, str]]:
    return [(h["action"], h["by"], h["from"], h["to"]) for h in engine.get(cid).history]


def test_the_plan_moves_on_by_itself_when_its_last_task_is_done(eng: Engine, taken: list[tuple[int, str, str]]):
    plan, (first, second) = launched(eng)
    eng.fire(first, "finish", U["staff"])
    assert eng.get(plan).state == "working"  # one of two: still waiting
    version = eng.get(plan).version
    eng.fire(second, "finish", U["staff"])
    done = eng.get(plan)
    assert done.state == "finished" and done.version > version
    assert taken[-2:] == [(second, "finish", "staff"), (plan, "all_done", "system")]  # one path, as the system
    last = done.history[-1]
    assert (last["action"], last["by"], last["from"], last["to"]) == ("all_done", "system", "working", "finished")
    assert last["comment"] == f"由 #{second}（任务）带动 · 陈静"
    child = entries(eng, second)
    assert child[-2:] == [("finish", "staff", "open", "done"), ("linked", "staff", "done", "done")]
    assert eng.get(second).history[-1]["comment"] == f"#{plan}（工作计划）→ 已完成"
    assert eng.workflow_of(done).edge("working", "finished", via="all_done").triggers == ("children",)


def test_any_child_is_enough_for_a_pilot(eng: Engine):
    pilot, (first, second) = launched(eng, "pilot")
    eng.fire(second, "finish", U["staff"])
    assert eng.get(pilot).state == "proven"
    assert eng.get(first).state == "open"


def test_cancelling_the_plan_drops_every_task_in_the_same_transaction(eng: Engine, taken: list[tuple[int, str, str]]):
    plan, children = launched(eng)
    eng.fire(children[0], "finish", U["staff"])
    eng.fire(plan, "cancel", U["secretary"], comment="街道统一安排")
    assert eng.get(plan).state == "cancelled"
    assert [eng.get(c).state for c in children] == ["done", "dropped"]  # a done task has no drop: it stays
    assert (children[1], "drop", "system") in taken
    notes = [h["comment"] for h in eng.get(plan).history if h["action"] == "linked"]
    assert notes == [f"#{children[1]}（任务）→ 已撤销"]
    assert entries(eng, children[1])[-1] == ("drop", "system", "open", "dropped")


def test_a_blocked_task_pauses_its_plan_but_not_a_pilot(eng: Engine):
    plan, (first, _) = launched(eng)
    eng.fire(first, "block", U["staff"])
    assert eng.get(plan).state == "paused"
    assert entries(eng, plan)[-1] == ("pause", "system", "working", "paused")
    assert eng.get(first).history[-1]["comment"] == f"#{plan}（工作计划）→ 已暂停"
    pilot, (task, _) = launched(eng, "pilot")
    eng.fire(task, "block", U["staff"])  # its parent is a pilot: moves names the plan workflow only
    assert eng.get(pilot).state == "trying" and entries(eng, task)[-1][0] == "block"


def test_a_plan_whose_tasks_were_done_meanwhile_moves_on_when_it_is_resumed(eng: Engine):
    plan, (first, second) = launched(eng)
    eng.fire(first, "block", U["staff"])  # the plan is paused
    eng.fire(first, "unblock", U["staff"])
    for task in (first, second):
        eng.fire(task, "finish", U["staff"])
    assert eng.get(plan).state == "paused"  # it waits only in working
    eng.fire(plan, "resume", U["secretary"])
    assert entries(eng, plan)[-2:] == [("resume", "secretary", "paused", "working"), ("all_done", "system", "working", "finished")]
    assert eng.get(plan).history[-1]["comment"] == f"全部子事项已到达：#{first}、#{second}"


def test_a_refused_linked_move_refuses_the_whole_step(eng: Engine, monkeypatch: pytest.MonkeyPatch):
    plan, children = launched(eng)
    before = [eng.get(c).version for c in [plan, *children]]
    real = transition.take

    def refuse_drop(engine: Any, tx: Any, case: Any, edge: Any, actor: Any, step: Any = None) -> Any:
        if edge.via == "drop" and case.id == children[1]:
            raise TransitionError({"zh": "不行", "en": "no"})
        return real(engine, tx, case, edge, actor, step)
    monkeypatch.setattr(transition, "take", refuse_drop)
    with pytest.raises(TransitionError):
        eng.fire(plan, "cancel", U["secretary"], comment="街道统一安排")
    assert [eng.get(c).version for c in [plan, *children]] == before  # nothing was written, not even the first task
    assert [eng.get(c).state for c in children] == ["open", "open"]


def test_a_chain_that_comes_back_to_a_case_is_refused(eng: Engine):
    plan, children = launched(eng)
    with eng.store.transaction() as tx:
        case = eng._load(tx, plan, None)
        edge = transition.find(eng, case, "cancel")
        with pytest.raises(TransitionError) as info:  # the task already moved in this chain would be moved again
            transition.take(eng, tx, case, edge, U["secretary"], Step(comment="x", chain=(children[0],)))
        assert f"#{children[0]}" in info.value.message["zh"]
    assert eng.get(plan).state == "working"
    with eng.store.transaction() as tx:
        case = eng._load(tx, children[0], None)
        with pytest.raises(TransitionError):
            links.after(eng, tx, case, transition.find(eng, case, "finish"), SYSTEM,
                        Step(chain=tuple(range(1000, 1000 + links.MAX_CHAIN))), eng.clock())


def test_the_linked_cases_are_found_through_the_parent_index(eng: Engine):
    plan, children = launched(eng)
    searched: list[str] = []
    with eng.store.transaction() as tx:
        real_search = tx.search
        tx.search = lambda table, predicate=None: searched.append(table) or real_search(table, predicate)  # type: ignore
        case = eng._load(tx, plan, None)
        transition.take(eng, tx, case, transition.find(eng, case, "cancel"), U["secretary"], Step(comment="取消"))
        tx.replace(CASES, plan, case.to_doc())
    assert searched == []  # no table scan: the children came from the ("parent", id) index
    assert [eng.get(c).state for c in children] == ["dropped", "dropped"]


# --------------------------------------------------------------------------- collect: a new round on re-entry

TASK = {"task": "清理杂物", "unit": "renjia"}


def scored(engine: Engine, workflow: str, points: tuple[int, int]) -> int:
    cid = engine.start(workflow, U["staff"], TASK).id
    for who, p in zip(("secretary", "secretary2"), points):
        engine.contribute(cid, U[who], {"points": str(p)})
    return cid


def test_a_case_sent_back_and_resubmitted_is_scored_afresh(eng: Engine):
    cid = scored(eng, "review", (80, 90))
    assert eng.get(cid).data["score"]["total"] == 85
    eng.fire(cid, "send_back", U["staff"], comment="材料不全")
    eng.fire(cid, "resubmit", U["staff"])
    case = eng.get(cid)
    assert case.contributions["scoring"] == {} and case.data["score"]["count"] == 0  # a new round
    assert eng.may_contribute(case, U["secretary"]) == (True, None)  # once: refuse counts this round only
    with pytest.raises(TransitionError):
        eng.fire(cid, "decide", U["staff"])  # the earlier round's sheets do not complete this one
    (earlier,) = eng.earlier_rounds(case, U["secretary"])
    (first,) = earlier["rounds"]
    assert (first["round"], first["count"], first["result"]["total"]) == (1, 2, 85)
    assert sorted(c["data"]["points"] for c in first["contributions"]) == [80, 90]
    assert eng.earlier_rounds(case, U["staff"])[0]["rounds"][0]["contributions"] == []  # not visible_to staff
    eng.contribute(cid, U["secretary"], {"points": "60"})
    eng.contribute(cid, U["secretary2"], {"points": "70"})
    assert eng.fire(cid, "decide", U["staff"]).data["score"]["total"] == 65


def test_a_state_that_keeps_its_contributions_carries_them_over(eng: Engine):
    cid = scored(eng, "review_keep", (80, 90))
    eng.fire(cid, "send_back", U["staff"], comment="材料不全")
    eng.fire(cid, "resubmit", U["staff"])
    case = eng.get(cid)
    assert len(case.contributions["scoring"]) == 2 and case.earlier_contributions == {}
    assert eng.may_contribute(case, U["secretary"])[0] is False  # already submitted, once: refuse
    assert eng.fire(cid, "decide", U["staff"]).state == "decided"


# --------------------------------------------------------------------------- through the pages

@pytest.fixture
def web(tmp_path: Path) -> Any:
    from engine.web import create_app
    root = tmp_path / "defs"
    shutil.copytree(DEFS, root)
    shutil.copytree(ROOT / "org", root / "org")
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "STORE": str(tmp_path / "web.json"), "UPLOADS": str(tmp_path / "up"),
                      "DEFINITIONS": str(root), "CLOCK": FrozenClock("2026-11-27T09:00:00")})
    add_users(app.extensions["civicflow"].store, GOVERNANCE_USERS)
    yield app
    app.extensions["civicflow"].store.close()


def test_the_case_page_shows_the_earlier_round_and_what_a_plan_waits_for(web: Any):
    from tests.conftest import Browser, act, started
    staff, secretary = Browser(web).login("staff"), Browser(web).login("secretary")
    cid = started(staff.post("/start/review", TASK))
    assert secretary.post(f"/cases/{cid}/contribute", {"points": "80"}).status_code == 302
    assert Browser(web).login("secretary2").post(f"/cases/{cid}/contribute", {"points": "90"}).status_code == 302
    assert act(staff, cid, "send_back", comment="材料不全").status_code == 302
    assert act(staff, cid, "resubmit").status_code == 302
    page = secretary.get(f"/cases/{cid}").get_data(as_text=True)
    assert "往轮记录" in page and "第 1 轮" in page and "共 2 份" in page and "<strong>85" in page
    assert "已完成 0 / 2" in page  # the new round
    assert "钱刚" in page  # who scored in round 1 (secretary2), for those the scores are visible to
    assert "钱刚" not in staff.get(f"/cases/{cid}").get_data(as_text=True)

    engine = web.extensions["civicflow"]
    plan = engine.start("plan", U["staff"], PLAN).id
    assert act(staff, plan, "launch").status_code == 302
    first = engine.children(engine.get(plan), U["staff"])[0].id
    assert act(staff, first, "finish").status_code == 302
    page = staff.get(f"/cases/{plan}").get_data(as_text=True)
    assert "等待关联事项" in page and "关联事项已完成 1 / 2" in page
    diagram = staff.get("/workflows/plan/diagram").get_data(as_text=True)
    assert "任务全部完成" in diagram and "子事项全部到达后自动" in diagram  # the edge waits_for takes, marked


def test_the_diagram_says_what_a_step_does_to_linked_cases(app: Any, who: Any):
    """The shipped projects list: signing and accepting name the need's and the resource's steps they take."""
    page = who("staff").get("/workflows/projects_list/diagram").get_data(as_text=True)
    sign = re.search(r'<li data-edge="to_sign.sign">(.*?)</li>', page, re.S).group(1)
    assert "带动关联事项：需求清单：已签约立项；资源清单：已签约使用" in sign
    accept = re.search(r'<li data-edge="to_accept.accept">(.*?)</li>', page, re.S).group(1)
    assert "需求清单：需求已满足；资源清单：项目结束，可再认领" in accept

