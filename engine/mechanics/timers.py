"""Clocks: ``timeout: {after: 3d, then: close}`` timers, deadlines (overdue flag, notification, escalation) and ``tick``.

Holds the specs (:class:`TimerSpec`, :class:`DeadlineSpec`), their load-time checks (:func:`clock_takes`,
:func:`build_timeout`, :func:`build_deadline`) and their runtime: :func:`arm` (the timers a case gets on entering
a state), :func:`overdue` and :class:`TimersMixin` (the Engine's ``tick``). Every transition a clock takes
goes through the one transition path as :data:`SYSTEM`. Notice expiry and collect deadlines are timers too:
``notice.arm`` and ``collect.arm`` add them.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import transition as moves
from ..cases import CASES
from ..clock import SHANGHAI, iso
from ..durations import Duration
from ..workdays import WorkCalendar
from ..errors import SubmissionError, TransitionError
from ..loadkit import did_you_mean, msg
from ..notify import notify
from ..spec import tr
from . import assign
from .base import SYSTEM, EngineBase

if TYPE_CHECKING:
    from ..cases import Case
    from ..loader import Loader
    from ..spec import StateSpec, WorkflowSpec
    from ..store.base import Transaction
    from ..yamlsource import PathItem, YamlSource


@dataclass(frozen=True)
class TimerSpec:
    """``timeout: {after: 3d, then: close}``: the system takes ``transition`` that long after the case entered
    the state."""

    after: Duration
    transition: str


@dataclass(frozen=True)
class DeadlineSpec:
    """The case is overdue ``within`` (YAML ``after``) after entering the state, or after the day in its date field ``at``:
    flagged, notified, optionally escalated."""

    within: Duration | None
    escalate: assign.AssignSpec | None = None
    at: str | None = None


# --------------------------------------------------------------------------- load time

def clock_takes(ld: "Loader", source: "YamlSource", path: list["PathItem"], target: str,
                transitions: dict[str, list[str]], key: bool = False) -> None:
    """A transition the clock takes (a timer, a notice's expiry, a collect deadline) must list ``system``."""
    if target in transitions and "system" not in transitions[target]:
        ld.problems.append(source.problem(path, f"the clock takes transition {target!r}, but its roles lack 'system'",
                                          f"add system to its roles, e.g. roles: [{', '.join(transitions[target] + ['system'])}]",
                                          key=key))


def build_timeout(ld: "Loader", source: "YamlSource", path: list["PathItem"], raw: dict | None,
                  transition_ids: dict[str, list[str]]) -> TimerSpec | None:
    """A state's ``timeout: {after: 7d, then: auto_close}`` (old spelling ``after: 7d -> auto_close``:
    ``engine.spelling`` rewrites it)."""
    if raw is None:
        return None
    target = raw["then"]
    if target not in transition_ids:
        ld.problems.append(source.problem(path + ["then"], f"unknown transition {target!r} in this state",
                                          did_you_mean(target, transition_ids) or "the timer takes one of this state's transitions"))
    clock_takes(ld, source, path + ["then"], target, transition_ids)
    return TimerSpec(Duration.parse(raw["after"]), target)


def build_deadline(ld: "Loader", source: "YamlSource", path: list["PathItem"], raw: dict | None, wf_roles: set[str],
                   date_fields: set[str] | None = None) -> DeadlineSpec | None:
    if raw is None:
        return None
    escalate = raw.get("escalate")
    if escalate == "self" or isinstance(escalate, dict) and "choose" in escalate:
        what = "it cannot choose people" if isinstance(escalate, dict) else "'self' would be the system"
        ld.problems.append(source.problem(path + ["escalate"], f"the clock escalates a deadline: {what}",
                                          "route it, e.g. escalate: {route: community_staff, unit: community}"))
    if "at" in raw and date_fields is not None and raw["at"] not in date_fields:
        ld.problems.append(source.problem(path + ["at"], f"{raw['at']!r} is not a date field of this workflow",
                                          did_you_mean(raw["at"], date_fields) or
                                          (f"date fields: {', '.join(sorted(date_fields))}" if date_fields else "add a date field")))
    return DeadlineSpec(Duration.parse(raw["after"]) if "after" in raw else None,
                        assign.build(ld, source, path + ["escalate"], raw.get("escalate"), wf_roles), raw.get("at"))


# --------------------------------------------------------------------------- run time

def arm(case: "Case", state: "StateSpec", now: dt.datetime, calendar: WorkCalendar | None = None) -> list[dict[str, Any]]:
    """The ``after`` timer and the deadline a case gets on entering ``state``."""
    timers = []
    if state.after:
        timers.append({"kind": "after", "state": state.id, "due": iso(state.after.after.after(now, calendar)),
                       "transition": state.after.transition, "done": False})
    due = deadline_due(case, state, now, calendar)
    if due is not None:
        timers.append({"kind": "deadline", "state": state.id, "due": iso(due), "transition": None, "done": False})
    return timers


def deadline_due(case: "Case", state: "StateSpec", now: dt.datetime,
                 calendar: WorkCalendar | None = None) -> dt.datetime | None:
    """When a case in ``state`` becomes overdue: a duration after entering, or the end of a date in its data."""
    spec = state.deadline
    if spec is None:
        return None
    if spec.at is not None:
        value = case.data.get(spec.at)
        try:
            day = dt.date.fromisoformat(str(value)[:10])
        except ValueError:
            return None
        return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=SHANGHAI)
    return spec.within.after(now, calendar) if spec.within else None


def overdue(engine: Any, tx: "Transaction", case: "Case", wf: "WorkflowSpec", now: dt.datetime) -> None:
    """Flag the case overdue, note it in its history, escalate if declared, and tell everyone concerned."""
    state = wf.states[case.state]
    case.overdue = True
    label = msg(f"“{tr(state.title, 'zh')}”已超期", f"'{tr(state.title, 'en')}' is overdue")
    engine._record(case, SYSTEM, "overdue", label, case.state, case.state, "", [], now)
    waiting = engine._waiting_people(tx, case)
    if state.deadline and state.deadline.escalate:
        # Escalation tells the unit above and puts the case in their inbox; it does not make them the
        # assignees (points and "assignee" steps stay with the people doing the work).
        try:
            up = assign.resolve(engine, tx, case, state.deadline.escalate, SYSTEM, [])
        except TransitionError as exc:  # nobody holds that role above: say so, and still flag it overdue
            engine._record(case, SYSTEM, "escalation_failed", msg("无法上报", "Could not escalate"),
                           case.state, case.state, tr(exc.message), [], now)
        else:
            case.escalated_to = sorted(set(case.escalated_to) | set(up))
    notify(tx, set(waiting) | set(case.assignees) | set(case.escalated_to), "overdue", case, label, now)


class TimersMixin(EngineBase):
    """The Engine's clock (mixed into :class:`engine.runtime.Engine`)."""

    def tick(self, now: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Run every due timer once: safe from cron and from several processes (each in its own transaction)."""
        moment = now or self.clock()
        stamp = iso(moment)
        due_ids = self.read.due_case_ids(stamp)
        fired: list[dict[str, Any]] = []
        for case_id in due_ids:
            try:
                fired += self._tick_case(case_id, stamp, moment)
            except SubmissionError as exc:  # a unique rule: another case holds its values; nothing of the move is kept
                self._skip_timers(case_id, stamp, moment, exc)
        return fired

    def _tick_case(self, case_id: int, stamp: str, moment: dt.datetime) -> list[dict[str, Any]]:
        """The due timers of one case, in a transaction of its own; what fired."""
        fired = []
        with self.store.transaction() as tx:
            case = self._load(tx, case_id, None)
            wf = self.workflow_of(case)
            for timer in list(case.timers):
                if timer["done"] or timer["due"] > stamp or timer["state"] != case.state:
                    continue
                timer["done"] = True
                fired.append({"case": case_id, "kind": timer["kind"], "transition": timer["transition"]})
                if timer["kind"] == "deadline":
                    overdue(self, tx, case, wf, moment)
                elif timer["transition"]:
                    try:  # the one transition path, as the system: role check, guard, history, version
                        moves.take(self, tx, case, moves.find(self, case, timer["transition"]), SYSTEM)
                    except TransitionError as exc:  # a guard said no: note it, never retry forever
                        self._record(case, SYSTEM, "timer_skipped", msg("定时操作未执行", "Timer skipped"),
                                     case.state, case.state, tr(exc.message), [], moment)
                    break  # the state changed: the old state's other timers are gone
                else:
                    overdue(self, tx, case, wf, moment)
            tx.replace(CASES, case_id, case.to_doc())
        return fired

    def _skip_timers(self, case_id: int, stamp: str, moment: dt.datetime, exc: SubmissionError) -> None:
        """The due timers of a case whose move was refused as a submission is (a ``unique`` rule): done, and noted
        in its history with the reason, never retried forever."""
        with self.store.transaction() as tx:
            case = self._load(tx, case_id, None)
            for timer in case.timers:
                if not timer["done"] and timer["due"] <= stamp and timer["state"] == case.state:
                    timer["done"] = True
            reason = "; ".join(tr(m, "zh") for messages in exc.errors.values() for m in messages)
            self._record(case, SYSTEM, "timer_skipped", msg("定时操作未执行", "Timer skipped"),
                         case.state, case.state, reason, [], moment)
            tx.replace(CASES, case_id, case.to_doc())
