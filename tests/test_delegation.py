"""委托代理, 催办 and 抄送 (issue 12.2): through the engine on both durable stores, then through the pages.

A delegate acts on the delegator's tasks with the delegator's roles and scope, in their own name (``on_behalf_of``);
an urge and a copy are self-loop moves through the one transition path (history, a new version, timers untouched);
people copied in see the case and cannot act on it.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from engine import delegation
from engine.clock import FrozenClock
from engine.errors import NotAllowed, NotFound, SubmissionError, TransitionError
from engine.loader import load_definitions
from engine.notify import NOTIFICATIONS
from engine.readmodel import CASE_INDEX
from engine.runtime import Engine
from engine.store import open_store
from engine.users import USERS as USER_TABLE, User
from tests.conftest import (DURABLE_STORES, GOVERNANCE_USERS, ROOT, add_users, case, shipped_app, started,
                            store_location)

DEFS = Path(__file__).parent / "data" / "valid" / "delegation"
REQUEST = {"subject": "楼道灯更换", "amount": "1200", "unit": "renjia"}


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock("2026-11-27T09:00:00")


@pytest.fixture(params=DURABLE_STORES)
def eng(request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock) -> Engine:
    root = tmp_path / "defs"
    shutil.copytree(DEFS, root)
    shutil.copytree(ROOT / "org", root / "org")
    store = open_store(store_location(request.param, request, tmp_path, "delegation.json"))
    add_users(store, GOVERNANCE_USERS)
    engine = Engine(load_definitions(root), store, clock=clock)
    yield engine
    store.close()


def u(engine: Engine, username: str) -> User:
    """The user as stored now (with their delegations)."""
    return User.from_doc(engine.read.user_doc(username))


def start(engine: Engine, workflow: str = "handover") -> int:
    return engine.start(workflow, u(engine, "staff"), REQUEST).id


def notes(engine: Engine, username: str) -> list[str]:
    return [d["kind"] for d in engine.store.lookup("notifications", [("to", username)], newest=False).docs]


def inbox(engine: Engine, username: str) -> list[int]:
    return [c.id for c in engine.inbox(u(engine, username))]


# --------------------------------------------------------------------------- delegation

def test_a_delegate_acts_on_the_delegators_task_in_their_own_name(eng: Engine, clock: FrozenClock):
    cid = start(eng)
    wf_secretary = u(eng, "secretary_wf")  # 文峰社区's secretary: 徽州人家社区's case is out of their reach
    with pytest.raises(NotFound):
        eng.get(cid, wf_secretary)
    assert not eng.may_see_file(eng.get(cid), wf_secretary, "photo-1.jpg")
    assert cid not in inbox(eng, "secretary_wf")
    delegation.add(eng, u(eng, "secretary"), "secretary_wf", "2026-11-28", "2026-11-30")
    assert cid not in inbox(eng, "secretary_wf")  # not begun yet
    clock.advance(days=1)
    assert eng.delegators(u(eng, "secretary_wf")) == [u(eng, "secretary")]
    assert cid in inbox(eng, "secretary_wf")  # the union of their own inbox and the delegator's
    assert eng.read.work.counts(u(eng, "secretary_wf")) == {"handover": 1}  # the inbox page's counts too
    case = eng.get(cid, u(eng, "secretary_wf"))
    assert [t.id for t in eng.available_transitions(case, u(eng, "secretary_wf"))] == ["pass"]
    assert [d.username for d in eng.acting_for(case, u(eng, "secretary_wf"))] == ["secretary"]
    assert eng.may_see_file(case, u(eng, "secretary_wf"), "photo-1.jpg")  # the task's uploads come with it
    version = case.version
    done = eng.fire(cid, "pass", u(eng, "secretary_wf"), expected_version=version)
    entry = done.history[-1]
    assert (entry["by"], entry["by_name"], entry["on_behalf_of"], entry["on_behalf_of_name"]) == (
        "secretary_wf", "孔亮", "secretary", "周伟")
    assert done.version == version + 1 and done.state == "cosign"
    assert "delegated" in notes(eng, "secretary")  # the delegator hears of it
    # the case is no longer the delegator's task: the delegate no longer sees it
    with pytest.raises(NotFound):
        eng.get(cid, u(eng, "secretary_wf"))
    # after the last day the delegation is over
    other = start(eng)
    assert other in inbox(eng, "secretary_wf")
    clock.advance(days=3)
    assert other not in inbox(eng, "secretary_wf") and eng.delegators(u(eng, "secretary_wf")) == []
    with pytest.raises(NotFound):
        eng.fire(other, "pass", u(eng, "secretary_wf"))


def test_a_delegate_signs_the_delegators_approval_seat_besides_their_own(eng: Engine):
    cid = start(eng)
    eng.fire(cid, "pass", u(eng, "secretary"))
    delegation.add(eng, u(eng, "street"), "street2", "2026-11-27", "2026-11-27")
    eng.approve(cid, u(eng, "street2"), "approve", "同意")  # their own seat first
    assert cid in inbox(eng, "street2")  # still: street's seat waits
    case = eng.approve(cid, u(eng, "street2"), "approve", "代郑军同意")
    acts = [(h["action"], h["by"], h.get("on_behalf_of")) for h in case.history if h["action"] == "approve"]
    assert acts == [("approve", "street2", None), ("approve", "street2", "street")]
    seats = {s["users"][0]: s for s in case.approvals["cosign"]["seats"]}
    assert seats["street"]["by"] == "street" and seats["street"]["delegate_name"] == "何平"
    assert seats["street2"]["delegate_name"] is None and seats["street3"]["decision"] is None
    with pytest.raises(NotAllowed):  # both seats decided: nothing left for street2, in either name
        eng.approve(cid, u(eng, "street2"), "approve")
    assert eng.approve(cid, u(eng, "street3"), "approve").state == "done"


def test_the_delegation_rules(eng: Engine, clock: FrozenClock):
    me = u(eng, "secretary")

    def refused(delegate: str, start: str, end: str) -> dict[str, Any]:
        with pytest.raises(SubmissionError) as info:
            delegation.add(eng, me, delegate, start, end)
        return {k: v[0]["zh"] for k, v in info.value.errors.items()}

    assert "自己" in refused("secretary", "2026-11-27", "2026-11-28")["delegate"]
    assert "角色" in refused("grid", "2026-11-27", "2026-11-28")["delegate"]  # holds none of my roles
    assert "受托人" in refused("nobody", "2026-11-27", "2026-11-28")["delegate"]
    assert "早于" in refused("secretary2", "2026-11-28", "2026-11-27")["to"]
    assert "已过" in refused("secretary2", "2026-11-01", "2026-11-26")["to"]
    assert "日期" in refused("secretary2", "next week", "2026-11-28")["from"]
    with eng.store.transaction() as tx:  # a deactivated colleague cannot take over
        doc = tx.first(USER_TABLE, ("username", "secretary_wf"))
        tx.replace(USER_TABLE, doc["id"], {**doc, "active": False})
    assert "停用" in refused("secretary_wf", "2026-11-27", "2026-11-28")["delegate"]
    first = delegation.add(eng, me, "secretary2", "2026-11-27", "2026-11-29")
    assert "重叠" in refused("secretary2", "2026-11-29", "2026-12-02")["from"]
    assert [d["status"] for d in delegation.of(eng, "secretary")] == ["active"]
    assert eng.delegators(u(eng, "secretary2")) == [u(eng, "secretary")]
    assert delegation.end(eng, me, first["id"]) and not delegation.end(eng, me, first["id"])
    assert eng.delegators(u(eng, "secretary2")) == []
    assert [d["status"] for d in delegation.of(eng, "secretary")] == ["ended"]
    # the index holds only delegations not ended
    assert eng.store.lookup("users", [("delegate", "secretary2")]).docs == []
    rows = delegation.all_in(eng, list(eng.definitions.org.below("huizhou")))
    assert [(r["delegator"], r["delegate"], r["status"]) for r in rows] == [("secretary", "secretary2", "ended")]


# --------------------------------------------------------------------------- urge

def test_urging_tells_whom_the_case_waits_for_once_per_period(eng: Engine, clock: FrozenClock):
    cid = start(eng)
    before = eng.get(cid)
    case = eng.urge(cid, u(eng, "staff"), "请尽快审核", expected_version=before.version)
    entry = case.history[-1]
    assert (entry["action"], entry["from"], entry["to"], entry["by"]) == ("urge", "review", "review", "staff")
    assert entry["urged"] == ["周伟", "钱刚"] and entry["comment"] == "请尽快审核"
    assert case.version == before.version + 1
    assert case.timers == before.timers and case.entered_at == before.entered_at  # the deadline runs on
    assert notes(eng, "secretary") == ["urge"] and notes(eng, "secretary2") == ["urge"]
    with pytest.raises(TransitionError) as info:  # a second urge within the period (urge: {every: 12h})
        eng.urge(cid, u(eng, "staff"))
    assert "2026-11-27 21:00 后可再次催办" in info.value.message["zh"]
    assert eng.urge_status(eng.get(cid), u(eng, "staff"))["next"] == "2026-11-27 21:00"
    clock.advance(hours=12)
    assert eng.urge_status(eng.get(cid), u(eng, "staff"))["next"] == ""
    eng.urge(cid, u(eng, "street"))  # sees the case (their role acts in the workflow) and is not asked now
    assert notes(eng, "secretary") == ["urge", "urge"]
    with pytest.raises(NotAllowed):  # the one it waits for does not urge themselves
        eng.urge(cid, u(eng, "secretary"))
    with pytest.raises(NotFound):  # another community's staff do not see it
        eng.urge(cid, u(eng, "staff2"))


def test_urge_false_turns_urging_off_and_the_approvers_still_to_act_are_urged(eng: Engine):
    quiet = start(eng, "quiet")
    assert eng.definitions.workflows["quiet"].urge is None
    with pytest.raises(TransitionError):
        eng.urge(quiet, u(eng, "staff"))
    assert eng.urge_status(eng.get(quiet), u(eng, "staff")) is None
    cid = start(eng)
    eng.fire(cid, "pass", u(eng, "secretary"))
    eng.approve(cid, u(eng, "street"), "approve")
    case = eng.urge(cid, u(eng, "staff"))
    assert case.history[-1]["urged"] == ["何平", "施琳"]  # not street, who has signed
    assert eng.urge_status(case, u(eng, "district"))["nobody"] is False
    eng.approve(cid, u(eng, "street2"), "approve")
    eng.approve(cid, u(eng, "street3"), "approve")
    assert eng.get(cid).state == "done" and eng.urge_status(eng.get(cid), u(eng, "staff")) is None  # final
    lone = start(eng)
    with eng.store.transaction() as tx:  # both secretaries of the community leave: nobody to remind
        for name in ("secretary", "secretary2"):
            doc = tx.first(USER_TABLE, ("username", name))
            tx.replace(USER_TABLE, doc["id"], {**doc, "active": False})
    assert eng.urge_status(eng.get(lone), u(eng, "staff"))["nobody"] is True
    with pytest.raises(TransitionError) as info:
        eng.urge(lone, u(eng, "staff"))
    assert "没有可催办的办理人" in info.value.message["zh"]


# --------------------------------------------------------------------------- cc

def test_people_copied_in_see_the_case_and_cannot_act(eng: Engine):
    cid = start(eng)
    version = eng.get(cid).version
    case = eng.copy_in(cid, u(eng, "staff"), ["grid", "volunteer"], expected_version=version)
    assert case.cc == ["grid", "volunteer"] and case.version == version + 1
    assert case.history[-1]["label"]["zh"] == "抄送：赵敏、李强" and case.history[-1]["cc"] == ["赵敏", "李强"]
    grid = u(eng, "grid")
    assert eng.get(cid, grid).id == cid and "cc" in eng.roles_for(case, grid)
    assert [c.id for c in eng.read.copied_to(grid).items] == [cid]  # the 抄送我的 index
    assert [d["id"] for d in eng.store.lookup(CASE_INDEX, [("cc", "grid")]).docs] == [cid]
    assert notes(eng, "grid") == ["cc"]
    assert eng.available_transitions(case, grid) == [] and not eng.may_copy_in(case, grid)
    assert not eng.may_see_sensitive(case, grid)
    with pytest.raises(NotAllowed):
        eng.fire(cid, "pass", grid)
    with pytest.raises(NotAllowed):  # nor copy others in: they are not acting on it
        eng.copy_in(cid, grid, ["party"])
    assert cid not in inbox(eng, "grid")  # nothing waits for them
    with pytest.raises(SubmissionError):  # another community's people cannot be given the case
        eng.copy_in(cid, u(eng, "staff"), ["grid_wf"])
    with pytest.raises(SubmissionError):  # copied in already
        eng.copy_in(cid, u(eng, "secretary"), ["grid"])
    with pytest.raises(NotAllowed):  # street sees the case but is not acting on it now
        eng.copy_in(cid, u(eng, "street"), ["party"])
    assert [p["username"] for p in eng.cc_candidates(eng.get(cid), "刘")] == ["party"]
    assert eng.cc_candidates(eng.get(cid), "冯") == []  # 冯磊 of 文峰社区 is not offered


def test_a_transition_copies_people_in_by_itself(eng: Engine):
    cid = start(eng)
    with pytest.raises(NotFound):
        eng.get(cid, u(eng, "district"))
    case = eng.fire(cid, "pass", u(eng, "secretary"))
    assert case.cc == ["district"] and case.history[-1]["cc"] == ["黄蕾"]
    assert eng.get(cid, u(eng, "district")).id == cid and "cc" in notes(eng, "district")


# --------------------------------------------------------------------------- one path

@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str, str, str]]:
    """Every call of ``transition.take`` (the real one, observed): (case id, edge kind, edge via, actor)."""
    from engine import transition

    calls: list[tuple[int, str, str, str]] = []
    real = transition.take

    def observed(engine: Any, tx: Any, case: Any, edge: Any, actor: Any, step: Any = None) -> Any:
        calls.append((case.id, edge.kind, edge.via, actor.username))
        return real(engine, tx, case, edge, actor, step)
    monkeypatch.setattr(transition, "take", observed)
    return calls


def test_urges_copies_and_delegated_acts_all_go_through_take(eng: Engine, taken: list[tuple[int, str, str, str]]):
    cid = start(eng)
    delegation.add(eng, u(eng, "secretary"), "secretary_wf", "2026-11-27", "2026-11-27")
    eng.urge(cid, u(eng, "staff"))
    eng.copy_in(cid, u(eng, "staff"), ["grid"])
    eng.fire(cid, "pass", u(eng, "secretary_wf"))
    assert [t[1:] for t in taken if t[0] == cid] == [("urge", "urge", "staff"), ("cc", "cc", "staff"),
                                                     ("transition", "pass", "secretary_wf")]
    history = eng.get(cid).history
    assert [(h["action"], h["by"], h["from"], h["to"]) for h in history[1:]] == [
        ("urge", "staff", "review", "review"), ("cc", "staff", "review", "review"), ("pass", "secretary_wf", "review", "cosign")]
    assert eng.get(cid).version == 4  # each of the three a new version


# --------------------------------------------------------------------------- the pages

PAGE_USERS = [
    ("staff", "陈静", ["community_staff"], "renjia"),
    ("secretary", "周伟", ["community_secretary"], "renjia"),
    ("secretary_b", "钱刚", ["community_secretary"], "renjia"),
    ("secretary2", "孔亮", ["community_secretary"], "wenfeng"),
    ("street", "郑军", ["street_evaluator"], "huizhou-jie"),
    ("grid", "赵敏", ["grid_worker"], "renjia-g1"),
    ("resident", "王芳", ["resident"], "renjia-g1"),
    ("admin", "管理员", ["admin"], "huizhou"),
]
FUNDS = {"project": "楼道照明改造", "community": "renjia", "amount": "8600", "purpose": "为1号楼更换声控灯。"}


@pytest.fixture
def app(tmp_path: Path, clock: FrozenClock) -> Any:
    yield from shipped_app(tmp_path, clock, PAGE_USERS)


def version_of(page: str) -> str:
    return re.search(r'name="version" value="(\d+)"', page).group(1)


def test_delegation_on_the_account_page_then_the_delegate_approves(app: Any, who: Any):
    cid = started(who("staff").post("/start/service_funds", FUNDS))
    me = who("secretary")
    page = me.get("/account?delegate_q=孔").get_data(as_text=True)
    assert 'value="secretary2"' in page and "孔亮" in page
    assert 'value="grid"' not in me.get("/account?delegate_q=赵").get_data(as_text=True)  # no shared role
    refused = me.post("/account/delegations", {"delegate": "secretary2", "from": "2026-11-28", "to": "2026-11-27"},
                      page="/account")
    assert refused.status_code == 422 and "结束日期不能早于开始日期" in refused.get_data(as_text=True)
    done = me.post("/account/delegations", {"delegate": "secretary2", "from": "2026-11-27", "to": "2026-11-29"},
                   page="/account")
    assert done.status_code == 302
    assert "孔亮" in me.get("/account").get_data(as_text=True)
    own = re.search(rf'<li class="card[^"]*">.*?#{cid} .*?</li>', me.get("/").get_data(as_text=True), re.S)
    assert own and "代" not in own.group(0)  # the delegator's own card, kept rendered (engine.web.fragments)
    other = who("secretary2")
    card = re.search(rf'<li class="card[^"]*">.*?#{cid} .*?</li>', other.get("/").get_data(as_text=True), re.S)
    assert card and "代 周伟" in card.group(0)
    page = other.get(f"/cases/{cid}").get_data(as_text=True)
    assert "您受 周伟 委托办理此事项" in page and 'action="/cases/%d/approve"' % cid in page
    answer = other.post(f"/cases/{cid}/approve", {"decision": "approve", "comment": "代为审核", "version": version_of(page)},
                        page=f"/cases/{cid}")
    assert answer.status_code == 302 and case(app, cid)["state"] == "street_cosign"
    history = who("staff").get(f"/cases/{cid}").get_data(as_text=True)
    assert "孔亮（代 周伟）" in history
    admin_page = who("admin").get("/admin/delegations").get_data(as_text=True)
    assert "周伟" in admin_page and "孔亮" in admin_page
    assert who("staff").get("/admin/delegations").status_code == 403
    # ended early: the delegate no longer sees the delegator's next task
    entry = app.extensions["civicflow"].read.user_doc("secretary")["delegations"][0]
    assert me.post(f"/account/delegations/{entry['id']}/end", {}, page="/account").status_code == 302
    second = started(who("staff").post("/start/service_funds", {**FUNDS, "project": "健身器材"}))
    assert f"#{second}" not in other.get("/").get_data(as_text=True)
    assert other.get(f"/cases/{second}").status_code == 404


def test_urge_and_cc_on_the_case_page(app: Any, who: Any):
    cid = started(who("staff").post("/start/service_funds", FUNDS))
    staff = who("staff")
    page = staff.get(f"/cases/{cid}").get_data(as_text=True)
    assert 'action="/cases/%d/urge"' % cid in page
    assert staff.post(f"/cases/{cid}/urge", {"version": version_of(page)}, page=f"/cases/{cid}").status_code == 302
    page = staff.get(f"/cases/{cid}").get_data(as_text=True)
    assert "已催办" in page and "后可再次催办" in page and 'action="/cases/%d/urge"' % cid not in page
    again = staff.post(f"/cases/{cid}/urge", {}, page=f"/cases/{cid}")
    assert again.status_code == 302 and "2026-11-28 09:00 后可再次催办" in staff.get(f"/cases/{cid}").get_data(as_text=True)
    assert [d["kind"] for d in app.extensions["civicflow"].store.search(NOTIFICATIONS) if d["to"] == "secretary"] == [
        "approval", "urge"]
    # cc: find by name, copy in; the person copied in sees the case with no action button and is refused
    page = staff.get(f"/cases/{cid}?cc_q=赵").get_data(as_text=True)
    assert 'name="cc" value="grid"' in page
    assert staff.post(f"/cases/{cid}/cc", {"cc": "grid", "version": version_of(page)},
                      page=f"/cases/{cid}").status_code == 302
    grid = who("grid")
    page = grid.get(f"/cases/{cid}").get_data(as_text=True)
    assert "抄送：" in page and "/approve" not in page and "/do/" not in page and "/cc\"" not in page
    assert f"#{cid}" in grid.get("/copied").get_data(as_text=True)
    assert "抄送我的 (1)" in grid.get("/").get_data(as_text=True)
    refused = grid.post(f"/cases/{cid}/approve", {"decision": "approve"}, page=f"/cases/{cid}")
    assert refused.status_code == 403
    assert grid.post(f"/cases/{cid}/cc", {"cc": "resident"}, page=f"/cases/{cid}").status_code == 403
    # someone without rights: another community's secretary neither sees nor urges it
    assert who("secretary2").post(f"/cases/{cid}/urge", {}, page="/").status_code == 404


def test_the_new_forms_need_their_csrf_token(app: Any, who: Any):
    cid = started(who("staff").post("/start/service_funds", FUNDS))
    client = who("staff").client
    for url, data in ((f"/cases/{cid}/urge", {}), (f"/cases/{cid}/cc", {"cc": "grid"}),
                      ("/account/delegations", {"delegate": "secretary_b", "from": "2026-11-27", "to": "2026-11-28"}),
                      ("/account/delegations/1/end", {})):
        assert client.post(url, data=data).status_code == 400, url
    assert case(app, cid)["version"] == 1 and case(app, cid).get("cc", []) == []
