"""Assignment: who has a case after a transition (``assign:``), who a dispatch may pick, where a route goes.

Holds the spec (:class:`AssignSpec`), its load-time check (:func:`build`) and its runtime: :func:`resolve`
(called by the transition path) and :class:`AssignMixin` (the Engine's ``eligible_assignees``, ``routed_unit``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import SubmissionError, TransitionError
from ..loadkit import did_you_mean, msg
from ..spec import LEVELS, PSEUDO_ROLES, tr
from .base import EngineBase

if TYPE_CHECKING:
    from ..cases import Case
    from ..loader import Loader
    from ..store.base import Transaction
    from ..users import User
    from ..yamlsource import PathItem, YamlSource


@dataclass(frozen=True)
class AssignSpec:
    """Who a case is assigned to after a transition (whose inbox it is in).

    mode: ``creator`` | ``self`` (the actor: a claim) | ``none`` (back to the pool) | ``leave`` (the actor
    steps out of the assignees, the rest keep the case) |
    ``choose`` (the actor picks ``role`` holders, several if ``multiple``) |
    ``route`` (every ``role`` holder of the case's unit at ``unit`` level, or its ``parent``).
    """

    mode: str
    role: str | None = None
    unit: str | None = None
    multiple: bool = False


# --------------------------------------------------------------------------- load time

def build(ld: "Loader", source: "YamlSource", path: list["PathItem"], raw: Any, wf_roles: set[str]) -> AssignSpec | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return AssignSpec(raw)
    mode = "choose" if "choose" in raw else "route"
    role = raw[mode]
    if role not in wf_roles - PSEUDO_ROLES:
        ld.problems.append(source.problem(path + [mode], f"unknown role {role!r}",
                                          did_you_mean(role, wf_roles - PSEUDO_ROLES) or "list it in the workflow's roles"))
    return AssignSpec(mode, role, raw.get("unit"), raw.get("multiple", False))


# --------------------------------------------------------------------------- run time

def resolve(engine: Any, tx: "Transaction", case: "Case", spec: AssignSpec, actor: "User", chosen: list[str]) -> list[str]:
    """The assignees after the step (raises when a route finds nobody or a dispatch picks nobody valid)."""
    if spec.mode == "creator":
        return [case.created_by]
    if spec.mode == "none":
        return []
    if spec.mode == "self":
        return [actor.username]
    if spec.mode == "leave":  # one member of a team steps out; the others keep it
        return [u for u in case.assignees if u != actor.username]
    eligible = [u.username for u in engine.eligible_assignees(case, spec, actor, tx)]
    if spec.mode == "route":
        if not eligible:
            raise TransitionError(msg(f"上级单位没有“{role_title(engine, spec.role, 'zh')}”，无法转交。",
                                      f"No {role_title(engine, spec.role, 'en')} in the unit above: cannot route."))
        return eligible
    picked = [u for u in dict.fromkeys(chosen) if u]
    if not picked or (len(picked) > 1 and not spec.multiple) or set(picked) - set(eligible):
        raise SubmissionError({"assignees": [msg("请选择办理人" if not picked else "所选人员不可分配",
                                                 "Choose who does it." if not picked else "That person cannot be assigned.")]})
    return picked


def role_title(engine: Any, role: str | None, lang: str) -> str:
    spec = engine.definitions.roles.get(role or "")
    return tr(spec.title, lang) if spec else str(role)


class AssignMixin(EngineBase):
    """The Engine's assignment queries (mixed into :class:`engine.runtime.Engine`)."""

    def routed_unit(self, case: "Case", spec: AssignSpec) -> str | None:
        org = self.definitions.org
        if spec.unit == "parent":
            return org.parent(case.org_unit)
        if spec.unit in LEVELS:
            return org.ancestor_at(case.org_unit, spec.unit)
        return None

    def eligible_assignees(self, case: "Case", spec: AssignSpec, actor: "User", tx: "Transaction | None" = None) -> list["User"]:
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
