"""The engine at run time, against every store: the fixed transition order, rollback, access, conflicts."""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from engine.actions import ActionRegistry
from engine.clock import FrozenClock
from engine.errors import NotAllowed, NotFound, StaleVersion, SubmissionError, TransitionError
from engine.loader import load_definitions
from engine.runtime import Engine
from engine.store import open_store
from engine.users import User
from tests.conftest import STORES, definitions_dir, store_location

ROOT = Path(__file__).resolve().parents[1]

RESIDENT = User("resident", "王芳", ("resident",), "renjia-g1")
STAFF = User("staff", "陈静", ("community_staff",), "renjia")
STAFF_ELSEWHERE = User("staff2", "吴婷", ("community_staff",), "wenfeng")
STREET = User("street", "郑军", ("street_evaluator",), "huizhou-jie")
REQUEST = {"subject": "活动室椅子", "items": [{"item": "椅子", "qty": "4", "price": "20"}], "amount": "80",
           "unit": "renjia"}


@pytest.fixture(params=STORES)
def engine(request: pytest.FixtureRequest, tmp_path: Path, registry: ActionRegistry) -> Engine:
    store = open_store(store_location(request.param, request, tmp_path))
    defs = load_definitions(definitions_dir(tmp_path), registry)
    yield Engine(defs, store, registry, clock=FrozenClock("2026-11-27T09:00:00"))
    store.close()


def test_start_records_the_case(engine: Engine):
    case = engine.start("purchase", RESIDENT, REQUEST)
    assert case.id == 1 and case.state == "open" and case.version == 1
    assert case.title == "活动室椅子" and case.org_unit == "renjia" and case.created_by == "resident"
    assert case.data["items"] == [{"item": "椅子", "qty": 4, "price": 20}]
    assert case.waiting_for == ["community_staff"]
    assert case.history[0]["action"] == "start" and case.history[0]["to"] == "open"
    assert case.history[0]["at"] == "2026-11-27T09:00:00+08:00"
    assert engine.get(1).to_doc() == case.to_doc()


def test_transition_order_and_history(engine: Engine, log: list):
    case = engine.start("purchase", RESIDENT, REQUEST)
    done = engine.fire(case.id, "approve", STAFF, {"score": "90"}, comment="同意", expected_version=1)
    # before-actions see the old state and data; after-actions the new state, merged data and history entry
    assert log[0] == ("before", "open", {**case.data}, 1)
    assert log[1][0:2] == ("after", "approved") and log[1][2]["score"] == 90 and log[1][3] == 2
    assert done.state == "approved" and done.version == 2 and done.waiting_for == []
    entry = done.history[-1]
    assert entry["by"] == "staff" and entry["from"] == "open" and entry["to"] == "approved"
    assert entry["comment"] == "同意" and entry["changes"] == [{"field": "score", "old": None, "new": 90}]
    assert engine.store.search("audit") == [{"case": 1, "by": "staff", "id": 1}]


def test_failing_after_action_leaves_nothing_behind(engine: Engine):
    case = engine.start("purchase", RESIDENT, REQUEST)
    with pytest.raises(RuntimeError):
        engine.fire(case.id, "explode", STAFF)
    stored = engine.get(case.id)
    assert stored.state == "open" and stored.version == 1 and len(stored.history) == 1
    assert engine.store.search("audit") == []  # the before-action's write was rolled back too


def test_guard_decides_which_transitions_are_offered(engine: Engine):
    small = engine.start("purchase", RESIDENT, REQUEST)
    big = engine.start("purchase", RESIDENT, {**REQUEST, "amount": "500"})
    assert [t.id for t in engine.available_transitions(small, STAFF)] == ["approve", "explode"]
    assert [t.id for t in engine.available_transitions(big, STAFF)] == ["escalate", "explode"]
    with pytest.raises(TransitionError) as err:
        engine.fire(big.id, "approve", STAFF, {"score": "90"})
    assert "条件未满足" in err.value.message["zh"]
    escalated = engine.fire(big.id, "escalate", STAFF)
    assert escalated.waiting_for == ["street_evaluator"]
    assert engine.fire(big.id, "decide", STREET).state == "approved"


def test_roles_and_org_scope(engine: Engine):
    case = engine.start("purchase", RESIDENT, REQUEST)
    with pytest.raises(NotAllowed):
        engine.fire(case.id, "approve", RESIDENT, {"score": "90"})
    with pytest.raises(NotFound):  # another community's staff do not even see it
        engine.fire(case.id, "approve", STAFF_ELSEWHERE, {"score": "90"})
    assert engine.cases(STAFF_ELSEWHERE) == [] and engine.inbox(STAFF_ELSEWHERE) == []
    assert [c.id for c in engine.inbox(STAFF)] == [case.id]
    assert engine.inbox(RESIDENT) == []  # waiting for staff, not for the creator
    with pytest.raises(NotAllowed):
        engine.start("purchase", STAFF, REQUEST)


def test_step_form_errors_name_their_fields(engine: Engine):
    with pytest.raises(SubmissionError) as err:
        engine.start("purchase", RESIDENT, {"subject": "", "items": [{"item": "", "qty": "0", "price": "x"}] * 4,
                                            "amount": "-1", "urgent": True, "unit": "renjia-g1"})
    errors = err.value.errors
    assert set(errors) >= {"subject", "items", "items.0.item", "items.0.qty", "items.0.price", "amount", "reason", "unit"}
    assert errors["items"][0]["zh"] == "最多 3 行"
    assert errors["items.0.qty"][0]["zh"] == "不能小于 1"
    case = engine.start("purchase", RESIDENT, REQUEST)
    with pytest.raises(SubmissionError) as err:
        engine.fire(case.id, "approve", STAFF, {"score": "101"})
    assert err.value.errors == {"score": [{"zh": "不能大于 100", "en": "Must be at most 100."}]}
    assert engine.get(case.id).state == "open"


def test_stale_version_is_refused(engine: Engine):
    case = engine.start("purchase", RESIDENT, {**REQUEST, "amount": "500"})
    engine.fire(case.id, "escalate", STAFF, expected_version=1)
    with pytest.raises(StaleVersion) as err:
        engine.fire(case.id, "explode", STAFF, expected_version=1)
    assert "changed by someone else" in err.value.message["en"]


def test_concurrent_transitions_exactly_one_wins(engine: Engine):
    case = engine.start("purchase", RESIDENT, REQUEST)
    results: list[str] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        try:
            engine.fire(case.id, "approve", STAFF, {"score": "80"}, expected_version=1)
            results.append("won")
        except TransitionError:
            results.append("refused")

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["refused"] * 7 + ["won"]
    stored = engine.get(case.id)
    assert stored.version == 2 and [h["action"] for h in stored.history] == ["start", "approve"]


def test_sensitive_changes_are_masked_in_history(tmp_path: Path):
    defs = load_definitions(ROOT)
    engine = Engine(defs, open_store(None), clock=FrozenClock())
    values = {"name": "王芳", "phone": "13812345678", "id_number": "11010519491231002X", "skills": ["it"],
              "available_times": ["weekend"], "grid": "renjia-g1", "pledge": True}
    case = engine.start("volunteer_registration", RESIDENT, values)
    engine.fire(case.id, "return_for_changes", STAFF, comment="电话有误")
    case = engine.fire(case.id, "resubmit", RESIDENT, {**values, "phone": "13900001111"})
    assert case.history[-1]["changes"] == [{"field": "phone", "old": "138****5678", "new": "139****1111", "masked": True}]


def test_engine_core_imports_neither_flask_nor_tinydb_nor_psycopg():
    code = ("import sys, engine.spec, engine.loader, engine.expressions, engine.forms, engine.runtime, engine.cases;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'tinydb', 'psycopg')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


CONTACT_FORM = """\
id: contact_note
version: 1
title: 联系登记
fields:
  - {id: note, type: text, label: 说明, required: true}
  - {id: grid, type: orgunit, level: grid, label: 网格, required: true}
  - {id: phone, type: phone, label: 电话, sensitive: true}
  - id: people
    type: repeat
    label: 相关人员
    fields:
      - {id: name, type: text, label: 姓名, required: true}
      - {id: phone, type: phone, label: 电话, sensitive: true}
"""
CONTACT_WORKFLOW = """\
id: contact
version: 1
title: 联系
start: {form: contact_note, roles: [resident], org_unit_field: grid, title: note}
roles: [resident, community_staff, partner_unit]
initial: submitted
states:
  submitted:
    title: 待派单
    transitions:
      - {id: dispatch, to: handling, label: 派单, roles: [community_staff], assign: {choose: partner_unit}}
  handling:
    title: 处理中
    transitions:
      - {id: update, to: done, label: 更新, roles: [assignee], form: contact_note}
  done:
    title: 已办结
    final: true
"""


def test_a_step_by_someone_who_may_not_see_sensitive_values_keeps_them(tmp_path: Path, registry: ActionRegistry):
    """The partner assigned to a case gets its step form without the sensitive values (they may not see them); what
    they leave empty keeps what is stored - nothing is lost - while what they type is taken."""
    root = definitions_dir(tmp_path)
    (root / "forms" / "contact_note.yaml").write_text(CONTACT_FORM, encoding="utf-8")
    (root / "workflows" / "contact.yaml").write_text(CONTACT_WORKFLOW, encoding="utf-8")
    engine = Engine(load_definitions(root, registry), open_store(None), registry, clock=FrozenClock())
    partner = User("partner", "供电公司", ("partner_unit",), "renjia")
    from engine.users import USERS
    with engine.store.transaction() as tx:
        for u in (RESIDENT, STAFF, partner):
            tx.insert(USERS, u.to_doc())
    case = engine.start("contact", RESIDENT, {"note": "路灯坏了", "grid": "renjia-g1", "phone": "13812345678",
                                              "people": [{"name": "王芳", "phone": "13900001111"}]})
    case = engine.fire(case.id, "dispatch", STAFF, assignees=["partner"])
    assert engine.can_see(case, partner) and not engine.may_see_sensitive(case, partner)
    case = engine.fire(case.id, "update", partner, {"note": "已修复", "grid": "renjia-g1",
                                                    "people": [{"name": "王芳"}, {"name": "李师傅", "phone": "13700002222"}]})
    assert case.data["note"] == "已修复"
    assert case.data["phone"] == "13812345678"
    assert case.data["people"] == [{"name": "王芳", "phone": "13900001111"}, {"name": "李师傅", "phone": "13700002222"}]


def test_the_step_page_of_someone_who_may_not_see_sensitive_values_leaves_them_out(tmp_path: Path,
                                                                                  registry: ActionRegistry):
    """Over HTTP: the assigned partner's step form holds no sensitive value (nor the row's), yet after they send it
    back as it came, the stored values are all still there."""
    from engine.web import create_app
    from tests.conftest import Browser, act, add_users

    root = definitions_dir(tmp_path)
    (root / "forms" / "contact_note.yaml").write_text(CONTACT_FORM, encoding="utf-8")
    (root / "workflows" / "contact.yaml").write_text(CONTACT_WORKFLOW, encoding="utf-8")
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "STORE": str(tmp_path / "cf.json"),
                      "UPLOADS": str(tmp_path / "up"), "DEFINITIONS": str(root), "ACTIONS": registry},
                     start_timers=False)
    try:
        add_users(app.extensions["civicflow"].store, [("resident", "王芳", ["resident"], "renjia-g1"),
                                                      ("staff", "陈静", ["community_staff"], "renjia"),
                                                      ("partner", "供电公司", ["partner_unit"], "renjia")])
        engine = app.extensions["civicflow"]
        case = engine.start("contact", RESIDENT, {"note": "路灯坏了", "grid": "renjia-g1", "phone": "13812345678",
                                                  "people": [{"name": "王芳", "phone": "13900001111"}]})
        engine.fire(case.id, "dispatch", STAFF, assignees=["partner"])
        partner = Browser(app).login("partner")
        page = partner.get(f"/cases/{case.id}/do/update").get_data(as_text=True)
        assert partner.last.status_code == 200 and 'name="note" value="路灯坏了"' in page
        assert "13812345678" not in page and "13900001111" not in page
        response = act(partner, case.id, "update", note="已修复", grid="renjia-g1", **{"people-0-name": "王芳"})
        assert response.status_code == 302, response.get_data(as_text=True)[:2000]
        data = engine.get(case.id).data
        assert data["note"] == "已修复" and data["phone"] == "13812345678"
        assert data["people"] == [{"name": "王芳", "phone": "13900001111"}]
    finally:
        app.extensions["civicflow"].store.close()
