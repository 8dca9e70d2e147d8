"""Login, logout and the language switch."""
from __future__ import annotations

import functools
from typing import Any, Callable
from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from ..users import USERS, User, find_user
from . import get_engine
from .i18n import LANGS

bp = Blueprint("auth", __name__)


def load_logged_in_user() -> None:
    username = session.get("user")
    g.user = find_user(get_engine().store, username) if username else None
    if g.user is not None and not g.user.active:  # deactivated while logged in: the session ends at once
        g.user = None
    if username and g.user is None:
        session.clear()


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapped(**kwargs: Any) -> Any:
        if g.user is None:
            if request.headers.get("HX-Request"):
                # a live form update after the session ended: do not swap the login page into the form
                abort(401)
            return redirect(url_for("auth.login", next=request.full_path if request.method == "GET" else None))
        return view(**kwargs)
    wrapped.login_required = True  # type: ignore[attr-defined]  # the route matrix test reads the URL map by it
    return wrapped


def _safe_next(target: str | None) -> str:
    """Only redirect to our own pages after login (no open redirect)."""
    if not target:
        return url_for("cases.inbox")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("cases.inbox")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = None
    username = ""
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        user = find_user(get_engine().store, username)
        if user is None or not user.check_password(request.form.get("password", "")):
            error = _("Wrong username or password.")
        elif not user.active:
            # Said only to someone who knows the password, so it does not reveal which usernames exist.
            error = _("This account has been deactivated. Ask your administrator to reactivate it.")
        else:
            lang = session.get("lang")
            session.clear()
            session["user"] = user.username
            session.permanent = True
            if lang in LANGS and lang != user.lang:
                _save_lang(user, lang)
            return redirect(_safe_next(request.form.get("next")))
    return render_template("login.html", error=error, username=username, next=request.args.get("next", "")), (
        401 if error else 200)


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    flash(_("You have logged out."))
    return redirect(url_for("auth.login"))


def _save_lang(user: User, lang: str) -> None:
    store = get_engine().store
    with store.transaction() as tx:
        if user.id is not None:
            doc = tx.get(USERS, user.id)
            if doc is not None:
                doc["lang"] = lang
                tx.replace(USERS, user.id, doc)


@bp.route("/lang/<lang>", methods=["POST"])
def set_lang(lang: str) -> Any:
    if lang in LANGS:
        session["lang"] = lang
        if g.user is not None:
            _save_lang(g.user, lang)
    return redirect(_safe_next(request.form.get("next") or request.referrer and urlsplit(request.referrer).path))
