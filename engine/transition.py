"""The one transition path: every move a case makes goes through :func:`take`.

A transition a person takes (``Engine.fire``), an objection (``Engine.object``), a ranking outcome
(``Engine.close_round``) and a transition a clock takes (``Engine.tick``, as :data:`SYSTEM`) are all edges of
the workflow's state graph (``WorkflowSpec.edges``); :func:`take` walks one edge in a fixed order:

1. role check (transition roles via ``roles_for``, plus ``system`` for the clock; objection roles; ranking roles;
   the approver's seat; who may urge or copy in) — for the actor, else on behalf of someone who delegated their
   tasks to the actor (:func:`authority`, the one place delegation is considered)
2. guard (transitions)
3. form / comment validation (the step form, a required comment; an objection's reason)
4. before-actions
5. state change + data merge (:func:`move`: the edge must exist; then what entering the state means)
6. history entry (``Engine._record``, the one place history is written; it bumps the case version)
7. after-actions (registered actions, points, spawned cases, notifications; then linked cases that move with
   this one: ``mechanics.links``)

What each kind of edge adds at a step lives with its mechanism (:class:`engine.mechanics.base.EdgeKind`):
transitions here, objections in ``mechanics.notice``, ranking outcomes in ``mechanics.ranking``, approvers'
acts and approval outcomes in ``mechanics.approval``, 催办 in ``mechanics.urge``, 抄送 in ``mechanics.cc``, a
person's moves on their own task (转交, 加签, 撤回, 退回) in ``mechanics.taskmoves``. The caller
holds the store transaction and writes the case back.
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from . import delegation, forms, webhooks
from .clock import iso
from .errors import NotAllowed, SubmissionError, TransitionError
from .loadkit import msg
from .mechanics import approval, assign, cc, collect, links, notice, points, ranking, spawn, taskmoves, timers, unique, urge
from .mechanics.base import SYSTEM, EdgeKind, Step
from .notify import notify
from .spec import tr

if TYPE_CHECKING:
    from .cases import Case
    from .runtime import Engine
    from .spec import EdgeSpec, FormSpec, Text, WorkflowSpec
    from .store.base import Transaction
    from .users import User

__all__ = ["SYSTEM", "Step", "find", "check", "take", "move", "enter", "waiting_for", "changes_of", "authority"]


def find(engine: "Engine", case: "Case", transition_id: str) -> "EdgeSpec":
    """The edge transition ``transition_id`` takes from the case's state now (raises if it has none)."""
    wf = engine.workflow_of(case)
    t = engine.state_of(case).transition(transition_id)
    edge = wf.edge(case.state, t.target, kind="transition", via=t.id) if t is not None else None
    if edge is None:
        declared = next((x for x in wf.transitions() if x.id == transition_id), None)
        if declared is not None and declared.assign and declared.assign.mode == "self" and case.assignees:
            holder = case.history[-1]["by_name"] if case.history else case.assignees[0]
            raise TransitionError(msg(f"已被 {holder} 认领，您来晚了一步。", f"Already claimed by {holder}."))
        raise TransitionError(msg("此操作在当前状态下不可用（可能已被他人处理），请刷新页面。",
                                  "This action is not available in the current state (someone may have acted already). Reload the page."))
    return edge


def _kind(edge: "EdgeSpec") -> EdgeKind:
    return {"transition": TRANSITION, "objection": notice.OBJECTION, "ranking": ranking.OUTCOME,
            "approval": approval.APPROVAL, "urge": urge.URGE, "cc": cc.CC, "move": taskmoves.MOVE}[edge.kind]


def _prepare(engine: "Engine", case: "Case", edge: "EdgeSpec", step: Step | None) -> Step:
    step = step or Step()
    if edge.kind == "transition" and step.transition is None:
        step.transition = engine.workflow_of(case).states[edge.source].transition(edge.via)
    return step


def authority(engine: "Engine", case: "Case", edge: "EdgeSpec", actor: "User", step: Step, delegated: bool = True,
              tx: "Transaction | None" = None) -> "User":
    """Step 1, the role check of the edge's kind: ``actor`` themselves, or else (``delegated``) as someone who has
    delegated their tasks to ``actor`` and whose task the case is now (``engine.delegation``). Returns who acts:
    ``actor``, or the delegator carrying ``delegate=actor``. Every edge kind's role check passes through here."""
    kind = _kind(edge)
    try:
        kind.check_roles(engine, case, edge, actor, step)
        return actor
    except NotAllowed:
        if not delegated or actor is SYSTEM or actor.delegate is not None:
            raise
        for principal in delegation.acting_for(engine, case, actor, tx):
            acting = delegation.proxy(principal, actor)
            try:
                kind.check_roles(engine, case, edge, acting, step)
            except NotAllowed:
                continue
            return acting
        raise


def check(engine: "Engine", case: "Case", edge: "EdgeSpec", actor: "User", step: Step | None = None,
          delegated: bool = True, guard: bool = True) -> "User":
    """Steps 1 and 2 alone (role check, guard): what the buttons on a case page ask. Returns who would act
    (``actor``, or a delegator of theirs: :func:`authority`)."""
    step = _prepare(engine, case, edge, step)
    acting = authority(engine, case, edge, actor, step, delegated)
    if guard:
        _kind(edge).check_guard(engine, case, edge, acting, step)
    return acting


def take(engine: "Engine", tx: "Transaction", case: "Case", edge: "EdgeSpec", actor: "User",
         step: Step | None = None) -> Step:
    """Move ``case`` along ``edge`` as ``actor``, in the fixed order above."""
    step = _prepare(engine, case, edge, step)
    step.comment = (step.comment or "").strip()
    kind = _kind(edge)
    actor = authority(engine, case, edge, actor, step, tx=tx)                # 1. role (also as a delegate)
    kind.check_guard(engine, case, edge, actor, step)                        # 2. guard
    kind.validate(engine, tx, case, edge, actor, step)                       # 3. form / comment
    now = engine.clock()
    kind.before(engine, tx, case, edge, actor, step, now)                    # 4. before-actions
    changes = kind.apply(engine, tx, case, edge, actor, step, now)           # 5. data merge
    try:
        move(engine, tx, case, engine.workflow_of(case), edge.target, actor, edge.via,  # 5. state, 6. history
             kind.label(edge, step), step.comment, changes, now, reenter=kind.reenters(edge), extra=step.record,
             shown=[f.id for f in step.form.fields] if step.form is not None else ())
    except SubmissionError as exc:  # a unique rule: the form keeps what was typed
        exc.values = dict(step.values)
        raise
    kind.after(engine, tx, case, edge, actor, step, now)                     # 7. after-actions
    links.after(engine, tx, case, edge, actor, step, now)                    # 7. ... linked cases moved
    if actor.delegate is not None and not (edge.kind == "approval" and edge.via in approval.OUTCOMES):
        # the delegator hears of every act done in their name (an approval's outcome follows the act: told once)
        notify(tx, [actor.username], "delegated", case, kind.label(edge, step), now)
    return step


def move(engine: "Engine", tx: "Transaction", case: "Case", wf: "WorkflowSpec", target: str, actor: "User", via: str,
         label: Mapping[str, str], comment: str, changes: list[dict[str, Any]], now: dt.datetime,
         reenter: bool = True, extra: Mapping[str, Any] | None = None, shown: Iterable[str] = ()) -> None:
    """State change and its history entry; then what entering the new state means (timers, notices...), unless
    ``reenter`` is false (an approver's act: a self-loop that stays in the state's round).

    A case moves only along an edge of the workflow's state graph: ``via`` is the edge's ``via`` (a
    transition id, ``object``, ``ranking`` or an approval's act or outcome), as the history entry records it.
    A move that would give the case values another case holds (a ``unique`` rule) is refused; ``shown``: the
    fields of the form being filled, under which the refusal is shown.
    """
    source = case.state
    if wf.edge(source, target, via=via) is None:
        raise TransitionError(msg(f"流程中没有从“{source}”到“{target}”的步骤。",
                                  f"The process has no step from '{source}' to '{target}'."))
    unique.check(engine, tx, case, wf, target, actor, shown)
    notice.on_leave(case, wf, source, target, actor, now)
    approval.on_leave(case, wf, source, target)
    left = wf.states.get(source)
    case.state = target
    case.title = engine._title(wf, case)
    engine._record(case, actor, via, label, source, target, comment, changes, now, extra=extra)
    if left is not None and left.notice is not None and source != target:
        webhooks.emit(tx, engine.definitions, "notice_closed", case, now, state=source, by=actor.username)
    if reenter:
        if source != target:  # entered again from elsewhere, not a step that stays (a self-loop)
            collect.start_round(case, wf.states[target], now)
        enter(engine, tx, case, wf, target, actor, now)


def enter(engine: "Engine", tx: "Transaction", case: "Case", wf: "WorkflowSpec", state_id: str, actor: "User",
          now: dt.datetime) -> None:
    """What entering a state means: who the case waits for, its timers, aggregates, an approval round,
    publication, the result."""
    state = wf.states[state_id]
    case.waiting_for = waiting_for(wf, state_id)
    case.entered_at = iso(now)  # the inbox's waiting time counts from here
    case.overdue = False
    case.escalated_to = []
    calendar = engine.definitions.calendar  # working days: holidays and 调休 days
    case.timers = (timers.arm(case, state, now, calendar) + notice.arm(state, now, calendar)
                   + collect.arm(state, now, calendar))
    if state.collect:
        collect.refresh(case, state)
    approval.open_round(engine, tx, case, wf, state, actor, now)
    notice.on_enter(engine, tx, case, state, actor, now)
    if state.final or state.publish:
        notify(tx, [case.created_by], "result", case, state.title, now, skip=actor.username)
    # the outbox rows are written in this transaction: a webhook goes out exactly when the change commits
    started = len(case.history) == 1 and case.history[0]["action"] == "start"
    webhooks.emit(tx, engine.definitions, "case_started" if started else "state_entered", case, now,
                  state=state_id, previous=None if started else case.history[-1].get("from"), by=actor.username)
    if state.notice is not None:
        webhooks.emit(tx, engine.definitions, "notice_opened", case, now, state=state_id, by=actor.username,
                      ends=iso(state.notice.duration.after(now)))


def waiting_for(wf: "WorkflowSpec", state_id: str) -> list[str]:
    """The roles a case in ``state_id`` waits for (its inbox)."""
    state = wf.states[state_id]
    if state.final:
        return []
    if state.inbox is not None:  # declared, even as [] (nobody's to-do list)
        return list(state.inbox)
    return sorted({r for t in state.transitions for r in t.roles} - {"system"})


def changes_of(form: "FormSpec | None", before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What a step changed, field by field (values of sensitive fields are not copied into history)."""
    if form is None:
        return []
    changes = []
    for f in form.fields:
        old, new = before.get(f.id), after.get(f.id)
        if old != new:
            if f.sensitive:
                changes.append({"field": f.id, "old": forms.mask(old) if old else None,
                                "new": forms.mask(new) if new else None, "masked": True})
            else:
                changes.append({"field": f.id, "old": old, "new": new})
    return changes


class Transition(EdgeKind):
    """A ``transition`` edge: roles, guard, step form, comment, assignment, actions, points, linked cases."""

    def check_roles(self, engine: Any, case: "Case", edge: "EdgeSpec", actor: "User", step: Step) -> None:
        t = step.transition
        assert t is not None
        roles = engine.roles_for(case, actor) | ({"system"} if actor is SYSTEM else set())
        if not (set(t.roles) & roles):
            raise NotAllowed(msg(f"您的角色不能执行“{tr(t.label, 'zh')}”。", f"Your role may not '{tr(t.label, 'en')}'."))

    def check_guard(self, engine: Any, case: "Case", edge: "EdgeSpec", actor: "User", step: Step) -> None:
        t = step.transition
        assert t is not None
        if t.guard is not None and not t.guard.test(engine.guard_context(case, actor), engine.clock()):
            raise TransitionError(msg(f"条件未满足，暂不能“{tr(t.label, 'zh')}”。",
                                      f"The conditions for '{tr(t.label, 'en')}' are not met yet."))

    def validate(self, engine: Any, tx: "Transaction", case: "Case", edge: "EdgeSpec", actor: "User", step: Step) -> None:
        t = step.transition
        assert t is not None
        step.form = engine.definitions.form_of(engine.workflow_of(case), t.form) if t.form else None
        if step.form is not None:
            try:
                step.form_data = engine._validate(step.form, step.values, actor, tx, case=case)
            except SubmissionError as exc:
                exc.values = dict(step.values)
                raise
        if t.comment == "required" and not step.comment:
            raise SubmissionError({"comment": [msg("请填写意见", "Please write a comment.")]}, values=dict(step.values))
        if t.assign:
            step.assignees = assign.resolve(engine, tx, case, t.assign, actor, list(step.chosen))

    def before(self, engine: Any, tx: "Transaction", case: "Case", edge: "EdgeSpec", actor: "User", step: Step,
               now: dt.datetime) -> None:
        engine._run(step.transition.before_actions, case, actor, step.transition, tx, now)  # type: ignore[union-attr]

    def apply(self, engine: Any, tx: "Transaction", case: "Case", edge: "EdgeSpec", actor: "User", step: Step,
              now: dt.datetime) -> list[dict[str, Any]]:
        before = dict(case.data)
        if step.form is not None:
            # Someone who may not see the sensitive values was given the form without them (engine.web.cases): what
            # they leave empty there keeps what is stored, so that taking the step loses nothing.
            hidden = not engine.may_see_sensitive(case, actor)
            for f in step.form.fields:
                if f.id in step.form_data:
                    case.data[f.id] = step.form_data[f.id]
                else:
                    case.data.pop(f.id, None)
                if hidden:
                    _keep_sensitive(f, before, case.data)
        step.previous_assignees = list(case.assignees)
        if step.assignees is not None:
            case.assignees = step.assignees
        if step.transition.cc is not None:  # the step copies people in by itself (抄送: engine.mechanics.cc)
            copied = cc.resolve(engine, tx, case, step.transition.cc, engine.workflow_of(case))
            if copied:
                step.record["cc"] = cc.add(engine, tx, case, copied, actor, now)
        return changes_of(step.form, before, case.data) if step.form is not None else []

    def label(self, edge: "EdgeSpec", step: Step) -> "Text":
        return step.transition.label  # type: ignore[union-attr]

    def after(self, engine: Any, tx: "Transaction", case: "Case", edge: "EdgeSpec", actor: "User", step: Step,
              now: dt.datetime) -> None:
        t = step.transition
        assert t is not None
        engine._run(t.actions, case, actor, t, tx, now)
        for spec in t.points:
            points.post(engine, tx, case, t, spec, actor, now)
        for spec in t.spawn:
            spawn.spawn(engine, tx, case, spec, actor)
        if step.assignees is not None:
            new = set(case.assignees) - set(step.previous_assignees)
            notify(tx, new, "assigned", case, t.label, now, skip=actor.username)
            if t.assign and t.assign.mode == "self":
                notify(tx, [case.created_by], "claimed", case, t.label, now, skip=actor.username)


TRANSITION = Transition()


def _keep_sensitive(f: Any, before: dict[str, Any], data: dict[str, Any]) -> None:
    """Put back the stored value of a sensitive field (or sensitive column of a row, by row number) that a step form
    sent empty, for an actor who never saw it."""
    empty = (None, "", [])
    if f.sensitive:
        if data.get(f.id) in empty and before.get(f.id) not in empty:
            data[f.id] = before[f.id]
        return
    old, new = before.get(f.id), data.get(f.id)
    hidden = [sub.id for sub in f.fields if sub.sensitive] if f.is_repeat else []
    if not hidden or not isinstance(old, list) or not isinstance(new, list):
        return
    for row, was in zip(new, old):
        if isinstance(row, dict) and isinstance(was, dict):
            for sub in hidden:
                if row.get(sub) in empty and was.get(sub) not in empty:
                    row[sub] = was[sub]
