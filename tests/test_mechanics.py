"""The shape of the core (issue 9): every move goes through the one transition path, each mechanism lives in
its own module of ``engine/mechanics`` (specs still importable from ``engine.spec``), no class is huge."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.class_sizes import sizes
from engine import spec, transition
from engine.clock import FrozenClock
from engine.mechanics import collect, notice, ranking, timers
from engine.mechanics.base import SYSTEM
from tests.conftest import DURABLE_STORES, act, case, shipped_app, store_location
from tests.test_process_awards import USERS, nominate

#: History entries that are no move: the case stays where it is.
NO_MOVE = {"start", "overdue", "recuse", "timer_skipped", "escalation_failed"}


@pytest.fixture(params=DURABLE_STORES)
def app(request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock) -> Any:
    yield from shipped_app(tmp_path, clock, USERS, store_location(request.param, request, tmp_path))


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str, str, str]]:
    """Every call of ``transition.take`` (the real one, observed): (case id, edge kind, edge via, actor)."""
    calls: list[tuple[int, str, str, str]] = []
    real = transition.take

    def observed(engine: Any, tx: Any, case: Any, edge: Any, actor: Any, step: Any = None) -> Any:
        calls.append((case.id, edge.kind, edge.via, actor.username))
        return real(engine, tx, case, edge, actor, step)
    monkeypatch.setattr(transition, "take", observed)
    return calls


def test_transitions_rankings_objections_and_timers_all_go_through_take(app: Any, who: Any, clock: FrozenClock,
                                                                        taken: list[tuple[int, str, str, str]]):
    cid = nominate(who, "孙丽", (95, 92, 90))
    assert who("district").post("/workflows/award_selection/ranking", {"round": "2026-Q4"}).status_code == 302
    clock.advance(days=1)
    assert who("resident2").post(f"/public/{cid}", {"reason": "她本季度没有来我家走访过。"}).status_code == 302
    assert act(who("district"), cid, "dismiss", comment="经核实，走访台账有记录和签字。").status_code == 302
    clock.advance(days=10)
    app.extensions["civicflow"].tick()
    data = case(app, cid)
    assert data["state"] == "awarded"
    mine = [(kind, via, by) for c, kind, via, by in taken if c == cid]
    assert ("ranking", "ranking", "district") in mine
    assert ("objection", "object", "resident2") in mine
    assert ("transition", "confirm", SYSTEM.username) == mine[-1]  # the notice's end, taken by the clock
    moves = [(h["action"], h["by"]) for h in data["history"] if h["action"] not in NO_MOVE]
    assert moves == [(via, by) for _, via, by in mine]  # each move in the history came through take, in order
    assert data["history"][-1]["by"] == "system" and data["history"][-1]["action"] == "confirm"


def test_a_refused_objection_changes_nothing(app: Any, who: Any, taken: list[tuple[int, str, str, str]]):
    cid = nominate(who, "孙丽", (95, 92, 90))
    who("district").post("/workflows/award_selection/ranking", {"round": "2026-Q4"})
    before = case(app, cid)
    assert who("resident2").post(f"/public/{cid}", {"reason": "  "}).status_code in (200, 400, 422)  # no reason
    after = case(app, cid)
    assert after["state"] == "on_notice" and after["version"] == before["version"]
    assert taken[-1][:3] == (cid, "objection", "object")  # it went the one path, and step 3 refused it


def test_each_mechanism_spec_lives_in_its_module_and_still_imports_from_engine_spec():
    assert spec.CollectSpec is collect.CollectSpec and spec.AggregateSpec is collect.AggregateSpec
    assert spec.NoticeSpec is notice.NoticeSpec
    assert spec.RankingSpec is ranking.RankingSpec and spec.LevelSpec is ranking.LevelSpec
    assert spec.TimerSpec is timers.TimerSpec and spec.DeadlineSpec is timers.DeadlineSpec
    from engine.spec import AssignSpec, PointsSpec, SpawnSpec  # the from-import form too
    assert {c.__module__ for c in (AssignSpec, PointsSpec, SpawnSpec)} == {
        "engine.mechanics.assign", "engine.mechanics.points", "engine.mechanics.spawn"}
    with pytest.raises(AttributeError):
        spec.NoSuchSpec  # noqa: B018


def test_no_class_in_the_engine_is_over_300_lines():
    over = [(lines, name) for lines, name in sizes() if lines > 300]
    assert over == []
