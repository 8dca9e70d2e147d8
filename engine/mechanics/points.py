"""Points: ledger entries a transition makes (``points:``), and the balances people read.

Holds the spec (:class:`PointsSpec`), its load-time check (:func:`build`) and its runtime: :func:`post`
(an after-action of the transition path) and :class:`PointsMixin` (the Engine's ``balance``, ``ledger_of``).
The ledger itself (append-only, hash-chained) is ``engine.ledger``.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import ledger, webhooks
from ..errors import TransitionError
from ..expressions import Expression
from ..loadkit import msg, text
from ..spec import Text
from .base import EngineBase

if TYPE_CHECKING:
    from ..cases import Case
    from ..loader import Loader
    from ..spec import TransitionSpec
    from ..store.base import Transaction
    from ..users import User
    from ..yamlsource import PathItem, YamlSource


@dataclass(frozen=True)
class PointsSpec:
    """A points ledger entry made by a transition: ``amount`` (an expression) to ``account``."""

    account: str            # creator | assignee | actor
    amount: Expression
    reason: Text


def build(ld: "Loader", source: "YamlSource", path: list["PathItem"], items: list[dict],
          names: set[str] | None) -> tuple[PointsSpec, ...]:
    result = []
    for i, item in enumerate(items):
        amount = ld.expression(source, path + [i, "amount"], str(item["amount"]), names, "points amount")
        if amount is not None:
            result.append(PointsSpec(item["to"], amount, text(item["reason"]) or {}))
    return tuple(result)


def post(engine: Any, tx: "Transaction", case: "Case", t: "TransitionSpec", spec: PointsSpec, actor: "User",
         now: dt.datetime) -> None:
    value = spec.amount.evaluate(engine.guard_context(case, actor), now)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TransitionError(msg(f"积分数额无法计算（{spec.amount.source}），请检查填写内容。",
                                  f"The points amount ({spec.amount.source}) cannot be computed from this case."))
    owners = {"creator": [case.created_by], "assignee": case.assignees, "actor": [actor.username]}[spec.account]
    for owner in owners:
        entry = ledger.post(tx, owner, int(round(value)), reason=spec.reason, case_id=case.id, workflow=case.workflow,
                            transition=t.id, by=actor.username, now=now)
        webhooks.emit(tx, engine.definitions, "points_posted", case, now, account=owner, amount=int(round(value)),
                      balance=entry["balance"], reason=dict(spec.reason))


class PointsMixin(EngineBase):
    """The Engine's points queries (mixed into :class:`engine.runtime.Engine`)."""

    def balance(self, username: str) -> int:
        found = self.read.account(username)
        return found["balance"] if found else 0

    def ledger_of(self, username: str) -> list[dict[str, Any]]:
        return self.read.ledger_of(username)
