"""The definition editor (``/admin/definitions``): an admin opens a workflow or form YAML, sees the problems
``civicflow lint`` gives at their lines as they type, previews the form or the diagram, saves a new version,
sees what changed and rolls back.

Only for admins whose unit is the root of the org tree (the district): definitions are shared by every unit,
so an admin of one community must not change the processes of another. Every POST carries the CSRF token
(the lint and preview calls send it in the ``X-CSRFToken`` header). Without JavaScript the page is a plain
textarea form whose buttons check, preview and save; with it, CodeMirror 6 (``static/editor.js``) marks the
problems in the gutter as the admin types. The work is :mod:`engine.definition_edit`'s.
"""
from __future__ import annotations

import functools
import secrets
from typing import Any, Callable

from flask import (Blueprint, abort, current_app, flash, g, jsonify, make_response, redirect, render_template,
                   request, url_for)
from flask_babel import gettext as _

from ..admin import UserAdmin, is_admin
from ..definition_edit import (Checked, DefinitionEditor, DefinitionFile, DraftRefused, as_typed, diff_rows,
                               digest, problem_json)
from ..errors import NotFound
from . import CSP, get_engine, reload
from .auth import login_required
from .i18n import tr

bp = Blueprint("editor", __name__, url_prefix="/admin/definitions")
MAX_TEXT = 512 * 1024  # a definition file is a few KB; this is far above any


def may_edit_definitions(user: Any) -> bool:
    """An active admin of the root unit (the district): definitions are global."""
    if not is_admin(user):
        return False
    org = get_engine().definitions.org
    return user.org_unit in org.units and org.parent(user.org_unit) is None


def editor_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Logged in, and an admin of the root unit (else 403); the view gets the admin and the editor."""
    @login_required
    @functools.wraps(view)
    def wrapped(**kwargs: Any) -> Any:
        if not may_edit_definitions(g.user):
            abort(403)
        engine = get_engine()
        return view(UserAdmin(engine, g.user), DefinitionEditor(engine, current_app.config["DEFINITIONS"]), **kwargs)
    return wrapped


def _file(editor: DefinitionEditor, kind: str, name: str) -> DefinitionFile:
    try:
        return editor.file(kind, name)
    except NotFound:
        abort(404)


def _typed() -> str:
    text = request.form.get("text", "")
    if len(text) > MAX_TEXT:
        abort(413)
    return as_typed(text)


def _title(editor: DefinitionEditor, item: DefinitionFile) -> str:
    definitions = get_engine().definitions
    found = definitions.workflows if item.kind == "workflow" else definitions.forms
    for spec in found.values():
        if spec.file == item.file:
            return tr(spec.title) or item.name
    return item.name


def _editor_page(status: int, **context: Any) -> Any:
    """``admin/definition.html`` with a style nonce: CodeMirror puts its base theme in a ``<style>`` element
    (style-mod), which ``style-src 'self'`` alone would block; this page's policy also allows the one element
    carrying the nonce (a fresh one per response). Scripts stay ``'self'`` only."""
    nonce = secrets.token_urlsafe(18)
    preview = context.get("preview") or {}
    response = make_response(render_template("admin/definition.html", style_nonce=nonce,
                                             case_choices=preview.get("case_choices", {}),
                                             user_pick=preview.get("user_pick", {}), **context), status)
    response.headers["Content-Security-Policy"] = CSP.replace("style-src 'self'", f"style-src 'self' 'nonce-{nonce}'")
    return response


def _previous(editor: DefinitionEditor, item: DefinitionFile, text: str) -> Any:
    """The version before ``text`` (the newest other one), for the diff shown on the page."""
    key = digest(text)
    return next((e for e in editor.history(item) if e.digest != key), None)


@bp.route("")
@editor_required
def index(admin: UserAdmin, editor: DefinitionEditor) -> Any:
    rows = [{"item": item, "title": _title(editor, item)} for item in editor.files()]
    return render_template("admin/definitions.html", scope_top=admin.scope.top,
                           workflows=[r for r in rows if r["item"].kind == "workflow"],
                           forms=[r for r in rows if r["item"].kind == "form"])


@bp.route("/<kind>/<name>", methods=["GET", "POST"])
@editor_required
def edit(admin: UserAdmin, editor: DefinitionEditor, kind: str, name: str) -> Any:
    item = _file(editor, kind, name)
    current = editor.text(item)
    text, base, checked, preview, refused = current, digest(current), None, None, None
    status = 200
    if request.method == "POST":
        text, base = _typed(), request.form.get("base", "")
        todo = request.form.get("action", "check")
        if todo == "save":
            try:
                saved = editor.save(admin, item, text, base)
            except DraftRefused as exc:
                refused = tr(exc.message) if exc.message else _("Not saved: fix the problems below first.")
                checked = editor.check(item, text)
                status = 422
            else:
                reload.reload_now(current_app)  # this process at once; the others within a second
                flash(_("Saved as version %(version)s.", version=saved["version"] or "?"))
                return redirect(url_for("editor.edit", kind=kind, name=name, saved=saved["generation"]))
        else:
            checked = editor.check(item, text)
            if todo == "preview":
                preview = _preview(item, checked)
            status = 422 if checked.blocking else 200
    previous = _previous(editor, item, text)
    return _editor_page(status, scope_top=admin.scope.top, item=item, title=_title(editor, item), text=text,
                        base=base, checked=checked, preview=preview, refused=refused, previous=previous,
                        diff=diff_rows(previous.text, text) if previous else [],
                        just_saved=request.args.get("saved", type=int))


@bp.route("/<kind>/<name>/lint", methods=["POST"])
@editor_required
def lint(admin: UserAdmin, editor: DefinitionEditor, kind: str, name: str) -> Any:
    """The problems of the text posted, as JSON: ``here`` (this file, with 1-based line and column) and
    ``elsewhere`` (other files this text breaks); ``known``: problems other files had already."""
    item = _file(editor, kind, name)
    checked = editor.check(item, _typed())
    return jsonify({"file": item.file, "here": problem_json(checked.here), "elsewhere": problem_json(checked.elsewhere),
                    "known": problem_json(checked.known), "warnings": problem_json(checked.warnings),
                    "ok": not checked.blocking})


@bp.route("/<kind>/<name>/preview", methods=["POST"])
@editor_required
def preview(admin: UserAdmin, editor: DefinitionEditor, kind: str, name: str) -> Any:
    """The preview of the text posted, as an HTML fragment (``admin/_preview.html``)."""
    item = _file(editor, kind, name)
    checked = editor.check(item, _typed())
    found = _preview(item, checked)
    # the form macros read the choices of `type: case` fields from the template's context
    return render_template("admin/_preview.html", preview=found, case_choices=found.get("case_choices", {}),
                           user_pick=found.get("user_pick", {}))


def _preview(item: DefinitionFile, checked: Checked) -> dict[str, Any]:
    """What the preview shows: the form as staff see it (the start page's own macros), or the diagram."""
    from .cases import _form_context, _initial_values
    from .diagrams import diagram_for

    definitions = checked.definitions
    if definitions is None:
        return {"kind": "broken"}
    if item.kind == "workflow":
        wf = next((w for w in definitions.workflows.values() if w.file == item.file), None)
        return {"kind": "diagram", "workflow": wf, "diagram": diagram_for(wf)} if wf else {"kind": "none"}
    form = next((f for f in definitions.forms.values() if f.file == item.file), None)
    if form is None:
        return {"kind": "none"}  # a file of choice lists: no form of its own
    return {"kind": "form", **_form_context(form, _initial_values(form), {})}


@bp.route("/<kind>/<name>/history")
@editor_required
def history(admin: UserAdmin, editor: DefinitionEditor, kind: str, name: str) -> Any:
    item = _file(editor, kind, name)
    entries = editor.history(item)
    return render_template("admin/definition_history.html", scope_top=admin.scope.top, item=item,
                           title=_title(editor, item), entries=entries)


@bp.route("/<kind>/<name>/diff")
@editor_required
def diff(admin: UserAdmin, editor: DefinitionEditor, kind: str, name: str) -> Any:
    """Two versions side by side in one table: ``from`` (an earlier one) and ``to`` (default: the current)."""
    item = _file(editor, kind, name)
    try:
        old = editor.earlier(item, request.args.get("from", ""))
        new = editor.earlier(item, request.args.get("to", "") or digest(editor.text(item)))
    except NotFound:
        abort(404)
    return render_template("admin/definition_diff.html", scope_top=admin.scope.top, item=item,
                           title=_title(editor, item), old=old, new=new, diff=diff_rows(old.text, new.text))


@bp.route("/<kind>/<name>/rollback", methods=["POST"])
@editor_required
def rollback(admin: UserAdmin, editor: DefinitionEditor, kind: str, name: str) -> Any:
    """Save an earlier version again; refused like any save (then the editor shows it with its problems)."""
    item = _file(editor, kind, name)
    to = request.form.get("to", "")
    try:
        earlier = editor.earlier(item, to)
    except NotFound:
        abort(404)
    try:
        saved = editor.rollback(admin, item, to)
    except DraftRefused as exc:
        current = editor.text(item)
        previous = _previous(editor, item, earlier.text)
        return _editor_page(422, scope_top=admin.scope.top, item=item, title=_title(editor, item), text=earlier.text,
                            base=digest(current), checked=editor.check(item, earlier.text), preview=None,
                            refused=tr(exc.message) if exc.message else _("Not rolled back: that version has the problems below."),
                            previous=previous, diff=diff_rows(previous.text, earlier.text) if previous else [],
                            just_saved=None)
    reload.reload_now(current_app)
    flash(_("Rolled back: saved again as version %(version)s.", version=saved["version"] or "?"))
    return redirect(url_for("editor.edit", kind=kind, name=name, saved=saved["generation"]))
