"""Moves a person makes on their own task: 转交 (transfer), 加签 (add an approver), 撤回 (withdraw) and 退回 (send
back to a named earlier step).

Declared in YAML: a state's ``moves: [transfer, add_approver]`` (absent: ``[transfer]`` on a non-final state
where people act; ``[]``: none), a state's ``return_to: [draft, review]`` and the workflow's ``withdraw: {to:
withdrawn}``. Each is an edge of kind ``move`` of the workflow's state graph, built at load (:func:`edges`), and
goes through the one transition path (``engine.transition.take``): role and scope check, its history entry
(``Engine._record``), a new case version, notifications. Transfer and add approver are self-loops that keep the
state's timers and round (``reenter`` false); withdraw and send back enter their target state as any move does.

Holds the load-time building and checks (:func:`build`, :func:`build_withdraw`, :func:`check_returns`), the edges,
the edge kind :data:`MOVE` and :class:`TaskMovesMixin` (the Engine's ``transfer``, ``add_approver``, ``withdraw``,
``send_back`` and ``task_moves``, what a case page offers).
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Mapping

from .. import transition as path
from ..cases import CASES
from ..clock import iso
from ..errors import NotAllowed, StaleVersion, SubmissionError, TransitionError
from ..loadkit import did_you_mean, msg
from ..notify import notify
from ..spec import PSEUDO_ROLES, EdgeSpec, Text, reachable, role_name, tr
from . import approval
from .base import EdgeKind, EngineBase, Step

if TYPE_CHECKING:
    from ..cases import Case
    from ..loader import Loader
    from ..spec import StateSpec, WorkflowSpec
    from ..store.base import Transaction
    from ..users import User
    from ..yamlsource import PathItem, YamlSource

#: the moves a state may list under ``moves:`` (withdraw and send back have keys of their own)
MOVES: Mapping[str, Text] = {"transfer": {"zh": "转交", "en": "Transfer"},
                             "add_approver": {"zh": "加签", "en": "Add an approver"}}
LABELS: Mapping[str, Text] = {**MOVES, "withdraw": {"zh": "撤回", "en": "Withdraw"},
                              "return": {"zh": "退回", "en": "Send back"}}
#: 加签: the added approver acts before the one who adds them (前加签) or after them (后加签)
POSITIONS: Mapping[str, Text] = {"before": {"zh": "前加签（先于我审批）", "en": "Before me"},
                                 "after": {"zh": "后加签（在我之后审批）", "en": "After me"}}
COMMENT_LIMIT = 1000


# --------------------------------------------------------------------------- load time

def people_act(state: "StateSpec | Mapping[str, Any]") -> bool:
    """Whether people act in the state (a transition someone takes, or an approval): where ``moves`` defaults
    to ``[transfer]``."""
    if isinstance(state, Mapping):
        return "approval" in state or any({role_name(r) for r in t["roles"]} - {"system"} for t in state.get("transitions", []))
    return state.approval is not None or any(set(t.roles) - {"system"} for t in state.transitions)


def build(ld: "Loader", source: "YamlSource", here: list["PathItem"], raw: Mapping[str, Any],
          states: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A state's ``moves`` and ``return_to``, checked against the names and states known without the graph."""
    sid = here[-1]
    final = raw.get("final", False)
    moves: list[str] = []
    if "moves" not in raw:
        moves = ["transfer"] if not final and people_act(raw) else []
    else:
        if final and raw["moves"]:
            ld.problems.append(source.problem(here + ["moves"], f"final state {sid!r} has moves",
                                              "nobody acts on a finished case: remove 'moves'", key=True))
        for i, name in enumerate(raw["moves"]):
            if name not in MOVES:
                ld.problems.append(source.problem(here + ["moves", i], f"unknown move {name!r}",
                                                  did_you_mean(name, MOVES) or f"moves: {', '.join(MOVES)}"))
            elif name == "add_approver" and "approval" not in raw:
                ld.problems.append(source.problem(here + ["moves", i], f"add_approver needs an approval in state {sid!r}",
                                                  "加签 adds a seat to the state's approval round: add 'approval' or remove it"))
            elif name not in moves and not final:
                moves.append(name)
    returns: list[str] = []
    if final and raw.get("return_to"):
        ld.problems.append(source.problem(here + ["return_to"], f"final state {sid!r} has return_to",
                                          "a finished case is not sent back: remove 'return_to'", key=True))
    for i, target in enumerate(raw.get("return_to", [])):
        if target not in states:
            ld.problems.append(source.problem(here + ["return_to", i], f"unknown state {target!r}",
                                              did_you_mean(target, states) or f"states: {', '.join(states)}"))
        elif target == sid:
            ld.problems.append(source.problem(here + ["return_to", i], f"state {sid!r} cannot return to itself",
                                              "name an earlier state the case came through"))
        elif states[target].get("final", False):
            ld.problems.append(source.problem(here + ["return_to", i], f"return_to names final state {target!r}",
                                              "a case is sent back to a step where people act again, not to an end"))
        elif target not in returns and not final:
            returns.append(target)
    return tuple(moves), tuple(returns)


def build_withdraw(ld: "Loader", source: "YamlSource", raw: Mapping[str, Any] | None, states: Mapping[str, Any]) -> str | None:
    """The workflow's ``withdraw: {to: <state>}``: where the person who started a case takes it back to."""
    if raw is None:
        return None
    target = raw["to"]
    if target not in states:
        ld.problems.append(source.problem(["withdraw", "to"], f"unknown state {target!r}",
                                          did_you_mean(target, states) or f"states: {', '.join(states)}"))
    # kept even when misspelt (the workflow is not built then): its edges keep the graph checks from calling the
    # state it was meant to be unreachable, a cascade of the one mistake
    return str(target)


def check_returns(ld: "Loader", source: "YamlSource", states: Mapping[str, "StateSpec"], edges: tuple[EdgeSpec, ...]) -> None:
    """Each ``return_to`` state must come before the state naming it: a case there can get back to it along the
    workflow's forward edges (transitions, approvals, objections, rankings), i.e. it may have come through it."""
    forward = [e for e in edges if e.kind != "move"]
    if not all(e.source in states and e.target in states for e in forward):
        return  # a misspelt target says so already; judging "earlier" then would only cascade
    for sid, state in states.items():
        for i, target in enumerate(state.return_to):
            if sid not in reachable(forward, target):
                ld.problems.append(source.problem(["states", sid, "return_to", i],
                                                  f"state {target!r} does not come before {sid!r}",
                                                  f"a case in {sid!r} never came through {target!r}: name a state on the way to it"))


def edges(sid: str, state: "StateSpec", withdraw_to: str | None) -> list[EdgeSpec]:
    """The state's ``move`` edges: transfer and add approver (self-loops), one per ``return_to`` state, and the
    withdrawal to the workflow's ``withdraw.to`` (from every non-final state but that one)."""
    found = [EdgeSpec(sid, sid, "move", name, MOVES[name], ("assignee", "approver") if name == "transfer" else ("approver",),
                      outcome=name) for name in state.moves]
    acting = tuple(sorted({r for t in state.transitions for r in t.roles} - {"system"})) + (
        ("approver",) if state.approval is not None else ())
    found += [EdgeSpec(sid, target, "move", "return", LABELS["return"], acting, outcome=f"return-{target}")
              for target in state.return_to]
    if withdraw_to is not None and not state.final and sid != withdraw_to:
        found.append(EdgeSpec(sid, withdraw_to, "move", "withdraw", LABELS["withdraw"], ("creator",), outcome="withdraw"))
    return found


# --------------------------------------------------------------------------- run time: who holds what

def seat_held(case: "Case", username: str) -> tuple[dict[str, Any], int] | None:
    """The open round of the case's state and the seat ``username`` may act on now in it."""
    bucket = approval.current(case, case.state)
    if bucket is None:
        return None
    i = approval.seat_of(bucket, username)
    return None if i is None else (bucket, i)


def holds(engine: Any, case: "Case", username: str) -> str | None:
    """What task ``username`` holds on the case now: ``seat`` (an open seat of its approval round) or
    ``assignee`` (the case is assigned to them and its step is the assignees' to take); None: none."""
    if seat_held(case, username) is not None:
        return "seat"
    if username not in case.assignees:
        return None
    state = engine.state_of(case)
    theirs = "assignee" in case.waiting_for or any("assignee" in t.roles for t in state.transitions)
    return "assignee" if theirs and not state.final else None


def task_roles(engine: Any, case: "Case", actor: "User", held: str) -> set[str]:
    """The roles a task is held by, which a colleague taking it over must hold too: a sequence seat's role,
    an approval's roles the actor holds, else the actor's roles of the workflow that reach the case."""
    wf = engine.workflow_of(case)
    if held == "seat":
        bucket, i = seat_held(case, actor.username)  # type: ignore[misc]
        if bucket["seats"][i].get("role"):
            return {bucket["seats"][i]["role"]}
        spec = wf.states[case.state].approval
        named = set(spec.approvers.roles) & set(actor.roles) if spec is not None else set()
        if named:
            return named
    return {r for r in actor.roles if r in wf.roles and r not in PSEUDO_ROLES
            and engine.reaches(actor, r, case.org_unit, wf)}


def colleagues(engine: Any, tx: "Transaction | None", case: "Case", actor: "User") -> list["User"]:
    """Who the actor may hand their task to: active holders of one of its roles whose reach covers the case, not
    the actor, not someone who holds it already (for a seat: nobody of the round, nor the applicant)."""
    held = holds(engine, case, actor.username)
    if held is None:
        return []
    wf = engine.workflow_of(case)
    taken = set(case.assignees) if held == "assignee" else (
        {u for s in approval.current(case, case.state)["seats"] for u in s["users"]} | {case.created_by})  # type: ignore[index]
    found: dict[str, "User"] = {}
    for role in sorted(task_roles(engine, case, actor, held)):
        for u in engine.users(tx, role):
            if u.username != actor.username and u.username not in taken and engine.reaches(u, role, case.org_unit, wf):
                found.setdefault(u.username, u)
    return sorted(found.values(), key=lambda u: u.username)


def addable(engine: Any, tx: "Transaction | None", case: "Case", actor: "User") -> list["User"]:
    """Who an approver may add to the round (加签): active holders of a role of the workflow whose reach covers
    the case, not the applicant and nobody of the round already."""
    held = seat_held(case, actor.username)
    if held is None:
        return []
    wf = engine.workflow_of(case)
    taken = {u for s in held[0]["seats"] for u in s["users"]} | {case.created_by}
    found: dict[str, "User"] = {}
    for role in wf.roles:
        if role in PSEUDO_ROLES:
            continue
        for u in engine.users(tx, role):
            if u.username not in taken and engine.reaches(u, role, case.org_unit, wf):
                found.setdefault(u.username, u)
    return sorted(found.values(), key=lambda u: u.username)


def acted_by_others(case: "Case") -> dict[str, Any] | None:
    """The first history entry since the start written by someone but the case's initiator (None: nobody else
    has acted, so the initiator may still withdraw it)."""
    return next((h for h in case.history[1:] if h.get("by") != case.created_by), None)


def may_act(engine: Any, case: "Case", user: "User") -> bool:
    """Whether ``user`` may act on the case's step (so may send it back): on an approval step, an approver whose
    turn it is (a withdrawal transition the applicant may take there is no acting on the step); elsewhere a role of
    one of its transitions (not the clock's alone), or the case assigned to them where it waits for that."""
    state = engine.state_of(case)
    if state.final:
        return False
    if state.approval is not None:
        return engine.may_approve(case, user)
    roles = engine.roles_for(case, user)
    if any(set(t.roles) & roles - {"system"} for t in state.transitions):
        return True
    return "assignee" in case.waiting_for and user.username in case.assignees


# --------------------------------------------------------------------------- the edge kind

def _refuse(zh: str, en: str) -> None:
    raise NotAllowed(msg(zh, en))


def _person(step: Step, field: str, zh: str, en: str) -> str:
    chosen = [u for u in step.chosen if u]
    if not chosen:
        raise SubmissionError({field: [msg(zh, en)]}, values={"comment": step.comment})
    return chosen[0]


class Move(EdgeKind):
    """A ``move`` edge (``via`` transfer, add_approver, withdraw or return)."""

    def check_roles(self, engine: Any, case: "Case", edge: EdgeSpec, actor: "User", step: Step) -> None:
        if edge.via == "transfer" and holds(engine, case, actor.username) is None:
            _refuse("您没有持有此事项的待办，不能转交。", "You do not hold a task on this case, so you cannot transfer it.")
        if edge.via == "add_approver" and seat_held(case, actor.username) is None:
            _refuse("只有现在可以审批的审批人才能加签。", "Only an approver whose turn it is may add an approver.")
        if edge.via == "withdraw" and actor.username != case.created_by:
            _refuse("只有发起人可以撤回此事项。", "Only the person who started the case may withdraw it.")
        if edge.via == "return" and not may_act(engine, case, actor):
            _refuse("您不能办理此步骤，不能退回。", "You may not act on this step, so you cannot send it back.")

    def check_guard(self, engine: Any, case: "Case", edge: EdgeSpec, actor: "User", step: Step) -> None:
        if edge.via == "withdraw":
            other = acted_by_others(case)
            if other is not None:
                raise TransitionError(msg(
                    f"{other.get('by_name') or other.get('by')} 已办理过此事项（{tr(other.get('label'), 'zh')}），不能再撤回。",
                    f"{other.get('by_name') or other.get('by')} has already acted on this case "
                    f"({tr(other.get('label'), 'en')}): it can no longer be withdrawn."))

    def validate(self, engine: Any, tx: "Transaction", case: "Case", edge: EdgeSpec, actor: "User", step: Step) -> None:
        step.comment = step.comment[:COMMENT_LIMIT]
        if edge.via == "return" and step.data.get("unknown_target"):
            raise SubmissionError({"target": [msg("请选择退回到哪一步", "Choose the step to send it back to.")]},
                                  values={"comment": step.comment})
        if edge.via == "return" and not step.comment:
            raise SubmissionError({"comment": [msg("请写明退回的理由", "Please give the reason for sending it back.")]},
                                  values={"comment": ""})
        if edge.via == "transfer":
            to = _person(step, "to", "请选择转交给谁", "Choose whom to transfer it to.")
            if to == actor.username:
                raise SubmissionError({"to": [msg("不能转交给自己", "You cannot transfer it to yourself.")]},
                                      values={"comment": step.comment})
            found = next((u for u in colleagues(engine, tx, case, actor) if u.username == to), None)
            if found is None:
                raise SubmissionError({"to": [msg("此人没有相同的角色或管辖范围，或已持有此待办，不能转交给他。",
                                                  "That person does not hold the same role over this case, or holds it already.")]},
                                      values={"comment": step.comment})
            step.data["to"] = found
        if edge.via == "add_approver":
            who = _person(step, "who", "请选择加签的审批人", "Choose the approver to add.")
            position = step.data.get("position")
            if position not in POSITIONS:
                raise SubmissionError({"position": [msg("请选择前加签或后加签", "Choose before or after you.")]},
                                      values={"comment": step.comment})
            found = next((u for u in addable(engine, tx, case, actor) if u.username == who), None)
            if found is None:
                raise SubmissionError({"who": [msg("此人不能加为审批人（已是本轮审批人、是申请人，或管辖范围不含此事项）。",
                                                   "That person cannot be added (already an approver of this round, the "
                                                   "applicant, or their reach does not cover the case).")]},
                                      values={"comment": step.comment})
            step.data["who"] = found
        if edge.via in ("withdraw", "return"):
            # who the case waited for before it moves: they hear it no longer does
            step.data["told"] = engine._waiting_people(tx, case) | set(approval.pending(approval.current(case, case.state)))

    def apply(self, engine: Any, tx: "Transaction", case: "Case", edge: EdgeSpec, actor: "User", step: Step,
              now: dt.datetime) -> list[dict[str, Any]]:
        if edge.via == "transfer":
            to = step.data["to"]
            held = seat_held(case, actor.username)
            if held is not None:
                bucket, i = held
                seat = bucket["seats"][i]
                seat["users"] = [to.username if u == actor.username else u for u in seat["users"]]
                bucket["names"][to.username] = to.name
                seat.setdefault("transfers", []).append({"from": actor.username, "from_name": actor.name,
                                                         "to": to.username, "to_name": to.name, "at": iso(now)})
            else:
                case.assignees = [to.username if u == actor.username else u for u in case.assignees]
        elif edge.via == "add_approver":
            who, position = step.data["who"], step.data["position"]
            bucket, i = seat_held(case, actor.username)  # type: ignore[misc]
            seat = {"users": [who.username], "role": None, "decision": None, "by": None, "by_name": None, "at": None,
                    "comment": "", "added": position, "added_by": actor.username, "added_by_name": actor.name}
            seats = bucket["seats"]
            if bucket["mode"] == "sequence":  # 依次: a turn of its own, just before or just after the adder's
                j = i if position == "before" else i + 1
                while position == "after" and j < len(seats) and seats[j].get("added_by") == actor.username \
                        and seats[j].get("added") == "after":
                    j += 1  # after the ones the adder added after themselves earlier, in the order added
                seats.insert(j, seat)
            else:  # 会签 / 或签: one seat more; "before" keeps the adder's own seat waiting until it is decided
                seats.append(seat)
            bucket["names"][who.username] = who.name
        return []

    def label(self, edge: EdgeSpec, step: Step) -> Text:
        if edge.via == "transfer":
            to = step.data["to"].name
            return {"zh": f"转交给 {to}", "en": f"Transferred to {to}"}
        if edge.via == "add_approver":
            who = step.data["who"].name
            return ({"zh": f"加签 {who}（先于我审批）", "en": f"Added approver {who} (before me)"}
                    if step.data["position"] == "before" else
                    {"zh": f"加签 {who}（在我之后审批）", "en": f"Added approver {who} (after me)"})
        return edge.label

    def reenters(self, edge: EdgeSpec) -> bool:
        return edge.via in ("withdraw", "return")  # a transfer or an added approver stays in the state's round

    def after(self, engine: Any, tx: "Transaction", case: "Case", edge: EdgeSpec, actor: "User", step: Step,
              now: dt.datetime) -> None:
        label = case.history[-1]["label"]
        if edge.via == "transfer":
            kind = "assigned" if step.data["to"].username in case.assignees else "approval"
            notify(tx, [step.data["to"].username], kind, case, label, now, skip=actor.username)
        elif edge.via == "add_approver":
            bucket = approval.current(case, case.state)
            if bucket is not None and step.data["who"].username in approval.pending(bucket):
                notify(tx, [step.data["who"].username], "approval", case, label, now, skip=actor.username)
        else:  # withdrawn, or sent back: who it waited for, who it waits for now, and the applicant
            told = set(step.data.get("told", ())) | engine._waiting_people(tx, case) | {case.created_by}
            notify(tx, told, "case_changed", case, label, now, skip=actor.username)


MOVE = Move()


# --------------------------------------------------------------------------- run time: the Engine's methods

class TaskMovesMixin(EngineBase):
    """A person's moves on their own task (mixed into :class:`engine.runtime.Engine`)."""

    def _task_move(self, case_id: int, user: "User", via: str, step: Step, target: str | None = None,
                   expected_version: int | None = None) -> "Case":
        with self.store.transaction() as tx:
            case = self._load(tx, case_id, user)
            if expected_version is not None and expected_version != case.version:
                raise StaleVersion()
            wf = self.workflow_of(case)
            found = [e for e in wf.edges_from(case.state) if e.kind == "move" and e.via == via]
            edge = next((e for e in found if target is None or e.target == target), None)
            if edge is None and found:  # no such earlier step: the role check still comes first, then the choice
                edge, step.data["unknown_target"] = found[0], True
            if edge is None:
                raise TransitionError(msg(f"此步骤不能“{tr(LABELS[via], 'zh')}”（可能已有变化），请刷新页面。",
                                          f"'{tr(LABELS[via], 'en')}' is not available at this step (the case may have "
                                          "moved on). Reload the page."))
            path.take(self, tx, case, edge, user, step)
            tx.replace(CASES, case_id, case.to_doc())
        return case

    def transfer(self, case_id: int, user: "User", to: str, comment: str = "",
                 expected_version: int | None = None) -> "Case":
        """转交: ``user`` hands the task they hold (an assignment, or their seat in an approval round) to ``to``."""
        return self._task_move(case_id, user, "transfer", Step(comment=comment, chosen=[to]),
                               expected_version=expected_version)

    def add_approver(self, case_id: int, user: "User", who: str, position: str, comment: str = "",
                     expected_version: int | None = None) -> "Case":
        """加签: an approver adds ``who`` to the round, acting ``before`` or ``after`` them."""
        return self._task_move(case_id, user, "add_approver", Step(comment=comment, chosen=[who], data={"position": position}),
                               expected_version=expected_version)

    def withdraw(self, case_id: int, user: "User", comment: str = "", expected_version: int | None = None) -> "Case":
        """撤回: the initiator takes back a case nobody else has acted on, to the workflow's ``withdraw.to``."""
        return self._task_move(case_id, user, "withdraw", Step(comment=comment), expected_version=expected_version)

    def send_back(self, case_id: int, user: "User", target: str, comment: str,
                  expected_version: int | None = None) -> "Case":
        """退回: someone who may act on the step sends the case back to one of its ``return_to`` states."""
        return self._task_move(case_id, user, "return", Step(comment=comment), target=target or "",
                               expected_version=expected_version)

    def task_moves(self, case: "Case", user: "User") -> dict[str, Any]:
        """What the case page offers ``user`` (each only where the step has it and they may take it now):
        ``transfer`` / ``add_approver`` (the people they may pick), ``return_to`` (the states, titled),
        ``withdraw`` (``{"ok": bool, "why": text}``: why not, when someone else has acted)."""
        wf = self.workflow_of(case)
        state = self.state_of(case)
        found: dict[str, Any] = {}
        kinds = {e.via for e in wf.edges_from(case.state) if e.kind == "move"}
        if "transfer" in kinds and holds(self, case, user.username) is not None:
            found["transfer"] = colleagues(self, None, case, user)
        if "add_approver" in kinds and seat_held(case, user.username) is not None:
            found["add_approver"] = addable(self, None, case, user)
        if state.return_to and may_act(self, case, user):
            found["return_to"] = [(sid, wf.states[sid].title) for sid in state.return_to]
        if "withdraw" in kinds and user.username == case.created_by:
            other = acted_by_others(case)
            found["withdraw"] = {"ok": other is None, "by": (other.get("by_name") or other.get("by")) if other else None,
                                 "label": other.get("label") if other else None, "to": wf.states[wf.withdraw].title
                                 if wf.withdraw in wf.states else None}
        return found
