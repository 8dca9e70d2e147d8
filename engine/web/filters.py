"""Search on list pages: the filters a workflow declares (``list: {filters: [...]}``), read from the query string.

text: contains; select / multiselect / checkbox: equals / includes; integer, number, date: from / to;
orgunit: the unit and everything below it (each field type says how: ``wanted`` and ``matches`` in
engine/fieldtypes.py). The export uses the same filters as the page.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..cases import Case
from ..store.conditions import All
from ..spec import FieldSpec, FormSpec, OrgTree, WorkflowSpec


def filter_fields(wf: WorkflowSpec, form: FormSpec) -> list[FieldSpec]:
    """The fields ``form`` offers as filters of ``wf``'s list (the read model indexes the same ones:
    ``engine.readmodel.filter_fields``)."""
    return [f for f in (form.field(name) for name in wf.listing.filters) if f is not None]


def active(fields: list[FieldSpec], args: Mapping[str, str]) -> dict[str, Any]:
    """The filters the user set: ``{field_id: value}`` or ``{field_id: (low, high)}`` for ranges."""
    chosen: dict[str, Any] = {}
    for f in fields:
        wanted = f.kind.wanted(f, args)
        if wanted is not None:
            chosen[f.id] = wanted
    return chosen


def condition(fields: list[FieldSpec], chosen: Mapping[str, Any], org: OrgTree) -> All:
    """The filters ``chosen`` as one store condition on case documents (every one must hold)."""
    by_id = {f.id: f for f in fields}
    return All(tuple(by_id[k].kind.condition(by_id[k], v, org) for k, v in chosen.items()))


def matches(case: Case, f: FieldSpec, wanted: Any, org: OrgTree) -> bool:
    return f.kind.matches(f, case.data.get(f.id), wanted, org)


def apply(cases: list[Case], fields: list[FieldSpec], chosen: Mapping[str, Any], org: OrgTree) -> list[Case]:
    by_id = {f.id: f for f in fields}
    return [c for c in cases if all(matches(c, by_id[k], v, org) for k, v in chosen.items())]
