"""The engine at run time: who may see and do what, and the one transition function.

``Engine._take`` is the only place a case changes state by a transition. Its order is fixed:
role check -> guard -> form validation -> before-actions -> state change + data merge
-> history entry -> after-actions (registered actions, points, publication, notifications),
all inside one store transaction with an optimistic version check. Objections, timers and
closing a round move cases through ``_move``, which checks the move is an edge of the workflow's state
graph and records history the same way (``_record`` is the one place history is written).
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Mapping

from . import collect, forms, ledger, ranking, readmodel
from .access import Access
from .actions import ACTIONS, ActionContext, ActionRegistry
from .cases import CASES, Case
from .clock import SHANGHAI, Clock, iso
from .clock import now as default_clock
from .errors import NotAllowed, NotFound, StaleVersion, SubmissionError, TransitionError
from .notify import notify
from .spec import (
    FILE_TYPES, LEVELS, PSEUDO_ROLES, AssignSpec, Definitions, FormSpec, StateSpec, TransitionSpec, WorkflowSpec, tr,
)
from .store.base import Store, Transaction
from .users import USERS, User

#: Who acts when the clock takes a transition (timers, notice expiry, deadlines).
SYSTEM = User("system", "系统", ("system",), "")
ROUNDS = readmodel.ROUNDS


def _msg(zh: str, en: str) -> dict[str, str]:
    return {"zh": zh, "en": en}


def round_of(period: str | None, moment: dt.datetime) -> str | None:
    """The round a case started at ``moment`` belongs to: 2026-11, 2026-Q4, 2026-H2 or 2026."""
    if period is None:
        return None
    if period == "month":
        return f"{moment.year}-{moment.month:02d}"
    if period == "quarter":
        return f"{moment.year}-Q{(moment.month - 1) // 3 + 1}"
    if period == "half":
        return f"{moment.year}-H{1 if moment.month <= 6 else 2}"
    return str(moment.year)


class Engine:
    def __init__(self, definitions: Definitions, store: Store, actions: ActionRegistry = ACTIONS,
                 clock: Clock = default_clock):
        self.definitions = definitions
        self.store = store
        self.actions = actions
        self.clock = clock
        self.access = Access(definitions)
        self._fields: dict[str, list[tuple[FormSpec, Any]]] = {}
        readmodel.install(store, definitions, lambda case: self.guard_context(case, SYSTEM))
        self.read = readmodel.ReadModel(self)

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
        if wf.id in self._fields:
            return self._fields[wf.id]
        seen, result = set(), []
        form_ids = [wf.start_form] + [t.form for t in wf.transitions() if t.form]
        for form_id in form_ids:
            form = self.definitions.forms[form_id]
            for f in form.fields:
                if f.id not in seen:
                    seen.add(f.id)
                    result.append((form, f))
        self._fields[wf.id] = result
        return result

    # ------------------------------------------------------------------ access (engine.access)
    def acting_roles(self, wf: WorkflowSpec) -> frozenset[str]:
        return self.access.acting_roles(wf)

    def role_scope(self, role: str, wf: WorkflowSpec | None = None) -> str:
        return self.access.role_scope(role, wf)

    def reaches(self, user: User, role: str, org_unit: str, wf: WorkflowSpec | None = None) -> bool:
        return self.access.reaches(user, role, org_unit, wf)

    def has_wide_scope(self, user: User) -> bool:
        return self.access.has_wide_scope(user)

    def in_scope(self, user: User, org_unit: str) -> bool:
        return self.access.in_scope(user, org_unit)

    def roles_for(self, case: Case, user: User) -> set[str]:
        return self.access.roles_for(case, user)

    def can_see(self, case: Case, user: User) -> bool:
        return self.access.can_see(case, user)

    def may_see_sensitive(self, case: Case, user: User) -> bool:
        return self.access.may_see_sensitive(case, user)

    def may_start(self, wf: WorkflowSpec, user: User) -> bool:
        return self.access.may_start(wf, user)

    def startable(self, user: User) -> list[WorkflowSpec]:
        return self.access.startable(user)

    def guard_context(self, case: Case, user: User) -> dict[str, Any]:
        wf = self.workflow_of(case)
        ctx = {f.id: case.data.get(f.id, f.kind.empty())
               for _, f in self.data_fields(wf)}
        for state in wf.states.values():
            if state.collect and state.collect.aggregate:
                ctx[state.collect.aggregate.into] = case.data.get(state.collect.aggregate.into) or {}
        if wf.ranking:
            ctx[wf.ranking.into] = case.data.get(wf.ranking.into)
        if wf.round:
            ctx["round"] = case.round
        ctx.update(user=user.public(), state=case.state,
                   case={"id": case.id, "state": case.state, "created_by": case.created_by, "round": case.round,
                         "org_unit": case.org_unit, "created_at": case.created_at, "overdue": case.overdue,
                         "assignees": list(case.assignees)})
        return ctx

    def _check_transition(self, case: Case, user: User, transition_id: str, system: bool = False) -> TransitionSpec:
        """Role check, then guard. Raises with a message saying which one failed."""
        wf = self.workflow_of(case)
        state = self.state_of(case)
        t = state.transition(transition_id)
        if t is None:
            declared = next((x for x in wf.transitions() if x.id == transition_id), None)
            if declared is not None and declared.assign and declared.assign.mode == "self" and case.assignees:
                holder = case.history[-1]["by_name"] if case.history else case.assignees[0]
                raise TransitionError(_msg(f"已被 {holder} 认领，您来晚了一步。", f"Already claimed by {holder}."))
            raise TransitionError(_msg("此操作在当前状态下不可用（可能已被他人处理），请刷新页面。",
                                       "This action is not available in the current state (someone may have acted already). Reload the page."))
        roles = self.roles_for(case, user) | ({"system"} if system else set())
        if not (set(t.roles) & roles):
            raise NotAllowed(_msg(f"您的角色不能执行“{tr(t.label, 'zh')}”。", f"Your role may not '{tr(t.label, 'en')}'."))
        if t.guard is not None and not t.guard.test(self.guard_context(case, user), self.clock()):
            raise TransitionError(_msg(f"条件未满足，暂不能“{tr(t.label, 'zh')}”。",
                                       f"The conditions for '{tr(t.label, 'en')}' are not met yet."))
        return t

    def available_transitions(self, case: Case, user: User) -> list[TransitionSpec]:
        result = []
        for t in self.state_of(case).transitions:
            if t.roles == ("system",):
                continue
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
        case = Case.from_doc(doc, owned=True)
        if user is not None and not self.can_see(case, user):
            # Same answer as "does not exist": do not reveal other units' cases.
            raise NotFound(_msg(f"事项 #{case_id} 不存在", f"case #{case_id} does not exist"))
        return case

    def cases(self, user: User, workflow: str | None = None, state: str | None = None) -> list[Case]:
        """Every case (of ``workflow``, in ``state``) the user may see, newest first, from the read model."""
        workflows = [self.definitions.workflows[workflow]] if workflow in self.definitions.workflows else (
            [] if workflow else list(self.definitions.workflows.values()))
        found = [c for wf in workflows for c in self.read.listing(user, wf, state, size=None).items]
        if not workflow:
            found.sort(key=lambda c: c.updated_at, reverse=True)
        return found

    def waits_for(self, case: Case, user: User) -> bool:
        """Whether the case is on the user's to-do list: waiting for a role they hold on it and a step they may
        take now, or for their contribution, or escalated to them."""
        wf = self.definitions.workflows.get(case.workflow)
        if wf is None or case.state not in wf.states or wf.states[case.state].final:
            return False
        roles = self.roles_for(case, user)
        if not roles:
            return False
        waiting = set(case.waiting_for) & roles and self.available_transitions(case, user)
        return bool(waiting or self.may_contribute(case, user)[0] or user.username in case.escalated_to)

    def inbox(self, user: User) -> list[Case]:
        """Open cases waiting for one of the roles the user holds on them (or for their contribution)."""
        return self.read.inbox(user, size=None).items

    def display_names(self, usernames: Iterable[str]) -> list[str]:
        names = []
        for username in usernames:
            doc = self.read.user_doc(username)
            names.append((doc.get("name") or username) if doc else username)
        return names

    def users(self, tx: Transaction | None = None, role: str | None = None) -> list[User]:
        return [User.from_doc(d) for d in self.read.user_docs(tx, role)]

    # ------------------------------------------------------------------ commands: start and transitions
    def _validate(self, form: FormSpec, values: Mapping[str, Any], user: User | None = None,
                  tx: Transaction | None = None) -> dict[str, Any]:
        data = forms.validate(form, values, at=self.clock(), org=self.definitions.org)
        errors = {}
        for f in form.fields:  # references to other cases: they must exist, be of the right kind, and be visible
            if f.kind.holds_case and f.id in data:
                if not self._case_ref_ok(f, data[f.id], user, tx):
                    errors[f.id] = [_msg("请选择一个有效的事项", "Choose one of the listed cases.")]
        if errors:
            raise SubmissionError(errors, values=dict(values))
        return data

    def _case_ref_ok(self, f: Any, value: Any, user: User | None, tx: Transaction | None) -> bool:
        try:
            doc = (tx or self.store).get(CASES, int(value))
        except (TypeError, ValueError):
            return False
        if doc is None or doc["workflow"] != f.workflow or (f.states and doc["state"] not in f.states):
            return False
        return user is None or self.can_see(Case.from_doc(doc), user)

    def case_choices(self, f: Any, user: User) -> list[Case]:
        """The newest cases a ``type: case`` field may point at, for this user."""
        return self.read.case_choices(f, user)

    def _waiting_for(self, wf: WorkflowSpec, state_id: str) -> list[str]:
        state = wf.states[state_id]
        if state.final:
            return []
        if state.inbox is not None:  # declared, even as [] (nobody's to-do list)
            return list(state.inbox)
        return sorted({r for t in state.transitions for r in t.roles} - {"system"})

    def start(self, workflow_id: str, user: User, values: Mapping[str, Any], parent: int | None = None) -> Case:
        """Open a case; ``parent``: the case it was started from (one of that case's ``offers``)."""
        wf = self.definitions.workflows.get(workflow_id)
        if wf is None:
            raise NotFound(_msg(f"流程 {workflow_id} 不存在", f"workflow {workflow_id} does not exist"))
        if not self.may_start(wf, user):
            raise NotAllowed(_msg(f"您的角色不能发起“{tr(wf.title, 'zh')}”。", f"Your role may not start '{tr(wf.title, 'en')}'."))
        if parent is not None:
            self.offer(parent, workflow_id, user)  # the parent must offer it, now, to this user
        with self.store.transaction() as tx:
            case = self._open(tx, wf, user, values, parent)
        return case

    def _open(self, tx: Transaction, wf: WorkflowSpec, user: User, values: Mapping[str, Any], parent: int | None,
              note: str = "") -> Case:
        form = self.definitions.forms[wf.start_form]
        data = self._validate(form, values, user, tx)
        org_unit = (data.get(wf.org_unit_field) if wf.org_unit_field else None) or user.org_unit
        now = self.clock()
        case = Case(workflow=wf.id, workflow_version=wf.version, state=wf.initial, data=data, org_unit=org_unit,
                    created_by=user.username, created_at=iso(now), updated_at=iso(now),
                    round=round_of(wf.round, now), parent=parent)
        case.title = self._title(wf, case)
        self._record(case, user, "start", wf.title, None, wf.initial, note, _changes(form, {}, data), now, bump=False)
        case.id = tx.insert(CASES, case.to_doc())
        self._enter(tx, case, wf, wf.initial, user, now)
        tx.replace(CASES, case.id, case.to_doc())
        return case

    def offer(self, parent_id: int, workflow_id: str, user: User) -> tuple[Case, Any]:
        """The parent case and its offer to start ``workflow_id`` from it (raises if there is none now)."""
        parent = self.get(parent_id, user)
        state = self.state_of(parent)
        spec = next((o for o in state.offers if o.workflow == workflow_id), None)
        if spec is None:
            raise TransitionError(_msg("此事项现在不能生成该类事项。", "This case does not offer that now."))
        return parent, spec

    def prefill(self, parent: Case, spec: Any, user: User, row: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Start-form values for a linked case, from ``spec.map`` over the parent (and a repeat row)."""
        ctx = self.guard_context(parent, user)
        if row is not None:
            ctx["row"] = dict(row)
        values = {}
        for target, expr in spec.map.items():
            value = expr.evaluate(ctx, self.clock())
            if value is not None:
                values[target] = value
        return values

    def children(self, case: Case, user: User) -> list[Case]:
        return self.read.children(case, user)

    def fire(self, case_id: int, transition_id: str, user: User, values: Mapping[str, Any] | None = None,
             comment: str = "", expected_version: int | None = None, assignees: Iterable[str] = ()) -> Case:
        """Take one transition (``assignees``: the people picked in a dispatch step)."""
        with self.store.transaction() as tx:
            case = self._load(tx, case_id, user)
            if expected_version is not None and expected_version != case.version:
                raise StaleVersion()
            self._take(tx, case, transition_id, user, values or {}, comment, list(assignees))
            tx.replace(CASES, case_id, case.to_doc())
        return case

    def _load(self, tx: Transaction, case_id: int, user: User | None) -> Case:
        doc = tx.get(CASES, case_id)
        if doc is None:
            raise NotFound(_msg(f"事项 #{case_id} 不存在", f"case #{case_id} does not exist"))
        case = Case.from_doc(doc, owned=True)
        if user is not None and not self.can_see(case, user):
            raise NotFound(_msg(f"事项 #{case_id} 不存在", f"case #{case_id} does not exist"))
        return case

    def _take(self, tx: Transaction, case: Case, transition_id: str, user: User, values: Mapping[str, Any],
              comment: str, chosen: list[str], system: bool = False) -> TransitionSpec:
        wf = self.workflow_of(case)
        comment = (comment or "").strip()
        t = self._check_transition(case, user, transition_id, system)                  # 1. role, 2. guard
        step_form = self.definitions.forms[t.form] if t.form else None
        try:
            step_data = self._validate(step_form, values, user, tx) if step_form else {}  # 3. form
        except SubmissionError as exc:
            exc.values = dict(values)
            raise
        if t.comment == "required" and not comment:
            raise SubmissionError({"comment": [_msg("请填写意见", "Please write a comment.")]}, values=dict(values))
        assignees = self._resolve_assign(tx, case, t.assign, user, chosen) if t.assign else None
        now = self.clock()
        self._run(t.before_actions, case, user, t, tx, now)                            # 4. before-actions
        before = dict(case.data)
        if step_form:                                                                   # 5. state + data
            for f in step_form.fields:
                if f.id in step_data:
                    case.data[f.id] = step_data[f.id]
                else:
                    case.data.pop(f.id, None)
        previous_assignees = list(case.assignees)
        if assignees is not None:
            case.assignees = assignees
        changes = _changes(step_form, before, case.data) if step_form else []
        self._move(tx, case, wf, t.target, user, t.id, t.label, comment, changes, now)  # 5 + 6. history
        self._run(t.actions, case, user, t, tx, now)                                    # 7. after-actions
        for points in t.points:
            self._post_points(tx, case, t, points, user, now)
        for spawn in t.spawn:
            self._spawn(tx, case, spawn, user)
        if assignees is not None:
            new = set(case.assignees) - set(previous_assignees)
            notify(tx, new, "assigned", case, t.label, now, skip=user.username)
            if t.assign and t.assign.mode == "self":
                notify(tx, [case.created_by], "claimed", case, t.label, now, skip=user.username)
        return t

    def _move(self, tx: Transaction, case: Case, wf: WorkflowSpec, target: str, actor: User, action: str,
              label: Mapping[str, str], comment: str, changes: list[dict[str, Any]], now: dt.datetime) -> None:
        """State change and its history entry; then what entering the new state means (timers, notices...).

        A case moves only along an edge of the workflow's state graph (``WorkflowSpec.edges``): ``action`` is
        the edge's ``via`` (a transition id, ``object`` or ``ranking``), as the history entry records it.
        """
        source = case.state
        if wf.edge(source, target, via=action) is None:
            raise TransitionError(_msg(f"流程中没有从“{source}”到“{target}”的步骤。",
                                       f"The process has no step from '{source}' to '{target}'."))
        if source != target and any(s.notice and s.notice.objection_to == source for s in wf.states.values()):
            # leaving an objection review: back to the notice means dismissed, anywhere else upheld
            back = any(s.notice and s.notice.objection_to == source and s.id == target for s in wf.states.values())
            for objection in case.objections:
                if objection["status"] == "open":
                    objection.update(status="dismissed" if back else "upheld", decided_by=actor.username, decided_at=iso(now))
        case.state = target
        case.title = self._title(wf, case)
        self._record(case, actor, action, label, source, target, comment, changes, now)
        self._enter(tx, case, wf, target, actor, now)

    def _enter(self, tx: Transaction, case: Case, wf: WorkflowSpec, state_id: str, actor: User, now: dt.datetime) -> None:
        state = wf.states[state_id]
        case.waiting_for = self._waiting_for(wf, state_id)
        case.overdue = False
        case.escalated_to = []
        case.timers = []
        if state.after:
            case.timers.append({"kind": "after", "state": state_id, "due": iso(state.after.after.after(now)),
                                "transition": state.after.transition, "done": False})
        due = self._deadline(case, state, now)
        if due is not None:
            case.timers.append({"kind": "deadline", "state": state_id, "due": iso(due), "transition": None, "done": False})
        if state.notice:
            case.timers.append({"kind": "notice", "state": state_id, "due": iso(state.notice.duration.after(now)),
                                "transition": state.notice.on_expiry, "done": False})
        if state.collect and state.collect.deadline:
            case.timers.append({"kind": "collect_deadline", "state": state_id,
                                "due": iso(state.collect.deadline.after(now)),
                                "transition": state.collect.on_deadline, "done": False})
        if state.collect:
            self._aggregate(case, state)
        if state.publish:
            ledger.publish(tx, case, state_id, self.public_data(case, state), actor.username, now)
        if state.final or state.publish:
            notify(tx, [case.created_by], "result", case, state.title, now, skip=actor.username)

    def _spawn(self, tx: Transaction, case: Case, spec: Any, actor: User) -> None:
        """Start linked cases from this one: one per row of ``spec.rows``, or one."""
        wf = self.definitions.workflows[spec.workflow]
        rows = case.data.get(spec.rows) or [] if spec.rows else [None]
        for i, row in enumerate(rows):
            values = self.prefill(case, spec, actor, row)
            try:
                self._open(tx, wf, actor, values, case.id, note=f"#{case.id}")
            except SubmissionError as exc:
                where = f"第 {i + 1} 行" if spec.rows else ""
                detail = "; ".join(f"{k}: {v[0]['zh']}" for k, v in exc.errors.items())
                raise TransitionError(_msg(f"{where}无法生成“{tr(spec.label, 'zh')}”：{detail}",
                                           f"Cannot start '{tr(spec.label, 'en')}' {('from row ' + str(i + 1)) if spec.rows else ''}: "
                                           + "; ".join(f"{k}: {v[0]['en']}" for k, v in exc.errors.items()))) from None

    @staticmethod
    def _deadline(case: Case, state: StateSpec, now: dt.datetime) -> dt.datetime | None:
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
        return spec.within.after(now) if spec.within else None

    def _resolve_assign(self, tx: Transaction, case: Case, spec: AssignSpec, actor: User, chosen: list[str]) -> list[str]:
        if spec.mode == "creator":
            return [case.created_by]
        if spec.mode == "none":
            return []
        if spec.mode == "self":
            return [actor.username]
        if spec.mode == "leave":  # one member of a team steps out; the others keep it
            return [u for u in case.assignees if u != actor.username]
        eligible = [u.username for u in self.eligible_assignees(case, spec, actor, tx)]
        if spec.mode == "route":
            if not eligible:
                raise TransitionError(_msg(f"上级单位没有“{self._role_title(spec.role, 'zh')}”，无法转交。",
                                           f"No {self._role_title(spec.role, 'en')} in the unit above: cannot route."))
            return eligible
        picked = [u for u in dict.fromkeys(chosen) if u]
        if not picked or (len(picked) > 1 and not spec.multiple) or set(picked) - set(eligible):
            raise SubmissionError({"assignees": [_msg("请选择办理人" if not picked else "所选人员不可分配",
                                                      "Choose who does it." if not picked else "That person cannot be assigned.")]})
        return picked

    def _role_title(self, role: str | None, lang: str) -> str:
        spec = self.definitions.roles.get(role or "")
        return tr(spec.title, lang) if spec else str(role)

    def routed_unit(self, case: Case, spec: AssignSpec) -> str | None:
        org = self.definitions.org
        if spec.unit == "parent":
            return org.parent(case.org_unit)
        if spec.unit in LEVELS:
            return org.ancestor_at(case.org_unit, spec.unit)
        return None

    def eligible_assignees(self, case: Case, spec: AssignSpec, actor: User, tx: Transaction | None = None) -> list[User]:
        """Who a dispatch may pick (``choose``) or a route goes to (``route``)."""
        org = self.definitions.org
        holders = self.users(tx, spec.role)
        if spec.mode == "route":
            unit = self.routed_unit(case, spec)
            if unit is None:  # no unit named: every holder whose reach covers the case
                return [u for u in holders if self.reaches(u, spec.role or "", case.org_unit)]
            return [u for u in holders if u.org_unit == unit]
        return [u for u in holders
                if org.contains(actor.org_unit, u.org_unit) or org.contains(u.org_unit, case.org_unit)]

    def _post_points(self, tx: Transaction, case: Case, t: TransitionSpec, spec: Any, actor: User, now: dt.datetime) -> None:
        value = spec.amount.evaluate(self.guard_context(case, actor), now)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TransitionError(_msg(f"积分数额无法计算（{spec.amount.source}），请检查填写内容。",
                                       f"The points amount ({spec.amount.source}) cannot be computed from this case."))
        owners = {"creator": [case.created_by], "assignee": case.assignees, "actor": [actor.username]}[spec.account]
        for owner in owners:
            ledger.post(tx, owner, int(round(value)), reason=spec.reason, case_id=case.id, workflow=case.workflow,
                        transition=t.id, by=actor.username, now=now)

    # ------------------------------------------------------------------ many contributors
    def may_contribute(self, case: Case, user: User) -> tuple[bool, dict[str, str] | None]:
        """Whether ``user`` may submit their own input on ``case`` now, and if not, why."""
        wf = self.definitions.workflows.get(case.workflow)
        state = wf.states.get(case.state) if wf else None
        spec = state.collect if state else None
        if spec is None:
            return False, None
        if spec.who == "assignees":
            if user.username not in case.assignees:
                return False, _msg("您不是本事项的评审人。", "You are not one of the assigned reviewers.")
        elif not any(r in user.roles and (spec.scope == "any" or self.reaches(user, r, case.org_unit, wf))
                     for r in spec.roles):
            return False, _msg("您的角色不能参与此项。", "Your role does not take part in this.")
        reason = self.recusal(case, user, spec.recuse)
        if reason:
            return False, reason
        mine = case.contributions.get(case.state, {}).get(user.username)
        if mine and spec.once == "refuse":
            return False, _msg("您已经提交过，不能重复提交。", "You have already submitted; a second submission is not accepted.")
        return True, None

    def recusal(self, case: Case, user: User, rules: Iterable[str]) -> dict[str, str] | None:
        if user.username in case.conflicts:
            return _msg("您已声明回避。", "You declared a conflict of interest.")
        for rule in rules:
            if rule == "creator" and case.created_by == user.username:
                return _msg("本人事项需回避。", "You may not rate your own case.")
            if rule == "same_unit" and case.org_unit == user.org_unit:
                return _msg("本单位事项需回避。", "You may not rate a case of your own unit.")
            if rule.startswith("field:"):
                value = case.data.get(rule[6:])
                if value == user.username or (isinstance(value, list) and user.username in value):
                    return _msg("您是本事项的当事人，需回避。", "You are party to this case and must recuse yourself.")
        return None

    def contribute(self, case_id: int, user: User, values: Mapping[str, Any]) -> Case:
        """Store ``user``'s own input for the current collecting state and update the aggregate."""
        with self.store.transaction() as tx:
            case = self._load(tx, case_id, user)
            allowed, reason = self.may_contribute(case, user)
            if not allowed:
                raise NotAllowed(reason or _msg("现在不能提交。", "Nothing to submit now."))
            state = self.state_of(case)
            spec = state.collect
            assert spec is not None
            data = self._validate(self.definitions.forms[spec.form], values, user, tx)
            now = iso(self.clock())
            bucket = case.contributions.setdefault(case.state, {})
            previous = bucket.get(user.username)
            revisions = (previous.get("revisions", []) + [{"data": previous["data"], "at": previous["at"]}]) if previous else []
            bucket[user.username] = {"by": user.username, "name": user.name, "unit": user.org_unit,
                                     "roles": sorted(set(user.roles) & (set(spec.roles) or set(user.roles))),
                                     "data": data, "at": now, "revisions": revisions}
            self._aggregate(case, state)
            self._touch(case, self.clock())  # a contribution changes the case: a page loaded before is stale
            tx.replace(CASES, case_id, case.to_doc())
        return case

    def declare_conflict(self, case_id: int, user: User, reason: str) -> Case:
        """A contributor declares a conflict of interest: they are left out (and their input, if any, removed)."""
        with self.store.transaction() as tx:
            case = self._load(tx, case_id, user)
            state = self.state_of(case)
            if state.collect is None or not reason.strip():
                raise TransitionError(_msg("请说明回避理由。", "Give a reason for recusing yourself."))
            if user.username not in case.conflicts:
                case.conflicts.append(user.username)
            case.contributions.get(case.state, {}).pop(user.username, None)
            self._record(case, user, "recuse", _msg("声明回避", "Declared a conflict of interest"),
                         case.state, case.state, reason.strip(), [], self.clock())
            self._aggregate(case, state)
            tx.replace(CASES, case_id, case.to_doc())
        return case

    def needed(self, case: Case, state: StateSpec) -> int:
        spec = state.collect
        assert spec is not None
        if spec.who == "assignees":
            active = [u for u in case.assignees if u not in case.conflicts]
            return spec.min or len(active)
        return spec.min or 1

    def _aggregate(self, case: Case, state: StateSpec) -> None:
        spec = state.collect
        if spec is None or spec.aggregate is None:
            return
        bucket = case.contributions.get(state.id, {})
        case.data[spec.aggregate.into] = collect.aggregate(spec.aggregate, bucket, self.needed(case, state))

    def progress(self, case: Case, user: User) -> dict[str, Any] | None:
        """For the case page: how many have contributed, who is pending, and (if allowed) who gave what."""
        state = self.state_of(case)
        spec = state.collect
        if spec is None:
            return None
        bucket = case.contributions.get(case.state, {})
        pending = [u for u in case.assignees if u not in bucket and u not in case.conflicts] if spec.who == "assignees" else []
        names = {u.username: u.name for u in self.users()} if pending else {}
        may_see = bool(set(spec.visible_to) & self.roles_for(case, user))
        return {
            "spec": spec, "done": len(bucket), "needed": self.needed(case, state),
            "pending": [names.get(u, u) for u in pending],
            "contributions": list(bucket.values()) if may_see else [],
            "mine": bucket.get(user.username),
            "may_see": may_see,
            "result": case.data.get(spec.aggregate.into) if spec.aggregate else None,
        }

    # ------------------------------------------------------------------ public notice and objections
    def object(self, case_id: int, user: User, reason: str) -> Case:
        """File an objection during a public notice: the case moves to the declared review state."""
        reason = (reason or "").strip()
        with self.store.transaction() as tx:
            doc = tx.get(CASES, case_id)
            if doc is None:
                raise NotFound(_msg(f"事项 #{case_id} 不存在", f"case #{case_id} does not exist"))
            case = Case.from_doc(doc, owned=True)
            wf = self.workflow_of(case)
            state = self.state_of(case)
            if state.notice is None:
                raise TransitionError(_msg("公示已结束，不能再提出异议。", "The public notice period is over."))
            if not set(state.notice.objection_roles) & set(user.roles):
                raise NotAllowed(_msg("只有居民可以在公示期提出异议。", "Only residents may object during a public notice."))
            if not reason:
                raise SubmissionError({"reason": [_msg("请写明异议理由", "Please give the reason for your objection.")]})
            now = self.clock()
            case.objections.append({"by": user.username, "name": user.name, "at": iso(now), "reason": reason[:2000],
                                    "status": "open", "state": case.state})
            self._move(tx, case, wf, state.notice.objection_to, user, "object", _msg("提出异议", "Objection filed"),
                       reason[:2000], [], now)
            waiting = self._waiting_people(tx, case)
            notify(tx, waiting, "objection", case, _msg("提出异议", "Objection filed"), now, skip=user.username)
            tx.replace(CASES, case_id, case.to_doc())
        return case

    def public_data(self, case: Case, state: StateSpec) -> dict[str, Any]:
        """What the public page may show of a case: declared fields only, sensitive ones masked."""
        wf = self.workflow_of(case)
        names = state.notice.public_fields if state.notice else state.public_fields
        by_id = {f.id: f for _, f in self.data_fields(wf)}
        result = {}
        for name in names:
            value = case.data.get(name)
            f = by_id.get(name)
            if f is not None and f.sensitive:
                value = forms.mask(value)
            result[name] = value
        return result

    def results(self, case: Case) -> list[dict[str, Any]]:
        """What the engine itself wrote into the case (aggregates, the ranking level), labelled for people:
        ``[{"name", "label": {zh, en}, "value": {zh, en}}]``."""
        wf = self.workflow_of(case)
        found = []
        for state in wf.states.values():
            agg = state.collect.aggregate if state.collect else None
            if agg and isinstance(case.data.get(agg.into), dict) and agg.into not in {r["name"] for r in found}:
                result = case.data[agg.into]
                if result.get("total") is not None:
                    text = f"{result['total']:g}（{result['count']} 份）"
                    found.append({"name": agg.into, "label": state.collect.label,
                                  "value": {"zh": text, "en": f"{result['total']:g} ({result['count']} submitted)"}})
                elif result.get("tally"):
                    text = ", ".join(f"{k}: {v}" for k, v in result["tally"].items())
                    found.append({"name": agg.into, "label": state.collect.label, "value": {"zh": text, "en": text}})
        if wf.ranking and case.data.get(wf.ranking.into):
            level = next((lv for lv in wf.ranking.levels if lv.id == case.data[wf.ranking.into]), None)
            if level is not None:
                found.append({"name": wf.ranking.into, "label": {"zh": "评选结果", "en": "Result"}, "value": dict(level.label)})
        return found

    def public_rows(self, case: Case, state: StateSpec, lang: str = "zh") -> list[tuple[str, str]]:
        """The public page's (label, text) rows: declared fields only, sensitive ones masked, results labelled."""
        data = self.public_data(case, state)
        by_id = {f.id: f for _, f in self.data_fields(self.workflow_of(case))}
        results = {r["name"]: r for r in self.results(case)}
        rows = []
        for name, value in data.items():
            if name in results:
                rows.append((tr(results[name]["label"], lang), tr(results[name]["value"], lang)))
            elif name in by_id and by_id[name].is_repeat:
                f = by_id[name]
                lines = ["；".join(forms.display(sub, row.get(sub.id), lang, self.definitions.org)
                                  for sub in f.fields if row.get(sub.id) not in (None, "", []) and not sub.sensitive)
                         for row in value or []]
                rows.append((tr(f.label, lang), "\n".join(lines)))
            elif name in by_id:
                shown = value if by_id[name].sensitive else forms.display(by_id[name], value, lang, self.definitions.org)
                rows.append((tr(by_id[name].label, lang), str(shown or "")))
            else:
                rows.append((name, str(value or "")))
        return rows

    def public_cases(self, page: int = 1, size: int | None = None) -> list[tuple[Case, StateSpec]]:
        """Cases on public notice or in a public state, for the page anyone may read, newest first."""
        return [(case, self.state_of(case)) for case in self.read.public(page, size).items]

    def public_case(self, case_id: int) -> tuple[Case, StateSpec] | None:
        doc = self.store.get(CASES, case_id)
        if doc is None:
            return None
        case = Case.from_doc(doc, owned=True)
        wf = self.definitions.workflows.get(case.workflow)
        state = wf.states.get(case.state) if wf else None
        return (case, state) if state is not None and (state.notice or state.public) else None

    def notice_ends(self, case: Case) -> str | None:
        return next((t["due"] for t in case.timers if t["kind"] == "notice" and not t["done"]), None)

    def notice_days_left(self, case: Case) -> int | None:
        """Days until the notice period ends, rounded up (a few hours left count as 1)."""
        ends = self.notice_ends(case)
        if ends is None:
            return None
        seconds = (dt.datetime.fromisoformat(ends) - self.clock()).total_seconds()
        return max(0, -(-int(seconds) // 86400))

    # ------------------------------------------------------------------ timers
    def tick(self, now: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Run every due timer once: safe from cron and from several processes (each in its own transaction)."""
        moment = now or self.clock()
        stamp = iso(moment)
        due_ids = self.read.due_case_ids(stamp)
        fired = []
        for case_id in due_ids:
            with self.store.transaction() as tx:
                case = self._load(tx, case_id, None)
                wf = self.workflow_of(case)
                for timer in list(case.timers):
                    if timer["done"] or timer["due"] > stamp or timer["state"] != case.state:
                        continue
                    timer["done"] = True
                    fired.append({"case": case_id, "kind": timer["kind"], "transition": timer["transition"]})
                    if timer["kind"] == "deadline":
                        self._overdue(tx, case, wf, moment)
                    elif timer["transition"]:
                        try:
                            self._take(tx, case, timer["transition"], SYSTEM, {}, "", [], system=True)
                        except TransitionError as exc:  # a guard said no: note it, never retry forever
                            self._record(case, SYSTEM, "timer_skipped", _msg("定时操作未执行", "Timer skipped"),
                                         case.state, case.state, tr(exc.message), [], moment)
                        break  # the state changed: the old state's other timers are gone
                    else:
                        self._overdue(tx, case, wf, moment)
                tx.replace(CASES, case_id, case.to_doc())
        return fired

    def _waiting_people(self, tx: Transaction, case: Case) -> set[str]:
        """Everyone the case now waits for (holders of its waiting roles within reach, creator, assignees)."""
        names = set()
        for role in set(case.waiting_for) - PSEUDO_ROLES:
            names |= {u.username for u in self.users(tx, role) if role in self.roles_for(case, u)}
        if "creator" in case.waiting_for:
            names.add(case.created_by)
        if "assignee" in case.waiting_for:
            names |= set(case.assignees)
        return names

    def _overdue(self, tx: Transaction, case: Case, wf: WorkflowSpec, now: dt.datetime) -> None:
        state = wf.states[case.state]
        case.overdue = True
        label = _msg(f"“{tr(state.title, 'zh')}”已超期", f"'{tr(state.title, 'en')}' is overdue")
        self._record(case, SYSTEM, "overdue", label, case.state, case.state, "", [], now)
        waiting = self._waiting_people(tx, case)
        if state.deadline and state.deadline.escalate:
            # Escalation tells the unit above and puts the case in their inbox; it does not make them the
            # assignees (points and "assignee" steps stay with the people doing the work).
            try:
                up = self._resolve_assign(tx, case, state.deadline.escalate, SYSTEM, [])
            except TransitionError as exc:  # nobody holds that role above: say so, and still flag it overdue
                self._record(case, SYSTEM, "escalation_failed", _msg("无法上报", "Could not escalate"),
                             case.state, case.state, tr(exc.message), [], now)
            else:
                case.escalated_to = sorted(set(case.escalated_to) | set(up))
        notify(tx, set(waiting) | set(case.assignees) | set(case.escalated_to), "overdue", case, label, now)

    # ------------------------------------------------------------------ rounds and ranking
    def rounds(self, workflow_id: str, user: User) -> list[str]:
        return self.read.rounds(workflow_id)

    def ranking(self, workflow_id: str, round_id: str, user: User) -> ranking.RankResult:
        wf = self.definitions.workflows[workflow_id]
        if wf.ranking is None:
            raise NotFound(_msg("此流程没有排名", "This process has no ranking."))
        cases = [c for c in self.read.round_cases(None, wf, wf.ranking.state, round_id) if self.can_see(c, user)]
        return ranking.rank(wf.ranking, cases, lambda c: self.guard_context(c, user))

    def can_rank(self, wf: WorkflowSpec, user: User) -> bool:
        return wf.ranking is not None and bool(set(wf.ranking.roles) & set(user.roles))

    def round_closed(self, workflow_id: str, round_id: str) -> dict[str, Any] | None:
        return self.read.round_closed(workflow_id, round_id)

    def close_round(self, workflow_id: str, round_id: str, user: User) -> ranking.RankResult:
        """Rank the round and move every ranked case: the top of each level to ``selected``, the rest to ``rest``."""
        wf = self.definitions.workflows.get(workflow_id)
        if wf is None or wf.ranking is None:
            raise NotFound(_msg("此流程没有排名", "This process has no ranking."))
        spec = wf.ranking
        if not set(spec.roles) & set(user.roles):
            raise NotAllowed(_msg("您的角色不能确定排名。", "Your role may not close a ranking round."))
        with self.store.transaction() as tx:
            if self.read.round_closed(workflow_id, round_id, tx):
                raise TransitionError(_msg(f"{round_id} 已确定排名。", f"Round {round_id} is already closed."))
            cases = [c for c in self.read.round_cases(tx, wf, spec.state, round_id) if self.can_see(c, user)]
            if not cases:
                raise TransitionError(_msg("本轮没有待排名的事项。", "No cases are waiting to be ranked in this round."))
            result = ranking.rank(spec, cases, lambda c: self.guard_context(c, user))
            if result.blocking_ties:
                tie = result.blocking_ties[0]
                ids = "、".join(f"#{i}" for i in tie["cases"])
                raise TransitionError(_msg(f"名额边界出现并列（{ids}），请先按规则处理并列后再确定排名。",
                                           f"A tie at the quota boundary ({ids.replace('、', ', ')}): resolve it before closing."))
            now = self.clock()
            by_id = {c.id: c for c in cases}
            labels = {lv.id: lv.label for lv in spec.levels}
            for placed in result.placed:
                case = by_id[placed.case_id]
                case.data[spec.into] = placed.level
                target = spec.selected if placed.level else spec.rest
                level = labels.get(placed.level or "", _msg("未入选", "not selected"))
                comment = f"第 {placed.rank} 名 · {tr(level, 'zh')}"
                self._move(tx, case, wf, target, user, "ranking", _msg("确定排名", "Ranking closed"), comment,
                           [{"field": spec.into, "old": None, "new": placed.level}], now)
                tx.replace(CASES, case.id, case.to_doc())
            tx.insert(ROUNDS, {"workflow": workflow_id, "round": round_id, "closed_at": iso(now), "by": user.username,
                               "results": [{"case": p.case_id, "rank": p.rank, "level": p.level} for p in result.placed],
                               "ties": result.ties})
        return result

    # ------------------------------------------------------------------ reported figures and quotas
    def figures(self, user: User, unit: str | None = None) -> list[dict[str, Any]]:
        """Every declared metric, per case month and org unit, over the units the user's roles in each
        workflow reach: ``{"workflow", "metric", "month": "2026-11", "unit", "value"}`` (summed per unit and
        month, kept up to date by the store as cases change). The dashboard groups them by month, quarter and unit.
        """
        return self.read.figures(user, unit)

    def quota_report(self, wf: WorkflowSpec, user: User, day: dt.date | None = None) -> list[dict[str, Any]]:
        """For each target: per person, how many cases they started in the period around ``day``, and the shortfall."""
        day = day or self.clock().date()
        result = []
        cases = self.cases(user, wf.id)
        for target in wf.targets:
            if target.period == "week":
                start = day - dt.timedelta(days=day.weekday())
                end = start + dt.timedelta(days=7)
            else:
                start = day.replace(day=1)
                end = (start + dt.timedelta(days=32)).replace(day=1)
            people = [u for u in self.users(role=None)
                      if (set(target.roles or wf.start_roles) & set(u.roles)) and self.in_scope(user, u.org_unit)]
            counts = {u.username: 0 for u in people}
            for case in cases:
                when = str(case.data.get(target.date) or "") if target.date else case.created_at
                if when and start.isoformat() <= when[:10] < end.isoformat() and case.created_by in counts:
                    counts[case.created_by] += 1
            for person in people:
                done = counts[person.username]
                result.append({"target": target, "user": person, "count": done, "shortfall": max(0, target.count - done),
                               "start": start.isoformat(), "end": (end - dt.timedelta(days=1)).isoformat()})
        return result

    # ------------------------------------------------------------------ points
    def balance(self, username: str) -> int:
        found = self.read.account(username)
        return found["balance"] if found else 0

    def ledger_of(self, username: str) -> list[dict[str, Any]]:
        return self.read.ledger_of(username)

    # ------------------------------------------------------------------ helpers
    def _run(self, calls: Iterable[Any], case: Case, user: User, t: TransitionSpec | None, tx: Transaction,
             now: dt.datetime) -> None:
        for call in calls:
            self.actions[call.name](ActionContext(case, user, t, tx, now, self.definitions, call.args))

    @staticmethod
    def _touch(case: Case, now: dt.datetime) -> None:
        """The case changed: a new version (a page loaded before it is stale) and a new update time."""
        case.version += 1
        case.updated_at = iso(now)

    def _record(self, case: Case, actor: User, action: str, label: Mapping[str, str], source: str | None,
                target: str, comment: str, changes: list[dict[str, Any]], now: dt.datetime, bump: bool = True) -> None:
        """The one place history is written: every entry is a new version of the case."""
        case.history.append({"at": iso(self.clock()), "by": actor.username, "by_name": actor.name, "action": action,
                             "label": dict(label), "from": source, "to": target, "comment": comment, "changes": changes})
        if bump:
            self._touch(case, now)

    def _title(self, wf: WorkflowSpec, case: Case) -> str:
        if wf.case_title is not None:
            form = self.definitions.forms[wf.start_form]
            value = wf.case_title.evaluate(forms.expression_context(form.fields, case.data), self.clock())
            if value not in (None, ""):
                return str(value)
        return tr(wf.title, "zh")


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


__all__ = ["Engine", "SYSTEM", "round_of", "FILE_TYPES"]
