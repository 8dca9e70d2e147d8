"""The dashboard of reported figures (meetings held, problems collected vs solved, wishes, hours, points...):
the metrics the workflows declare, per month or quarter, for the user's unit and below, as charts and tables."""
from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, current_app, g, render_template, request

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


def figure_query(engine: Any, user: Any, args: Any) -> dict[str, Any]:
    """What the dashboard shows ``user`` for ``?unit=&period=`` (the API's figures use it too): the units they
    may choose, the unit and period chosen (their own unit, by month, when the choice is not theirs to make),
    the months and buckets covered, and the figure rows over them."""
    org = engine.definitions.org
    choices = [u for u in org.units.values() if engine.in_scope(user, u.id)]
    unit = args.get("unit") or user.org_unit
    if unit not in {u.id for u in choices}:
        unit = user.org_unit if user.org_unit in org.units else (choices[0].id if choices else "")
    period = args.get("period") if args.get("period") in ("month", "quarter") else "month"
    span = months_back(engine.clock().date(), 12 if period == "month" else 24)
    buckets = sorted({bucket(m, period) for m in span})
    return {"choices": choices, "unit": unit, "period": period, "span": span, "buckets": buckets,
            "rows": engine.figures(user, unit, span)}


@bp.route("/dashboard")
@login_required
def dashboard() -> Any:
    engine = get_engine()
    q = figure_query(engine, g.user, request.args)
    unit, period = q["unit"], q["period"]
    return render_template("dashboard.html", charts_html=_charts_html(engine, q["rows"], unit, period, q["buckets"]),
                           choices=q["choices"], unit=unit, period=period)


_KEPT = 64  # dashboards kept per process (a few per unit and period); the oldest go first


def _charts_html(engine: Any, rows: list[dict[str, Any]], unit: str, period: str, buckets: list[str]) -> Any:
    """The charts and tables for ``rows``, rendered once for the same figures: the page is the largest of the app
    (a chart, a table per period and one per unit for every workflow) and its figures change only when a case
    does, while people look at it far more often. What it shows depends on nothing but the key."""
    lang = current_lang()
    key = (lang, unit, period, tuple(buckets),
           tuple(sorted((r["workflow"], r["metric"], r["month"], r["unit"], r["value"]) for r in rows)))
    kept = current_app.extensions.setdefault("civicflow.dashboards", {})
    html = kept.get(key)
    if html is None:
        macro = current_app.jinja_env.get_template("_dashboard_charts.html").module.charts_section  # type: ignore[attr-defined]
        html = macro(charts(engine, rows, unit, period, buckets, lang))
        if len(kept) >= _KEPT:
            kept.pop(next(iter(kept)), None)
        kept[key] = html
    return html


def charts(engine: Any, rows: list[dict[str, Any]], unit: str, period: str, buckets: list[str],
            lang: str) -> list[dict[str, Any]]:
    org = engine.definitions.org
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
            series.append({"name": tr(metric.label, lang), "data": [round(values[b], 1) for b in buckets],
                           "total": round(sum(values.values()), 1)})
        by_unit: dict[str, dict[str, float]] = {}
        for r in mine:
            sub = child_on_path(org, unit, r["unit"])
            label = tr(wf.metrics[[m.id for m in wf.metrics].index(r["metric"])].label, lang)
            by_unit.setdefault(sub, {}).setdefault(label, 0)
            by_unit[sub][label] += r["value"]
        charts.append({
            "id": wf.id, "title": tr(wf.title, lang), "buckets": buckets, "series": series,
            "units": [{"name": org.path_name(u, lang).split(" / ")[-1],
                       "figures": [round(by_unit[u].get(s["name"], 0), 1) for s in series]}
                      for u in sorted(by_unit)],
        })
    return charts
