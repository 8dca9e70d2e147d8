"""The people picker of ``type: user`` fields: what a form page lists for each, and the search endpoint its
script asks as the person types (``GET /people/search``).

Both ask ``Engine.user_choices`` (``engine.people``), the same candidates the server accepts on submit. Without
JavaScript a field with few candidates is a plain select (tick boxes for ``multiple``), one with many a text
box taking names or usernames; with JavaScript (static/civicflow.js) either gets a search box over this endpoint.
"""
from __future__ import annotations

from typing import Any, Mapping

from flask import Blueprint, abort, g, jsonify, request, url_for

from .. import people as picking
from ..cases import Case
from ..errors import NotFound
from ..spec import FieldSpec, FormSpec, WorkflowSpec
from . import get_engine
from .auth import login_required
from .i18n import current_lang

bp = Blueprint("pickers", __name__)


def user_pickers(form: FormSpec, values: Mapping[str, Any], case: Case | None,
                 wf: WorkflowSpec | None) -> dict[str, dict[str, Any]]:
    """For each user field of ``form``: ``select`` (few enough to list), ``people`` (candidates, with the chosen
    ones that are not, so that what was typed is kept), ``text`` (the text box's value) and the search ``url``."""
    fields = [f for f in form.fields if f.kind.holds_user]
    if not fields:
        return {}
    engine = get_engine()
    wf = wf or (engine.workflow_of(case) if case is not None else None)
    unit = engine.base_unit(g.user, case, wf, values)
    names = engine.people()
    found: dict[str, dict[str, Any]] = {}
    for f in fields:
        candidates = engine.user_choices(f, unit)
        chosen = f.kind.usernames(values.get(f.id))
        known = {u.username for u in candidates}
        listed = [{"username": u.username, "name": u.name} for u in candidates[:picking.SELECT_LIMIT]]
        listed += [{"username": c, "name": names(c) or c} for c in chosen if c not in known]  # kept as typed
        args = {"workflow": wf.id if wf else "", "field": f.id, **({"case": case.id} if case is not None else {})}
        text = "、".join(f"{names(c)} ({c})" if names(c) and c in known else c for c in chosen)
        found[f.id] = {"select": len(candidates) <= picking.SELECT_LIMIT, "people": listed, "chosen": chosen,
                       "text": text, "url": url_for("pickers.search", **args),
                       # at the start, the search asks for the people of the unit chosen in the form so far
                       "unit_field": wf.org_unit_field if case is None and wf is not None and wf.org_unit_field else ""}
    return found


def _field_for(wf: WorkflowSpec, case: Case | None, field_id: str) -> FieldSpec | None:
    """The user field ``field_id`` of a form the current user may fill in now: the start form (without a case,
    if they may start it), or the form of a step they may take / a contribution they may give on ``case``."""
    engine = get_engine()
    if case is None:
        if not engine.may_start(wf, g.user):
            return None
        forms = [engine.definitions.form_of(wf, wf.start_form)]
    else:
        forms = [engine.definitions.form_of(wf, t.form) for t in engine.available_transitions(case, g.user) if t.form]
        state = wf.states.get(case.state)
        if state is not None and state.collect is not None and engine.may_contribute(case, g.user)[0]:
            forms.append(engine.definitions.form_of(wf, state.collect.form))
    for form in forms:
        f = form.field(field_id)
        if f is not None and f.kind.holds_user:
            return f
    return None


@bp.route("/people/search")
@login_required
def search() -> Any:
    """``?workflow=&field=&case=&q=&unit=``: the people the user field may name, whose name or username contains
    ``q``: at most ``SEARCH_LIMIT``, as username, name and unit (never a phone or an ID number). Only for a field of
    a form the caller may fill in now; 404 otherwise (as for a case they may not see). ``unit``: at the start, the
    unit chosen so far in the start form's unit field (honoured only within the caller's reach)."""
    engine = get_engine()
    wf = engine.definitions.workflows.get(request.args.get("workflow", ""))
    if wf is None:
        abort(404)
    case = None
    case_id = request.args.get("case", type=int)
    if case_id is not None:
        try:
            case = engine.get(case_id, g.user)
        except NotFound:
            abort(404)
        wf = engine.workflow_of(case)
    f = _field_for(wf, case, request.args.get("field", ""))
    if f is None:
        abort(404)
    chosen = request.args.get("unit", "")  # the start form's unit so far: only a unit the caller's roles reach
    reached = (case is None and wf.org_unit_field and chosen in engine.definitions.org.units
               and engine.in_scope(g.user, chosen))
    unit = engine.base_unit(g.user, case, wf, {wf.org_unit_field: chosen} if reached else {})
    query = (request.args.get("q") or "").strip()[:50]
    found = picking.search(engine.user_choices(f, unit), query, picking.SEARCH_LIMIT + 1)
    org, lang = engine.definitions.org, current_lang()
    response = jsonify({"items": [picking.public(u, org, lang) for u in found[:picking.SEARCH_LIMIT]],
                        "more": len(found) > picking.SEARCH_LIMIT})
    response.headers["Cache-Control"] = "no-store"
    return response
