"""The case page's moves on one's own task: 转交 (transfer), 加签 (add an approver), 撤回 (withdraw) and 退回
(send back to an earlier step). Each is a POST with CSRF; the engine checks role and scope
(``engine.mechanics.taskmoves``); a refused form comes back on the case page with what was typed."""
from __future__ import annotations

from typing import Any, Callable

from flask import Blueprint, flash, g, redirect, request, url_for
from flask_babel import gettext as _

from ..cases import Case
from ..errors import StaleVersion, SubmissionError
from . import get_engine
from .auth import login_required
from .cases import case_page
from .i18n import tr

bp = Blueprint("taskmoves", __name__)


def _run(case_id: int, form: str, move: Callable[[], Case], done: Callable[[Case], str]) -> Any:
    """Take the move; a refused form shows the case page again (422) with its errors under ``form``, a stale page
    says so (409); the other refusals (not allowed: 403, not now: 409) are the app's error pages."""
    engine = get_engine()
    comment = request.form.get("comment", "")
    try:
        case = move()
    except SubmissionError as exc:
        said = " ".join(tr(m) for messages in exc.errors.values() for m in messages)  # also where no field shows it
        return case_page(engine.get(case_id, g.user), 422, move_form=form, move_errors=exc.errors, move_comment=comment,
                         move_alert=said or _("Please correct the marked fields. Nothing you typed was lost."))
    except StaleVersion as exc:
        return case_page(engine.get(case_id, g.user), 409, move_form=form, move_comment=comment, move_alert=tr(exc.message))
    flash(done(case))
    if engine.can_see(case, g.user):
        return redirect(url_for("cases.show", case_id=case_id))
    return redirect(url_for("cases.inbox"))


def _version() -> int | None:
    return request.form.get("version", type=int)


@bp.route("/cases/<int:case_id>/transfer", methods=["POST"])
@login_required
def transfer(case_id: int) -> Any:
    """转交: the person holding the task hands it to a colleague of the same role and reach."""
    engine = get_engine()
    return _run(case_id, "transfer",
                lambda: engine.transfer(case_id, g.user, request.form.get("to", ""), request.form.get("comment", ""),
                                        expected_version=_version()),
                lambda case: _("Transferred: %(label)s.", label=tr(case.history[-1]["label"])))


@bp.route("/cases/<int:case_id>/add-approver", methods=["POST"])
@login_required
def add_approver(case_id: int) -> Any:
    """加签: an approver whose turn it is adds an approver before or after themselves."""
    engine = get_engine()
    return _run(case_id, "add_approver",
                lambda: engine.add_approver(case_id, g.user, request.form.get("who", ""), request.form.get("position", ""),
                                            request.form.get("comment", ""), expected_version=_version()),
                lambda case: _("Done: %(label)s.", label=tr(case.history[-1]["label"])))


@bp.route("/cases/<int:case_id>/withdraw", methods=["POST"])
@login_required
def withdraw(case_id: int) -> Any:
    """撤回: the person who started the case takes it back while nobody else has acted on it."""
    engine = get_engine()
    return _run(case_id, "withdraw",
                lambda: engine.withdraw(case_id, g.user, request.form.get("comment", ""), expected_version=_version()),
                lambda case: _("Withdrawn. The case is now “%(state)s”.",
                               state=tr(engine.workflow_of(case).states[case.state].title)))


@bp.route("/cases/<int:case_id>/send-back", methods=["POST"])
@login_required
def send_back(case_id: int) -> Any:
    """退回: someone who may act on the step sends the case back to one of the earlier steps it names."""
    engine = get_engine()
    return _run(case_id, "return",
                lambda: engine.send_back(case_id, g.user, request.form.get("target", ""), request.form.get("comment", ""),
                                         expected_version=_version()),
                lambda case: _("Sent back. The case is now “%(state)s”.",
                               state=tr(engine.workflow_of(case).states[case.state].title)))
