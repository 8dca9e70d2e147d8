"""The person's own page: who they are, and their API tokens (made, shown once, revoked)."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from .. import tokens
from ..clock import iso
from . import get_engine
from .auth import login_required
from .i18n import tr

bp = Blueprint("account", __name__)


def _page(new_token: str | None = None, error: str | None = None, name: str = "", status: int = 200) -> Any:
    engine = get_engine()
    mine = [tokens.public(d) for d in tokens.tokens_of(engine.store, g.user.username)]
    return render_template("account.html", tokens=mine, new_token=new_token, error=error, name=name,
                           scopes=tokens.SCOPES), status


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
    response = render_template("account.html", tokens=[tokens.public(d) for d in tokens.tokens_of(
        engine.store, g.user.username)], new_token=token, error=None, name="", scopes=tokens.SCOPES)
    return response, 201, {"Cache-Control": "no-store"}


@bp.route("/account/tokens/<int:token_id>/revoke", methods=["POST"])
@login_required
def revoke_token(token_id: int) -> Any:
    engine = get_engine()
    if tokens.revoke(engine.store, g.user.username, token_id, iso(engine.clock())):
        flash(_("The token was revoked: requests with it are refused from now on."))
    else:
        flash(_("No such token of yours, or it was revoked already."))
    return redirect(url_for("account.account"))
