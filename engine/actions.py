"""Actions: Python functions that YAML names (``actions: [grant_role]``), registered with a decorator.

YAML never holds an import path. Registration closes when the app starts, and the
loader rejects any action name that is not registered.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    import datetime as dt

    from .cases import Case
    from .spec import Definitions, TransitionSpec
    from .store.base import Transaction
    from .users import User


@dataclass
class ActionContext:
    """What an action may look at and change. Writes go through ``tx`` (same transaction as the step)."""

    case: "Case"
    user: "User"
    transition: "TransitionSpec | None"
    tx: "Transaction"
    now: "dt.datetime"
    definitions: "Definitions"
    args: Mapping[str, Any]


ActionFn = Callable[[ActionContext], None]


class ActionRegistry:
    def __init__(self) -> None:
        self._actions: dict[str, ActionFn] = {}
        self._closed = False

    def action(self, name: str) -> Callable[[ActionFn], ActionFn]:
        """Decorator: ``@registry.action("grant_role")``."""
        def register(fn: ActionFn) -> ActionFn:
            if self._closed:
                raise RuntimeError(f"action {name!r} registered after the app started; register actions at import time")
            if name in self._actions and self._actions[name] is not fn:
                raise RuntimeError(f"action {name!r} is already registered")
            self._actions[name] = fn
            return fn
        return register

    def close(self) -> None:
        self._closed = True

    def names(self) -> frozenset[str]:
        return frozenset(self._actions)

    def __getitem__(self, name: str) -> ActionFn:
        return self._actions[name]

    def __contains__(self, name: object) -> bool:
        return name in self._actions


#: The registry shipped actions live in (see ``engine.builtin_actions``).
ACTIONS = ActionRegistry()
action = ACTIONS.action
