"""The dashboard of reported figures (meetings held, problems collected vs solved, wishes, hours, points...):
the metrics the workflows declare, per month or quarter, for the user's unit and below, as charts and tables."""
from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, g, render_template, request

from . import get_engine
from .auth import login_required
from .i18n import current_lang, tr

bp = Blueprint("dashboard", __name__)


def bucket(month: str, period: str) -> str:
    """``2026-11`` as a month, or as its quarter ``2026-Q4``."""
    if period == "quarter":
        year, m = month.split("-")
        return f"{year}-Q{(int(m) - 1) // 3 + 1}"
    return month


def months_back(today: dt.date, count: int) -> list[str]:
    y, m = today.year, today.month
    result = []
    for _ in range(count):
        result.append(f"{y}-{m:02d}")
        m -= 1
        if m == 0:
            y, m = y - 1, 12
    return sorted(result)


def child_on_path(org: Any, top: str, unit: str) -> str:
    """The unit directly under ``top`` on the way down to ``unit`` (or ``top`` itself)."""
    chain = list(reversed(org.ancestors(unit)))
    if top in chain and chain.index(top) + 1 < len(chain):
        return chain[chain.index(top) + 1]
    return top


@bp.route("/dashboard")
@login_required
def dashboard() -> Any:
    engine = get_engine()
    org = engine.definitions.org
    choices = [u for u in org.units.values() if engine.in_scope(g.user, u.id)]
    unit = request.args.get("unit") or g.user.org_unit
    if unit not in {u.id for u in choices}:
        unit = g.user.org_unit if g.user.org_unit in org.units else (choices[0].id if choices else "")
    period = request.args.get("period") if request.args.get("period") in ("month", "quarter") else "month"
    span = months_back(engine.clock().date(), 12 if period == "month" else 24)
    buckets = sorted({bucket(m, period) for m in span})
    rows = [r for r in engine.figures(g.user, unit) if r["month"] in span]

    charts = []
    for wf in engine.definitions.workflows.values():
        if not wf.metrics:
            continue
        mine = [r for r in rows if r["workflow"] == wf.id]
        series = []
        for metric in wf.metrics:
            values = {b: 0.0 for b in buckets}
            for r in mine:
                if r["metric"] == metric.id:
                    values[bucket(r["month"], period)] += r["value"]
            series.append({"name": tr(metric.label), "data": [round(values[b], 1) for b in buckets],
                           "total": round(sum(values.values()), 1)})
        by_unit: dict[str, dict[str, float]] = {}
        for r in mine:
            sub = child_on_path(org, unit, r["unit"])
            label = tr(wf.metrics[[m.id for m in wf.metrics].index(r["metric"])].label)
            by_unit.setdefault(sub, {}).setdefault(label, 0)
            by_unit[sub][label] += r["value"]
        charts.append({
            "id": wf.id, "title": tr(wf.title), "buckets": buckets, "series": series,
            "units": [{"name": org.path_name(u, current_lang()).split(" / ")[-1],
                       "figures": [round(by_unit[u].get(s["name"], 0), 1) for s in series]}
                      for u in sorted(by_unit)],
        })
    return render_template("dashboard.html", charts=charts, choices=choices, unit=unit, period=period)
