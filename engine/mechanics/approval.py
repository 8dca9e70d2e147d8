"""Several approvers on one step: all must approve (会签), any one decides (或签), or one after another (依次审批).

A state with ``approval:`` names who approves (``approvers``: users, roles or a field naming users; for
``mode: sequence`` the same under ``order``, in the order they sign) and where the case goes when the step is
``approved`` or ``rejected``. Entering the state opens a round: the approvers are worked out once (a role
means every active holder whose reach covers the case) into *seats* stored on the case (``case.approvals``,
state -> round), so the read model can list the case for exactly the people still to act. Each approver's
act is a self-loop of kind ``approval`` (``via`` ``approve`` / ``reject``) through the one transition path,
with its history entry and a new case version; the act that decides the round moves the case along the
outcome edge (``approved`` / ``rejected``), once. Seats may change hands (转交) or be added (加签) while the round is
open (``engine.mechanics.taskmoves``): an added seat records ``added`` (before / after) and ``added_by``; a seat
whose holder added someone before themselves waits (:func:`held_back`), and in 或签 such an advisor's approval does
not decide the step.

Holds the spec (:class:`ApprovalSpec`), its load-time building and checks (:func:`build`), the state graph's
edges (:func:`edges`), the pure round logic (:func:`pending`, :func:`decide`), the hooks the transition path
calls (:func:`open_round`, :func:`on_leave`, the edge kind :data:`APPROVAL`) and :class:`ApprovalMixin` (the
Engine's ``approve``, ``may_approve``, ``approval_status``).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from .. import transition as moves
from ..cases import CASES
from ..clock import iso
from ..errors import NotAllowed, StaleVersion, SubmissionError, TransitionError
from ..loadkit import did_you_mean, msg, text
from ..notify import notify
from ..spec import PSEUDO_ROLES, EdgeSpec, Text, tr
from .base import EdgeKind, EngineBase, Step

if TYPE_CHECKING:
    from ..cases import Case
    from ..loader import Loader
    from ..spec import StateSpec, WorkflowSpec
    from ..store.base import Transaction
    from ..users import User
    from ..yamlsource import PathItem, YamlSource

MODES: Mapping[str, Text] = {
    "all": {"zh": "会签", "en": "All must approve"},
    "any": {"zh": "或签", "en": "Any one approves"},
    "sequence": {"zh": "依次审批", "en": "Approval in turn"},
}
#: the step's name when the definition gives no ``label`` (the history writes e.g. "会签通过" / "Co-signing approved")
TITLES: Mapping[str, Text] = {
    "all": {"zh": "会签", "en": "Co-signing"},
    "any": {"zh": "或签", "en": "Approval by any one"},
    "sequence": {"zh": "依次审批", "en": "Approval in turn"},
}
REJECT_RULES = ("any", "all", "majority")
#: the approvers' acts (self-loops) and the outcomes (moves out of the state): the ``via`` of each edge
ACTS: Mapping[str, Text] = {"approve": {"zh": "同意", "en": "Approve"}, "reject": {"zh": "不同意", "en": "Reject"}}
OUTCOMES: Mapping[str, Text] = {"approved": {"zh": "通过", "en": "approved"}, "rejected": {"zh": "未通过", "en": "rejected"}}
#: how long an approver's comment may be (longer ones are cut)
COMMENT_LIMIT = 1000


@dataclass(frozen=True)
class ApproverSpec:
    """Who approves: named users, every holder of a role within reach of the case, or the users a field names."""

    users: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    field: str | None = None


@dataclass(frozen=True)
class ApprovalSpec:
    """``mode`` all | any | sequence; ``reject`` (mode all): any (one rejection ends it) | all | majority."""

    mode: str
    approvers: ApproverSpec
    approved: str
    rejected: str
    reject: str = "any"
    label: Text | None = None

    @property
    def title(self) -> Text:
        return self.label or TITLES.get(self.mode, TITLES["all"])


# --------------------------------------------------------------------------- load time

def check_people(ld: "Loader", source: "YamlSource", where: list["PathItem"], who: Mapping[str, Any], wf_roles: set[str],
                 data_names: set[str] | None) -> None:
    """The roles and the field a ``{users | roles | field}`` block names (approvers, a transition's ``cc``) exist."""
    people = wf_roles - PSEUDO_ROLES
    for i, role in enumerate(who.get("roles") or []):
        if role not in people:
            ld.problems.append(source.problem(where + ["roles", i], f"unknown role {role!r}",
                                              did_you_mean(role, people) or "list it in the workflow's roles"))
    if "field" in who and data_names is not None and who["field"] not in data_names:
        ld.problems.append(source.problem(where + ["field"], f"unknown field {who['field']!r}",
                                          did_you_mean(who["field"], data_names) or
                                          "name a field of the case that holds a username or a list of them"))


def build(ld: "Loader", source: "YamlSource", path: list["PathItem"], raw: dict | None, sid: str, states: Mapping[str, Any],
          wf_roles: set[str], data_names: set[str] | None) -> ApprovalSpec | None:
    if raw is None:
        return None
    mode = raw["mode"]
    if mode not in MODES:
        ld.problems.append(source.problem(path + ["mode"], f"unknown approval mode {mode!r}",
                                          did_you_mean(mode, MODES) or "all (会签), any (或签) or sequence (依次审批)"))
    key = "order" if mode == "sequence" else "approvers"
    if mode == "sequence" and "order" not in raw:
        ld.problems.append(source.problem(path + (["approvers"] if "approvers" in raw else []),
                                          "mode: sequence needs 'order': the approvers in the order they sign",
                                          "e.g. order: {roles: [community_secretary, street_evaluator]}", key=True))
    elif mode != "sequence" and "order" in raw:
        ld.problems.append(source.problem(path + ["order"], f"'order' is for mode: sequence, not mode: {mode}",
                                          "name who approves under approvers:", key=True))
    elif key not in raw:
        ld.problems.append(source.problem(path, "approval needs 'approvers'",
                                          "approvers: {roles: [...]}, {users: [...]} or {field: ...}", key=True))
    given = key if key in raw else next((k for k in ("approvers", "order") if k in raw), None)
    who = (raw[given] or {}) if given else {}
    named = [k for k in ("users", "roles", "field") if k in who]
    where = path + ([given] if given else [])
    if len(named) > 1:
        ld.problems.append(source.problem(where, f"name approvers one way, not {' and '.join(named)}",
                                          "users, roles or field"))
    elif given is not None and (not named or not who[named[0]]):
        ld.problems.append(source.problem(where, "approval has nobody to approve",
                                          "list users: [...] or roles: [...], or name a field: holding usernames"))
    check_people(ld, source, where, who, wf_roles, data_names)
    reject = raw.get("reject", "any")
    if "reject" in raw and mode != "all":
        ld.problems.append(source.problem(path + ["reject"], f"'reject' is for mode: all, not mode: {mode}",
                                          "in mode any and sequence one rejection ends the step", key=True))
    elif reject not in REJECT_RULES:
        ld.problems.append(source.problem(path + ["reject"], f"unknown reject rule {reject!r}",
                                          did_you_mean(reject, REJECT_RULES) or "any, all or majority"))
    for outcome in ("approved", "rejected"):
        target = raw[outcome]
        if target not in states:
            ld.problems.append(source.problem(path + [outcome], f"unknown state {target!r}",
                                              did_you_mean(target, states) or f"states: {', '.join(states)}"))
        elif target == sid:
            ld.problems.append(source.problem(path + [outcome], f"the {outcome} outcome must leave state {sid!r}",
                                              "name the state the case goes to next"))
    # built even when something above is wrong (the workflow is not, then): its edges keep the graph checks
    # from reporting the outcome states as unreachable, a cascade of the one mistake
    return ApprovalSpec(mode, ApproverSpec(tuple(who.get("users", [])), tuple(who.get("roles", [])), who.get("field")),
                        raw["approved"], raw["rejected"], reject, text(raw.get("label")))


def edges(sid: str, spec: ApprovalSpec) -> list[EdgeSpec]:
    """The state's approval edges: the two acts (self-loops), then the two outcomes."""
    roles = spec.approvers.roles or ("approver",)
    found = [EdgeSpec(sid, sid, "approval", via, label, roles, outcome=via) for via, label in ACTS.items()]
    for via, target in (("approved", spec.approved), ("rejected", spec.rejected)):
        found.append(EdgeSpec(sid, target, "approval", via, outcome_label(spec, via), roles, outcome=via))
    return found


def outcome_label(spec: ApprovalSpec, outcome: str) -> Text:
    return {"zh": f"{tr(spec.title, 'zh')}{OUTCOMES[outcome]['zh']}", "en": f"{tr(spec.title, 'en')}: {OUTCOMES[outcome]['en']}"}


# --------------------------------------------------------------------------- a round (pure: plain dicts)

def current(case: "Case | Mapping[str, Any]", sid: str) -> dict[str, Any] | None:
    """The open round of state ``sid`` (None: none, or decided)."""
    approvals = case.get("approvals") if isinstance(case, Mapping) else case.approvals
    bucket = (approvals or {}).get(sid)
    return bucket if bucket and bucket.get("status") == "open" else None


def turn(bucket: Mapping[str, Any]) -> int | None:
    """Sequence: the index of the seat whose turn it is."""
    return next((i for i, seat in enumerate(bucket["seats"]) if seat.get("decision") is None), None)


def held_back(bucket: Mapping[str, Any], seat: Mapping[str, Any]) -> bool:
    """前加签 (``engine.mechanics.taskmoves``): a seat waits while an approver its holder added before themselves
    has not decided."""
    return any(s is not seat and s.get("added") == "before" and s.get("decision") is None
               and s.get("added_by") in seat["users"] for s in bucket["seats"])


def pending(bucket: Mapping[str, Any] | None) -> list[str]:
    """Who may act now in an open round: each undecided seat's people (sequence: the seat whose turn it is), but
    for a seat held back by an approver added before its holder."""
    if not bucket or bucket.get("status") != "open":
        return []
    seats = bucket["seats"]
    if bucket["mode"] == "sequence":
        i = turn(bucket)
        seats = [] if i is None else [seats[i]]
    return sorted({u for seat in seats if seat.get("decision") is None and not held_back(bucket, seat)
                   for u in seat["users"]})


def decide(bucket: Mapping[str, Any]) -> str | None:
    """``approved``, ``rejected`` or None (not decided yet), from the seats' decisions."""
    seats = bucket["seats"]
    approvals = sum(1 for s in seats if s.get("decision") == "approve")
    rejections = sum(1 for s in seats if s.get("decision") == "reject")
    if bucket["mode"] == "any":  # an approver added before someone (前加签) advises them: their approval returns to them
        approvals = sum(1 for s in seats if s.get("decision") == "approve" and s.get("added") != "before")
        return "approved" if approvals else "rejected" if rejections else None
    if bucket["mode"] == "sequence":
        return "rejected" if rejections else "approved" if seats and approvals == len(seats) else None
    rule = bucket.get("reject", "any")
    if rule == "any" and rejections:
        return "rejected"
    if not seats or approvals + rejections < len(seats):
        return None  # 会签: everyone signs before an all / majority rule is judged
    if rule == "all":
        return "rejected" if rejections == len(seats) else "approved"
    if rule == "majority":
        return "rejected" if 2 * rejections > len(seats) else "approved"
    return "approved"


def seat_of(bucket: Mapping[str, Any], username: str) -> int | None:
    """The seat ``username`` would act on now (None: they may not act now)."""
    if username not in pending(bucket):
        return None
    if bucket["mode"] == "sequence":
        return turn(bucket)
    return next(i for i, s in enumerate(bucket["seats"]) if s.get("decision") is None and username in s["users"])


def everyone(case: "Case | Mapping[str, Any]") -> set[str]:
    """Every approver of every round the case keeps (they may see the case they sign, or signed)."""
    approvals = (case.get("approvals") if isinstance(case, Mapping) else case.approvals) or {}
    return {u for bucket in approvals.values() for seat in bucket.get("seats", ()) for u in seat["users"]}


# --------------------------------------------------------------------------- run time: the transition path's hooks

def open_round(engine: Any, tx: "Transaction", case: "Case", wf: "WorkflowSpec", state: "StateSpec", actor: "User",
               now: dt.datetime) -> None:
    """Entering an approval state: a new round, its approvers worked out now (unless one is open: a self-loop)."""
    spec = state.approval
    if spec is None or current(case, state.id) is not None:
        return
    people: dict[str, str] = {}  # username -> name, in the order they were named
    seats: list[dict[str, Any]] = []
    who = spec.approvers

    def seat(users: list[str], role: str | None) -> dict[str, Any]:
        return {"users": users, "role": role, "decision": None, "by": None, "by_name": None, "at": None, "comment": ""}

    if who.roles:
        for role in who.roles:
            # the applicant does not approve their own case: a role names the others
            holders = sorted((u for u in engine.users(tx, role) if engine.reaches(u, role, case.org_unit, wf)
                              and u.username != case.created_by), key=lambda u: u.username)
            people.update((u.username, u.name) for u in holders)
            if spec.mode == "sequence":  # one turn per role: any one holder signs for it
                seats.append(seat([u.username for u in holders], role))
    else:
        named = list(who.users)
        if who.field:
            value = case.data.get(who.field)
            named = [value] if isinstance(value, str) else [v for v in value or [] if isinstance(v, str)]
        for username in dict.fromkeys(named):
            doc = engine.read.user_doc(username, tx)
            if doc is not None and doc.get("active", True) is not False:
                people[username] = doc.get("name") or username
        if spec.mode == "sequence":
            seats = [seat([u], None) for u in people]
    if spec.mode != "sequence":  # 会签 / 或签: one seat per person
        seats = [seat([u], None) for u in people]
    earlier = (case.approvals.get(state.id) or {}).get("round", 0)
    case.approvals[state.id] = {"round": earlier + 1, "mode": spec.mode, "reject": spec.reject, "status": "open",
                                "opened_at": iso(now), "opened_version": case.version, "names": people, "seats": seats}
    notify(tx, pending(case.approvals[state.id]), "approval", case, spec.title, now, skip=actor.username)


def on_leave(case: "Case", wf: "WorkflowSpec", source: str, target: str) -> None:
    """Leaving an approval state by another way (a withdrawal, a timer) closes its open round undecided."""
    bucket = current(case, source)
    if bucket is not None and source != target:
        bucket["status"] = "closed"


class Approval(EdgeKind):
    """An ``approval`` edge: an approver's act (``approve`` / ``reject``, a self-loop) or the round's outcome."""

    def check_roles(self, engine: Any, case: "Case", edge: EdgeSpec, actor: "User", step: Step) -> None:
        bucket = current(case, edge.source)
        if edge.via in OUTCOMES:
            if bucket is None or decide(bucket) != edge.via:
                raise TransitionError(msg("审批尚未得出结果。", "The approvals have not decided this step yet."))
            return
        if bucket is None:
            raise TransitionError(msg("此审批已结束，请刷新页面。", "This approval is over. Reload the page."))
        if seat_of(bucket, actor.username) is not None:
            return
        seats = bucket["seats"]
        if any(s.get("by") == actor.username for s in seats):
            raise NotAllowed(msg("您已审批过，不能重复审批。", "You have already decided; you cannot decide twice."))
        if any(actor.username in s["users"] for s in seats):
            raise NotAllowed(msg("还未轮到您审批。", "It is not your turn to decide yet."))
        raise NotAllowed(msg("您不是本步骤的审批人。", "You are not one of the approvers of this step."))

    def validate(self, engine: Any, tx: "Transaction", case: "Case", edge: EdgeSpec, actor: "User", step: Step) -> None:
        step.comment = step.comment[:COMMENT_LIMIT]
        if edge.via == "reject" and not step.comment:
            raise SubmissionError({"comment": [msg("不同意时请写明理由", "Please give the reason for rejecting.")]},
                                  values={"comment": ""})

    def apply(self, engine: Any, tx: "Transaction", case: "Case", edge: EdgeSpec, actor: "User", step: Step,
              now: dt.datetime) -> list[dict[str, Any]]:
        bucket = current(case, edge.source)
        assert bucket is not None
        if edge.via in ACTS:
            i = seat_of(bucket, actor.username)
            assert i is not None
            bucket["seats"][i].update(decision=edge.via, by=actor.username, by_name=actor.name, at=iso(now),
                                      comment=step.comment,
                                      delegate_name=actor.delegate.name if actor.delegate is not None else None)
        else:
            bucket.update(status=edge.via, decided_at=iso(now))
        return []

    def reenters(self, edge: EdgeSpec) -> bool:
        return edge.via not in ACTS  # an act stays in the round: timers and the round go on

    def after(self, engine: Any, tx: "Transaction", case: "Case", edge: EdgeSpec, actor: "User", step: Step,
              now: dt.datetime) -> None:
        if edge.via not in ACTS:  # the outcome: the applicant hears how their case was decided
            notify(tx, [case.created_by], "case_changed", case, edge.label, now, skip=actor.username)
            return
        bucket = current(case, edge.source)
        assert bucket is not None
        outcome = decide(bucket)
        if outcome is None:
            spec = engine.workflow_of(case).states[edge.source].approval
            if bucket["mode"] == "sequence":  # the next turn's people are asked now
                notify(tx, pending(bucket), "approval", case, spec.title, now, skip=actor.username)
            else:  # 前加签: the approver who added this one before themselves is asked again
                back = {s.get("added_by") for s in bucket["seats"] if s.get("by") == actor.username and s.get("added") == "before"}
                notify(tx, back & set(pending(bucket)), "approval", case, spec.title, now, skip=actor.username)
            return
        wf = engine.workflow_of(case)
        target = next(e for e in wf.edges_from(edge.source) if e.kind == "approval" and e.via == outcome)
        moves.take(engine, tx, case, target, actor, Step())


APPROVAL = Approval()


# --------------------------------------------------------------------------- run time: the Engine's methods

class ApprovalMixin(EngineBase):
    """Approvers on a step (mixed into :class:`engine.runtime.Engine`)."""

    def approve(self, case_id: int, user: "User", decision: str, comment: str = "",
                expected_version: int | None = None) -> "Case":
        """``user`` approves (``decision`` approve) or rejects the open round of the case's state."""
        if decision not in ACTS:
            raise TransitionError(msg("请选择同意或不同意。", "Choose approve or reject."))
        with self.store.transaction() as tx:
            case = self._load(tx, case_id, user)
            if expected_version is not None and expected_version != case.version:
                raise StaleVersion()
            edge = self.workflow_of(case).edge(case.state, case.state, kind="approval", via=decision)
            if edge is None:
                raise TransitionError(msg("此步骤没有审批，请刷新页面。", "This step has no approval. Reload the page."))
            moves.take(self, tx, case, edge, user, Step(comment=comment or ""))
            tx.replace(CASES, case_id, case.to_doc())
        return case

    def may_approve(self, case: "Case", user: "User", delegated: bool = True) -> bool:
        """Whether ``user`` may approve or reject the case's step now (the seat check of the one transition path;
        ``delegated``: also for someone who delegated their tasks to them)."""
        edge = self.workflow_of(case).edge(case.state, case.state, kind="approval", via="approve")
        if edge is None or current(case, case.state) is None:
            return False
        try:
            moves.check(self, case, edge, user, Step(), delegated=delegated)
        except TransitionError:
            return False
        return True

    def approval_status(self, case: "Case", user: "User") -> dict[str, Any] | None:
        """For the case page: the round of the case's state, or else the latest round of a state it left; each
        seat with who acted, how and when (``approve`` / ``reject``), or ``pending`` (to act now), ``waiting``
        (their turn has not come) or ``skipped`` (the round was decided, or closed, without them)."""
        wf = self.workflow_of(case)
        rounds = [(sid, b) for sid, b in case.approvals.items() if sid in wf.states and wf.states[sid].approval]
        if not rounds:
            return None
        sid, bucket = next(((s, b) for s, b in rounds if s == case.state),
                           max(rounds, key=lambda r: (r[1].get("opened_version", 0), r[1].get("opened_at", ""))))
        spec = wf.states[sid].approval
        assert spec is not None
        now_turn = turn(bucket) if bucket["mode"] == "sequence" else None
        seats = []
        for i, seat in enumerate(bucket["seats"]):
            status = seat["decision"] or ("skipped" if bucket["status"] != "open" else "waiting" if held_back(bucket, seat)
                                          else "pending" if now_turn is None or now_turn == i else "waiting")
            names = [bucket["names"].get(u, u) for u in seat["users"]]
            seats.append({**seat, "status": status, "names": names,
                          "role_title": self.definitions.roles[seat["role"]].title
                          if seat.get("role") in self.definitions.roles else None})
        return {"spec": spec, "state": sid, "title": spec.title, "mode": MODES[spec.mode], "round": bucket["round"],
                "status": bucket["status"], "seats": seats, "mine": self.may_approve(case, user),
                "pending": [bucket["names"].get(u, u) for u in pending(bucket)]}
