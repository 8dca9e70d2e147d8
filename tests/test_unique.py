"""Uniqueness across cases (``unique:``, engine/mechanics/unique.py) on the engine, against every store: a taken
set of values refuses a start form, a step form and a step without a form; the message names the case holding
them (its title only to someone who may see it); leaving the states frees them; concurrent submissions never
both win; the claims are rebuilt from the cases with the read model."""
from __future__ import annotations

import datetime as dt
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from engine.clock import FrozenClock
from engine.errors import DefinitionError, SubmissionError
from engine.loader import load_definitions
from engine.mechanics.unique import CLAIM_INDEX
from engine.runtime import Engine
from engine.spec import FieldSpec
from engine.store import open_store
from engine.users import User
from engine.web import create_app
from tests.conftest import ROOT, STORES, Browser, add_users, new_id_number, store_location

PEOPLE = [
    ("resident", "王芳", ["resident"], "renjia-g1"),
    ("resident2", "马丽", ["resident"], "renjia-g1"),
    ("resident3", "高建国", ["resident"], "renjia-g2"),
    ("staff", "陈静", ["community_staff"], "renjia"),
    ("secretary", "周伟", ["community_secretary"], "renjia"),
]
U = {name: User(name, full, tuple(roles), unit) for name, full, roles, unit in PEOPLE}

BOOKING_FORM = """\
id: room_booking
version: 1
title: {zh: 活动室预约, en: Room booking}
fields:
  - {id: room, type: text, label: {zh: 活动室, en: Room}, required: true}
  - {id: date, type: date, label: {zh: 日期, en: Date}, required: true}
  - {id: slot, type: select, label: {zh: 时段, en: Slot}, required: true,
     choices: [{value: am, label: 上午}, {value: pm, label: 下午}]}
  - {id: purpose, type: text, label: {zh: 用途, en: Purpose}}
"""
CHANGE_FORM = """\
id: room_booking_change
version: 1
title: {zh: 改期, en: Reschedule}
fields:
  - {id: date, type: date, label: {zh: 日期, en: Date}, required: true}
  - {id: slot, type: select, label: {zh: 时段, en: Slot}, required: true,
     choices: [{value: am, label: 上午}, {value: pm, label: 下午}]}
"""
BOOKING = """\
id: room_booking
version: 1
title: {zh: 活动室预约, en: Room booking}
start: {form: room_booking, roles: [resident], title: "room ~ ' ' ~ date ~ ' ' ~ slot"}
roles: [resident, community_staff]
initial: requested
states:
  requested:
    title: 待确认
    inbox: [community_staff]
    transitions:
      - {id: confirm, to: booked, label: 确认预约, roles: [community_staff]}
      - {id: cancel, to: cancelled, label: 取消, roles: [creator, community_staff]}
  booked:
    title: 已预约
    inbox: [creator]
    transitions:
      - {id: reschedule, to: booked, label: 改期, roles: [creator], form: room_booking_change}
      - {id: cancel, to: cancelled, label: 取消, roles: [creator, community_staff]}
      - {id: used, to: used, label: 已使用, roles: [community_staff]}
  used: {title: 已使用, final: true}
  cancelled: {title: 已取消, final: true}
unique:
  - fields: [room, date, slot]
    while: [booked]
    message: {zh: 该时段已被预约, en: This slot is already booked}
"""


def booking_dir(tmp_path: Path, workflow: str = BOOKING) -> Path:
    root = tmp_path / "defs"
    shutil.copytree(ROOT / "org", root / "org")
    (root / "forms").mkdir()
    (root / "workflows").mkdir()
    (root / "forms" / "room_booking.yaml").write_text(BOOKING_FORM, encoding="utf-8")
    (root / "forms" / "room_booking_change.yaml").write_text(CHANGE_FORM, encoding="utf-8")
    (root / "workflows" / "room_booking.yaml").write_text(workflow, encoding="utf-8")
    return root


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    store = open_store(store_location(request.param, request, tmp_path, "unique.json"))
    add_users(store, PEOPLE)
    yield store
    store.close()


@pytest.fixture
def rooms(store: Any, tmp_path: Path) -> Engine:
    return Engine(load_definitions(booking_dir(tmp_path)), store, clock=FrozenClock("2026-11-27T09:00:00"))


@pytest.fixture
def shipped(store: Any) -> Engine:
    return Engine(load_definitions(ROOT), store, clock=FrozenClock("2026-11-27T09:00:00"))


def book(engine: Engine, who: str = "resident", room: str = "活动室 A", date: str = "2026-11-28", slot: str = "am") -> int:
    return engine.start("room_booking", U[who], {"room": room, "date": date, "slot": slot, "purpose": "书法班"}).id


def refusal(info: pytest.ExceptionInfo[SubmissionError]) -> tuple[str, dict[str, Any]]:
    (where, messages), = info.value.errors.items()
    return where, messages[0]


# --------------------------------------------------------------------------- a step without a form, claims freed

def test_a_taken_slot_refuses_the_step_and_names_the_case_that_holds_it(rooms: Engine):
    first, second = book(rooms), book(rooms, "resident2", room=" 活动室  a ")  # the same room, typed loosely
    rooms.fire(first, "confirm", U["staff"])
    with pytest.raises(SubmissionError) as info:
        rooms.fire(second, "confirm", U["staff"])
    where, message = refusal(info)
    assert where == ""  # no form: above the page
    assert message == {"zh": f"该时段已被预约（#{first} 活动室 A 2026-11-28 am）",
                       "en": f"This slot is already booked (#{first} 活动室 A 2026-11-28 am)", "case": first}
    assert rooms.get(second).state == "requested" and rooms.get(second).version == 1  # nothing changed
    other = book(rooms, "resident2", slot="pm")  # another slot is free
    rooms.fire(other, "confirm", U["staff"])
    rooms.fire(first, "cancel", U["resident"])  # leaving the states frees the slot
    rooms.fire(second, "confirm", U["staff"])
    third = book(rooms, "resident3")
    rooms.fire(second, "used", U["staff"])  # a final state outside 'while' frees it too
    rooms.fire(third, "confirm", U["staff"])
    assert rooms.get(third).state == "booked"
    holders = rooms.store.lookup(CLAIM_INDEX, [("claim", "room_booking", "room+date+slot", "活动室 a", "2026-11-28", "am")])
    assert [d["id"] for d in holders.docs] == [third]


def test_a_step_form_is_refused_under_its_field_keeping_what_was_typed_and_hiding_what_is_not_theirs(rooms: Engine):
    mine, theirs = book(rooms), book(rooms, "resident3", date="2026-11-29")
    rooms.fire(mine, "confirm", U["staff"])
    rooms.fire(theirs, "confirm", U["staff"])
    typed = {"date": "2026-11-29", "slot": "am"}
    with pytest.raises(SubmissionError) as info:
        rooms.fire(mine, "reschedule", U["resident"], typed)
    where, message = refusal(info)
    assert where == "date" and info.value.values == typed  # the first of the rule's fields in the step form
    # the resident may not see the other resident's case: its number only, no title, no link
    assert message == {"zh": f"该时段已被预约（#{theirs}）", "en": f"This slot is already booked (#{theirs})"}
    assert rooms.get(mine).data["date"] == "2026-11-28"
    rooms.fire(mine, "reschedule", U["resident"], {"date": "2026-11-29", "slot": "pm"})
    rooms.fire(mine, "reschedule", U["resident"], {"date": "2026-11-29", "slot": "pm"})  # its own claim is no collision
    assert rooms.get(mine).data["slot"] == "pm"


def test_the_pages_show_the_refusal_of_a_step_without_a_form_with_a_link(tmp_path: Path):
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "STORE": str(tmp_path / "db.json"), "UPLOADS": str(tmp_path / "up"),
                      "DEFINITIONS": str(booking_dir(tmp_path)), "CLOCK": FrozenClock("2026-11-27T09:00:00")})
    add_users(app.extensions["civicflow"].store, PEOPLE)
    try:
        resident, staff = Browser(app).login("resident"), Browser(app).login("staff")
        fields = {"room": "活动室 A", "date": "2026-11-28", "slot": "am"}
        ids = []
        for _ in range(2):
            response = resident.post("/start/room_booking", fields)
            assert response.status_code == 302
            ids.append(int(response.headers["Location"].rsplit("/", 1)[1]))
        assert staff.post(f"/cases/{ids[0]}/do/confirm", {"version": "1"}, page=f"/cases/{ids[0]}").status_code == 302
        refused = staff.post(f"/cases/{ids[1]}/do/confirm", {"version": "1"}, page=f"/cases/{ids[1]}")
        page = refused.get_data(as_text=True)
        assert refused.status_code == 422
        assert (f'<p class="alert" role="alert"><a href="/cases/{ids[0]}">该时段已被预约（#{ids[0]} 活动室 A 2026-11-28 am）'
                '</a></p>') in page
    finally:
        app.extensions["civicflow"].store.close()


def test_a_move_the_clock_makes_into_a_taken_slot_is_skipped_and_noted(store: Any, tmp_path: Path):
    timed = BOOKING.replace("    inbox: [community_staff]\n    transitions:\n      - {id: confirm,",
                            "    inbox: [community_staff]\n    after: 1d -> auto_confirm\n    transitions:\n"
                            "      - {id: auto_confirm, to: booked, label: 自动确认, roles: [system]}\n      - {id: confirm,")
    clock = FrozenClock("2026-11-27T09:00:00")
    engine = Engine(load_definitions(booking_dir(tmp_path, timed)), store, clock=clock)
    first, second, other = book(engine), book(engine, "resident2"), book(engine, "resident3", slot="pm")
    engine.fire(first, "confirm", U["staff"])
    fired = engine.tick(clock() + dt.timedelta(days=2))
    assert [f["case"] for f in fired] == [other]  # the refused one is not counted as fired; the tick goes on
    assert engine.get(other).state == "booked"
    refused = engine.get(second)
    assert refused.state == "requested" and refused.history[-1]["action"] == "timer_skipped"
    assert refused.history[-1]["comment"] == f"该时段已被预约（#{first}）"
    assert engine.tick(clock() + dt.timedelta(days=3)) == []  # never retried


# --------------------------------------------------------------------------- the shipped volunteer registration

def application(name: str, id_number: str) -> dict[str, Any]:
    return {"name": name, "gender": "female", "phone": "13812345678", "id_number": id_number,
            "political_status": "masses", "skills": ["tutoring"], "available_times": ["weekend"],
            "grid": "renjia-g1", "pledge": True}


def test_one_volunteer_registration_per_id_number_on_start_and_on_resubmit(shipped: Engine):
    first = shipped.start("volunteer_registration", U["resident"], application("王芳", "11010519491231002X")).id
    typed = application("王芳", "11010519491231002x")
    with pytest.raises(SubmissionError) as info:
        shipped.start("volunteer_registration", U["resident2"], typed)
    where, message = refusal(info)
    assert where == "id_number" and info.value.values == typed
    assert message["zh"] == f"该身份证号码已提交过志愿者注册（#{first}）" and "case" not in message
    other = new_id_number()
    second = shipped.start("volunteer_registration", U["resident2"], application("马丽", other)).id
    shipped.fire(second, "return_for_changes", U["staff"], comment="请补充地址")
    with pytest.raises(SubmissionError) as info:  # the step form (resubmit) may not take the first one's number
        shipped.fire(second, "resubmit", U["resident2"], application("马丽", "11010519491231002X"))
    assert refusal(info)[0] == "id_number"
    shipped.fire(second, "resubmit", U["resident2"], application("马丽", other))
    shipped.fire(first, "reject", U["staff"], comment="信息不实")  # a rejected application frees the number
    third = shipped.start("volunteer_registration", U["resident3"], application("高建国", "11010519491231002X"))
    assert third.state == "submitted"


def test_concurrent_registrations_of_one_id_number_never_both_win(shipped: Engine):
    number = new_id_number()
    people = ["resident", "resident2", "resident3"] * 3
    outcomes: list[str] = []
    barrier = threading.Barrier(len(people))

    def register(name: str) -> None:
        barrier.wait()
        try:
            shipped.start("volunteer_registration", U[name], application(name, number))
            outcomes.append("won")
        except SubmissionError as exc:
            outcomes.append(exc.errors["id_number"][0]["zh"])

    threads = [threading.Thread(target=register, args=(n,)) for n in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("won") == 1
    assert all(o.startswith("该身份证号码已提交过志愿者注册（#") for o in outcomes if o != "won")
    holders = shipped.store.lookup(CLAIM_INDEX, [("claim", "volunteer_registration", "id_number", number)])
    assert holders.total == 1


def test_claims_are_rebuilt_from_the_cases_with_the_read_model(store: Any, tmp_path: Path):
    """Cases stored before the rule existed hold their values once a definition gains it (the index is part of
    the read model, keyed by the definitions, and is built from what is stored)."""
    without = BOOKING.split("unique:")[0]
    before = Engine(load_definitions(booking_dir(tmp_path / "a", without)), store, clock=FrozenClock("2026-11-27T09:00:00"))
    held = book(before)
    before.fire(held, "confirm", U["staff"])
    waiting = book(before, "resident2")
    assert store.lookup(CLAIM_INDEX, [("claim", "room_booking", "room+date+slot", "活动室 a", "2026-11-28", "am")]).total == 0
    after = Engine(load_definitions(booking_dir(tmp_path / "b")), store, clock=FrozenClock("2026-11-27T09:00:00"))
    with pytest.raises(SubmissionError) as info:
        after.fire(waiting, "confirm", U["staff"])
    assert refusal(info)[1]["case"] == held


# --------------------------------------------------------------------------- definitions and values

def test_a_rule_over_rows_or_files_is_a_definition_error(tmp_path: Path):
    root = booking_dir(tmp_path, BOOKING.replace("fields: [room, date, slot]", "fields: [room, photo]"))
    form = root / "forms" / "room_booking.yaml"
    form.write_text(form.read_text(encoding="utf-8") + "  - {id: photo, type: photo, label: 照片}\n", encoding="utf-8")
    with pytest.raises(DefinitionError) as info:
        load_definitions(root)
    (problem,) = info.value.problems
    assert (problem.file, problem.path, problem.message) == (
        "workflows/room_booking.yaml", "unique[0].fields[1]", "a photo field cannot be unique across cases")
    assert (problem.line, problem.col) == (24, 20) and "holding one value" in problem.hint


@pytest.mark.parametrize(("type_name", "typed", "same"), [
    ("text", " 活动室  A ", "活动室 a"),
    ("id_number", "11010519491231002x", "11010519491231002X"),
    ("phone", "138 1234-5678", "13812345678"),
    ("time", "9:30", "09:30"),
    ("multiselect", ["b", "a"], "a\x1fb"),
    ("integer", 4.0, "4"),
    ("checkbox", True, "1"),
])
def test_values_are_compared_the_way_people_mean_them(type_name: str, typed: Any, same: str):
    f = FieldSpec(id="x", type=type_name, label={"zh": "字段"})
    assert f.kind.claim_term(f, typed) == same
    assert f.kind.claim_term(f, "") is None and f.kind.claim_term(f, None) is None and f.kind.claim_term(f, []) is None
