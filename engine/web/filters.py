"""Search on list pages: the filters a workflow declares (``list: {filters: [...]}``), read from the query string.

text: contains; select / multiselect / checkbox: equals / includes; integer, number, date: from / to;
orgunit: the unit and everything below it. The export uses the same filters as the page.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..cases import Case
from ..spec import FieldSpec, FormSpec, OrgTree, WorkflowSpec

RANGE_TYPES = ("integer", "number", "score", "rating", "date", "datetime")


def filter_fields(wf: WorkflowSpec, form: FormSpec) -> list[FieldSpec]:
    return [f for f in (form.field(name) for name in wf.listing.filters) if f is not None]


def active(fields: list[FieldSpec], args: Mapping[str, str]) -> dict[str, Any]:
    """The filters the user set: ``{field_id: value}`` or ``{field_id: (low, high)}`` for ranges."""
    chosen: dict[str, Any] = {}
    for f in fields:
        if f.type in RANGE_TYPES:
            low, high = (args.get(f"{f.id}_from") or "").strip(), (args.get(f"{f.id}_to") or "").strip()
            if low or high:
                chosen[f.id] = (low, high)
        else:
            value = (args.get(f.id) or "").strip()
            if value:
                chosen[f.id] = value
    return chosen


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def matches(case: Case, f: FieldSpec, wanted: Any, org: OrgTree) -> bool:
    value = case.data.get(f.id)
    if f.type in RANGE_TYPES:
        low, high = wanted
        if value is None:
            return False
        if f.type in ("date", "datetime"):
            text = str(value)
            return (not low or text >= low) and (not high or text[:len(high)] <= high)
        lo, hi = _number(low) if low else None, _number(high) if high else None
        return (lo is None or value >= lo) and (hi is None or value <= hi)
    if f.type == "multiselect":
        return wanted in (value or [])
    if f.type == "checkbox":
        return bool(value) == (wanted in ("1", "true", "on", "yes"))
    if f.type == "orgunit":
        return bool(value) and org.contains(wanted, value)
    if f.type in ("select", "case"):
        return str(value) == wanted
    return wanted.lower() in str(value or "").lower()


def apply(cases: list[Case], fields: list[FieldSpec], chosen: Mapping[str, Any], org: OrgTree) -> list[Case]:
    by_id = {f.id: f for f in fields}
    return [c for c in cases if all(matches(c, by_id[k], v, org) for k, v in chosen.items())]
