"""The engine at run time: a thin coordinator over the one transition path and the mechanics.

Every move a case makes — a transition (:meth:`Engine.fire`), an objection (``object``), a ranking outcome
(``close_round``), a timer (``tick``, as :data:`SYSTEM`) — goes through ``engine.transition.take``, in a fixed
order: role check -> guard -> form validation -> before-actions -> state change + data merge -> history entry
-> after-actions, inside one store transaction with an optimistic version check. :meth:`Engine._record` is
the one place history is written. Each mechanism's public methods come from its mixin in
``engine.mechanics`` (collect, approval, notice, timers, ranking, assign, points, spawn, reports); roles and reach are
``engine.access``, indexed reads ``engine.readmodel``.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Mapping

from . import forms, readmodel
from . import transition as moves
from .access import Access
from .actions import ACTIONS, ActionContext, ActionRegistry
from .cases import CASES, Case, is_case_number
from .clock import Clock, iso
from .clock import now as default_clock
from .errors import NotAllowed, NotFound, StaleVersion, SubmissionError, TransitionError
from .loadkit import msg as _msg
from .mechanics import collect, ranking
from .mechanics.approval import ApprovalMixin
from .mechanics.assign import AssignMixin
from .mechanics.base import SYSTEM, Step
from .mechanics.collect import CollectMixin
from .mechanics.notice import NoticeMixin
from .mechanics.points import PointsMixin
from .mechanics.ranking import RankingMixin, round_of
from .mechanics.reports import ReportsMixin
from .mechanics.spawn import SpawnMixin
from .mechanics.timers import TimersMixin
from .spec import FILE_TYPES, PSEUDO_ROLES, Definitions, FormSpec, StateSpec, TransitionSpec, WorkflowSpec, tr
from .store.base import Store, Transaction
from .users import User
from .versions import Versions

ROUNDS = readmodel.ROUNDS


class Engine(CollectMixin, ApprovalMixin, NoticeMixin, TimersMixin, RankingMixin, AssignMixin, PointsMixin, SpawnMixin,
             ReportsMixin):
    def __init__(self, definitions: Definitions, store: Store, actions: ActionRegistry = ACTIONS,
                 clock: Clock = default_clock, *, indexes: bool = True):
        """``indexes=False``: an engine over a store another engine already declared its indexes on, that
        declares none itself (checking a draft of the definitions must not rebuild what the app reads)."""
        self.definitions = definitions
        self.store = store
        self.actions = actions
        self.clock = clock
        #: the versions of each workflow kept in the store: a case runs on the one it started with
        self.kept = Versions(definitions, store, actions, lambda: iso(self.clock()))
        self.access = Access(definitions, spec_of=self.spec_of)
        self._fields: dict[tuple[str, int, str], list[tuple[FormSpec, Any]]] = {}
        if indexes:
            readmodel.install(store, definitions, lambda case: self.guard_context(case, SYSTEM), self.kept)
        self.read = readmodel.ReadModel(self)

    # ------------------------------------------------------------------ specs
    def spec_of(self, case: Case) -> WorkflowSpec | None:
        """The version of its workflow ``case`` runs on (``engine.versions``), None if the workflow is gone."""
        wf = self.definitions.workflows.get(case.workflow)
        if wf is None or wf.version == case.workflow_version:
            return wf
        return self.kept.spec(case.workflow, case.workflow_version) or wf  # never kept: the current files

    def workflow_of(self, case: Case) -> WorkflowSpec:
        """The version of its workflow a case runs on: the one it started with, until it is migrated."""
        wf = self.spec_of(case)
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
        if wf.key in self._fields:
            return self._fields[wf.key]
        seen, result = set(), []
        form_ids = [wf.start_form] + [t.form for t in wf.transitions() if t.form]
        for form_id in form_ids:
            form = self.definitions.form_of(wf, form_id)
            for f in form.fields:
                if f.id not in seen:
                    seen.add(f.id)
                    result.append((form, f))
        self._fields[wf.key] = result
        return result

    def versions(self, workflow_id: str) -> list[tuple[int, str, int]]:
        """``(version, digest, running cases)`` of every version of a workflow that is current or kept,
        oldest first (digest "" for a current version that cannot be kept: definitions not from files)."""
        return self.kept.summary(workflow_id, self.read.version_counts(workflow_id))

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

    def may_see_file(self, case: Case, user: User, key: str) -> bool:
        return self.access.may_see_file(case, user, key)

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

    def available_transitions(self, case: Case, user: User) -> list[TransitionSpec]:
        """The transitions ``user`` may take now (role check and guard of the one transition path, not tried for
        a transition none of the roles the check would find names)."""
        wf, result = self.workflow_of(case), []
        roles = self.roles_for(case, user) | ({"system"} if user is SYSTEM else set())  # as Transition.check_roles
        for t in self.state_of(case).transitions:
            edge = wf.edge(case.state, t.target, kind="transition", via=t.id)
            if t.roles == ("system",) or edge is None or roles.isdisjoint(t.roles):
                continue
            try:
                moves.check(self, case, edge, user, Step(transition=t))
            except TransitionError:
                continue
            result.append(t)
        return result

    # ------------------------------------------------------------------ queries
    def get(self, case_id: int, user: User | None = None) -> Case:
        doc = self.store.get(CASES, case_id) if is_case_number(case_id) else None  # /cases/0 is not found
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
        take now, or for their contribution or their approval, or escalated to them."""
        wf = self.spec_of(case)
        if wf is None or case.state not in wf.states or wf.states[case.state].final:
            return False
        roles = self.roles_for(case, user)
        if not roles:
            return False
        waiting = set(case.waiting_for) & roles and self.available_transitions(case, user)
        return bool(waiting or self.may_contribute(case, user)[0] or self.may_approve(case, user)
                    or user.username in case.escalated_to)

    def inbox(self, user: User) -> list[Case]:
        """Open cases waiting for one of the roles the user holds on them (or for their contribution)."""
        return self.read.inbox(user, size=None).items

    def users(self, tx: Transaction | None = None, role: str | None = None) -> list[User]:
        return [User.from_doc(d) for d in self.read.user_docs(tx, role)]

    def case_choices(self, f: Any, user: User) -> list[Case]:
        """The newest cases a ``type: case`` field may point at, for this user."""
        return self.read.case_choices(f, user)

    def results(self, case: Case) -> list[dict[str, Any]]:
        """What the engine itself wrote into the case (aggregates, the ranking level), labelled for people:
        ``[{"name", "label": {zh, en}, "value": {zh, en}}]``."""
        wf = self.workflow_of(case)
        found: list[dict[str, Any]] = []
        collect.results(case, wf, found, lambda form_id: self.definitions.form_of(wf, form_id))
        ranking.results(case, wf, found)
        return found

    # ------------------------------------------------------------------ commands: start and transitions
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

    def fire(self, case_id: int, transition_id: str, user: User, values: Mapping[str, Any] | None = None,
             comment: str = "", expected_version: int | None = None, assignees: Iterable[str] = ()) -> Case:
        """Take one transition (``assignees``: the people picked in a dispatch step)."""
        with self.store.transaction() as tx:
            case = self._load(tx, case_id, user)
            if expected_version is not None and expected_version != case.version:
                raise StaleVersion()
            moves.take(self, tx, case, moves.find(self, case, transition_id), user,
                       Step(values=values or {}, comment=comment, chosen=list(assignees)))
            tx.replace(CASES, case_id, case.to_doc())
        return case

    def _open(self, tx: Transaction, wf: WorkflowSpec, user: User, values: Mapping[str, Any], parent: int | None,
              note: str = "") -> Case:
        form = self.definitions.form_of(wf, wf.start_form)
        data = self._validate(form, values, user, tx)
        org_unit = (data.get(wf.org_unit_field) if wf.org_unit_field else None) or user.org_unit
        now = self.clock()
        case = Case(workflow=wf.id, workflow_version=wf.version, state=wf.initial, data=data, org_unit=org_unit,
                    created_by=user.username, created_at=iso(now), updated_at=iso(now),
                    round=round_of(wf.round, now), parent=parent)
        case.title = self._title(wf, case)
        self._record(case, user, "start", wf.title, None, wf.initial, note, moves.changes_of(form, {}, data), now, bump=False)
        self.kept.keep(tx, wf)  # the version this case runs on is kept with it, in the same transaction
        case.id = tx.insert(CASES, case.to_doc())
        moves.enter(self, tx, case, wf, wf.initial, user, now)
        tx.replace(CASES, case.id, case.to_doc())
        return case

    def _load(self, tx: Transaction, case_id: int, user: User | None) -> Case:
        doc = tx.get(CASES, case_id)
        if doc is None:
            raise NotFound(_msg(f"事项 #{case_id} 不存在", f"case #{case_id} does not exist"))
        case = Case.from_doc(doc, owned=True)
        if user is not None and not self.can_see(case, user):
            raise NotFound(_msg(f"事项 #{case_id} 不存在", f"case #{case_id} does not exist"))
        return case

    def _move(self, tx: Transaction, case: Case, wf: WorkflowSpec, target: str, actor: User, action: str,
              label: Mapping[str, str], comment: str, changes: list[dict[str, Any]], now: dt.datetime) -> None:
        """Step 5-6 of the transition path alone (``engine.transition.move``): refuses a move that is no edge."""
        moves.move(self, tx, case, wf, target, actor, action, label, comment, changes, now)

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
            form = self.definitions.form_of(wf, wf.start_form)
            value = wf.case_title.evaluate(forms.expression_context(form.fields, case.data), self.clock())
            if value not in (None, ""):
                return str(value)
        return tr(wf.title, "zh")


#: Kept for old imports.
_changes = moves.changes_of

__all__ = ["Engine", "SYSTEM", "round_of", "FILE_TYPES", "ROUNDS"]
