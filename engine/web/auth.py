"""Login, logout and the language switch."""
from __future__ import annotations

import functools
from typing import Any, Callable
from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from ..logins import Logins, session_valid
from ..users import USERS, User, find_user
from . import get_engine
from .i18n import LANGS, tr

bp = Blueprint("auth", __name__)


def _logins() -> Logins:
    engine = get_engine()
    return Logins(engine.store, engine.clock)


def load_logged_in_user() -> None:
    username = session.get("user")
    g.user = find_user(get_engine().store, username) if username else None
    # deactivated while logged in, logged out elsewhere with this cookie, or the password reset: the session ends
    if g.user is not None and (not g.user.active or not session_valid(g.user, session.get("sid"))):
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
    status = 200
    headers: dict[str, str] = {}
    username = ""
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        address = request.remote_addr or ""
        logins = _logins()
        refusal = logins.refusal(username, address)
        user = find_user(get_engine().store, username) if refusal is None else None
        if refusal is not None:
            # The same answer whether or not the username exists, and before the password is looked at.
            error, status = tr(refusal.message()), 429
            headers["Retry-After"] = str(refusal.minutes * 60)
        elif user is None or not user.check_password(request.form.get("password", "")):
            logins.failed(username, address, user)
            error, status = _("Wrong username or password."), 401
        elif not user.active:
            # Said only to someone who knows the password, so it does not reveal which usernames exist.
            error, status = _("This account has been deactivated. Ask your administrator to reactivate it."), 401
        else:
            lang = session.get("lang")
            session.clear()  # a new session at login: nothing set before it (fixation) carries over
            session["user"] = user.username
            session["sid"] = logins.succeeded(user, address)
            session.permanent = True
            if lang in LANGS and lang != user.lang:
                _save_lang(user, lang)
            return redirect(_safe_next(request.form.get("next")))
    return render_template("login.html", error=error, username=username, next=request.args.get("next", "")), status, headers


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    lang = session.get("lang")
    if g.user is not None:
        _logins().end_session(g.user, session.get("sid", ""))  # a copy of the cookie is worthless from now on
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
