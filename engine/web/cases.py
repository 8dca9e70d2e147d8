"""Pages for cases: inbox, start a case, the form page, the case page with its actions, lists per workflow."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from .. import forms
from ..builtin_actions import NOTIFICATIONS
from ..cases import Case
from ..errors import NotAllowed, NotFound, StaleVersion, SubmissionError, TransitionError
from ..spec import FILE_TYPES, FieldSpec, FormSpec
from . import get_engine
from .auth import login_required
from .files import collect_uploads
from .i18n import current_lang, tr

bp = Blueprint("cases", __name__)


# --------------------------------------------------------------------------- form helpers

def _rows_action(form: FormSpec, values: dict[str, Any]) -> bool:
    """Handle the "add row" / "remove row" buttons of repeat groups. True if the post was only that."""
    add, remove = request.form.get("_add_row"), request.form.get("_remove_row")
    if add:
        field = form.field(add)
        if field is not None and field.is_repeat:
            rows = values.setdefault(field.id, [])
            if field.max_rows is None or len(rows) < field.max_rows:
                rows.append({})
        return True
    if remove:
        name, _sep, index = remove.rpartition("-")
        field = form.field(name)
        if field is not None and field.is_repeat and index.isdigit():
            rows = values.get(field.id, [])
            if int(index) < len(rows) and len(rows) > field.min_rows:
                rows.pop(int(index))
        return True
    return "_refresh" in request.form


def _initial_values(form: FormSpec, data: dict[str, Any] | None = None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in form.fields:
        if data is not None and f.id in data:
            values[f.id] = data[f.id]
        elif f.default is not None:
            values[f.id] = f.default
        elif f.is_repeat:
            values[f.id] = [{} for _ in range(max(f.min_rows, 1))]
    return values


def _read_form(form: FormSpec) -> tuple[dict[str, Any], dict[str, list[dict[str, str]]]]:
    uploads, upload_errors = collect_uploads(form, g.user)
    values = forms.from_html(form, request.form, uploads)
    return values, upload_errors


def render_form_page(template: str, form: FormSpec, values: dict[str, Any], errors: dict[str, Any],
                     status: int = 200, **context: Any) -> Any:
    """The form as typed, with computed fields filled and hidden fields left out: the same rules the server validates with."""
    data, visible = forms.clean(form.fields, values, at=get_engine().clock())
    shown = {**values, **{f.id: data.get(f.id) for f in form.fields if f.compute}}
    return render_template(template, form=form, values=shown, errors=errors, visible=visible,
                           row_visible=lambda f, row: _row_visible(f, values, row), **context), status


def _row_visible(field: FieldSpec, values: dict[str, Any], row: dict[str, Any]) -> set[str]:
    _data, visible = forms.clean(field.fields, row if isinstance(row, dict) else {}, values)
    return visible


# --------------------------------------------------------------------------- pages

@bp.route("/")
@login_required
def inbox() -> Any:
    engine = get_engine()
    return render_template("inbox.html", cases=engine.inbox(g.user), mine=_my_cases())


def _my_cases() -> list[Case]:
    engine = get_engine()
    mine = [c for c in engine.cases(g.user) if c.created_by == g.user.username]
    mine.sort(key=lambda c: c.updated_at, reverse=True)
    return mine[:20]


@bp.route("/start")
@login_required
def start_list() -> Any:
    return render_template("start.html", workflows=get_engine().startable(g.user))


@bp.route("/start/<workflow_id>", methods=["GET", "POST"])
@login_required
def start(workflow_id: str) -> Any:
    engine = get_engine()
    wf = engine.definitions.workflows.get(workflow_id)
    if wf is None:
        abort(404)
    if not engine.may_start(wf, g.user):
        abort(403)
    form = engine.definitions.forms[wf.start_form]
    if request.method == "GET":
        return render_form_page("form.html", form, _initial_values(form), {}, workflow=wf)
    values, upload_errors = _read_form(form)
    if _rows_action(form, values):
        return render_form_page("form.html", form, values, {}, workflow=wf)
    try:
        if upload_errors:
            raise SubmissionError(upload_errors, values)
        case = engine.start(workflow_id, g.user, values)
    except SubmissionError as exc:
        errors = {**exc.errors, **upload_errors}
        return render_form_page("form.html", form, values, errors, 422, workflow=wf,
                                alert=_("Please correct the marked fields. Nothing you typed was lost."))
    flash(_("Submitted. Case #%(id)s is now “%(state)s”.", id=case.id,
            state=tr(wf.states[case.state].title)))
    return redirect(url_for("cases.show", case_id=case.id))


@bp.route("/cases/<int:case_id>")
@login_required
def show(case_id: int) -> Any:
    engine = get_engine()
    case = engine.get(case_id, g.user)
    _mark_read(case_id)
    wf = engine.workflow_of(case)
    return render_template("case.html", case=case, workflow=wf, state=engine.state_of(case),
                           transitions=engine.available_transitions(case, g.user),
                           fields=engine.data_fields(wf), show_sensitive=engine.may_see_sensitive(case, g.user))


def _mark_read(case_id: int) -> None:
    store = get_engine().store
    unread = store.search(NOTIFICATIONS, lambda d: d["to"] == g.user.username and d["case"] == case_id and not d["read"])
    if unread:
        with store.transaction() as tx:
            for doc in unread:
                doc["read"] = True
                tx.replace(NOTIFICATIONS, doc["id"], doc)


@bp.route("/cases/<int:case_id>/do/<transition_id>", methods=["GET", "POST"])
@login_required
def step(case_id: int, transition_id: str) -> Any:
    engine = get_engine()
    case = engine.get(case_id, g.user)
    wf = engine.workflow_of(case)
    # The transition as offered when the page was loaded: the case may have moved on since (stale version).
    t = engine.state_of(case).transition(transition_id) or next(
        (x for x in wf.transitions() if x.id == transition_id), None)
    if t is None:
        raise TransitionError({"zh": "此操作在当前状态下不可用（可能已被他人处理），请刷新页面。",
                               "en": "This action is not available in the current state (someone may have acted already)."})
    form = engine.definitions.forms[t.form] if t.form else None
    comment = request.form.get("comment", "")
    version = request.form.get("version", type=int) or case.version
    if request.method == "GET":
        if t not in engine.available_transitions(case, g.user):
            raise NotAllowed({"zh": "您不能执行此操作。", "en": "You may not take this action."})
        values = _initial_values(form, case.data) if form else {}
        return _render_step(form, values, {}, 200, case=case, workflow=wf, transition=t, comment="", version=case.version)
    values, upload_errors = _read_form(form) if form else ({}, {})
    if form and _rows_action(form, values):
        return _render_step(form, values, {}, 200, case=case, workflow=wf, transition=t, comment=comment, version=version)
    try:
        if upload_errors:
            raise SubmissionError(upload_errors, values)
        case = engine.fire(case_id, transition_id, g.user, values, comment=comment, expected_version=version)
    except SubmissionError as exc:
        return _render_step(form, values, {**exc.errors, **upload_errors}, 422, case=case, workflow=wf, transition=t,
                            comment=comment, version=version,
                            alert=_("Please correct the marked fields. Nothing you typed was lost."))
    except StaleVersion as exc:
        return _render_step(form, values, {}, 409, case=engine.get(case_id, g.user), workflow=wf, transition=t,
                            comment=comment, version=version, alert=tr(exc.message), stale=True)
    flash(_("Done: %(label)s. The case is now “%(state)s”.", label=tr(t.label),
            state=tr(wf.states[case.state].title)))
    if engine.can_see(case, g.user):
        return redirect(url_for("cases.show", case_id=case.id))
    return redirect(url_for("cases.inbox"))


def _render_step(form: FormSpec | None, values: dict[str, Any], errors: dict[str, Any], status: int, **context: Any) -> Any:
    if form is None:
        return render_template("step.html", form=None, values={}, errors=errors, visible=set(),
                               row_visible=None, **context), status
    return render_form_page("step.html", form, values, errors, status, **context)


@bp.route("/workflows/<workflow_id>")
@login_required
def list_cases(workflow_id: str) -> Any:
    engine = get_engine()
    wf = engine.definitions.workflows.get(workflow_id)
    if wf is None:
        abort(404)
    state = request.args.get("state") or None
    if state is not None and state not in wf.states:
        state = None
    all_cases = engine.cases(g.user, workflow=workflow_id)
    if not all_cases and not engine.may_start(wf, g.user) and not (set(g.user.roles) & set(wf.roles)):
        abort(403)
    counts = {sid: 0 for sid in wf.states}
    for c in all_cases:
        counts[c.state] = counts.get(c.state, 0) + 1
    shown = [c for c in all_cases if state is None or c.state == state]
    shown.sort(key=lambda c: c.updated_at, reverse=True)
    form = engine.definitions.forms[wf.start_form]
    columns = [f for f in form.fields if f.type not in FILE_TYPES and not f.is_repeat and f.type != "textarea"][:4]
    return render_template("list.html", workflow=wf, cases=shown, state=state, counts=counts, columns=columns,
                           total=len(all_cases))


@bp.route("/workflows")
@login_required
def workflows() -> Any:
    engine = get_engine()
    visible = [wf for wf in engine.definitions.workflows.values()
               if engine.may_start(wf, g.user) or set(g.user.roles) & set(wf.roles)]
    return render_template("workflows.html", workflows=visible)


@bp.route("/notifications", methods=["GET", "POST"])
@login_required
def notifications() -> Any:
    store = get_engine().store
    mine = store.search(NOTIFICATIONS, lambda d: d["to"] == g.user.username)
    if request.method == "POST":
        with store.transaction() as tx:
            for doc in mine:
                if not doc["read"]:
                    doc["read"] = True
                    tx.replace(NOTIFICATIONS, doc["id"], doc)
        return redirect(url_for("cases.notifications"))
    mine.sort(key=lambda d: d["at"], reverse=True)
    return render_template("notifications.html", items=mine)


@bp.app_template_filter("show_value")
def show_value(value: Any, field: FieldSpec, masked: bool = False) -> str:
    if masked and field.sensitive:
        return forms.mask(value)
    return forms.display(field, value, current_lang(), get_engine().definitions.org)


__all__ = ["bp", "NotFound"]
