"""The admin area (``/admin``): people of the admin's unit and below, their bulk import, the org units,
the processes with their versions, the audit log and recent failed logins. Only for the ``admin`` role.

The work is done by :mod:`engine.admin` and :mod:`engine.userimport`; this module reads requests, calls them
and hands templates plain data.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ..admin import UserAdmin, UserInput, is_admin
from ..errors import SubmissionError
from ..logins import NO_UNIT, LoginPolicy
from ..userimport import MAX_BYTES, ImportFileError, import_users
from . import get_engine
from .auth import login_required
from .cases import page_number
from .i18n import tr

bp = Blueprint("admin", __name__, url_prefix="/admin")


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Logged in (else the login page) and an active admin (else 403); the view gets the admin's UserAdmin."""
    @login_required
    @functools.wraps(view)
    def wrapped(**kwargs: Any) -> Any:
        if not is_admin(g.user):
            abort(403)
        return view(UserAdmin(get_engine(), g.user), **kwargs)
    return wrapped


def _context(admin: UserAdmin, **more: Any) -> dict[str, Any]:
    roles = get_engine().definitions.roles
    return {"scope_top": admin.scope.top, "unit_choices": admin.scope.units,
            "role_titles": {r: tr(roles[r].title) or r for r in admin.roles}, **more}


def _errors(exc: SubmissionError) -> dict[str, list[str]]:
    return {name: [tr(m) for m in messages] for name, messages in exc.errors.items()}


def _typed() -> UserInput:
    return UserInput(request.form.get("username", "").strip(), request.form.get("name", "").strip(),
                     tuple(dict.fromkeys(request.form.getlist("roles"))), request.form.get("unit", "").strip(),
                     request.form.get("password", ""))


@bp.route("/")
@admin_required
def index(admin: UserAdmin) -> Any:
    inactive, cases = admin.needing_reassignment(page_number())
    return render_template("admin/index.html", **_context(admin, inactive=inactive, cases=cases))


@bp.route("/users")
@admin_required
def users(admin: UserAdmin) -> Any:
    query, unit = request.args.get("q", "")[:100], request.args.get("unit", "")
    found = admin.users(query, page_number(), unit=unit)
    return render_template("admin/users.html", **_context(admin, users=found, q=query,
                                                          unit=unit if unit in admin.scope.units else ""))


@bp.route("/users/new", methods=["GET", "POST"])
@admin_required
def new_user(admin: UserAdmin) -> Any:
    item, errors = UserInput("", "", (), admin.scope.top), {}
    if request.method == "POST":
        item = _typed()
        try:
            generated = admin.create(item)
        except SubmissionError as exc:
            errors = _errors(exc)
        else:
            # Shown on this page only, never in a redirect or flash (the session cookie is signed, not secret).
            return render_template("admin/password.html", **_context(admin, user=admin.user(item.username),
                                   password=generated, created=True))
    return render_template("admin/user_form.html", **_context(admin, item=item, errors=errors, new=True)), (
        422 if errors else 200)


@bp.route("/users/<username>", methods=["GET", "POST"])
@admin_required
def edit_user(admin: UserAdmin, username: str) -> Any:
    user = admin.user(username)
    item, errors = UserInput(user.username, user.name, user.roles, user.org_unit), {}
    if request.method == "POST":
        typed = _typed()
        item = UserInput(user.username, typed.name, typed.roles, typed.unit)
        try:
            admin.edit(username, item.name, item.roles, item.unit)
        except SubmissionError as exc:
            errors = _errors(exc)
        else:
            flash(_("Saved."))
            return redirect(url_for("admin.edit_user", username=username))
    return render_template("admin/user_form.html", **_context(admin, item=item, errors=errors, new=False, user=user)), (
        422 if errors else 200)


@bp.route("/users/<username>/password", methods=["POST"])
@admin_required
def reset_password(admin: UserAdmin, username: str) -> Any:
    user = admin.user(username)
    try:
        password = admin.reset_password(username, request.form.get("password", ""))
    except SubmissionError as exc:
        item = UserInput(user.username, user.name, user.roles, user.org_unit)
        return render_template("admin/user_form.html", **_context(admin, item=item, errors=_errors(exc), new=False,
                                                                  user=user)), 422
    return render_template("admin/password.html", **_context(admin, user=user, password=password, created=False))


@bp.route("/users/<username>/deactivate", methods=["POST"])
@admin_required
def deactivate(admin: UserAdmin, username: str) -> Any:
    admin.set_active(username, False)
    flash(_("The account is deactivated: it can no longer log in."))
    return redirect(url_for("admin.edit_user", username=username))


@bp.route("/users/<username>/reactivate", methods=["POST"])
@admin_required
def reactivate(admin: UserAdmin, username: str) -> Any:
    admin.set_active(username, True)
    flash(_("The account is active again."))
    return redirect(url_for("admin.edit_user", username=username))


@bp.route("/import", methods=["GET", "POST"])
@admin_required
def import_page(admin: UserAdmin) -> Any:
    result, error = None, None
    if request.method == "POST":
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            error = _("Choose a file to upload.")
        else:
            data = upload.stream.read(MAX_BYTES + 1)
            try:
                result = import_users(admin, upload.filename, data)
            except ImportFileError as exc:
                error = tr(exc.message)
    status = 422 if error or (result is not None and result.problems) else 200
    return render_template("admin/import.html", **_context(admin, result=result, error=error,
                                                           max_mb=MAX_BYTES // 1024 // 1024)), status


@bp.route("/units")
@admin_required
def units(admin: UserAdmin) -> Any:
    return render_template("admin/units.html", **_context(admin, tree=admin.unit_tree()))


@bp.route("/processes")
@admin_required
def processes(admin: UserAdmin) -> Any:
    return render_template("admin/processes.html", **_context(admin, processes=admin.processes()))


@bp.route("/audit")
@admin_required
def audit(admin: UserAdmin) -> Any:
    entries = admin.audit(page_number())
    for entry in entries:
        entry["shown"] = _details(entry.get("details") or {})
    return render_template("admin/audit.html", **_context(admin, entries=entries))


@bp.route("/logins")
@admin_required
def logins(admin: UserAdmin) -> Any:
    """Recent failed logins in the admin's scope, with the limits in force, to spot guessing early."""
    policy = LoginPolicy()
    return render_template("admin/logins.html", **_context(admin, attempts=admin.failed_logins(), no_unit=NO_UNIT,
                                                         account_failures=policy.account_failures,
                                                         address_failures=policy.address_failures,
                                                         window=int(policy.window.total_seconds() // 60)))


def _details(details: dict[str, Any]) -> list[tuple[str, str]]:
    """An audit entry's details as (name, text): a change [before, after] reads "before → after"."""
    def text(value: Any) -> str:
        if isinstance(value, (list, tuple)):
            return "、".join(text(v) for v in value)
        if isinstance(value, bool):
            return _("yes") if value else _("no")
        return str(value)
    labels = {"name": _("Name"), "roles": _("Roles"), "unit": _("Org unit"), "count": _("Number of users"),
              "usernames": _("Usernames"), "generated": _("Generated"), "events": _("Events"),
              "workflows": _("Processes"), "delivery": _("Delivery"), "version": _("Version"),
              "generation": _("Definitions generation"), "digest": _("Text digest")}
    shown = []
    for key, value in details.items():
        name = labels.get(key, key)
        if key in ("name", "roles", "unit", "version") and isinstance(value, list) and len(value) == 2 \
                and isinstance(value[0], type(value[1])):
            shown.append((name, f"{text(value[0])} → {text(value[1])}"))
        else:
            shown.append((name, text(value)))
    return shown
