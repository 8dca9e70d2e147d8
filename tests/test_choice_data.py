"""Choices that carry data (``data:`` on a choice, read with ``choice`` / ``choice_sum``) in a workflow, on every
store: a computed field, a guard and a dashboard figure read what the chosen choice carries."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from engine.clock import FrozenClock
from engine.errors import TransitionError
from engine.loader import load_definitions
from engine.runtime import Engine
from engine.store import open_store
from engine.users import User
from tests.conftest import ROOT, STORES, add_users, store_location

PEOPLE = [("resident", "王芳", ["resident"], "renjia-g1"), ("staff", "陈静", ["community_staff"], "renjia")]
U = {name: User(name, full, tuple(roles), unit) for name, full, roles, unit in PEOPLE}

CHOICES = """\
choice_lists:
  service_kinds:
    - {value: repair, label: {zh: 家电维修, en: Repairs}, data: {hours: 2, review: false, category: household}}
    - {value: legal, label: {zh: 法律咨询, en: Legal advice}, data: {hours: 1.5, review: true, category: advice}}
    - {value: haircut, label: {zh: 理发, en: Haircut}, data: {hours: 0.5, review: false, category: household}}
"""
FORM = """\
id: service_request
version: 1
title: 服务点单
fields:
  - {id: kind, type: select, label: 服务类别, choices: service_kinds, required: true}
  - {id: extras, type: multiselect, label: 另加服务, choices: service_kinds}
  - {id: hours, type: number, label: 预计时长, compute: "choice(kind, 'hours') + choice_sum(extras, 'hours')"}
"""
WORKFLOW = """\
id: service_request
version: 1
title: 服务点单
start: {form: service_request, roles: [resident], title: "kind ~ ' ' ~ hours ~ 'h'"}
roles: [resident, community_staff]
initial: ordered
states:
  ordered:
    title: 待派单
    inbox: [community_staff]
    transitions:
      - {id: dispatch, to: done, label: 直接派单, roles: [community_staff], guard: "not choice(kind, 'review')"}
      - {id: review, to: done, label: 审核后派单, roles: [community_staff]}
  done: {title: 已派单, final: true}
metrics:
  - {id: household, label: 家庭服务, where: "choice(kind, 'category') == 'household'"}
  - {id: household_hours, label: 家庭服务时长, sum: hours, where: "'household' in choice(extras, 'category') or choice(kind, 'category') == 'household'"}
"""


@pytest.fixture(params=STORES)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    root = tmp_path / "defs"
    shutil.copytree(ROOT / "org", root / "org")
    (root / "forms").mkdir()
    (root / "workflows").mkdir()
    (root / "forms" / "choices.yaml").write_text(CHOICES, encoding="utf-8")
    (root / "forms" / "service_request.yaml").write_text(FORM, encoding="utf-8")
    (root / "workflows" / "service_request.yaml").write_text(WORKFLOW, encoding="utf-8")
    store = open_store(store_location(request.param, request, tmp_path, "choices.json"))
    add_users(store, PEOPLE)
    yield Engine(load_definitions(root), store, clock=FrozenClock("2026-11-27T09:00:00"))
    store.close()


def figure(engine: Engine, metric: str) -> float:
    return sum(r["value"] for r in engine.figures(U["staff"]) if r["metric"] == metric)


def test_a_computed_field_a_guard_and_the_figures_read_what_the_choice_carries(engine: Engine):
    repair = engine.start("service_request", U["resident"], {"kind": "repair", "extras": ["haircut"]})
    legal = engine.start("service_request", U["resident"], {"kind": "legal", "extras": ["repair", "haircut"]})
    assert repair.data["hours"] == 2.5 and legal.data["hours"] == 4
    assert repair.title == "repair 2.5h"
    engine.fire(repair.id, "dispatch", U["staff"])  # repairs need no review
    with pytest.raises(TransitionError):
        engine.fire(legal.id, "dispatch", U["staff"])  # the guard reads review: true of legal advice
    assert [t.id for t in engine.available_transitions(engine.get(legal.id), U["staff"])] == ["review"]
    engine.fire(legal.id, "review", U["staff"])
    assert figure(engine, "household") == 1          # by the chosen kind's category
    assert figure(engine, "household_hours") == 6.5  # the legal case counts through its extras
