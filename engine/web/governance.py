"""Pages for the governance mechanics: contributions (ratings, score sheets, votes), approvals (会签 / 或签 /
依次审批), the public notice page with objections, ranking rounds, and points."""
from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from .. import forms, ledger
from ..errors import StaleVersion, SubmissionError, TransitionError
from ..mechanics.ranking import level_of
from . import get_engine
from .auth import login_required
from .cases import case_page, page_number, render_form_page
from .i18n import current_lang, tr

bp = Blueprint("governance", __name__)


# --------------------------------------------------------------------------- contributions

@bp.route("/cases/<int:case_id>/contribute", methods=["GET", "POST"])
@login_required
def contribute(case_id: int) -> Any:
    engine = get_engine()
    case = engine.get(case_id, g.user)
    spec, form, mine = engine.contribution_form(case, g.user)
    if request.method == "GET":
        values = dict(mine["data"]) if mine else {}
        return render_form_page("contribute.html", form, values, {}, case=case, spec=spec, mine=mine)
    values = forms.from_html(form, request.form)
    try:
        engine.contribute(case_id, g.user, values)
    except SubmissionError as exc:
        return render_form_page("contribute.html", form, values, exc.errors, 422, case=case, spec=spec, mine=mine,
                                alert=_("Please correct the marked fields. Nothing you typed was lost."))
    flash(_("Thank you: your “%(label)s” was recorded.", label=tr(spec.label)))
    return redirect(url_for("cases.show", case_id=case_id))


@bp.route("/cases/<int:case_id>/recuse", methods=["POST"])
@login_required
def recuse(case_id: int) -> Any:
    get_engine().declare_conflict(case_id, g.user, request.form.get("reason", ""))
    flash(_("Your conflict of interest was recorded; you are left out of this case."))
    return redirect(url_for("cases.show", case_id=case_id))


# --------------------------------------------------------------------------- approvals

@bp.route("/cases/<int:case_id>/approve", methods=["POST"])
@login_required
def approve(case_id: int) -> Any:
    """An approver approves or rejects (``decision``) with a comment; a refused one keeps what was typed."""
    engine = get_engine()
    comment = request.form.get("comment", "")
    decision = request.form.get("decision", "")
    try:
        case = engine.approve(case_id, g.user, decision, comment, expected_version=request.form.get("version", type=int))
    except SubmissionError as exc:
        return case_page(engine.get(case_id, g.user), 422, approval_errors=exc.errors, approval_comment=comment,
                         alert=_("Please correct the marked fields. Nothing you typed was lost."))
    except StaleVersion as exc:
        return case_page(engine.get(case_id, g.user), 409, approval_comment=comment, alert=tr(exc.message))
    done = {"approve": _("You approved."), "reject": _("You rejected.")}[decision]
    if case.state != request.form.get("state", case.state):
        done += " " + _("The case is now “%(state)s”.", state=tr(engine.workflow_of(case).states[case.state].title))
    flash(done)
    if not engine.can_see(case, g.user):  # a delegate whose delegator's task it no longer is (engine.delegation)
        return redirect(url_for("cases.inbox"))
    return redirect(url_for("cases.show", case_id=case_id))


# --------------------------------------------------------------------------- public page (no login)

@bp.route("/public")
def public() -> Any:
    engine = get_engine()
    page = engine.read.public(page_number())
    items = [(case, engine.state_of(case), engine.notice_ends(case), engine.notice_days_left(case)) for case in page]
    return render_template("public.html", items=items, pager=page, now=engine.clock())


@bp.route("/public/<int:case_id>", methods=["GET", "POST"])
def public_case(case_id: int) -> Any:
    engine = get_engine()
    found = engine.public_case(case_id)
    if found is None:
        abort(404)
    case, state = found
    error = None
    reason = ""
    if request.method == "POST":
        if g.user is None:
            return redirect(url_for("auth.login", next=url_for("governance.public_case", case_id=case_id)))
        reason = request.form.get("reason", "")
        try:
            engine.object(case_id, g.user, reason)
        except SubmissionError as exc:
            error = tr(exc.errors["reason"][0])
        else:
            flash(_("Your objection was filed. The case is being reviewed; you will see the outcome here."))
            return redirect(url_for("governance.public"))
    may_object = bool(state.notice and g.user is not None and set(state.notice.objection_roles) & set(g.user.roles))
    workflow = engine.workflow_of(case)
    fields = {f.id: f for _, f in engine.data_fields(workflow)}
    return render_template("public_case.html", case=case, state=state, workflow=workflow, fields=fields,
                           data=engine.public_data(case, state), ends=engine.notice_ends(case),
                           days_left=engine.notice_days_left(case), rows=engine.public_rows(case, state, current_lang()),
                           may_object=may_object, error=error, reason=reason), 422 if error else 200


# --------------------------------------------------------------------------- ranking

@bp.route("/workflows/<workflow_id>/ranking", methods=["GET", "POST"])
@login_required
def ranking(workflow_id: str) -> Any:
    engine = get_engine()
    wf = engine.definitions.workflows.get(workflow_id)
    if wf is None or wf.ranking is None:
        abort(404)
    if not engine.can_rank(wf, g.user):
        abort(403)
    rounds = engine.rounds(workflow_id, g.user)
    round_id = request.values.get("round") or (rounds[0] if rounds else None)
    if request.method == "POST" and round_id:
        reopening = request.form.get("do") == "reopen"
        if reopening and not engine.can_reopen(wf, g.user):
            abort(403)
        try:
            if reopening:
                engine.reopen_round(workflow_id, round_id, g.user, request.form.get("reason", ""))
            else:
                engine.close_round(workflow_id, round_id, g.user)
        except TransitionError as exc:
            flash(tr(exc.message))
        else:
            flash(_("Round %(round)s reopened: the cases are waiting to be ranked again.", round=round_id) if reopening
                  else _("Round %(round)s closed: the cases have moved on.", round=round_id))
        return redirect(url_for("governance.ranking", workflow_id=workflow_id, round=round_id))
    result = engine.ranking(workflow_id, round_id, g.user) if round_id else None
    closed = engine.round_closed(workflow_id, round_id) if round_id else None
    shown = {p.case_id for p in result.placed} if result else set()
    shown |= {r["case"] for r in closed["results"]} if closed else set()
    shown |= {c.id for c in result.unranked} if result else set()
    cases = {c.id: c for c in (engine.get(i) for i in sorted(shown)) if engine.can_see(c, g.user)}
    # one table per ranking (one per award title...): its cases waiting now, or what closing the round gave it
    tables = []
    for spec in wf.rankings:
        part = next((r for s, r in result.parts if s is spec), None) if result else None
        done = [r for r in closed["results"] if (r.get("ranking") or wf.ranking.id) == spec.id] if closed else []
        tables.append({"spec": spec, "levels": {lv.id: lv for lv in spec.levels}, "result": part, "closed": done,
                       "score": spec.by.source.split(".")[0]})
    return render_template("ranking.html", workflow=wf, rounds=rounds, round=round_id, result=result, closed=closed,
                           cases=cases, tables=tables, may_close=engine.can_rank(wf, g.user),
                           may_reopen=engine.can_reopen(wf, g.user),
                           reopenings=engine.round_reopenings(workflow_id, round_id) if round_id else [])


# --------------------------------------------------------------------------- points

@bp.route("/points")
@login_required
def points() -> Any:
    engine = get_engine()
    return render_template("points.html", balance=engine.balance(g.user.username),
                           entries=engine.ledger_of(g.user.username))


@bp.route("/points/overview")
@login_required
def points_overview() -> Any:
    engine = get_engine()
    staff = {r for wf in engine.definitions.workflows.values() for t in wf.transitions() if t.points for r in t.roles}
    if not (set(g.user.roles) & (staff | {"community_staff", "community_secretary", "admin"})):
        abort(403)
    people = {u.username: u for u in engine.users() if engine.in_scope(g.user, u.org_unit)}
    rows = []
    for acc in engine.store.search(ledger.ACCOUNTS):
        person = people.get(acc["owner"])
        if person is None:
            continue
        entries = engine.ledger_of(acc["owner"])
        rows.append({"user": person, "balance": acc["balance"],
                     "earned": sum(e["amount"] for e in entries if e["amount"] > 0),
                     "spent": -sum(e["amount"] for e in entries if e["amount"] < 0)})
    rows.sort(key=lambda r: -r["earned"])
    totals = {k: sum(r[k] for r in rows) for k in ("balance", "earned", "spent")}
    return render_template("points_overview.html", rows=rows, totals=totals)


# --------------------------------------------------------------------------- quotas and certificates

@bp.route("/workflows/<workflow_id>/targets")
@login_required
def targets(workflow_id: str) -> Any:
    engine = get_engine()
    wf = engine.definitions.workflows.get(workflow_id)
    if wf is None or not wf.targets:
        abort(404)
    if not set(g.user.roles) & (engine.acting_roles(wf) | set(wf.start_roles)):
        abort(403)
    day = request.args.get("day")
    try:
        when = dt.date.fromisoformat(day) if day else None
    except ValueError:
        when = None
    rows = engine.quota_report(wf, g.user, when)
    rows.sort(key=lambda r: (-r["shortfall"], r["user"].name))
    return render_template("targets.html", workflow=wf, rows=rows, day=(when or engine.clock().date()).isoformat())


@bp.route("/cases/<int:case_id>/certificate")
@login_required
def certificate(case_id: int) -> Any:
    engine = get_engine()
    case = engine.get(case_id, g.user)
    state = engine.state_of(case)
    if not state.certificate:
        abort(404)
    wf = engine.workflow_of(case)
    placed = level_of(case, wf)
    level = placed[1] if placed else None
    return render_template("certificate.html", case=case, workflow=wf, state=state, level=level,
                           ranking=placed[0] if placed else None,
                           issued=case.updated_at[:10])
