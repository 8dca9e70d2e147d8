"""Webhook subscriptions in the admin area (``/admin/webhooks``): an admin subscribes a URL to events of the
cases in their unit and below, sees each delivery with its status, sends one again, or switches a
subscription off. The work is done by :mod:`engine.webhooks`; every change has its audit entry."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ..admin import UserAdmin
from ..webhooks import EVENTS, Subscription, Webhooks, url_problem
from . import get_engine
from .admin import _context, admin_required
from .i18n import tr

bp = Blueprint("webhooks", __name__, url_prefix="/admin/webhooks")


def _hooks() -> Webhooks:
    engine = get_engine()
    return Webhooks(engine.store, engine.clock)


def _mine(admin: UserAdmin, subscription_id: int) -> Subscription:
    """A subscription of the admin's units (else 404: another community's hooks are not theirs to see)."""
    found = _hooks().get(subscription_id)
    if found is None or not admin.scope.covers(found.unit):
        abort(404)
    return found


def _page(admin: UserAdmin, typed: dict[str, Any], errors: dict[str, list[str]], secret: str = "") -> Any:
    definitions = get_engine().definitions
    subscriptions = [s for s in _hooks().all() if admin.scope.covers(s.unit)]
    return render_template("admin/webhooks.html", **_context(
        admin, subscriptions=subscriptions, typed=typed, errors=errors, secret=secret,
        events={k: tr(v) for k, v in EVENTS.items()},
        workflows={w: tr(wf.title) for w, wf in sorted(definitions.workflows.items())}))


@bp.route("/", methods=["GET", "POST"])
@admin_required
def index(admin: UserAdmin) -> Any:
    typed: dict[str, Any] = {"url": "", "events": [], "workflows": []}
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        definitions = get_engine().definitions
        typed = {"url": request.form.get("url", "").strip(), "events": request.form.getlist("events"),
                 "workflows": request.form.getlist("workflows")}
        problem = url_problem(typed["url"])
        if problem:
            errors["url"] = [tr(problem)]
        if not typed["events"] or any(e not in EVENTS for e in typed["events"]):
            errors["events"] = [_("Choose at least one event.")]
        if any(w not in definitions.workflows for w in typed["workflows"]):
            errors["workflows"] = [_("Unknown process.")]
        if not errors:
            with get_engine().store.transaction() as tx:
                sid, secret = _hooks().subscribe(tx, typed["url"], typed["events"], typed["workflows"],
                                                 admin.scope.top, admin.actor.username)
                admin.write_audit(tx, "webhook_create", typed["url"], [admin.scope.top],
                                  {"events": typed["events"], "workflows": typed["workflows"] or ["*"]})
            return _page(admin, {"url": "", "events": [], "workflows": []}, {}, secret=secret), 201
    return _page(admin, typed, errors), 422 if errors else 200


@bp.route("/<int:subscription_id>")
@admin_required
def detail(admin: UserAdmin, subscription_id: int) -> Any:
    subscription = _mine(admin, subscription_id)
    try:
        page = max(1, int(request.args.get("page", "1")))
    except ValueError:
        page = 1
    deliveries, total = _hooks().deliveries(subscription_id, offset=(page - 1) * 50, limit=50)
    return render_template("admin/webhook.html", **_context(
        admin, subscription=subscription, deliveries=deliveries, total=total, page=page,
        pages=max(1, -(-total // 50)), events={k: tr(v) for k, v in EVENTS.items()}))


@bp.route("/<int:subscription_id>/<any(on, off):switch>", methods=["POST"])
@admin_required
def toggle(admin: UserAdmin, subscription_id: int, switch: str) -> Any:
    subscription = _mine(admin, subscription_id)
    with get_engine().store.transaction() as tx:
        _hooks().set_active(tx, subscription_id, switch == "on")
        admin.write_audit(tx, f"webhook_{switch}", subscription.url, [subscription.unit], {})
    flash(_("The subscription is on.") if switch == "on" else _("The subscription is off: nothing more is sent."))
    return redirect(url_for("webhooks.detail", subscription_id=subscription_id))


@bp.route("/<int:subscription_id>/ping", methods=["POST"])
@admin_required
def ping(admin: UserAdmin, subscription_id: int) -> Any:
    _mine(admin, subscription_id)
    with get_engine().store.transaction() as tx:
        _hooks().ping(tx, subscription_id, admin.actor.username)
    flash(_("A test delivery is queued; it is sent within the next timer run."))
    return redirect(url_for("webhooks.detail", subscription_id=subscription_id))


@bp.route("/<int:subscription_id>/deliveries/<int:delivery_id>/again", methods=["POST"])
@admin_required
def redeliver(admin: UserAdmin, subscription_id: int, delivery_id: int) -> Any:
    subscription = _mine(admin, subscription_id)
    delivery = get_engine().store.get("outbox", delivery_id)
    if delivery is None or delivery.get("subscription") != subscription_id:
        abort(404)
    with get_engine().store.transaction() as tx:
        _hooks().redeliver(tx, delivery_id)
        admin.write_audit(tx, "webhook_redeliver", subscription.url, [subscription.unit], {"delivery": delivery_id})
    flash(_("The delivery is queued again."))
    return redirect(url_for("webhooks.detail", subscription_id=subscription_id))
