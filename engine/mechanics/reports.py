"""What a workflow reports: metrics (figures per org unit and month, on the dashboard), targets (a quota per
person and period, with shortfalls), and which start-form fields its list page shows and filters.

Holds the specs (:class:`MetricSpec`, :class:`TargetSpec`; ``ListSpec`` stays in ``engine.spec``, the
workflow spec's default needs it), their load-time checks (:func:`build_metrics`, :func:`build_targets`,
:func:`build_listing`) and :class:`ReportsMixin` (the Engine's ``figures``, ``quota_report``).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..expressions import Expression
from ..loadkit import GUARD_NAMES, did_you_mean, text
from ..spec import ListSpec, Text
from .base import EngineBase

if TYPE_CHECKING:
    from ..loader import Loader
    from ..spec import FormSpec, WorkflowSpec
    from ..users import User
    from ..yamlsource import PathItem, YamlSource


@dataclass(frozen=True)
class MetricSpec:
    """A figure the reports count, per org unit and month: ``count`` of cases, or ``sum`` of a field,
    over the cases for which ``where`` holds (``where`` sees the case's data, ``state`` and ``case``)."""

    id: str
    label: Text
    sum: str | None = None
    where: Expression | None = None


@dataclass(frozen=True)
class TargetSpec:
    """A quota per person and period (e.g. 10 visits a week per cadre): shortfalls are shown."""

    id: str
    label: Text
    count: int
    period: str = "week"                # week | month
    date: str | None = None             # a date field of the start form; default: when the case started
    roles: tuple[str, ...] = ()         # whose quota it is (default: everyone who starts such cases)


# --------------------------------------------------------------------------- load time

def _once(ld: "Loader", source: "YamlSource", here: list[PathItem], item_id: str, seen: set[str], what: str) -> None:
    """Each metric / target id once per workflow."""
    if item_id in seen:
        ld.problems.append(source.problem(here + ["id"], f"duplicate {what} id {item_id!r}"))
    seen.add(item_id)


def build_metrics(ld: "Loader", source: "YamlSource", items: list[dict], names: set[str] | None,
                  step_forms: list["FormSpec"]) -> tuple[MetricSpec, ...]:
    numeric = {f.id for form in step_forms for f in form.fields if f.kind.numeric}
    result, seen = [], set()
    for i, item in enumerate(items):
        here: list[PathItem] = ["metrics", i]
        _once(ld, source, here, item["id"], seen, "metric")
        if "sum" in item and names is not None and item["sum"] not in numeric:
            ld.problems.append(source.problem(here + ["sum"], f"{item['sum']!r} is not a numeric field of this workflow",
                                              did_you_mean(item["sum"], numeric) or
                                              (f"numeric fields: {', '.join(sorted(numeric))}" if numeric else
                                               "sum an integer, number, score or rating field, or leave out sum to count cases")))
        where = ld.expression(source, here + ["where"], item.get("where"),
                              None if names is None else names | GUARD_NAMES, f"metric {item['id']!r}")
        result.append(MetricSpec(item["id"], text(item["label"]) or {}, item.get("sum"), where))
    return tuple(result)


def build_targets(ld: "Loader", source: "YamlSource", items: list[dict], start_form: "FormSpec | None",
                  roles: set[str]) -> tuple[TargetSpec, ...]:
    result, seen = [], set()
    for i, item in enumerate(items):
        here: list[PathItem] = ["targets", i]
        _once(ld, source, here, item["id"], seen, "target")
        if "date" in item and start_form is not None:
            f = start_form.field(item["date"])
            if f is None or not f.kind.date_like:
                dates = [x.id for x in start_form.fields if x.kind.date_like]
                ld.problems.append(source.problem(here + ["date"], f"{item['date']!r} is not a date field of the start form",
                                                  did_you_mean(item["date"], dates) or
                                                  (f"date fields: {', '.join(dates)}" if dates else
                                                   "leave out date to count cases by the day they were started")))
        for j, role in enumerate(item.get("roles", [])):
            if role not in roles:
                ld.problems.append(source.problem(here + ["roles", j], f"unknown role {role!r}",
                                                  did_you_mean(role, roles) or "list it in the workflow's roles"))
        result.append(TargetSpec(item["id"], text(item["label"]) or {}, item["count"], item.get("period", "week"),
                                 item.get("date"), tuple(item.get("roles", []))))
    return tuple(result)


def build_listing(ld: "Loader", source: "YamlSource", raw: dict, start_form: "FormSpec | None") -> ListSpec:
    if start_form is not None:
        fields = {f.id for f in start_form.fields if f.kind.holds_value}
        for key in ("columns", "filters"):
            for i, name in enumerate(raw.get(key, [])):
                if name not in fields:
                    ld.problems.append(source.problem(["list", key, i], f"unknown field {name!r} of the start form",
                                                      did_you_mean(name, fields) or
                                                      f"fields of form {start_form.id!r}: {', '.join(f.id for f in start_form.fields)}"))
    return ListSpec(tuple(raw.get("columns", [])), tuple(raw.get("filters", [])))


# --------------------------------------------------------------------------- run time

class ReportsMixin(EngineBase):
    """Reported figures and quotas (mixed into :class:`engine.runtime.Engine`)."""

    def figures(self, user: "User", unit: str | None = None, months: Any = None) -> list[dict[str, Any]]:
        """Every declared metric, per case month and org unit, over the units the user's roles in each
        workflow reach: ``{"workflow", "metric", "month": "2026-11", "unit", "value"}`` (summed per unit and
        month, kept up to date by the store as cases change), in ``months`` if given. The dashboard groups them
        by month, quarter and unit.
        """
        return self.read.figures(user, unit, months)

    def quota_report(self, wf: "WorkflowSpec", user: "User", day: dt.date | None = None) -> list[dict[str, Any]]:
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
