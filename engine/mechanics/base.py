"""What the one transition path (``engine.transition.take``) asks of each kind of edge, and the mover's step.

A leaf module (no engine imports but users), so the mechanics modules and ``engine.transition`` can both use
it without import cycles.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from ..users import User

if TYPE_CHECKING:
    import datetime as dt

    from ..cases import Case
    from ..runtime import Engine
    from ..spec import EdgeSpec, FormSpec, Text, TransitionSpec
    from ..store.base import Transaction

if TYPE_CHECKING:  # mixins see the whole Engine when type-checked; at run time they are plain classes
    EngineBase = Engine
else:
    EngineBase = object

#: Who acts when the clock moves a case (timers, notice expiry, deadlines); holds the role ``system``.
SYSTEM = User("system", "系统", ("system",), "")


@dataclass
class Step:
    """One move in the making: what the mover brings (form ``values``, ``comment``, the people ``chosen`` in a
    dispatch, ``data`` the engine itself writes, e.g. a ranking level) and what the path works out on the way."""

    values: Mapping[str, Any] = field(default_factory=dict)
    comment: str = ""
    chosen: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    rank: int | None = None                             # ranking: the case's place
    transition: "TransitionSpec | None" = None          # kind transition: the transition taken
    form: "FormSpec | None" = None                      # kind transition: its step form
    form_data: dict[str, Any] = field(default_factory=dict)
    assignees: list[str] | None = None                  # who has the case afterwards (None: unchanged)
    previous_assignees: list[str] = field(default_factory=list)
    chain: tuple[int, ...] = ()                         # linked moves: the cases that moved this one, in order
    record: dict[str, Any] = field(default_factory=dict)  # more for the history entry (e.g. who was urged, copied in)


class EdgeKind:
    """What one kind of edge (transition, objection, ranking outcome, approval) adds at each step of ``take``, in its
    order. The defaults add nothing; a mechanics module overrides the steps its kind has."""

    def check_roles(self, engine: "Engine", case: "Case", edge: "EdgeSpec", actor: User, step: Step) -> None:
        """1. Raise :class:`NotAllowed` unless ``actor`` may take ``edge``."""

    def check_guard(self, engine: "Engine", case: "Case", edge: "EdgeSpec", actor: User, step: Step) -> None:
        """2. Raise :class:`TransitionError` unless the edge's condition holds now."""

    def validate(self, engine: "Engine", tx: "Transaction", case: "Case", edge: "EdgeSpec", actor: User,
                 step: Step) -> None:
        """3. Raise :class:`SubmissionError` unless what the mover brought is complete and valid."""

    def before(self, engine: "Engine", tx: "Transaction", case: "Case", edge: "EdgeSpec", actor: User, step: Step,
               now: "dt.datetime") -> None:
        """4. Before-actions."""

    def apply(self, engine: "Engine", tx: "Transaction", case: "Case", edge: "EdgeSpec", actor: User, step: Step,
              now: "dt.datetime") -> list[dict[str, Any]]:
        """5. Merge the step's data into the case; return the changes for the history entry."""
        return []

    def label(self, edge: "EdgeSpec", step: Step) -> "Text":
        """6. The history entry's label."""
        return edge.label

    def reenters(self, edge: "EdgeSpec") -> bool:
        """Whether arriving (also by a self-loop) means entering the target state again (timers re-armed...);
        an approver's act stays in the state's round."""
        return True

    def after(self, engine: "Engine", tx: "Transaction", case: "Case", edge: "EdgeSpec", actor: User, step: Step,
              now: "dt.datetime") -> None:
        """7. After-actions: registered actions, points, linked cases, notifications."""
