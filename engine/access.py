"""Who may see and do what: roles, their reach over the org tree, and the roles a user holds on a case.

The read model's index keys (``engine.readmodel``) are derived from the same rules, so what a page
lists and what a case page lets a person open never disagree.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Iterable, Iterator

from .spec import LEVELS, Definitions, WorkflowSpec, field_role, person_roles


class Access:
    def __init__(self, definitions: Definitions, spec_of: Callable[[Any], WorkflowSpec | None] | None = None):
        """``spec_of(case)``: the version of its workflow a case runs on (default: the current one)."""
        self.definitions = definitions
        self.spec_of = spec_of or (lambda case: definitions.workflows.get(case.workflow))
        self._acting: dict[tuple[str, int, str], frozenset[str]] = {}
        self._staff: dict[tuple[str, int, str], frozenset[str]] = {}
        self._reached: dict[tuple[Any, ...], frozenset[str]] = {}
        self.reach_units = lru_cache(maxsize=4096)(self._reach_units)
        self._top = lru_cache(maxsize=4096)(self._top_of)

    # -- roles of a workflow ---------------------------------------------------
    def acting_roles(self, wf: WorkflowSpec) -> frozenset[str]:
        """Roles that take part in a workflow beyond starting it: they see its cases within their reach."""
        if wf.key not in self._acting:
            roles = {r for t in wf.transitions() for r in t.roles}
            roles |= {r for state in wf.states.values() for r in state.inbox or ()}
            roles |= {r for state in wf.states.values() if state.collect for r in state.collect.roles}
            roles |= {r for state in wf.states.values() if state.approval for r in state.approval.approvers.roles}
            for spec in wf.rankings:
                roles |= set(spec.roles) | set(spec.reopen or ())
            self._acting[wf.key] = frozenset(person_roles(roles))
        return self._acting[wf.key]

    def staff_roles(self, wf: WorkflowSpec) -> frozenset[str]:
        """Roles that take a transition of the workflow (they see sensitive fields within their reach)."""
        if wf.key not in self._staff:
            self._staff[wf.key] = frozenset(person_roles(r for t in wf.transitions() for r in t.roles))
        return self._staff[wf.key]

    def role_scope(self, role: str, wf: WorkflowSpec | None = None) -> str:
        if wf is not None and role in wf.role_scope:
            return wf.role_scope[role]
        spec = self.definitions.roles.get(role)
        return spec.scope if spec else "unit"

    # -- reach over the org tree -----------------------------------------------
    def top_unit(self, org_unit: str, role: str, wf: WorkflowSpec | None = None) -> str | None:
        """The unit whose subtree a holder of ``role`` in ``org_unit`` reaches; None: everything."""
        scope = self.role_scope(role, wf)
        if scope == "all":
            return None
        if scope in LEVELS:
            top = self.definitions.org.ancestor_at(org_unit, scope)
            if top is not None:
                return top
        return org_unit

    def reaches(self, user: Any, role: str, org_unit: str, wf: WorkflowSpec | None = None) -> bool:
        """Whether ``user`` acting as ``role`` reaches a case of ``org_unit``: their unit and below, everything
        (scope all), or everything under their unit's ancestor at the role's level (e.g. community)."""
        top = self._top(user.org_unit, role, wf.id if wf else None)
        return top is None or self.definitions.org.contains(top, org_unit)

    def _top_of(self, user_unit: str, role: str, wf_id: str | None) -> str | None:
        return self.top_unit(user_unit, role, self.definitions.workflows.get(wf_id) if wf_id else None)

    def _reach_units(self, user_unit: str, role: str, wf_id: str | None) -> frozenset[str]:
        """Every org unit a holder of ``role`` in ``user_unit`` reaches (for index lookups)."""
        wf = self.definitions.workflows.get(wf_id) if wf_id else None
        top = self.top_unit(user_unit, role, wf)
        org = self.definitions.org
        return frozenset(org.units) if top is None else frozenset(org.below(top))

    def units_for(self, user: Any, roles: Iterable[str], wf: WorkflowSpec | None = None) -> frozenset[str]:
        found: frozenset[str] = frozenset()
        for role in roles:
            found |= self.reach_units(user.org_unit, role, wf.id if wf else None)
        return found

    def in_scope(self, user: Any, org_unit: str) -> bool:
        return any(self.reaches(user, r, org_unit) for r in user.roles)

    def has_wide_scope(self, user: Any) -> bool:
        return any(self.role_scope(r) == "all" for r in user.roles)

    # -- a user on a case --------------------------------------------------------
    def roles_for(self, case: Any, user: Any) -> set[str]:
        """The roles ``user`` holds on ``case``: their roles that act in the workflow, within reach, plus
        creator / assignee / cc. No role means the case is invisible: a role that may only *start* a case
        (an applicant) sees its own cases, not its neighbours'. Someone named to approve one of its steps holds
        ``approver`` on it (``engine.mechanics.approval``)."""
        wf = self.spec_of(case)
        roles = set(self._reached_roles(user, wf, case.org_unit)) if wf else set()
        state = wf.states.get(case.state) if wf else None
        if state is not None and state.collect and state.collect.scope == "any":  # open to contributors anywhere
            roles |= set(user.roles) & set(state.collect.roles)
        if case.created_by == user.username:
            roles.add("creator")
        if user.username in case.assignees:
            roles.add("assignee")
        for name in named_people(wf, case, user.username):
            roles.add(field_role(name))  # named in a user field that a step's roles name: {field: inspector}
        if user.username in case.escalated_to:
            roles.add("escalated")  # may see the overdue case; acts only through roles it names
        if any(user.username in seat["users"] for bucket in case.approvals.values() for seat in bucket.get("seats", ())):
            roles.add("approver")   # named to approve a step (now or in an earlier round): sees the case it signs
        if user.username in getattr(case, "cc", ()):
            roles.add("cc")         # copied in (抄送, engine.mechanics.cc): sees the case; no step names this role
        return roles

    def _reached_roles(self, user: Any, wf: WorkflowSpec, org_unit: str) -> frozenset[str]:
        """The user's roles acting in ``wf`` that reach ``org_unit``: the same for every case of that workflow
        version and unit (a page asks for each of its cases, several times), so kept per user roles and unit."""
        key = (tuple(user.roles), user.org_unit, wf.key, org_unit)
        found = self._reached.get(key)
        if found is None:
            found = frozenset(r for r in set(user.roles) & self.acting_roles(wf) if self.reaches(user, r, org_unit, wf))
            if len(self._reached) > 65536:
                self._reached.clear()
            self._reached[key] = found
        return found

    def can_see(self, case: Any, user: Any) -> bool:
        return bool(self.roles_for(case, user))

    def sensitive_roles(self, wf: WorkflowSpec) -> frozenset[str]:
        """The roles that see a case's sensitive values unmasked (besides its creator): the workflow's
        ``sensitive_to`` (which may name ``assignee``), else the roles that take a transition."""
        if wf.sensitive_to is not None:
            return frozenset(wf.sensitive_to)
        return self.staff_roles(wf)

    def may_see_sensitive(self, case: Any, user: Any) -> bool:
        """The one decision whether ``user`` sees the sensitive values of ``case`` unmasked (every page,
        export, file download and offer pre-fill asks this): the applicant, and holders of the workflow's
        sensitive roles on this case within their reach. Being assigned is not enough unless the workflow
        names ``assignee`` in ``sensitive_to``: a partner organisation dispatched to fix a problem does not get
        the reporter's phone. Raters (contributors), the escalation target as such, and the public do not."""
        if user is None:
            return False
        if case.created_by == user.username:
            return True
        wf = self.spec_of(case)
        return wf is not None and bool(self.sensitive_roles(wf) & self.roles_for(case, user))

    def may_see_file(self, case: Any, user: Any, key: str) -> bool:
        """Whether ``user`` may download the upload ``key`` held by ``case``: they see the case, and if a
        sensitive field (or column) holds it, :meth:`may_see_sensitive` says yes."""
        if not self.can_see(case, user):
            return False
        return key not in self.sensitive_file_keys(case) or self.may_see_sensitive(case, user)

    def sensitive_file_keys(self, case: Any) -> set[str]:
        """Upload keys the case holds in sensitive fields (also sensitive columns of repeat rows)."""
        wf = self.spec_of(case)
        found: set[str] = set()
        if wf is None:
            return found
        for form_id in wf.form_ids():
            form = self.definitions.form_of(wf, form_id)
            for f in form.fields:
                value = case.data.get(f.id)
                if f.sensitive:
                    found.update(_upload_keys(value))
                elif f.is_repeat and isinstance(value, list):
                    for row in value:
                        if isinstance(row, dict):
                            for sub in f.fields:
                                if sub.sensitive:
                                    found.update(_upload_keys(row.get(sub.id)))
        return found

    def may_start(self, wf: WorkflowSpec, user: Any) -> bool:
        return bool(set(wf.start_roles) & set(user.roles))

    def startable(self, user: Any) -> list[WorkflowSpec]:
        return [wf for wf in self.definitions.workflows.values() if self.may_start(wf, user)]


def named(wf: WorkflowSpec | None, data: Any) -> dict[str, list[str]]:
    """For each user field a step's or inbox's ``{field: x}`` role names: the usernames the case data holds in it."""
    if wf is None or not wf.named_fields:
        return {}
    found: dict[str, list[str]] = {}
    for name in wf.named_fields:
        value = (data or {}).get(name)
        found[name] = [value] if isinstance(value, str) and value else \
            [v for v in value if isinstance(v, str) and v] if isinstance(value, list) else []
    return found


def named_people(wf: WorkflowSpec | None, case: Any, username: str) -> list[str]:
    """The fields of ``named`` that name ``username`` on ``case``."""
    return [name for name, users in named(wf, case.data).items() if username in users]


def _upload_keys(value: Any) -> Iterator[str]:
    """Upload keys in a field's value (a file dict, or a list of them)."""
    if isinstance(value, dict):
        if isinstance(value.get("key"), str):
            yield value["key"]
    elif isinstance(value, list):
        for item in value:
            yield from _upload_keys(item)
