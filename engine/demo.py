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
    - close_round: {workflow: award, by: district}      # a whole-round step, after the cases above

Mistakes are reported with the file and the scenario number, never half-loaded silently.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

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


def run_file(engine: Engine, path: Path) -> int:
    """Play every scenario of one file; returns how many cases it started."""
    items = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or []
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
            by = _user(engine, item["by"], where)
            parent = started[item["parent"] - 1] if "parent" in item else None
            case = engine.start(item["workflow"], by, item.get("values", {}), parent=parent)
            started.append(case.id)
            for step_no, step in enumerate(item.get("steps", []), start=1):
                who = _user(engine, step["by"], f"{where} step {step_no}")
                if "do" in step:
                    engine.fire(case.id, step["do"], who, step.get("values", {}), comment=step.get("comment", ""),
                                assignees=step.get("assignees", []))
                elif "contribute" in step:
                    engine.contribute(case.id, who, step["contribute"])
                elif "object" in step:
                    engine.object(case.id, who, step["object"])
                elif "recuse" in step:
                    engine.declare_conflict(case.id, who, step["recuse"])
                else:
                    raise DemoError(f"{where} step {step_no}: say do, contribute, object or recuse")
        except (EngineError, KeyError, IndexError) as exc:
            if isinstance(exc, DemoError):
                raise
            raise DemoError(f"{where}: {type(exc).__name__}: {_explain(exc)}") from None
    return len(started)


def load_demo(engine: Engine, folder: Path) -> int:
    """Play every ``*.yaml`` in ``folder`` in name order; returns the number of cases started."""
    return sum(run_file(engine, path) for path in sorted(folder.glob("*.yaml")))
