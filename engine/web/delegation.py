"""委托代理, 催办, 抄送 on the web: delegations on the account page (list, add, end early) and the admin's list of
them; urging a case and copying people in on it from the case page; the case page's partial gets its data from
:func:`followup`. The work is :mod:`engine.delegation`, :mod:`engine.mechanics.urge` and :mod:`engine.mechanics.cc`.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from .. import delegation
from ..cases import Case
from ..errors import NotAllowed, NotFound, StaleVersion, SubmissionError, TransitionError
from ..readmodel import CASE_INDEX
from ..users import User
from . import get_engine
from .admin import admin_required
from .auth import login_required
from .i18n import tr

bp = Blueprint("delegation", __name__)

#: how many people a name search offers
PICK_LIMIT = 20


# --------------------------------------------------------------------------- the account page's part

def candidates(user: User, query: str) -> list[dict[str, Any]]:
    """Active colleagues holding one of ``user``'s roles whose name or username holds ``query`` (users index)."""
    q = "".join(query.split()).casefold()
    if not q:
        return []
    engine, found = get_engine(), {}
    for role in user.roles:
        for doc in engine.read.user_docs(role=role):
            if doc["username"] != user.username and (q in doc["username"].casefold()
                                                      or q in (doc.get("name") or "").casefold()):
                found[doc["username"]] = {"username": doc["username"], "name": doc.get("name") or doc["username"],
                                          "org_unit": doc.get("org_unit", "")}
    return sorted(found.values(), key=lambda d: d["username"])[:PICK_LIMIT]


def account_context(errors: dict[str, list[str]] | None = None, typed: dict[str, str] | None = None) -> dict[str, Any]:
    """What the account page's 委托代理 section shows: my delegations, those handed to me, the name search."""
    engine = get_engine()
    query = (request.args.get("delegate_q") or "").strip()[:40]
    today = delegation.today(engine).isoformat()
    return {"delegations": delegation.of(engine, g.user.username),
            "delegated_to_me": [{"username": d.username, "name": d.name} for d in engine.delegators(g.user)],
            "delegate_q": query, "delegate_found": candidates(g.user, query) if query else [],
            "delegation_errors": errors or {}, "delegation_typed": typed or {"from": today, "to": today}}


@bp.route("/account/delegations", methods=["POST"])
@login_required
def add() -> Any:
    from .account import _page

    typed = {k: request.form.get(k, "").strip() for k in ("delegate", "from", "to")}
    try:
        entry = delegation.add(get_engine(), g.user, typed["delegate"], typed["from"], typed["to"])
    except SubmissionError as exc:
        errors = {k: [tr(m) for m in v] for k, v in exc.errors.items()}
        return _page(status=422, **account_context(errors, typed))
    name = get_engine().read.display_names([entry["delegate"]])[0]
    flash(_("From %(start)s to %(end)s your tasks are delegated to %(name)s.", start=entry["from"], end=entry["to"],
            name=name))
    return redirect(url_for("account.account") + "#delegation")


@bp.route("/account/delegations/<int:delegation_id>/end", methods=["POST"])
@login_required
def end(delegation_id: int) -> Any:
    if delegation.end(get_engine(), g.user, delegation_id):
        flash(_("The delegation is ended: your tasks are yours alone again."))
    else:
        flash(_("No such delegation of yours in force."), "error")
    return redirect(url_for("account.account") + "#delegation")


@bp.route("/admin/delegations")
@admin_required
def admin_list(admin: Any) -> Any:
    """Every delegation made by the people of the admin's units."""
    from .admin import _context

    rows = delegation.all_in(get_engine(), list(admin.scope.units))
    return render_template("admin/delegations.html", **_context(admin, rows=rows))


# --------------------------------------------------------------------------- the case page's part

def followup(case: Case, user: User) -> dict[str, Any]:
    """For ``templates/_followup.html``: whom the user acts for on this case, the urge button's state, who is copied
    in, and the cc picker (``?cc_q=`` searches by name)."""
    engine = get_engine()
    own = engine.waits_for(case, user, delegated=False)
    acting_for = [] if own else [d.name for d in engine.acting_for(case, user)]
    may_cc = engine.may_copy_in(case, user)
    query = (request.args.get("cc_q") or "").strip()[:40]
    return {"acting_for": acting_for, "urge": engine.urge_status(case, user),
            "cc_names": engine.read.display_names(case.cc), "may_cc": may_cc, "cc_q": query,
            "cc_found": engine.cc_candidates(case, query, PICK_LIMIT) if may_cc and query else []}


def _back(case_id: int) -> Any:
    return redirect(url_for("cases.show", case_id=case_id) + "#followup")


@bp.route("/cases/<int:case_id>/urge", methods=["POST"])
@login_required
def urge(case_id: int) -> Any:
    engine = get_engine()
    try:
        case = engine.urge(case_id, g.user, request.form.get("comment", ""),
                           expected_version=request.form.get("version", type=int))
    except (NotAllowed, NotFound, StaleVersion):
        raise  # the error page: not theirs to urge, not theirs to see, changed meanwhile
    except TransitionError as exc:  # too soon, or nobody to urge: said on the case page
        flash(tr(exc.message), "error")
        return _back(case_id)
    flash(_("Urged: %(names)s were reminded.", names="、".join(case.history[-1].get("urged") or [])))
    return _back(case_id)


@bp.route("/cases/<int:case_id>/cc", methods=["POST"])
@login_required
def copy_in(case_id: int) -> Any:
    engine = get_engine()
    try:
        case = engine.copy_in(case_id, g.user, request.form.getlist("cc"), request.form.get("comment", ""),
                              expected_version=request.form.get("version", type=int))
    except SubmissionError as exc:
        flash("; ".join(tr(m) for v in exc.errors.values() for m in v), "error")
        return _back(case_id)
    flash(_("Copied in: %(names)s.", names="、".join(case.history[-1].get("cc") or [])))
    return _back(case_id)


@bp.route("/copied")
@login_required
def copied() -> Any:
    """抄送我的: the cases the user is copied in on, newest change first (the ``("cc", user)`` index)."""
    from .cases import page_number

    engine = get_engine()
    cases = engine.read.copied_to(g.user, page_number())
    return render_template("copied.html", cases=cases,
                           count=engine.store.count_keys(CASE_INDEX, [("cc", g.user.username)]))
