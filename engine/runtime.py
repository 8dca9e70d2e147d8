"""The engine at run time: who may see and do what, starting cases, and the one transition function.

``Engine.fire`` is the only place a case changes state. Its order is fixed:
role check -> guard -> form validation -> before-actions -> state change + data merge
-> history entry -> after-actions, all inside one store transaction with an
optimistic version check.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Mapping

from . import forms
from .actions import ACTIONS, ActionContext, ActionRegistry
from .cases import CASES, Case
from .clock import Clock, iso
from .clock import now as default_clock
from .errors import NotAllowed, NotFound, StaleVersion, SubmissionError, TransitionError
from .spec import FILE_TYPES, PSEUDO_ROLES, Definitions, FormSpec, StateSpec, TransitionSpec, WorkflowSpec, tr
from .store.base import Store, Transaction
from .users import User


def _msg(zh: str, en: str) -> dict[str, str]:
    return {"zh": zh, "en": en}


class Engine:
    def __init__(self, definitions: Definitions, store: Store, actions: ActionRegistry = ACTIONS,
                 clock: Clock = default_clock):
        self.definitions = definitions
        self.store = store
        self.actions = actions
        self.clock = clock

    # ------------------------------------------------------------------ specs
    def workflow_of(self, case: Case) -> WorkflowSpec:
        wf = self.definitions.workflows.get(case.workflow)
        if wf is None:
            raise NotFound(_msg(f"流程 {case.workflow} 已不存在", f"workflow {case.workflow} no longer exists"))
        return wf

    def state_of(self, case: Case) -> StateSpec:
        wf = self.workflow_of(case)
        if case.state not in wf.states:
            raise NotFound(_msg(f"状态 {case.state} 已不存在", f"state {case.state} no longer exists"))
        return wf.states[case.state]

    def data_fields(self, wf: WorkflowSpec) -> list[tuple[FormSpec, Any]]:
        """Every (form, field) a case of ``wf`` may hold, start form first, each field once."""
        seen, result = set(), []
        form_ids = [wf.start_form] + [t.form for t in wf.transitions() if t.form]
        for form_id in form_ids:
            form = self.definitions.forms[form_id]
            for f in form.fields:
                if f.id not in seen:
                    seen.add(f.id)
                    result.append((form, f))
        return result

    # ------------------------------------------------------------------ access
    @staticmethod
    def acting_roles(wf: WorkflowSpec) -> set[str]:
        roles = {r for t in wf.transitions() for r in t.roles}
        roles |= {r for state in wf.states.values() for r in state.inbox}
        return roles - PSEUDO_ROLES

    def has_wide_scope(self, user: User) -> bool:
        return any(self.definitions.roles.get(r) and self.definitions.roles[r].scope == "all" for r in user.roles)

    def in_scope(self, user: User, org_unit: str) -> bool:
        """The user's own unit and everything below it (or everywhere for a role with scope: all)."""
        return self.has_wide_scope(user) or self.definitions.org.contains(user.org_unit, org_unit)

    def roles_for(self, case: Case, user: User) -> set[str]:
        """The roles ``user`` holds on ``case``: their roles that act in the workflow (take a transition or
        hold an inbox), within their org scope, plus creator / assignee. No role means the case is invisible:
        a role that may only *start* a case (an applicant) sees its own cases, not its neighbours'."""
        wf = self.definitions.workflows.get(case.workflow)
        relevant = self.acting_roles(wf) if wf else set()
        roles = set(user.roles) & relevant if self.in_scope(user, case.org_unit) else set()
        if case.created_by == user.username:
            roles.add("creator")
        if user.username in case.assignees:
            roles.add("assignee")
        return roles

    def can_see(self, case: Case, user: User) -> bool:
        return bool(self.roles_for(case, user))

    def may_see_sensitive(self, case: Case, user: User) -> bool:
        """The applicant, and staff who act on this workflow within their unit, see unmasked sensitive fields."""
        if case.created_by == user.username:
            return True
        return bool(self.acting_roles(self.workflow_of(case)) & self.roles_for(case, user))

    def may_start(self, wf: WorkflowSpec, user: User) -> bool:
        return bool(set(wf.start_roles) & set(user.roles))

    def startable(self, user: User) -> list[WorkflowSpec]:
        return [wf for wf in self.definitions.workflows.values() if self.may_start(wf, user)]

    def guard_context(self, case: Case, user: User) -> dict[str, Any]:
        wf = self.workflow_of(case)
        ctx = {f.id: case.data.get(f.id, [] if f.type in ("multiselect", "repeat") else None)
               for _, f in self.data_fields(wf)}
        ctx.update(user=user.public(), state=case.state,
                   case={"id": case.id, "state": case.state, "created_by": case.created_by,
                         "org_unit": case.org_unit, "created_at": case.created_at})
        return ctx

    def _check_transition(self, case: Case, user: User, transition_id: str) -> TransitionSpec:
        """Role check, then guard. Raises with a message saying which one failed."""
        state = self.state_of(case)
        t = state.transition(transition_id)
        if t is None:
            raise TransitionError(_msg("此操作在当前状态下不可用（可能已被他人处理），请刷新页面。",
                                       "This action is not available in the current state (someone may have acted already). Reload the page."))
        if not (set(t.roles) & self.roles_for(case, user)):
            raise NotAllowed(_msg(f"您的角色不能执行“{tr(t.label, 'zh')}”。", f"Your role may not '{tr(t.label, 'en')}'."))
        if t.guard is not None and not t.guard.test(self.guard_context(case, user), self.clock()):
            raise TransitionError(_msg(f"条件未满足，暂不能“{tr(t.label, 'zh')}”。",
                                       f"The conditions for '{tr(t.label, 'en')}' are not met yet."))
        return t

    def available_transitions(self, case: Case, user: User) -> list[TransitionSpec]:
        result = []
        for t in self.state_of(case).transitions:
            try:
                self._check_transition(case, user, t.id)
            except TransitionError:
                continue
            result.append(t)
        return result

    # ------------------------------------------------------------------ queries
    def get(self, case_id: int, user: User | None = None) -> Case:
        doc = self.store.get(CASES, case_id)
        if doc is None:
            raise NotFound(_msg(f"事项 #{case_id} 不存在", f"case #{case_id} does not exist"))
        case = Case.from_doc(doc)
        if user is not None and not self.can_see(case, user):
            # Same answer as "does not exist": do not reveal other units' cases.
            raise NotFound(_msg(f"事项 #{case_id} 不存在", f"case #{case_id} does not exist"))
        return case

    def cases(self, user: User, workflow: str | None = None, state: str | None = None) -> list[Case]:
        def match(doc: dict[str, Any]) -> bool:
            return (workflow is None or doc["workflow"] == workflow) and (state is None or doc["state"] == state)
        found = [Case.from_doc(d) for d in self.store.search(CASES, match)]
        return [c for c in found if self.can_see(c, user)]

    def inbox(self, user: User) -> list[Case]:
        """Open cases waiting for one of the roles the user holds on them."""
        result = []
        for case in self.cases(user):
            wf = self.definitions.workflows.get(case.workflow)
            if wf is None or case.state not in wf.states or wf.states[case.state].final:
                continue
            if set(case.waiting_for) & self.roles_for(case, user) and self.available_transitions(case, user):
                result.append(case)
        result.sort(key=lambda c: c.updated_at, reverse=True)
        return result

    # ------------------------------------------------------------------ commands
    def _validate(self, form: FormSpec, values: Mapping[str, Any], keep: Mapping[str, Any] | None = None) -> dict[str, Any]:
        values = dict(values)
        for f in form.fields:  # an unchanged upload is sent back as {"__keep__": ...}
            if f.type in FILE_TYPES and isinstance(values.get(f.id), dict) and "__keep__" in values[f.id]:
                if keep and isinstance(keep.get(f.id), dict):
                    values[f.id] = keep[f.id]
                else:
                    values.pop(f.id)
        try:
            data = forms.validate(form, values, at=self.clock(), org=self.definitions.org)
        except SubmissionError as exc:
            exc.values = values
            raise
        return data

    def _waiting_for(self, wf: WorkflowSpec, state_id: str) -> list[str]:
        state = wf.states[state_id]
        if state.final:
            return []
        if state.inbox:
            return list(state.inbox)
        return sorted({r for t in state.transitions for r in t.roles})

    def start(self, workflow_id: str, user: User, values: Mapping[str, Any]) -> Case:
        wf = self.definitions.workflows.get(workflow_id)
        if wf is None:
            raise NotFound(_msg(f"流程 {workflow_id} 不存在", f"workflow {workflow_id} does not exist"))
        if not self.may_start(wf, user):
            raise NotAllowed(_msg(f"您的角色不能发起“{tr(wf.title, 'zh')}”。", f"Your role may not start '{tr(wf.title, 'en')}'."))
        form = self.definitions.forms[wf.start_form]
        data = self._validate(form, values)
        org_unit = data.get(wf.org_unit_field) if wf.org_unit_field else None
        org_unit = org_unit or user.org_unit
        now = iso(self.clock())
        case = Case(workflow=wf.id, workflow_version=wf.version, state=wf.initial, data=data, org_unit=org_unit,
                    created_by=user.username, created_at=now, updated_at=now,
                    waiting_for=self._waiting_for(wf, wf.initial))
        case.title = self._title(wf, case)
        case.history.append(self._history(user, "start", wf.title, None, wf.initial, "", _changes(form, {}, data)))
        with self.store.transaction() as tx:
            case.id = tx.insert(CASES, case.to_doc())
        return case

    def fire(self, case_id: int, transition_id: str, user: User, values: Mapping[str, Any] | None = None,
             comment: str = "", expected_version: int | None = None) -> Case:
        """Take one transition. The only function that changes a case's state."""
        values = values or {}
        comment = (comment or "").strip()
        with self.store.transaction() as tx:
            doc = tx.get(CASES, case_id)
            if doc is None:
                raise NotFound(_msg(f"事项 #{case_id} 不存在", f"case #{case_id} does not exist"))
            case = Case.from_doc(doc)
            if not self.can_see(case, user):
                raise NotFound(_msg(f"事项 #{case_id} 不存在", f"case #{case_id} does not exist"))
            if expected_version is not None and expected_version != case.version:
                raise StaleVersion()
            wf = self.workflow_of(case)
            t = self._check_transition(case, user, transition_id)                    # 1. role, 2. guard
            step_form = self.definitions.forms[t.form] if t.form else None
            step_data = self._validate(step_form, values, keep=case.data) if step_form else {}   # 3. form
            if t.comment == "required" and not comment:
                raise SubmissionError({"comment": [_msg("请填写意见", "Please write a comment.")]}, values=dict(values))
            now = self.clock()
            self._run(t.before_actions, case, user, t, tx, now)                     # 4. before-actions
            before = dict(case.data)
            if step_form:                                                            # 5. state + data
                for f in step_form.fields:
                    if f.id in step_data:
                        case.data[f.id] = step_data[f.id]
                    else:
                        case.data.pop(f.id, None)
            source = case.state
            case.state = t.target
            case.waiting_for = self._waiting_for(wf, t.target)
            if t.assign == "creator":
                case.assignees = [case.created_by]
            elif t.assign == "none":
                case.assignees = []
            case.title = self._title(wf, case)
            case.updated_at = iso(now)
            case.version += 1
            case.history.append(self._history(user, t.id, t.label, source, t.target, comment,  # 6. history
                                              _changes(step_form, before, case.data) if step_form else []))
            self._run(t.actions, case, user, t, tx, now)                             # 7. after-actions
            tx.replace(CASES, case_id, case.to_doc())
        return case

    # ------------------------------------------------------------------ helpers
    def _run(self, calls: Iterable[Any], case: Case, user: User, t: TransitionSpec | None, tx: Transaction,
             now: dt.datetime) -> None:
        for call in calls:
            self.actions[call.name](ActionContext(case, user, t, tx, now, self.definitions, call.args))

    def _history(self, user: User, action: str, label: Mapping[str, str], source: str | None, target: str,
                 comment: str, changes: list[dict[str, Any]]) -> dict[str, Any]:
        return {"at": iso(self.clock()), "by": user.username, "by_name": user.name, "action": action,
                "label": dict(label), "from": source, "to": target, "comment": comment, "changes": changes}

    def _title(self, wf: WorkflowSpec, case: Case) -> str:
        if wf.case_title is not None:
            value = wf.case_title.evaluate(self.guard_context_for_title(wf, case), self.clock())
            if value not in (None, ""):
                return str(value)
        return tr(wf.title, "zh")

    def guard_context_for_title(self, wf: WorkflowSpec, case: Case) -> dict[str, Any]:
        form = self.definitions.forms[wf.start_form]
        return forms.expression_context(form.fields, case.data)


def _changes(form: FormSpec | None, before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
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
