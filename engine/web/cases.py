"""Pages for cases: inbox, start a case, the form page, the case page with its actions, lists per workflow."""
from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _


from .. import forms
from ..notify import NOTIFICATIONS
from ..cases import Case
from ..readmodel import PAGE_SIZE, Paged
from ..mechanics import links as linked_moves
from ..errors import NotAllowed, NotFound, StaleVersion, SubmissionError, TransitionError
from ..spec import FieldSpec, FormSpec, WorkflowSpec
from . import get_engine
from . import filters
from .auth import login_required
from .diagrams import diagram_for
from .files import collect_uploads, kept_uploads
from .pickers import user_pickers
from .worklist import inbox_page
from .i18n import current_lang, tr

bp = Blueprint("cases", __name__)


# --------------------------------------------------------------------------- form helpers

def _rows_action(form: FormSpec, values: dict[str, Any]) -> bool:
    """Handle the "add row" / "remove row" buttons of repeat groups. True if the post was only that."""
    add, remove = request.form.get("_add_row"), request.form.get("_remove_row")
    if request.headers.get("HX-Request"):
        # htmx also sends the last button clicked with later requests from the form: only the button's own counts.
        sender = request.headers.get("HX-Trigger-Name")
        add = add if sender == "_add_row" else None
        remove = remove if sender == "_remove_row" else None
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


def _without_sensitive(form: FormSpec, data: dict[str, Any]) -> dict[str, Any]:
    """Case data to pre-fill a step form for someone who may not see its sensitive values: those left out
    (sensitive columns of repeat rows too), so that the form neither shows nor re-submits them."""
    kept = dict(data)
    for f in form.fields:
        if f.sensitive:
            kept.pop(f.id, None)
        elif f.is_repeat and isinstance(kept.get(f.id), list):
            hidden = {sub.id for sub in f.fields if sub.sensitive}
            if hidden:
                kept[f.id] = [{k: v for k, v in row.items() if k not in hidden} if isinstance(row, dict) else row
                              for row in kept[f.id]]
    return kept


def _posted_page(form: FormSpec) -> int:
    """The page of a paged form the person was on (``_page_at``, kept in the form), within the form's pages."""
    at = request.form.get("_page_at", type=int) or 0
    return min(max(at, 0), len(form.pages) - 1)


def _page_action(form: FormSpec, values: dict[str, Any],
                 upload_errors: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    """下一步 / 上一步 of a paged form: ``(the page to show, its errors)``, or None if the post was no page move.
    Leaving a page forward checks its questions (and its uploads); going back checks nothing and keeps all."""
    move = request.form.get("_page")
    if request.headers.get("HX-Request") and request.headers.get("HX-Trigger-Name") != "_page":
        move = None  # htmx sends the last button clicked along with later updates: only the button's own counts
    if not form.paged or move not in ("next", "prev"):
        return None
    engine = get_engine()
    at = _posted_page(form)
    _data, visible = forms.clean(form.fields, values, at=engine.clock())
    shown = forms.shown_pages(form, visible)
    if move == "prev":
        return max((i for i in shown if i < at), default=at), {}
    errors = {**forms.page_errors(form, values, at, at=engine.clock(), org=engine.definitions.org),
              **{path: msgs for path, msgs in upload_errors.items() if form.page_of(path) == at}}
    if errors:
        return at, errors
    return min((i for i in shown if i > at), default=at), {}


def _read_form(form: FormSpec) -> tuple[dict[str, Any], dict[str, list[dict[str, str]]]]:
    uploads, upload_errors = collect_uploads(form, g.user)
    values = forms.from_html(form, request.form, uploads)
    return values, upload_errors


def render_form_page(template: str, form: FormSpec, values: dict[str, Any], errors: dict[str, Any],
                     status: int = 200, page_at: int | None = None, **context: Any) -> Any:
    """The form as typed, with computed fields filled and hidden fields left out: the same rules the server validates with."""
    return render_template(template, **_form_context(form, values, errors, context.get("case"), context.get("workflow"),
                                                     page_at), **context), status


def _form_context(form: FormSpec, values: dict[str, Any], errors: dict[str, Any], case: Case | None = None,
                  wf: WorkflowSpec | None = None, page_at: int | None = None) -> dict[str, Any]:
    """What the form macros need: the values as typed (computed ones filled), errors, visibility, the choices of
    case fields and the people pickers of user fields (``case``: the case a step's form is for). ``page_at``: the
    page of a paged form shown (the others are in the page, hidden, so that what was typed on them is posted
    along); None shows every page at once."""
    engine = get_engine()
    data, visible = forms.clean(form.fields, values, at=engine.clock())
    shown = {**values, **{f.id: data.get(f.id) for f in form.fields if f.compute}}
    pages = forms.shown_pages(form, visible) if form.paged and page_at is not None else []
    if pages and page_at not in pages:
        page_at = min((i for i in pages if i > page_at), default=pages[-1])  # its questions went: the next one
    return {"form": form, "values": shown, "errors": errors, "visible": visible,
            "page_at": page_at if pages else None, "pages_shown": pages,
            "required": forms.required_now(form.fields, data, at=engine.clock()),
            "row_visible": lambda f, row: _row_visible(f, values, row),
            "row_required": lambda f, row: _row_required(form, f, data, row),
            "case_choices": _case_choices(form, shown), "user_pick": user_pickers(form, shown, case, wf)}


def _case_choices(form: FormSpec, values: dict[str, Any]) -> dict[str, list[Case]]:
    """For each ``type: case`` field: the newest cases it may point at, and the one chosen (if older)."""
    engine = get_engine()
    found: dict[str, list[Case]] = {}
    for f in form.fields:
        if not f.kind.holds_case:
            continue
        choices = engine.case_choices(f, g.user)
        chosen = values.get(f.id)
        if chosen not in (None, "") and str(chosen) not in {str(c.id) for c in choices}:
            try:
                case = engine.get(int(chosen), g.user)
            except (TypeError, ValueError, NotFound):
                case = None
            if case is not None and case.workflow == f.workflow and (not f.states or case.state in f.states):
                choices = [case, *choices]
        found[f.id] = choices
    return found


def page_number() -> int:
    """``?page=N`` (1 if missing or not a positive whole number)."""
    number = request.args.get("page", type=int) or 1
    return max(1, number)


def _row_required(form: FormSpec, field: FieldSpec, data: dict[str, Any], row: Any) -> set[str]:
    """The columns of one repeat row required now (a column's required_if reads the row and the form)."""
    outer = forms.expression_context(form.fields, data)
    row_data, _visible = forms.clean(field.fields, row if isinstance(row, dict) else {}, outer)
    return forms.required_now(field.fields, row_data, outer)


def _row_visible(field: FieldSpec, values: dict[str, Any], row: dict[str, Any]) -> set[str]:
    _data, visible = forms.clean(field.fields, row if isinstance(row, dict) else {}, values)
    return visible


# --------------------------------------------------------------------------- live forms (htmx)
#
# With JavaScript, every change in a form posts it here (htmx) and gets back only the fields, rendered
# by the same macros and the same engine.forms.clean as the full page; Idiomorph then morphs them into
# the page. Without JavaScript the add / remove / update buttons post the whole page instead.

def _live_fields(form: FormSpec, case: Case | None = None, wf: WorkflowSpec | None = None,
                 submit_in_pages: bool = False) -> Any:
    values = forms.from_html(form, request.form, kept_uploads(form, g.user))
    _rows_action(form, values)
    page_at = _posted_page(form)
    moved = _page_action(form, values, {})
    if moved is not None:
        page_at, errors = moved
    else:
        errors = _live_errors(form, values, request.form.get("_errors", ""), case, wf)
    # the row buttons in the fragment post here again (request.path is this endpoint's own URL)
    return render_template("_fields.html", **_form_context(form, values, errors, case, wf, page_at),
                           live_url=request.path, submit_in_pages=submit_in_pages)


def _live_errors(form: FormSpec, values: dict[str, Any], shown: str, case: Case | None = None,
                 wf: WorkflowSpec | None = None) -> dict[str, Any]:
    """The errors shown before this re-render that are still there: a fixed field loses its error as it is
    fixed, nothing new is reported before the person submits. Upload errors are kept as shown (the live
    request does not resend files)."""
    try:
        previous = json.loads(shown) if shown else {}
    except ValueError:
        return {}
    if not isinstance(previous, dict) or not previous:
        return {}
    engine = get_engine()
    checked = {k: v for k, v in values.items() if not (isinstance(v, dict) and "__keep__" in v)}
    try:  # the checks of a submit (referenced cases, the people user fields name), which change nothing
        engine._validate(form, checked, g.user, case=case, unit_field=wf.org_unit_field if wf and case is None else None)
        current: dict[str, Any] = {}
    except SubmissionError as exc:
        current = exc.errors
    uploads = {path.replace("-", ".") for path in form.upload_inputs()}  # error paths: receipt, items.0.receipt
    kept: dict[str, Any] = {}
    for path, messages in previous.items():
        if path in current:
            kept[path] = current[path]
        elif path in uploads and isinstance(messages, list):
            kept[path] = [{lang: str(m.get(lang, "")) for lang in ("zh", "en")} for m in messages if isinstance(m, dict)]
    return kept


def _startable(workflow_id: str) -> tuple[Any, WorkflowSpec]:
    """The engine and the workflow the current user may start (404 unknown, 403 not for their roles)."""
    engine = get_engine()
    wf = engine.definitions.workflows.get(workflow_id)
    if wf is None:
        abort(404)
    if not engine.may_start(wf, g.user):
        abort(403)
    return engine, wf


@bp.route("/start/<workflow_id>/fields", methods=["POST"])
@login_required
def start_fields(workflow_id: str) -> Any:
    engine, wf = _startable(workflow_id)
    return _live_fields(engine.definitions.forms[wf.start_form], wf=wf, submit_in_pages=True)


@bp.route("/cases/<int:case_id>/do/<transition_id>/fields", methods=["POST"])
@login_required
def step_fields(case_id: int, transition_id: str) -> Any:
    engine = get_engine()
    case = engine.get(case_id, g.user)
    t = engine.state_of(case).transition(transition_id)
    if t is None or t.form is None:
        abort(404)
    if t not in engine.available_transitions(case, g.user):
        raise NotAllowed({"zh": "您不能执行此操作。", "en": "You may not take this action."})
    return _live_fields(engine.definitions.form_of(engine.workflow_of(case), t.form), case, engine.workflow_of(case))


@bp.app_template_global()
def upload_messages(f: FieldSpec) -> dict[str, str]:
    """The size / type messages of a file field, for the early check in the browser (same words as the server's)."""
    return {"size": tr(forms.message("file_size", limit=forms.human_size(f.max_size))) if f.max_size else "",
            "type": tr(forms.message("file_type", limit=", ".join(a.split("/")[-1] for a in f.accept))) if f.accept else ""}


# --------------------------------------------------------------------------- pages

@bp.route("/")
@login_required
def inbox() -> Any:
    """The work queue: filters, sorts, search, counts, pages and bulk steps (engine/web/worklist.py)."""
    return inbox_page()


@bp.route("/mine")
@login_required
def mine() -> Any:
    return render_template("mine.html", cases=get_engine().read.started_by(g.user, page_number()))


@bp.route("/start")
@login_required
def start_list() -> Any:
    return render_template("start.html", workflows=get_engine().startable(g.user))


@bp.route("/start/<workflow_id>", methods=["GET", "POST"])
@login_required
def start(workflow_id: str) -> Any:
    engine, wf = _startable(workflow_id)
    form = engine.definitions.forms[wf.start_form]
    live_url = url_for("cases.start_fields", workflow_id=wf.id)
    parent = request.values.get("parent", type=int)  # started from another case's offer, pre-filled from it
    page = {"workflow": wf, "live_url": live_url, "parent": parent, "submit_in_pages": True}
    if request.method == "GET":
        values = _initial_values(form)
        if parent is not None:
            parent_case, offer = engine.offer(parent, workflow_id, g.user)
            values.update(engine.prefill(parent_case, offer, g.user, shown=True))
        return render_form_page("form.html", form, values, {}, page_at=0, **page)
    values, upload_errors = _read_form(form)
    if _rows_action(form, values):
        return render_form_page("form.html", form, values, {}, page_at=_posted_page(form), **page)
    moved = _page_action(form, values, upload_errors)
    if moved is not None:
        return render_form_page("form.html", form, values, moved[1], 422 if moved[1] else 200, page_at=moved[0], **page)
    try:
        if upload_errors:
            raise SubmissionError(upload_errors, values)
        case = engine.start(workflow_id, g.user, values, parent=parent)
    except SubmissionError as exc:
        errors = {**exc.errors, **upload_errors}
        return render_form_page("form.html", form, values, errors, 422, **page,
                                page_at=forms.first_page_with_errors(form, errors, _posted_page(form)),
                                alert=_("Please correct the marked fields. Nothing you typed was lost."))
    flash(_("Submitted. Case #%(id)s is now “%(state)s”.", id=case.id,
            state=tr(wf.states[case.state].title)))
    return redirect(url_for("cases.show", case_id=case.id))


@bp.route("/cases/<int:case_id>")
@login_required
def show(case_id: int) -> Any:
    _mark_read(case_id)
    return case_page(get_engine().get(case_id, g.user))


def case_page(case: Case, status: int = 200, **extra: Any) -> Any:
    """The case page for the user; ``extra``: what a refused form on it brings back (errors, what was typed)."""
    from .delegation import followup  # here: that module imports the admin area, which imports this one

    engine = get_engine()
    wf = engine.workflow_of(case)
    state = engine.state_of(case)
    mechanics = {"progress": engine.progress(case, g.user), "results": engine.results(case),
                 "notice_ends": engine.notice_ends(case), "assignee_names": engine.read.display_names(case.assignees),
                 "may_contribute": engine.may_contribute(case, g.user)[0],
                 "approval": engine.approval_status(case, g.user),
                 "earlier_rounds": engine.earlier_rounds(case, g.user),
                 "followup": followup(case, g.user)}  # 代办 / 催办 / 抄送 (templates/_followup.html)
    children = engine.children(case, g.user)
    mechanics["waits"] = linked_moves.pending(engine, case, state, children)
    links = {"children": children,
             "offers": [o for o in state.offers if engine.may_start(engine.definitions.workflows[o.workflow], g.user)]}
    return render_template("case.html", case=case, workflow=wf, state=state,
                           transitions=engine.available_transitions(case, g.user), mechanics=mechanics, links=links,
                           fields=engine.data_fields(wf), show_sensitive=engine.may_see_sensitive(case, g.user),
                           diagram=diagram_for(wf, case), task_moves=engine.task_moves(case, g.user), **extra), status


def _mark_read(case_id: int) -> None:
    engine = get_engine()
    store = engine.store
    unread = engine.read.unread(g.user.username, case_id)
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
    form = engine.definitions.form_of(wf, t.form) if t.form else None
    comment = request.form.get("comment", "")
    version = request.form.get("version", type=int) or case.version
    if request.method == "GET":
        if t not in engine.available_transitions(case, g.user):
            raise NotAllowed({"zh": "您不能执行此操作。", "en": "You may not take this action."})
        data = case.data if engine.may_see_sensitive(case, g.user) else _without_sensitive(form, case.data) if form else None
        values = _initial_values(form, data) if form else {}
        return _render_step(form, values, {}, 200, case=case, workflow=wf, transition=t, comment="", version=case.version,
                            page_at=0)
    values, upload_errors = _read_form(form) if form else ({}, {})
    if form and _rows_action(form, values):
        return _render_step(form, values, {}, 200, case=case, workflow=wf, transition=t, comment=comment, version=version,
                            page_at=_posted_page(form))
    moved = _page_action(form, values, upload_errors) if form else None
    if moved is not None:
        return _render_step(form, values, moved[1], 422 if moved[1] else 200, case=case, workflow=wf, transition=t,
                            comment=comment, version=version, page_at=moved[0])
    try:
        if upload_errors:
            raise SubmissionError(upload_errors, values)
        case = engine.fire(case_id, transition_id, g.user, values, comment=comment, expected_version=version,
                           assignees=request.form.getlist("assignees"))
    except SubmissionError as exc:
        errors = {**exc.errors, **upload_errors}
        return _render_step(form, values, errors, 422, case=case, workflow=wf, transition=t,
                            comment=comment, version=version,
                            page_at=forms.first_page_with_errors(form, errors, _posted_page(form)) if form else None,
                            alert=_("Please correct the marked fields. Nothing you typed was lost."))
    except StaleVersion as exc:
        return _render_step(form, values, {}, 409, case=engine.get(case_id, g.user), workflow=wf, transition=t,
                            comment=comment, version=version, alert=tr(exc.message), stale=True,
                            page_at=_posted_page(form) if form else None)
    flash(_("Done: %(label)s. The case is now “%(state)s”.", label=tr(t.label),
            state=tr(wf.states[case.state].title)))
    if engine.can_see(case, g.user):
        return redirect(url_for("cases.show", case_id=case.id))
    return redirect(url_for("cases.inbox"))


def _render_step(form: FormSpec | None, values: dict[str, Any], errors: dict[str, Any], status: int, **context: Any) -> Any:
    t = context["transition"]
    if t.assign is not None and t.assign.mode == "choose":  # dispatch: whom the actor may pick
        context["assign_choices"] = get_engine().eligible_assignees(context["case"], t.assign, g.user)
        context["assign_picked"] = request.form.getlist("assignees")
    if form is None:
        context.pop("page_at", None)
        return render_template("step.html", form=None, values={}, errors=errors, visible=set(),
                               row_visible=None, **context), status
    live_url = url_for("cases.step_fields", case_id=context["case"].id, transition_id=context["transition"].id)
    return render_form_page("step.html", form, values, errors, status, live_url=live_url, **context)


def listed_cases(workflow_id: str, size: int | None = PAGE_SIZE) -> tuple[WorkflowSpec, str | None, Paged[Case], dict[str, int]]:
    """What the list page of a workflow shows the current user, with its ``?state=`` filter and search:
    ``(workflow, state, the page of cases newest first, count per state)``. The exports use it too (``size``
    None: every row), so a download holds exactly the rows the page lists."""
    engine = get_engine()
    wf = engine.definitions.workflows.get(workflow_id)
    if wf is None:
        abort(404)
    state = request.args.get("state") or None
    counts = engine.read.state_counts(g.user, wf)  # also states only older versions have, where cases still are
    if state is not None and state not in counts:
        state = None
    if not any(counts.values()) and not engine.may_start(wf, g.user) and not (set(g.user.roles) & set(wf.roles)):
        abort(403)
    fields = filters.filter_fields(wf, engine.definitions.forms[wf.start_form])
    chosen = filters.active(fields, request.args)
    where = term = None
    if chosen:
        org = engine.definitions.org
        by_id = {f.id: f for f in fields}
        # One filter the read model indexes is the lookup itself (exact: see FieldType.terms); the others are
        # a store condition on what it finds, which the store answers its own way (PostgreSQL: in SQL).
        indexed = next((k for k in chosen if by_id[k].kind.indexed), None)
        if indexed is not None:
            term = (indexed, by_id[indexed].kind.wanted_terms(by_id[indexed], chosen[indexed]))
        rest = {k: v for k, v in chosen.items() if k != indexed}
        if rest:
            where = filters.condition(fields, rest, org)
    shown = engine.read.listing(g.user, wf, state, where, page_number() if size else 1, size, term=term)
    return wf, state, shown, counts


@bp.route("/workflows/<workflow_id>")
@login_required
def list_cases(workflow_id: str) -> Any:
    engine = get_engine()
    wf, state, shown, counts = listed_cases(workflow_id)
    form = engine.definitions.forms[wf.start_form]
    if wf.listing.columns:
        columns = [f for f in (form.field(name) for name in wf.listing.columns) if f is not None]
    else:
        columns = [f for f in form.fields if f.kind.list_column][:4]
    search = filters.filter_fields(wf, form)
    units = [u for u in engine.definitions.org.units.values()
             if engine.in_scope(g.user, u.id) or engine.definitions.org.contains(u.id, g.user.org_unit)] \
        if any(f.kind.holds_unit for f in search) else []
    older = {sid: s.title for spec in engine.kept.specs(wf.id)[1:] for sid, s in spec.states.items()
             if sid not in wf.states and sid in counts}  # cases of an older version in a state it alone has
    return render_template("list.html", workflow=wf, cases=shown, state=state, counts=counts, columns=columns, older=older,
                           total=sum(counts.values()), search=search, chosen=filters.active(search, request.args),
                           unit_choices=units, may_rank=engine.can_rank(wf, g.user),
                           # what a kept row and search form depend on besides the case and URL (engine.web.fragments)
                           columns_key=tuple(f.id for f in columns), units_key=tuple(u.id for u in units))


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
    engine = get_engine()
    if request.method == "POST":
        with engine.store.transaction() as tx:
            for doc in engine.read.unread(g.user.username):
                doc["read"] = True
                tx.replace(NOTIFICATIONS, doc["id"], doc)
        return redirect(url_for("cases.notifications"))
    return render_template("notifications.html", items=engine.read.notifications(g.user.username))


@bp.app_template_filter("show_value")
def show_value(value: Any, field: FieldSpec, masked: bool = False) -> str:
    if masked and field.sensitive:
        return forms.mask(value)
    return forms.display(field, value, current_lang(), get_engine().definitions.org, request_people())


def request_people() -> Any:
    """Display names of the users user fields name, looked up once per request."""
    if "people" not in g:
        g.people = get_engine().people()
    return g.people


__all__ = ["bp", "NotFound"]
