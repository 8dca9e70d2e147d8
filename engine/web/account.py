"""The person's own page: who they are, how notifications reach them (e-mail, SMS), their password, their
API tokens (made, shown once, revoked) and their delegations (委托代理: ``engine.web.delegation``)."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from .. import tokens
from ..channels import CHANNEL_TITLES, Preferences, problems
from ..clock import iso
from ..notify import KINDS
from ..users import USERS, hash_password, password_problems
from . import get_engine
from .auth import login_required
from .i18n import tr

bp = Blueprint("account", __name__)


def _my_doc(tx: Any = None) -> dict[str, Any]:
    doc = (tx or get_engine().store).first(USERS, ("username", g.user.username))
    assert doc is not None  # g.user was loaded from it for this request
    return doc


def _page(new_token: str | None = None, error: str | None = None, name: str = "", status: int = 200,
          prefs: Preferences | None = None, notify_errors: dict[str, list[str]] | None = None,
          password_errors: dict[str, list[str]] | None = None, **extra: Any) -> Any:
    """The page; ``extra``: the 委托代理 section's context when a refused delegation brings it back
    (``engine.web.delegation.account_context``)."""
    from .delegation import account_context  # here: that module renders this page

    engine = get_engine()
    mine = [tokens.public(d) for d in tokens.tokens_of(engine.store, g.user.username)]
    offered = current_app.extensions["civicflow_channels"].offered
    return render_template("account.html", tokens=mine, new_token=new_token, error=error, name=name,
                           scopes=tokens.SCOPES, prefs=prefs or Preferences.of(_my_doc()),
                           channels={c: tr(CHANNEL_TITLES[c]) for c in offered},
                           kinds={k: tr(v) for k, v in KINDS.items()}, notify_errors=notify_errors or {},
                           password_errors=password_errors or {}, **(extra or account_context())), status


@bp.route("/account")
@login_required
def account() -> Any:
    return _page()


@bp.route("/account/tokens", methods=["POST"])
@login_required
def create_token() -> Any:
    """Shown on the answer to this post, once, never again (not kept in the session or a flash message)."""
    engine = get_engine()
    name = request.form.get("name", "")
    try:
        token, _doc = tokens.create(engine.store, g.user.username, name, request.form.get("scope", ""),
                                    iso(engine.clock()))
    except tokens.TokenError as exc:
        return _page(error=tr(exc.message), name=name, status=422)
    body, _status = _page(new_token=token)
    return body, 201, {"Cache-Control": "no-store"}


@bp.route("/account/tokens/<int:token_id>/revoke", methods=["POST"])
@login_required
def revoke_token(token_id: int) -> Any:
    engine = get_engine()
    if tokens.revoke(engine.store, g.user.username, token_id, iso(engine.clock())):
        flash(_("The token was revoked: requests with it are refused from now on."))
    else:
        flash(_("No such token of yours, or it was revoked already."))
    return redirect(url_for("account.account"))


@bp.route("/account/notifications", methods=["POST"])
@login_required
def notifications() -> Any:
    """Which notifications also reach the person outside the app, and where."""
    prefs = Preferences(channels=tuple(request.form.getlist("channels")), email=request.form.get("email", "").strip(),
                        mobile=request.form.get("mobile", "").strip().replace(" ", "").replace("-", ""),
                        kinds=tuple(request.form.getlist("kinds")))
    offered = current_app.extensions["civicflow_channels"].offered
    found = problems(prefs, offered, KINDS)
    if found:
        return _page(prefs=prefs, notify_errors={k: [tr(m) for m in v] for k, v in found.items()}, status=422)
    with get_engine().store.transaction() as tx:
        doc = _my_doc(tx)
        doc["notify"] = prefs.to_doc()
        tx.replace(USERS, doc["id"], doc)
    flash(_("Your notification settings are saved."))
    return redirect(url_for("account.account") + "#notify")


@bp.route("/account/password", methods=["POST"])
@login_required
def password() -> Any:
    """Change one's own password: the current one first; the new one meets the policy. Every other session of
    the person ends (a phone left logged in somewhere), this one stays."""
    current, new, again = (request.form.get(k, "") for k in ("current", "new", "again"))
    errors: dict[str, list[str]] = {}
    if not g.user.check_password(current):
        errors["current"] = [_("This is not your current password.")]
    found = [tr(p) for p in password_problems(new, g.user.username)]
    if found:
        errors["new"] = found
    elif new != again:
        errors["again"] = [_("The two new passwords differ.")]
    elif new == current:
        errors["new"] = [_("Choose a password different from the current one.")]
    if errors:
        return _page(password_errors=errors, status=422)
    with get_engine().store.transaction() as tx:
        doc = _my_doc(tx)
        doc["password_hash"] = hash_password(new)
        doc["sessions"] = [s for s in doc.get("sessions") or () if s == session.get("sid")]
        tx.replace(USERS, doc["id"], doc)
    flash(_("Your password is changed; you are logged out everywhere else."))
    return redirect(url_for("account.account"))
