"""The actions shipped with Civicflow. Workflows name them: ``actions: [{name: grant_role, args: {role: volunteer}}]``."""
from __future__ import annotations

from .actions import ActionContext, action
from . import ledger
from .ledger import ACCOUNTS
from .notify import notify
from .users import USERS

POINTS_ACCOUNTS = ACCOUNTS


@action("grant_role")
def grant_role(ctx: ActionContext) -> None:
    """Give the case's creator a role (``args.role``), e.g. an approved applicant becomes a volunteer."""
    role = ctx.args.get("role")
    if not role:
        raise ValueError("grant_role needs args.role")
    doc = ctx.tx.first(USERS, ("username", ctx.case.created_by))
    if doc is not None:
        if role not in doc["roles"]:
            doc["roles"].append(role)
            ctx.tx.replace(USERS, doc["id"], doc)


@action("open_points_account")
def open_points_account(ctx: ActionContext) -> None:
    """Open a points account (balance 0) for the case's creator, once."""
    ledger.account(ctx.tx, ctx.case.created_by)


@action("notify_creator")
def notify_creator(ctx: ActionContext) -> None:
    """Tell the person who started the case what happened (in-app notification)."""
    label = ctx.transition.label if ctx.transition else {"zh": "", "en": ""}
    notify(ctx.tx, [ctx.case.created_by], "case_changed", ctx.case, label, ctx.now)
