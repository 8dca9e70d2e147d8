"""Demo scenarios: cases walked through real transitions, described in YAML (``demo/cases/*.yaml``).

Each scenario starts a case and takes its steps through the engine, exactly as people would, so the
demo data has real history, timers, points and publications. A scenario file is a list of::

    - workflow: volunteer_registration
      by: resident                      # who starts the case
      values: {name: 王芳, ...}          # the start form
      parent: 3                         # optional: the (1-based) scenario in this file it was offered from
      steps:
        - {do: approve, by: staff, comment: 材料齐全}
        - {do: dispatch, by: staff, assignees: [volunteer]}
        - {contribute: {stars: 5}, by: resident2}
        - {object: 测评没有通知到我们楼, by: resident2}
        - {recuse: 亲属关系, by: street2}
        - {approve: approve, by: street, comment: 同意}   # an approver's act (approve / reject)
        - {transfer: street3, by: street2, comment: 出差}  # 转交 the task one holds to a colleague
        - {add_approver: secretary, position: before, by: street}   # 加签 (before / after oneself)
        - {send_back: community_review, by: street2, comment: 请补充报价}  # 退回 to an earlier step
        - {withdraw: 已自行解决, by: resident}          # 撤回 by the initiator (the reason)
        - {wait: 5wd}                   # time passes (a demo clock), and due timers fire
    - close_round: {workflow: award, by: district}      # a whole-round step, after the cases above
    - wait: 6d                                           # time passes for every case of the file
    - act: {case: 2, do: dispatch, by: staff, assignees: [volunteer]}   # a step on an earlier scenario's case

A value ``{case: N}`` anywhere in ``values`` is the number of the case scenario N of this file started.
A file that waits starts as far in the past as it waits in total, so that its cases end up about now.

Mistakes are reported with the file and the scenario number, never half-loaded silently.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from .durations import Duration
from .errors import EngineError, SubmissionError, TransitionError
from .runtime import Engine, round_of
from .spec import tr
from .users import User, find_user


class DemoError(EngineError):
    pass


def _user(engine: Engine, username: str, where: str) -> User:
    user = find_user(engine.store, username)
    if user is None:
        raise DemoError(f"{where}: unknown user {username!r}")
    return user


def _explain(exc: Exception) -> str:
    if isinstance(exc, SubmissionError):
        return "; ".join(f"{k}: {v[0]['en']}" for k, v in exc.errors.items())
    if isinstance(exc, TransitionError):
        return tr(exc.message, "en")
    return str(exc)


class DemoClock:
    """The demo's own time: starts in the past and moves only when a scenario waits."""

    def __init__(self, start: dt.datetime):
        self.current = start

    def __call__(self) -> dt.datetime:
        return self.current


def _resolve(value: Any, started: list[int]) -> Any:
    """``{case: N}`` -> the number of the case scenario N started."""
    if isinstance(value, dict):
        if set(value) == {"case"}:
            return started[value["case"] - 1]
        return {k: _resolve(v, started) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, started) for v in value]
    return value


def _wait(engine: Engine, clock: DemoClock, text: str) -> None:
    clock.current = Duration.parse(text).after(clock.current, engine.definitions.calendar)
    engine.tick()


def _step(engine: Engine, clock: DemoClock, case_id: int, step: dict[str, Any], started: list[int], where: str) -> None:
    if "wait" in step:
        _wait(engine, clock, step["wait"])
        return
    who = _user(engine, step["by"], where)
    values = _resolve(step.get("values", {}), started)
    if "do" in step:
        engine.fire(case_id, step["do"], who, values, comment=step.get("comment", ""), assignees=step.get("assignees", []))
    elif "contribute" in step:
        engine.contribute(case_id, who, _resolve(step["contribute"], started))
    elif "object" in step:
        engine.object(case_id, who, step["object"])
    elif "recuse" in step:
        engine.declare_conflict(case_id, who, step["recuse"])
    elif "approve" in step:
        engine.approve(case_id, who, step["approve"], step.get("comment", ""))
    elif "transfer" in step:
        engine.transfer(case_id, who, step["transfer"], step.get("comment", ""))
    elif "add_approver" in step:
        engine.add_approver(case_id, who, step["add_approver"], step.get("position", "after"), step.get("comment", ""))
    elif "send_back" in step:
        engine.send_back(case_id, who, step["send_back"], step.get("comment", ""))
    elif "withdraw" in step:
        engine.withdraw(case_id, who, step["withdraw"] if isinstance(step["withdraw"], str) else "")
    else:
        raise DemoError(f"{where}: say do, contribute, object, recuse, approve, transfer, add_approver, send_back, "
                        "withdraw or wait")


def run_file(engine: Engine, path: Path, clock: DemoClock | None = None) -> int:
    """Play every scenario of one file; returns how many cases it started."""
    items = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or []
    clock = clock or DemoClock(engine.clock())
    started: list[int] = []
    for number, item in enumerate(items, start=1):
        where = f"{path.name} scenario {number}"
        try:
            if "close_round" in item:
                spec = item["close_round"]
                wf = engine.definitions.workflows[spec["workflow"]]
                round_id = spec.get("round") or round_of(wf.round, engine.clock())
                engine.close_round(spec["workflow"], round_id, _user(engine, spec["by"], where))
                continue
            if "wait" in item:
                _wait(engine, clock, item["wait"])
                continue
            if "act" in item:
                _step(engine, clock, started[item["act"]["case"] - 1], item["act"], started, where)
                continue
            by = _user(engine, item["by"], where)
            parent = started[item["parent"] - 1] if "parent" in item else None
            case = engine.start(item["workflow"], by, _resolve(item.get("values", {}), started), parent=parent)
            started.append(case.id)
            for step_no, step in enumerate(item.get("steps", []), start=1):
                _step(engine, clock, case.id, step, started, f"{where} step {step_no}")
        except (EngineError, KeyError, IndexError, ValueError) as exc:
            if isinstance(exc, DemoError):
                raise
            raise DemoError(f"{where}: {type(exc).__name__}: {_explain(exc)}") from None
    return len(started)


def _waits(node: Any) -> list[str]:
    if isinstance(node, dict):
        return ([node["wait"]] if "wait" in node else []) + [w for v in node.values() for w in _waits(v)]
    if isinstance(node, list):
        return [w for v in node for w in _waits(v)]
    return []


def load_demo(engine: Engine, folder: Path) -> int:
    """Play every ``*.yaml`` in ``folder`` in name order; returns the number of cases started.

    A file that waits is played on a demo clock that starts as far back as it waits in total, so that its
    cases end up about now, with real history dates; then due timers fire at the real time.
    """
    real = engine.clock
    count = 0
    try:
        for path in sorted(folder.glob("*.yaml")):
            now = real()
            start = now
            for text in _waits(YAML(typ="safe").load(path.read_text(encoding="utf-8")) or []):
                start -= Duration.parse(text).after(now, engine.definitions.calendar) - now
            clock = DemoClock(start)
            engine.clock = clock
            count += run_file(engine, path, clock)
    finally:
        engine.clock = real
    engine.tick()
    return count
